"""Verification of a calculus derivation: every derived result against an independent
reference.

1. JAX autodiff: the *objective* is compiled to JAX and differentiated with
   ``jax.grad`` / ``jax.jacfwd`` / ``jax.hessian``; the derived closed form is
   evaluated at the same points. All points go through one ``jax.vmap``-ed,
   jit-compiled call per function.
2. Explicit entries: at small sizes, the objective is expanded into scalar
   SymPy expressions and differentiated with plain ``sympy.diff``.

Points are drawn from each symbol's domain with the kit's seeded samplers. Where the
objective has kinks (relu, abs, max, maximum, clip, where), every second point sits on
them (``dlsym.verify._sampling``), and the JAX reference shares dlsym's kink convention:
its code comes from the operation table (``abs`` as ``x * sign(x)``, whose autodiff gives
sign(0) = 0; ``jax.nn.relu``; ``jnp.maximum``, ``jnp.max`` and ``jnp.clip``, which split
ties equally).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym._budget import TimeLimit, step, within
from dlsym._errors import SpecError
from dlsym.calculus._derive import joint_key, result_key
from dlsym.calculus._run import entry_loc
from dlsym.calculus._second_order import MINIMUM, ROOTS
from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.codegen._stable import stabilize
from dlsym.expr import _explicit as explicit
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import nesting
from dlsym.expr._ops import has_kinks
from dlsym.expr._shapes import solve_sizes
from dlsym.printing._printers import ExprPrinter
from dlsym.spec._spec import define_text
from dlsym.verify import (
    DTYPES,
    TANGENTS,
    Check,
    NotRead,
    VerificationReport,
    _sampling,
    as_dtype,
    capped_sizes,
    compare,
    draw,
    generator,
    index_floor,
    jax_device,
    on_device,
    report,
    sample_points,
    sizes_said,
    text_reader,
)

EXPLICIT_MAX_SIZE = 3  # sizes used by the sympy.diff cross-check
# distinct nodes of the objective past which verification runs op by op, not compiled
EAGER_NODES = 1000
EXPLICIT_KINDS = ("gradient", "jacobian", "hessian")  # the kinds it checks
EXPLICIT_MAX_POINTS = 3
EXPLICIT_MAX_ENTRIES = 600  # skip the cross-check past this many derivative entries
# ... and once sympy.diff has run this long on one result, or all of one spec's (a batched
# attention's explicit entries at B=2, T=3, d=3 take 40 s per weight): autodiff still checks
EXPLICIT_SECONDS_EACH = 8.0
EXPLICIT_SECONDS = 20.0
# ... and where functions nest deeper than this (a tanh MLP of 6 layers nests 13 deep):
# SymPy's cost to build one explicit entry grows exponentially with its depth, inside
# single calls that no time budget can stop, so deeper objectives are not expanded
EXPLICIT_MAX_NESTING = 14


def jax_objective(derivation, sizes: dict, np_dtype=np.float64):
    """The objective as a JAX function of the spec's symbols (in their order), at the
    dims ``sizes``: as a careful JAX user writes it (log(sigmoid(z)) as -softplus(-z),
    log(softmax) as log_softmax), exact rewrites, so autodiff of it is still an
    independent reference, and one that stays finite where the naive formula overflows
    (a logistic loss at n = 1000 has |X w| ~ 30: log(1 - sigmoid) = log(0) there)."""
    jnp = jax_x64().numpy
    spec = derivation.spec
    dim_args = [spec.dim_symbols[k] for k in spec.dims]
    dim_vals = [sizes[spec.dim_symbols[k]] for k in spec.dims]
    target = stabilize(derivation.expanded_target())
    f = codegen.lambdify([s.symbol for s in spec.symbols] + dim_args, [target], "jax")

    def objective(*xs):
        # a floating output even where the target simplified to a constant (grad of 3)
        return jnp.asarray(f(*xs, *dim_vals)[0], dtype=np_dtype)

    return objective


def _as_written(derivation, sizes: dict, names: list):
    """The objective (or output) read from the spec's own text (``dlsym.verify._text``),
    a function of the symbols ``names``; None where the text uses a function that
    reader does not implement, or the spec was not written as text."""
    spec = derivation.spec
    data = spec.doc.data
    key = "objective" if spec.objective is not None else "output"
    raw = data.get("define") or {}
    texts = {d.name: define_text(raw.get(d.name)) for d in spec.defines}
    texts[" target"] = data.get(key)  # not a name a spec can take
    if not all(isinstance(t, (str, int, float)) for t in texts.values()):
        return None
    dims = {name: sizes[spec.dim_symbols[name]] for name in spec.dims}
    try:
        return text_reader({n: str(t) for n, t in texts.items()}, " target", names, dims)
    except (NotRead, SyntaxError):
        return None


def flat_hessian(jax, objective, argnums):
    """A function of the inputs: the joint Hessian in the arguments ``argnums`` by
    jax.hessian, as one (n, n) matrix over their entries flattened in order (one
    argument: its Hessian reshaped)."""
    jnp = jax.numpy

    def flat(*xs):
        blocks = jax.hessian(objective, argnums)(*xs)
        sizes = [int(np.prod(xs[i].shape)) for i in argnums]
        return jnp.block(
            [
                [blocks[r][c].reshape(sizes[r], sizes[c]) for c in range(len(argnums))]
                for r in range(len(argnums))
            ]
        )

    return flat


def bends_down(jax, objective, argnums, names, point) -> bool:
    """f's second difference at ``point`` along the Hessian's eigenvector of its
    smallest eigenvalue λ < 0, f(x + h v) + f(x − h v) − 2 f(x), is negative and at least
    half of λ h², as a true bend is and round-off is not, at one of the steps h in
    BEND_STEPS (times the point's size): a bend can be narrow (x⁴ − 1e-8 x² bends down
    only for |x| < 4e-5, and a step of 1e-3 reached across it to where f is convex)."""
    xs = [np.asarray(point[n]) for n in names]  # labels stay integers
    xs = [np.asarray(x, dtype=float) if i in argnums else x for i, x in enumerate(xs)]
    h_matrix = np.asarray(flat_hessian(jax, objective, argnums)(*xs))
    values, vectors = np.linalg.eigh(h_matrix)
    if not values[0] < 0:
        return False
    sizes = [xs[i].size for i in argnums]
    parts = np.split(vectors[:, 0], np.cumsum(sizes)[:-1])
    size = max(float(np.max(np.abs(xs[i]), initial=0.0)) for i in argnums)

    def f(t):
        moved = list(xs)
        for i, part in zip(argnums, parts):
            moved[i] = xs[i] + t * part.reshape(xs[i].shape)
        return float(objective(*moved))

    middle = f(0.0)
    for fraction in BEND_STEPS:
        h = fraction * max(size, 1.0)
        ends = f(h) + f(-h)
        second = ends - 2 * middle
        # and past its own rounding: far out on a log-cosh regression sech² underflows,
        # f is linear up to round-off of its values (hundreds), and a -1e-13 difference
        # read against λ h² = -1e-18 made a convex objective 'not convex' (round 33)
        rounding = ROUNDING_ULPS * np.finfo(float).eps * (abs(ends) + 2 * abs(middle))
        if np.isfinite(second) and second < min(0.5 * values[0] * h**2, -rounding):
            return True
    return False


# how many units of rounding of f's values a second difference must exceed to be a bend
ROUNDING_ULPS = 64
# the steps of the second difference, as fractions of the point's size (at least 1)
BEND_STEPS = (1e-3, 1e-5, 1e-7)


def smallest_eigenvalues(jax, objective, argnums, directions=None):
    """A function of the inputs: the (joint) Hessian in the arguments ``argnums`` by
    jax.hessian, its smallest eigenvalue and its largest in magnitude (the scale the
    first is read at). ``directions`` (from ``tangent_directions``): the Hessian
    restricted to them, Bᵀ H B, the curvature along the directions a domain allows."""
    jnp = jax.numpy
    hessian = flat_hessian(jax, objective, argnums)

    def eig(*xs):
        h = hessian(*xs)
        whole = jnp.linalg.eigvalsh(h)
        scale = jnp.max(jnp.abs(whole))
        if directions is None:
            return whole[0], scale
        # the scale stays the whole Hessian's: restricted to a domain's directions it can
        # be 0 up to rounding (−11ᵀ along sum-zero ones), and -1e-32 read against 1e-32
        # would be a counterexample made of round-off
        if directions.shape[1] == 0:
            # a domain of one point (a simplex of size 1): no direction to bend along,
            # every function is convex there
            return jnp.zeros(()), scale
        values = jnp.linalg.eigvalsh(directions.T @ h @ directions)
        return values[0], jnp.maximum(jnp.max(jnp.abs(values)), scale)

    return eig


def tangent_directions(spec, names):
    """The directions the wrt symbols ``names`` move in on their domains, as one
    block-diagonal orthonormal basis over their flattened entries (verify.TANGENTS:
    symmetric for spd, summing to 0 on the simplex), or None where every direction is."""
    shapes = [tuple(int(d.subs(spec.dim_values)) for d in spec.symbol(n).shape) for n in names]
    domains = [spec.symbol(n).domain for n in names]
    if not any(d in TANGENTS for d in domains):
        return None
    blocks = [
        TANGENTS[d](shape) if d in TANGENTS else np.eye(int(np.prod(shape, dtype=int)))
        for d, shape in zip(domains, shapes)
    ]
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


# the most entries of a wrt symbol whose stationary point is checked by a Newton step
# (its Hessian solved at each point: entries³ work, 4e9 at a 40 × 40 matrix)
MAX_NEWTON_ENTRIES = 400


def _too_big(batched) -> bool:
    """Whether a wrt symbol's drawn values (the points on the leading axis) have more
    entries than a Newton step is taken in."""
    return int(np.prod(batched.shape[1:], dtype=object)) > MAX_NEWTON_ENTRIES


def _newton(jax, objective, argnums):
    """-H^{-1} g in the arguments ``argnums`` jointly, by JAX autodiff (jnp.linalg.solve
    on the joint Hessian): one step per argument, in its shape."""
    jnp = jax.numpy
    hessian = flat_hessian(jax, objective, argnums)

    def step(*xs):
        grads = jax.grad(objective, argnums)(*xs)
        g = jnp.concatenate([gi.reshape(-1) for gi in grads])
        delta = -jnp.linalg.solve(hessian(*xs), g)
        out, start = [], 0
        for gi in grads:
            out.append(delta[start : start + gi.size].reshape(gi.shape))
            start += gi.size
        return tuple(out)

    return step


def _newton_checks(jax, objective, parts, names, inputs, derived, finite, dtype, rtol, atol, at):
    """The derived Newton steps (``derived``: one array per result of ``parts``, over
    the points) against jnp.linalg.solve's joint step on jax.hessian, with the one
    Hessian per point that also gives its condition number κ and the derived steps'
    relative residual ‖H Δ + g‖ / (‖H‖ ‖Δ‖ + ‖g‖).

    Where κ times the dtype's ε passes rtol, jnp.linalg.solve's step can be off by more
    than the tolerance (with sum(exp(A x)), A 30×30, κ nears 1e16 and two right steps
    differed by 5%): there the derived step is held to its residual instead, within
    RESIDUAL_SAFETY κ ε (a backward error), and where that bound says nothing the point
    says nothing. Where both steps are not finite (a singular Hessian on a kink of
    sum(|x|³), a point verification draws) no Newton step exists: not compared, said."""
    jnp = jax.numpy
    argnums = tuple(names.index(w) for w in parts)
    hessian = flat_hessian(jax, objective, argnums)
    eps = float(np.finfo(DTYPES[dtype]).eps)

    def one(xs, deltas):
        h = hessian(*xs)
        grads = jax.grad(objective, argnums)(*xs)
        g = jnp.concatenate([gi.reshape(-1) for gi in grads])
        d = jnp.concatenate([di.reshape(-1) for di in deltas])
        reference, out, start = -jnp.linalg.solve(h, g), [], 0
        for gi in grads:  # one step per argument, in its shape
            out.append(reference[start : start + gi.size].reshape(gi.shape))
            start += gi.size
        scale = jnp.linalg.norm(h, 2) * jnp.linalg.norm(d) + jnp.linalg.norm(g)
        residual = jnp.linalg.norm(h @ d + g) / jnp.where(scale > 0, scale, 1.0)
        return tuple(out), jnp.linalg.cond(h), residual

    steps = [np.asarray(derived[w]) for w in parts]
    references, cond, residual = jax.jit(jax.vmap(one))(
        list(inputs), [jnp.asarray(st) for st in steps]
    )
    cond, residual = np.asarray(cond), np.asarray(residual)
    references = [np.asarray(r) for r in references]
    checks = []
    ill = (~np.isfinite(cond) | (cond * eps > rtol)) & np.isfinite(residual)
    if ill.any():
        with np.errstate(over="ignore", invalid="ignore"):
            bound = RESIDUAL_SAFETY * cond * eps
        bound = np.where(np.isfinite(bound), bound, np.inf)
        references = [np.where(_along(ill, r), st, r) for r, st in zip(references, steps)]
        checks.append(_residual_check(joint_key(tuple(parts)), at, ill, residual, bound, atol))
    label = f"solve(jax.hessian, -jax.grad){at}"
    for wrt, got, expected in zip(parts, steps, references):
        rows = (len(expected), -1)
        nowhere = ~np.isfinite(expected).reshape(rows).all(axis=1)
        nowhere &= ~np.isfinite(got).reshape(rows).all(axis=1)
        if not nowhere.any() or nowhere.all():  # a step nowhere finite is a failure
            checks.append(_autodiff_check(NEWTON, wrt, label, got, expected, finite, rtol, atol))
            continue
        keep = ~nowhere
        check = _autodiff_check(
            NEWTON,
            wrt,
            label,
            got[keep],
            expected[keep],
            None if finite is None else np.asarray(finite)[keep],
            rtol,
            atol,
        )
        said = (
            f"{int(nowhere.sum())} of {len(nowhere)} points not compared: both steps are "
            "not finite there (a singular Hessian, on a kink: no Newton step exists)"
        )
        note = f"{check.note}; {said}" if check.note else said
        checks.append(dataclasses.replace(check, points=len(nowhere), note=note))
    return checks


NEWTON = "newton_step"  # the kind _newton_checks reports under


# a right step's relative residual is at most about κ ε, computed through an inverse;
# this many times that is its bound, and where the bound passes RESIDUAL_USEFUL the
# residual cannot tell a right step from a wrong one (whose residual is about 1)
RESIDUAL_SAFETY = 16.0
RESIDUAL_USEFUL = 0.1


def _residual_check(key, at, ill, residual, bound, atol) -> Check:
    """The derived Newton step's relative residual at the ill-conditioned points, each
    within max(atol, its bound); the points whose bound says nothing left out, said,
    and inconclusive where that is all of them."""
    useful = ill & (bound < RESIDUAL_USEFUL)
    hopeless = int((ill & ~useful).sum())
    label = f"the residual of jax.hessian Δ = -jax.grad, relative{at}"
    said = (
        f"{int(ill.sum())} of {len(ill)} points where jax.hessian's condition number κ "
        "times the dtype's ε passes rtol: there the derived step's residual is held to "
        f"{RESIDUAL_SAFETY:g} κ ε, not jnp.linalg.solve's step to rtol"
    )
    if hopeless:
        said += f"; {hopeless} of them with κ ε so large that nothing is compared"
    if not useful.any():
        return Check(
            NEWTON, key, label, len(ill), math.nan, math.nan, False, note=said, inconclusive=True
        )
    return compare(
        NEWTON,
        key,
        label,
        residual[useful],
        np.zeros(int(useful.sum())),
        0.0,
        atol,
        note=said,
        bounds=np.maximum(bound[useful], atol),
    )


def _references(jax, kind, objective, parts, names):
    """The reference of ``kind`` for each result of ``parts`` ({key: Result}), by JAX
    autodiff: (name, a function of the inputs returning one array per result)."""
    argnums = tuple(names.index(r.wrt) for r in parts.values())
    if kind in ("gradient", "jacobian"):
        name = "grad" if kind == "gradient" else "jacfwd"
        return f"jax.{name}", getattr(jax, name)(objective, argnums=argnums)
    if kind == "hessian":
        # each block (a, b) of the joint Hessian, or each symbol's own Hessian
        pairs = [r.over or (r.wrt, r.wrt) for r in parts.values()]
        involved = tuple(sorted({names.index(n) for pair in pairs for n in pair}))
        full = jax.hessian(objective, argnums=involved)
        at = [(involved.index(names.index(a)), involved.index(names.index(b))) for a, b in pairs]
        # the joint Hessian once per point, each block read off it (one jax.hessian per
        # block traced it once per block: the 210 blocks of 20 scalars ran past the budget)
        return "jax.hessian", lambda *xs: (lambda h: tuple(h[i][j] for i, j in at))(full(*xs))
    # stationary: one Newton step from the drawn point lands on it exactly when the
    # gradient is affine, which is what its closed form claims; where it is not, the
    # landing point moves with the draw and cannot match a closed form of the others
    steps = [(i, _newton(jax, objective, (i,))) for i in argnums]
    return (
        "a Newton step by jax.hessian from each point",
        lambda *xs: tuple(xs[i] + f(*xs)[0] for i, f in steps),
    )


ROOT_CHECK = "a Newton step by jax.hessian from the stationary point"
JOINT_CHECK = "a Newton step by jax.hessian from the joint stationary point"


def _where_they_exist(jax, derivation, results, batched, samples, seed, sizes, dtype, dev):
    """(inputs, note) for the root check of stationary points that exist only where
    their conditions hold (``exists_where``: softplus(a x + b) − 0.3 x has one only for
    a > 3/10): the drawn points where every condition holds and the objective is
    finite, the others drawn again as the objective's domain is (``redrawn``); the
    note says how many points that leaves, where it is fewer than were drawn. None of
    them: (None, why), and the check is inconclusive (exit 2). ``batched``: the
    objective, jitted and vmapped, as the verification compiled it."""
    jnp = jax_x64().numpy
    conditions = [
        jax.jit(jax.vmap(derivation.condition_function(result_key(r))))
        for r in results
        if r.exists_where
    ]

    def holds(drawn) -> np.ndarray:
        xs = as_dtype(drawn, dtype).values()
        ok = np.isfinite(_objective_values(batched, drawn, dtype))
        for condition in conditions:
            for m in condition(*xs):
                m = np.asarray(m)
                ok &= (m.reshape(len(m), -1) > 0).all(axis=1)
        return ok

    points = len(next(iter(samples.values())))
    ok = holds(samples)
    if not ok.all():
        samples = _sampling.redrawn(derivation.spec, holds, samples, ~ok, seed, sizes, False)
        ok = holds(samples)
    where = "where it exists" if len(results) == 1 else "where they exist"
    if not ok.any():
        return None, (
            f"the conditions under which it exists hold at none of {points} points drawn "
            f"{_sampling.DOMAIN_DRAWS + 1} times: give the symbols domains where they hold"
        )
    kept = {n: v[ok] for n, v in samples.items()}
    inputs = [jax.device_put(jnp.asarray(v), dev) for v in as_dtype(kept, dtype).values()]
    if ok.all():
        return inputs, ""
    return inputs, f"compared at the {int(ok.sum())} of {points} drawn points {where}"


def _root_check(
    jax, derivation, results, objective, names, inputs, rtol, atol, at, note=""
) -> list:
    """Stationary points solved entry by entry, through an inverse, or in turn (v* with
    m* put in): every one evaluated at the draw and put in at once, and from there a
    Newton step by jax.hessian in each symbol (its own block) stays put (at a root of
    the gradient the step is 0; from a wrong point it moves by about the distance to the
    root, and a point stationary only given a wrong value of another moves), compared as
    values with the usual tolerance; where the block is singular (x³ at 0: a 0/0
    step), the gradient there, which must be 0 as well."""
    idx = [names.index(r.wrt) for r in results]
    stars = [derivation.numeric_function("stationary", (r.wrt,), backend="jax") for r in results]
    # a symbol past MAX_NEWTON_ENTRIES: the gradient alone (its Hessian's Newton step is
    # the cube of its entries, inside XLA, where no budget can stop it: a 40 × 40
    # covariance MLE ran past 150 s with --budget 10)
    steps = [_newton(jax, objective, (i,)) if not _too_big(inputs[i]) else None for i in idx]
    big = [r.wrt for r, f in zip(results, steps) if f is None]
    if big:
        said = (
            f"at {', '.join(big)}: the gradient there (jax.grad), 0, in place of a Newton "
            f"step (past {MAX_NEWTON_ENTRIES} entries, its Hessian is too large to solve)"
        )
        note = f"{note}; {said}" if note else said

    def joint(*xs):
        point = list(xs)
        for i, star in zip(idx, stars):
            point[i] = star(*xs)
        out = []
        for i, newton in zip(idx, steps):
            slope = -jax.grad(objective, i)(*point)
            if newton is None:
                out.append(point[i] + slope)
                continue
            step = newton(*point)[0]
            out.append(point[i] + jax.numpy.where(jax.numpy.isfinite(step), step, slope))
        return tuple(point[i] for i in idx), tuple(out)

    got, expected = jax.jit(jax.vmap(joint))(*inputs)
    return [
        compare(
            "stationary",
            result_key(r),
            f"{ROOT_CHECK}{at}" if not any(r.given for r in results) else f"{JOINT_CHECK}{at}",
            np.asarray(g),
            np.asarray(e),
            rtol,
            atol,
            note,
        )
        for r, g, e in zip(results, got, expected)
    ]


def _minimum_check(jax, derivation, result, objective, names, inputs, atol, at) -> Check:
    """The one local minimum of several roots (``MINIMUM``): the smallest eigenvalue of
    jax.hessian there is >= 0 (to the tolerance, relative to the largest's size); at a
    maximum the root check passes and this one fails."""
    i = names.index(result.wrt)
    star = derivation.numeric_function("stationary", (result.wrt,), backend="jax")
    eig = smallest_eigenvalues(
        jax, objective, (i,), tangent_directions(derivation.spec, (result.wrt,))
    )

    def at_root(*xs):
        point = list(xs)
        point[i] = star(*xs)
        return eig(*point)

    low, scale = jax.jit(jax.vmap(at_root))(*inputs)
    below = np.minimum(np.asarray(low) / np.maximum(np.asarray(scale), 1.0), 0.0)
    return compare(
        "stationary",
        result_key(result),
        f"eigvalsh(jax.hessian) >= 0 at the stationary point{at}",
        below,
        np.zeros_like(below),
        0.0,
        atol,  # the dtype's: relative to the largest eigenvalue's size
    )


def _convexity_checks(jax, derivation, result, objective, names, inputs, rtol, atol, at) -> list:
    """A proof: the smallest eigenvalue of jax.hessian at every drawn point is >= 0 (to
    the tolerance, relative to the largest eigenvalue's size). A counterexample: at its
    point, jax.hessian has the negative eigenvalue reported."""
    v = result.verdict
    eig = smallest_eigenvalues(
        jax,
        objective,
        tuple(names.index(n) for n in result.about),
        tangent_directions(derivation.spec, result.about),
    )
    if v.convex:
        low, scale = (np.asarray(a) for a in jax.jit(jax.vmap(eig))(*inputs))
        # a point where f or its Hessian overflows (exp(1000 x) at x = 1) says nothing of
        # its curvature: left out, and said; where every point does, the check fails
        finite = np.isfinite(low) & np.isfinite(scale)
        with np.errstate(invalid="ignore", divide="ignore"):
            below = np.minimum(low / np.maximum(scale, 1.0), 0.0)
        note = ""
        if finite.any() and not finite.all():
            below = np.where(finite, below, 0.0)
            note = (
                f"{int((~finite).sum())} drawn point(s) left out: the Hessian overflows "
                "float64 there"
            )
        return [
            compare(
                "convexity",
                result_key(result),
                f"eigvalsh(jax.hessian) >= 0 at the drawn points{at}",
                below,
                np.zeros_like(below),
                0.0,
                atol,  # the dtype's: relative to the largest eigenvalue's size
                note,
            ),
            _chords_check(jax, result, objective, names, inputs, atol),
        ]
    if v.convex is False and v.other is not None:
        # a chord below the graph: f at the midpoint of the two points against the mean
        # of f there, again, by the objective as JAX computes it
        a = [jax.numpy.asarray(v.point[n]) for n in names]
        b = [jax.numpy.asarray(v.other[n]) for n in names]
        mid = [(x + y) / 2 for x, y in zip(a, b)]
        f = jax.jit(objective)
        gap = float(f(*mid)) - (float(f(*a)) + float(f(*b))) / 2
        return [
            compare(
                "convexity",
                result_key(result),
                "the midpoint gap of f between the counterexample's two points",
                np.asarray([gap]),
                np.asarray([v.gap]),
                rtol,
                0.0,
            )
        ]
    if v.convex is False:
        point = [jax.numpy.asarray(v.point[n]) for n in names]
        low, _ = jax.jit(eig)(*point)
        checks = [
            compare(
                "convexity",
                result_key(result),
                "eigvalsh(jax.hessian) at the counterexample",
                np.asarray([float(low)]),
                np.asarray([v.eigenvalue]),
                rtol,
                0.0,
            )
        ]
        if tangent_directions(derivation.spec, result.about) is None:
            # and f itself bends down there, by its values alone: an eigenvalue that is
            # round-off (a saturated exp far out) is no counterexample, and fails here
            argnums = tuple(names.index(n) for n in result.about)
            bends = bends_down(jax, objective, argnums, names, v.point)
            checks.append(
                compare(
                    "convexity",
                    result_key(result),
                    "f's second difference along the eigenvector, negative",
                    np.asarray([1.0 if bends else 0.0]),
                    np.asarray([1.0]),
                    rtol,
                    atol,
                )
            )
        return checks
    return []


def _conditioned_rtol(jax, objective, argnum, inputs, dtype, rtol) -> tuple:
    """(rtol, note) for a stationary point against a Newton step: both solve H x = −r,
    each within about κ(H) ε of the solution, so the tolerance is at least
    RESIDUAL_SAFETY κ ε at the worst-conditioned point (least squares with A 1000 × 1000:
    κ(AᵀA) near 1e8, the right x* = (AᵀA)⁻¹Aᵀb off by 2e-7, exit 1)."""
    hessian = flat_hessian(jax, objective, (argnum,))
    with np.errstate(all="ignore"):
        cond = np.asarray(
            jax.jit(jax.vmap(lambda *xs: jax.numpy.linalg.cond(hessian(*xs))))(*inputs)
        )
    eps = float(np.finfo(DTYPES[dtype]).eps)
    worst = float(np.max(np.where(np.isfinite(cond), cond, 0.0), initial=0.0))
    needed = RESIDUAL_SAFETY * worst * eps
    if needed <= rtol:
        return rtol, ""
    return needed, (
        f"rtol {needed:.2g}: {RESIDUAL_SAFETY:g} κ ε for the Hessian's condition number κ up "
        f"to {worst:.3g}, within which two solutions of H x = −r agree"
    )


def _autodiff_check(kind, wrt, label, got, expected, defined, rtol, atol):
    """``compare``, less the entries where JAX's derivative is nan and both the objective
    (``defined``: the points where it is finite; None: no piecewise function in it) and
    the result are finite: JAX differentiates the branch a ``where`` does not pick, and
    its nan times the mask's 0 is nan (jax.grad of where(x > 0, sqrt(x), 0) at x < 0),
    where the derivative is 0. Those entries are said, and the explicit sympy.diff check
    covers them; a check left with no entry cannot run."""
    points = len(expected)
    if defined is None or points == 0:
        return compare(kind, wrt, label, got, expected, rtol, atol)
    at_point = np.asarray(defined).reshape((points,) + (1,) * (expected.ndim - 1))
    artifact = np.isnan(expected) & np.isfinite(got) & at_point
    if not artifact.any():
        return compare(kind, wrt, label, got, expected, rtol, atol)
    said = (
        f"{int(artifact.sum())} of {expected.size} entries not compared: "
        f"{label.split(' at ')[0]} is nan there, through the branch a where does not "
        "pick, and the objective is finite"
    )
    if artifact.all():
        return Check(
            kind, wrt, label, points, math.nan, math.nan, False, note=said, inconclusive=True
        )
    # those entries compare equal (the derived value stands in for the nan)
    check = compare(kind, wrt, label, got, np.where(artifact, got, expected), rtol, atol)
    return dataclasses.replace(check, note=f"{check.note}; {said}" if check.note else said)


@dataclass(frozen=True)
class Chords:
    """Each drawn point paired with the next one's values of the moved arguments (the
    others held): the other ends, f at both ends and at the midpoint, and the size the
    gap f(mid) − (f(a) + f(b))/2 is read at."""

    ends: list
    fa: np.ndarray
    fb: np.ndarray
    fm: np.ndarray

    @property
    def gap(self):
        with np.errstate(over="ignore", invalid="ignore"):  # inf − inf: nan, left out
            return self.fm - (self.fa + self.fb) / 2

    @property
    def size(self):
        return np.maximum(
            np.maximum(np.abs(self.fa), np.abs(self.fb)), np.maximum(np.abs(self.fm), 1.0)
        )


def chords(jax, objective, points: list, moved: set) -> Chords:
    """The chords between consecutive drawn ``points`` (one array per argument, points
    first) along the arguments ``moved``; only those move, so integer labels stay
    integers (take_along_axis needs them). The counterexample search and the check of a
    convex proof read the same chords."""
    jnp = jax.numpy
    ends = [jnp.roll(x, 1, axis=0) if i in moved else x for i, x in enumerate(points)]
    mid = [(x + y) / 2 if i in moved else x for i, (x, y) in enumerate(zip(points, ends))]
    f = jax.jit(jax.vmap(objective))
    fa, fb, fm = (np.asarray(f(*xs), dtype=float).reshape(-1) for xs in (points, ends, mid))
    return Chords(ends, fa, fb, fm)


def _chords_check(jax, result, objective, names, inputs, atol):
    """A convex proof through kinks (abs, relu, where) is one the Hessian cannot test:
    it is 0 or PSD on each piece even where the pieces jump or the slope drops. So also
    the chords: each drawn point's wrt values paired with the next point's (the other
    symbols held), f at the midpoint is at most the mean of f at the two ends (to the
    dtype's tolerance, relative to the values' size)."""
    c = chords(jax, objective, inputs, {names.index(n) for n in result.about})
    # a pair with an end outside the domain or past float64 says nothing; a midpoint
    # outside it between two ends inside is a nonconvex domain, which fails (nan)
    ends_ok = np.isfinite(c.fa) & np.isfinite(c.fb)
    with np.errstate(invalid="ignore"):
        above = np.where(ends_ok, np.maximum(c.gap / c.size, 0.0), 0.0)
    return compare(
        "convexity",
        result_key(result),
        # no " at " or " and " in the name: the report's summary splits names there
        "the chords of f by jax.numpy (f midway between two drawn points <= the mean "
        "of its end values)",
        above,
        np.zeros_like(above),
        0.0,
        atol,
    )


def _taylor_check(jax, derivation, result, objective, names, inputs, seed, rtol, atol, at):
    """The second-order model at the drawn points and a drawn direction against
    f + jvp(f) + jvp(grad f) / 2 by JAX."""
    jnp = jax.numpy
    moved = [names.index(n) for n in result.about]
    rng = generator(seed + 2)  # one direction per point and symbol, drawn as a real one is
    deltas = [jnp.asarray(draw(rng, "real", inputs[i].shape), dtype=inputs[i].dtype) for i in moved]
    model = derivation.taylor_function(result.about)

    def reference(*args):
        xs, ds = args[: len(names)], dict(zip(moved, args[len(names) :]))

        def along(t):
            return objective(*(x + t * ds[i] if i in ds else x for i, x in enumerate(xs)))

        f, df = jax.jvp(along, (0.0,), (1.0,))
        _, d2f = jax.jvp(lambda t: jax.jvp(along, (t,), (1.0,))[1], (0.0,), (1.0,))
        return f + df + d2f / 2

    got = jax.jit(jax.vmap(model))(*inputs, *deltas)
    expected = jax.jit(jax.vmap(reference))(*inputs, *deltas)
    return compare(
        "taylor",
        result_key(result),
        f"jax.jvp to second order{at}",
        np.asarray(got),
        np.asarray(expected),
        rtol,
        atol,
    )


def verify(
    derivation, points: int, seed: int, device: str, dtype: str, rtol: float, atol: float
) -> VerificationReport:
    try:
        return _verify_within_memory(derivation, points, seed, device, dtype, rtol, atol)
    except MemoryError as exc:
        raise _out_of_memory(derivation, exc) from None
    except Exception as exc:
        # XLA's allocator says so in its own error type (jax.errors.JaxRuntimeError):
        # a constant such as eye(100000) inside the objective, which the symbols' and
        # results' sizes do not count, or a dim read back from a size such as n**n**n
        if "RESOURCE_EXHAUSTED" not in str(exc):
            raise
        raise _out_of_memory(derivation, exc) from None


def _sizes_loc(spec):
    """Where an error about the sizes verification runs at points: the dims, else the
    objective or output."""
    keys = [k for k in ("dims", "objective", "output") if k in spec.doc.data]
    return spec.doc.loc(keys[0]) if keys else spec.doc.loc()


def _out_of_memory(derivation, exc) -> SpecError:
    return SpecError(
        f"verification ran out of memory ({_short(exc)}): the objective's tensors at these "
        "sizes do not fit; give smaller dims or constants, or derive with --no-verify",
        _sizes_loc(derivation.spec),
    )


def _verify_within_memory(derivation, points, seed, device, dtype, rtol, atol):
    sizes, at = verification_sizes(derivation)
    if at:
        try:
            return _verify_at(derivation, points, seed, device, dtype, rtol, atol, sizes, at)
        except (ValueError, IndexError, TypeError) as exc:
            # the smaller sizes break a relation between the dims that the spec's own
            # keep (a slice x[0:5] of a vector capped below 5 entries): its own sizes,
            # where they fit in memory
            spec = derivation.spec
            if _entries(derivation, spec.dim_values) > VERIFY_MEMORY_ENTRIES:
                raise SpecError(
                    f"verification cannot run{at} ({_short(exc)}), and the spec's own sizes are "
                    f"past its {VERIFY_MEMORY_ENTRIES:,} entries: give smaller dims, or "
                    "derive with --no-verify",
                    _sizes_loc(spec),
                ) from None
    sizes = dict(derivation.spec.dim_values)
    return _verify_at(derivation, points, seed, device, dtype, rtol, atol, sizes, "")


def _verify_at(derivation, points, seed, device, dtype, rtol, atol, sizes, at):
    """``verify`` at the dims ``sizes`` (``at``: how the report names them, "" for the
    spec's own)."""
    import jax

    jax_x64()
    import jax.numpy as jnp

    spec = derivation.spec
    dev = jax_device(device)
    np_dtype = DTYPES[dtype]
    target = derivation.expanded_target()
    # where the objective has kinks (relu, abs, max, where...), half the points sit on them
    kinks = has_kinks(target)
    samples = sample_points(spec, points, seed, sizes, kinks=kinks)
    names = [s.name for s in spec.symbols]
    objective = jax_objective(derivation, sizes, np_dtype)
    if kinks:
        samples = _off_singular_kinks(jax, derivation, objective, samples, seed, sizes, dtype)

    # On a kink, the side a derived value such as x/5 + 1/2 falls on decides the
    # derivative, so both sides must compute it alike: compiled, XLA fuses x/5 + 1/2 into
    # one fma(x, 0.2, 0.5), -2.8e-17 at x = -2.5, in one program and not in another (seen
    # with JAX 0.10 on CPU). Op by op (jit disabled), every operation rounds as NumPy's.
    # A large objective runs op by op as well: XLA fuses a flat sum of 600 sines (600
    # chained defines a_i = a_(i−1) + sin(i x)) into one kernel, and compiling its
    # gradient's took 24 GB, past the time budget (which cannot stop a compile)
    large = any(True for _ in itertools.islice(ops.distinct_parts(target), EAGER_NODES, None))
    with on_device(dev), jax.disable_jit(kinks or large):
        inputs = [jax.device_put(jnp.asarray(v), dev) for v in as_dtype(samples, dtype).values()]
        checks = []
        expanded: dict = {}  # the explicit objective, shared by every result's cross-check
        # compiled once: the domain's redraws and the roots' conditions evaluate it too
        batched = jax.jit(jax.vmap(objective))
        values = np.asarray(batched(*inputs))
        nan = np.isnan(values.reshape(points, -1)).any(axis=1)
        if nan.any():  # points outside the objective's domain: drawn again inside it
            inside = lambda drawn: ~np.isnan(_objective_values(batched, drawn, dtype))  # noqa: E731
            samples = _sampling.redrawn(spec, inside, samples, nan, seed, sizes, kinks)
            if kinks:
                samples = _off_singular_kinks(
                    jax, derivation, objective, samples, seed, sizes, dtype
                )
            inputs = [
                jax.device_put(jnp.asarray(v), dev) for v in as_dtype(samples, dtype).values()
            ]
            values = np.asarray(batched(*inputs))
        finite = np.isfinite(values.reshape(points, -1)).all(axis=1)
        overflow = not np.isnan(values).any()  # only ±inf: past float64's range
        if not finite.any():
            # nothing to compare at any point: verification cannot run (as for memory),
            # which is not a derivation found wrong
            what = "objective" if spec.objective is not None else "output"
            why = (
                "overflows float64 (past 1.8e308) at every drawn point: scale it down or "
                "give the symbols smaller domains"
                if overflow
                else "is nan at every drawn point, outside its domain wherever the symbols "
                "were drawn (log or sqrt of a negative): give the symbols domains (e.g. "
                "domain: positive)"
            )
            raise SpecError(f"verification cannot run: the {what} {why}", spec.doc.loc(what))
        if not finite.all():
            # derivatives can be finite where the function is not (d log x = 1/x): points
            # outside the function's domain verify nothing
            bad = int((~finite).sum())
            checks.append(
                Check(
                    "objective",
                    "",
                    "the objective itself",
                    points - bad if overflow else points,  # those compared
                    0.0 if overflow else float("nan"),
                    0.0 if overflow else float("nan"),
                    # past float64's range there: those points are not compared (every
                    # check says how many), the others are
                    overflow,
                    note=f"overflows float64 at {bad} of {points} points, which are not compared"
                    if overflow
                    else f"not finite at {bad} of {points} points: give the symbols domains "
                    "(e.g. domain: positive)",
                )
            )
        written = _as_written(derivation, sizes, names)
        if written is not None and finite.any():
            # the objective as dlsym parsed it against its text read straight into
            # jax.numpy: a parse that changed the function fails here, where every
            # autodiff check below, differentiating the same parse, would pass
            try:
                text_values = np.asarray(jax.jit(jax.vmap(written))(*inputs))
            except Exception:  # noqa: BLE001 - the second reading's limits are not the user's
                text_values = None
            # where the text as written overflows (exp(1000 z)) and dlsym's stabilized
            # form does not, the point says nothing about the parse
            both = finite
            if text_values is not None:
                both = finite & np.isfinite(text_values.reshape(points, -1)).all(axis=1)
            if text_values is not None and both.any():
                what = "objective" if spec.objective is not None else "output"
                # the form every reference differentiates, and the function a user gets
                # (d.function("objective"), dlsym codegen's: the defines kept as
                # intermediates, printed by other rules: diag(v) @ w was an outer product)
                user = derivation.function("objective", backend="jax")
                user_values = np.asarray(jax.jit(jax.vmap(lambda *xs: user(*xs)))(*inputs))
                for wrt, got in (("", values), ("d.function", user_values)):
                    checks.append(
                        compare(
                            what,
                            wrt,
                            f"its text in jax.numpy{at}",
                            got[both],
                            text_values[both],
                            rtol,
                            atol,
                        )
                    )
        for kind, parts in derivation.results.items():
            # a stationary point without a closed form has nothing to check
            parts = {w: r for w, r in parts.items() if r.expr is not None or r.entries is not None}
            if not parts:
                continue
            if kind == "stationary":
                joint = any(r.given for r in parts.values())
                roots = [
                    r
                    for r in parts.values()
                    if joint or r.method in ROOTS or _too_big(inputs[names.index(r.wrt)])
                ]
                # jointly, or each alone with the others at their drawn values
                for group in [roots] if joint else [[r] for r in roots]:
                    group_inputs, note = inputs, ""
                    if any(r.exists_where for r in group):
                        group_inputs, note = _where_they_exist(
                            jax, derivation, group, batched, samples, seed, sizes, dtype, dev
                        )
                    if group_inputs is None:  # nowhere drawn: nothing to compare
                        checks += [
                            Check(
                                "stationary",
                                result_key(r),
                                ROOT_CHECK,
                                points,
                                math.nan,
                                math.nan,
                                False,
                                note=note,
                                inconclusive=True,
                            )
                            for r in group
                        ]
                        continue
                    checks += _root_check(
                        jax, derivation, group, objective, names, group_inputs, rtol, atol, at, note
                    )
                    checks += [
                        _minimum_check(jax, derivation, r, objective, names, group_inputs, atol, at)
                        for r in group
                        if r.method == MINIMUM
                    ]
                if joint:
                    continue
                parts = {w: r for w, r in parts.items() if r not in roots}
                if not parts:
                    continue
            if kind == "convexity":
                for result in parts.values():
                    checks += _convexity_checks(
                        jax, derivation, result, objective, names, inputs, rtol, atol, at
                    )
                continue
            if kind == "taylor":
                for result in parts.values():
                    checks.append(
                        _taylor_check(
                            jax,
                            derivation,
                            result,
                            objective,
                            names,
                            inputs,
                            seed,
                            rtol,
                            atol,
                            at,
                        )
                    )
                continue
            derived_fn = derivation.numeric_function(kind, tuple(parts), backend="jax")
            derived = jax.jit(jax.vmap(lambda *xs: derived_fn(*xs)))(*inputs)
            if not isinstance(derived, dict):
                derived = {next(iter(parts)): derived}
            if kind == "newton_step":  # one joint step in every wrt symbol
                checks += _newton_checks(
                    jax,
                    objective,
                    parts,
                    names,
                    inputs,
                    derived,
                    finite if kinks else None,
                    dtype,
                    rtol,
                    atol,
                    at,
                )
                continue
            # one program for every argument's autodiff (a transformer block's eight
            # weights compile once, not eight times); each argument's block of it
            label, ref_fn = _references(jax, kind, objective, parts, names)
            references = jax.jit(jax.vmap(ref_fn))(*inputs)
            for i, (wrt, result) in enumerate(parts.items()):
                got = derived[wrt]
                tol, note = rtol, ""
                if kind == "stationary":
                    tol, note = _conditioned_rtol(
                        jax, objective, names.index(wrt), inputs, dtype, rtol
                    )
                check = _autodiff_check(
                    kind,
                    wrt,
                    f"{label}{at}",
                    np.asarray(got),
                    np.asarray(references[i]),
                    finite if kinks else None,
                    tol,
                    atol,
                )
                if note:
                    check = dataclasses.replace(
                        check, note=f"{check.note}; {note}" if check.note else note
                    )
                checks.append(check)
                if result.method == "matrix form" and kind in EXPLICIT_KINDS:
                    checks.append((kind, result))  # after the autodiff checks, below
    # The sympy.diff cross-checks share one time budget: the cheapest first, so that a
    # budget spent deep in a network does not starve its last layer (the symbols used
    # nearest the objective, then the smallest). Each takes its place after its autodiff
    # check.
    pending = [c for c in checks if isinstance(c, tuple)]
    done = {}
    deadline = time.monotonic() + EXPLICIT_SECONDS
    for kind, result in sorted(pending, key=lambda kr: _cost(spec, kr[1].wrt)):
        with step(
            f"sympy.diff on explicit entries of the {kind} w.r.t. {result_key(result)}",
            entry_loc(spec, kind),
        ):
            done[kind, result_key(result)] = explicit_check(
                derivation, kind, result, seed, dtype, rtol, atol, expanded, deadline
            )
    checks = [done[c[0], result_key(c[1])] if isinstance(c, tuple) else c for c in checks]
    # the references alphabetically: the autodiff ones, then sympy.diff
    return report(checks, points, dtype, dev.platform, rtol, atol, sort_references=True)


# Verification's budget of array entries per point (the inputs plus the largest result):
# past it, the dims are capped (halving the cap until it fits) and the report says at
# which sizes it ran. The derivation never looks at the sizes, so smaller ones check the
# same formula: a logistic Hessian at n = 10^4 is 10^8 entries a point, 16 points 12 GB.
VERIFY_MAX_ENTRIES = 2_000_000
# the entries one drawn point may hold at all (about 400 MB in float64): past it even at
# the smallest sizes, or at the spec's own where those are needed, a located error
# instead of an allocation that the OOM killer ends
VERIFY_MEMORY_ENTRIES = 50_000_000


def verification_sizes(derivation) -> tuple[dict, str]:
    """({dim symbol: size} verification runs at, and " at m=64, n=64" where those are
    not the spec's own). A dim that no symbol's shape carries keeps its size: generated
    code reads that one from the spec, not from its arguments."""
    spec = derivation.spec
    full = dict(spec.dim_values)
    # a dim is read off an argument's axis where the axis holds it alone and solve_sizes
    # finds it from the axis's size (n, 4 H, n², n (n + 1)): others (an axis of n m or
    # 2ⁿ) the code takes from the spec, and capping them made arrays of 625² entries
    # meet code that broadcast to 10⁸
    carried = {x for s in spec.symbols for d in s.shape for x in _read_off(d)}

    def entries(sizes) -> int:
        return _entries(derivation, sizes)

    if entries(full) <= VERIFY_MAX_ENTRIES:
        return full, ""
    if not full:  # literal sizes only: nothing to shrink
        if entries(full) > VERIFY_MEMORY_ENTRIES:
            _too_many(spec, full)
        return full, ""
    floor = index_floor(derivation.expanded_target())
    sizes = capped_sizes(full, lambda s: entries(s) <= VERIFY_MAX_ENTRIES, floor, carried)
    if entries(sizes) > VERIFY_MEMORY_ENTRIES:
        _too_many(spec, sizes)
    return sizes, sizes_said(sizes)


def _read_off(size) -> set:
    """{the dim} where an axis of ``size`` holds one dim, found again from its size (at
    7) by solve_sizes, as the generated code finds it; else nothing."""
    size = sp.sympify(size)
    if len(size.free_symbols) != 1:
        return set()
    (x,) = size.free_symbols
    return {x} if solve_sizes([(size, int(size.subs(x, 7)))]) == {x: 7} else set()


def _short(exc, limit: int = 120) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


# the kinds whose references differentiate twice: a kink point must be regular there too
SECOND_ORDER = {"hessian", "newton_step", "taylor", "convexity", "stationary"}


def _off_singular_kinks(jax, derivation, objective, samples, seed, sizes, dtype) -> dict:
    """``samples`` with each kink point where the objective or its gradient is not
    finite drawn again off the kinks: a point put on x = 0 or on ties for the kink
    convention's sake can also sit on a singularity (1/x, std of equal entries), which
    would fail every check; a point drawn inside the domains that is singular still
    does (the objective's own check says so)."""
    spec = derivation.spec
    jnp = jax.numpy
    names = [s.name for s in spec.symbols]
    wrt = tuple(names.index(n) for n in spec.wrt if spec.symbol(n).domain != "index")
    inputs = [jnp.asarray(v) for v in as_dtype(samples, dtype).values()]

    second = bool(set(spec.derive) & SECOND_ORDER) and wrt
    # as far as the results go; an output's Jacobian by jacrev (jax.grad takes scalars
    # only: a Jacobian of relu(W x) ended in a TypeError)
    derivative = jax.hessian if second else jax.jacrev

    def values(*xs):
        ok = jnp.all(jnp.isfinite(objective(*xs)))
        for part in jax.tree_util.tree_leaves(derivative(objective, wrt)(*xs) if wrt else ()):
            ok = ok & jnp.all(jnp.isfinite(part))
        return ok

    finite = np.asarray(jax.jit(jax.vmap(values))(*inputs))
    if finite.all():
        return samples
    smooth = sample_points(spec, len(finite), seed + 1, sizes, kinks=False)
    return {n: np.where(_along(finite, v), v, smooth[n]) for n, v in samples.items()}


def _objective_values(f, samples, dtype):
    """The jitted, vmapped objective ``f`` at each point, one number per point (nan if
    any entry is)."""
    values = np.asarray(f(*as_dtype(samples, dtype).values()), dtype=float)
    return values.reshape(len(values), -1).sum(axis=1)


def _along(mask, v):
    """A per-point mask broadcast over the entries of ``v`` (points first)."""
    return mask.reshape(mask.shape + (1,) * (np.ndim(v) - 1))


def entries_of(shape, sizes) -> int:
    """The number of entries of ``shape`` at the dims ``sizes`` (Python integers: a size
    such as 4**256 does not overflow)."""
    return int(np.prod([int(sp.sympify(d).subs(sizes)) for d in shape], dtype=object))


def _entries(derivation, sizes) -> int:
    """The entries one drawn point holds at ``sizes``: every symbol, and the largest
    result or value computed on the way."""
    results = [r.shape for parts in derivation.results.values() for r in parts.values()]
    symbols = sum(entries_of(s.shape, sizes) for s in derivation.spec.symbols)
    largest = max((entries_of(r, sizes) for r in results), default=1)
    return symbols + max(largest, _largest_intermediate(derivation.spec, sizes)[0])


def _largest_intermediate(spec, sizes) -> tuple:
    """(entries, expression) of the largest tensor operation the objective and its
    defines compute at ``sizes`` (pad(x, 10**9) of a 2-vector: 2·10⁹ entries, which no
    symbol or result shows); (0, None) where there is none. Each subexpression once:
    the walk is linear in the spec."""
    roots = [d.expr for d in spec.defines]
    roots += [e for e in (spec.objective, spec.output) if e is not None]
    seen, stack, best = set(), roots, (0, None)
    while stack:
        e = stack.pop()
        if not isinstance(e, sp.Basic) or e in seen:
            continue
        seen.add(e)
        # an elementwise operation too: a product of broadcast views, x[:, None, None,
        # None] * ... * x[None, None, None, :], is n⁴ entries (2.6e10 at n = 400) that no
        # tensor operation shows, and XLA ran it fused for past 150 s, where the alarm
        # cannot stop it
        if isinstance(e, ops.TensorOp) or (isinstance(e, sp.Expr) and e.args):
            try:
                n = entries_of(spec.algebra.shape(e), sizes)
            except ops.ShapeError:  # a part that has no shape of its own
                n = 0
            if n and n >= best[0]:  # on a tie the part inside: pad(x, 10**9), not its square
                best = (n, e)
        stack.extend(e.args)
    return best


def _too_many(spec, sizes):
    """A located error for a symbol too large to draw even at the smallest sizes (a
    literal size of 10**23, n * 100000000): the points would not fit in memory."""
    for decl in spec.symbols:
        n = entries_of(decl.shape, sizes)
        if n > VERIFY_MEMORY_ENTRIES:
            raise SpecError(
                f"'{decl.name}' has {n:.3g} entries even at the smallest sizes verification "
                f"can use, past its {VERIFY_MEMORY_ENTRIES:,} (every drawn point holds them): "
                "give it smaller sizes, or derive with --no-verify",
                spec.doc.loc("symbols", decl.name, "shape"),
            )
    n, largest = _largest_intermediate(spec, sizes)
    if n > VERIFY_MEMORY_ENTRIES:
        what = "objective" if spec.objective is not None else "output"
        raise SpecError(
            f"verification cannot run: {_short(ExprPrinter(spec.algebra.shape, spec.names).doprint(largest))} "
            f"in the {what} has {n:.3g} entries "
            "even at the smallest sizes verification can use, past its "
            f"{VERIFY_MEMORY_ENTRIES:,} (every drawn point computes it): make it smaller, "
            "or derive with --no-verify",
            spec.doc.loc(what),
        )
    raise SpecError(
        f"the results have more than {VERIFY_MEMORY_ENTRIES:,} entries even at the smallest "
        "sizes verification can use: derive with --no-verify",
        spec.doc.loc("derive") if "derive" in spec.doc.data else spec.doc.loc(),
    )


def _cost(spec, name: str) -> tuple:
    """How far from the objective ``name`` is first used (the number of defines after
    it), then its number of entries: the order of the explicit cross-checks."""
    decl = spec.symbol(name)
    first = next(
        (i for i, d in enumerate(spec.defines) if decl.symbol in d.expr.free_symbols),
        len(spec.defines),
    )
    return (len(spec.defines) - first, entries_of(decl.shape, spec.dim_values))


def explicit_check(
    derivation, kind, result, seed, dtype, rtol, atol, expanded=None, deadline=math.inf
) -> Check | None:
    """The sympy.diff cross-check at small sizes; where shrinking the dims one by one
    breaks a relation between them (a slice Z[:, 3*H:4*H] of a [B, F] matrix with
    F = 4 H), at the spec's own sizes (within the same entry budget)."""
    try:
        return _explicit_check(
            derivation, kind, result, seed, dtype, rtol, atol, EXPLICIT_MAX_SIZE, expanded, deadline
        )
    except (ValueError, IndexError):
        try:
            return _explicit_check(
                derivation, kind, result, seed, dtype, rtol, atol, None, expanded, deadline
            )
        except (ValueError, IndexError):
            return None


def _explicit_check(
    derivation, kind, result, seed, dtype, rtol, atol, limit, expanded=None, deadline=math.inf
) -> Check | None:
    """sympy.diff on explicit entries at small sizes against the matrix-form result, both
    evaluated in ``dtype``. Labels (``domain: {index: k}``) have no entries to
    differentiate: they enter the expansion as the integers drawn, so ``onehot`` and
    gathers expand to plain entries there. Every point uses the first point's labels (the
    autodiff check varies them): one expansion and one sympy.diff per result, not one per
    point. ``expanded`` caches the explicit objective across the results of one spec;
    ``deadline`` (``time.monotonic()``) is the spec's time budget, on top of the result's."""
    expanded = {} if expanded is None else expanded
    spec = derivation.spec
    if nesting(derivation.expanded_target()) > EXPLICIT_MAX_NESTING:
        return None
    # only dims that size a symbol shrink: the derived code reads those from the arrays,
    # and holds a dim used only as a number (k * sum(x**2)) at its spec value
    sizing = set().union(*(sp.Tuple(*s.shape).free_symbols for s in spec.symbols))
    small = {
        sym: val if limit is None or sym not in sizing else min(val, limit)
        for sym, val in spec.dim_values.items()
    }
    env = {}
    for decl in spec.symbols:
        sizes = tuple(int(d.subs(small)) for d in decl.shape)
        env[decl.symbol] = explicit.entry_symbols(decl.name, decl.symbol, sizes)
    env.update({sym: sp.Integer(v) for sym, v in small.items()})
    labels = [d for d in spec.symbols if d.domain == "index"]
    values_of = [d for d in spec.symbols if d.domain != "index"]
    wrt_entries = env[spec.symbol(result.wrt).symbol]
    # the second derivative's symbol: the same, or the other one of a joint block
    second_entries = env[spec.symbol(result.about[-1]).symbol]
    references: dict = {}  # the labels drawn -> the compiled explicit derivative

    def reference(point):
        key = tuple(tuple(np.asarray(point[d.name]).flat) for d in labels)
        if key not in references:
            at = dict(env)
            for d in labels:
                ints = np.asarray(point[d.name])
                at[d.symbol] = explicit.O(np.vectorize(sp.Integer, otypes=[object])(ints))
            stop = min(deadline, time.monotonic() + EXPLICIT_SECONDS_EACH)
            if (key, limit) not in expanded:
                try:
                    # expand checks its deadline between nodes; one SymPy call inside it
                    # (a determinant's multinomial expansion) can run for minutes, so the
                    # whole of it runs under the same deadline as a time limit too
                    expanded[key, limit] = within(
                        max(stop - time.monotonic(), 0.01),
                        explicit.expand,
                        derivation.expanded_target(),
                        at,
                        stop,
                    )
                except (TimeoutError, TimeLimit):
                    expanded[key, limit] = None  # past its budget: the other results skip it
                    raise TimeoutError("the explicit entries took longer than their budget")
            values = expanded[key, limit]
            if values is None:
                raise TimeoutError("the explicit entries took longer than their budget")
            n_out = (
                values.size * wrt_entries.size * (second_entries.size if kind == "hessian" else 1)
            )
            if n_out > EXPLICIT_MAX_ENTRIES:
                raise NotImplementedError("too many entries for the cross-check")
            try:
                left = max(stop - time.monotonic(), 0.01)
                entries = within(left, explicit.jacobian_entries, values, wrt_entries, stop)
                if kind == "hessian":
                    left = max(stop - time.monotonic(), 0.01)
                    entries = within(left, explicit.jacobian_entries, entries, second_entries, stop)
            except TimeLimit:
                raise TimeoutError("the explicit derivative took longer than its budget") from None
            flat = [s for d in values_of for s in explicit.O(env[d.symbol]).flat]
            references[key] = (codegen.lambdify(flat, list(entries.flat), "numpy"), entries.shape)
        return references[key]

    derived_fn = derivation.numeric_function(kind, (result_key(result),), backend="numpy")
    kinks = has_kinks(derivation.expanded_target())
    samples = as_dtype(sample_points(spec, EXPLICIT_MAX_POINTS, seed + 1, small, kinks), dtype)
    for d in labels:
        samples[d.name] = np.broadcast_to(samples[d.name][:1], samples[d.name].shape)
    expected, got = [], []
    for p in range(EXPLICIT_MAX_POINTS):
        point = {n: samples[n][p] for n in samples}
        try:
            ref, shape = reference(point)
        except (NotImplementedError, TimeoutError):
            return None
        flat = [v for d in values_of for v in np.asarray(point[d.name]).flat]
        # entries that are constants come back as Python numbers: the dtype's, like the rest
        with np.errstate(all="ignore"):  # overflowing points are left out below, with a note
            expected.append(np.asarray(ref(*flat), dtype=DTYPES[dtype]).reshape(shape))
        out = derived_fn(**point)
        got.append(out)
    sizes = ", ".join(f"{k}={v}" for k, v in small.items())
    # Explicit entries are evaluated as written, without the shifts that keep the derived
    # code finite (a softmax of scores masked with -1e9 along a whole row is 0/0 there):
    # points where that reference overflows check nothing; the autodiff check covers them.
    usable = [p for p, e in enumerate(expected) if np.isfinite(e).all()]
    if not usable:
        return None
    note = (
        f"{len(expected) - len(usable)} of {len(expected)} points left out: the explicit "
        "entries overflow there"
        if len(usable) < len(expected)
        else ""
    )
    return compare(
        kind,
        result_key(result),
        # "at n=3" where the spec has dims; a spec of scalars has no sizes to name
        f"sympy.diff on explicit entries{f' at {sizes}' if sizes else ''}",
        np.stack([got[p] for p in usable]),
        np.stack([expected[p] for p in usable]),
        rtol,
        atol,
        note=note,
    )
