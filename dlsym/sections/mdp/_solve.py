"""Solutions of a finite MDP: policy evaluation as one linear system over the
non-terminal states, solved in rationals (FLINT), rational functions of the symbols
(SymPy's DomainMatrix) or, for a numeric MDP past EXACT_STATES non-terminal states,
float64 (SciPy's sparse LU); and policy iteration with exact comparisons (ties to
TIE_RTOL in float64)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.polys.matrices import DomainMatrix
from sympy.polys.matrices.exceptions import DMNonInvertibleMatrixError

from dlsym._errors import SpecError
from dlsym.sections.mdp._model import MAX_SYMBOLIC_STATES, MDP

MAX_POLICY_ITERATIONS = (
    1000  # policy iteration ends in at most |A|^|S| steps; far fewer in practice
)


@dataclass(frozen=True)
class Evaluation:
    """v_pi of one policy: P_pi, r_pi over the non-terminal states, and the solution."""

    policy: dict  # s -> {a: probability}
    P: sp.Matrix  # P_pi, non-terminal rows and columns
    r: sp.Matrix  # r_pi
    v: dict  # every state -> exact value (terminal: 0)
    q: dict  # (s, a) -> exact value


@dataclass(frozen=True)
class Optimum:
    iterations: tuple  # Evaluation of each policy tried, the last one optimal
    v: dict
    q: dict
    policy: dict  # s -> tuple of optimal actions (several when tied)

    @property
    def ties(self) -> dict:
        return {s: acts for s, acts in self.policy.items() if len(acts) > 1}


# float64 solving (past EXACT_STATES): two values this close are reported as a tie,
# relative to max(1, |value|). Policy iteration changes an action that gains more than
# IMPROVE_RTOL (above the solver's rounding, so each policy is strictly better and it
# ends): with TIE_RTOL there, a corridor's far states kept a worse action and v* was off
# by 1e-9
TIE_RTOL = 1e-9
IMPROVE_RTOL = 1e-13


def tidy(e) -> sp.Expr:
    """A value as it should be read: a rational, or a factored rational function."""
    if isinstance(e, sp.Float):
        return e
    e = sp.cancel(e)
    return e if e.is_number else sp.factor(e)


def same_value(a, b) -> bool:
    """Equal values: exactly, or to TIE_RTOL where either is a float."""
    if isinstance(a, sp.Float) or isinstance(b, sp.Float):
        return abs(float(a) - float(b)) <= TIE_RTOL * max(1.0, abs(float(b)))
    return a == b


def policy_matrices(mdp: MDP, policy: dict) -> tuple:
    """P_pi (sparse: a state reaches few others) and r_pi over the non-terminal states,
    built from the transitions' nonzero entries only."""
    live = mdp.live
    index = {s: i for i, s in enumerate(live)}
    P: dict = {}
    r = [sp.Integer(0)] * len(live)
    for s in live:
        i = index[s]
        for a, w in policy[s].items():
            r[i] += w * mdp.r[(s, a)]
            for n, pr in mdp.p[(s, a)].items():
                if n in index:
                    P[i, index[n]] = P.get((i, index[n]), 0) + w * pr
    P = {k: sp.expand(v) for k, v in P.items()}
    # mutable SymPy matrices: the immutable ones sort their entries when built
    return (
        sp.SparseMatrix(len(live), len(live), {k: v for k, v in P.items() if v != 0}),
        sp.Matrix([sp.expand(v) for v in r]),
    )


def _unreachable(mdp: MDP, policy: dict) -> list:
    """Non-terminal states that never reach a terminal state under ``policy``."""
    reach = set(mdp.terminal)
    changed = True
    while changed:
        changed = False
        for s in mdp.live:
            if s not in reach and any(n in reach for a in policy[s] for n in mdp.p[(s, a)]):
                reach.add(s)
                changed = True
    return [s for s in mdp.live if s not in reach]


def q_values(mdp: MDP, v: dict) -> dict:
    if not mdp.exact:
        g = float(mdp.gamma)
        return {
            (s, a): sp.Float(
                float(mdp.r[(s, a)])
                + g * sum(float(pr) * float(v[n]) for n, pr in mdp.p[(s, a)].items())
            )
            for s in mdp.live
            for a in mdp.available[s]
        }
    return {
        (s, a): tidy(
            mdp.r[(s, a)]
            + mdp.gamma * sum((pr * v[n] for n, pr in mdp.p[(s, a)].items()), sp.Integer(0))
        )
        for s in mdp.live
        for a in mdp.available[s]
    }


def evaluate(mdp: MDP, policy: dict, loc=None) -> Evaluation:
    """Solve (I - gamma P_pi) v = r_pi exactly."""
    if mdp.parameters and len(mdp.live) > MAX_SYMBOLIC_STATES:
        raise SpecError(
            f"{len(mdp.live)} states with symbols: solving as functions of "
            f"{', '.join(map(str, mdp.parameters))} is limited to "
            f"{MAX_SYMBOLIC_STATES} states; give numbers",
            loc,
        )
    P, r = policy_matrices(mdp, policy)
    n = len(mdp.live)
    v = {s: sp.Integer(0) for s in mdp.terminal}
    if n:
        try:
            x = _solve(P, r, mdp.gamma) if mdp.exact else _solve_float(P, r, mdp.gamma)
        except (DMNonInvertibleMatrixError, ZeroDivisionError):
            stuck = _unreachable(mdp, policy)
            raise SpecError(
                "gamma = 1 and, under the policy, the state(s) "
                f"{', '.join(stuck) or '(some)'} never reach a terminal state: "
                "I - P_pi is singular, so v_pi is not defined (discount with gamma < 1, or "
                "make every state reach a terminal state)",
                loc,
            ) from None
        v.update({s: tidy(x[i]) for i, s in enumerate(mdp.live)})
    return Evaluation(policy, P, r, v, q_values(mdp, v))


def _solve(P: sp.Matrix, r: sp.Matrix, gamma) -> list:
    """The exact solution of ``(I - gamma P) v = r``: with FLINT's rational matrices
    where every entry is a number (a C library: policy iteration over a 100-state
    corridor, 100 solves, takes 5 s where SymPy's rationals in Python took 100), read
    from P's nonzero entries only; with SymPy's DomainMatrix for rational functions of the symbols. A
    singular system raises."""
    n = P.rows
    entries = P.todok()
    if gamma.is_Rational and all(e.is_Rational for e in [*entries.values(), *r]):
        import flint

        def fmpq(e):
            return flint.fmpq(int(e.p), int(e.q))

        A = flint.fmpq_mat(n, n)
        for i in range(n):
            A[i, i] = 1
        g = fmpq(gamma)
        for (i, j), e in entries.items():
            A[i, j] -= g * fmpq(e)
        x = A.solve(flint.fmpq_mat(n, 1, [fmpq(e) for e in r]))
        return [sp.Rational(int(x[i, 0].p), int(x[i, 0].q)) for i in range(n)]
    M, c = DomainMatrix.from_Matrix(sp.eye(n) - gamma * P).unify(DomainMatrix.from_Matrix(r))
    return list(M.to_field().lu_solve(c.to_field()).to_Matrix())


def _solve_float(P: sp.Matrix, r: sp.Matrix, gamma) -> list:
    """``(I - gamma P) v = r`` in float64 with SciPy's sparse LU (a 1000-state corridor:
    milliseconds); a singular system raises ZeroDivisionError, as the exact one does."""
    import warnings

    import numpy as np
    from scipy.sparse import csc_matrix, identity
    from scipy.sparse.linalg import MatrixRankWarning, spsolve

    n = P.rows
    entries = P.todok()
    rows, cols = zip(*entries) if entries else ((), ())
    data = [float(e) for e in entries.values()]
    A = identity(n, format="csc") - float(gamma) * csc_matrix((data, (rows, cols)), shape=(n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MatrixRankWarning)
        try:
            x = spsolve(A, np.array([float(e) for e in r]))
        except (MatrixRankWarning, RuntimeError):
            raise ZeroDivisionError from None
    if not np.all(np.isfinite(x)):
        raise ZeroDivisionError
    return [sp.Float(float(e)) for e in np.atleast_1d(x)]


def proper_policy(mdp: MDP) -> tuple[dict, list]:
    """A policy that reaches a terminal state from everywhere (when gamma = 1 it starts
    policy iteration), built outwards from the terminal states; and the states from which
    no policy can reach one."""
    reach, policy = set(mdp.terminal), {}
    changed = True
    while changed:
        changed = False
        for s in mdp.live:
            if s in reach:
                continue
            a = next((a for a in mdp.available[s] if reach & set(mdp.p[(s, a)])), None)
            if a is not None:
                reach.add(s)
                policy[s] = a
                changed = True
    return {s: policy[s] for s in mdp.live if s in policy}, [s for s in mdp.live if s not in reach]


def _float_iteration(mdp: MDP, policy: dict, loc) -> tuple:
    """Howard's policy iteration in float64 with NumPy and SciPy's sparse LU, the
    policies as row indices into one (state, action) x state matrix (a 1000-state
    corridor: 30 evaluations in a fraction of a second, where building each one's
    SymPy matrices took 0.5 s). Returns the policies tried; the last is greedy with
    respect to its own values to IMPROVE_RTOL (or singular)."""
    import warnings

    import numpy as np
    from scipy.sparse import csr_matrix, identity
    from scipy.sparse.linalg import MatrixRankWarning, spsolve

    live = mdp.live
    index = {s: i for i, s in enumerate(live)}
    pairs = [(s, a) for s in live for a in mdp.available[s]]
    row_of = {pair: k for k, pair in enumerate(pairs)}
    rows, cols, data = [], [], []
    for k, (s, a) in enumerate(pairs):
        for nxt, pr in mdp.p[(s, a)].items():
            if nxt in index:
                rows.append(k)
                cols.append(index[nxt])
                data.append(float(pr))
    P = csr_matrix((data, (rows, cols)), shape=(len(pairs), len(live)))
    R = np.array([float(mdp.r[pair]) for pair in pairs])
    owner = np.array([index[s] for s, _ in pairs])
    g = float(mdp.gamma)
    chosen = np.array([row_of[(s, policy[s])] for s in live])
    tried = []
    for _ in range(MAX_POLICY_ITERATIONS):
        tried.append({s: pairs[k][1] for s, k in zip(live, chosen)})
        A = identity(len(live), format="csc") - g * P[chosen].tocsc()
        with warnings.catch_warnings():  # a singular policy: checked just below
            warnings.simplefilter("ignore", MatrixRankWarning)
            v = spsolve(A, R[chosen])
        if not np.all(np.isfinite(v)):
            return tried  # singular: evaluating it again raises the located error
        q = R + g * (P @ v)
        best = np.full(len(live), -np.inf)
        np.maximum.at(best, owner, q)
        tol = IMPROVE_RTOL * np.maximum(1.0, np.abs(best))
        keep = best - q[chosen] <= tol
        if keep.all():
            return tried
        # the first action (in the spec's order) that reaches the best value
        first = np.full(len(live), len(pairs))
        np.minimum.at(
            first, owner, np.where(best[owner] - q <= tol[owner], np.arange(len(q)), len(pairs))
        )
        chosen = np.where(keep, chosen, first)
    raise SpecError(f"policy iteration did not settle in {MAX_POLICY_ITERATIONS} steps", loc)


def policy_iteration(mdp: MDP, loc=None) -> Optimum:
    """Howard's policy iteration in exact arithmetic (float64 past EXACT_STATES); keeps
    the current action on ties, so it stops, and reports every optimal action at the
    end."""
    policy = {s: acts[0] for s, acts in mdp.available.items()}
    if mdp.gamma == 1:
        # episodic: start from a proper policy. Under the stochastic-shortest-path
        # assumption (a policy that never terminates collects unbounded negative reward),
        # improvement keeps it proper (Bertsekas and Tsitsiklis, 1991).
        policy, stuck = proper_policy(mdp)
        if stuck:
            raise SpecError(
                f"gamma = 1 and no policy reaches a terminal state from "
                f"{', '.join(stuck)}: v* is not defined (use gamma < 1, or add "
                "transitions towards a terminal state)",
                loc,
            )
    history = []
    if not mdp.exact:
        tried = _float_iteration(mdp, policy, loc)
        # the last policy evaluated once more, as the exact path does (a singular one
        # raises the same located error there)
        history = [
            Evaluation({s: {a: sp.Integer(1)} for s, a in pol.items()}, None, None, {}, {})
            for pol in tried[:-1]
        ]
        policy = tried[-1]
    for _ in range(MAX_POLICY_ITERATIONS):
        chosen = {s: {a: sp.Integer(1)} for s, a in policy.items()}
        try:
            ev = evaluate(mdp, chosen, loc)
        except SpecError:
            stuck = ", ".join(_unreachable(mdp, chosen))
            raise SpecError(
                f"gamma = 1 and policy improvement reached a policy that never "
                f"terminates from {stuck} without losing reward: a loop there "
                "pays 0 or more per step, so v* is unbounded or not unique "
                "(the stochastic-shortest-path assumption fails); use gamma < 1 "
                "or make such loops costly",
                loc,
            ) from None
        history.append(ev)
        best = {s: max(ev.q[(s, a)] for a in acts) for s, acts in mdp.available.items()}
        improved = {
            s: policy[s]
            if same_value(ev.q[(s, policy[s])], best[s])
            else next(a for a in acts if ev.q[(s, a)] == best[s])
            for s, acts in mdp.available.items()
        }
        if improved == policy:
            optimal = {
                s: tuple(a for a in acts if same_value(ev.q[(s, a)], best[s]))
                for s, acts in mdp.available.items()
            }
            if mdp.gamma == 1:
                _no_free_loops(mdp, optimal, loc)
            return Optimum(tuple(history), ev.v, ev.q, optimal)
        policy = improved
    raise SpecError(f"policy iteration did not settle in {MAX_POLICY_ITERATIONS} steps", loc)


def _no_free_loops(mdp: MDP, optimal: dict, loc) -> None:
    """With gamma = 1, tied optimal actions that can keep the process away from every
    terminal state forever mean a loop whose rewards sum to 0 per cycle: staying in it is
    worth its own total, not v, so the Bellman optimality equation has more than one
    solution and policy iteration's answer depends on where it started."""
    closed = set(mdp.live)  # the largest set some choice of optimal actions never leaves
    changed = True
    while changed:
        changed = False
        for s in list(closed):
            if not any(set(mdp.p[(s, a)]) <= closed for a in optimal[s]):
                closed.discard(s)
                changed = True
    if closed:
        loop = ", ".join(s for s in mdp.live if s in closed)
        raise SpecError(
            f"gamma = 1 and the optimal actions can loop forever among {loop} "
            "without reaching a terminal state, collecting 0 reward per cycle: "
            "the Bellman optimality equation then has more than one solution, "
            "so v* is not unique (the stochastic-shortest-path assumption fails); "
            "use gamma < 1 or make such loops costly",
            loc,
        )
