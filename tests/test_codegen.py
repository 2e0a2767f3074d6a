"""dlsym codegen: generated modules import without dlsym, agree with the derivation,
keep matrix form, stay finite at extreme inputs, and --custom-vjp matches autodiff."""

import importlib.util
import re

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CATALOG, calculus_specs, wide_weights_spec
from scipy.special import expit, logsumexp

import dlsym
import dlsym.testing
from dlsym._cli import main
from dlsym.codegen._function import result_names
from dlsym.codegen._module import generate
from dlsym.verify import sample_points


def load(source: str, path):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["numpy", "jax"])
@pytest.mark.parametrize("path", calculus_specs(), ids=lambda p: p.stem)
def test_generated_module_matches_the_derivation(path, target, tmp_path):
    import jax

    jax.config.update("jax_enable_x64", True)
    d = dlsym.derive(path)
    source = generate(d, target, source=path.name)
    assert "dlsym" not in "".join(l for l in source.splitlines() if "import" in l)
    module = load(source, tmp_path / f"gen_{path.stem}_{target}.py")
    points = sample_points(d.spec, 3, seed=5)
    for p in range(3):
        point = {k: v[p] for k, v in points.items()}
        args = [point[s.name] for s in d.spec.symbols]
        if d.spec.objective is not None:
            expected = d.function("objective")(**point)
            np.testing.assert_allclose(module.objective(*args), expected, rtol=1e-10)
        for kind in d.value_kinds:
            for key, r in d.results[kind].items():  # a wrt symbol, or a block "a,b"
                want = d.numeric_function(kind, (key,))(**point)
                got = np.asarray(getattr(module, result_names(kind, d.results[kind])[key])(*args))
                assert got.shape == np.shape(want)
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        for key, r in d.results.get("taylor", {}).items():  # the directions come last
            wrts = r.over or (r.wrt,)
            rng = np.random.default_rng(p)
            deltas = [rng.normal(size=np.shape(point[w])) for w in wrts]
            want = d.taylor_function(wrts)(*args, *deltas)
            got = getattr(module, result_names("taylor", d.results["taylor"])[key])(*args, *deltas)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_docstrings_give_shapes_and_latex():
    source = generate(dlsym.derive(CATALOG / "logistic_regression.yaml"), "numpy")
    assert '    r"""The Hessian of the objective with respect to w.' in source
    assert (
        "        X: [m, n]\n        y: [m]\n        w: [n]\n        lam: scalar\n"
        "    Returns: [n, n]" in source
    )
    assert r"LaTeX: \nabla^{2}_{\mathbf{w}} \ell = \lambda \mathbf{I}" in source


def test_matrix_code_not_entries():
    source = generate(dlsym.derive(CATALOG / "logistic_regression.yaml"), "numpy")
    assert "return lam*w + ((p - y) @ X)/m" in source
    # diag(d) X is a broadcast, not an n x n diagonal matrix product
    assert "_gram(X, p*_sigmoid(-z))" in source  # the symmetric Gram product
    assert "np.diag" not in source
    mlp = generate(dlsym.derive(CATALOG / "mlp_2layer.yaml"), "numpy")
    assert "    yhat = b2 + W2 @ h\n    return np.outer(yhat - y, h)" in mlp
    assert "np.outer((1 - h**2)*((yhat - y) @ W2), x)" in mlp


@pytest.mark.parametrize("name", ["logistic_regression", "mlp_2layer", "ridge_regression"])
def test_custom_vjp_matches_autodiff(name, tmp_path):
    import jax

    jax.config.update("jax_enable_x64", True)
    d = dlsym.derive(CATALOG / f"{name}.yaml")
    module = load(generate(d, "jax", custom_vjp=True), tmp_path / f"vjp_{name}.py")
    point = {k: v[0] for k, v in sample_points(d.spec, 1, seed=2).items()}
    args = [jax.numpy.asarray(point[s.name]) for s in d.spec.symbols]
    argnums = tuple(i for i, s in enumerate(d.spec.symbols) if s.name in d.spec.wrt)
    closed = jax.grad(module.objective_custom_vjp, argnums=argnums)(*args)
    auto = jax.grad(module.objective, argnums=argnums)(*args)
    for c, a in zip(closed, auto):
        np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-12)
    assert float(module.objective_custom_vjp(*args)) == pytest.approx(
        float(module.objective(*args))
    )


SELF_SPEC = {
    "name": "selfish",
    "symbols": {"self": {"shape": ["n"]}, "w": {"shape": ["n"]}},
    "dims": {"n": 3},
    "objective": "sum(self * w) + sum(exp(w))/2 + sum(self**2)",
    "wrt": ["self", "w"],
}


def test_custom_vjp_takes_a_symbol_named_self_by_keyword(tmp_path):
    """objective_custom_vjp is a def forwarding by position to the jax.custom_vjp, whose
    __call__(self, ...) took self=... as its own (TypeError: multiple values for 'self')."""
    import jax

    jax.config.update("jax_enable_x64", True)
    d = dlsym.derive(SELF_SPEC)
    module = load(generate(d, "jax", custom_vjp=True), tmp_path / "vjp_self.py")
    s, w = jax.numpy.array([1.0, 2.0, 3.0]), jax.numpy.array([0.5, -1.0, 2.0])
    value = float(np.sum(s * w) + np.sum(np.exp(w)) / 2 + np.sum(s**2))
    assert float(module.objective_custom_vjp(self=s, w=w)) == pytest.approx(value, rel=1e-15)
    closed = jax.grad(lambda s, w: module.objective_custom_vjp(self=s, w=w), argnums=(0, 1))(s, w)
    auto = jax.grad(lambda s, w: module.objective(self=s, w=w), argnums=(0, 1))(s, w)
    want = (w + 2 * s, s + np.exp(w) / 2)  # by hand
    for c, a, h in zip(closed, auto, want):
        np.testing.assert_allclose(c, a, rtol=1e-14)
        np.testing.assert_allclose(c, h, rtol=1e-14)
    # the backward is the closed form: the module's gradient_w, doubled, doubles it
    gradient_w = module.gradient_w
    module.gradient_w = lambda self, w: 2 * gradient_w(self, w)
    doubled = jax.grad(module.objective_custom_vjp, argnums=1)(s, w)
    np.testing.assert_allclose(doubled, 2 * np.asarray(want[1]), rtol=1e-14)
    # dlsym check differentiates it as the jax.custom_vjp it wraps
    module.gradient_w = gradient_w
    report = dlsym.testing.check_gradient(SELF_SPEC, module.objective_custom_vjp)
    assert report.framework == "jax.custom_vjp" and report.passed
    assert report.max_rel_error < 1e-12


def test_extreme_inputs_stay_finite_and_accurate(tmp_path):
    d = dlsym.derive(CATALOG / "logistic_regression.yaml")
    module = load(generate(d, "numpy"), tmp_path / "extreme.py")
    X = np.array([[1000.0, 0.0], [-1000.0, 0.0], [0.0, 1.0]])
    w, y, lam = np.array([1.0, 0.5]), np.array([0.0, 1.0, 1.0]), 0.0
    z = X @ w
    # exact binary cross-entropy with logits: y softplus(-z) + (1 - y) softplus(z)
    exact = np.mean(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z))
    assert module.objective(X, y, w, lam) == pytest.approx(exact, rel=1e-12)  # ~ 2000/3
    grad = module.gradient_w(X, y, w, lam)
    hess = module.hessian_w(X, y, w, lam)
    assert np.isfinite(grad).all() and np.isfinite(hess).all()
    p = np.array([1.0, 0.0, 1 / (1 + np.exp(-0.5))])
    np.testing.assert_allclose(grad, X.T @ (p - y) / 3, rtol=1e-12)
    # the naive log(1 - sigmoid(1000)) would be -inf; the function of the derivation too
    assert np.isfinite(d.function("objective")(X=X, y=y, w=w, lam=lam))


@pytest.mark.parametrize(
    "objective, want",
    [
        # the gradient of a logsumexp, exp(u)/sum(exp(u)), is exp(u - logsumexp(u))
        ("log(sum(exp(1000 * z)))", lambda z: 1000 * np.exp(1000 * z - logsumexp(1000 * z))),
        # a softplus's, exp(u)/(1 + exp(u)), is sigmoid(u)
        ("sum(log(1 + exp(1000 * z)))", lambda z: 1000 * expit(1000 * z)),
    ],
)
def test_written_out_softmax_and_sigmoid_gradients_are_stable(objective, want):
    d = dlsym.derive(
        {"name": "s", "symbols": {"z": {"shape": ["n"]}}, "dims": {"n": 3}, "objective": objective,
         "wrt": "z"}
    )  # fmt: skip
    z = np.array([1.0, -0.5, 0.999])  # exp(1000) overflows: the naive forms are inf/inf
    got = d.function("gradient")(z=z)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want(z), rtol=1e-12, atol=1e-300)
    assert d.verify(points=4).passed


def test_the_logistic_hessian_weight_is_a_product_of_sigmoids_in_the_code():
    """The Newton step of mean(log1p(exp(−y Xw))): its Hessian weight e^u/(1 + e^u)² is
    σ(u) σ(−u) in the code; it was inf/inf = nan once a margin passed 709 (w = 400·[1, 1,
    −1], margins up to 800), where the loss and its step are finite. Against
    −solve(jax.hessian, jax.grad) of the loss written with logaddexp."""
    import jax
    import jax.numpy as jnp

    d = dlsym.derive(
        {"name": "logistic_pm1", "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]},
         "w": {"shape": ["n"]}, "C": {"domain": "positive"}}, "dims": {"m": 6, "n": 3},
         "objective": "mean(log1p(exp(-y * (X @ w)))) + 0.5 / C * w @ w", "wrt": "w",
         "derive": ["newton_step"]}
    )  # fmt: skip
    X = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1.0]])
    y = np.array([1, 1, 1, 1, 1, -1.0])

    def loss(w):
        return jnp.mean(jnp.logaddexp(0, -y * (X @ w))) + 0.5 / 0.8 * w @ w

    jax.config.update("jax_enable_x64", True)
    for scale in (1.0, 400.0, 800.0):
        w = scale * np.array([1, 1, -1.0])
        want = -np.linalg.solve(jax.hessian(loss)(w), jax.grad(loss)(w))
        got = d.function("newton_step")(X=X, y=y, w=w, C=0.8)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_the_logistic_density_written_out_is_finite_in_the_code():
    """exp(−z)/(1 + exp(−z))², the logistic density (σ'(z)) written out, is
    σ(z) σ(−z) in the code (_sigmoid_powers): inf/inf = nan at z = −800. Against the
    density computed with expit."""
    d = dlsym.derive(
        {"name": "density", "symbols": {"z": {"shape": ["n"]}}, "dims": {"n": 4},
         "objective": "sum(exp(-z) / (1 + exp(-z))**2)", "wrt": "z"},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    z = np.array([-800.0, -3.0, 0.5, 800.0])
    s = expit(z)
    assert d.function("objective")(z=z) == pytest.approx(np.sum(s * (1 - s)), rel=1e-12)


def test_a_quotient_of_exps_is_a_sigmoid_in_the_code():
    """exp(a) / (exp(a) + exp(b)) is sigmoid(a − b): the optimal GAN discriminator of
    densities written exp(log p) underflowed at log p = −740 (5e-3 off, 0/0 past −745)."""
    d = dlsym.derive(
        {"name": "gan", "symbols": {"lp": {"shape": ["n"]}, "lq": {"shape": ["n"]},
         "D": {"shape": ["n"], "domain": "unit_interval"}}, "dims": {"n": 4},
         "objective": "-sum(exp(lp) * log(D) + exp(lq) * log(1 - D))", "wrt": "D",
         "derive": ["stationary"]}
    )  # fmt: skip
    assert d.result_display("stationary")["expr"] == "exp(lp)/(exp(lp) + exp(lq))"
    lp, lq = np.array([-740.0, -745.0, 3.0, -1000.0]), np.array([-741.0, -744.0, 1.0, -1001.0])
    np.testing.assert_allclose(d.function("stationary")(lp=lp, lq=lq), expit(lp - lq), rtol=1e-13)


def test_a_factor_that_cancels_a_reciprocal_in_its_sum_keeps_the_gradient_finite():
    """Softmax cross-entropy with an entropy bonus beta sum(P log P): the gradient kept
    P (beta + beta log P - Y/P), nan where P underflows (a logit of 400); a focal loss
    kept sigmoid(-z) p ((1 - y)/sigmoid(-z) - y/p ...), nan at |z| = 1000. Distributed,
    the products cancel (P Y/P = Y). Against JAX's autodiff."""
    import jax
    import jax.numpy as jnp

    d = dlsym.derive(
        {
            "name": "ce_entropy",
            "symbols": {
                "Z": {"shape": ["B", "k"]},
                "Y": {"shape": ["B", "k"], "domain": "onehot"},
                "beta": {"domain": "positive"},
            },
            "dims": {"B": 2, "k": 3},
            "define": {"P": "softmax(Z, axis=1)"},
            "objective": "-sum(Y * log(P)) + beta * sum(P * log(P))",
            "wrt": "Z",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    Z, Y = np.array([[0.0, 400.0, -400.0], [1.0, 2.0, 3.0]]), np.eye(3)[[0, 2]]

    def ce(Z):
        P, L = jax.nn.softmax(Z, axis=1), jax.nn.log_softmax(Z, axis=1)
        return -jnp.sum(Y * L) + 0.1 * jnp.sum(P * L)

    got = d.function("gradient")(Z=Z, Y=Y, beta=0.1)
    np.testing.assert_allclose(got, jax.grad(ce)(Z), atol=1e-12)
    d = dlsym.derive(
        {
            "name": "focal",
            "symbols": {
                "X": {"shape": ["B", "n"]},
                "w": {"shape": ["n"]},
                "y": {"shape": ["B"], "domain": "unit_interval"},
            },
            "dims": {"B": 3, "n": 2},
            "define": {"z": "X @ w", "p": "sigmoid(z)"},
            "objective": "-mean(y * (1 - p)**2 * log(p))",
            "wrt": "w",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    X, w, y = (
        np.array([[1000.0, 0.0], [-1000.0, 1.0], [3.0, -800.0]]),
        np.array([1.0, 0.5]),
        np.array([0.2, 0.7, 0.5]),
    )

    def focal(w):
        z = X @ w
        return -jnp.mean(y * (1 - jax.nn.sigmoid(z)) ** 2 * jax.nn.log_sigmoid(z))

    np.testing.assert_allclose(
        d.function("gradient")(X=X, w=w, y=y), jax.grad(focal)(w), rtol=1e-12
    )


def test_the_focal_hessian_merges_its_diagonals_and_stays_finite():
    """The Hessian of 2 p ⊙ log p has diag(p) diag(1/p) J_p: kept as written it was
    0 · inf = nan where p underflows (the focal loss at z = -1000), and the generated
    code multiplied dense np.diag(p) matrices. Against the exact second derivative at
    z = -397 (p = e^-397), where jax.hessian itself is off in the third digit."""
    d = dlsym.derive(
        {"name": "focal", "symbols": {"X": {"shape": ["B", "n"]}, "w": {"shape": ["n"]},
         "y": {"shape": ["B"], "domain": "unit_interval"}}, "dims": {"B": 3, "n": 2},
         "define": {"z": "X @ w", "p": "sigmoid(z)"},
         "objective": "-mean(y * (1 - p)**2 * log(p))", "wrt": "w",
         "derive": ["gradient", "hessian"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert "diag(1/p)" not in str(d.results["hessian"]["w"].expr).replace(" ", "")
    assert "np.diag" not in generate(d, "numpy", source="focal.yaml")
    X = np.array([[1000.0, 0.0], [-1000.0, 1.0], [3.0, -800.0]])
    w, y = np.array([1.0, 0.5]), np.array([0.3, 0.7, 0.5])
    # only the third row is not past float64: z = -397, and for p = σ(z) the second
    # derivative of (1 - p)² log p is
    # -2p(1-p)²((1-p) - 2p log p) + (1-p)²(-p(1-p) - 2p(1-p) log p - 2p(1-p))
    p = np.exp(-397.0)
    g2 = -2 * p * (1 - p) ** 2 * ((1 - p) - 2 * p * -397.0) + (1 - p) ** 2 * (
        -p * (1 - p) - 2 * p * (1 - p) * -397.0 - 2 * p * (1 - p)
    )
    want = -0.5 / 3 * g2 * np.outer(X[2], X[2])
    np.testing.assert_allclose(d.function("hessian")(X=X, w=w, y=y), want, rtol=1e-12)


def test_a_masked_hessian_selects_rows_and_is_not_nan_where_a_branch_is():
    """diag(where(c, 0, 1)) H of the safe-where pattern where(x == 0, 1, sin(x)/x) was
    printed as a row scaling, 0 * nan = nan at x = 0 (jax.hessian is nan there too,
    so verification did not see it); where(x > 0, log(x), 0)**2 failed the sympy.diff
    check at a negative x (exit 1). Rows are selected, as np.where does."""
    d = dlsym.derive(
        {"name": "sinc", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 4},
         "objective": "sum(where(x == 0, 1, sin(x) / x))", "wrt": "x",
         "derive": ["gradient", "hessian"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed
    x = np.array([0.0, 0.5, -1.0, 2.0])
    # (sin x / x)'' = -sin x / x - 2 cos x / x² + 2 sin x / x³, and the constant 1 at 0
    with np.errstate(divide="ignore", invalid="ignore"):
        want = -np.sin(x) / x - 2 * np.cos(x) / x**2 + 2 * np.sin(x) / x**3
    want[0] = 0.0
    for backend in ("numpy", "jax"):
        with np.errstate(divide="ignore", invalid="ignore"):
            got = np.asarray(d.function("hessian", backend=backend)(x=x))
        np.testing.assert_allclose(got, np.diag(want), rtol=1e-12, atol=1e-15)
    d = dlsym.derive(
        {"name": "safe_log", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
         "objective": "sum(where(x > 0, log(x), 0)**2)", "wrt": "x",
         "derive": ["gradient", "hessian"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification


def test_a_hand_stabilised_softmax_keeps_its_shift_in_the_hessian():
    """exp(z − max z) stays one exp: cancel and factor split it into exp(z) exp(−max z),
    and the Hessian was exp(2 max z) times sums of exp(z), NaN at logits of 400."""
    d = dlsym.derive(
        {"name": "sm", "symbols": {"z": {"shape": ["k"]}, "g": {"shape": ["k"]}},
         "dims": {"k": 3}, "define": {"e": "exp(z - max(z))"}, "objective": "g @ (e / sum(e))",
         "wrt": "z", "derive": ["gradient", "hessian"]}
    )  # fmt: skip
    assert "exp(-tmax(z))" not in str(d.results["hessian"]["z"].expr)
    g = np.array([1.0, -2.0, 0.5])
    for scale in (1.0, 400.0, 800.0):
        z = np.array([1.0, 0.3, -0.5]) * scale
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        c = g - p @ g  # the gradient is p ⊙ c
        want = np.diag(p * c) - np.outer(p, p * c) - np.outer(p * c, p)
        got = d.function("hessian")(z=z, g=g)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)


def test_a_written_out_softplus_newton_step_is_finite_far_out():
    """log(1 + exp(u)): the Newton step −σ(u)/(σ(u)(1 − σ(u))) is 1/(σ(u) − 1), and
    σ(u) − 1 is 0 in float64 at u = 50 (−inf for −(1 + e⁵⁰)): the code writes it
    −σ(−u)."""
    d = dlsym.derive(
        {
            "name": "softplus_newton",
            "symbols": {"u": {}},
            "objective": "log(1 + exp(u))",
            "wrt": "u",
            "derive": ["newton_step"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    step = d.function("newton_step")
    assert float(step(u=50.0)) == pytest.approx(-(1 + np.exp(50.0)), rel=1e-12)
    assert float(step(u=-3.0)) == pytest.approx(-(1 + np.exp(-3.0)), rel=1e-12)


def test_constants_are_evaluated_before_the_code_computes_them():
    """log(sigmoid(-800)) is -800; term by term in float64 exp(800) overflows and it was
    log(0) = -inf, verification refused the objective as overflowing everywhere. A
    define z: 1.5 read as sigmoid(z): the rule 1/(1 + exp(u)) -> sigmoid(-u) met SymPy
    evaluating sigmoid(3/2) back (RecursionError, exit 3). Both found by round 32."""
    spec = {
        "name": "c",
        "symbols": {"w": {"shape": ["n"]}},
        "dims": {"n": 3},
        "objective": "sum(w**2) + log(sigmoid(-800))",
        "wrt": "w",
    }
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    w = np.array([1.0, 2.0, -1.0])
    assert d.function("objective")(w=w) == pytest.approx(6.0 - 800.0, rel=1e-15)
    spec = {**spec, "define": {"z": 1.5, "p": "sigmoid(z)"}, "objective": "sum(w**2) * p"}
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    np.testing.assert_allclose(d.function("gradient")(w=w), 2 * w * expit(1.5), rtol=1e-15)


@pytest.mark.parametrize(
    "name,x,expected",
    [
        ("activation_softplus", 1000.0, 1000.0),
        ("activation_softplus", -1000.0, 0.0),
        ("activation_sigmoid", -800.0, np.exp(-800.0)),  # 3.7e-348 underflows to 0, no nan
        ("activation_sigmoid", 40.0, 1 / (1 + np.exp(-40.0))),
    ],
)
def test_activations_at_extremes(name, x, expected, tmp_path):
    module = load(generate(dlsym.derive(CATALOG / f"{name}.yaml"), "numpy"), tmp_path / "a.py")
    value = module.objective(np.float64(x))
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert np.isfinite(module.gradient_x(np.float64(x)))
    assert np.isfinite(module.hessian_x(np.float64(x)))


def test_softmax_cross_entropy_at_extreme_logits(tmp_path):
    module = load(
        generate(dlsym.derive(CATALOG / "softmax_cross_entropy.yaml"), "numpy"), tmp_path / "sce.py"
    )
    z = np.array([1000.0, -1000.0, 0.0, 999.0, 3.0])
    y = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    loss = module.objective(z, y)
    assert loss == pytest.approx(2000 + np.log1p(np.exp(-1.0)), rel=1e-12)
    np.testing.assert_allclose(
        module.gradient_z(z, y),
        np.array([1 / (1 + np.exp(-1)), -1, 0, 1 / (1 + np.e), 0]),
        rtol=1e-12,
        atol=1e-300,
    )


def test_cli_codegen(tmp_path):
    out = tmp_path / "logistic.py"
    result = CliRunner().invoke(
        main, ["codegen", "logistic_regression", "--target", "jax", "--custom-vjp", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "def objective_custom_vjp(X, y, w, lam):" in out.read_text()
    result = CliRunner().invoke(main, ["codegen", "ridge_regression"])
    assert result.exit_code == 0 and "def gradient_w(X, y, w, lam):" in result.output
    result = CliRunner().invoke(main, ["codegen", "ridge_regression", "--custom-vjp"])
    assert result.exit_code == 2 and "--custom-vjp needs --target jax" in result.stderr


@pytest.mark.parametrize("target", ["numpy", "jax"])
def test_blocked_gram_hessian_at_a_size_with_several_blocks(target, tmp_path):
    import jax

    jax.config.update("jax_enable_x64", True)
    d = dlsym.derive(CATALOG / "logistic_regression.yaml")
    module = load(generate(d, target), tmp_path / f"gram_{target}.py")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 600)) / 20  # n = 600: three blocks of at most 256
    y, w = rng.uniform(0.05, 0.95, 700), rng.standard_normal(600)
    got = np.asarray(module.hessian_w(X, y, w, 0.3))
    np.testing.assert_allclose(
        got, d.function("hessian")(X=X, y=y, w=w, lam=0.3), rtol=1e-10, atol=1e-13
    )
    # blocks above the diagonal are mirrored exactly; diagonal blocks to rounding
    assert np.array_equal(got[:256, 256:], got[256:, :256].T)
    np.testing.assert_allclose(got, got.T, rtol=1e-13, atol=1e-16)
    ridge = dlsym.derive(CATALOG / "ridge_regression.yaml")
    mod = load(generate(ridge, target), tmp_path / f"gram_ridge_{target}.py")
    np.testing.assert_allclose(
        np.asarray(mod.hessian_w(X, y, w, 0.3)),
        2 * X.T @ X + 0.6 * np.eye(600),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("target", ["numpy", "jax"])
def test_mlp_hessian_is_broadcasts_not_dense_diagonal_products(target, tmp_path):
    """diag(1 - h^2) W2^T W2 diag(1 - h^2) - 2 diag(W2^T r) diag(h) diag(1 - h^2): a cse
    temporary bound to a diag would print as dense n^3 products (the bug this guards)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from dlsym.spec._yamlfile import load_file

    spec = dict(
        load_file(CATALOG / "mlp_2layer.yaml").data, wrt="b1", derive=["gradient", "hessian"]
    )
    d = dlsym.derive(spec)
    source = generate(d, target)
    xp = "np" if target == "numpy" else "jnp"
    assert (
        f"    _t0 = 1 - h**2\n    return _gram(W2 * _t0) - 2*({xp}.diag(_t0*h*((yhat - y) @ W2)))"
        in source
    )
    assert "@ _t" not in source and "_t0 @" not in source
    module = load(source, tmp_path / f"mlp_b1_{target}.py")
    rng = np.random.default_rng(3)
    x, y, b1, b2 = (rng.standard_normal(n) for n in (4, 3, 300, 3))
    W1, W2 = rng.standard_normal((300, 4)), rng.standard_normal((3, 300)) / 10
    got = np.asarray(module.hessian_b1(x, y, W1, b1, W2, b2))
    want = jax.hessian(
        lambda b: 0.5 * jax.numpy.sum((W2 @ jax.numpy.tanh(W1 @ x + b) + b2 - y) ** 2)
    )(b1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_unhide_puts_structure_back_and_keeps_the_argument_shared():
    import sympy as sp

    from dlsym.codegen._function import _unhide
    from dlsym.expr import _ops as ops

    A, B, x, t0, t1 = sp.symbols("A B x _t0 _t1")
    temps, reduced = _unhide(
        [(t0, ops.transpose(A + B)), (t1, ops.transpose(A))],
        [ops.matmul(t0, x) + ops.matmul(t1, x)],
    )
    assert temps == [(t0, A + B)]
    assert reduced == [ops.matmul(ops.transpose(t0), x) + ops.matmul(ops.transpose(A), x)]


def _functions(module_source: str) -> dict:
    """name -> text of each function of a generated module (not its helpers), docstring
    removed."""
    out = {}
    for block in module_source.split("\n\n\n"):
        if block.startswith("def ") and not block.startswith("def _"):
            text = re.sub(r'    r"""[\s\S]*?"""\n', "", block.rstrip("\n") + "\n")
            out[block[4 : block.index("(")]] = text
    return out


@pytest.mark.parametrize("target", ["numpy", "jax"])
@pytest.mark.parametrize("name", ["logistic_regression", "mlp_2layer", "softmax_jacobian"])
def test_function_runs_the_generated_module_functions(name, target):
    """d.function and dlsym codegen print through one generator: the function's source is
    the module's functions, word for word (less the docstrings)."""
    path = CATALOG / f"{name}.yaml"
    d = dlsym.derive(path)
    module = _functions(generate(d, target, source=path.name))
    cli = CliRunner().invoke(main, ["codegen", str(path), "--target", target])
    assert cli.exit_code == 0, cli.output
    assert _functions(cli.output) == module
    first = next(iter(module))  # objective, or output for a Jacobian spec
    assert first == ("objective" if d.spec.objective is not None else "output")
    for kind, names in [("objective", [first])] + [
        (kind, [f"{kind}_{wrt}" for wrt in parts]) for kind, parts in d.results.items()
    ]:
        assert d.function(kind, backend=target).source == "\n\n".join(module[n] for n in names)


def test_generation_leaves_the_spec_shape_table_alone():
    """cse temporaries get their shapes in the generator's own table, not the spec's."""
    from dlsym.spec._yamlfile import load_file

    data = load_file(CATALOG / "mlp_2layer.yaml").data
    d = dlsym.derive(dict(data, wrt="b1", derive=["gradient", "hessian"]))
    table = d.spec.algebra.shape
    before = dict(table.symbols)
    source = generate(d, "numpy")
    assert "_t0 = " in source
    assert dict(table.symbols) == before
    assert not any(s.name.startswith("_t") for s in table.symbols)


def test_a_wrong_table_row_fails_verification(monkeypatch):
    """Everything numeric runs the table's code; a wrong row (sigmoid printed as tanh) must
    show: verification against JAX autodiff fails, and the function computes tanh."""
    from dlsym.codegen import _table

    monkeypatch.setitem(_table.OPS, "sigmoid", _table.Op("np.tanh", "jnp.tanh"))
    d = dlsym.derive(CATALOG / "logistic_regression.yaml", verify=True, points=4)
    assert not d.verification.passed
    failed = {c.kind: c for c in d.verification.checks if not c.passed}
    assert {"gradient", "hessian"} <= set(failed)
    assert failed["gradient"].max_abs_error > 1e-2
    X = np.array([[1.0, 2.0], [0.5, -1.0], [-2.0, 0.0]])
    y, w = np.array([1.0, 0.0, 1.0]), np.array([0.3, -0.2])
    got = d.function("gradient")(X=X, y=y, w=w, lam=0.5)
    np.testing.assert_allclose(got, X.T @ (np.tanh(X @ w) - y) / 3 + 0.5 * w, rtol=1e-12)


def test_lambdify_takes_any_arguments_and_nested_results():
    """The sections' entry point: Dummies and names the code uses become parameters
    _a0, _a1, ...; nested lists stay nested; Max nests binary maxima."""
    import sympy as sp

    from dlsym.codegen._compile import lambdify

    a, b = sp.Dummy("x"), sp.Dummy("x")  # two arguments with one name
    f = lambdify([a, b], [[a + b, sp.Max(a, b, 2)], 1 / sp.sqrt(a)], "numpy")
    (s, m), r = f(np.array([1.0, 4.0]), np.array([3.0, 0.5]))
    np.testing.assert_array_equal(s, [4.0, 4.5])
    np.testing.assert_array_equal(m, [3.0, 4.0])
    np.testing.assert_allclose(r, [1.0, 0.5])
    np_sym, t0 = sp.Symbol("np"), sp.Symbol("_t0")
    g = lambdify([np_sym, t0], [sp.exp(np_sym) * t0 + sp.exp(np_sym)], "numpy")
    assert g(0.0, 2.0)[0] == pytest.approx(3.0)


def test_a_symbol_named_like_a_module_renames_the_module():
    """The modules generated code reads are a user's names too (tests/test_names.py)."""
    from dlsym.codegen._table import NAMES

    assert NAMES == {"np", "jnp", "jax", "scipy"}
    d = dlsym.derive({"name": "t", "symbols": {"np": {}}, "objective": "np**2", "wrt": "np"})
    assert d.function("gradient").source == "def gradient_np(np):\n    return 2*np\n"
    assert "import numpy as _np\n" in generate(d, "numpy")
    assert d.function("gradient")(np=3.0) == pytest.approx(6.0)


def test_a_right_nested_product_keeps_its_association_in_code():
    # Python's @ groups from the left: X.T @ dS @ K would compute Xᵀ dS (a T x T product
    # per batch) instead of reusing dS K, the adjoint of Q that dX needs too
    d = dlsym.derive(CATALOG / "attention.yaml")
    source = d.function("gradient", backend="jax").source
    assert "jnp.transpose(X, (0, 2, 1)) @ ((A*(_t0 - " in source
    assert "jnp.transpose(X, (0, 2, 1)) @ (jnp.transpose(A, (0, 2, 1)) @ G)" in source


def test_block_names_that_would_coincide_are_numbered():
    """Blocks (a, b_c) and (a_b, c) would both be hessian_a_b_c: a kind whose names
    coincide names each block by its symbols' positions, and every block stays right."""
    from dlsym.codegen._function import result_names

    d = dlsym.derive(
        {
            "name": "clash",
            "symbols": {"a": {}, "b_c": {}, "a_b": {}, "c": {}},
            "objective": "a * b_c + 2 * a_b * c + a**2 * c",
            "wrt": ["a", "b_c", "a_b", "c"],
            "derive": ["hessian"],
        }
    )
    names = result_names("hessian", d.results["hessian"])
    assert len(set(names.values())) == len(names) and names["a,b_c"] == "hessian_0_1"
    h = d.function("hessian")(a=1.5, b_c=0.5, a_b=-1.0, c=2.0)
    assert float(h["a"]["b_c"]) == 1.0 and float(h["a_b"]["c"]) == 2.0
    assert float(h["a"]["c"]) == 3.0 and float(h["c"]["a"]) == 3.0  # 2 a
    source = generate(d, "numpy")
    assert "def hessian_0_1(" in source and "def hessian_2_3(" in source


def test_a_title_cannot_close_the_generated_docstring(tmp_path):
    """A spec's title is untrusted text in the module's docstring: three quotes, a
    backslash escape, a NUL and a lone surrogate stay text, and importing the module runs
    nothing (a title holding three quotes and a newline ran os.system on import)."""
    import importlib.util

    canary = tmp_path / "PWNED"
    title = f'x"""\nimport os; os.system(\'touch {canary}\')\n""" \\N{{oops}} \\x \x00 \ud800'
    d = dlsym.derive(
        {
            "name": "injected",
            "title": title,
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 2},
            "objective": "sum(x**2)",
            "wrt": "x",
        }
    )
    for target in ("numpy", "jax"):
        path = tmp_path / f"m_{target}.py"
        path.write_text(generate(d, target, source='a"""b.yaml'), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"m_{target}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert not canary.exists()
        assert "os.system" in module.__doc__ and 'a"""b.yaml' in module.__doc__
        np.testing.assert_allclose(module.gradient_x(np.array([1.0, 2.0])), [2.0, 4.0])


def test_the_stable_rules_read_a_logistic_quotient_of_any_power_as_sigmoids():
    """One rule, _sigmoid_powers, for exp(j u)/(1 + exp(u))ᵏ: k = 1 (a softplus's
    gradient, σ(u); c/(1 + exp(u)), c σ(−u)) and k = 2 (the logistic weight σ(u) σ(−u))."""
    import sympy as sp

    from dlsym.codegen._stable import stabilize
    from dlsym.expr import _ops as ops

    u = sp.Symbol("u", real=True)
    e = sp.exp(u)
    assert stabilize(e / (1 + e)) == ops.sigmoid(u)
    assert stabilize(2 / (1 + e)) == 2 * ops.sigmoid(-u)
    assert stabilize(e / (1 + e) ** 2) == ops.sigmoid(u) * ops.sigmoid(-u)
    assert stabilize(3 * e**2 / (1 + e) ** 3) == 3 * ops.sigmoid(u) ** 2 * ops.sigmoid(-u)


def test_each_results_display_is_worked_out_once_for_the_module(monkeypatch):
    """codegen asked result_display once per generated function, and each call printed
    every wrt block: N² blocks of O(N) each, past the budget at 70 scalar weights."""
    from dlsym.sections.calculus import _derivation

    n = 12
    spec = wide_weights_spec(n)
    d = dlsym.derive(spec)
    calls = []
    real = _derivation.Derivation._display
    monkeypatch.setattr(
        _derivation.Derivation,
        "_display",
        lambda self, kind: calls.append(kind) or real(self, kind),
    )
    text = generate(d, "numpy")
    assert calls == ["gradient"] and text.count("\ndef gradient_w") == n
    shown = d.result_display("gradient")
    shown["expr"] = "changed by the caller"  # a copy: the cached one is not touched
    assert d.result_display("gradient")["expr"] != "changed by the caller"
    assert calls == ["gradient"]


def test_codegen_refuses_another_section_before_deriving_it(tmp_path, monkeypatch):
    """A recurrence spec was derived for 34 s, then refused."""
    import dlsym._api

    monkeypatch.setattr(dlsym._api, "derive", lambda *a, **k: pytest.fail("derived"))
    spec = tmp_path / "rec.yaml"
    spec.write_text(
        "name: r\nsymbols: {a: {}}\ndims: {T: 3}\n"
        "recurrence: {index: t, state: {s: 0}, update: {s: a * s + 1}}\nderive: [closed_form]\n"
    )
    result = CliRunner().invoke(main, ["codegen", str(spec)])
    assert result.exit_code == 2
    assert "this is a recurrence spec: use dlsym derive" in result.output
