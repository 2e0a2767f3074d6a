"""Piecewise functions and the kink convention (shared/spec-format.md, "Tensors of any
rank"): maximum, minimum, clip, where with comparison masks, max/min along an axis.
relu'(0) = 0, abs'(0) = sign(0) = 0, and ties split the gradient equally (as JAX). Each
result is asserted in its readable form and in value, against jax.grad of an objective
written here in plain JAX, at random points and exactly on kinks; a deliberately wrong
kink rule must fail verification."""

import numpy as np
import pytest
from conftest import CATALOG, compile_latex

import dlsym

RNG = np.random.default_rng(11)
V = ["n"]


def _derive(symbols, objective, wrt, dims=None, derive=("gradient",), verify=False):
    return dlsym.derive(
        {
            "name": "piecewise",
            "symbols": symbols,
            "dims": dims or {"n": 4},
            "objective": objective,
            "wrt": wrt,
            "derive": list(derive),
        },
        verify=verify,
    )


def _jax():
    import jax

    from dlsym.codegen._jax import jax_x64

    jax_x64()
    return jax, jax.numpy


def _random_and_kinks(*kinks):
    """Random normal vectors, then the given points on kinks."""
    return [RNG.normal(size=5) for _ in range(3)] + [np.asarray(k, dtype=float) for k in kinks]


def test_leaky_relu_is_a_where_of_the_slopes():
    jax, jnp = _jax()
    d = _derive({"x": {"shape": V}}, "sum(where(x > 0, x, 0.01 * x))", "x", derive=["gradient"])
    assert d.result_display("gradient")["expr"] == "where(x > 0, 1, 1/100)"
    grad = d.function("gradient")
    ref = jax.grad(lambda x: jnp.sum(jnp.where(x > 0, x, 0.01 * x)))
    for x in _random_and_kinks([0.0, -0.0, 1.0, -2.0]):
        np.testing.assert_allclose(grad(x=x), ref(x), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(grad(x=np.array([0.0, 2.0, -2.0])), [0.01, 1.0, 0.01])
    assert d.verify(points=8).passed


def test_elu_gradient_and_hessian():
    jax, jnp = _jax()
    d = _derive(
        {"x": {"shape": V}, "alpha": {"domain": "positive"}},
        "sum(where(x > 0, x, alpha * (exp(x) - 1)))",
        "x",
        derive=["gradient", "hessian"],
    )
    assert d.result_display("gradient")["expr"] == "where(x > 0, 1, alpha*exp(x))"

    def elu(x, alpha):
        return jnp.sum(jnp.where(x > 0, x, alpha * (jnp.exp(x) - 1)))

    for x in _random_and_kinks([0.0, 0.5, -0.5, 0.0, 1.0]):
        got = d.function("gradient")(x=x, alpha=1.5)
        np.testing.assert_allclose(got, jax.grad(elu)(x, 1.5), rtol=1e-14)
        hess = d.function("hessian")(x=x, alpha=1.5)
        np.testing.assert_allclose(hess, jax.hessian(elu)(x, 1.5), rtol=1e-14)
    report = d.verify(points=8)
    kinds = {c.kind for c in report.checks}
    assert report.passed and kinds == {"objective", "gradient", "hessian"}


@pytest.mark.parametrize(
    "text, numpy_bound",
    [("sum(clip(x, 0, None)**2)", (0.0, None)), ("sum(clip(x, None, 0.5)**2)", (None, 0.5))],
)
def test_clip_with_a_bound_none_is_one_sided(text, numpy_bound):
    """NumPy's clip(x, 0, None) has no upper bound; 'None' was "not a number" (exit 2).
    Both None is NumPy's error too, located."""
    jax, jnp = _jax()
    d = _derive({"x": {"shape": V}}, text, "x")
    x = np.array([-1.0, -0.2, 0.3, 0.7, 2.0])
    lo, hi = numpy_bound
    want = jax.grad(lambda x: jnp.sum(jnp.clip(x, lo, hi) ** 2))(x)
    np.testing.assert_allclose(d.function("gradient")(x=x), want, rtol=1e-14)
    assert d.verify(points=4).passed
    with pytest.raises(dlsym.SpecError, match="clip needs a lower or an upper bound"):
        _derive({"x": {"shape": V}}, "sum(clip(x, None, None))", "x")


def test_hard_sigmoid_clip_splits_a_tie_at_each_bound():
    jax, jnp = _jax()
    d = _derive({"x": {"shape": V}}, "sum(clip(0.2*x + 0.5, 0, 1))", "x")
    assert d.result_display("gradient")["expr"] == (
        "heaviside(1/2 - x/5, 1/2)*heaviside(1/2 + x/5, 1/2)/5"
    )
    x = np.array([-3.0, -2.5, 0.0, 2.5, 3.0])  # +-2.5: exactly on the bounds 0 and 1
    # jnp.clip is minimum(maximum(x, lo), hi): at a bound, half goes to x (as at any tie)
    np.testing.assert_array_equal(d.function("gradient")(x=x), [0.0, 0.1, 0.2, 0.1, 0.0])
    with jax.disable_jit():  # compiled, XLA fuses x/5 + 1/2 into an fma: not exactly 0
        ref = jax.grad(lambda x: jnp.sum(jnp.clip(x / 5 + 1 / 2, 0, 1)))(x)
    np.testing.assert_allclose(d.function("gradient")(x=x), ref, rtol=1e-15)
    assert d.verify(points=8).passed


def test_clip_to_one_value_is_that_constant():
    """clip(x, c, c) is c whatever x: gradient 0 (SymPy folds the explicit Min(Max) to c,
    and the tie at x = c, which the sampler draws, had split a gradient of nothing)."""
    d = _derive({"x": {"shape": V}}, "sum(clip(x, 0.5, 0.5) * x)", "x")
    x = np.array([0.5, -1.0, 2.0, 0.25])
    np.testing.assert_array_equal(d.function("gradient")(x=x), np.full(4, 0.5))
    assert d.verify(points=8).passed


def test_clip_with_tensor_bounds_sends_a_tie_half_to_the_bound():
    jax, jnp = _jax()
    symbols = {"x": {"shape": V}, "lo": {"shape": V}, "hi": {"shape": V}}
    d = _derive(symbols, "sum(clip(x, lo, hi)**2)", ["x", "lo", "hi"])
    x, lo, hi = np.array([0.0, 1.0, 0.5, 2.0]), np.zeros(4), np.ones(4)
    got = d.function("gradient")(x=x, lo=lo, hi=hi)
    ref = jax.grad(lambda *a: jnp.sum(jnp.clip(*a) ** 2), argnums=(0, 1, 2))(x, lo, hi)
    for name, want in zip(("x", "lo", "hi"), ref):
        np.testing.assert_allclose(got[name], want, rtol=1e-15)
    np.testing.assert_array_equal(got["x"], [0.0, 1.0, 1.0, 0.0])  # 2 * 1 * 1/2 at x = hi
    np.testing.assert_array_equal(got["hi"], [0.0, 1.0, 0.0, 2.0])
    assert d.verify(points=8).passed


def test_huber_loss_with_where_is_the_textbook_gradient():
    jax, jnp = _jax()
    d = dlsym.derive(CATALOG / "huber_loss.yaml")
    assert d.result_display("gradient")["expr"] == (
        # sign(u) as the language writes it (sign is no function of it): 2 H(u) − 1
        "X.T @ where(abs(y - (X @ w)) <= delta, (X @ w - y)/m, "
        "delta*(2*heaviside(X @ w - y, 0.5) - 1)/m)"
    )
    assert d.result_display("hessian")["expr"] == (
        "(X.T @ diag(where(abs(y - (X @ w)) <= delta, 1, 0)) @ X)/m"
    )

    def huber(w, X, y, delta):
        r = X @ w - y
        return jnp.mean(jnp.where(jnp.abs(r) <= delta, r**2 / 2, delta * (jnp.abs(r) - delta / 2)))

    X = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    w = np.array([1.0, -1.0, 0.5])
    y = np.array([0.5, -1.0, 1.5, -0.5])  # residuals 1, 0, -1, 2.5: on |r| = delta and r = 0
    for w_at in (w, RNG.normal(size=3)):
        got = d.function("gradient")(X=X, y=y, w=w_at, delta=1.0)
        np.testing.assert_allclose(got, jax.grad(huber)(w_at, X, y, 1.0), rtol=1e-14)
        hess = d.function("hessian")(X=X, y=y, w=w_at, delta=1.0)
        np.testing.assert_allclose(hess, jax.hessian(huber)(w_at, X, y, 1.0), rtol=1e-14)


def test_hinge_loss_splits_the_gradient_at_a_margin_of_one():
    jax, jnp = _jax()
    d = dlsym.derive(CATALOG / "hinge_loss.yaml")
    assert d.result_display("gradient")["expr"] == (
        "lam*w - (X.T @ (y*heaviside(1 - y*(X @ w), 1/2)))/m"
    )

    def hinge(w, X, y, lam):
        return jnp.mean(jnp.maximum(0, 1 - y * (X @ w))) + lam / 2 * jnp.sum(w**2)

    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    w = np.array([1.0, 0.25])
    y = np.array([1.0, -1.0, 1.0])  # margins 1 (the kink), -0.5, 1.25
    got = d.function("gradient")(X=X, y=y, w=w, lam=0.0)
    np.testing.assert_allclose(got, jax.grad(hinge)(w, X, y, 0.0), rtol=1e-15)
    # the tie's half of -y_0 x_0 / m, plus the whole of -y_1 x_1 / m
    np.testing.assert_allclose(got, -(0.5 * X[0] - X[1]) / 3, rtol=1e-15)
    X, y, w = RNG.normal(size=(6, 2)), np.sign(RNG.normal(size=6)), RNG.normal(size=2)
    got = d.function("gradient")(X=X, y=y, w=w, lam=0.3)
    np.testing.assert_allclose(got, jax.grad(hinge)(w, X, y, 0.3), rtol=1e-14)


def test_ties_of_max_split_equally_whole_and_along_an_axis():
    jax, jnp = _jax()
    whole = _derive({"x": {"shape": V}}, "max(x)", "x", derive=["gradient", "hessian"])
    # 1/c on each of the c largest, in the language (maxmask(x) did not read back)
    hit = "where(x == max(x), 1, 0)"
    assert whole.result_display("gradient")["expr"] == f"({hit}/sum({hit}))"
    np.testing.assert_array_equal(
        whole.function("gradient")(x=np.array([1.0, 1.0, 0.0])), [0.5, 0.5, 0]
    )
    np.testing.assert_allclose(whole.function("gradient")(x=np.ones(3)), [1 / 3] * 3, rtol=1e-15)

    pool = _derive({"X": {"shape": ["m", "n"]}}, "sum(max(X, axis=1))", "X", {"m": 3, "n": 3})
    hit = "where(X == max(X, axis=1, keepdims=True), 1, 0)"
    assert pool.result_display("gradient")["expr"] == f"({hit}/sum({hit}, axis=1, keepdims=True))"
    X = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 2.0], [0.0, 3.0, 1.0]])
    want = [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]
    np.testing.assert_array_equal(pool.function("gradient")(X=X), want)
    np.testing.assert_array_equal(jax.grad(lambda X: jnp.sum(jnp.max(X, axis=1)))(X), want)

    spec = ({"X": {"shape": ["m", "n"]}}, "sum(min(X, axis=0, keepdims=True)**2)", "X")
    low = _derive(*spec, {"m": 3, "n": 3})
    ref = jax.grad(lambda X: jnp.sum(jnp.min(X, axis=0, keepdims=True) ** 2))
    for X in (X, RNG.normal(size=(4, 3))):
        np.testing.assert_allclose(low.function("gradient")(X=X), ref(X), rtol=1e-15)
    for d in (whole, pool, low):
        assert d.verify(points=8).passed


def test_maximum_ties_and_a_broadcast_bias_in_a_batch():
    jax, jnp = _jax()
    pair = _derive({"a": {"shape": V}, "b": {"shape": V}}, "sum(maximum(a, b))", ["a", "b"])
    got = pair.function("gradient")(a=np.array([1.0, 2.0, 0.0]), b=np.array([1.0, 1.0, 0.5]))
    np.testing.assert_array_equal(got["a"], [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(got["b"], [0.5, 0.0, 1.0])

    symbols = {"X": {"shape": ["B", "n"]}, "W": {"shape": ["n", "k"]}, "b": {"shape": ["k"]}}
    d = _derive(
        symbols,
        "mean(sum(minimum(maximum(X @ W, b), 2)**2, axis=1))",
        ["W", "b"],
        {"B": 5, "n": 3, "k": 2},
    )
    assert d.result_display("gradient")["wrt"]["b"]["expr"].startswith("2*sum(")
    X, W = RNG.normal(size=(5, 3)), RNG.normal(size=(3, 2))
    b = (X @ W)[2]  # ties in row 2 of the batch
    b2 = np.array([2.0, 0.0])  # and ties with the upper bound 2
    ref = jax.grad(
        lambda W, b: jnp.mean(jnp.sum(jnp.minimum(jnp.maximum(X @ W, b), 2) ** 2, axis=1)),
        argnums=(0, 1),
    )
    for bias in (b, b2, RNG.normal(size=2)):
        got = d.function("gradient")(X=X, W=W, b=bias)
        want = ref(W, bias)
        np.testing.assert_allclose(got["W"], want[0], rtol=1e-14)
        np.testing.assert_allclose(got["b"], want[1], rtol=1e-14)
    assert d.verify(points=8).passed


def test_relu_and_abs_at_zero_follow_the_minimum_norm_convention():
    jax, jnp = _jax()
    d = _derive({"x": {"shape": V}}, "sum(relu(x) + 2 * abs(x))", "x")
    np.testing.assert_array_equal(d.function("gradient")(x=np.array([0.0, 1.0, -1.0])), [0, 3, -2])
    # JAX's own abs gives 1 at 0; dlsym's JAX code of abs (x * sign(x)) gives sign(0) = 0
    assert float(jax.grad(jnp.abs)(0.0)) == 1.0
    f = d.function("gradient", backend="jax")
    np.testing.assert_array_equal(np.asarray(f(x=jnp.zeros(3))), [0, 0, 0])


# --- verification samples kinks, and a wrong kink rule fails it ----------------------------


def test_kink_points_hold_zeros_and_ties():
    from dlsym.verify import sample_points

    d = _derive({"X": {"shape": ["m", "n"]}}, "sum(max(X, axis=1))", "X", {"m": 4, "n": 5})
    pts = sample_points(d.spec, 8, 0, kinks=True)["X"]
    on = pts[1::2]
    assert (on == 0).any()  # relu / abs kinks
    rows = on.reshape(-1, 5)
    assert any((r == r.max()).sum() > 1 for r in rows)  # ties of max along the axis
    off = pts[0::2]
    assert not (off == np.round(off * 2) / 2).any()  # the other points are random
    assert np.array_equal(sample_points(d.spec, 8, 0)["X"][0], pts[0])  # same first draw


VX = {"x": {"shape": V}, "y": {"shape": V}}
KINKS = {
    "maximum": (VX, "sum(maximum(x, y)**2)", "x"),
    "relu_abs": (VX, "sum(relu(x) * y - abs(y) * x)", "x"),
    "max_min": (VX, "max(x) - min(x * y)", "x"),
    "max_pool": ({"X": {"shape": ["n", "n"]}}, "sum(max(X, axis=1)**2)", "X"),
    "clip_where": (VX, "sum(where(y < 0, clip(x, -0.5, 0.5), minimum(x, 1)))", "x"),
}


@pytest.mark.parametrize("name", sorted(KINKS))
def test_right_kink_rules_verify_on_kink_points(name):
    report = _derive(*KINKS[name]).verify(points=8)
    assert report.passed, [c for c in report.checks if not c.passed]


def _wrong_maximum(alg, e, g):
    """maximum's rule with the whole tie to the first argument (a >= b), not half each."""
    from dlsym.expr import _ops as ops

    a, b = e.args
    first = 1 - ops.step(b - a)
    return [
        (a, alg.sum_to(g * first, alg.shape(a))),
        (b, alg.sum_to(g * (1 - first), alg.shape(b))),
    ], "wrong"


def test_a_wrong_tie_rule_for_maximum_fails_verification_only_thanks_to_kink_points(monkeypatch):
    from dlsym.calculus import _rules
    from dlsym.expr import _ops as ops
    from dlsym.sections.calculus import _verify

    monkeypatch.setitem(_rules.VJP_RULES, ops.maximum, _wrong_maximum)
    spec = ({"a": {"shape": V}, "b": {"shape": V}}, "sum(maximum(a, b)**2)", "a")
    report = _derive(*spec).verify(points=8)
    assert not report.passed
    # at random points no tie ever happens: without the kink points it would pass
    monkeypatch.setattr(_verify, "has_kinks", lambda e: False)
    assert _derive(*spec).verify(points=8).passed


def test_a_first_entry_tie_rule_for_max_fails_verification(monkeypatch):
    from dlsym.codegen import _compile, _table

    first = """def _maxmask(a, axis=None):
    # sabotaged: the whole adjoint to the first largest entry, as dlsym once did
    top = XP.argmax(a, axis=axis)
    if axis is None:
        return (XP.arange(a.size) == top).reshape(a.shape) * 1.0
    return (XP.arange(a.shape[axis]) == XP.expand_dims(top, axis)[..., None]).squeeze(-1) * 1.0
"""
    monkeypatch.setitem(_table.HELPERS, "_maxmask", first)
    _compile.namespace.cache_clear()
    try:
        d = _derive({"x": {"shape": ["n"]}}, "max(x**2) + max(x)", "x", {"n": 6})
        assert not d.verify(points=8).passed
    finally:
        _compile.namespace.cache_clear()


def test_abs_prime_of_zero_as_one_fails_verification(monkeypatch):
    import sympy as sp

    from dlsym.expr import _ops as ops

    right = ops.elementwise_derivative

    def wrong(e):  # abs'(0) = 1, as jax.grad of jnp.abs gives
        if isinstance(e, sp.Abs):
            return ops.where(e.args[0] >= 0, 1, -1)
        return right(e)

    monkeypatch.setattr(ops, "elementwise_derivative", wrong)
    d = _derive({"x": {"shape": V}}, "sum(abs(x)) + sum(x**2)", "x")
    assert d.result_display("gradient")["expr"] == "2*x + where(x >= 0, 1, -1)"
    assert not d.verify(points=8).passed


# --- printing and errors ------------------------------------------------------------------


def test_printing_in_latex_unicode_and_the_expression_language():
    d = _derive(
        {"x": {"shape": V}, "y": {"shape": V}},
        "sum(where(x >= y, clip(x, -1, 1), minimum(x, y)))",
        "x",
    )
    out = d.result_display("gradient")
    assert d.latex_of(d.spec.objective) == (
        r"\operatorname{sum}\left(\operatorname{where}\left(\mathbf{x} \geq \mathbf{y}, "
        r"\operatorname{clip}\left(\mathbf{x}, -1, 1\right), \min\left(\mathbf{x}, "
        r"\mathbf{y}\right)\right)\right)"
    )
    assert out["expr"] == (
        "where(x >= y, heaviside(1 - x, 1/2)*heaviside(1 + x, 1/2), heaviside(y - x, 1/2))"
    )
    assert r"H\left(1 - \mathbf{x}\right)" in out["latex"]
    assert "H(1 - x)" in d.text_of(d.results["gradient"]["x"].expr)
    assert d.verify(points=8).passed


@pytest.mark.latex
def test_latex_of_piecewise_functions_compiles(tmp_path, pdflatex):
    d = _derive(
        {"X": {"shape": ["n", "n"]}, "y": {"shape": V}},
        "sum(max(X, axis=1) * where(y != 0, clip(y, -1, 1), minimum(y, 2)))"
        " + sum(maximum(X, 0)) + min(X)",
        "X",
    )
    compile_latex(pdflatex, tmp_path, "piecewise", d.latex(standalone=True))


@pytest.mark.parametrize(
    "objective, col, message",
    [
        ("sum(where(x, x, 0))", 22, "where() needs a comparison as its mask, such as x > 0"),
        ("sum(x > 0)", 16, "comparisons are only allowed in constraints (subject_to) and as"),
        ("sum(where(0 < x < 1, x, 0))", 22, "one comparison per mask in where()"),
        ("sum(where(x > 0, x > 1, 0))", 29, "comparisons are only allowed in constraints"),
        ("sum(where(x > 0, x))", 16, "where() takes 3 arguments, got 2"),
        ("sum(clip(x, 0))", 16, "clip() takes 3 arguments, got 2"),
    ],
)
def test_misused_masks_are_located_errors(tmp_path, objective, col, message):
    from click.testing import CliRunner

    from dlsym._cli import main

    path = tmp_path / "spec.yaml"
    path.write_text(
        f"name: t\nsymbols:\n  x: {{shape: [n]}}\ndims: {{n: 3}}\nobjective: {objective}\nwrt: x\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify"])
    assert result.exit_code == 2, result.output
    assert f"{path}:5:{col}:" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_a_constant_branch_through_a_matmul():
    """``where(Z > 0, 1, 0)`` (a ReLU's derivative, as a hand-written second backward pass
    writes it): the mask is not differentiated, so Z's adjoint is zero, and the products
    it entered (``X^T @ 0``) must vanish instead of crashing."""
    d = dlsym.derive(
        {
            "name": "relu_backward",
            "symbols": {
                "G2": {"shape": ["B", "n"]},
                "X": {"shape": ["B", "n"]},
                "W": {"shape": ["n", "k"]},
                "b": {"shape": ["k"]},
                "G1": {"shape": ["B", "k"]},
            },
            "dims": {"B": 4, "n": 3, "k": 2},
            "define": {"Z": "X @ W + b", "dX": "(G1 * where(Z > 0, 1, 0)) @ W.T"},
            "objective": "sum(G2 * dX)",
            "wrt": ["W", "b"],
        }
    )
    G2, X, W, b, G1 = (RNG.normal(size=s) for s in [(5, 3), (5, 3), (3, 2), (2,), (5, 2)])
    got = d.function("gradient")(G2=G2, X=X, W=W, b=b, G1=G1)
    np.testing.assert_allclose(got["W"], G2.T @ (G1 * (X @ W + b > 0)), rtol=1e-12)
    np.testing.assert_array_equal(got["b"], np.zeros(2))
    assert d.verify(points=4).passed


def test_heaviside_as_numpy_and_as_results_print_it():
    """``heaviside(x, h0)`` is NumPy's; the tie share in a result reads back as it."""
    d = _derive({"x": {"shape": V}}, "sum(x * heaviside(x - 1, 0.5))", ["x"])
    assert d.result_display("gradient")["expr"] == "heaviside(x - 1, 1/2)"
    np.testing.assert_array_equal(
        d.function("gradient")(x=np.array([-1.0, 0.0, 1.0, 2.0])), [0.0, 0.0, 0.5, 1.0]
    )
    tie = _derive({"a": {"shape": V}, "b": {"shape": V}}, "sum(maximum(a, b))", ["a"])
    shown = tie.result_display("gradient")["expr"]
    assert shown == "heaviside(a - b, 1/2)"
    again = _derive({"a": {"shape": V}, "b": {"shape": V}}, f"sum(a * {shown})", ["a"])
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 5.0, 4.0])
    np.testing.assert_array_equal(again.function("gradient")(a=a, b=b), [1.0, 0.5, 0.0, 0.5])
    with pytest.raises(dlsym.SpecError, match="heaviside's value at zero must be a number"):
        _derive({"x": {"shape": V}, "h": {}}, "sum(heaviside(x, h))", ["x"])


def test_relu_derivative_reads_back_as_the_language():
    """ReLU's derivative prints as NumPy's ``heaviside(x, 0)``, a function of the language
    (``step`` stays free as a user's name), so a printed result derives again."""
    d = _derive({"x": {"shape": V}}, "sum(relu(x)**2 + relu(x))", ["x"])
    shown = d.result_display("gradient")["expr"]
    assert shown == "(1 + 2*relu(x))*heaviside(x, 0)"
    again = _derive({"x": {"shape": V}}, f"sum(x * ({shown}))", ["x"])
    x = np.array([-1.0, 0.0, 2.0, 3.0])
    np.testing.assert_array_equal(again.function("gradient")(x=x), [0.0, 0.0, 9.0, 13.0])


def test_a_where_whose_mask_holds_another_where():
    """ELU after ELU: the explicit entries' condition nests a where (SymPy's ITE), which the
    sympy.diff cross-check must compile too (it crashed with exit 3)."""
    d = dlsym.derive(
        {
            "name": "elu_elu",
            "symbols": {"x": {"shape": V}, "W": {"shape": ["n", "n"]}, "g": {"shape": V}},
            "dims": {"n": 3},
            "define": {"a": "where(x > 0, x, exp(x) - 1)", "z": "W @ a"},
            "objective": "sum(g * where(z > 0, z, exp(z) - 1))",
            "wrt": ["W", "x"],
        }
    )
    report = d.verify(points=4)
    assert report.passed
    assert sum(c.reference.startswith("sympy.diff") for c in report.checks) == 2


@pytest.mark.parametrize(
    "objective, expr, truth",
    [
        # the guard's gradient was where(x > 0, 1, 0)/(2 sqrt(x)): 0 * nan = nan at x < 0
        (
            "sum(where(x > 0, sqrt(x), 0))",
            "where(x > 0, 1/(2*sqrt(x)), 0)",
            lambda x: np.where(x > 0, 0.5 / np.sqrt(np.abs(x)), 0.0),
        ),
        (
            "sum(where(x > 0, x*log(x), 0))",
            "where(x > 0, 1 + log(x), 0)",
            lambda x: np.where(x > 0, np.log(np.abs(x)) + 1, 0.0),
        ),
        (
            "sum(sqrt(relu(x)))",
            "where(x > 0, 1/(2*sqrt(relu(x))), 0)",
            lambda x: np.where(x > 0, 0.5 / np.sqrt(np.abs(x)), 0.0),
        ),
    ],
)
def test_a_guarded_singular_branch_has_a_finite_gradient(objective, expr, truth):
    """The mask multiplies inside the where, so the branch not picked (its nan) is
    dropped, as the guard means. jax.grad itself is nan there (it differentiates the
    unpicked branch): those entries are said and left to the sympy.diff check."""
    d = dlsym.derive(
        {
            "name": "guarded",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 4},
            "objective": objective,
            "wrt": "x",
            "derive": ["gradient", "hessian"],
        }
    )
    assert d.result_display("gradient")["expr"] == expr
    x = np.array([-1.5, 0.7, 2.0, -0.3])
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(d.function("gradient")(x=x), truth(x), rtol=1e-15)
        assert np.isfinite(d.function("hessian")(x=x)).all()
    report = d.verify(points=16)
    assert report.passed, report
    if "where" in objective:  # jax.grad of relu at x < 0 is 0 · inf's 0 itself
        autodiff = [c for c in report.checks if c.reference.startswith("jax.grad")]
        assert autodiff and "entries not compared: jax.grad is nan there" in autodiff[0].note
    assert any(c.reference.startswith("sympy.diff") and c.kind == "gradient" for c in report.checks)


def test_relu_gradients_keep_the_step_form():
    d = dlsym.derive(
        {
            "name": "relu_layer",
            "symbols": {"W": {"shape": ["m", "n"]}, "x": {"shape": ["n"]}},
            "dims": {"m": 3, "n": 2},
            "objective": "sum(relu(W @ x))",
            "wrt": "x",
        }
    )
    assert d.result_display("gradient")["expr"] == "W.T @ heaviside(W @ x, 0)"


def test_the_derivative_of_abs_reads_back_beside_a_symbol_named_sign():
    """abs's derivative printed as sign(x), which the language has no function for (and
    'sign * sign(x)' beside a user's symbol named sign); 2 heaviside(x, 0.5) − 1 is the
    same function (0 at 0) and reads back."""
    spec = {
        "name": "sign_symbol",
        "symbols": {"x": {"shape": ["n"]}, "sign": {}},
        "dims": {"n": 3},
        "objective": "sign * sum(abs(x))",
        "wrt": "x",
    }
    d = dlsym.derive(spec)
    expr = d.result_display("gradient")["expr"]
    assert expr == "sign*(2*heaviside(x, 0.5) - 1)"
    again = {k: v for k, v in spec.items() if k != "objective"}
    again = dlsym.derive({**again, "name": "again", "output": expr})
    x = np.array([-1.5, 0.0, 2.0])
    np.testing.assert_array_equal(again.function("objective")(x=x, sign=3.0), [-3.0, 0.0, 3.0])
    np.testing.assert_array_equal(d.function("gradient")(x=x, sign=3.0), [-3.0, 0.0, 3.0])


def test_a_where_whose_merged_branches_are_equal_is_that_branch():
    """where(x > 0, x + 1, x): its gradient's two masks merge into where(x > 0, 1, 1),
    which SymPy makes 1, no where at all; the readable form took it for one (IndexError,
    exit 3)."""
    d = dlsym.derive(
        {
            "name": "step_up",
            "symbols": {"x": {}},
            "objective": "where(x > 0, x + 1, x)",
            "wrt": "x",
            "derive": ["gradient"],
        },
        verify=True,
    )
    assert d.result_display("gradient")["expr"] == "1"
    assert d.verification.passed


def test_the_square_of_abs_slope_is_one_at_the_kink_too():
    """A smooth L1 loss through a define r = |p − t|: its Hessian came out
    where(|p − t| < β, sign(p − t)²/β, 0), 0 at p = t where jax.hessian gives 1/β (|u|²
    is u², smooth there); the verification's kink points failed it (exit 1). sign(u)² is
    1, and |u|³'s second derivative 6|u| keeps its 0 at the kink."""
    d = dlsym.derive(
        {
            "name": "smooth_l1",
            "symbols": {"p": {}, "t": {}, "be": {"domain": "positive"}},
            "define": {"r": "abs(p - t)"},
            "objective": "where(r < be, 0.5 * r**2 / be, r - 0.5 * be)",
            "wrt": "p",
            "derive": ["hessian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert d.result_display("hessian")["expr"] == "where(abs(p - t) < be, 1/be, 0)"
    cube = dlsym.derive(
        {
            "name": "cube",
            "symbols": {"x": {}},
            "objective": "abs(x)**3",
            "wrt": "x",
            "derive": ["hessian"],
        },
        verify=True,
    )
    assert cube.verification.passed
    hess = cube.function("hessian")
    assert [float(hess(x=v)) for v in (-2.0, 0.0, 0.5)] == [12.0, 0.0, 3.0]


@pytest.mark.parametrize(
    "output, wrt",
    [("relu(W @ x)", "W"), ("clip(x, -c, c)", "x"), ("where(x > 0.5, x / 0.5, 0)", "x")],
)
def test_the_jacobian_of_a_kinked_output_verifies(output, wrt):
    """An output's kink points are checked for finite values through its Jacobian
    (jax.jacrev): jax.grad, an objective's, ended every such spec in a TypeError (exit 3),
    the docs' own dropout example among them."""
    spec = {
        "name": "kinked_output",
        "symbols": {"W": {"shape": ["m", "n"]}, "x": {"shape": ["n"]}, "c": {"domain": "positive"}},
        "dims": {"m": 3, "n": 4},
        "output": output,
        "wrt": wrt,
        "derive": ["jacobian"],
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    x = np.array([-1.5, 0.2, 0.7, 3.0])
    if wrt == "x" and "clip" in output:  # 1 inside (−c, c), 0 outside
        J = d.function("jacobian")(W=np.zeros((3, 4)), x=x, c=1.0)
        np.testing.assert_array_equal(J, np.diag([0.0, 1.0, 1.0, 0.0]))


def test_a_result_holding_maxmask_reads_back():
    """The Jacobian of a stable softmax holds the gradient of max(a), 1/c on each of the
    c largest entries; its ``expr`` wrote it maxmask(a), refused as a spec expression
    ("unknown function 'maxmask'"). Written with where and max, it reads back as an
    output with the same values, ties included."""
    symbols, dims = {"a": {"shape": ["k"]}}, {"k": 4}
    first = dlsym.derive(
        {
            "name": "stable_softmax",
            "symbols": symbols,
            "dims": dims,
            "define": {"e": "exp(a - max(a))"},
            "output": "e / sum(e)",
            "wrt": "a",
            "derive": ["jacobian"],
        }
    )
    expr = first.result_display("jacobian")["expr"]
    assert "(where(a == max(a), 1, 0)/sum(where(a == max(a), 1, 0)))" in expr
    # read back as a spec's output J v, whose Jacobian in v is J itself
    again = dlsym.derive(
        {
            "name": "read_back",
            "symbols": {**symbols, "v": {"shape": ["k"]}},
            "dims": dims,
            "output": f"({expr}) @ v",
            "wrt": "v",
            "derive": ["jacobian"],
        },
        verify=True,
    )
    assert again.verification.passed, again.verification
    for a in (np.array([0.3, -1.2, 2.0, 0.5]), np.array([1.0, 1.0, -2.0, 0.0])):
        p = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        got = again.function("jacobian")(a=a, v=np.ones(4))
        np.testing.assert_allclose(got, np.diag(p) - np.outer(p, p), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "objective, gradient, value",
    [
        # SymPy decides x == x and x > x: the where is one branch, with the shape of the
        # mask's operands and both branches (the gradient was 1 and sum(1), n = 4 times
        # too small, and the reference, built from the same expression, agreed)
        ("sum(where(x == x, c, 0))", "n", 4.0),
        ("sum(where(c > c, x, 1)) * c", "n", 4.0),
        ("sum(where(x > x, 2, -1)) * c", "-n", -4.0),
        # both branches alike: where(m, c, c) is c in every entry
        ("sum(where(x > 0, c, c))", "n", 4.0),
    ],
)
def test_a_decided_mask_keeps_the_shape_of_its_where(objective, gradient, value):
    d = _derive({"x": {"shape": V}, "c": {}}, objective, "c", verify=True)
    assert d.result_display("gradient")["expr"] == gradient
    got = d.function("gradient")(x=RNG.normal(size=4), c=0.3)
    assert float(got) == value
    assert d.verification.passed, d.verification


def test_a_decided_mask_keeps_its_shape_in_a_moment_and_an_output():
    """E[sum(where(x == x, 1, 0)) + sum(x²)] = n + n for x ~ N(0, 1) (was n + 1, and the
    Monte Carlo reference agreed); where(x == x, c, 0) * 2 is a vector output."""
    d = dlsym.derive(
        {
            "name": "rv",
            "symbols": {"x": {"shape": V, "distribution": "normal(0, 1)"}},
            "dims": {"n": 3},
            "objective": "expect(sum(where(x == x, 1, 0)) + sum(x**2))",
        },
        verify=True,
    )
    assert d.result_display("closed_form")["expr"] == "2*n"
    assert float(d.function("closed_form")()) == 6.0
    d = dlsym.derive(
        {
            "name": "out",
            "symbols": {"x": {"shape": V}, "c": {}},
            "dims": {"n": 3},
            "output": "where(x == x, c, 0) * 2",
            "wrt": "c",
            "derive": ["jacobian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    np.testing.assert_array_equal(d.function("jacobian")(x=np.ones(3), c=1.0), [2.0, 2.0, 2.0])
