"""Each moment's closed form against its value computed from the distributions: exactly,
by enumerating every outcome, where the random symbols in it are Bernoulli with few
entries; otherwise by Monte Carlo in JAX, with the sample size and the confidence bound
in the report.

A Monte Carlo estimate has an error of about one standard error (estimated from the same
samples); an entry passes when the closed form is within ``Z`` of them (plus the
dtype's rounding tolerance). At Z = 5 a correct closed form fails about once in 1.7
million entries (for a normally distributed estimate), and 200 000 samples put 5
standard errors well under a tenth of a variance of order 1: a closed form off by a
tenth fails.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym._errors import DlsymError
from dlsym.calculus._moments import Diverges, Moments
from dlsym.codegen import _compile as codegen
from dlsym.expr._moments import covariance, expect
from dlsym.sections._base import law_parameters
from dlsym.sections._special import special_points
from dlsym.sections.random._function import fixed_decls
from dlsym.verify import (
    Check,
    capped_sizes,
    compare,
    draw_law,
    draws_within,
    generator,
    index_floor,
    jax_device,
    on_device,
    report,
    sample_points,
    sizes_said,
)
from dlsym.verify._sampling import DRAWN_ENTRIES, LABEL_FAMILIES, MIN_DRAWS

Z = 5.0
SAMPLES = 200_000
MAX_ENUMERATED = 2**14  # outcomes of the Bernoulli entries enumerated exactly
MC_POINTS = 4  # points (draws of the fixed symbols) for Monte Carlo; enumeration: all
SPARE = 4  # Monte Carlo draws this many times MC_POINTS, for points left out (below)


def verify_moments(d, points, seed, device, dtype, rtol, atol):
    import jax
    import jax.numpy as jnp

    spec, forms = d.spec, d.forms
    dev = jax_device(device)
    decls = fixed_decls(spec)
    dims = list(spec.dim_symbols.values())
    checks = []
    params_of = law_parameters(spec.laws, [d.symbol for d in decls], dims)
    with on_device(dev):
        for m, value in forms.values.items():
            randoms = [r for r in spec.laws if r in m.free_symbols]
            exact = all(spec.laws[r].family in ENUMERABLE for r in randoms) and (
                _count(spec, randoms, _shapes(spec, randoms, spec.dim_values)) <= MAX_ENUMERATED
            )
            sizes = spec.dim_values if exact else _sample_sizes(spec, m, randoms)
            shapes = _shapes(spec, randoms, sizes)
            count = points if exact else min(points, MC_POINTS)
            if not exact and _infinite_variance(spec, m):
                why = (
                    "the samples have no finite variance (the expectation of their square "
                    "diverges), so no number of them gives an estimate with a standard error"
                )
                checks.append(_no_conclusion(d, m, "Monte Carlo in JAX", why))
                continue
            # Monte Carlo draws spare points: where one sample dominates the estimate
            # (a log-normal's tail, exp(4 z) at a large variance) its standard error
            # means nothing, and the point is left out for the next one
            drawn = count if exact else count * SPARE
            # before any draw: a moment too large to sample is said at once
            n = 0 if exact else _sample_count(spec, m, randoms, sizes)
            fixed = sample_points(spec, drawn, seed, sizes)
            args = [d.symbol for d in decls] + randoms + dims
            inner = codegen.lambdify(args, list(m.args), "jax")
            closed = codegen.lambdify([d.symbol for d in decls] + dims, [value], "numpy")
            rng = generator(seed + 1)
            dim_sizes = [sizes[s] for s in dims]

            def one(fixed_args, rand):
                return inner(*fixed_args, *rand, *dim_sizes)

            # compiled once per moment: the drawn points are its arguments, not constants
            run = jax.jit(jax.vmap(one, in_axes=(None, 0)))
            got, want, bounds = [], [], []
            heavy = 0  # points left out: the estimate dominated by a few samples
            overflowed = 0  # points left out: samples past float64
            undefined = 0  # of those, with nan samples (0/0: a /(B − 1) at B = 1)
            coarse = 0  # points left out: samples whose spread float64 does not resolve
            candidates = [{d.name: fixed[d.name][p] for d in decls} for p in range(drawn)]
            # a point at each special value of its where branches first (k = 0 of
            # Var[exp(k u)]), which no drawn point hits
            specials = special_points([value], decls, candidates[:count])
            count += len(specials)
            for point in specials + candidates:
                if len(got) == count:
                    break
                at = [np.asarray(point[d.name]) for d in decls]
                params = {r: params_of[r](*at, *dim_sizes) for r in randoms}
                if exact:
                    samples, weights = _outcomes(spec, randoms, shapes, params)
                else:
                    samples = [
                        draw_law(rng, spec.laws[r].family, n, shapes[r], *params[r])
                        for r in randoms
                    ]
                    weights = None
                    if _unresolved(samples):
                        coarse += 1
                        continue

                # JAX arrays: a traced label indexes them (X[i]), not a NumPy array
                fixed_args = [jnp.asarray(a) for a in at]
                if randoms:  # labels stay integers: they index arrays
                    cast = [
                        jnp.asarray(s, dtype=s.dtype if s.dtype.kind == "i" else dtype)
                        for s in samples
                    ]
                    outs = run(fixed_args, cast)
                else:  # a moment of a constant (expect(c)): its one value, weight 1
                    outs = [jnp.asarray(o)[None] for o in one(fixed_args, [])]
                outs = [np.asarray(o, dtype=float) for o in outs]
                if weights is None and _dominated(type(m), outs):
                    heavy += 1
                    continue
                with np.errstate(over="ignore", invalid="ignore"):
                    estimate, error = _estimate(type(m), outs, weights)
                if weights is None and not (
                    np.isfinite(estimate).all() and np.isfinite(error).all()
                ):
                    # samples or their moments past float64 (E[z²] − E[z]² of z near
                    # 1e200): this point says nothing, as a dominated one does not
                    overflowed += 1
                    undefined += any(np.isnan(o).any() for o in outs)
                    continue
                target = np.broadcast_to(
                    np.asarray(closed(*at, *dim_sizes)[0], dtype=float),
                    estimate.shape,
                )
                got.append(target)
                want.append(estimate)
                bounds.append(Z * error + atol + rtol * np.abs(estimate))
            if exact:
                outcomes = _count(spec, randoms, shapes)
                reference = f"exact enumeration of {outcomes} outcome{'s' * (outcomes > 1)}"
                note = ""
            else:
                smaller = "" if sizes == spec.dim_values else sizes_said(sizes)
                reference = f"Monte Carlo in JAX ({n} samples per point{smaller})"
                note = f"{n} samples per point; bound {Z:g} standard errors"
                if smaller:
                    note += (
                        f"; checked{smaller}: the closed form holds for every size of the "
                        "dims, and the samples at the spec's own do not fit in memory"
                    )
                if points > MC_POINTS:
                    # --points 12 read 4 points, with no word why
                    note += (
                        f"; {MC_POINTS} of the {points} points asked: each Monte Carlo point "
                        f"draws {n} samples"
                    )
                if heavy:
                    note += (
                        f"; {heavy} drawn point(s) left out: there a few samples dominated "
                        "the estimate (heavy tails), so its standard error meant nothing"
                    )
                if overflowed:
                    note += f"; {overflowed} drawn point(s) left out: samples past float64"
                if coarse:
                    note += f"; {coarse} drawn point(s) left out: {UNRESOLVED}"
                if not got:  # every point: no check is possible, and that is no pass
                    why = (
                        "a few samples dominated the Monte Carlo estimate (heavy tails)"
                        if heavy
                        else UNRESOLVED
                        if coarse
                        else "the samples are undefined (nan: 0/0, or a function outside its "
                        "domain), where the moment's argument is not defined"
                        if undefined == overflowed
                        else "the samples overflow float64 (past 1.8e308)"
                    )
                    said = f"at every one of {drawn} drawn points {why}"
                    checks.append(_no_conclusion(d, m, reference, said))
                    continue
            checks.append(
                compare(
                    "closed_form",
                    d.expr_of(m),
                    reference,
                    np.stack(got),
                    np.stack(want),
                    rtol,
                    atol,
                    note,
                    bounds=np.stack(bounds),
                )
            )
    return report(checks, max(c.points for c in checks), dtype, device, rtol, atol)


def _no_conclusion(d, m, reference: str, why: str) -> Check:
    """A moment's check that compared nothing, and found nothing wrong (a located "cannot
    run" where every check is such, never a pass)."""
    nan = float("nan")
    return Check(
        "closed_form", d.expr_of(m), reference, 0, nan, nan, False,
        note=f"no conclusion: {why}", inconclusive=True,
    )  # fmt: skip


SECONDS_FOR_THE_SQUARE = 5.0  # the closed form of E[f²] that decides the standard error


def _infinite_variance(spec, m) -> bool:
    """Whether the samples of moment ``m`` have no finite variance, by the closed-form
    rules: E[f²] for E f, E[f⁴] for Var f, E[f² g²] for Cov(f, g) diverges. E[u^-0.9]
    = 10 of a uniform u was "found wrong" (exit 1) against an estimate of 6.9: its
    samples' variance is infinite, the largest of them rarely drawn, and a standard
    error of them means nothing. Where the rules find no closed form either way, the
    estimate is checked as before."""
    f = m.args[0]
    square = (
        f**2 if type(m) is expect else f**4 if type(m) is not covariance else f**2 * m.args[1] ** 2
    )
    try:
        within(SECONDS_FOR_THE_SQUARE, Moments(spec).expect, square, frozenset(spec.laws))
    except Diverges:
        return True
    except DlsymError:  # the spec's own budget, or its error: not this question's
        raise
    except (TimeLimit, Exception):  # noqa: BLE001 - no answer: the estimate decides
        return False
    return False


# a spread of samples below this fraction of their size is not resolved: float64 keeps
# about 16 digits, and the centred moments of such samples keep none (normal(1e30, 1)
# draws 1e30 every time: its variance 1 came out 0, or 8e28, and failed)
RESOLVED = 1e-9
UNRESOLVED = (
    "the samples' spread is below float64's resolution at their size (a variance of 1 "
    "around 1e30), so their moments are rounding"
)


def _unresolved(samples) -> bool:
    """Whether some entry of some real random input is drawn with a spread under
    RESOLVED of its size."""
    for s in samples:
        s = np.asarray(s)
        if s.dtype.kind != "f" or len(s) < 2:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            spread, size = np.std(s, axis=0), np.max(np.abs(s), axis=0)
        if np.any((size > 0) & np.isfinite(size) & (spread < RESOLVED * size)):
            return True
    return False


# the families verification enumerates exactly: Bernoulli entries and drawn labels
ENUMERABLE = ("bernoulli", *LABEL_FAMILIES)


def _values(spec, r, shape, params):
    """Every value of the random symbol r with its probability: the 2^k patterns of k
    Bernoulli entries, or each label of a drawn example."""
    family = spec.laws[r].family
    if family == "uniform_index":
        m = int(params[0])
        return np.arange(m).reshape((m, *shape)), np.full(m, 1.0 / m)
    if family == "categorical":
        p = np.asarray(params[0], dtype=float)
        return np.arange(len(p)).reshape((len(p), *shape)), p / p.sum()
    k = int(np.prod(shape, dtype=int))
    bits = np.array(list(itertools.product((0.0, 1.0), repeat=k))).reshape(2**k, k)
    weights = np.prod(np.where(bits == 1.0, float(params[0]), 1 - float(params[0])), axis=1)
    return bits.reshape((2**k, *shape)), weights


def _count(spec, randoms, shapes) -> int:
    """The number of outcomes an exact enumeration of ``randoms`` goes through."""
    total = 1
    for r in randoms:
        law = spec.laws[r]
        if law.family == "bernoulli":
            total *= 2 ** int(np.prod(shapes[r], dtype=int))
        elif law.family == "uniform_index":
            total *= int(law.params[0].subs(spec.dim_values))
        else:
            total *= int(spec.algebra.shape(law.params[0])[0].subs(spec.dim_values))
    return total


def _outcomes(spec, randoms, shapes, params):
    """Every outcome of the enumerable random symbols, with its probability (the
    symbols are independent: the product of theirs)."""
    values = [_values(spec, r, shapes[r], params[r]) for r in randoms]
    if not values:  # no random symbol (expect(c)): one outcome, of probability 1
        return [], np.ones(1)
    grids = np.meshgrid(*[np.arange(len(w)) for _, w in values], indexing="ij")
    picks = [g.reshape(-1) for g in grids]
    samples = [v[k] for (v, _), k in zip(values, picks)]
    weights = np.prod([w[k] for (_, w), k in zip(values, picks)], axis=0)
    return samples, weights


# one sample's share of the estimate's total past which it dominates it: with 200 000
# samples a light-tailed quantity's largest share is about a ten-thousandth
HEAVY_SHARE = 0.05


def _dominated(kind, outs) -> bool:
    """Whether a few samples dominate the Monte Carlo estimate of some entry (the
    expectation's terms, or the variance's or covariance's products)."""
    terms = np.abs(outs[0] if kind is expect else _products(kind, outs))
    total = terms.sum(axis=0)
    share = np.where(total > 0, terms.max(axis=0) / np.where(total > 0, total, 1.0), 0.0)
    return bool(np.any(share > HEAVY_SHARE))


def _estimate(kind, outs, weights):
    """The moment and its standard error (0 for an exact enumeration)."""
    if weights is not None:
        # an outcome of probability 0 (bernoulli(0)'s 1) is none: its value, log 0 or
        # 1/0, counts nothing (0 · inf was nan, "the reference is not finite")
        possible = weights > 0
        outs = [o[possible] for o in outs]
        weights = weights[possible]
        w = weights.reshape((-1,) + (1,) * (outs[0].ndim - 1))
        mean = [np.sum(w * o, axis=0) for o in outs]
        if kind is expect:
            return mean[0], np.zeros_like(mean[0])
        a, b = (
            (o - mu for o, mu in zip(outs, mean))
            if kind is covariance
            else (outs[0] - mean[0],) * 2
        )
        if kind is covariance and outs[0].ndim > 1:
            value = np.einsum("s,si,sj->ij", weights, a, b)
        else:
            value = np.sum(w * a * b, axis=0)
        return value, np.zeros_like(value)
    n = outs[0].shape[0]
    if kind is expect:
        return outs[0].mean(axis=0), outs[0].std(axis=0) / np.sqrt(n)
    products = _products(kind, outs)
    return products.mean(axis=0), products.std(axis=0) / np.sqrt(n)


def _shapes(spec, randoms, sizes) -> dict:
    return {r: tuple(int(x.subs(sizes)) for x in spec.algebra.shape(r)) for r in randoms}


def _per_sample(spec, m, randoms, sizes) -> int:
    """Entries one Monte Carlo sample holds at the dims ``sizes``: its random inputs,
    the moment's arguments and, for a covariance, their centred products
    (covariance(A x, A x) at n = 3000 asked for 447 GiB)."""
    entries = sum(int(np.prod(s, dtype=object)) for s in _shapes(spec, randoms, sizes).values())
    outs = [
        int(np.prod([int(sp.sympify(d).subs(sizes)) for d in spec.algebra.shape(a)], dtype=object))
        for a in m.args
    ]
    return entries + sum(outs) + (outs[0] * outs[-1] if len(outs) > 1 else outs[0])


# samples per point the dims are made smaller for, where the spec's own hold fewer than
# MIN_DRAWS: a He initialisation at fan_in = 784, hid = 1024 drew the whole 784 x 1024
# matrix per sample for one row's variance (exit 2)
SMALLER_DIMS_SAMPLES = 20_000


def _sample_sizes(spec, m, randoms) -> dict:
    """The dims Monte Carlo runs at: the spec's own, or where fewer than MIN_DRAWS
    samples of them fit in memory, each capped (``capped_sizes``) until
    SMALLER_DIMS_SAMPLES fit. The closed form holds at every size (the moment rules read
    the dims as symbols; its code takes them from its arguments' shapes)."""
    full = spec.dim_values

    def samples(sizes) -> int:
        return DRAWN_ENTRIES // max(_per_sample(spec, m, randoms, sizes), 1)

    if samples(full) >= MIN_DRAWS:
        return full
    smaller = capped_sizes(full, lambda s: samples(s) >= SMALLER_DIMS_SAMPLES, index_floor(m))
    return smaller if samples(smaller) >= MIN_DRAWS else full


def _sample_count(spec, m, randoms, sizes) -> int:
    """Monte Carlo samples per point within the kit's memory budget (``draws_within``)."""
    per_sample = _per_sample(spec, m, randoms, sizes)
    doc = spec.doc
    return draws_within(
        SAMPLES,
        per_sample,
        "samples",
        "the random inputs, the moment's arguments and their products",
        doc.loc("dims") if "dims" in doc.data else doc.loc(),
    )


def _products(kind, outs):
    """Each sample's centred product: (a - ā)(b - b̄)ᵀ per sample for the covariance of
    two vectors (of any two sizes), the entrywise square for a variance."""
    a = outs[0] - outs[0].mean(axis=0)
    b = outs[1] - outs[1].mean(axis=0) if kind is covariance else a
    if kind is covariance and a.ndim > 1:
        return a[:, :, None] * b[:, None, :]
    return a * b
