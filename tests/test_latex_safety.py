"""A spec is untrusted input and its PDF is built on someone's machine: the LaTeX it
brings (a symbol's or a distribution's ``latex:``, an MDP's state and action names) is
read against a small grammar, and whatever could read or write a file, define a command
or change how TeX reads characters is a located error (exit code 2)."""

import pytest
import yaml
from click.testing import CliRunner
from conftest import compile_latex

import dlsym
from dlsym._cli import main
from dlsym.spec._latex import COMMANDS, TAKES_ARGUMENT, TEXT_FONTS, checked_latex
from dlsym.spec._symbols import scripted

# each payload, and what the error names
PAYLOADS = [
    (r"\input{/etc/passwd}", r"uses '\input'"),
    (r"\InputIfFileExists{/etc/passwd}{}{}", r"uses '\InputIfFileExists'"),
    (r"\immediate\write18{touch /tmp/pwned}", r"uses '\immediate'"),
    (r"x\openin1=/etc/passwd", r"uses '\openin'"),
    (r"^^5cinput{/etc/passwd}", "'^^', TeX's character-code notation"),
    (r"\csname input\endcsname{/etc/passwd}", r"uses '\csname'"),
    (r"\def\x{\input}\x{/etc/passwd}", r"uses '\def'"),
    (r"\catcode`\@=0 @input{/etc/passwd}", r"uses '\catcode'"),
    (r"\scantokens{\input{/etc/passwd}}", r"uses '\scantokens'"),
    (r"\mathbf{W}$ \input{x} $", "has '$'"),
    ("x % comment", "has '%'"),
    ("x # y", "has '#'"),
    ("x & y", "has '&'"),
    (r"\mathbf{W", "leaves 1 brace(s) open"),
    ("W}", "closes a brace it never opened"),
    ("\\", r"uses '\'"),
    ("x" * 201, "201 characters long"),
]

FINE = [
    r"\mathbf{W}_{1}",
    r"\boldsymbol{\Sigma}^{-1}",
    r"\hat{y}'",
    r"\mathcal{N}(0, I)",
    r"\lambda",
    r"\tilde{\mathbf{x}}_{t+1}",
    r"\mathbf{X}_{+}",
    r"\operatorname{diag}(\mathbf{p})",
]


@pytest.mark.parametrize("name", ["a\u200bb", "a\u202eb", "s\u00ad1"])
def test_mdp_state_names_with_characters_that_do_not_show_are_refused(name):
    """States ab, a<zero-width space>b and a<right-to-left override>b were three rows
    named ab in the value tables."""
    spec = {
        "name": "m",
        "mdp": {
            "states": ["ab", name],
            "actions": ["go"],
            "terminal": ["ab"],
            "transitions": {name: {"go": {"ab": 1}}},
            "rewards": {name: {"go": 1}},
            "gamma": 0.5,
        },
    }
    with pytest.raises(dlsym.SpecError, match="a control or format character") as info:
        dlsym.derive(spec)
    assert f"U+{ord(name[1]):04X}" in str(info.value)


@pytest.mark.parametrize("payload, named", PAYLOADS)
def test_a_symbols_latex_that_could_run_tex_commands_is_a_located_error(payload, named):
    spec = {"name": "s", "symbols": {"x": {"latex": payload}}, "objective": "x**2", "wrt": "x"}
    with pytest.raises(dlsym.SpecError, match="latex of 'x'") as info:
        dlsym.derive(spec)
    assert named in str(info.value)


@pytest.mark.parametrize("text", FINE)
def test_the_latex_papers_write_for_a_name_is_accepted(text):
    assert checked_latex(text, "latex of 'x'", None) == text
    spec = {"name": "s", "symbols": {"x": {"latex": text}}, "objective": "x**2", "wrt": "x"}
    assert text in dlsym.derive(spec).latex()


def test_a_distributions_latex_is_checked_too():
    spec = {
        "name": "d",
        "symbols": {"mu": {}},
        "distributions": {"g": {"gaussian": {"mean": "mu", "var": 1}, "latex": r"\input{x}"}},
        "quantities": ["entropy(g)"],
    }
    with pytest.raises(dlsym.SpecError, match=r"latex of 'g' uses '\\input'"):
        dlsym.derive(spec)


def test_the_cli_refuses_with_the_location_and_exit_code_2(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(
        "name: evil\nsymbols:\n  x: {latex: '\\immediate\\write18{touch /tmp/x}'}\n"
        "objective: x**2\nwrt: x\n"
    )
    out = CliRunner().invoke(main, ["derive", str(path), "--format", "latex"])
    assert out.exit_code == 2
    assert "evil.yaml:3:" in out.output and r"uses '\immediate'" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize("name", ["$\\input{/etc/passwd}$", "a\\b", "s{1", "100%", "s#1"])
def test_mdp_state_names_with_tex_special_characters_are_refused(name):
    spec = {
        "name": "m",
        "mdp": {
            "states": [name, "end"],
            "actions": ["go"],
            "terminal": ["end"],
            "transitions": {name: {"go": {"end": 1}}},
            "rewards": {name: {"go": 1}},
            "gamma": 0.5,
        },
    }
    with pytest.raises(dlsym.SpecError, match="TeX's special characters"):
        dlsym.derive(yaml.safe_load(yaml.safe_dump(spec)))


@pytest.mark.parametrize("payload, named", PAYLOADS)
def test_a_defines_latex_is_checked_too(payload, named):
    spec = {
        "name": "s",
        "symbols": {"x": {}},
        "define": {"y": {"expr": "x**2", "latex": payload}},
        "objective": "y",
        "wrt": "x",
    }
    with pytest.raises(dlsym.SpecError, match="latex of define 'y'") as info:
        dlsym.derive(spec)
    assert named in str(info.value)


def test_a_defines_latex_must_be_text():
    spec = {
        "name": "s",
        "symbols": {"x": {}},
        "define": {"y": {"expr": "x**2", "latex": {"a": 1}}},
        "objective": "y",
        "wrt": "x",
    }
    with pytest.raises(dlsym.SpecError, match="the latex of define 'y' must be a string"):
        dlsym.derive(spec)


def test_markdown_output_keeps_a_specs_text_literal():
    """Markdown goes on to pandoc (whose LaTeX would run $\\input{...}$) or a browser: a
    title's and a description's math delimiters, HTML, links and emphasis are escaped."""
    from dlsym.printing._render import markdown

    d = dlsym.derive(
        {
            "name": "md",
            "title": "$$\\input{/etc/passwd}$$ <script>alert(1)</script> *x*",
            "description": "a | b `c` [l](http://x)",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 2},
            "objective": "sum(x**2)",
            "wrt": "x",
        }
    )
    head = markdown(d).splitlines()[:3]
    assert head[0] == r"# \$\$\\input\{/etc/passwd\}\$\$ \<script\>alert\(1\)\</script\> \*x\*"
    assert head[2] == r"a \| b \`c\` \[l\]\(http://x\)"


MDP_NAMED = {
    "name": "named",
    "mdp": {
        "states": ["s\n\n1", "s2"],
        "actions": ["<img src=x onerror=alert(1)>", "a|b"],
        "transitions": {
            "s\n\n1": {"<img src=x onerror=alert(1)>": {"s\n\n1": 1}, "a|b": {"s2": 1}},
            "s2": {"<img src=x onerror=alert(1)>": {"s2": 1}, "a|b": {"s\n\n1": 1}},
        },
        "rewards": {
            "s\n\n1": {"<img src=x onerror=alert(1)>": 0, "a|b": 1},
            "s2": {"<img src=x onerror=alert(1)>": 2, "a|b": 0},
        },
        "gamma": 0.5,
        "policy": "uniform",
    },
    "derive": ["v_pi", "q_star", "policy_star"],
}


def test_markdown_escapes_mdp_names_in_tables_and_justifications():
    """An action named <img onerror=...> was raw HTML in a table's header and in a
    step's justification, and a | added a column."""
    from dlsym.printing._render import markdown

    text = markdown(dlsym.derive(MDP_NAMED))
    assert "<img" not in text.replace("\\<img", "")
    assert "| state | \\<img src=x onerror=alert\\(1\\)\\> | a\\|b |" in text
    assert "Terms in the order of the actions \\(\\<img" in text
    assert "$v_*(s) = \\max_a" in text  # the justification's math kept


@pytest.mark.latex
def test_a_name_with_a_blank_line_compiles(tmp_path, pdflatex):
    """A state named "s\\n\\n1" ended a paragraph inside \\text{...}: a compile error
    where derive exited 0. Line breaks in a name are spaces."""
    text = dlsym.derive(MDP_NAMED).latex(standalone=True)
    assert r"\text{s 1}" in text
    compile_latex(pdflatex, tmp_path, "named", text)


@pytest.mark.latex
def test_a_name_ending_in_a_control_space_compiles(tmp_path, pdflatex):
    """A define's latex 'z\\ ' was stripped to 'z\\' where its left-hand side is
    measured: \\dlsymlhs{z\\} escaped the closing brace, and the document derive wrote
    with exit 0 did not compile."""
    spec = {
        "name": "space",
        "symbols": {"x": {"shape": ["n"]}},
        "dims": {"n": 2},
        "define": {"z": {"expr": "2 * x", "latex": "z\\ "}},
        "objective": "sum(tanh(z)**2)",
        "wrt": "x",
    }
    text = dlsym.derive(spec).latex(standalone=True)
    assert "\\dlsymlhs{z\\ }" in text
    compile_latex(pdflatex, tmp_path, "space", text)


def test_the_terminal_shows_no_control_characters_and_no_markup_of_the_users():
    """A title's NUL, U+2028 and U+202E reached the terminal; a title "[/]" was read
    as rich markup in a terminal (a MarkupError)."""
    from rich.console import Console

    from dlsym.printing._render import render_text

    d = dlsym.derive(
        {
            "name": "t",
            "title": "[/] a\u0000b\u2028c\u202ed",
            "description": "[/bold] e",
            "symbols": {"x": {}},
            "objective": "x**2",
            "wrt": "x",
        }
    )
    for terminal in (True, False):
        console = Console(record=True, force_terminal=terminal, width=100)
        render_text(d, console)
        shown = console.export_text()
        assert not any(c in shown for c in "\u0000\u2028\u202e"), terminal
        assert "[/] a b cd" in shown and "[/bold] e" in shown


def test_markdown_output_drops_control_and_format_characters():
    """ESC and BEL in a title reached a terminal that shows the Markdown (``cat``,
    ``less -R``), U+202E turned the text around, and a newline in a title ended the
    heading: control characters are spaces, format characters go, a title is one line."""
    from dlsym.printing._render import markdown

    d = dlsym.derive(
        {
            "name": "md",
            "title": "\u202eRTL\u202c and \u0007 bell\nand \u001b[31m ansi",
            "description": "first\nsecond \u2066iso\u2069 \u001b]0;t\u0007",
            "symbols": {"x": {}},
            "objective": "x**2",
            "wrt": "x",
        }
    )
    text = markdown(d)
    assert not any(c in text for c in "\u001b\u0007\u202e\u202c\u2066\u2069")
    lines = text.splitlines()
    assert lines[0] == "# RTL and   bell and  \\[31m ansi"
    assert lines[2:4] == ["first", "second iso  \\]0;t "]


@pytest.mark.parametrize(
    "text, message",
    [
        ("x^a^b", "a double superscript"),
        ("x_a_b", "a double subscript"),
        ("x\\hat", "'\\hat' needs an argument"),
        ("\\text{a^b}", "'^' inside \\text"),
        ("\\mathbf{x^a^b}", "a double superscript"),
        # math commands in a text font: 'Missing $ inserted', 'allowed only in math mode'
        (
            "\\text{\\alpha}",
            "'\\alpha' inside a text font (\\text, \\textbf, ...), which sets text",
        ),
        ("\\text{\\hat{x}}", "'\\hat' inside a text font"),
        ("\\textbf{\\alpha}", "'\\alpha' inside a text font"),
        ("\\mathbf{\\textit{a \\cdot b}}", "'\\cdot' inside a text font"),
        # a prime is a superscript: after one, 'Double superscript'
        ("x^{2}'", "a prime after a superscript (x^{2}' is a double superscript: write x'^{2})"),
        ("x'^{2}'", "a prime after a superscript"),
        # nothing to attach to (and ^{x}' was a double superscript)
        ("^{x}'", "'^' has nothing before it to attach to"),
        ("_1", "'_' has nothing before it to attach to"),
        ("\\mathbf{^a}", "'^' has nothing before it to attach to"),
        # 'Missing { inserted'
        (
            "x^\\hat{a}",
            "the script's argument \\hat has an argument of its own: brace it (x^{\\hat{a}})",
        ),
        ("x_\\hat{a}", "the script's argument \\hat has an argument of its own"),
    ],
)
def test_safe_latex_that_would_not_compile_is_refused(text, message):
    """The grammar kept TeX from reading files, but let through what TeX refuses (a
    standalone document then failed to compile)."""
    with pytest.raises(dlsym.SpecError, match="would not compile") as err:
        checked_latex(text, "latex of 'x'", None)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "\\hat{x}_1^2",
        "W^{(1)}_{ij}",
        "{x^a}^b",
        "\\hat x",
        "x_{i}^{\\top}",
        "x'^{2}",
        "x''",
        "x_1'",
        "x^{\\hat{a}}",
        "\\text{a\\,b}",
        "\\textbf{\\textit{w}}",
        # refused until round 43 beside \\check and \\breve
        "\\acute{a}",
        "\\grave{e}",
        "\\mathring{A}",
    ],
)
def test_scripts_and_accents_papers_write_are_accepted(text):
    assert checked_latex(text, "latex of 'x'", None) == text


def test_a_title_with_greek_cjk_control_characters_and_a_blank_line_compiles(tmp_path, pdflatex):
    """pdflatex's UTF-8 input has no Greek or CJK, a control character is an error, and
    a blank line ends \\section*'s argument: Greek is set as math, the rest by its code
    point (two names of such characters told apart: they were both '?')."""
    d = dlsym.derive(
        {
            "name": "t",
            "title": "A title\n\nwith μ-law, Δ, 日本 and a bell \x07",
            "description": "one\n\ntwo ε",
            "symbols": {"x": {}},
            "objective": "x**2",
            "wrt": "x",
        }
    )
    text = d.latex(standalone=True)
    assert "$\\mu$-law, $\\Delta$, [U+65E5][U+672C]" in text
    compile_latex(pdflatex, tmp_path, "t", text)


def test_latex_that_would_not_compile_is_a_located_error_with_exit_code_2(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nsymbols:\n  w: {shape: [n], latex: '\\text{\\alpha}'}\ndims: {n: 2}\n"
        "objective: sum(w**2)\nwrt: w\n"
    )
    out = CliRunner().invoke(main, ["derive", str(path), "--format", "latex", "--standalone"])
    assert out.exit_code == 2
    assert "t.yaml:3:26: latex of 'w' would not compile: '\\alpha' inside a text font" in out.output


def _examples():
    """Every command a spec's latex may use, as a name: a command alone, a font or an
    accent with an argument, and the scripts and primes papers write around them."""
    out = []
    for c in sorted(COMMANDS):
        arg = "x" if c in TEXT_FONTS else "\\alpha"
        out.append(f"\\{c}{{{arg}}}" if c in TAKES_ARGUMENT else f"\\{c}")
    # an accent with scripts: TeX makes {\hat{x}_1^2} the accent itself (braced() adds {})
    return out + [
        "x'",
        "x_{1}'",
        "\\hat{y}'^{2}",
        "\\hat{x}_1^2",
        "\\tilde{\\mathbf{x}}_{t+1}",
        "W^{(1)}_{ij}",
        "\\bm{w}",
        "x^\\alpha",
        # a math alphabet is a script's argument unbraced, as TeX takes it
        "x_\\mathbf{a}",
        "W^\\mathcal{L}_\\mathrm{in}",
    ]


@pytest.mark.latex
def test_what_the_grammar_accepts_compiles_wherever_dlsym_puts_a_name(tmp_path, pdflatex):
    """The principle: a latex the grammar accepts compiles in a standalone document, in
    every place dlsym puts a name: alone, transposed, squared, as a gradient's subscript
    and in a fraction (a derivation of each), and at a step of a recurrence (braced for
    dlsym's own subscript); the document's preamble is dlsym's (\\bm needs bm)."""
    names = _examples()
    for text in names:
        assert checked_latex(text, "latex of 'x'", None) == text
    for first in range(0, len(names), 12):  # a spec's objective has at most 2000 characters
        _compile_names(names[first : first + 12], tmp_path, f"names{first}", pdflatex)


def _compile_names(names, tmp_path, file, pdflatex):
    symbols = {f"s{i}": {"shape": ["n"], "latex": t} for i, t in enumerate(names)}
    symbols["A"] = {"shape": ["n", "n"]}
    objective = " + ".join(f"sum(s{i}**2) + s{i} @ (A @ s{i})" for i in range(len(names)))
    d = dlsym.derive(
        {
            "name": "t",
            "symbols": symbols,
            "dims": {"n": 2},
            "objective": objective,
            "wrt": [f"s{i}" for i in range(len(names))],
        }
    )
    tex = d.latex(standalone=True)
    for t in names:  # the name itself, transposed, squared, as a gradient's subscript
        assert f"\\nabla_{{{t}}} \\ell &=" in tex
    steps = " \\\\\n".join(
        rf"{scripted(t)}_{{t}} &= {scripted(t)}_{{t-1}} \frac{{\partial \ell}}{{\partial {t}}}"
        for t in names
    )
    body = f"\\begin{{align*}}\n{steps}\n\\end{{align*}}\n\\end{{document}}"
    compile_latex(pdflatex, tmp_path, file, tex.replace("\\end{document}", body))
