"""Independent checks of the LQR derivation at random stabilizable systems.

References: ``scipy.linalg.solve_discrete_are`` (a Schur-method solver that knows nothing
of our steps; its P refined by Newton steps on the Riccati equation, ``dare``), the Riccati recursion iterated to convergence in JAX (value iteration on
P, then Newton's method where it is slow), and JAX autodiff of the Bellman bracket for the minimizing action. Each displayed step
is an identity between matrices and is evaluated on both sides. The systems are rounded
to the verification's dtype; the derived formulas and the JAX references run in it, and
SciPy's DARE solver in float64 (the report says so).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dlsym.codegen._jax import jax_x64
from dlsym.sections.lqr._function import newton_jax, start
from dlsym.verify import (
    ITERATION_TOL,
    SAFETY,
    SETTLED_TOL,
    Check,
    as_dtype,
    cancellation_bound,
    compare,
    draw,
    generator,
    interval,
    jax_device,
    on_device,
)

MAX_DRAWS = 1000  # redraws of unlucky (numerically unsolvable) random systems
RICCATI_ITERATIONS = 100_000
# the most work (floating-point operations, about n³ per system and update) the
# recursion may do over all systems: inside XLA no budget can stop it (50 states ran
# 118 s past a 50 s budget); fewer updates where the systems are large
RICCATI_WORK = 2e10


def riccati_updates(systems: int, n: int) -> int:
    """The recursion's updates: RICCATI_ITERATIONS, fewer where the systems are large."""
    return int(max(1000, min(RICCATI_ITERATIONS, RICCATI_WORK // (systems * 10 * n**3))))


# a recursion whose change has not shrunk in this many steps, and was once below
# SETTLED_TOL times |P|, has settled at rounding error
RICCATI_STALL = 50
RADIUS = interval(0.5, 1.3)  # A's spectral radius: unstable open loops included


# The derived formulas, as the steps show them (batched over leading axes; ``xp`` is numpy
# or jax.numpy). The checks evaluate these against the references.
def gain_formula(A, B, R, P, xp=np):
    """K = (R + B^T P B)^{-1} B^T P A."""
    Bt = xp.swapaxes(B, -1, -2)
    return xp.linalg.solve(R + Bt @ P @ B, Bt @ P @ A)


def riccati_formula(P, A, B, Q, R, xp=np):
    """Q + A^T P A - A^T P B (R + B^T P B)^{-1} B^T P A."""
    At = xp.swapaxes(A, -1, -2)
    return Q + At @ P @ A - At @ P @ B @ gain_formula(A, B, R, P, xp)


def solve_instance(values: dict) -> tuple:
    """P (scipy's DARE), K by the derived formula, and the closed loop's spectral radius."""
    A, B, Q, R = (values[r] for r in ("A", "B", "Q", "R"))
    P = dare(A, B, Q, R)
    K = gain_formula(A, B, R, P)
    return P, K, float(np.max(np.abs(np.linalg.eigvals(A - B @ K))))


def unstabilizable(values: dict) -> str:
    """Why the instance's Riccati equation has no stabilizing solution, by the PBH test
    (Hautus): an eigenvalue λ of A with |λ| >= 1 where [A − λI, B] loses rank (a mode no
    input reaches), or where [A − λI; Q] does (a mode Q does not see); "" where there is
    none, the system stabilizable and detectable."""
    A, B, Q = (np.asarray(values[r], dtype=float) for r in ("A", "B", "Q"))
    n = A.shape[0]

    def rank(M, axis):
        # each row (column) scaled to norm 1 first, which keeps the rank: B's 1e-154
        # beside A's 1e154 is not rounding error
        norms = np.linalg.norm(M, axis=axis, keepdims=True)
        return np.linalg.matrix_rank(M / np.where(norms > 0, norms, 1))

    for lam in np.linalg.eigvals(A):
        if abs(lam) < 1 - 1e-9:
            continue
        shifted = A - lam * np.eye(n)
        if rank(np.hstack([shifted, B]), 1) < n:
            return f"(A, B) is not stabilizable: no input reaches the mode at eigenvalue {lam:.6g}"
        if rank(np.vstack([shifted, Q]), 0) < n:
            return f"Q does not observe the mode at eigenvalue {lam:.6g} of A"
    return ""


def dare(A, B, Q, R):
    """P of the discrete algebraic Riccati equation: SciPy's Schur-method solution,
    refined by Newton's method (``_refined``)."""
    import warnings

    from scipy.linalg import solve_discrete_are

    # SciPy's LinAlgWarning on an ill-conditioned system (A = diag(1e6, 1)) is not
    # printed raw: the comparisons and the PBH test say what holds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _refined(A, B, Q, R, solve_discrete_are(A, B, Q, R))


def _riccati_residual(A, B, Q, R, P):
    S = R + B.T @ P @ B
    return A.T @ P @ A - P - A.T @ P @ B @ np.linalg.solve(S, B.T @ P @ A) + Q


def _refined(A, B, Q, R, P, steps: int = 4):
    """SciPy's DARE solution improved by Newton's method on the Riccati equation
    (Hewer's: the Lyapunov equation of the closed loop its gain gives), kept only while
    the residual shrinks. With R = 1e12 the Schur solver's P is off in its fifth digit
    (a residual of 2.6e6), which a right derivation then failed against; a Newton step
    or two takes it to rounding error."""
    from scipy.linalg import solve_discrete_lyapunov

    best = float(np.max(np.abs(_riccati_residual(A, B, Q, R, P))))
    for _ in range(steps):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        closed = A - B @ K
        try:
            nxt = solve_discrete_lyapunov(closed.T, Q + K.T @ R @ K)
        except (np.linalg.LinAlgError, ValueError):
            break
        nxt = (nxt + nxt.T) / 2
        err = float(np.max(np.abs(_riccati_residual(A, B, Q, R, nxt))))
        if not err < best:
            break
        P, best = nxt, err
    return P


def _rounded(v, dtype: str) -> np.ndarray:
    """``v`` rounded to ``dtype``, held in float64 (what SciPy is given)."""
    return as_dtype(v, dtype).astype(np.float64)


def random_systems(n: int, k: int, points: int, seed: int, dtype: str = "float64") -> dict:
    """Random (A, B, Q, R) with a stabilizing DARE solution; A's spectral radius spread
    around 1 so unstable open loops are included. The matrices are rounded to ``dtype``
    before SciPy solves the DARE, so that P belongs to the very system the float32
    formulas see."""

    rng = generator(seed)
    out = {r: [] for r in ("A", "B", "Q", "R", "P")}
    for _ in range(MAX_DRAWS):
        if len(out["P"]) == points:
            break
        A = draw(rng, "real", (n, n))
        A *= RADIUS(rng) / max(np.max(np.abs(np.linalg.eigvals(A))), 1e-3)
        B = draw(rng, "real", (n, k))
        Q, R = draw(rng, "spd", (n, n)), draw(rng, "spd", (k, k))
        A, B, Q, R = (_rounded(v, dtype) for v in (A, B, Q, R))
        try:
            P = dare(A, B, Q, R)
        except (np.linalg.LinAlgError, ValueError):
            continue
        if np.all(np.isfinite(P)) and np.linalg.cond(P) < 1e8:
            for key, v in zip("ABQRP", (A, B, Q, R, P)):
                out[key].append(v)
    return {key: np.stack(v) for key, v in out.items()}


def check_lqr(d, points, seed, device, dtype, rtol, atol) -> tuple[list, str, int]:
    import jax

    jax_x64()
    import jax.numpy as jnp

    dev = jax_device(device)
    lqr = d.lqr
    n, k = lqr.dims[lqr.n], lqr.dims[lqr.k]
    sysm = random_systems(n, k, points, seed, dtype)
    if lqr.values is not None:  # the spec's own system is checked with the random ones
        given = {r: _rounded(lqr.values[r], dtype) for r in "ABQR"}
        given["P"] = dare(*(given[r] for r in "ABQR"))
        sysm = {r: np.concatenate([given[r][None], sysm[r]]) for r in sysm}
    m = len(sysm["P"])
    rng = generator(seed + 1)
    x = draw(rng, "real", (m, n))
    S = np.stack([draw(rng, "spd", (n, n)) for _ in range(m)])  # any symmetric P
    # the derived formulas and the JAX references compute in the dtype; P is SciPy's
    A, B, Q, R, x, S = as_dtype([sysm[r] for r in "ABQR"] + [x, S], dtype)
    P = sysm["P"]
    P_in = as_dtype(P, dtype)  # P as the formulas are given it
    T = lambda M: np.swapaxes(M, -1, -2)  # noqa: E731 - batched transpose
    checks = []

    # the calculus engine's gradient and Hessian of the bracket (JAX and sympy.diff)
    engine = d.bellman.verify(
        points=points, seed=seed, device=device, dtype=dtype, rtol=rtol, atol=atol
    )
    checks += [dataclasses.replace(c, kind=f"minimize: {c.kind}") for c in engine.checks]

    def gain(Pm):
        return gain_formula(A, B, R, Pm)

    def bracket(xv, u, A_, B_, Q_, R_, P_):
        xn = A_ @ xv + B_ @ u
        return xv @ Q_ @ xv + u @ R_ @ u + xn @ P_ @ xn

    def newton_minimizer(xv, A_, B_, Q_, R_, P_):
        u0 = jnp.zeros(B_.shape[1], B_.dtype)
        g = jax.grad(bracket, argnums=1)(xv, u0, A_, B_, Q_, R_, P_)
        H = jax.hessian(bracket, argnums=1)(xv, u0, A_, B_, Q_, R_, P_)
        return -jnp.linalg.solve(H, g)  # exact for a quadratic in u

    with on_device(dev):
        put = lambda v: jax.device_put(jnp.asarray(v), dev)  # noqa: E731
        u_ref = np.asarray(jax.jit(jax.vmap(newton_minimizer))(*map(put, (x, A, B, Q, R, S))))
    K_S = gain(S)
    u_star = -np.einsum("nij,nj->ni", K_S, x)
    checks.append(
        compare(
            "gain",
            "u* = -K x",
            "minimizer by JAX autodiff (Newton step)",
            u_star,
            u_ref,
            rtol,
            atol,
        )
    )
    with on_device(dev):
        at_min = np.asarray(jax.jit(jax.vmap(bracket))(*map(put, (x, u_star, A, B, Q, R, S))))
    closed = A - B @ K_S
    substituted = Q + T(K_S) @ R @ K_S + T(closed) @ S @ closed
    checks.append(
        compare(
            "riccati",
            "substitution",
            "the bracket at u* (JAX)",
            np.einsum("ni,nij,nj->n", x, substituted, x),
            at_min,
            rtol,
            atol,
        )
    )
    simplified = Q + T(A) @ S @ A - T(A) @ S @ B @ K_S
    checks.append(
        compare(
            "riccati", "simplification", "the substituted form", simplified, substituted, rtol, atol
        )
    )

    def rhs(Pm, A_, B_, Q_, R_):
        return riccati_formula(Pm, A_, B_, Q_, R_, jnp)

    updates = riccati_updates(m, n)

    def recursion(A_, B_, Q_, R_):
        def settled(Pm, change, best, since):
            # converged, or settled at rounding: with A = diag(1000, 1), P ~ 2.6e6 and
            # each step's change hovers at 4e-10 in float64, above 1e-15 |P| for ever.
            # A step sums Aᵀ P A, which can dwarf P (1e12 |P| for A = diag(1e6, 1)):
            # its rounding is relative to the larger
            At_ = jnp.swapaxes(A_, -1, -2)
            scale = jnp.maximum(jnp.max(jnp.abs(Pm)), jnp.max(jnp.abs(At_ @ Pm @ A_)))
            rounding = (since >= RICCATI_STALL) & (best <= SETTLED_TOL[dtype] * scale)
            return (change <= ITERATION_TOL[dtype] * scale) | rounding

        def cond(c):
            Pm, change, best, since, i = c
            return ~settled(Pm, change, best, since) & (i < updates)

        def body(c):
            Pm, _, best, since, i = c
            nP = rhs(Pm, A_, B_, Q_, R_)
            change = jnp.max(jnp.abs(nP - Pm))
            since = jnp.where(change < best, 0, since + 1)
            return nP, change, jnp.minimum(best, change), since, i + 1

        inf = jnp.asarray(jnp.inf, Q_.dtype)
        first = start(Q_, jnp)
        Pm, change, best, since, _ = jax.lax.while_loop(cond, body, (first, inf, inf, 0, 0))
        done = settled(Pm, change, best, since)
        # a slow closed loop (ρ = 1 − 1e-8) is not settled in any number of updates:
        # Newton's method on the derived equation goes on from there, as d.function's
        Pm, ok = newton_jax(lambda M: rhs(M, A_, B_, Q_, R_), Pm, done, ITERATION_TOL[dtype])
        return Pm, done | ok

    with on_device(dev):
        residual_rhs = np.asarray(jax.jit(jax.vmap(rhs))(*map(put, (P_in, A, B, Q, R))))
        P_it, converged = jax.jit(jax.vmap(recursion))(*map(put, (A, B, Q, R)))
    K_P = gain(P_in)
    radius = np.max(np.abs(np.linalg.eigvals(A - B @ K_P)), axis=-1)
    # The Riccati right-hand side sums terms that cancel to P: its rounding error is
    # relative to their size, not P's (A = diag(1e6, 1): Aᵀ P A is 1e12 |P|, and float64
    # keeps four digits of P). The recursion's fixed point carries that error once per
    # step, damped by the closed loop: 1 / (1 − ρ²) for its spectral radius ρ, and
    # spread over every entry through the gain (normwise: P[0, 1] = −1.6e6 beside
    # P[0, 0] = 2.6e12 is off by 443).
    a = lambda M: np.abs(np.asarray(M, dtype=np.float64))  # noqa: E731
    terms = a(Q) + T(a(A)) @ a(P) @ a(A) + T(a(A)) @ a(P) @ a(B) @ a(K_P)
    damping = np.maximum(1.0 - np.minimum(radius, 1.0) ** 2, 1e-12)[:, None, None]
    eps = float(np.finfo(np.dtype(dtype)).eps)
    grown = float(np.max(terms / np.maximum(np.abs(P) * rtol + atol, 1e-300)))
    cancel_note = (
        f"held to the rounding of the Riccati terms, up to {grown:.2g} x the tolerance "
        "of P (Aᵀ P A dwarfs P)"
        if SAFETY * n * eps * grown > 1
        else ""
    )
    with np.errstate(all="ignore"):
        inverted = np.linalg.cond(np.asarray(R + T(B) @ P @ B, dtype=np.float64))[:, None, None]
    inverted = np.where(np.isfinite(inverted), inverted, 1.0)
    # the reference's own residual: SciPy's P, refined, is no fixed point past it where
    # the DARE is ill-conditioned (50 states, 2 inputs, P up to 2.8e11: 2.8e-4 of P),
    # and a right formula's residual there is as large; held to twice it at that system
    own = np.stack(
        [
            np.max(
                np.abs(_riccati_residual(*(np.asarray(sysm[r][i], float) for r in "ABQR"), P[i]))
            )
            for i in range(m)
        ]
    )[:, None, None]
    loose = own[:, 0, 0] > rtol * np.abs(P).max(axis=(1, 2))
    own_note = (
        f"held to SciPy's own residual at {int(loose.sum())} of {m} systems (an "
        f"ill-conditioned DARE: up to {float((own[:, 0, 0] / np.abs(P).max(axis=(1, 2))).max()):.2g}"
        " of P)"
        if loose.any()
        else ""
    )
    checks.append(
        compare(
            "riccati",
            "DARE residual",
            "scipy.linalg.solve_discrete_are",
            residual_rhs,
            P,
            rtol,
            atol,
            note="; ".join(filter(None, [cancel_note, own_note])),
            # normwise (relative to the largest entry of each P, as a matrix equation's
            # residual is measured), and the rounding of every term times the condition
            # number of the matrix the gain inverts: an entry's error reaches every
            # entry through (R + Bᵀ P B)⁻¹ (30 states, P up to 1.2e8: an entry of 1.7e6
            # off by 0.9, 2.5e-8 of P, where its own terms bounded 1e-3)
            bounds=np.maximum(
                cancellation_bound(
                    dtype, rtol, atol, P, terms.max(axis=(1, 2), keepdims=True) * inverted, n
                ),
                np.maximum(atol + rtol * np.abs(P).max(axis=(1, 2), keepdims=True), 2 * own),
            ),
        )
    )
    converged = np.asarray(converged)
    P_it = np.asarray(P_it)
    capped = updates < RICCATI_ITERATIONS
    if not converged.all() and not (capped and np.isfinite(P_it).all()):
        checks.append(
            Check(
                "riccati",
                "",
                "Riccati recursion (JAX)",
                m,
                float("inf"),
                float("inf"),
                False,
                note="the recursion did not converge",
            )
        )
    # where the work cap ended a finite recursion before it settled (a large system),
    # that point says nothing: left out of the comparison, and said
    kept = converged if capped else np.ones(m, bool)
    left_out = (
        f"{int((~kept).sum())} of {m} systems left out: their recursion had not settled "
        f"in {updates:,} updates (the work cap of {n} states)"
        if not kept.all()
        else ""
    )
    bounds = cancellation_bound(
        dtype, rtol, atol, P, terms.max(axis=(1, 2), keepdims=True) / damping, n
    )
    said = "P from the derived Riccati equation iterated from Q + s I to convergence, with "
    said += "Newton's method where the updates are slow (JAX)"
    if kept.any():
        checks.append(
            compare(  # the reference gave ``expected``: the recursion is the derived side
                "riccati",
                "P",
                "scipy DARE",
                P_it[kept],
                P[kept],
                rtol,
                atol,
                note="; ".join(filter(None, [said, cancel_note, left_out])),
                bounds=np.asarray(bounds)[kept],
            )
        )
    else:  # said beside the residual check, which stands
        checks[-1] = dataclasses.replace(
            checks[-1], note="; ".join(filter(None, [checks[-1].note, left_out]))
        )
    worst = float(radius.max(initial=0.0))
    checks.append(
        Check(
            "gain",
            "stability",
            "spectral radius of A - B K below 1",
            m,
            max(worst - 1.0, 0.0),
            max(worst - 1.0, 0.0),
            worst < 1.0,
            note=f"largest spectral radius of the closed loop: {worst:.4g}",
        )
    )
    return checks, dev.platform, m
