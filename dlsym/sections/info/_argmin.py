"""``argmin(objective, q)`` (and ``argmax``): the minimizer (maximizer) of an information
quantity over a symbolic categorical ``q`` on the simplex, by a Lagrange multiplier for
``Σ_i q_i = 1``.

The objective is first reduced to its normal form (sums over outcomes); each sum is
differentiated term by term with respect to ``q_i``, the stationary point solved for
``q_i``, the multiplier fixed by the constraint (with the other distributions' own
normalization). A stationary point is a minimum only where the objective curves up, so
the diagonal second derivative's sign over the simplex's interior decides (``_CURVATURE``):
convex, the stationary point is the minimum; concave, it is the maximum (uniform for
``entropy(q)``: ``argmax``) and the minimum lies at a vertex, where no multiplier
condition holds: ``argmin`` is a located error; undecided, the stationary point is kept
and verification decides. Maximum likelihood of a categorical model is the case
``argmin(cross_entropy(data, q), q)``: ``q*_i = data_i``. The check minimizes the SciPy
reference of the objective (its negative for argmax) numerically over softmax logits from
several starts, the uniform point and one near each vertex, knowing nothing of the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.calculus._affine import roots
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _proof as proof
from dlsym.sections.info import _sym as isym
from dlsym.verify import Check

LAMBDA = sp.Symbol("lambda", real=True)
TOL = 1e-5  # a BFGS minimizer over logits is good to ~1e-7 here
# a start near vertex j: logits NEAR_VERTEX e_j (q_j ≈ 0.96 for k = 3), downhill of that
# vertex for an objective smallest there, which a start at the uniform point never sees
# when the uniform point is itself stationary (entropy's maximum)
NEAR_VERTEX = 4.0
MAX_VERTEX_STARTS = 8  # vertices spread over 0..k-1 beyond that: k BFGS runs per point cost


@dataclass(frozen=True)
class Minimizer:
    argmin: ip.ArgMin
    rows: tuple  # (lhs, relation, expr, reason)
    optimum: sp.Expr  # q*_i, with the generic index i
    text: str
    note: str = ""  # what the derivation left to verification


# (the curvature on the simplex, the sense) -> (relation of ∂²L/∂q_i² to 0, why the
# stationary point is the optimum); a pair missing here has no interior optimum: the
# stationary point is the opposite one (_no_interior_optimum)
_CURVATURE = {
    ("convex", "min"): (
        r"\ge",
        "for every $q_i$ in $(0, 1)$: convex on the simplex, so the stationary point is "
        "the minimum",
    ),
    ("concave", "max"): (
        r"\le",
        "for every $q_i$ in $(0, 1)$: concave on the simplex, so the stationary point is "
        "the maximum",
    ),
}
# sense -> (the optimum, the opposite one, where a function curved the other way has it)
_WORDS = {
    "min": ("minimum", "maximum", "a concave function is smallest", "<= 0"),
    "max": ("maximum", "minimum", "a convex function is largest", ">= 0"),
}
# each symbol of a bounded domain written as a free positive parameter t spanning its
# interior, so that SymPy's sign rules see both bounds: 1 - a for a in (0, 1) is
# t/(1 + t) > 0, which the assumption a > 0 alone leaves open
_INTERIOR = {
    "positive": lambda t: t,
    "nonnegative": lambda t: t,
    "unit_interval": lambda t: 1 / (1 + t),
}


def _gradient(f, q, i):
    """(d f / d q_i, d^2 f / d q_i^2) of a normal form made of sums over i."""
    grad, hess = sp.Integer(0), sp.Integer(0)
    for t in sp.Add.make_args(sp.expand(f)):
        if not t.has(q):
            continue
        sums = [s for s in t.atoms(sp.Sum) if s.has(q)]
        if len(sums) != 1 or sums[0].limits[0][0] != i or len(sums[0].limits) != 1:
            return None, None
        c = t / sums[0]
        if c.has(q):
            return None, None
        g = sums[0].function
        grad += c * sp.diff(g, q[i])
        hess += c * sp.diff(g, q[i], 2)
    return grad, hess


def curvature(ctx, decls, hess) -> tuple[str, bool]:
    """("convex", strict), ("concave", strict) or ("", False): the sign of the diagonal
    second derivative for every probability in (0, 1) and every admissible value of the
    symbols. The Hessian of a sum of functions of one q_i each is diagonal, so one sign
    for every entry is convexity (concavity) on the whole simplex."""
    bases = {getattr(d, "base", None) for d in ctx.dists.values()} - {None}
    interior = {
        p: 1 / (1 + sp.Dummy("t", positive=True))  # a probability, in (0, 1)
        for p in hess.atoms(sp.Indexed)
        if p.base in bases
    }
    interior.update(
        {
            d.symbol: _INTERIOR[d.domain](sp.Dummy("t", positive=True))
            for d in decls
            if d.domain in _INTERIOR
        }
    )
    e = sp.factor(sp.together(hess.xreplace(interior)))
    if e.is_nonnegative:
        return "convex", bool(e.is_positive)
    if e.is_nonpositive:
        return "concave", bool(e.is_negative)
    return "", False


def derive(ctx, am: ip.ArgMin, decls=()) -> Minimizer:
    d = ctx.dists[am.dist]
    q, i = d.base, isym.I
    chain = proof.chain(ctx, am.objective)
    grad, hess = _gradient(chain.end, q, i)
    what = _WORDS[am.sense][0]
    fail = SpecError(
        f"arg{what[:3]}: no closed-form {what[:3]}imizer found for {am.text} (the objective "
        "must be a sum over the outcomes of q)",
        am.loc,
    )
    if grad is None:
        raise fail
    z = sp.Symbol("z", positive=True)
    # sympy.solve raises on equations it has no method for (z log z with log z: the
    # focal loss), or runs long: both mean no closed form here
    sols = roots((grad + LAMBDA).subs(q[i], z), z)
    if sols is None or len(sols) != 1:
        raise SpecError(
            f"arg{what[:3]}: no closed-form {what[:3]}imizer found for {am.text}: sympy.solve "
            "finds no single root of the stationarity condition dL/dq_i = 0",
            am.loc,
        )
    sol = sols[0].subs(z, q[i])
    total = isym.marginalization(isym.linearity(sp.Sum(sol, (i, 1, d.k))))
    lams = roots(total - 1, LAMBDA)
    if lams is None or len(lams) != 1:
        raise fail
    optimum = sp.simplify(sol.subs(LAMBDA, lams[0]))
    k = d.k
    lagr = ctx.scalar(am.objective) + LAMBDA * (sp.Sum(q[i], (i, 1, k)) - 1)
    rows = [
        (
            (r"\mathcal{L}\left(q, \lambda\right)", "L(q, λ)"),
            "=",
            lagr,
            "a multiplier for the constraint $\\sum_i q_i = 1$",
        ),
        (
            None,
            "=",
            chain.end + LAMBDA * (sp.Sum(q[i], (i, 1, k)) - 1),
            "the objective's normal form",
        ),
        (
            (r"\frac{\partial \mathcal{L}}{\partial q_{i}}", "∂L/∂q_i"),
            "=",
            grad + LAMBDA,
            "differentiate each sum term by term",
        ),
        (None, "=", sp.Integer(0), "stationary point"),
        ((r"q_{i}", "q_i"), "=", sol, "solve for $q_i$"),
        (
            (r"\lambda", "λ"),
            "=",
            lams[0],
            "from $\\sum_i q_i = 1$ and the normalization of the other distributions",
        ),
        ((r"q^{*}_{i}", "q*_i"), "=", optimum, "substitute the multiplier"),
    ]
    second = ((r"\frac{\partial^{2} \mathcal{L}}{\partial q_{i}^{2}}", "∂²L/∂q_i²"), "=", hess)
    shape, strict = curvature(ctx, decls, hess)
    if shape and (shape, am.sense) not in _CURVATURE:
        raise _no_interior_optimum(am, shape, hess, optimum)
    if not shape:
        note = (
            f"{am.text}: the sign of ∂²L/∂q_i² = {_plain(hess)} on the simplex is not "
            f"decided symbolically, so the stationary point is not proven a {what}; "
            f"verification compares it with numeric {what}s from several starts"
        )
        rows.append((*second, "second derivative; its sign is not decided: see the note"))
        return Minimizer(am, tuple(rows), optimum, am.text, note)
    relation, why = _CURVATURE[shape, am.sense]
    rows += [
        (*second, "second derivative; the Hessian is diagonal"),
        (None, {r"\ge": ">", r"\le": "<"}[relation] if strict else relation, sp.Integer(0), why),
    ]
    return Minimizer(am, tuple(rows), optimum, am.text)


def _no_interior_optimum(am, shape, hess, optimum) -> SpecError:
    """A concave objective's stationary point is its maximum; its minimum over the
    simplex is at a vertex (a one-hot q), outside the interior where the multiplier
    condition holds, and several vertices may tie (every one-hot q has entropy 0). The
    same, turned over, for the maximum of a convex one."""
    what, other, where, sign = _WORDS[am.sense]
    return SpecError(
        f"{am.text}: no interior {what}: the objective is {shape} on the simplex "
        f"(∂²L/∂q_i² = {_plain(hess)} {sign} for every q_i in (0, 1)), so its stationary "
        f"point q*_i = {_plain(optimum)} is its {other} (arg{other[:3]} gives it); {where} "
        "at a vertex of the simplex (a one-hot q), where no multiplier condition holds, "
        "and dlsym gives no closed form for it",
        am.loc,
    )


def _plain(e) -> str:
    """``e`` for a message, its probabilities written q_i as in the steps (not q[i])."""
    cells = {c: sp.Symbol(f"{c.base.label}_{c.indices[0]}") for c in e.atoms(sp.Indexed)}
    return sp.sstr(e.xreplace(cells))


def _starts(k: int) -> list[np.ndarray]:
    """Softmax logits to start BFGS from: the uniform point, and near each vertex (at
    most MAX_VERTEX_STARTS of them, spread over the outcomes)."""
    vertices = sorted({int(j) for j in np.linspace(0, k - 1, min(k, MAX_VERTEX_STARTS))})
    return [np.zeros(k)] + [NEAR_VERTEX * np.eye(k)[j] for j in vertices]


def check(ctx, m: Minimizer, ref, samples) -> Check:
    """q* from the formula against the best of scipy.optimize.minimize's minima of the
    reference objective from several starts: a start at the uniform point alone stops at
    any stationary point there, a maximum included, and would agree with a derivation
    that mistook it for the minimum."""
    from scipy.optimize import minimize
    from scipy.special import softmax

    k = ctx.dists[m.argmin.dist].k
    terms = [m.optimum.subs(isym.I, j) for j in range(1, k + 1)]
    sign = {"min": 1.0, "max": -1.0}[m.argmin.sense]  # argmax minimizes the negative
    errs, got_all, exp_all, lower = [], [], [], None
    for pt in samples:

        def objective(theta, pt=pt):
            trial = dict(pt)
            trial[m.argmin.dist] = softmax(theta)
            return sign * ref(m.argmin.objective, trial)

        runs = [
            minimize(objective, x0, method="BFGS", options={"gtol": 1e-10}) for x0 in _starts(k)
        ]
        best = min(runs, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf)
        expected = softmax(best.x)
        got = np.array([_value(t, pt) for t in terms])
        at_got = sign * ref(m.argmin.objective, {**pt, m.argmin.dist: got})
        # the outcomes q may put mass on with the objective finite: those whose vertex
        # gives a finite value (KL(q‖p) at q = e_j is −log p_j)
        face = np.array(
            [
                np.isfinite(ref(m.argmin.objective, {**dict(pt), m.argmin.dist: np.eye(k)[j]}))
                for j in range(k)
            ]
        )
        if not np.isfinite(best.fun) and 0 < face.sum() < k:
            # KL(q‖p) with a zero in p is +inf wherever q puts mass there, so at every
            # interior point logits reach (it was "disagrees", exit 1, for q* = p): the
            # search on the face of the outcomes it may weigh, the others 0
            def on_face(theta, pt=pt, face=face):
                q = np.zeros(k)
                q[face] = softmax(theta)
                return sign * ref(m.argmin.objective, {**dict(pt), m.argmin.dist: q})

            runs = [
                minimize(on_face, x0, method="BFGS", options={"gtol": 1e-10})
                for x0 in _starts(int(face.sum()))
            ]
            best = min(runs, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf)
            expected = np.zeros(k)
            expected[face] = softmax(best.x)
        # for the note only: a numeric optimum better than q*, beyond rounding
        if lower is None and np.isfinite(at_got) and best.fun < at_got - 1e-9 * (1 + abs(at_got)):
            lower = (sign * best.fun, sign * at_got)
        errs.append(np.abs(got - expected))
        got_all.append(got)
        exp_all.append(expected)
    err = np.concatenate(errs)
    ok = bool((err <= TOL).all())
    what = _WORDS[m.argmin.sense][0]
    note = ""
    if not ok:
        note = f"the {what[:3]}imizer disagrees with the numeric {what}"
        if lower is not None:
            note += f" (the objective is {lower[0]:.6g} there, {lower[1]:.6g} at q*)"
    return Check(
        f"arg{what[:3]}",
        m.text,
        f"scipy.optimize.minimize{' of its negative' if sign < 0 else ''} over softmax "
        f"logits, the best of {len(_starts(k))} starts (to {TOL:g})",
        len(samples),
        float(err.max(initial=0.0)),
        float((err / np.maximum(np.abs(np.concatenate(exp_all)), 1e-300)).max()),
        ok,
        note=note,
        # q* by SymPy's arithmetic and SciPy's minimizer: float64 whatever the dtype
        dtype="float64",
        reference_dtype="float64",
    )


def _value(t, pt) -> float:
    cells = {c: sp.Float(pt[str(c.base.label)][int(c.indices[0]) - 1]) for c in t.atoms(sp.Indexed)}
    return float(t.xreplace(cells).subs(pt["symbols"]))
