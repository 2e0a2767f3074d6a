"""The derivation contract every section satisfies, and the data its renderers print.

``DerivationBase`` is the contract: ``results``, ``steps``, ``latex()``, ``to_dict()``
(the JSON of shared/spec-format.md), ``function(kind, backend)`` and ``verify()``. The
calculus ``Derivation`` and every ``SectionDerivation`` (constrained optimization,
information theory, MDP, LQR) subclass it, so the CLI, the renderers and the Python API
never ask which section they hold.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy as sp

from dlsym.printing._render import latex_document
from dlsym.spec._common import Header
from dlsym.verify import VerificationReport, draw, generator, tolerance

# --- what the renderers print ----------------------------------------------------------


@dataclass(frozen=True)
class ShownStep:
    """A step already printed: ``latex`` holds the rows of an ``align*`` block
    (``lhs &= rhs \\\\ ...``), ``text`` the same for a terminal."""

    title: str
    latex: str
    text: str
    justification: str  # prose, with $...$ math


@dataclass(frozen=True)
class ValueTable:
    """A table of results (values per state, per state and action, ...)."""

    title: str
    columns: tuple
    rows: tuple  # tuples of str, one per column
    latex_rows: tuple = ()  # the same cells as LaTeX math, when they differ


@dataclass(frozen=True)
class Shown:
    """One result as the output contract shows it, plus the exact value."""

    expr: str
    latex: str
    value: Any = None  # the exact SymPy value (Matrix, dict, ...), for the Python API
    extra: dict = field(default_factory=dict)  # more JSON fields for this result


class DerivationBase(abc.ABC):
    """A derived spec: what every section returns from ``dlsym.derive``.

    Attributes: ``results`` ({kind: result}), ``steps``, ``tables``, ``notes`` and
    ``verification`` (the last ``VerificationReport``, or None before ``verify()``).
    """

    results: dict
    steps: tuple
    tables: tuple = ()
    verification: VerificationReport | None = None

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    @abc.abstractmethod
    def title(self) -> str: ...

    @property
    @abc.abstractmethod
    def description(self) -> str: ...

    @property
    def notes(self) -> tuple:
        return ()

    @property
    @abc.abstractmethod
    def verify_options(self):
        """The spec's ``verify`` key (``VerifyOptions``)."""

    @abc.abstractmethod
    def result_display(self, kind: str) -> dict:
        """``{"expr", "latex", ...}`` of one result, as the JSON output shows it."""

    @abc.abstractmethod
    def step_latex(self, step) -> str:
        """The rows of an ``align*`` block for one step."""

    @abc.abstractmethod
    def step_text(self, step) -> str:
        """One step as terminal text."""

    @abc.abstractmethod
    def function(self, kind: str, backend: str = "numpy") -> Callable:
        """A numeric function of the result ``kind`` (see the subclasses)."""

    def latex(self, standalone: bool = False) -> str:
        """The derivation as LaTeX: an ``align*`` block per step, or with
        ``standalone=True`` a complete document that compiles with ``pdflatex``."""
        return latex_document(self, standalone)

    def to_dict(self) -> dict:
        """The JSON output contract (shared/spec-format.md, "Output contract")."""
        out: dict = {
            "name": self.name,
            "title": self.title,
            "results": {k: self.result_display(k) for k in self.results},
            "steps": [
                {"title": s.title, "latex": self.step_latex(s), "justification": s.justification}
                for s in self.steps
            ],
        }
        if self.tables:
            out["tables"] = [
                {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
                for t in self.tables
            ]
        if self.notes:
            out["notes"] = list(self.notes)
        if self.verification is not None:
            out["verification"] = self.verification.to_dict()
        return out

    def verify(
        self,
        points: int | None = None,
        seed: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> VerificationReport:
        """Check every result numerically against an independent reference.

        Arguments left out come from the spec's ``verify`` key; tolerances the spec does
        not set either come from the kit's policy for ``dtype`` (``dlsym.verify.tolerance``).
        The report is also kept as ``self.verification``.
        """
        opts = self.verify_options
        dtype = dtype or opts.dtype
        rtol, atol = tolerance(
            dtype, opts.rtol if rtol is None else rtol, opts.atol if atol is None else atol
        )
        self.verification = self._verify(
            points=points or opts.points,
            seed=opts.seed if seed is None else seed,
            device=device or opts.device,
            dtype=dtype,
            rtol=rtol,
            atol=atol,
        )
        return self.verification

    @abc.abstractmethod
    def _verify(
        self, points: int, seed: int, device: str, dtype: str, rtol: float, atol: float
    ) -> VerificationReport: ...


class SectionDerivation(DerivationBase):
    """A derived non-calculus spec. Subclasses set ``results`` ({kind: Shown}),
    ``steps`` (ShownStep), ``tables`` and ``notes``, and implement ``_verify``."""

    def __init__(self, head: Header, results: dict, steps: list, tables=(), notes=()):
        self.header = head
        self.results = results
        self.steps = tuple(steps)
        self.tables = tuple(tables)
        self._notes = tuple(notes)
        self.verification = None

    name = property(lambda self: self.header.name)
    title = property(lambda self: self.header.title)
    description = property(lambda self: self.header.description)
    notes = property(lambda self: self._notes)
    verify_options = property(lambda self: self.header.verify)

    def step_latex(self, step: ShownStep) -> str:
        return step.latex

    def step_text(self, step: ShownStep) -> str:
        return step.text

    def result_display(self, kind: str) -> dict:
        r = self.results[kind]
        return {"expr": r.expr, "latex": r.latex, **r.extra}

    def function(self, kind: str, backend: str = "numpy") -> Callable:
        raise KeyError(f"no numeric function for {kind!r} in a {type(self).__name__}")


RANGE_DRAWS = 64  # seeded draws of the symbols at which a written probability is checked


def probability_range_error(p, decls, what: str) -> str | None:
    """Why the probability ``p``, written in scalar symbols, can leave [0, 1] over the
    symbols' domains (checked at seeded draws from them, what verification samples), or
    None. ``bernoulli: a`` with a real a, or r - 1/2 with r in (0, 1), are caught here
    rather than as NaN in the verification."""
    used = [d for d in decls if not d.shape and d.symbol in p.free_symbols]
    if not used:
        return None
    rng = generator(0)
    for _ in range(RANGE_DRAWS):
        at = {d.symbol: sp.Float(float(draw(rng, d.domain))) for d in used}
        v = complex(sp.sympify(p).xreplace(at).evalf())
        if abs(v.imag) > 1e-12 or not -1e-12 <= v.real <= 1 + 1e-12:
            where = ", ".join(f"{d.name} = {float(at[d.symbol]):.3g}" for d in used)
            doms = ", ".join(f"{d.name}: {d.domain}" for d in used)
            return (
                f"{what} is {v.real:.3g} at {where}, outside [0, 1], for values its "
                f"symbols can take ({doms}); write it so that it stays a probability, or "
                "choose domains for the symbols that keep it in [0, 1] (unit_interval "
                "is (0, 1))"
            )
    return None
