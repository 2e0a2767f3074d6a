"""Finite Markov decision processes: the ``mdp:`` key validated into a frozen ``MDP``.

Probabilities, rewards and the discount are exact SymPy numbers (``0.9`` is 9/10, as
written) or expressions over the spec's scalar ``symbols``; every check names the YAML
node it is about. Solving and showing live in ``_mdp_solve`` and ``_mdp_show``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._parse import Scope
from dlsym.sections._base import probability_range_error
from dlsym.sections.mdp._gymnasium import from_p_table
from dlsym.spec._common import exact_number, header, total_shown
from dlsym.spec._read import _parse
from dlsym.spec._symbols import SymbolDecl, default_latex
from dlsym.spec._symbols import _symbols as declared_symbols
from dlsym.spec._yamlfile import Document

# P: Gymnasium's transition table, in place of states, actions, transitions, rewards and
# terminal (_gymnasium)
MDP_KEYS = ("states", "actions", "transitions", "rewards", "gamma", "policy", "terminal", "P")
EXPECTATION_KINDS = ("bellman_expectation", "v_pi", "q_pi")
OPTIMALITY_KINDS = ("bellman_optimality", "v_star", "q_star", "policy_star")
KINDS = EXPECTATION_KINDS + OPTIMALITY_KINDS
# numeric MDPs with more non-terminal states than EXACT_STATES are solved in float64
# (exact rationals grow: a 1000-state corridor's values have thousand-digit
# denominators); past MAX_STATES the dense checks (P is states x actions x states per
# draw) are refused up front
EXACT_STATES = 200
MAX_STATES = 5000
MAX_SYMBOLIC_STATES = 12  # solving as rational functions of the parameters


@dataclass(frozen=True)
class MDP:
    states: tuple  # every state, in the spec's order
    actions: tuple
    terminal: tuple  # absorbing states, value 0
    available: dict  # non-terminal state -> its actions, in the spec's order
    p: dict  # (s, a) -> {s': probability}, only s' with p != 0
    r: dict  # (s, a) -> expected reward r(s, a)
    r_next: dict  # (s, a) -> {s': reward} when given as r(s, a, s'), else {}
    gamma: sp.Expr
    policy: dict | None  # non-terminal s -> {a: probability}
    policy_kind: str  # 'uniform', 'deterministic', 'stochastic' or ''
    symbols: tuple  # SymbolDecl: the scalar parameters
    grid: dict | None  # state -> (row, col) when the names are grid cells

    @cached_property  # read in every loop over the states (5000 of them at most)
    def live(self) -> tuple:
        """The non-terminal states: the unknowns of the Bellman equations."""
        return tuple(s for s in self.states if s not in self.terminal)

    @property
    def parameters(self) -> tuple:
        return tuple(d.symbol for d in self.symbols)

    @property
    def numeric(self) -> bool:
        """No symbol anywhere: optimal values can be found by exact comparison."""
        return not self.parameters

    @property
    def exact(self) -> bool:
        """Solved in exact rationals (or rational functions of the symbols); a numeric
        MDP with more than EXACT_STATES non-terminal states is solved in float64, unless
        gamma = 1: a proper policy may take ~4^n steps to terminate (a corridor that
        drifts away from its goal), and float64 then returned values of 1e16 with no
        warning, where exact rationals stay right (slower: the budget bounds them)."""
        return bool(self.parameters) or len(self.live) <= EXACT_STATES or self.gamma == 1


# --- validation ----------------------------------------------------------------------------


_TEX_SPECIAL = frozenset("\\$%#&~^{}")


def _names(doc, mdp, key, what) -> tuple:
    raw = mdp.get(key)
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            f"mdp.{key} must be a non-empty list of {what} names",
            doc.loc("mdp", key) if key in mdp else doc.key_loc("mdp"),
        )
    seen = []
    for i, n in enumerate(raw):
        if isinstance(n, bool) or not isinstance(n, (str, int)) or str(n).strip() == "":
            hint = (
                " (YAML reads true and false as booleans: quote the name)"
                if isinstance(n, bool)
                else ""
            )
            raise SpecError(
                f"{what} names must be text or integers, got {n!r}{hint}", doc.loc("mdp", key, i)
            )
        bad = sorted(set(str(n)) & _TEX_SPECIAL)
        if bad:
            # names go into the LaTeX (prose and math): TeX's special characters there
            # would end math mode or run commands from an untrusted spec
            raise SpecError(
                f"{what} name {str(n)!r} has {' '.join(bad)}: names may not use TeX's "
                f"special characters ({' '.join(sorted(_TEX_SPECIAL))})",
                doc.loc("mdp", key, i),
            )
        # (line breaks and tabs are shown as spaces)
        unseen = [c for c in str(n) if unicodedata.category(c) in _UNSEEN and not c.isspace()]
        if unseen:
            # a zero-width space or a direction mark is dropped where the name is shown:
            # states 'ab' and 'a\u200bb' were two rows named ab in the value table
            raise SpecError(
                f"{what} name {str(n)!r} has {', '.join(f'U+{ord(c):04X}' for c in unseen)}, "
                "a control or format character that does not show where names are printed",
                doc.loc("mdp", key, i),
            )
        if str(n) in seen:
            raise SpecError(f"{what} '{n}' is listed twice", doc.loc("mdp", key, i))
        seen.append(str(n))
    return tuple(seen)


# Unicode's control, format, surrogate, private-use and unassigned categories
_UNSEEN = {"Cc", "Cf", "Cs", "Co", "Cn"}


def _member(doc, name, known, what, path) -> str:
    if isinstance(name, bool) or str(name) not in known:
        raise SpecError(
            f"unknown {what} '{name}'{did_you_mean(str(name), known)}; "
            f"the {what}s are: {', '.join(known)}",
            doc.key_loc(*path),
        )
    return str(name)


class _Values:
    """Numbers and expressions of an MDP spec: exact, scalar, over the declared symbols."""

    def __init__(self, doc: Document, decls):
        self.doc = doc
        self.decls = decls
        shapes = ops.ShapeTable({d.symbol: () for d in decls})
        self.scope = Scope({d.name: d.symbol for d in decls}, {}, Algebra(shapes))

    def __call__(self, path: tuple, where: str) -> sp.Expr:
        node = self.doc.data
        for key in path:
            node = node[key]
        number = exact_number(node, self.doc.loc(*path))
        if number is not None:
            return number
        if not isinstance(node, str):
            raise SpecError(
                f"{where} must be a number or an expression, got {type(node).__name__}",
                self.doc.loc(*path),
            )
        return _parse(self.doc, path, where, self.scope)

    def probability(self, path: tuple, where: str) -> sp.Expr:
        p = self(path, where)
        if p.is_number and not 0 <= p <= 1:
            raise SpecError(f"{where} is {p}, not a probability in [0, 1]", self.doc.loc(*path))
        if not p.is_number and p.is_extended_negative:  # a number was checked above (and
            # SymPy's assumptions cost a millisecond a call: 4000 of them in a large MDP)
            raise SpecError(
                f"{where} is negative for every value of its symbols", self.doc.loc(*path)
            )
        # verification samples each symbol from its domain: the probability must stay a
        # probability there (1/(1 + beta) with beta positive does; 1 - p with p real not)
        why = probability_range_error(p, self.decls, where)
        if why:
            raise SpecError(why, self.doc.loc(*path))
        return p


def _sums_to_one(doc, probs: dict, path: tuple, what: str) -> None:
    total = sum(probs.values(), sp.Integer(0))
    if sp.simplify(total - 1) != 0:
        said = total_shown(total)
        raise SpecError(f"the probabilities of {what} sum to {said}, not 1", doc.loc(*path))


def _symbols(doc: Document, gamma_name: str | None):
    """The scalar parameters; the discount's symbol is declared if the spec did not."""
    decls = declared_symbols(doc, {})
    for d in decls:
        if d.shape:
            raise SpecError(
                f"symbol '{d.name}' of an MDP spec must be a scalar",
                doc.loc("symbols", d.name, "shape"),
            )
    if gamma_name is None:
        return tuple(decls)
    found = [d for d in decls if d.name == gamma_name]
    if not found:
        symbol = sp.Symbol(gamma_name, positive=True)
        decls.append(
            SymbolDecl(gamma_name, symbol, (), "unit_interval", default_latex(gamma_name, ()))
        )
    else:
        raw = doc.data["symbols"][gamma_name] or {}
        domain = raw.get("domain") if isinstance(raw, dict) else None
        if domain not in (None, "unit_interval"):
            raise SpecError(
                f"the discount '{gamma_name}' must have domain unit_interval "
                f"(0 < gamma < 1), not {domain}",
                doc.loc("symbols", gamma_name, "domain"),
            )
        if domain is None:  # a discount lives in (0, 1): sample it there
            i = decls.index(found[0])
            decls[i] = SymbolDecl(
                gamma_name,
                sp.Symbol(gamma_name, positive=True),
                (),
                "unit_interval",
                found[0].latex,
            )
    return tuple(decls)


def _gamma(doc, mdp, decls) -> sp.Expr:
    if "gamma" not in mdp:
        raise SpecError(
            "missing mdp.gamma (the discount: a number in [0, 1] or a symbol name)",
            doc.key_loc("mdp"),
        )
    raw = mdp["gamma"]
    number = exact_number(raw, doc.loc("mdp", "gamma"))
    if number is not None:
        if not 0 <= number <= 1:
            raise SpecError(f"mdp.gamma must be in [0, 1], got {raw}", doc.loc("mdp", "gamma"))
        return number
    if isinstance(raw, str) and raw.isidentifier():
        return next(d.symbol for d in decls if d.name == raw)
    raise SpecError(
        f"mdp.gamma must be a number in [0, 1] or a symbol name, got {raw!r}",
        doc.loc("mdp", "gamma"),
    )


# a plain number written as text ("1", "0.0", "1/1"): short, and without an exponent,
# which a hostile "1e999999999" would make a billion-digit integer before any check
_PLAIN_NUMBER = re.compile(r"[+-]?\d{1,15}(\.\d{0,15})?(/\d{1,15})?")


def _is_number(raw, value) -> bool:
    """Whether the YAML value ``raw`` is the number ``value`` (before it is parsed)."""
    if isinstance(raw, str):
        text = raw.strip()
        return bool(_PLAIN_NUMBER.fullmatch(text)) and sp.Rational(text) == value
    try:
        return exact_number(raw) == value
    except SpecError:  # .nan, .inf: reported where the value is read
        return False


def _all_zero(raw) -> bool:
    if isinstance(raw, dict):
        return all(_all_zero(v) for v in raw.values())
    return _is_number(raw, 0)


def _self_loops(mdp: dict, states: tuple) -> tuple:
    """States whose every action returns to them with probability 1 and reward 0."""
    trans, rewards = mdp.get("transitions"), mdp.get("rewards") or {}
    if not isinstance(trans, dict) or not isinstance(rewards, dict):
        return ()
    out = []
    for s, row in trans.items():
        if s not in states or not isinstance(row, dict) or not row:
            continue
        loops = all(
            isinstance(t, dict)
            and len(t) == 1
            and str(next(iter(t))) == str(s)
            and _is_number(next(iter(t.values())), 1)
            for t in row.values()
        )
        if loops and s in rewards and _all_zero(rewards[s]):  # a missing reward is an error
            out.append(s)
    return tuple(out)


def _transitions(doc, mdp, states, actions, terminal, values):
    raw = mdp.get("transitions")
    if not isinstance(raw, dict) or not raw:
        raise SpecError(
            "mdp.transitions must map state -> action -> {next_state: probability}",
            doc.loc("mdp", "transitions") if "transitions" in mdp else doc.key_loc("mdp"),
        )
    available, p = {}, {}
    for s_raw, row in raw.items():
        path = ("mdp", "transitions", s_raw)
        s = _member(doc, s_raw, states, "state", path)
        if s in terminal:
            raise SpecError(
                f"state '{s}' is terminal (absorbing, value 0): it has no transitions",
                doc.key_loc(*path),
            )
        if not isinstance(row, dict) or not row:
            raise SpecError(
                f"transitions of state '{s}' must map action -> {{next_state: probability}}",
                doc.loc(*path),
            )
        acts = []
        for a_raw, dist in row.items():
            a = _member(doc, a_raw, actions, "action", path + (a_raw,))
            if not isinstance(dist, dict) or not dist:
                raise SpecError(
                    f"transitions of ({s}, {a}) must map next_state -> probability",
                    doc.loc(*path, a_raw),
                )
            probs = {}
            for n_raw in dist:
                n = _member(doc, n_raw, states, "state", path + (a_raw, n_raw))
                probs[n] = values.probability(path + (a_raw, n_raw), f"p({n} | {s}, {a})")
            _sums_to_one(doc, probs, path + (a_raw,), f"the transitions from ({s}, {a})")
            p[(s, a)] = {n: v for n, v in probs.items() if v != 0}
            acts.append(a)
        available[s] = tuple(a for a in actions if a in acts)
    missing = [s for s in states if s not in terminal and s not in available]
    if missing:
        raise SpecError(
            f"no transitions for state(s) {', '.join(missing)}; give them, or list "
            "them in mdp.terminal",
            doc.key_loc("mdp", "transitions"),
        )
    return available, p


def _rewards(doc, mdp, available, p, states, actions, values):
    raw = mdp.get("rewards")
    if not isinstance(raw, dict):
        raise SpecError(
            "mdp.rewards must map state -> action -> reward (or -> {next_state: reward})",
            doc.loc("mdp", "rewards") if "rewards" in mdp else doc.key_loc("mdp"),
        )
    r, r_next = {}, {}
    for s_raw, row in raw.items():
        path = ("mdp", "rewards", s_raw)
        s = _member(doc, s_raw, states, "state", path)
        if s not in available:
            raise SpecError(f"state '{s}' is terminal: it has no rewards", doc.key_loc(*path))
        if not isinstance(row, dict):
            raise SpecError(f"rewards of state '{s}' must map action -> reward", doc.loc(*path))
        for a_raw, value in row.items():
            _member(doc, a_raw, actions, "action", path + (a_raw,))
            a = str(a_raw)
            if a not in available[s]:
                raise SpecError(
                    f"action '{a_raw}' is not available in state '{s}' (it has no "
                    f"transitions there); available: {', '.join(available[s])}",
                    doc.key_loc(*path, a_raw),
                )
            if isinstance(value, dict):  # r(s, a, s')
                per = {}
                for n_raw in value:
                    n = _member(doc, n_raw, states, "state", path + (a_raw, n_raw))
                    if n not in p[(s, a)]:
                        raise SpecError(
                            f"reward for ({s}, {a}) -> {n}, but that transition has probability 0",
                            doc.key_loc(*path, a_raw, n_raw),
                        )
                    per[n] = values(path + (a_raw, n_raw), f"r({s}, {a}, {n})")
                lacking = [n for n in p[(s, a)] if n not in per]
                if lacking:
                    raise SpecError(
                        f"no reward for ({s}, {a}) -> {', '.join(lacking)}", doc.loc(*path, a_raw)
                    )
                r_next[(s, a)] = per
                r[(s, a)] = sp.expand(sum((p[(s, a)][n] * per[n] for n in per), sp.Integer(0)))
            else:
                r[(s, a)] = values(path + (a_raw,), f"r({s}, {a})")
    lacking = [f"({s}, {a})" for s, acts in available.items() for a in acts if (s, a) not in r]
    if lacking:
        raise SpecError(f"no reward for {', '.join(lacking)}", doc.key_loc("mdp", "rewards"))
    return r, r_next


def _policy(doc, mdp, available, values, terminal=()):
    if "policy" not in mdp:
        return None, ""
    raw = mdp["policy"]
    if raw == "uniform":
        return {
            s: {a: sp.Rational(1, len(acts)) for a in acts} for s, acts in available.items()
        }, "uniform"
    if not isinstance(raw, dict):
        raise SpecError(
            "mdp.policy must be 'uniform', state -> action, or state -> action -> probability",
            doc.loc("mdp", "policy"),
        )
    policy, kinds = {}, set()
    for s_raw, choice in raw.items():
        path = ("mdp", "policy", s_raw)
        if not isinstance(s_raw, bool) and str(s_raw) in map(str, terminal):
            # a complete policy table names an action at a terminal state too: its value
            # is 0 whatever is chosen there (it was "unknown non-terminal state")
            continue
        s = _member(doc, s_raw, tuple(available), "non-terminal state", path)
        if isinstance(choice, dict):
            kinds.add("stochastic")
            probs = {}
            for a_raw in choice:
                a = _member(doc, a_raw, available[s], f"action available in '{s}'", path + (a_raw,))
                probs[a] = values.probability(path + (a_raw,), f"pi({a} | {s})")
            _sums_to_one(doc, probs, path, f"the policy in state '{s}'")
            policy[s] = {a: v for a, v in probs.items() if v != 0}
        else:
            kinds.add("deterministic")
            if isinstance(choice, bool) or not isinstance(choice, (str, int)):
                raise SpecError(
                    f"the policy in state '{s}' must be an action or a map action -> probability",
                    doc.loc(*path),
                )
            a = str(choice)
            if a not in available[s]:
                raise SpecError(
                    f"the policy chooses '{a}' in state '{s}', which is not an "
                    f"action available there{did_you_mean(a, available[s])}; "
                    f"available: {', '.join(available[s])}",
                    doc.loc(*path),
                )
            policy[s] = {a: sp.Integer(1)}
    missing = [s for s in available if s not in policy]
    if missing:
        raise SpecError(
            f"the policy says nothing about state(s) {', '.join(missing)}",
            doc.key_loc("mdp", "policy"),
        )
    return policy, "stochastic" if "stochastic" in kinds else "deterministic"


GRID_NAME = r"^[A-Za-z_]*\(?\s*(\d+)\s*[,_ ]\s*(\d+)\s*\)?$"


def _grid(states, terminal) -> dict | None:
    """Cells (row, col) when every state is named like a grid cell: ``s0_1``, ``(0, 1)``,
    ``r2_3``. A grid-shaped table then shows the values where the cells are."""
    import re

    cells = {}
    for s in states:
        m = re.match(GRID_NAME, s)
        if m is None:
            return None
        cells[s] = (int(m.group(1)), int(m.group(2)))
    if len(set(cells.values())) != len(cells) or len(states) < 4:
        return None
    return cells


def build_mdp(doc: Document) -> tuple:
    """(Header, MDP) from a located document."""
    if not isinstance(doc.data, dict):
        raise SpecError("a spec must be a YAML mapping of keys", doc.loc())
    head = header(doc, ("mdp",), KINDS, ())
    mdp = doc.data["mdp"]
    if not isinstance(mdp, dict):
        raise SpecError(
            "mdp must be a mapping with states, actions, transitions, rewards, "
            "gamma (and policy, terminal)",
            doc.loc("mdp"),
        )
    for key in mdp:
        if key not in MDP_KEYS:
            raise SpecError(
                f"unknown key '{key}' in mdp{did_you_mean(str(key), MDP_KEYS)}; "
                f"allowed: {', '.join(MDP_KEYS)}",
                doc.key_loc("mdp", key),
            )
    if "P" in mdp:
        doc = from_p_table(doc)
        mdp = doc.data["mdp"]
    states = _names(doc, mdp, "states", "state")
    if len(states) > MAX_STATES:
        raise SpecError(
            f"{len(states)} states: MDPs are limited to {MAX_STATES} states (exact "
            f"rationals up to {EXACT_STATES} non-terminal states, float64 past that)",
            doc.loc("mdp", "states"),
        )
    actions = _names(doc, mdp, "actions", "action")
    terminal = ()
    if "terminal" in mdp:
        raw = mdp["terminal"]
        if not isinstance(raw, list):
            raise SpecError("mdp.terminal must be a list of states", doc.loc("mdp", "terminal"))
        terminal = tuple(
            _member(doc, t, states, "state", ("mdp", "terminal", i)) for i, t in enumerate(raw)
        )
    loops = _self_loops(mdp, states)
    if loops:
        # Gymnasium's P table writes a terminal state as one that every action returns to
        # with probability 1 and reward 0: that is absorbing with value 0, i.e. terminal
        terminal += tuple(s for s in loops if s not in terminal)
        mdp = {
            **mdp,
            "transitions": {k: v for k, v in mdp["transitions"].items() if k not in loops},
            "rewards": {k: v for k, v in (mdp.get("rewards") or {}).items() if k not in loops},
        }
    gamma_raw = mdp.get("gamma")
    decls = _symbols(
        doc, gamma_raw if isinstance(gamma_raw, str) and gamma_raw.isidentifier() else None
    )
    values = _Values(doc, decls)
    gamma = _gamma(doc, mdp, decls)
    if set(states) <= set(terminal):
        # it read "mdp.transitions must map state -> action -> ...", of a map that is one
        where = ("mdp", "transitions") if "transitions" in mdp else ("mdp", "terminal")
        raise SpecError(
            "every state is terminal (listed in mdp.terminal, or absorbing with reward 0 "
            "under every action): every value is 0 and there is nothing to derive",
            doc.loc(*where) if where[1] in mdp else doc.key_loc("mdp"),
        )
    available, p = _transitions(doc, mdp, states, actions, terminal, values)
    r, r_next = _rewards(doc, mdp, available, p, states, actions, values)
    policy, policy_kind = _policy(doc, mdp, available, values, terminal)
    derive = head.derive or (EXPECTATION_KINDS if policy is not None else ()) + (
        OPTIMALITY_KINDS if not decls else ()
    )
    if not derive:
        raise SpecError(
            "nothing to derive: give mdp.policy (for v_pi, q_pi) or numbers "
            "instead of symbols (for v_star, q_star, policy_star)",
            doc.key_loc("mdp"),
        )
    for i, k in enumerate(derive):
        loc = doc.loc("derive", i) if "derive" in doc.data else doc.key_loc("mdp")
        if k in EXPECTATION_KINDS and policy is None:
            raise SpecError(
                f"'{k}' needs mdp.policy (uniform, state -> action, or state -> "
                "action -> probability)",
                loc,
            )
        if k in OPTIMALITY_KINDS[1:] and decls:
            raise SpecError(
                f"'{k}' compares values exactly, so the MDP must be all numbers; "
                f"it has the symbol(s) {', '.join(d.name for d in decls)} "
                "(bellman_optimality can still be written out)",
                loc,
            )
    from dataclasses import replace

    head = replace(head, derive=tuple(derive))
    model = MDP(
        states,
        actions,
        terminal,
        available,
        p,
        r,
        r_next,
        gamma,
        policy,
        policy_kind,
        decls,
        _grid(states, terminal),
    )
    return head, model
