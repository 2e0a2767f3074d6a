"""Rendered output, asserted as inline text: terminal, LaTeX, Markdown, JSON."""

import io
import json
import re

import numpy as np
import pytest
from conftest import CATALOG, catalog_specs, compile_latex
from rich.console import Console

import dlsym
from dlsym.printing._render import markdown, render_text


def text_of(d, terminal=False):
    buf = io.StringIO()
    render_text(d, Console(file=buf, width=100, force_terminal=terminal, color_system=None))
    return buf.getvalue()


def test_terminal_plain_ridge():
    out = text_of(dlsym.derive(CATALOG / "ridge_regression.yaml"))
    assert (
        out
        == """\
# Ridge regression
Least squares with an L2 penalty on the weights.

1. Objective  (the function to differentiate)
         ⎛ 2⎞      ⎛         2⎞
ℓ = λ⋅sum⎝w ⎠ + sum⎝(X w - y) ⎠

2. Gradient with respect to w  (chain rule: compose the adjoints; product rule; d sum(u) = 1^T du; 
power rule: d(u^c) = c u^{c-1} du; product rule (elementwise); d(A v): ∇_A = g v^T, ∇_v = A^T g)
∇_w ℓ = 2⋅Xᵀ (X w - y) + 2⋅λ⋅w

3. Hessian with respect to w  (the Hessian is the Jacobian of the gradient; linear map: J(A u) = A 
J_u)
∇²_w ℓ = 2⋅Xᵀ X + 2⋅λ⋅I
"""
    )


def test_terminal_panels_softmax_jacobian():
    out = text_of(dlsym.derive(CATALOG / "softmax_jacobian.yaml"), terminal=True)
    assert "╭─ 2. Jacobian with respect to z" in out
    assert "│ ∂f/∂z = diag(s) - s sᵀ" in out
    assert "│       = diag(softmax(z)) - softmax(z) softmax(z)ᵀ" in out


def test_latex_logistic_hessian_step():
    d = dlsym.derive(CATALOG / "logistic_regression.yaml")
    step = next(s for s in d.steps if s.title.startswith("Hessian"))
    assert d.step_latex(step) == (
        r"\nabla^{2}_{\mathbf{w}} \ell &= \lambda \mathbf{I} + \frac{\mathbf{X}^{\top} "
        r"\operatorname{diag}\left(\mathbf{p} \odot \left(1 - \mathbf{p}\right)\right) "
        r"\mathbf{X}}{m} \\"
        "\n"
        r" &= \lambda \mathbf{I} + \frac{\mathbf{X}^{\top} \operatorname{diag}\left(\left(1 - "
        r"\sigma\left(\mathbf{X} \mathbf{w}\right)\right) \odot \sigma\left(\mathbf{X} "
        r"\mathbf{w}\right)\right) \mathbf{X}}{m}"
    )


def test_latex_document_quadratic_form():
    d = dlsym.derive(CATALOG / "quadratic_form.yaml")
    assert (
        d.latex()
        == r"""\begingroup\sloppy
\section*{Quadratic form}
x\textasciicircum{}T A x for a general (not necessarily symmetric) square matrix A.

\begin{align*}
\intertext{\textbf{Objective} (the function to differentiate)}
\ell &= \mathbf{x}^{\top} \mathbf{A} \mathbf{x} \\
\intertext{\textbf{Gradient with respect to $\mathbf{x}$} (chain rule: compose the adjoints; $d(u^T v) = v^T du + u^T dv$; $d(v^T B)$: $\nabla_v = B g$, $\nabla_B = v g^T$)}
\nabla_{\mathbf{x}} \ell &= \mathbf{A} \mathbf{x} + \mathbf{A}^{\top} \mathbf{x} \\
 &= \left(\mathbf{A} + \mathbf{A}^{\top}\right) \mathbf{x} \\
\intertext{\textbf{Hessian with respect to $\mathbf{x}$} (the Hessian is the Jacobian of the gradient; linear map: $J(A u) = A J_u$)}
\nabla^{2}_{\mathbf{x}} \ell &= \mathbf{A} + \mathbf{A}^{\top}
\end{align*}
\par\endgroup
"""
    )
    standalone = d.latex(standalone=True)
    assert standalone.startswith(
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb,graphicx,bm}\n"
    )
    assert standalone.rstrip().endswith("\\end{document}")


def test_markdown_has_aligned_blocks():
    md = markdown(dlsym.derive(CATALOG / "softmax_cross_entropy.yaml"))
    assert md.startswith("# Softmax cross-entropy\n")
    assert "$$\n\\begin{aligned}\n\\nabla_{\\mathbf{z}} \\ell &= " in md


def test_json_follows_the_contract():
    d = dlsym.derive(CATALOG / "softmax_cross_entropy.yaml")
    d.verify(points=4)
    out = json.loads(json.dumps(d.to_dict()))
    assert set(out) >= {"name", "results", "steps", "verification"}
    assert out["results"]["gradient"]["expr"] == "softmax(z) - y"
    assert out["results"]["gradient"]["latex"] == (
        r"\nabla_{\mathbf{z}} \ell = \operatorname{softmax}\left(\mathbf{z}\right) - \mathbf{y}"
    )
    assert all(set(s) == {"title", "latex", "justification"} for s in out["steps"])
    v = out["verification"]
    assert v["passed"] is True and v["points"] == 4
    assert v["max_abs_error"] < 1e-12 and "jax.grad" in v["reference"]


def overfull(log: str) -> list[float]:
    """The overfull boxes of a pdflatex log, in points."""
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


TWO_COLUMNS = r"\documentclass[twocolumn]{article}"


@pytest.mark.latex
@pytest.mark.parametrize("path", catalog_specs(), ids=lambda p: p.stem)
def test_standalone_latex_fits_one_and_two_columns(path, tmp_path, pdflatex):
    """Every catalog spec's LaTeX compiles in a one-column and in a two-column article
    with no overfull box over 1 pt (long right-hand sides broken at + and -, what
    cannot break scaled to the column), and its text has no raw < > | (which the
    default font prints as ¡ ¿ and a dash)."""
    d = dlsym.derive(path)
    tex = d.latex(standalone=True)
    two = d.latex(standalone=True, columns=2)
    assert two == tex.replace(r"\documentclass{article}", TWO_COLUMNS, 1)
    for name, text in ((path.stem, tex), (f"{path.stem}_2", two)):
        pdf = compile_latex(pdflatex, tmp_path, name, text)
        assert pdf.stat().st_size > 1000
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert [w for w in overfull(log) if w > 1] == [], name
    prose = re.sub(r"\$[^$]*\$", "", " ".join(re.findall(r"\\intertext\{(.*)\}", tex)))
    assert not re.search(r"[<>|]", prose), prose


@pytest.mark.latex
def test_the_verification_paragraph_fits_two_columns(tmp_path, pdflatex):
    d = dlsym.derive(CATALOG / "newton_logistic_intercept.yaml")
    d.verify(points=2)
    tex = d.latex(standalone=True, columns=2)
    assert "Verified numerically against eigvalsh(jax.hessian) \\textgreater{}= 0" in tex
    compile_latex(pdflatex, tmp_path, "verified", tex)
    assert [w for w in overfull((tmp_path / "verified.log").read_text()) if w > 1] == []


def test_long_right_hand_sides_break_at_top_level_terms():
    from dlsym.printing._fit import fit_rows, glyphs

    a = r"\mathbf{c}_{t-1} \odot \sigma\left(\mathbf{U}_{f} \mathbf{x}_{t} + \mathbf{W}_{f} \mathbf{h}_{t-1}\right)"
    b = r"\sigma\left(\mathbf{U}_{i} \mathbf{x}_{t} + \mathbf{W}_{i} \mathbf{h}_{t-1}\right) \odot \tanh{\left(\mathbf{U}_{g} \mathbf{x}_{t} + \mathbf{W}_{g} \mathbf{h}_{t-1} \right)}"
    rows, lhs = fit_rows(rf"\mathbf{{c}}_{{t}} &= {a} + {b} \\ &= x")
    assert rows == [
        rf"\mathbf{{c}}_{{t}} &= {a}",  # short enough for a column: as it is
        rf"&\quad \dlsymfit{{{{}} + {b}}}",  # the + inside \left( \right) is not a cut
        r" &= x",
    ]
    assert lhs == [r"\mathbf{c}_{t}"]
    # two columns of words get a space between them ("closed formnone found" before)
    words, _ = fit_rows(r"\text{closed form} & \text{none found} \\ \mathbf{x} & \sim N")
    assert words == [r"\text{closed form} &\quad \text{none found}", r"\mathbf{x} & \sim N"]
    # tanh's four letters, two parentheses, x and a small 1; a binary operator and its spaces
    assert glyphs(r"\tanh{\left(x_{1}\right)}") == 7.5
    assert glyphs(r"a + b \odot c") == 7


def test_units_stub_does_not_leak():
    import sys

    d = dlsym.derive(CATALOG / "ridge_regression.yaml")
    text_of(d)
    d.latex()
    mod = sys.modules.get("sympy.physics.units")
    assert mod is None or hasattr(mod, "meter")  # absent, or the real module
    import sympy.physics.units as units

    assert hasattr(units, "Quantity") and hasattr(units, "meter")
    assert d.latex() == d.latex()  # printing still works with the real module loaded


def test_norm_prints_in_the_terminal():
    # SymPy 1.14's prettyForm.parens has no "‖": this crashed every spec using norm()
    d = dlsym.derive(
        {
            "name": "n",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "norm(x)",
            "wrt": "x",
            "derive": ["gradient"],
        }
    )
    out = text_of(d)
    assert "ℓ = ‖x‖" in out
    assert "d‖u‖ = u^T du / ‖u‖" in out


def test_vectors_read_as_columns():
    """A vector times a matrix is a vector: written Aᵀx (a column), not xᵀA (a row),
    except as the left factor of a product that reads as a row (xᵀ A x)."""
    d = dlsym.derive(
        {
            "name": "columns",
            "symbols": {"x": {"shape": ["n"]}, "y": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}},
            "dims": {"n": 3},
            "define": {
                "u": "x @ A",
                "s": "x @ A @ x",
                "v": "(y + x @ A) @ A",
                "q": "(y + x @ A) @ A @ x",
            },
            "objective": "sum(u) + s + sum(v) + q",
            "wrt": "y",
            "derive": ["gradient"],
        }
    )
    objective = d.step_text(d.steps[0]).splitlines()
    assert "u = Aᵀ x" in objective and "s = xᵀ A x" in objective
    assert "v = Aᵀ (y + Aᵀ x)" in objective  # a vector: a column
    assert "q = (y + Aᵀ x)ᵀ A x" in objective  # a row on the left of a scalar
    latex = d.step_latex(d.steps[0])
    assert r"\mathbf{u} &= \mathbf{A}^{\top} \mathbf{x}" in latex


def test_step_titles_set_the_spec_s_names_as_its_symbols():
    """ "Adjoint of yhat" reads "Adjoint of ŷ" when the define has a LaTeX name; a name
    is only replaced where a title names a symbol (after of, to, and, for, in)."""
    d = dlsym.derive(
        {
            "name": "titles",
            "symbols": {"W": {"shape": ["k", "n"]}, "x": {"shape": ["n"]}, "step": {}},
            "dims": {"n": 3, "k": 2},
            "define": {"yhat": {"expr": "tanh(W @ x)", "latex": r"\hat{\mathbf{y}}"}},
            "objective": "step * sum(yhat**2)",
            "wrt": ["W", "step"],
        }
    )
    titles = [s.title for s in d.steps]
    assert "Adjoint of yhat" in titles and "Gradient with respect to step" in titles
    assert d.title_text("Adjoint of yhat") == "Adjoint of y\u0302"  # y, combining ^
    assert d.title_latex("Adjoint of yhat") == r"Adjoint of $\hat{\mathbf{y}}$"
    step = d.latex_names[d.spec.symbol("step").symbol]
    assert d.title_latex("Newton step for W, step") == (
        rf"Newton step for $\mathbf{{W}}$, ${step}$"  # the word "step" stays a word
    )


def test_a_denominator_reads_as_the_textbook_writes_it():
    """(y − p)/(m p ⊙ (p − 1)) is (p − y)/(m p ⊙ (1 − p)): a probability's complement,
    the numerator taking the sign."""
    d = dlsym.derive(CATALOG / "logistic_regression.yaml")
    text = d.step_text(next(s for s in d.steps if s.title == "Adjoint of p"))
    assert "m⋅p ⊙ (1 - p)" in text and "p - 1" not in text


@pytest.mark.parametrize(
    "objective, shown",
    [
        # (sum(ones((n, m)) @ x)'s gradient is now the count n*ones(m))
        ("sum((ones((n, m)) @ x)**2)", "2*(ones((m, n)) @ ones((n, m)) @ x)"),
        ("x[0] * sum(x**2)", "sum(x**2)*eye(m)[0] + 2*x*x[0]"),
    ],
)
def test_results_read_back_as_spec_expressions(objective, shown):
    """A result's expr is the expression language: ones of a matrix as NumPy spells it,
    ones((m, n)), and a basis vector e_i as eye(m)[i] (they printed as ones(m, n) and
    unit(0, m), which a spec refuses); each derives again to the same values."""

    def derive(text, wrt):
        return dlsym.derive(
            {
                "name": "readback",
                "symbols": {"x": {"shape": ["m"]}, "g": {"shape": ["m"]}},
                "dims": {"n": 2, "m": 3},
                "objective": text,
                "wrt": wrt,
            }
        )

    d = derive(objective, "x")
    assert d.result_display("gradient")["expr"] == shown
    again = derive(f"sum(g * ({shown}))", "g")  # ∇_g ⟨g, ∇f⟩ is ∇f itself
    x, g = np.array([0.5, -1.0, 2.0]), np.zeros(3)
    np.testing.assert_allclose(
        again.function("gradient")(x=x, g=g), d.function("gradient")(x=x, g=g), rtol=1e-14
    )


# names with underscores where dlsym puts them in LaTeX: a recurrence's states, index and
# sequences, random symbols (in the justifications' math too), defines, LQR's matrices
UNDERSCORED = {
    "recurrence-state": {
        "name": "t",
        "symbols": {"b": {"domain": "unit_interval"}, "g": {}},
        "dims": {"T": 3},
        "recurrence": {
            "index": "t",
            "state": {"m_1": 0},
            "update": {"m_1": "b * m_1 + (1 - b) * g"},
        },
        "derive": ["closed_form"],
    },
    "recurrence-random-index": {
        "name": "t",
        "symbols": {
            "g_1_2": {"shape": ["T"], "distribution": "normal(mu_a, s**2)"},
            "beta_1": {"domain": "unit_interval"},
            "mu_a": {},
            "s": {"domain": "positive"},
        },
        "dims": {"T": 4},
        "recurrence": {
            "index": "t_1_2",
            "state": {"c_t": 0, "h_prev_1": 0},
            "update": {
                "c_t": "beta_1 * c_t + (1 - beta_1) * g_1_2[t_1_2]",
                "h_prev_1": "beta_1 * h_prev_1 + g_1_2[t_1_2]**2 / t_1_2",
            },
        },
        "derive": ["closed_form"],
    },
    "recurrence-gradient": {
        "name": "t",
        "symbols": {
            "W_a_b": {"shape": ["d", "d"]},
            "x_1_2": {"shape": ["T", "d"]},
            "h0": {"shape": ["d"]},
            "c0": {"shape": ["d"]},
        },
        "dims": {"T": 3, "d": 2},
        "recurrence": {
            "index": "t",
            "state": {"h_1_2": "h0", "c_t": "c0"},
            "update": {"h_1_2": "tanh(W_a_b @ h_1_2 + x_1_2[t])", "c_t": "c_t + h_1_2"},
            "loss": "sum(c_t**2)",
        },
        "wrt": ["W_a_b", "h0", "c0"],
        "derive": ["gradient"],
    },
    "recurrence-jacobian": {
        "name": "t",
        "symbols": {"W": {"shape": ["d", "d"]}, "h0": {"shape": ["d"]}},
        "dims": {"T": 3, "d": 2},
        "recurrence": {
            "index": "t",
            "state": {"h_prev_1": "h0"},
            "update": {"h_prev_1": "tanh(W @ h_prev_1)"},
        },
        "wrt": "h0",
        "derive": ["jacobian"],
    },
    "define-three-underscores": {
        "name": "t",
        "symbols": {"x": {"shape": ["n"]}},
        "dims": {"n": 2},
        "define": {"u_a_b_c": "tanh(x)"},
        "objective": "sum(u_a_b_c**2)",
        "wrt": "x",
    },
    "random": {
        "name": "t",
        "symbols": {"g_1_2": {"distribution": "normal(m_1_2, 1)"}, "m_1_2": {}},
        "objective": "expect(g_1_2**2)",
        "derive": ["closed_form"],
    },
    "lqr": {
        "name": "t",
        "symbols": {
            "A_1_2": {"shape": ["n", "n"]},
            "B_x_y": {"shape": ["n", "k"]},
            "Q_a_b": {"shape": ["n", "n"], "domain": "spd"},
            "R_c_d": {"shape": ["k", "k"], "domain": "spd"},
        },
        "dims": {"n": 2, "k": 1},
        "lqr": {"A": "A_1_2", "B": "B_x_y", "Q": "Q_a_b", "R": "R_c_d"},
        "derive": ["riccati", "gain"],
    },
    # names whose default LaTeX is one and the same (w_{1}, \\lambda)
    "alike": {
        "name": "t",
        "symbols": {
            "w__1": {"shape": ["n"]},
            "w_1": {"shape": ["n"]},
            "lam": {},
            "c": {"latex": "\\lambda"},
            "u": {},
        },
        "dims": {"n": 2},
        "define": {"w1": "c * w_1", "lambda_": "u**2"},
        "objective": "sum(w__1 * w1) + lam * lambda_",
        "wrt": ["w__1", "w_1", "lam"],
    },
    # LQR's own ^{\top} after a name with a superscript or a prime of its own
    "lqr-own-latex": {
        "name": "t",
        "symbols": {
            "A": {"shape": ["n", "n"], "latex": "A^{(1)}"},
            "B": {"shape": ["n", "k"], "latex": "B'"},
            "Q": {"shape": ["n", "n"], "domain": "spd"},
            "R": {"shape": ["k", "k"], "domain": "spd"},
        },
        "dims": {"n": 2, "k": 1},
        "lqr": {"A": "A", "B": "B", "Q": "Q", "R": "R"},
        "derive": ["riccati", "gain"],
    },
    # an accent with a script of its own before dlsym's _{nt} and ^{\star} ({\bar{x}_{t}}
    # is unwrapped to the accent, then _{nt} is a double subscript), and a superscript
    # before an outer product's ^{\top} (y^{2}^{\top})
    "newton-accent": {
        "name": "t",
        "symbols": {"x": {"shape": ["n"], "latex": r"\bar{x}_{t}"}},
        "dims": {"n": 3},
        "objective": "sum(exp(x)) + x @ x",
        "wrt": "x",
        "derive": ["newton_step"],
    },
    "stationary-accent": {
        "name": "t",
        "symbols": {"x": {"latex": r"\hat{x}^{2}"}, "c": {"domain": "positive"}},
        "objective": "(x - c)**2",
        "wrt": "x",
        "derive": ["stationary"],
    },
    "outer-superscript": {
        "name": "t",
        "symbols": {
            "x": {"shape": ["n"]},
            "y": {"shape": ["n"], "latex": "y^{2}"},
            "A": {"shape": ["n", "n"]},
        },
        "dims": {"n": 3},
        "objective": "x @ A @ y",
        "wrt": "A",
    },
    "kkt-accent": {
        "name": "t",
        "symbols": {"x": {"shape": ["n"], "latex": r"\hat{x}^{2}"}, "a": {"shape": ["n"]}},
        "dims": {"n": 3},
        "minimize": "sum((x - a)**2)",
        "subject_to": ["sum(x) == 1"],
        "wrt": "x",
        "derive": ["kkt", "solution"],
    },
    # a distribution's accent with a subscript, given an index i: {\hat{q}_1}_{i} is a
    # double subscript to TeX (round 33), {\hat{q}_1{}}_{i} is not
    "info-accent-latex": {
        "name": "t",
        "distributions": {
            "p": {"categorical": 3},
            "q": {"categorical": 3, "latex": r"\hat{q}_1"},
            "r": {"categorical": 3, "latex": r"\bar{r}_\text{x}"},
        },
        "quantities": ["kl(p, q)", "cross_entropy(r, q)"],
    },
}


def test_names_with_underscores_are_written_as_subscripts_of_subscripts():
    """A name's further underscores are subscripts of its subscript (u_a_b_c:
    u_{a_{b_{c}}}), and a name with a subscript of its own is braced where dlsym adds
    one (m_1 at step t: {m_{1}}_{t}); m_1_{t}, u_{a_b_c} and E[g_1_2^2] were TeX's
    'Double subscript'."""
    tex = dlsym.derive(UNDERSCORED["recurrence-state"]).latex()
    assert "{m_{1}}_{0} &= 0 \\\\\n{m_{1}}_{t} &= {m_{1}}_{t-1} b + g \\left(1 - b\\right)" in tex
    tex = dlsym.derive(UNDERSCORED["define-three-underscores"]).latex()
    assert r"\mathbf{u}_{a_{b_{c}}} &= \tanh{\left(\mathbf{x} \right)}" in tex
    tex = dlsym.derive(UNDERSCORED["random"]).latex()
    assert r"g_{1_{2}} & \sim \mathcal{N}\left(m_{1_{2}},\ 1\right)" in tex
    assert (
        r"($\mathbb{E}[{g_{1_{2}}}^2] = \operatorname{Var} {g_{1_{2}}} + "
        r"(\mathbb{E} {g_{1_{2}}})^2$)" in tex
    )
    tex = dlsym.derive(UNDERSCORED["recurrence-gradient"]).latex()
    # the adjoint at T of a state c_t: only its own subscript becomes T
    assert r"\dlsymlhs{\boldsymbol{\delta}^{(c_{t})}_{T}}" in tex
    assert r"{\mathbf{x}_{1_{2}}}_{t}" in tex
    tex = dlsym.derive(UNDERSCORED["recurrence-jacobian"]).latex()
    assert r"$J_t = \partial {h_{prev_{1_{t}}}} / \partial {h_{prev_{1}}}_{t-1}$" in tex


def test_scripts_after_a_name_with_scripts_of_its_own_are_braced():
    """dlsym's _{nt}, ^{\\star} and an outer product's ^{\\top} after a name with a
    script of its own: the LaTeX compiles (test_underscored_names_compile)."""
    tex = dlsym.derive(UNDERSCORED["newton-accent"]).latex()
    assert r"\Delta {\bar{x}_{t}{}}_{\mathrm{nt}}" in tex
    tex = dlsym.derive(UNDERSCORED["stationary-accent"]).latex()
    assert r"{\hat{x}^{2}{}}^{\star}" in tex
    tex = dlsym.derive(UNDERSCORED["outer-superscript"]).latex()
    assert r"\mathbf{x} {y^{2}}^{\top}" in tex
    tex = dlsym.derive(UNDERSCORED["kkt-accent"]).latex()
    assert r"{\hat{x}^{2}{}}^{\star}" in tex


def test_a_scaled_matrix_is_inverted_and_transposed_in_parentheses():
    """inv(c S) was printed S c^{-1} (read as S / c) and outer(u, A v) as u A v^T."""
    d = dlsym.derive(
        {"name": "t", "symbols": {"x": {"shape": ["n"]}, "S": {"shape": ["n", "n"],
         "domain": "spd"}, "c": {"domain": "positive"}, "A": {"shape": ["n", "n"]}},
         "dims": {"n": 3}, "objective": "x @ inv(c * S) @ x + x @ A @ (A @ x)", "wrt": "A"}
    )  # fmt: skip
    tex = d.result_display("gradient")["latex"]
    assert r"\left(\mathbf{S} c\right)^{-1}" not in tex  # x is the only wrt: no inverse here
    assert r"\left(\mathbf{A} \mathbf{x}\right)^{\top}" in tex, tex
    d = dlsym.derive(
        {"name": "t", "symbols": {"x": {"shape": ["n"]}, "S": {"shape": ["n", "n"],
         "domain": "spd"}, "c": {"domain": "positive"}},
         "dims": {"n": 3}, "objective": "x @ inv(c * S) @ x", "wrt": "x"}
    )  # fmt: skip
    shown = d.result_display("gradient")
    assert r"\left(\mathbf{S} c\right)^{-1}" in shown["latex"], shown["latex"]
    assert "(S⋅c)⁻¹" in text_of(d)


def test_an_indexed_product_is_in_parentheses_in_the_terminal():
    """(A x)[0] read A x[0] (the index taken of x alone) in the terminal."""
    d = dlsym.derive(
        {"name": "t", "symbols": {"A": {"shape": ["n", "n"]}, "x": {"shape": ["n"]}},
         "dims": {"n": 3}, "objective": "(A @ x)[0]**2 + (2*x)[1]", "wrt": "x"}
    )  # fmt: skip
    text = text_of(d)
    assert "ℓ = (A x)[0]  + (2⋅x)[1]" in text and "2⋅(A x)[0]⋅A[0]" in text


def test_prose_for_the_terminal_and_json_has_no_latex_left():
    """The terminal's justifications read \\log\\det as "log det" (one replacement
    after the other left "d \\logdet A"), and a stationary point's reason in the JSON
    is text (it read "so $\\nabla\\ell = 0$ is a nonlinear system")."""
    from dlsym.printing._render import plain_prose

    assert plain_prose(r"$d \log\det A = \mathrm{tr}(A^{-1} dA)$, so it is $A^{-T}$") == (
        "d log det A = tr(A⁻¹ dA), so it is A⁻ᵀ"
    )
    assert plain_prose(r"$\left(x\right) \le 2 \leq \|x\|$") == "(x) ≤ 2 ≤ ‖x‖"
    d = dlsym.derive(
        {"name": "scaled", "symbols": {"X": {"shape": ["N", "d"]}, "v": {"domain": "positive"},
         "S": {"shape": ["d", "d"], "domain": "spd"}}, "dims": {"N": 6, "d": 3}, "wrt": "v",
         "derive": ["gradient", "stationary"],
         "objective": "N / 2 * logdet(v * S) + 0.5 * trace(X @ inv(v * S) @ X.T)"}
    )  # fmt: skip
    shown = d.result_display("stationary")["expr"]
    assert shown.startswith("no closed form") and "$" not in shown and "\\" not in shown
    assert "\\log" not in text_of(d) and "d log det A = tr(A⁻¹ dA)" in text_of(d)


def test_names_that_would_print_alike_are_typeset_as_written():
    """w__1, w_1 and a define w1 are all w_{1} by default, lam, lambda_ and a symbol
    whose latex is \\lambda all λ: a reader would take them for one. The default ones
    are typeset as their names (a given latex: is the user's choice); the others keep
    their subscripts."""
    tex = dlsym.derive(UNDERSCORED["alike"]).latex()
    assert r"\nabla_{\mathbf{w\_\_1}} \ell &= \mathbf{w1}" in tex
    assert r"\mathbf{w1} &= \lambda \mathbf{w\_1}" in tex
    assert r"\mathrm{lambda\_} &= u^{2}" in tex
    assert r"\nabla_{\mathrm{lam}} \ell &= \mathrm{lambda\_}" in tex
    # one name alone keeps its subscript
    tex = dlsym.derive(UNDERSCORED["define-three-underscores"]).latex()
    assert r"\mathbf{u}_{a_{b_{c}}}" in tex and "mathbf{u\\_" not in tex


def test_unicode_signs_of_dlsyms_notes_reach_latex_as_signs():
    """A note's − (U+2212, which pdflatex cannot set) was '?' in the PDF: (d ? a)."""
    d = dlsym.derive(
        {
            "name": "rotates",
            "symbols": {"x0": {}},
            "dims": {"T": 3},
            "recurrence": {"index": "t", "state": {"x": "x0"}, "update": {"x": "(x - 1)/(x + 1)"}},
            "derive": ["closed_form"],
        }
    )
    assert "(d − a)²" in d.notes[0]
    tex = d.latex()
    assert "(d $-$ a)$^{2}$ + 4 b c = -4" in tex and "?" not in tex


def test_lqr_names_reach_latex_as_ascii_scripts():
    """The justifications name LQR's matrices by their text form (A₁₂); pdflatex refuses
    U+2082, so in LaTeX it is a subscript, and a name with a superscript is braced."""
    tex = dlsym.derive(UNDERSCORED["lqr"]).latex()
    assert r"through $x' = A_{12} x + {B_{x_{y}}} u$" in tex
    tex = dlsym.derive(UNDERSCORED["lqr-own-latex"]).latex()
    assert r"{B'}^{\top} \mathbf{P} {A^{(1)}}" in tex


def test_a_state_with_a_subscript_reads_apart_from_its_step_in_the_terminal():
    text = text_of(dlsym.derive(UNDERSCORED["recurrence-state"]))
    assert "m₁_0 = 0" in text and "m₁_t = m₁_t-1⋅b + g⋅(1 - b)" in text


@pytest.mark.latex
@pytest.mark.parametrize("key", UNDERSCORED)
def test_names_with_underscores_compile(key, tmp_path, pdflatex):
    tex = dlsym.derive(UNDERSCORED[key]).latex(standalone=True)
    assert tex.isascii(), [c for c in tex if not c.isascii()]
    compile_latex(pdflatex, tmp_path, key, tex)


GELU = {
    "name": "gelu",
    "symbols": {"x": {"shape": ["n"]}},
    "dims": {"n": 3},
    "objective": "sum(x * (1 + erf(x / sqrt(2))) / 2)",
    "wrt": ["x"],
    "derive": ["gradient"],
}
NORMAL_NOTE_TEXT = "note: Φ and φ are the standard normal distribution function and density"


def test_normal_distribution_function_and_density_read_as_phi():
    """GELU x Φ(x)'s gradient reads Φ(x) + x ⊙ φ(x), as papers write it, in the terminal
    and in LaTeX, with one note that says what Φ and φ are; JSON's expr and the code keep
    the language's erf and exp (Φ is no function of it)."""
    d = dlsym.derive(GELU)
    text = text_of(d)
    assert "∇_x ℓ = x ⊙ φ(x) + Φ(x)" in text
    assert text.count(NORMAL_NOTE_TEXT) == 1
    tex = d.latex()
    shown = r"\nabla_{\mathbf{x}} \ell &= \mathbf{x} \odot \phi\left(\mathbf{x}\right) + \Phi\left(\mathbf{x}\right)"
    assert shown in tex
    # the objective as written, (1 + erf)/2 a Φ: x ⊙ Φ(x), not x ⊙ (2Φ(x))/2
    assert r"\operatorname{sum}\left(\mathbf{x} \odot \Phi\left(\mathbf{x}\right)\right)" in tex
    assert tex.count(r"$\Phi$ and $\phi$ are the standard normal") == 1
    assert "Φ" not in d.result_display("gradient")["expr"]
    x = np.array([-1.3, 0.2, 2.1])
    from scipy.stats import norm

    want = norm.cdf(x) + x * norm.pdf(x)
    np.testing.assert_allclose(d.function("gradient")(x=x), want, rtol=1e-13)


def test_erf_without_a_normal_reading_stays_erf():
    """erf's own derivative 2 e^(−x²)/√π is no φ (its argument would carry √2), and
    E erf(z) = erf(μ/√(1 + 2v)) no Φ: neither is rewritten, and no note is added."""
    d = dlsym.derive({**GELU, "objective": "sum(erf(x))"})
    text = text_of(d)
    assert "φ" not in text and "Φ" not in text and NORMAL_NOTE_TEXT not in text
    assert "√π" in text
    probit = dlsym.derive(
        {
            "name": "probit",
            "symbols": {
                "z": {"distribution": "normal(mu, v)"},
                "mu": {},
                "v": {"domain": "positive"},
            },
            "objective": "expect(erf(z))",
            "derive": ["closed_form"],
        }
    )
    text = text_of(probit)
    assert "erf" in text and "Φ" not in text and NORMAL_NOTE_TEXT not in text


@pytest.mark.latex
def test_a_document_with_phi_compiles(tmp_path, pdflatex):
    """Φ and φ are plain LaTeX (\\Phi, \\phi): the document compiles with its note."""
    tex = dlsym.derive(GELU).latex(standalone=True)
    pdf = compile_latex(pdflatex, tmp_path, "gelu", tex)
    assert pdf.stat().st_size > 1000


def test_a_failed_comparison_shows_as_many_digits_as_tell_the_numbers_apart():
    """verify: {rtol: 0, atol: 0} failed 'expected 5.284223813, derived 5.284223813':
    ten digits could not show the difference; seventeen do."""
    from dlsym.printing._render import _differing

    assert _differing(1.5, 2.5) == ("1.5", "2.5")
    assert _differing(5.2842238129571522, 5.2842238129571513) == (
        "5.2842238129571522",
        "5.2842238129571513",
    )


def test_a_sums_index_is_no_symbol_of_the_spec():
    """A batch axis of size B is indexed by b, and a bias b beside it read
    ∇_b ℓ = Σ_b (softmax(b + X W) − Y)/B in LaTeX: the index takes a spare letter."""
    import sympy as sp

    from dlsym.printing._printers import index_letters

    B, k = sp.symbols("B k")
    assert index_letters((B, k), (0,)) == ["b"]
    assert index_letters((B, k), (0,), frozenset({"b"})) == ["i"]
    assert index_letters((B, k), (0, 1), frozenset({"b", "i", "k"})) == ["j", "l"]
    d = dlsym.derive(
        {"name": "bias", "symbols": {"X": {"shape": ["B", "n"]}, "W": {"shape": ["n", "k"]},
         "b": {"shape": ["k"]}, "Y": {"shape": ["B", "k"]}}, "dims": {"B": 4, "n": 3, "k": 2},
         "objective": "sum((X @ W + b - Y)**2) / B", "wrt": "b"}
    )  # fmt: skip
    latex = d.latex()
    assert r"\sum_{i}" in latex and r"\sum_{b}" not in latex


def test_a_derivation_of_nothing_is_a_document_that_compiles(tmp_path, pdflatex):
    """derive: [] wrote an empty align*, which pdflatex refuses ("Paragraph ended
    before \\align* was complete")."""
    d = dlsym.derive(
        {"name": "nothing", "symbols": {"x": {}}, "objective": "x**2", "wrt": "x",
         "derive": []}
    )  # fmt: skip
    tex = d.latex(standalone=True)
    assert "align*" not in tex and "No results were derived." in tex
    compile_latex(pdflatex, tmp_path, "nothing", tex)


def test_a_primed_name_with_a_subscript_takes_a_power(tmp_path, pdflatex):
    """latex: x''_{1} squared was set x''_{1}^{2}, TeX's double superscript (the
    primes are one): the base is a group, {x''_{1}}^{2}."""
    d = dlsym.derive(
        {"name": "primed", "symbols": {"x": {"latex": "x''_{1}"}}, "objective": "x**2",
         "wrt": "x"}
    )  # fmt: skip
    tex = d.latex(standalone=True)
    assert "{x''_{1}}^{2}" in tex
    compile_latex(pdflatex, tmp_path, "primed", tex)


@pytest.mark.latex
def test_prose_longer_than_texs_line_buffer_compiles(tmp_path, pdflatex):
    """A description of 225,000 characters was one source line, past the 200,000 that
    pdflatex reads ("Unable to read an entire line"). Lines are broken at spaces, and a
    run without spaces after a bracket or an operator, with "%"."""
    from dlsym.printing._render import MAX_LINE

    d = dlsym.derive(
        {
            "name": "long",
            "description": "word " * 45000 + "x" * 300 + "+(a)" * 2000,
            "symbols": {"x": {}},
            "objective": "x**2",
            "wrt": "x",
        }
    )
    text = d.latex(standalone=True)
    assert max(map(len, text.splitlines())) <= MAX_LINE
    assert text.count("word") == 45000
    compile_latex(pdflatex, tmp_path, "long", text)


@pytest.mark.latex
def test_a_term_too_wide_for_tex_is_said_not_set(tmp_path, pdflatex):
    """40 nested tanh: the gradient's one term is wider than TeX's largest dimension
    before \\dlsymfit scales it ("Dimension too large", no PDF). Such a line says how
    long it is and where to read it; the document compiles."""
    from dlsym.printing._fit import MAX_FIT_GLYPHS, glyphs

    nested = "x"
    for _ in range(40):
        nested = f"tanh({nested})"
    d = dlsym.derive({"name": "deep", "symbols": {"x": {}}, "objective": nested, "wrt": "x"})
    text = d.latex(standalone=True)
    assert r"\text{[a term of about " in text
    assert "too wide to typeset: the text and JSON outputs give it]}" in text
    assert all(glyphs(line) <= MAX_FIT_GLYPHS + 100 for line in text.split(r"\\"))
    compile_latex(pdflatex, tmp_path, "deep", text)
