"""The keys every spec shares, and which section a spec belongs to.

A spec is a calculus spec (``objective``/``output``) unless one of the keys in
``SECTIONS`` appears at its top level; ``dlsym._api`` then hands it to that section.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass, field

import sympy as sp

from dlsym._errors import Location, SpecError, did_you_mean
from dlsym.spec._spec import OBJECTIVE_KINDS, VerifyOptions, _verify_options, check_name
from dlsym.spec._yamlfile import Document

# top-level key -> (section name as said in messages, section id in dlsym._api.BUILDERS)
SECTIONS = {
    "mdp": ("Markov decision process", "mdp"),
    "lqr": ("LQR", "lqr"),
    "distributions": ("information theory", "info"),
    "quantities": ("information theory", "info"),
    "identities": ("information theory", "info"),
    "units": ("information theory", "info"),
    "minimize": ("constrained optimization", "constrained"),
    "maximize": ("constrained optimization", "constrained"),
    "subject_to": ("constrained optimization", "constrained"),
    "recurrence": ("recurrence", "recurrence"),
}
# what a section's spec says to a kind of a calculus spec (maximize: f, derive:
# [stationary] is the GAN discriminator written as an optimum with no constraints)
CALCULUS_KIND_HINTS = {
    "constrained optimization": (
        "it is a calculus spec's kind: write the function as 'objective:' (with wrt:), or "
        "derive 'solution', which solves a problem without subject_to too"
    ),
}
BASE_KEYS = ("name", "title", "description", "symbols", "dims", "derive", "verify")
# a spec with no key of SECTIONS whose symbols carry a ``distribution`` (random symbols)
RANDOM = ("random variables", "random")


def worked_on(doc: Document) -> Location:
    """Where a spec's work is said to be when no step names an entry of it (a budget
    error's location): the key of its objective or output, else of its section's first
    key (``minimize``, ``mdp``, ...), else the top of the file."""
    data = doc.data if isinstance(doc.data, dict) else {}
    key = next((k for k in data if k in ("objective", "output") or k in SECTIONS), None)
    return doc.key_loc(key) if key is not None else doc.loc()


def random_symbols(doc: Document) -> list:
    """The names of the symbols that carry a ``distribution`` key."""
    data = doc.data if isinstance(doc.data, dict) else {}
    symbols = data.get("symbols")
    if not isinstance(symbols, dict):
        return []
    return [k for k, v in symbols.items() if isinstance(v, dict) and "distribution" in v]


def section_of(doc: Document) -> str | None:
    """The id of the section ``doc`` belongs to; None for a calculus spec."""
    data = doc.data if isinstance(doc.data, dict) else {}
    found = [k for k in data if k in SECTIONS]
    if not found and random_symbols(doc):
        return RANDOM[1]
    modules = {SECTIONS[k][1] for k in found}
    if len(modules) > 1:
        a, b = found[0], next(k for k in found if SECTIONS[k][1] != SECTIONS[found[0]][1])
        raise SpecError(
            f"'{b}' ({SECTIONS[b][0]}) cannot be combined with '{a}' "
            f"({SECTIONS[a][0]}) in one spec",
            doc.key_loc(b),
        )
    return modules.pop() if modules else None


def calculus_only(doc: Document, command: str) -> None:
    """``check`` and ``codegen`` work on calculus specs; say so for any other."""
    name = section_of(doc)
    if name == RANDOM[1]:
        first = random_symbols(doc)[0]
        raise SpecError(
            f"{command} works on calculus specs (objective or output, and wrt); "
            f"'{first}' has a distribution, so this is a {RANDOM[0]} spec: use dlsym derive",
            doc.loc("symbols", first, "distribution"),
        )
    if name is not None:
        key = next(k for k in doc.data if k in SECTIONS)
        raise SpecError(
            f"{command} works on calculus specs (objective or output, and wrt); "
            f"this is a {SECTIONS[key][0]} spec: use dlsym derive",
            doc.key_loc(key),
        )


# --- common keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The common keys every spec has (shared/spec-format.md, "Common keys")."""

    name: str
    title: str
    description: str
    file: str
    derive: tuple
    verify: VerifyOptions
    doc: Document = field(repr=False, compare=False)


# (a section's first key, a top-level key it does not take) -> where that meaning goes
_MISPLACED = {
    ("recurrence", "objective"): (
        " (a loss on the states at the last step is recurrence.final; one at every step "
        "is recurrence.loss)"
    ),
}


def header(doc: Document, section_keys: tuple, kinds: tuple, default_kinds: tuple) -> Header:
    """Check the top-level keys, ``name``, ``title``, ``derive`` and ``verify``."""
    data = doc.data
    allowed = BASE_KEYS + section_keys
    for key in data:
        if key not in allowed:
            kind = SECTIONS[section_keys[0]][0] if section_keys[0] in SECTIONS else ""
            where = f"{_article(kind)} {kind} spec" if kind else "this spec"
            hint = _MISPLACED.get((section_keys[0], key), "")
            raise SpecError(
                f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}; "
                f"allowed: {', '.join(allowed)}{hint}",
                doc.key_loc(key),
            )
    name = check_name(doc)
    raw = data.get("derive")
    if raw is None:
        derive = default_kinds
    else:
        items = raw if isinstance(raw, list) else [raw]
        seen = []
        for i, k in enumerate(items):
            loc = doc.loc("derive", i) if isinstance(raw, list) else doc.loc("derive")
            if not isinstance(k, str) or k not in kinds:
                section = SECTIONS[section_keys[0]][0]
                hint = CALCULUS_KIND_HINTS.get(section) if k in OBJECTIVE_KINDS else None
                raise SpecError(
                    f"derive kind {k!r} does not apply to a {section} spec"
                    f"{did_you_mean(str(k), kinds)}; one of: {', '.join(kinds)}"
                    + (f" ({hint})" if hint else ""),
                    loc,
                )
            if k in seen:
                raise SpecError(f"derive lists '{k}' twice", loc)
            seen.append(k)
        derive = tuple(seen)
    return Header(
        name,
        data.get("title") or name.replace("_", " ").capitalize(),
        data.get("description") or "",
        doc.file,
        derive,
        _verify_options(doc),
        doc,
    )


def _article(word: str) -> str:
    """'an' before a vowel sound: an information theory spec, an LQR spec, a Markov ..."""
    first = word.split()[0]
    if first.isupper():  # an initialism is read letter by letter
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if first[0].lower() in "aeiou" else "a"


def exact_number(value, loc=None) -> sp.Expr | None:
    """A YAML number as an exact SymPy number (0.1 -> 1/10, as written), else None;
    YAML's .nan and .inf have no exact value and are a located error at ``loc``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{value} is not a finite number; exact arithmetic needs one", loc)
        # the decimal as written where YAML gave it (WrittenFloat), else the float's
        # shortest repr (0.1 -> 1/10)
        return sp.Rational(fractions.Fraction(getattr(value, "text", None) or repr(value)))
    return None


def total_shown(total) -> str:
    """A sum of probabilities as an error says it: 1 + 1e-300, not the exact fraction of
    two 301-digit numbers that 1e-300 read exactly makes."""
    off = sp.simplify(total - 1)
    said = str(sp.simplify(total))
    if off.is_Rational and off != 0 and len(said) > 24:
        return f"1 {'+' if off > 0 else '-'} {float(abs(off)):.3g}"
    return said
