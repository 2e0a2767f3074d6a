"""The optimal discriminator of a GAN, derived: for a fixed generator the objective
V(D) = Σ_i p_i log D_i + g_i log(1 - D_i) separates over outcomes, each term is concave
in D_i, and its stationary point is D*_i = p_i / (p_i + g_i) (Goodfellow et al., 2014,
proposition 1). ``gan_value`` is V at that D*; this module shows where D* comes from
and checks it against a numeric maximization that does not know the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _sym as isym
from dlsym.verify import Check

D = sp.IndexedBase("D", positive=True)


@dataclass(frozen=True)
class Discriminator:
    info: ip.Info
    rows: tuple  # (lhs, relation, expr, reason)
    optimum: sp.Expr  # D*_i in terms of the two distributions' p_i, g_i
    text: str


def gan_calls(tree, out=None) -> list:
    out = [] if out is None else out
    if isinstance(tree, ip.Op):
        for a in tree.args:
            gan_calls(a, out)
    elif isinstance(tree, ip.Info) and tree.fn == "gan_value":
        if all(tree.args != o.args for o in out):
            out.append(tree)
    return out


def derive(ctx, info: ip.Info) -> Discriminator:
    a, b = info.args
    i = isym.I
    p, g = isym.at(ctx, a, i), isym.at(ctx, b, i)
    k = isym.space(ctx, a)[1]
    value = sp.Sum(p * sp.log(D[i]) + g * sp.log(1 - D[i]), (i, 1, k))
    term = p * sp.log(D[i]) + g * sp.log(1 - D[i])
    grad = sp.diff(term, D[i])
    (optimum,) = sp.solve(sp.Eq(grad, 0), D[i])
    second = sp.diff(term, D[i], 2)
    assert sp.simplify(optimum - p / (p + g)) == 0
    dvi = (r"\frac{\partial V}{\partial D_{i}}", "∂V/∂D_i")
    d2vi = (r"\frac{\partial^{2} V}{\partial D_{i}^{2}}", "∂²V/∂D_i²")
    dstar = (r"D^{*}_{i}", "D*_i")
    rows = (
        ((r"V(D)", "V(D)"), "=", value, "the objective for a fixed generator"),
        (dvi, "=", grad, "each $D_i$ appears in one term only"),
        (None, "=", sp.Integer(0), "stationary point"),
        (dstar, "=", optimum, "solve for $D_i$"),
        (d2vi, "=", second, "second derivative"),
        (None, "<", sp.Integer(0), "concave in $D_i$: the stationary point is the maximum"),
    )
    return Discriminator(info, rows, optimum, f"optimal discriminator D*({info.text[10:-1]})")


def check(ctx, disc: Discriminator, ref, samples) -> Check:
    """D* from the formula against a bounded numeric maximization of each term."""
    from scipy.optimize import minimize_scalar

    a, b = disc.info.args
    k = isym.space(ctx, a)[1]
    terms = [disc.optimum.subs(isym.I, j) for j in range(1, k + 1)]
    got, expected = [], []
    for pt in samples:
        pv, gv = ref.dist(a, pt), ref.dist(b, pt)
        for j, (pj, gj) in enumerate(zip(pv, gv)):
            res = minimize_scalar(
                lambda d: -(pj * np.log(d) + gj * np.log1p(-d)),
                bounds=(1e-12, 1 - 1e-12),
                method="bounded",
                options={"xatol": 1e-12},
            )
            expected.append(res.x)
            cells = {
                c: pt[str(c.base.label)][int(c.indices[0]) - 1] for c in terms[j].atoms(sp.Indexed)
            }
            got.append(float(terms[j].xreplace(cells)))
    got, expected = np.array(got), np.array(expected)
    err = np.abs(got - expected)
    tol = 1e-6  # the numeric argmax of a flat maximum is good to ~1e-8
    ok = bool((err <= tol).all())
    return Check(
        "optimal discriminator",
        disc.text[len("optimal discriminator ") :],
        "scipy minimize_scalar argmax (to 1e-6)",
        len(samples),
        float(err.max(initial=0.0)),
        float((err / np.maximum(np.abs(expected), 1e-300)).max(initial=0.0)),
        ok,
        note="" if ok else "D* disagrees with the numeric maximizer",
        # D* by SymPy's arithmetic and SciPy's search: float64 whatever the dtype
        dtype="float64",
        reference_dtype="float64",
    )
