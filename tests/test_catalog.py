"""Every catalog spec derives, and its results verify against JAX and sympy.diff."""

import pytest
from conftest import calculus_specs

import dlsym

# The derived results, in dlsym's expression language: the matrix forms the issue
# asks for. (Equality of strings pins the readable form; verification pins the value.)
EXPECTED = {
    ("ridge_regression", "gradient"): "2*(X.T @ (X @ w - y)) + 2*lam*w",
    ("ridge_regression", "hessian"): "2*(X.T @ X) + 2*lam*eye(n)",
    ("linear_least_squares", "gradient"): "2*(X.T @ (X @ w - y))",
    ("linear_least_squares", "hessian"): "2*(X.T @ X)",
    ("softmax_cross_entropy", "gradient"): "softmax(z) - y",
    ("quadratic_form", "gradient"): "(A + A.T) @ x",
    ("quadratic_form", "hessian"): "A + A.T",
    ("softmax_jacobian", "jacobian"): "diag(softmax(z)) - outer(softmax(z), softmax(z))",
    ("activation_sigmoid", "gradient"): "(1 - sigmoid(x))*sigmoid(x)",
    ("activation_softplus", "gradient"): "sigmoid(x)",
    ("activation_softplus", "hessian"): "(1 - sigmoid(x))*sigmoid(x)",
    ("activation_tanh", "gradient"): "1 - tanh(x)**2",
    ("hinge_loss", "gradient"): "lam*w - (X.T @ (y*heaviside(1 - y*(X @ w), 1/2)))/m",
    ("hinge_loss", "hessian"): "lam*eye(n)",
    ("huber_loss", "hessian"): "(X.T @ diag(where(abs(y - (X @ w)) <= delta, 1, 0)) @ X)/m",
}

COMPACT = {  # in terms of the named intermediates, as the steps show them
    ("logistic_regression", "gradient"): r"\lambda \mathbf{w} + \frac{\mathbf{X}^{\top} "
    r"\left(\mathbf{p} - \mathbf{y}\right)}{m}",
    ("logistic_regression", "hessian"): r"\lambda \mathbf{I} + \frac{\mathbf{X}^{\top} "
    r"\operatorname{diag}\left(\mathbf{p} \odot \left(1 - "
    r"\mathbf{p}\right)\right) \mathbf{X}}{m}",
    ("softmax_jacobian", "jacobian"): r"\operatorname{diag}\left(\mathbf{s}\right) - "
    r"\mathbf{s} \mathbf{s}^{\top}",
}


@pytest.fixture(scope="module")
def derived():
    return {p.stem: dlsym.derive(p) for p in calculus_specs()}


def test_catalog_is_complete(derived):
    assert set(derived) >= {
        "linear_least_squares",
        "ridge_regression",
        "logistic_regression",
        "softmax_cross_entropy",
        "softmax_jacobian",
        "quadratic_form",
        "mlp_2layer",
        "activation_sigmoid",
        "activation_tanh",
        "activation_softplus",
        "activation_gelu",
    }


@pytest.mark.parametrize("path", calculus_specs(), ids=lambda p: p.stem)
def test_catalog_spec_verifies(path, derived):
    d = derived[path.stem]
    report = d.verify()
    assert report.passed, report
    refs = {c.reference.split(" at ")[0] for c in report.checks}
    assert {"sympy.diff on explicit entries"} <= refs
    assert any(r.startswith("jax.") for r in refs)
    assert report.max_rel_error < 1e-9
    # a stationary point may be an entrywise root (the optimal discriminator) or found
    # through the inverse (a Gaussian's covariance)
    assert all(
        r.method in ("matrix form", "entrywise root", "root through the inverse")
        for parts in d.results.values()
        for r in parts.values()
    )


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: "-".join(k))
def test_result_in_matrix_form(key, derived):
    name, kind = key
    assert derived[name].result_display(kind)["expr"] == EXPECTED[key]


@pytest.mark.parametrize("key", sorted(COMPACT), ids=lambda k: "-".join(k))
def test_compact_result(key, derived):
    name, kind = key
    assert derived[name].result_display(kind)["compact_latex"] == COMPACT[key]


def test_batch_norm_backward_in_its_compact_form(derived):
    # in x-hat: the deviations from the batch mean sum to zero, so the mean's path and
    # the variance's fold into B G - sum(G) - xhat sum(G xhat), over B sigma
    parts = derived["batch_norm"].result_display("gradient")["wrt"]
    assert parts["X"]["compact_latex"] == (
        r"\frac{\boldsymbol{\gamma} \odot \left(B \mathbf{G} - "
        r"\sum_{b}\left(\mathbf{G}\right) - \hat{\mathbf{x}} \odot \sum_{b}\left(\mathbf{G} "
        r"\odot \hat{\mathbf{x}}\right)\right)}{B \boldsymbol{\sigma}}"
    )
    assert parts["gamma"]["compact_latex"] == (
        r"\sum_{b}\left(\mathbf{G} \odot \hat{\mathbf{x}}\right)"
    )
    assert parts["beta"]["expr"] == "sum(G, axis=0)"


def test_mlp_backprop_expressions(derived):
    parts = derived["mlp_2layer"].result_display("gradient")["wrt"]
    assert parts["W2"]["compact_latex"] == (
        r"\left(\hat{\mathbf{y}} - \mathbf{y}\right) "
        r"\mathbf{h}^{\top}"
    )
    assert parts["b1"]["compact_latex"] == (
        r"\left(1 - \mathbf{h}^{2}\right) \odot "
        r"\mathbf{W}_2^{\top} \left(\hat{\mathbf{y}} - "
        r"\mathbf{y}\right)"
    )
    assert parts["W1"]["compact_latex"] == (
        r"\left(\left(1 - \mathbf{h}^{2}\right) \odot "
        r"\mathbf{W}_2^{\top} \left(\hat{\mathbf{y}} - "
        r"\mathbf{y}\right)\right) \mathbf{x}^{\top}"
    )


def test_steps_walk_the_define_chain(derived):
    titles = [s.title for s in derived["logistic_regression"].steps]
    assert titles == [
        "Objective",
        "Adjoint of p",
        "Adjoint of z",
        "Gradient with respect to w",
        "Hessian with respect to w",
    ]
    z_step = derived["logistic_regression"].steps[2]
    assert "sigmoid'(u)" in z_step.justification
    assert "chain rule" in z_step.justification


@pytest.mark.parametrize("path", calculus_specs(), ids=lambda p: p.stem)
def test_printed_expr_evaluates_to_the_function(path, derived):
    """The JSON 'expr' is NumPy syntax: evaluated, it gives what d.function gives."""
    import numpy as np

    from dlsym.codegen._compile import namespace
    from dlsym.verify import sample_points

    d = derived[path.stem]
    ns = dict(
        namespace("numpy"),
        sum=namespace("numpy")["tsum"],
        mean=namespace("numpy")["tmean"],
        max=namespace("numpy")["tmax"],
        min=namespace("numpy")["tmin"],
        abs=np.abs,
        heaviside=np.heaviside,
        transpose=np.transpose,  # the language's transpose(X, axes) is NumPy's
        concatenate=np.concatenate,  # as are concatenate([...], axis=) and reshape
        reshape=np.reshape,
        ones=np.ones,  # ones((m, n)): NumPy's one shape argument
        zeros=np.zeros,
    )
    point = {k: v[0] for k, v in sample_points(d.spec, 1, 3).items()}
    for kind in d.value_kinds:  # a Taylor model is a function of a direction too
        for wrt, r in d.results[kind].items():  # a wrt symbol, or a block "a,b"
            text = d.expr_of(r.expr)
            env = {**ns, **point, **d.spec.dims}
            got = eval(text, env)  # our own output, never user text
            want = d.numeric_function(kind, (wrt,))(**point)
            np.testing.assert_allclose(
                np.broadcast_to(got, np.shape(want)), want, rtol=1e-12, err_msg=text
            )


BATCHED = {  # (spec, wrt) -> the compact LaTeX, in the named intermediates
    ("batched_mlp", "W3"): r"\frac{\mathbf{H}_{2}^{\top} \left(\operatorname{softmax}_{k}"
    r"\left(\mathbf{Z}\right) - \operatorname{onehot}\left(\mathbf{y}\right)\right)}{B}",
    ("layer_norm", "gamma"): r"\sum_{b,t}\left(\mathbf{G} \odot \hat{\mathbf{x}}\right)",
    ("layer_norm", "beta"): r"\sum_{b,t}\left(\mathbf{G}\right)",
    ("attention", "Wv"): r"\sum_{b}\left(\mathbf{X}^{\top} \mathbf{A}^{\top} \mathbf{G}\right)",
    # the batch axis's b is the bias's letter: its index is i
    ("embedding_bag", "b"): r"\frac{\sum_{i}\left(\operatorname{softmax}_{k}\left("
    r"\mathbf{Z}\right) - \operatorname{onehot}\left(\mathbf{y}\right)\right)}{B}",
    # the bag's mean copies its gradient along L: the scatter reads it once, / L
    ("embedding_bag", "E"): r"\frac{\sum_{a,b} \left(\operatorname{onehot}\left(\mathbf{ids}"
    r"\right)\right)_{abz} \left(\frac{\left(\operatorname{softmax}_{k}\left(\mathbf{Z}"
    r"\right) - \operatorname{onehot}\left(\mathbf{y}\right)\right) \mathbf{W}^{\top}}{B}"
    r"\right)_{aq}}{L}",
    ("lstm_cell", "c"): r"\mathbf{f} \odot \left(\mathbf{G}_c + \mathbf{G}_h \odot "
    r"\mathbf{o} \odot \left(1 - \tanh^{2}{\left(\mathbf{c}_{1} \right)}\right)\right)",
}


@pytest.mark.parametrize("key", sorted(BATCHED), ids=lambda k: "-".join(k))
def test_batched_layers_read_as_papers_write_them(key, derived):
    name, wrt = key
    parts = derived[name].result_display("gradient")["wrt"]
    assert parts[wrt]["compact_latex"] == BATCHED[key]


def test_attention_adjoint_of_the_keys_has_no_outer_transpose(derived):
    # (Qᵀ S)ᵀ is written Sᵀ Q
    d = derived["attention"]
    k_step = next(s for s in d.steps if s.title == "Adjoint of K")
    assert d.expr_of(k_step.lines[0].rhs[0]) == (
        "(transpose(A*(_bar_A - sum(A*_bar_A, axis=2, keepdims=True)), (0, 2, 1)) @ Q)/sqrt(d)"
    )
