"""dlsym check on batched functions written as NumPy deep-learning libraries write them
(X: [B, n], W: [n, k], b: [k], integer labels), and --order 2: Hessians, and the
elementwise second derivative of an activation's grad2. Each wrong function is flagged
with the diagnosis of its bug; each right one passes in both dtypes."""

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CATALOG
from scipy.special import expit

import dlsym
from dlsym._cli import main
from dlsym.check._gradient import check_gradient
from dlsym.testing import assert_gradient

BATCHED = CATALOG / "batched_softmax_regression.yaml"  # X [8, 5], W [5, 3], b [3], y [8]
LOGISTIC = CATALOG / "logistic_regression.yaml"  # X [6, 3], w [3]
DTYPES = ["float32", "float64"]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def delta(X, W, b, y):
    """dL/dZ of the batch-mean softmax cross-entropy, labels as integers."""
    return (softmax(X @ W + b) - np.eye(W.shape[1])[y]) / X.shape[0]


def dense_grads(X, W, b, y):
    d = delta(X, W, b, y)
    return {"W": X.T @ d, "b": d.sum(axis=0)}


# --- correct batched gradients, the ways real code returns them ----------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_gradients_pass(dtype):
    report = assert_gradient(BATCHED, dense_grads, dtype=dtype)
    assert [(p.wrt, p.shape, p.got_shape) for p in report.parts] == [
        ("W", (5, 3), (5, 3)),
        ("b", (3,), (3,)),
    ]
    assert report.max_rel_error < (1e-4 if dtype == "float32" else 1e-12)
    assert_gradient(BATCHED, lambda X, W, b, y: delta(X, W, b, y) @ W.T, wrt="X", dtype=dtype)


GUARDED_CE = {
    "name": "guarded_cross_entropy",
    "symbols": {"Z": {"shape": ["B", "k"]}, "y": {"shape": ["B"], "domain": {"index": "k"}}},
    "dims": {"B": 4, "k": 3},
    # as numpy-ml writes its loss: a machine-epsilon guard inside the log
    "objective": "-sum(onehot(y, k) * log(softmax(Z, axis=1) + 2.220446049250313e-16))",
    "wrt": "Z",
}


def test_a_loss_guard_constant_is_below_the_float64_floor():
    """p - y leaves out the guard's eps / p (about 1e-14 of the gradient): a match, while
    an error 1e-9 of the gradient's size is still flagged."""
    right = lambda Z, y: softmax(Z) - np.eye(3)[y]  # noqa: E731
    report = check_gradient(GUARDED_CE, right, points=32)
    assert report.passed and 1e-16 < report.max_rel_error < 1e-12
    assert "and at least 1e-12 max|g|" in report.tolerance_why
    off = check_gradient(GUARDED_CE, lambda Z, y: right(Z, y) * (1 + 1e-9), points=32)
    assert not off.passed


def test_labels_arrive_as_integer_arrays():
    seen = []

    def grads(X, W, b, y):
        seen.append((y.dtype, X.dtype))
        return dense_grads(X, W, b, y)

    assert_gradient(BATCHED, grads, dtype="float32", points=2)
    assert seen == [(np.dtype("int64"), np.dtype("float32"))] * 2


def test_torch_and_jax_get_integer_labels_too():
    torch = pytest.importorskip("torch")

    def torch_grads(X, W, b, y):
        d = (torch.softmax(X @ W + b, dim=1) - torch.nn.functional.one_hot(y, 3)) / X.shape[0]
        return X.T @ d, d.sum(dim=0)

    assert assert_gradient(BATCHED, torch_grads, dtype="float32").framework == "torch"
    import jax

    def jax_grads(X, W, b, y):
        d = (jax.nn.softmax(X @ W + b) - jax.nn.one_hot(y, 3)) / X.shape[0]
        return {"W": X.T @ d, "b": d.sum(axis=0)}

    assert assert_gradient(BATCHED, jax_grads, dtype="float32").framework == "jax"


def test_returned_conventions():
    # a layer's backward returning one gradient per input, in the spec's order (None
    # for the labels), and a dict keyed dW / db
    every = lambda X, W, b, y: (delta(X, W, b, y) @ W.T, *dense_grads(X, W, b, y).values(), None)  # noqa: E731
    report = assert_gradient(BATCHED, every)
    # dX is returned but X is not in wrt: said, not passed over (a wrong dX 'matched')
    unchecked = (
        "the function also returned a gradient for X, which was not checked (not in wrt: "
        "name every symbol to check with --wrt, repeated, or wrt= in Python)"
    )
    assert report.notes == (unchecked,) and f"note: {unchecked}" in report.format()
    extra = lambda **kw: {**dense_grads(**kw), "dX": np.zeros_like(kw["X"])}  # noqa: E731
    assert check_gradient(BATCHED, extra).notes == (unchecked,)
    assert check_gradient(BATCHED, every, wrt=["W", "b", "X"]).notes == ()
    prefixed = lambda **kw: {f"d{k}": v for k, v in dense_grads(**kw).items()}  # noqa: E731
    assert assert_gradient(BATCHED, prefixed).passed
    # a bias gradient kept as [1, k] (sum(axis=0, keepdims=True)) is read, and said so
    keepdims = lambda **kw: {**dense_grads(**kw), "b": dense_grads(**kw)["b"][None, :]}  # noqa: E731
    report = assert_gradient(BATCHED, keepdims)
    assert report.parts[1].note == (
        "returned with shape (1, 3); the gradient has shape (3,): compared after dropping "
        "size-1 axes (keepdims)"
    )
    assert "note (b): returned with shape (1, 3)" in report.format()


# --- real-style batched bugs, each with its diagnosis --------------------------------


def _w(fn):
    return lambda **kw: {**dense_grads(**kw), "W": fn(**kw)}


def _b(fn):
    return lambda **kw: {**dense_grads(**kw), "b": fn(**kw)}


BUGS = {
    "no 1/B on W": (
        _w(lambda X, W, b, y: X.T @ delta(X, W, b, y) * X.shape[0]),
        "W",
        "off by a factor 8 = B: a sum where the mean over B is meant?",
    ),
    "transposed W": (
        _w(lambda X, W, b, y: delta(X, W, b, y).T @ X),
        "W",
        "returned shape (3, 5), expected (5, 3) (the gradient with respect to W): "
        "transposed: you return the transpose of the gradient",
    ),
    "bias not summed over the batch": (
        _b(lambda X, W, b, y: delta(X, W, b, y)),
        "b",
        "returned shape (8, 3), expected (3,) (the gradient with respect to b): its sum "
        "over axis 0 (size 8 = B) matches: the per-example gradients were not reduced "
        "over that axis (the batch?)",
    ),
    "sign of W": (
        _w(lambda X, W, b, y: -X.T @ delta(X, W, b, y)),
        "W",
        "sign flipped: your gradient is the negative of the expected one",
    ),
    "P instead of P - Y (W)": (
        _w(lambda X, W, b, y: X.T @ softmax(X @ W + b) / X.shape[0]),
        "W",
        "a missing term: -(X.T @ onehot(y, k))/B",
    ),
    "P instead of P - Y (b)": (
        _b(lambda X, W, b, y: softmax(X @ W + b).sum(axis=0) / X.shape[0]),
        "b",
        "a missing term: -sum(onehot(y, k), axis=0)/B",
    ),
    # each row of P − Y sums to 0: averaged along the classes, 1e-17 everywhere (it read
    # "off by a constant factor 7.41901e-18")
    "bias averaged along the wrong axis": (
        _b(lambda X, W, b, y: delta(X, W, b, y).mean(axis=1)[: W.shape[1]]),
        "b",
        "your result is zero everywhere up to rounding (within the tolerance at every "
        "entry); the expected one is not: a sum or mean along the wrong axis, where the "
        "entries cancel?",
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_batched_bug_is_diagnosed(bug, dtype):
    fn, wrt, expected = BUGS[bug]
    report = check_gradient(BATCHED, fn, dtype=dtype)
    assert not report.passed
    assert {p.wrt: p.passed for p in report.parts} == {"W": wrt != "W", "b": wrt != "b"}
    part = next(p for p in report.parts if p.wrt == wrt)
    assert part.diagnosis == expected
    with pytest.raises(AssertionError, match="DOES NOT MATCH"):
        assert_gradient(BATCHED, fn, dtype=dtype)


def test_input_gradient_bugs_along_the_batch():
    def summed(X, W, b, y):  # one row per example summed away
        return (delta(X, W, b, y) @ W.T).sum(axis=0)

    part = check_gradient(BATCHED, summed, wrt="X").parts[0]
    assert part.diagnosis == (
        "returned shape (5,), expected (8, 5) (the gradient with respect to X): it is the "
        "sum of the expected gradient over axis 0 (size 8 = B): the gradient with respect "
        "to X keeps that axis (one row per example)"
    )

    def last_row_wrong(X, W, b, y):  # the last example of the batch is scaled
        g = delta(X, W, b, y) @ W.T
        g[-1] *= 2
        return g

    part = check_gradient(BATCHED, last_row_wrong, wrt="X").parts[0]
    assert part.diagnosis == "only row 7 (of 8 = B along axis 0) differs; the others match"
    assert {e.index[0] for e in part.worst} == {7}


NEGATIVE_SAMPLING = {
    "name": "negative_sampling",
    "symbols": {
        "X": {"shape": ["B", "n"]},
        "W": {"shape": ["V", "n"]},
        "b": {"shape": ["V"]},
        "t": {"shape": ["B"], "domain": {"index": "V"}},
        "neg": {"shape": ["S"], "domain": {"index": "V"}},
    },
    "dims": {"B": 3, "n": 2, "V": 5, "S": 2},
    "define": {"Zt": "sum(X * W[t], axis=1) + b[t]", "Zn": "X @ W[neg].T + b[neg]"},
    "objective": "-sum(log(sigmoid(Zt))) - sum(log(1 - sigmoid(Zn)))",
    "wrt": ["b"],
}


def test_a_broadcast_term_stays_inside_its_sum_in_the_diagnosis():
    """The derived bias gradient holds ``sum(sigmoid(Zn) - 1, axis=0)``-like sums of a
    broadcast constant; the diagnosis splits the result into its terms, and a term cut
    out of such a sum would be summed over axes it lacks (this crashed with exit 3)."""

    def right(X, W, b, t, neg):
        g = np.zeros_like(b)
        np.add.at(g, t, expit(np.sum(X * W[t], axis=1) + b[t]) - 1)
        np.add.at(g, neg, expit(X @ W[neg].T + b[neg]).sum(axis=0))
        return g

    def repeats_lost(X, W, b, t, neg):  # g[ids] += ... keeps one of repeated labels
        g = np.zeros_like(b)
        g[t] += expit(np.sum(X * W[t], axis=1) + b[t]) - 1
        g[neg] += expit(X @ W[neg].T + b[neg]).sum(axis=0)
        return g

    assert check_gradient(NEGATIVE_SAMPLING, right, wrt="b").passed
    report = check_gradient(NEGATIVE_SAMPLING, repeats_lost, wrt="b", points=32)
    assert not report.passed and report.parts[0].max_abs_error > 0.1


def test_other_wrong_shape_names_both_shapes():
    report = check_gradient(BATCHED, lambda X, W, b, y: {"W": W[:2], "b": b}, dtype="float32")
    part = report.parts[0]
    assert not report.passed and part.worst == () and np.isnan(part.max_abs_error)
    assert part.diagnosis == (
        "returned shape (2, 3), expected (5, 3) (the gradient with respect to W)"
    )
    text = report.format()
    assert "│ W   │ 16     │ -" in text and "diagnosis (W): returned shape (2, 3)" in text


# --- --order 2: Hessians ---------------------------------------------------------------


def logistic_hessian(X, y, w, lam):
    p = expit(X @ w)
    return X.T @ np.diag(p * (1 - p)) @ X / len(y) + lam * np.eye(len(w))


def _curvature(X, w):
    p = expit(X @ w)
    return p * (1 - p)


HESSIAN_BUGS = {
    "missing 1/m": (
        lambda X, y, w, lam: X.T @ np.diag(_curvature(X, w)) @ X + lam * np.eye(len(w)),
        "the term (X.T @ diag((1 - sigmoid(X @ w))*sigmoid(X @ w)) @ X)/m is off by a "
        "factor 6 = m: a sum where the mean over m is meant?",
    ),
    "missing penalty": (
        lambda X, y, w, lam: logistic_hessian(X, y, w, lam) - lam * np.eye(len(w)),
        "a missing term: lam*eye(n)",
    ),
    "missing transpose": (  # X diag(d) X^T: the transposes on the wrong sides
        lambda X, y, w, lam: (X * _curvature(X, w)[:, None]) @ X.T / len(y),
        "returned shape (6, 6), expected (3, 3) (the Hessian with respect to w)",
    ),
    "diagonal only": (
        lambda X, y, w, lam: np.diag(logistic_hessian(X, y, w, lam)),
        "returned shape (3,), expected (3, 3): a return of the symbol's shape is read as "
        "the diagonal, but this Hessian is not diagonal (off-diagonal entries up to 0.164); "
        "its diagonal matches",
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_order2_logistic_hessian(dtype):
    report = assert_gradient(LOGISTIC, logistic_hessian, dtype=dtype, order=2)
    assert report.order == 2 and report.result == "Hessian"
    assert report.reference == "the derived Hessian (matrix form)"
    assert report.parts[0].shape == (3, 3)
    text = report.format()
    assert "matches the second derivative of logistic_regression" in text


@pytest.mark.parametrize("bug", sorted(HESSIAN_BUGS))
def test_order2_mutants_are_flagged(bug):
    fn, expected = HESSIAN_BUGS[bug]
    report = check_gradient(LOGISTIC, fn, order=2, dtype="float32")
    assert not report.passed
    assert report.parts[0].diagnosis == expected


def test_order2_matrix_wrt_is_checked_against_the_derived_hessian():
    # the Hessian with respect to the matrix W is derived (its action on a direction,
    # stacked into jax.hessian's layout): the reference is that derived Hessian
    def hessian_W(X, W, b, y):
        P = softmax(X @ W + b)
        B, k = P.shape
        # d2L/dW_ij dW_kl = sum_r X_ri X_rk (P_rj [j = l] - P_rj P_rl) / B
        S = np.einsum("rj,jl->rjl", P, np.eye(k)) - np.einsum("rj,rl->rjl", P, P)
        return np.einsum("ri,rk,rjl->ijkl", X, X, S) / B

    report = assert_gradient(BATCHED, hessian_W, wrt="W", order=2, points=4)
    assert report.reference == "the derived Hessian (matrix form)"
    assert report.parts[0].shape == (5, 3, 5, 3)
    flat = check_gradient(
        BATCHED, lambda **kw: hessian_W(**kw).reshape(15, 15), wrt="W", order=2, points=4
    )
    assert flat.parts[0].diagnosis == (
        "returned shape (15, 15), expected (5, 3, 5, 3) (the Hessian with respect to W): it "
        "is the Hessian flattened: reshaped to (5, 3, 5, 3) (row-major) it matches; return "
        "the layout of JAX ((5, 3, 5, 3))"
    )


# --- --order 2: an activation's elementwise grad2 ------------------------------------


def activation(f, key="objective", shape=("B", "n")):
    return {
        "name": f"{f}_activation",
        "symbols": {"x": {"shape": list(shape)}},
        "dims": {"B": 4, "n": 3},
        key: f"sum({f}(x))" if key == "objective" else f"{f}(x)",
        "wrt": "x",
    }


def _s(x):
    return expit(x)


GRAD2 = {  # numpy-ml's activations' grad2, written as they read
    "sigmoid": lambda x: _s(x) * (1 - _s(x)) * (1 - 2 * _s(x)),
    "tanh": lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
    "softplus": lambda x: _s(x) * (1 - _s(x)),
}
WRONG_GRAD2 = {  # each the second derivative of something else, or a slip
    "sigmoid": lambda x: _s(x) * (1 - _s(x)) * (1 - _s(x)),
    "tanh": lambda x: -2 * np.tanh(x) * (1 - np.tanh(x)),
    "softplus": lambda x: _s(x),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", sorted(GRAD2))
def test_elementwise_grad2(f, dtype):
    report = assert_gradient(activation(f), GRAD2[f], order=2, dtype=dtype)
    assert report.parts[0].note == (
        "returned with shape (4, 3): compared with the diagonal of the Hessian (shape "
        "(4, 3, 4, 3)), which is diagonal here: every off-diagonal entry is 0 at all 16 points"
    )
    assert not check_gradient(activation(f), WRONG_GRAD2[f], order=2, dtype=dtype).passed
    assert (
        check_gradient(activation(f), lambda x: -GRAD2[f](x), order=2).parts[0].diagnosis
        == "sign flipped: your Hessian is the negative of the expected one"
    )


def test_elementwise_output_first_and_second_derivative():
    spec = activation("tanh", key="output", shape=("n",))
    first = assert_gradient(spec, lambda x: 1 - np.tanh(x) ** 2)
    assert first.result == "Jacobian" and "diagonal of the Jacobian" in first.parts[0].note
    second = assert_gradient(spec, GRAD2["tanh"], order=2)
    assert second.reference == (
        "jax.jacfwd(jax.jacfwd(output)) of the spec's output (the derivation gives no second "
        "derivative of an output)"
    )
    assert not check_gradient(spec, WRONG_GRAD2["tanh"], order=2).passed


def test_scalar_activation_grad2_in_the_catalog():
    spec = CATALOG / "activation_sigmoid.yaml"
    assert_gradient(spec, GRAD2["sigmoid"], order=2, dtype="float32")
    report = assert_gradient(spec, lambda x: np.reshape(GRAD2["sigmoid"](x), (1,)), order=2)
    assert report.parts[0].note.startswith("returned with shape (1,); the Hessian has shape ()")


def test_order2_bad_input():
    with pytest.raises(dlsym.SpecError, match="with respect to one symbol; name it with --wrt"):
        check_gradient(BATCHED, dense_grads, order=2)
    with pytest.raises(dlsym.SpecError, match="order must be 1 or 2"):
        check_gradient(LOGISTIC, logistic_hessian, order=3)


# --- the command line ---------------------------------------------------------------


@pytest.fixture
def layer_file(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(
        "import numpy as np\n"
        "def _delta(X, W, b, y):\n"
        "    Z = X @ W + b\n"
        "    e = np.exp(Z - Z.max(axis=1, keepdims=True))\n"
        "    return (e / e.sum(axis=1, keepdims=True) - np.eye(W.shape[1])[y]) / len(X)\n"
        "def dense_backward(X, W, b, y):\n"
        "    d = _delta(X, W, b, y)\n"
        "    return X.T @ d, d.sum(axis=0)\n"
        "def bias_unsummed(X, W, b, y):\n"
        "    d = _delta(X, W, b, y)\n"
        "    return X.T @ d, d\n"
        "def sigmoid_grad2(x):\n"
        "    s = 1 / (1 + np.exp(-x))\n"
        "    return s * (1 - s) * (1 - 2 * s)\n"
        "def sigmoid_grad2_wrong(x):\n"
        "    s = 1 / (1 + np.exp(-x))\n"
        "    return s * (1 - s) * (1 - s)\n"
    )
    return path


@pytest.mark.parametrize(
    "args,code,texts",
    [
        (
            ["batched_softmax_regression", "--grad", "{f}:dense_backward"],
            0,
            ["matches the derivative of batched_softmax_regression"],
        ),
        (
            ["batched_softmax_regression", "--grad", "{f}:bias_unsummed"],
            1,
            [
                "DOES NOT MATCH",
                "diagnosis (b): returned shape (8, 3), expected (3,)",
                "its sum over axis 0 (size 8 = B) matches",
            ],
        ),
        (
            ["activation_sigmoid", "--grad", "{f}:sigmoid_grad2", "--order", "2"],
            0,
            ["matches the second derivative", "reference: the derived Hessian (matrix form)"],
        ),
        (
            ["activation_sigmoid", "--grad", "{f}:sigmoid_grad2_wrong", "--order", "2"],
            1,
            ["DOES NOT MATCH the second derivative", "worst entries of the Hessian"],
        ),
    ],
)
def test_cli(layer_file, args, code, texts):
    args = [a.format(f=layer_file) for a in args]
    result = CliRunner().invoke(
        main, ["check", *args, "--dtype", "float32"], env={"COLUMNS": "160"}
    )
    assert result.exit_code == code, result.output
    for text in texts:
        assert text in result.output


@pytest.mark.parametrize(
    "args,text",
    [
        (["--order", "2"], "--order 2 checks the second derivative with respect to one symbol"),
        (["--order", "3"], "Invalid value for '--order'"),
    ],
)
def test_cli_order_bad_input(layer_file, args, text):
    result = CliRunner().invoke(
        main,
        ["check", "batched_softmax_regression", "--grad", f"{layer_file}:dense_backward", *args],
    )
    assert result.exit_code == 2
    assert text in result.stderr and "Traceback (most recent call last)" not in result.stderr


def test_a_layout_mistake_with_right_entries_shows_no_errors_of_zero():
    """W's gradient returned transposed: every entry is right once transposed back, and
    the report read errors 0.000e+00 beside MISMATCH, with a table of 'worst entries'
    equal on both sides. The errors are '-' (nothing compared as returned) and no
    entries are listed; the diagnosis says what is wrong."""
    fn = BUGS["transposed W"][0]
    report = check_gradient(BATCHED, fn)
    part = next(p for p in report.parts if p.wrt == "W")
    assert not part.passed and part.worst == ()
    assert np.isnan(part.max_abs_error) and np.isnan(part.max_rel_error)
    assert part.diagnosis.endswith("transposed: you return the transpose of the gradient")


def test_a_wrong_hessian_of_a_matrix_held_as_its_action_is_diagnosed_not_a_crash():
    """The Hessian of sum((X / std(X, axis=1, keepdims=True))**2) in a matrix X is held
    as its action on a direction: a wrong Hessian (one entry off by 1) made the term-wise
    diagnosis evaluate those actions, whose direction was unbound (NameError '_dir_X',
    exit 3). It is a mismatch naming the one entry."""
    import jax
    import jax.numpy as jnp

    spec = {
        "name": "hess_dir",
        "symbols": {"X": {"shape": ["B", "d"]}},
        "dims": {"B": 2, "d": 3},
        "objective": "sum((X / std(X, axis=1, keepdims=True))**2)",
        "wrt": "X",
        "derive": ["hessian"],
    }
    hess = jax.hessian(lambda X: jnp.sum((X / X.std(axis=1, keepdims=True)) ** 2))

    def wrong(X):  # (JAX in float64: the tests' session fixture)
        H = np.array(hess(jnp.asarray(X)))
        H[0, 0, 0, 0] += 1.0
        return H

    report = check_gradient(spec, wrong, order=2, points=4)
    (part,) = report.parts
    assert not part.passed
    assert part.diagnosis == "only the entry [0, 0, 0, 0] differs; the others match"


def test_a_wrong_jacobian_held_as_an_action_is_diagnosed_not_a_crash():
    """The Jacobian of softmax(X @ W, axis=1) in W is held as its action on a direction
    (_dir_out): a wrong one (one entry off by 0.5) was exit 3, NameError '_dir_out'."""
    import jax

    spec = {
        "name": "jac_dir",
        "symbols": {"X": {"shape": ["B", "n"]}, "W": {"shape": ["n", "k"]}},
        "dims": {"B": 2, "n": 3, "k": 2},
        "output": "softmax(X @ W, axis=1)",
        "wrt": "W",
        "derive": ["jacobian"],
    }

    def wrong(X, W):
        J = np.array(jax.jacobian(lambda W: jax.nn.softmax(X @ W, axis=1))(W))
        J.flat[1] += 0.5
        return J

    (part,) = check_gradient(spec, wrong, points=4).parts
    assert not part.passed
    assert part.diagnosis == "only the entry [0, 0, 0, 1] differs; the others match"
