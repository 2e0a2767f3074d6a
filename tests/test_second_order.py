"""Stationary points, Newton steps and Taylor models (the contract's "Stationary points,
Taylor expansions, Newton steps"): each against an independent NumPy truth, each
verification able to fail, and the cases without a closed form said so."""

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from conftest import ROOT

import dlsym
from dlsym._cli import main
from dlsym.calculus import _curvature
from dlsym.codegen._jax import jax_x64

RIDGE = {
    "name": "ridge_second_order",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"]},
        "w": {"shape": ["n"]},
        "lam": {"domain": "positive"},
    },
    "dims": {"m": 5, "n": 3},
    "objective": "sum((X @ w - y)**2) + lam * sum(w**2)",
    "wrt": "w",
    "derive": ["gradient", "hessian", "newton_step", "taylor", "stationary"],
}


@pytest.fixture(scope="module")
def ridge():
    return dlsym.derive(RIDGE)


def _point(rng, m=5, n=3):
    return {
        "X": rng.normal(size=(m, n)),
        "y": rng.normal(size=m),
        "w": rng.normal(size=n),
        "lam": 0.7,
    }


def test_ridge_stationary_point_and_newton_step_equal_numpy(ridge):
    assert ridge.result_display("stationary")["expr"] == "inv(lam*eye(n) + X.T @ X) @ X.T @ y"
    rng = np.random.default_rng(1)
    p = _point(rng)
    X, y, w, lam = p["X"], p["y"], p["w"], p["lam"]
    H = 2 * X.T @ X + 2 * lam * np.eye(3)
    g = 2 * X.T @ (X @ w - y) + 2 * lam * w
    np.testing.assert_allclose(
        ridge.function("stationary")(**p), np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ y)
    )
    np.testing.assert_allclose(ridge.function("newton_step")(**p), -np.linalg.solve(H, g))
    # a quadratic: one Newton step from anywhere lands on the stationary point
    np.testing.assert_allclose(
        w + ridge.function("newton_step")(**p), ridge.function("stationary")(**p)
    )


def test_the_taylor_model_of_a_quadratic_is_exact(ridge):
    """A quadratic equals its second-order model: the model at any direction is the
    objective at w + delta, computed here in NumPy."""
    model = ridge.taylor_function("w")
    rng = np.random.default_rng(2)
    p = _point(rng)
    delta = rng.normal(size=3)
    X, y, w, lam = p["X"], p["y"], p["w"], p["lam"]
    want = np.sum((X @ (w + delta) - y) ** 2) + lam * np.sum((w + delta) ** 2)
    got = model(p["X"], p["y"], p["w"], p["lam"], delta)
    np.testing.assert_allclose(float(got), want, rtol=1e-12)
    with pytest.raises(KeyError, match="model in the direction"):
        ridge.function("taylor")
    assert "taylor" not in ridge.value_kinds and "stationary" in ridge.value_kinds


def test_second_order_results_verify_and_name_their_references(ridge):
    report = ridge.verify(points=8)
    assert report.passed, report
    refs = {c.kind: c.reference for c in report.checks}
    assert refs["newton_step"] == "solve(jax.hessian, -jax.grad)"
    assert refs["stationary"] == "a Newton step by jax.hessian from each point"
    assert refs["taylor"] == "jax.jvp to second order"


@pytest.mark.parametrize("kind", ["newton_step", "stationary", "taylor"])
def test_a_wrong_second_order_result_fails_verification(kind):
    """Each check can fail: the result with one term's sign changed (a missing lam in
    the Newton step, a stationary point off by X^T y / 2, a model without curvature)."""
    d = dlsym.derive(RIDGE)
    r = d.results[kind]["w"]
    lam = d.spec.symbol("lam").symbol
    wrong = {
        "newton_step": r.expr.xreplace({lam: 2 * lam}),
        "stationary": r.expr * sp.Rational(3, 2),
        "taylor": r.expr.xreplace({lam: 0}),
    }[kind]
    d.results[kind]["w"] = dataclasses.replace(r, expr=wrong)
    report = d.verify(points=4)
    assert not report.passed
    assert [c.kind for c in report.checks if not c.passed] == [kind]


def test_the_kalman_gain_is_the_stationary_point_of_the_joseph_covariance():
    d = dlsym.derive(ROOT / "derivations" / "kalman_gain.yaml")
    assert d.result_display("stationary")["expr"] == "P @ H.T @ inv(R + H @ P @ H.T)"
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3))
    B = rng.normal(size=(2, 2))
    P, R = A @ A.T + np.eye(3), B @ B.T + np.eye(2)
    H, K = rng.normal(size=(2, 3)), rng.normal(size=(3, 2))
    want = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
    np.testing.assert_allclose(d.function("stationary")(P=P, R=R, H=H, K=K), want, rtol=1e-10)
    # a function of the other symbols (the contract): K may be left out, in JAX too
    for backend in ("numpy", "jax"):
        got = d.function("stationary", backend=backend)(P=P, R=R, H=H)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)
    with pytest.raises(TypeError, match="missing argument"):
        d.function("stationary")(P=P, H=H)  # R is not the wrt symbol
    assert d.verify(points=4).passed


def test_a_nonlinear_gradient_has_no_closed_form_and_says_why():
    spec = ROOT / "derivations" / "logistic_regression.yaml"
    import yaml

    data = yaml.safe_load(spec.read_text())
    data["derive"] = ["gradient", "newton_step", "stationary"]
    d = dlsym.derive(data)
    (note,) = [n for n in d.notes if "stationary" in n]
    assert "no closed form: the gradient is not affine in w" in note
    with pytest.raises(ValueError, match="no function for 'stationary': w: no closed form"):
        d.function("stationary")
    report = d.verify(points=4)
    assert report.passed and "stationary" not in {c.kind for c in report.checks}
    assert "newton_step" in {c.kind for c in report.checks}
    shown = d.result_display("stationary")
    assert shown["expr"].startswith("no closed form") and r"\text{no closed form}" in shown["latex"]


def test_scalar_and_several_wrt_symbols():
    d = dlsym.derive(
        {
            "name": "scalars",
            "symbols": {"x": {}, "a": {}, "b": {}, "v": {"shape": ["n"]}, "c": {"shape": ["n"]}},
            "dims": {"n": 2},
            "objective": "(x - a)**2 + b*x + sum((v - c)**2)",
            "wrt": ["x", "v"],
            "derive": ["stationary"],
        }
    )
    got = d.function("stationary")(x=0.3, a=1.5, b=0.4, v=np.zeros(2), c=np.array([1.0, -2.0]))
    np.testing.assert_allclose(got["x"], 1.5 - 0.4 / 2)
    np.testing.assert_allclose(got["v"], [1.0, -2.0])
    assert d.verify(points=4).passed
    one = dlsym.derive(
        {
            "name": "scalar",
            "symbols": {"x": {}, "a": {}},
            "objective": "exp(x) - a*x",
            "wrt": "x",
            "derive": ["newton_step", "taylor"],
        }
    )
    np.testing.assert_allclose(
        one.function("newton_step")(x=0.2, a=3.0), -(np.exp(0.2) - 3) / np.exp(0.2)
    )
    assert one.verify(points=4).passed


def test_coupled_conditions_have_no_closed_form():
    """A scale b times a linear model: w's condition holds b, b's holds w, and the
    gradients are not jointly affine (b w is a product): neither is solved in turn nor
    as one stacked system (the intercept form, X w + b, is: see below)."""
    d = dlsym.derive(
        {
            "name": "scale",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"]},
                "w": {"shape": ["n"]},
                "b": {},
            },
            "dims": {"m": 4, "n": 2},
            "objective": "sum((b * (X @ w) - y)**2)",
            "wrt": ["w", "b"],
            "derive": ["stationary"],
        }
    )
    assert all("couples it with" in n for n in d.notes) and len(d.notes) == 2
    # the joint Hessian both attempts ask for is formed and shown once
    blocks = [s.title for s in d.steps if s.title.startswith("Hessian block")]
    assert blocks == ["Hessian block with respect to w and b"], blocks


def tanh_in_a_matrix(kind: str) -> dict:
    """A spec whose wrt symbol W is a matrix, so its Hessian is an action on Δ."""
    return {
        "name": f"matrix_{kind}",
        "symbols": {"W": {"shape": ["n", "k"]}, "X": {"shape": ["m", "n"]}},
        "dims": {"m": 4, "n": 3, "k": 2},
        "objective": "sum(tanh(X @ W)**2)",
        "wrt": "W",
        "derive": [kind],
    }


def test_a_matrix_taylor_model_uses_the_hessian_action():
    d = dlsym.derive(tanh_in_a_matrix("taylor"))
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "wrt, derive, message",
    [
        # its action 2 (Δ b) bᵀ is Δ (2 b bᵀ), and b bᵀ has rank 1: singular
        (
            "W",
            "[newton_step]",
            "solves H[Δ] = −G, and the 2×2 matrix it would invert has rank at most 1",
        ),
        ("[W, b]", "[newton_step]", "the joint Newton step with a matrix or tensor"),
    ],
)
def test_a_newton_step_not_derived_says_why(tmp_path, wrt, derive, message):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: s\nsymbols:\n  W: {shape: [n, n]}\n  b: {shape: [n]}\ndims: {n: 2}\n"
        f"objective: sum((W @ b)**2)\nwrt: {wrt}\nderive: {derive}\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    step = json.loads(result.stdout)["results"]["newton_step"]
    parts = step["wrt"].values() if "wrt" in step else [step]
    assert all(p["method"].startswith("no closed form: ") for p in parts)
    assert all(message in p["method"] for p in parts), step


def test_dlsym_codegen_writes_the_second_order_functions(tmp_path):
    import importlib.util
    import json

    spec = tmp_path / "ridge.yaml"
    spec.write_text(json.dumps(RIDGE))  # JSON is YAML
    out = tmp_path / "ridge_code.py"
    result = CliRunner().invoke(main, ["codegen", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    loaded = importlib.util.spec_from_file_location("ridge_code", out)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    rng = np.random.default_rng(4)
    p = _point(rng)
    X, y, w, lam = p["X"], p["y"], p["w"], p["lam"]
    delta = rng.normal(size=3)
    np.testing.assert_allclose(
        module.stationary_w(X, y, w, lam), np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ y)
    )
    want = np.sum((X @ (w + delta) - y) ** 2) + lam * np.sum((w + delta) ** 2)
    np.testing.assert_allclose(module.taylor_w(X, y, w, lam, delta), want, rtol=1e-12)
    np.testing.assert_allclose(
        w + module.newton_step_w(X, y, w, lam), module.stationary_w(X, y, w, lam)
    )


def test_codegen_says_which_stationary_point_has_no_closed_form(tmp_path):
    import yaml

    data = yaml.safe_load((ROOT / "derivations" / "logistic_regression.yaml").read_text())
    data["derive"] = ["stationary"]
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["codegen", str(spec)])
    assert result.exit_code == 0, result.output
    assert "stationary_w: not generated (no closed form: the gradient is not affine in w" in (
        result.stdout
    )
    assert "def stationary_w" not in result.stdout and "\\nabla" not in result.stdout


@pytest.mark.latex
def test_the_steps_compile_with_and_without_a_closed_form(tmp_path, pdflatex):
    """The justifications' math and the notes go through the same escaping as every
    other step: a stationary point without a closed form (a name with an underscore in
    the reason) and a Taylor model both compile."""
    from conftest import compile_latex

    d = dlsym.derive(
        {
            "name": "no_closed_form",
            "symbols": {"w_1": {"shape": ["n"]}, "X": {"shape": ["m", "n"]}},
            "dims": {"m": 3, "n": 2},
            "objective": "sum(log(1 + exp(X @ w_1)))",
            "wrt": "w_1",
            "derive": ["newton_step", "taylor", "stationary"],
        }
    )
    tex = d.latex(standalone=True)
    assert r"\text{no closed form}" in tex and r"affine in w\_1" in tex
    assert compile_latex(pdflatex, tmp_path, "second_order", tex).stat().st_size > 1000
    # a root with its condition, a row m > 0 under it
    tex = dlsym.derive(SOFTPLUS_TILT).latex(standalone=True)
    assert r"\frac{3 e^{- b}}{10 a - 3} &> 0" in tex
    assert compile_latex(pdflatex, tmp_path, "conditional", tex).stat().st_size > 1000


def test_logistic_regression_is_proven_convex():
    d = dlsym.derive(ROOT / "derivations" / "logistic_convexity.yaml")
    shown = d.result_display("convexity")
    assert shown["verdict"] == "convex" and shown["expr"] == "convex"
    assert "diag(d) A (d ≥ 0)" in shown["reason"] and shown["latex"].endswith(r"\succeq 0")
    report = d.verify(points=8)
    assert report.passed
    assert "eigvalsh(jax.hessian) >= 0 at the drawn points" in {c.reference for c in report.checks}
    with pytest.raises(KeyError, match="a verdict"):
        d.function("convexity")


TANH = {
    "name": "tanh_regression",
    "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}, "w": {"shape": ["n"]}},
    "dims": {"m": 5, "n": 3},
    "objective": "sum((tanh(X @ w) - y)**2)",
    "wrt": "w",
    "derive": ["convexity"],
}


def test_a_nonconvex_objective_gets_a_counterexample_checked_by_finite_differences():
    d = dlsym.derive(TANH)
    v = d.results["convexity"]["w"].verdict
    assert v.convex is False and v.eigenvalue < 0
    X, y, w = (np.asarray(v.point[n]) for n in ("X", "y", "w"))

    def grad(w):  # by hand: 2 X^T ((tanh(X w) - y) (1 - tanh^2(X w)))
        t = np.tanh(X @ w)
        return 2 * X.T @ ((t - y) * (1 - t**2))

    eps = 1e-6
    H = np.stack([(grad(w + eps * e) - grad(w - eps * e)) / (2 * eps) for e in np.eye(3)])
    assert np.linalg.eigvalsh((H + H.T) / 2)[0] == pytest.approx(v.eigenvalue, rel=1e-5)
    shown = d.result_display("convexity")
    assert shown["verdict"] == "not convex" and shown["eigenvalue"] == v.eigenvalue
    assert np.asarray(shown["counterexample"]["X"]).shape == (5, 3)
    assert d.verify(points=4).passed


@pytest.mark.parametrize("wrong", ["convex", "eigenvalue"])
def test_a_wrong_convexity_verdict_fails_verification(wrong):
    d = dlsym.derive(TANH)
    r = d.results["convexity"]["w"]
    v = r.verdict
    bad = (
        dataclasses.replace(v, convex=True)
        if wrong == "convex"
        else dataclasses.replace(v, eigenvalue=-v.eigenvalue)
    )
    d.results["convexity"]["w"] = dataclasses.replace(r, verdict=bad)
    report = d.verify(points=8)
    assert not report.passed


HUBER = {
    "name": "huber",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"]},
        "w": {"shape": ["n"]},
        "delta": {"domain": "positive"},
    },
    "dims": {"m": 6, "n": 2},
    "define": {"r": "X @ w - y"},
    "wrt": "w",
    "derive": ["convexity"],
}


@pytest.mark.parametrize(
    "objective",
    [
        "mean(where(abs(r) <= delta, 0.5 * r**2, delta * (abs(r) - 0.5 * delta)))",
        "sum(where(abs(r) > 1, abs(r) - 0.5, 0.5 * r**2))",  # the mask the other way
        "sum(where(r >= 0, r, 0.1 * r))",  # a leaky ReLU of a residual
    ],
)
def test_a_piecewise_loss_of_a_residual_is_proven_convex(objective):
    d = dlsym.derive({**HUBER, "objective": objective})
    shown = d.result_display("convexity")
    assert shown["verdict"] == "convex", shown["reason"]
    assert "a convex piecewise function of an affine function" in shown["reason"]
    report = d.verify(points=16)
    assert report.passed
    assert any(c.reference.startswith("the chords of f") for c in report.checks)


@pytest.mark.parametrize(
    "objective",
    [
        "sum(where(abs(r) <= 1, 0.5 * r**2, abs(r)))",  # jumps from 1/2 to 1 at |r| = 1
        "sum(where(abs(r) <= 1, r**2, 0.5 * abs(r) + 0.5))",  # slope drops from 2 to 1/2
        "sum(where(r >= 0, 0.1 * r, r))",  # concave
    ],
)
def test_a_nonconvex_piecewise_loss_is_not_proven_and_a_false_proof_fails(objective, monkeypatch):
    d = dlsym.derive({**HUBER, "objective": objective})
    v = d.results["convexity"]["w"].verdict
    assert v.convex is False and v.gap > 0  # a chord below the graph, found
    assert d.verify(points=16).passed
    # the Hessian of each piece is PSD: a proof through the kinks claimed anyway is
    # caught by the chords, not by the eigenvalues
    monkeypatch.setattr(_curvature, "convex_piecewise", lambda h, t, spec: True)
    wrong = dlsym.derive({**HUBER, "objective": objective})
    assert wrong.results["convexity"]["w"].verdict.convex is True
    report = wrong.verify(points=16)
    assert not report.passed
    failed = {c.reference for c in report.checks if not c.passed}
    assert all(r.startswith("the chords of f") for r in failed), failed


@pytest.mark.parametrize(
    "objective",
    [
        # labels picked by take_along_axis: the counterexample search drew them as
        # floats (x 1.0), and jax's take_along_axis refused them (exit 3)
        "-mean(take_along_axis(log_softmax(X @ W, axis=1), y[:, None], 1))",
        "-mean(sum(onehot(y, k) * log_softmax(X @ W, axis=1), axis=1))",
        # log(softmax(.)), as PyTorch's tutorials write it: undecided in round 43
        "-mean(sum(onehot(y, k) * log(softmax(X @ W, axis=1)), axis=1))",
    ],
)
def test_softmax_cross_entropy_with_labels_is_proven_convex(objective):
    d = dlsym.derive(
        {
            "name": "softmax_ce",
            "symbols": {
                "X": {"shape": ["B", "n"]},
                "W": {"shape": ["n", "k"]},
                "y": {"shape": ["B"], "domain": {"index": "k"}},
            },
            "dims": {"B": 5, "n": 2, "k": 3},
            "objective": objective,
            "wrt": "W",
            "derive": ["convexity"],
        }
    )
    assert d.result_display("convexity")["verdict"] == "convex"
    assert d.verify(points=8).passed


def test_the_counterexample_search_keeps_labels_integers():
    # no proof for a tanh layer: the Hessian and chord searches run with the labels
    d = dlsym.derive(
        {
            "name": "tanh_ce",
            "symbols": {
                "X": {"shape": ["B", "n"]},
                "W": {"shape": ["n", "k"]},
                "y": {"shape": ["B"], "domain": {"index": "k"}},
            },
            "dims": {"B": 5, "n": 2, "k": 3},
            "objective": "-mean(take_along_axis(log_softmax(3 * tanh(X @ W), axis=1), "
            "y[:, None], 1))",
            "wrt": "W",
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"]["W"].verdict
    assert v.convex is False and np.asarray(v.point["y"]).dtype.kind == "i"
    assert d.verify(points=8).passed


def test_the_logistic_loss_written_with_log_and_exp_is_softplus_and_convex():
    d = dlsym.derive(
        {
            "name": "logistic_pm",
            "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}, "w": {"shape": ["n"]}},
            "dims": {"m": 6, "n": 3},
            "objective": "sum(log(1 + exp(-y * (X @ w))))",
            "wrt": "w",
            "derive": ["convexity"],
        }
    )
    shown = d.result_display("convexity")
    assert shown["verdict"] == "convex" and "softplus of affine functions" in shown["reason"]
    assert d.verify(points=8).passed


def test_a_convex_objective_without_a_proof_is_undecided():
    """log(1 + sum(exp(z))) is convex (log-sum-exp of (0, z)) but not a sum of the PSD
    terms the proof knows, nor convex by the composition rules (log is concave, of a
    convex sum; log(sum(exp(z))) alone is read as logsumexp): no proof, no
    counterexample, said so."""
    d = dlsym.derive(
        {
            "name": "lse",
            "symbols": {"z": {"shape": ["n"]}},
            "dims": {"n": 4},
            "objective": "log(1 + sum(exp(z)))",
            "wrt": "z",
            "derive": ["convexity"],
        }
    )
    shown = d.result_display("convexity")
    assert shown["verdict"] == "undecided" and "convexity is undecided" in shown["reason"]
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "objective, verdict",
    [
        # f'' = 1.2 − sin x: sin is within [−1, 1] whatever x (undecided in round 32)
        ("sin(x) + 0.6 * x**2", "convex"),
        ("cos(x) + x**2", "convex"),  # 2 − cos x
        ("sin(x) + 0.4 * x**2", "not convex"),  # 0.8 − sin x < 0 where sin x > 0.8
    ],
)
def test_a_bounded_function_in_the_hessian_is_read_by_its_range(objective, verdict):
    assert verified_verdict({"x": {}}, objective, "x") == verdict


def verified_verdict(symbols, objective, wrt, dims=None) -> str:
    """The convexity verdict of ``objective`` in ``wrt``, its verification passed."""
    d = dlsym.derive(
        {
            "name": "verdict",
            "symbols": symbols,
            "dims": dims or {},
            "objective": objective,
            "wrt": wrt,
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    return d.result_display("convexity")["verdict"]


@pytest.mark.parametrize(
    "shape, objective, verdict",
    [
        # f'' = eˣ − x >= 1 by eˣ >= 1 + x (undecided in round 32)
        ([], "exp(x) - x**3 / 6", "convex"),
        (["n"], "sum(exp(x) - x**3 / 6)", "convex"),  # diag(eˣ) − diag(x), merged
        ([], "exp(x) - x**3", "not convex"),  # eˣ − 6x < 0 at x = 1
        (["n"], "sum(exp(x) - x**3)", "not convex"),
        ([], "exp(x) - x**3 / 6 - x**2", "not convex"),  # eˣ − x − 2 < 0 at x = 0
    ],
)
def test_an_exponential_in_the_hessian_is_bounded_by_its_tangent(shape, objective, verdict):
    assert verified_verdict({"x": {"shape": shape}}, objective, "x", {"n": 3}) == verdict


@pytest.mark.parametrize(
    "symbols, objective, verdict",
    [
        # log cosh regression: 'not convex' at a far point where sech² underflows, its
        # eigenvalue -3.7e-16 round-off (round 33); log Σ cᵢ e^(uᵢ) is log-sum-exp
        (
            {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}},
            "sum(log(exp(X @ w - y) + exp(y - X @ w)))",
            "convex",
        ),
        ({}, "sum(log(exp(w) + exp(-w)))", "convex"),
        ({}, "sum(log(2 + exp(w) + 3 * exp(-2 * w)))", "convex"),
        ({}, "sum(log(exp(w) - exp(-w) + 3))", "not convex"),  # a negative weight
        # A Aᵀ is a Gram matrix as Aᵀ A is (undecided in round 33)
        ({"A": {"shape": ["n", "n"]}}, "w @ A @ A.T @ w", "convex"),
        ({"A": {"shape": ["n", "n"]}}, "w @ A @ A @ w", "not convex"),
        # cosh w − w²/2: diag(e^w/2 + e^(−w)/2 − 1), each exponential by its tangent
        ({}, "sum(exp(w) / 2 + exp(-w) / 2 - 0.5 * w**2)", "convex"),
        ({}, "sum(exp(w) / 2 + exp(-w) / 2 - w**2)", "not convex"),
        # |w|³, which SymPy writes w² |w|: a power >= 1 of a nonnegative convex function
        ({}, "sum(abs(w)**3)", "convex"),
    ],
)
def test_curvature_that_round_33_left_undecided_or_got_wrong(symbols, objective, verdict):
    symbols = {"w": {"shape": ["n"]}, **symbols}
    assert verified_verdict(symbols, objective, "w", {"n": 2, "m": 4}) == verdict


def test_a_second_difference_of_round_off_is_no_bend():
    """Far out on the log-cosh regression, sech² underflows and f is linear up to the
    rounding of its values (hundreds): the second difference along the eigenvector of
    λ = -3.7e-16 was -1e-13 < λ h²/2 and confirmed a false counterexample. A true bend
    (cos at 0) is still one."""
    from dlsym.sections.calculus._verify import bends_down

    jax = jax_x64()
    X = np.array([[0.527, -1.076], [1.040, -1.078], [-0.285, -1.506], [-0.977, 1.386]])
    y = np.array([-0.239, 0.532, 0.708, -1.114])

    def logcosh(w):
        r = X @ w - y
        return jax.numpy.sum(jax.numpy.log(jax.numpy.exp(r) + jax.numpy.exp(-r)))

    far = {"w": np.array([-2.111, 87.715])}
    assert not bends_down(jax, logcosh, (0,), ["w"], far)
    bend = {"w": np.array([0.0, 0.1])}
    assert bends_down(jax, lambda w: jax.numpy.sum(jax.numpy.cos(w)), (0,), ["w"], bend)
    # a narrow bend: x⁴ − 1e-8 x² bends down for |x| < 4e-5 only, and a step of 1e-3
    # reached across it (a correct 'not convex' exited 1, round 34)
    narrow = {"x": np.array(-2.93e-5)}
    assert bends_down(jax, lambda x: x**4 - 1e-8 * x**2, (0,), ["x"], narrow)
    assert not bends_down(jax, lambda x: x**4 + 1e-8 * x**2, (0,), ["x"], narrow)


def test_a_prior_weighted_discriminator_is_convex_with_no_conditions():
    """−(π p log d + (1 − π) q log(1 − d)), π a class prior in (0, 1): its Hessian
    π p/d² + (1 − π) q/(1 − d)² is >= 0 at π = 0 and 1, so everywhere (it was
    'undecided'), and D* = π p/(π p + (1 − π) q) is inside (0, 1) with no condition
    shown (it came with two): round 32's seed-topic probe."""
    d = dlsym.derive(
        {
            "name": "prior",
            "symbols": {
                "pi": {"domain": "unit_interval"},
                "p": {"domain": "positive"},
                "q": {"domain": "positive"},
                "d": {"domain": "unit_interval"},
            },
            "objective": "-(pi * p * log(d) + (1 - pi) * q * log(1 - d))",
            "wrt": "d",
            "derive": ["stationary", "convexity"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.results["convexity"]["d"].verdict.convex is True
    assert not d.results["stationary"]["d"].exists_where
    at = {"pi": 0.3, "p": 2.0, "q": 0.5}
    want = 0.3 * 2.0 / (0.3 * 2.0 + 0.7 * 0.5)
    assert float(d.function("stationary")(**at, d=0.5)) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("domain, shown", [("unit_interval", False), ("real", True)])
def test_a_root_whose_log_argument_is_a_ratio_of_two_negatives_has_no_condition(domain, shown):
    """softplus(a x + b) − c a x is stationary at x* = log(−c e^(−b)/(c − 1))/a. With c
    in (0, 1), −c e^(−b) and c − 1 are both negative: the log's argument is positive,
    and the condition "> 0" that was shown always holds. With a real c it is kept."""
    d = dlsym.derive(
        {
            "name": "softplus_root",
            "symbols": {"x": {}, "a": {"domain": "positive"}, "b": {}, "c": {"domain": domain}},
            "objective": "softplus(a * x + b) - c * a * x",
            "wrt": "x",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert bool(d.results["stationary"]["x"].exists_where) is shown
    if not shown:
        got = d.function("stationary")(a=2.0, b=0.5, c=0.25)
        np.testing.assert_allclose(got, (np.log(0.25 / 0.75) - 0.5) / 2.0, rtol=1e-14)


def test_the_optimal_gan_discriminator_is_solved_entry_by_entry():
    d = dlsym.derive(ROOT / "derivations" / "gan_optimal_discriminator.yaml")
    assert d.result_display("stationary")["expr"] == "p/(p + q)"
    assert d.results["stationary"]["D"].method == "entrywise root" and not d.notes
    p, q = np.array([0.5, 1.0, 2.0]), np.array([1.5, 1.0, 0.25])
    np.testing.assert_allclose(d.function("stationary")(p=p, q=q, D=np.full(3, 0.5)), p / (p + q))
    report = d.verify(points=8)
    assert report.passed and any(
        c.reference == "a Newton step by jax.hessian from the stationary point"
        for c in report.checks
    )
    # the check can fail: D* = q / (p + q) is not a root
    r = d.results["stationary"]["D"]
    P, Q = (d.spec.symbol(n).symbol for n in ("p", "q"))
    d.results["stationary"]["D"] = dataclasses.replace(r, expr=r.expr.xreplace({P: Q, Q: P}))
    d._functions.clear()
    assert not d.verify(points=8).passed


def test_the_gaussian_covariance_mle_is_found_through_the_inverse():
    d = dlsym.derive(ROOT / "derivations" / "gaussian_covariance_mle.yaml")
    assert d.result_display("stationary")["expr"] == "(X.T @ X)/n"
    assert d.results["stationary"]["C"].method == "root through the inverse"
    X = np.random.default_rng(1).standard_normal((6, 3))
    np.testing.assert_allclose(d.function("stationary")(X=X, C=np.eye(3)), X.T @ X / 6)
    report = d.verify(points=8)
    assert report.passed
    assert any(c.reference.startswith("a Newton step by jax.hessian") for c in report.checks)
    # the check can fail: X^T X / (n + 1) is not a root
    r = d.results["stationary"]["C"]
    n = d.spec.dim_symbols["n"]
    d.results["stationary"]["C"] = dataclasses.replace(r, expr=r.expr * n / (n + 1))
    d._functions.clear()
    assert not d.verify(points=8).passed


def test_a_precision_matrix_is_the_inverse_of_the_scatter():
    d = dlsym.derive(
        {
            "name": "precision",
            "symbols": {
                "L": {"shape": ["k", "k"], "domain": "spd"},
                "S": {"shape": ["k", "k"], "domain": "spd"},
            },
            "dims": {"k": 3, "n": 5},
            "objective": "-n/2 * logdet(L) + trace(L @ S)/2",
            "wrt": "L",
            "derive": ["stationary"],
        }
    )
    assert d.result_display("stationary")["expr"] == "n*inv(S)"
    assert d.verify(points=8).passed


@pytest.mark.parametrize(
    "objective, why",
    [
        # each entry's equation x**3 - a x = 0 has three roots
        ("sum(x**4 / 4 - a * x**2 / 2)", "each entry's equation has 3 solutions"),
        # sign(x), the derivative of |x|, has derivative 0 almost everywhere: the Hessian
        # says "affine" and x* = z would follow, which is wrong (soft thresholding)
        ("sum((x - a)**2) / 2 + lam * sum(abs(x))", "the gradient has kinks in x"),
    ],
)
def test_what_has_no_closed_form_says_why(objective, why):
    d = dlsym.derive(
        {
            "name": "no_closed_form",
            "symbols": {
                "x": {"shape": ["n"]},
                "a": {"shape": ["n"]},
                "lam": {"domain": "positive"},
            },
            "dims": {"n": 3},
            "objective": objective,
            "wrt": "x",
            "derive": ["stationary"],
        }
    )
    (note,) = d.notes
    assert why in note


def test_least_squares_with_fewer_rows_than_weights_has_no_unique_stationary_point():
    # X 2×3: XᵀX has rank 2 < 3, so (XᵀX)⁻¹Xᵀy would be a wrong closed form (numpy's
    # inverse of a singular matrix is noise); the minimisers are a line, not a point
    wide = {**RIDGE, "dims": {"m": 2, "n": 3}, "objective": "sum((X @ w - y)**2)"}
    d = dlsym.derive({**wide, "derive": ["gradient", "stationary"]})
    (note,) = d.notes
    assert "the 3×3 matrix it would invert has rank at most 2" in note
    assert "(m = 2, n = 3" in note
    assert d.verify(points=8).passed
    # with the ridge term the Hessian 2 XᵀX + 2 lam I is full rank: solved as before
    ridged = dlsym.derive({**RIDGE, "dims": {"m": 2, "n": 3}, "derive": ["stationary"]})
    assert ridged.result_display("stationary")["expr"] == "inv(lam*eye(n) + X.T @ X) @ X.T @ y"
    rng = np.random.default_rng(4)
    p = _point(rng, m=2, n=3)
    X, y, lam = p["X"], p["y"], p["lam"]
    np.testing.assert_allclose(
        ridged.function("stationary")(**p), np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ y)
    )


def _newton_step_without_value(tmp_path, text):
    """(exit code, the Newton steps' displays, the notes) of a spec deriving the Newton
    step and the Hessian, whose step has no value."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["derive", str(path), "--format", "json"])
    out = json.loads(result.stdout)
    return result.exit_code, out["results"]["newton_step"], out["notes"], out["results"]


def test_a_newton_step_through_a_singular_hessian_is_not_defined_and_the_rest_stands(tmp_path):
    code, step, notes, results = _newton_step_without_value(
        tmp_path,
        "name: s\nsymbols:\n  X: {shape: [m, n]}\n  y: {shape: [m]}\n  w: {shape: [n]}\n"
        "dims: {m: 2, n: 3}\nobjective: sum((X @ w - y)**2)\nwrt: w\n"
        "derive: [hessian, newton_step]\n",
    )
    # the step is not defined; the Hessian, derived and verified, is still there
    assert code == 0
    assert step["method"].startswith("not defined: the Hessian is singular")
    assert "rank at most 2" in step["method"]
    assert step["latex"].endswith(r"= \text{not defined}")
    assert any(n.startswith("the Newton step in w: not defined") for n in notes)
    assert results["hessian"]["expr"] == "2*(X.T @ X)"
    with pytest.raises(ValueError, match="no function for 'newton_step': w: not defined"):
        dlsym.derive(str(tmp_path / "spec.yaml")).function("newton_step")


@pytest.mark.parametrize(
    "symbols, objective, wrt, message",
    [
        # diag(p) − p pᵀ maps 1 to p − p sum(p) = 0: its inverse was noise (exit 1)
        ("{x: {shape: [n]}, y: {shape: [n]}}", "logsumexp(x) - x @ y", "x", "maps the ones"),
        # s enters linearly and alone: its rows of the joint Hessian are 0
        ("{x: {shape: [n]}, s: {}}", "sum(x**2) + s", "[x, s]", "rows for s are 0"),
        # the Hessian of a max is diag(maxmask ...): one nonzero entry away from ties
        # (its inverse was nan at 15 of 16 points, exit 1)
        ("{x: {shape: [n]}}", "max(abs(erf(x)))", "x", "rank at most 1"),
        ("{x: {shape: [n]}, b: {}}", "sum(b*x)", "x", "the Hessian is 0"),
    ],
)
def test_a_newton_step_through_a_hessian_singular_everywhere_is_not_defined(
    tmp_path, symbols, objective, wrt, message
):
    code, step, notes, _ = _newton_step_without_value(
        tmp_path,
        f"name: s\nsymbols: {symbols}\ndims: {{n: 3}}\nobjective: {objective}\n"
        f"wrt: {wrt}\nderive: [newton_step]\n",
    )
    assert code == 0
    methods = [step["method"]] if "method" in step else [p["method"] for p in step["wrt"].values()]
    assert all(m.startswith("not defined: the Hessian is") and message in m for m in methods)
    assert notes


@pytest.mark.parametrize(
    "symbols, dims, objective, wrt, message",
    [
        ("{x: {}, y: {}, c: {}}", "{}", "(x + y - c)**2", "[x, y]", "rows for y are 1 times"),
        (
            "{u: {shape: [n]}, v: {shape: [n]}, a: {shape: [n]}}",
            "{n: 3}",
            "sum((u - v - a)**2)",
            "[u, v]",
            "rows for v are -1 times",
        ),
        # [w, b] with X 2×3: 2 [X 1]ᵀ[X 1] is 4×4 of rank 2 (exit 1: an inverse of noise)
        (
            "{X: {shape: [m, n]}, y: {shape: [m]}, w: {shape: [n]}, b: {}}",
            "{m: 2, n: 3}",
            "sum((X @ w + b - y)**2)",
            "[w, b]",
            "4×4 at the spec's dims with rank at most 3",
        ),
        # the same with b first: w's block with b stands below the diagonal, transposed
        (
            "{X: {shape: [m, n]}, y: {shape: [m]}, w: {shape: [n]}, b: {}}",
            "{m: 2, n: 3}",
            "sum((X @ w + b - y)**2)",
            "[b, w]",
            "4×4 at the spec's dims with rank at most 3",
        ),
    ],
)
def test_a_joint_newton_step_through_a_singular_stacked_hessian_is_not_defined(
    tmp_path, symbols, dims, objective, wrt, message
):
    """The stacked Hessian singular with no zero rows: one symbol's rows a multiple of
    another's, or fewer independent rows than its size (the step was an inverse of a
    singular matrix: verification "cannot run ... check the symbols' domains", exit 2,
    or failed, exit 1); the other results stand."""
    code, step, notes, results = _newton_step_without_value(
        tmp_path,
        f"name: s\nsymbols: {symbols}\ndims: {dims}\nobjective: {objective}\nwrt: {wrt}\n"
        "derive: [hessian, newton_step]\n",
    )
    assert code == 0
    for part in step["wrt"].values():
        assert part["method"].startswith("not defined: the Hessian is singular"), part
        assert message in part["method"]
    assert "hessian" in results and notes


def test_a_joint_newton_step_with_a_matrix_has_no_closed_form(tmp_path):
    code, step, notes, _ = _newton_step_without_value(
        tmp_path,
        "name: s\nsymbols: {X: {shape: [m, n]}, w: {shape: [n]}, b: {shape: [m]}}\n"
        "dims: {m: 3, n: 2}\nobjective: sum(X @ w) + sum(b)\nwrt: [X, w]\n"
        "derive: [newton_step]\n",
    )
    assert code == 0
    for part in step["wrt"].values():
        assert part["method"].startswith("no closed form: the joint Newton step with a matrix")
        assert part["latex"].endswith(r"= \text{no closed form}")


@pytest.mark.parametrize(
    "objective, rows, domain, weight",
    [
        # the Hessian acts as (diag(c) X Δᵀ)ᵀ X, a transpose of a product, read as
        # Δ Xᵀ diag(c) X once distributed (it was "no closed form")
        ("sum(c[:, None] * (X @ W.T - Y)**2)", True, "positive", lambda c: c),
        # 2 Xᵀ (X Δ ⊙ c 1ᵀ): a row weight broadcast by an outer product, as diag(c)
        ("sum(c * sum((X @ W - Y)**2, axis=1))", False, "positive", lambda c: c),
        # c[:, None]² inside the square: diag(c²), with c real
        ("sum((c[:, None] * (X @ W.T - Y))**2)", True, "real", lambda c: c**2),
    ],
    ids=["row-vectors", "weight-outside-the-row-sums", "weight-squared"],
)
def test_weighted_least_squares_is_solved_in_each_convention(objective, rows, domain, weight):
    """W* = Yᵀ C X (Xᵀ C X)⁻¹ with W [k, n] (rows: X Wᵀ), (Xᵀ C X)⁻¹ Xᵀ C Y with W [n, k],
    C = diag of the row weights; the Newton step lands there from any W."""
    d = dlsym.derive(
        {
            "name": "wls",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "Y": {"shape": ["m", "k"]},
                "W": {"shape": ["k", "n"] if rows else ["n", "k"]},
                "c": {"shape": ["m"], "domain": domain},
            },
            "dims": {"m": 7, "n": 3, "k": 2},
            "objective": objective,
            "wrt": "W",
            "derive": ["stationary", "newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(4)
    X, Y, c = rng.normal(size=(7, 3)), rng.normal(size=(7, 2)), rng.uniform(0.5, 2, 7)
    C = np.diag(weight(c))
    want = np.linalg.solve(X.T @ C @ X, X.T @ C @ Y)
    want = want.T if rows else want
    W = rng.normal(size=want.shape)
    np.testing.assert_allclose(d.function("stationary")(X=X, Y=Y, W=W, c=c), want, rtol=1e-10)
    step = d.function("newton_step")(X=X, Y=Y, W=W, c=c)
    np.testing.assert_allclose(W + step, want, rtol=1e-10)


def test_the_newton_step_for_a_matrix_of_weights_is_solved_in_matrix_form():
    d = dlsym.derive(
        {
            "name": "multi_output",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "Y": {"shape": ["m", "k"]},
                "W": {"shape": ["n", "k"]},
            },
            "dims": {"m": 7, "n": 3, "k": 2},
            "objective": "sum((X @ W - Y)**2) / 2",
            "wrt": "W",
            "derive": ["newton_step"],
        }
    )
    assert d.result_display("newton_step")["expr"] == "-(inv(X.T @ X) @ X.T @ (X @ W - Y))"
    rng = np.random.default_rng(2)
    X, Y, W = rng.normal(size=(7, 3)), rng.normal(size=(7, 2)), rng.normal(size=(3, 2))
    step = d.function("newton_step")(X=X, Y=Y, W=W)
    # one step lands on the least-squares solution
    np.testing.assert_allclose(W + step, np.linalg.lstsq(X, Y, rcond=None)[0], rtol=1e-12)
    assert d.verify(points=8).passed


def test_the_newton_map_jacobian_derives_and_verifies():
    """The Jacobian of the Newton map w - H^{-1} g of logistic regression (issue 16: it
    did not finish in 200 s): derived as its transpose's action in matrix form, verified
    against jax.jacfwd. The explicit cross-check inverts the 3 x 3 Hessian of sigmoids
    by Berkowitz's adjugate, not SymPy's simplifying elimination (minutes)."""
    d = dlsym.derive(
        {
            "name": "newton_map",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"], "domain": "unit_interval"},
                "w": {"shape": ["n"]},
                "lam": {"domain": "positive"},
            },
            "dims": {"m": 6, "n": 3},
            "define": {
                "p": "sigmoid(X @ w)",
                "g": "X.T @ (p - y) / m + lam * w",
                "H": "X.T @ diag(p * (1 - p)) @ X / m + lam * eye(n)",
            },
            "output": "w - inv(H) @ g",
            "wrt": "w",
            "derive": ["jacobian"],
        }
    )
    assert d.results["jacobian"]["w"].method == "matrix form"
    assert d.verify(points=4).passed


def test_explicit_inverse_and_determinant_match_numpy():
    from dlsym.expr import _explicit as explicit

    a = np.array([[2.0, 1.0, 0.5], [0.3, 3.0, -1.0], [0.0, 0.7, 1.5]])
    entries = np.vectorize(sp.Float, otypes=[object])(a)
    inv = np.asarray(explicit._inv(entries), dtype=float)
    np.testing.assert_allclose(inv, np.linalg.inv(a), rtol=1e-12)
    assert float(explicit._det(entries)) == pytest.approx(np.linalg.det(a), rel=1e-12)


def test_convexity_in_a_matrix_is_about_the_hessian_action():
    """For a matrix W the Hessian is its action on a direction Δ: the verdict's step and
    result name that action (∇²_W ℓ[Δ]), and the counterexample is checked by
    jax.hessian's eigenvalues over all entries of W."""
    d = dlsym.derive(tanh_in_a_matrix("convexity"))
    shown = d.result_display("convexity")
    assert shown["verdict"] == "not convex"
    assert shown["latex"].startswith(r"\nabla^{2}_{\mathbf{W}} \ell\,[\boldsymbol{\Delta}] = ")
    (step,) = [s for s in d.steps if s.title == "Convexity in W"]
    assert d.step_text(step).count("∇²_W ℓ[Δ]") == 1
    assert d.verify(points=4).passed


# -- several wrt symbols: the joint (block) Hessian -----------------------------------

LOGISTIC_WB = {
    "name": "logistic_wb",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"], "domain": "unit_interval"},
        "w": {"shape": ["n"]},
        "b": {},
        "lam": {"domain": "positive"},
    },
    "dims": {"m": 6, "n": 3},
    "define": {"z": "X @ w + b", "p": "sigmoid(z)"},
    "objective": "-mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w**2)",
    "wrt": ["w", "b"],
    "derive": ["gradient", "hessian", "newton_step", "taylor", "convexity"],
}


@pytest.fixture(scope="module")
def logistic_wb():
    return dlsym.derive(LOGISTIC_WB)


def _logistic_point(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "X": rng.normal(size=(6, 3)),
        "y": rng.uniform(size=6),
        "w": rng.normal(size=3),
        "b": 0.4,
        "lam": 0.7,
    }


def _logistic_by_hand(x):
    """The textbook's joint Hessian of the logistic loss in (w, b): with A = [X 1] and
    d = p (1 - p), Aᵀ diag(d) A / m, plus lam on w's diagonal; and the gradient."""
    A = np.column_stack([x["X"], np.ones(6)])
    p = 1 / (1 + np.exp(-(A @ np.append(x["w"], x["b"]))))
    H = A.T @ np.diag(p * (1 - p)) @ A / 6 + np.diag([x["lam"]] * 3 + [0.0])
    g = A.T @ (p - x["y"]) / 6 + np.append(x["lam"] * x["w"], 0.0)
    return H, g


def test_the_joint_hessian_has_every_block_as_jax_hessian_lays_them_out(logistic_wb):
    x = _logistic_point()
    h = logistic_wb.function("hessian")(**x)
    H, _ = _logistic_by_hand(x)
    assert set(h) == {"w", "b"} and set(h["w"]) == {"w", "b"}
    np.testing.assert_allclose(h["w"]["w"], H[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(h["w"]["b"], H[:3, 3], rtol=1e-12)
    np.testing.assert_allclose(h["b"]["w"], H[3, :3], rtol=1e-12)  # below the diagonal
    np.testing.assert_allclose(h["b"]["b"], H[3, 3], rtol=1e-12)
    assert list(logistic_wb.results["hessian"]) == ["w,w", "w,b", "b,b"]
    shown = logistic_wb.result_display("hessian")
    assert set(shown["wrt"]) == {"w,w", "w,b", "b,b"}
    assert shown["wrt"]["w,b"]["latex"].startswith(r"\nabla^{2}_{\mathbf{w}, b} \ell = ")


def test_the_joint_newton_step_solves_the_stacked_system(logistic_wb):
    x = _logistic_point(1)
    step = logistic_wb.function("newton_step")(**x)
    H, g = _logistic_by_hand(x)
    expected = -np.linalg.solve(H, g)
    np.testing.assert_allclose(step["w"], expected[:3], rtol=1e-10)
    np.testing.assert_allclose(step["b"], expected[3], rtol=1e-10)
    # the step shows the system with the blocks by name, as a block matrix
    (system,) = [s for s in logistic_wb.steps if s.title == "Newton step for w, b jointly"]
    latex = logistic_wb.step_latex(system)
    assert (
        r"\begin{bmatrix} \nabla^{2}_{\mathbf{w}} \ell & \nabla^{2}_{\mathbf{w}, b} \ell" in latex
    )


def test_one_joint_newton_step_solves_least_squares_with_an_intercept():
    """The loss is quadratic in (w, b): one Newton step from anywhere lands on the least
    squares fit with an intercept column, NumPy's lstsq."""
    d = dlsym.derive(
        {
            "name": "ls_intercept",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"]},
                "w": {"shape": ["n"]},
                "b": {},
            },
            "dims": {"m": 7, "n": 2},
            "objective": "0.5 * sum((X @ w + b - y)**2)",
            "wrt": ["w", "b"],
            "derive": ["newton_step", "taylor"],
        }
    )
    rng = np.random.default_rng(3)
    X, y, w, b = rng.normal(size=(7, 2)), rng.normal(size=7), rng.normal(size=2), 0.9
    step = d.function("newton_step")(X=X, y=y, w=w, b=b)
    fit, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(7)]), y, rcond=None)
    np.testing.assert_allclose(w + step["w"], fit[:2], rtol=1e-10)
    assert b + step["b"] == pytest.approx(fit[2], rel=1e-10)
    # the Taylor model of a quadratic is exact in the joint direction
    model = d.taylor_function(("w", "b"))
    dw, db = rng.normal(size=2), -0.3
    exact = 0.5 * np.sum((X @ (w + dw) + b + db - y) ** 2)
    assert float(model(X, y, w, b, dw, db)) == pytest.approx(exact, rel=1e-12)
    assert d.verify(points=4).passed


def test_a_joint_newton_step_with_uncoupled_symbols():
    """sum(x**4) + b**4: the cross block is 0 (SymPy's 0 has no shape; the stacked system
    failed to concatenate), and each step is its own, -x/3 and -b/3."""
    d = dlsym.derive(
        {
            "name": "uncoupled",
            "symbols": {"x": {"shape": ["n"]}, "b": {}},
            "dims": {"n": 3},
            "objective": "sum(x**4) + b**4",
            "wrt": ["x", "b"],
            "derive": ["newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    x, b = np.array([0.5, -1.5, 2.0]), 1.2
    step = d.function("newton_step")(x=x, b=b)
    np.testing.assert_allclose(step["x"], -x / 3, rtol=1e-12)
    assert float(step["b"]) == pytest.approx(-b / 3, rel=1e-12)


def test_joint_results_verify_and_a_wrong_block_fails(logistic_wb):
    report = logistic_wb.verify(points=6)
    assert report.passed
    checked = {(c.kind, c.wrt, c.reference) for c in report.checks}
    assert ("hessian", "w,b", "jax.hessian") in checked
    assert ("newton_step", "b", "solve(jax.hessian, -jax.grad)") in checked
    assert ("taylor", "w,b", "jax.jvp to second order") in checked
    # sabotage: the off-diagonal block 10 % off; the joint Newton step without it
    for kind, key, wrong in [
        ("hessian", "w,b", lambda r: r.expr * sp.Rational(11, 10)),
        ("newton_step", "w", lambda r: r.expr * sp.Rational(11, 10)),
    ]:
        d = dlsym.derive({**LOGISTIC_WB, "derive": ["gradient", kind]})
        r = d.results[kind][key]
        d.results[kind][key] = dataclasses.replace(r, expr=wrong(r))
        assert not d.verify(points=4).passed, kind


def test_joint_convexity_is_proven_by_the_composition_rules(logistic_wb):
    shown = logistic_wb.result_display("convexity")
    assert shown["verdict"] == "convex"
    assert "convex in w, b jointly by the composition rules" in shown["reason"]
    assert "log σ(a) and log(1 - σ(a)) of affine a" in shown["reason"]
    assert shown["latex"].endswith(r"\geq 0")
    report = logistic_wb.verify(points=6)
    assert "eigvalsh(jax.hessian) >= 0 at the drawn points" in {
        c.reference for c in report.checks if c.kind == "convexity"
    }


def _cyclic(n: int, diagonal: str) -> dict:
    names = [f"s{i}" for i in range(n)]
    pairs = " + ".join(f"{names[i]}*{names[(i + 1) % n]}" for i in range(n))
    return {
        "name": "cyclic",
        "symbols": {s: {} for s in names},
        "objective": f"{pairs} + {diagonal}*({' + '.join(f'{s}**2' for s in names)})",
        "wrt": names,
        "derive": ["hessian", "convexity"],
    }


@pytest.mark.parametrize(
    ("diagonal", "convex", "smallest"),
    [("1", True, 0.0), ("99/100", False, -0.02), ("0", False, -2.0)],
)
def test_a_quadratic_in_many_scalars_is_decided_by_exact_arithmetic(diagonal, convex, smallest):
    """s0 s1 + s1 s2 + ... + s5 s0 + c Σ sᵢ²: the joint Hessian is the constant
    circulant 2c I + C, eigenvalues 2c + 2 cos(2πk/6), PSD exactly for c >= 1 (at
    c = 1 singular: no numeric search decides that). 60 scalars ran out the budget in
    the counterexample search; the verdict is now exact, its eigenvalue NumPy's."""
    d = dlsym.derive(_cyclic(6, diagonal))
    v = d.results["convexity"]["s0,s1,s2,s3,s4,s5"].verdict
    assert v.convex is convex
    assert "exact arithmetic" in v.reason
    if not convex:
        assert v.eigenvalue == pytest.approx(smallest, abs=1e-12)
        assert set(v.point) == {f"s{i}" for i in range(6)}
    report = d.verify(points=4)
    assert report.passed
    assert any(c.kind == "convexity" for c in report.checks)


def test_every_block_of_a_joint_hessian_in_many_scalars_is_checked_in_one_pass():
    """210 blocks of 20 scalars (a ≤ b): each is compared with its block of one jax.hessian per
    point (one per block traced the joint Hessian 210 times: past the budget)."""
    d = dlsym.derive(_cyclic(20, "0"))
    report = d.verify(points=2)
    assert report.passed
    blocks = [c for c in report.checks if c.kind == "hessian" and c.reference == "jax.hessian"]
    assert len(blocks) == 210


def test_a_bilinear_objective_is_not_jointly_convex():
    """(u vᵀ − Y)² is convex in u and in v, not in both: the counterexample is a point
    where the joint Hessian, by NumPy finite differences, has that negative eigenvalue."""
    d = dlsym.derive(
        {
            "name": "factorization",
            "symbols": {"u": {"shape": ["n"]}, "v": {"shape": ["n"]}, "Y": {"shape": ["n", "n"]}},
            "dims": {"n": 3},
            "objective": "0.5 * sum((outer(u, v) - Y)**2)",
            "wrt": ["u", "v"],
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"]["u,v"].verdict
    assert v.convex is False and v.eigenvalue < 0
    Y = np.asarray(v.point["Y"])

    def grad(t):  # by hand: r = u vᵀ − Y, ∇_u = r v, ∇_v = rᵀ u
        u, w = t[:3], t[3:]
        r = np.outer(u, w) - Y
        return np.concatenate([r @ w, r.T @ u])

    t = np.concatenate([v.point["u"], v.point["v"]])
    eps = 1e-6
    H = np.stack([(grad(t + eps * e) - grad(t - eps * e)) / (2 * eps) for e in np.eye(6)])
    assert np.linalg.eigvalsh((H + H.T) / 2)[0] == pytest.approx(v.eigenvalue, rel=1e-5)
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "objective, convex",
    [
        ("sum((X @ w - y)**2)", True),
        ("sum(softplus(X @ w)) - sum(y * (X @ w))", True),
        ("logsumexp(X @ w)", True),
        ("log(sum(exp(X @ w - y)))", True),  # logsumexp written out (was undecided)
        ("exp(sum(w**2))", True),  # exp, nondecreasing, of a convex function
        ("norm(X @ w - y)**2 + sum(abs(w))", True),
        ("sum(relu(X @ w)) - sum(X @ w)", True),
        ("-mean(log_softmax(X @ w))", True),
        ("sum(tanh(X @ w))", None),
        ("-sum((X @ w)**2)", False),
        ("sum(log(exp(X @ w) + 1))", True),  # softplus written out: read as softplus
        ("-sum(relu(X @ w))", None),
        ("sum(sigmoid(X @ w))", None),
        ("w @ (X.T @ X - 2 * eye(n)) @ w", None),  # not PSD for every X
        # the soft-margin SVM: ‖w‖² written w @ w (was undecided)
        ("0.5 * w @ w + 2 * sum(maximum(0, 1 - y * (X @ w)))", True),
        ("-(w @ w)", False),
        # the squared hinge: maximum(0, ·) is nonnegative, so its square keeps convexity
        ("mean(maximum(0, 1 - y * (X @ w))**2)", True),
        ("mean(maximum(-1, 1 - y * (X @ w))**2)", None),  # not nonnegative: not by this rule
        # √(c + ‖u‖²) is the norm of (u, √c): smooth L1, pseudo-Huber (were undecided)
        ("sqrt(w @ w + 1)", True),
        ("sum(sqrt(1 + (X @ w - y)**2))", True),
        ("sqrt(1 - w @ w)", None),  # c − ‖u‖²: no norm
        # weights written as an inner product: nonnegative ones keep convexity (the
        # multinomial logistic loss -y @ log_softmax(W x) was undecided), others do not
        ("-(y**2) @ log_softmax(X @ w)", True),
        ("exp(X @ w) @ y**2", True),
        ("-y @ log_softmax(X @ w)", None),
        ("(y**2) @ log_softmax(X @ w)", None),
    ],
)
def test_the_composition_rules_prove_only_convex_objectives(objective, convex):
    """What the rules prove convex, jax.hessian's eigenvalues confirm at drawn points;
    what is not convex is never proven (a counterexample, or undecided)."""
    d = dlsym.derive(
        {
            "name": "rules",
            "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}, "w": {"shape": ["n"]}},
            "dims": {"m": 5, "n": 3},
            "objective": objective,
            "wrt": "w",
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"]["w"].verdict
    if convex:
        assert v.convex is True, v.reason
    else:
        assert v.convex is not True, v.reason
    assert d.verify(points=8).passed


def _assert_verdict(v, convex):
    """True: proven convex; False: a counterexample; None: anything but a proof."""
    if convex:
        assert v.convex is True, v.reason
    elif convex is False:
        assert v.convex is False, v.reason
    else:
        assert v.convex is not True, v.reason


@pytest.mark.parametrize(
    "objective, convex",
    [
        ("sum(p * log(p))", True),  # negative entropy
        ("sum(p**3) + sum(1/p) + sum(p**-0.5)", True),  # t^k, k >= 1 or k <= 0, t > 0
        ("-sum(sqrt(p)) - sum(log(p))", True),  # concave sqrt and log, negated
        ("sum(sqrt(p))", False),
        # bends down only below 0.4: found at a drawn point's multiple (were undecided)
        ("sum((p - 0.4)**3)", False),
        ("sum(1/(p - 0.4)) + sum(p**2)", False),
        ("sum(p**0.3 * log(p))", None),
        ("sum(p * log(p)) - sum(p**2)", None),
        ("sum(p * log(p / 3) - p)", True),  # u log(u / c), the generalized KL
        # bends down only past p = e: found far out, confirmed by f's second difference
        ("sum(log(p)**2)", False),
    ],
)
def test_curvature_of_powers_and_entropy_on_positive_symbols(objective, convex):
    """On a positive symbol: u^k is convex for k >= 1 or k <= 0, concave between, and
    u log u convex (these were undecided); each proof checked by jax.hessian."""
    d = dlsym.derive(
        {
            "name": "positive",
            "symbols": {"p": {"shape": ["n"], "domain": "positive"}},
            "dims": {"n": 3},
            "objective": objective,
            "wrt": "p",
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"]["p"].verdict
    _assert_verdict(v, convex)
    assert d.verify(points=8).passed


@pytest.mark.parametrize(
    "objective, wrt, convex",
    [
        # linear in the kernel for a constant input, and in the input for a constant kernel
        ("sum((conv2d(X, K, stride=2, padding=1) - Y)**2) / 2", "K", True),
        ("sum(softplus(conv2d(X, K, padding=1)))", "X", True),
        ("sum(avg_pool2d(relu(conv2d(X, K, padding=1)), 2))", "K", True),
        ("-sum(avg_pool2d(relu(conv2d(X, K, padding=1)), 2))", "K", False),
        ("sum(tanh(conv2d(X, K, padding=1)))", "K", None),
    ],
)
def test_convolutions_and_average_pooling_keep_curvature(objective, wrt, convex):
    """A convolution is affine in one argument with the other constant, and an average
    pool a nonnegative combination (least squares through conv2d was undecided); each
    verdict is checked by jax.hessian's eigenvalues at drawn points."""
    d = dlsym.derive(
        {"name": "conv", "symbols": {"X": {"shape": ["B", "C", 4, 4]},
         "K": {"shape": ["O", "C", 3, 3]}, "Y": {"shape": ["B", "O", 2, 2]}},
         "dims": {"B": 1, "C": 2, "O": 2}, "objective": objective, "wrt": wrt,
         "derive": ["convexity"]}
    )  # fmt: skip
    v = d.results["convexity"][wrt].verdict
    _assert_verdict(v, convex)
    assert d.verify(points=4).passed


def test_convexity_in_a_matrix_by_the_composition_rules():
    """A matrix W's Hessian is only an action, which no PSD proof reads; the composition
    rules prove ‖X W − Y‖² convex in W."""
    d = dlsym.derive(
        {
            "name": "matrix_ls",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "Y": {"shape": ["m", "k"]},
                "W": {"shape": ["n", "k"]},
            },
            "dims": {"m": 5, "n": 3, "k": 2},
            "objective": "sum((X @ W - Y)**2)",
            "wrt": "W",
            "derive": ["convexity"],
        }
    )
    assert d.results["convexity"]["W"].verdict.convex is True
    assert d.verify(points=4).passed


def test_a_block_of_two_vectors_of_different_sizes():
    """The (u, v) block of two vectors is ∂²ℓ/∂u∂v, shape u.shape + v.shape, checked
    against jax.hessian and sympy.diff (the explicit check once took it for ∂²ℓ/∂v²)."""
    d = dlsym.derive(
        {
            "name": "uv",
            "symbols": {"u": {"shape": ["n"]}, "v": {"shape": ["k"]}, "A": {"shape": ["n", "k"]}},
            "dims": {"n": 2, "k": 3},
            "objective": "sum((u @ A) * v) + sum(u**2) * sum(v**2)",
            "wrt": ["u", "v"],
            "derive": ["hessian"],
        }
    )
    rng = np.random.default_rng(4)
    u, v, A = rng.normal(size=2), rng.normal(size=3), rng.normal(size=(2, 3))
    h = d.function("hessian")(u=u, v=v, A=A)
    by_hand = A + 4 * np.outer(u, v)  # ∂/∂v of (A v + 2 u |v|²)
    np.testing.assert_allclose(h["u"]["v"], by_hand, rtol=1e-12)
    np.testing.assert_allclose(h["v"]["u"], by_hand.T, rtol=1e-12)
    report = d.verify(points=4)
    assert report.passed, report
    assert ("hessian", "u,v", "sympy.diff on explicit entries at n=2, k=3") in {
        (c.kind, c.wrt, c.reference) for c in report.checks
    }


def test_a_matrix_block_with_subscripted_names_compiles(tmp_path, pdflatex):
    from conftest import compile_latex

    d = dlsym.derive(
        {
            "name": "names",
            "symbols": {"W_in_1": {"shape": [2, 2]}, "b_1": {"shape": [2]}, "x": {"shape": [2]}},
            "objective": "sum(tanh(W_in_1 @ x + b_1)**2)",
            "wrt": ["W_in_1", "b_1"],
            "derive": ["hessian"],
        }
    )
    compile_latex(pdflatex, tmp_path, "names", d.latex(standalone=True))


def _precision(objective, derive):
    return dlsym.derive(
        {
            "name": "precision",
            "symbols": {
                "L": {"shape": ["k", "k"], "domain": "spd"},
                "S": {"shape": ["k", "k"], "domain": "spd"},
            },
            "dims": {"k": 3},
            "objective": objective,
            "wrt": "L",
            "derive": derive,
        }
    )


def test_the_gaussian_precision_objective_is_convex_on_the_spd_cone():
    """-log det L + tr(S L): the ambient Hessian (as jax.hessian's) acts as
    Δ ↦ L⁻ᵀ Δᵀ L⁻ᵀ, which has negative eigenvalues along antisymmetric Δ; along the
    symmetric directions an spd L moves in it is positive definite, and convexity is
    proven (log det concave on the cone). Before: the folded gradient L⁻¹ gave the
    Hessian L⁻¹ Δ L⁻¹, which jax.hessian refuted, and convexity 'not convex'."""
    d = _precision("-logdet(L) + trace(S @ L)", ["gradient", "hessian", "convexity", "stationary"])
    v = d.results["convexity"]["L"].verdict
    assert v.convex is True and "log-determinant" in v.reason
    rng = np.random.default_rng(2)
    B = rng.normal(size=(3, 3))
    L, S = B @ B.T / 3 + np.eye(3), np.eye(3) + 0.1
    H = d.function("hessian")(L=L, S=S)  # k, k, k, k as jax.hessian lays it out
    Li = np.linalg.inv(L)
    np.testing.assert_allclose(H, np.einsum("ja,bi->ijab", Li, Li), rtol=1e-12)
    np.testing.assert_allclose(d.function("stationary")(L=L, S=S), np.linalg.inv(S), rtol=1e-12)
    report = d.verify(points=8)
    assert report.passed, report
    assert any(c.kind == "convexity" and c.passed for c in report.checks)


def test_convexity_on_the_spd_cone_is_checked_along_symmetric_directions(monkeypatch):
    """The proof's check restricts jax.hessian to the symmetric directions: without
    the restriction it fails (the ambient Hessian of -log det is indefinite); log det
    itself is refuted along symmetric directions too."""
    from dlsym.verify import _sampling

    concave = _precision("logdet(L)", ["convexity"])
    assert concave.results["convexity"]["L"].verdict.convex is False
    assert concave.verify(points=4).passed
    d = _precision("-logdet(L) + trace(S @ L)", ["convexity"])
    monkeypatch.setattr(_sampling, "TANGENTS", {})
    monkeypatch.setattr("dlsym.sections.calculus._verify.TANGENTS", {})
    report = d.verify(points=4)
    assert not report.passed


@pytest.mark.parametrize(
    "objective, hessian",
    [
        ("sum((X - mu)**2) / 2", lambda P: 6 * np.eye(3)),
        ("sum((X - mu[None, :])**2) / 2", lambda P: 6 * np.eye(3)),
        ("sum((X - outer(ones(N), mu))**2) / 2", lambda P: 6 * np.eye(3)),
        ("mean(sum((X - mu)**2, axis=1))", lambda P: 2 * np.eye(3)),
        ("sum(((X - mu) @ P) * (X - mu)) / 2", lambda P: 6 * P),
        ("trace((X - mu) @ P @ (X - mu).T) / 2", lambda P: 6 * P),
    ],
)
def test_the_gaussian_mean_mle_is_the_sample_mean(objective, hessian):
    """The mean of N samples (rows of X) minimises each way a course writes the
    negative log-likelihood: the Hessian in matrix form (N I, or N P with a precision
    P), the stationary point the sample mean. The broadcast X - mu had no forward
    Jacobian rule (a sum along an axis of a matrix): explicit entries at the
    verification's sizes and 'no closed form'; now by reverse mode (Jᵀv = ∇⟨v, e⟩)."""
    d = dlsym.derive(
        {
            "name": "gaussian_mean",
            "symbols": {
                "X": {"shape": ["N", "k"]},
                "mu": {"shape": ["k"]},
                "P": {"shape": ["k", "k"], "domain": "spd"},
            },
            "dims": {"N": 6, "k": 3},
            "objective": objective,
            "wrt": "mu",
            "derive": ["gradient", "hessian", "stationary"],
        }
    )
    assert d.results["hessian"]["mu"].method == "matrix form"
    rng = np.random.default_rng(4)
    X, mu, B = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=(3, 3))
    P = B @ B.T / 3 + np.eye(3)
    np.testing.assert_allclose(d.function("hessian")(X=X, mu=mu, P=P), hessian(P), rtol=1e-12)
    np.testing.assert_allclose(
        d.function("stationary")(X=X, mu=mu, P=P), X.mean(axis=0), rtol=1e-12
    )
    assert d.verify(points=4).passed


def test_the_optimal_discriminator_in_logits_is_the_log_density_ratio():
    """p log σ(a) + q log(1 − σ(a)) is maximised at a* = log(p/q): sympy.solve sees σ
    as 1/(1 + e^{-a}) (it found no solution with dlsym's sigmoid)."""
    d = dlsym.derive(
        {
            "name": "gan_logit",
            "symbols": {
                "a": {"shape": ["n"]},
                "pd": {"shape": ["n"], "domain": "positive"},
                "pg": {"shape": ["n"], "domain": "positive"},
            },
            "dims": {"n": 3},
            "objective": "sum(pd * log(sigmoid(a)) + pg * log(1 - sigmoid(a)))",
            "wrt": "a",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    pd, pg = np.array([0.5, 1.0, 2.0]), np.array([1.5, 1.0, 0.25])
    got = d.function("stationary")(a=np.zeros(3), pd=pd, pg=pg)
    np.testing.assert_allclose(got, np.log(pd / pg), rtol=1e-13)


def test_the_kalman_gain_with_covariances_not_declared_symmetric():
    """P and R without domain spd: the Hessian's action (Δ H P + Δ H Pᵀ) Hᵀ + ... is
    multiplied out into terms Δ M, and K* = (P + Pᵀ)Hᵀ(R + Rᵀ + H(P + Pᵀ)Hᵀ)⁻¹ (it said
    'a term that is not Δ M or M Δ')."""
    d = dlsym.derive(
        {
            "name": "kalman_general",
            "symbols": {
                "P": {"shape": ["n", "n"]},
                "R": {"shape": ["m", "m"]},
                "H": {"shape": ["m", "n"]},
                "K": {"shape": ["n", "m"]},
            },
            "dims": {"n": 3, "m": 2},
            "define": {"A": "eye(n) - K @ H"},
            "objective": "trace(A @ P @ A.T + K @ R @ K.T)",
            "wrt": "K",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(6)
    P, R, H = (
        rng.normal(size=(3, 3)) + 3 * np.eye(3),
        rng.normal(size=(2, 2)) + 3 * np.eye(2),
        rng.normal(size=(2, 3)),
    )
    Ps, Rs = P + P.T, R + R.T
    want = Ps @ H.T @ np.linalg.inv(Rs + H @ Ps @ H.T)
    got = d.function("stationary")(P=P, R=R, H=H, K=np.zeros((3, 2)))
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize(
    "objective, wrt, root",
    [("sum(x**3)", {"x": {"shape": ["n"]}}, 0.0), ("s - log(s**2 + 1)", {"s": {}}, 1.0)],
)
def test_a_root_where_the_hessian_is_singular_verifies(objective, wrt, root, monkeypatch):
    """x³ and s − log(s² + 1) have roots of the gradient where the Hessian is 0: the
    Newton-step reference was 0/0 there (a false failure); the gradient checks such a
    point, and a wrong root still fails."""
    from dlsym.calculus import _second_order

    spec = {
        "name": "singular_root",
        "symbols": wrt,
        "dims": {"n": 3},
        "objective": objective,
        "wrt": next(iter(wrt)),
        "derive": ["stationary"],
    }
    d = dlsym.derive(spec)
    assert d.verify(points=8).passed
    (name,) = wrt
    point = {name: np.zeros(3) if wrt[name] else 0.0}
    np.testing.assert_allclose(d.function("stationary")(**point), root)
    original = _second_order._entrywise

    def off_by_one(engine, n, g, wrt_symbols):
        value, why, method = original(engine, n, g, wrt_symbols)
        return value + 1, why, method

    monkeypatch.setattr(_second_order, "_entrywise", off_by_one)
    assert not dlsym.derive(spec).verify(points=8).passed


def test_the_precision_mle_with_a_general_matrix_is_the_ambient_root():
    """-log det S + tr(A S) with A not symmetric: the ambient gradient Aᵀ - S⁻ᵀ is 0 at
    S = A⁻¹ (it gave A⁻ᵀ, reading S⁻ᵀ as S⁻¹, which verification refuted); and on the
    simplex an objective whose Hessian is 0 along the domain up to round-off is not
    called non-convex (an eigenvalue of -1e-32 was read against a scale of 1e-32)."""
    d = dlsym.derive(
        {
            "name": "precision_general",
            "symbols": {"S": {"shape": ["n", "n"], "domain": "spd"}, "A": {"shape": ["n", "n"]}},
            "dims": {"n": 3},
            "objective": "-logdet(S) + trace(A @ S)",
            "wrt": "S",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    A = np.array([[2.0, 0.5, 0.0], [0.1, 3.0, 0.2], [0.0, -0.3, 1.5]])
    got = d.function("stationary")(S=np.eye(3), A=A)
    np.testing.assert_allclose(got, np.linalg.inv(A), rtol=1e-12)
    flat = dlsym.derive(
        {
            "name": "flat_on_the_simplex",
            "symbols": {"p": {"shape": ["k"], "domain": "simplex"}, "a": {"shape": ["k"]}},
            "dims": {"k": 4},
            "objective": "a @ p + log(sum(p))",
            "wrt": "p",
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert flat.results["convexity"]["p"].verdict.convex is not False
    assert flat.verification.passed


def test_a_stationary_point_outside_the_domain_is_said_not_given():
    """x² + 2x on positive x: the gradient is 0 only at x = -1 (it was x* = -1, exit 0,
    a point the spec excludes); -(a² + 1) 1 for a positive vector whatever a is. A
    point whose sign depends on the other symbols (x* = -a) is still given."""
    base = {"name": "s", "wrt": ["x"], "derive": ["stationary"]}
    d = dlsym.derive({**base, "symbols": {"x": {"domain": "positive"}}, "objective": "x**2 + 2*x"})
    shown = d.result_display("stationary")
    assert (
        shown["expr"].startswith("no stationary point in the domain") and "x = -1" in shown["expr"]
    )
    assert "none in the domain" in shown["latex"]
    with pytest.raises(ValueError, match="no stationary point in the domain"):
        d.function("stationary")
    vector = {"x": {"shape": ["n"], "domain": "positive"}, "a": {}}
    d = dlsym.derive(
        {**base, "symbols": vector, "dims": {"n": 3}, "objective": "0.5*x@x + (a**2 + 1)*sum(x)"}
    )
    assert d.result_display("stationary")["expr"].startswith("no stationary point in the domain")
    d = dlsym.derive(
        {
            **base,
            "symbols": {"x": {"domain": "positive"}, "a": {}},
            "objective": "0.5*x**2 + a*x",
        }
    )
    assert d.result_display("stationary")["expr"] == "-a"
    assert d.result_display("stationary")["where"] == ["-a > 0"]  # inside the domain
    for unit in ("x**2 - x", "x**2 - 3*x"):  # x* = 1/2 inside (0, 1); 3/2 outside
        d = dlsym.derive({**base, "symbols": {"x": {"domain": "unit_interval"}}, "objective": unit})
        inside = unit == "x**2 - x"
        assert d.result_display("stationary")["expr"].startswith("no stationary") != inside


def test_an_ambient_stationary_point_off_the_simplex_is_said_not_given():
    """A simplex symbol's gradient is the ambient one, so its root need not lie on the
    simplex: sum((P − Q)²) + sum(P) is stationary only at P = Q − 1/2, whose rows sum to
    1 − k/2 (it was P* = Q − 1/2, exit 0, with no note); the KL divergence's at q/e,
    whose entries sum to 1/e. A root whose sum depends on other symbols is still given,
    and one on the simplex (P* = Q) too."""
    base = {"name": "s", "wrt": ["P"], "derive": ["stationary"], "dims": {"B": 4, "k": 3}}
    rows = {"P": {"shape": ["B", "k"], "domain": "simplex"}}
    d = dlsym.derive(
        {
            **base,
            "symbols": {**rows, "Q": {"shape": ["B", "k"], "domain": "simplex"}},
            "objective": "sum((P - Q)**2) + sum(P)",
        }
    )
    shown = d.result_display("stationary")["expr"]
    assert shown.startswith("no stationary point in the domain"), shown
    assert "rows sum to 1 - k/2, not 1" in shown
    with pytest.raises(ValueError, match="no stationary point in the domain"):
        d.function("stationary")
    kl = dlsym.derive(
        {
            **base,
            "wrt": ["p"],
            "symbols": {
                "p": {"shape": ["k"], "domain": "simplex"},
                "q": {"shape": ["k"], "domain": "simplex"},
            },
            "objective": "sum(p * log(p / q))",
        }
    )
    assert "entries sum to exp(-1), not 1" in kl.result_display("stationary")["expr"]
    for objective, truth in (("sum((P - Q)**2)", "Q"), ("sum((P - 2*C)**2)", "2*C")):
        d = dlsym.derive(
            {
                **base,
                "symbols": {**rows, "Q": rows["P"], "C": {"shape": ["B", "k"]}},
                "objective": objective,
            },
            verify=True,
        )
        assert d.result_display("stationary")["expr"] == truth
        assert d.verification.passed


@pytest.mark.parametrize(
    "symbols, dims, objective, wrt",
    [
        # conv2d(X, K) at K = 0 was conv2d(X, 0): "needs a NCHW kernel, got a scalar"
        (
            {"X": [1, 1, 5, 5], "K": [1, 1, 2, 2], "Y": [1, 1, 4, 4]},
            {},
            "sum((conv2d(X, K) - Y)**2)",
            ["K"],
        ),
        # a rank-3 unknown: the matrix solver unpacked its shape into two (ValueError)
        (
            {"X": ["B", "T", "d"], "Y": ["B", "T", "d"]},
            {"B": 2, "T": 2, "d": 2},
            "sum((X - Y)**2) + sum(mean(X, axis=(0, 1))**2)",
            ["X"],
        ),
        # a rank-3 batch jointly in [W, b]: its products multiplied out as matrices'
        (
            {"X": ["B", "T", "n"], "W": ["n", "k"], "b": ["k"], "Y": ["B", "T", "k"]},
            {"B": 2, "T": 3, "n": 2, "k": 2},
            "sum((X @ W + b - Y)**2)",
            ["W", "b"],
        ),
        # a matrix's row beside a vector's entry, jointly: '@' needs vectors or matrices
        (
            {"W": ["n", "n"], "b": ["n"], "X": ["m", "n"], "y": ["m"]},
            {"n": 2, "m": 4},
            "sum((X @ W[0] + b[0] - y)**2) + sum(b**2)",
            ["W", "b"],
        ),
    ],
)
def test_a_stationary_point_past_the_matrix_forms_is_no_closed_form(symbols, dims, objective, wrt):
    """Each was exit 3 (an internal error in the matrix solver); now an honest "no
    closed form", the gradient beside it derived and verified."""
    d = dlsym.derive(
        {
            "name": "s",
            "symbols": {n: {"shape": shape} for n, shape in symbols.items()},
            "dims": dims,
            "objective": objective,
            "wrt": wrt,
            "derive": ["gradient", "stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    for name in wrt:
        assert d.results["stationary"][name].method.startswith("no closed form"), name


def test_the_gaussian_mean_and_variance_are_solved_in_turn():
    """The joint MLE of a normal's mean and variance: m's condition holds v, but m* =
    sum(x)/N whatever v is; v's holds m, solved with m* put in: v* = mean((x - m*)²),
    the biased estimator (it was 'the condition for m couples it with v'). Verified
    jointly: from (m*, v*) a Newton step in each stays; the unbiased N - 1 moves."""
    d = dlsym.derive(
        {
            "name": "mle",
            "symbols": {"x": {"shape": ["N"]}, "m": {}, "v": {"domain": "positive"}},
            "dims": {"N": 6},
            "objective": "N / 2 * log(v) + sum((x - m)**2) / (2 * v)",
            "wrt": ["m", "v"],
            "derive": ["stationary"],
        }
    )
    x = np.array([0.3, -1.2, 2.5, 0.7, 1.1, -0.4])
    star = d.function("stationary")(x=x, m=9.0, v=3.0)
    m, v = star["m"], star["v"]
    assert float(m) == pytest.approx(x.mean(), rel=1e-14)
    assert float(v) == pytest.approx(x.var(), rel=1e-14)
    assert d.results["stationary"]["v"].given == ("m",)
    report = d.verify(points=8)
    assert report.passed, report
    assert any("joint stationary point" in c.reference for c in report.checks)
    r = d.results["stationary"]["v"]
    N = d.spec.dim_symbols["N"]
    d.results["stationary"]["v"] = dataclasses.replace(r, expr=r.expr * N / (N - 1))
    d._functions.clear()
    assert not d.verify(points=8).passed


def test_a_regressions_noise_variance_is_its_residuals_at_the_least_squares_weights():
    """Linear regression's MLE in the weights and the noise variance, solved in turn:
    w* = (XᵀX)⁻¹Xᵀy, then s2* = ‖y − X w*‖²/m. The solver names the blocks free of s2
    (X @ w inside sum((y − X @ w)²)); the outer block's text held the inner one's name,
    which was never put back: s2* = sum((y − b)²)/m, and its condition's code exited 3."""
    d = dlsym.derive(
        {
            "name": "noise_variance",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"]},
                "w": {"shape": ["n"]},
                "s2": {"domain": "positive"},
            },
            "dims": {"m": 8, "n": 2},
            "objective": "m / 2 * log(s2) + sum((y - X @ w)**2) / (2 * s2)",
            "wrt": ["w", "s2"],
            "derive": ["stationary"],
        }
    )
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(8, 2)), rng.normal(size=8)
    star = d.function("stationary")(X=X, y=y, w=np.ones(2), s2=1.0)
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(star["w"], w, rtol=1e-12)
    assert float(star["s2"]) == pytest.approx(np.sum((y - X @ w) ** 2) / 8, rel=1e-12)
    assert d.verify(points=8).passed


def test_the_gaussian_standard_deviation_keeps_its_squared_deviations():
    """The MLE in the standard deviation s: s* = √(sum((x − m*)²)/N), the deviations
    kept whole (sympy.solve multiplied the sum out, sum(x² + sum(x)²/N² − 2 x sum(x)/N),
    which was nan at x ~ 1e9 and 0 at x = 1e8 ± 1, where np.std is 0.89)."""
    d = dlsym.derive(
        {
            "name": "mle_sigma",
            "symbols": {"x": {"shape": ["N"]}, "m": {}, "s": {"domain": "positive"}},
            "dims": {"N": 5},
            "objective": "N * log(s) + sum((x - m)**2) / (2 * s**2)",
            "wrt": ["m", "s"],
            "derive": ["stationary"],
        }
    )
    assert (
        d.result_display("stationary")["wrt"]["s"]["expr"] == "sqrt(sum((x - sum(x)/N)**2))/sqrt(N)"
    )
    f = d.function("stationary")
    for x in (
        np.array([1e8 + 1, 1e8 - 1, 1e8 + 1, 1e8 - 1, 1e8]),
        np.random.default_rng(0).normal(1e9, 1, 5),
    ):
        assert float(f(x=x, m=0.0, s=1.0)["s"]) == pytest.approx(x.std(), rel=1e-6)
    assert d.verify(points=8).passed


def test_a_diagonal_gaussians_mean_and_variances_are_solved_in_turn():
    """The vector form: the mean's Hessian m diag(1/v) is diagonal, so each entry solves
    its own equation, μ* = sum(X, 0)/m whatever v is (it was 'μ couples with v': H⁻¹ r
    kept v as inv(diag(1/v)) (sum(X, 0)/v)); then v* = mean((X − μ*)², 0). Equal to
    NumPy's mean and biased variance per column, verified jointly; v* with the N − 1
    divisor fails verification."""
    d = dlsym.derive(
        {
            "name": "diag_mle",
            "symbols": {
                "X": {"shape": ["m", "d"]},
                "mu": {"shape": ["d"]},
                "v": {"shape": ["d"], "domain": "positive"},
            },
            "dims": {"m": 6, "d": 2},
            "objective": "0.5 * m * sum(log(v)) + 0.5 * sum((X - mu)**2 / v)",
            "wrt": ["mu", "v"],
            "derive": ["stationary"],
        }
    )
    assert d.result_display("stationary")["expr"] == (
        "mu: sum(X, axis=0)/m; v: sum((X - sum(X, axis=0)/m)**2, axis=0)/m"
    )
    x = np.random.default_rng(3).normal(size=(6, 2)) * [1.0, 3.0] + [0.5, -2.0]
    star = d.function("stationary")(X=x, mu=np.zeros(2), v=np.ones(2))
    np.testing.assert_allclose(star["mu"], x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(star["v"], x.var(0), rtol=1e-13)
    report = d.verify(points=8)
    assert report.passed, report
    r = d.results["stationary"]["v"]
    m = d.spec.dim_symbols["m"]
    d.results["stationary"]["v"] = dataclasses.replace(r, expr=r.expr * m / (m - 1))
    d._functions.clear()
    assert not d.verify(points=8).passed


def test_two_sided_least_squares_is_solved_in_matrix_form():
    """‖A W B − C‖²: the Hessian's action is 2 AᵀA Δ BBᵀ (Δ on neither end), so W* =
    (AᵀA)⁻¹ Aᵀ C Bᵀ (BBᵀ)⁻¹ (it was 'not ΔM or MΔ'); against NumPy's least squares
    of the vectorised problem (vec(A W B) = (Bᵀ ⊗ A) vec W), and a Newton step verifies
    it."""
    d = dlsym.derive(
        {
            "name": "two_sided",
            "symbols": {
                "A": {"shape": ["m", "p"]},
                "B": {"shape": ["q", "n"]},
                "C": {"shape": ["m", "n"]},
                "W": {"shape": ["p", "q"]},
            },
            "dims": {"m": 5, "p": 2, "q": 2, "n": 4},
            "objective": "sum((A @ W @ B - C)**2)",
            "wrt": "W",
            "derive": ["stationary"],
        }
    )
    rng = np.random.default_rng(3)
    A, B, C = rng.standard_normal((5, 2)), rng.standard_normal((2, 4)), rng.standard_normal((5, 4))
    got = d.function("stationary")(A=A, B=B, C=C, W=np.zeros((2, 2)))
    # vec(A W B) = (Bᵀ ⊗ A) vec(W), column-major vec
    w, *_ = np.linalg.lstsq(np.kron(B.T, A), C.flatten(order="F"), rcond=None)
    np.testing.assert_allclose(got, w.reshape((2, 2), order="F"), rtol=1e-10)
    assert d.verify(points=8).passed


def test_the_kalman_gain_written_with_traces_reads_as_the_textbook():
    """tr Σ − 2 tr(G C Σ) + tr(G (C Σ Cᵀ + N) Gᵀ): the gradient's two halves are one term
    once (C Σ Cᵀ)ᵀ = C Σ Cᵀ for an spd Σ (a symmetric factor is its own transpose), so
    G* = Σ Cᵀ (N + C Σ Cᵀ)⁻¹ (it printed 2 Σ Cᵀ (2N + C (CΣ)ᵀ + C Σ Cᵀ)⁻¹)."""
    d = dlsym.derive(
        {
            "name": "kalman_traces",
            "symbols": {
                "Sig": {"shape": ["n", "n"], "domain": "spd"},
                "N": {"shape": ["m", "m"], "domain": "spd"},
                "C": {"shape": ["m", "n"]},
                "G": {"shape": ["n", "m"]},
            },
            "dims": {"n": 4, "m": 2},
            "objective": "trace(Sig) - 2 * trace(G @ C @ Sig) + trace(G @ (C @ Sig @ C.T + N) @ G.T)",
            "wrt": "G",
            "derive": ["gradient", "stationary"],
        },
        verify=True,
    )
    assert d.result_display("gradient")["expr"] == "2*(G @ (N + C @ Sig @ C.T)) - 2*(Sig @ C.T)"
    assert d.result_display("stationary")["expr"] == "Sig @ C.T @ inv(N + C @ Sig @ C.T)"
    assert d.verification.passed, d.verification


def test_least_squares_with_an_intercept_is_solved_jointly():
    """mean((X w + b − y)²) wrt [w, b]: each condition holds the other (it was 'couples
    it with b'), but the gradients are jointly affine, so the stacked system gives both;
    against NumPy's lstsq of [X, 1], and a wrong intercept fails the joint check."""
    d = dlsym.derive(
        {
            "name": "intercept",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"]},
                "w": {"shape": ["n"]},
                "b": {},
            },
            "dims": {"m": 7, "n": 2},
            "objective": "mean((X @ w + b - y)**2)",
            "wrt": ["w", "b"],
            "derive": ["stationary"],
        }
    )
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((7, 2)), rng.standard_normal(7)
    star = d.function("stationary")(X=X, y=y, w=np.zeros(2), b=0.0)
    coef, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(7)]), y, rcond=None)
    np.testing.assert_allclose(star["w"], coef[:2], rtol=1e-10)
    assert float(star["b"]) == pytest.approx(coef[2], rel=1e-10)
    assert d.results["stationary"]["b"].given == ("w",)
    # the centred normal equations (the Schur complement of ∇²_b ℓ), not the stacked
    # −concatenate([concatenate([∇²_w ℓ, ∇²_w,b ℓ], axis=1), ...])⁻¹ concatenate([...])
    shown = d.result_display("stationary")["expr"]
    assert shown.startswith(
        "w: inv(X.T @ X - outer(X.T @ ones(m), X.T @ ones(m))/m) @ "
        "(X.T @ y - (X.T @ ones(m))*sum(y)/m); b: -sum(X @ inv("
    ), shown
    assert "concatenate" not in shown
    report = d.verify(points=8)
    assert report.passed, report
    r = d.results["stationary"]["b"]
    d.results["stationary"]["b"] = dataclasses.replace(r, expr=r.expr + 1e-3)
    d._functions.clear()
    assert not d.verify(points=8).passed


def test_a_bias_of_shape_one_is_broadcast_in_the_hessian():
    """b of shape [1] (torch's nn.Linear(n, 1).bias) in mean((X w + b − y)²): the
    Hessian block ∂²ℓ/∂w∂b was 2Xᵀ/m, of shape [n, m], and stationary ended in an
    internal error (exit 3). It is 2Xᵀ𝟏/m; the stationary point is lstsq's."""
    d = dlsym.derive(
        {
            "name": "bias1",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "y": {"shape": ["m"]},
                "w": {"shape": ["n"]},
                "b": {"shape": [1]},
            },
            "dims": {"m": 6, "n": 2},
            "objective": "mean((X @ w + b - y)**2)",
            "wrt": ["w", "b"],
            "derive": ["hessian", "stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    H = d.function("hessian")(X=X, y=y, w=np.zeros(2), b=np.zeros(1))
    np.testing.assert_allclose(H["w"]["b"], 2 * X.sum(axis=0)[:, None] / 6, rtol=1e-12)
    star = d.function("stationary")(X=X, y=y, w=np.zeros(2), b=np.zeros(1))
    coef, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(6)]), y, rcond=None)
    np.testing.assert_allclose(np.r_[star["w"], star["b"]], coef, rtol=1e-10)


def test_a_column_vectors_quadratic_form_reads_as_the_vectors():
    """((Xw − y)ᵀ(Xw − y))[0, 0]/2 of a column w [n, 1]: the results carried e₀e₀ᵀ of
    size 1, Xᵀ(Xw − y) @ outer(eye(1)[0], eye(1)[0]) and its inverse in w*. Against
    NumPy's lstsq."""
    d = dlsym.derive(
        {"name": "column", "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m", 1]},
         "w": {"shape": ["n", 1]}}, "dims": {"m": 5, "n": 2},
         "objective": "((X @ w - y).T @ (X @ w - y))[0, 0] / 2", "wrt": "w",
         "derive": ["gradient", "stationary"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("gradient")["expr"] == "X.T @ (X @ w - y)"
    assert d.result_display("stationary")["expr"] == "inv(X.T @ X) @ X.T @ y"
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((5, 2)), rng.standard_normal((5, 1))
    star = d.function("stationary")(X=X, y=y, w=np.zeros((2, 1)))
    np.testing.assert_allclose(star, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-10)


def test_the_newton_step_of_a_column_vector_logistic_regression():
    """w [n, 1], y [m, 1]: the Hessian's action Xᵀ(p ⊙ (1 − p) ⊙ (X Δ)) had no matrix
    form ("no closed form"); p ⊙ (1 − p), a column broadcast along X Δ's one column, is
    diag(p ⊙ (1 − p)) on the left: Δw = −(Xᵀ diag(p(1 − p)) X)⁻¹ Xᵀ(p − y), as the 1-D
    spelling gets. Against NumPy's solve of the textbook form."""
    d = dlsym.derive(
        {"name": "colvec_logistic", "symbols": {"X": {"shape": ["m", "n"]},
         "y": {"shape": ["m", 1], "domain": "unit_interval"}, "w": {"shape": ["n", 1]}},
         "dims": {"m": 6, "n": 2}, "define": {"p": "sigmoid(X @ w)"},
         "objective": "-sum(y * log(p) + (1 - y) * log(1 - p))", "wrt": "w",
         "derive": ["newton_step"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(7)
    X, y, w = rng.standard_normal((6, 2)), rng.uniform(size=(6, 1)), rng.standard_normal((2, 1))
    p = 1 / (1 + np.exp(-X @ w))
    want = -np.linalg.solve(X.T @ (p * (1 - p) * X), X.T @ (p - y))
    np.testing.assert_allclose(d.function("newton_step")(X=X, y=y, w=w), want, rtol=1e-10)


def test_a_joint_point_whose_corner_may_vanish_is_stacked():
    """wrt [w, b] with ∇²_b ℓ = 2q, q of any sign: b is not eliminated (the system
    [[2I + AAᵀ, a], [aᵀ, 2q]] is invertible at q = 0, its corner is not), and the stacked
    system has no linear term in w: a 0 without a shape in concatenate was exit 3."""
    d = dlsym.derive(
        {
            "name": "corner",
            "symbols": {
                "A": {"shape": ["n", "n"]},
                "a": {"shape": ["n"]},
                "w": {"shape": ["n"]},
                "b": {},
                "q": {},
            },
            "dims": {"n": 3},
            "objective": "0.5 * w @ A @ A.T @ w + w @ w + b * (a @ w) + q * b**2 - b",
            "wrt": ["w", "b"],
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert "concatenate" in d.result_display("stationary")["expr"]
    rng = np.random.default_rng(3)
    A, a = rng.standard_normal((3, 3)), rng.standard_normal(3)
    star = d.function("stationary")(A=A, a=a, q=0.0, w=np.zeros(3), b=0.0)
    H = np.block([[2 * np.eye(3) + A @ A.T, a[:, None]], [a[None, :], np.zeros((1, 1))]])
    x = np.linalg.solve(H, np.r_[np.zeros(3), 1.0])
    np.testing.assert_allclose(star["w"], x[:3], rtol=1e-10)
    assert float(star["b"]) == pytest.approx(x[3], rel=1e-10)


def test_a_quadratic_fit_in_three_scalars_is_solved_as_a_system():
    """sum((a x² + b x + c − y)²) wrt [a, b, c] at x = 300 ± 1 (temperatures in kelvin):
    Cramer's rule on 3×3 determinants of power sums (Σx⁴ ~ 6e10) cancelled to a 97 %
    off (exit 0, c46s F10), and the Newton step's to inf. Three scalars are the stacked system −H⁻¹ r, solved
    numerically: as close to numpy.polyfit as solving the normal equations gets."""
    d = dlsym.derive(
        {
            "name": "quadfit",
            "symbols": {"xs": {"shape": ["n"]}, "ys": {"shape": ["n"]}, "a": {}, "b": {}, "c": {}},
            "dims": {"n": 7},
            "objective": "sum((a * xs**2 + b * xs + c - ys)**2)",
            "wrt": ["a", "b", "c"],
            "derive": ["stationary", "newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    rng = np.random.default_rng(3)
    # the joint Newton step too: its 3×3 determinant of power sums rounded to 0 (inf)
    xs, ys = 300 + rng.standard_normal(7), rng.standard_normal(7)
    V = np.c_[xs**2, xs, np.ones(7)]
    want = -np.linalg.solve(2 * V.T @ V, -2 * V.T @ ys)
    step = d.function("newton_step")(xs=xs, ys=ys, a=0.0, b=0.0, c=0.0)
    np.testing.assert_allclose([step[k] for k in "abc"], want, rtol=1e-6)
    fn = d.function("stationary")
    for offset, spread, rtol in ((0.0, 1.0, 1e-10), (300.0, 1.0, 1e-3), (2000.0, 10.0, 1e-3)):
        xs = offset + spread * rng.standard_normal(7)
        ys = rng.standard_normal(7)
        u = (xs - offset) / spread  # the fit centred and scaled, read back in x
        c2, c1, c0 = np.polyfit(u, ys, 2)
        a = c2 / spread**2
        want = {
            "a": a,
            "b": c1 / spread - 2 * offset * a,
            "c": c0 - c1 * offset / spread + a * offset**2,
        }
        got = fn(xs=xs, ys=ys)
        fitted = got["a"] * xs**2 + got["b"] * xs + got["c"]
        np.testing.assert_allclose(got["a"], want["a"], rtol=rtol, err_msg=str(offset))
        np.testing.assert_allclose(
            fitted, want["a"] * xs**2 + want["b"] * xs + want["c"], rtol=rtol, atol=rtol
        )


def test_simple_linear_regression_reads_as_the_textbook():
    """sum((a x + b − y)²) wrt [a, b]: the slope (n Σxy − Σx Σy)/(n Σx² − (Σx)²) by
    Cramer's rule; it read −concatenate([concatenate([∇²_a ℓ, ...])])⁻¹ concatenate(
    [reshape(−2·1·sum(x ⊙ y), (1,)), ...]) with a* = x*[0]. Against numpy.polyfit."""
    d = dlsym.derive(
        {
            "name": "slr",
            "symbols": {"x": {"shape": ["n"]}, "y": {"shape": ["n"]}, "a": {}, "b": {}},
            "dims": {"n": 6},
            "objective": "sum((a * x + b - y)**2)",
            "wrt": ["a", "b"],
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    shown = d.result_display("stationary")["expr"]
    assert shown == (
        "a: (n*sum(x*y) - sum(x)*sum(y))/(n*sum(x**2) - sum(x)**2); "
        "b: (sum(x**2)*sum(y) - sum(x)*sum(x*y))/(n*sum(x**2) - sum(x)**2)"
    ), shown
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    star = d.function("stationary")(x=x, y=y, a=0.0, b=0.0)
    slope, intercept = np.polyfit(x, y, 1)
    assert float(star["a"]) == pytest.approx(slope, rel=1e-12)
    assert float(star["b"]) == pytest.approx(intercept, rel=1e-12)
    assert d.results["stationary"]["a"].given == ("b",)


def test_the_covariance_mle_keeps_the_centred_data_whole():
    """Σ* of a Gaussian with a given mean: (X − m)ᵀ(X − m)/n as the textbook writes it;
    the transpose went inside the broadcast, Xᵀ − m[:, None], shown with NumPy's
    indexing, (Xᵀ − m_{[:,new]})(X − m)/n. Against the sample covariance."""
    d = dlsym.derive(
        {
            "name": "cov_mle",
            "symbols": {
                "X": {"shape": ["n", "d"]},
                "m": {"shape": ["d"]},
                "S": {"shape": ["d", "d"], "domain": "spd"},
            },
            "dims": {"n": 8, "d": 3},
            "objective": "n / 2 * logdet(S) + 0.5 * trace(inv(S) @ (X - m).T @ (X - m))",
            "wrt": "S",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    shown = d.result_display("stationary")
    assert shown["expr"] == "((X - m).T @ (X - m))/n"
    assert r"\left(\mathbf{X} - \mathbf{m}\right)^{\top}" in shown["latex"]
    rng = np.random.default_rng(3)
    X, m = rng.standard_normal((8, 3)), rng.standard_normal(3)
    got = d.function("stationary")(X=X, m=m, S=np.eye(3))
    np.testing.assert_allclose(got, (X - m).T @ (X - m) / 8, rtol=1e-12)


def test_the_bernoulli_mle_is_the_sample_mean():
    """θ* of −Σ y log θ + (1 − y) log(1 − θ) is sum(y)/n: it read
    sum(y)/(sum(y) + sum(1 − y)), a sum of a broadcast 1 left unadded."""
    d = dlsym.derive(
        {
            "name": "bernoulli_mle",
            "symbols": {
                "y": {"shape": ["n"], "domain": "unit_interval"},
                "theta": {"domain": "unit_interval"},
            },
            "dims": {"n": 7},
            "objective": "-sum(y * log(theta) + (1 - y) * log(1 - theta))",
            "wrt": "theta",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("stationary")["expr"] == "sum(y)/n"
    y = np.array([0.1, 0.9, 0.4, 0.3, 0.8, 0.2, 0.6])
    assert float(d.function("stationary")(y=y, theta=0.5)) == pytest.approx(y.mean(), rel=1e-14)
    # a sum of positive entries is positive: λ* = n/sum(x) of the exponential's MLE
    # showed the condition n/sum(x) > 0
    d = dlsym.derive(
        {
            "name": "exponential_mle",
            "symbols": {"x": {"shape": ["n"], "domain": "positive"}, "lam": {"domain": "positive"}},
            "dims": {"n": 6},
            "objective": "-(n * log(lam) - lam * sum(x))",
            "wrt": "lam",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("stationary")["expr"] == "n/sum(x)"
    assert d.results["stationary"]["lam"].exists_where == ()


def test_a_counterexample_is_where_the_hessian_bends_down_most():
    """sigmoid(x) is not convex: the counterexample was the first drawn point where the
    second derivative is negative (x = 0.0012, eigenvalue -1.5e-4, at the inflection);
    it is now the drawn point with the most negative eigenvalue, near its minimum
    -0.0962 at x = 1.317."""
    d = dlsym.derive(
        {
            "name": "s",
            "symbols": {"x": {}},
            "objective": "sigmoid(x)",
            "wrt": "x",
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    v = d.results["convexity"]["x"].verdict
    assert v.convex is False and v.eigenvalue < -0.08, v
    x = float(v.point["x"])
    s = 1 / (1 + np.exp(-x))
    assert v.eigenvalue == pytest.approx(s * (1 - s) * (1 - 2 * s), rel=1e-9)


def test_products_of_exponentials_are_merged():
    """log(e^(x - a) + e^(a - x)): the Newton step read e^(x-a) e^(3a-3x)/4 -
    e^(3x-3a) e^(a-x)/4, whose e^(3u) overflowed at x - a = 250 where the step is
    finite; merged, (e^(2a-2x) - e^(2x-2a))/4, that is -sinh(2(x - a))/2."""
    d = dlsym.derive(
        {
            "name": "logcosh",
            "symbols": {"x": {}, "a": {}},
            "objective": "log(exp(x - a) + exp(a - x))",
            "wrt": "x",
            "derive": ["newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("newton_step")["expr"] == "exp(2*a - 2*x)/4 - exp(2*x - 2*a)/4"
    step = d.function("newton_step")
    assert float(step(x=250.0, a=0.0)) == pytest.approx(-np.sinh(500.0) / 2, rel=1e-12)


def test_a_one_point_simplex_and_mixed_entry_and_matrix_form_blocks():
    """Two exit-3 crashes of a hostile corpus: convexity on a simplex of size 1 (no
    direction to bend along: the eigenvalue check indexed an empty spectrum), and a
    joint Hessian whose blocks mix explicit entries and matrix form (negative indexes:
    the numeric function read entries of every block)."""
    d = dlsym.derive(
        {
            "name": "point",
            "symbols": {"p": {"shape": [1], "domain": "simplex"}},
            "objective": "sum(p*log(p))",
            "wrt": "p",
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    d = dlsym.derive(
        {
            "name": "mixed",
            "symbols": {"x": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}},
            "dims": {"n": 3},
            "objective": "x[-1]**2 + A[-1, -3]*x[0]",
            "wrt": ["x", "A"],
            "derive": ["gradient", "hessian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    x, A = np.array([0.3, -1.0, 2.0]), np.arange(9.0).reshape(3, 3) / 7
    h = d.function("hessian")(x=x, A=A)
    expected_xx = np.zeros((3, 3))
    expected_xx[2, 2] = 2.0
    np.testing.assert_allclose(h["x"]["x"], expected_xx)
    expected_xa = np.zeros((3, 3, 3))
    expected_xa[0, 2, 0] = 1.0  # d²/dx0 dA[2, 0]
    np.testing.assert_allclose(h["x"]["A"], expected_xa)
    np.testing.assert_allclose(h["A"]["x"], np.transpose(expected_xa, (1, 2, 0)))


def test_a_kink_that_breaks_convexity_is_found_by_a_chord():
    """minimum(x², 1): every piece's Hessian is 2 or 0, never negative, so the Hessian
    search found nothing ('undecided'); the chord between two drawn points passes below
    the graph at the midpoint. Checked by hand and by verification, which a wrong gap
    fails; convex objectives with kinks (relu, abs) get no such chord."""
    import dataclasses as dc

    d = dlsym.derive(
        {
            "name": "m",
            "symbols": {"x": {}},
            "objective": "minimum(x**2, 1)",
            "wrt": "x",
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"]["x"].verdict
    assert v.convex is False and v.other is not None
    a, b = float(v.point["x"]), float(v.other["x"])

    def f(x):
        return min(x * x, 1.0)

    assert v.gap == pytest.approx(f((a + b) / 2) - (f(a) + f(b)) / 2, rel=1e-12) and v.gap > 0
    assert d.verify(points=4).passed
    r = d.results["convexity"]["x"]
    d.results["convexity"]["x"] = dc.replace(r, verdict=dc.replace(v, gap=v.gap * 1.1))
    assert not d.verify(points=4).passed
    for convex in ("sum(relu(X @ w)) + sum(abs(w))", "norm(X @ w - y) + max(w)"):
        d = dlsym.derive(
            {
                "name": "k",
                "symbols": {
                    "X": {"shape": ["m", "n"]},
                    "y": {"shape": ["m"]},
                    "w": {"shape": ["n"]},
                },
                "dims": {"m": 4, "n": 3},
                "objective": convex,
                "wrt": "w",
                "derive": ["convexity"],
            }
        )
        assert d.results["convexity"]["w"].verdict.convex is not False, convex


def test_explicit_entries_are_shown_as_the_language_indexes_them(monkeypatch):
    """A Hessian with no matrix-form rule is written out entry by entry; its entries
    read X[0, 1] and w[0] (the internal entry names _e_X_0_1 were shown, in the JSON's
    expr too, which is not the expression language). Every operation has a rule today:
    logsumexp's is taken away."""
    from dlsym.calculus import _rules
    from dlsym.expr import _ops as ops

    monkeypatch.delitem(_rules.VJP_RULES, ops.logsumexp)
    d = dlsym.derive(
        {
            "name": "entries",
            "symbols": {"X": {"shape": ["m", "n"]}, "w": {"shape": ["n"]}},
            "dims": {"m": 2, "n": 2},
            "objective": "sum(logsumexp(outer(X @ w, w), axis=1))",
            "wrt": "w",
            "derive": ["hessian"],
        }
    )
    assert d.results["hessian"]["w"].method == "explicit entries at m=2, n=2"
    shown = d.result_display("hessian")
    assert "_e_" not in shown["expr"] + shown["latex"]
    assert shown["expr"].startswith("[[") and "w[0]*X[0, 0]" in shown["expr"]
    assert r"\mathbf{X}_{0, 0}" in shown["latex"]
    steps = d.markdown() + d.latex()
    assert "_e_" not in steps and r"\mathbf{X}_{0, 0}" in steps
    assert d.verify(points=8).passed


def _lse_outer_hessian(A, w):
    jax = jax_x64()
    f = lambda v: jax.numpy.sum(jax.nn.logsumexp(jax.numpy.outer(A @ v, v), axis=1))  # noqa: E731
    return np.asarray(jax.hessian(f)(w))


@pytest.mark.parametrize(
    "objective, truth",
    [
        # Σ_b X_bᵀ X_b: the gradient sums Xᵀ r over the batch, which no forward rule reads
        ("sum((X @ w - Y)**2)", lambda X, w: 2 * np.einsum("btn,btk->nk", X, X)),
        ("sum(logsumexp(outer(X[0] @ w, w), axis=1))", lambda X, w: _lse_outer_hessian(X[0], w)),
    ],
)
def test_a_vector_hessian_without_a_forward_rule_is_an_action_not_entries(objective, truth):
    """The Hessian in a vector whose gradient has no forward-mode Jacobian rule is its
    action H[Δ] by reverse mode once more, in matrix form at any size: it was explicit
    entries at the dims (X [B, T, n] least squares: 2 X[0, 0, 0]² + …), past the budget
    at small sizes, and the Taylor model refused it. Its entries against the truth."""
    d = dlsym.derive(
        {"name": "r3", "symbols": {"X": {"shape": ["B", "T", "n"]}, "w": {"shape": ["n"]},
         "Y": {"shape": ["B", "T"]}}, "dims": {"B": 2, "T": 3, "n": 2},
         "objective": objective, "wrt": "w", "derive": ["hessian", "taylor"]}
    )  # fmt: skip
    h = d.results["hessian"]["w"]
    assert h.method == "matrix form"
    assert "_e_" not in d.result_display("hessian")["expr"]
    rng = np.random.default_rng(3)
    X, w, Y = rng.standard_normal((2, 3, 2)), rng.standard_normal(2), rng.standard_normal((2, 3))
    np.testing.assert_allclose(d.function("hessian")(X=X, w=w, Y=Y), truth(X, w), rtol=1e-10)
    assert d.verify(points=4).passed


def test_least_squares_on_a_batch_of_rank_3_has_its_normal_equations():
    """X [B, T, n] @ w: the Hessian is 2 Σ_b X_bᵀ X_b in matrix form (it was entries at
    the dims), so the Newton step and the stationary point have closed forms (they were
    'no closed form'): w* against NumPy's least squares on the rows of the batch."""
    d = dlsym.derive(
        {"name": "r3", "symbols": {"X": {"shape": ["B", "T", "n"]}, "w": {"shape": ["n"]},
         "Y": {"shape": ["B", "T"]}}, "dims": {"B": 2, "T": 3, "n": 2},
         "objective": "sum((X @ w - Y)**2)", "wrt": "w",
         "derive": ["hessian", "stationary", "newton_step"]}
    )  # fmt: skip
    assert d.result_display("hessian")["expr"] == "2*sum(transpose(X, (0, 2, 1)) @ X, axis=0)"
    rng = np.random.default_rng(5)
    X, Y, w = rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 5)), rng.standard_normal(3)
    flat = np.linalg.lstsq(X.reshape(-1, 3), Y.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(d.function("stationary")(X=X, Y=Y), flat, rtol=1e-10)
    np.testing.assert_allclose(w + d.function("newton_step")(X=X, Y=Y, w=w), flat, rtol=1e-10)
    assert d.verify(points=4).passed


def test_an_isotropic_covariance_written_with_logdet_and_inv_has_its_mle():
    """logdet(v * eye(d)) is d log v, inv(v * eye(d)) is I / v and det(v * eye(d)) is
    v^d: the MLE of an isotropic Gaussian's variance written with them was "not affine
    in v, no closed form"; v* = sum(X²)/(N d)."""
    d = dlsym.derive(
        {"name": "iso", "symbols": {"X": {"shape": ["N", "d"]}, "v": {"domain": "positive"}},
         "dims": {"N": 6, "d": 3}, "wrt": "v", "derive": ["stationary"],
         "objective": "N / 2 * logdet(v * eye(d)) + 0.5 * trace(X @ inv(v * eye(d)) @ X.T)"},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    X = np.random.default_rng(2).standard_normal((6, 3))
    assert float(d.function("stationary")(X=X)) == pytest.approx(np.sum(X**2) / 18, rel=1e-12)
    d = dlsym.derive(
        {"name": "det", "symbols": {"v": {}}, "dims": {"d": 3}, "wrt": "v",
         "objective": "det(v * eye(d))"},
        verify=True,
    )  # fmt: skip
    assert d.result_display("gradient")["expr"] == "d*v**(d - 1)"
    assert d.verification.passed, d.verification


def test_least_squares_written_with_broadcasting_is_in_matrix_form():
    """sum(X * w, axis=1) is X @ w, and the adjoint sum(X * outer(r, 1), axis=0) is
    Xᵀ r: the gradient, the Hessian and the normal equations in matrix form (the Hessian
    was explicit entries and the stationary point 'no matrix form')."""
    d = dlsym.derive(
        {
            "name": "broadcast_ls",
            "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}, "w": {"shape": ["n"]}},
            "dims": {"m": 6, "n": 3},
            "objective": "sum((sum(X * w, axis=1) - y)**2)",
            "wrt": "w",
            "derive": ["gradient", "hessian", "stationary"],
        }
    )
    assert d.result_display("gradient")["expr"] == "2*(X.T @ (X @ w - y))"
    assert d.result_display("hessian")["expr"] == "2*(X.T @ X)"
    rng = np.random.default_rng(5)
    X, y, w = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=3)
    np.testing.assert_allclose(
        d.function("stationary")(X=X, y=y, w=w), np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-12
    )
    assert d.verify(points=8).passed


def test_weighted_multi_output_least_squares_has_its_closed_form():
    """c[:, None] * (X W − Y)² weights each row: the action 2 Xᵀ (c[:, None] ⊙ X Δ) is
    2 Xᵀ diag(c) X Δ, and W* = (Xᵀ diag(c) X)⁻¹ Xᵀ diag(c) Y (was 'no matrix form')."""
    d = dlsym.derive(
        {
            "name": "weighted_rows",
            "symbols": {
                "X": {"shape": ["m", "n"]},
                "Y": {"shape": ["m", "k"]},
                "W": {"shape": ["n", "k"]},
                "c": {"shape": ["m"], "domain": "positive"},
            },
            "dims": {"m": 7, "n": 3, "k": 2},
            "objective": "sum(c[:, None] * (X @ W - Y)**2)",
            "wrt": "W",
            "derive": ["stationary"],
        }
    )
    rng = np.random.default_rng(6)
    X, Y, W = rng.normal(size=(7, 3)), rng.normal(size=(7, 2)), rng.normal(size=(3, 2))
    c = rng.uniform(0.5, 2.0, size=7)
    C = np.diag(c)
    np.testing.assert_allclose(
        d.function("stationary")(X=X, Y=Y, W=W, c=c),
        np.linalg.solve(X.T @ C @ X, X.T @ C @ Y),
        rtol=1e-12,
    )
    assert d.verify(points=8).passed


def test_a_joint_result_for_a_scalar_reads_back():
    """A scalar's rows of the stacked Newton step print as (...)[n], n a dim: the parser
    refused a dim as an index ('must be an integer or a label'); a dim is an integer."""
    spec = {
        "name": "ridge_bias",
        "symbols": {
            "X": {"shape": ["m", "n"]},
            "y": {"shape": ["m"]},
            "w": {"shape": ["n"]},
            "b": {},
            "lam": {"domain": "positive"},
        },
        "dims": {"m": 7, "n": 3},
        "objective": "sum((X @ w + b - y)**2) / (2 * m) + lam * dot(w, w) / 2",
        "wrt": ["w", "b"],
        "derive": ["newton_step"],
    }
    d = dlsym.derive(spec)
    expr = d.results["newton_step"]["b"]
    text = d.result_display("newton_step")["wrt"]["b"]["expr"]
    assert text.endswith(")[n]"), text
    again = dlsym.derive({**spec, "name": "again", "objective": text, "wrt": "b", "derive": []})
    rng = np.random.default_rng(7)
    p = {
        "X": rng.normal(size=(7, 3)),
        "y": rng.normal(size=7),
        "w": rng.normal(size=3),
        "b": 0.3,
        "lam": 0.5,
    }
    assert expr.shape == ()
    assert again.function("objective")(**p) == pytest.approx(
        d.function("newton_step")(**p)["b"], rel=1e-12
    )


SOFTPLUS_TILT = {
    "name": "softplus_tilt",
    "symbols": {"x": {}, "a": {}, "b": {}},
    "objective": "softplus(a * x + b) - 0.3 * x",
    "wrt": "x",
    "derive": ["stationary"],
}


def test_a_stationary_point_real_only_under_a_condition_says_so():
    """softplus(a x + b) − 0.3 x has a stationary point only where a σ = 0.3 can hold,
    a > 3/10: sympy.solve's root log(3 e^{−b} / (10 a − 3)) / a came with no condition
    and failed verification at the drawn a below 3/10 (exit 1 on a right formula). It
    is given with its condition, shown in every output, and checked where it holds."""
    d = dlsym.derive(SOFTPLUS_TILT, verify=True)
    assert d.verification.passed, d.verification
    shown = d.result_display("stationary")
    assert shown["where"] == ["3*exp(-b)/(10*a - 3) > 0"]
    assert shown["where_latex"] == [r"\frac{3 e^{- b}}{10 a - 3} > 0"]
    (step,) = [s for s in d.steps if s.title == "Stationary point in x"]
    assert "only where the condition below holds" in step.justification
    assert d.step_latex(step).splitlines()[-1] == r"\frac{3 e^{- b}}{10 a - 3} &> 0"
    assert "\n──────── > 0\n10⋅a - 3" in d.step_text(step)
    x = d.function("stationary")(x=0.0, a=1.5, b=0.2)
    np.testing.assert_allclose(1.5 / (1 + np.exp(-(1.5 * x + 0.2))), 0.3, rtol=1e-12)


def test_a_conditional_stationary_point_is_still_checked(monkeypatch):
    """Checked where its condition holds, the root still fails when wrong; a condition
    dropped fails at the points where the root is not real; one that holds nowhere is
    a verification that cannot run (exit 2), not a pass."""
    from dlsym._errors import SpecError
    from dlsym.calculus import _second_order

    original = _second_order._entrywise

    def off(engine, n, g, wrt_symbols):
        value, why, method = original(engine, n, g, wrt_symbols)
        return value * 1.01, why, method

    with monkeypatch.context() as m:
        m.setattr(_second_order, "_entrywise", off)
        assert not dlsym.derive(SOFTPLUS_TILT).verify(points=16).passed
    with monkeypatch.context() as m:
        m.setattr(_second_order, "margins", lambda e, domain=None, unit=(): ())
        assert not dlsym.derive(SOFTPLUS_TILT).verify(points=16).passed
    a = sp.Symbol("a", real=True)
    with monkeypatch.context() as m:
        m.setattr(_second_order, "margins", lambda e, domain=None, unit=(): (-1 - a**2,))
        with pytest.raises(SpecError, match="hold at none of 16 points"):
            dlsym.derive(SOFTPLUS_TILT, verify=True)


@pytest.mark.parametrize(
    "closed_form, domain, expected",
    [
        ("log(a)/2", None, ["a"]),
        ("sqrt(a) + asin(b)", None, ["a", "1 - b", "b + 1"]),
        ("sqrt(c)", None, []),  # c is positive
        ("a", "positive", ["a"]),
        ("a", "unit_interval", ["a", "1 - a"]),
        ("c**2", "positive", []),
        ("log(-1 - a**2)", None, None),  # real nowhere
        ("-c", "positive", None),
        # u in (0, 1): affine in it, positive where its ends are >= 0 and one is > 0
        ("log(c*u + 2*(1 - u))", None, []),
        ("log(c*u/(c*u + 2*(1 - u)))", None, []),  # over one fraction: each part
        ("c*u/(c*u + 2*(1 - u))", "unit_interval", []),  # the prior-weighted D* in (0, 1)
        ("log(1 - 2*u)", None, ["1 - 2*u"]),  # -1 at u = 1: a real condition
        ("log(u**2 - u + 1)", None, ["u**2 - u + 1"]),  # not affine: no proof this way
    ],
)
def test_the_conditions_under_which_a_closed_form_is_real(closed_form, domain, expected):
    from dlsym.calculus._exists import margins

    a, b = sp.symbols("a b", real=True)
    c, u = sp.symbols("c u", positive=True)  # u of the unit interval, as dlsym declares it
    names = {"a": a, "b": b, "c": c, "u": u}
    found = margins(sp.sympify(closed_form, locals=names), domain, frozenset({u}))
    assert (None if found is None else sorted(str(m) for m in found)) == (
        None if expected is None else sorted(expected)
    )


def test_of_several_roots_the_one_local_minimum_is_the_stationary_point(monkeypatch):
    """x³/3 − c x (c > 0) has ∇ℓ = 0 at ±√c, and the second derivative 2x is positive
    only at √c: that one, the local minimum (it was "no closed form: 2 solutions").
    Checked as a root and as a minimum: −√c, a maximum, passes the root check and
    fails the eigenvalue one. Where no root is the only minimum (the double well's ±√a
    beside 0), no closed form, with the roots listed."""
    from dlsym.calculus import _second_order

    spec = {
        "name": "cubic",
        "symbols": {"x": {"shape": ["n"]}, "c": {"domain": "positive"}},
        "dims": {"n": 3},
        "objective": "sum(x**3 / 3 - c * x)",
        "wrt": "x",
        "derive": ["stationary"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("stationary")["expr"] == "sqrt(c)*ones(n)"
    assert d.results["stationary"]["x"].method == _second_order.MINIMUM
    np.testing.assert_allclose(d.function("stationary")(x=np.zeros(3), c=2.0), np.sqrt(2.0))
    checks = [c.reference for c in d.verification.checks if c.kind == "stationary"]
    assert "eigvalsh(jax.hessian) >= 0 at the stationary point" in checks
    monkeypatch.setattr(_second_order, "_one_minimum", lambda x, e, found: min(found, key=str))
    wrong = dlsym.derive(spec).verify(points=8)
    assert not wrong.passed
    (failed,) = [c for c in wrong.checks if not c.passed]
    assert failed.reference.startswith("eigvalsh(jax.hessian)")
    monkeypatch.undo()
    well = dlsym.derive({**spec, "objective": "sum(x**4 / 4 - c * x**2 / 2)"})
    (note,) = well.notes
    assert "3 solutions (sympy.solve: 0, -sqrt(c), sqrt(c))" in note


LINEAR_LAYER_LS = {
    "name": "linear_layer_ls",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "Y": {"shape": ["m", "k"]},
        "W": {"shape": ["n", "k"]},
        "b": {"shape": ["k"]},
    },
    "dims": {"m": 6, "n": 3, "k": 2},
    "objective": "sum((X @ W + b - Y)**2)",
    "wrt": ["W", "b"],
    "derive": ["stationary"],
}


def test_a_matrix_and_a_bias_are_solved_by_eliminating_the_bias(monkeypatch):
    """‖X W + b − Y‖² in W and b: stacking a matrix with a vector has no matrix form
    (it was "W couples with b; b couples with W"). b is solved for any W, b* = mean of
    the rows of Y − X W, put into W's condition: the centred normal equations
    W* = (XᵀX − s sᵀ/m)⁻¹ Xᵀ(Y − 1 ȳᵀ), s = Xᵀ1; b* at W*. Equal to least squares on
    [X, 1]; verified jointly, and a wrong W* fails."""
    from dlsym.calculus import _second_order

    d = dlsym.derive(LINEAR_LAYER_LS, verify=True)
    assert d.verification.passed, d.verification
    shown = d.result_display("stationary")["wrt"]
    assert shown["W"]["expr"] == (
        "inv(X.T @ X - outer(sum(X, axis=0), sum(X, axis=0))/m) @ X.T @ (Y - sum(Y, axis=0)/m)"
    )
    titles = [s.title for s in d.steps]
    assert "Stationary point in b for any W" in titles
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    got = d.function("stationary")(X=X, Y=Y, W=np.zeros((3, 2)), b=np.zeros(2))
    stacked, *_ = np.linalg.lstsq(np.hstack([X, np.ones((6, 1))]), Y, rcond=None)
    np.testing.assert_allclose(got["W"], stacked[:3], rtol=1e-10)
    np.testing.assert_allclose(got["b"], stacked[3], rtol=1e-10)
    original = _second_order._matrix_solved

    def off(alg, name, action, r, delta):
        value, why, method = original(alg, name, action, r, delta)
        return value * 1.01, why, method

    monkeypatch.setattr(_second_order, "_matrix_solved", off)
    assert not dlsym.derive(LINEAR_LAYER_LS).verify(points=8).passed


@pytest.mark.parametrize(
    "objective, why",
    [
        # cos(x) = 0 at π/2 + kπ: sympy.solve's two were taken for all of them
        ("sin(x)", "through a periodic function"),
        # a piecewise gradient (the readable form crashed on its merged masks)
        ("where(x > 0, (x - 1)**2, x**2 + 1)", "the gradient has kinks in x"),
    ],
)
def test_a_stationary_point_that_is_not_one_point_has_no_closed_form(objective, why):
    d = dlsym.derive(
        {
            "name": "s",
            "symbols": {"x": {}},
            "objective": objective,
            "wrt": "x",
            "derive": ["stationary"],
        },
        verify=True,
    )
    (note,) = d.notes
    assert why in note
    assert d.verification.passed


def test_a_newton_step_is_compared_where_it_exists():
    """sum(|x|³) has Hessian 6|x|, singular on the kink x = 0 where verification draws
    half its points: both steps are nan there (no Newton step), which failed (exit 1);
    those points are said and left out, the others compared."""
    d = dlsym.derive(
        {
            "name": "cubic_abs",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 2},
            "objective": "sum(abs(x)**3)",
            "wrt": "x",
            "derive": ["newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    (check,) = [c for c in d.verification.checks if c.kind == "newton_step"]
    assert "points not compared: both steps are not finite there" in check.note
    np.testing.assert_allclose(d.function("newton_step")(x=np.array([2.0, -4.0])), [-1.0, 2.0])


@pytest.mark.parametrize(
    "domain, objective, convex",
    [
        ("simplex", "sum(p * log(p))", True),  # negative entropy on the simplex
        ("spd", "trace(inv(S))", True),  # convex on the spd cone
        ("spd", "-trace(inv(S))", None),
    ],
)
def test_convexity_on_the_simplex_and_the_spd_cone(domain, objective, convex):
    """Were undecided: p log p needs p >= 0, which a simplex's entries are; tr(S⁻¹) is
    convex on the spd cone (B&V Exercise 3.18), checked along symmetric directions."""
    name = "p" if domain == "simplex" else "S"
    shape = ["n"] if domain == "simplex" else ["n", "n"]
    d = dlsym.derive(
        {
            "name": "domains",
            "symbols": {name: {"shape": shape, "domain": domain}},
            "dims": {"n": 3},
            "objective": objective,
            "wrt": name,
            "derive": ["convexity"],
        }
    )
    v = d.results["convexity"][name].verdict
    assert (v.convex is True) == bool(convex), v.reason
    assert d.verify(points=8).passed


def test_a_counterexample_is_checked_by_the_values_of_f(monkeypatch):
    """A counterexample's eigenvalue is checked again, and so is f's own bend there (its
    second difference along the eigenvector): an eigenvalue of round-off would pass
    the first check and fails the second."""
    from dlsym.sections.calculus import _verify

    spec = {
        "name": "log_squared",
        "symbols": {"x": {"domain": "positive"}},
        "objective": "log(x)**2",
        "wrt": "x",
        "derive": ["convexity"],
    }
    d = dlsym.derive(spec, verify=True)
    v = d.results["convexity"]["x"].verdict
    assert v.convex is False and v.point["x"] > np.e  # log(x)² bends down past e only
    assert d.verification.passed
    references = [c.reference for c in d.verification.checks]
    assert "f's second difference along the eigenvector, negative" in references
    monkeypatch.setattr(_verify, "bends_down", lambda *args: False)
    assert not d.verify(points=4).passed


def test_the_kalman_gain_of_one_sensor_written_with_outer_products():
    """tr((I − k hᵀ) P (I − k hᵀ)ᵀ) + r kᵀk in k: its Hessian had no matrix form (the
    Jacobian of (I − k hᵀ) P h, a matrix holding k times a vector), so no stationary
    point; term by term, (k hᵀ) v = k (hᵀ v): k* = P h / (r + hᵀ P h), the textbook gain."""
    d = dlsym.derive(
        {
            "name": "gain",
            "symbols": {
                "P": {"shape": ["n", "n"], "domain": "spd"},
                "h": {"shape": ["n"]},
                "r": {"domain": "positive"},
                "k": {"shape": ["n"]},
            },
            "dims": {"n": 3},
            "objective": "trace((eye(n) - outer(k, h)) @ P @ (eye(n) - outer(k, h)).T) + r * k @ k",
            "wrt": "k",
            "derive": ["hessian", "stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("hessian")["expr"] == "2*(r + h @ P @ h)*eye(n)"
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3))
    P, h = A @ A.T + np.eye(3), rng.normal(size=3)
    got = d.function("stationary")(P=P, h=h, r=0.5)
    np.testing.assert_allclose(got, P @ h / (0.5 + h @ P @ h), rtol=1e-12)


def test_least_squares_written_with_einsum_has_its_normal_equations():
    """einsum('ij,j->i', X, w) had no Jacobian rule, so no matrix-form Hessian and no
    stationary point; an einsum that is a product is differentiated as that product,
    and the solution reads as one: (XᵀX)⁻¹ Xᵀ y."""
    d = dlsym.derive(
        {
            "name": "ls_einsum",
            "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]}, "w": {"shape": ["n"]}},
            "dims": {"m": 4, "n": 2},
            "objective": "sum((einsum('ij,j->i', X, w) - y)**2)",
            "wrt": "w",
            "derive": ["hessian", "stationary"],
        },
        verify=True,
    )
    assert d.verification.passed
    assert d.result_display("hessian")["expr"] == "2*(X.T @ X)"
    assert d.result_display("stationary")["expr"] == "inv(X.T @ X) @ X.T @ y"


def test_an_ill_conditioned_newton_step_is_held_to_its_residual():
    """sum(exp(A x)) with a 30×30 A: jax.hessian's condition number reaches 1e16 at
    drawn points, where jnp.linalg.solve's step and the derived one differed by 5%
    (exit 1 on a right step). There the derived step's residual H Δ + g is held to
    16 κ ε, and a step 1% off still fails."""
    spec = {
        "name": "ill",
        "symbols": {"x": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}},
        "dims": {"n": 30},
        "objective": "sum(exp(A @ x))",
        "wrt": "x",
        "derive": ["newton_step"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    (residual,) = [c for c in d.verification.checks if c.reference.startswith("the residual")]
    assert "condition number" in residual.note
    r = d.results["newton_step"]["x"]
    d.results["newton_step"]["x"] = dataclasses.replace(r, expr=r.expr * sp.Rational(101, 100))
    d._functions.clear()
    assert not d.verify().passed


def test_logsumexp_and_softplus_written_out_have_finite_hessians():
    """log(sum(exp(x))) + sum(log(1 + exp(x))): its Hessian was exp(x)/sum(exp(x))
    and exp(x)/(1 + exp(x)) forms, nan at x = (800, 0, 1) in every backend; written out,
    they are differentiated as logsumexp and softplus, and equal jax.hessian there."""
    import jax

    jax.config.update("jax_enable_x64", True)
    d = dlsym.derive(
        {
            "name": "written_out",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "log(sum(exp(x))) + sum(log(1 + exp(x)))",
            "wrt": "x",
            "derive": ["gradient", "hessian"],
        },
        verify=True,
    )
    assert d.verification.passed
    assert d.result_display("gradient")["expr"] == "sigmoid(x) + softmax(x)"
    x = np.array([800.0, 0.0, 1.0])
    truth = jax.hessian(lambda v: jax.nn.logsumexp(v) + jax.numpy.sum(jax.nn.softplus(v)))(x)
    for backend in ("numpy", "jax"):
        got = np.asarray(d.function("hessian", backend=backend)(x=x))
        np.testing.assert_allclose(got, np.asarray(truth), atol=1e-15)


def _softmax_bias_hessian(targets: dict):
    """(spec, derivation, jax.hessian of the same loss) of the mean softmax cross-entropy
    of A + b, b broadcast over the rows, with the targets Y declared ``targets``: its
    Hessian in b is verified and in matrix form."""
    import jax

    spec = {
        "name": "bias",
        "symbols": {"A": {"shape": ["B", "k"]}, "Y": targets, "b": {"shape": ["k"]}},
        "dims": {"B": 3, "k": 3},
        "objective": "-mean(sum(Y * log_softmax(A + b, axis=1), axis=1))",
        "wrt": "b",
        "derive": ["hessian"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert d.results["hessian"]["b"].method == "matrix form"

    def truth(A, Y, b):
        def f(b):
            return -jax.numpy.mean(jax.numpy.sum(Y * jax.nn.log_softmax(A + b, axis=1), axis=1))

        return np.asarray(jax.hessian(f)(b))

    return spec, d, truth


def test_the_softmax_hessian_in_a_bias_broadcast_over_a_batch_has_a_matrix_form():
    """∇²_b of mean softmax cross-entropy of A + b (b broadcast over the rows) is
    (diag(sum(P, 0)) − PᵀP)/B: the Jacobian of a column sum of the softmax's VJP had
    no rule (explicit entries past the 50 s budget, and with integer labels a crash,
    exit 3: round 32). Against jax.hessian, and convex with one-hot labels."""
    spec, d, truth = _softmax_bias_hessian({"shape": ["B", "k"], "domain": "onehot"})
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    Y = np.eye(3)[[0, 2, 1, 1]]
    P = np.exp(A + b) / np.exp(A + b).sum(axis=1, keepdims=True)
    want = (np.diag(P.sum(axis=0)) - P.T @ P) / 4
    np.testing.assert_allclose(truth(A, Y, b), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d.function("hessian")(A=A, Y=Y, b=b), want, rtol=1e-12, atol=1e-15)
    labels = {
        **spec,
        "symbols": {**spec["symbols"], "y": {"shape": ["B"], "domain": {"index": "k"}}},
        "objective": "-sum(onehot(y, k) * log_softmax(A + b, axis=1))",
        "derive": ["convexity"],
    }
    del labels["symbols"]["Y"]
    d = dlsym.derive(labels, verify=True)
    assert d.verification.passed, d.verification
    assert d.results["convexity"]["b"].verdict.convex is True


def test_a_define_reads_as_its_text_in_a_joint_gaussian_mle():
    """With define Xc: X − μ the adjoint of Xc is Xc S⁻¹ + Xc S⁻ᵀ, and the rows' sum kept
    S⁻¹ + S⁻ᵀ apart from it: 'μ couples with S', where the same objective written inline
    solved (round 32). A sum of products with one left factor is A (B + C) first."""
    spec = {
        "name": "mvn",
        "symbols": {
            "X": {"shape": ["N", "d"]},
            "mu": {"shape": ["d"]},
            "S": {"shape": ["d", "d"], "domain": "spd"},
        },
        "dims": {"N": 8, "d": 2},
        "define": {"Xc": "X - mu"},
        "objective": "N / 2 * logdet(S) + 0.5 * trace(Xc @ inv(S) @ Xc.T)",
        "wrt": ["mu", "S"],
        "derive": ["stationary"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    assert not d.notes
    X = np.random.default_rng(2).standard_normal((8, 2))
    got = d.function("stationary")(X=X, mu=np.zeros(2), S=np.eye(2))
    np.testing.assert_allclose(got["mu"], X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(got["S"], np.cov(X.T, bias=True), rtol=1e-12)


@pytest.mark.parametrize(
    "domain, verdict",
    [("positive", "convex"), ("real", "not convex")],
)
def test_quadratic_over_linear_is_convex_where_the_denominator_is_positive(domain, verdict):
    """η²/(2τ) − log(τ)/2 − η x + τ x²/2, a Gaussian's negative log-likelihood in its
    natural parameters, is jointly convex for τ > 0 (g²/v, B&V Example 3.18; undecided in
    round 32); on a real τ it is not, and a counterexample is found."""
    d = dlsym.derive(
        {
            "name": "natural",
            "symbols": {"x": {}, "eta": {}, "tau": {"domain": domain}},
            "objective": "eta**2 / (2 * tau) - 0.5 * log(tau) - eta * x + tau * x**2 / 2"
            if domain == "positive"
            else "eta**2 / (2 * tau) - eta * x + tau * x**2 / 2",
            "wrt": ["eta", "tau"],
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.result_display("convexity")["verdict"] == verdict
    assert d.verification.passed, d.verification


def test_the_probit_negative_log_likelihood_is_proven_convex():
    """−mean(y log Φ(z) + (1 − y) log(1 − Φ(z))), Φ written with erf: log Φ of an affine
    argument is concave (Φ is log-concave), so the probit loss is convex in (w, b)
    (undecided in round 32); a sign flipped is not proven."""
    spec = {
        "name": "probit",
        "symbols": {
            "X": {"shape": ["m", "n"]},
            "y": {"shape": ["m"], "domain": "unit_interval"},
            "w": {"shape": ["n"]},
            "b": {},
        },
        "dims": {"m": 6, "n": 2},
        "define": {"z": "X @ w + b", "F": "0.5 * erf(z / sqrt(2)) + 0.5"},
        "objective": "-mean(y * log(F) + (1 - y) * log(1 - F))",
        "wrt": ["w", "b"],
        "derive": ["convexity"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.result_display("convexity")["verdict"] == "convex"
    assert "Φ" in d.result_display("convexity")["reason"]
    assert d.verification.passed, d.verification
    flipped = dlsym.derive({**spec, "objective": "mean(y * log(F) + (1 - y) * log(1 - F))"})
    assert flipped.result_display("convexity")["verdict"] != "convex"


def test_the_softmax_hessian_in_a_bias_with_real_targets():
    """Y real (rows not summing to 1): ∇²_b = (diag(Pᵀ r) − Pᵀ diag(r) P)/B with r the
    row sums of Y; sum(A ⊙ outer(u, c), axis=0) = (Aᵀ u) ⊙ c had no rule, and the
    Hessian ran past the 50 s budget (the round-32 regression re-run)."""
    _, d, truth = _softmax_bias_hessian({"shape": ["B", "k"]})
    rng = np.random.default_rng(1)
    A, Y, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(
        d.function("hessian")(A=A, Y=Y, b=b), truth(A, Y, b), rtol=1e-12, atol=1e-14
    )


def test_a_root_outside_the_language_is_no_closed_form_with_its_value():
    """exp(z) − c z + λ z²/2: sympy.solve finds z* = c/λ − W(e^(c/λ)/λ), and writing its
    code raised 'no code for LambertW' (exit 3). No closed form, said with the root; a
    gradient check of that root (by scipy's W) shows the note's formula is the point."""
    from scipy.special import lambertw

    d = dlsym.derive(
        {
            "name": "lambert",
            "symbols": {"c": {}, "lam": {"domain": "positive"}, "z": {}},
            "objective": "exp(z) - c * z + 0.5 * lam * z**2",
            "wrt": "z",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    (note,) = d.notes
    assert "the root holds LambertW" in note and "c/lam - LambertW(exp(c/lam)/lam)" in note
    c, lam = 0.7, 1.3
    z = c / lam - lambertw(np.exp(c / lam) / lam).real
    assert np.exp(z) - c + lam * z == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("domain, proven", [("positive", True), (None, False)])
def test_a_weighted_logsumexp_is_convex_for_positive_weights(domain, proven):
    """log(sum(c * exp(x))) is logsumexp(x + log c) for c > 0: convex by the composition
    rules (undecided in round 34: the rule read only sums written term by term). With c
    of any sign no proof is claimed."""
    c = {"shape": ["n"], **({"domain": domain} if domain else {})}
    d = dlsym.derive(
        {
            "name": "wlse",
            "symbols": {"c": c, "x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "log(sum(c * exp(x)))",
            "wrt": "x",
            "derive": ["convexity"],
        },
        verify=proven,
    )
    why = d.steps[-1].justification
    assert ("log-sum-exp of $u + \\log c$" in why) == proven, why
    if proven:
        assert d.verification.passed, d.verification


def test_a_convexity_proof_leaves_out_points_where_the_hessian_overflows():
    """exp(1000 x) is convex; at the drawn x past 0.71 its Hessian overflows float64 and
    the check compared nan (exit 1). Those points say nothing of the curvature: left
    out, said in the check's note; the others decide."""
    d = dlsym.derive(
        {
            "name": "steep",
            "symbols": {"x": {}},
            "objective": "exp(1000*x)",
            "wrt": "x",
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.result_display("convexity")["expr"] == "convex"
    assert d.verification.passed, d.verification
    eig = next(c for c in d.verification.checks if c.reference.startswith("eigvalsh"))
    assert "left out: the Hessian overflows" in eig.note


def test_a_stationary_points_tolerance_follows_the_hessians_condition_number():
    """Least squares with A 1000 × 1000 (κ(AᵀA) near 1e8): the right x* and the Newton
    step's differed by 2e-7 relative, past rtol 1e-7 (exit 1). Both solve H x = −r, each
    within about κ ε: the stationary check's rtol is at least 16 κ ε, said."""
    import jax

    from dlsym.sections.calculus._verify import _conditioned_rtol

    def objective(x):
        return 0.5 * (1e10 * x[0] ** 2 + x[1] ** 2)

    points = [jax.numpy.asarray(np.ones((4, 2)))]
    tol, note = _conditioned_rtol(jax, objective, 0, points, "float64", 1e-7)
    assert tol == pytest.approx(16 * 1e10 * np.finfo(float).eps, rel=1e-6)
    assert "condition number κ up to 1e+10" in note
    well = lambda x: 0.5 * (x[0] ** 2 + x[1] ** 2)  # noqa: E731
    assert _conditioned_rtol(jax, well, 0, points, "float64", 1e-7) == (1e-7, "")


@pytest.mark.parametrize(
    "objective, said",
    [
        ("3.0 + 0 * sum(x)", "does not depend on x: every point is stationary"),
        ("sum(x) + 1", "is linear in x: no stationary point"),
    ],
)
def test_a_constant_objective_is_not_said_to_have_no_stationary_point(objective, said):
    """A constant's gradient is 0 everywhere: 'linear, no stationary point' was wrong."""
    d = dlsym.derive(
        {
            "name": "flat",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": objective,
            "wrt": "x",
            "derive": ["stationary"],
        }
    )
    assert any(said in n for n in d.notes), d.notes


@pytest.mark.parametrize(
    "dims, domain, said",
    [
        # fewer rows than columns: XᵀX has rank at most 3 of 5, singular at λ = 0
        ({"m": 3, "n": 5}, "nonnegative", True),
        ({"m": 3, "n": 5}, "positive", False),  # λ = 0 is outside the domain
        ({"m": 5, "n": 3}, "nonnegative", False),  # XᵀX may be invertible at λ = 0
    ],
)
def test_a_stationary_point_says_where_its_inverse_is_singular(dims, domain, said):
    """Ridge's w* = (λI + XᵀX)⁻¹ Xᵀ y at λ = 0 with m < n inverts a singular matrix:
    there the stationary points are a whole affine set (or none), and the step says so
    rather than hand over a closed form that is nan there."""
    spec = {
        **RIDGE,
        "dims": dims,
        "symbols": {**RIDGE["symbols"], "lam": {"domain": domain}},
        "derive": ["stationary"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    why = next(s.justification for s in d.steps if s.title == "Stationary point in w")
    assert ("at lam = 0 the matrix it inverts is singular (rank at most 3 < 5" in why) == said
    if said:  # at λ = 0 the closed form is nan indeed: singular, not a rounding artefact
        rng = np.random.default_rng(0)
        X = rng.normal(size=(3, 5))
        assert np.linalg.matrix_rank(X.T @ X) == 3


@pytest.mark.parametrize("domain, said", [("nonnegative", True), ("positive", False)])
def test_a_scalar_stationary_point_says_where_it_divides_by_0(domain, said):
    """x* = b/a of a x²/2 − b x: at a = 0 (inside a nonnegative a) the gradient is −b,
    0 nowhere or everywhere."""
    d = dlsym.derive(
        {
            "name": "sc",
            "symbols": {"x": {}, "a": {"domain": domain}, "b": {}},
            "objective": "a * x**2 / 2 - b * x",
            "wrt": "x",
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("stationary")["expr"] == "b/a"
    why = next(s.justification for s in d.steps if s.title == "Stationary point in x")
    assert ("at a = 0 it divides by 0" in why) == said


SPD_N = {"shape": ["n", "n"], "domain": "spd"}


@pytest.mark.parametrize(
    "objective, symbols, wrt, verdict",
    [
        # a matrix variable's Hessian acts as 2 A Δ or 2 Δ S: ⟨Δ, M Δ N⟩ >= 0 for PSD
        # M, N (undecided before, for the matrix quadratic and the Kalman gain's trace)
        (
            "trace(X.T @ A @ X) - 2 * trace(B.T @ X)",
            {"X": {"shape": ["n", "k"]}, "B": {"shape": ["n", "k"]}, "A": SPD_N},
            "X",
            "convex",
        ),
        (
            "trace(A @ X @ S @ X.T)",
            {"X": {"shape": ["n", "k"]}, "A": SPD_N, "S": {"shape": ["k", "k"], "domain": "spd"}},
            "X",
            "convex",
        ),
        # A of no sign: no proof, and a counterexample is found
        (
            "trace(X.T @ A @ X)",
            {"X": {"shape": ["n", "k"]}, "A": {"shape": ["n", "n"]}},
            "X",
            "not convex",
        ),
        ("-trace(X.T @ A @ X)", {"X": {"shape": ["n", "k"]}, "A": SPD_N}, "X", "not convex"),
        # the information filter's MAP objective: P⁻¹ + Hᵀ R⁻¹ H, an inverse of an spd
        # matrix and a congruence of one
        (
            "(x - m) @ inv(P) @ (x - m) / 2 + (z - H @ x) @ inv(R) @ (z - H @ x) / 2",
            {
                "x": {"shape": ["n"]},
                "m": {"shape": ["n"]},
                "z": {"shape": ["k"]},
                "H": {"shape": ["k", "n"]},
                "P": SPD_N,
                "R": {"shape": ["k", "k"], "domain": "spd"},
            },
            "x",
            "convex",
        ),
    ],
)
def test_convexity_of_matrix_quadratics_and_information_forms(objective, symbols, wrt, verdict):
    d = dlsym.derive(
        {
            "name": "cvx",
            "symbols": symbols,
            "dims": {"n": 3, "k": 2},
            "objective": objective,
            "wrt": wrt,
            "derive": ["convexity"],
        },
        verify=True,
    )
    assert d.result_display("convexity")["expr"] == verdict
    assert d.verification.passed, d.verification


def test_scalars_whose_conditions_hold_each_other_are_solved_together():
    """Rosenbrock's (1 − x)² + 100(y − x²)²: x's condition alone is a cubic in y (three
    roots), y's holds x; together the polynomial system has the one point (1, 1) ("no
    closed form" for both before). Where the system has several real points ((xy − 1)²
    + (x − y)²: (1, 1), (−1, −1) and (0, 0)), none is "the" point."""
    d = dlsym.derive(
        {
            "name": "rosenbrock",
            "symbols": {"x": {}, "y": {}},
            "objective": "(1 - x)**2 + 100 * (y - x**2)**2",
            "wrt": ["x", "y"],
            "derive": ["stationary"],
        },
        verify=True,
    )
    shown = d.result_display("stationary")["wrt"]
    assert (shown["x"]["expr"], shown["y"]["expr"]) == ("1", "1"), shown
    assert d.verification.passed, d.verification
    d = dlsym.derive(
        {
            "name": "several",
            "symbols": {"x": {}, "y": {}},
            "objective": "(x * y - 1)**2 + (x - y)**2",
            "wrt": ["x", "y"],
            "derive": ["stationary"],
        },
        verify=True,
    )
    assert d.result_display("stationary")["wrt"]["x"]["expr"].startswith("no closed form")


def _convexity(objective, domain=None):
    x = {"domain": domain} if domain else {}
    d = dlsym.derive(
        {"name": "c", "symbols": {"x": x}, "objective": objective, "wrt": "x",
         "derive": ["convexity"]},
        verify=True,
    )  # fmt: skip
    return d.results["convexity"]["x"].verdict, d.verification.passed


@pytest.mark.parametrize(
    "objective, domain, convex",
    [
        # a pole inside the domain: the Hessian 6/(x − 5)⁴ >= 0 wherever f is defined, and
        # 1/(x − 5)² was "proved" convex (exit 0): the chord over 5 passes under the pole
        ("1/(x - 5)**2", None, None),
        # the chord from a drawn negative x to a positive one passes under the pole at 0
        ("1/x**2", None, False),
        ("-log(x**2)", None, False),
        ("x**2 + 1/x**2", None, False),
        # a pole on the domain's boundary, a log of an affine or concave argument: the
        # domain stays convex (+∞ outside, the convention of convex analysis)
        ("1/x**2", "positive", True),
        ("1/x", "nonnegative", True),
        ("-log(x)", None, True),
        ("-log(1 - x**2)", None, True),
    ],
)
def test_a_convexity_proof_needs_a_convex_domain(objective, domain, convex):
    verdict, passed = _convexity(objective, domain)
    assert verdict.convex is convex, verdict.reason
    assert passed
    if convex is None:
        assert "a pole" in verdict.reason


def test_no_counterexample_where_the_objective_is_not_defined():
    """x log x on a real x: its Hessian 1/x is negative at x = -0.27, where x log x is
    nan; that was given as the counterexample, and verification failed it (exit 1)."""
    verdict, passed = _convexity("x * log(x)")
    assert verdict.convex is None and passed


def test_log_cosh_written_with_exp_has_the_tanh_forms_and_stays_finite():
    """log((e^(ax) + e^(−ax))/2): the gradient was (a e^(2ax) − a)/(1 + e^(2ax)), nan at
    a x = 400 where the objective is finite, and the Hessian 4a² e^(2ax)/(1 + e^(2ax))²
    the same; a tanh(a x) and a²(1 − tanh²(a x)) are the textbook's, finite anywhere."""
    d = dlsym.derive(
        {"name": "lc", "symbols": {"x": {}, "a": {}},
         "define": {"c": "(exp(a * x) + exp(-a * x)) / 2"}, "objective": "log(c)",
         "wrt": "x", "derive": ["gradient", "hessian"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("gradient")["expr"] == "a*tanh(a*x)"
    assert "tanh" in d.result_display("hessian")["expr"]
    for x in (400.0, -400.0, 0.3):
        assert d.function("gradient")(x=x, a=1.0) == pytest.approx(np.tanh(x), rel=1e-14)
        sech2 = 4 * np.exp(-2 * abs(x)) / (1 + np.exp(-2 * abs(x))) ** 2
        assert d.function("hessian")(x=x, a=1.0) == pytest.approx(sech2, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("objective", ["(x - y)**4", "exp(x + 2*y)"])
def test_a_joint_newton_step_of_scalars_with_a_rank_one_hessian_is_not_defined(objective):
    """H = 12(x − y)²[[1, −1], [−1, 1]] and e^(x+2y)[[1, 2], [2, 4]]: singular at every
    point with rows proportional by no constant factor. The step −H⁻¹g was claimed,
    its function raised LinAlgError, and verification said 'cannot run' at 1 of 16
    points; Cramer's rule finds det H = 0."""
    d = dlsym.derive(
        {"name": "s", "symbols": {"x": {}, "y": {}}, "objective": objective,
         "wrt": ["x", "y"], "derive": ["newton_step"]},
        verify=True,
    )  # fmt: skip
    parts = d.result_display("newton_step")["wrt"]
    assert all(
        p["method"].startswith("not defined: the Hessian is singular") for p in parts.values()
    )
    assert d.verification.passed


def test_the_joint_newton_step_of_scalars_is_cramers_rule():
    """Rosenbrock (a − x)² + b(y − x²)² in [x, y]: Δx = (a − x)/(1 + 2bx² − 2by), not
    the stacked −[[∇²_x ℓ, ∇²_{x,y} ℓ], ...]⁻¹ concatenate([...]) row 0; against
    −solve(jax.hessian, jax.grad)."""
    import jax
    import jax.numpy as jnp

    d = dlsym.derive(
        {"name": "rb", "symbols": {"x": {}, "y": {}, "a": {}, "b": {"domain": "positive"}},
         "objective": "(a - x)**2 + b * (y - x**2)**2", "wrt": ["x", "y"],
         "derive": ["newton_step"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed
    shown = d.result_display("newton_step")["wrt"]
    assert "concatenate" not in shown["x"]["expr"] and "inv" not in shown["x"]["expr"]
    a, b, x, y = 1.0, 100.0, -1.2, 1.0

    def f(v):
        return (a - v[0]) ** 2 + b * (v[1] - v[0] ** 2) ** 2

    v = jnp.array([x, y])
    want = -np.linalg.solve(jax.hessian(f)(v), jax.grad(f)(v))
    got = d.function("newton_step")(x=x, y=y, a=a, b=b)
    np.testing.assert_allclose([got["x"], got["y"]], want, rtol=1e-12)


@pytest.mark.parametrize("domain, convex", [("spd", True), (None, None)])
def test_a_quadratic_form_of_a_psd_matrix_is_a_nonnegative_coefficient(domain, convex):
    """The Kalman gain of a scalar measurement, tr((I − k hᵀ) P (I − k hᵀ)ᵀ) + r kᵀk:
    its Hessian 2 (r + hᵀ P h) I was undecided with P spd; with P any matrix hᵀ P h may
    be negative, and nothing is claimed."""
    P = {"shape": ["n", "n"], **({"domain": domain} if domain else {})}
    d = dlsym.derive(
        {"name": "kg", "symbols": {"k": {"shape": ["n"]}, "P": P, "h": {"shape": ["n"]},
         "r": {"domain": "positive"}}, "dims": {"n": 3},
         "define": {"A": "eye(n) - outer(k, h)"},
         "objective": "trace(A @ P @ A.T) + r * k @ k", "wrt": "k",
         "derive": ["convexity"]},
        verify=True,
    )  # fmt: skip
    verdict = d.results["convexity"]["k"].verdict
    assert verdict.convex is convex or (convex is None and verdict.convex is not True)
    assert d.verification.passed


@pytest.mark.parametrize(
    "define, loss",
    [
        ({"p": "1/(1 + exp(-(X @ w)))"}, "-mean(y * log(p) + (1 - y) * log(1 - p))"),
        ({}, "mean(log1p(exp(-(2 * y - 1) * (X @ w))))"),
    ],
)
def test_the_logistic_loss_written_with_exponentials_is_proved_convex(define, loss):
    """The sigmoid written out, 1/(1 + exp(−z)), and the softplus as log1p(exp(u)):
    convexity was "undecided" (no composition rule for them) and the Hessian a nest of
    exponentials; they read as σ(z) and softplus(u), so the Hessian is
    Xᵀ diag(σ(1 − σ)) X / m, proved PSD."""
    d = dlsym.derive(
        {"name": "logistic_exp", "symbols": {"X": {"shape": ["m", "n"]},
         "y": {"shape": ["m"], "domain": "unit_interval"}, "w": {"shape": ["n"]}},
         "dims": {"m": 6, "n": 3}, "define": define, "objective": loss, "wrt": "w",
         "derive": ["hessian", "convexity"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.results["convexity"]["w"].verdict.convex is True
    assert "exp" not in d.result_display("hessian")["expr"]


@pytest.mark.parametrize(
    "domain, objective, shape, note",
    [
        ("simplex", "sum(x * log(x)) + sum(a * x)", ["n"], "only where its entries sum to 1"),
        ("onehot", "sum((x - a)**2)", ["n"], "only where its entries sum to 1"),
        ("orthogonal", "sum((x - A)**2)", ["n", "n"], "orthogonal only for some values"),
        ("spd", "sum((x - A)**2)", ["n", "n"], "spd only for some values"),
    ],
)
def test_an_ambient_root_on_a_structured_domain_for_some_values_says_so(
    domain, objective, shape, note
):
    """sum(x log x) + aᵀx of a simplex x is stationary (ambient gradient) at
    exp(−1 − a), whose entries sum to 1 for some a only: it was given bare, as if it
    were the minimum on the simplex (softmax(−a)). The root stands, with a note."""
    d = dlsym.derive(
        {"name": "structured", "symbols": {"x": {"shape": shape, "domain": domain},
         "a": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}}, "dims": {"n": 3},
         "objective": objective, "wrt": "x", "derive": ["stationary"]}
    )  # fmt: skip
    assert d.results["stationary"]["x"].expr is not None
    assert any(n.startswith("the stationary point in x: it is the root of the ambient") and
               note in n for n in d.notes), d.notes  # fmt: skip
    on = dlsym.derive(
        {"name": "on", "symbols": {"x": {"shape": ["n"], "domain": domain if domain in
         ("simplex", "onehot") else "simplex"}, "q": {"shape": ["n"], "domain": "simplex"}},
         "dims": {"n": 3}, "objective": "sum((x - q)**2)", "wrt": "x", "derive": ["stationary"]}
    )  # fmt: skip
    assert not on.notes  # x* = q is on the simplex


def test_a_scalar_inside_sums_gives_the_roots_of_its_polynomial():
    """N(μ, μ²)'s likelihood in the scalar μ: sum((x − μ)²) held μ inside a sum, and
    the condition was "a nonlinear system". Written in powers of μ it is the quadratic
    n μ² + μ Σx − Σx² = 0, whose roots are listed in the expression language (no proof
    here picks the positive one of (−Σx ± √((Σx)² + 4nΣx²))/(2n))."""
    d = dlsym.derive(
        {"name": "tied", "symbols": {"x": {"shape": ["n"]}, "mu": {"domain": "positive"}},
         "dims": {"n": 4}, "wrt": "mu", "derive": ["stationary"],
         "objective": "n / 2 * log(mu**2) + sum((x - mu)**2) / (2 * mu**2)"}
    )  # fmt: skip
    shown = d.result_display("stationary")["expr"]
    assert "2 solutions" in shown and "sqrt(4*n*sum(x**2) + sum(x)**2)" in shown, shown
    assert "tsum" not in shown


def test_log_of_det_of_an_spd_matrix_is_its_logdet_for_convexity():
    """−log(det(S)) + tr(S C) of an spd S was undecided (−logdet(S) proven): det S > 0
    on the spd cone, so log det S is the log-determinant, concave there."""
    d = dlsym.derive(
        {"name": "ld", "symbols": {"S": {"shape": ["n", "n"], "domain": "spd"},
         "C": {"shape": ["n", "n"], "domain": "spd"}}, "dims": {"n": 3},
         "objective": "-log(det(S)) + trace(S @ C)", "wrt": "S", "derive": ["convexity"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.results["convexity"]["S"].verdict.convex is True


def test_binary_cross_entropy_written_with_log_sigmoid_of_minus_z_reads_as_the_textbook():
    """−mean(y log σ(z) + (1 − y) log σ(−z)): the gradient read
    (1 − y)(1 − σ(−z)) − y(1 − σ(z)) and the Hessian two diags; σ(−u) = 1 − σ(u)
    gives Xᵀ(σ(Xw) − y)/m and Xᵀ diag(σ(1 − σ)) X/m."""
    d = dlsym.derive(
        {"name": "bce", "symbols": {"X": {"shape": ["m", "n"]},
         "y": {"shape": ["m"], "domain": "unit_interval"}, "w": {"shape": ["n"]}},
         "dims": {"m": 6, "n": 3}, "define": {"z": "X @ w"},
         "objective": "-mean(y * log(sigmoid(z)) + (1 - y) * log(sigmoid(-z)))", "wrt": "w",
         "derive": ["gradient", "hessian"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("gradient")["expr"] == "(X.T @ (sigmoid(X @ w) - y))/m"
    assert d.result_display("hessian")["expr"] == (
        "(X.T @ diag((1 - sigmoid(X @ w))*sigmoid(X @ w)) @ X)/m"
    )


def _covariance_mle(k: int) -> dict:
    return {
        "name": "mle",
        "symbols": {
            "X": {"shape": ["N", "k"]},
            "m": {"shape": ["k"]},
            "S": {"shape": ["k", "k"], "domain": "spd"},
        },
        "dims": {"N": 60, "k": k},
        "objective": "N/2 * logdet(S) + 0.5 * sum(((X - m) @ inv(S)) * (X - m))",
        "wrt": ["m", "S"],
        "derive": ["stationary"],
    }


def test_a_large_stationary_matrix_is_checked_by_its_gradient_in_bounded_time():
    """S of 25 × 25 (625 entries): a Newton step solves its 625² Hessian at each point,
    inside XLA where no budget stops it (40 × 40 ran past 150 s with --budget 10). Past
    MAX_NEWTON_ENTRIES the check is the gradient at S*, which must be 0; a wrong S* (by
    1e-3) still fails."""
    import time

    d = dlsym.derive(_covariance_mle(25))
    start = time.monotonic()
    report = d.verify(points=4)
    assert time.monotonic() - start < 60
    assert report.passed, report
    (S,) = [c for c in report.checks if c.kind == "stationary" and c.wrt == "S"]
    assert "the gradient there (jax.grad), 0, in place of a Newton step" in S.note
    r = d.results["stationary"]["S"]
    d.results["stationary"]["S"] = dataclasses.replace(r, expr=r.expr * sp.Float(1.001))
    d._functions.clear()
    assert not d.verify(points=4).passed


def test_a_newton_step_with_a_diagonal_hessian_singular_at_the_point_is_inf_there_alone():
    """Huber's loss: its Hessian diag(where(|r| <= d, 1, 0)) is singular wherever a
    residual is past d. NumPy's inv raised LinAlgError and JAX gave nan in every entry
    (c46s F8); inv(diag(v)) is diag(1/v) in code: −r inside, −inf past d, in both."""
    d = dlsym.derive(
        {
            "name": "huber",
            "symbols": {"r": {"shape": ["n"]}, "d": {"domain": "positive"}},
            "dims": {"n": 4},
            "objective": "sum(where(abs(r) <= d, 0.5*r**2, d*(abs(r) - 0.5*d)))",
            "wrt": "r",
            "derive": ["newton_step"],
        }
    )
    r = np.array([0.1, -0.3, 2.0, 0.2])
    for backend in ("numpy", "jax"):
        with np.errstate(divide="ignore"):
            got = np.asarray(d.function("newton_step", backend)(r=r, d=1.0))
        np.testing.assert_array_equal(got, [-0.1, 0.3, -np.inf, -0.2], err_msg=backend)
