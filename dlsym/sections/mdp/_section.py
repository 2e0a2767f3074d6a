"""The derivation of an MDP spec: Bellman equations, exact values, and their check
against independent iterative solutions computed with JAX in floating point."""

from __future__ import annotations

import numpy as np
import sympy as sp

from dlsym._budget import step
from dlsym.codegen import _compile as codegen
from dlsym.sections._base import SectionDerivation, Shown
from dlsym.sections._signature import Signature, array_module
from dlsym.sections.mdp._check import check_mdp
from dlsym.sections.mdp._model import MDP, build_mdp
from dlsym.sections.mdp._show import (
    Notation,
    equations,
    expectation_steps,
    grid_table,
    optimality_steps,
    q_shown,
    q_table,
    state_tex,
    ties_text,
    value_table,
    values_shown,
)
from dlsym.sections.mdp._solve import evaluate, policy_iteration
from dlsym.spec._common import Header
from dlsym.spec._yamlfile import Document
from dlsym.verify import report


class MDPDerivation(SectionDerivation):
    """``results``: {kind: Shown}; ``evaluation`` (v_pi, q_pi, P_pi, r_pi) and ``optimum``
    (v*, q*, optimal actions, the policies tried) hold the exact SymPy values."""

    section = "mdp"

    def __init__(self, head: Header, mdp: MDP, evaluation, optimum, results, steps, tables, notes):
        super().__init__(head, results, steps, tables, notes)
        self.mdp = mdp
        self.evaluation = evaluation
        self.optimum = optimum

    # -- numbers ----------------------------------------------------------------------

    # value kind -> the attribute holding its exact solution (None when not solved)
    SOLVED_BY = {
        "v_pi": "evaluation",
        "q_pi": "evaluation",
        "v_star": "optimum",
        "q_star": "optimum",
    }
    NOT_VALUES = {
        "bellman_expectation": "the Bellman expectation equations (a system of equations)",
        "bellman_optimality": "the Bellman optimality equations (a system of equations)",
        # a choice of actions, not a number: fixed by exact comparisons at the spec's
        # numbers, so it is no function of them either
        "policy_star": "a set of optimal actions per state (results['policy_star'].value "
        "maps each state to them), not an array",
    }

    @property
    def value_kinds(self) -> tuple:
        """v_pi and q_pi once the policy was evaluated, v_star and q_star once policy
        iteration ran: the exact values exist then, whichever of them ``derive`` lists
        (the check reads q_pi beside v_pi)."""
        return tuple(k for k, attr in self.SOLVED_BY.items() if getattr(self, attr) is not None)

    def _exact(self, kind):
        mdp = self.mdp
        source = getattr(self, self.SOLVED_BY[kind])
        if kind.startswith("v"):
            return [source.v[s] for s in mdp.states], (len(mdp.states),), None
        missing = np.array(
            [[(s, a) not in source.q for a in mdp.actions] for s in mdp.live], dtype=bool
        ).reshape(len(mdp.live), len(mdp.actions))
        return (
            [source.q.get((s, a), sp.Integer(0)) for s in mdp.live for a in mdp.actions],
            missing.shape,
            missing,
        )

    def _function(self, kind: str, backend: str):
        """A callable taking the MDP's symbols (keywords, or positionally in the spec's
        order; arrays broadcast against each other as a batch) and returning the exact
        values evaluated there: a vector over all states (in the spec's order, terminal
        states 0) for v, a (non-terminal state, action) array for q (NaN where an action
        is not available); batch axes come first."""
        exprs, shape, absent = self._exact(kind)
        sig = Signature(self.mdp.symbols, {}, kind)
        f = codegen.lambdify(list(self.mdp.parameters), exprs, backend)
        xp = array_module(backend)

        def values(*args, **kwargs):
            given = sig.bind(args, kwargs)
            inputs = [xp.asarray(given[n], dtype=float) for n in sig.names]
            batch = np.broadcast_shapes(*[np.shape(x) for x in inputs]) if inputs else ()
            out = [
                xp.broadcast_to(xp.asarray(o, dtype=float), batch) for o in f(*inputs)
            ]  # a constant entry comes back as a Python number
            result = xp.reshape(xp.stack(out, axis=-1), batch + shape)
            # an action not available in a state has no value
            return result if absent is None else xp.where(absent, np.nan, result)

        values.__name__ = kind
        return values

    def _verify(self, points, seed, device, dtype, rtol, atol):
        checks, n, dev = check_mdp(self, points, seed, device, dtype, rtol, atol)
        return report(checks, n, dtype, dev, rtol, atol)


def _equations(note, lines) -> Shown:
    """(lhs, rhs) rows as one result."""
    return Shown(
        "; ".join(f"{note.txt(lhs)} = {note.txt(rhs, True)}" for lhs, rhs in lines),
        " \\\\ ".join(f"{note.tex(lhs)} = {note.tex(rhs, True)}" for lhs, rhs in lines),
        None,
        {"equations": len(lines)},
    )


def derive_mdp(head: Header, mdp: MDP) -> MDPDerivation:
    kinds = head.derive
    note = Notation(mdp)
    loc = head.doc.loc("mdp", "gamma")
    results, steps, tables, notes = {}, [], [], []
    ev = opt = None
    if any(k in kinds for k in ("bellman_expectation", "v_pi", "q_pi")):
        with step("policy evaluation"):
            ev = evaluate(mdp, mdp.policy, loc)
        steps += expectation_steps(mdp, note, ev, kinds)
        if "bellman_expectation" in kinds:
            v_rows, q_rows = equations(mdp, note, "expectation")
            results["bellman_expectation"] = _equations(note, v_rows + q_rows)
        if "v_pi" in kinds:
            results["v_pi"] = values_shown(mdp, note, "v_pi", ev.v, r"\mathbf{v}_{\pi}")
            tables.append(value_table(mdp, note, "v_pi (state values under the policy)", ev.v))
            if mdp.grid:
                tables.append(grid_table(mdp, "v_pi on the grid", ev.v))
        if "q_pi" in kinds:
            results["q_pi"] = q_shown(mdp, note, "q_pi", ev.q, r"Q_{\pi}")
            tables.append(q_table(mdp, note, "q_pi (rows: states, columns: actions)", ev.q))
    if any(k in kinds for k in ("bellman_optimality", "v_star", "q_star", "policy_star")):
        solve = any(k in kinds for k in ("v_star", "q_star", "policy_star"))
        with step("policy iteration"):
            opt = policy_iteration(mdp, loc) if solve else None
        steps += optimality_steps(mdp, note, opt, kinds)
        if "bellman_optimality" in kinds:
            results["bellman_optimality"] = _equations(note, equations(mdp, note, "optimality")[0])
        if opt is not None:
            policy = {**opt.policy, **{t: () for t in mdp.terminal}}
            if "v_star" in kinds:
                results["v_star"] = values_shown(mdp, note, "v_star", opt.v, r"\mathbf{v}_{*}")
            if "q_star" in kinds:
                results["q_star"] = q_shown(mdp, note, "q_star", opt.q, r"Q_{*}")
                tables.append(q_table(mdp, note, "q* (rows: states, columns: actions)", opt.q))
            if "policy_star" in kinds:
                results["policy_star"] = Shown(
                    str({s: list(a) for s, a in opt.policy.items()}),
                    r",\ ".join(
                        rf"\pi_*\left({state_tex(s)}\right) = "
                        + r" \text{ or } ".join(state_tex(a) for a in acts)
                        for s, acts in opt.policy.items()
                    ),
                    opt.policy,
                    {
                        "policy": {s: list(a) for s, a in opt.policy.items()},
                        "ties": {s: list(a) for s, a in opt.ties.items()},
                        "iterations": len(opt.iterations),
                    },
                )
            tables.append(
                value_table(
                    mdp,
                    note,
                    "v* and the optimal actions",
                    opt.v,
                    policy if "policy_star" in kinds else None,
                )
            )
            if mdp.grid:
                tables.append(
                    grid_table(
                        mdp,
                        "v* and the optimal actions on the grid",
                        opt.v,
                        policy if "policy_star" in kinds else None,
                    )
                )
            if opt.ties:
                notes.append("ties in the optimal policy: " + ties_text(opt.ties))
    return MDPDerivation(head, mdp, ev, opt, results, steps, tables, notes)


def build(doc: Document) -> MDPDerivation:
    """Validate and derive an MDP spec (the section's entry point, ``dlsym._api``)."""
    return derive_mdp(*build_mdp(doc))
