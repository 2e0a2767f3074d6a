"""Steps as rows ``lhs = rhs_0 = rhs_1 ...`` printed as LaTeX and as Unicode art, for
the sections whose steps are equations between the spec's expressions (random
variables, recurrences)."""

from __future__ import annotations

from sympy.printing.pretty.stringpict import prettyForm

from dlsym.expr._piecewise import shown
from dlsym.printing._printers import (
    ExprPrinter,
    PaperLatexPrinter,
    TensorPrettyPrinter,
    _no_units_import,
    unicode_name,
)

EQ = ("=", "=")  # a row's relation, in LaTeX and in text


class Printing:
    """A spec's expressions as LaTeX, terminal text and the expression language."""

    def __init__(self, spec):
        self.spec = spec
        self.latex_names = spec.latex_names
        self.text_names = {s: unicode_name(v) for s, v in self.latex_names.items()}

    def latex_of(self, e) -> str:
        return PaperLatexPrinter(self.spec.algebra.shape, self.latex_names).doprint(e)

    def text_of(self, e) -> str:
        return TensorPrettyPrinter(self.spec.algebra.shape, self.text_names).doprint(e)

    def pretty(self, e) -> prettyForm:
        with _no_units_import():
            # _print skips doprint's showing a branch at its special value: the terminal
            # printed the Taylor polynomial the code takes near r = 1
            printer = TensorPrettyPrinter(self.spec.algebra.shape, self.text_names)
            return printer._print(shown(e))

    def expr_of(self, e) -> str:
        return ExprPrinter(self.spec.algebra.shape, self.spec.names).doprint(e)


class Step:
    """A step before printing: rows (lhs, relation, rhs) of SymPy expressions, or of
    (LaTeX, text) pairs where a row is not an expression (a distribution)."""

    def __init__(self, title, rows, why):
        self.title, self.rows, self.why = title, rows, why


def latex_rows(printing, rows) -> str:
    """``lhs &= rhs_0 \\\\ &= rhs_1 ...`` for each row (lhs, relation, rhs, ...)."""
    out = []
    for lhs, rel, *forms in rows:
        show = [x[0] if isinstance(x, tuple) else printing.latex_of(x) for x in (lhs, *forms)]
        out.append(f"{show[0]} &{rel[0]} {show[1]}")
        out += [f"&{rel[0]} {f}" for f in show[2:]]
    return " \\\\\n".join(out)


def text_rows(printing, rows) -> str:
    """The same as Unicode art, aligned on the relation."""
    out = []
    for lhs, rel, *forms in rows:
        show = [pretty_part(printing, x) for x in (lhs, *forms)]
        pad = prettyForm(" " * show[0].width())
        for i, f in enumerate(show[1:]):
            head = show[0] if i == 0 else pad
            out.append(prettyForm(*head.right(f" {rel[1]} ", f)).render(wrap_line=False))
    return "\n".join(out)


def pretty_part(printing, x) -> prettyForm:
    """A row's part as Unicode art: an expression, or the text of a (LaTeX, text) pair,
    or a callable that draws it (a distribution with its parameters)."""
    if not isinstance(x, tuple):
        return printing.pretty(x)
    return x[1](printing) if callable(x[1]) else prettyForm(x[1])


# how each family is written in a paper, from its parameters' LaTeX
LAW_LATEX = {
    "normal": lambda m, v: rf"\mathcal{{N}}\left({m},\ {v}\right)",
    "uniform": lambda a, b: rf"\mathcal{{U}}\left({a},\ {b}\right)",
    "bernoulli": lambda p: rf"\operatorname{{Bernoulli}}\left({p}\right)",
    "mvnormal": lambda m, s: rf"\mathcal{{N}}\left({m},\ {s}\right)",
    # a drawn example: uniform over the labels 0..m-1, or with the probabilities p
    "uniform_index": lambda m: rf"\mathcal{{U}}\{{0, \dots, {m} - 1\}}",
    "categorical": lambda p: rf"\operatorname{{Categorical}}\left({p}\right)",
}
LAW_TEXT = {
    "normal": "N({}, {})",
    "uniform": "U({}, {})",
    "bernoulli": "Bernoulli({})",
    "mvnormal": "N({}, {})",
    "uniform_index": "U{0, ..., {} - 1}",
    "categorical": "Categorical({})",
}


def law_latex(printing, law) -> str:
    """A distribution as a paper writes it: N(μ, σ²)."""
    return LAW_LATEX[law.family](*(printing.latex_of(p) for p in law.params))


def law_pretty(law):
    """N(μ, s²) with its parameters drawn as expressions (a power stays a superscript)."""

    def draw(printing):
        name, *rest = LAW_TEXT[law.family].split("{}")
        out = prettyForm(name)
        for p, after in zip(law.params, rest):
            out = prettyForm(*out.right(printing.pretty(p), after))
        return out

    return draw
