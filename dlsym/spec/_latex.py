"""A spec's own LaTeX (``latex:`` of a symbol or a distribution), checked before it goes
into a document.

A spec is untrusted input and its PDF is built on someone's machine: TeX reads and
writes files (``\\input``, ``\\openin``, ``\\write``), defines commands and changes how
it reads characters (``\\def``, ``\\catcode``, ``^^5c`` for a backslash). Escaping would
defeat the field's purpose (a symbol's name as math), so the field is read against a
small grammar instead: letters, digits, spaces, math punctuation and balanced braces, and
only the commands of ``COMMANDS`` (Greek letters, math fonts, accents, a few symbols).
Anything else is a located error that names what was refused.
"""

from __future__ import annotations

import re

from dlsym._errors import SpecError

GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu "
    "nu xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma "
    "Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
).split()
FONTS = (
    "mathbf mathrm mathit mathcal mathbb mathsf mathtt mathfrak boldsymbol bm operatorname "
    "text textrm textit textbf"
).split()
ACCENTS = (
    "hat bar tilde vec dot ddot check breve acute grave mathring widehat widetilde overline "
    "underline"
).split()
SYMBOLS = (
    "ell hbar nabla partial infty star dagger top prime cdot times circ ast ldots cdots "
    "langle rangle mid perp parallel"
).split()
# every command a ``latex:`` field may use
COMMANDS = frozenset(GREEK + FONTS + ACCENTS + SYMBOLS)
# what else may appear: letters, digits, spaces, braces (balanced), sub/superscripts,
# and math punctuation; never $ % # & ~ (math shift, comment, parameter, alignment,
# active character)
_PLAIN = re.compile(r"[A-Za-z0-9 {}^_'.,;:()\[\]+\-*/=<>|!]")
# a backslash starts a command of letters, or one of the spacing and brace commands
_COMMAND = re.compile(r"\\([A-Za-z]+|[,;! {}|])")
MAX_LATEX_CHARS = 200


def checked_latex(text: str, what: str, loc) -> str:
    """``text`` if it is safe LaTeX for a name in math mode; otherwise a located error
    that names what was refused (``what``: "latex of 'x'")."""
    if len(text) > MAX_LATEX_CHARS:
        raise SpecError(f"{what} is {len(text)} characters long (at most {MAX_LATEX_CHARS})", loc)
    if "^^" in text:  # TeX's character-code notation (^^5c is a backslash)
        raise SpecError(f"{what} has '^^', TeX's character-code notation: not allowed", loc)
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            m = _COMMAND.match(text, i)
            name = m.group(1) if m else text[i + 1 : i + 2]
            if m is None or (name[0].isalpha() and name not in COMMANDS):
                raise SpecError(
                    f"{what} uses '\\{name}', which is not allowed: a spec's LaTeX may use "
                    "Greek letters, math fonts (\\mathbf, \\boldsymbol, \\mathcal, ...), "
                    "accents (\\hat, \\bar, \\tilde, ...) and a few symbols (\\ell, "
                    "\\nabla, \\top, ...), since the spec is untrusted input to a TeX run",
                    loc,
                )
            i = m.end()
            continue
        if not _PLAIN.match(c):
            raise SpecError(
                f"{what} has {c!r}, which is not allowed in a spec's LaTeX (letters, digits, "
                "braces, ^, _ and math punctuation)",
                loc,
            )
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth < 0:
            raise SpecError(f"{what} closes a brace it never opened", loc)
        i += 1
    if depth:
        raise SpecError(f"{what} leaves {depth} brace(s) open", loc)
    why = _malformed(_TOKEN.findall(text))
    if why:
        raise SpecError(f"{what} would not compile: {why}", loc)
    return text


_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\S")
# commands set text, where ^ and _ are errors ('Missing $ inserted')
TEXT_FONTS = frozenset("text textrm textit textbf".split())
# what text mode sets besides characters: the text fonts, a space, a thin space and the
# braces; every other command of COMMANDS is math only (\text{\alpha}: 'Missing $
# inserted', \textbf{\hat{x}}: '\hat allowed only in math mode')
TEXT_COMMANDS = frozenset({rf"\{f}" for f in TEXT_FONTS} | {"\\ ", "\\,", "\\{", "\\}"})
# the commands that read an argument: as a script's argument, only in braces
# (x^\hat{a} is TeX's 'Missing { inserted'), but for the math alphabets, which TeX
# takes unbraced there (x_\mathbf{a} compiles, and papers write it)
TAKES_ARGUMENT = frozenset(FONTS + ACCENTS)
UNBRACED_IN_SCRIPTS = frozenset(
    "mathbf mathrm mathit mathcal mathbb mathsf mathtt mathfrak text textrm".split()
)
SCRIPTS = ("^", "_", "'")


def _argument_end(tokens, k) -> int:
    """The index after the argument starting at ``tokens[k]``: a {...} group or one
    token; -1 where there is none."""
    if k >= len(tokens) or tokens[k] in ("}", *SCRIPTS):
        return -1
    if tokens[k] != "{":
        return k + 1
    depth = 0
    for j in range(k, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return j + 1
    return -1


def _group(tokens, k, end):
    """The tokens of the argument tokens[k:end], without its braces."""
    return tokens[k + 1 : end - 1] if tokens[k] == "{" else tokens[k:end]


def _malformed(tokens, in_text: bool = False) -> str | None:
    """What in this safe LaTeX TeX would still refuse: an accent or font with no
    argument (x\\hat), a math command in text (\\text{\\alpha}), a script with nothing
    before it (^{x}), a double superscript or subscript (x^a^b, x^{2}' where the prime
    is a superscript too), a script whose argument is a command with an argument of its
    own unbraced (x^\\hat{a}), a script in text mode (\\text{a^b}). Reads one brace
    group's tokens, the groups inside recursively."""
    k = 0
    while k < len(tokens):
        tok = tokens[k]
        if in_text and tok.startswith("\\") and tok not in TEXT_COMMANDS:
            return (
                f"'{tok}' inside a text font (\\text, \\textbf, ...), which sets text, "
                f"not math (write it outside: \\text{{a}}{tok})"
            )
        if tok.startswith("\\") and tok[1:] in TAKES_ARGUMENT:
            end = _argument_end(tokens, k + 1)
            if end < 0:
                return f"'{tok}' needs an argument ({tok}{{x}})"
            why = _malformed(_group(tokens, k + 1, end), in_text or tok[1:] in TEXT_FONTS)
            if why:
                return why
            k = end
        elif tok in SCRIPTS:
            if in_text:
                return f"'{tok}' inside \\text (write the script outside it)"
            if k == 0:
                return f"'{tok}' has nothing before it to attach to (write a base: x{tok}...)"
            why, k = _scripts(tokens, k)
            if why:
                return why
        elif tok == "{":
            end = _argument_end(tokens, k)
            why = _malformed(tokens[k + 1 : end - 1], in_text)
            if why:
                return why
            k = end
        else:
            k += 1
    return None


def _scripts(tokens, k):
    """(what TeX would refuse or None, the index after them) for the scripts that start
    at tokens[k]. A prime is a superscript: x'^a is one (TeX joins them), x^a' two."""
    seen = set()
    while k < len(tokens) and tokens[k] in SCRIPTS:
        kind = "_" if tokens[k] == "_" else "^"
        if kind in seen:
            what = "subscript" if kind == "_" else "superscript"
            if tokens[k] == "'":
                return (
                    "a prime after a superscript (x^{2}' is a double superscript: write x'^{2})",
                    k,
                )
            return f"a double {what} (group one: {{x{kind}a}}{kind}b)", k
        seen.add(kind)
        if tokens[k] == "'":
            while k < len(tokens) and tokens[k] == "'":
                k += 1
            if k < len(tokens) and tokens[k] == "^":  # x'^a: TeX's x^{\prime a}
                k += 1
            else:
                continue
        else:
            k += 1
        end = _argument_end(tokens, k)
        if end < 0:
            return f"'{tokens[k - 1]}' needs an argument", k
        if tokens[k][1:] in UNBRACED_IN_SCRIPTS and tokens[k].startswith("\\"):
            # x_\mathbf{a}: the alphabet and its own argument are the script's argument
            end = _argument_end(tokens, k + 1)
            if end < 0:
                return f"'{tokens[k]}' needs an argument ({tokens[k]}{{x}})", k
            why = _malformed(_group(tokens, k + 1, end), tokens[k][1:] in TEXT_FONTS)
            if why:
                return why, k
            k = end
            continue
        if tokens[k] in (rf"\{c}" for c in TAKES_ARGUMENT - UNBRACED_IN_SCRIPTS):
            return (
                f"the script's argument {tokens[k]} has an argument of its own: brace it "
                f"(x{tokens[k - 1]}{{{tokens[k]}{{a}}}})",
                k,
            )
        why = _malformed(_group(tokens, k, end))
        if why:
            return why, k
        k = end
    return None, k
