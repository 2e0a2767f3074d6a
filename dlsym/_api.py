"""``derive()``: the library API the CLI wraps. It reads a spec, hands it to its section
(the table ``BUILDERS``) and returns a derivation that satisfies the contract of
``dlsym.sections.Derivation``."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from dlsym._budget import OverTime, escaped, step
from dlsym._budget import budget as time_budget
from dlsym._catalog import resolve
from dlsym._errors import Location, SpecError
from dlsym.sections import calculus, constrained, info, lqr, mdp, random, recurrence
from dlsym.sections._base import DerivationBase
from dlsym.spec._common import section_of, worked_on
from dlsym.spec._yamlfile import Document, load_file

# Python's recursion limit while dlsym works (see derive); the derivation refuses specs
# that nest deeper than dlsym.calculus._derive.MAX_EXPANDED_NESTING well below it
RECURSION_LIMIT = 20_000

# section id (dlsym.spec._common.SECTIONS; None for calculus) -> validate and derive
BUILDERS: dict[str | None, Callable[[Document], DerivationBase]] = {
    None: calculus.build,
    "constrained": constrained.build,
    "info": info.build,
    "mdp": mdp.build,
    "lqr": lqr.build,
    "random": random.build,
    "recurrence": recurrence.build,
}


def load_document(source: str | Path | Mapping) -> Document:
    """A spec file (a path, or a catalog spec's name) or an in-memory mapping as a
    located ``Document``."""
    if isinstance(source, Mapping):
        return Document(_plain(source), "<mapping>", {})
    if isinstance(source, (str, Path)):
        return load_file(resolve(source))
    raise SpecError(f"derive() takes a path or a mapping, not {type(source).__name__}")


_WHERE = Location("<mapping>", 1, 1)  # a mapping has no lines: where its errors point


def _plain(value, within=()):
    """A mapping built in Python, as YAML would give it: NumPy's integers (a dim taken
    from an array's ``shape``, ``np.int64`` from a loop) as the Python ints every
    validation reads; bool, also an integer to Python, stays bool (refused as a size).
    A key that is no string (``{5: 1}``: a TypeError deep in a suggestion) and a
    mapping or list that holds itself (a RecursionError) are located errors, as YAML's
    own are. ``within``: the containers around ``value``."""
    if isinstance(value, (Mapping, list, tuple)) and any(value is c for c in within):
        raise SpecError("the mapping holds itself (a cycle): a spec is a tree", _WHERE)
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise SpecError(f"keys must be strings, got {bad[0]!r}", _WHERE)
        return {k: _plain(v, (*within, value)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if type(value) not in (list, tuple):
            return value
        return type(value)(_plain(v, (*within, value)) for v in value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        return int(value)
    return value


def _budget(budget) -> float | None:
    """``derive()``'s budget, checked: seconds >= 0 (0 or None: no limit)."""
    if budget is None:
        return None
    if (
        isinstance(budget, bool)
        or not isinstance(budget, numbers.Real)
        or not math.isfinite(budget)
        or budget < 0
    ):
        raise SpecError(
            f"derive(): budget must be a number of seconds >= 0 (None or 0: no limit), "
            f"got {budget!r}"
        )
    return float(budget)


VERIFY_OPTIONS = ("points", "seed", "device", "dtype", "rtol", "atol")  # verify()'s keywords


def derive(
    source: str | Path | Mapping | Document,
    *,
    verify: bool = False,
    budget: float | None = None,
    **verify_options,
) -> DerivationBase:
    """Parse, validate and derive a spec.

    Parameters
    ----------
    source : str, Path or Mapping
        A YAML spec file, the name of a catalog spec (``"logistic_regression"``: see
        ``dlsym list``), or the spec itself as a mapping (docs/spec.md).
    verify : bool, default False
        Also run ``verify()`` on the result (numeric checks against independent
        references) before returning it.
    budget : float, optional
        Seconds the derivation (and verification) may take; past it, ``BudgetError``
        (exit code 2 in the CLI) naming the step it was in. None: no limit. Enforced in
        the main thread only (a timer signal).
    **verify_options
        Passed to ``verify()``: ``points``, ``seed``, ``device``, ``dtype``, ``rtol``,
        ``atol``.

    Returns
    -------
    DerivationBase
        The derivation of the spec's section: ``Derivation`` for a calculus spec, or
        the constrained-optimization, information-theory, MDP or LQR derivation. All
        have ``results``, ``steps``, ``latex()``, ``to_dict()``, ``function(kind)`` and
        ``verify()``.

    Raises
    ------
    SpecError
        The spec is invalid; the message names the file, line and column.

    Examples
    --------
    >>> import dlsym
    >>> d = dlsym.derive({
    ...     "name": "least_squares",
    ...     "symbols": {"A": {"shape": ["m", "n"]}, "x": {"shape": ["n"]},
    ...                 "b": {"shape": ["m"]}},
    ...     "dims": {"m": 4, "n": 3},
    ...     "objective": "sum((A @ x - b)**2)",
    ...     "wrt": "x",
    ...     "derive": ["gradient", "hessian"],
    ... })
    >>> d.result_display("gradient")["expr"]
    '2*(A.T @ (A @ x - b))'
    >>> d.result_display("hessian")["expr"]
    '2*(A.T @ A)'
    >>> [step.title for step in d.steps]
    ['Objective', 'Gradient with respect to x', 'Hessian with respect to x']

    A bad spec is a located error:

    >>> dlsym.derive({"name": "bad", "objective": "sigmod(x)", "wrt": "x"})
    Traceback (most recent call last):
    ...
    dlsym._errors.SpecError: <mapping>:1:1: unknown function 'sigmod' (did you mean 'sigmoid'?); the language's functions: ... in objective
    """
    # SymPy walks expressions recursively, several Python frames per level: a deep
    # network's results (an MLP of depth 64 nests 190 levels) pass Python's default
    # limit of 1000 frames when simplified or printed. The limit only ever goes up.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    # before anything runs, verify or not: a misspelt budegt=5 was dropped unseen where
    # verify is False, and the spec ran with no limit
    unknown = sorted(set(verify_options) - set(VERIFY_OPTIONS))
    if unknown:
        raise TypeError(
            f"derive() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes verify, budget and verify()'s {', '.join(VERIFY_OPTIONS)}"
        )
    budget = _budget(budget)
    doc = source if isinstance(source, Document) else load_document(source)
    mine = None
    try:
        with time_budget(budget, doc.file) as mine, step("", worked_on(doc)):
            d = BUILDERS[section_of(doc)](doc)
            if verify:
                d.verify(**verify_options)
    except OverTime as exc:  # past this budget as it was closing (budget._close)
        if mine is None or exc.token is not mine:
            raise  # an outer one's (the CLI's): its owner says so
        raise escaped(exc, budget or 0, doc.file) from None
    return d
