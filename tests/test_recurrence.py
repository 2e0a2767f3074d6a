"""Recurrences: back-propagation through time with a symbolic T, and the Jacobian of the
final state, checked against finite differences of a hand-written forward pass."""

import dataclasses
import io
import json

import numpy as np
import pytest
import sympy as sp
import yaml
from click.testing import CliRunner
from conftest import CATALOG
from rich.console import Console

import dlsym
from dlsym._cli import main
from dlsym._errors import SpecError
from dlsym.calculus._affine import zero_out
from dlsym.printing._render import render_text


def rnn_loss(W, U, b, h0, x, y):
    h, total = h0, 0.0
    for t in range(x.shape[0]):
        h = np.tanh(W @ h + U @ x[t] + b)
        total += 0.5 * np.sum((h - y[t]) ** 2)
    return total, h


def numeric_gradient(f, values, name, eps=1e-6):
    base = values[name]
    out = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        up, down = base.copy(), base.copy()
        up[i] += eps
        down[i] -= eps
        out[i] = (f(**{**values, name: up}) - f(**{**values, name: down})) / (2 * eps)
    return out


def draw(T, d=3, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        W=rng.standard_normal((d, d)) / 2,
        U=rng.standard_normal((d, k)),
        b=rng.standard_normal(d),
        h0=rng.standard_normal(d),
        x=rng.standard_normal((T, k)),
        y=rng.standard_normal((T, d)),
    )


@pytest.fixture(scope="module")
def bptt():
    return dlsym.derive(CATALOG / "rnn_bptt.yaml")


def test_bptt_verifies_at_a_real_models_sizes_and_still_finds_a_wrong_adjoint():
    """d = 64, T = 40: with unit-normal recurrent weights (step Jacobians of norm about
    2√d) the adjoints reached 1e17, chaotic, and a right derivation failed verification
    on rounding (exit 1, c45s F21). Weights are drawn at 1/√fan-in; an adjoint 0.1 %
    off in its recursion still fails."""
    spec = yaml.safe_load((CATALOG / "rnn_bptt.yaml").read_text())
    spec["dims"] = {"T": 40, "d": 64, "k": 16}
    d = dlsym.derive(spec)
    report = d.verify(points=4)
    assert report.passed and report.max_rel_error < 1e-9, report
    (s,) = d.rec.states
    wrong = d.derived.adjoint["h"].xreplace({s.adjoint_next: s.adjoint_next * 1.001})
    d.derived = dataclasses.replace(d.derived, adjoint={"h": wrong})
    assert not d.verify(points=4).passed


def test_bptt_reads_as_the_textbook(bptt):
    wrt = bptt.result_display("gradient")["wrt"]
    assert wrt["W"]["expr"] == "sum over t = 1..T of (outer(delta[t]*(1 - h[t]**2), h[t-1]))"
    assert wrt["U"]["expr"] == "sum over t = 1..T of (outer(delta[t]*(1 - h[t]**2), x[t]))"
    assert wrt["b"]["expr"] == "sum over t = 1..T of (delta[t]*(1 - h[t]**2))"
    assert wrt["h0"]["expr"] == "W.T @ (delta[1]*(1 - h[1]**2))"
    recursion = next(s for s in bptt.steps if s.title.startswith("Adjoint recursion"))
    assert recursion.latex == (
        r"\boldsymbol{\delta}_{t} &= \mathbf{h}_{t} + \mathbf{W}^{\top} "
        r"\left(\boldsymbol{\delta}_{t+1} \odot \left(1 - \mathbf{h}_{t+1}^{2}\right)\right)"
        r" - \mathbf{y}_{t}"
    )
    assert bptt.section == "recurrence"
    # h0 is the state at 0 by its name: the row h_0 = h_0 said nothing
    first = bptt.steps[0]
    assert first.latex.startswith(r"\mathbf{h}_{t} &= \tanh"), first.latex


@pytest.mark.parametrize("T", [5, 1, 9])
def test_bptt_gradient_equals_finite_differences_at_any_T(bptt, T):
    values = draw(T, seed=T)
    got = bptt.function("gradient")(**values)
    for name in ("W", "U", "b", "h0"):
        want = numeric_gradient(lambda **v: rnn_loss(**v)[0], values, name)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-8, err_msg=name)


def test_bptt_verifies_against_scan(bptt):
    report = bptt.verify()
    assert report.passed, report
    assert {c.reference for c in report.checks} == {"jax.grad through jax.lax.scan"}
    assert report.max_rel_error < 1e-9


def test_a_wrong_adjoint_fails_verification(bptt):
    d = dlsym.derive(CATALOG / "rnn_bptt.yaml")
    (s,) = d.rec.states
    # truncated BPTT: the adjoint forgets the later steps
    wrong = zero_out(d.spec.algebra, d.derived.adjoint["h"], {s.adjoint_next})
    d.derived = dataclasses.replace(d.derived, adjoint={"h": wrong})
    report = d.verify(points=4)
    assert not report.passed
    assert not next(c for c in report.checks if c.wrt == "W").passed


def test_final_state_jacobian_is_the_product_of_step_jacobians():
    d = dlsym.derive(CATALOG / "rnn_vanishing_gradient.yaml", verify=True)
    assert d.verification.passed
    assert d.result_display("jacobian")["expr"] == (
        "J_T @ ... @ J_1 with J_t = diag(1 - h[t]**2) @ W"
    )
    values = draw(6)
    del values["y"]
    got = d.function("jacobian")(**values)
    eps = 1e-6
    want = np.zeros((3, 3))
    for j in range(3):
        e = np.eye(3)[j] * eps
        up = rnn_loss(**{**values, "h0": values["h0"] + e}, y=np.zeros((6, 3)))[1]
        down = rnn_loss(**{**values, "h0": values["h0"] - e}, y=np.zeros((6, 3)))[1]
        want[:, j] = (up - down) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # the vanishing gradient: with a contracting W the product shrinks with T
    small = {**values, "W": 0.3 * np.eye(3)}
    norms = [
        np.linalg.norm(d.function("jacobian")(**{**small, "x": np.zeros((T, 2))}), 2)
        for T in (2, 8, 16)
    ]
    assert norms[0] > norms[1] > norms[2] and norms[2] < 0.3**15


RNN = {
    "name": "r",
    "symbols": {"W": {"shape": ["d", "d"]}, "h0": {"shape": ["d"]}, "x": {"shape": ["T", "d"]}},
    "dims": {"T": 3, "d": 2},
    "recurrence": {
        "index": "t",
        "state": {"h": "h0"},
        "update": {"h": "tanh(W @ h + x[t])"},
        "loss": "sum(h**2)",
    },
    "wrt": "W",
}


def variant(**changes):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in RNN.items()}
    out["recurrence"] = dict(RNN["recurrence"])
    for key, value in changes.items():
        if key.startswith("rec_"):
            if value is None:
                del out["recurrence"][key[4:]]
            else:
                out["recurrence"][key[4:]] = value
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dims": {"d": 2, "S": 3}}, "dimension 'T' in the shape of 'x' is not in dims"),
        (
            {
                "dims": {"d": 2, "S": 3},
                "symbols": {"W": {"shape": ["d", "d"]}, "h0": {"shape": ["d"]}},
                "rec_update": {"h": "tanh(W @ h)"},
            },
            "a recurrence runs t = 1..T: declare T in dims",
        ),
        ({"wrt": "x"}, "'x' is read at each step"),
        (
            {"rec_update": {"h": "sum(W @ h)"}},
            "the update of h is a scalar, but h starts as a vector",
        ),
        ({"rec_update": {"g": "h"}}, "recurrence.update has no rule for state 'h'"),
        ({"rec_loss": None}, "the gradient needs recurrence.loss"),
        ({"rec_steps": 3}, "unknown key 'steps' in recurrence"),
        ({"rec_index": "d"}, "the time index 'd' is also a symbol or a dim"),
        (
            {
                "rec_state": {"h": "h0", "c": "h0"},
                "rec_update": {"h": "h", "c": "c"},
                "derive": ["jacobian"],
                "wrt": "h0",
            },
            "the jacobian of the final state is derived for one state",
        ),
        ({"rec_update": {"h": "tanh(W @ h + x[s])"}}, "unknown name 's'"),
        ({"derive": ["jacobian"]}, "wrt must name the initial state's symbol"),
        ({"derive": ["gradient", "closed_form"]}, "a recurrence spec derives one kind"),
        (
            {"rec_state": {"h": "tanh(h0)"}, "wrt": ["W", "h0"]},
            "wrt 'h0' is in an initial value",
        ),
        (
            {"rec_update": {"h": "tanh(W @ h + x[t] + h0)"}, "wrt": ["h0"]},
            "wrt 'h0' is in an initial value",
        ),
    ],
)
def test_bad_recurrences_are_located_errors(changes, message):
    with pytest.raises(SpecError) as err:
        dlsym.derive(variant(**changes))
    assert message in str(err.value)


def test_cli_derives_and_refuses_codegen():
    runner = CliRunner()
    ok = runner.invoke(main, ["derive", str(CATALOG / "rnn_bptt.yaml"), "--format", "latex"])
    assert ok.exit_code == 0, ok.output
    assert r"\sum_{t=1}^{T}" in ok.output
    gen = runner.invoke(main, ["codegen", str(CATALOG / "rnn_bptt.yaml")])
    assert gen.exit_code == 2
    assert "recurrence spec: use dlsym derive" in gen.output


def test_a_summand_of_several_terms_is_summed_in_parentheses():
    """sum_t 2c + delta_t x_t (1 - h_t^2) - 2 h_t reads as (sum_t 2c) + ... with a t
    free outside the sum; the whole summand is summed."""
    d = dlsym.derive(
        {
            "name": "sum_parens",
            "symbols": {"w": {}, "c": {}, "h0": {}, "x": {"shape": ["T"]}},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"h": "h0"},
                "update": {"h": "tanh(w * h + c * x[t])"},
                "loss": "(h - c)**2",
            },
            "wrt": "c",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    shown = d.result_display("gradient")
    assert shown["latex"].startswith(r"\nabla_{c} \ell = \sum_{t=1}^{T} \left(2 c + ")
    assert shown["latex"].endswith(r"- 2 h_{t}\right)")
    assert shown["expr"].startswith("sum over t = 1..T of (2*c + ")
    buf = io.StringIO()
    render_text(d, Console(file=buf, width=120, color_system=None))
    assert "Σ_{t=1..T} ⎝2⋅c + " in buf.getvalue()


def test_a_cascade_closed_form_is_finite_at_a_zero_rate_and_exact_near_one():
    """x_t = r x + c t, y_t = r y + x: y's closed form read r r^t r^(-1-t) (...), which
    is 1 but 0 * inf = nan at r = 0 in the code, and lost every digit at r = 1 - 1e-7
    (y = -33305 for 1.2). Against the recurrence run forward."""
    d = dlsym.derive(
        {
            "name": "cascade",
            "symbols": {"r": {}, "c": {}, "x0": {}},
            "dims": {"T": 50},
            "recurrence": {
                "index": "t",
                "state": {"x": "x0", "y": 0},
                "update": {"x": "r * x + c * t", "y": "r * y + x"},
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert "r**(-1 - t)" not in d.result_display("closed_form")["expr"]
    f = d.function("closed_form")
    for r in (0.0, 1 - 1e-7, 1 + 1e-9, 0.5):
        x, y, want = 1.2, 0.0, []
        for t in range(1, 51):
            x, y = r * x + 0.3 * t, r * y + x
            want.append(y)
        np.testing.assert_allclose(f(r=r, c=0.3, x0=1.2)["y"], want, rtol=1e-9)


def test_scalar_state_recurrence():
    """An exponential moving average's gradient with respect to its rate."""
    d = dlsym.derive(
        {
            "name": "ema",
            "symbols": {"beta": {"domain": "unit_interval"}, "g": {"shape": ["T"]}},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"m": 0},
                "update": {"m": "beta * m + (1 - beta) * g[t]"},
                "loss": "m**2",
            },
            "wrt": "beta",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    g = np.array([1.0, -2.0, 0.5, 3.0])

    def loss(beta, g):
        m, total = 0.0, 0.0
        for gt in g:
            m = beta * m + (1 - beta) * gt
            total += m**2
        return total

    got = d.function("gradient")(beta=np.array(0.7), g=g)
    want = (loss(0.7 + 1e-6, g) - loss(0.7 - 1e-6, g)) / 2e-6
    assert float(got) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("adam_bias_correction", "m: mu*(1 - beta1**t); v: (1 - beta2**t)*(mu**2 + s**2)"),
        ("momentum_ema", "m: g*(1 - beta**t)"),
    ],
)
def test_linear_recurrences_in_closed_form(name, expected):
    d = dlsym.derive(CATALOG / f"{name}.yaml", verify=True)
    assert d.result_display("closed_form")["expr"] == expected
    assert d.verification.passed, d.verification


def test_adam_steps_show_the_expectation_then_the_solution():
    d = dlsym.derive(CATALOG / "adam_bias_correction.yaml")
    titles = [s.title for s in d.steps]
    assert "Linear recurrence for m" in titles and "Solved for t" in titles
    solved = d.steps[titles.index("Linear recurrence for m") + 1]
    assert solved.latex == r"\mathbb{E}\,m_{t} &= \mu \left(1 - \beta_{1}^{t}\right)"
    values = d.function("closed_form")(beta1=0.9, beta2=0.999, mu=1.0, s=0.0)
    np.testing.assert_allclose(values["m"], 1 - 0.9 ** np.arange(1, 7))


def test_a_wrong_closed_form_fails_both_references():
    for name in ("adam_bias_correction", "momentum_ema"):
        d = dlsym.derive(CATALOG / f"{name}.yaml")
        first = d.derived[0]
        t = sp.Symbol("t", integer=True, nonnegative=True)
        wrong = first.value.xreplace({t: t + 1})  # one step off
        d.derived = (dataclasses.replace(first, value=wrong),) + d.derived[1:]
        report = d.verify()
        assert not report.passed
        assert not report.checks[0].passed


def test_no_closed_form_for_a_nonlinear_update():
    d = dlsym.derive(
        {
            "name": "nl",
            "symbols": {"a": {}},
            "dims": {"T": 3},
            "recurrence": {"index": "t", "state": {"m": 0}, "update": {"m": "tanh(a * m) + 1"}},
            "derive": ["closed_form"],
        }
    )
    assert d.result_display("closed_form")["expr"] == "none"
    assert "not linear in m" in d.notes[0]
    with pytest.raises(ValueError, match="not linear in m"):
        d.function("closed_form")


def test_an_input_without_a_distribution_has_no_closed_form():
    """x[t] with no law changes with t in no stated way: m_t is a sum over the steps,
    said as no closed form (a NameError in the generated code before)."""
    d = dlsym.derive(
        {
            "name": "ema_of_inputs",
            "symbols": {"x": {"shape": ["T"]}, "b": {"domain": "unit_interval"}},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"m": 0},
                "update": {"m": "b * m + (1 - b) * x[t]"},
            },
            "derive": ["closed_form"],
        }
    )
    assert d.result_display("closed_form")["expr"] == "none"
    assert "reads x[t], which changes with t and has no distribution" in d.notes[0]
    report = d.verify()  # nothing derived: said in the JSON's reference too
    assert report.checks == () and report.reference.startswith("nothing to check (")


def test_a_geometric_series_reads_as_a_paper_writes_it():
    """m_t = b m_{t-1} + 1 from 0 is (1 - b^t)/(1 - b), the denominator's sign taken
    out as the numerator's is; checked against the recurrence run forward."""
    d = dlsym.derive(
        {
            "name": "geometric",
            "symbols": {"b": {"domain": "unit_interval"}},
            "dims": {"T": 5},
            "recurrence": {"index": "t", "state": {"m": 0}, "update": {"m": "b * m + 1"}},
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.result_display("closed_form")["expr"] == "m: (1 - b**t)/(1 - b)"
    assert d.verification.passed
    np.testing.assert_allclose(d.function("closed_form")(b=0.5)["m"], [1, 1.5, 1.75, 1.875, 1.9375])


def test_a_recurrence_read_with_a_bad_variance_names_the_spec_symbol(tmp_path):
    text = (CATALOG / "adam_bias_correction.yaml").read_text()
    path = tmp_path / "adam.yaml"
    path.write_text(text.replace("s: {domain: positive}", "s: {}").replace("s**2", "s"))
    out = CliRunner().invoke(main, ["derive", str(path)])
    assert out.exit_code == 2
    assert "the var of 'g' is" in out.output and "Traceback" not in out.output


def test_lstm_has_an_adjoint_per_state():
    d = dlsym.derive(CATALOG / "lstm_bptt.yaml", verify=True)
    assert d.verification.passed, d.verification
    recursion = next(s for s in d.steps if s.title.startswith("Adjoint recursion"))
    # the cell's adjoint: through the forget gate, plus what h_{t+1} = o tanh(c_{t+1}) sends
    assert "\nδ^(c)_t = " in recursion.text
    assert r"\boldsymbol{\delta}^{(c)}_{t} &= " in recursion.latex
    assert r"\boldsymbol{\delta}^{(h)}_{t} &= " in recursion.latex
    wrt = d.result_display("gradient")["wrt"]
    assert "delta_c[t]" in wrt["Wi"]["expr"] and "delta_h[t]" in wrt["Wo"]["expr"]
    assert set(wrt) == {"Wf", "Wi", "Wo", "Wg", "Uf", "h0", "c0"}


def test_a_vector_state_no_loss_term_reads_has_zero_adjoint_at_t():
    """Heavy ball in a vector: v = A v + x, x = x + v, the loss reads x only. δ^(v)_T = 0
    was the number 0 in the code, and Aᵀ δ^(v) at T − 1 failed in NumPy's matmul (exit
    3); it is the state's zeros. The gradient equals jax.grad of a loop written here."""
    import jax
    import jax.numpy as jnp

    from dlsym.codegen._jax import jax_x64

    d = dlsym.derive(
        {
            "name": "heavy_ball_vector",
            "symbols": {
                "A": {"shape": ["n", "n"]},
                "x0": {"shape": ["n"]},
                "v0": {"shape": ["n"]},
                "y": {"shape": ["T", "n"]},
            },
            "dims": {"n": 2, "T": 3},
            "recurrence": {
                "index": "t",
                "state": {"x": "x0", "v": "v0"},
                "update": {"v": "A @ v + x", "x": "x + v"},
                "loss": "sum((x - y[t])**2)",
            },
            "wrt": ["A"],
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(6)
    A, x0, v0, y = (rng.normal(size=s) for s in ((2, 2), (2,), (2,), (3, 2)))
    got = d.function("gradient")(A=A, x0=x0, v0=v0, y=y)
    jax_x64()

    def loss(A):
        x, v, total = x0, v0, 0.0
        for t in range(3):
            x, v = x + v, A @ v + x
            total = total + jnp.sum((x - y[t]) ** 2)
        return total

    np.testing.assert_allclose(got, jax.grad(loss)(A), rtol=1e-10)


def test_an_rnn_language_model_reads_token_ids_at_each_step():
    """tok[t] of a label sequence ({index: V}) is a label: E[tok[t]] gathers an embedding
    row and log_softmax(O h)[tgt[t]] picks the target's log-probability (it was refused:
    'a size must be a whole number'; a scalar label's gather was exit 3). The gradients
    equal jax.grad of a loop written here."""
    import jax
    import jax.numpy as jnp

    from dlsym.codegen._jax import jax_x64

    d = dlsym.derive(
        {
            "name": "rnn_lm",
            "symbols": {
                "W": {"shape": ["d", "d"]},
                "E": {"shape": ["V", "d"]},
                "O": {"shape": ["V", "d"]},
                "h0": {"shape": ["d"]},
                "tok": {"shape": ["T"], "domain": {"index": "V"}},
                "tgt": {"shape": ["T"], "domain": {"index": "V"}},
            },
            "dims": {"T": 4, "d": 3, "V": 5},
            "recurrence": {
                "index": "t",
                "state": {"h": "h0"},
                "update": {"h": "tanh(W @ h + E[tok[t]])"},
                "loss": "-log_softmax(O @ h)[tgt[t]]",
            },
            "wrt": ["W", "E", "O", "h0"],
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(5)
    W, E, O, h0 = (rng.normal(size=s) for s in ((3, 3), (5, 3), (5, 3), (3,)))
    tok, tgt = np.array([0, 4, 4, 2]), np.array([1, 0, 3, 3])
    got = d.function("gradient")(W=W, E=E, O=O, h0=h0, tok=tok, tgt=tgt)
    jax_x64()

    def loss(W, E, O, h0):
        h, total = h0, 0.0
        for t in range(4):
            h = jnp.tanh(W @ h + E[tok[t]])
            total = total - jax.nn.log_softmax(O @ h)[tgt[t]]
        return total

    want = jax.grad(loss, argnums=(0, 1, 2, 3))(W, E, O, h0)
    for name, w in zip(("W", "E", "O", "h0"), want):
        np.testing.assert_allclose(got[name], np.asarray(w), rtol=1e-10, atol=1e-12)


def test_a_constant_loss_has_a_zero_gradient():
    """loss: 1.0 adds T to the objective and nothing to its gradient (the scan's loss was
    a Python int, which jax.grad refuses: exit 3); an empty symbol entry x: is a scalar."""
    d = dlsym.derive(
        {
            "name": "constant_loss",
            "symbols": {"x": {"shape": ["T"]}, "w": None},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"h": 0},
                "update": {"h": "tanh(w * h + x[t])"},
                "loss": 1.0,
            },
            "wrt": ["w"],
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert float(d.function("gradient")(w=0.3, x=np.arange(4.0))) == 0.0


def test_a_random_rate_multiplies_in_expectation():
    """x_t = a_t x_{t-1} with a_t ~ U(0, 1) drawn after x_{t-1} is made: E[x_t] =
    E[a] E[x_{t-1}] = 2⁻ᵗ (it was no closed form: 'not linear with a constant rate');
    and a halving x_t = x_{t-1}/2, whose closed form 2**(-t) was NumPy's ValueError on
    integer steps. Monte Carlo paths and the run forward check them."""
    spec = {
        "name": "products",
        "symbols": {"a": {"shape": ["T"], "distribution": "uniform(0, 1)"}},
        "dims": {"T": 5},
        "recurrence": {"index": "t", "state": {"x": 1}, "update": {"x": "a[t] * x + a[t]"}},
        "derive": ["closed_form"],
    }
    d = dlsym.derive(spec, verify=True)
    # E x_t = E x_{t-1}/2 + 1/2 from 1: stays 1
    assert d.result_display("closed_form")["expr"] == "x: 1"
    assert d.verification.passed, d.verification
    spec["recurrence"]["update"]["x"] = "a[t] * x"
    d = dlsym.derive(spec, verify=True)
    assert d.result_display("closed_form")["expr"] == "x: 2**(-t)"
    assert d.verification.passed, d.verification
    np.testing.assert_allclose(d.function("closed_form")()["x"], 0.5 ** np.arange(1, 6))
    del spec["symbols"]
    spec["recurrence"]["update"]["x"] = "x / 2"
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification


def test_gradient_descent_on_a_quadratic_reads_as_a_paper_writes_it():
    """w_t = w_{t-1} - η c w_{t-1} from w0: w0 (1 - c η)ᵗ (it printed
    (-1)**t*w0*(c*eta - 1)**t); the run forward checks it."""
    d = dlsym.derive(
        {
            "name": "gd",
            "symbols": {"w0": {}, "eta": {"domain": "positive"}, "c": {"domain": "positive"}},
            "dims": {"T": 6},
            "recurrence": {"index": "t", "state": {"w": "w0"}, "update": {"w": "w - eta * c * w"}},
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.result_display("closed_form")["expr"] == "w: w0*(1 - c*eta)**t"
    assert d.verification.passed, d.verification


def test_a_recurrence_that_reads_no_sequence_runs_t_steps():
    """h_t = tanh(w h_{t-1}) reads no [T] input: the reference's lax.scan had no sequence
    to count T from ('scan got no values to scan over', exit 3); BPTT checked."""
    d = dlsym.derive(
        {
            "name": "free",
            "symbols": {"w": {}, "h0": {}},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"h": "h0"},
                "update": {"h": "tanh(w*h)"},
                "loss": "h**2",
            },
            "wrt": ["w", "h0"],
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    w, h0 = 0.7, 0.9
    eps = 1e-6  # the loss sum_t h_t², differentiated by central differences

    def loss(w, h0):
        h, total = h0, 0.0
        for _ in range(4):
            h = np.tanh(w * h)
            total += h * h
        return total

    g = d.function("gradient")(w=w, h0=h0)
    assert float(g["w"]) == pytest.approx(
        (loss(w + eps, h0) - loss(w - eps, h0)) / (2 * eps), rel=1e-6
    )
    assert float(g["h0"]) == pytest.approx(
        (loss(w, h0 + eps) - loss(w, h0 - eps)) / (2 * eps), rel=1e-6
    )


def test_a_recurrence_that_explodes_at_some_points_is_checked_at_the_others():
    """h_t = h_{t-1}² + w over 60 steps overflows where |h0| > 1 (inf, and inf − inf =
    nan in the backward pass, on both sides): those points are not compared, the rest
    are (it was exit 1, 'the reference is not finite: check the symbols' domains')."""
    d = dlsym.derive(
        {
            "name": "explode",
            "symbols": {"w": {}, "h0": {}},
            "dims": {"T": 60},
            "recurrence": {
                "index": "t",
                "state": {"h": "h0"},
                "update": {"h": "h**2 + w"},
                "loss": "h",
            },
            "wrt": ["w", "h0"],
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    notes = " ".join(c.note for c in d.verification.checks)
    assert "overflow float64 (past 1.8e+308) on both sides and are not compared" in notes


def closed_form_spec(state, update, symbols, T=6, **more):
    return {
        "name": "solved",
        "symbols": symbols,
        "dims": {"T": T, **more.pop("dims", {})},
        "recurrence": {"index": "t", "state": state, "update": update},
        "derive": ["closed_form"],
        **more,
    }


def run_forward(state, update, T):
    """The recurrence as a plain NumPy loop: {state: its values at t = 1..T}."""
    out = {k: [] for k in state}
    for t in range(1, T + 1):
        state = update(t, **state)
        for k, v in state.items():
            out[k].append(np.asarray(v, dtype=float))
    return {k: np.stack(v) for k, v in out.items()}


EMA_OF_PARAMETERS = closed_form_spec(
    {"th": "th0", "ema": "th0"},
    {"th": "th - lr * g", "ema": "d * ema + (1 - d) * (th - lr * g)"},
    {"g": {}, "lr": {"domain": "positive"}, "d": {"domain": "unit_interval"}, "th0": {}},
)


def test_a_triangular_system_is_solved_state_by_state():
    """ema reads th, which reads only itself: th's closed form at t - 1 is ema's forcing
    term (it was 'not linear ... (or it couples states)')."""
    d = dlsym.derive(EMA_OF_PARAMETERS, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == (
        "th: th0 - g*lr*t; ema: th0 + g*lr*(d + d*t - t - d**(1 + t))/(1 - d)"
    )
    values = dict(g=0.7, lr=0.3, d=0.8, th0=-1.2)
    want = run_forward(
        {"th": values["th0"], "ema": values["th0"]},
        lambda t, th, ema: {
            "th": th - 0.3 * 0.7,
            "ema": 0.8 * ema + 0.2 * (th - 0.3 * 0.7),
        },
        6,
    )
    got = d.function("closed_form")(**values)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)


def test_nesterov_with_random_gradients_is_solved_in_expectation():
    d = dlsym.derive(
        closed_form_spec(
            {"v": 0, "x": 0},
            {"v": "beta * v - lr * g[t]", "x": "x + beta * (beta * v - lr * g[t]) - lr * g[t]"},
            {
                "g": {"shape": ["T"], "distribution": "normal(mu, 1)"},
                "mu": {},
                "beta": {"domain": "unit_interval"},
                "lr": {"domain": "positive"},
            },
            T=5,
        ),
        verify=True,
    )
    assert d.verification.passed, d.verification
    mu, beta, lr = 0.5, 0.6, 0.1
    want = run_forward(
        {"v": 0.0, "x": 0.0},
        lambda t, v, x: {"v": beta * v - lr * mu, "x": x + beta * (beta * v - lr * mu) - lr * mu},
        5,
    )
    got = d.function("closed_form")(mu=mu, beta=beta, lr=lr)
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-12)


def test_the_index_may_be_read_in_an_update():
    """Polyak's average avg + (θ - avg)/t reads t (it was "unknown name 't'"); the rate
    1 - 1/t is 0 at t = 1, where rsolve's answer holds RisingFactorial(0, t)."""
    spec = closed_form_spec(
        {"th": "th0", "avg": 0},
        {"th": "th - lr * g", "avg": "avg + (th - lr * g - avg) / t"},
        {"g": {}, "lr": {"domain": "positive"}, "th0": {}},
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == "th: th0 - g*lr*t; avg: th0 - g*lr*(1 + t)/2"
    want = run_forward(
        {"th": 2.0, "avg": 0.0},
        lambda t, th, avg: {"th": th - 0.5, "avg": avg + (th - 0.5 - avg) / t},
        6,
    )
    got = d.function("closed_form")(g=1.0, lr=0.5, th0=2.0)
    np.testing.assert_allclose(got["avg"], want["avg"], rtol=1e-12)


def test_the_index_in_an_update_is_refused_by_bptt_with_its_location():
    spec = {
        "name": "schedule",
        "symbols": {"w": {}, "h0": {}},
        "dims": {"T": 3},
        "recurrence": {
            "index": "t",
            "state": {"h": "h0"},
            "update": {"h": "tanh(w * h / t)"},
            "loss": "h**2",
        },
        "wrt": ["w"],
    }
    with pytest.raises(SpecError, match="the index 't' is read by closed_form only"):
        dlsym.derive(spec)


@pytest.mark.parametrize("random", [False, True])
def test_a_vector_state_with_an_elementwise_update_is_solved_entry_by_entry(random):
    symbols = {"beta1": {"domain": "unit_interval"}, "m0": {"shape": ["n"]}}
    symbols["G"] = (
        {"shape": ["T", "n"], "distribution": "normal(mu, 1)"} if random else {"shape": ["n"]}
    )
    symbols |= {"mu": {}} if random else {}
    read = "G[t]" if random else "G * G"
    spec = closed_form_spec(
        {"m": "m0"}, {"m": f"beta1 * m + (1 - beta1) * {read}"}, symbols, T=5, dims={"n": 3}
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    m0, G, beta1 = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.0, -1.5]), 0.9
    target = np.full(3, 0.25) if random else G * G  # E[G[t]] = mu
    want = run_forward({"m": m0}, lambda t, m: {"m": beta1 * m + (1 - beta1) * target}, 5)
    args = dict(beta1=beta1, m0=m0) | (dict(mu=0.25) if random else dict(G=G))
    got = d.function("closed_form")(**args)["m"]
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, want["m"], rtol=1e-12)


def test_a_vector_state_whose_value_is_0_keeps_its_shape():
    """E m_t of Adam's first moment over zero-mean gradients is 0 in every entry: the JSON
    read the number 0 for an [n] state (a nonzero mean reads c*ones(n))."""
    spec = closed_form_spec(
        {"m": "zeros(n)"},
        {"m": "b1 * m + (1 - b1) * G[t]"},
        {
            "G": {"shape": ["T", "n"], "distribution": "uniform(-c, c)"},
            "b1": {"domain": "unit_interval"},
            "c": {"domain": "positive"},
        },
        T=4,
        dims={"n": 3},
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.results["closed_form"].expr == "m: zeros(n)"
    assert r"\mathbb{E}\,\mathbf{m}_{t} &= \mathbf{0}" in d.latex()
    got = d.function("closed_form")(b1=0.9, c=1.0)["m"]
    np.testing.assert_array_equal(got, np.zeros((4, 3)))


def test_a_vector_update_that_mixes_entries_has_no_closed_form():
    spec = closed_form_spec(
        {"m": "zeros(n)"}, {"m": "A @ m"}, {"A": {"shape": ["n", "n"]}}, dims={"n": 2}
    )
    d = dlsym.derive(spec)
    assert "not entry by entry (matmul)" in d.notes[0]


def test_the_static_kalman_variance_is_linear_in_its_reciprocal():
    """p_t = p r/(p + r): 1/p_t = 1/p_{t-1} + 1/r, so p_t = p0 r/(r + t p0)."""
    d = dlsym.derive(
        closed_form_spec(
            {"p": "p0"},
            {"p": "p * r / (p + r)"},
            {"r": {"domain": "positive"}, "p0": {"domain": "positive"}},
        ),
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == "p: p0*r/(r + p0*t)"
    assert any(s.latex.startswith(r"\frac{1}{p_{t}}") for s in d.steps)
    want = run_forward({"p": 2.0}, lambda t, p: {"p": p * 0.5 / (p + 0.5)}, 6)
    np.testing.assert_allclose(d.function("closed_form")(r=0.5, p0=2.0)["p"], want["p"])


KALMAN_CYCLE = closed_form_spec(  # predict (a² p + q) and update (· r/(· + r)) in one step
    {"p": "p0"},
    {"p": "(a**2 * p + q) * r / (a**2 * p + q + r)"},
    {
        "a": {},
        "q": {"domain": "positive"},
        "r": {"domain": "positive"},
        "p0": {"domain": "positive"},
    },
)


def test_the_kalman_variance_with_process_noise_is_solved_by_its_fixed_points():
    """p_t = (a² p + q) r/(a² p + q + r), a Möbius map: (p_t − p₊)/(p_t − p₋) is
    multiplied by k = (a² p₋ + q + r)/(a² p₊ + q + r) each step, p± its fixed points,
    real since (q + r − a² r)² + 4 a² q r >= 0; p₊ is the steady-state variance."""
    d = dlsym.derive(KALMAN_CYCLE, verify=True)
    assert d.verification.passed, d.verification
    at = {"a": 0.9, "q": 0.3, "r": 0.5, "p0": 2.0}
    step = lambda t, p: {"p": (0.81 * p + 0.3) * 0.5 / (0.81 * p + 0.3 + 0.5)}  # noqa: E731
    want = run_forward({"p": 2.0}, step, 6)
    np.testing.assert_allclose(d.function("closed_form")(**at)["p"], want["p"], rtol=1e-12)
    # far out it is the steady state: the positive root of a² p² + (q + r − a² r) p − q r
    steady = max(np.roots([0.81, 0.3 + 0.5 - 0.81 * 0.5, -0.3 * 0.5]))
    far = run_forward({"p": 2.0}, step, 200)["p"][-1]
    np.testing.assert_allclose([far, steady], [steady, far], rtol=1e-12)
    latex = d.result_display("closed_form")["latex"]
    # at a = 0 (γ = a² = 0) the map is the constant q r/(q + r): its own branch
    assert latex.startswith(
        r"p_{t} = \operatorname{where}\left(a = 0, \frac{q r}{q + r}, \frac{p_{+} \left(p_{0} "
        r"- p_{-}\right) - p_{-} k_{p}^{t} \left(p_{0} - p_{+}\right)}{p_{0} - p_{-} - k_{p}^{t} "
        r"\left(p_{0} - p_{+}\right)}\right) \\ p_{+} = "
        r"\frac{\sqrt{\left(q + r - a^{2} r\right)^{2} + 4 a^{2} q r}"
    )
    assert latex.endswith(r"k_{p} = \frac{q + r + p_{-} a^{2}}{q + r + p_{+} a^{2}}")
    assert [s.title for s in d.steps][1:4] == [
        "Fixed points of the update of p",
        "Linear recurrence for p",
        "Solved for t",
    ]


def test_a_define_of_the_states_used_in_an_update_and_the_loss_is_said_to_be_two_values():
    """z = W h + U x[t] in the update is the pre-activation of h_t; in the loss it is read
    with the states at t, as the contract says, which is not what produced h_t: a note
    says so (a loss meant on the pre-activation was silently another, 1.65 off)."""
    spec = {
        "name": "rnn", "dims": {"T": 3, "d": 2, "k": 2}, "wrt": ["W", "U"],
        "symbols": {"W": {"shape": ["d", "d"]}, "U": {"shape": ["d", "k"]},
                    "h0": {"shape": ["d"]}, "x": {"shape": ["T", "k"]}, "y": {"shape": ["T", "d"]}},
        "define": {"z": "W @ h + U @ x[t]"},
        "recurrence": {"index": "t", "state": {"h": "h0"}, "update": {"h": "tanh(z)"},
                       "loss": "0.5 * sum((z - y[t])**2)"},
    }  # fmt: skip
    d = dlsym.derive(spec)
    assert len(d.notes) == 1 and d.notes[0].startswith("the define z reads the states, and is")
    spec["recurrence"]["loss"] = "0.5 * sum((h - y[t])**2)"  # z in the update only
    assert not dlsym.derive(spec).notes
    spec["define"]["e"] = "z - y[t]"  # through another define
    spec["recurrence"]["loss"] = "0.5 * sum(e**2)"
    assert dlsym.derive(spec).notes[0].startswith("the define z reads the states")


def test_the_branch_not_taken_of_a_kalman_variance_warns_of_nothing():
    """a = 0 takes one fixed point's branch; np.where computes the other too, 0/0, and
    the code printed NumPy's divide-by-zero warnings with the right value (a warning is
    an error under pytest's settings here)."""
    d = dlsym.derive(
        {"name": "k", "symbols": {"a": {}, "q": {"domain": "positive"},
         "r": {"domain": "positive"}, "p0": {"domain": "positive"}}, "dims": {"T": 8},
         "recurrence": {"index": "t", "state": {"p": "p0"},
                        "update": {"p": "a**2 * p * r / (p + r) + q"}},
         "derive": ["closed_form"]}
    )  # fmt: skip
    np.testing.assert_allclose(d.function("closed_form")(a=0.0, q=1.0, r=1.0, p0=1.5)["p"], 1.0)


def test_a_mobius_update_with_complex_fixed_points_has_no_closed_form():
    """(x − 1)/(x + 1) rotates (its fixed points solve x² + 1 = 0): said, not a real
    form claimed; 1/(1 + x), the golden ratio's continued fraction, is solved."""
    d = dlsym.derive(closed_form_spec({"x": "x0"}, {"x": "(x - 1)/(x + 1)"}, {"x0": {}}))
    assert "Möbius map" in d.notes[0] and "= -4 is not >= 0" in d.notes[0]
    spec = closed_form_spec({"x": "x0"}, {"x": "1/(1 + x)"}, {"x0": {"domain": "positive"}})
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    got = d.function("closed_form")(x0=1.0)["x"]
    want = run_forward({"x": 1.0}, lambda t, x: {"x": 1 / (1 + x)}, len(got))
    np.testing.assert_allclose(got, want["x"], rtol=1e-13)  # 1/2, 2/3, 3/5, 5/8: Fibonacci


def test_a_wrong_mobius_closed_form_fails_verification():
    d = dlsym.derive(KALMAN_CYCLE)
    first = d.derived[0]
    t = sp.Symbol("t", integer=True, nonnegative=True)
    assert first.value.has(t)
    wrong = first.value.xreplace({t: t + 1})  # one step off
    d.derived = (dataclasses.replace(first, value=wrong),)
    report = d.verify()
    assert not report.passed and not report.checks[0].passed


def test_a_constant_update_and_a_rate_of_one():
    """h: 2 (a constant update) came back from the generated step as a Python int, and
    jax.lax.scan refused it (exit 3); shown in terms of h_t, every 2 read h_t. m: 1 * m
    + 0 is m_t = c (an int 0 from xreplace: exit 3). Round 32's hostile probe."""
    d = dlsym.derive(
        {
            "name": "const",
            "symbols": {"w": {}, "h0": {}},
            "dims": {"T": 3},
            "recurrence": {
                "index": "t",
                "state": {"h": "h0"},
                "update": {"h": 2},
                "loss": "(h - w)**2",
            },
            "wrt": ["w", "h0"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    grads = d.function("gradient")(w=0.5, h0=-1.0)
    assert grads["w"] == pytest.approx(3 * 2 * (0.5 - 2), rel=1e-14) and grads["h0"] == 0
    assert "2*h_t" not in str(d.result_display("gradient"))
    d = dlsym.derive(closed_form_spec({"m": "c"}, {"m": "1 * m + 0"}, {"c": {}}), verify=True)
    assert d.verification.passed and d.result_display("closed_form")["expr"] == "m: c"


def test_an_ema_of_a_projected_input_is_solved_entry_by_entry():
    """m_t = b m + (1 − b) A g_t, g_t ~ N(μ, 1): a matrix product that reads no state
    is part of the drive, so E m_t = μ (1 − bᵗ) A 𝟏 ('not entry by entry (matmul)' in
    round 32); its Monte Carlo paths run the update vmapped in JAX (NumPy's A @ G of a
    leading paths axis is no product per path)."""
    spec = closed_form_spec(
        {"m": "zeros(n)"},
        {"m": "b * m + (1 - b) * (A @ G[t])"},
        {
            "G": {"shape": ["T", "k"], "distribution": "normal(mu, 1)"},
            "A": {"shape": ["n", "k"]},
            "mu": {},
            "b": {"domain": "unit_interval"},
        },
        T=4,
        dims={"n": 2, "k": 3},
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    A = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    got = d.function("closed_form")(A=A, mu=0.7, b=0.9)["m"]
    t = np.arange(1, 5)[:, None]
    np.testing.assert_allclose(got, 0.7 * (1 - 0.9**t) * A.sum(axis=1), rtol=1e-12)


HEAVY_BALL = closed_form_spec(
    {"w": "w0", "v": 0},
    {"v": "mu * v - lr * a * w", "w": "w + mu * v - lr * a * w"},
    {
        "a": {"domain": "positive"},
        "lr": {"domain": "positive"},
        "mu": {"domain": "unit_interval"},
        "w0": {},
    },
    T=12,
)


@pytest.mark.parametrize(
    "at",
    [
        {"a": 1.0, "lr": 0.1, "mu": 0.05, "w0": 2.0},  # real eigenvalues: D > 0
        {"a": 1.0, "lr": 0.5, "mu": 0.9, "w0": 2.0},  # complex: the iterates oscillate
    ],
)
def test_heavy_ball_on_a_quadratic_is_solved_through_its_step_matrix(at):
    """v reads w and w reads v (heavy ball on f = a w²/2): (w, v)_t = M (w, v)_(t−1), and
    Mᵗ = s_t M − Δ s_(t−1) I with s_t of M's eigenvalues, written real: powers where they
    are real, Δ^(t/2) sin(tθ) where complex, a `where` on the discriminant's sign (it was
    'no closed form: the states read each other'). Against the loop in both regimes."""
    d = dlsym.derive(HEAVY_BALL, verify=True)
    assert d.verification.passed, d.verification
    assert [s.title for s in d.steps][2] == "Step matrix of w, v"

    def step(t, w, v):
        v = at["mu"] * v - at["lr"] * at["a"] * w
        return {"w": w + v, "v": v}

    want = run_forward({"w": at["w0"], "v": 0.0}, step, 12)
    got = d.function("closed_form")(**at)
    for k in ("w", "v"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12)
    tau, delta = 1 + at["mu"] - at["lr"] * at["a"], at["mu"]
    assert (tau**2 - 4 * delta > 0) == (at["mu"] == 0.05)


def test_the_fixed_point_of_a_driven_pair_is_written_cancelled():
    """Heavy ball on a (w − c)²/2 converges to its minimizer c: the fixed point
    u* = (I − M)⁻¹ c read (a c lr mu + a c lr (1 − mu))/(a lr)."""
    d = dlsym.derive(
        closed_form_spec(
            {"w": "w0", "v": 0},
            {"v": "mu * v - lr * (a * w - a * c)", "w": "w + mu * v - lr * (a * w - a * c)"},
            {
                "a": {"domain": "positive"},
                "c": {},
                "lr": {"domain": "positive"},
                "mu": {"domain": "unit_interval"},
                "w0": {},
            },
            T=9,
        ),
        verify=True,
    )
    assert d.verification.passed, d.verification
    form = d.results["closed_form"].expr
    assert form.startswith("w: c + (w0 - c)*(1 - a*lr)*where(") and "mu*(1 - mu)" not in form
    at = {"a": 2.0, "c": -0.5, "lr": 0.3, "mu": 0.6, "w0": 1.5}
    want = run_forward(
        {"w": at["w0"], "v": 0.0},
        lambda t, w, v: {
            "v": at["mu"] * v - at["lr"] * at["a"] * (w - at["c"]),
            "w": w + at["mu"] * v - at["lr"] * at["a"] * (w - at["c"]),
        },
        9,
    )
    got = d.function("closed_form")(**at)
    for k in ("w", "v"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12)


def test_a_coupled_pair_with_a_drive_and_a_larger_group():
    """x' = x/2 + v/5 + 1, v' = x/10 + 3v/10 + 2: the fixed point u* = (I − M)⁻¹ c, and
    u_t = u* + Mᵗ(u_0 − u*). A step matrix with the eigenvalue 1 and a drive grows with
    t: said; three states that read each other: said, with M."""
    d = dlsym.derive(
        closed_form_spec(
            {"x": "x0", "v": "v0"},
            {"x": "x / 2 + v / 5 + 1", "v": "x / 10 + 3 * v / 10 + 2"},
            {"x0": {}, "v0": {}},
        ),
        verify=True,
    )
    assert d.verification.passed, d.verification
    got = d.function("closed_form")(x0=1.0, v0=-1.0)
    want = run_forward(
        {"x": 1.0, "v": -1.0},
        lambda t, x, v: {"x": x / 2 + v / 5 + 1, "v": x / 10 + 3 * v / 10 + 2},
        6,
    )
    for k in ("x", "v"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
    one = dlsym.derive(
        closed_form_spec(
            {"x": "x0", "v": 0}, {"x": "x / 2 + v / 2 + 1", "v": "x / 2 + v / 2"}, {"x0": {}}
        )
    )
    assert "has the eigenvalue 1" in one.notes[0]
    three = dlsym.derive(
        closed_form_spec(
            {"x": 0, "y": 0, "z": 1},
            {"x": "y + z", "y": "x + z", "z": "x + y"},
            {},
        )
    )
    assert "the states x, y, z read each other" in three.notes[0]


@pytest.mark.parametrize("state", ["ema", "m"])
def test_a_wrong_solved_state_fails_verification(state):
    """One step off in a state solved in turn, or in a vector state's entries."""
    spec = EMA_OF_PARAMETERS
    if state == "m":
        spec = closed_form_spec(
            {"m": "zeros(n)"},
            {"m": "b * m + g"},
            {"b": {"domain": "unit_interval"}, "g": {"shape": ["n"]}},
            dims={"n": 3},
        )
    d = dlsym.derive(spec)
    t = d.rec.step
    d.derived = tuple(
        dataclasses.replace(s, value=s.value.xreplace({t: t + 1})) if s.state == state else s
        for s in d.derived
    )
    report = d.verify()
    assert not report.passed
    assert [c.passed for c in report.checks] == [s.name != state for s in d.rec.states]


def test_a_sum_of_an_earlier_state_and_a_step_without_code_say_what_they_are():
    """v_t = v_(t−1) + m_(t−1) with m_t = (1 − b^t)/(1 − b): sympy.rsolve failed inside
    (AttributeError, exit 3); v is the sum of m's closed form, checked against the run.
    s_t = t s_(t−1) is s_0 t!, which no code computes: no closed form, said."""
    d = dlsym.derive(
        {
            "name": "chain",
            "symbols": {"b": {"domain": "unit_interval"}},
            "dims": {"T": 5},
            "recurrence": {
                "index": "t",
                "state": {"m": 0, "v": 0},
                "update": {"m": "b * m + 1", "v": "v + m"},
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed
    got = d.function("closed_form")(b=0.5)
    m, v = 0.0, 0.0
    for t in range(5):
        m, v = 0.5 * m + 1, v + m
        np.testing.assert_allclose(got["v"][t], v, rtol=1e-12)
    factorial = dlsym.derive(
        {
            "name": "factorial",
            "symbols": {"s0": {}},
            "dims": {"T": 6},
            "recurrence": {"index": "t", "state": {"s": "s0"}, "update": {"s": "t * s"}},
            "derive": ["closed_form"],
        }
    )
    assert any("holds factorial" in n for n in factorial.notes)


def test_sgd_with_one_over_t_steps_is_a_harmonic_number():
    """θ_t = θ_(t−1) − lr g/t: sympy.rsolve gives up (None, and its sum was not tried: no
    closed form in round 32); the sum is θ_0 − lr g H_t, H_t computed as ψ(t + 1) + γ,
    equal to the loop, shown as H_t; with a noisy gradient g_t ~ N(1, 2) (mean, variance) its mean. A 1/t²
    step's H_t^(2) has no code: no closed form, said."""
    base = {
        "name": "sgd",
        "symbols": {"g": {"shape": ["n"]}, "lr": {"domain": "positive"}, "th0": {"shape": ["n"]}},
        "dims": {"T": 6, "n": 3},
        "recurrence": {"index": "t", "state": {"th": "th0"}, "update": {"th": "th - lr / t * g"}},
        "derive": ["closed_form"],
    }
    d = dlsym.derive(base, verify=True)
    assert d.verification.passed, d.verification
    shown = d.result_display("closed_form")
    assert shown["expr"] == "th: th0 - g*lr*harmonic(t)"
    assert shown["latex"] == r"\mathbf{th}_{t} = \mathbf{th}_{0} - \mathbf{g} \mathit{lr} H_{t}"
    rng = np.random.default_rng(0)
    g, th0 = rng.normal(size=3), rng.normal(size=3)
    got = d.function("closed_form")(g=g, lr=0.3, th0=th0)["th"]
    th = th0.copy()
    for t in range(1, 7):
        th = th - 0.3 / t * g
        np.testing.assert_allclose(got[t - 1], th, rtol=1e-13, atol=1e-15)
    noisy = dlsym.derive(
        {
            **base,
            "symbols": {
                "lr": {"domain": "positive"},
                "th0": {},
                "g": {"shape": ["T"], "distribution": "normal(1, 2)"},
            },
            "recurrence": {**base["recurrence"], "update": {"th": "th - lr / t * g[t]"}},
        },
        verify=True,
    )
    assert noisy.verification.passed, noisy.verification
    assert noisy.result_display("closed_form")["expr"] == "th: th0 - lr*harmonic(t)"
    squared = dlsym.derive(
        {**base, "recurrence": {**base["recurrence"], "update": {"th": "th - lr / t**2 * g"}}}
    )
    assert any("harmonic(t, 2)" in n for n in squared.notes)


def test_polyak_averaging_of_gradient_descent_iterates():
    """a_t = a_(t−1) + (θ_(t−1) − a_(t−1))/t, the running average of the iterates: a rate
    (t − 1)/t, which sympy.rsolve fails inside ('NoneType' object has no attribute
    'subs': no closed form in round 33); t a_t adds up: E a_t = m + (θ_0 − m)(1 −
    (1 − lr)ᵗ)/(lr t). Equal to the loop at every step, and to Monte Carlo paths with
    a noisy target."""
    base = {
        "name": "polyak",
        "symbols": {"m": {}, "lr": {"domain": "unit_interval"}, "th0": {}},
        "dims": {"T": 6},
        "recurrence": {
            "index": "t",
            "state": {"th": "th0", "avg": "th0"},
            "update": {"th": "th - lr * (th - m)", "avg": "avg + (th - avg) / t"},
        },
        "derive": ["closed_form"],
    }
    d = dlsym.derive(base, verify=True)
    assert d.verification.passed, d.verification
    got = d.function("closed_form")(m=0.7, lr=0.3, th0=-1.2)["avg"]
    th, avg = -1.2, -1.2
    for t in range(1, 7):
        th, avg = th - 0.3 * (th - 0.7), avg + (th - avg) / t
        np.testing.assert_allclose(got[t - 1], avg, rtol=1e-13)
        assert avg == pytest.approx(0.7 + (-1.2 - 0.7) * (1 - 0.7**t) / (0.3 * t), rel=1e-13)
    noisy = dlsym.derive(
        {
            **base,
            "symbols": {
                **base["symbols"],
                "g": {"shape": ["T"], "distribution": "normal(m, 1)"},
            },
            "recurrence": {
                **base["recurrence"],
                "update": {"th": "th - lr * (th - g[t])", "avg": "avg + (th - avg) / t"},
            },
        },
        verify=True,
    )
    assert noisy.verification.passed, noisy.verification
    np.testing.assert_allclose(
        noisy.function("closed_form")(m=0.7, lr=0.3, th0=-1.2)["avg"], got, rtol=1e-13
    )


def test_sums_where_rsolve_fails_inside_or_a_state_starts_late():
    """Both no closed form in round 33. An EMA of g_t times the momentum it updates:
    E c_t = b E c_(t−1) + A + B b^(t−1), whose answer holds t bᵗ (rsolve failed inside
    on NoneType.subs), as Σ b^(t−k) f(k). A lagged product b_t = b_(t−1) + a_(t−1) g_t
    with a_t = g_t: E a_(t−1) is 0 at t = 1 and μ after (RisingFactorial(0, t − 1)),
    E b_t = b_0 + (t − 1) μ². Each against the moments' recursion by hand."""
    g = {"shape": ["T"], "distribution": "normal(mu, s2)"}
    ema = dlsym.derive(
        {
            "name": "ema_product",
            "symbols": {
                "g": g,
                "mu": {},
                "s2": {"domain": "positive"},
                "b": {"domain": "unit_interval"},
            },
            "dims": {"T": 5},
            "recurrence": {
                "index": "t",
                "state": {"m": 0, "c": 0},
                "update": {
                    "m": "b * m + (1 - b) * g[t]",
                    "c": "b * c + (1 - b) * g[t] * (b * m + (1 - b) * g[t])",
                },
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert ema.verification.passed, ema.verification
    mu, s2, b = 0.6, 1.7, 0.8
    got = ema.function("closed_form")(mu=mu, s2=s2, b=b)["c"]
    m, c = 0.0, 0.0
    for t in range(1, 6):
        m, c = b * m + (1 - b) * mu, b * c + (1 - b) * (b * mu * m + (1 - b) * (s2 + mu**2))
        assert got[t - 1] == pytest.approx(c, rel=1e-12)
    lagged = dlsym.derive(
        {
            "name": "lagged",
            "symbols": {"g": g, "mu": {}, "s2": {"domain": "positive"}, "b0": {}},
            "dims": {"T": 5},
            "recurrence": {
                "index": "t",
                "state": {"a": 0, "b": "b0"},
                "update": {"a": "g[t]", "b": "b + a * g[t]"},
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert lagged.verification.passed, lagged.verification
    got = lagged.function("closed_form")(mu=mu, s2=s2, b0=0.3)["b"]
    np.testing.assert_allclose(got, 0.3 + (np.arange(1, 6) - 1) * mu**2, rtol=1e-12)


def test_defines_in_a_recurrence_are_read_at_each_step():
    """define: was 'unknown key' in a recurrence spec, though every spec may have it: a
    define of the symbols (A = 0.5 W) and one of the state (z = A @ h) read in the
    update at each step; the gradient equals the one written inline, and a define named
    as a state is a located error."""
    base = {
        "name": "rnn_define",
        "symbols": {"W": {"shape": ["d", "d"]}, "h0": {"shape": ["d"]}, "y": {"shape": ["T", "d"]}},
        "dims": {"T": 3, "d": 2},
        "recurrence": {
            "index": "t",
            "state": {"h": "h0"},
            "update": {"h": "tanh(z)"},
            "loss": "0.5 * sum((h - y[t])**2)",
        },
        "wrt": ["W"],
        "derive": ["gradient"],
    }
    d = dlsym.derive({**base, "define": {"A": "0.5 * W", "z": "A @ h"}}, verify=True)
    assert d.verification.passed
    inline = dlsym.derive(
        {**base, "recurrence": {**base["recurrence"], "update": {"h": "tanh(0.5 * W @ h)"}}}
    )
    rng = np.random.default_rng(0)
    values = {"W": rng.normal(size=(2, 2)), "h0": rng.normal(size=2), "y": rng.normal(size=(3, 2))}
    np.testing.assert_allclose(
        d.function("gradient")(**values), inline.function("gradient")(**values), rtol=1e-12
    )
    with pytest.raises(dlsym.SpecError, match="define 'h' has the name of a symbol, dim, state"):
        dlsym.derive({**base, "define": {"h": "0.5 * W"}})


def test_an_update_that_does_not_read_its_state_is_its_own_closed_form():
    """Adam's bias-corrected m̂_t = (β₁ m_(t−1) + (1 − β₁) g)/(1 − β₁ᵗ) with a constant g:
    sympy.rsolve gave up on a rate 0; the update at m's closed form simplifies to g,
    the correction dividing the bias out exactly."""
    d = dlsym.derive(
        {
            "name": "mhat",
            "symbols": {"g": {}, "b1": {"domain": "unit_interval"}},
            "dims": {"T": 4},
            "recurrence": {
                "index": "t",
                "state": {"m": 0, "mh": 0},
                "update": {
                    "m": "b1 * m + (1 - b1) * g",
                    "mh": "(b1 * m + (1 - b1) * g) / (1 - b1**t)",
                },
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed
    assert d.result_display("closed_form")["expr"] == "m: g*(1 - b1**t); mh: g"


def test_static_kalman_estimate_reads_the_solved_variance_in_its_gain():
    """x_t = x_(t−1) + p_(t−1)/(p_(t−1) + r) (z_t − x_(t−1)) with p_t = p r/(p + r): the
    gain reads the variance, a state (no closed form in round 33). p has no random input
    and its own closed form p₀ r/(r + p₀ t), so x's rate r/(p_(t−1) + r) is
    (r + (t − 1) p₀)/(r + t p₀): E x_t = (r x₀ + p₀ t m)/(r + p₀ t), the running mean
    of the draws weighted against the prior. Equal to the loop on E z = m at every step
    (x is linear in the z with gains that are not random) and to Monte Carlo paths."""
    spec = closed_form_spec(
        {"p": "p0", "x": "x0"},
        {"p": "p * r / (p + r)", "x": "x + p / (p + r) * (z[t] - x)"},
        {
            "z": {"shape": ["T"], "distribution": "normal(m, r)"},
            "m": {},
            "r": {"domain": "positive"},
            "p0": {"domain": "positive"},
            "x0": {},
        },
        T=5,
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == (
        "p: p0*r/(r + p0*t); x: (r*x0 + m*p0*t)/(r + p0*t)"
    )
    want = run_forward(
        {"p": 0.8, "x": -0.4},
        lambda t, p, x: {"p": p * 1.7 / (p + 1.7), "x": x + p / (p + 1.7) * (0.9 - x)},
        5,
    )
    got = d.function("closed_form")(m=0.9, r=1.7, p0=0.8, x0=-0.4)
    np.testing.assert_allclose(got["p"], want["p"], rtol=1e-13)
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-13)


def test_a_rate_that_reads_a_random_state_is_no_closed_form():
    """E[k_(t−1) x_(t−1)] is not E k E x where both hold the same draws: a state read in
    another's rate must be deterministic."""
    spec = closed_form_spec(
        {"k": 1, "x": "x0"},
        {"k": "k * u[t]", "x": "x + k * (z - x)"},
        {
            "u": {"shape": ["T"], "distribution": "uniform(0, 1)"},
            "z": {},
            "x0": {},
        },
    )
    d = dlsym.derive(spec, verify=True)
    assert d.result_display("closed_form")["expr"] == "none"
    assert any("the update of x reads k in its rate, and k is random" in n for n in d.notes)


def test_a_reversed_slice_of_a_random_input_in_a_closed_form():
    """m_t = b m_(t−1) + (1 − b) g_t[::-1]: the Monte Carlo paths run the update in JAX
    under jit (it holds a tensor operation), where a dim argument was traced and the
    reversed slice's start n − 1 not static (exit 3). E m_t = μ (1 − bᵗ) in every
    entry."""
    spec = closed_form_spec(
        {"m": "zeros(n)"},
        {"m": "b * m + (1 - b) * g[t][::-1]"},
        {
            "g": {"shape": ["T", "n"], "distribution": "normal(mu, 1)"},
            "mu": {},
            "b": {"domain": "unit_interval"},
        },
        T=5,
        dims={"n": 3},
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    got = d.function("closed_form")(mu=0.8, b=0.6)["m"]
    want = [0.8 * (1 - 0.6**t) * np.ones(3) for t in range(1, 6)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize(
    "recurrence, derive, message",
    [
        (
            {"index": "t", "state": {"m": "m0"}, "update": {"m": "a * m + 1"}},
            ["closed_form"],
            "keeps its states at every one of T = 1,000,000,000 steps",
        ),
        (
            {"index": "t", "state": {"h": "m0"}, "update": {"h": "tanh(a * h)"}, "loss": "h**2"},
            None,
            "of the states and adjoints at every one of T = 1,000,000,000 steps",
        ),
    ],
)
def test_a_horizon_too_long_to_verify_is_a_located_error(tmp_path, recurrence, derive, message):
    """T = 10⁹: the closed form's check ran the recurrence forward 50 s into the time
    budget holding 3.6 GB; BPTT's jax.lax.scan asked for 32 GB (exit 3). The entries one
    point keeps are counted first: a located error at dims, before anything is drawn."""
    spec = {
        "name": "long",
        "symbols": {"a": {"domain": "unit_interval"}, "m0": {}},
        "dims": {"T": 10**9},
        "recurrence": recurrence,
    }
    spec |= {"derive": derive} if derive else {"wrt": ["a"]}
    path = tmp_path / "long.yaml"
    text = yaml.safe_dump(spec, sort_keys=False)
    path.write_text(text)
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    line = text.splitlines().index("  T: 1000000000") + 1  # the dims' mapping
    assert f"{path}:{line}:" in result.output
    assert message in " ".join(result.output.split())
    assert "a smaller T" in result.output and "Traceback" not in result.output


def _unrolled(update, state, T=5):
    out = []
    for t in range(1, T + 1):
        state = update(t, *state)
        out.append(state)
    return np.array(out)


@pytest.mark.parametrize(
    "state, update, symbols, at, truth, shown",
    [
        # r = 1: x₀ + c t (the general form divides by 1 − r)
        (
            {"x": "x0"},
            {"x": "r * x + c"},
            {"r": {}, "c": {}, "x0": {}},
            {"r": 1.0, "c": 0.5, "x0": 1.0},
            lambda t, x: (x + 0.5,),
            "x: where(r == 1, x0 + c*t, r**t*x0 + c*(1 - r**t)/(1 - r))",
        ),
        # two rates equal: t bᵗ (the general form divides by a − b)
        (
            {"x": 0},
            {"x": "a * x + b**t"},
            {"a": {"domain": "unit_interval"}, "b": {"domain": "unit_interval"}},
            {"a": 0.9, "b": 0.9},
            lambda t, x: (0.9 * x + 0.9**t,),
            "x: where(a == b, b**t*t, b*(a**t - b**t)/(a - b))",
        ),
        # weight decay 0 (PyTorch's default): plain SGD, θ₀ − lr μ t
        (
            {"th": "th0"},
            {"th": "th - lr * (mu + wd * th)"},
            {
                "lr": {"domain": "unit_interval"},
                "wd": {"domain": "nonnegative"},
                "mu": {},
                "th0": {},
            },
            {"lr": 0.1, "wd": 0.0, "mu": 0.3, "th0": 1.0},
            lambda t, th: (th - 0.1 * 0.3,),
            None,
        ),
        # a schedule whose rate meets the state's in floating point only: 1 − 0.3 is the
        # double 0.7 while 0.3 == 1 − 0.7 is False (the general branch divided 0 by −6e-17)
        (
            {"th": "th0"},
            {"th": "(1 - a) * th - lr * gam**t * mu"},
            {"a": {"domain": "unit_interval"}, "gam": {"domain": "unit_interval"}},
            {"a": 0.3, "gam": 0.7, "lr": 0.5, "mu": 0.3, "th0": 1.0},
            lambda t, th: (0.7 * th - 0.5 * 0.7**t * 0.3,),
            None,
        ),
        # heavy ball at critical damping, D = τ² − 4Δ = 0: s_t = t (τ/2)^(t−1)
        (
            {"v": 0, "w": "w0"},
            {"v": "mom * v - lr * wd * w", "w": "w + mom * v - lr * wd * w"},
            {"lr": {"domain": "unit_interval"}, "wd": {"domain": "positive"}},
            {"mom": 0.25, "lr": 0.5, "wd": 0.5, "w0": 1.0},
            lambda t, v, w: (0.25 * v - 0.25 * w, w + 0.25 * v - 0.25 * w + 0 * v),
            None,
        ),
    ],
)
def test_a_closed_form_at_the_values_where_it_reads_zero_over_zero(
    state, update, symbols, at, truth, shown
):
    """A closed form found for symbolic parameters divides by quantities that are 0 at
    some admissible values (1 − r, a − b, wd, the heavy ball's discriminant): its code
    gave nan there (or, for a rate equal only in floating point, a wrong value) and
    verification, drawing generic points, never saw it. At each such value the limit is
    a where branch, taken to rounding in the code. Against the loop at that value."""
    all_symbols = {
        **{k: {} for k in at},
        **symbols,
    }
    d = dlsym.derive(closed_form_spec(state, update, all_symbols, T=5), verify=True)
    assert d.verification.passed, d.verification
    if shown:
        assert d.result_display("closed_form")["expr"] == shown
    got = d.function("closed_form")(**at)
    start = [float(at[v]) if isinstance(v, str) else float(v) for v in state.values()]
    want = _unrolled(truth, start)
    for i, name in enumerate(state):
        np.testing.assert_allclose(got[name], want[:, i], rtol=1e-9, atol=1e-12)
        assert np.isfinite(got[name]).all()


def test_a_zero_over_zero_value_without_a_limit_found_is_said():
    """Heavy ball on a quadratic of curvature a, a real: its fixed point μ/a is 0/0 at
    a = 0 (a flat direction, where the forced part grows with t), and sympy.limit of
    the pair's form (its s_t a where) finds nothing: the note says where the closed
    form holds, rather than nothing (its code gives nan there)."""
    spec = closed_form_spec(
        {"v": 0, "w": "w0"},
        {"v": "mom * v - lr * (a * w - mu)", "w": "w + mom * v - lr * (a * w - mu)"},
        {
            "lr": {"domain": "unit_interval"},
            "mom": {"domain": "unit_interval"},
            "a": {},
            "mu": {},
            "w0": {},
        },
        T=5,
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert any("the closed form for w_t holds where a != 0" in n for n in d.notes), d.notes


def test_an_einsum_of_a_random_input_in_a_recurrence_is_a_product():
    """m_t = b m + (1 − b) einsum('ij,j->i', A, g_t): no linear rule read the einsum
    ('not linear', the note showing the internal name _g_t); it is A @ g_t, and
    E m_t = μ (1 − bᵗ) A 𝟏 as for the @ form."""
    spec = closed_form_spec(
        {"m": "zeros(n)"},
        {"m": "b * m + (1 - b) * einsum('ij,j->i', A, g[t])"},
        {
            "g": {"shape": ["T", "n"], "distribution": "normal(mu, 1)"},
            "A": {"shape": ["n", "n"]},
            "mu": {},
            "b": {"domain": "unit_interval"},
        },
        T=4,
        dims={"n": 3},
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == "m: mu*(1 - b**t)*(A @ ones(n))"


def test_sgd_with_steps_lr_over_t_plus_one():
    """θ_t = θ_(t−1) − lr g_t/(t + 1): SymPy leaves Σ 1/(k + 1) a Sum (no closed form in
    round 34, though lr/t was solved); shifted it is Σ_(k=2..t+1) 1/k = H_(t+1) − 1."""
    spec = closed_form_spec(
        {"th": "th0"},
        {"th": "th - lr / (t + 1) * g[t]"},
        {
            "g": {"shape": ["T"], "distribution": "normal(mu, 1)"},
            "mu": {},
            "lr": {"domain": "positive"},
            "th0": {},
        },
        T=5,
    )
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"] == "th: th0 + lr*mu*(1 - harmonic(1 + t))"
    got = d.function("closed_form")(mu=0.4, lr=0.3, th0=1.0)["th"]
    want = _unrolled(lambda t, th: (th - 0.3 / (t + 1) * 0.4,), [1.0])[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_sgds_second_moment_on_a_quadratic_is_a_geometric_series():
    """E w_t² of noisy gradient descent on a quadratic, tracked as a state q whose update
    reads w and g[t]: E q_t = ρ² E q_(t−1) + lr²(s2 + μ²) − 2ρ lr μ E w_(t−1) with
    ρ = 1 − a lr, whose forcing in ρᵗ rsolve failed inside ('NoneType' has no 'subs')
    and sympy.summation took 15 s on. Against the textbook's E w_t² = Var w_t + (E w_t)²:
    Var w_t = lr² s2 (1 − ρ^(2t))/(1 − ρ²), E w_t = ρᵗ w0 − lr μ (1 − ρᵗ)/(1 − ρ)."""
    d = dlsym.derive(
        {
            "name": "sgd_second_moment",
            "symbols": {
                "g": {"shape": ["T"], "distribution": "normal(mu, s2)"},
                "mu": {},
                "s2": {"domain": "positive"},
                "lr": {"domain": "unit_interval"},
                "a": {"domain": "positive"},
                "w0": {},
            },
            "dims": {"T": 5},
            "recurrence": {
                "index": "t",
                "state": {"w": "w0", "q": "w0**2"},
                "update": {
                    "w": "(1 - lr * a) * w - lr * g[t]",
                    "q": "(1 - lr * a)**2 * q - 2 * (1 - lr * a) * lr * w * g[t] + lr**2 * g[t]**2",
                },
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    values = {"mu": 0.4, "s2": 0.9, "lr": 0.3, "a": 1.7, "w0": -1.2}
    got = d.function("closed_form")(**values)["q"]
    rho, t = 1 - values["lr"] * values["a"], np.arange(1, 6)
    lr, mu, s2, w0 = values["lr"], values["mu"], values["s2"], values["w0"]
    mean = rho**t * w0 - lr * mu * (1 - rho**t) / (1 - rho)
    var = lr**2 * s2 * (1 - rho ** (2 * t)) / (1 - rho**2)
    np.testing.assert_allclose(got, var + mean**2, rtol=1e-12)
    # a constant and two decays, each with its own factored coefficient, not one fraction
    general = d.result_display("closed_form")["expr"].split("; q: ")[1]
    assert "(a*lr - 1)**(2*t)*(" in general and "*(1 - a*lr)**t*(mu + a*w0)/a**2" in general


def test_the_kalman_variance_with_no_process_noise_has_its_parabolic_branch():
    """(a² p + q) r/(a² p + q + r) with a nonnegative q: its Möbius form's discriminant
    (q + r − a²r)² + 4a²qr is 0 at a = ±1, q = 0 (a random walk seen with no process
    noise), where the fixed points coincide and the form was nan at every t (exit 0).
    There 1/(p − p*) gains 2γ/(α + δ) = 1/r each step: p_t = p0 r/(r + p0 t), the
    static filter; with a positive q the discriminant cannot vanish and no branch is
    added for it."""
    rec = {
        "name": "riccati",
        "symbols": {
            "a": {},
            "q": {"domain": "nonnegative"},
            "r": {"domain": "positive"},
            "p0": {"domain": "positive"},
        },
        "dims": {"T": 5},
        "recurrence": {
            "index": "t",
            "state": {"p": "p0"},
            "update": {"p": "(a**2 * p + q) * r / (a**2 * p + q + r)"},
        },
        "derive": ["closed_form"],
    }
    d = dlsym.derive(rec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["expr"].startswith("p: where(")
    fn, t = d.function("closed_form"), np.arange(1, 6)
    for a in (1.0, -1.0):
        got = fn(a=a, q=0.0, r=1.5, p0=2.0)["p"]
        np.testing.assert_allclose(got, 2.0 * 1.5 / (1.5 + 2.0 * t), rtol=1e-14)
    p, want = 2.0, []
    for _ in t:
        p = (0.49 * p + 0.3) * 1.5 / (0.49 * p + 0.3 + 1.5)
        want.append(p)
    np.testing.assert_allclose(fn(a=0.7, q=0.3, r=1.5, p0=2.0)["p"], want, rtol=1e-13)
    # a = 0 (a white-noise state): γ = a² = 0, the map is the constant q r/(q + r), and
    # the form divided by 2a² (nan there, with a note); its branch is verified at a = 0
    assert not d.notes and d.verification.points == 17
    np.testing.assert_allclose(
        fn(a=0.0, q=0.3, r=1.5, p0=2.0)["p"], [0.3 * 1.5 / 1.8] * 5, rtol=1e-14
    )
    positive = {**rec, "symbols": {**rec["symbols"], "q": {"domain": "positive"}}}
    shown = dlsym.derive(positive).result_display("closed_form")["expr"]
    # no double fixed point where q > 0: only a = 0's branch, and the sign of α − δ
    # (grouped: r (a² − 1) − q, exact at a = 1) that picks the form of the fixed points
    # without cancellation
    assert shown.startswith("p: where(a == 0, ") and shown.count("== 0") == 1
    assert "where(r*(a**2 - 1) - q >= 0, " in shown


def test_the_kalman_variance_with_an_observation_gain_has_a_branch_per_factor_of_gamma():
    """(a² p + q) r/(h² (a² p + q) + r): γ = a² h² vanishes at a = 0 and at h = 0
    (nothing observed: p_t = a²ᵗ p₀ + q (1 − a²ᵗ)/(1 − a²), p₀ + q t at a = ±1). The one
    branch on γ ≈ 0 was a = 0's q r/(q + r), taken at h = 0 too (0.2 at every t for
    0.767, 0.821, ..., exit 0: verification drew no h = 0), and the discriminant,
    0 at h = 0 and ∝ h² near it, gave p₀ for the growing p₀ + q t up to h = 1e-4.
    Near h = 0 the fixed points are ±√(q r)/h apart: the near one, written as
    ((α − δ) − √D)/(2γ), cancelled (2e-3 off at h = 1e-7)."""
    rec = {
        "name": "riccati_h",
        "symbols": {
            "a": {},
            "h": {},
            "q": {"domain": "positive"},
            "r": {"domain": "positive"},
            "p0": {"domain": "positive"},
        },
        "dims": {"T": 6},
        "recurrence": {
            "index": "t",
            "state": {"p": "p0"},
            "update": {
                "p": "a**2 * p + q - (a**2 * p + q)**2 * h**2 / (h**2 * (a**2 * p + q) + r)"
            },
        },
        "derive": ["closed_form"],
    }
    d = dlsym.derive(rec, verify=True)
    assert d.verification.passed, d.verification
    fn = d.function("closed_form")
    for a, h in [
        (0.9, 0.0),
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 0.0),
        (0.0, 0.7),
        (0.9, 1e-5),
        (1.0, 1e-6),
        (0.6, 1.3),
        # the near fixed point computed without cancellation: 2e-3 off at h = 1e-7
        (0.9, 1e-7),
        (0.5, 3e-8),
        (2.0, 1e-9),
    ]:
        p, want = 0.7, []
        for _ in range(6):
            m = a * a * p + 0.2
            p = m * 1.0 / (h * h * m + 1.0)
            want.append(p)
        np.testing.assert_allclose(fn(a=a, h=h, q=0.2, r=1.0, p0=0.7)["p"], want, rtol=1e-6)


def test_a_double_pole_is_taken_by_its_taylor_polynomial_near_it():
    """x_t = r x + c t: c (t + r rᵗ − r − r t)/(r − 1)² loses ε/(r − 1)² near r = 1 (1.5e-2
    off at r = 1 + 1e-7, exit 0), inside no √ε mask. Near r = 1 (|r − 1| t small) the
    code takes the Taylor polynomial about r = 1; the result shows the limit there, and
    verification adds a point inside that neighbourhood."""
    spec = closed_form_spec({"x": "x0"}, {"x": "r * x + c * t"}, {"r": {}, "c": {}, "x0": {}}, T=10)
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.verification.points == 16 + 2  # r = 1, and r inside the Taylor branch
    shown = d.result_display("closed_form")["expr"]
    assert shown.startswith("x: where(r == 1, x0 + c*t/2 + c*t**2/2, "), shown
    # the terminal's step too (it printed the polynomial: terms over 24, 120, 720)
    text = d.step_text(d.steps[-1])
    assert "where" in text and not any(f" {n} " in text for n in (24, 120, 720)), text
    fn = d.function("closed_form")
    for T in (10, 200):
        spec["dims"]["T"] = T
        fn = dlsym.derive(spec).function("closed_form")
        for r in (1.0, 1 + 1e-9, 1 + 1e-7, 1 - 1e-6, 1 + 1e-5, 1 - 3e-4, 0.999, 0.99, 0.5):
            want = run_forward({"x": 0.3}, lambda t, x: {"x": r * x + 0.7 * t}, T)["x"]
            got = fn(r=r, c=0.7, x0=0.3)["x"]
            np.testing.assert_allclose(got, want, rtol=1e-8, err_msg=f"r = {r}, T = {T}")


POLYAK = closed_form_spec(
    {"th": "th0", "avg": 0},
    {"th": "th - lr * a * (th - c)", "avg": "avg + (th - lr * a * (th - c) - avg) / t"},
    {"a": {"domain": "positive"}, "lr": {"domain": "positive"}, "c": {}, "th0": {}},
)


def test_a_form_that_cancels_near_an_open_end_of_a_domain_is_accurate_there():
    """The Polyak average of gradient-descent iterates, c ((1 − x)ᵗ + x + x t − 1 −
    x (1 − x)ᵗ)/(x t) + ... for x = a lr, a and lr positive: no value of the domains
    reads 0/0, but as a lr → 0 the form is O(1) terms cancelling to O(x²), divided by x:
    10× off at a lr = 1e-9, 7·10⁶× at 1e-12 (exit 0). Near there the code takes the
    Taylor polynomial in a lr; the result shows the general form (a = 0 is no value
    here), and verification adds a point inside the branch."""
    d = dlsym.derive(POLYAK, verify=True)
    assert d.verification.passed and d.verification.points == 16 + 1, d.verification
    shown = d.result_display("closed_form")
    assert "where" not in shown["expr"] and "where" not in shown["latex"], shown
    assert "where" not in "".join(d.step_text(s) for s in d.steps)
    fn = d.function("closed_form")
    for a, lr in ((1.0, 1e-12), (1.0, 1e-9), (3.0, 1e-6), (2e3, 1e-6), (1.0, 0.3), (1.0, 1.9)):
        for c, th0 in ((1.0, 0.0), (-3.0, 5.0)):

            def step(t, th, avg, a=a, lr=lr, c=c):
                new = th - lr * a * (th - c)
                return {"th": new, "avg": avg + (new - avg) / t}

            want = run_forward({"th": th0, "avg": 0.0}, step, 6)
            got = fn(a=a, lr=lr, c=c, th0=th0)
            for k in ("th", "avg"):
                np.testing.assert_allclose(got[k], want[k], rtol=1e-9, err_msg=f"{k} {a} {lr}")


def test_a_branch_near_an_open_end_is_verified_there(monkeypatch):
    """A wrong Taylor polynomial near a lr = 0 fails verification: its point inside
    the branch is compared with the recurrence run forward."""
    from dlsym.calculus import _special_values

    real = _special_values._taylor
    monkeypatch.setattr(
        _special_values, "_taylor", lambda *a: real(*a) * (1 + sp.Rational(1, 10**5))
    )
    assert not dlsym.derive(POLYAK, verify=True).verification.passed


def test_a_rate_near_the_open_end_of_the_unit_interval_is_accurate():
    """x_t = r x + c for a rate r in unit_interval: rᵗ x0 + c (1 − rᵗ)/(1 − r) has no
    special value inside (0, 1), but loses ε/(1 − r) near r = 1 (an EMA's β = 1 − 1e-9)."""
    spec = closed_form_spec(
        {"x": "x0"},
        {"x": "r * x + c"},
        {"r": {"domain": "unit_interval"}, "c": {}, "x0": {}},
        T=200,
    )
    fn = dlsym.derive(spec).function("closed_form")
    for r in (1 - 1e-12, 1 - 1e-9, 1 - 1e-6, 0.999, 0.5, 1e-9):
        want = run_forward({"x": 0.3}, lambda t, x, r=r: {"x": r * x + 0.7}, 200)["x"]
        np.testing.assert_allclose(
            fn(r=r, c=0.7, x0=0.3)["x"], want, rtol=1e-10, err_msg=f"r = {r}"
        )


def test_the_kalman_gain_of_a_mobius_variance_is_checked_in_bounded_time():
    """k_t = (p + q)/(p + q + r) reads p_(t−1), whose closed form is a Möbius form of
    nested radicals: rsolve's answer for k was checked by simplify at rationals, without
    bound (past 250 s, a budget error). Each residue is now evaluated to 50 digits."""
    rec = {
        "name": "kalman_gain_state",
        "symbols": {q: {"domain": "positive"} for q in ("q", "r", "p0")},
        "dims": {"T": 6},
        "recurrence": {
            "index": "t",
            "state": {"p": "p0", "k": 0},
            "update": {"p": "(p + q) * r / (p + q + r)", "k": "(p + q) / (p + q + r)"},
        },
        "derive": ["closed_form"],
    }
    d = dlsym.derive(rec, verify=True)
    assert d.verification.passed, d.verification
    got = d.function("closed_form")(q=0.2, r=0.5, p0=1.5)
    p, ps, ks = 1.5, [], []
    for _ in range(6):
        p, k = (p + 0.2) * 0.5 / (p + 0.7), (p + 0.2) / (p + 0.7)
        ps.append(p)
        ks.append(k)
    np.testing.assert_allclose(got["p"], ps, rtol=1e-12)
    np.testing.assert_allclose(got["k"], ks, rtol=1e-12)


def test_the_branch_at_a_special_value_is_verified_there(monkeypatch):
    """x_t = r x + c is where(r == 1, x0 + c t, ...): verification adds a point at r = 1
    (no drawn point hits it), so a wrong limit there fails it (a limit off by one here,
    passed before: only the general form was compared)."""
    rec = {
        "name": "rate_one",
        "symbols": {"r": {}, "c": {}, "x0": {}},
        "dims": {"T": 5},
        "recurrence": {"index": "t", "state": {"x": "x0"}, "update": {"x": "r * x + c"}},
        "derive": ["closed_form"],
    }
    good = dlsym.derive(rec, verify=True)
    # 16 drawn, r = 1 and r = 1 + δ inside the window where its Taylor polynomial is taken
    assert good.verification.passed and good.verification.points == 18
    from dlsym.calculus import _special_values

    real_limit = sp.limit
    monkeypatch.setattr(_special_values.sp, "limit", lambda *a: real_limit(*a) + 1)
    bad = dlsym.derive(rec, verify=True)
    assert "where(r == 1, 1 + x0 + c*t," in bad.result_display("closed_form")["expr"]
    assert not bad.verification.passed


def test_a_rate_near_one_is_accurate_over_a_long_horizon():
    """x_t = r x + c at r = 1 + 1e-8, T = 2000: the branch at r = 1 was the limit
    x0 + c t, taken where |1 − r| <= 1.5e-8 whatever t, off by c t² |1 − r|/2 (1e-5
    relative at t = 2000); it is the Taylor polynomial about r = 1, taken where |1 − r| t
    is small, so the code stays within 1e-12 of the recurrence run forward."""
    d = dlsym.derive(
        {
            "name": "near_one",
            "symbols": {"r": {}, "c": {}, "x0": {}},
            "dims": {"T": 2000},
            "recurrence": {"index": "t", "state": {"x": "x0"}, "update": {"x": "r * x + c"}},
            "derive": ["closed_form"],
        }
    )
    assert d.result_display("closed_form")["expr"] == (
        "x: where(r == 1, x0 + c*t, r**t*x0 + c*(1 - r**t)/(1 - r))"
    )
    fn = d.function("closed_form")
    for r in (1 + 1e-8, 1 - 1e-8, 1 + 2e-8, 1 + 1e-6, 1 + 1e-3):
        x, forward = 0.7, []
        for _ in range(2000):
            x = r * x + 0.3
            forward.append(x)
        np.testing.assert_allclose(fn(r=r, c=0.3, x0=0.7)["x"], forward, rtol=1e-12)


def test_heavy_ball_near_critical_damping_is_accurate_over_a_long_horizon():
    """a = 1, mu = 0.81, lr = 0.01 + δ: the step matrix's discriminant D is ~δ, and the
    closed form took the repeated eigenvalue's limit t (τ/2)^(t−1) inside a window of
    √ε whatever t, off by about t² |D| (7.5e-5 at t = 2000, δ = 1e-10). The window is
    |D| t² <= √ε now. Against the recurrence run forward."""
    text = (CATALOG / "heavy_ball.yaml").read_text().replace("T: 10", "T: 2000")
    fn = dlsym.derive(yaml.safe_load(text)).function("closed_form")
    for delta in (0.0, 1e-12, -1e-10, 1e-9, 1e-8, 1e-6):
        lr, w, v, forward = 0.01 + delta, 1.0, 0.0, []
        for _ in range(2000):
            v, w = 0.81 * v - lr * w, w + 0.81 * v - lr * w
            forward.append(w)
        got = fn(a=1.0, lr=lr, mu=0.81, w0=1.0)["w"]
        np.testing.assert_allclose(got, forward, rtol=1e-8)


def test_an_ar1_variance_has_branches_at_both_unit_rates():
    """P_t = a² P + q divides by (1 − a)(1 + a): both a = 1 (a random walk) and a = −1
    give P0 + q t. The limit at a = 1 was taken of the where already built for a = −1,
    which SymPy could not, and the code was nan at a = 1 with a note; both branches now
    come from the general form and are verified at their values and inside their
    windows (16 + 2 + 2 points)."""
    d = dlsym.derive(
        {
            "name": "ar1",
            "symbols": {"a": {}, "q": {"domain": "nonnegative"}, "P0": {"domain": "nonnegative"}},
            "dims": {"T": 6},
            "recurrence": {"index": "t", "state": {"P": "P0"}, "update": {"P": "a**2 * P + q"}},
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed and d.verification.points == 20
    assert not d.notes
    fn, t = d.function("closed_form"), np.arange(1, 7)
    for a in (1.0, -1.0):
        np.testing.assert_allclose(fn(a=a, q=0.5, P0=2.0)["P"], 2.0 + 0.5 * t, rtol=1e-14)


def test_python_floats_reach_the_code_as_numpys():
    """TD(0) on a two-state cycle at gam = 0 (its two rates equal): where-guarded and right
    with NumPy scalars, but Python floats raised ZeroDivisionError in the general branch
    (both branches are computed, then one chosen); value functions take Python numbers
    as NumPy's."""
    d = dlsym.derive(
        {
            "name": "td_cycle",
            "symbols": {
                "rA": {},
                "rB": {},
                "al": {"domain": "unit_interval"},
                "gam": {"domain": "nonnegative"},
            },
            "dims": {"T": 6},
            "recurrence": {
                "index": "t",
                "state": {"VA": 0, "VB": 0},
                "update": {
                    "VA": "VA + al * (rA + gam * VB - VA)",
                    "VB": "VB + al * (rB + gam * VA - VB)",
                },
            },
            "derive": ["closed_form"],
        }
    )
    got = d.function("closed_form")(rA=1.0, rB=2.0, al=0.5, gam=0)
    np.testing.assert_allclose(got["VA"], 1 - 0.5 ** np.arange(1, 7), rtol=1e-14)


def test_a_nilpotent_step_matrix_gives_no_nan():
    """Nesterov on a quadratic at the exact step lr = 1/a: the step matrix is nilpotent
    (τ = Δ = 0), and Δ s_(t−1) = 0 · k (τ/2)^(k − 1) at k = 0 was 0 · 0⁻¹ = nan, so θ_1
    was nan (exit 0, no note). In the Jordan case Δ s_k is written k (τ/2)^(k + 1)."""
    d = dlsym.derive(
        {
            "name": "nesterov",
            "symbols": {
                "a": {"domain": "positive"},
                "lr": {"domain": "positive"},
                "mom": {"domain": "unit_interval"},
                "th0": {},
            },
            "dims": {"T": 6},
            "recurrence": {
                "index": "t",
                "state": {"v": 0, "th": "th0"},
                "update": {
                    "v": "mom * v - lr * a * (th + mom * v)",
                    "th": "th + mom * v - lr * a * (th + mom * v)",
                },
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed
    got = d.function("closed_form")(a=1.0, lr=1.0, mom=0.5, th0=1.0)
    np.testing.assert_array_equal(got["th"], np.zeros(6))
    np.testing.assert_array_equal(got["v"], [-1, 0, 0, 0, 0, 0])


def test_a_special_branch_has_its_own_special_values():
    """x ← a x, y ← b y + x: the a = b branch, bᵗ (b y₀ + t x₀)/b, is 0/0 at b = 0 as
    well; its limit there depends on t (SymPy's is not found), so the note says where
    the form holds, in that branch only: its code's nan at a = b = 0 was silent."""
    rec = {
        "name": "two_rates",
        "symbols": {"a": {}, "b": {}, "x0": {}, "y0": {}},
        "dims": {"T": 6},
        "recurrence": {
            "index": "t",
            "state": {"x": "x0", "y": "y0"},
            "update": {"x": "a * x", "y": "b * y + x"},
        },
        "derive": ["closed_form"],
    }
    d = dlsym.derive(rec, verify=True)
    assert d.verification.passed, d.verification
    assert any("holds where (a != b or b != 0)" in n for n in d.notes), d.notes
    x, y, want = 0.3, 0.2, []
    for _ in range(6):
        x, y = 0.5 * x, 0.5 * y + x
        want.append(y)
    got = d.function("closed_form")(a=0.5, b=0.5, x0=0.3, y0=0.2)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_the_jacobian_of_a_scalar_state_is_a_product_of_derivatives(backend):
    """A scalar RNN h_t = tanh(w h_{t−1} + x_t): ∂h_T/∂h_0 = ∏ w (1 − h_t²), the
    textbook's vanishing gradient (it was refused: 'derived for a vector state')."""
    rec = {
        "name": "scalar_rnn",
        "symbols": {"w": {}, "h0": {}, "x": {"shape": ["T"]}},
        "dims": {"T": 8},
        "recurrence": {"index": "t", "state": {"h": "h0"}, "update": {"h": "tanh(w * h + x[t])"}},
        "wrt": "h0",
        "derive": ["jacobian"],
    }
    d = dlsym.derive(rec, verify=True)
    assert d.verification.passed, d.verification
    x, w, h, want = np.linspace(-1, 1, 8), 0.9, 0.3, 1.0
    for xt in x:
        h = np.tanh(w * h + xt)
        want *= w * (1 - h**2)
    got = d.function("jacobian", backend=backend)(w=w, h0=0.3, x=x)
    assert float(got) == pytest.approx(want, rel=1e-13)


def test_a_closed_form_divided_by_a_power_is_written_in_the_ratio():
    """A leaky integrator x_t = x_(t−1) + dt(−x_(t−1)/τ + I_t), E I = 1: the closed
    form was x₀(τ − dt)ᵗ/τᵗ + τ(τᵗ − (τ − dt)ᵗ)/τᵗ, whose τᵗ overflows float64 (nan from
    t = 103 at τ = 1000). In the ratio's power ((τ − dt)/τ)ᵗ it holds at T = 200."""
    d = dlsym.derive(
        {
            "name": "leaky",
            "symbols": {
                "I": {"shape": ["T"], "distribution": "uniform(0, 2)"},
                "dt": {"domain": "unit_interval"},
                "tau": {"domain": "positive"},
                "x0": {},
            },
            "dims": {"T": 200},
            "recurrence": {
                "index": "t",
                "state": {"x": "x0"},
                "update": {"x": "x + dt * (-x / tau + I[t])"},
            },
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("closed_form")["states"]["x"]["expr"] == (
        "tau + ((tau - dt)/tau)**t*(x0 - tau)"
    )
    got = d.function("closed_form")(dt=0.1, tau=1000.0, x0=0.5)["x"]
    x, want = 0.5, []
    for _ in range(200):
        x = x + 0.1 * (-x / 1000.0 + 1.0)
        want.append(x)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_linear_recurrences_jacobian_is_a_matrix_power():
    """h_t = W h + U x_t: every step's Jacobian is W, so dh_T/dh_0 = W^T (the T-th power);
    it was left as J_T ... J_1 with J_t = W. Against numpy.linalg.matrix_power."""
    d = dlsym.derive(
        {
            "name": "linear_jac",
            "symbols": {
                "W": {"shape": ["d", "d"]},
                "U": {"shape": ["d", "k"]},
                "h0": {"shape": ["d"]},
                "x": {"shape": ["T", "k"]},
            },
            "dims": {"T": 5, "d": 3, "k": 2},
            "recurrence": {"index": "t", "state": {"h": "h0"}, "update": {"h": "W @ h + U @ x[t]"}},
            "wrt": "h0",
            "derive": ["jacobian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    shown = d.result_display("jacobian")
    assert shown["latex"].endswith(r"= \mathbf{W}^{T}")
    assert shown["expr"].endswith("(the T-th matrix power of W)")
    rng = np.random.default_rng(4)
    W, U, h0, x = (
        rng.normal(size=(3, 3)),
        rng.normal(size=(3, 2)),
        rng.normal(size=3),
        rng.normal(size=(5, 2)),
    )
    np.testing.assert_allclose(
        d.function("jacobian")(W=W, U=U, h0=h0, x=x), np.linalg.matrix_power(W, 5), rtol=1e-12
    )


def test_a_step_of_one_hot_rows_sums_to_one():
    """Y: [T, C] one-hot: the step Y_t is one-hot, and the output layer's gradient is
    Σ_t (softmax(·) − Y_t) h_tᵀ; it kept softmax(·) sum(Y_t) − Y_t. Verification draws
    one-hot rows, where the two agree."""
    d = dlsym.derive(
        {"name": "rnn_onehot",
         "symbols": {"W": {"shape": ["d", "d"]}, "U": {"shape": ["d", "k"]},
                     "V": {"shape": ["C", "d"]}, "h0": {"shape": ["d"]},
                     "x": {"shape": ["T", "k"]}, "Y": {"shape": ["T", "C"], "domain": "onehot"}},
         "dims": {"T": 4, "d": 3, "k": 2, "C": 3},
         "recurrence": {"index": "t", "state": {"h": "h0"},
                        "update": {"h": "tanh(W @ h + U @ x[t])"},
                        "loss": "-sum(Y[t] * log(softmax(V @ h)))"},
         "wrt": ["V", "W"], "derive": ["gradient"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed
    shown = d.result_display("gradient")["wrt"]["V"]["expr"]
    assert "sum(Y" not in shown and "softmax(V @ h[t]) - Y[t]" in shown, shown


FINAL_ONLY = {
    "name": "rnn_last",
    "symbols": {"W": {"shape": ["d", "d"]}, "U": {"shape": ["d", "k"]},
                "V": {"shape": ["m", "d"]}, "h0": {"shape": ["d"]},
                "x": {"shape": ["T", "k"]}, "y": {"shape": ["m"]}, "z": {"shape": ["T", "d"]}},
    "dims": {"T": 5, "d": 3, "k": 2, "m": 2},
    "recurrence": {"index": "t", "state": {"h": "h0"},
                   "update": {"h": "tanh(W @ h + U @ x[t])"},
                   "final": "0.5 * sum((V @ h - y)**2)"},
    "wrt": ["W", "U", "V", "h0"], "derive": ["gradient"],
}  # fmt: skip


@pytest.mark.parametrize("per_step", [False, True])
def test_a_loss_at_the_last_step_only(per_step):
    """recurrence.final: a sequence model's loss on its last state (the seeds' "loss at
    the end only"), alone or beside a per-step loss: δ_T = ∇L(h_T) (+ ∇ℓ_T), δ_t =
    J_{t+1}ᵀ δ_{t+1} (+ ∇ℓ_t), and V's gradient (V h_T − y) h_Tᵀ, read at T only. Against
    jax.grad of a hand-unrolled loop at T = 7 (the function reads T from the arrays)."""
    import jax
    import jax.numpy as jnp

    spec = json.loads(json.dumps(FINAL_ONLY))
    if per_step:
        spec["recurrence"]["loss"] = "0.5 * sum((h - z[t])**2)"
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    shown = d.result_display("gradient")["wrt"]
    assert shown["V"]["expr"] == "outer(V @ h[T] - y, h[T])"
    rng = np.random.default_rng(3)
    T, dd, k, m = 7, 3, 2, 2
    vals = {"W": rng.normal(size=(dd, dd)) / 2, "U": rng.normal(size=(dd, k)),
            "V": rng.normal(size=(m, dd)), "h0": rng.normal(size=dd),
            "x": rng.normal(size=(T, k)), "y": rng.normal(size=m), "z": rng.normal(size=(T, dd))}  # fmt: skip

    def loss(W, U, V, h0):
        h, total = h0, 0.0
        for t in range(T):
            h = jnp.tanh(W @ h + U @ vals["x"][t])
            if per_step:
                total = total + 0.5 * jnp.sum((h - vals["z"][t]) ** 2)
        return total + 0.5 * jnp.sum((V @ h - vals["y"]) ** 2)

    want = jax.grad(loss, argnums=(0, 1, 2, 3))(vals["W"], vals["U"], vals["V"], vals["h0"])
    got = d.function("gradient")(**vals)
    for name, w in zip(["W", "U", "V", "h0"], want):
        np.testing.assert_allclose(got[name], w, rtol=1e-12, atol=1e-14)


def test_a_row_vector_rnn_reads_its_state_in_the_derivative():
    """tanh(h @ W + x[t] @ U + b), as PyTorch's row-vector layers write it: the results
    hold tanh(Wᵀ h + ...) (simplify's order), which the fold by the update as written
    did not find, and 1 − tanh²(b + Wᵀ h_{t−1} + Uᵀ x_t) was written out for 1 − h_t²."""
    d = dlsym.derive(
        {"name": "rowrnn",
         "symbols": {"W": {"shape": ["d", "d"]}, "U": {"shape": ["k", "d"]},
                     "b": {"shape": ["d"]}, "h0": {"shape": ["d"]},
                     "x": {"shape": ["T", "k"]}, "y": {"shape": ["T", "d"]}},
         "dims": {"T": 4, "d": 3, "k": 2},
         "recurrence": {"index": "t", "state": {"h": "h0"},
                        "update": {"h": "tanh(h @ W + x[t] @ U + b)"},
                        "loss": "mean((h - y[t])**2)"},
         "wrt": ["W", "U", "b"], "derive": ["gradient"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed
    shown = d.result_display("gradient")["wrt"]
    assert all("1 - h[t]**2" in p["expr"] and "tanh" not in p["expr"] for p in shown.values())


def test_an_objective_beside_a_recurrence_names_final_and_loss(tmp_path):
    """'objective' is no recurrence key: the error says where a loss goes."""
    spec = json.loads(json.dumps(FINAL_ONLY))
    spec["objective"] = spec["recurrence"].pop("final")
    with pytest.raises(
        SpecError, match="a loss on the states at the last step is recurrence.final"
    ):
        dlsym.derive(spec)


def _kalman_forward(a, h, q, r, p0, T):
    """The scalar Kalman variance run forward at 60 digits."""
    import mpmath

    with mpmath.workdps(60):
        a, h, q, r, p = map(mpmath.mpf, (a, h, q, r, p0))
        out = []
        for _ in range(T):
            predicted = a * a * p + q
            p = predicted * r / (h * h * predicted + r)
            out.append(float(p))
    return np.array(out)


def test_the_mobius_closed_form_is_computed_without_cancellation():
    """A precise sensor (r = 1e-8 q): the shown rate k divides by γ p₊ + δ, which is 0
    in float64, and p_t was nan at exit 0; p₀ = 1e-6 rising to 0.75e6 at a = 2 was 1e-4
    off, a = ±1 with h = 1e-4 3e-3 off (α − δ = r (a² − 1) − h² q cancelled). The code
    takes the rate as 4 det/(S + σ√D)², 1 − κᵗ by expm1, and the fixed point and form
    that do not cancel: every point of a grid over nine decades equals the recurrence
    at 60 digits."""
    import itertools

    catalog = dlsym.derive(CATALOG / "kalman_variance.yaml").function("closed_form")
    gain = {
        "name": "kalman_h",
        "symbols": {
            "a": {},
            "h": {"domain": "positive"},
            "q": {"domain": "positive"},
            "r": {"domain": "positive"},
            "p0": {"domain": "positive"},
        },
        "dims": {"T": 8},
        "recurrence": {
            "index": "t",
            "state": {"p": "p0"},
            "update": {
                "p": "(a**2 * p + q) - (a**2 * p + q)**2 * h**2 / (h**2 * (a**2 * p + q) + r)"
            },
        },
        "derive": ["closed_form"],
    }
    observed = dlsym.derive(gain).function("closed_form")
    worst = 0.0
    grid = itertools.product(
        (0.5, 0.999, 1.0, -1.0, 1.001, 2.0), (1e-14, 1e-3, 1.0, 1e3), (1e-8, 1.0, 1e6), (1e-6, 1e6)
    )
    for a, q, r, p0 in grid:
        want = _kalman_forward(a, 1.0, q, r, p0, 8)
        got = catalog(a=a, q=q, r=r, p0=p0)["p"]
        worst = max(worst, float(np.max(np.abs(got - want) / want)))
        for h in (1e-4, 100.0):
            want = _kalman_forward(a, h, q, r, p0, 8)
            got = observed(a=a, h=h, q=q, r=r, p0=p0)["p"]
            worst = max(worst, float(np.max(np.abs(got - want) / want)))
    assert worst < 1e-7, worst
    # the finite-horizon LQR cost-to-go q + a² p − a² b² p²/(r + b² p): at a = 0 the map
    # is the constant q (det = 0, κ = 0), which the shown form made 0/0 (nan)
    lqr = {
        "name": "lqr_scalar",
        "symbols": {
            "a": {},
            "b": {"domain": "positive"},
            "q": {"domain": "positive"},
            "r": {"domain": "positive"},
            "pT": {"domain": "nonnegative"},
        },
        "dims": {"T": 5},
        "recurrence": {
            "index": "t",
            "state": {"p": "pT"},
            "update": {"p": "q + a**2 * p - a**2 * b**2 * p**2 / (r + b**2 * p)"},
        },
        "derive": ["closed_form"],
    }
    cost = dlsym.derive(lqr).function("closed_form")
    np.testing.assert_allclose(cost(a=0.0, b=1.0, q=1.0, r=1e8, pT=0.0)["p"], [1.0] * 5)
    np.testing.assert_allclose(cost(a=0.0, b=1e-3, q=1.0, r=1.0, pT=1.0)["p"], [1.0] * 5)


def test_ar1_variance_from_zero_has_its_limit_at_a_minus_one():
    """s_t = a² s + q from 0 is q (1 − aᵗ)(1 + aᵗ)/((1 − a)(1 + a)) as rsolve factors it,
    whose limit at a = −1 SymPy did not find ("oo·sign(...)"): a note, and nan there.
    With the numerator multiplied out it is q t, as from a symbolic s0."""
    d = dlsym.derive(
        {
            "name": "ar1",
            "symbols": {"a": {}, "q": {"domain": "positive"}},
            "dims": {"T": 6},
            "recurrence": {"index": "t", "state": {"s": 0}, "update": {"s": "a**2 * s + q"}},
            "derive": ["closed_form"],
        },
        verify=True,
    )
    assert d.verification.passed and not d.notes
    fn = d.function("closed_form")
    for a in (-1.0, 1.0, -1.0 + 1e-7, 0.5):
        want = run_forward({"s": 0.0}, lambda t, s, a=a: {"s": a * a * s + 0.3}, 6)["s"]
        np.testing.assert_allclose(fn(a=a, q=0.3)["s"], want, rtol=1e-12)


def test_a_triple_coincidence_of_rates_takes_the_limit_not_a_taylor_polynomial_with_poles():
    """Three cascaded EMAs: z_t is a divided difference [a, b, c] of powers, with
    (a − b)(a − c)(b − c) in its denominators. The Taylor polynomial about a = c had
    coefficients that divide by (b − c)², so at a = b = c (three identical smoothing
    stages) the code was 0 · (0/0) = nan (c46s F9). A Taylor polynomial with poles
    inside the domains is not taken: the limit, with its own branches, is."""
    from types import SimpleNamespace

    from dlsym.calculus._special_values import at_special_values
    from dlsym.codegen import _compile as codegen

    a, b, c = sp.symbols("a b c", positive=True)
    t = sp.Symbol("t", integer=True, positive=True)
    spec = SimpleNamespace(
        symbols=[
            SimpleNamespace(symbol=s, name=s.name, domain="unit_interval", shape=())
            for s in (a, b, c)
        ]
    )
    dd = ((a**t - c**t) / (a - c) - (b**t - c**t) / (b - c)) / (a - b)
    value, caveats = at_special_values(spec, dd, t)
    assert caveats == ()
    fn = codegen.lambdify([a, b, c, t], [value], "numpy")
    for rates in (
        (0.9, 0.9, 0.9),
        (0.5, 0.5, 0.5),
        (0.9, 0.5, 0.9),
        (0.9, 0.9, 0.5),
        (0.3, 0.6, 0.9),
    ):
        for T in (2, 5, 9):
            # Σ aⁱ bʲ cᵏ over i + j + k = T − 2
            want = sum(
                rates[0] ** i * rates[1] ** j * rates[2] ** (T - 2 - i - j)
                for i in range(T - 1)
                for j in range(T - 1 - i)
            )
            got = fn(*map(np.float64, rates), np.float64(T))[0]
            assert got == pytest.approx(want, rel=1e-12), (rates, T)
