"""An MDP given as Gymnasium's transition table: ``mdp.P``, as ``env.unwrapped.P`` holds
it for FrozenLake, CliffWalking and Taxi (``P[s][a] = [(probability, next_state, reward,
done), ...]``), dumped to YAML or JSON. It becomes the spec's own keys:

- states and actions: the table's keys, in its order;
- ``transitions[s][a][s']``: the probabilities of the outcomes that lead to s', added up
  (a slippery FrozenLake lists the same next state more than once);
- ``rewards[s][a]``: the expected reward Σ p r (the Bellman equations need no more);
- ``terminal``: the states an outcome with ``done`` leads to. Gymnasium ends the episode
  there, so they have value 0 and their own rows are never used; a state that one
  outcome ends the episode in and another does not has no single value: an error.

Gymnasium's probabilities are floats (1/3 as 0.333...); each is read as the fraction
with the smallest denominator within 1e-12 of it, so the rows sum to exactly 1, or, where
a row's decimals as written sum to 1 and those fractions do not, as those decimals.
Every error points at the table's entry it is about (a new Document whose paths for the
spec's keys are located at the table's entries).
"""

from __future__ import annotations

import math
from fractions import Fraction

from dlsym._errors import SpecError, did_you_mean
from dlsym.spec._yamlfile import Document

# the keys the table gives: a spec with the table has none of them
FROM_TABLE = ("states", "actions", "transitions", "rewards", "terminal")
OUTCOME = "[probability, next_state, reward, done]"


def _number(x) -> bool:
    """A finite number (YAML's .inf and .nan are not a probability or a reward)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _exact(x) -> Fraction:
    """An int as is; a float as the simplest fraction within 1e-12 of it."""
    f = Fraction(x)
    simple = f.limit_denominator(10**9)
    return simple if abs(float(simple) - x) <= 1e-12 else f


def _row_weights(outcomes) -> list:
    """The probabilities of one row, exact: each the simplest fraction near its float
    (0.333... as 1/3), unless the row then does not sum to 1 and its decimals as written
    do (0.1234567891234 and 0.8765432108766: their simplest fractions missed 1 by 2e-17).
    A value that is not a number is left to the caller's checks."""
    ps = [o[0] if isinstance(o, list) and o else None for o in outcomes]
    if not all(_number(p) for p in ps):
        return [_exact(p) if _number(p) else None for p in ps]
    simple = [_exact(p) for p in ps]
    if sum(simple) == 1:
        return simple
    written = [Fraction(repr(p)) for p in ps]  # the shortest decimal that reads back as p
    return written if sum(written) == 1 else simple


def from_p_table(doc: Document) -> Document:
    """The spec with ``mdp.P`` replaced by states, actions, transitions, rewards and
    terminal, each located at the table's entry it comes from."""
    mdp = doc.data["mdp"]
    table = mdp["P"]
    clash = [k for k in FROM_TABLE if k in mdp]
    if clash:
        raise SpecError(
            f"mdp.P gives the {', '.join(FROM_TABLE)}; drop mdp.{clash[0]}",
            doc.key_loc("mdp", clash[0]),
        )
    if not isinstance(table, dict) or not table:
        raise SpecError(
            f"mdp.P must map state -> action -> a list of {OUTCOME} (Gymnasium's env.unwrapped.P)",
            doc.loc("mdp", "P"),
        )
    states = {str(s): s for s in table}
    locations = dict(doc.locations)

    def locate(new: tuple, old: tuple) -> None:
        locations[("mdp", *new)] = doc.loc("mdp", "P", *old)
        locations[("#key", "mdp", *new)] = doc.key_loc("mdp", "P", *old)

    transitions: dict = {}
    rewards: dict = {}
    ends: dict = {}  # next state -> {done flag: the outcome's path}
    actions: dict = {}  # their names, in the table's order (a dict as an ordered set)
    for s, row in table.items():
        if not isinstance(row, dict) or not row:
            raise SpecError(
                f"mdp.P[{s}] must map each action to a list of {OUTCOME}",
                doc.loc("mdp", "P", s),
            )
        name = str(s)
        transitions[name], rewards[name] = {}, {}
        locate(("transitions", name), (s,))
        locate(("rewards", name), (s,))
        for a, outcomes in row.items():
            actions[str(a)] = None
            if not isinstance(outcomes, list) or not outcomes:
                raise SpecError(
                    f"mdp.P[{s}][{a}] must be a list of {OUTCOME}", doc.loc("mdp", "P", s, a)
                )
            probs: dict = {}
            expected = Fraction(0)
            weights = _row_weights(outcomes)
            for i, outcome in enumerate(outcomes):
                at = doc.loc("mdp", "P", s, a, i)
                if not isinstance(outcome, list) or len(outcome) != 4:
                    raise SpecError(f"an outcome of mdp.P[{s}][{a}] must be {OUTCOME}", at)
                p, nxt, r, done = outcome
                if not _number(p) or not 0 <= p <= 1:
                    raise SpecError(f"the probability {p!r} is not a number in [0, 1]", at)
                if str(nxt) not in states:
                    raise SpecError(
                        f"the next state {nxt!r} is not a state of mdp.P"
                        f"{did_you_mean(str(nxt), states)}",
                        at,
                    )
                if not _number(r):
                    raise SpecError(f"the reward {r!r} is not a finite number", at)
                if not isinstance(done, bool):
                    raise SpecError(f"done must be true or false, got {done!r}", at)
                key, weight = str(nxt), weights[i]
                probs[key] = probs.get(key, Fraction(0)) + weight
                expected += weight * _exact(r)
                ends.setdefault(key, {}).setdefault(done, (s, a, i))
                locate(("transitions", name, str(a), key), (s, a, i))
            transitions[name][str(a)] = {k: _text(v) for k, v in probs.items() if v}
            rewards[name][str(a)] = _text(expected)
            locate(("transitions", name, str(a)), (s, a))
            locate(("rewards", name, str(a)), (s, a))
    for nxt, flags in ends.items():
        if len(flags) == 2:
            s, a, i = flags[False]
            raise SpecError(
                f"an outcome leads to state {nxt} without ending the episode, and another "
                f"(mdp.P[{flags[True][0]}][{flags[True][1]}]) ends it there: the Bellman "
                f"equations need one value for {nxt}",
                doc.loc("mdp", "P", s, a, i),
            )
    terminal = [n for n in states if True in ends.get(n, {})]
    for n in terminal:  # Gymnasium never reads a row once the episode has ended
        del transitions[n], rewards[n]
    if not transitions:
        raise SpecError(
            "every state of mdp.P is one an outcome with done leads to: the episode ends "
            "wherever it starts, and there is no state to solve the Bellman equations for",
            doc.loc("mdp", "P"),
        )
    data = {k: v for k, v in mdp.items() if k != "P"}
    data.update(
        states=list(states),
        actions=list(actions),
        transitions=transitions,
        rewards=rewards,
        terminal=terminal,
    )
    for key in FROM_TABLE:
        locate((key,), ())
    return Document({**doc.data, "mdp": data}, doc.file, locations, doc.source)


def _text(v: Fraction):
    """A fraction as a number the spec reads exactly: an int, or its text "p/q"."""
    return v.numerator if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
