"""The independent numeric reference: information quantities from SciPy, never from
the SymPy closed forms.

Random distributions are drawn per verification point through the kit's samplers (a
symbolic categorical, and a symbolic joint table over its cells, from the simplex domain's
flat Dirichlet; symbols from their domains); given probabilities stay as given. A float32
verification rounds every drawn or given number to float32 first (``rounded``): the
references below still compute in float64 (SciPy's; the JAX Monte Carlo estimate too, whose
error is its standard error whatever the dtype), but from the very numbers the derived
forms see. Each quantity is then computed the way a careful user would compute it by hand
in NumPy/SciPy: ``scipy.stats.entropy``, ``scipy.special.rel_entr`` / ``xlogy``, ``scipy.spatial.distance.jensenshannon``,
``scipy.stats.norm`` / ``multivariate_normal`` entropies, ``scipy.integrate.quad`` for
univariate Gaussian divergences, a seeded Monte Carlo estimate (JAX) for multivariate ones.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp

from dlsym.codegen._compile import lambdify
from dlsym.sections.info import _parse as ip
from dlsym.sections.info._dist import Categorical, Joint
from dlsym.sections.info._gauss_num import gaussian_reference
from dlsym.verify import as_dtype, at_extremes, draw, generator

MC_SAMPLES = 400_000


def _draw(rng, d, shape):
    v = draw(rng, d.domain, shape)
    return float(v) if not shape else v


def _gaussian_params(d, subs) -> tuple:
    """(mean, cov) arrays. Explicit lists are substituted entry by entry; a matrix-symbol
    Gaussian's mean and covariance, and a diagonal one's vector mean and variance (its
    mean vector and diagonal covariance), are evaluated whole."""
    if d.size is None and not d.diagonal:
        scalars = {k: v for k, v in subs.items() if isinstance(v, float)}
        return (
            np.array([float(v.subs(scalars)) for v in d.mean], dtype=float),
            np.array(d.cov.subs(scalars).tolist(), dtype=float),
        )
    m, S = d.mean[0], d.cov[0, 0]
    syms = sorted(m.free_symbols | S.free_symbols, key=str)
    mean, cov = (
        np.asarray(x, dtype=float)
        for x in lambdify(syms, [m, S], "numpy")(*[subs[x] for x in syms])
    )
    if d.diagonal:
        mean, var = np.broadcast_arrays(mean, cov)
        return np.array(mean), np.diag(var)
    return mean, cov


def sample(
    dists: dict, decls, points: int, seed: int, randomize: bool = False, sizes: dict | None = None
) -> list[dict]:
    """One dict per point: symbol name -> float (an array for a vector symbol, of its size
    in ``sizes``), distribution name -> array (a categorical's probabilities, a joint
    table) or (mean, cov). ``randomize``: draw the given tables at random too (for
    identities proved for every distribution)."""
    rng = generator(seed)
    sizes = sizes or {}
    out = []
    for _ in range(points):
        subs = {d.symbol: _draw(rng, d, sizes.get(d.symbol, ())) for d in decls}
        out.append(_point(dists, subs, rng, randomize))
    return out


def _point(dists: dict, subs: dict, rng, randomize: bool = False) -> dict:
    """One point at the symbols' values ``subs``: each distribution's table or
    parameters from them, a symbolic table drawn."""
    pt: dict = {"symbols": subs}
    scalars = {k: v for k, v in subs.items() if isinstance(v, float)}
    for name, d in dists.items():
        if isinstance(d, Categorical):
            pt[name] = (
                draw(rng, "simplex", (d.k,))
                if d.symbolic or randomize
                else np.array([float(p.subs(scalars)) for p in d.probs])
            )
        elif isinstance(d, Joint):
            m, n = d.shape
            pt[name] = (  # a joint table: its cells together sum to 1
                draw(rng, "simplex", (m * n,)).reshape(m, n)
                if d.symbolic or randomize
                else np.array([[float(c.subs(scalars)) for c in row] for row in d.table])
            )
        else:
            pt[name] = _gaussian_params(d, subs)
    return pt


def edge_points(dists: dict, decls, base: dict, seed: int) -> list[dict]:
    """Points like ``base`` with one scalar symbol at a time at each of its domain's
    EXTREMES (the others as drawn): where an inequality no argument proves is searched
    for a counterexample beyond the drawn range. A point whose distributions cannot be
    built there (a variance of 0) is left out."""
    rng = generator(seed)
    out = []
    for subs in at_extremes(base["symbols"], decls):
        try:
            with np.errstate(all="ignore"):
                out.append(_point(dists, subs, rng))
        except (ValueError, TypeError, ZeroDivisionError, OverflowError):
            continue
    return out


def rounded(value, dtype: str):
    """Sampled points (``sample``'s) with every number rounded to ``dtype`` and held in
    float64 (scalars stay Python floats), so that a float32 verification's references and
    derived forms start from the same numbers."""
    if isinstance(value, dict):
        return {k: rounded(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rounded(v, dtype) for v in value)
    if isinstance(value, float):
        return float(as_dtype(value, dtype))
    return as_dtype(value, dtype).astype(float)


class Reference:
    """Evaluates a parsed quantity at one sampled point with NumPy/SciPy."""

    def __init__(self, dists: dict, units: str, seed: int = 0, dims=None):
        self.dists = dists
        self.dims = dims or {}  # dim Symbol -> Integer (a vector's size in sum())
        self.scale = 1.0 if units == "nats" else 1.0 / math.log(2)
        self.seed = seed
        self.mc_se = 0.0  # standard error of the Monte Carlo terms of the last value

    def __call__(self, tree, pt) -> float:
        self.mc_se = 0.0
        return self.scalar(tree, pt)

    def scalar(self, tree, pt) -> float:
        if isinstance(tree, ip.Num):
            v = tree.value.xreplace(self.dims)
            syms = sorted(v.free_symbols, key=str)
            vals = [pt["symbols"][x] for x in syms]
            if all(np.ndim(x) == 0 for x in vals):
                return float(v.xreplace(dict(zip(syms, map(sp.Float, vals)))))
            return np.asarray(lambdify(syms, [v], "numpy")(*vals)[0], dtype=float)
        if isinstance(tree, ip.Op):
            a = [self.scalar(t, pt) for t in tree.args]
            try:
                v = SCALAR[tree.op](*a)
            except OverflowError:  # math.exp(1000)
                v = math.inf
            if np.ndim(v) == 0 and not math.isfinite(v) and _numbers_only(tree):
                try:
                    return self._exact(tree, pt)
                except (OverflowError, ValueError):  # exp(exp(exp(1000))): past mpmath too
                    return v
            return v
        return self.scale * self.info(tree, pt)

    def _exact(self, tree, pt) -> float:
        """A side of numbers alone that left float64's range on the way (log(2 π e
        1e308): 2 π e 1e308 overflows, its log is 356), in mpmath, whose exponents are
        unbounded: the float of the end value, inf only if it is past float64 itself."""
        with mpmath.workdps(30):
            v = self._mp(tree, pt)
            return float(v) if isinstance(v, mpmath.mpf) else math.nan  # a log(−1) left ℝ

    def _mp(self, tree, pt):
        if isinstance(tree, ip.Num):
            return (
                mpmath.mpf(self.scalar(tree, pt))
                if tree.value.free_symbols
                else (mpmath.mpmathify(str(sp.N(tree.value.xreplace(self.dims), 30))))
            )
        return EXACT[tree.op](*(self._mp(t, pt) for t in tree.args))

    def dist(self, d, pt):
        if isinstance(d, ip.DRef):
            return pt[d.name]
        if isinstance(d, ip.DVar):
            t = pt[d.joint]
            return t.sum(axis=1 - d.var)
        if isinstance(d, ip.DPair):
            return pt[d.joint]
        if isinstance(d, ip.DProd):
            t = pt[d.joint]
            return np.outer(t.sum(axis=1), t.sum(axis=0))
        if isinstance(d, ip.DMix):
            parts = [self.scalar(w, pt) * np.asarray(self.dist(t, pt)) for w, t in d.terms]
            return sum(parts)
        raise TypeError(d)

    def info(self, tree: ip.Info, pt) -> float:
        # SciPy loads with the first reference, not with dlsym: scipy.stats alone costs a
        # second and a half at import, on every derivation of any section
        from scipy import special, stats
        from scipy.spatial.distance import jensenshannon

        fn, a = tree.fn, tree.args
        if any(isinstance(d, ip.DRef) and isinstance(pt.get(d.name), tuple) for d in a):
            value, se = gaussian_reference(fn, [pt[d.name] for d in a], self.seed)
            self.mc_se = math.hypot(self.mc_se, se * self.scale)
            return value
        if fn == "entropy" and isinstance(a[0], ip.DCond):
            t = pt[a[0].joint] if a[0].target == 1 else pt[a[0].joint].T
            rows = t.sum(axis=1)  # p(given): H(target | given) = Σ p(g) H(row / p(g))
            return float(sum(r * stats.entropy(row / r) for r, row in zip(rows, t) if r > 0))
        if fn == "mutual_information":
            t = pt[a[0].joint]
            return float(special.rel_entr(t, np.outer(t.sum(1), t.sum(0))).sum())
        p = np.ravel(self.dist(a[0], pt))
        if fn == "entropy":
            return float(special.entr(p).sum())
        q = np.ravel(self.dist(a[1], pt))
        if fn == "cross_entropy":
            return float(-special.xlogy(p, q).sum())
        if fn == "kl":
            return float(special.rel_entr(p, q).sum())
        if fn == "jsd":
            return float(jensenshannon(p, q) ** 2)
        if fn == "focal_loss":
            g = self.scalar(a[2], pt)
            return float(-(p * (1 - q) ** g * np.log(q)).sum())
        if fn == "gan_value":
            return gan_value(p, q)
        raise NotImplementedError(fn)


def gan_value(p, q) -> float:
    """max over D in (0, 1)^k of Σ p log D + q log(1 - D), by a bounded scalar search per
    outcome (no closed form for D* is used)."""
    from scipy.optimize import minimize_scalar

    total = 0.0
    for a, b in zip(p, q):
        res = minimize_scalar(
            lambda d: -(a * np.log(d) + b * np.log1p(-d)),
            bounds=(1e-12, 1 - 1e-12),
            method="bounded",
            options={"xatol": 1e-12},
        )
        total += -res.fun
    return total


def _entrywise(scalar_fn, array_fn):
    """math's function on a number (it raises on log(-1) rather than giving nan), NumPy's
    on the entries of a vector symbol's value."""
    return lambda a: scalar_fn(a) if np.ndim(a) == 0 else array_fn(a)


def _numbers_only(tree) -> bool:
    """No information quantity and no vector inside: a side mpmath can evaluate."""
    if isinstance(tree, ip.Num):
        return True
    return isinstance(tree, ip.Op) and tree.op in EXACT and all(map(_numbers_only, tree.args))


# SCALAR's operations in mpmath (``Reference._exact``)
EXACT = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b if b else mpmath.nan,
    "pow": lambda a, b: a**b,
    "neg": lambda a: -a,
    "log": mpmath.log,
    "exp": mpmath.exp,
    "sqrt": mpmath.sqrt,
    "log2": lambda a: mpmath.log(a, 2),
}

SCALAR = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "neg": lambda a: -a,
    "log": _entrywise(math.log, np.log),
    "exp": _entrywise(math.exp, np.exp),
    "sqrt": _entrywise(math.sqrt, np.sqrt),
    "log2": _entrywise(math.log2, np.log2),
    "sum": lambda a, k: float(np.sum(np.broadcast_to(a, (int(k),)))),
}
