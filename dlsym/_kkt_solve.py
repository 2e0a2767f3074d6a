"""Closed forms from the KKT conditions: the dual function and the optimum.

Two ways to solve stationarity, tried in order (a table, ``SOLVERS``):

* linear stationarity: when the Hessian of L in a variable does not depend on the
  variables, grad L = P x + r(lambda, nu) and x = -P^{-1} r (quadratic objectives, least
  norm, ridge); then an affine equality fixes nu in closed form (the KKT block system in
  matrix form), and one scalar inequality is either inactive (lambda = 0) or active with
  lambda fixed by g(x(lambda)) = 0 (the ball of ridge regression);
* separable stationarity: when x enters grad L only elementwise, it is solved entry by
  entry as a scalar equation, clipped at a bound x >= l (water-filling, sparsemax), and
  normalizing multipliers are solved where the sum allows it (the Gibbs form of maximum
  entropy).

Whatever multiplier is left is *parametric*: fixed by a scalar equation, solved
numerically by the verifier. Every closed form is checked against SciPy's optimum.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from . import _derive as engine
from . import _ops as ops
from ._kkt_show import Name, Rel, Rows, Seq
from ._kkt_verify import SOLVER_ATOL, SOLVER_RTOL, solve_scalar
from ._section import Shown
from ._simplify import simplify
from ._verify import compare


class NoClosedForm(Exception):
    """A solver does not apply; the message says why (shown to the user)."""


@dataclass
class Solution:
    found: bool
    method: str
    x: dict = field(default_factory=dict)             # variable name -> expr
    multipliers: dict = field(default_factory=dict)   # multiplier Symbol -> expr
    free: tuple = ()          # (Symbol, equation expr == 0, "eq" or "ineq") fixed numerically
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    shown: Any = None
    problem: Any = None

    # -- numbers ----------------------------------------------------------------------------

    def _functions(self):
        p = self.problem
        base = p.base
        args = [s.symbol for s in p.parameters] + [f[0] for f in self.free] \
            + [base.dim_symbols[k] for k in base.dims]
        exprs = [p.expand(e) for e in self.x.values()] + \
            [p.expand(e) for e in self.multipliers.values()] + [p.expand(f[1]) for f in self.free]
        from . import _codegen as codegen
        return codegen.lambdify(args, exprs, "numpy")

    def evaluate(self, num, draw: dict):
        """(x, multipliers) at one draw of the parameters, free multipliers solved."""
        fn = getattr(self, "_fn", None) or self._functions()
        self._fn = fn
        p = self.problem
        dims = [p.base.dims[k] for k in p.base.dims]
        params = [draw[s.name] for s in p.parameters]
        nx, nm = len(self.x), len(self.multipliers)

        def outputs(free_values):
            return fn(*params, *free_values, *dims)

        values = []
        for i, (sym, _, kind) in enumerate(self.free):
            def eq(t, i=i):
                return float(np.sum(outputs(values + [t] + [0.0] * (len(self.free) - i - 1))
                                    [nx + nm + i]))
            values.append(solve_scalar(eq, nonnegative=(kind == "ineq")))
        out = outputs(values)
        x = {v: np.broadcast_to(np.asarray(o, dtype=float), num.shapes[v])
             for v, o in zip(self.x, out[:nx])}
        mult = {s.name: np.broadcast_to(np.asarray(o, dtype=float), num.shapes[s.name])
                for s, o in zip(self.multipliers, out[nx:nx + nm])}
        for (sym, _, _), t in zip(self.free, values):
            mult[sym.name] = np.broadcast_to(np.asarray(t, dtype=float), num.shapes[sym.name])
        return x, mult

    def checks(self, num, good) -> list:
        p = self.problem
        xs, vals, exp_x, exp_v, ms, exp_m = [], [], [], [], [], []
        for draw, opt in good:
            x, mult = self.evaluate(num, draw)
            xs.append(np.concatenate([np.ravel(x[v]) for v in p.variables]))
            exp_x.append(np.concatenate([np.ravel(opt.x[v]) for v in p.variables]))
            values = {k: num.jnp.asarray(v, dtype=float) for k, v in {**draw, **x}.items()}
            f = float(num.parts(values)[0])
            vals.append([f if p.sense == "minimize" else -f])
            exp_v.append([opt.value])
            if opt.regular and mult:
                ms.append(np.concatenate([np.ravel(mult[k]) for k in sorted(mult)]))
                exp_m.append(np.concatenate([np.ravel(opt.multipliers[k]) for k in sorted(mult)]))
        ref = "scipy SLSQP optimum"
        out = [compare("solution", ", ".join(p.variables), ref, np.stack(xs), np.stack(exp_x),
                       SOLVER_RTOL, SOLVER_ATOL),
               compare("optimal value", "", ref, np.asarray(vals), np.asarray(exp_v),
                       SOLVER_RTOL, SOLVER_ATOL)]
        if ms:
            out.append(compare("multipliers", ", ".join(sorted(mult)),
                               "KKT multipliers at the scipy optimum", np.stack(ms),
                               np.stack(exp_m), SOLVER_RTOL * 10, SOLVER_ATOL * 10))
        return out


# --- matrix-form helpers ---------------------------------------------------------------------


def inverse(alg, m):
    """m^{-1} with scalar factors pulled out: (2 A)^{-1} = A^{-1}/2, I^{-1} = I."""
    if alg.shape(m) == ():
        return 1 / m
    if isinstance(m, sp.Add):
        m = sp.factor_terms(m)
    c, rest = alg.split_scalar(m)
    if c != 1:
        return inverse(alg, rest) / c
    if isinstance(m, ops.eye):
        return m
    return ops.inv(m)


def derivative(problem, expr, wrt):
    """d expr / d wrt in matrix form by the Foundation engine: a gradient for a scalar
    expr, a Jacobian for a vector one (None where no matrix-form rule applies)."""
    alg = problem.spec.algebra
    name = wrt.name
    if alg.shape(expr) == ():
        spec = dataclasses.replace(problem.spec, objective=expr, output=None, wrt=(name,),
                                   derive=("gradient",))
        kind = "gradient"
    elif len(alg.shape(expr)) == 1 and len(alg.shape(wrt)) == 1:
        spec = dataclasses.replace(problem.spec, objective=None, output=expr, wrt=(name,),
                                   derive=("jacobian",))
        kind = "jacobian"
    else:
        return None
    results, _ = engine.run(spec)
    r = results[kind][name]
    return r.expr if r.method == "matrix form" else None


def hessian(problem, v: str):
    spec = dataclasses.replace(problem.spec, wrt=(v,), derive=("gradient", "hessian"))
    results, _ = engine.run(spec)
    r = results["hessian"][v]
    return r.expr if r.method == "matrix form" else None


# rebuilding an op after a symbol was set to 0: the Algebra's constructors drop zeros
_REBUILD = {ops.matmul: lambda alg, a, b: alg.mm(a, b), ops.transpose: lambda alg, a: alg.T(a),
            ops.outer: lambda alg, a, b: alg.outer(a, b)}


def zero_out(alg, e, symbols):
    """e with ``symbols`` set to 0, rebuilt bottom-up so that ``A @ 0`` is 0 (a plain
    xreplace leaves a matrix product with a scalar, which has no shape)."""
    if e in symbols:
        return sp.Integer(0)
    if not e.args or isinstance(e, (ops.ones, ops.eye)):
        return e
    args = [zero_out(alg, a, symbols) for a in e.args]
    if type(e) in _REBUILD:
        return _REBUILD[type(e)](alg, *args)
    if isinstance(e, ops._Reduction) and args[0] == 0:
        return sp.Integer(0)
    if isinstance(e, ops.diag) and args[0] == 0:
        return sp.Integer(0)
    return e.func(*args)


def at_zero(problem, e):
    """e with every variable set to 0."""
    alg = problem.spec.algebra
    return simplify(alg, alg.tidy(zero_out(alg, e, set(problem.variable_symbols))))


def has_variables(problem, e) -> bool:
    return bool(problem.expand(e).free_symbols & set(problem.variable_symbols))


# --- linear stationarity -----------------------------------------------------------------


@dataclass(frozen=True)
class LinearStationarity:
    """grad_v L = P_v v + r_v for each variable (P_v = 0: v enters L linearly)."""

    P: dict
    r: dict
    x: dict          # v -> -P^{-1} r (variables with P != 0)
    conditions: dict  # v -> r_v (variables with P == 0: r_v = 0 constrains the multipliers)


def linear_stationarity(problem, grads) -> LinearStationarity:
    alg = problem.spec.algebra
    P, r, x, cond = {}, {}, {}, {}
    for v in problem.variables:
        h = hessian(problem, v)
        if h is None or has_variables(problem, h):
            raise NoClosedForm(f"the stationarity condition is not linear in {v}")
        rv = at_zero(problem, grads[v].expr)
        if has_variables(problem, rv):
            raise NoClosedForm("the stationarity conditions couple the variables")
        P[v], r[v] = h, rv
        if h == 0:
            cond[v] = rv
        else:
            sym = problem.base.symbol(v).symbol
            x[v] = simplify(alg, -alg.mm(inverse(alg, h), rv) if alg.shape(rv) else -rv / h)
            del sym
    return LinearStationarity(P, r, x, cond)


def substitute_x(problem, e, xs: dict):
    alg = problem.spec.algebra
    subs = {problem.base.symbol(v).symbol: val for v, val in xs.items()}
    return simplify(alg, alg.tidy(e.xreplace(subs)))


def solve_linear(problem, grads, show: Rows) -> Solution:
    p, alg = problem, problem.spec.algebra
    lin = linear_stationarity(p, grads)
    if lin.conditions:
        raise NoClosedForm("the problem is linear in " + ", ".join(lin.conditions) +
                           ": its multipliers solve the dual problem, which has no closed form "
                           "here (see the dual)")
    steps_rows = [(Name(f"{show.var_latex(v)}", v), "=", e) for v, e in lin.x.items()]
    sol = Solution(True, "linear stationarity", dict(lin.x), {}, (), problem=p)
    rows = list(steps_rows)
    why = [r"stationarity is linear in the variables: $\nabla \mathcal{L} = P x + r$ with "
           r"$P$ the Hessian of $\mathcal{L}$, so $x = -P^{-1} r$"]
    eqs, ineqs = p.equalities, p.inequalities
    if len(eqs) == 1 and not ineqs:
        c = eqs[0]
        nu = c.multiplier.symbol
        h = substitute_x(p, c.func, lin.x)
        m = derivative(p, h, nu)
        if m is None or has_variables(p, m):
            raise NoClosedForm("the equality constraint is not affine in its multiplier")
        c0 = simplify(alg, alg.tidy(zero_out(alg, h, {nu})))
        value = simplify(alg, -alg.mm(inverse(alg, m), c0) if alg.shape(c0) else -c0 / m)
        rows.append((show.func_name(c), "=", Seq((h, Rel("="), "0"))))
        rows.append((nu, "=", value))
        xs = {v: substitute_x(p, e.xreplace({nu: value}), {}) for v, e in lin.x.items()}
        rows += [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
        why.append(r"the equality is affine in $\nu$ once $x$ is substituted: solve it for "
                   r"$\nu$ (the KKT block system in matrix form)")
        sol.x, sol.multipliers = xs, {nu: value}
    elif len(ineqs) == 1 and not eqs and ineqs[0].shape == ():
        c = ineqs[0]
        lam = c.multiplier.symbol
        g = substitute_x(p, c.func, lin.x)
        rows.append((Name(r"\lambda^{\star}", "λ*"), "=",
                     Name(rf"0 \text{{ if }} {show.latex(g.xreplace({lam: 0}))} \le 0"
                          rf"\text{{, else the root }} \lambda > 0 \text{{ of }} "
                          rf"{show.latex(g)} = 0", "0 if g(x(0)) <= 0, else the root "
                          "lam > 0 of g(x(lam)) = 0")))
        why.append("complementary slackness: either the constraint is inactive ($\\lambda = 0$, "
                   "the unconstrained optimum is feasible) or it is active and $\\lambda > 0$ "
                   "solves $g(x(\\lambda)) = 0$ (one scalar equation, solved numerically); "
                   "$x(\\lambda)$ is the minimizer of the penalty form $f + \\lambda g$, so "
                   "the multiplier is the equivalent penalty weight")
        sol.free = ((lam, g, "ineq"),)
    elif eqs or ineqs:
        raise NoClosedForm("more than one constraint block: the multipliers have no closed "
                           "form here")
    sol.steps = [show.step("Solution: " + sol.method, rows, "; ".join(why))]
    return sol


SOLVERS = (("linear stationarity", solve_linear),)


def derive_solution(problem, grads, show: Rows) -> Solution:
    reasons = []
    for name, solver in SOLVERS:
        try:
            sol = solver(problem, grads, show)
        except NoClosedForm as exc:
            reasons.append(f"{name}: {exc}")
            continue
        sol.shown = shown_solution(sol, show)
        return sol
    text = "no closed form found (" + "; ".join(reasons) + ")"
    sol = Solution(False, "none", problem=problem, notes=[text])
    sol.steps = [show.step("Solution", [(Name(r"\text{closed form}", "closed form"), "",
                                         Name(r"\text{none found}", "none found"))],
                           text + "; the numeric optimum is still checked against the KKT "
                           "conditions")]
    sol.shown = Shown(text, r"\text{no closed form found}", None, {"found": False,
                                                                    "reasons": reasons})
    return sol


def shown_solution(sol: Solution, show: Rows) -> Shown:
    parts = [f"{v}* = {show.expr(e)}" for v, e in sol.x.items()]
    latex = [rf"{show.var_latex(v)}^{{\star}} = {show.latex(e)}" for v, e in sol.x.items()]
    for m, e in sol.multipliers.items():
        parts.append(f"{m.name}* = {show.expr(e)}")
    for m, eq, kind in sol.free:
        parts.append(f"{m.name}: root of {show.expr(eq)} = 0"
                     + (" (0 if the constraint is inactive)" if kind == "ineq" else ""))
    extra = {"found": True, "method": sol.method,
             "x": {v: {"expr": show.expr(e), "latex": show.latex(e)} for v, e in sol.x.items()},
             "multipliers": {m.name: show.expr(e) for m, e in sol.multipliers.items()},
             "parametric": {m.name: show.expr(eq) for m, eq, _ in sol.free}}
    return Shown("; ".join(parts), r",\quad ".join(latex), sol.x, extra)


# --- the dual ----------------------------------------------------------------------------


@dataclass
class Dual:
    found: bool
    function: Any = None          # g(lambda, nu)
    x: dict = field(default_factory=dict)        # v -> x(lambda, nu)
    P: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)  # v -> r_v (= 0 in the dual problem)
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    shown: Any = None
    problem: Any = None

    def checks(self, num, good) -> list:
        from . import _codegen as codegen
        p = self.problem
        base = p.base
        mults = [c.multiplier for c in p.constraints]
        args = [s.symbol for s in p.parameters] + [m.symbol for m in mults] + \
            [base.dim_symbols[k] for k in base.dims]
        exprs = [p.expand(self.function)] + [p.expand(e) for e in self.x.values()] + \
            [p.expand(e) for e in self.P.values()]
        fn = codegen.lambdify(args, exprs, "numpy")
        dims = [base.dims[k] for k in base.dims]
        duals, primals, xs, exp_x, convex = [], [], [], [], True
        for draw, opt in good:
            out = fn(*[draw[s.name] for s in p.parameters],
                     *[opt.multipliers[m.name] for m in mults], *dims)
            duals.append([float(out[0])])
            primals.append([opt.value if p.sense == "minimize" else -opt.value])
            nx = len(self.x)
            if nx:
                xs.append(np.concatenate([np.ravel(np.broadcast_to(o, num.shapes[v]))
                                          for v, o in zip(self.x, out[1:1 + nx])]))
                exp_x.append(np.concatenate([np.ravel(opt.x[v]) for v in self.x]))
            for hess in out[1 + nx:]:
                eig = np.linalg.eigvalsh(np.atleast_2d(np.asarray(hess, dtype=float)))
                convex = convex and bool(eig.min() >= -1e-10)
        ref = "primal optimum (scipy SLSQP) and its KKT multipliers"
        duals, primals = np.asarray(duals), np.asarray(primals)
        if convex:
            out = [compare("dual value", "", ref + ": strong duality", duals, primals,
                           SOLVER_RTOL, SOLVER_ATOL)]
        else:   # weak duality only: g <= p*
            gap = np.maximum(duals - primals, 0.0)
            out = [compare("dual value", "", ref + ": weak duality (not convex)", gap,
                           np.zeros_like(gap), 0.0, SOLVER_ATOL)]
        if xs:
            out.append(compare("primal from dual", ", ".join(self.x), ref, np.stack(xs),
                               np.stack(exp_x), SOLVER_RTOL, SOLVER_ATOL))
        return out


def derive_dual(problem, grads, show: Rows) -> Dual:
    p, alg = problem, problem.spec.algebra
    try:
        lin = linear_stationarity(p, grads)
    except NoClosedForm as exc:
        text = f"no closed-form dual function found ({exc})"
        dual = Dual(False, notes=[text], problem=p)
        dual.steps = [show.step("Dual function", [(Name(r"g", "g"), "", Name(
            r"\text{no closed form found}", "no closed form found"))], text)]
        dual.shown = Shown(text, r"\text{no closed form found}", None, {"found": False})
        return dual
    value = at_zero(p, p.expand(p.lagrangian))
    for v, x in lin.x.items():
        r, P = lin.r[v], lin.P[v]
        quad = alg.mm(r, alg.mm(inverse(alg, P), r)) if alg.shape(r) else r ** 2 / P
        value = value - quad / 2
    value = simplify(alg, alg.tidy(value))
    mults = [c.multiplier for c in p.constraints]
    args = ", ".join(m.latex for m in mults)
    targs = ", ".join(show.text_name(m) for m in mults)
    gname = Name(rf"g\left({args}\right)", f"g({targs})")
    rows = [(gname, "=", Name(r"\inf_{x} \mathcal{L}", "inf_x ℒ"))]
    rows += [(Name(show.var_latex(v), v), "=", x) for v, x in lin.x.items()]
    rows.append((gname, "=", value))
    why = (r"$\mathcal{L}$ is quadratic in the variables with a Hessian free of them: its "
           r"infimum is at $x = -P^{-1} r$, where $\mathcal{L} = \mathcal{L}(0) - "
           r"\frac{1}{2} r^{\top} P^{-1} r$ (finite when $P \succeq 0$)")
    if lin.conditions:
        why += ("; a variable that enters $\\mathcal{L}$ linearly makes the infimum "
                "$-\\infty$ unless its coefficient vanishes: a constraint of the dual problem")
    steps = [show.step("Dual function", rows, why)]
    cons = [(c.multiplier.symbol, show.relation(">=", c.shape), "0") for c in p.inequalities]
    cons += [(r, "=", "0") for r in lin.conditions.values()]
    prows = [(Name(rf"\underset{{{args}}}{{\text{{maximize}}}}", f"maximize over {targs}"),
              "quad", value)]
    prows += [(Name(r"\text{subject to}", "subject to") if i == 0 else None, "quad",
               Seq((a, Rel(rel), b))) for i, (a, rel, b) in enumerate(cons)]
    steps.append(show.step(
        "Dual problem", prows,
        "the dual function is a lower bound on the optimal value for every feasible "
        "multiplier; its maximum equals the primal optimum for a convex problem with a "
        "strictly feasible point (Slater)"))
    dual = Dual(True, value, dict(lin.x), dict(lin.P), dict(lin.conditions), steps, [],
                problem=p)
    dual.shown = Shown(show.expr(value), f"{gname.latex} = {show.latex(value)}", value,
                       {"x_of_multipliers": {v: show.expr(x) for v, x in lin.x.items()},
                        "dual_constraints": [show.expr(r) + " == 0"
                                             for r in lin.conditions.values()]
                        + [f"{c.multiplier.name} >= 0" for c in p.inequalities]})
    return dual
