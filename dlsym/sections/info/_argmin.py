"""``argmin(objective, q)``: the minimizer of an information quantity over a symbolic
categorical ``q`` on the simplex, by a Lagrange multiplier for ``Σ_i q_i = 1``.

The objective is first reduced to its normal form (sums over outcomes); each sum is
differentiated term by term with respect to ``q_i``, the stationary point solved for
``q_i``, the multiplier fixed by the constraint (with the other distributions' own
normalization), and convexity read off the diagonal second derivative. Maximum
likelihood of a categorical model is the case ``argmin(cross_entropy(data, q), q)``:
``q*_i = data_i``. The check minimizes the SciPy reference of the objective numerically
(over softmax logits), knowing nothing of the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _proof as proof
from dlsym.sections.info import _sym as isym
from dlsym.verify import Check

LAMBDA = sp.Symbol("lambda", real=True)
TOL = 1e-5  # a BFGS minimizer over logits is good to ~1e-7 here


@dataclass(frozen=True)
class Minimizer:
    argmin: ip.ArgMin
    rows: tuple  # (lhs, relation, expr, reason)
    optimum: sp.Expr  # q*_i, with the generic index i
    text: str


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


def derive(ctx, am: ip.ArgMin) -> Minimizer:
    d = ctx.dists[am.dist]
    q, i = d.base, isym.I
    chain = proof.chain(ctx, am.objective)
    grad, hess = _gradient(chain.end, q, i)
    fail = SpecError(
        f"argmin: no closed-form minimizer found for {am.text} (the objective "
        "must be a sum over the outcomes of q)",
        am.loc,
    )
    if grad is None:
        raise fail
    z = sp.Symbol("z", positive=True)
    sols = sp.solve(sp.Eq((grad + LAMBDA).subs(q[i], z), 0), z)
    if len(sols) != 1:
        raise fail
    sol = sols[0].subs(z, q[i])
    total = isym.marginalization(isym.linearity(sp.Sum(sol, (i, 1, d.k))))
    lams = sp.solve(sp.Eq(total, 1), LAMBDA)
    if len(lams) != 1:
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
    if hess.subs(q[i], optimum).is_positive or hess.is_positive:
        rows += [
            (
                (r"\frac{\partial^{2} \mathcal{L}}{\partial q_{i}^{2}}", "∂²L/∂q_i²"),
                "=",
                hess,
                "second derivative; the Hessian is diagonal",
            ),
            (
                None,
                ">",
                sp.Integer(0),
                "convex on the simplex: the stationary point is the minimum",
            ),
        ]
    return Minimizer(am, tuple(rows), optimum, am.text)


def check(ctx, m: Minimizer, ref, samples) -> Check:
    """q* from the formula against scipy.optimize.minimize of the reference objective."""
    from scipy.optimize import minimize
    from scipy.special import softmax

    k = ctx.dists[m.argmin.dist].k
    terms = [m.optimum.subs(isym.I, j) for j in range(1, k + 1)]
    errs, got_all, exp_all = [], [], []
    for pt in samples:

        def objective(theta, pt=pt):
            trial = dict(pt)
            trial[m.argmin.dist] = softmax(theta)
            return ref(m.argmin.objective, trial)

        res = minimize(objective, np.zeros(k), method="BFGS", options={"gtol": 1e-10})
        expected = softmax(res.x)
        got = np.array([_value(t, pt) for t in terms])
        errs.append(np.abs(got - expected))
        got_all.append(got)
        exp_all.append(expected)
    err = np.concatenate(errs)
    ok = bool((err <= TOL).all())
    return Check(
        "argmin",
        m.text,
        f"scipy.optimize.minimize over softmax logits (to {TOL:g})",
        len(samples),
        float(err.max(initial=0.0)),
        float((err / np.maximum(np.abs(np.concatenate(exp_all)), 1e-300)).max()),
        ok,
        note="" if ok else "the minimizer disagrees with the numeric minimum",
        # q* by SymPy's arithmetic and SciPy's minimizer: float64 whatever the dtype
        dtype="float64",
        reference_dtype="float64",
    )


def _value(t, pt) -> float:
    cells = {c: sp.Float(pt[str(c.base.label)][int(c.indices[0]) - 1]) for c in t.atoms(sp.Indexed)}
    return float(t.xreplace(cells).subs(pt["symbols"]))
