"""Output formats of a derivation: terminal (rich), LaTeX, Markdown and JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import stat
import tempfile
import unicodedata
from functools import partial
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sympy.printing.pretty.stringpict import prettyForm

from dlsym._errors import SpecError
from dlsym.printing._fit import FIT_MACROS, fit_rows, split_top
from dlsym.printing._printers import (
    _GREEK,
    TensorPrettyPrinter,
    _no_units_import,
    subscripts,
    without_groups,
)

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "~": r"\textasciitilde{}",
    # the default (OT1) text font has no <, > or |: they print as ¡, ¿ and a dash
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


# Greek letters as pdflatex sets them (its UTF-8 input has no Greek: 'Unicode character
# Δ not set up for use with LaTeX'): math, or the Latin letter an upper-case one looks
# like where LaTeX has no command for it (A for Α), o for omicron
_GREEK_TEXT = dict(
    zip(
        "αβγδεζηθικλμνξοπρστυφχψωςΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ",
        [
            rf"$\{n}$" if len(n) > 1 else n
            for n in (
                "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi o pi "
                "rho sigma tau upsilon phi chi psi omega varsigma "
                "A B Gamma Delta E Z H Theta I K Lambda M N Xi O Pi P Sigma T Upsilon Phi X "
                "Psi Omega"
            ).split()
        ],
    )
)


# Unicode subscripts and superscripts (a name's text form, A₁₂, Aᵀ) as LaTeX scripts
_SUB_CHARS = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋", "0123456789+-"))
_SUP_CHARS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ᵀ", [*"0123456789+-", r"\top "]))
_SCRIPT_RUN = re.compile(f"[{''.join(_SUB_CHARS)}]+|[{''.join(_SUP_CHARS)}]+")


def _script(run: str) -> str:
    if run[0] in _SUB_CHARS:
        return "_{" + "".join(_SUB_CHARS[c] for c in run) + "}"
    return "^{" + "".join(_SUP_CHARS[c] for c in run).strip() + "}"


# the signs dlsym's own notes write in Unicode (H[Δ] = −G, −∞, >= as ≥), as math
_MATH_SIGNS = {"−": "-", "∞": r"\infty ", "≥": r"\geq ", "≤": r"\leq ", "≠": r"\neq "}


def _math_ascii(math: str) -> str:
    """Math of a justification as pdflatex reads it (a name's text form may be in it,
    A₁₂): Unicode scripts as scripts, Greek as its command, the signs of _MATH_SIGNS as
    theirs, anything else as '?'."""
    math = _SCRIPT_RUN.sub(lambda m: _script(m.group()), math)
    return "".join(
        c
        if c.isascii()
        else _MATH_SIGNS[c]
        if c in _MATH_SIGNS
        else _GREEK_TEXT.get(c, "?").strip("$").join("{}")
        for c in math
    )


def _text_char(c: str) -> str:
    """One character of user text as pdflatex's default UTF-8 input can set it: ASCII,
    Latin-1 and the common punctuation as they are, Greek as math, a control character
    as a space, anything else (CJK, emoji: a compile error) as its code point, [U+2603]."""
    if c.isascii():
        return " " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c
    if c in _GREEK_TEXT:
        return _GREEK_TEXT[c]
    if c in _SUB_CHARS or c in _SUP_CHARS:
        return f"${_script(c)}$"
    if c in _MATH_SIGNS:
        return f"${_MATH_SIGNS[c].strip()}$"
    if "\u00a0" <= c <= "\u00ff" or c in "–—‘’“”…•†‡‰€":
        return c
    # by its code point, so that two states named by different such characters are
    # told apart (☃ and 😀 were both ? in every equation)
    return f"[U+{ord(c):04X}]"


def latex_escape(text: str) -> str:
    """User text (a title, a state's name) as literal LaTeX text: its special characters
    escaped, and every character one pdflatex can set (_text_char)."""
    # a line break (a state named "s\n\n1") would end a paragraph inside \text{...}
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"[\\{}_^&%$#~<>|]", lambda m: _LATEX_SPECIAL[m.group()], text)
    return "".join(c if c.isascii() and c.isprintable() else _text_char(c) for c in text)


# function names our justifications write in their math ($sigmoid'(u) = ...$): upright,
# as operators, not as products of italic letters
_NAMES_IN_MATH = re.compile(
    r"(?<![\\A-Za-z{])(sigmoid|softplus|softmax|logsumexp|relu|tanh|sqrt|exp|log|erf|sum|"
    r"mean|diag|tr|Var|Cov|onehot|where|step|sign|var|Abs|pi)(?![A-Za-z])"
)
# LaTeX has these ({...}: already inside a \mathrm or another command's argument)
_OPERATORS = {"exp": r"\exp", "log": r"\log", "tanh": r"\tanh", "pi": r"\pi"}


def _upright(math: str) -> str:
    return _NAMES_IN_MATH.sub(
        lambda m: _OPERATORS.get(m.group(1), rf"\operatorname{{{m.group(1)}}}"), math
    )


# a spec's name in our justifications' math (E[g_1_2^2], m_1_{t-1}): one with two or
# more underscores, or one followed by a subscript of ours; written as a TeX "double
# subscript" error
_SCRIPTED_NAME = re.compile(
    r"(?<![\\A-Za-z0-9_])[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+){2,}(?![A-Za-z0-9])"
    r"|(?<![\\A-Za-z0-9_])[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9]+(?=_)"
)


def _braced_name(m) -> str:
    """``g_1_2`` -> ``{g_{1_{2}}}``: subscripts of subscripts, the whole a group."""
    head, *subs = m.group().split("_")
    out = ""
    for part in reversed(subs):
        out = f"_{{{part}{out}}}"
    return f"{{{head}{out}}}"


def _prose_and_math(text: str, prose, math) -> str:
    """Prose with ``$...$`` math (our justifications) with ``prose`` applied to the
    prose and ``math`` to each math part (its ``$`` kept); unbalanced, all of it prose."""
    parts = text.split("$")
    if len(parts) % 2 == 0:
        return prose(text)
    return "".join(f"${math(p)}$" if i % 2 else prose(p) for i, p in enumerate(parts))


def latex_prose(text: str) -> str:
    """Prose with ``$...$`` math (our justifications): escape the prose, keep the math,
    its function names upright and the spec's names with underscores valid TeX."""
    return _prose_and_math(
        text, latex_escape, lambda p: _upright(_SCRIPTED_NAME.sub(_braced_name, _math_ascii(p)))
    )


# LaTeX commands of our justifications, as a terminal shows them
_PROSE_COMMANDS = {
    r"\nabla": "∇",
    r"\ell": "ℓ",
    r"\langle": "⟨",
    r"\rangle": "⟩",
    r"\Delta": "Δ",
    r"\odot": "⊙",
    r"\det": "det",
    r"\log": "log",
    r"\exp": "exp",
    r"\max": "max",
    r"\min": "min",
    r"\arg\max": "argmax",
    r"\sum": "Σ",
    r"\prod": "∏",
    r"\infty": "∞",
    r"\leq": "≤",
    r"\geq": "≥",
    r"\le": "≤",
    r"\ge": "≥",
    r"\succeq": "⪰",
    r"\succ": "≻",
    r"^\top": "ᵀ",
    r"\top": "ᵀ",
    r"\|": "‖",
    r"\,": " ",
    r"\quad": "  ",
    r"^{-1}": "⁻¹",
    r"^{-T}": "⁻ᵀ",
    r"\left": "",
    r"\right": "",
    r"^{\star}": "*",
    r"\neq": "≠",
    r"\partial": "∂",
    r"\mid": "|",
    r"\lVert": "‖",
    r"\rVert": "‖",
    r"\sim": "~",
}


# \le must not eat the start of \left; \| and \, are not words and need no guard
_PROSE_PATTERN = re.compile(
    "|".join(
        re.escape(cmd) + (r"(?![A-Za-z])" if cmd[-1].isalpha() else "")
        for cmd in sorted(_PROSE_COMMANDS, key=len, reverse=True)
    )
)


def _prose_command(m) -> str:
    """A command's readable form, a space after a word before the next command
    (\\log\\det A: log det A)."""
    out = _PROSE_COMMANDS[m.group(0)]
    after = m.string[m.end() : m.end() + 1]
    return out + " " if out[-1:].isalpha() and after == "\\" else out


def plain_prose(text: str) -> str:
    """The same text for a terminal: the math markers dropped, LaTeX commands readable."""
    text = subscripts(text.replace("$", ""))
    # one pass, longest command first: one after the other, \det turned \log\det into
    # \logdet, which \log (guarded) no longer matched ("d \logdet A" in the terminal)
    text = _PROSE_PATTERN.sub(_prose_command, text)
    text = without_groups(text)
    return re.sub(r"\\([A-Za-z]+)", lambda m: _GREEK.get(m.group(1), m.group(0)), text)


# --- terminal ---------------------------------------------------------------------


def pretty_line(d, line) -> str:
    """``lhs = rhs0`` then ``= rhs1`` ... as Unicode art, aligned on '=' (or the line's
    ``rel``: m > 0 for a condition)."""
    printer = TensorPrettyPrinter(d.algebra.shape, d.text_names)
    if isinstance(line.lhs, tuple):
        lhs = prettyForm(d.text_of(line.lhs))
    else:
        with _no_units_import():
            lhs = printer._print(line.lhs)
    pad = " " * lhs.width()
    rows = []
    for i, r in enumerate(line.rhs):
        with _no_units_import():
            body = printer._print(r)
        head = lhs if i == 0 else prettyForm(pad)
        rel = f" {line.rel} "
        rows.append(prettyForm(*head.right(rel, body)).render(wrap_line=False))
    return "\n".join(rows)


def step_text(d, step) -> str:
    return "\n".join(pretty_line(d, line) for line in step.lines)


def _unseen_as_text(c: str) -> str:
    """A character that is not printable, as user text shows it: a control character
    (NUL, BEL, ESC) or a line or paragraph separator a space, a format, surrogate,
    private or unassigned one (U+202E, which turns the text after it around) nothing."""
    kind = unicodedata.category(c)
    if kind in ("Cc", "Zl", "Zp"):
        return " "
    return "" if kind in ("Cf", "Cs", "Co", "Cn") else c


def terminal_text(text: str) -> str:
    """User text (a title, a state's name) as a terminal should show it
    (``_unseen_as_text``), its line breaks and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else _unseen_as_text(c) for c in text)


def rich_table(t) -> Table:
    # cells as Text: a spec's names are not rich markup (X[i] would lose its [i])
    table = Table(title=Text(terminal_text(t.title)), title_justify="left")
    for col in t.columns:
        table.add_column(Text(terminal_text(col)))
    for row in t.rows:
        table.add_row(*(Text(terminal_text(str(cell))) for cell in row))
    return table


def verification_table(report) -> Table:
    table = Table(title="Verification", title_justify="left")
    for col in ("result", "reference", "points", "max abs error", "max rel error", ""):
        table.add_column(col)
    for c in report.checks:
        table.add_row(
            Text(f"{c.kind} ({c.wrt})" if c.wrt else c.kind),
            Text(c.reference),
            str(c.points),
            f"{c.max_abs_error:.2e}",
            f"{c.max_rel_error:.2e}",
            "pass" if c.passed else "FAIL",
        )
    return table


def worst_lines(report) -> list[str]:
    out = []
    for c in report.checks:
        if c.passed:
            continue
        line = (
            f"{c.kind} ({c.wrt}) disagrees with {c.reference}"
            if c.wrt
            else f"{c.kind} disagrees with {c.reference}"
        )
        if c.note:
            line += f": {c.note}"
        if c.worst:
            w = c.worst
            expected, got = _differing(w["expected"], w["got"])
            line += (
                f"; worst at point {w['point']}, index {w['index']}: expected "
                f"{expected}, derived {got}"
            )
        out.append(line)
    return out


def _differing(expected, got) -> tuple[str, str]:
    """Two numbers to 10 digits, or to as many as tell them apart (17, float64's): a
    tolerance of 0 failed 5.284223813 against 5.284223813."""
    for digits in (10, 17):
        pair = (f"{expected:.{digits}g}", f"{got:.{digits}g}")
        if pair[0] != pair[1]:
            return pair
    return pair


# a derivation's text shows at most this many steps: the first and last halves, with a
# line saying how many are left out between them (a chain of 3000 defines has 3002
# steps, and printing them took longer than deriving them); LaTeX and JSON keep all
MAX_TEXT_STEPS = 60


def _text_steps(d) -> list:
    """(number, step) to print, with (None, k) where k steps are left out."""
    steps = list(enumerate(d.steps, 1))
    if len(steps) <= MAX_TEXT_STEPS:
        return steps
    half = MAX_TEXT_STEPS // 2
    return steps[:half] + [(None, len(steps) - 2 * half)] + steps[-half:]


def _text_of(d, step) -> str:
    """A step's text, at most MAX_TEXT_STEPS of its lines (a forward pass of 3000
    defines is one step): the first and last halves around a line that counts the rest."""
    lines = getattr(step, "lines", ())
    if len(lines) <= MAX_TEXT_STEPS:
        return d.step_text(step)
    half = MAX_TEXT_STEPS // 2
    head = d.step_text(dataclasses.replace(step, lines=tuple(lines[:half])))
    tail = d.step_text(dataclasses.replace(step, lines=tuple(lines[-half:])))
    return f"{head}\n... {len(lines) - 2 * half} more lines of the same kind\n{tail}"


def _left_out(k: int) -> str:
    return f"... {k} more steps of the same kind (all of them in --format latex, markdown or json)"


# Φ and φ where a closed form prints with them (expr._normal_forms): said once, after
# the steps; found by how the printers write them, \Phi\left( (a user's symbol Phi
# prints as \Phi alone) and, in text, Φ( or Φ⎛
NORMAL_NOTE = (
    r"$\Phi$ and $\phi$ are the standard normal distribution function and density: "
    r"$\Phi(x) = (1 + \operatorname{erf}(x/\sqrt{2}))/2$, $\phi(x) = e^{-x^2/2}/\sqrt{2\pi}$"
)
NORMAL_NOTE_TEXT = (
    "Φ and φ are the standard normal distribution function and density: "
    "Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(−x²/2)/√(2π)"
)
_NORMAL_LATEX = (r"\Phi\left(", r"\phi\left(")


def _uses_normal_latex(latex: str) -> bool:
    return any(mark in latex for mark in _NORMAL_LATEX)


def _uses_normal_text(text: str) -> bool:
    # a symbol called Φ prints as Φ⋅(…) in a product, never Φ( or Φ⎛
    return any(c + b in text for c in "Φφ" for b in "(⎛")


def render_text(d, console: Console) -> None:
    texts = {i: _text_of(d, step) for i, step in _text_steps(d) if i is not None}
    title, description = terminal_text(d.title), terminal_text(d.description.strip())
    if console.is_terminal:
        # the user's text as Text, not markup: a title "[/]" was a rich MarkupError
        console.rule(Text(title, style="bold"))
        if description:
            console.print(Text(description))
        for i, step in _text_steps(d):
            if i is None:
                console.print(_left_out(step), markup=False, highlight=False)
                continue
            console.print(
                Panel(
                    Group(
                        Text(texts[i]),
                        Text(terminal_text(plain_prose(step.justification)), style="dim italic"),
                    ),
                    title=Text(f"{i}. {terminal_text(d.title_text(step.title))}"),
                    title_align="left",
                    expand=False,
                )
            )
    else:
        console.print(f"# {title}", markup=False, highlight=False)
        if description:
            console.print(description, markup=False, highlight=False)
        for i, step in _text_steps(d):
            if i is None:
                console.print("\n" + _left_out(step), markup=False, highlight=False)
                continue
            console.print(
                f"\n{i}. {terminal_text(d.title_text(step.title))}  "
                f"({terminal_text(plain_prose(step.justification))})",
                markup=False,
                highlight=False,
            )
            console.print(texts[i], markup=False, highlight=False, soft_wrap=True)
    for t in d.tables:
        console.print()
        console.print(rich_table(t))
    notes = [terminal_text(plain_prose(note)) for note in d.notes]
    if any(_uses_normal_text(x) for x in texts.values()):
        notes.append(NORMAL_NOTE_TEXT)
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    report = d.verification
    if report is not None and not report.checks:
        # no result has a value (a closed form that was not found): nothing was claimed
        console.print("\nverification: nothing to check (no derived value)", markup=False)
    elif report is not None:
        console.print()
        console.print(verification_table(report))
        verdict = "passed" if report.passed else "FAILED"
        console.print(
            f"verification {verdict}: {report.reference}, {_compared(report)}, "
            f"rtol={report.rtol:g}, atol={report.atol:g}"
            + (f" ({report.tolerance_note})" if report.tolerance_note else ""),
            markup=False,
            highlight=False,
        )
        for line in worst_lines(report):
            console.print(line, markup=False, highlight=False)


# --- LaTeX ------------------------------------------------------------------------


def latex_body(d) -> str:
    """One ``align*`` block: each step's title and reason as ``\\intertext``, then its
    rows, broken and scaled to fit the column (``_fit``); the left-hand sides are
    measured first, since the block aligns them all."""
    parts, measured = [], []
    for step in d.steps:
        rows, lhs = fit_rows(d.step_latex(step))
        measured += lhs
        title = (
            rf"\intertext{{\textbf{{{d.title_latex(step.title)}}} "
            rf"({latex_prose(step.justification)})}}"
        )
        parts.append(title + "\n" + " \\\\\n".join(rows))
    if not parts:  # derive: [], nothing derived: an empty align* does not compile
        return "No results were derived.\n"
    body = " \\\\\n".join(parts)
    return _measured("\\begin{align*}\n" + body + "\n\\end{align*}\n", measured)


def _measured(block: str, lhs: list) -> str:
    """An alignment block, after the measuring of its left-hand sides where a row is
    fitted (``\\dlsymfit`` scales to the room they leave); plain where none is."""
    if "\\dlsymfit" not in block:
        return block
    measure = "".join(rf"\dlsymlhs{{{x}}}" + "\n" for x in dict.fromkeys(lhs))
    return "\\setlength{\\dlsymlhswidth}{0pt}\n" + measure + block


def latex_table(t) -> str:
    cells = t.latex_rows or tuple(tuple(latex_escape(c) for c in row) for row in t.rows)
    head = " & ".join(latex_escape(c) for c in t.columns)
    body = " \\\\\n".join(" & ".join(row) for row in cells)
    # scaled to the column only where it is wider (\dlsymfittext, _fit)
    return (
        f"\\begin{{center}}\n{latex_escape(t.title)}\\\\[2pt]\n\\dlsymfittext{{%\n"
        f"\\begin{{tabular}}{{{'l' * len(t.columns)}}}\n\\hline\n{head} \\\\\n\\hline\n"
        f"{body} \\\\\n\\hline\n\\end{{tabular}}}}\n\\end{{center}}\n"
    )


def results_latex(d, numbered: bool) -> str:
    """The results alone, one row per result (and per part of one), to cite from a
    paper's text: with ``numbered``, each result's first row is numbered and labelled
    ``eq:<spec>-<kind>`` (``\\eqref{eq:logistic_regression-gradient}``)."""
    rows, measured = [], []
    for kind in d.results:
        shown = d.result_display(kind).get("latex") or ""
        written = []
        for part in split_top(shown, r"\\"):
            part = part.strip()
            if not part:
                continue
            halves = split_top(part, " = ")
            if len(halves) > 1:
                written.append(f"{halves[0]} &= {' = '.join(halves[1:])}")
            else:  # a value without a left-hand side (a closed form): named by its kind
                written.append(rf"\text{{{latex_escape(kind)}}} &= {part}")
        fitted, lhs = fit_rows(" \\\\\n".join(written))
        measured += lhs
        label = re.sub(r"[^A-Za-z0-9_.:-]", "-", f"eq:{d.name}-{kind}")
        for i, row in enumerate(fitted):
            tag = (rf" \label{{{label}}}" if i == 0 else r" \nonumber") if numbered else ""
            rows.append(row + tag)
    env = "align" if numbered else "align*"
    block = f"\\begin{{{env}}}\n" + " \\\\\n".join(rows) + f"\n\\end{{{env}}}\n"
    return _measured(block, measured)


# a standalone document's class for one and two columns; a fragment fits both as it is
# (printing._fit breaks and scales its rows for the narrower column)
DOCUMENT_CLASS = {1: "\\documentclass{article}", 2: "\\documentclass[twocolumn]{article}"}


def latex_document(
    d, standalone: bool, numbered: bool = False, only: str | None = None, columns: int = 1
) -> str:
    """The derivation as LaTeX: its steps (``only="results"``: its results alone), and
    with ``numbered`` its results numbered and labelled after them; standalone, an
    article of ``columns`` columns."""
    parts = []
    if standalone:
        parts.append(
            f"{DOCUMENT_CLASS[columns]}\n\\usepackage{{amsmath,amssymb,graphicx,bm}}\n"
            "\\allowdisplaybreaks\n\\begin{document}\n"
        )
    # \sloppy for the prose (names such as jax.hessian do not hyphenate), kept to the
    # fragment: pasted into a paper it changes nothing else
    parts.append("\\begingroup\\sloppy\n")
    # one line: a blank line in a title ends \section*'s argument (a compile error)
    parts.append(f"\\section*{{{latex_escape(' '.join(d.title.split()))}}}\n")
    if only == "results":
        parts.append(results_latex(d, numbered))
        parts.append("\\par\\endgroup\n")
        return _finished(parts, standalone)
    if d.description:
        # its paragraphs kept (latex_escape makes every line break a space)
        paragraphs = re.split(r"\n\s*\n", d.description.strip())
        parts.append("\n\n".join(latex_escape(p) for p in paragraphs) + "\n\n")
    parts.append(latex_body(d))
    if numbered:
        parts.append("\\noindent Results:\n" + results_latex(d, True))
    for t in d.tables:
        parts.append(latex_table(t))
    notes = d.notes + ((NORMAL_NOTE,) if any(_uses_normal_latex(p) for p in parts) else ())
    for note in notes:
        parts.append(f"\\noindent {latex_prose(note)}\n\n")
    if d.verification is not None:
        v = d.verification
        parts.append(
            f"\\noindent Verified numerically against {latex_escape(v.reference)} at "
            f"{_points(v.points)}: max absolute error {v.max_abs_error:.2e}, "
            f"max relative error {v.max_rel_error:.2e} "
            f"({'passed' if v.passed else 'FAILED'}).\n"
        )
    parts.append("\\par\\endgroup\n")
    return _finished(parts, standalone)


def _finished(parts: list, standalone: bool) -> str:
    if any("\\dlsymfit" in p for p in parts):
        # the fitting macros where a row or table uses them (_fit); a fragment carries
        # them, so that it works pasted into a paper as it is
        parts.insert(1 if standalone else 0, FIT_MACROS)
    if standalone:
        parts.append("\\end{document}\n")
    return short_lines("".join(parts))


# TeX reads a source line into a buffer of 200,000 characters (pdflatex: "Unable to
# read an entire line"): a spec's description of 225,000 characters on one line did not
# compile. Lines past this are broken, well before it.
MAX_LINE = 4000
# where a line without spaces may end with "%" (the break then reads as nothing): after
# a character that ends no control word, and is itself not escaped
_BREAK_AFTER = set("{}(),+-=[]|;")


def short_lines(text: str) -> str:
    """``text`` with every line past MAX_LINE characters broken: at a space (a newline
    is a space to TeX, and ``\\ `` before one a control space still), else after a
    character of _BREAK_AFTER not escaped by a backslash, with ``%``."""
    out = []
    for line in text.split("\n"):
        while len(line) > MAX_LINE:
            cut = line.rfind(" ", 1, MAX_LINE)
            if cut > 0:
                out.append(line[:cut])
                line = line[cut + 1 :]
                continue
            cut = next(
                (
                    i
                    for i in range(MAX_LINE - 2, 0, -1)  # with its "%", at most MAX_LINE
                    if line[i] in _BREAK_AFTER and line[i - 1] != "\\"
                ),
                None,
            )
            if cut is None:
                break  # nowhere safe: left as it is
            out.append(line[: cut + 1] + "%")
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


# --- Markdown and JSON ---------------------------------------------------------------


# Markdown's punctuation that can start markup, HTML or math (CommonMark lets any ASCII
# punctuation be escaped): a spec's text is untrusted, and a Markdown file goes on to
# pandoc (LaTeX: $\input{...}$ would run) or a browser (<script>)
_MARKDOWN_SPECIAL = set("\\`*_{}[]<>()#!|$~&")


def markdown_escape(text: str, inline: bool = False) -> str:
    """User text (a title, a state's name) as literal text in Markdown. Control and
    format characters go (ESC and BEL reached a terminal that shows the file, U+202E
    turned the text around: a control character is a space, a format character
    nothing); ``inline`` (a heading, a table cell) makes line breaks spaces, where a
    newline in a title ended the heading."""

    def one(c: str) -> str:
        if c in _MARKDOWN_SPECIAL:
            return "\\" + c
        if c.isascii() and c.isprintable():
            return c
        if c == "\n" and not inline:
            return c
        return _unseen_as_text(c)

    return "".join(one(c) for c in text)


def markdown_prose(text: str) -> str:
    """Prose with ``$...$`` math (our justifications, which name MDP states and
    actions) as Markdown: the prose escaped (an action named <img onerror=...> was raw
    HTML), the math kept (names reach it LaTeX-escaped, and may not hold a $)."""
    return _prose_and_math(text, partial(markdown_escape, inline=True), lambda p: p)


def markdown(d) -> str:
    out = [f"# {markdown_escape(d.title, inline=True)}\n"]
    if d.description:
        out.append(markdown_escape(d.description.strip()) + "\n")
    for i, step in enumerate(d.steps, 1):
        title = markdown_escape(d.title_text(step.title), inline=True)
        out.append(f"## {i}. {title}\n\n*{markdown_prose(step.justification)}*\n")
        out.append("$$\n\\begin{aligned}\n" + d.step_latex(step) + "\n\\end{aligned}\n$$\n")
    for t in d.tables:
        head = " | ".join(markdown_escape(c, inline=True) for c in t.columns)
        out.append(
            f"**{markdown_escape(t.title, inline=True)}**\n\n| {head} |\n|"
            + "---|" * len(t.columns)
        )
        out.extend(
            "| " + " | ".join(markdown_escape(str(c), inline=True) for c in row) + " |"
            for row in t.rows
        )
        out.append("")
    notes = d.notes + ((NORMAL_NOTE,) if any(_uses_normal_latex(p) for p in out) else ())
    for note in notes:
        out.append(f"*Note:* {markdown_prose(note)}\n")
    if d.verification is not None:
        v = d.verification
        out.append(
            "## Verification\n\n| result | reference | points | max abs error | "
            "max rel error | |\n|---|---|---|---|---|---|"
        )
        for c in v.checks:
            out.append(
                f"| {c.kind} ({c.wrt}) | {c.reference} | {c.points} | "
                f"{c.max_abs_error:.2e} | {c.max_rel_error:.2e} | "
                f"{'pass' if c.passed else 'FAIL'} |"
            )
        out.append("")
    return "\n".join(out) + "\n"


def math_displays(d) -> str:
    """Each step as one ``$$\\begin{aligned}...\\end{aligned}$$`` display, its number
    and title a \\text row above it: LaTeX that MathJax (Jupyter) typesets."""
    out = []
    for i, step in enumerate(d.steps, 1):
        # escaped as text: nbconvert's PDF export compiles this with LaTeX (W_1 in a
        # title is W\_1), and MathJax's text mode reads the escapes too
        title = rf"\text{{{latex_escape(f'{i}. {step.title}')}}}"
        out.append(f"$$\\begin{{aligned}}&{title}\\\\\n{d.step_latex(step)}\n\\end{{aligned}}$$")
    return "\n".join(out) + "\n"


def json_safe(value):
    """NaN and infinities have no JSON spelling (json.dumps writes bare NaN, which strict
    parsers reject): they become null; the checks' notes say what happened."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_text(obj) -> str:
    """Strict JSON (see ``json_safe``), indented."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


def to_json(d) -> str:
    return json_text(d.to_dict())


def _writable_target(path: Path, reading=()) -> int:
    """The mode the written file gets, or SpecError: dlsym writes regular files only,
    into a folder that exists, and never over a read-only file, a link, a FIFO, a
    device (renaming over them would replace what the user pointed at) or a file it
    reads (``reading``: -o onto the spec itself would replace it with its own output)."""
    folder = path.parent
    try:
        if not folder.is_dir():
            raise SpecError(f"{path}: cannot write: the folder {folder} does not exist")
        if any(path.exists() and Path(r).exists() and os.path.samefile(path, r) for r in reading):
            raise SpecError(f"{path}: cannot write: it is the spec being read")
        st = path.lstat()
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask  # a new file: what open() would give it
    except OSError as exc:
        raise SpecError(f"{path}: cannot write: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SpecError(f"{path}: cannot write: it is a symbolic link (give the real path)")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{path}: cannot write: not a regular file (a folder, FIFO or device)")
    # no write bit at all is read-only even for root, whom os.access lets write anything
    if not os.access(path, os.W_OK) or not st.st_mode & 0o222:
        raise SpecError(f"{path}: cannot write: the file is read-only")
    return stat.S_IMODE(st.st_mode)  # a replaced file keeps its mode


def write_atomic(path: str | Path, text: str, reading=()) -> None:
    """Write via a temporary file in the same folder and rename it into place,
    so a reader never sees a half-written file. Errors are SpecError (exit 2).
    ``reading``: the files the output was made from, which it may not replace."""
    if not str(path):
        raise SpecError("-o needs a file name (leave -o out to print)")
    if str(path).endswith(("/", os.sep)):  # Path("out/") is "out": a file would be made
        raise SpecError(f"{path}: cannot write: it names a folder, not a file")
    path = Path(path)
    mode = _writable_target(path, reading)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SpecError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)  # mkstemp makes it 0600
        _same_owner(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise SpecError(f"{path}: cannot write: {exc.strerror}") from None
        raise


def _same_owner(tmp: str, path: Path) -> None:
    """The replaced file's owner and group kept, where this process may set them (root,
    or a group it is in): `sudo dlsym ... -o shared.tex` made the user's file root's, as
    editors' atomic saves do not. Elsewhere the new file is the writer's, as any new
    file is."""
    try:
        st = os.stat(path)
    except OSError:
        return  # a new file
    with contextlib.suppress(OSError):
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))  # chown clears setuid/setgid bits


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _compared(report) -> str:
    """The points drawn, and how many were compared where every check dropped some (past
    the dtype's range on both sides): '16 points' was said of a run that compared 4."""
    # (a convexity counterexample is one point by design: the most any check compared)
    most = max((c.points for c in report.checks if not c.inconclusive), default=report.points)
    if most >= report.points:
        return _points(report.points)
    return f"{_points(report.points)} drawn, {most} compared (the checks' notes say why)"
