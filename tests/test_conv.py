"""Convolution and pooling (shared/spec-format.md, "Tensors of any rank": PyTorch's
``torch.nn.functional`` layouts and meaning). Each gradient is derived in closed form
(transposed convolutions, kernel correlations, unpooling), verified, and compared with
``jax.grad`` of a hand-written ``lax.conv_general_dilated`` function and with PyTorch's
autograd, at sizes other than the spec's (the dims are symbolic)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from click.testing import CliRunner
from conftest import CATALOG, check_against_jax_grad, compile_latex, derive_objective

import dlsym
from dlsym._cli import main

RNG = np.random.default_rng(5)


def _derive(symbols, objective, wrt, dims, define=None):
    return derive_objective(symbols, objective, wrt, dims, define, name="conv")


def _check(d, reference, point, names):
    return check_against_jax_grad(d, reference, point, names, points=4)


def _lax_conv(x, k, stride, padding, dilation=1):
    nd = k.ndim - 2
    spatial = "HW"[2 - nd :]
    return jax.lax.conv_general_dilated(
        x,
        k,
        (stride,) * nd,
        [(padding, padding)] * nd,
        rhs_dilation=(dilation,) * nd,
        dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial),
    )


def _torch_grads(fn, point, names):
    torch = pytest.importorskip("torch")
    tensors = {k: torch.tensor(v, requires_grad=k in names) for k, v in point.items()}
    fn(torch, **tensors).backward()
    return {n: tensors[n].grad.numpy() for n in names}


CONV_CASES = [(1, 0), (1, 1), (2, 0), (2, 1)]


@pytest.mark.parametrize("stride, padding", CONV_CASES)
def test_conv2d_gradients_are_a_transposed_convolution_and_a_correlation(stride, padding):
    keywords = (f", stride={stride}" if stride > 1 else "") + (
        f", padding={padding}" if padding else ""
    )
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", "kh", "kw"]}},
        f"sum(sin(conv2d(X, K{keywords})))",
        ["X", "K"],
        {"B": 2, "C": 2, "H": 5, "W": 4, "O": 2, "kh": 3, "kw": 2},
    )
    parts = d.result_display("gradient")["wrt"]
    assert parts["X"]["expr"] == (
        f"conv2d_input_grad(cos(conv2d(X, K{keywords})), K, (H, W){keywords})"
    )
    assert parts["K"]["expr"] == (
        f"conv2d_kernel_grad(X, cos(conv2d(X, K{keywords})), (kh, kw){keywords})"
    )

    def ref(X, K):
        return jnp.sum(jnp.sin(_lax_conv(X, K, stride, padding)))

    # other sizes than the spec's, an odd size with stride 2 (the last row is dropped)
    point = {"X": RNG.normal(size=(3, 4, 8, 7)), "K": RNG.normal(size=(5, 4, 3, 2))}
    got = _check(d, ref, point, ["X", "K"])

    def torch_fn(torch, X, K):
        return torch.sin(torch.nn.functional.conv2d(X, K, stride=stride, padding=padding)).sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride, padding", CONV_CASES)
def test_conv1d_gradients(stride, padding):
    d = _derive(
        {"X": {"shape": ["B", "C", "L"]}, "K": {"shape": ["O", "C", "m"]}},
        f"sum(tanh(conv1d(X, K, stride={stride}, padding={padding})) ** 2)",
        ["X", "K"],
        {"B": 2, "C": 2, "L": 6, "O": 3, "m": 3},
    )

    def ref(X, K):
        return jnp.sum(jnp.tanh(_lax_conv(X, K, stride, padding)) ** 2)

    point = {"X": RNG.normal(size=(4, 3, 9)), "K": RNG.normal(size=(2, 3, 4))}
    got = _check(d, ref, point, ["X", "K"])

    def torch_fn(torch, X, K):
        y = torch.nn.functional.conv1d(X, K, stride=stride, padding=padding)
        return (torch.tanh(y) ** 2).sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


# (stride, padding, dilation): a padding past the dilated kernel's reach, a stride
# larger than the dilation
DILATED_CASES = [(1, 0, 2), (2, 1, 2), (1, 3, 3), (3, 2, 2)]


@pytest.mark.parametrize("stride, padding, dilation", DILATED_CASES)
def test_dilated_conv2d_gradients_take_the_dilation_too(stride, padding, dilation):
    keywords = (f", stride={stride}" if stride > 1 else "") + (
        f", padding={padding}" if padding else ""
    )
    keywords += f", dilation={dilation}"
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", "kh", "kw"]}},
        f"sum(sin(conv2d(X, K{keywords})))",
        ["X", "K"],
        {"B": 2, "C": 2, "H": 7, "W": 6, "O": 2, "kh": 3, "kw": 2},
    )
    parts = d.result_display("gradient")["wrt"]
    assert parts["X"]["expr"] == (
        f"conv2d_input_grad(cos(conv2d(X, K{keywords})), K, (H, W){keywords})"
    )
    assert parts["K"]["expr"] == (
        f"conv2d_kernel_grad(X, cos(conv2d(X, K{keywords})), (kh, kw){keywords})"
    )
    # the printed results read back as the language, as the same expressions
    for name in ("X", "K"):
        again = _derive(
            {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", "kh", "kw"]}},
            f"sum({parts[name]['expr']})",
            ["X"],
            {"B": 2, "C": 2, "H": 7, "W": 6, "O": 2, "kh": 3, "kw": 2},
        )
        assert again.spec.objective.args[0] == d.results["gradient"][name].expr
    # the output size floor((H + 2p - d(k - 1) - 1)/s) + 1, as PyTorch's
    (z,) = [s for s in d.steps if s.title == "Objective"]
    shape = d.spec.algebra.shape(d.spec.objective.args[0].args[0])
    H, W = (d.spec.dim_symbols[n] for n in "HW")
    kh, kw = (d.spec.dim_symbols[n] for n in ("kh", "kw"))
    for size, n, k in zip(shape[2:], (H, W), (kh, kw)):
        for n_val, k_val in ((11, 3), (9, 2), (20, 4)):
            at = {n: n_val, k: k_val}
            want = (n_val + 2 * padding - dilation * (k_val - 1) - 1) // stride + 1
            assert size.subs(at) == want

    def ref(X, K):
        return jnp.sum(jnp.sin(_lax_conv(X, K, stride, padding, dilation)))

    point = {"X": RNG.normal(size=(3, 4, 11, 9)), "K": RNG.normal(size=(5, 4, 3, 2))}
    got = _check(d, ref, point, ["X", "K"])
    got_np = d.function("gradient", "numpy")(**point)  # strided views, not lax

    def torch_fn(torch, X, K):
        y = torch.nn.functional.conv2d(X, K, stride=stride, padding=padding, dilation=dilation)
        return torch.sin(y).sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got_np[name], want[name], rtol=1e-10, atol=1e-12)


def test_dilated_conv1d_gradients():
    d = _derive(
        {"X": {"shape": ["B", "C", "L"]}, "K": {"shape": ["O", "C", "m"]}},
        "sum(tanh(conv1d(X, K, stride=2, padding=2, dilation=3)) ** 2)",
        ["X", "K"],
        {"B": 2, "C": 2, "L": 9, "O": 3, "m": 3},
    )

    def ref(X, K):
        return jnp.sum(jnp.tanh(_lax_conv(X, K, 2, 2, 3)) ** 2)

    point = {"X": RNG.normal(size=(4, 3, 13)), "K": RNG.normal(size=(2, 3, 4))}
    got = _check(d, ref, point, ["X", "K"])

    def torch_fn(torch, X, K):
        y = torch.nn.functional.conv1d(X, K, stride=2, padding=2, dilation=3)
        return (torch.tanh(y) ** 2).sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


# (kernel's spatial sizes, dilation): odd and even spans, rectangular kernels
SAME_CASES = [((3, 3), 1), ((2, 3), 1), ((2, 2), 2), ((4, 3), 1)]


@pytest.mark.parametrize("taps, dilation", SAME_CASES)
def test_same_padding_as_pytorchs(taps, dilation):
    """padding='same': the output as large as the input, the odd row or column of padding
    after (PyTorch's); where the sides differ the padding is written out as pad()."""
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", *taps]}},
        f"sum(sin(conv2d(X, K, padding='same', dilation={dilation})) * X[:, :1])",
        ["X", "K"],
        {"B": 2, "C": 2, "H": 5, "W": 6, "O": 1},
    )
    point = {"X": RNG.normal(size=(3, 2, 7, 5)), "K": RNG.normal(size=(1, 2, *taps))}
    total = [dilation * (t - 1) for t in taps]
    widths = [(t // 2, t - t // 2) for t in total]

    def ref(X, K):
        y = jax.lax.conv_general_dilated(
            X, K, (1, 1), widths, rhs_dilation=(dilation,) * 2,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )  # fmt: skip
        return jnp.sum(jnp.sin(y) * X[:, :1])

    got = _check(d, ref, point, ["X", "K"])

    def torch_fn(torch, X, K):
        with warnings.catch_warnings():  # an even kernel: PyTorch pads a copy, and says so
            warnings.simplefilter("ignore", UserWarning)
            y = torch.nn.functional.conv2d(X, K, padding="same", dilation=dilation)
        return (torch.sin(y) * X[:, :1]).sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)
    text = d.expr_of(d.spec.objective)
    if len(set(widths)) == 1 and widths[0][0] == widths[0][1]:
        assert f"conv2d(X, K, padding={widths[0][0]}" in text  # the op's own padding
    else:
        assert f"conv2d(pad(X, ((0, 0), (0, 0), {widths[0]}, {widths[1]})), K" in text
    for name in ("X", "K"):  # the printed results read back as the same expressions
        again = _derive(
            {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", *taps]}},
            f"sum({d.result_display('gradient')['wrt'][name]['expr']})",
            ["X"],
            {"B": 2, "C": 2, "H": 5, "W": 6, "O": 1},
        )
        assert again.spec.objective.args[0] == d.results["gradient"][name].expr


def test_same_padding_of_an_even_conv1d_kernel_and_valid_padding():
    d = _derive(
        {"X": {"shape": ["B", "C", "L"]}, "K": {"shape": ["O", "C", 2]}},
        "sum(tanh(conv1d(X, K, padding='same')) ** 2) + sum(conv1d(X, K, padding='valid'))",
        ["X", "K"],
        {"B": 2, "C": 2, "L": 6, "O": 3},
    )
    assert d.expr_of(d.spec.objective) == (
        "sum(tanh(conv1d(pad(X, ((0, 0), (0, 0), (0, 1))), K))**2) + sum(conv1d(X, K))"
    )
    point = {"X": RNG.normal(size=(2, 2, 9)), "K": RNG.normal(size=(3, 2, 2))}
    got = d.function("gradient")(**point)

    def torch_fn(torch, X, K):
        f = torch.nn.functional.conv1d
        with warnings.catch_warnings():  # an even kernel: PyTorch pads a copy, and says so
            warnings.simplefilter("ignore", UserWarning)
            same = f(X, K, padding="same")
        return (torch.tanh(same) ** 2).sum() + f(X, K, padding="valid").sum()

    want = _torch_grads(torch_fn, point, ["X", "K"])
    for name in ("X", "K"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "objective, message",
    [
        ("sum(conv2d(X, K, stride=2, padding='same'))", "padding='same' needs stride 1"),
        ("sum(conv2d(X, M, padding='same'))", "needs the kernel's spatial sizes as numbers"),
        ("sum(conv2d(X, K, padding='full'))", "padding must be a number, 'same' or 'valid'"),
        ("sum(max_pool2d(X, 2, padding='same'))", "pooling takes an integer padding"),
    ],
)
def test_bad_named_paddings_are_located_errors(objective, message):
    with pytest.raises(dlsym.SpecError, match=message):
        _derive(
            {
                "X": {"shape": ["B", "C", "H", "W"]},
                "K": {"shape": ["O", "C", 3, 3]},
                "M": {"shape": ["O", "C", "k", "k"]},
            },
            objective,
            ["X"],
            {"B": 2, "C": 2, "H": 6, "W": 6, "O": 2, "k": 3},
        )


def test_second_backprop_through_the_gradient_ops_a_hessian_wrt_the_kernel():
    # the gradient is bilinear in (X, K): its own backprop needs the rules of the
    # transposed convolution and the correlation
    spec = {
        "name": "conv_hessian",
        "symbols": {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 2, 2]}},
        "dims": {"B": 2, "C": 1, "H": 4, "W": 4, "O": 2},
        "objective": "sum(sin(conv2d(X, K, stride=2, padding=1)))",
        "wrt": ["K"],
        "derive": ["hessian"],
    }
    report = dlsym.derive(spec).verify(points=3)
    assert report.passed, report
    # and with a dilation: the gradient operations' rules carry it
    spec = dict(spec, objective="sum(sin(conv2d(X, K, padding=1, dilation=2)))")
    spec["dims"] = dict(spec["dims"], H=5)
    report = dlsym.derive(spec).verify(points=3)
    assert report.passed, report


def _pool_ref(x, k, reduce):
    h, w = x.shape[-2] // k, x.shape[-1] // k
    x = x[..., : h * k, : w * k].reshape(x.shape[:-2] + (h, k, w, k))
    return reduce(x, axis=(-3, -1))


@pytest.mark.parametrize("pool, reduce", [("max_pool2d", jnp.max), ("avg_pool2d", jnp.mean)])
def test_pooling_gradients(pool, reduce):
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}},
        f"sum(sin({pool}(X, 2)) * 3)",
        ["X"],
        {"B": 2, "C": 2, "H": 4, "W": 5},
    )

    def ref(X):
        return jnp.sum(jnp.sin(_pool_ref(X, 2, reduce)) * 3)

    point = {"X": RNG.normal(size=(3, 2, 7, 6))}  # a row past the last whole window
    got = _check(d, ref, point, ["X"])

    def torch_fn(torch, X):  # no ties at random points: PyTorch's gradient is the same
        return (torch.sin(getattr(torch.nn.functional, pool)(X, 2)) * 3).sum()

    np.testing.assert_allclose(
        got["X"], _torch_grads(torch_fn, point, ["X"])["X"], rtol=1e-10, atol=1e-12
    )


def test_a_tie_in_a_max_pooling_window_splits_the_gradient_equally():
    # the kink convention: ties split equally (jnp.max's gradient); lax.reduce_window
    # and PyTorch give all of it to one entry
    dims = {"B": 1, "C": 1, "H": 3, "W": 4}
    d = _derive({"X": {"shape": ["B", "C", "H", "W"]}}, "sum(max_pool2d(X, 2))", ["X"], dims)
    X = np.array([[[[1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 2.0], [5.0, 0.0, 3.0, 3.0]]]])
    want = np.array(
        [[[[1 / 3, 1 / 3, 0.0, 1 / 3], [0.0, 1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0, 0.0]]]]
    )
    for backend in ("numpy", "jax"):
        np.testing.assert_array_equal(np.asarray(d.function("gradient", backend)(X=X)), want)
    avg = _derive({"X": {"shape": ["B", "C", "H", "W"]}}, "sum(avg_pool2d(X, 2))", ["X"], dims)
    want = np.array([[[[0.25] * 4, [0.25] * 4, [0.0] * 4]]])  # the third row is in no window
    np.testing.assert_array_equal(avg.function("gradient")(X=X), want)


def _lax_pool(x, k, stride, padding, kind):
    # PyTorch's pooling in lax: max pads with -inf, average with zeros counted in the
    # divisor k^2 (count_include_pad=True); lax.reduce_window's max gradient gives a
    # tie wholly to one entry, so it is compared at points without ties only
    window, strides = (1,) * (x.ndim - 2) + (k, k), (1,) * (x.ndim - 2) + (stride, stride)
    pads = [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads) / k**2


# (k, stride, padding): overlapping windows with and without padding, a stride past
# the window (entries in no window), windows side by side with padding
POOL_CASES = [(3, 1, 1), (3, 2, 1), (2, 1, 0), (2, 3, 1), (2, 2, 1)]


@pytest.mark.parametrize("k, stride, padding", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_strided_and_padded_pooling_gradients(kind, k, stride, padding):
    pool = f"{kind}_pool2d"
    keywords = (f", stride={stride}" if stride != k else "") + (
        f", padding={padding}" if padding else ""
    )
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}},
        f"sum(sin({pool}(X, {k}{keywords})) * 3)",
        ["X"],
        {"B": 1, "C": 1, "H": 5, "W": 6},  # few entries: sympy.diff of max pooling is slow
    )
    expr = d.result_display("gradient")["expr"]
    if kind == "avg":
        assert (
            expr == f"unpool2d(3*cos(avg_pool2d(X, {k}{keywords})), {k}, (H, W){keywords})/{k**2}"
        )
    elif stride < k:  # an entry may win several windows: their shares add up
        assert (
            expr == f"max_pool2d_input_grad(3*cos(max_pool2d(X, {k}{keywords})), X, {k}{keywords})"
        )
    else:
        assert expr.startswith(f"max_pool2d_mask(X, {k}{keywords})*unpool2d(")
    # the gradient's operations are functions of the language: the result reads back
    again = _derive({"X": {"shape": ["B", "C", "H", "W"]}}, f"sum({expr})", ["X"], d.spec.dims)
    assert again.spec.objective.args[0] == d.results["gradient"]["X"].expr

    def ref(X):
        return jnp.sum(jnp.sin(_lax_pool(X, k, stride, padding, kind)) * 3)

    # other sizes than the spec's; all negative for max pooling, so that a zero padding
    # would win where -inf does not
    x = RNG.normal(size=(3, 2, 8, 7))
    point = {"X": -np.abs(x) if kind == "max" else x}
    got = _check(d, ref, point, ["X"])
    got_np = np.asarray(d.function("gradient", "numpy")(**point))

    def torch_fn(torch, X):
        pooled = getattr(torch.nn.functional, pool)(X, k, stride=stride, padding=padding)
        return (torch.sin(pooled) * 3).sum()

    want = _torch_grads(torch_fn, point, ["X"])["X"]
    np.testing.assert_allclose(got["X"], want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_np, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k, stride, padding", POOL_CASES)
def test_the_pooled_size_is_pytorchs(k, stride, padding):
    from dlsym.expr._conv import pooled_shape

    H, W = sympy.symbols("H W", integer=True, positive=True)
    shape = pooled_shape((H, W), k, "max_pool2d", stride, padding)
    torch = pytest.importorskip("torch")
    for h, w in ((5, 6), (8, 7), (13, 4)):
        want = torch.nn.functional.max_pool2d(
            torch.zeros(1, 1, h, w), k, stride=stride, padding=padding
        ).shape[-2:]
        assert tuple(n.subs({H: h, W: w}) for n in shape) == tuple(want)
        assert tuple(want) == tuple((n + 2 * padding - k) // stride + 1 for n in (h, w))


def test_overlapping_max_pooling_adds_up_each_windows_equal_split_of_a_tie():
    # 2 x 2 windows at stride 1 over a 3 x 3 input: four windows, and by hand
    #   window (0, 0) {1, 1, 0, 1}: a tie of three, 1/3 each to (0, 0), (0, 1), (1, 1)
    #   window (0, 1) {1, 0, 1, 2}: 1 to (1, 2)
    #   window (1, 0) {0, 1, 3, 0}: 1 to (2, 0)
    #   window (1, 1) {1, 2, 0, 2}: a tie of two, 1/2 each to (1, 2), (2, 2)
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}},
        "sum(max_pool2d(X, 2, stride=1))",
        ["X"],
        {"B": 1, "C": 1, "H": 3, "W": 3},
    )
    X = np.array([[[[1.0, 1.0, 0.0], [0.0, 1.0, 2.0], [3.0, 0.0, 2.0]]]])
    want = np.array([[[[1 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 1.5], [1.0, 0.0, 0.5]]]])
    for backend in ("numpy", "jax"):
        got = np.asarray(d.function("gradient", backend)(X=X))
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    # with a -inf padding that never wins, windows 3 x 3 at stride 2: the four windows
    # all hold the centre (1, 1), and each ties it with other entries
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}},
        "sum(max_pool2d(X, 3, stride=2, padding=1))",
        ["X"],
        {"B": 1, "C": 1, "H": 3, "W": 3},
    )
    X = np.array([[[[-5.0, -1.0, -3.0], [-1.0, -1.0, -2.0], [-4.0, -3.0, -1.0]]]])
    # windows read rows/columns {0, 1} or {1, 2}:
    #   (0, 0) {-5, -1, -1, -1}: 1/3 to (0, 1), (1, 0), (1, 1)
    #   (0, 1) {-1, -3, -1, -2}: 1/2 to (0, 1), (1, 1)
    #   (1, 0) {-1, -1, -4, -3}: 1/2 to (1, 0), (1, 1)
    #   (1, 1) {-1, -2, -3, -1}: 1/2 to (1, 1), (2, 2)
    third, half = 1 / 3, 1 / 2
    want = np.array(
        [
            [
                [
                    [0.0, third + half, 0.0],
                    [third + half, third + 3 * half, 0.0],
                    [0.0, 0.0, half],
                ]
            ]
        ]
    )
    for backend in ("numpy", "jax"):
        got = np.asarray(d.function("gradient", backend)(X=X))
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_keywords_as_pytorch_writes_them():
    base = {
        "X": {"shape": ["B", "C", "H", "W"]},
        "K": {"shape": ["O", "C", 3, 3]},
        "Y": {"shape": ["B", "C", "H"]},
        "M": {"shape": ["O", "C", 3]},
    }
    dims = {"B": 2, "C": 2, "H": 6, "W": 6, "O": 2}
    same = [
        (
            "sum(conv2d(X, K, stride=(2, 2), padding=(1, 1), dilation=[2, 2]))",
            "sum(conv2d(X, K, stride=2, padding=1, dilation=2))",
        ),
        ("sum(conv2d(X, K, dilation=1))", "sum(conv2d(X, K))"),
        ("sum(conv1d(Y, M, stride=(2,)))", "sum(conv1d(Y, M, stride=2))"),
        ("sum(max_pool2d(X, 2, stride=2, padding=0))", "sum(max_pool2d(X, 2))"),
        ("sum(max_pool2d(X, kernel_size=2, stride=None))", "sum(max_pool2d(X, 2))"),
        ("sum(max_pool2d(X, 3, 2, 1))", "sum(max_pool2d(X, 3, stride=2, padding=1))"),
        ("sum(avg_pool2d(X, 3, 1))", "sum(avg_pool2d(X, 3, stride=1))"),
        # PyTorch's tuples, one value per axis: square windows only
        (
            "sum(max_pool2d(X, (3, 3), stride=(1, 1), padding=(1, 1)))",
            "sum(max_pool2d(X, 3, stride=1, padding=1))",
        ),
        ("sum(avg_pool2d(X, kernel_size=[2, 2]))", "sum(avg_pool2d(X, 2))"),
    ]
    for written, canonical in same:
        d = _derive(base, written, ["X"], dims)
        assert d.expr_of(d.spec.objective) == canonical


def test_pooling_prints_its_stride_and_padding():
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
        "sum(max_pool2d(Z, 3, stride=1, padding=1) ** 2)",
        ["X"],
        {"B": 2, "C": 1, "H": 5, "W": 5, "O": 2},
        define={"Z": "conv2d(X, K, padding=1)"},
    )
    (z_step,) = [s for s in d.steps if s.title == "Adjoint of Z"]
    assert d.step_latex(z_step).endswith(
        r"\operatorname{maxunpool}_{3,s=1,p=1}\left(2 \operatorname{maxpool}_{3,s=1,p=1}"
        r"\left(\mathbf{Z}\right), \mathbf{Z}\right)"
    )
    assert d.result_display("gradient")["expr"] == (
        "conv2d_input_grad(max_pool2d_input_grad(2*max_pool2d(conv2d(X, K, padding=1), 3, "
        "stride=1, padding=1), conv2d(X, K, padding=1), 3, stride=1, padding=1), K, (H, W), "
        "padding=1)"
    )


def test_a_hessian_through_overlapping_pooling():
    # the second backprop goes through max_pool2d_input_grad and its adjoint,
    # max_pool2d_gather, and through unpool2d with a stride and padding
    for objective in (
        "sum(max_pool2d(conv2d(X, K), 2, stride=1, padding=1) ** 2)",
        "sum(avg_pool2d(sin(conv2d(X, K)), 3, stride=2, padding=1) ** 2)",
    ):
        spec = {
            "name": "pool_hessian",
            "symbols": {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 2, 2]}},
            "dims": {"B": 1, "C": 1, "H": 3, "W": 3, "O": 1},
            "objective": objective,
            "wrt": ["K"],
            "derive": ["hessian"],
        }
        d = dlsym.derive(spec)
        assert all(r.method == "matrix form" for r in d.results["hessian"].values())
        report = d.verify(points=3)
        assert report.passed, report
        # and sympy.diff's cross-check ran (its tie indicators are floats: NumPy refused
        # the integer powers of their count that a Hessian holds, and it was skipped)
        assert {c.reference.split(" on ")[0] for c in report.checks} == {
            "its text in jax.numpy",
            "jax.hessian",
            "sympy.diff",
        }
        # its action on a direction, in max_pool2d_gather & co., reads back
        (hvp,) = d.results["hessian"].values()
        D = sympy.Symbol("D", real=True)  # the direction, under a name a spec may use
        expr = hvp.expr.xreplace({hvp.direction: D})
        text = d.expr_of(expr)
        assert "max_pool2d_gather(" in text or "unpool2d(" in text
        symbols = {**spec["symbols"], "D": {"shape": ["O", "C", 2, 2]}}
        again = _derive(symbols, f"sum({text})", ["X"], spec["dims"])
        assert again.spec.objective.args[0] == expr


def test_the_derivation_does_not_look_at_the_sizes():
    # the dims are symbols: a layer of 8 x 8 images and one of 4096 x 4096 derive the
    # same results, in closed form
    def derived(size, batch):
        d = _derive(
            {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
            "sum(max_pool2d(relu(conv2d(X, K, padding=2, dilation=2)), 3, 2, 1) ** 2)"
            " + sum(avg_pool2d(X, 3, stride=1, padding=1))",
            ["X", "K"],
            {"B": batch, "C": 3, "H": size, "W": size, "O": 4},
        )
        assert all(r.method == "matrix form" for r in d.results["gradient"].values())
        return {k: v["expr"] for k, v in d.result_display("gradient")["wrt"].items()}

    assert derived(8, 2) == derived(4096, 1024)


def test_a_small_cnn_with_bias_relu_max_pooling_linear_layer_and_cross_entropy():
    # the catalog's CNN (4x4 images: its sympy.diff cross-check is costly past that),
    # compared with JAX at more channels, classes and a larger batch than the spec's
    d = dlsym.derive(CATALOG / "conv2d_layer.yaml")

    def ref(K, b, V, X, y):
        Z = _lax_conv(X, K, 1, 0) + b[:, None, None]
        P = _pool_ref(jax.nn.relu(Z), 2, jnp.max)
        S = P.reshape(P.shape[0], -1) @ V.reshape(-1, V.shape[-1])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(S, axis=1), y[:, None], 1))

    point = {
        "X": RNG.normal(size=(5, 3, 4, 4)),
        "K": RNG.normal(size=(4, 3, 2, 2)),
        "b": RNG.normal(size=4),
        "V": RNG.normal(size=(4, 1, 1, 3)),
        "y": np.array([0, 2, 1, 2, 0]),
    }
    _check(d, ref, point, ["K", "b", "V"])


def _sabotaged(monkeypatch, rule):
    from dlsym.calculus import _rules
    from dlsym.expr import _conv as conv

    monkeypatch.setitem(_rules.VJP_RULES, conv.conv2d, rule)
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
        "sum(sin(conv2d(X, K, stride=2, padding=1)))",
        ["X"],
        {"B": 2, "C": 2, "H": 5, "W": 5, "O": 2},
    )
    return d.verify(points=3)


def test_an_input_gradient_without_the_stride_fails_verification(monkeypatch):
    from dlsym.expr import _conv as conv

    def wrong(alg, e, g):
        x, k, stride, padding = e.args
        size = conv.sp.Tuple(*alg.shape(x)[2:])
        return [(x, conv.conv2d_input_grad(g, k, size, conv.sp.Integer(1), padding))], "wrong"

    assert not _sabotaged(monkeypatch, wrong).passed


def test_an_input_gradient_without_the_dilation_fails_verification(monkeypatch):
    from dlsym.calculus import _rules
    from dlsym.expr import _conv as conv

    def wrong(alg, e, g):  # the transposed convolution of an undilated kernel
        x, k, stride, padding, dilation = conv.full_args(e)
        size = conv.sp.Tuple(*alg.shape(x)[2:])
        back = conv.conv2d_input_grad(g, k, size, stride, padding, conv.sp.Integer(1))
        return [(x, back)], "wrong"

    monkeypatch.setitem(_rules.VJP_RULES, conv.conv2d, wrong)
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
        "sum(sin(conv2d(X, K, padding=2, dilation=2)))",
        ["X"],
        {"B": 2, "C": 2, "H": 6, "W": 6, "O": 2},
    )
    assert not d.verify(points=3).passed


def _sabotaged_pool(monkeypatch, op, rule, objective):
    from dlsym.calculus import _rules

    monkeypatch.setitem(_rules.VJP_RULES, op, rule)
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}}, objective, ["X"], {"B": 1, "C": 1, "H": 5, "W": 5}
    )
    return d.verify(points=3)


def test_overlapping_max_pooling_with_average_poolings_adjoint_fails_verification(monkeypatch):
    from dlsym.expr import _conv as conv

    def wrong(alg, e, g):  # spread over each window, not routed to its largest entry
        x, k, stride, padding = conv.full_args(e)
        size = conv.sp.Tuple(*alg.shape(x)[2:])
        return [(x, conv.unpool2d(g, k, size, stride, padding) / k**2)], "wrong"

    objective = "sum(sin(max_pool2d(X, 3, stride=1, padding=1)))"
    assert not _sabotaged_pool(monkeypatch, conv.max_pool2d, wrong, objective).passed


def test_average_pooling_without_the_paddings_zeros_fails_verification(monkeypatch):
    from dlsym.expr import _conv as conv

    def wrong(alg, e, g):  # count_include_pad=False's: each window's entries inside X
        x, k, stride, padding = conv.full_args(e)
        size = conv.sp.Tuple(*alg.shape(x)[2:])
        inside = k**2 * conv.avg_pool2d(alg.ones(alg.shape(x)), k, stride, padding)
        return [(x, conv.unpool2d(g / inside, k, size, stride, padding))], "wrong"

    objective = "sum(sin(avg_pool2d(X, 3, stride=2, padding=1)))"
    assert not _sabotaged_pool(monkeypatch, conv.avg_pool2d, wrong, objective).passed


def test_an_input_gradient_with_the_kernel_transposed_fails_verification(monkeypatch):
    from dlsym.expr import _conv as conv

    def wrong(alg, e, g):  # the kernel's spatial axes swapped: a wrong flip
        x, k, stride, padding = e.args
        size = conv.sp.Tuple(*alg.shape(x)[2:])
        back = conv.conv2d_input_grad(g, alg.permute(k, (0, 1, 3, 2)), size, stride, padding)
        return [(x, back)], "wrong"

    assert not _sabotaged(monkeypatch, wrong).passed


HEADER = """name: bad_conv
symbols:
  X: {shape: [B, C, 4, 4]}
  K: {shape: [O, D, 3, 3]}
  L: {shape: [O, C, 5, 5]}
dims: {B: 2, C: 2, D: 3, O: 2}
wrt: [X]
derive: [gradient]
"""


@pytest.mark.parametrize(
    "objective, col, message",
    [
        ("sum(conv2d(X, K))", 16, "the input has C channels and the kernel takes D"),
        ("sum(conv2d(X, L))", 16, "the kernel (5) is larger than the input (4)"),
        ("sum(conv2d(X, L, padding=-1))", 16, "padding must be 0 or more"),
        ("sum(conv2d(X, L, stride=s))", 36, "stride must be an integer"),
        ("sum(conv1d(X, L))", 16, "conv1d needs a NCL input"),
        ("sum(max_pool2d(X, 5))", 16, "the window (5) is larger than the input (4)"),
        ("sum(max_pool2d(X, 3, padding=-1))", 16, "padding must be 0 or more, got -1"),
        (
            "sum(max_pool2d(X, 3, padding=2))",
            16,
            "padding must be at most half the window size (3 // 2 = 1), as PyTorch's; got 2",
        ),
        ("sum(avg_pool2d(X, 2, stride=0))", 16, "stride must be a positive integer, got 0"),
        ("sum(avg_pool2d(X, 0))", 16, "the window size k must be a positive integer, got 0"),
        (
            "sum(max_pool2d(X, (2, 3)))",
            16,
            "kernel_size (2, 3): only the same value along every axis is supported",
        ),
        ("sum(max_pool2d(X, 2.5))", 30, "a window size must be an integer"),
        ("sum(conv2d(X, L, stride=(2, 2, 2)))", 16, "stride takes one integer or 2, got 3"),
        ("sum(max_pool2d(X, 2, ceil_mode=True))", 16, "max_pool2d() takes no keyword 'ceil_mode'"),
        ("sum(conv2d(X, L, stride=None))", 16, "stride must be a positive integer, got None"),
        ("sum(conv2d(X, L, dilation=0))", 16, "dilation must be a positive integer, got 0"),
        ("sum(conv2d(X, L, stride=0))", 16, "stride must be a positive integer, got 0"),
        ("sum(conv2d(X, L, dilation=2.0))", 38, "dilation must be an integer"),
        (
            "sum(conv2d(X, L[:, :, :3, :3], dilation=2))",
            16,
            "the kernel (3, dilated by 2: 5) is larger than the input (4)",
        ),
    ],
)
def test_bad_convolutions_are_located_errors(tmp_path, objective, col, message):
    path = tmp_path / "spec.yaml"
    path.write_text(HEADER + f"objective: {objective}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify"])
    assert result.exit_code == 2, result.output
    assert f"{path}:9:{col}:" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_printing():
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
        "sum(avg_pool2d(Z, 2)**2)",
        ["K"],
        {"B": 2, "C": 1, "H": 5, "W": 5, "O": 2},
        define={"Z": "conv2d(X, K, stride=2, padding=1)"},
    )
    (z_step,) = [s for s in d.steps if s.title == "Adjoint of Z"]
    assert d.step_latex(z_step).endswith(
        r"\frac{\operatorname{unpool}_{2}\left(2 \operatorname{avgpool}_{2}\left(\mathbf{Z}\right)"
        r"\right)}{4}"
    )
    # the kernel's gradient: the correlation of the input with the upstream gradient
    assert d.result_display("gradient")["compact_latex"] == (
        r"\left(\sum_{b,h,w} {\mathbf{X}}_{b,c,2h+i-1,2w+j-1} \left(\frac{\operatorname{unpool}_{2}"
        r"\left(2 \operatorname{avgpool}_{2}\left(\mathbf{Z}\right)\right)}{4}\right)_{b,o,h,w}\right)"
    )
    assert d.result_display("gradient")["expr"].startswith(
        "conv2d_kernel_grad(X, unpool2d(2*avg_pool2d(conv2d(X, K, stride=2, padding=1), 2), 2, "
        "(1 + floor(H/2 - 1/2), 1 + floor(W/2 - 1/2)))/4, (3, 3), stride=2, padding=1)"
    )
    objective = [s for s in d.steps if s.title == "Objective"][0]
    assert r"\left(\sum_{c,i,j} {\mathbf{X}}_{b,c,2h+i-1,2w+j-1} {\mathbf{K}}_{o,c,i,j}\right)" in (
        d.step_latex(objective)
    )
    assert "conv2d(X, K, stride=2, padding=1)" in d.text_of(objective.lines[1].rhs[0])


@pytest.mark.latex
def test_a_convolution_derivation_compiles(tmp_path, pdflatex):
    d = _derive(
        {"X": {"shape": ["B", "C", "H", "W"]}, "K": {"shape": ["O", "C", 3, 3]}},
        "sum(max_pool2d(relu(conv2d(X, K, stride=2, padding=1)), 2) ** 2)",
        ["X", "K"],
        {"B": 2, "C": 1, "H": 6, "W": 6, "O": 2},
    )
    compile_latex(pdflatex, tmp_path, "conv", d.latex(standalone=True))
