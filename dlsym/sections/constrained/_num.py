"""The independent numeric reference of a constrained problem: SciPy's SLSQP.

At one draw of the parameters, ``Numeric.solve`` minimizes the problem *as written*
(``scipy.optimize.minimize``, SLSQP, several starts inside the objective's domain;
gradients and constraint Jacobians by JAX autodiff of the expressions as written, never of
anything dlsym derived), polishes the optimum with Newton steps on the KKT system of the
active constraints, and estimates the multipliers by least squares. The solver runs in
float64 whatever the verification's dtype (SciPy's); ``Numeric.dtype`` is the dtype the
checks of ``_verify`` evaluate derived results in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dlsym.codegen import _compile as codegen
from dlsym.verify import draw, interval

STARTS = 4
FEASIBLE_TOL = 1e-7  # largest constraint violation of a feasible numeric optimum
ACTIVE_TOL = 1e-6  # an inequality within this of 0 is active
# SLSQP's stopping test on the objective's change. Tighter than the objective's own
# rounding (1e-15 at a value near 3) it is never met and every start runs all of
# maxiter (a 50-constraint QP: 1000 iterations, 2 s, where 2 do); polish() then takes
# the optimum to rounding error
FTOL = 1e-12
# a feasible iterate this large, where SLSQP did not converge, means the objective kept
# decreasing along a direction that stays feasible: the problem is unbounded
RUNAWAY = 1e8
# SLSQP stops at about 1e-8 in x on well-conditioned problems: compare the derived
# results with its optimum at these tolerances (the spec's rtol/atol are for exact
# closed forms against autodiff, which agree to rounding error).
SOLVER_RTOL = 1e-6
SOLVER_ATOL = 1e-7
# a run whose iterates stay infeasible and whose smallest violation has not dropped by 1 %
# in this many iterations is stopped: sum(x**2) <= -1 has no feasible point, and SLSQP's
# 1000 iterations and trust-constr's 3000 from each start (33 s for 4 draws) only said so
# at length. A run that is solving (dependent equalities, a slow descent to the feasible
# set) lowers its violation far faster, and one that has reached the feasible set is
# never stopped
STALL_ITERATIONS = 150
STALL_PROGRESS = 0.99
# a feasible run whose objective has not dropped by this much of its size in this many
# iterations is stopped too: at min x² + y² s.t. xy = 1, SLSQP reached (1, 1) to 2e-8
# and ran on to 1000 iterations (4 of 16 starts) bouncing under its ftol of 1e-12;
# polish() takes such a point to rounding error
SETTLED_ITERATIONS = 50
SETTLED_TOL = 1e-11
# where SLSQP starts a variable with bounds: inside every bounded domain
START = interval(0.1, 0.9)


# bounds for SciPy from a variable's domain (the domain of the objective: log, sqrt)
def at_bound(x, lo, hi) -> tuple:
    """(x at its lower bound, x at its upper bound), within ACTIVE_TOL relative to x, for
    a number or an array x; a bound None is none."""
    x = np.asarray(x, dtype=float)
    near = ACTIVE_TOL * np.maximum(1.0, np.abs(x))
    none = np.zeros(x.shape, dtype=bool)
    return (none if lo is None else x <= lo + near), (none if hi is None else x >= hi - near)


# the domains whose bounds are the variable's own, not a constraint's: a closed form must
# stay inside them, and at one the bound's multiplier takes stationarity's residual
BOUNDED = ("positive", "nonnegative", "unit_interval")

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
    """The problem's functions, lambdified from the expressions as written, in JAX, and
    ``dtype``: what the checks evaluate derived results in (the solver runs in float64)."""

    def __init__(self, problem, dtype: str = "float64", starts: int = STARTS):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.dtype = dtype
        self.starts = starts
        self.reference = f"scipy SLSQP ({starts} starts)"
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
            # in the inputs' dtype: float64 for the solver, the verification's for checks
            dtype = jnp.result_type(*[values[n] for n in self.names])
            outs = f(*[values[n] for n in self.names], *dim_vals)
            return (
                jnp.asarray(outs[0], dtype=dtype),
                [
                    jnp.broadcast_to(jnp.asarray(o, dtype=dtype), s)
                    for o, s in zip(outs[1:], cshapes)
                ],
            )

        # compiled once: called eagerly, a problem with 50 listed constraints traces 50
        # indexing ops at every point (1 s per jax.grad of L)
        self.parts = jax.jit(parts)
        # an spd variable is searched through its Cholesky factor (L lower triangular,
        # exp on the diagonal; C = L Lᵀ): SLSQP over the raw entries leaves the domain
        # (a logdet or an inverse of an indefinite or asymmetric matrix), where the
        # problem as written means nothing
        self.spd = {v for v in p.variables if p.base.symbol(v).domain == "spd"}
        self.var_sizes = [
            _triangle(self.shapes[v][0])
            if v in self.spd
            else int(np.prod(self.shapes[v], dtype=int))
            for v in p.variables
        ]

        def unflatten(z, params):
            values, at = dict(params), 0
            for v, n in zip(p.variables, self.var_sizes):
                piece = z[at : at + n]
                if v in self.spd:
                    values[v] = _from_cholesky(jnp, piece, self.shapes[v][0])
                else:
                    values[v] = jnp.reshape(piece, self.shapes[v])
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
        self.lagrangian_grad = jax.jit(jax.grad(self._lagrangian))

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

    def start(self, rng, attempt: int = 0):
        """A starting point: inside a bounded variable's domain; for a real one, a normal
        draw, but every other attempt one in START: with 50 entries, log(alpha + x)
        is finite at a normal draw about once in 10^15 tries."""
        parts = []
        for v, n in zip(self.p.variables, self.var_sizes):
            dom = self.p.base.symbol(v).domain
            if v in self.spd:  # a Cholesky factor near the identity
                parts.append(0.1 * draw(rng, "real", (n,)))
                continue
            inside = dom in BOUNDS or attempt % 2 == 1
            parts.append(START(rng, (n,)) if inside else draw(rng, "real", (n,)))
        return np.concatenate(parts)

    def solve(self, params: dict, rng) -> Optimum:

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
        best, ran_off = None, 0.0  # ran_off: the largest iterate whose value went to -inf
        for _ in range(self.starts):
            x0 = self.start(rng)
            for attempt in range(1, 50):  # start inside the objective's domain (log, 1/x)
                if np.isfinite(fun(x0)[0]):
                    break
                x0 = self.start(rng, attempt)
            # SLSQP's tests are absolute: an objective of size 1e200 is searched as one of
            # size 1 (the same minimiser), or it stops at once and reads as infeasible;
            # one of size 1e-12 too, or its ftol of 1e-12 stops it with 5 digits right
            scale = abs(fun(x0)[0])
            scale = scale if np.isfinite(scale) and scale > 1e-300 else 1.0

            def scaled(z, scale=scale):
                v, g = fun(z)
                return v / scale, g / scale

            options = {"maxiter": 1000, "ftol": FTOL}
            stall = _Stall(lambda z: self.violation(z, params))
            res = _minimize(scaled, x0, "SLSQP", cons, self.bounds(), options, stall)
            success = res.success or stall.settled
            z = np.asarray(res.x, dtype=float)
            viol = self.violation(z, params)
            val = fun(z)[0]
            if not np.isfinite(val):
                if val == -np.inf or np.isnan(val):  # min -‖x‖²: down to -inf
                    # iterates that are nan themselves ran off past float64 (max x P x
                    # s.t. A x = b): max() of a nan would keep the old value
                    size = float(np.max(np.abs(z), initial=0.0))
                    ran_off = max(ran_off, size if np.isfinite(size) else np.inf)
                continue
            key = (viol > FEASIBLE_TOL, val if viol <= FEASIBLE_TOL else viol)
            if best is None or key < best[0]:
                best = (key, z, viol, val, success)
        if best is not None and best[0][0]:
            # no feasible SLSQP run: its least-squares subproblem is singular where
            # equalities repeat or depend on each other (A x = b written twice), which
            # reads as infeasible; SciPy's trust-constr solves those
            found = self._trust_constr(fun, params, best[1])
            if found is not None and not found[0][0]:
                best = found
        if best is None and ran_off > RUNAWAY:
            best_value = -np.inf if self.p.sense == "minimize" else np.inf
            return Optimum(False, {}, best_value, {}, 0.0, False, runaway=ran_off)
        if best is None:
            return Optimum(False, {}, float("nan"), {}, float("inf"), False)
        _, z, viol, val, success = best
        size = float(np.max(np.abs(z), initial=0.0))
        # feasible up to rounding at its own size: x = 1e15 violates sum(x) = 1 by about 1
        if viol <= FEASIBLE_TOL * max(1.0, size) and not success and size > RUNAWAY:
            # minimize sum(x) s.t. x <= 1: SLSQP gives up with x near -1e31
            return Optimum(False, {}, float(val), {}, viol, False, runaway=size)
        if viol <= FEASIBLE_TOL:
            z = self.polish(z, params)
            viol, val = self.violation(z, params), fun(z)[0]
        lam, regular = self.multipliers(z, params)
        x = {k: np.asarray(v) for k, v in self.unflatten(self.jnp.asarray(z), {}).items()}
        value = val if self.p.sense == "minimize" else -val
        return Optimum(viol <= FEASIBLE_TOL, x, value, lam, viol, regular)

    def _trust_constr(self, fun, params, x0):
        """SciPy's trust-constr from ``x0``: (key, z, violation, value, success) as
        ``solve`` ranks its runs, or None where it fails outright."""
        from scipy.optimize import NonlinearConstraint

        cons = []
        if self.p.inequalities:
            cons.append(
                NonlinearConstraint(
                    lambda z: np.asarray(self.g(z, params)),
                    -np.inf,
                    0.0,
                    jac=lambda z: np.asarray(self.jg(z, params)),
                )
            )
        if self.p.equalities:
            cons.append(
                NonlinearConstraint(
                    lambda z: np.asarray(self.h(z, params)),
                    0.0,
                    0.0,
                    jac=lambda z: np.asarray(self.jh(z, params)),
                )
            )
        options = {"maxiter": 3000, "gtol": FTOL, "xtol": FTOL}
        stall = _Stall(lambda z: self.violation(z, params))
        try:
            res = _minimize(fun, x0, "trust-constr", cons, self.bounds(), options, stall)
        except (ValueError, np.linalg.LinAlgError):
            # more equality rows than variables (x[0] == 1, x[1] == 2, x[2] == 3 and
            # sum(x) == 6 for n = 3): its default QR projections need a square factor,
            # SVD's take dependent rows
            options["factorization_method"] = "SVDFactorization"
            try:
                stall = _Stall(lambda z: self.violation(z, params))
                res = _minimize(fun, x0, "trust-constr", cons, self.bounds(), options, stall)
            except (ValueError, np.linalg.LinAlgError):
                return None
        z = np.asarray(res.x, dtype=float)
        viol, val = self.violation(z, params), fun(z)[0]
        if not np.isfinite(val):
            return None
        return (viol > FEASIBLE_TOL, val if viol <= FEASIBLE_TOL else viol), z, viol, val, True

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
                and self.within_bounds(zz)
                and (mu[:na] >= -ACTIVE_TOL).all()
            ):
                best = (norm, zz.copy())
            if norm < 1e-14:
                break
        return best[1]

    def at_bounds(self, z) -> np.ndarray:
        """Which entries of z sit at their domain's bound (``at_bound``)."""
        out = np.zeros(len(z), dtype=bool)
        for i, (value, (lo, hi)) in enumerate(zip(z, self.bounds())):
            low, high = at_bound(value, lo, hi)
            out[i] = bool(low or high)
        return out

    def within_bounds(self, z) -> bool:
        """z inside the domains' bounds (to FEASIBLE_TOL): the polish's Newton steps see
        the constraints only, and walked a positive x's optimum [1, 0, 0] out to the
        ambient [5, −5, 1], which then agreed with a closed form that ignored the
        domain."""
        for value, (lo, hi) in zip(z, self.bounds()):
            if (lo is not None and value < lo - FEASIBLE_TOL) or (
                hi is not None and value > hi + FEASIBLE_TOL
            ):
                return False
        return True

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
        k = int(active.sum())
        mu = _least_squares_multipliers(a, -grad, k) if a.size else np.zeros(0)
        # an entry at its domain's bound (x_2 = 0 of a positive x, no constraint of the
        # spec's holding it) has that bound's multiplier in its row, which the
        # constraints' cannot match: where they leave such rows unmatched, they are
        # fitted to the other rows (ν = 8, not 0, at a = [5, −5, 1] of min ‖x − a‖²
        # s.t. sum(x) = 1)
        free = ~self.at_bounds(z)
        if a.size and free.any() and not free.all():
            off = np.abs(a @ mu + grad)
            if off.max(initial=0.0) > FEASIBLE_TOL * max(1.0, np.abs(grad).max(initial=0.0)):
                mu = _least_squares_multipliers(a[free], -grad[free], k)
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


def _least_squares_multipliers(a, b, inequalities: int):
    """Multipliers with a μ = b in least squares, the first ``inequalities`` of them
    nonnegative (dual feasibility): where the active constraints' gradients are
    dependent (x >= 1 and x <= 1 both active) plain least squares splits the multiplier
    between them and one comes out negative, which a KKT check then read as a violation;
    bounded least squares picks the nonnegative one. The same as lstsq where that is
    unique and feasible."""
    from scipy.optimize import lsq_linear

    low = np.concatenate([np.zeros(inequalities), np.full(a.shape[1] - inequalities, -np.inf)])
    found = lsq_linear(a, b, bounds=(low, np.full(a.shape[1], np.inf)), method="bvls")
    return found.x


class _Stall:
    """A SciPy callback that stops a run (StopIteration) that has stopped making progress:
    its iterates have been infeasible for ``STALL_ITERATIONS`` iterations without lowering
    their smallest violation by 1 % (it has settled at the nearest it gets to the feasible
    set), or feasible for ``SETTLED_ITERATIONS`` without lowering the objective by
    ``SETTLED_TOL`` of its size or the violation by 1 % (it has settled at an optimum:
    ``settled``)."""

    def __init__(self, violation):
        self.violation = violation
        self.iteration = self.best_at = self.value_at = 0
        self.best = self.value = np.inf
        self.feasible = False  # an iterate was feasible: the run is optimizing, let it
        self.settled = False

    def __call__(self, intermediate_result):
        self.iteration += 1
        v = self.violation(np.asarray(intermediate_result.x, dtype=float))
        self.feasible = self.feasible or v <= FEASIBLE_TOL
        if v < STALL_PROGRESS * self.best:
            self.best, self.best_at = v, self.iteration
        elif not self.feasible and self.iteration - self.best_at >= STALL_ITERATIONS:
            raise StopIteration
        if v > FEASIBLE_TOL:
            return
        f = float(intermediate_result.fun)
        if self.value == np.inf or f < self.value - SETTLED_TOL * max(1.0, abs(self.value)):
            self.value, self.value_at = f, self.iteration
        elif min(self.iteration - self.value_at, self.iteration - self.best_at) >= (
            SETTLED_ITERATIONS
        ):  # neither the objective nor the violation moves: not one traded for the other
            self.settled = True
            raise StopIteration


def _minimize(fun, x0, method: str, constraints, bounds, options, callback=None):
    """scipy.optimize.minimize with the gradient, its warnings (a step that leaves the
    objective's domain) kept quiet: each run is judged by its result."""
    from scipy.optimize import minimize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minimize(
            fun,
            x0,
            jac=True,
            method=method,
            constraints=constraints,
            bounds=bounds,
            options=options,
            callback=callback,
        )


def _triangle(d: int) -> int:
    return d * (d + 1) // 2


def _from_cholesky(jnp, z, d: int):
    """The spd matrix L Lᵀ of the lower-triangular L whose entries are z (row by row),
    its diagonal exp(z_ii) > 0: every z gives an spd matrix, and each spd matrix one z."""
    rows, cols = np.tril_indices(d)
    low = jnp.zeros((d, d), dtype=z.dtype).at[rows, cols].set(z)
    low = low - jnp.diag(jnp.diag(low)) + jnp.diag(jnp.exp(jnp.diag(low)))
    return low @ low.T


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
    # 1e-8..1e8 first; where no sign change is there, out to 1e300, coarser (the
    # sparsemax of z = (1e15, 0, 0) has ν = 1e15 − 1)
    for mags in (np.logspace(-8, 8, 161), np.logspace(8, 300, 293)):
        grid = mags if nonnegative else np.concatenate([-mags[::-1], [0.0], mags])
        vals = [safe(t) for t in grid]
        pts = [(t, v) for t, v in zip(grid, vals) if np.isfinite(v)]
        for (a, fa), (b, fb) in zip(pts, pts[1:]):
            if fa == 0:
                return float(a)
            if fa * fb < 0:
                root = brentq(safe, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
                # a sign change across a pole (1/t at 0) converges to the pole: reject it
                # (and a root float64 cannot resolve: ν = −1e30 − 1/3 leaves nan)
                if abs(safe(root)) < 1e-9:
                    return float(root)
    return float("nan")
