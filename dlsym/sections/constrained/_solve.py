"""Closed forms from the KKT conditions: the dual function and the optimum.

Three ways to solve stationarity, tried in order (a table, ``SOLVERS``):

* linear stationarity: when the Hessian of L in a variable does not depend on the
  variables, grad L = P x + r(lambda, nu) and x = -P^{-1} r (quadratic objectives, least
  norm, ridge); then an affine equality fixes nu in closed form (the KKT block system in
  matrix form), and one scalar inequality is either inactive (lambda = 0) or active with
  lambda fixed by g(x(lambda)) = 0 (the ball of ridge regression);
* no constraints: the KKT conditions are stationarity alone, the calculus section's
  stationary point (a Gaussian's covariance MLE through the inverse);
* separable stationarity: when x enters grad L only elementwise, it is solved entry by
  entry as a scalar equation, clipped at a bound x >= l (water-filling, sparsemax), and
  normalizing multipliers are solved where the sum allows it (the Gibbs form of maximum
  entropy);
* one active inequality: when each variable's stationarity reads it alone, entry by
  entry, and x(λ) does not exist at λ = 0, the inequality is active and λ* solves
  g(x(λ)) = 0 (Cobb–Douglas utility under a budget).

Whatever multiplier is left is *parametric*: fixed by a scalar equation, solved
numerically by the verifier. Every closed form is checked against SciPy's optimum.
"""

from __future__ import annotations

import numpy as np

from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._convexity import provably_nonnegative
from dlsym.calculus._exists import margins
from dlsym.expr import _ops as ops
from dlsym.sections._base import Shown
from dlsym.sections.constrained._active import solve_active
from dlsym.sections.constrained._linear import solve_linear
from dlsym.sections.constrained._num import BOUNDED
from dlsym.sections.constrained._separable import solve_separable
from dlsym.sections.constrained._show import Name, Rows
from dlsym.sections.constrained._solution import Solution
from dlsym.sections.constrained._unconstrained import solve_unconstrained
from dlsym.verify import sample_points

SOLVERS = (
    ("linear stationarity", solve_linear),
    ("separable stationarity", solve_separable),
    ("no constraints", solve_unconstrained),
    ("one active inequality", solve_active),
)


def derive_solution(problem, grads, show: Rows) -> Solution:
    reasons = []
    for name, solver in SOLVERS:
        try:
            sol = solver(problem, grads, show)
        except NoClosedForm as exc:
            reasons.append(f"{name}: {exc.text(show.expr)}")
            continue
        except ops.ShapeError as exc:
            # a solver's matrix algebra has no form for these shapes (a matrix variable
            # with a vector constraint, sum(X, axis=1) == 1): not this solver's problem
            reasons.append(f"{name}: no matrix form for these shapes ({exc})")
            continue
        if not _finite_at_dims(sol):
            reasons.append(
                f"{name}: its closed form is 0/0 at the spec's dims, where the constraints "
                "are likely linearly dependent (as x[0] == 1, x[1] == 2, x[2] == 3 and "
                "sum(x) == 6 are for n = 3): drop one the others imply"
            )
            continue
        left = _leaves_domain(sol, show)
        if left:
            reasons.append(f"{name}: {left}")
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


def _leaves_domain(sol: Solution, show: Rows) -> str:
    """Why a closed form is no solution where it leaves its variable's domain for some
    values of the data, else "": the domain is a bound the solver's reference keeps, and
    where the form crosses it the bound is active and the optimum another point.
    min ‖x − a‖² s.t. sum(x) = 1 of a positive x gave x* = a − (sum(a) − 1)/n, which is
    [5, −5, 1] at a = [5, −5, 1] (the optimum there is [1, 0, 0])."""
    p = sol.problem
    unit = frozenset(d.symbol for d in p.base.symbols if d.domain == "unit_interval")
    for v, e in sol.x.items():
        domain = p.base.symbol(v).domain
        if domain not in BOUNDED or sol.free:
            continue
        real = margins(e, None, unit) or ()
        inside = margins(e, domain, unit)
        # a margin that is >= 0 for every value (σ²* = mean((x − x̄)²) of a positive σ²)
        # is 0 only at degenerate data, where an open domain has no optimum at all
        extra = (
            None
            if inside is None
            else [m for m in inside if m not in real and not provably_nonnegative(p.base, m)]
        )
        if extra is None or extra:
            where = "for no value" if extra is None else "for some values only"
            return (
                f"{v}* = {show.expr(e)} is in {v}'s domain ({domain}) {where} of the data; "
                "elsewhere the domain's bound is active and the optimum is another point "
                f"(write the bound as a constraint, as {v} >= 0, to have it in the KKT "
                "conditions)"
            )
    return ""


def _finite_at_dims(sol: Solution) -> bool:
    """Whether a closed form (with no parametric multiplier) is no 0/0 at one drawn point
    of the parameters, at the spec's dims: the separable solver eliminated multipliers
    through n − Σ sum(e_i), 0 where the equalities are dependent at the dims."""
    if sol.free or not sol.x:
        return True
    p = sol.problem
    base = p.base
    drawn = sample_points(base, 1, 0)
    params = [np.asarray(drawn[s.name][0]) for s in p.parameters]
    dims = [base.dim_values[base.dim_symbols[k]] for k in base.dims]
    try:
        # an overflow (sum(x) >= 1e308) says nothing of the form: no verdict here, the
        # verification says what fails; nan from finite numbers is 0/0
        with np.errstate(over="raise", invalid="ignore", divide="ignore"):
            # not kept: the solution's code is compiled from its final closed forms when
            # asked for (a caller may still change them)
            values = sol.lambdified("numpy")(*params, *dims)
    except (ArithmeticError, ValueError, TypeError, IndexError, np.linalg.LinAlgError):
        return True
    return not any(np.isnan(np.asarray(v, dtype=complex)).any() for v in values)


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
