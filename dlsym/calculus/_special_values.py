"""Closed forms at the values of their symbols where they read 0/0.

A closed form found for symbolic parameters (a recurrence's rsolve answer, a sum's
generic piece, a moment's integral) divides by quantities that vanish at some
admissible values: x_t = rᵗ x₀ + c (1 − rᵗ)/(1 − r) at r = 1, where the recurrence
is x₀ + c t. Those values are where branches with the limit there; a limit not found
is said as a condition the result holds under.
"""

from __future__ import annotations

import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.calculus._affine import rank_at_most, size_at_dims
from dlsym.calculus._convexity import provably_nonnegative, signed_symbols
from dlsym.calculus._exists import IN_DOMAIN
from dlsym.calculus._simplify import positive_first
from dlsym.expr import _ops as ops
from dlsym.expr._piecewise import TAYLOR_DEGREE_PAST_ORDER, vanishes, where

# Var[exp(k u)]'s limit at k = 0 takes SymPy 2.2 s on an idle laptop core: 3 s gave
# the branch or not by the machine's load (a test failed beside two other jobs)
SECONDS_FOR_A_LIMIT = 6.0
SECONDS_TO_FACTOR = 1.0  # one denominator's factors
# the ends of the domains that are open: a closed form may divide by a symbol's distance
# to one (``vanishing(..., ends=True)``)
OPEN_ENDS = {"positive": (sp.S.Zero,), "unit_interval": (sp.S.Zero, sp.S.One)}
MAX_DENOMINATORS = 8  # looked at per closed form: each may take a limit's seconds


def at_special_values(spec, value, t=None) -> tuple:
    """(value, caveats): a closed form that divides by quantities that can be 0 inside
    the symbols' domains (1 − r for a real rate r, a − b for two rates, wd for a weight
    decay that may be 0, k of Var[exp(k u)]), where it is 0/0 and its code nan. At each
    such value, one symbol's one root, the limit (sympy.limit, within
    SECONDS_FOR_A_LIMIT) is taken: where(r == 1, x₀ + c t, ...), the value the
    recurrence or moment has there. Where no limit is found, the condition is a caveat,
    said with the result (the value holds where it is not 0). ``t``: a recurrence's
    index, whose own denominators (1/t) are not the symbols'."""
    caveats = []
    # the values a branch is there for already (a Möbius map's γ = 0, built with it)
    done = {(m.args[1], m.args[2]) for m in value.atoms(vanishes)}
    # limits of the general form: a where built for one value (a = −1 of AR(1)'s
    # (1 − a²)) is no form SymPy takes the next one (a = 1) of
    general = value
    ends = []  # (d, order, (symbol, root)): d vanishes at an open end of symbol's domain
    while isinstance(general, where) and isinstance(general.args[0], vanishes):
        general = general.args[2]  # a branch built before (a Möbius map's parabolic case)
    for d, order in list(_parameter_denominators(value, t).items())[:MAX_DENOMINATORS]:
        found = vanishing(spec, d)
        if found is None and t is not None:
            end = vanishing(spec, d, ends=True)
            if end is not None:
                ends.append((d, order, end))
            continue
        if found is None or found in done:
            continue
        done.add(found)
        symbol, root = found
        form, special = general, _limit(general, symbol, root)
        if special is None:
            # the numerator multiplied out: (1 − aᵗ)(1 + aᵗ)/((1 − a)(1 + a)) of AR(1)'s
            # variance from 0 has no limit SymPy finds at a = −1 ("oo·sign(...)"),
            # (1 − a²ᵗ)/(1 − a²) has: q t
            form = _numerator_expanded(general)
            special = None if form is None else _limit(form, symbol, root)
        if special is None:
            caveats.append(sp.Ne(symbol, root))
            continue
        # the branch's own special values in turn (b = 0 of the a = b branch's /b)
        special, held = at_special_values(spec, positive_first(sp.factor(special)), t)
        caveats += [sp.Or(sp.Ne(symbol, root), c) for c in held]
        # a pole of order 1 in a recurrence too: the limit's error there grows as |d| t
        # (x₀ + c t for rᵗ x₀ + c (1 − rᵗ)/(1 − r): 1e-5 off at t = 2000, r = 1 + 1e-8)
        taylor = order > 1 or t is not None
        near = _taylor(form, symbol, root, order, special) if taylor else None
        if near is not None and _poles_inside(spec, near - special, t):
            # its coefficients divide by another difference of rates (three cascaded
            # EMAs: a − c's coefficients by (b − c)²), 0/0 where that one vanishes too:
            # z was nan at a = b = c. The limit alone, whose own special values are
            # branched above, holds there
            near = None
        if near is None:
            value = where(vanishes(d, symbol, root), special, value)
        else:
            step = () if t is None else (t,)
            value = where(vanishes(d, symbol, root, order, *step), near, value)
    # the factors that vanish at 0 as one: the Polyak average divides by a lr, whose
    # size, not a's or lr's, is what its general form loses digits by
    at_zero = [(d, order) for d, order, (_, root) in ends if root == 0]
    if at_zero:
        d = sp.Mul(*[d for d, _ in at_zero])
        symbol = next(s for _, _, (s, root) in ends if root == 0)
        value = _near_an_end(general, value, d, max(o for _, o in at_zero), t, symbol, 0)
    for d, order, (symbol, root) in ends:
        if root != 0:
            value = _near_an_end(general, value, d, order, t, symbol, root)
    return value, tuple(caveats)


def _near_an_end(general, value, d, order, t, symbol, root):
    """``value`` with a Taylor branch near the open end ``root`` of ``symbol``'s domain,
    where ``d`` vanishes (a·lr → 0 for positive a and lr, 1 − r → 0 for a rate r in
    unit_interval): no value of the domain reads 0/0 there, but near it the general form
    is a difference of O(1) terms divided by a small one. The Polyak average of
    gradient-descent iterates, c ((1 − x)ᵗ + x + x t − 1 − x (1 − x)ᵗ)/(x t) for x = a lr,
    was 10× off at x = 1e-9 and 7·10⁶× at 1e-12. The polynomial is in powers of d itself
    (``symbol`` solved for it), so that the branch is taken where |d| t is small
    (``vanishes``), which is what its error goes by. Not shown: the limit at the end is
    no value the spec's symbols take."""
    u = sp.Dummy("u", positive=True)
    try:
        (solved,) = within(1.0, sp.solve, d - u, symbol)
    except (TimeLimit, NotImplementedError, ValueError, TypeError):
        return value
    in_u = general.xreplace({symbol: solved})
    special = _limit(in_u, u, 0)
    near = None if special is None else _taylor(in_u, u, 0, order, special)
    if near is None:
        return value
    return where(vanishes(d, symbol, root, order, t, sp.true), near.xreplace({u: d}), value)


def _poles_inside(spec, e, t) -> bool:
    """Whether ``e`` divides by something that can be 0 inside the symbols' domains."""
    return any(
        vanishing(spec, d) is not None
        for d in list(_parameter_denominators(e, t))[:MAX_DENOMINATORS]
    )


def _limit(general, symbol, root):
    """SymPy's limit of ``general`` at symbol = root, within SECONDS_FOR_A_LIMIT, or None
    where it is not found or not finite."""
    try:
        special = within(SECONDS_FOR_A_LIMIT, sp.limit, general, symbol, root)
    except (TimeLimit, NotImplementedError, ValueError, TypeError, AttributeError):
        return None
    if special.has(sp.Limit, sp.oo, -sp.oo, sp.zoo, sp.nan):
        return None
    return special


def _numerator_expanded(general):
    """``general`` as one fraction with its numerator multiplied out, or None where it
    is one already or SymPy takes too long."""
    try:
        numerator, denominator = within(SECONDS_TO_FACTOR, sp.fraction, sp.together(general))
        expanded = within(SECONDS_TO_FACTOR, sp.expand, numerator)
    except (TimeLimit, NotImplementedError, ValueError, TypeError, AttributeError):
        return None
    return None if expanded == numerator else expanded / denominator


def _taylor(general, symbol, root, order: int, limit):
    """The Taylor polynomial of ``general`` about symbol = root, of degree ``order`` +
    TAYLOR_DEGREE_PAST_ORDER, its constant term the ``limit`` found (``vanishes``: the
    general form divides by the distance to root to the power ``order``, so it loses
    ε/|d|ᵐ near there); None where SymPy does not find its terms within
    SECONDS_FOR_A_LIMIT."""
    d = sp.Dummy("d")
    degree = order + TAYLOR_DEGREE_PAST_ORDER
    try:
        series = within(
            SECONDS_FOR_A_LIMIT, sp.series, general.xreplace({symbol: root + d}), d, 0, degree + 1
        )
        terms = series.removeO()
    except (TimeLimit, NotImplementedError, ValueError, TypeError, AttributeError):
        return None
    coefficients = [sp.factor(terms.coeff(d, k)) for k in range(1, degree + 1)]
    if any(c.has(d, sp.Limit, sp.oo, -sp.oo, sp.zoo, sp.nan, sp.Order) for c in coefficients):
        return None
    return limit + sum(
        (positive_first(c) * (symbol - root) ** k for k, c in enumerate(coefficients, 1)),
        sp.S.Zero,
    )


def _parameter_denominators(value, t) -> dict:
    """The factors of the denominators in ``value`` free of t that hold symbols, outside
    a ``where`` (whose branches are chosen where they are defined) but for the general
    branch of one at a special value (taken everywhere but there), each once, with the
    largest power it divides by (rounded up: 2 for (r − 1)⁻², 1 for (r − 1)^(−1/2))."""
    found: dict = {}

    def walk(e):
        if isinstance(e, where) and isinstance(e.args[0], vanishes):
            walk(e.args[2])  # the general branch, taken everywhere but at one value
            return
        if isinstance(e, (where, sp.Piecewise)) or not e.args:
            return
        if (
            isinstance(e, sp.Pow)
            and e.exp.is_number
            and e.exp < 0
            and not (t is not None and e.base.has(t))
        ):
            try:
                factors = within(SECONDS_TO_FACTOR, sp.factor, e.base)
            except (TimeLimit, sp.PolynomialError, NotImplementedError, TypeError, ValueError):
                factors = e.base
            for f in sp.Mul.make_args(factors):
                base, power = (f.base, f.exp) if isinstance(f, sp.Pow) else (f, sp.S.One)
                if base.free_symbols:
                    order = -e.exp * power
                    order = int(sp.ceiling(order)) if order.is_number and order > 0 else 1
                    found[base] = max(found.get(base, 1), order)
        for a in e.args:
            walk(a)

    walk(value)
    return found


def vanishing(spec, d, ends=False):
    """(symbol, root): a symbol of ``d`` whose one root makes d 0 inside its domain,
    the first in name order; None where there is none (1 − r for r in unit_interval:
    r = 1 is outside). ``ends``: at an open end of its domain instead (0 of a positive
    symbol, 0 or 1 of a unit_interval one)."""
    domains = {x.symbol: x.domain for x in spec.symbols if not x.shape}
    for symbol in sorted(d.free_symbols & set(domains), key=str):
        domain = domains[symbol]
        if ends:
            root = next(
                (r for r in OPEN_ENDS.get(domain, ()) if d.xreplace({symbol: r}) == 0), None
            )
            if root is not None:
                return symbol, root
            continue
        if domain not in ("real", *IN_DOMAIN) or not d.is_polynomial(symbol):
            continue
        try:
            roots = within(1.0, sp.solve, d, symbol)
        except (TimeLimit, NotImplementedError, ValueError, TypeError):
            continue
        if len(roots) != 1 or roots[0].has(sp.I):
            continue
        (root,) = roots
        if root.is_number and domain in IN_DOMAIN and IN_DOMAIN[domain](root) in (False, sp.false):
            continue  # the open ends excluded: r = 1 of a unit_interval r
        if not root.is_number and _outside(spec, domain, root):
            continue
        return symbol, root
    return None


def can_vanish(spec, d) -> bool:
    """Whether ``d`` may be 0 inside the symbols' domains: False where, for one of its
    scalar symbols, every root of d is complex or provably outside that symbol's domain
    (the Kalman variance's discriminant (q + r − a²r)² + 4a²qr has roots
    q = −r(1 ± |a|)², ≤ 0, outside a positive q; for a nonnegative q, 0 at a = ±1)."""
    if d.is_number:
        return d == 0
    domains = {x.symbol: x.domain for x in spec.symbols if not x.shape}
    signed = signed_symbols(spec)
    for symbol in sorted(d.free_symbols & set(domains), key=str):
        if domains[symbol] not in ("positive", "unit_interval") or not d.is_polynomial(symbol):
            continue
        # d as a polynomial in the symbol may vanish identically at values of the others
        # (the discriminant in r at a = 1, q = 0): one coefficient must be nonzero
        coefficients = sp.Poly(d, symbol).all_coeffs()
        if not any(c.xreplace(signed).is_nonzero for c in coefficients):
            continue
        try:
            roots = within(1.0, sp.solve, d, symbol)
        except (TimeLimit, NotImplementedError, ValueError, TypeError):
            continue
        if all(r.has(sp.I) or _outside(spec, domains[symbol], r) for r in roots):
            return False
    return True


def _outside(spec, domain, root) -> bool:
    """A symbolic root provably outside an open domain: ≤ 0 for a positive or
    unit_interval symbol, ≥ 1 for a unit_interval one (s2 = −sb/sum(x²) of a denominator
    √(sb + s2 sum(x²)), with sb and s2 positive)."""
    if domain not in ("positive", "unit_interval"):
        return False
    if provably_nonnegative(spec, -root):
        return True
    return domain == "unit_interval" and provably_nonnegative(spec, root - 1)


def caveat_note(what: str, caveats, show) -> str:
    """The note of a closed form (``what``: "the closed form for m_t") with caveats, each
    ``x != r`` shown by ``show`` (the expression language)."""
    held = " and ".join(_shown(c, show) for c in caveats)
    return f"{what} holds where {held}: there it is 0/0 and its limit was not found, so its code gives nan"


def _shown(caveat, show) -> str:
    """x != r, or for one in a special branch (x != r or y != s), in the language."""
    if isinstance(caveat, sp.Or):
        return "(" + " or ".join(_shown(c, show) for c in caveat.args) + ")"
    return f"{show(caveat.lhs)} != {show(caveat.rhs)}"


def singular_inside(spec, alg, value) -> list[str]:
    """Where ``value`` (a stationary point's closed form) is undefined inside the
    symbols' domains, said in words: a scalar divisor's one root in a symbol's domain
    (b/a at a = 0 of a nonnegative a), and an inverted matrix that is singular at 0 of
    a scalar whose domain holds 0 (ridge's (λI + XᵀX)⁻¹ at λ = 0 with fewer rows than
    columns: rank at most m < n at the spec's dims). There ∇ℓ = 0 has no solution or a
    whole set of them, and the closed form none: the user is told, not given nan."""
    said = []
    for d in list(_parameter_denominators(value, None))[:MAX_DENOMINATORS]:
        found = vanishing(spec, d)
        if found is not None:
            symbol, root = found
            by = "0" if d == symbol else f"{d} = 0"
            said.append(f"at {symbol} = {root} it divides by {by}")
    domains = {x.symbol: x.domain for x in spec.symbols if not x.shape}
    for inv in sorted(value.atoms(ops.inv), key=str):
        m = inv.args[0]
        size = size_at_dims(alg, m)
        for symbol in sorted(m.free_symbols & set(domains), key=str):
            if domains[symbol] not in ("real", "nonnegative") or size is None:
                continue
            at_zero = alg.tidy(m.xreplace({symbol: sp.Integer(0)}))
            bound = 0 if at_zero == 0 else rank_at_most(alg, at_zero)
            if bound is not None and bound < size:
                said.append(
                    f"at {symbol} = 0 the matrix it inverts is singular (rank at most "
                    f"{bound} < {size} at the spec's dims)"
                )
    return said
