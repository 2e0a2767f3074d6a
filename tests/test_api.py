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
    rtol = 1e-10  # float64 for JAX too: d.function switches it on
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


def test_a_complex_input_is_refused_not_cast_to_real(logistic):
    """x = 1j was cast to real with a ComplexWarning: the gradient 2i of sum(x²) came
    out 0."""
    f = logistic.function("gradient")
    data = _data()
    with pytest.raises(ValueError, match="'w' is complex; the symbols are real"):
        f(**{**data, "w": data["w"] * 1j})


@pytest.mark.parametrize(
    "change, text",
    [
        (lambda s: {**s, 5: 1}, "<mapping>:1:1: keys must be strings, got 5"),
        (lambda s: s.update(self=s) or s, "<mapping>:1:1: the mapping holds itself"),
    ],
)
def test_a_mapping_that_is_no_spec_tree_is_a_located_error(change, text):
    """A key that is no string was a TypeError deep in a suggestion; a mapping that
    holds itself a RecursionError."""
    spec = {"name": "s", "symbols": {"x": {}}, "objective": "x**2", "wrt": "x"}
    with pytest.raises(dlsym.SpecError) as info:
        dlsym.derive(change(dict(spec)))
    assert str(info.value).startswith(text)


def test_a_taylor_function_not_derived_says_what_was():
    spec = {"name": "s", "symbols": {"x": {}}, "objective": "x**2", "wrt": "x"}
    with pytest.raises(KeyError, match="no result 'taylor' \\(derived: gradient\\)"):
        dlsym.derive(spec).taylor_function("x")
    with pytest.raises(KeyError, match="no Taylor model in 'y'; the models are in: x"):
        dlsym.derive({**spec, "derive": ["taylor"]}).taylor_function("y")


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


def test_jax_function_is_float64_without_the_caller_enabling_x64():
    """A fresh process that never touches jax_enable_x64: float64 in, float64 out (and
    float32 in, float32 out), jit-compiled, equal to the NumPy function."""
    import subprocess
    import sys

    script = f"""
import jax, numpy as np, dlsym
assert not jax.config.jax_enable_x64
d = dlsym.derive({str(CATALOG / "logistic_regression.yaml")!r})
rng = np.random.default_rng(0)
X, y, w = rng.normal(size=(50, 4)), rng.uniform(size=50), rng.normal(size=4)
for kind in ("gradient", "hessian"):
    f = d.function(kind, backend="jax")
    out = f(X, y, w, 0.3)
    assert out.dtype == np.float64, out.dtype
    want = d.function(kind)(X, y, w, 0.3)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-13, atol=1e-15)
    single = f(X.astype(np.float32), y.astype(np.float32), w.astype(np.float32), np.float32(0.3))
    assert single.dtype == np.float32, single.dtype
    np.testing.assert_allclose(np.asarray(single), want, rtol=1e-4, atol=1e-6)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_jax_function_is_jitted_and_checks_arguments_at_every_size(logistic):
    """For JAX, d.function is the jax.jit function itself (a call costs what the module's
    jitted function costs); the argument checks run while it traces, with their messages."""
    import jax

    f = logistic.function("hessian", backend="jax")
    assert hasattr(f, "lower") and "def hessian_w(X, y, w, lam):" in f.source
    data = _data(m=8, n=3)
    hess = f(**data)
    assert isinstance(hess, jax.Array) and hess.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(f(*data.values())), np.asarray(hess))
    p = 1 / (1 + np.exp(-data["X"] @ data["w"]))
    expected = (data["X"].T * (p * (1 - p))) @ data["X"] / 8 + 0.3 * np.eye(3)
    np.testing.assert_allclose(np.asarray(hess), expected, rtol=1e-12)
    # the checks run where jit traces: again for each new shape
    with pytest.raises(ValueError, match="'w' has size 4 where n = 3"):
        f(**{**data, "w": np.zeros(4)})
    with pytest.raises(ValueError, match="'y' should have 1 axes"):
        f(**{**data, "y": np.zeros((8, 1))})
    with pytest.raises(TypeError, match="missing argument"):
        f(X=data["X"])
    with pytest.raises(TypeError, match="unexpected argument 'q'"):
        f(**data, q=1)


QUADRATIC = {
    "name": "quadratic",
    "symbols": {"x": {"shape": ["n"]}},
    "objective": "sum(x**2)",
    "wrt": "x",
}


def test_a_mapping_takes_numpy_integers_where_it_takes_ints():
    # a dim read off an array's shape is an np.int64: it was "not a positive integer"
    spec = {**QUADRATIC, "dims": {"n": np.int64(3)}, "verify": {"points": np.int32(4)}}
    d = dlsym.derive(spec, verify=True)
    assert d.spec.dims == {"n": 3} and type(d.spec.dims["n"]) is int
    assert d.verification.passed and d.verification.points == 4
    # bool is an integer to Python, and still no size
    with pytest.raises(dlsym.SpecError, match="dimension 'n' must be a positive integer, got True"):
        dlsym.derive({**QUADRATIC, "dims": {"n": True}})


@pytest.mark.parametrize("budget", ["5", -5, float("nan"), True])
def test_derive_refuses_a_budget_that_is_no_number_of_seconds(budget):
    with pytest.raises(dlsym.SpecError) as info:
        dlsym.derive({**QUADRATIC, "dims": {"n": 3}}, budget=budget)
    assert str(info.value) == (
        f"derive(): budget must be a number of seconds >= 0 (None or 0: no limit), got {budget!r}"
    )


def test_derive_takes_a_budget_of_seconds():
    d = dlsym.derive({**QUADRATIC, "dims": {"n": 3}}, budget=np.float32(60))
    assert d.result_display("gradient")["expr"] == "2*x"


@pytest.mark.parametrize(
    "options, text",
    [
        ({"points": -3}, "verify(): points must be an integer >= 1, got -3"),
        ({"points": 0}, "verify(): points must be an integer >= 1, got 0"),
        ({"points": 2.5}, "verify(): points must be an integer >= 1, got 2.5"),
        ({"seed": -1}, "verify(): seed must be an integer >= 0, got -1"),
        ({"seed": "0"}, "verify(): seed must be an integer >= 0, got '0'"),
        # rtol -1 failed every check of a right result, 1e300 passed any; float16 was a
        # KeyError: the spec's verify key refuses them, and so does the API now
        ({"rtol": -1}, "verify(): rtol must be a number in [0, 1), got -1"),
        ({"rtol": float("nan")}, "verify(): rtol must be a number in [0, 1), got nan"),
        ({"atol": 1e300}, "verify(): atol must be a number in [0, 1), got 1e+300"),
        ({"atol": True}, "verify(): atol must be a number in [0, 1), got True"),
        ({"dtype": "float16"}, "verify(): dtype must be one of float64, float32, got 'float16'"),
    ],
)
def test_verify_refuses_bad_points_and_seeds(options, text):
    d = dlsym.derive({**QUADRATIC, "dims": {"n": 3}})
    with pytest.raises(dlsym.SpecError) as info:
        d.verify(**options)
    assert str(info.value) == text
    assert d.verify(points=np.int16(3), seed=np.uint8(2)).points == 3


def test_a_recurrence_gradient_refuses_sequences_of_no_steps():
    g = dlsym.derive(CATALOG / "rnn_bptt.yaml").function("gradient")
    rng = np.random.default_rng(0)
    fixed = dict(W=rng.normal(size=(3, 3)), U=rng.normal(size=(3, 2)), b=np.zeros(3))
    fixed["h0"] = np.zeros(3)
    assert sorted(g(**fixed, x=np.ones((1, 2)), y=np.ones((1, 3)))) == ["U", "W", "b", "h0"]
    # it was an IndexError from the adjoint's start at t = T
    with pytest.raises(ValueError) as info:
        g(**fixed, x=np.zeros((0, 2)), y=np.zeros((0, 3)))
    assert str(info.value) == (
        "gradient: T must be at least 1 (the loss sums over t = 1..T), got T = 0 from the "
        "arrays' shapes"
    )


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("label", [-1, 3])
def test_a_label_outside_its_classes_is_refused_not_wrapped_around(label, backend):
    """In JAX too (c46h F2): jitted whole, the labels were traced, and XLA's gather
    clamped 3 to 2, a silent wrong gradient; they are checked before jit, and inside a
    caller's own jit left to JAX."""
    d = dlsym.derive(CATALOG / "batched_softmax_regression.yaml")
    f = d.function("gradient", backend)
    rng = np.random.default_rng(0)
    data = dict(X=rng.normal(size=(4, 5)), W=rng.normal(size=(5, 3)), b=np.zeros(3))
    assert f(**data, y=np.array([0, 1, 2, 0]))["W"].shape == (5, 3)
    # -1 indexed the last class (a silent wrong gradient), 3 raised an IndexError
    with pytest.raises(ValueError) as info:
        f(**data, y=np.array([0, 1, label, 0]))
    assert str(info.value) == (
        f"the gradient: 'y' holds labels 0..2 (domain {{index: k}}), got {label}"
    )


def test_an_unknown_keyword_of_derive_is_a_type_error_with_or_without_verify():
    """derive(spec, budegt=5) was dropped unseen where verify is False (the options go
    to verify() only): a misspelt budget ran with no limit (c46h F3)."""
    for verify in (False, True):
        with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'budegt'"):
            dlsym.derive(CATALOG / "quadratic_form.yaml", verify=verify, budegt=5)
    assert dlsym.derive(CATALOG / "quadratic_form.yaml", points=3).results
