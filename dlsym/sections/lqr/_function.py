"""Numeric functions of the LQR results (``d.function``): P, the stabilizing solution of
the Riccati equation, and the optimal gain K, as functions of A, B, Q, R.

The derived Riccati right-hand side and gain (the formulas the results show, parsed in
the Bellman step's scope and run as generated code) are iterated from P = Q + s I
(``start``): that is value iteration on V(x) = x^T P x, which converges to the
stabilizing solution when (A, B) is stabilizable (and Q sees every mode on the unit
circle), linearly at the rate rho(A - B K)^2. It stops when an update
changes P by at most ``TOLERANCE_EPS`` machine epsilons relative to its largest entry.
Where it has not after ``VALUE_STEPS`` updates (a closed loop at 1 − 1e-8, A = 1 and
B = 1e-8, needs a billion), Newton's method on P = F(P) for the derived F goes on from
the iterate reached: the derivative of the Riccati map is the Stein operator of the
closed loop, so this is Kleinman and Hewer's iteration, monotone from a stabilizing
start and quadratic near P*.
"""

from __future__ import annotations

import re

import numpy as np

from dlsym.codegen import _compile as codegen
from dlsym.expr._parse import Scope, parse_expression
from dlsym.sections._signature import Signature, array_module

# the formulas as derived (and shown, with the spec's names for A, B, Q, R)
RICCATI_FORMULA = "Q + A.T @ P @ A - A.T @ P @ B @ inv(R + B.T @ P @ B) @ B.T @ P @ A"
GAIN_FORMULA = "inv(R + B.T @ P @ B) @ B.T @ P @ A"
VALUE_STEPS = 10_000  # value iteration's updates before Newton's method takes over
MAX_ITERATIONS = 100_000  # where it does not (a large system): rho = 0.9998 converges
NEWTON_STEPS = 200  # halving from far above P* (B = 1e-8: 1e12 to 1e8) takes about 15
# the most states Newton's method is taken for: its derivative has n⁴ entries, solved
# in n⁶ (at n = 100, 55 GB for the 17 systems verification checks at once); a slow
# closed loop in a larger system is left to value iteration, as before
NEWTON_STATES = 12
# Newton's steps stop shrinking at the rounding of F(P) − P, which cancels terms of
# size |P| / (1 − ρ²): a stall for this many steps ends them, and where the smallest
# step is at most NEWTON_SETTLED |P| the P before it is the solution (A = 1,
# B = 1e-8: P = 1e8 is known to 1e-8 relative, SciPy's as well)
NEWTON_STALL = 3
NEWTON_SETTLED = 1e-6
# past VALUE_STEPS in a system too large for Newton's method, a change still above this
# (relative) means it did not converge; below it, the update is at its rounding floor
STALL = 1e-9
# the imaginary step of the complex-step derivative of F (relative to |P|): exact to
# rounding for a rational F, as no difference is taken
COMPLEX_STEP = 1e-20
# an update changing P by at most this many machine epsilons (of the computation's float
# type, relative to max |P|) ends the iteration: 1.4e-14 in float64
TOLERANCE_EPS = 64


def renamed(text: str, names: dict) -> str:
    """The generic formula with the spec's own names for A, B, Q, R."""
    return re.sub(r"(?<![A-Za-z\\])([ABQR])(?![A-Za-z])", lambda m: names[m.group(1)], text)


def compile_update(bellman, names: dict, backend: str):
    """The generated code of (Riccati right-hand side, gain): it takes the spec's A, B,
    Q, R, then P, then the dims n, k."""
    spec = bellman.spec
    scope = Scope({s.name: s.symbol for s in spec.symbols}, spec.dim_symbols, spec.algebra)
    loc = spec.doc.loc()
    exprs = [
        parse_expression(renamed(text, names), what, loc, scope)
        for text, what in ((RICCATI_FORMULA, "the Riccati update"), (GAIN_FORMULA, "the gain"))
    ]
    roles = [spec.symbol(names[r]).symbol for r in ("A", "B", "Q", "R")]
    # P: the value matrix the Bellman step declares (lqr._section.VALUE)
    args = roles + [spec.symbol("P").symbol] + [spec.dim_symbols[k] for k in spec.dims]
    return codegen.lambdify(args, exprs, backend)


def start(Q, xp=np):
    """Where value iteration starts: Q + s I, s the largest |entry| of Q (1 where Q is 0).
    From P = Q, a semidefinite Q (diag(0, 1)) that does not see an unstable mode which
    the input reaches stays at 0 there and converges to a fixed point that does not
    stabilize (P[0, 0] = 0 of A = diag(2, 1), where SciPy's is 20.6); a positive
    definite start reaches the stabilizing one."""
    n = Q.shape[-1]
    s = xp.max(xp.abs(Q), axis=(-2, -1), keepdims=True)
    return Q + xp.where(s > 0, s, 1) * xp.eye(n, dtype=Q.dtype)


def _solve_numpy(update, A, B, Q, R, dims):
    P = start(Q)
    tol = TOLERANCE_EPS * np.finfo(np.result_type(P, float)).eps
    change = np.inf
    newton = P.shape[-1] <= NEWTON_STATES
    with np.errstate(all="ignore"):  # a diverging P overflows: said below, not warned
        for _ in range(VALUE_STEPS if newton else MAX_ITERATIONS):
            nxt = update(A, B, Q, R, P, *dims)[0]
            if not np.all(np.isfinite(nxt)):
                raise ValueError(
                    "the Riccati recursion diverged: (A, B) is not stabilizable, so the "
                    "equation has no stabilizing solution"
                )
            change = float(np.max(np.abs(nxt - P)))
            P = nxt
            if change <= tol * float(np.max(np.abs(P))):
                return P
        solved = (
            _newton_numpy(update, A, B, Q, R, P, dims, tol)
            if newton
            else (P if change <= STALL * float(np.max(np.abs(P))) else None)
        )
    if solved is not None:
        return solved
    raise ValueError(
        f"the Riccati equation was not solved (value iteration, then Newton's method, "
        f"last change {change:.3g}): (A, B) is not stabilizable, or Q leaves a mode on the "
        "unit circle unobserved, so the equation has no stabilizing solution"
    )


def _newton_numpy(update, A, B, Q, R, P, dims, tol):
    """Newton's method on F(P) − P = 0 from ``P``, F's derivative by the complex step
    along each entry; the solution, or None where it did not settle."""
    n = P.shape[-1]
    units = np.eye(n * n).reshape(n * n, n, n)
    best, since, kept = np.inf, 0, None
    for _ in range(NEWTON_STEPS):
        h = COMPLEX_STEP * max(1.0, float(np.max(np.abs(P))))
        rows = [np.imag(update(A, B, Q, R, P + 1j * h * E, *dims)[0]).ravel() / h for E in units]
        jac = np.stack(rows, axis=1)  # column k: dF/dP along the k-th entry
        residual = (update(A, B, Q, R, P, *dims)[0] - P).ravel()
        step = np.linalg.solve(jac - np.eye(n * n), -residual).reshape(n, n)
        change = float(np.max(np.abs(step)))
        if not np.isfinite(change):
            return None
        if change < best:
            best, since, kept = change, 0, P
        else:
            since += 1
        P = P + step
        scale = float(np.max(np.abs(P)))
        if change <= tol * scale:
            return P
        if since >= NEWTON_STALL:
            break
    return kept if kept is not None and best <= NEWTON_SETTLED * np.max(np.abs(kept)) else None


def _solve_jax(update, A, B, Q, R, dims):
    """The same iteration as a jax.lax.while_loop (traceable: the function can be
    jitted); where it did not converge the result is NaN (a traced function cannot
    raise)."""
    import jax
    import jax.numpy as jnp

    tol = TOLERANCE_EPS * jnp.finfo(jnp.result_type(Q)).eps

    newton = Q.shape[-1] <= NEWTON_STATES
    steps = VALUE_STEPS if newton else MAX_ITERATIONS

    def cond(c):
        P, change, i = c
        return (change > tol * jnp.max(jnp.abs(P))) & (i < steps)

    def body(c):
        P, _, i = c
        nxt = update(A, B, Q, R, P, *dims)[0]
        return nxt, jnp.max(jnp.abs(nxt - P)), i + 1

    P, change, _ = jax.lax.while_loop(cond, body, (start(Q, jnp), jnp.asarray(jnp.inf, Q.dtype), 0))
    done = jnp.isfinite(change) & (change <= tol * jnp.max(jnp.abs(P)))
    if not newton:  # at its rounding floor, P is as good as it gets
        ok = jnp.isfinite(change) & (change <= STALL * jnp.max(jnp.abs(P)))
        return jnp.where(ok, P, jnp.nan)
    P, ok = newton_jax(lambda M: update(A, B, Q, R, M, *dims)[0], P, done, tol)
    return jnp.where(done | ok, P, jnp.nan)


def newton_jax(rhs, P, done, tol):
    """Newton's method on rhs(P) − P = 0 from ``P`` (none where ``done``), its
    derivative by jax.jacfwd, as a jax.lax.while_loop: (the solution, whether it
    settled), as ``_newton_numpy``."""
    import jax
    import jax.numpy as jnp

    n = P.shape[-1]
    if n > NEWTON_STATES:  # too large to solve for: as value iteration left it
        return P, jnp.zeros((), bool)
    eye = jnp.eye(n * n, dtype=P.dtype)
    inf = jnp.asarray(jnp.inf, P.dtype)

    def cond(c):
        P, change, best, since, kept, i = c
        going = jnp.isfinite(change) & (change > tol * jnp.max(jnp.abs(P)))
        return ~done & ((i == 0) | going) & (since < NEWTON_STALL) & (i < NEWTON_STEPS)

    def body(c):
        P, _, best, since, kept, i = c
        jac = jax.jacfwd(rhs)(P).reshape(n * n, n * n)
        step = jnp.linalg.solve(jac - eye, (P - rhs(P)).reshape(-1)).reshape(n, n)
        change = jnp.max(jnp.abs(step))
        better = change < best
        return (
            P + step,
            change,
            jnp.where(better, change, best),
            jnp.where(better, 0, since + 1),
            jnp.where(better, P, kept),
            i + 1,
        )

    P, change, best, since, kept, _ = jax.lax.while_loop(cond, body, (P, inf, inf, 0, P, 0))
    converged = jnp.isfinite(change) & (change <= tol * jnp.max(jnp.abs(P)))
    settled = best <= NEWTON_SETTLED * jnp.max(jnp.abs(kept))
    return jnp.where(converged, P, kept), converged | settled


SOLVERS = {"numpy": _solve_numpy, "jax": _solve_jax}


def lqr_function(bellman, names: dict, kind: str, backend: str):
    """ "riccati": P (n x n), "gain": K (k x n, u = -K x), from the spec's A, B, Q, R (by
    keyword with the spec's names, or positionally in the order A, B, Q, R). Axes in front
    of the declared ones are a batch of systems, solved one by one. NumPy raises a
    ValueError when the recursion does not converge; JAX returns NaN there."""
    spec = bellman.spec
    sig = Signature(
        tuple(spec.symbol(names[r]) for r in ("A", "B", "Q", "R")), spec.dim_values, kind
    )
    update = compile_update(bellman, names, backend)
    xp = array_module(backend)

    def solve(A, B, Q, R, dims):
        P = SOLVERS[backend](update, A, B, Q, R, dims)
        # K at the solution, by the derived gain formula (NaN in, NaN out)
        return P if kind == "riccati" else update(A, B, Q, R, P, *dims)[1]

    if backend == "jax":
        import jax

        # compiled once per set of sizes (the sizes fix the shapes), not per call
        solve = jax.jit(solve, static_argnums=4)

    def one(values: dict, sizes: dict):
        A, B, Q, R = (xp.asarray(values[n], dtype=float) for n in sig.names)
        return solve(A, B, Q, R, tuple(sizes[spec.dim_symbols[k]] for k in spec.dims))

    return sig.function(one, xp, kind, lqr_function.__doc__)
