"""Verification of a constrained problem against an independent solver.

At ``points`` random draws of the parameters (each symbol from its domain):

1. the problem is solved numerically (``_num``) with ``scipy.optimize.minimize`` (SLSQP,
   several starts; gradients and constraint Jacobians by JAX autodiff of the problem *as
   written*, never of anything dlsym derived); no feasible point means a clear
   "infeasible" verdict;
2. the multipliers at that optimum are estimated by least squares on the active
   constraints, and the *derived* KKT conditions are evaluated there (stationarity through
   the matrix-form gradient, primal and dual feasibility, complementary slackness);
3. the derived stationarity is compared with ``jax.grad`` of the Lagrangian near the optimum;
4. a closed-form solution, its value and its multipliers are compared with the numeric
   optimum, and a derived dual function with the primal value (strong duality).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dlsym.codegen._jax import jax_x64
from dlsym.sections.constrained._num import (
    FEASIBLE_TOL,
    REFERENCE,
    SOLVER_ATOL,
    SOLVER_RTOL,
    STARTS,
    Numeric,
)
from dlsym.verify import SAMPLERS, Check, compare, jax_device, report


def sample_parameters(problem, points: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    base = problem.base
    draws = []
    for _ in range(points):
        draw = {}
        for s in problem.parameters:
            shape = tuple(int(d.subs(base.dim_values)) for d in s.shape)
            draw[s.name] = np.asarray(SAMPLERS[s.domain](rng, shape), dtype=float)
        draws.append(draw)
    return draws


def verify(d, points, seed, device, dtype, rtol, atol):
    import jax

    jax_x64()
    dev = jax_device(device)
    p = d.problem
    with jax.default_device(dev):
        num = Numeric(p)
        draws = sample_parameters(p, points, seed)
        rng = np.random.default_rng(seed + 1)
        optima = [num.solve(draw, rng) for draw in draws]
        checks = [feasibility_check(p, optima)]
        good = [(dr, o) for dr, o in zip(draws, optima) if o.feasible]
        if good:
            checks.append(stationarity_check(d, num, good, rng, rtol, atol))
            checks.append(kkt_residual_check(d, num, good))
            if d.solution is not None and d.solution.found:
                checks += d.solution.checks(num, good)
            if d.dual is not None and d.dual.found:
                checks += d.dual.checks(num, good)
    out = report(checks, points, dtype, dev.platform, rtol, atol)
    if not good:  # nothing was compared with a solver optimum
        return out
    return dataclasses.replace(
        out,
        tolerance_note=f"comparisons with the solver's optimum at rtol={SOLVER_RTOL:g}, "
        f"atol={SOLVER_ATOL:g}: SLSQP converges to about 1e-8",
    )


def feasibility_check(p, optima) -> Check:
    bad = [i for i, o in enumerate(optima) if not o.feasible]
    worst = max((o.violation for o in optima), default=0.0)
    if not bad:
        return Check("optimum", "", REFERENCE, len(optima), 0.0, 0.0, True)
    runaway = [i for i in bad if optima[i].runaway]
    if runaway:
        o = optima[runaway[0]]
        return Check(
            "optimum",
            "",
            REFERENCE,
            len(optima),
            float("inf"),
            float("inf"),
            False,
            note=f"unbounded: at {len(runaway)} of {len(optima)} draws of the "
            f"parameters the solver's feasible iterates ran off to |x| = "
            f"{o.runaway:.1e} with the objective still improving (first: draw "
            f"{runaway[0]}, objective {o.value:.3g}); the problem looks "
            f"unbounded {'below' if p.sense == 'minimize' else 'above'} (or "
            "its infimum is not attained), so it has no optimum",
        )
    return Check(
        "optimum",
        "",
        REFERENCE,
        len(optima),
        worst,
        worst,
        False,
        note=f"infeasible: no point satisfies the constraints (to {FEASIBLE_TOL:g}) "
        f"from {STARTS} starts at {len(bad)} of {len(optima)} draws of the "
        f"parameters (first: draw {bad[0]}); the problem looks infeasible",
    )


def stationarity_check(d, num, good, rng, rtol, atol) -> Check:
    """The derived gradient of L against jax.grad of L (from the problem as written), at
    points near each numeric optimum (inside the objective's domain) with random
    multipliers."""
    import jax

    p = d.problem
    derived_fn = d.lagrangian_derivation.function("gradient", backend="numpy")
    expected, got = [], []
    for draw, opt in good:
        values = dict(draw)
        for v in p.variables:
            x = opt.x[v]
            values[v] = x + 0.05 * np.abs(x).max(initial=1.0) * rng.uniform(0, 1, x.shape)
        for c in p.constraints:
            shape = num.shapes[c.multiplier.name]
            m = rng.uniform(0.0, 2.0, shape) if c.kind == "ineq" else rng.standard_normal(shape)
            values[c.multiplier.name] = m
        grads = jax.grad(num._lagrangian)(
            {k: num.jnp.asarray(v, dtype=float) for k, v in values.items()}
        )
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


def kkt_residual_check(d, num, good) -> Check:
    """The derived KKT conditions at the numeric optimum and its estimated multipliers:
    every residual should vanish (to the solver's accuracy)."""
    p = d.problem
    derived_fn = d.lagrangian_derivation.function("gradient", backend="numpy")
    residuals = []
    for draw, opt in good:
        values = {**draw, **opt.x, **opt.multipliers}
        out = derived_fn(**values)
        out = out if isinstance(out, dict) else {p.variables[0]: out}
        station = max(float(np.max(np.abs(out[v]))) for v in p.variables)
        _, cons = num.parts({k: num.jnp.asarray(v, dtype=float) for k, v in values.items()})
        primal = dual = slack = 0.0
        for c, val in zip(p.constraints, cons):
            val = np.asarray(val)
            lam = opt.multipliers[c.multiplier.name]
            if c.kind == "ineq":
                primal = max(primal, float(np.max(val, initial=0.0)))
                dual = max(dual, float(np.max(-lam, initial=0.0)))
                slack = max(slack, float(np.max(np.abs(lam * val), initial=0.0)))
            else:
                primal = max(primal, float(np.max(np.abs(val), initial=0.0)))
        residuals.append([station, primal, dual, slack])
    res = np.asarray(residuals)
    check = compare(
        "KKT residuals",
        ", ".join(p.variables),
        REFERENCE,
        res,
        np.zeros_like(res),
        0.0,
        SOLVER_ATOL * 10,
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
