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

from dlsym.calculus import _derive as engine
from dlsym.calculus._simplify import simplify
from dlsym.codegen import _compile as codegen
from dlsym.expr import _ops as ops
from dlsym.sections._base import Shown
from dlsym.sections.constrained._num import REFERENCE, SOLVER_ATOL, SOLVER_RTOL, solve_scalar
from dlsym.sections.constrained._show import Name, Rel, Rows, Seq
from dlsym.verify import as_dtype, compare, computed, solver_tolerance


class NoClosedForm(Exception):
    """A solver does not apply; the message says why (shown to the user)."""


@dataclass
class Solution:
    found: bool
    method: str
    x: dict = field(default_factory=dict)  # variable name -> expr
    multipliers: dict = field(default_factory=dict)  # multiplier Symbol -> expr
    free: tuple = ()  # (Symbol, equation expr == 0, "eq" or "ineq") fixed numerically
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    shown: Any = None
    problem: Any = None
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    # -- numbers ----------------------------------------------------------------------------

    def compiled(self, backend: str = "numpy"):
        """The generated code of the closed forms (once per backend): it takes the
        parameters (spec order), the parametric multipliers (``free``), then the dims,
        and returns the variables, the closed-form multipliers, then each parametric
        multiplier's equation."""
        if backend not in self._compiled:
            p = self.problem
            base = p.base
            args = (
                [s.symbol for s in p.parameters]
                + [f[0] for f in self.free]
                + [base.dim_symbols[k] for k in base.dims]
            )
            exprs = (
                [p.expand(e) for e in self.x.values()]
                + [p.expand(e) for e in self.multipliers.values()]
                + [p.expand(f[1]) for f in self.free]
            )
            self._compiled[backend] = codegen.lambdify(args, exprs, backend)
        return self._compiled[backend]

    def free_values(self, params: list, dims: list) -> list:
        """The parametric multipliers at one point of the parameters (NumPy arrays): each
        the root of its scalar equation (``solve_scalar``), a later one held at 0 while
        an earlier one is solved."""
        fn = self.compiled("numpy")
        at = len(self.x) + len(self.multipliers)
        values: list = []
        for i, (_, _, kind) in enumerate(self.free):
            rest = [0.0] * (len(self.free) - i - 1)

            def eq(t, i=i, rest=rest):
                return float(np.sum(fn(*params, *values, t, *rest, *dims)[at + i]))

            values.append(solve_scalar(eq, nonnegative=(kind == "ineq")))
        return values

    def evaluate(self, num, draw: dict):
        """(x, multipliers) at one draw of the parameters, in ``num.dtype``; free
        multipliers are solved numerically (SciPy's brentq, in float64) first."""
        dtype = num.dtype
        p = self.problem
        dims = [p.base.dims[k] for k in p.base.dims]
        params = [draw[s.name] for s in p.parameters]
        nx, nm = len(self.x), len(self.multipliers)
        values = as_dtype(self.free_values(params, dims), dtype)
        out = self.compiled("numpy")(*as_dtype(params, dtype), *values, *dims)
        x = {
            v: np.broadcast_to(computed(o, dtype), num.shapes[v]) for v, o in zip(self.x, out[:nx])
        }
        mult = {
            s.name: np.broadcast_to(computed(o, dtype), num.shapes[s.name])
            for s, o in zip(self.multipliers, out[nx : nx + nm])
        }
        for (sym, _, _), t in zip(self.free, values):
            mult[sym.name] = np.broadcast_to(t, num.shapes[sym.name])
        return x, mult

    def checks(self, num, good) -> list:
        """The closed forms, in ``num.dtype``, against the solver's optimum."""
        p, dtype = self.problem, num.dtype
        rtol, atol = solver_tolerance(dtype, SOLVER_RTOL, SOLVER_ATOL)
        xs, vals, exp_x, exp_v, ms, exp_m = [], [], [], [], [], []
        for draw, opt in good:
            x, mult = self.evaluate(num, draw)
            xs.append(np.concatenate([np.ravel(x[v]) for v in p.variables]))
            exp_x.append(np.concatenate([np.ravel(opt.x[v]) for v in p.variables]))
            values = as_dtype({**draw, **x}, dtype)
            f = np.asarray(num.parts({k: num.jnp.asarray(v) for k, v in values.items()})[0])
            vals.append([f if p.sense == "minimize" else -f])
            exp_v.append([opt.value])
            if opt.regular and mult:
                ms.append(np.concatenate([np.ravel(mult[k]) for k in sorted(mult)]))
                exp_m.append(np.concatenate([np.ravel(opt.multipliers[k]) for k in sorted(mult)]))
        ref = REFERENCE
        out = [
            compare(
                "solution",
                ", ".join(p.variables),
                ref,
                np.stack(xs),
                np.stack(exp_x),
                rtol,
                atol,
            ),
            compare("optimal value", "", ref, np.array(vals), np.array(exp_v), rtol, atol),
        ]
        if ms:
            out.append(
                compare(
                    "multipliers",
                    ", ".join(sorted(mult)),
                    REFERENCE,
                    np.stack(ms),
                    np.stack(exp_m),
                    *solver_tolerance(dtype, SOLVER_RTOL * 10, SOLVER_ATOL * 10),
                )
            )
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
        spec = dataclasses.replace(
            problem.spec, objective=expr, output=None, wrt=(name,), derive=("gradient",)
        )
        kind = "gradient"
    elif len(alg.shape(expr)) == 1 and len(alg.shape(wrt)) == 1:
        spec = dataclasses.replace(
            problem.spec, objective=None, output=expr, wrt=(name,), derive=("jacobian",)
        )
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
_REBUILD = {
    ops.matmul: lambda alg, a, b: alg.mm(a, b),
    ops.transpose: lambda alg, a: alg.T(a),
    ops.outer: lambda alg, a, b: alg.outer(a, b),
}


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
    x: dict  # v -> -P^{-1} r (variables with P != 0)
    conditions: dict  # v -> r_v (variables with P == 0: r_v = 0 constrains the multipliers)


NONNEGATIVE_DOMAINS = ("positive", "nonnegative", "unit_interval", "simplex")


def _nonnegative(problem, c) -> bool:
    """A scalar that is >= 0 wherever it is defined, for every admissible value of its
    symbols (lambda >= 0, a positive domain > 0)."""
    # positive=False would mean "not positive", i.e. zero: give only what the domain says
    signs = {
        d.symbol: sp.Dummy(
            d.name, **({"positive": True} if d.domain == "positive" else {"nonnegative": True})
        )
        for d in problem.spec.symbols
        if d.domain in NONNEGATIVE_DOMAINS
    }
    return _sign_nonnegative(sp.factor(c.xreplace(signs)))


def _sign_nonnegative(e) -> bool:
    """SymPy's assumptions, plus the rules they leave open: an even power of a real base
    (1/(alpha + x)**2 is >= 0 where defined), products and sums of nonnegatives."""
    if e.is_nonnegative:
        return True
    if isinstance(e, sp.Pow) and e.exp.is_integer and e.exp.is_even and e.base.is_real:
        return True
    if isinstance(e, sp.Pow) and e.base.is_positive and e.exp.is_real:
        return True
    if isinstance(e, (sp.Mul, sp.Add)):
        return all(_sign_nonnegative(a) for a in e.args)
    return False


# P is PSD when it is a nonnegative combination of terms that are PSD by construction
_PSD_TERMS = (
    (lambda pb, e: isinstance(e, ops.eye), "I"),
    (lambda pb, e: e in pb.spec.algebra.symmetric, "an spd symbol"),
    (
        lambda pb, e: (
            isinstance(e, ops.matmul)
            and isinstance(e.args[0], ops.transpose)
            and e.args[0].args[0] == e.args[1]
        ),
        "A^T A",
    ),
    (
        lambda pb, e: (
            isinstance(e, ops.matmul)
            and isinstance(e.args[0], ops.transpose)
            and isinstance(e.args[1], ops.matmul)
            and isinstance(e.args[1].args[0], ops.diag)
            and e.args[1].args[1] == e.args[0].args[0]
            and _nonnegative(pb, e.args[1].args[0].args[0])
        ),
        "A^T diag(d) A, d >= 0",
    ),
)


def provably_psd(problem, P) -> bool:
    """P >= 0 (positive semidefinite) for every admissible value of the multipliers: then
    the Lagrangian is convex in the variable, and x = -P^{-1} r minimizes it rather than
    being a saddle or a maximum. False when not provable (e.g. (2 lam - 2) I)."""
    alg = problem.spec.algebra
    if alg.shape(P) == ():
        return _nonnegative(problem, P)
    if isinstance(P, sp.Add):
        return all(provably_psd(problem, t) for t in P.args)
    c, rest = alg.split_scalar(P)
    if c != 1:
        return _nonnegative(problem, c) and provably_psd(problem, rest)
    return any(test(problem, P) for test, _ in _PSD_TERMS)


def linear_stationarity(problem, grads) -> LinearStationarity:
    alg = problem.spec.algebra
    P, r, x, cond = {}, {}, {}, {}
    for v in problem.variables:
        h = hessian(problem, v)
        if h is None or has_variables(problem, h):
            raise NoClosedForm(f"the stationarity condition is not linear in {v}")
        if h != 0 and not provably_psd(problem, h):
            # e.g. maximize sum(x**2) on the ball: L's Hessian 2 (lam - 1) I is indefinite
            # for lam < 1, and its stationary point x = 0 is a maximum of L, not the optimum
            raise NoClosedForm(
                f"the Lagrangian's Hessian in {v}, {h}, is not positive "
                "semidefinite for every admissible multiplier, so its "
                "stationary point need not minimize it (the problem may not "
                "be convex)"
            )
        rv = at_zero(problem, grads[v].expr)
        if has_variables(problem, rv):
            raise NoClosedForm("the stationarity conditions couple the variables")
        P[v], r[v] = h, rv
        if h == 0:
            cond[v] = rv
        else:
            x[v] = simplify(alg, -alg.mm(inverse(alg, h), rv) if alg.shape(rv) else -rv / h)
    return LinearStationarity(P, r, x, cond)


def substitute_x(problem, e, xs: dict):
    alg = problem.spec.algebra
    subs = {problem.base.symbol(v).symbol: val for v, val in xs.items()}
    return simplify(alg, alg.tidy(e.xreplace(subs)))


def solve_linear(problem, grads, show: Rows) -> Solution:
    p, alg = problem, problem.spec.algebra
    lin = linear_stationarity(p, grads)
    if lin.conditions:
        raise NoClosedForm(
            "the problem is linear in "
            + ", ".join(lin.conditions)
            + ": its multipliers solve the dual problem, which has no closed form "
            "here (see the dual)"
        )
    steps_rows = [(Name(f"{show.var_latex(v)}", v), "=", e) for v, e in lin.x.items()]
    sol = Solution(True, "linear stationarity", dict(lin.x), {}, (), problem=p)
    rows = list(steps_rows)
    why = [
        r"stationarity is linear in the variables: $\nabla \mathcal{L} = P x + r$ with "
        r"$P$ the Hessian of $\mathcal{L}$, so $x = -P^{-1} r$"
    ]
    eqs, ineqs = p.equalities, p.inequalities
    if len(eqs) == 1 and not ineqs:
        c = eqs[0]
        nu = c.multiplier.symbol
        h = substitute_x(p, c.func, lin.x)
        m = derivative(p, h, nu)
        if m is None or has_variables(p, m):
            raise NoClosedForm("the equality constraint is not affine in its multiplier")
        if m == 0:
            raise NoClosedForm(
                "the equality constraint does not involve its multiplier once x is substituted"
            )
        c0 = simplify(alg, alg.tidy(zero_out(alg, h, {nu})))
        value = simplify(alg, -alg.mm(inverse(alg, m), c0) if alg.shape(c0) else -c0 / m)
        rows.append((show.func_name(c), "=", Seq((h, Rel("="), "0"))))
        rows.append((nu, "=", value))
        xs = {v: substitute_x(p, e.xreplace({nu: value}), {}) for v, e in lin.x.items()}
        rows += [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
        why.append(
            r"the equality is affine in $\nu$ once $x$ is substituted: solve it for "
            r"$\nu$ (the KKT block system in matrix form)"
        )
        sol.x, sol.multipliers = xs, {nu: value}
    elif len(ineqs) == 1 and not eqs and ineqs[0].shape == ():
        c = ineqs[0]
        lam = c.multiplier.symbol
        g = substitute_x(p, c.func, lin.x)
        lam_tex, lam_txt = c.multiplier.latex, show.text(lam)
        # x(lam) is the penalty form's minimizer: name it so, then say which lam applies
        rows = [
            (Name(rf"{show.var_latex(v)}({lam_tex})", f"{v}({lam_txt})"), "=", e)
            for v, e in lin.x.items()
        ]
        rows.append(
            (
                Name(rf"{lam_tex}^{{\star}}", f"{lam_txt}*"),
                "=",
                Seq(
                    (
                        Name(r"0 \text{ if }", "0 if"),
                        g.xreplace({lam: 0}),
                        Rel("le"),
                        Name(r"0\text{, else the root }", "0, else the root"),
                        lam,
                        Name(r"> 0 \text{ of }", "> 0 of"),
                        g,
                        Rel("="),
                        "0",
                    )
                ),
            )
        )
        rows += [
            (
                Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"),
                "=",
                Name(rf"{show.var_latex(v)}({lam_tex}^{{\star}})", f"{v}({lam_txt}*)"),
            )
            for v in lin.x
        ]
        why.append(
            "complementary slackness: either the constraint is inactive ($\\lambda = 0$, "
            "the unconstrained optimum is feasible) or it is active and $\\lambda > 0$ "
            "solves $g(x(\\lambda)) = 0$ (one scalar equation, solved numerically); "
            "$x(\\lambda)$ is the minimizer of the penalty form $f + \\lambda g$, so "
            "the multiplier is the equivalent penalty weight"
        )
        sol.free = ((lam, g, "ineq"),)
    elif eqs or ineqs:
        raise NoClosedForm(
            "more than one constraint block: the multipliers have no closed form here"
        )
    sol.steps = [show.step("Solution: " + sol.method, rows, "; ".join(why))]
    return sol


# --- separable stationarity ----------------------------------------------------------------


def _elementwise_in(e, x) -> bool:
    """x enters e only through elementwise operations (no product, sum, ... contains it)."""
    return not any(
        isinstance(n, ops.TensorOp) and x in n.free_symbols for n in sp.preorder_traversal(e)
    )


def _scalar(e):
    """Entry-by-entry reading of an elementwise expression: ones(n) is 1."""
    return e.replace(lambda n: isinstance(n, ops.ones), lambda n: sp.Integer(1))


def linear_sums(alg, e):
    """sum() is linear: pull scalar factors and sums of terms out of it, so that
    ``sum(exp(-1 - nu) exp(a))`` becomes ``exp(-1 - nu) sum(exp(a))``."""

    def rule(n):
        if not (isinstance(n, ops.tsum) and len(n.args) == 1):
            return n
        body = sp.expand(n.args[0], power_exp=True, mul=True, multinomial=False)
        terms = body.args if isinstance(body, sp.Add) else (body,)
        out = 0
        for t in terms:
            c, rest = alg.split_scalar(t) if alg.shape(t) else (t, None)
            out += c * (
                alg.reduce_sum(rest) if rest is not None else ops.size(alg.shape(n.args[0]))
            )
        return out

    return e.replace(lambda n: isinstance(n, ops.tsum), rule)


def gibbs(e):
    """exp(u) / sum(exp(u)) is softmax(u)."""

    def rule(n):
        exps = [f for f in n.args if isinstance(f, sp.exp)]
        for f in exps:
            den = sp.Pow(ops.tsum(f), -1)
            if den in n.args:
                rest = [g for g in n.args if g not in (f, den)]
                return sp.Mul(*rest) * ops.softmax(f.args[0])
        return n

    return e.replace(lambda n: isinstance(n, sp.Mul), rule)


def solve_separable(problem, grads, show: Rows) -> Solution:
    p, alg = problem, problem.spec.algebra
    if len(p.variables) != 1 or len(p.base.symbol(p.variables[0]).shape) != 1:
        raise NoClosedForm("not a single vector variable")
    v = p.variables[0]
    x = p.base.symbol(v).symbol
    G = p.expand(grads[v].expr)
    if not _elementwise_in(G, x):
        raise NoClosedForm(f"{v} does not enter the stationarity condition elementwise")
    bound = None
    for c in p.inequalities:
        f = p.expand(c.func)
        slope = sp.diff(_scalar(f), x) if _elementwise_in(f, x) else None
        if bound is not None or slope not in (1, -1) or c.shape != alg.shape(x):
            raise NoClosedForm("inequalities other than one bound x >= l or x <= u")
        bound = (c, slope, simplify(alg, -(f - slope * x) / slope))
    for c in p.equalities:
        if c.shape != ():
            raise NoClosedForm("a vector equality constraint")
    G0 = _scalar(G.xreplace({bound[0].multiplier.symbol: 0}) if bound else G)
    slope = sp.diff(G0, x)
    if not _nonnegative(problem, slope):
        # each entry's root minimizes L only where L is convex in it: for sum(x**2) with
        # sum(x**2) == 1, the slope 2 + 2 nu vanishes at the optimum (nu = -1) and the root
        # x = 0 that sympy returns (assuming nu != -1) is not the answer
        raise NoClosedForm(
            f"stationarity's slope in an entry of {v}, {slope}, is not "
            "nonnegative for every admissible multiplier (L may not be "
            "convex in it)"
        )
    roots = sp.solve(G0, x)
    if len(roots) != 1:
        raise NoClosedForm(f"stationarity has {len(roots)} solutions for an entry of {v}")
    xu = roots[0]
    if alg.shape(xu) == ():
        # every entry has the same value (no vector parameter in it): keep the vector's
        # shape, or sum(x) would count one entry instead of k
        xu = xu * alg.ones(alg.shape(x))
    rows = [(Name(rf"{show.var_latex(v)}(\nu)", f"{v}(ν)"), "=", xu)]
    why = [r"stationarity acts entry by entry: each entry solves one scalar equation"]
    xs = xu
    mults = {}
    if bound:
        c, slope, level = bound
        xs = sp.Max(xu, level) if slope == -1 else sp.Min(xu, level)
        mults[c.multiplier.symbol] = simplify(alg, -slope * G0.xreplace({x: xs}))
        rows.append((Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", xs))
        why.append(
            "where the unconstrained entry would cross the bound, complementary "
            "slackness sets it at the bound (its multiplier becomes positive): a "
            "clip, valid since stationarity is monotone in the entry (checked "
            "numerically)"
        )
    free = []
    for c in p.equalities:
        nu = c.multiplier.symbol
        h = simplify(alg, alg.tidy(p.expand(c.func).xreplace({x: xs})))
        sols = []
        if not bound:
            lin = linear_sums(alg, h)
            try:
                sols = [s for s in sp.solve(lin, nu) if s.is_real is not False]
            except NotImplementedError:
                sols = []
        if len(sols) == 1 and not any(
            isinstance(n, ops.TensorOp) and nu in n.free_symbols
            for n in sp.preorder_traversal(sols[0])
        ):
            value = simplify(alg, sols[0])
            mults = {k: e.xreplace({nu: value}) for k, e in mults.items()}
            mults[nu] = value
            xs = gibbs(simplify(alg, linear_sums(alg, xs.xreplace({nu: value}))))
            free = [(m, eq.xreplace({nu: value}), k) for m, eq, k in free]
            rows.append((nu, "=", value))
            why.append(f"the constraint {c.number} fixes ${c.multiplier.latex}$ in closed form")
        else:
            free.append((nu, h, "eq"))
    if len(free) > 1:
        raise NoClosedForm("more than one multiplier left to a system of equations")
    for m, eq, _ in free:
        rows.append(
            (
                Seq((eq, Rel("="), "0")),
                "",
                Name(rf"\text{{fixes }} {show.latex(m)}", f"fixes {show.text(m)}"),
            )
        )
        why.append(
            "the remaining multiplier solves one scalar equation (monotone in it), "
            "solved numerically: the solution is parametric"
        )
    if not bound:  # with a bound, the clip row above already shows x*
        rows.append((Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", xs))
    sol = Solution(True, "separable stationarity", {v: xs}, mults, tuple(free), problem=p)
    sol.steps = [show.step("Solution: " + sol.method, rows, "; ".join(why))]
    return sol


SOLVERS = (("linear stationarity", solve_linear), ("separable stationarity", solve_separable))


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
    sol.steps = [
        show.step(
            "Solution",
            [
                (
                    Name(r"\text{closed form}", "closed form"),
                    "",
                    Name(r"\text{none found}", "none found"),
                )
            ],
            text + "; the numeric optimum is still checked against the KKT conditions",
        )
    ]
    sol.shown = Shown(
        text, r"\text{no closed form found}", None, {"found": False, "reasons": reasons}
    )
    return sol


def shown_solution(sol: Solution, show: Rows) -> Shown:
    parts = [f"{v}* = {show.expr(e)}" for v, e in sol.x.items()]
    latex = [rf"{show.var_latex(v)}^{{\star}} = {show.latex(e)}" for v, e in sol.x.items()]
    for m, e in sol.multipliers.items():
        parts.append(f"{m.name}* = {show.expr(e)}")
    for m, eq, kind in sol.free:
        parts.append(
            f"{m.name}: root of {show.expr(eq)} = 0"
            + (" (0 if the constraint is inactive)" if kind == "ineq" else "")
        )
    extra = {
        "found": True,
        "method": sol.method,
        "x": {v: {"expr": show.expr(e), "latex": show.latex(e)} for v, e in sol.x.items()},
        "multipliers": {m.name: show.expr(e) for m, e in sol.multipliers.items()},
        "parametric": {m.name: show.expr(eq) for m, eq, _ in sol.free},
    }
    return Shown("; ".join(parts), r",\quad ".join(latex), sol.x, extra)
