"""Independent numeric checks of an MDP derivation, in JAX.

The exact answers come from a linear solve and policy iteration in rationals. The
references here share nothing with them but the MDP itself: iterative policy evaluation
and value iteration (fixed-point iterations of the Bellman operators) run to convergence
in floating point, at random values of the MDP's symbols, all points in one vmapped,
jit-compiled call. The exact answers' own Bellman residuals and the greediness of the
optimal policy are checked too. Everything runs in the verification's dtype: the
symbols are drawn, rounded to it, and both sides start from those numbers.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.sections.mdp._show import Notation, _plain, equations
from dlsym.sections.mdp._solve import same_value
from dlsym.verify import (
    DTYPES,
    ITERATION_TOL,
    Check,
    as_dtype,
    compare,
    computed,
    draw,
    generator,
    jax_device,
    on_device,
)

MAX_ITERATIONS = 1_000_000
# multiply-adds one iterative reference may spend, all points together (a few seconds
# on a laptop core): a 400-state corridor at γ = 1, whose values are 7e190, ran its
# 10⁶ sweeps of 16 points twice, 90 s past a 50 s budget checked only between them
MAX_WORK = 5e10


def iteration_cap(points: int, states: int, actions: int) -> int:
    """Sweeps an iterative reference may take: MAX_ITERATIONS, fewer where the MDP's
    size would make them cost more than MAX_WORK (at least 1000)."""
    per_sweep = max(points * states * states * actions, 1)
    return int(max(1000, min(MAX_ITERATIONS, MAX_WORK // per_sweep)))


def _inputs(mdp, points: int, seed: int, dtype: str) -> tuple[dict, int]:
    """P (L, A, L), R (L, A), PI (L, A), mask (L, A), gamma: numbers at random draws of
    the symbols (one exact instance when there are none), rounded to ``dtype``. They are
    computed in float64 from the rounded symbols, so that the rows are checked to be
    distributions to float64's accuracy."""
    rng = generator(seed)
    params = list(mdp.parameters)
    n = points if params else 1
    draws = {
        d.symbol: as_dtype(np.stack([draw(rng, d.domain) for _ in range(n)]), dtype)
        for d in mdp.symbols
    }
    live, acts = mdp.live, mdp.actions
    index = {s: i for i, s in enumerate(live)}
    L, A = len(live), len(acts)
    exprs, slots = [mdp.gamma], [("gamma",)]
    for i, s in enumerate(live):
        for j, a in enumerate(acts):
            if a not in mdp.available[s]:
                continue
            exprs.append(mdp.r[(s, a)])
            slots.append(("R", i, j))
            if mdp.policy is not None:
                exprs.append(mdp.policy[s].get(a, sp.Integer(0)))
                slots.append(("PI", i, j))
            for nxt, pr in mdp.p[(s, a)].items():
                if nxt in index:
                    exprs.append(pr)
                    slots.append(("P", i, j, index[nxt]))
    f = codegen.lambdify(params, exprs, "numpy")
    values = f(*[draws[p].astype(float) for p in params])
    out = {
        "P": np.zeros((n, L, A, L)),
        "R": np.zeros((n, L, A)),
        "PI": np.zeros((n, L, A)),
        "mask": np.zeros((n, L, A), dtype=bool),
        "gamma": np.zeros(n),
    }
    for slot, v in zip(slots, values):
        v = np.broadcast_to(np.asarray(v, dtype=float), (n,))
        if slot[0] == "gamma":
            out["gamma"][:] = v
        else:
            out[slot[0]][(slice(None),) + slot[1:]] += v
            if slot[0] == "R":
                out["mask"][(slice(None),) + slot[1:]] = True
    return out, n, draws


def _written(d, kind, draws, n, v_it, q_it, rtol, atol) -> Check:
    """The equations exactly as displayed (probability weights, sums over next states, the
    max over actions), evaluated at the iterative solution: each side must agree. This
    checks what the reader sees, not a formula rebuilt from the MDP."""
    mdp = d.mdp
    note = Notation(mdp)
    live = mdp.live
    vk, qk = ("v", "q") if kind == "bellman_expectation" else ("vs", "qs")
    v_rows, q_rows = equations(mdp, note, kind.removeprefix("bellman_"))
    rows = v_rows + q_rows
    # the value symbols: numbers from the iteration (terminal states: 0)
    slots = {note.value(vk, s): v_it[:, i] for i, s in enumerate(live)}
    slots.update({note.value(vk, t): np.zeros(n, v_it.dtype) for t in mdp.terminal})
    slots.update(
        {
            note.value(qk, s, a): q_it[:, i, mdp.actions.index(a)]
            for i, s in enumerate(live)
            for a in mdp.available[s]
        }
    )
    params = list(mdp.parameters)
    # only the values the written rows use are arguments (a large MDP shows 10 states'
    # equations but has thousands of values); renamed before the display nodes are
    # multiplied out, since rebuilding a Max compares its arguments
    used = set().union(*(e.free_symbols for _, e in rows))
    args = [x for x in list(slots) + params if x in used]
    safe = {x: sp.Dummy(f"x{j}") for j, x in enumerate(args)}
    # a fraction as its float: printed 999999*v/1000000, the product overflows first
    # where v is near float64's largest (rewards of 1e300 and a discount of 0.999999)
    exprs = [_plain(e.xreplace(safe)) for _, e in rows]
    exprs = [
        e.xreplace({r: sp.Float(r, 17) for r in e.atoms(sp.Rational) if not r.is_Integer})
        for e in exprs
    ]
    f = codegen.lambdify([safe[x] for x in args], exprs, "numpy")
    got = f(*[slots[x] if x in slots else draws[x] for x in args])
    dtype = v_it.dtype.name  # the verification's
    lhs = np.stack([np.broadcast_to(computed(slots[l], dtype), (n,)) for l, _ in rows], axis=1)
    rhs = np.stack([np.broadcast_to(computed(g, dtype), (n,)) for g in got], axis=1)
    which = "iterative policy evaluation" if kind == "bellman_expectation" else "value iteration"
    return compare(kind, "", f"the written equations at {which}'s solution", rhs, lhs, rtol, atol)


def _not_distributions(mdp, data, draws) -> str:
    """'' when every sampled transition row (and policy row) is a distribution; else which
    one is not, and at which values of the symbols (1 - alpha - beta can be negative even
    though each symbol lies in [0, 1])."""
    P, PI, mask = data["P"], data["PI"], data["mask"]
    tol = 1e-9
    live = mdp.live

    def at(p):
        return ", ".join(
            f"{d.name} = {draws[d.symbol][p]:.4g}"
            for d in mdp.symbols
            if d.symbol in mdp.parameters
        )

    def bad(row, total_ok):
        return not (np.all(np.isfinite(row)) and row.min() >= -tol and total_ok(row.sum()))

    for p in range(P.shape[0]):
        for i, s in enumerate(live):
            for j, a in enumerate(mdp.actions):
                if mask[p, i, j] and bad(P[p, i, j], lambda t: t <= 1 + tol):
                    return (
                        f"at {at(p)}, the transition probabilities from ({s}, {a}) are "
                        "not a distribution: give every symbol in a probability a range "
                        "in which the probabilities stay in [0, 1]"
                    )
            if mdp.policy is not None and bad(PI[p, i], lambda t: abs(t - 1) <= tol):
                return f"at {at(p)}, the policy in {s} is not a distribution"
    return ""


def _iterations(dtype, cap: int = MAX_ITERATIONS):
    import jax
    import jax.numpy as jnp

    tol = ITERATION_TOL[dtype]

    eps = float(jnp.finfo(jnp.dtype(dtype)).eps)

    def run(step, v0, gamma):
        # rounding in each sweep settles at about ε/(1 − γ) (a 2-state cycle at γ = 0.99
        # hovered at 2e-14 against 1e-15, and the check was dropped): the stop is the
        # larger, at twice that (eight times stopped float32 short of its tolerance);
        # 1 − γ at least 1e-3, so that an undiscounted MDP still iterates
        floor = 2 * eps / jnp.maximum(1.0 - gamma, 1e-3)
        settled = jnp.maximum(tol, floor)

        def cond(c):
            v, change, k = c
            return (change > settled * jnp.maximum(1.0, jnp.max(jnp.abs(v)))) & (k < cap)

        def body(c):
            v, _, k = c
            nv = step(v)
            return nv, jnp.max(jnp.abs(nv - v)), k + 1

        v, _, k = jax.lax.while_loop(cond, body, (v0, jnp.asarray(jnp.inf, v0.dtype), 0))
        return v, k

    def backup(P, R, gamma, v):
        return R + gamma * jnp.einsum("sat,t->sa", P, v)

    def policy_evaluation(P, R, PI, mask, gamma):
        Ppi = jnp.einsum("sa,sat->st", PI, P)
        rpi = jnp.sum(PI * R, axis=1)
        v, k = run(lambda v: rpi + gamma * Ppi @ v, jnp.zeros_like(rpi), gamma)
        return v, backup(P, R, gamma, v), k

    def value_iteration(P, R, PI, mask, gamma):
        def step(v):
            return jnp.max(jnp.where(mask, backup(P, R, gamma, v), -jnp.inf), axis=1)

        v, k = run(step, jnp.zeros(R.shape[0], R.dtype), gamma)
        return v, backup(P, R, gamma, v), k

    return policy_evaluation, value_iteration


def _exact(d, kind, at: dict, dtype: str) -> np.ndarray:
    """The derived (exact) values of ``kind`` at the symbols ``at``, computed in
    ``dtype`` (points first; NaN where an action is not available)."""
    exprs, shape, absent = d._exact(kind)
    params = list(d.mdp.parameters)
    n = len(next(iter(at.values()))) if at else 1
    if params:
        values = codegen.lambdify(params, exprs, "numpy")(*at.values())
    else:  # numbers need no generated code (a 1000-state MDP has 5000 of them)
        values = [float(e) for e in exprs]
    out = np.stack([np.broadcast_to(computed(o, dtype), (n,)) for o in values], axis=-1)
    out = out.reshape((n,) + shape)
    return out if absent is None else np.where(absent, np.nan, out).astype(out.dtype)


def check_mdp(d, points, seed, device, dtype, rtol, atol) -> tuple[list, int, str]:
    import jax

    jax_x64()
    import jax.numpy as jnp

    mdp = d.mdp
    dev = jax_device(device)
    np_dtype = DTYPES[dtype]
    data, n, draws = _inputs(mdp, points, seed, dtype)
    live = mdp.live
    L = len(live)
    if L == 0:
        return [], n, dev.platform
    bad = _not_distributions(mdp, data, draws)
    if bad:  # iterating would not converge, or converge to nonsense: say why instead
        return (
            [
                Check(
                    "transitions",
                    "",
                    "probabilities at the sampled symbols",
                    n,
                    float("inf"),
                    float("inf"),
                    False,
                    note=bad,
                )
            ],
            n,
            dev.platform,
        )
    cap = iteration_cap(n, len(mdp.states), len(mdp.actions))
    policy_evaluation, value_iteration = _iterations(dtype, cap)
    # the MDP's numbers in the dtype: the references' inputs, and the residuals' below
    data = {k: v if k == "mask" else v.astype(np_dtype) for k, v in data.items()}
    args = [jax.device_put(jnp.asarray(data[k]), dev) for k in ("P", "R", "PI", "mask", "gamma")]
    mask = data["mask"]
    at = {p: draws[p] for p in mdp.parameters}
    checks = []
    live_idx = [mdp.states.index(s) for s in live]

    def exact(kind):
        return _exact(d, kind, at, dtype).reshape(
            (n,) + ((len(mdp.states),) if kind.startswith("v") else (L, len(mdp.actions)))
        )

    def converged(k, what):
        """Where the iterations stopped short (a discount of 1 - 1e-12 needs about
        10^13 of them), the points are left out of the comparisons with them, said in a
        note: the exact answer's Bellman residuals, below, still check those points."""
        stuck = np.asarray(k) >= cap
        if not stuck.any():
            return None, np.ones(n, dtype=bool)
        note = (
            f"{what} did not converge in {cap} iterations at {int(stuck.sum())} of {n} "
            "points (a discount close to 1, or values that take longer to settle than this "
            "MDP's size allows): there only the exact answer's Bellman residual is checked"
        )
        return Check(what, "", "convergence", n, 0.0, 0.0, True, note=note), ~stuck

    if d.evaluation is not None:
        with on_device(dev):
            v_it, q_it, k = jax.jit(jax.vmap(policy_evaluation))(*args)
        v_it, q_it = np.asarray(v_it), np.asarray(q_it)
        note, ok = converged(k, "iterative policy evaluation")
        checks.append(note)
        if "bellman_expectation" in d.results:
            v_w, q_w = _where_stuck(ok, v_it, q_it, exact("v_pi")[:, live_idx], exact("q_pi"))
            checks.append(_written(d, "bellman_expectation", draws, n, v_w, q_w, rtol, atol))
        v_ex = exact("v_pi")[:, live_idx]
        if ok.any():
            checks.append(
                compare(
                    "v_pi", "", "iterative policy evaluation (JAX)", v_ex[ok], v_it[ok], rtol, atol
                )
            )
        P, R, PI, gamma = data["P"], data["R"], data["PI"], data["gamma"]
        backup = np.sum(PI * R, axis=2) + gamma[:, None] * np.einsum("nsa,nsat,nt->ns", PI, P, v_ex)
        checks.append(
            compare("v_pi", "", "Bellman residual of the exact v_pi", v_ex, backup, rtol, atol)
        )
        q_ex = np.where(mask, exact("q_pi"), 0.0)
        if "q_pi" in d.results and ok.any():
            checks.append(
                compare(
                    "q_pi",
                    "",
                    "r + gamma P v from iterative evaluation",
                    q_ex[ok],
                    np.where(mask, q_it, 0.0)[ok],
                    rtol,
                    atol,
                )
            )
        if "bellman_expectation" in d.results or "q_pi" in d.results:
            # q_pi's own equation: q = r + gamma P (sum_a' pi(a'|s') q(s', a'))
            q_backup = R + gamma[:, None, None] * np.einsum("nsat,ntb,ntb->nsa", P, PI, q_ex)
            checks.append(
                compare(
                    "q_pi",
                    "",
                    "Bellman residual of the exact q_pi",
                    q_ex,
                    np.where(mask, q_backup, 0.0),
                    rtol,
                    atol,
                )
            )
    if d.optimum is not None or "bellman_optimality" in d.results:
        with on_device(dev):
            v_it, q_it, k = jax.jit(jax.vmap(value_iteration))(*args)
        v_it, q_it = np.asarray(v_it), np.asarray(q_it)
        note, ok = converged(k, "value iteration")
        checks.append(note)
        if "bellman_optimality" in d.results:
            v_w, q_w = v_it, q_it
            if d.optimum is not None:
                v_w, q_w = _where_stuck(
                    ok, v_it, q_it, exact("v_star")[:, live_idx], exact("q_star")
                )
            checks.append(_written(d, "bellman_optimality", draws, n, v_w, q_w, rtol, atol))
    if d.optimum is None:
        return [c for c in checks if c is not None], n, dev.platform
    q_ex = np.where(mask, exact("q_star"), 0.0)
    if ok.any():
        checks.append(
            compare(
                "v_star",
                "",
                "value iteration (JAX)",
                exact("v_star")[:, live_idx][ok],
                v_it[ok],
                rtol,
                atol,
            )
        )
        checks.append(
            compare(
                "q_star",
                "",
                "r + gamma P v from value iteration",
                q_ex[ok],
                np.where(mask, q_it, 0.0)[ok],
                rtol,
                atol,
            )
        )
    P, R, gamma = data["P"], data["R"], data["gamma"]
    vs_ex = exact("v_star")[:, live_idx]
    optimality = np.max(
        np.where(mask, R + gamma[:, None, None] * np.einsum("nsat,nt->nsa", P, vs_ex), -np.inf),
        axis=2,
    )
    checks.append(
        compare(
            "v_star",
            "",
            "Bellman optimality residual of the exact v*",
            vs_ex,
            optimality,
            rtol,
            atol,
        )
    )
    if "policy_star" in d.results:
        if ok.all():
            checks += _greedy(mdp, d.optimum, q_it, mask, "value iteration's q*", rtol, atol)
        checks += _greedy(
            mdp,
            d.optimum,
            np.where(mask, exact("q_star"), 0.0),
            mask,
            "the exact q*",
            rtol,
            atol,
        )
    return [c for c in checks if c is not None], n, dev.platform


def _where_stuck(ok, v, q, v_exact, q_exact) -> tuple:
    """The iterations' values where they converged, the exact ones where they did not:
    the written equations are then checked at every point, as residuals there."""
    return (
        np.where(ok[:, None], v, v_exact),
        np.where(ok[:, None, None], q, q_exact.reshape(q.shape)),
    )


def _greedy(mdp, opt, q, mask, source: str, rtol, atol) -> list:
    """The reported optimal actions are greedy with respect to ``q`` (their values reach
    the maximum), and the ties are complete (no action left out reaches it).

    An action left out whose value under ``q`` is within tolerance of the best is a
    dropped tie only where the derivation's own q* ties it too (exactly, or to TIE_RTOL
    in float64). Where the derivation separates the two by less than the tolerance (a
    corridor far from its goal: q*(left) and q*(right) differ by 1e-15 at -10), no
    floating-point reference can tell: that is reported as unresolved, not a failure."""
    policy = opt.policy
    live = mdp.live
    n = q.shape[0]
    best = np.max(np.where(mask, q, -np.inf), axis=2)
    chosen = np.stack(
        [
            [q[p, i, mdp.actions.index(a)] for i, s in enumerate(live) for a in policy[s]]
            for p in range(n)
        ]
    )
    wanted = np.stack(
        [[best[p, i] for i, s in enumerate(live) for a in policy[s]] for p in range(n)]
    )
    out = [
        compare("policy_star", "", f"greedy with respect to {source}", chosen, wanted, rtol, atol)
    ]
    # an unreported action whose value is within tolerance of the best
    close = [
        (p, s, a)
        for p in range(n)
        for i, s in enumerate(live)
        for j, a in enumerate(mdp.actions)
        if mask[p, i, j]
        and a not in policy[s]
        and abs(q[p, i, j] - best[p, i]) <= atol + rtol * abs(best[p, i])
    ]
    best_ex = {s: max(opt.q[(s, a)] for a in mdp.available[s]) for s in live}
    left_out = [(p, s, a) for p, s, a in close if same_value(opt.q[(s, a)], best_ex[s])]
    unresolved = len(close) - len(left_out)
    gap = min(
        (
            float(best[p, i] - q[p, i, j])
            for p in range(n)
            for i, s in enumerate(live)
            for j, a in enumerate(mdp.actions)
            if mask[p, i, j] and a not in policy[s]
        ),
        default=float("inf"),
    )
    out.append(
        Check(
            "policy_star",
            "",
            f"ties complete under {source}",
            n,
            0.0 if not left_out else gap,
            0.0,
            not left_out,
            note=(
                "unreported tie(s): " + ", ".join(f"{a} in {s}" for _, s, a in left_out)
                if left_out
                else f"{unresolved} action(s) left out are within tolerance of the best "
                "here but not tied in the derivation's own values (closer than this "
                "precision can resolve)"
                if unresolved
                else None
            ),
        )
    )
    return out
