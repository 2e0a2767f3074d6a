"""Proofs of signs: a scalar that is >= 0 for every admissible value of its symbols, and a
matrix that is positive semidefinite as a nonnegative combination of terms that are PSD
by construction (I, an spd symbol, Aᵀ A, Aᵀ diag(d) A with d >= 0). The convexity of a
calculus objective (its Hessian PSD, ``_second_order.convexity``) and the KKT solvers
(a Lagrangian convex in its variable, ``sections/constrained``) both ask.

A scalar's sign comes from SymPy's assumptions (the domains: a positive symbol is
positive), from the rules they leave open (even powers, products and sums of
nonnegatives), and from interval bounds: each elementwise function is replaced by its
range (sigmoid by [0, 1]) and the rest evaluated with SymPy's ``AccumBounds``, so
``p ⊙ (1 − p)`` with ``p = sigmoid(X w)`` is >= 0. Every rule is sufficient, none
necessary: not proven is not a counterexample."""

from __future__ import annotations

import functools

import sympy as sp

from dlsym.calculus._affine import chain_product, product_chain
from dlsym.calculus._exists import at_corners
from dlsym.expr import _elementwise as elementwise
from dlsym.expr import _ops as ops

NONNEGATIVE_DOMAINS = ("positive", "nonnegative", "unit_interval", "simplex")

# the range of each elementwise function, closed (a sufficient bound)
_RANGES = {
    elementwise.sigmoid: (0, 1),
    elementwise.softplus: (0, sp.oo),
    elementwise.relu: (0, sp.oo),
    sp.exp: (0, sp.oo),
    sp.tanh: (-1, 1),
    sp.Abs: (0, sp.oo),
    # bounded whatever their argument: sin x + 0.6 x² has f'' = 1.2 − sin x >= 0.2
    sp.sin: (-1, 1),
    sp.cos: (-1, 1),
    sp.erf: (-1, 1),
    sp.atan: (-sp.pi / 2, sp.pi / 2),
}
# the range of a symbol of each domain, where its assumptions do not say it already
_DOMAIN_RANGES = {"unit_interval": (0, 1), "simplex": (0, 1), "onehot": (0, 1)}


def provably_nonnegative(spec, c) -> bool:
    """A scalar that is >= 0 wherever it is defined, for every admissible value of its
    symbols (lambda >= 0, a positive domain > 0): by the signs of its factors, or of its
    terms as written (factoring (q + r − a²r)² + 4a²qr gives two factors of no known
    sign, a sum of two nonnegative terms)."""
    signed = _quadratic_forms_held(spec, c).xreplace(signed_symbols(spec))
    if _sign_nonnegative(sp.factor(signed)) or _sign_nonnegative(signed):
        return True
    if _bounded_nonnegative(spec, c):
        return True
    tangent = _below_tangents(c)
    if tangent is not None and provably_nonnegative(spec, tangent):
        return True
    # affine in a probability π: p π/d² + q (1 − π)/(1 − d)² is >= 0 at π = 0 and 1
    unit = frozenset(d.symbol for d in spec.symbols if d.domain == "unit_interval")
    corners = at_corners(c, unit)
    return len(corners) > 1 and all(provably_nonnegative(spec, x) for x in corners)


def _below_tangents(c):
    """``c`` with each term ``k exp(u)`` (k >= 0) lowered to ``k (1 + u)``: eˣ >= 1 + x for
    every real x, so ``c`` is >= the result, which has one exponential fewer. eˣ − x (the
    second derivative of eˣ − x³/6) has no interval proof, its tangent bound 1 is one.
    None where no term is such a multiple."""
    if not isinstance(c, sp.Add):
        return None
    lowered = [_tangent_term(t) for t in c.args]
    if all(low is None for low in lowered):
        return None
    return sp.Add(*[t if low is None else low for t, low in zip(c.args, lowered)])


def _tangent_term(t):
    k, e = t.as_independent(sp.exp, as_Add=False)
    if not isinstance(e, sp.exp) or not _sign_nonnegative(k):
        return None
    return k * (1 + e.args[0])


def signed_symbols(spec) -> dict:
    """The spec's symbols of a nonnegative domain -> Dummies that carry its sign, for
    SymPy's assumptions to decide with."""
    # positive=False would mean "not positive", i.e. zero: give only what the domain says
    return {
        d.symbol: sp.Dummy(
            d.name, **({"positive": True} if d.domain == "positive" else {"nonnegative": True})
        )
        for d in spec.symbols
        if d.domain in NONNEGATIVE_DOMAINS
    }


def psd_quadratic_form(spec, e):
    """g where ``e`` is the scalar gᵀ M g with M a product of matrices that is provably
    PSD, or g @ g (‖g‖²); else None. The sign rules (a quadratic form is >= 0) and the
    composition rules (one of an affine g is convex) read it alike."""
    if not isinstance(e, ops.matmul):
        return None
    try:  # the sign rules meet products of symbols the spec does not know (Δ, t)
        if spec.algebra.shape(e) != ():
            return None
    except ops.ShapeError:
        return None
    chain = product_chain(e)
    first, last, middle = chain[0], chain[-1], chain[1:-1]
    first = first.args[0] if isinstance(first, ops.transpose) else first
    if first != last:
        return None
    if middle:
        try:
            m = chain_product(spec.algebra, middle)
        except ops.ShapeError:  # a scalar in the chain: no matrix between the g's
            return None
        if psd_terms(spec, m) is None:
            return None
    return last


def _quadratic_forms_held(spec, c):
    """``c`` with each quadratic form gᵀ M g of a provably PSD M as a nonnegative
    Dummy: the Kalman gain's Hessian 2 (r + hᵀ P h) I, P spd, was no proof."""
    held = {
        m: sp.Dummy("q", nonnegative=True)
        for m in c.atoms(ops.matmul)
        if psd_quadratic_form(spec, m) is not None
    }
    return c.xreplace(held) if held else c


def _sign_nonnegative(e) -> bool:
    """SymPy's assumptions, plus the rules they leave open: an even power of a real base
    (1/(alpha + x)**2 is >= 0 where defined), a real power of a nonnegative base, products
    and sums of nonnegatives, and the sum or mean of nonnegative entries."""
    if e.is_nonnegative:
        return True
    if isinstance(e, sp.Pow) and e.exp.is_integer and e.exp.is_even and e.base.is_real:
        return True
    if isinstance(e, sp.Pow) and e.exp.is_real and _sign_nonnegative(e.base):
        return True  # 1/sum(x²) and √u of a nonnegative u, where defined
    if isinstance(e, (sp.Mul, sp.Add)):
        return all(_sign_nonnegative(a) for a in e.args)
    # a sum or mean of nonnegative entries: sum(x²)
    return isinstance(e, (ops.tsum, ops.tmean)) and _sign_nonnegative(e.args[0])


class _Unbounded(Exception):
    """A tensor operation outside every elementwise function: no interval for it."""


def _bounded_nonnegative(spec, c) -> bool:
    ranges = {
        d.symbol: sp.AccumBounds(*_DOMAIN_RANGES[d.domain])
        for d in spec.symbols
        if d.domain in _DOMAIN_RANGES
    }
    try:
        bound = _bounds(c, ranges)
    except (_Unbounded, TypeError, ValueError):
        return False
    low = _lower(bound)
    return bool(low.is_nonnegative) or (low.is_number and bool(low >= 0))


def _bounds(e, ranges):
    """``e`` with each elementwise function replaced by its range: an AccumBounds."""
    if e in ranges:
        return ranges[e]
    if type(e) in _RANGES:
        return sp.AccumBounds(*_RANGES[type(e)])
    if not e.args:
        return e
    if isinstance(e, sp.Pow) and e.exp.is_integer and e.exp.is_even:
        try:  # an even power is >= 0 whatever its base's range, known or not
            return _bounds(e.base, ranges) ** e.exp
        except _Unbounded:
            return sp.AccumBounds(0, sp.oo)
    if isinstance(e, ops.tsum) and len(e.args) == 1:  # a sum of nonnegative entries
        if _lower(_bounds(e.args[0], ranges)).is_nonnegative:
            return sp.AccumBounds(0, sp.oo)
        raise _Unbounded
    if isinstance(e, ops.TensorOp):
        raise _Unbounded
    return e.func(*[_bounds(a, ranges) for a in e.args])


def _lower(bound):
    return bound.min if isinstance(bound, sp.AccumBounds) else bound


def _gram(spec, e) -> str | None:
    """Aᵀ A, Aᵀ S A (S an spd symbol) or Aᵀ diag(d) A with d >= 0: its name, or None.
    A Aᵀ (and A S Aᵀ ...) too: it is Bᵀ B of B = Aᵀ."""
    f = product_chain(e)
    if len(f) < 2:
        return None
    left = isinstance(f[0], ops.transpose) and f[0].args[0] == f[-1]
    right = isinstance(f[-1], ops.transpose) and f[-1].args[0] == f[0]
    if not (left or right):
        return None
    middle = f[1:-1]
    if not middle:
        return r"$A^\top A$"
    if len(middle) == 1 and middle[0] in spec.algebra.symmetric:
        return r"$A^\top S A$ ($S$ spd)"
    if (
        len(middle) == 1
        and isinstance(middle[0], ops.diag)
        and provably_nonnegative(spec, middle[0].args[0])
    ):
        return r"$A^\top \mathrm{diag}(d) A$ ($d \geq 0$)"
    if len(middle) == 1 and psd_terms(spec, middle[0]) is not None:
        # Hᵀ R⁻¹ H of the information filter: a congruence keeps M >= 0
        return r"$A^\top M A$ ($M$ positive semidefinite)"
    return None


def _positive_definite(spec, m) -> bool:
    """m > 0: an spd symbol, c I with c > 0, or a sum of positive semidefinite terms of
    which one is positive definite (P⁻¹ + Hᵀ R⁻¹ H)."""
    alg = spec.algebra
    if m in alg.symmetric:
        return True
    if isinstance(m, sp.Add):
        if any(psd_terms(spec, t) is None for t in m.args):
            return False
        return any(_positive_definite(spec, t) for t in m.args)
    c, rest = alg.split_scalar(m)
    if c != 1:
        return bool(sp.sympify(c).is_positive) and _positive_definite(spec, rest)
    if isinstance(m, ops.inv):
        return _positive_definite(spec, m.args[0])
    return isinstance(m, ops.eye)


def _inverse_of_positive_definite(spec, e) -> str | None:
    """S⁻¹ of a positive definite S (a prior's precision P⁻¹, R⁻¹): positive definite."""
    if isinstance(e, ops.inv) and _positive_definite(spec, e.args[0]):
        return r"$S^{-1}$ ($S$ positive definite)"
    return None


def _nonnegative_diagonal(spec, e) -> str | None:
    """diag(d) with d >= 0, a product of diagonals diag(a) diag(b) as diag(a ⊙ b)
    (|x|³'s 6 diag(x) diag(sign(x)))."""
    f = product_chain(e)
    if not f or not all(isinstance(m, ops.diag) for m in f):
        return None
    d = sp.Mul(*[m.args[0] for m in f])
    if provably_nonnegative(spec, _signs_as_abs(d)):
        return r"$\mathrm{diag}(d)$ ($d \geq 0$)"
    return None


def _signs_as_abs(e):
    """u sign(u) as |u| (the entries of |x|³'s Hessian)."""
    if not isinstance(e, sp.Mul):
        return e
    rest = list(e.args)
    for sg in [a for a in e.args if isinstance(a, sp.sign)]:
        if sg.args[0] in rest:
            rest.remove(sg)
            rest.remove(sg.args[0])
            rest.append(sp.Abs(sg.args[0]))
    return sp.Mul(*rest)


def _diagonals_merged(alg, terms) -> list:
    """The terms with their diagonal ones added into one, diag(Σ cᵢ dᵢ): diag(eˣ) − diag(x)
    is PSD as diag(eˣ − x), though −diag(x) is not."""
    diagonal, rest, diags = [], [], 0
    for t in terms:
        c, m = alg.split_scalar(t)
        if isinstance(m, ops.diag) and alg.shape(c) == ():
            diagonal.append(c * m.args[0])
            diags += 1
        elif isinstance(m, ops.eye) and alg.shape(c) == ():  # c I = diag(c 1)
            diagonal.append(c)
        else:
            rest.append(t)
    if len(diagonal) < 2 or not diags:  # nothing to add, or identities only
        return list(terms)
    return [ops.diag(sp.Add(*diagonal)), *rest]


# P is PSD when it is a nonnegative combination of terms that are PSD by construction
_PSD_TERMS = (
    lambda spec, e: "$I$" if isinstance(e, ops.eye) else None,
    lambda spec, e: "an spd symbol" if e in spec.algebra.symmetric else None,
    _gram,
    _nonnegative_diagonal,
    _inverse_of_positive_definite,
)


def psd_terms(spec, P) -> list[str] | None:
    """The PSD terms P is a nonnegative combination of (their kinds, in order, as prose
    with $...$ math), or None where that is not provable (e.g. (2 lam - 2) I)."""
    alg = spec.algebra
    if alg.shape(P) == ():
        return ["a nonnegative scalar"] if provably_nonnegative(spec, P) else None
    if isinstance(P, sp.Add):
        out: list = []
        for t in _diagonals_merged(alg, P.args):
            kinds = psd_terms(spec, t)
            if kinds is None:
                return None
            out += [k for k in kinds if k not in out]
        return out
    c, rest = alg.split_scalar(P)
    if c != 1:
        return psd_terms(spec, rest) if provably_nonnegative(spec, c) else None
    for test in _PSD_TERMS:
        kind = test(spec, P)
        if kind is not None:
            return [kind]
    return None


def provably_psd(spec, P) -> bool:
    """P >= 0 (positive semidefinite) for every admissible value of its symbols."""
    return psd_terms(spec, P) is not None


def psd_action(spec, alg, action, delta) -> list[str] | None:
    """The kinds of PSD terms of the Hessian of a matrix variable, given as its action
    on a direction Δ (``2 A Δ``, ``2 Δ S``): each term c M Δ N with c >= 0 and M, N
    PSD (or absent) is, since ⟨Δ, M Δ N⟩ = ‖M^½ Δ N^½‖² >= 0 (N ⊗ M is PSD). None
    where a term is no such product (Δᵀ in it) or is not provably PSD. ``alg``: an
    algebra that knows Δ."""
    kinds: list = []
    for term in sp.Add.make_args(action):
        c, rest = alg.split_scalar(term)
        chain = product_chain(rest)
        if chain.count(delta) != 1 or not provably_nonnegative(spec, c):
            return None
        i = chain.index(delta)
        sides = [side for side in (chain[:i], chain[i + 1 :]) if side]
        for side in sides:
            found = psd_terms(spec, functools.reduce(ops.matmul, side))
            if found is None:
                return None
            kinds += [k for k in found if k not in kinds]
        if not sides and "$I$" not in kinds:  # c Δ: the identity's action
            kinds.append("$I$")
    return kinds or None


def constant_form_matrix(q, directions) -> sp.Matrix | None:
    """The matrix H of a quadratic form q = Σᵢⱼ Hᵢⱼ dᵢ dⱼ in the scalar ``directions``
    whose coefficients are rational numbers (the second derivative along a joint
    direction of a quadratic objective in scalars), or None: then its PSD-ness is a
    question of exact arithmetic, answered either way, where the proof rules and a
    numeric search over 60 scalars ran out of time."""
    if not q.free_symbols <= set(directions):
        return None
    try:
        poly = sp.Poly(q, *directions)
    except sp.PolynomialError:
        return None
    n = len(directions)
    H = sp.zeros(n, n)
    for exponents, c in poly.terms():
        if sum(exponents) != 2 or not c.is_Rational:
            return None
        i, j = (k for k, e in enumerate(exponents) for _ in range(e))
        # the coefficient of dᵢ² is Hᵢᵢ, that of dᵢ dⱼ (i ≠ j) is Hᵢⱼ + Hⱼᵢ
        H[i, j] = H[j, i] = c if i == j else c / 2
    return H
