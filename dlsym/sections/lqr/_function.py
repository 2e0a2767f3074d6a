"""Numeric functions of the LQR results (``d.function``): P, the stabilizing solution of
the Riccati equation, and the optimal gain K, as functions of A, B, Q, R.

The derived Riccati right-hand side and gain (the formulas the results show, parsed in
the Bellman step's scope and run as generated code) are iterated from P = Q: that is
value iteration on V(x) = x^T P x, which converges to the stabilizing solution when (A, B)
is stabilizable and Q > 0, linearly at the rate rho(A - B K)^2. It stops when an update
changes P by at most ``TOLERANCE_EPS`` machine epsilons relative to its largest entry.
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
MAX_ITERATIONS = 100_000  # rho(A - B K) = 0.9998 still converges within this
# an update changing P by at most this many machine epsilons (of the computation's float
# type, relative to max |P|) ends the iteration: 1.4e-14 in float64
TOLERANCE_EPS = 64
# past MAX_ITERATIONS, a change still above this (relative) means it did not converge;
# below it, the update is at its rounding floor and P is as good as it gets
STALL = 1e-9


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


def _solve_numpy(update, A, B, Q, R, dims):
    P = Q
    tol = TOLERANCE_EPS * np.finfo(np.result_type(P, float)).eps
    change = np.inf
    with np.errstate(all="ignore"):  # a diverging P overflows: said below, not warned
        for _ in range(MAX_ITERATIONS):
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
    if change <= STALL * float(np.max(np.abs(P))):
        return P
    raise ValueError(
        f"the Riccati recursion did not converge in {MAX_ITERATIONS} iterations (last "
        f"change {change:.3g}): (A, B) is not stabilizable, or Q leaves a mode on the "
        "unit circle unobserved, so the equation has no stabilizing solution"
    )


def _solve_jax(update, A, B, Q, R, dims):
    """The same iteration as a jax.lax.while_loop (traceable: the function can be
    jitted); where it did not converge the result is NaN (a traced function cannot
    raise)."""
    import jax
    import jax.numpy as jnp

    tol = TOLERANCE_EPS * jnp.finfo(jnp.result_type(Q)).eps

    def cond(c):
        P, change, i = c
        return (change > tol * jnp.max(jnp.abs(P))) & (i < MAX_ITERATIONS)

    def body(c):
        P, _, i = c
        nxt = update(A, B, Q, R, P, *dims)[0]
        return nxt, jnp.max(jnp.abs(nxt - P)), i + 1

    P, change, _ = jax.lax.while_loop(cond, body, (Q, jnp.asarray(jnp.inf, Q.dtype), 0))
    ok = jnp.isfinite(change) & (change <= STALL * jnp.max(jnp.abs(P)))
    return jnp.where(ok, P, jnp.nan)


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
