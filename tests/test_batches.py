"""Batches and broadcasting (shared/spec-format.md, "Tensors of any rank, batches and
broadcasting"): bias broadcasting, axis= and keepdims= on reductions, softmax along an
axis, integer labels with onehot and gathers. Each result is asserted in matrix form and
checked numerically against an independent NumPy or JAX computation."""

import dataclasses
import re

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CATALOG, check_against_jax_grad, derive_objective

import dlsym

RNG = np.random.default_rng(7)


def _derive(symbols, objective, wrt, dims, define=None, derive=("gradient",)):
    return derive_objective(symbols, objective, wrt, dims, define, derive, name="batch")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_batched_softmax_regression_is_xt_p_minus_y_over_b():
    d = dlsym.derive(CATALOG / "batched_softmax_regression.yaml")
    parts = d.result_display("gradient")["wrt"]
    assert parts["W"]["expr"] == "(X.T @ (softmax(b + X @ W, axis=1) - onehot(y, k)))/B"
    assert parts["b"]["expr"] == "sum(softmax(b + X @ W, axis=1) - onehot(y, k), axis=0)/B"
    assert all(r.method == "matrix form" for r in d.results["gradient"].values())
    X, W, b = RNG.normal(size=(50, 4)), RNG.normal(size=(4, 6)), RNG.normal(size=6)
    y = RNG.integers(0, 6, 50)  # other sizes than the spec's dims: they are symbolic
    got = d.function("gradient")(X=X, W=W, b=b, y=y)
    delta = (_softmax(X @ W + b) - np.eye(6)[y]) / 50
    np.testing.assert_allclose(got["W"], X.T @ delta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["b"], delta.sum(axis=0), rtol=1e-12, atol=1e-15)
    report = d.verify(points=8)
    assert report.passed and {c.wrt for c in report.checks if c.kind == "gradient"} == {"W", "b"}


def test_a_wrong_log_softmax_rule_fails_verification(monkeypatch):
    from dlsym.calculus import _rules
    from dlsym.expr import _ops as ops

    right = _rules.VJP_RULES[ops.log_softmax]

    def wrong(alg, e, g):  # forgets the softmax term's sum along the axis
        out, why = right(alg, e, g)
        return [(a, c + ops.softmax(*e.args)) for a, c in out], why

    monkeypatch.setitem(_rules.VJP_RULES, ops.log_softmax, wrong)
    assert not dlsym.derive(CATALOG / "batched_softmax_regression.yaml").verify(points=4).passed


def test_bias_broadcast_over_the_batch_sums_its_adjoint():
    d = _derive(
        {
            "X": {"shape": ["B", "n"]},
            "W": {"shape": ["n", "k"]},
            "b": {"shape": ["k"]},
            "T": {"shape": ["B", "k"]},
        },
        "sum((tanh(X @ W + b) - T)**2) / 2",
        ["W", "b"],
        {"B": 6, "n": 3, "k": 2},
    )
    X, W, b, T = (RNG.normal(size=s) for s in [(9, 3), (3, 2), (2,), (9, 2)])
    got = d.function("gradient")(X=X, W=W, b=b, T=T)
    h = np.tanh(X @ W + b)
    delta = (h - T) * (1 - h**2)
    np.testing.assert_allclose(got["W"], X.T @ delta, rtol=1e-12)
    np.testing.assert_allclose(got["b"], delta.sum(axis=0), rtol=1e-12)
    assert "axis=0" in d.result_display("gradient")["wrt"]["b"]["expr"]
    assert d.verify(points=6).passed


def test_keepdims_centering_along_rows():
    d = _derive(
        {"X": {"shape": ["B", "n"]}},
        "sum((X - mean(X, axis=1, keepdims=True))**3)",
        "X",
        {"B": 4, "n": 3},
    )
    assert "keepdims=True" in d.result_display("gradient")["expr"]
    X = RNG.normal(size=(5, 4))
    c = X - X.mean(axis=1, keepdims=True)
    expected = 3 * c**2 - (3 * c**2).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(d.function("gradient")(X=X), expected, rtol=1e-12)
    report = d.verify(points=4)
    assert report.passed
    assert any(c.reference.startswith("sympy.diff") for c in report.checks)


def test_logsumexp_along_rows_is_the_row_softmax():
    d = _derive({"Z": {"shape": ["B", "k"]}}, "sum(logsumexp(Z, axis=1))", "Z", {"B": 4, "k": 3})
    assert d.result_display("gradient")["expr"] == "softmax(Z, axis=1)"
    Z = 1000 * RNG.normal(size=(3, 5))  # the generated softmax subtracts the row max
    np.testing.assert_allclose(d.function("gradient")(Z=Z), _softmax(Z), rtol=1e-12)
    assert d.verify(points=4).passed


def test_embedding_gather_scatters_back_with_onehot_transpose():
    d = _derive(
        {
            "Emb": {"shape": ["V", "d"]},
            "ids": {"shape": ["B"], "domain": {"index": "V"}},
            "w": {"shape": ["d"]},
            "t": {"shape": ["B"]},
        },
        "mean((H @ w - t)**2)",
        ["Emb", "w"],
        {"B": 6, "V": 5, "d": 3},
        define={"H": "Emb[ids]"},
    )
    expr = d.result_display("gradient")["wrt"]["Emb"]["expr"]
    assert expr.startswith("2*(onehot(ids, V).T @ ")
    Emb, w, t = RNG.normal(size=(7, 3)), RNG.normal(size=3), RNG.normal(size=10)
    ids = np.array([0, 3, 3, 6, 1, 0, 0, 2, 5, 3])  # repeated ids add up
    got = d.function("gradient")(Emb=Emb, ids=ids, w=w, t=t)
    r = 2 * (Emb[ids] @ w - t) / 10
    expected = np.zeros_like(Emb)
    np.add.at(expected, ids, np.outer(r, w))
    np.testing.assert_allclose(got["Emb"], expected, rtol=1e-12)
    report = d.verify(points=6)
    assert report.passed
    # the explicit-entry cross-check runs too, with the labels drawn as integers
    refs = {(c.wrt, c.reference.split(" at ")[0]) for c in report.checks}
    assert ("Emb", "sympy.diff on explicit entries") in refs


def test_generated_module_runs_batched_code(tmp_path):
    from dlsym.codegen._module import generate

    d = dlsym.derive(CATALOG / "batched_softmax_regression.yaml")
    source = generate(d, "numpy")
    assert "np.eye(k)[y]" in source and "axis=1" in source
    namespace: dict = {}
    exec(compile(source, "generated", "exec"), namespace)  # our own generated code
    X, W, b = RNG.normal(size=(8, 5)), RNG.normal(size=(5, 3)), RNG.normal(size=3)
    y = RNG.integers(0, 3, 8)
    np.testing.assert_allclose(
        namespace["gradient_W"](X, W, b, y), d.function("gradient")(X, W, b, y)["W"]
    )


@pytest.mark.parametrize(
    "symbols, objective, wrt, message",
    [
        (
            {"x": {"shape": ["m"]}, "y": {"shape": ["n"]}},
            "sum(x + y)",
            "x",
            "cannot add a vector [m] and a vector [n]: sizes m and n",
        ),
        (
            {"x": {"shape": ["m"]}, "y": {"shape": ["m"], "domain": {"index": "q"}}},
            "sum(x)",
            "x",
            "domain {index: k} of 'y' needs k",
        ),
        (
            {"x": {"shape": ["m"]}, "y": {"shape": ["m"], "domain": {"index": "n"}}},
            "sum(x)",
            "y",
            "wrt 'y' has an index domain (integer labels 0..k-1): labels are not differentiated",
        ),
        ({"x": {"shape": ["m"]}}, "sum(onehot(x, n))", "x", "takes class labels"),
        ({"x": {"shape": ["m"]}}, "sum(x, axis=(0, 0))", "x", "repeats an axis"),
        ({"x": {"shape": ["m"]}}, "sum(x, keepdims=1)", "x", "keepdims must be True or False"),
        (
            {"x": {"shape": ["m"]}},
            "sum(softmax(x, keepdims=True))",
            "x",
            "softmax() takes no keyword 'keepdims'",
        ),
    ],
)
def test_batch_errors_are_located(symbols, objective, wrt, message):
    spec = {
        "name": "bad",
        "symbols": symbols,
        "dims": {"m": 3, "n": 2},
        "objective": objective,
        "wrt": wrt,
    }
    with pytest.raises(dlsym.SpecError, match=re.escape(message)):
        dlsym.derive(spec)


MLP = {
    "X": {"shape": ["B", "n"]},
    "W1": {"shape": ["n", "h"]},
    "b1": {"shape": ["h"]},
    "W2": {"shape": ["h", "k"]},
    "b2": {"shape": ["k"]},
    "Y": {"shape": ["B", "k"]},
}
MLP_DIMS = {"B": 5, "n": 3, "h": 4, "k": 2}


def _mlp_point(B=7, n=3, h=6, k=2):
    sizes = {"X": (B, n), "W1": (n, h), "b1": (h,), "W2": (h, k), "b2": (k,), "Y": (B, k)}
    return {name: RNG.normal(size=s) for name, s in sizes.items()}


@pytest.mark.parametrize(
    "activation, reference",
    [
        # no activation: (X W1 + b1)^T must broadcast b1 along the rows, not add a vector
        ("Z", lambda Z: Z),
        # leaky ReLU / ELU / dropout as where(): the mask must not leak through H @ W2
        ("where(Z > 0, Z, 0.01 * Z)", lambda Z: jnp.where(Z > 0, Z, 0.01 * Z)),
        ("where(Z > 0, Z, exp(Z) - 1)", lambda Z: jnp.where(Z > 0, Z, jnp.exp(Z) - 1)),
        # GELU's tanh form: exact decimals multiply into rationals past int64 in code
        (
            "0.5 * Z * (1 + tanh(0.7978845608028654 * (Z + 0.044715 * Z**3)))",
            lambda Z: 0.5 * Z * (1 + jnp.tanh(0.7978845608028654 * (Z + 0.044715 * Z**3))),
        ),
    ],
)
def test_two_layer_networks_as_written(activation, reference):
    d = derive_objective(
        MLP,
        "mean((H @ W2 + b2 - Y)**2)",
        ["W1", "b1", "W2", "b2"],
        MLP_DIMS,
        {"Z": "X @ W1 + b1", "H": activation},
        name="mlp",
    )

    def loss(X, W1, b1, W2, b2, Y):
        return jnp.mean((reference(X @ W1 + b1) @ W2 + b2 - Y) ** 2)

    check_against_jax_grad(d, loss, _mlp_point(), ["W1", "b1", "W2", "b2"], points=4)


def test_numpy_spellings_of_arguments():
    """An axis after the array, and positional arguments by their NumPy names, mean what
    they mean in NumPy: each spelling derives the same gradient."""
    symbols = {"X": {"shape": ["B", "k"]}, "y": {"shape": ["B"], "domain": {"index": "k"}}}
    spellings = [
        "-sum(take_along_axis(log_softmax(X, axis=1), y[:, None], 1))",
        "-sum(take_along_axis(log_softmax(X, 1), expand_dims(y, axis=-1), axis=1))",
        "-sum(take_along_axis(arr=log_softmax(X, 1), indices=y[:, None], axis=1))",
        "-sum(take_along_axis(log_softmax(X, 1), axis=1, indices=y[:, None]))",
        "-sum(sum(onehot(y, num_classes=k) * log_softmax(X, axis=-1), 1))",
    ]
    X, y = RNG.normal(size=(6, 3)), RNG.integers(0, 3, 6)
    want = _softmax(X) - np.eye(3)[y]
    for objective in spellings:
        d = derive_objective(symbols, objective, ["X"], {"B": 4, "k": 3}, name="kw")
        np.testing.assert_allclose(d.function("gradient")(X=X, y=y), want, rtol=1e-12)
    d = derive_objective(symbols, "sum(mean(X, 0, keepdims=True)**2)", ["X"], {"B": 4, "k": 3})
    np.testing.assert_allclose(
        d.function("gradient")(X=X, y=y), np.broadcast_to(2 * X.mean(axis=0) / 6, X.shape)
    )


@pytest.mark.parametrize(
    "labels, objective",
    [
        ("K", "-mean(sum(onehot(y, k) * log_softmax(X, axis=1), axis=1))"),
        (3, "-mean(sum(onehot(y, k) * log_softmax(X, axis=1), axis=1))"),
        ("k", "-mean(sum(onehot(y, k) * log_softmax(X, axis=1), axis=1))"),
        ("K", "-mean(take_along_axis(log_softmax(X, axis=1), y[:, None], axis=1))"),
        (3, "-mean(take_along_axis(log_softmax(X, axis=1), y[:, None], axis=1))"),
    ],
)
def test_labels_over_as_many_classes_as_onehot_at_the_dims(labels, objective):
    """Labels declared over K classes fit onehot(y, k) where K = k as written or at the
    spec's dims (two dims of one size, a dim and an integer): the gradient is
    (softmax(X) - onehot(y))/B, verified. A K that differs is a located error
    (tests/test_errors.py)."""
    symbols = {"X": {"shape": ["B", "k"]}, "y": {"shape": ["B"], "domain": {"index": labels}}}
    d = derive_objective(symbols, objective, ["X"], {"B": 4, "k": 3, "K": 3})
    X, y = RNG.normal(size=(4, 3)), RNG.integers(0, 3, 4)
    want = (_softmax(X) - np.eye(3)[y]) / 4
    np.testing.assert_allclose(d.function("gradient")(X=X, y=y), want, rtol=1e-12)
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "objective, message",
    [
        ("sum(X, 1, 2)", "sum() takes 1 argument, got 3"),
        ("sum(X, 1, axis=0)", "sum() got 'axis' twice"),
        ("sum(take_along_axis(X, y, axes=1))", "takes no keyword 'axes' (only indices, axis)"),
        ("sum(expand_dims(X, 0, axis=1))", "expand_dims() got 'axis' twice"),
        ("sum(take_along_axis(X, axis=1))", "take_along_axis() takes 3 arguments, got 1"),
    ],
)
def test_misspelt_arguments_are_located_errors(objective, message):
    symbols = {"X": {"shape": ["B", "k"]}, "y": {"shape": ["B", 1], "domain": {"index": "k"}}}
    with pytest.raises(dlsym.SpecError, match=re.escape(message)):
        derive_objective(symbols, objective, ["X"], {"B": 4, "k": 3})


def softmax_regression_with_labels(domain: str):
    """Softmax regression on a batch whose label rows Y: [B, k] have ``domain``, derived
    and verified: its gradient folds sum(Y, axis=1) = 1 into Xᵀ(softmax(XW) − Y)."""
    d = dlsym.derive(
        {
            "name": f"batch_{domain}",
            "symbols": {
                "X": {"shape": ["B", "n"]},
                "W": {"shape": ["n", "k"]},
                "Y": {"shape": ["B", "k"], "domain": domain},
            },
            "dims": {"B": 4, "n": 3, "k": 3},
            "objective": "-sum(Y * log_softmax(X @ W, axis=1))",
            "wrt": "W",
        },
        verify=True,
    )
    assert d.result_display("gradient")["expr"] == "X.T @ (softmax(X @ W, axis=1) - Y)"
    assert d.verification.passed, d.verification
    return d


def test_a_matrix_of_one_hot_rows_is_a_batch_of_labels():
    """Y: [B, k] with domain onehot (each row one-hot; it was 'onehot needs a vector'):
    the softmax regression gradient folds sum(Y, axis=1) = 1 into Xᵀ(softmax(XW) − Y),
    verification draws one-hot rows, and the result equals the textbook's."""
    d = softmax_regression_with_labels("onehot")
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    Y = np.eye(3)[[0, 2, 1, 2]]
    Z = X @ W
    S = np.exp(Z - Z.max(axis=1, keepdims=True))
    S /= S.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(d.function("gradient")(X=X, W=W, Y=Y), X.T @ (S - Y), rtol=1e-12)
    from dlsym.verify import sample_points

    drawn = sample_points(d.spec, 5, 0)["Y"]
    assert drawn.shape == (5, 4, 3) and np.all(drawn.sum(axis=-1) == 1)
    assert set(np.unique(drawn)) == {0.0, 1.0}


def test_a_matrix_on_the_simplex_is_a_batch_of_soft_labels():
    """Y: [B, k] with domain simplex, each row a distribution (label smoothing,
    distillation; it was "simplex needs a vector", exit 2): the gradient folds
    sum(Y, axis=1) = 1 as for one-hot rows, verification draws each row from a flat
    Dirichlet, and a matrix on the simplex as the wrt symbol moves along its rows'
    sum-zero directions."""
    d = softmax_regression_with_labels("simplex")
    from dlsym.verify import sample_points

    drawn = sample_points(d.spec, 5, 0)["Y"]
    assert drawn.shape == (5, 4, 3) and np.allclose(drawn.sum(axis=-1), 1.0)
    assert np.all(drawn > 0) and len(np.unique(drawn)) == drawn.size  # not one-hot
    d = dlsym.derive(
        {
            "name": "row_entropy",
            "symbols": {
                "P": {"shape": ["m", "k"], "domain": "simplex"},
                "C": {"shape": ["m", "k"]},
            },
            "dims": {"m": 3, "k": 4},
            "objective": "sum(P * log(P)) + sum(P * C) + sum(sum(P, axis=1)**2)",
            "wrt": "P",
            "derive": ["gradient", "convexity"],
        },
        verify=True,
    )
    # log P + 1 + C + 2 (row sums) 1ᵀ, the row sums 1 on the domain
    assert d.result_display("gradient")["expr"] == "C + 3*ones((m, k)) + log(P)"
    assert d.results["convexity"]["P"].verdict.convex
    assert d.verification.passed, d.verification
    # the gradient is the ambient one, compared at points on the domain: a term off fails
    r = d.results["gradient"]["P"]
    d.results["gradient"]["P"] = dataclasses.replace(r, expr=r.expr + d.spec.symbol("C").symbol)
    d._functions.clear()
    assert not d.verify(points=4).passed


def test_a_keepdims_mean_squared_inside_a_hessian_is_broadcast():
    """Row-centred features N = X − mean(X, 1, keepdims), sum((N ⊙ g − Y)²): the Hessian's
    term from mean(X, 1, keepdims)² summed over rows has shape (1,), and J(g ⊙ s) was
    diag(s), 1 × 1, broadcast onto every entry (off-diagonals 2 Σ_b μ_b² ≠ 0; exit 1, and
    a LayerNorm γ/β stationary point built on it was wrong). s is broadcast first:
    the Hessian is 2 diag(sum(N², 0))."""
    d = dlsym.derive(
        {
            "name": "row_centred",
            "symbols": {
                "X": {"shape": ["B", "d"]},
                "Y": {"shape": ["B", "d"]},
                "g": {"shape": ["d"]},
            },
            "dims": {"B": 4, "d": 3},
            "define": {"N": "X - mean(X, axis=1, keepdims=True)"},
            "objective": "sum((N * g - Y)**2)",
            "wrt": "g",
            "derive": ["hessian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    X = np.random.default_rng(3).normal(size=(4, 3))
    N = X - X.mean(axis=1, keepdims=True)
    got = d.function("hessian")(X=X, Y=np.zeros((4, 3)), g=np.ones(3))
    np.testing.assert_allclose(got, 2 * np.diag((N**2).sum(axis=0)), rtol=1e-12, atol=1e-12)


def test_the_log_of_a_gathered_softmax_is_the_gathered_log_softmax():
    """PyTorch's cross-entropy written -log(take_along_axis(softmax(Z, 1), y[:, None], 1)):
    the gradient divided by the gathered probability, nan at a logit of 800 where it
    underflows (JAX: finite). Gathered after the log, it is (softmax(Z) - onehot(y))/B."""
    d = dlsym.derive(
        {
            "name": "ce_gather",
            "symbols": {
                "Z": {"shape": ["B", "k"]},
                "y": {"shape": ["B"], "domain": {"index": "k"}},
            },
            "dims": {"B": 3, "k": 4},
            "objective": "-mean(log(take_along_axis(softmax(Z, axis=1), y[:, None], axis=1)))",
            "wrt": "Z",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("gradient")["expr"] == "(softmax(Z, axis=1) - onehot(y, k))/B"
    Z, y = np.array([[0.0, 800.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0] * 4]), np.array([0, 3, 1])
    loss = d.function("objective")(Z=Z, y=y)
    grad = d.function("gradient")(Z=Z, y=y)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    p = np.exp(Z - Z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(grad, (p - np.eye(4)[y]) / 3, atol=1e-15)


def test_rows_picked_by_labels_with_a_trailing_colon_and_columns_refused_clearly():
    """Emb[ids, :] is Emb[ids], as in NumPy; X[:, y] read y as a size and said only
    'a size must be a whole number or an expression in the dims'."""
    d = _derive(
        {"Emb": {"shape": ["V", "d"]}, "ids": {"shape": ["B"], "domain": {"index": "V"}}},
        "sum(Emb[ids, :]**2)",
        ["Emb"],
        {"B": 4, "V": 5, "d": 3},
    )
    assert d.verify(points=4).passed
    Emb, ids = RNG.normal(size=(5, 3)), np.array([0, 2, 2, 4])
    expected = np.zeros_like(Emb)
    np.add.at(expected, ids, 2 * Emb[ids])
    np.testing.assert_allclose(d.function("gradient")(Emb=Emb, ids=ids), expected, rtol=1e-12)
    with pytest.raises(dlsym.SpecError) as info:
        _derive(
            {"X": {"shape": ["B", "k"]}, "y": {"shape": ["B"], "domain": {"index": "k"}}},
            "sum(X[:, y])",
            ["X"],
            {"B": 4, "k": 3},
        )
    assert "labels (y) index the first axis alone, as X[y] (a gather of rows); one entry " in (
        str(info.value)
    )
    assert "take_along_axis(X, y[:, None], axis=1)" in str(info.value)


@pytest.mark.parametrize(
    "objective",
    [
        "-mean(take_along_axis(Z - logsumexp(Z, axis=1, keepdims=True), y[:, None], axis=1))",
        "-mean(sum(onehot(y, k) * (Z - logsumexp(Z, axis=1, keepdims=True)), axis=1))",
    ],
)
def test_cross_entropy_written_with_a_keepdims_logsumexp_reads_softmax_minus_onehot(objective):
    """The tutorials' Z − logsumexp(Z, axis=1, keepdims=True): the gradient kept
    softmax(Z) ⊙ sum(onehot(y, k), axis=1, keepdims=True), a factor of ones."""
    d = dlsym.derive(
        {"name": "ce", "symbols": {"Z": {"shape": ["B", "k"]}, "y": {"shape": ["B"],
         "domain": {"index": "k"}}}, "dims": {"B": 4, "k": 3}, "objective": objective,
         "wrt": "Z"},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("gradient")["expr"] == "(softmax(Z, axis=1) - onehot(y, k))/B"
