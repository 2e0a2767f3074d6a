"""A problem with no constraints: its KKT conditions are stationarity alone, so its
closed form is the calculus section's stationary point (``calculus._second_order``:
affine gradients in matrix form, a matrix that enters only through its inverse as in a
Gaussian's covariance MLE, entry by entry). Inequalities that point satisfies for every
value of the data are inactive: λ = 0. Tried after the constrained solvers."""

from __future__ import annotations

import dataclasses

import sympy as sp

from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._convexity import provably_nonnegative
from dlsym.calculus._derive import block_key
from dlsym.calculus._exists import positive
from dlsym.calculus._run import run
from dlsym.sections.constrained._problem import multiplier_family
from dlsym.sections.constrained._show import Name, Rows
from dlsym.sections.constrained._solution import Solution


def _not_a_maximum(p, hessians: dict, found: dict) -> None:
    """NoClosedForm where the stationary point is provably no minimum: ∇f = 0 is
    necessary, not sufficient. Maximizing x² on −2 <= x <= 1 (f = −x², concave: its
    stationary point 0 is its maximum) and minimizing x³ on x >= −1 (f'' = 0 at 0, an
    inflection) were each claimed optimal (exit 1). A point that passes is checked
    against the solver's optimum by verification (a Gaussian's likelihood is convex
    in neither its mean and variance nor its covariance, yet its stationary point is
    the optimum)."""
    concave = dataclasses.replace(
        p.spec, objective=-p.f, wrt=tuple(p.variables), derive=("convexity",)
    )
    verdicts = run(concave)[0]["convexity"].values()
    if all(r.verdict is not None and r.verdict.convex for r in verdicts):
        raise NoClosedForm(
            "the objective is concave: its stationary point is a maximum, not a minimum"
        )
    at = {p.base.symbol(v).symbol: found[v].expr for v in p.variables}
    for v in p.variables:
        if p.base.symbol(v).shape != ():
            continue
        h = hessians.get(v if len(p.variables) == 1 else block_key(v, v))
        if h is None or h.expr is None:
            continue
        curvature = h.expr.xreplace(at)
        if positive(curvature) is False:  # <= 0: a maximum, or no proof of a minimum
            raise NoClosedForm(
                f"the objective's second derivative in {v} at the stationary point is "
                f"{curvature}, not positive: it is no minimum there (or not shown to be)"
            )


def solve_unconstrained(problem, grads, show: Rows) -> Solution:
    p = problem
    if p.equalities:
        raise NoClosedForm("not this problem: it has equality constraints")
    if any(c.shape != () for c in p.inequalities):
        raise NoClosedForm("a vector inequality (its multiplier 0 is not written here)")
    # the stationary point of f alone (every multiplier 0), and f's second derivatives
    spec = dataclasses.replace(
        p.spec, objective=p.f, wrt=tuple(p.variables), derive=("gradient", "stationary", "hessian")
    )
    results, _ = run(spec)
    found = results["stationary"]
    missing = [r for r in found.values() if r.expr is None]
    if missing:
        raise NoClosedForm(f"{missing[0].wrt}: {missing[0].method}")
    _not_a_maximum(p, results["hessian"], found)
    # margins (each > 0) under which the stationary point is real and in the domains:
    # the Gaussian MLE's σ²* = mean((x − μ*)²) needs data that are not all equal (it was
    # "no closed form"; the calculus spec's stationary point says the same condition)
    where = list(dict.fromkeys(c for r in found.values() for c in r.exists_where))
    xs = {v: found[v].expr for v in p.variables}
    at = {p.base.symbol(v).symbol: e for v, e in xs.items()}
    for c in p.inequalities:
        # g(x*) <= 0 for every admissible value of the data: (x*, λ = 0) meets every
        # KKT condition (the GAN discriminator p log D + q log(1 − D) on 0 <= D <= 1:
        # D* = p/(p + q) is inside, and the box is inactive)
        g = p.expand(c.func).xreplace(at)
        if not provably_nonnegative(p.spec, -g):
            raise NoClosedForm(
                f"constraint {c.number} may be active at the unconstrained stationary point"
            )
    mults = {c.multiplier.symbol: sp.Integer(0) for c in p.inequalities}
    method = "inactive constraints" if p.inequalities else "stationarity without constraints"
    sol = Solution(True, method, xs, mults, (), problem=p)
    held = " and ".join(f"{show.expr(c)} > 0" for c in where)
    if where:
        sol.notes.append(
            f"the solution holds where {held}: elsewhere the stationary point is not "
            "real or not in the variables' domains, and no optimum is attained there"
        )
    rows = [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
    rows += [(m, "=", sp.Integer(0)) for m in mults]
    how = "; ".join(dict.fromkeys(found[v].method for v in p.variables))
    why = (
        r"no constraints: the KKT conditions are $\nabla f = 0$ alone, solved as a "
        f"calculus spec's stationary point ({how})"
    )
    if p.inequalities:
        why = (
            r"the stationary point of the objective alone ($\nabla f = 0$, solved as a "
            f"calculus spec's: {how}) satisfies every inequality for every value of the "
            "data, so with "
            rf"${multiplier_family(p.inequalities[0])} = 0$ it meets every KKT condition "
            "(the constraints are inactive)"
        )
    if where:
        why += f"; it holds where {held}"
    sol.steps = [show.step("Solution: " + sol.method, rows, why)]
    return sol
