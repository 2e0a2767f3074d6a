"""Linear stationarity: when the Hessian of L in a variable does not depend on the
variables, grad L = P x + r(lambda, nu) and x = -P^{-1} r (quadratic objectives, least
norm, ridge); an affine equality then fixes nu in closed form, and one scalar inequality
is either inactive or active with lambda fixed by g(x(lambda)) = 0."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from dlsym.calculus._affine import NoClosedForm, inverse, kinked_in, roots, zero_out
from dlsym.calculus._convexity import provably_nonnegative, provably_psd
from dlsym.calculus._simplify import simplify
from dlsym.expr import _ops as ops
from dlsym.sections.constrained._show import Name, Rel, Rows, Seq
from dlsym.sections.constrained._solution import (
    Solution,
    at_zero,
    derivative,
    has_variables,
    hessian,
)


@dataclass(frozen=True)
class LinearStationarity:
    """grad_v L = P_v v + r_v for each variable (P_v = 0: v enters L linearly)."""

    P: dict
    r: dict
    x: dict  # v -> -P^{-1} r (variables with P != 0)
    conditions: dict  # v -> r_v (variables with P == 0: r_v = 0 constrains the multipliers)


def linear_stationarity(problem, grads) -> LinearStationarity:
    """grad L = P x + r solved for x, or NoClosedForm. Remembered on the spec's algebra:
    the solution and the dual both need it, and with 50 constraints it takes a second."""
    memo = problem.spec.algebra.memo.setdefault("linear stationarity", {})
    key = tuple(grads[v].expr for v in problem.variables)
    if key not in memo:
        try:
            memo[key] = _linear_stationarity(problem, grads)
        except NoClosedForm as exc:
            memo[key] = exc
    if isinstance(memo[key], NoClosedForm):
        raise memo[key]
    return memo[key]


def _linear_stationarity(problem, grads) -> LinearStationarity:
    alg = problem.spec.algebra
    P, r, x, cond = {}, {}, {}, {}
    for v in problem.variables:
        if kinked_in(problem.expand(grads[v].expr), problem.base.symbol(v).symbol):
            raise NoClosedForm(
                f"the stationarity condition has kinks in {v} (abs, relu, max, ...): it "
                "is piecewise, and its pieces are not solved here"
            )
        h = hessian(problem, v)
        if h is None or has_variables(problem, h):
            raise NoClosedForm(f"the stationarity condition is not linear in {v}")
        if h != 0 and not provably_psd(problem.spec, h):
            # e.g. maximize sum(x**2) on the ball: L's Hessian 2 (lam - 1) I is indefinite
            # for lam < 1, and its stationary point x = 0 is a maximum of L, not the optimum
            raise NoClosedForm(
                f"the Lagrangian's Hessian in {v}, {h}, is not positive "
                "semidefinite for every admissible multiplier, so its "
                "stationary point need not minimize it (the problem may not "
                "be convex)"
            )
        rv = at_zero(problem, grads[v].expr)
        own = problem.base.symbol(v).symbol
        others = set(problem.variable_symbols) - {own}
        if has_variables(problem, rv) or problem.expand(grads[v].expr).free_symbols & others:
            # x² + y² + ν(xy − 1): each variable's Hessian alone is 2, but ν couples them,
            # and L is unbounded below for |ν| > 2 (its dual read −ν for every ν)
            raise NoClosedForm("the stationarity conditions couple the variables")
        P[v], r[v] = h, rv
        if h == 0:
            cond[v] = rv
        else:
            # a scalar P (a scalar variable, or c I acting on a matrix one) divides
            x[v] = simplify(alg, -alg.mm(inverse(alg, h), rv) if alg.shape(h) else -rv / h)
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
        # x == 1 of a vector x: the constant part keeps the constraint's shape (the
        # scalar -1 over the identity read 1/I)
        c0 = alg.expand_to(c0, alg.shape(h))
        value = simplify(alg, -alg.mm(inverse(alg, m), c0) if alg.shape(c0) else -c0 / m)
        rows.append((show.func_name(c), "=", Seq((h, Rel("="), "0"))))
        rows.append((nu, "=", value))
        xs = {v: substitute_x(p, e.xreplace({nu: value}), {}) for v, e in lin.x.items()}
        rows += [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
        nu_tex = c.multiplier.latex
        why.append(
            rf"the equality is affine in ${nu_tex}$ once $x$ is substituted: solve it for "
            rf"${nu_tex}$ (the KKT block system in matrix form)"
        )
        sol.x, sol.multipliers = xs, {nu: value}
    elif len(ineqs) == 1 and not eqs and ineqs[0].shape == () and _active_root(p, ineqs[0], lin):
        c = ineqs[0]
        lam = c.multiplier.symbol
        g = substitute_x(p, c.func, lin.x)
        root = _active_root(p, c, lin)
        lam_star = simplify(alg, sp.Max(0, root))
        xs = {v: substitute_x(p, e.xreplace({lam: lam_star}), {}) for v, e in lin.x.items()}
        lam_tex, lam_txt = c.multiplier.latex, show.text(lam)
        rows = [
            (Name(rf"{show.var_latex(v)}({lam_tex})", f"{v}({lam_txt})"), "=", e)
            for v, e in lin.x.items()
        ]
        rows.append((Name(rf"{lam_tex}^{{\star}}", f"{lam_txt}*"), "=", lam_star))
        rows += [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
        why.append(
            f"complementary slackness: either the constraint is inactive (${lam_tex} = 0$) "
            f"or it is active and ${lam_tex} > 0$ solves $g(x({lam_tex})) = 0$, which has one "
            "positive root in closed form; the maximum with 0 covers both (the verification "
            "draws points of each)"
        )
        sol.x, sol.multipliers = xs, {lam: lam_star}
    elif len(ineqs) == 1 and not eqs and ineqs[0].shape == ():
        c = ineqs[0]
        lam = c.multiplier.symbol
        g = substitute_x(p, c.func, lin.x)
        g0 = g.xreplace({lam: 0})  # the constraint at x(0), the unconstrained optimum
        if _active_root(p, c, lin) == NO_POSITIVE_ROOT and (
            g0.is_finite is False or g0.is_positive
        ):
            # min sum(x) s.t. sum(x²) <= 0: x(λ) = −1/(2λ), g = n/(4λ²); the optimum x = 0
            # has no multiplier, and the parametric form read "λ* = 0 if zoo ≤ 0". And
            # sum(x²) <= −1: g = 1 at every λ ("λ: root of 1 = 0")
            inactive = (
                "x(λ) is undefined at λ = 0"
                if g0.is_finite is False
                else "the constraint does not hold at x(0)"
            )
            raise NoClosedForm(
                f"the KKT conditions have no solution: {inactive} and ",
                g,
                " = 0 has no root λ > 0; the problem is infeasible, or at its optimum the "
                "constraint qualification fails (the feasible set is a single point, or "
                "the constraint's gradient vanishes there)",
            )
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
            f"complementary slackness: either the constraint is inactive (${lam_tex} = 0$, "
            f"the unconstrained optimum is feasible) or it is active and ${lam_tex} > 0$ "
            f"solves $g(x({lam_tex})) = 0$ (one scalar equation, solved numerically); "
            f"$x({lam_tex})$ is the minimizer of the penalty form $f + {lam_tex} g$, so "
            "the multiplier is the equivalent penalty weight"
        )
        sol.free = ((lam, g, "ineq"),)
    elif eqs or ineqs:
        raise NoClosedForm(
            "more than one constraint block: the multipliers have no closed form here"
        )
    sol.steps = [show.step("Solution: " + sol.method, rows, "; ".join(why))]
    return sol


# SymPy proved that g(x(λ)) = 0 has no root λ > 0 (falsy, like "none found")
NO_POSITIVE_ROOT = ()


def _active_root(problem, c, lin):
    """The one positive root lambda of g(x(lambda)) = 0 (``_affine.roots``: the L2-ball projection's
    ||a|| / r - 1, up to its scale), in closed form, or None. Remembered per constraint:
    the solution tries it once to choose, once to use."""
    memo = problem.spec.algebra.memo.setdefault("active root", {})
    if c not in memo:
        memo[c] = _solve_active(problem, c, lin)
    return memo[c]


def _solve_active(problem, c, lin):
    lam = c.multiplier.symbol
    g = problem.expand(substitute_x(problem, c.func, lin.x))
    if not lin.x or g.free_symbols & set(problem.variable_symbols):
        return None
    positive = sp.Dummy("lam", positive=True)
    # sympy.solve sees a tensor operation (sum(a**2)) as an unknown complex number: its
    # sign, where provable, lets it drop the roots that cannot be positive
    opaque = {}
    for t in g.atoms(ops.TensorOp):
        if lam not in t.free_symbols:
            sign = "nonnegative" if provably_nonnegative(problem.spec, t) else "real"
            opaque[t] = sp.Dummy("t", **{sign: True})
    found = roots(g.xreplace(opaque).xreplace({lam: positive}), positive)
    if found == []:
        return NO_POSITIVE_ROOT
    if found is None or len(found) != 1:
        return None
    back = {d: t for t, d in opaque.items()}
    return found[0].xreplace({positive: lam}).xreplace(back)
