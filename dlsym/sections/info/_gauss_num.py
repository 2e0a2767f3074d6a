"""Independent numeric references for Gaussian quantities (SciPy, and JAX Monte Carlo).

Entropies come from ``scipy.stats.norm`` / ``multivariate_normal``. A univariate
cross-entropy or KL is ``scipy.integrate.quad`` of the density times the log ratio. A
multivariate one, up to ``QUADRATURE_MAX_DIM`` dimensions, is a tensor Gauss-Hermite rule
(``scipy.special.roots_hermitenorm``, nodes mapped through the Cholesky factor) applied to
``scipy.stats.multivariate_normal.logpdf``: numerical integration that knows nothing of the
moment formulas, and exact to rounding for the quadratic log ratio of two Gaussians.
Beyond that it is a seeded Monte Carlo mean over samples drawn with ``jax.random``,
returned with its standard error so that the check's tolerance comes from it.
"""

from __future__ import annotations

import math

import numpy as np

from dlsym.codegen._jax import jax_x64
from dlsym.sections.info._dist import Gaussian

MC_SAMPLES = 200_000
QUADRATURE_MAX_DIM = 4
QUADRATURE_NODES = 6


def reference_name(fn, ctx, info, k: int | None = None) -> str:
    """The reference that checks ``fn``; ``k``: the dimension at the sampled points (a
    diagonal Gaussian's size comes from dims)."""
    g = ctx.dists[info.args[0].name]
    k = k or g.mean.shape[0]
    uni = isinstance(g, Gaussian) and g.univariate and k == 1
    if fn == "entropy":
        return "scipy norm.entropy" if uni else "scipy multivariate_normal.entropy"
    if uni:
        return "scipy quad"
    if k <= QUADRATURE_MAX_DIM:
        return f"Gauss-Hermite quadrature ({QUADRATURE_NODES}^k nodes)"
    return f"jax Monte Carlo ({MC_SAMPLES} samples)"


def _broadcast(params) -> list:
    """A one-dimensional Gaussian beside a k-dimensional diagonal one stands for
    N(m 1, v I) in k dimensions."""
    k = max(m.shape[0] for m, _ in params)
    return [
        (np.full(k, m[0]), c[0, 0] * np.eye(k)) if m.shape[0] == 1 and k > 1 else (m, c)
        for m, c in params
    ]


def gaussian_reference(fn, params, seed) -> tuple[float, float]:
    """(value, standard error) of ``fn`` at Gaussians given as (mean, cov) arrays."""
    # SciPy loads when a reference is computed, not with dlsym (its stats module alone
    # costs a second and a half at import, on every derivation of any section)
    from scipy import stats

    params = _broadcast(params)
    (ma, ca), rest = params[0], params[1:]
    k = ma.shape[0]
    try:
        if (
            k == 1
            and not rest
            or k == 1
            and rest[0][0].shape[0] == 1
            and fn != "entropy"
            and _univariate(ca)
        ):
            return _univariate_ref(fn, params), 0.0
        if fn == "entropy":
            return float(stats.multivariate_normal(ma, ca).entropy()), 0.0
        if k <= QUADRATURE_MAX_DIM:
            return _gauss_hermite(fn, params), 0.0
        return _monte_carlo(fn, params, seed)
    except (ValueError, np.linalg.LinAlgError):
        return float("nan"), 0.0


def _univariate(cov) -> bool:
    return cov.shape == (1, 1)


def _univariate_ref(fn, params) -> float:
    """E over a of −log p_b (cross-entropy) or log p_a − log p_b (KL), by quad in the
    standardized z = (x − m_a)/σ_a over ±40σ: x itself rounds away at a mean of 1e200
    (the interval m_a ± 40 σ_a was one float, and quad gave 0 for a KL of 5e399), and
    x − m_b is (m_a − m_b) + σ_a z, without cancellation. A value past float64 is inf
    (compared as an overflow on both sides, not as a number)."""
    from scipy import integrate, stats

    ma, va = float(params[0][0][0]), float(params[0][1][0, 0])
    if fn == "entropy":
        return float(stats.norm(ma, math.sqrt(va)).entropy())
    mb, vb = float(params[1][0][0]), float(params[1][1][0, 0])
    sd = math.sqrt(va)
    ca, cb = -0.5 * math.log(2 * math.pi * va), -0.5 * math.log(2 * math.pi * vb)

    def log_b(z):
        d = (ma - mb) + sd * z
        return cb - d * d / (2 * vb)  # d * d: inf past float64, where ** raises

    if fn == "cross_entropy":
        term = lambda z: -log_b(z)  # noqa: E731
    else:
        term = lambda z: ca - z * z / 2 - log_b(z)  # noqa: E731
    weight = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    if not math.isfinite(term(0.0)):
        return term(0.0)
    value, _ = integrate.quad(
        lambda z: weight(z) * term(z),
        -40.0,
        40.0,
        epsabs=1e-13,
        epsrel=1e-12,
        limit=200,
        points=[0.0],
    )
    return float(value)


def _gauss_hermite(fn, params) -> float:
    from scipy import stats

    """E_a[f(x)] with the tensor Gauss-Hermite rule for the weight exp(-z^2 / 2)."""
    from itertools import product

    from scipy.special import roots_hermitenorm

    (ma, ca), (mb, cb) = params
    z, w = roots_hermitenorm(QUADRATURE_NODES)
    w = w / w.sum()
    k = ma.shape[0]
    chol = np.linalg.cholesky(ca)
    nodes = np.array(list(product(z, repeat=k)))
    weights = np.prod(np.array(list(product(w, repeat=k))), axis=1)
    x = ma + nodes @ chol.T
    lb = stats.multivariate_normal(mb, cb).logpdf(x)
    f = -lb if fn == "cross_entropy" else stats.multivariate_normal(ma, ca).logpdf(x) - lb
    return float(weights @ f)


def _monte_carlo(fn, params, seed) -> tuple[float, float]:
    import jax

    jax_x64()
    import jax.numpy as jnp
    from jax.scipy.stats import multivariate_normal as mvn

    (ma, ca), (mb, cb) = params
    key = jax.random.PRNGKey(seed)
    x = jax.random.multivariate_normal(key, jnp.asarray(ma), jnp.asarray(ca), (MC_SAMPLES,))
    lb = mvn.logpdf(x, jnp.asarray(mb), jnp.asarray(cb))
    terms = -lb if fn == "cross_entropy" else mvn.logpdf(x, jnp.asarray(ma), jnp.asarray(ca)) - lb
    terms = np.asarray(terms)
    return float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(len(terms)))
