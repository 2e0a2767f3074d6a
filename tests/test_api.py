"""The Python API of the contract: derive, results, function, verify."""

import numpy as np
import pytest
from conftest import CATALOG

import dlsym


@pytest.fixture(scope="module")
def logistic():
    return dlsym.derive(CATALOG / "logistic_regression.yaml")


def _data(seed=0, m=6, n=3):
    rng = np.random.default_rng(seed)
    return dict(X=rng.normal(size=(m, n)), y=rng.uniform(size=m), w=rng.normal(size=n), lam=0.3)


def _reference_grad(X, y, w, lam):
    p = 1 / (1 + np.exp(-X @ w))
    return X.T @ (p - y) / len(y) + lam * w


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_function_matches_hand_written(logistic, backend):
    import jax

    # JAX computes in float32 unless x64 is enabled (verification enables it)
    rtol = 1e-4 if backend == "jax" and not jax.config.jax_enable_x64 else 1e-10
    data = _data(m=40, n=7)  # other sizes than the spec's dims: sizes are symbolic
    got = np.asarray(logistic.function("gradient", backend=backend)(**data))
    assert got.shape == (7,)
    np.testing.assert_allclose(got, _reference_grad(**data), rtol=rtol)
    hess = np.asarray(logistic.function("hessian", backend=backend)(**data))
    p = 1 / (1 + np.exp(-data["X"] @ data["w"]))
    expected = data["X"].T @ np.diag(p * (1 - p)) @ data["X"] / 40 + 0.3 * np.eye(7)
    np.testing.assert_allclose(hess, expected, rtol=rtol)


def test_function_positional_in_spec_order(logistic):
    data = _data()
    f = logistic.function("gradient")
    np.testing.assert_allclose(f(data["X"], data["y"], data["w"], data["lam"]), f(**data))


def test_function_objective(logistic):
    data = _data()
    p = 1 / (1 + np.exp(-data["X"] @ data["w"]))
    expected = -np.mean(data["y"] * np.log(p) + (1 - data["y"]) * np.log(1 - p)) + 0.15 * np.sum(
        data["w"] ** 2
    )
    assert logistic.function("objective")(**data) == pytest.approx(expected)


def test_function_rejects_bad_input(logistic):
    f = logistic.function("gradient")
    data = _data()
    with pytest.raises(ValueError, match="'w' has size 4 where n = 3"):
        f(**{**data, "w": np.zeros(4)})
    with pytest.raises(TypeError, match="missing argument"):
        f(X=data["X"])
    with pytest.raises(TypeError, match="unexpected argument 'q'"):
        f(**data, q=1)
    with pytest.raises(KeyError):
        logistic.function("jacobian")


def test_several_wrt_give_a_dict():
    d = dlsym.derive(CATALOG / "mlp_2layer.yaml")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=4), rng.normal(size=3)
    W1, b1, W2, b2 = (
        rng.normal(size=(5, 4)),
        rng.normal(size=5),
        rng.normal(size=(3, 5)),
        rng.normal(size=3),
    )
    grads = d.function("gradient")(x=x, y=y, W1=W1, b1=b1, W2=W2, b2=b2)
    assert {k: v.shape for k, v in grads.items()} == {
        "W1": (5, 4),
        "b1": (5,),
        "W2": (3, 5),
        "b2": (3,),
    }
    h = np.tanh(W1 @ x + b1)
    delta = W2 @ h + b2 - y
    np.testing.assert_allclose(grads["W2"], np.outer(delta, h))
    np.testing.assert_allclose(grads["W1"], np.outer((W2.T @ delta) * (1 - h**2), x))


def test_derive_from_mapping_and_verify_flag():
    d = dlsym.derive(
        {
            "name": "cube",
            "symbols": {"x": {}},
            "objective": "x**3",
            "wrt": "x",
            "derive": ["gradient", "hessian"],
        },
        verify=True,
        points=5,
    )
    assert d.verification.passed and d.verification.points == 5
    assert d.result_display("hessian")["expr"] == "6*x"
