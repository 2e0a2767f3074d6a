"""A corpus of hand-written gradients, the way ML engineers write them, for a benchmark of
gradient checkers.

Each ``Case`` pairs a dlsym spec (the forward computation, as a scalar objective) with
the CORRECT hand-written NumPy gradient of that objective with respect to one symbol, and
with hand-written WRONG gradients ("mutants"), each named by its bug: a missing term, sum
instead of mean, the output used in place of the input, a wrong axis, a swapped outer
product, the derivative of the wrong function, ...  The benchmark adds generic mutants of
its own (sign flip, factor 2, small relative error, shifted entries, transposition), so
the mutants here are deliberately not plain scalings of the whole output, except for the
few whose bug is exactly a lost factor (sum instead of mean).

Backward functions (VJPs) are written as ``objective: sum(g * f(x))`` with ``wrt: x``:
the hand-written function takes the upstream gradient ``g``, the input ``x`` (and any
parameters) and returns ``g * f'(x)``.

Every gradient takes the spec's symbols as keyword arguments (NumPy arrays; scalars as
0-d arrays or floats) and returns an array of the shape of ``wrt``, in the dtype of its
inputs (float32 in, float32 out: only Python-float constants, which NumPy 2 treats as
weak, never ``np.float64`` ones).

Validate (derive and verify every spec, compare every hand-written gradient with dlsym's
at random points in float64, run it in float32, and check that every mutant differs):

    PYTHONPATH=. .venv/bin/python bench/corpus.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import erf


@dataclass(frozen=True)
class Case:
    name: str  # e.g. "sigmoid_vjp"
    family: str  # "activation" | "loss" | "layer" | "reduction"
    spec: dict  # a dlsym spec mapping: name, symbols, dims, (define), objective, wrt
    wrt: str  # the symbol differentiated (exactly one)
    grad: Callable  # the CORRECT hand-written NumPy gradient
    mutants: dict = field(default_factory=dict)  # name -> hand-written WRONG gradient


SQRT2 = math.sqrt(2.0)  # Python floats: weak scalars, keep float32 float32
SQRT2PI = math.sqrt(2.0 * math.pi)
SQRTPI = math.sqrt(math.pi)


# -- small NumPy helpers an engineer would have lying around -----------------------------


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _phi(x):  # standard normal pdf
    return np.exp(-(x**2) / 2) / SQRT2PI


def _Phi(x):  # standard normal cdf
    return (1 + erf(x / SQRT2)) / 2


def _vjp_spec(name, expr, dims=None, x_domain=None):
    """spec of ``sum(g * f(x))`` with respect to x, x and g vectors of size n."""
    x = {"shape": ["n"]}
    if x_domain:
        x["domain"] = x_domain
    return {
        "name": name,
        "symbols": {"x": x, "g": {"shape": ["n"]}},
        "dims": dims or {"n": 5},
        "objective": f"sum(g * {expr})",
        "wrt": "x",
    }


CASES: list[Case] = []


def case(name, family, spec, grad, **mutants):
    wrt = spec["wrt"]
    assert isinstance(wrt, str), name
    spec = dict(spec, name=name)
    CASES.append(Case(name, family, spec, wrt, grad, dict(mutants)))


# ======================================================================================
# Activations, as VJPs: objective sum(g * f(x)), wrt x
# ======================================================================================


def sigmoid_vjp(x, g):
    s = _sigmoid(x)
    return g * s * (1 - s)


case(
    "sigmoid_vjp",
    "activation",
    _vjp_spec("", "sigmoid(x)"),
    sigmoid_vjp,
    tanh_derivative=lambda x, g: g * (1 - np.tanh(x) ** 2),
    input_used_as_output=lambda x, g: g * x * (1 - x),
    missing_one_minus=lambda x, g: g * _sigmoid(x) ** 2,
)


def tanh_vjp(x, g):
    t = np.tanh(x)
    return g * (1 - t**2)


case(
    "tanh_vjp",
    "activation",
    _vjp_spec("", "tanh(x)"),
    tanh_vjp,
    input_used_as_output=lambda x, g: g * (1 - x**2),
    missing_square=lambda x, g: g * (1 - np.tanh(x)),
    sigmoid_derivative=lambda x, g: g * _sigmoid(x) * (1 - _sigmoid(x)),
)


def softplus_vjp(x, g):
    return g * _sigmoid(x)


case(
    "softplus_vjp",
    "activation",
    _vjp_spec("", "softplus(x)"),
    softplus_vjp,
    forward_instead_of_derivative=lambda x, g: g * np.log1p(np.exp(x)),
    sigmoid_derivative=lambda x, g: g * _sigmoid(x) * (1 - _sigmoid(x)),
    sign_inside_sigmoid=lambda x, g: g * _sigmoid(-x),
)


def gelu_vjp(x, g):
    return g * (_Phi(x) + x * _phi(x))


case(
    "gelu_vjp",
    "activation",
    _vjp_spec("", "x * (1 + erf(x / sqrt(2))) / 2"),
    gelu_vjp,
    missing_x_phi_term=lambda x, g: g * _Phi(x),
    pdf_missing_normalizer=lambda x, g: g * (_Phi(x) + x * np.exp(-(x**2) / 2)),
    erf_without_sqrt2=lambda x, g: g * ((1 + erf(x)) / 2 + x * _phi(x)),
)


def elu_vjp(x, g):
    # ELU(x) = x for x > 0, exp(x) - 1 otherwise (alpha = 1)
    return np.where(x > 0, g, g * np.exp(x))


case(
    "elu_vjp",
    "activation",
    _vjp_spec("", "(relu(x) - relu(1 - exp(x)))"),
    elu_vjp,
    wrong_branch=lambda x, g: np.where(x > 0, g * np.exp(x), g),
    negative_branch_uses_output=lambda x, g: np.where(x > 0, g, g * (np.exp(x) - 1)),
    negative_branch_dropped=lambda x, g: g * (x > 0),
)


def erf_vjp(x, g):
    return g * 2 / SQRTPI * np.exp(-(x**2))


case(
    "erf_vjp",
    "activation",
    _vjp_spec("", "erf(x)"),
    erf_vjp,
    gaussian_pdf_instead=lambda x, g: g * _phi(x),
    exponent_missing_square=lambda x, g: g * 2 / SQRTPI * np.exp(-x),
)


def atan_vjp(x, g):
    return g / (1 + x**2)


case(
    "atan_vjp",
    "activation",
    _vjp_spec("", "atan(x)"),
    atan_vjp,
    asinh_derivative=lambda x, g: g / np.sqrt(1 + x**2),
    sign_in_denominator=lambda x, g: g / (1 - x**2),
)


def log1p_vjp(x, g):
    return g / (1 + x)


case(
    "log1p_vjp",
    "activation",
    _vjp_spec("", "log1p(x)", x_domain="positive"),
    log1p_vjp,
    log_derivative=lambda x, g: g / x,
    forward_instead_of_derivative=lambda x, g: g * np.log1p(x),
)


def silu_vjp(x, g):
    s = _sigmoid(x)
    return g * (s + x * s * (1 - s))


case(
    "silu_vjp",
    "activation",
    _vjp_spec("", "x * sigmoid(x)"),
    silu_vjp,
    missing_product_rule_term=lambda x, g: g * _sigmoid(x),
    missing_sigmoid_term=lambda x, g: g * x * _sigmoid(x) * (1 - _sigmoid(x)),
    sigmoid_derivative_of_output=lambda x, g: (
        g * (_sigmoid(x) + x * _sigmoid(x) * (1 - x * _sigmoid(x)))
    ),
)


def relu_vjp(x, g):
    return g * (x > 0)


case(
    "relu_vjp",
    "activation",
    _vjp_spec("", "relu(x)"),
    relu_vjp,
    mask_inverted=lambda x, g: g * (x < 0),
    mask_forgotten=lambda x, g: g,
    forward_instead_of_mask=lambda x, g: g * np.maximum(x, 0),
)


def leaky_relu_vjp(x, g):
    # leaky ReLU with negative slope 0.2
    return np.where(x > 0, g, g * 0.2)


case(
    "leaky_relu_vjp",
    "activation",
    _vjp_spec("", "(relu(x) - 0.2 * relu(-x))"),
    leaky_relu_vjp,
    missing_negative_slope=lambda x, g: g * (x > 0),
    slopes_swapped=lambda x, g: np.where(x > 0, g * 0.2, g),
    negative_slope_sign=lambda x, g: np.where(x > 0, g, g * -0.2),
)


# ======================================================================================
# Losses
# ======================================================================================

_PRED = {"shape": ["n"]}
_REG = {
    "name": "",
    "symbols": {"yhat": _PRED, "y": {"shape": ["n"]}},
    "dims": {"n": 5},
    "wrt": "yhat",
}


def mse_grad(yhat, y):
    return 2 * (yhat - y) / yhat.size


case(
    "mse",
    "loss",
    dict(_REG, objective="mean((yhat - y)**2)"),
    mse_grad,
    sum_instead_of_mean=lambda yhat, y: 2 * (yhat - y),
    target_forgotten=lambda yhat, y: 2 * yhat / yhat.size,
    squared_residual=lambda yhat, y: (yhat - y) ** 2 / yhat.size,
)


def l1_grad(yhat, y):
    return np.sign(yhat - y) / yhat.size


case(
    "l1",
    "loss",
    dict(_REG, objective="mean(abs(yhat - y))"),
    l1_grad,
    mse_gradient=lambda yhat, y: (yhat - y) / yhat.size,
    sign_of_prediction=lambda yhat, y: np.sign(yhat) / yhat.size,
)


def huber_grad(yhat, y):
    # Huber with delta = 1: r inside [-1, 1], sign(r) outside
    return np.clip(yhat - y, -1, 1) / yhat.size


case(
    "huber",
    "loss",
    dict(
        _REG,
        define={"r": "yhat - y"},
        objective="mean(0.5 * (abs(r) - relu(abs(r) - 1))**2 + relu(abs(r) - 1))",
    ),
    huber_grad,
    clip_forgotten=lambda yhat, y: (yhat - y) / yhat.size,
    l1_gradient=lambda yhat, y: np.sign(yhat - y) / yhat.size,
    outer_branch_zero=lambda yhat, y: (yhat - y) * (np.abs(yhat - y) <= 1) / yhat.size,
)


_BIN = {
    "name": "",
    "symbols": {"z": {"shape": ["m"]}, "y": {"shape": ["m"], "domain": "unit_interval"}},
    "dims": {"m": 6},
    "wrt": "z",
}


def bce_logits_grad(z, y):
    return (_sigmoid(z) - y) / z.size


case(
    "bce_with_logits",
    "loss",
    dict(_BIN, objective="mean(softplus(z) - y * z)"),
    bce_logits_grad,
    sum_instead_of_mean=lambda z, y: _sigmoid(z) - y,
    sigmoid_forgotten=lambda z, y: (z - y) / z.size,
    one_minus_sigmoid=lambda z, y: (1 - _sigmoid(z) - y) / z.size,
)


def bce_probs_grad(p, y):
    return (p - y) / (p * (1 - p)) / p.size


case(
    "bce_probs",
    "loss",
    {
        "name": "",
        "symbols": {
            "p": {"shape": ["m"], "domain": "unit_interval"},
            "y": {"shape": ["m"], "domain": "unit_interval"},
        },
        "dims": {"m": 6},
        "objective": "-mean(y * log(p) + (1 - y) * log(1 - p))",
        "wrt": "p",
    },
    bce_probs_grad,
    logit_gradient_on_probabilities=lambda p, y: (p - y) / p.size,
    negative_class_term_missing=lambda p, y: -y / p / p.size,
    negative_class_sign=lambda p, y: (-y / p - (1 - y) / (1 - p)) / p.size,
)


def focal_grad(z, y):
    # binary focal loss, gamma = 2, p = sigmoid(z):
    # -mean(y (1-p)^2 log p + (1-y) p^2 log(1-p)), differentiated through p
    p = _sigmoid(z)
    pos = y * (1 - p) ** 2 * (2 * p * np.log(p) - (1 - p))
    neg = (1 - y) * p**2 * (p - 2 * (1 - p) * np.log(1 - p))
    return (pos + neg) / z.size


def _focal_modulator_constant(z, y):
    p = _sigmoid(z)
    return (-y * (1 - p) ** 3 + (1 - y) * p**3) / z.size


def _focal_gamma_one(z, y):
    p = _sigmoid(z)
    pos = y * (1 - p) ** 2 * (p * np.log(p) - (1 - p))
    neg = (1 - y) * p**2 * (p - (1 - p) * np.log(1 - p))
    return (pos + neg) / z.size


case(
    "focal_loss",
    "loss",
    dict(
        _BIN,
        define={"p": "sigmoid(z)"},
        objective="-mean(y * (1 - p)**2 * log(p) + (1 - y) * p**2 * log(1 - p))",
    ),
    focal_grad,
    modulating_factor_treated_constant=_focal_modulator_constant,
    cross_entropy_gradient=lambda z, y: (_sigmoid(z) - y) / z.size,
    exponent_gamma_not_brought_down=_focal_gamma_one,
)


def softmax_ce_grad(z, y):
    return _softmax(z) - y


case(
    "softmax_cross_entropy",
    "loss",
    {
        "name": "",
        "symbols": {"z": {"shape": ["k"]}, "y": {"shape": ["k"], "domain": "onehot"}},
        "dims": {"k": 5},
        "define": {"s": "softmax(z)"},
        "objective": "-sum(y * log(s))",
        "wrt": "z",
    },
    softmax_ce_grad,
    sigmoid_instead_of_softmax=lambda z, y: _sigmoid(z) - y,
    log_softmax_instead_of_softmax=lambda z, y: (
        (z - z.max() - np.log(np.exp(z - z.max()).sum())) - y
    ),
    label_term_missing=lambda z, y: _softmax(z),
)


# ======================================================================================
# Layers
# ======================================================================================

# -- linear layer y = W x + b, upstream gradient G -------------------------------------
_LINEAR = {
    "name": "",
    "symbols": {
        "G": {"shape": ["m"]},
        "x": {"shape": ["n"]},
        "W": {"shape": ["m", "n"]},
        "b": {"shape": ["m"]},
    },
    "dims": {"m": 3, "n": 4},
    "objective": "sum(G * (W @ x + b))",
}

case(
    "linear_wrt_W",
    "layer",
    dict(_LINEAR, wrt="W"),
    lambda G, x, W, b: np.outer(G, x),
    upstream_replaced_by_output=lambda G, x, W, b: np.outer(W @ x + b, x),
)
case(
    "linear_wrt_x",
    "layer",
    dict(_LINEAR, wrt="x"),
    lambda G, x, W, b: W.T @ G,
    upstream_replaced_by_output=lambda G, x, W, b: W.T @ (W @ x + b),
)
case(
    "linear_wrt_b",
    "layer",
    dict(_LINEAR, wrt="b"),
    lambda G, x, W, b: G,
    summed_over_all_outputs=lambda G, x, W, b: np.full_like(b, G.sum()),
)

# square weight: the swapped outer product and the missing transpose have the right shape
_LINEAR_SQ = dict(_LINEAR, dims={"m": 4, "n": 4})
case(
    "linear_square_wrt_W",
    "layer",
    dict(_LINEAR_SQ, wrt="W"),
    lambda G, x, W, b: np.outer(G, x),
    outer_swapped=lambda G, x, W, b: np.outer(x, G),
)
case(
    "linear_square_wrt_x",
    "layer",
    dict(_LINEAR_SQ, wrt="x"),
    lambda G, x, W, b: W.T @ G,
    missing_transpose=lambda G, x, W, b: W @ G,
)

# -- batched linear layer Y = X W + 1 b^T, batch m = k so the wrong axis still fits ------
_BATCHED = {
    "name": "",
    "symbols": {
        "G": {"shape": ["m", "k"]},
        "X": {"shape": ["m", "n"]},
        "W": {"shape": ["n", "k"]},
        "b": {"shape": ["k"]},
    },
    "dims": {"m": 4, "n": 3, "k": 4},
    "description": "sum(G * (X W + 1 b^T)), the bias term written as sum(G @ b)",
    "objective": "sum(G * (X @ W)) + sum(G @ b)",
}
case(
    "batched_linear_wrt_W",
    "layer",
    dict(_BATCHED, wrt="W"),
    lambda G, X, W, b: X.T @ G,
    upstream_transposed=lambda G, X, W, b: X.T @ G.T,
)
case(
    "batched_linear_wrt_b",
    "layer",
    dict(_BATCHED, wrt="b"),
    lambda G, X, W, b: G.sum(axis=0),
    wrong_axis=lambda G, X, W, b: G.sum(axis=1),
    first_row_only=lambda G, X, W, b: G[0],
)

# -- two-layer tanh MLP with half the squared error ------------------------------------
_MLP = {
    "name": "",
    "symbols": {
        "x": {"shape": ["d"]},
        "y": {"shape": ["k"]},
        "W1": {"shape": ["nh", "d"]},
        "b1": {"shape": ["nh"]},
        "W2": {"shape": ["k", "nh"]},
        "b2": {"shape": ["k"]},
    },
    "dims": {"d": 4, "nh": 3, "k": 2},
    "define": {"a": "W1 @ x + b1", "h": "tanh(a)", "yhat": "W2 @ h + b2"},
    "objective": "sum((yhat - y)**2) / 2",
}


def _mlp_forward(x, W1, b1, W2, b2):
    a = W1 @ x + b1
    h = np.tanh(a)
    return a, h, W2 @ h + b2


def mlp_grad_W1(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    da = (W2.T @ (yhat - y)) * (1 - h**2)
    return np.outer(da, x)


def mlp_grad_W2(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return np.outer(yhat - y, h)


def mlp_grad_b1(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return (W2.T @ (yhat - y)) * (1 - h**2)


def _mlp_W1_no_tanh(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return np.outer(W2.T @ (yhat - y), x)


def _mlp_W1_preact(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return np.outer((W2.T @ (yhat - y)) * (1 - a**2), x)


def _mlp_W2_preact(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return np.outer(yhat - y, a)


def _mlp_W2_no_target(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return np.outer(yhat, h)


def _mlp_b1_no_tanh(x, y, W1, b1, W2, b2):
    a, h, yhat = _mlp_forward(x, W1, b1, W2, b2)
    return W2.T @ (yhat - y)


case(
    "mlp_tanh_wrt_W1",
    "layer",
    dict(_MLP, wrt="W1"),
    mlp_grad_W1,
    missing_tanh_derivative=_mlp_W1_no_tanh,
    tanh_derivative_of_preactivation=_mlp_W1_preact,
)
case(
    "mlp_tanh_wrt_W2",
    "layer",
    dict(_MLP, wrt="W2"),
    mlp_grad_W2,
    preactivation_instead_of_hidden=_mlp_W2_preact,
    target_forgotten=_mlp_W2_no_target,
)
case(
    "mlp_tanh_wrt_b1",
    "layer",
    dict(_MLP, wrt="b1"),
    mlp_grad_b1,
    missing_tanh_derivative=_mlp_b1_no_tanh,
)

# -- a vanilla RNN cell h' = tanh(W h + U x); W is square ------------------------------
_RNN = {
    "name": "",
    "symbols": {
        "g": {"shape": ["n"]},
        "h": {"shape": ["n"]},
        "x": {"shape": ["d"]},
        "W": {"shape": ["n", "n"]},
        "U": {"shape": ["n", "d"]},
    },
    "dims": {"n": 4, "d": 3},
    "define": {"hn": "tanh(W @ h + U @ x)"},
    "objective": "sum(g * hn)",
    "wrt": "W",
}


def rnn_grad_W(g, h, x, W, U):
    hn = np.tanh(W @ h + U @ x)
    return np.outer(g * (1 - hn**2), h)


case(
    "rnn_cell_wrt_W",
    "layer",
    _RNN,
    rnn_grad_W,
    outer_swapped=lambda g, h, x, W, U: np.outer(h, g * (1 - np.tanh(W @ h + U @ x) ** 2)),
    missing_tanh_derivative=lambda g, h, x, W, U: np.outer(g, h),
    tanh_derivative_of_preactivation=lambda g, h, x, W, U: np.outer(
        g * (1 - (W @ h + U @ x) ** 2), h
    ),
    new_state_instead_of_old=lambda g, h, x, W, U: np.outer(
        g * (1 - np.tanh(W @ h + U @ x) ** 2), np.tanh(W @ h + U @ x)
    ),
)

# -- bilinear form u^T A v wrt A (square) ------------------------------------------------
case(
    "bilinear_wrt_A",
    "layer",
    {
        "name": "",
        "symbols": {"u": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}, "v": {"shape": ["n"]}},
        "dims": {"n": 4},
        "objective": "u.T @ A @ v",
        "wrt": "A",
    },
    lambda u, A, v: np.outer(u, v),
    outer_swapped=lambda u, A, v: np.outer(v, u),
    symmetrized=lambda u, A, v: (np.outer(u, v) + np.outer(v, u)) / 2,
)


# -- layer norm (no affine), as a VJP ---------------------------------------------------
def layer_norm_vjp(x, g, eps):
    mu = x.mean()
    sigma = np.sqrt(((x - mu) ** 2).mean() + eps)
    xhat = (x - mu) / sigma
    return (g - g.mean() - xhat * (g * xhat).mean()) / sigma


def _ln_no_mean_term(x, g, eps):
    sigma = np.sqrt(((x - x.mean()) ** 2).mean() + eps)
    xhat = (x - x.mean()) / sigma
    return (g - xhat * (g * xhat).mean()) / sigma


def _ln_no_var_term(x, g, eps):
    sigma = np.sqrt(((x - x.mean()) ** 2).mean() + eps)
    return (g - g.mean()) / sigma


def _ln_unbiased_var(x, g, eps):
    sigma = np.sqrt(x.var(ddof=1) + eps)
    xhat = (x - x.mean()) / sigma
    return (g - g.mean() - xhat * (g * xhat).mean()) / sigma


case(
    "layer_norm_vjp",
    "layer",
    {
        "name": "",
        "symbols": {"x": {"shape": ["n"]}, "g": {"shape": ["n"]}, "eps": {"domain": "positive"}},
        "dims": {"n": 5},
        "objective": "sum(g * (x - mean(x)) / sqrt(mean((x - mean(x))**2) + eps))",
        "wrt": "x",
    },
    layer_norm_vjp,
    missing_mean_subtraction_term=_ln_no_mean_term,
    missing_variance_term=_ln_no_var_term,
    unbiased_variance=_ln_unbiased_var,
)


# -- batch norm of one feature over a batch of m, with gamma and beta -------------------
_BN = {
    "name": "",
    "symbols": {
        "x": {"shape": ["m"]},
        "g": {"shape": ["m"]},
        "gamma": {},
        "beta": {},
        "eps": {"domain": "positive"},
    },
    "dims": {"m": 6},
    "define": {
        "mu": "mean(x)",
        "xc": "x - mu",
        "v": "mean(xc**2)",
        "xhat": "xc / sqrt(v + eps)",
    },
    "objective": "sum(g * (gamma * xhat + beta))",
}


def batch_norm_grad_x(x, g, gamma, beta, eps):
    mu = x.mean()
    sigma = np.sqrt(((x - mu) ** 2).mean() + eps)
    xhat = (x - mu) / sigma
    dxhat = g * gamma
    return (dxhat - dxhat.mean() - xhat * (dxhat * xhat).mean()) / sigma


def _bn_sum_not_mean(x, g, gamma, beta, eps):
    mu = x.mean()
    sigma = np.sqrt(((x - mu) ** 2).mean() + eps)
    xhat = (x - mu) / sigma
    dxhat = g * gamma
    return (dxhat - dxhat.sum() - xhat * (dxhat * xhat).sum()) / sigma


def _bn_no_var_term(x, g, gamma, beta, eps):
    sigma = np.sqrt(((x - x.mean()) ** 2).mean() + eps)
    dxhat = g * gamma
    return (dxhat - dxhat.mean()) / sigma


def _bn_eps_dropped(x, g, gamma, beta, eps):
    mu = x.mean()
    sigma = np.sqrt(((x - mu) ** 2).mean())
    xhat = (x - mu) / sigma
    dxhat = g * gamma
    return (dxhat - dxhat.mean() - xhat * (dxhat * xhat).mean()) / sigma


def batch_norm_grad_gamma(x, g, gamma, beta, eps):
    mu = x.mean()
    xhat = (x - mu) / np.sqrt(((x - mu) ** 2).mean() + eps)
    return (g * xhat).sum()


case(
    "batch_norm_wrt_x",
    "layer",
    dict(_BN, wrt="x"),
    batch_norm_grad_x,
    sum_instead_of_mean_in_correction=_bn_sum_not_mean,
    missing_variance_term=_bn_no_var_term,
    eps_dropped_in_backward=_bn_eps_dropped,
)
case(
    "batch_norm_wrt_gamma",
    "layer",
    dict(_BN, wrt="gamma"),
    batch_norm_grad_gamma,
    unnormalized_input=lambda x, g, gamma, beta, eps: (g * (x - x.mean())).sum(),
    missing_centering=lambda x, g, gamma, beta, eps: (
        g * x / np.sqrt(((x - x.mean()) ** 2).mean() + eps)
    ).sum(),
    mean_instead_of_sum=lambda x, g, gamma, beta, eps: (
        g * (x - x.mean()) / np.sqrt(((x - x.mean()) ** 2).mean() + eps)
    ).mean(),
)


# -- logistic regression with L2 ---------------------------------------------------------
_LOGREG = {
    "name": "",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"], "domain": "unit_interval"},
        "w": {"shape": ["n"]},
        "lam": {"domain": "positive"},
    },
    "dims": {"m": 6, "n": 3},
    "define": {"z": "X @ w", "p": "sigmoid(z)"},
    "objective": "-mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w**2)",
    "wrt": "w",
}


def logreg_grad(X, y, w, lam):
    p = _sigmoid(X @ w)
    return X.T @ (p - y) / len(y) + lam * w


case(
    "logistic_regression_l2",
    "layer",
    _LOGREG,
    logreg_grad,
    missing_l2_term=lambda X, y, w, lam: X.T @ (_sigmoid(X @ w) - y) / len(y),
    sum_instead_of_mean=lambda X, y, w, lam: X.T @ (_sigmoid(X @ w) - y) + lam * w,
    l2_half_not_cancelled=lambda X, y, w, lam: X.T @ (_sigmoid(X @ w) - y) / len(y) + lam * w / 2,
    residual_sign_flipped=lambda X, y, w, lam: X.T @ (y - _sigmoid(X @ w)) / len(y) + lam * w,
    logits_instead_of_probabilities=lambda X, y, w, lam: X.T @ (X @ w - y) / len(y) + lam * w,
)


# -- ridge regression --------------------------------------------------------------------
_RIDGE = {
    "name": "",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"]},
        "w": {"shape": ["n"]},
        "lam": {"domain": "positive"},
    },
    "dims": {"m": 6, "n": 3},
    "objective": "sum((X @ w - y)**2) + lam * sum(w**2)",
    "wrt": "w",
}


def ridge_grad(X, y, w, lam):
    return 2 * X.T @ (X @ w - y) + 2 * lam * w


case(
    "ridge_regression",
    "layer",
    _RIDGE,
    ridge_grad,
    missing_factor_two_in_data_term=lambda X, y, w, lam: X.T @ (X @ w - y) + 2 * lam * w,
    missing_l2_term=lambda X, y, w, lam: 2 * X.T @ (X @ w - y),
    penalty_not_differentiated=lambda X, y, w, lam: 2 * X.T @ (X @ w - y) + lam * w**2,
)


# ======================================================================================
# Reductions and scalar functions of vectors
# ======================================================================================


def logsumexp_vjp(z, g):
    return g * _softmax(z)


case(
    "logsumexp_vjp",
    "reduction",
    {
        "name": "",
        "symbols": {"z": {"shape": ["k"]}, "g": {}},
        "dims": {"k": 5},
        "objective": "g * logsumexp(z)",
        "wrt": "z",
    },
    logsumexp_vjp,
    exp_not_normalized=lambda z, g: g * np.exp(z),
    shifted_exp_not_normalized=lambda z, g: g * np.exp(z - z.max()),
)


_SOFTMAX_VJP = {
    "name": "",
    "symbols": {"z": {"shape": ["k"]}, "g": {"shape": ["k"]}},
    "dims": {"k": 5},
    "wrt": "z",
}


def softmax_vjp(z, g):
    s = _softmax(z)
    return s * (g - s @ g)


case(
    "softmax_vjp",
    "reduction",
    dict(_SOFTMAX_VJP, objective="sum(g * softmax(z))"),
    softmax_vjp,
    missing_cross_term=lambda z, g: _softmax(z) * g,
    diagonal_jacobian_only=lambda z, g: g * _softmax(z) * (1 - _softmax(z)),
    sum_of_upstream_not_weighted=lambda z, g: _softmax(z) * (g - g.sum()),
)


def log_softmax_vjp(z, g):
    return g - _softmax(z) * g.sum()


case(
    "log_softmax_vjp",
    "reduction",
    dict(_SOFTMAX_VJP, objective="sum(g * log_softmax(z))"),
    log_softmax_vjp,
    missing_softmax_term=lambda z, g: g,
    softmax_vjp_instead=lambda z, g: softmax_vjp(z, g),
    exp_not_normalized=lambda z, g: g - np.exp(z) * g.sum(),
    weighted_by_own_upstream=lambda z, g: g - _softmax(z) * g,
)


case(
    "quadratic_form",
    "reduction",
    {
        "name": "",
        "symbols": {"A": {"shape": ["n", "n"]}, "x": {"shape": ["n"]}},
        "dims": {"n": 4},
        "objective": "x.T @ A @ x",
        "wrt": "x",
    },
    lambda A, x: (A + A.T) @ x,
    assumes_symmetric=lambda A, x: 2 * A @ x,
    missing_transpose_term=lambda A, x: A @ x,
    transpose_term_only=lambda A, x: A.T @ x,
)


case(
    "l2_norm",
    "reduction",
    {
        "name": "",
        "symbols": {"x": {"shape": ["n"]}},
        "dims": {"n": 5},
        "objective": "norm(x)",
        "wrt": "x",
    },
    lambda x: x / np.sqrt((x**2).sum()),
    squared_norm_gradient=lambda x: 2 * x,
    divides_by_squared_norm=lambda x: x / (x**2).sum(),
    abs_instead_of_square=lambda x: x / np.abs(x).sum(),
)


# ======================================================================================
# Validation
# ======================================================================================

POINTS = 5
RTOL = 1e-9
MUTANT_MIN_REL = 1e-2


def _point(samples, i, dtype):
    return {k: np.asarray(v[i], dtype=dtype) for k, v in samples.items()}


def validate(cases=CASES, verbose=True) -> list[str]:
    """Check every case; returns the list of problems (empty when all is well)."""
    import dlsym
    from dlsym.verify import sample_points

    problems = []
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        problems.append(f"duplicate case names: {sorted(dup)}")
    for c in cases:
        where = f"{c.name}"
        try:
            d = dlsym.derive(c.spec)
        except Exception as exc:  # a spec dlsym refuses: report it
            problems.append(f"{where}: derive failed: {type(exc).__name__}: {exc}")
            continue
        report = d.verify(points=8)
        if not report.passed:
            bad = [ch for ch in report.checks if not ch.passed]
            problems.append(
                f"{where}: dlsym verification failed: "
                + "; ".join(f"{ch.reference} {ch.note} {ch.worst}" for ch in bad)
            )
        derived = d.function("gradient")
        samples = sample_points(d.spec, POINTS, seed=1)
        shape = None
        correct = []
        for i in range(POINTS):
            pt = _point(samples, i, np.float64)
            want = np.asarray(derived(**pt), dtype=np.float64)
            got = np.asarray(c.grad(**pt))
            shape = want.shape
            correct.append((pt, got))
            if got.shape != want.shape:
                problems.append(f"{where}: shape {got.shape}, dlsym gives {want.shape}")
                break
            if got.dtype != np.float64:
                problems.append(f"{where}: float64 in, {got.dtype} out")
            scale = np.abs(want).max(initial=0.0)
            if not np.allclose(got, want, rtol=RTOL, atol=RTOL * scale + 1e-300):
                err = np.abs(got - want).max() / max(scale, 1e-300)
                problems.append(
                    f"{where}: hand-written gradient differs from dlsym's at "
                    f"point {i} (max rel error {err:.2e})"
                )
            pt32 = _point(samples, i, np.float32)
            g32 = np.asarray(c.grad(**pt32))
            if g32.dtype != np.float32 or g32.shape != want.shape:
                problems.append(f"{where}: float32 in, {g32.dtype} {g32.shape} out")
            elif not np.allclose(g32, want, rtol=1e-3, atol=1e-3 * scale + 1e-6):
                problems.append(f"{where}: float32 gradient inaccurate at point {i}")
        for mname, mut in c.mutants.items():
            worst = 0.0
            try:
                for pt, got in correct:
                    m = np.asarray(mut(**pt))
                    if m.shape != got.shape:
                        raise ValueError(f"shape {m.shape}, expected {got.shape}")
                    worst = max(worst, np.abs(m - got).max() / max(np.abs(got).max(), 1e-300))
                    m32 = np.asarray(mut(**{k: v.astype(np.float32) for k, v in pt.items()}))
                    if m32.dtype != np.float32 or m32.shape != got.shape:
                        raise ValueError(f"float32 in, {m32.dtype} {m32.shape} out")
            except Exception as exc:
                problems.append(f"{where}: mutant {mname}: {type(exc).__name__}: {exc}")
                continue
            if not worst >= MUTANT_MIN_REL:
                problems.append(
                    f"{where}: mutant {mname} is not a mutant (max rel difference {worst:.1e})"
                )
        if verbose:
            print(
                f"  {c.family:10s} {c.name:26s} shape {str(shape):8s} "
                f"{len(c.mutants)} mutants  verify {'pass' if report.passed else 'FAIL'}",
                flush=True,
            )
    return problems


def summary(cases=CASES) -> dict:
    fams: dict = {}
    for c in cases:
        f = fams.setdefault(c.family, {"cases": 0, "mutants": 0})
        f["cases"] += 1
        f["mutants"] += len(c.mutants)
    square = sum(
        1
        for c in cases
        if len(c.spec["symbols"][c.wrt].get("shape", [])) == 2 and _dim(c, 0) == _dim(c, 1)
    )
    return {
        "cases": len(cases),
        "mutants": sum(len(c.mutants) for c in cases),
        "square_matrix_gradients": square,
        "families": fams,
    }


def _dim(c, axis):
    d = c.spec["symbols"][c.wrt]["shape"][axis]
    return c.spec["dims"].get(d, d)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sys

    print(f"validating {len(CASES)} cases ...")
    problems = validate()
    s = summary()
    print(
        f"\n{s['cases']} cases, {s['mutants']} hand-written mutants, "
        f"{s['square_matrix_gradients']} square-matrix gradients"
    )
    for fam, n in s["families"].items():
        print(f"  {fam:10s} {n['cases']:3d} cases {n['mutants']:3d} mutants")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("all cases verified; every hand-written gradient matches dlsym; every mutant differs")
