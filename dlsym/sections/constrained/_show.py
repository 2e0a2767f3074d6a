"""Printing the constrained-optimization steps: one list of rows gives both the LaTeX
(``align*`` rows) and the terminal text (SymPy pretty printing, aligned on the relation).

A row is ``(lhs, rel, rhs)``; each part is a SymPy expression (printed with the paper
printers of the Lagrangian's calculus ``Derivation``), a ``Name`` (LaTeX and text
spellings), a ``Seq`` of parts side by side, or a plain string used as is; ``lhs=None``
continues the previous row (``= ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

from dlsym.printing._printers import TensorPrettyPrinter, _no_units_import
from dlsym.sections._base import ShownStep
from dlsym.spec._symbols import scripted


@dataclass(frozen=True)
class Name:
    latex: str
    text: str


class Seq(tuple):
    """Parts printed side by side (``x ⪰ 0`` inside a row)."""


class Rel(str):
    """A relation inside a ``Seq``: a key of ``RELATIONS``."""


# relation -> (LaTeX, text)
RELATIONS = {
    "=": ("=", "="),
    "le": (r"\le", "≤"),
    "ge": (r"\ge", "≥"),
    "preceq": (r"\preceq", "⪯"),
    "succeq": (r"\succeq", "⪰"),
    "quad": (r"\quad", "  "),
    "": ("", " "),
}


class Rows:
    def __init__(self, derivation, problem):
        self.d = derivation  # the calculus Derivation of L: names and printers
        self.p = problem

    # -- single parts ---------------------------------------------------------------------

    def latex(self, part) -> str:
        if part is None:
            return ""
        if isinstance(part, Name):
            return part.latex
        if isinstance(part, Seq):
            return " ".join(self.latex(x) for x in part)
        if isinstance(part, Rel):
            return RELATIONS[part][0]
        if isinstance(part, str):
            return part
        return self.d.latex_of(sp.sympify(part) if isinstance(part, int) else part)

    def pretty(self, part) -> prettyForm:
        if part is None:
            return prettyForm("")
        if isinstance(part, Name):
            return prettyForm(part.text)
        if isinstance(part, Seq):
            out = prettyForm("")
            for i, x in enumerate(part):
                out = prettyForm(*out.right(" " if i else "", self.pretty(x)))
            return out
        if isinstance(part, Rel):
            return prettyForm(RELATIONS[part][1])
        if isinstance(part, str):
            return prettyForm(part)
        printer = _Pretty(self.d.algebra.shape, self.d.text_names)
        with _no_units_import():
            return printer._print(sp.sympify(part))

    def text(self, part) -> str:
        return self.pretty(part).render(wrap_line=False)

    def expr(self, e) -> str:
        return self.d.expr_of(e)

    def text_name(self, decl) -> str:
        return self.d.text_names[decl.symbol]

    # -- rows and steps -------------------------------------------------------------------

    def rows_latex(self, rows) -> str:
        out = []
        for lhs, rel, rhs in rows:
            r = RELATIONS[rel][0] if rel in RELATIONS else rel
            out.append(f"{self.latex(lhs)} &{r} {self.latex(rhs)}".rstrip())
        return " \\\\\n".join(out)

    def rows_text(self, rows) -> str:
        out, width = [], 0
        for lhs, rel, rhs in rows:
            left = self.pretty(lhs) if lhs is not None else prettyForm(" " * width)
            width = left.width() if lhs is not None else width
            r = RELATIONS[rel][1] if rel in RELATIONS else rel
            out.append(
                prettyForm(*left.right(f" {r} ", self.pretty(rhs))).render(wrap_line=False).rstrip()
            )
        return "\n".join(out)

    def step(self, title: str, rows, justification: str) -> ShownStep:
        return ShownStep(title, self.rows_latex(rows), self.rows_text(rows), justification)

    # -- names ----------------------------------------------------------------------------

    def var_latex(self, name: str) -> str:
        """A variable's LaTeX, ready for a star or an argument: in braces where it has
        a script of its own (\\hat{x}^{2}^{\\star} is TeX's double superscript)."""
        return scripted(self.p.base.symbol(name).latex)

    def sense_name(self, sense: str) -> Name:
        vars_latex = ", ".join(self.var_latex(v) for v in self.p.variables)
        return Name(
            rf"\underset{{{vars_latex}}}{{\text{{{sense}}}}}",
            f"{sense} over {', '.join(self.p.variables)}",
        )

    @staticmethod
    def relation(sense: str, shape) -> str:
        """The relation of ``lhs sense rhs`` as printed: componentwise order for vectors
        (Boyd and Vandenberghe's x ⪯ y); for a matrix ⪯ is the semidefinite (Loewner)
        order, so entry by entry it is ≤, as a nonnegative matrix is written X ≥ 0."""
        if sense == "==":
            return "="
        if len(shape) == 1:
            return "preceq" if sense == "<=" else "succeq"
        return "le" if sense == "<=" else "ge"

    def func_name(self, c) -> Name:
        letter = "g" if c.kind == "ineq" else "h"
        group = self.p.inequalities if c.kind == "ineq" else self.p.equalities
        j = next(i for i, x in enumerate(group, 1) if x.number == c.number)
        return Name(f"{letter}_{{{j}}}", f"{letter}{_SUB[j]}" if j < 10 else f"{letter}_{j}")

    def lagrangian_lhs(self) -> Name:
        args = [self.var_latex(v) for v in self.p.variables]
        targs = list(self.p.variables)
        for kind in ("ineq", "eq"):
            for c in self.p.constraints:
                if c.kind == kind:
                    args.append(c.multiplier.latex)
                    targs.append(self.text_name(c.multiplier))
        return Name(rf"\mathcal{{L}}\left({', '.join(args)}\right)", f"ℒ({', '.join(targs)})")

    def grad_lhs(self, v: str) -> Name:
        return Name(
            rf"\nabla_{{{self.var_latex(v)}}} \mathcal{{L}}",
            f"∇_{self.d.text_names[self.p.base.symbol(v).symbol]} ℒ",
        )


_SUB = dict(enumerate("₀₁₂₃₄₅₆₇₈₉"))


class _Pretty(TensorPrettyPrinter):
    """max(0, ...) of a clipped solution as a function call, with the spec's names
    (SymPy's own Max printing bypasses them)."""

    def _print_Max(self, e):
        return self._helper_print_function(e.func, e.args, func_name="max")

    def _print_Min(self, e):
        return self._helper_print_function(e.func, e.args, func_name="min")
