"""One sampler per domain: how verification draws a point from each symbol's domain
(shared/spec-format.md, ``domain``). Every section, and ``dlsym check``, draws through
this module: it is the only one in dlsym that touches NumPy's random generator, so a
seed means the same numbers wherever it is used (tests/test_verify.py holds the rest of
the package to that).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops

# the integer arguments of a draw and the least each may be: 0 points would check
# nothing (a default taken silently in its place), and NumPy refuses a negative count or
# seed in its own words, far from the call that passed it
LEAST = {"points": 1, "seed": 0}


def drawing(who: str, **values) -> dict:
    """``points`` and ``seed`` as passed to ``who`` (``verify()``), checked: integers
    (NumPy's too, not bool) from their least up, or None where left out."""
    out = {}
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < LEAST[name]
        ):
            raise SpecError(f"{who}: {name} must be an integer >= {LEAST[name]}, got {value!r}")
        out[name] = None if value is None else int(value)
    return out


def generator(seed: int) -> np.random.Generator:
    """The seeded generator a verification draws from."""
    return np.random.default_rng(seed)


def interval(low: float, high: float):
    """A sampler of uniform draws from [low, high). The bounded domains below are made
    of it, and so are the ranges that are no symbol's domain but that a reference needs
    drawn (a solver's starting points, LQR's open-loop spectral radius, a nudge of the
    inputs by a rounding error in ``dlsym check``)."""
    return lambda rng, shape=(): rng.uniform(low, high, shape)


def _spd(rng, shape):
    b = rng.standard_normal(shape)
    return b @ b.T / shape[0] + np.eye(shape[0])


def _orthogonal(rng, shape):
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.sign(np.diag(r))


def _onehot(rng, shape):
    # a one-hot vector, or one-hot rows along the last axis (a batch of labels)
    return np.eye(shape[-1])[rng.integers(shape[-1], size=shape[:-1])]


def _simplex(rng, shape):
    # a flat Dirichlet: a vector on the simplex, or each row of a matrix (soft labels)
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


# How to draw a point from each domain (shared/spec-format.md, `domain`). The bounded
# ranges stay away from the edges, where log, 1/x and the like blow up.
SAMPLERS = {
    "real": lambda rng, shape=(): rng.standard_normal(shape),
    "positive": interval(0.5, 2.0),
    "nonnegative": interval(0.0, 2.0),
    "unit_interval": interval(0.05, 0.95),
    "simplex": _simplex,
    "onehot": _onehot,
    "spd": _spd,
    "orthogonal": _orthogonal,
}


# Values of a scalar of each domain far from SAMPLERS' ranges, toward its edges and
# out to its far ends: where a claim that no proof backs is searched for a counterexample
# (H(N(0, s)) >= 0 held at every s in [0.5, 2] and fails for s < 1/(2πe); KL(p‖q) <= 0.5
# at a in [0.05, 0.95], and fails near 0 and 1)
EXTREMES = {
    "real": (-1e6, -1e3, -10.0, -1e-3, 0.0, 1e-3, 10.0, 1e3, 1e6),
    "positive": (1e-6, 1e-3, 0.05, 10.0, 1e3, 1e6),
    "nonnegative": (0.0, 1e-6, 1e-3, 0.05, 10.0, 1e3, 1e6),
    "unit_interval": (1e-9, 1e-4, 0.01, 0.99, 1 - 1e-4, 1 - 1e-9),
}


def at_extremes(point: dict, decls) -> list[dict]:
    """``point`` (symbol -> value) with one scalar symbol of ``decls`` at a time at each
    of its domain's EXTREMES, the others as they are."""
    return [
        {**point, d.symbol: float(x)}
        for d in decls
        if isinstance(point.get(d.symbol), float)
        for x in EXTREMES.get(d.domain, ())
    ]


def _symmetric_directions(shape):
    """An orthonormal basis of the symmetric n x n matrices (columns, flattened): the
    directions an spd point moves in. E_ii, and (E_ij + E_ji)/sqrt(2) for i < j."""
    n = shape[0]
    cols = []
    for i in range(n):
        for j in range(i, n):
            e = np.zeros((n, n))
            e[i, j] = e[j, i] = 1.0 if i == j else np.sqrt(0.5)
            cols.append(e.reshape(-1))
    return np.stack(cols, axis=1)


def _summing_to_zero(shape):
    """An orthonormal basis of the directions whose entries sum to 0 (columns): those
    a point on the simplex moves in (the null space of 1ᵀ, from the SVD); for a matrix,
    whose rows are each on the simplex, those of each row (one block per row)."""
    row = np.linalg.svd(np.ones((1, shape[-1])))[2][1:].T
    rows = int(np.prod(shape[:-1], dtype=int))
    return np.kron(np.eye(rows), row)


# The directions a point of a domain moves in, where they are not every direction: a
# function of the shape giving an orthonormal basis (flattened entries x directions).
# Convexity on such a domain is curvature along these (-logdet is convex on the spd
# cone, though its ambient Hessian has negative eigenvalues along antisymmetric ones).
TANGENTS: dict[str, Callable[[tuple], np.ndarray]] = {
    "spd": _symmetric_directions,
    "simplex": _summing_to_zero,
}


def _between(low, high, u):
    return (1 - u) * low + u * high


# How to draw ``count`` samples of a random symbol (a spec's ``distribution``; its
# parameters as numbers): an array of shape (count, *shape). Entries are independent and
# identically distributed, except the multivariate normal's.
LAW_SAMPLERS: dict[str, Callable[..., np.ndarray]] = {
    "normal": lambda rng, count, shape, mean, var: (
        mean + np.sqrt(var) * rng.standard_normal((count, *shape))
    ),
    # (1 − u) low + u high: NumPy's uniform computes high − low, which overflows for
    # uniform(−1e308, 1e308) (an OverflowError, exit 3)
    "uniform": lambda rng, count, shape, low, high: _between(
        low, high, rng.random((count, *shape))
    ),
    "bernoulli": lambda rng, count, shape, p: (rng.random((count, *shape)) < p).astype(float),
    "mvnormal": lambda rng, count, shape, mean, cov: rng.multivariate_normal(
        np.broadcast_to(mean, shape), cov, count, method="cholesky"
    ),
    # a drawn example: integer labels, uniformly or with the probabilities p
    "uniform_index": lambda rng, count, shape, m: rng.integers(0, int(m), (count, *shape)),
    "categorical": lambda rng, count, shape, p: rng.choice(
        len(p), (count, *shape), p=np.asarray(p, dtype=float) / np.sum(p)
    ),
}
# the families whose draws are labels, kept as integers (they index arrays)
LABEL_FAMILIES = ("uniform_index", "categorical")


def draw_law(rng, family: str, count: int, shape, *params) -> np.ndarray:
    """``count`` samples of a random symbol of the given shape: float64, or integer
    labels for a drawn example."""
    dtype = int if family in LABEL_FAMILIES else float
    return np.asarray(LAW_SAMPLERS[family](rng, count, tuple(shape), *params), dtype=dtype)


def draw(rng, domain: str, shape=()) -> np.ndarray:
    """One float64 draw of the given shape from ``domain``."""
    return np.asarray(SAMPLERS[domain](rng, tuple(shape)), dtype=float)


def labels(rng, k: int, shape=()) -> np.ndarray:
    """Integer labels 0..k-1 (``domain: {index: k}``): class labels, token ids."""
    return rng.integers(0, k, shape)


# Kinks (shared/spec-format.md: "verification samples such points too"). Pruned or
# zero-initialised weights sit exactly where relu, abs, max or clip have a kink, and a
# wrong convention there (abs'(0) = 1, a tie's gradient all to one side) is invisible at
# random points. So at every second point about three entries in four of each real symbol
# are rounded to a multiple of 1/2: zeros (relu, abs), equal entries (ties of max and
# maximum), the bounds of clip(x, -1, 1) and the like. Multiples of 1/2 add and multiply
# exactly in floating point, so kinks of derived values are hit exactly too: y * (X @ w)
# is exactly 1 at some entries of a hinge loss, whatever order a backend sums in.
KINK_GRID = 0.5
KINK_SHARE = 0.75
KINK_DOMAINS = ("real",)  # the others keep away from their edges (log, 1/x: SAMPLERS)


def _on_kinks(rng, value: np.ndarray) -> np.ndarray:
    snap = rng.random(value.shape) < KINK_SHARE
    return np.where(snap, np.round(value / KINK_GRID) * KINK_GRID, value)


def sample_points(
    spec, points: int, seed: int, sizes: dict | None = None, kinks: bool = False
) -> dict:
    """{name: array of shape (points, *shape)} drawn from each symbol's domain (labels of
    an index domain as integers, everything else float64). With ``kinks`` (the spec has
    functions with kinks: ``dlsym.expr._ops.has_kinks``), every second point sits on
    kinks (``KINK_GRID``)."""
    rng = generator(seed)
    sizes = sizes or spec.dim_values
    _within_entries(spec, points, sizes)
    out = {}
    for decl in spec.symbols:
        shape = tuple(int(d.subs(sizes)) for d in decl.shape)
        if decl.domain == "index":
            k = int(decl.index_size.subs(sizes))
            out[decl.name] = np.stack([labels(rng, k, shape) for _ in range(points)])
            continue
        drawn = [draw(rng, decl.domain, shape) for _ in range(points)]
        if kinks and decl.domain in KINK_DOMAINS:
            drawn = [_on_kinks(rng, x) if p % 2 else x for p, x in enumerate(drawn)]
        out[decl.name] = np.stack(drawn)
    return out


def dims_loc(doc):
    """Where a spec's sizes are: its ``dims``, else the file."""
    return doc.loc("dims") if "dims" in doc.data else doc.loc()


def _within_entries(spec, points: int, sizes: dict) -> None:
    """A located error where the drawn points would hold more than DRAWN_ENTRIES entries
    (--points 100000 of a 1000-vector passed 4 GB, unbounded): at ``verify: points`` where
    the spec sets it, else at ``dims``."""
    # Python integers: a dim of 2⁶² overflows int64's product
    per_point = sum(math.prod(int(d.subs(sizes)) for d in decl.shape) for decl in spec.symbols)
    if points * per_point <= DRAWN_ENTRIES:
        return
    doc = getattr(spec, "doc", None)
    loc = None
    if doc is not None:
        verify = doc.data.get("verify")
        points_set = isinstance(verify, dict) and "points" in verify
        loc = doc.loc("verify", "points") if points_set else dims_loc(doc)
    fits = DRAWN_ENTRIES // max(per_point, 1)
    # one point past the limit: fewer points cannot help ("give at most 1 points", which
    # --points 1 did not mend), only smaller dims
    fewer = f"give at most {fits:,} points (--points), " if fits >= 1 else ""
    raise SpecError(
        f"verification cannot run: {points:,} points of {per_point:,} entries each hold "
        f"{points * per_point:.3g}, past its {DRAWN_ENTRIES:,}: {fewer}smaller dims, or derive "
        "with --no-verify",
        loc,
    )


# the entries one point's Monte Carlo draws may hold (about 160 MB in float64), and the
# fewest draws that conclude anything: past the first with as few as the second, a
# verification cannot run (a located error, not a MemoryError or the OOM killer)
DRAWN_ENTRIES = 20_000_000
MIN_DRAWS = 1_000


def draws_within(wanted: int, per_draw: int, what: str, held: str, loc) -> int:
    """Monte Carlo draws per point: ``wanted``, or as many as DRAWN_ENTRIES hold at
    ``per_draw`` entries each (``held``: what a draw holds, in words); fewer than
    MIN_DRAWS is a SpecError at ``loc`` ("samples", "paths": ``what``)."""
    n = min(wanted, DRAWN_ENTRIES // max(per_draw, 1))
    if n < MIN_DRAWS:
        raise SpecError(
            f"verification cannot run: {MIN_DRAWS:,} Monte Carlo {what} at these dims ({held}) "
            f"hold {MIN_DRAWS * per_draw:.3g} entries, past its {DRAWN_ENTRIES:,}: give "
            "smaller dims, or derive with --no-verify",
            loc,
        )
    return n


def capped_sizes(full: dict, fits, floor: int, capped=None) -> dict:
    """``full`` (dim -> size) with the dims of ``capped`` (all by default) capped at the
    largest size, halved until ``fits(sizes)`` or at ``floor`` (1 + the largest number
    that indexes or slices an axis: JAX would clamp x[5] at a smaller size, silently).
    A result that holds for every size of its dims is checked at sizes verification can
    hold: the calculus section's explicit entries, the random section's Monte Carlo."""
    cap = max(full.values(), default=0)
    sizes = full
    while cap > floor and not fits(sizes):
        cap = max(cap // 2, floor)
        sizes = {k: min(v, cap) if capped is None or k in capped else v for k, v in full.items()}
    return sizes


def index_floor(e) -> int:
    """1 + the largest number that indexes or slices an axis in ``e`` (x[5], Z[:, 2:6]):
    the smallest size ``capped_sizes`` may cap at."""
    return 1 + max(
        (
            int(a)
            for x in e.atoms(layout.index, layout.scatter, ops.entry)
            for a in sp.preorder_traversal(sp.Tuple(*x.args[1:]))
            if a.is_Integer
        ),
        default=0,
    )


def sizes_said(sizes: dict) -> str:
    """ " at m=64, n=64": how a check names the smaller sizes it ran at."""
    return " at " + ", ".join(f"{k}={v}" for k, v in sizes.items())


DOMAIN_DRAWS = 64  # draws of as many points again, at most, to fill the nan ones


def redrawn(spec, inside, samples, outside, seed, sizes=None, kinks=False) -> dict:
    """``samples`` with each point ``outside`` (per point) replaced by a point drawn
    again where ``inside`` (drawn points -> per point) holds: a log barrier
    −Σ log(b − A x) is defined only where A x < b, a region no symbol's domain can say,
    and at random points it is nan at 15 of 16 (``inside``: the objective not nan;
    called only where the verification's own evaluation found nan; in ``dlsym check``,
    where the reference is: sqrt(x) of a real x). Up to DOMAIN_DRAWS draws of as many
    points as ``samples`` holds (the memory of one verification each);
    points still outside after that stay (the checks say how many). Points that
    overflow (inf) are another matter (not compared)."""
    out = {n: np.array(v, copy=True) for n, v in samples.items()}
    empty = list(np.flatnonzero(outside))
    for draw_index in range(DOMAIN_DRAWS):
        if not empty:
            break
        more = sample_points(spec, len(outside), seed + 5 + draw_index, sizes, kinks)
        for candidate in np.flatnonzero(inside(more)):
            if not empty:
                break
            point = empty.pop(0)
            for n in out:
                out[n][point] = more[n][candidate]
    return out
