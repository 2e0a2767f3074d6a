"""Verification of a constrained problem against an independent solver.

At ``points`` random draws of the parameters (each symbol from its domain; at one where the
problem has no parameters, solved from more starts):

1. the problem is solved numerically (``_num``) with ``scipy.optimize.minimize`` (SLSQP,
   several starts; gradients and constraint Jacobians by JAX autodiff of the problem *as
   written*, never of anything dlsym derived), in float64 whatever the dtype (SciPy's); no
   feasible point means a clear "infeasible" verdict;
2. the multipliers at that optimum are estimated by least squares on the active
   constraints, and the *derived* KKT conditions are evaluated there (stationarity through
   the matrix-form gradient, primal and dual feasibility, complementary slackness);
3. the derived stationarity is compared with ``jax.grad`` of the Lagrangian near the optimum;
4. a closed-form solution, its value and its multipliers are compared with the numeric
   optimum, and a derived dual function with the primal value (strong duality).

Everything derived, and the JAX reference of step 3, is computed in the verification's
dtype; comparisons with the solver's optimum are held to the solver's accuracy or the
dtype's, whichever is coarser (``dlsym.verify.solver_tolerance``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.codegen._jax import jax_x64
from dlsym.sections.constrained._num import (
    BOUNDED,
    BOUNDS,
    FEASIBLE_TOL,
    SOLVER_ATOL,
    SOLVER_RTOL,
    STARTS,
    Numeric,
    at_bound,
)
from dlsym.sections.constrained._solution import kinked_variables
from dlsym.verify import (
    DTYPES,
    Check,
    as_dtype,
    compare,
    draw,
    generator,
    interval,
    jax_device,
    on_device,
    report,
    solver_tolerance,
)


def sample_parameters(problem, points: int, seed: int) -> list:
    """One {name: value} per point, each parameter from its domain (point by point)."""
    rng = generator(seed)
    base = problem.base
    shapes = {
        s.name: tuple(int(d.subs(base.dim_values)) for d in s.shape) for s in problem.parameters
    }
    return [
        {s.name: draw(rng, s.domain, shapes[s.name]) for s in problem.parameters}
        for _ in range(points)
    ]


def verify(d, points, seed, device, dtype, rtol, atol):

    jax_x64()
    dev = jax_device(device)
    p = d.problem
    with on_device(dev):
        draws = sample_parameters(p, points, seed)
        # a problem without parameters is one problem at every draw: it is solved once,
        # from as many starts as NO_OPTIMUM_DRAWS draws take (min x² + y² s.t. xy = 1
        # was solved 16 times over, 64 SLSQP runs, 28 s, and compared 16 times alike)
        starts = STARTS
        if not p.parameters:
            draws, starts = draws[:1], STARTS * NO_OPTIMUM_DRAWS
        num = Numeric(p, dtype, starts)
        rng = generator(seed + 1)
        optima = []
        for params in draws:
            optima.append(num.solve(params, rng))
            if len(optima) >= NO_OPTIMUM_DRAWS and not any(o.feasible for o in optima):
                # none of the first draws has an optimum: the rest would take as long
                # (every start runs until it settles infeasible) to say so too
                break
        checks = [feasibility_check(p, num, optima)]
        good = [(dr, o) for dr, o in zip(draws, optima) if o.feasible]
        if good:
            checks.append(stationarity_check(d, num, good, rng, rtol, atol))
            if not kinked_variables(p, d.lagrangian_derivation.results["gradient"]):
                checks.append(kkt_residual_check(d, num, good))
            if d.solution is not None and d.solution.found:
                checks += d.solution.checks(num, good)
            if d.dual is not None and d.dual.found:
                checks += d.dual.checks(num, good)
    claimed = d.solution is not None and d.solution.found  # an optimum in closed form
    unbounded = any(o.runaway for o in optima)  # as feasibility_check reads them
    if (not good or unbounded) and not claimed:
        # no optimum at any draw, and nothing derived claims one: the problem has none
        # (unbounded, or infeasible), which is the spec's, not a derivation found wrong.
        # Where the solver ran off at some draws, the points it stopped at at the others
        # are no optima either (an LP min c x s.t. sum(x) == 1, 14 of 16 draws unbounded:
        # its KKT residuals at the other 2 failed it, exit 1)
        check = checks[0]
        doc = d.header.doc
        key = p.sense if unbounded else "subject_to"
        said = (
            "verification cannot run"
            if check.inconclusive
            else "the problem has no optimum to verify against"
        )
        raise SpecError(f"{said}: {check.note}", doc.loc(key) if key in doc.data else doc.loc())
    out = report(checks, len(draws), dtype, dev.platform, rtol, atol)
    if not good:  # nothing was compared with a solver optimum
        return out
    srtol, satol = solver_tolerance(dtype, SOLVER_RTOL, SOLVER_ATOL)
    coarser = "" if (srtol, satol) == (SOLVER_RTOL, SOLVER_ATOL) else f", {dtype} is coarser"
    return dataclasses.replace(
        out,
        tolerance_note=f"comparisons with the solver's optimum at rtol={srtol:g}, "
        f"atol={satol:g}: SLSQP converges to about 1e-8{coarser}",
    )


NO_OPTIMUM_DRAWS = 4  # draws without an optimum after which the others are not solved


def _draws(p, bad, optima, then: str = "") -> str:
    """Which draws of the parameters ``bad`` are, then ``then`` ("" where the problem has
    no parameters: it was solved once)."""
    if not p.parameters:
        return ""
    return f" at {len(bad)} of {len(optima)} draws of the parameters (first: draw {bad[0]}){then}"


def feasibility_check(p, num, optima) -> Check:
    bad = [i for i, o in enumerate(optima) if not o.feasible]
    worst = max((o.violation for o in optima), default=0.0)
    if not bad:
        return Check("optimum", "", num.reference, len(optima), 0.0, 0.0, True)
    runaway = [i for i in bad if optima[i].runaway]
    if runaway:
        o = optima[runaway[0]]
        return Check(
            "optimum",
            "",
            num.reference,
            len(optima),
            float("inf"),
            float("inf"),
            False,
            note=f"unbounded:{_draws(p, runaway, optima, ',')} the solver's feasible "
            f"iterates ran off to |x| = {o.runaway:.1e} with the objective still "
            f"improving (objective {o.value:.3g}); the problem looks "
            f"unbounded {'below' if p.sense == 'minimize' else 'above'} (or "
            "its infimum is not attained), so it has no optimum",
        )
    note = (
        f"infeasible: no point satisfies the constraints (to {FEASIBLE_TOL:g}) "
        f"from {num.starts} starts{_draws(p, bad, optima)}; the problem looks infeasible"
    )
    big = _largest_number(p)
    if big >= HUGE:
        # sum(x) >= 1e308: feasible, but its points' squares are past float64, and SLSQP
        # finds none; that says nothing about the problem (verification cannot run)
        note = (
            f"the solver found no feasible point, but the problem's numbers reach {big:.0e}, "
            "past what its float64 arithmetic holds (their squares overflow): this is the "
            "solver's failure, not a verdict on the problem; scale the problem down"
        )
    return Check(
        "optimum",
        "",
        num.reference,
        len(optima),
        worst,
        worst,
        False,
        note=note,
        inconclusive=big >= HUGE,
    )


HUGE = 1e150  # a number whose square overflows float64


def _largest_number(p) -> float:
    """The largest magnitude of a number written in the problem (objective, constraints)."""
    exprs = [p.f, *(c.func for c in p.constraints)]
    found = [abs(float(n)) for e in exprs for n in sp.sympify(e).atoms(sp.Number)]
    return max(found, default=0.0)


# multipliers drawn for the stationarity check: an inequality's is nonnegative
MULTIPLIER_DOMAIN = {"ineq": "nonnegative", "eq": "real"}
NUDGE = interval(0.0, 1.0)  # moves the point off the optimum, relative to |x|


def stationarity_check(d, num, good, rng, rtol, atol) -> Check:
    """The derived gradient of L against jax.grad of L (from the problem as written), at
    points near each numeric optimum (inside the objective's domain) with random
    multipliers, both in ``num.dtype``."""
    p = d.problem
    derived_fn = d.lagrangian_derivation.function("gradient", backend="numpy")
    expected, got = [], []
    for params, opt in good:
        values = dict(params)
        for v in p.variables:
            x = opt.x[v]
            nudge = NUDGE(rng, x.shape)
            if p.base.symbol(v).domain == "spd":  # stays in the domain: + B Bᵀ, PSD
                nudge = nudge @ nudge.T / x.shape[0]
            values[v] = x + 0.05 * np.abs(x).max(initial=1.0) * nudge
        for c in p.constraints:
            shape = num.shapes[c.multiplier.name]
            values[c.multiplier.name] = draw(rng, MULTIPLIER_DOMAIN[c.kind], shape)
        values = as_dtype(values, num.dtype)
        grads = num.lagrangian_grad({k: num.jnp.asarray(v) for k, v in values.items()})
        out = derived_fn(**values)
        out = out if isinstance(out, dict) else {p.variables[0]: out}
        expected.append(np.concatenate([np.ravel(grads[v]) for v in p.variables]))
        got.append(np.concatenate([np.ravel(out[v]) for v in p.variables]))
    return compare(
        "stationarity",
        ", ".join(p.variables),
        "jax.grad of L",
        np.stack(got),
        np.stack(expected),
        rtol,
        atol,
    )


def _off_bounds(p, v, x, grad):
    """|∇_x L| where x is inside its domain; at a domain's bound, only the part that
    pushes out of it (the bound's own multiplier takes the rest: ∇L_i >= 0 at a lower
    bound, L being the minimization's): min ‖x − a‖² on sum(x) = 1 of a positive x has
    its optimum [1, 0, 0] at a = [5, −5, 1], where ∇L = [0, 10, 0] and x_2 = 0 holds it
    (the solver's polish walked out of the bound to make ∇L 0 instead)."""
    grad = np.asarray(grad)  # in the checked dtype (float32 stays float32)
    domain = p.base.symbol(v).domain
    if domain not in BOUNDED:
        return np.abs(grad)
    at_lo, at_hi = at_bound(x, *BOUNDS[domain])
    zero = np.zeros_like(grad)
    pushed = np.where(at_hi, np.maximum(grad, zero), np.abs(grad))
    return np.where(at_lo, np.maximum(-grad, zero), pushed).astype(grad.dtype)


def kkt_residual_check(d, num, good) -> Check:
    """The derived KKT conditions, evaluated in ``num.dtype`` at the numeric optimum and
    its estimated multipliers: every residual should vanish (to the solver's accuracy)."""
    p, dtype = d.problem, num.dtype
    derived_fn = d.lagrangian_derivation.function("gradient", backend="numpy")
    residuals = []
    for params, opt in good:
        values = as_dtype({**params, **opt.x, **opt.multipliers}, dtype)
        out = derived_fn(**values)
        out = out if isinstance(out, dict) else {p.variables[0]: out}
        _, cons = num.parts({k: num.jnp.asarray(v) for k, v in values.items()})
        # stationarity sums terms as large as the multipliers (∇f = −Jᵀλ): relative to
        # them, as 1e12 ‖x − 1‖²'s 7e-4 is 4e-16 of its 2e12 (a false failure before)
        scale = max(
            [1.0] + [float(np.max(np.abs(m), initial=0.0)) for m in opt.multipliers.values()]
        )
        station = [_off_bounds(p, v, opt.x[v], out[v]) / scale for v in p.variables]
        primal, dual, slack = [], [], []
        for c, val in zip(p.constraints, cons):
            val = np.asarray(val)
            lam = values[c.multiplier.name]
            if c.kind == "ineq":
                primal.append(val)
                dual.append(-lam)
                slack.append(np.abs(lam * val))
            else:
                primal.append(np.abs(val))
        residuals.append([_largest(r, dtype) for r in (station, primal, dual, slack)])
    res = np.array(residuals)
    _, kkt_atol = solver_tolerance(dtype, 0.0, SOLVER_ATOL * 10)
    check = compare(
        "KKT residuals",
        ", ".join(p.variables),
        num.reference,
        res,
        np.zeros(res.shape),  # at the solver's (float64) optimum
        0.0,
        kkt_atol,
    )
    if not check.passed:
        names = (
            "stationarity",
            "primal feasibility",
            "dual feasibility",
            "complementary slackness",
        )
        worst = names[int(np.argmax(res.max(axis=0)))]
        check = Check(
            check.kind,
            check.wrt,
            check.reference,
            check.points,
            check.max_abs_error,
            check.max_rel_error,
            False,
            check.worst,
            note=f"the largest residual is {worst} ({res.max():.3g})",
        )
    return check


def _largest(arrays, dtype):
    """The largest entry of ``arrays``, or 0 (the positive part), in ``dtype``."""
    zero = np.zeros((), DTYPES[dtype])
    return max((np.max(a, initial=zero) for a in arrays), default=zero)
