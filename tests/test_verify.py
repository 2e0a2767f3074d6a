"""The verifier can fail: wrong rules are caught by both independent references."""

import numpy as np
import pytest
import sympy as sp
from conftest import CATALOG

import dlsym
from dlsym.calculus import _rules
from dlsym.expr import _ops as ops
from dlsym.verify import SAMPLERS


def _wrong_tanh(alg, e, g):
    # deliberately wrong: 1 + tanh^2 instead of 1 - tanh^2
    return [(e.args[0], g * (1 + sp.tanh(e.args[0]) ** 2))], "wrong"


def _wrong_matmul(alg, e, g):
    # deliberately wrong: forgets the transpose in grad_v = A^T g
    a, b = e.args
    return [
        (a, alg.outer(g, b)),
        (b, alg.mm(a, g) if alg.shape(a)[0] == alg.shape(a)[1] else alg.mm(alg.T(a), g) * 2),
    ], "wrong"


@pytest.mark.parametrize(
    "spec,rule_for,wrong",
    [
        ("mlp_2layer", sp.tanh, _wrong_tanh),
        ("activation_tanh", sp.tanh, _wrong_tanh),
        ("logistic_regression", ops.matmul, _wrong_matmul),
    ],
)
def test_wrong_rule_is_caught(spec, rule_for, wrong, monkeypatch):
    monkeypatch.setitem(_rules.VJP_RULES, rule_for, wrong)
    report = dlsym.derive(CATALOG / f"{spec}.yaml").verify(points=8)
    assert not report.passed
    failed = {c.reference.split(" at ")[0] for c in report.checks if not c.passed}
    assert any(r.startswith("jax.") for r in failed)
    assert "sympy.diff on explicit entries" in failed
    worst = next(c.worst for c in report.checks if not c.passed)
    assert set(worst) == {"point", "index", "expected", "got"}
    assert worst["expected"] != pytest.approx(worst["got"])


def test_correct_rules_pass_and_errors_are_tiny():
    report = dlsym.derive(CATALOG / "mlp_2layer.yaml").verify(points=32, seed=3)
    assert report.passed and report.points == 32
    assert report.max_abs_error < 1e-12
    assert len(report.checks) == 8  # four weights x (jax.grad, sympy.diff)


def test_float32_verification_uses_float32_tolerances():
    report = dlsym.derive(CATALOG / "logistic_regression.yaml").verify(points=8, dtype="float32")
    assert report.passed and report.dtype == "float32"
    assert report.rtol == 1e-4


def test_absent_gpu_is_an_error_not_a_cpu_run():
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    with pytest.raises(dlsym.DeviceError, match="no GPU"):
        dlsym.derive(CATALOG / "ridge_regression.yaml").verify(device="gpu")


def test_nan_reference_is_reported_not_passed():
    d = dlsym.derive(
        {"name": "bad_domain", "symbols": {"x": {}}, "objective": "log(x)", "wrt": "x"}
    )
    report = d.verify(points=16)  # x is real: log of negative samples is nan
    assert not report.passed
    assert "not finite at" in report.checks[0].note and "domain" in report.checks[0].note


def test_sizes_stay_symbolic():
    small = dlsym.derive(CATALOG / "logistic_regression.yaml")
    data = dict(small.spec.doc.data, dims={"m": 2000, "n": 1000})
    big = dlsym.derive(data)
    for kind in ("gradient", "hessian"):
        assert big.results[kind]["w"].expr == small.results[kind]["w"].expr


def test_explicit_fallback_for_a_matrix_hessian():
    d = dlsym.derive(
        {
            "name": "matrix_hessian",
            "symbols": {"W": {"shape": ["a", "b"]}, "x": {"shape": ["b"]}},
            "dims": {"a": 2, "b": 2},
            "objective": "sum(tanh(W @ x))",
            "wrt": "W",
            "derive": ["gradient", "hessian"],
        }
    )
    assert d.results["gradient"]["W"].method == "matrix form"
    assert d.results["hessian"]["W"].method == "explicit entries at a=2, b=2"
    assert d.results["hessian"]["W"].entries.shape == (2, 2, 2, 2)
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "domain,shape,check",
    [
        ("simplex", (5,), lambda v: np.isclose(v.sum(), 1) and (v >= 0).all()),
        ("onehot", (5,), lambda v: v.sum() == 1 and set(v) <= {0.0, 1.0}),
        ("spd", (4, 4), lambda v: np.allclose(v, v.T) and np.linalg.eigvalsh(v).min() > 0),
        ("orthogonal", (4, 4), lambda v: np.allclose(v.T @ v, np.eye(4))),
        ("unit_interval", (6,), lambda v: ((v > 0) & (v < 1)).all()),
        ("positive", (6,), lambda v: (v > 0).all()),
    ],
)
def test_samplers_respect_domains(domain, shape, check):
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert check(SAMPLERS[domain](rng, shape))
