"""Random variables (shared/spec-format.md, "Random variables and expectations"): the
moments in a spec's objective or output in closed form, step by step
(``dlsym.calculus._moments``), each verified against the distributions (``_verify``).
"""

from __future__ import annotations

from dlsym._budget import step
from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._moments import Moments
from dlsym.calculus._special_values import caveat_note
from dlsym.sections._base import SectionDerivation, Shown, ShownStep, check_laws
from dlsym.sections._rows import EQ, Printing, Step, latex_rows, law_latex, law_pretty, text_rows
from dlsym.sections.random._function import closed_form_function
from dlsym.sections.random._verify import verify_moments
from dlsym.spec._common import Header
from dlsym.spec._spec import build_spec
from dlsym.spec._yamlfile import Document
from dlsym.verify import report


class RandomDerivation(SectionDerivation):
    NOT_VALUES: dict = {}

    def __init__(self, spec, forms, steps, note=None):
        head = Header(
            spec.name, spec.title, spec.description, spec.file, spec.derive, spec.verify, spec.doc
        )
        self.spec = spec
        self.forms = forms
        self.printing = Printing(spec)
        self.latex_of = self.printing.latex_of
        self.text_of = self.printing.text_of
        self.expr_of = self.printing.expr_of
        shape = spec.algebra.shape
        self.shape = shape(forms.target) if forms is not None else ()
        results = {}
        if forms is not None:
            extra = {"moments": {self.expr_of(m): self.expr_of(v) for m, v in forms.values.items()}}
            results["closed_form"] = Shown(
                self.expr_of(forms.result), self.latex_of(forms.result), forms.result, extra
            )
        else:
            results["closed_form"] = Shown("none", r"\text{no closed form}", None)
        notes = [note] if note else []
        if forms is not None and forms.caveats:
            notes.append(caveat_note("the closed form", forms.caveats, self.expr_of))
        super().__init__(head, results, [self._shown(s) for s in steps], notes=notes)
        self.section = "random"

    def _shown(self, s) -> ShownStep:
        return ShownStep(
            s.title, latex_rows(self.printing, s.rows), text_rows(self.printing, s.rows), s.why
        )

    @property
    def value_kinds(self) -> tuple:
        return ("closed_form",)

    def unavailable(self, kind: str) -> str | None:
        if kind == "closed_form" and self.forms is None:
            return self.notes[0] if self.notes else "no closed form was found"
        return None

    def _function(self, kind: str, backend: str):
        return closed_form_function(self.spec, self.forms.result, self.shape, backend)

    def _verify(self, points, seed, device, dtype, rtol, atol):
        if self.forms is None:  # nothing was claimed: the notes say why
            return report([], 0, dtype, device, rtol, atol)
        return verify_moments(self, points, seed, device, dtype, rtol, atol)


def _law_rows(printing, spec):
    """``r ~ N(μ, σ²)`` for each random symbol."""
    rows = []
    for r, law in spec.laws.items():
        rows.append((r, (r"\sim", "~"), (law_latex(printing, law), law_pretty(law))))
    return rows


def build(doc: Document) -> RandomDerivation:
    spec = build_spec(doc)
    check_laws(doc, spec.laws, spec.symbols, spec.dim_values)
    engine = Moments(spec)
    target = spec.objective if spec.objective is not None else spec.output
    lhs = (r"\ell", "ℓ") if spec.objective is not None else (r"\mathbf{f}", "f")
    forms, note = None, None
    printing = Printing(spec)
    with step("closed form of the moments"):
        try:
            forms = engine.closed_form()
        except NoClosedForm as exc:
            note = f"no closed form: {engine.why_not(exc, printing.expr_of)}"
    steps = [
        Step(
            "Random symbols",
            _law_rows(printing, spec),
            "entries of a vector or matrix are independent and identically distributed "
            "(a normal vector's covary through its covariance); distinct symbols are "
            "independent",
        ),
        Step(
            "Objective" if spec.objective is not None else "Output",
            [(lhs, EQ, target)] + [(dd.symbol, EQ, dd.expr) for dd in spec.defines],
            "the moments to put in closed form",
        ),
    ]
    steps += [Step(s.title, [(s.lhs, EQ, *s.rhs)], s.why) for s in engine.steps]
    if forms is not None:
        steps.append(
            Step(
                "Closed form", [(lhs, EQ, forms.result)], "every moment replaced by its closed form"
            )
        )
    return RandomDerivation(spec, forms, steps, note)
