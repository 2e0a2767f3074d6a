"""Verification of a constrained problem against an independent solver.

At ``points`` random draws of the parameters (each symbol from its domain):

1. the problem is solved numerically with ``scipy.optimize.minimize`` (SLSQP, several
   starts; gradients and constraint Jacobians by JAX autodiff of the problem *as written*,
   never of anything dlsym derived); no feasible point means a clear "infeasible" verdict;
2. the multipliers at that optimum are estimated by least squares on the active
   constraints, and the *derived* KKT conditions are evaluated there (stationarity through
   the matrix-form gradient, primal and dual feasibility, complementary slackness);
3. the derived stationarity is compared with ``jax.grad`` of the Lagrangian near the optimum;
4. a closed-form solution, its value and its multipliers are compared with the numeric
   optimum, and a derived dual function with the primal value (strong duality).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.verify import SAMPLERS, Check, compare, jax_device, report

STARTS = 4
REFERENCE = f"scipy SLSQP ({STARTS} starts)"
FEASIBLE_TOL = 1e-7  # largest constraint violation of a feasible numeric optimum
ACTIVE_TOL = 1e-6  # an inequality within this of 0 is active
# a feasible iterate this large, where SLSQP did not converge, means the objective kept
# decreasing along a direction that stays feasible: the problem is unbounded
RUNAWAY = 1e8
# SLSQP stops at about 1e-8 in x on well-conditioned problems: compare the derived
# results with its optimum at these tolerances (the spec's rtol/atol are for exact
# closed forms against autodiff, which agree to rounding error).
SOLVER_RTOL = 1e-6
SOLVER_ATOL = 1e-7
# bounds for SciPy from a variable's domain (the domain of the objective: log, sqrt)
BOUNDS = {
    "positive": (1e-12, None),
    "nonnegative": (0.0, None),
    "unit_interval": (1e-12, 1 - 1e-12),
    "simplex": (0.0, 1.0),
}


@dataclass(frozen=True)
class Optimum:
    """The numeric optimum at one draw of the parameters."""

    feasible: bool
    x: dict  # variable name -> array
    value: float  # of the objective as written (maximize: its maximum)
    multipliers: dict  # multiplier name -> array (estimated)
    violation: float
    regular: bool  # the active constraints' gradients are independent (LICQ)
    runaway: float = 0.0  # |x|_inf of an optimum that ran off to infinity (unbounded)


class Numeric:
    """The problem's functions, lambdified from the expressions as written, in JAX."""

    def __init__(self, problem):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        p = self.p = problem
        base = p.base
        self.sizes = {k: int(v) for k, v in base.dim_values.items()}
        self.shapes = {
            s.name: tuple(int(d.subs(base.dim_values)) for d in s.shape) for s in base.symbols
        }
        for c in p.constraints:
            self.shapes[c.multiplier.name] = tuple(int(d.subs(base.dim_values)) for d in c.shape)
        self.names = [s.name for s in base.symbols]
        dims = [base.dim_symbols[k] for k in base.dims]
        exprs = [p.expand(p.f)] + [p.expand(c.func) for c in p.constraints]
        f = codegen.lambdify([s.symbol for s in base.symbols] + dims, exprs, "jax")
        dim_vals = [base.dims[k] for k in base.dims]
        cshapes = [self.shapes[c.multiplier.name] for c in p.constraints]

        def parts(values):
            outs = f(*[values[n] for n in self.names], *dim_vals)
            return (
                jnp.asarray(outs[0], dtype=float),
                [
                    jnp.broadcast_to(jnp.asarray(o, dtype=float), s)
                    for o, s in zip(outs[1:], cshapes)
                ],
            )

        self.parts = parts
        self.var_sizes = [int(np.prod(self.shapes[v], dtype=int)) for v in p.variables]

        def unflatten(z, params):
            values, at = dict(params), 0
            for v, n in zip(p.variables, self.var_sizes):
                values[v] = jnp.reshape(z[at : at + n], self.shapes[v])
                at += n
            return values

        def objective(z, params):
            return parts(unflatten(z, params))[0]

        def side(kind):
            def fn(z, params):
                cons = parts(unflatten(z, params))[1]
                vals = [
                    jnp.reshape(v, (-1,)) for v, c in zip(cons, p.constraints) if c.kind == kind
                ]
                return jnp.concatenate(vals) if vals else jnp.zeros((0,))

            return fn

        def lagrangian_z(z, params, lam, nu):
            return objective(z, params) + lam @ side("ineq")(z, params) + nu @ side("eq")(z, params)

        self.unflatten = unflatten
        self.f = jax.jit(jax.value_and_grad(objective))
        self.g, self.h = jax.jit(side("ineq")), jax.jit(side("eq"))
        self.jg, self.jh = jax.jit(jax.jacfwd(side("ineq"))), jax.jit(jax.jacfwd(side("eq")))
        self.hess = jax.jit(jax.hessian(lagrangian_z))
        self.lagrangian = jax.jit(self._lagrangian)

    def _lagrangian(self, values):
        f, cons = self.parts(values)
        jnp = self.jnp
        return f + sum(
            (jnp.sum(values[c.multiplier.name] * v) for c, v in zip(self.p.constraints, cons)), 0.0
        )

    # -- SciPy ----------------------------------------------------------------------------

    def bounds(self):
        out = []
        for v, n in zip(self.p.variables, self.var_sizes):
            out += [BOUNDS.get(self.p.base.symbol(v).domain, (None, None))] * n
        return out

    def start(self, rng):
        parts = []
        for v, n in zip(self.p.variables, self.var_sizes):
            dom = self.p.base.symbol(v).domain
            parts.append(rng.uniform(0.1, 0.9, n) if dom in BOUNDS else rng.standard_normal(n))
        return np.concatenate(parts)

    def solve(self, params: dict, rng) -> Optimum:
        from scipy.optimize import minimize

        params = {k: self.jnp.asarray(v) for k, v in params.items()}

        def fun(z):
            val, grad = self.f(z, params)
            return float(val), np.asarray(grad, dtype=float)

        cons = []
        if self.p.inequalities:  # SciPy's 'ineq' means fun(z) >= 0: -g(z) >= 0
            cons.append(
                {
                    "type": "ineq",
                    "fun": lambda z: -np.asarray(self.g(z, params)),
                    "jac": lambda z: -np.asarray(self.jg(z, params)),
                }
            )
        if self.p.equalities:
            cons.append(
                {
                    "type": "eq",
                    "fun": lambda z: np.asarray(self.h(z, params)),
                    "jac": lambda z: np.asarray(self.jh(z, params)),
                }
            )
        best = None
        for _ in range(STARTS):
            x0 = self.start(rng)
            for _ in range(50):  # start inside the objective's domain (log, sqrt, 1/x)
                if np.isfinite(fun(x0)[0]):
                    break
                x0 = self.start(rng)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = minimize(
                    fun,
                    x0,
                    jac=True,
                    method="SLSQP",
                    constraints=cons,
                    bounds=self.bounds(),
                    options={"maxiter": 1000, "ftol": 1e-15},
                )
            z = np.asarray(res.x, dtype=float)
            viol = self.violation(z, params)
            val = fun(z)[0]
            if not np.isfinite(val):
                continue
            key = (viol > FEASIBLE_TOL, val if viol <= FEASIBLE_TOL else viol)
            if best is None or key < best[0]:
                best = (key, z, viol, val, res.success)
        if best is None:
            return Optimum(False, {}, float("nan"), {}, float("inf"), False)
        _, z, viol, val, success = best
        size = float(np.max(np.abs(z), initial=0.0))
        if viol <= FEASIBLE_TOL and not success and size > RUNAWAY:
            # minimize sum(x) s.t. x <= 1: SLSQP gives up with x near -1e31
            return Optimum(False, {}, float(val), {}, viol, False, runaway=size)
        if viol <= FEASIBLE_TOL:
            z = self.polish(z, params)
            viol, val = self.violation(z, params), fun(z)[0]
        lam, regular = self.multipliers(z, params)
        x = {k: np.asarray(v) for k, v in self.unflatten(self.jnp.asarray(z), {}).items()}
        value = val if self.p.sense == "minimize" else -val
        return Optimum(viol <= FEASIBLE_TOL, x, value, lam, viol, regular)

    def polish(self, z, params, steps: int = 8):
        """Newton steps on the KKT system of the active constraints (JAX derivatives of
        the problem as written), from SLSQP's optimum: SLSQP stops near 1e-8, this brings
        the optimum and its multipliers to rounding error. Kept only if it stays feasible,
        with nonnegative multipliers, and lowers the residual."""
        g = np.asarray(self.g(z, params))
        active = g >= -ACTIVE_TOL
        n, na, nh = len(z), int(active.sum()), len(np.asarray(self.h(z, params)))

        def residual(z, mu):
            grad = np.asarray(self.f(z, params)[1])
            jg = np.asarray(self.jg(z, params)).reshape(len(g), n)[active]
            jh = np.asarray(self.jh(z, params)).reshape(nh, n)
            r = np.concatenate(
                [
                    grad + jg.T @ mu[:na] + jh.T @ mu[na:],
                    np.asarray(self.g(z, params))[active],
                    np.asarray(self.h(z, params)),
                ]
            )
            return r, jg, jh

        mu = np.zeros(na + nh)
        grad = np.asarray(self.f(z, params)[1])
        r, jg, jh = residual(z, mu)
        a = np.concatenate([jg, jh])
        if a.size:
            mu = np.linalg.lstsq(a.T, -grad, rcond=None)[0]
        r, jg, jh = residual(z, mu)
        start_norm = np.abs(r).max(initial=0.0)
        zz, best = z.copy(), (start_norm, z)
        for _ in range(steps):
            lam = np.zeros(len(g))
            lam[active] = mu[:na]
            hess = np.asarray(self.hess(zz, params, lam, mu[na:])).reshape(n, n)
            k = np.block([[hess, a.T], [a, np.zeros((na + nh, na + nh))]]) if a.size else hess
            step = np.linalg.lstsq(k, -r, rcond=None)[0]
            zz, mu = zz + step[:n], mu + step[n:]
            r, jg, jh = residual(zz, mu)
            a = np.concatenate([jg, jh])
            norm = np.abs(r).max(initial=0.0)
            if not np.isfinite(norm):
                break
            if (
                norm < best[0]
                and self.violation(zz, params) <= FEASIBLE_TOL
                and (mu[:na] >= -ACTIVE_TOL).all()
            ):
                best = (norm, zz.copy())
            if norm < 1e-14:
                break
        return best[1]

    def violation(self, z, params) -> float:
        g = np.asarray(self.g(z, params))
        h = np.asarray(self.h(z, params))
        return float(max(np.max(g, initial=0.0), np.max(np.abs(h), initial=0.0)))

    def multipliers(self, z, params):
        """Least-squares multipliers of the active constraints at z: the KKT multipliers
        when z is a regular optimum."""
        grad = np.asarray(self.f(z, params)[1])
        g = np.asarray(self.g(z, params))
        active = g >= -ACTIVE_TOL
        jg = np.asarray(self.jg(z, params)).reshape(len(g), len(z))
        jh = np.asarray(self.jh(z, params)).reshape(-1, len(z))
        a = np.concatenate([jg[active], jh]).T
        mu = np.linalg.lstsq(a, -grad, rcond=None)[0] if a.size else np.zeros(0)
        regular = a.size == 0 or np.linalg.matrix_rank(a) == a.shape[1]
        lam = np.zeros(len(g))
        lam[active] = mu[: int(active.sum())]
        nu = mu[int(active.sum()) :]
        out, at = {}, {"ineq": 0, "eq": 0}
        for c in self.p.constraints:
            shape = self.shapes[c.multiplier.name]
            n = int(np.prod(shape, dtype=int))
            src = lam if c.kind == "ineq" else nu
            out[c.multiplier.name] = src[at[c.kind] : at[c.kind] + n].reshape(shape)
            at[c.kind] += n
        return out, bool(regular)


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


def solve_scalar(fn, nonnegative: bool = False) -> float:
    """A root of a scalar equation fn(t) = 0 (a parametric solution's multiplier).

    ``nonnegative``: the multiplier of an inequality, 0 when fn(0) <= 0 (the constraint
    is inactive), else the positive root. Sign changes are looked for on a logarithmic
    grid and refined with Brent's method; one across a pole is rejected."""
    from scipy.optimize import brentq

    def safe(t):
        with np.errstate(all="ignore"):
            try:
                v = float(fn(t))
            except (ZeroDivisionError, OverflowError, ValueError):
                return float("nan")
        return v

    if nonnegative and safe(0.0) <= 0:
        return 0.0
    mags = np.logspace(-8, 8, 161)
    grid = mags if nonnegative else np.concatenate([-mags[::-1], [0.0], mags])
    vals = [safe(t) for t in grid]
    pts = [(t, v) for t, v in zip(grid, vals) if np.isfinite(v)]
    for (a, fa), (b, fb) in zip(pts, pts[1:]):
        if fa == 0:
            return float(a)
        if fa * fb < 0:
            root = brentq(safe, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
            # a sign change across a pole (1/t at 0) converges to the pole: reject it
            if abs(safe(root)) < 1e-9:
                return float(root)
    return float("nan")
