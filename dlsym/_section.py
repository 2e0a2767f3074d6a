"""What every kind of spec shares: which section a spec belongs to, its common keys, and
the data the renderers print for the sections beyond calculus.

A spec is a calculus spec (``objective``/``output``) unless one of the keys in
``SECTIONS`` appears at its top level; that section's module then validates and derives
it, and returns a ``SectionDerivation`` (same renderers, same JSON contract, same
``verify()``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from ._errors import SpecError, did_you_mean
from ._yamlfile import Document

# top-level key -> (section name, module that builds it)
SECTIONS = {
    "mdp": ("Markov decision process", "._mdp"),
    "lqr": ("LQR", "._lqr"),
    "distributions": ("information theory", "._info"),
    "quantities": ("information theory", "._info"),
    "identities": ("information theory", "._info"),
    "units": ("information theory", "._info"),
    "minimize": ("constrained optimization", "._constrained"),
    "maximize": ("constrained optimization", "._constrained"),
    "subject_to": ("constrained optimization", "._constrained"),
}
BASE_KEYS = ("name", "title", "description", "symbols", "dims", "derive", "verify")


def section_of(doc: Document) -> str | None:
    """The module of the section ``doc`` belongs to; None for a calculus spec."""
    data = doc.data if isinstance(doc.data, dict) else {}
    found = [k for k in data if k in SECTIONS]
    modules = {SECTIONS[k][1] for k in found}
    if len(modules) > 1:
        a, b = found[0], next(k for k in found if SECTIONS[k][1] != SECTIONS[found[0]][1])
        raise SpecError(f"'{b}' ({SECTIONS[b][0]}) cannot be combined with '{a}' "
                        f"({SECTIONS[a][0]}) in one spec", doc.key_loc(b))
    return modules.pop() if modules else None


def build(doc: Document):
    """Validate and derive a non-calculus spec with its section's module."""
    name = section_of(doc)
    if importlib.util.find_spec(name, __package__) is None:
        key = next(k for k in doc.data if k in SECTIONS)
        raise SpecError(f"'{key}' ({SECTIONS[key][0]}) is not supported by this version of "
                        "dlsym yet", doc.key_loc(key))
    return importlib.import_module(name, __package__).build(doc)


def calculus_only(doc: Document, command: str) -> None:
    """``check`` and ``codegen`` work on calculus specs; say so for any other."""
    name = section_of(doc)
    if name is not None:
        key = next(k for k in doc.data if k in SECTIONS)
        raise SpecError(f"{command} works on calculus specs (objective or output, and wrt); "
                        f"this is a {SECTIONS[key][0]} spec: use dlsym derive",
                        doc.key_loc(key))


# --- common keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The common keys every spec has (shared/spec-format.md, "Common keys")."""

    name: str
    title: str
    description: str
    file: str
    derive: tuple
    verify: Any                 # _spec.VerifyOptions
    doc: Document = field(repr=False, compare=False)


def header(doc: Document, section_keys: tuple, kinds: tuple, default_kinds: tuple) -> Header:
    """Check the top-level keys, ``name``, ``title``, ``derive`` and ``verify``."""
    from ._spec import _verify_options, check_name
    data = doc.data
    allowed = BASE_KEYS + section_keys
    for key in data:
        if key not in allowed:
            kind = SECTIONS[section_keys[0]][0] if section_keys[0] in SECTIONS else ""
            where = f"{_article(kind)} {kind} spec" if kind else "this spec"
            raise SpecError(f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}; "
                            f"allowed: {', '.join(allowed)}", doc.key_loc(key))
    name = check_name(doc)
    raw = data.get("derive")
    if raw is None:
        derive = default_kinds
    else:
        items = raw if isinstance(raw, list) else [raw]
        seen = []
        for i, k in enumerate(items):
            loc = doc.loc("derive", i) if isinstance(raw, list) else doc.loc("derive")
            if k not in kinds:
                raise SpecError(f"derive kind {k!r} does not apply to a "
                                f"{SECTIONS[section_keys[0]][0]} spec"
                                f"{did_you_mean(str(k), kinds)}; one of: {', '.join(kinds)}", loc)
            if k in seen:
                raise SpecError(f"derive lists '{k}' twice", loc)
            seen.append(k)
        derive = tuple(seen)
    return Header(name, data.get("title") or name.replace("_", " ").capitalize(),
                  data.get("description") or "", doc.file, derive, _verify_options(doc), doc)


# --- what the renderers print ----------------------------------------------------------


@dataclass(frozen=True)
class ShownStep:
    """A step already printed: ``latex`` holds the rows of an ``align*`` block
    (``lhs &= rhs \\\\ ...``), ``text`` the same for a terminal."""

    title: str
    latex: str
    text: str
    justification: str   # prose, with $...$ math


@dataclass(frozen=True)
class ValueTable:
    """A table of results (values per state, per state and action, ...)."""

    title: str
    columns: tuple
    rows: tuple          # tuples of str, one per column
    latex_rows: tuple = ()  # the same cells as LaTeX math, when they differ


@dataclass(frozen=True)
class Shown:
    """One result as the output contract shows it, plus the exact value."""

    expr: str
    latex: str
    value: Any = None    # the exact SymPy value (Matrix, dict, ...), for the Python API
    extra: dict = field(default_factory=dict)   # more JSON fields for this result


class SectionDerivation:
    """A derived non-calculus spec. Subclasses set ``results`` ({kind: Shown}),
    ``steps`` (ShownStep), ``tables`` and ``notes``, and implement ``_verify``."""

    def __init__(self, head: Header, results: dict, steps: list, tables=(), notes=()):
        self.header = head
        self.results = results
        self.steps = tuple(steps)
        self.tables = tuple(tables)
        self.notes = tuple(notes)
        self.verification = None

    name = property(lambda self: self.header.name)
    title = property(lambda self: self.header.title)
    description = property(lambda self: self.header.description)

    def step_latex(self, step: ShownStep) -> str:
        return step.latex

    def step_text(self, step: ShownStep) -> str:
        return step.text

    def result_display(self, kind: str) -> dict:
        r = self.results[kind]
        return {"expr": r.expr, "latex": r.latex, **r.extra}

    def latex(self, standalone: bool = False) -> str:
        from ._render import latex_document
        return latex_document(self, standalone)

    def to_dict(self) -> dict:
        out = {"name": self.name, "title": self.title,
               "results": {k: self.result_display(k) for k in self.results},
               "steps": [{"title": s.title, "latex": s.latex, "justification": s.justification}
                         for s in self.steps]}
        if self.tables:
            out["tables"] = [{"title": t.title, "columns": list(t.columns),
                              "rows": [list(r) for r in t.rows]} for t in self.tables]
        if self.notes:
            out["notes"] = list(self.notes)
        if self.verification is not None:
            out["verification"] = self.verification.to_dict()
        return out

    def verify(self, points: int | None = None, seed: int | None = None,
               device: str | None = None, dtype: str | None = None,
               rtol: float | None = None, atol: float | None = None):
        opts = self.header.verify
        self.verification = self._verify(
            points=points or opts.points, seed=opts.seed if seed is None else seed,
            device=device or opts.device, dtype=dtype or opts.dtype,
            rtol=opts.rtol if rtol is None else rtol, atol=opts.atol if atol is None else atol)
        return self.verification

    def _verify(self, points, seed, device, dtype, rtol, atol):
        raise NotImplementedError


def report(checks, points: int, dtype: str, device: str, rtol: float, atol: float):
    """A ``VerificationReport`` from a list of ``Check``s."""
    from ._verify import VerificationReport
    checks = [c for c in checks if c is not None]
    refs = []
    for c in checks:   # each reference once, even inside combined ones ("a and b; c")
        for ref in re.split(r" and |; ", c.reference.split(" at ")[0]):
            if ref not in refs:
                refs.append(ref)
    return VerificationReport(
        passed=all(c.passed for c in checks), points=points,
        max_abs_error=max((c.max_abs_error for c in checks), default=0.0),
        max_rel_error=max((c.max_rel_error for c in checks), default=0.0),
        reference=" and ".join(refs) + f" ({dtype}, {device})", checks=tuple(checks),
        device=device, dtype=dtype, rtol=rtol, atol=atol)


RANGE_DRAWS = 64   # seeded draws of the symbols at which a written probability is checked


def probability_range_error(p, decls, what: str) -> str | None:
    """Why the probability ``p``, written in scalar symbols, can leave [0, 1] over the
    symbols' domains (checked at seeded draws from them, what verification samples), or
    None. ``bernoulli: a`` with a real a, or r - 1/2 with r in (0, 1), are caught here
    rather than as NaN in the verification."""
    import numpy as np

    from ._verify import SAMPLERS
    used = [d for d in decls if not d.shape and d.symbol in p.free_symbols]
    if not used:
        return None
    rng = np.random.default_rng(0)
    for _ in range(RANGE_DRAWS):
        at = {d.symbol: sp.Float(float(SAMPLERS[d.domain](rng, ()))) for d in used}
        v = complex(sp.sympify(p).xreplace(at).evalf())
        if abs(v.imag) > 1e-12 or not -1e-12 <= v.real <= 1 + 1e-12:
            where = ", ".join(f"{d.name} = {float(at[d.symbol]):.3g}" for d in used)
            doms = ", ".join(f"{d.name}: {d.domain}" for d in used)
            return (f"{what} is {v.real:.3g} at {where}, outside [0, 1], for values its "
                    f"symbols can take ({doms}); write it so that it stays a probability, or "
                    "choose domains for the symbols that keep it in [0, 1] (unit_interval "
                    "is (0, 1))")
    return None


def _article(word: str) -> str:
    """'an' before a vowel sound: an information theory spec, an LQR spec, a Markov ..."""
    first = word.split()[0]
    if first.isupper():             # an initialism is read letter by letter
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
        return sp.Rational(repr(value))
    return None
