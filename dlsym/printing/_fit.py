"""LaTeX that fits the page: a one-column article, a two-column one, a paper's column.

Two steps, both on the rendered LaTeX of an ``align*`` block:

1. A long right-hand side is broken at its top-level ``+`` and ``-`` (outside every
   brace, ``\\left``…``\\right`` pair and environment) into lines of at most
   ``GLYPHS_PER_LINE`` glyphs, each continuation line indented under the first, as
   papers break long equations.
2. Each piece that is still wider than the column (a long fraction, a ``\\left(``…``\\right)``
   group that cannot break) is scaled down to fit, by TeX itself: ``\\dlsymfit`` measures
   the piece and the widest left-hand side of the block and scales only when needed
   (graphicx's ``\\resizebox``). So no row runs past the margin whatever the column width,
   and short rows are untouched.

The macros are defined with ``\\providecommand`` in the fragment itself (``FIT_MACROS``),
so a fragment pasted into a paper works there (with amsmath, amssymb and graphicx
loaded), and pasting two does not define them twice.
"""

from __future__ import annotations

import re

# about what a two-column article's column holds at 10 pt: past it a right-hand side is
# broken at a top-level + or - (the scaling takes care of what cannot break)
GLYPHS_PER_LINE = 48
# rows shorter than this (left-hand side and line) fit a two-column article's column as
# they are, and are written without the fitting macro: what a reader copies stays plain
FIT_FROM = 20
# a left-hand side longer than this is set right of the alignment, with its equation
LONG_LHS = 16
# a line wider than this many glyphs is past TeX's largest dimension (16,384 pt, at
# about 6 pt a glyph) before any scaling: "Dimension too large", no PDF (a 12-layer
# residual Jacobian's one term). Shrunk to a column it would be unreadable anyway: the
# line says how long it is and where to read it
MAX_FIT_GLYPHS = 2000


def _settable(line: str) -> str:
    """``line``, or a note in its place where it is too wide to set."""
    n = glyphs(line)
    if n <= MAX_FIT_GLYPHS:
        return line
    return (
        rf"\text{{[a term of about {int(n):,} symbols, too wide to typeset: the text and "
        r"JSON outputs give it]}"
    )


FIT_MACROS = r"""\ifdefined\dlsymlhswidth\else
  \newlength{\dlsymlhswidth}\newlength{\dlsymroom}\newsavebox{\dlsymbox}
\fi
\providecommand{\dlsymlhs}[1]{\settowidth{\dlsymroom}{$\displaystyle #1$}%
  \ifdim\dlsymroom>\dlsymlhswidth\global\dlsymlhswidth=\dlsymroom\relax\fi}
\providecommand{\dlsymfit}[1]{\sbox{\dlsymbox}{$\displaystyle #1$}%
  \dlsymroom=\linewidth\relax\advance\dlsymroom by -\dlsymlhswidth\relax
  \advance\dlsymroom by -3em\relax
  \ifdim\wd\dlsymbox>\dlsymroom\resizebox{\dlsymroom}{!}{\usebox{\dlsymbox}}%
  \else\usebox{\dlsymbox}\fi}
\providecommand{\dlsymfittext}[1]{\sbox{\dlsymbox}{#1}%
  \ifdim\wd\dlsymbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\dlsymbox}}%
  \else\usebox{\dlsymbox}\fi}
"""

_COMMAND = re.compile(r"\\[A-Za-z]+")
# commands that print nothing themselves (a font, a size, a group's delimiter switch)
_SILENT = {
    r"\left",
    r"\right",
    r"\mathbf",
    r"\boldsymbol",
    r"\mathrm",
    r"\operatorname",
    r"\text",
    r"\mathcal",
    r"\mathbb",
    r"\displaystyle",
    r"\frac",
    r"\top",
}


_NAMED = {
    rf"\{n}"
    for n in ("tanh", "log", "exp", "sin", "cos", "det", "max", "min", "ln", "sinh", "cosh", "lim")
}


# binary operators and relations with the spaces TeX puts around them, and spaces
_SPACED = {
    r"\odot": 2,
    r"\cdot": 2,
    r"\times": 2,
    r"\leq": 2,
    r"\geq": 2,
    r"\succeq": 2,
    r"\sim": 2,
    r"\mid": 2,
    r"\quad": 2,
    r"\qquad": 4,
}


# a right-hand side that starts with a relation or a space of its own (\sim N(0, 1))
_SPACED_START = re.compile(r"\\(quad|qquad|sim|in|le|ge|leq|geq|succeq|approx|propto)(?![A-Za-z])")


def tex_strip(s: str) -> str:
    """``s`` without the spaces around it, but a control space ``\\ `` at its end kept
    whole: a name's LaTeX ``z\\ `` stripped to ``z\\`` made ``\\dlsymlhs{z\\}``, whose
    ``\\}`` escaped the closing brace (the document did not compile)."""
    out = s.strip()
    backslashes = len(out) - len(out.rstrip("\\"))
    return out + " " if backslashes % 2 else out


def glyphs(latex: str) -> float:
    """About how many glyphs ``latex`` sets on one line: each command that prints one
    counts 1, a silent one 0, a sub- or superscript's glyphs about half; a fraction's
    numerator and denominator both count (more than it takes: the safe side)."""
    total, i, depth_script = 0.0, 0, []
    while i < len(latex):
        c = latex[i]
        if c == "\\":
            m = _COMMAND.match(latex, i)
            if m:
                if m.group() not in _SILENT:
                    # an operator name (\tanh, \log) prints its letters, a binary operator
                    # or relation its spaces too, a symbol one glyph
                    width = len(m.group()) - 1 if m.group() in _NAMED else 1
                    width = _SPACED.get(m.group(), width)
                    total += width * (0.5 if depth_script else 1)
                i = m.end()
                continue
            i += 2
            total += 1
            continue
        if c in "^_":
            depth_script.append(0)  # the next group (or glyph) is small
            i += 1
            if i < len(latex) and latex[i] != "{":
                total += 0.5
                depth_script.pop()
                i += 1
            continue
        if c == "{":
            if depth_script:
                depth_script[-1] += 1
            i += 1
            continue
        if c == "}":
            if depth_script:
                depth_script[-1] -= 1
                if depth_script[-1] <= 0:
                    depth_script.pop()
            i += 1
            continue
        if not c.isspace() and c != "&":
            width = 2 if c in "+-=<>" else 1  # with the spaces around a binary operator
            total += width * (0.5 if depth_script else 1)
        i += 1
    return total


def _depths(s: str):
    """Yield (index, depth) for each character: depth counts braces, \\left…\\right pairs
    and \\begin…\\end environments enclosing it."""
    depth, i = 0, 0
    while i < len(s):
        if s.startswith(r"\left", i) and not s[i + 5 : i + 6].isalpha():
            yield i, depth
            depth += 1
            i += 5
            continue
        if s.startswith(r"\right", i) and not s[i + 6 : i + 7].isalpha():
            depth -= 1
            yield i, depth
            i += 6
            continue
        if s.startswith(r"\begin{", i):
            depth += 1
        elif s.startswith(r"\end{", i):
            depth -= 1
        if s[i] == "\\" and i + 1 < len(s) and not s[i + 1].isalpha():
            yield i, depth  # an escaped character (\{, \\): not a delimiter
            yield i + 1, depth
            i += 2
            continue
        if s[i] == "{":
            yield i, depth
            depth += 1
            i += 1
            continue
        if s[i] == "}":
            depth -= 1
        yield i, depth
        i += 1


def split_top(s: str, sep: str) -> list[str]:
    """``s`` split at each ``sep`` outside braces, \\left…\\right and environments."""
    out, start = [], 0
    for i, depth in _depths(s):
        if depth == 0 and s.startswith(sep, i) and i >= start:
            out.append(s[start:i])
            start = i + len(sep)
    out.append(s[start:])
    return out


def _terms(rhs: str) -> list[str]:
    """The right-hand side cut before each top-level binary + or - (each piece keeps
    its sign), and after each top-level comma that separates equations (``a = b, \\quad
    c = d``, ``a,\\ b``)."""
    cuts = []
    for i, depth in _depths(rhs):
        if depth == 0 and rhs[i] == "," and re.match(r",\s*(\\quad|\\ )", rhs[i:]):
            cuts.append(i + 1)
            continue
        if (
            depth == 0
            and i > 0
            and rhs[i] in "+-"
            and rhs[i - 1] == " "
            and rhs[i + 1 : i + 2] == " "
        ):
            before = rhs[:i].rstrip()
            if before and before[-1] not in "=+-(,&" and not before.endswith(r"\cdot"):
                cuts.append(i)
    pieces, start = [], 0
    for c in cuts:
        pieces.append(tex_strip(rhs[start:c]))
        start = c
    pieces.append(tex_strip(rhs[start:]))
    return [p for p in pieces if p]


def _lines(rhs: str) -> list[str]:
    """The right-hand side as lines of at most GLYPHS_PER_LINE glyphs, broken between
    top-level terms (a term longer than that is a line of its own)."""
    if glyphs(rhs) <= GLYPHS_PER_LINE:
        return [rhs]
    lines: list[str] = []
    for term in _terms(rhs):
        if lines and glyphs(lines[-1]) + glyphs(term) <= GLYPHS_PER_LINE:
            lines[-1] = f"{lines[-1]} {term}"
        else:
            lines.append(term)
    return lines


def fit_rows(latex: str) -> tuple[list[str], list[str]]:
    """One step's rows (``lhs &= rhs``, joined by ``\\\\``) broken and wrapped in
    ``\\dlsymfit``, and their left-hand sides, to measure (``\\dlsymlhs``) before the
    block."""
    rows, lhs_all = [], []
    for row in split_top(latex, r"\\"):
        row = tex_strip(row)
        if not row:
            continue
        parts = split_top(row, "&")
        if len(parts) == 1:
            row = _settable(row)
            rows.append(rf"\dlsymfit{{{row}}}" if glyphs(row) > FIT_FROM else row)
            continue
        lhs, rhs = tex_strip(parts[0]), tex_strip(parts[1])
        # more columns (a reason beside the equation, "&& \text{...}"): a line of
        # their own below it, rather than beside it and off the page
        notes = [tex_strip(p) for p in parts[2:] if p.strip()]
        if lhs:
            lhs_all.append(lhs)
        relation = ""
        for rel in ("=", r"\leq", r"\geq", r"\succeq", "<", ">"):
            if rhs.startswith(rel):
                relation, rhs = rel, tex_strip(rhs[len(rel) :])
                break
        else:
            if not _SPACED_START.match(rhs):
                relation = r"\quad"  # two columns of words ("closed form", "none found")
        if glyphs(lhs) > LONG_LHS:
            # a long left-hand side (a whole condition, "... = 0 & \text{fixes ν}") would
            # set the block's alignment column far right: the row goes right of it whole
            between = relation or r"\quad"  # a reason in the second column: a space
            rhs, lhs, relation = f"{lhs} {between} {rhs}", "", ""
            lhs_all.pop()
        lines = _lines(rhs)
        room = glyphs(lhs)

        def fit(line: str) -> str:
            line = _settable(line)
            return rf"\dlsymfit{{{line}}}" if room + glyphs(line) > FIT_FROM else line

        rows.append(f"{lhs} &{relation} {fit(lines[0])}")
        # a continuation line: under the first, a quad in, its sign kept binary ({} +)
        rows.extend(rf"&\quad {fit('{} ' + line)}" for line in lines[1:])
        # a reason beside it: on its own line below, in a box fitted like the rest
        rows.extend(rf"&\qquad {fit(note)}" for note in notes)
    return rows, lhs_all
