"""A problem with no constraints: its KKT conditions are stationarity alone, so its
closed form is the calculus section's stationary point (``calculus._second_order``:
affine gradients in matrix form, a matrix that enters only through its inverse as in a
Gaussian's covariance MLE, entry by entry). Tried after the constrained solvers."""

from __future__ import annotations

import dataclasses

from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._run import run
from dlsym.sections.constrained._show import Name, Rows
from dlsym.sections.constrained._solution import Solution


def solve_unconstrained(problem, grads, show: Rows) -> Solution:
    p = problem
    if p.constraints:
        raise NoClosedForm("not this problem: it has constraints")
    spec = dataclasses.replace(p.spec, wrt=tuple(p.variables), derive=("gradient", "stationary"))
    results, _ = run(spec)
    found = results["stationary"]
    missing = [r for r in found.values() if r.expr is None]
    if missing:
        raise NoClosedForm(f"{missing[0].wrt}: {missing[0].method}")
    xs = {v: found[v].expr for v in p.variables}
    sol = Solution(True, "stationarity without constraints", xs, {}, (), problem=p)
    rows = [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
    how = "; ".join(dict.fromkeys(found[v].method for v in p.variables))
    sol.steps = [
        show.step(
            "Solution: " + sol.method,
            rows,
            r"no constraints: the KKT conditions are $\nabla f = 0$ alone, solved as a "
            f"calculus spec's stationary point ({how})",
        )
    ]
    return sol
