"""Where a closed form is real: the conditions on the other symbols under which a
stationary point exists. sympy.solve gives the root of softplus(a x + b) − 0.3 x,
x* = log(3 e^{−b} / (10 a − 3)) / a, with no word that it is real only for a > 3/10;
a stationary point stated without that condition is wrong for most a. Each condition is
a margin m, to be read m > 0 (entry by entry for a vector): the arguments of log
positive, of a fractional power's base positive, of asin, acos, atanh inside (−1, 1),
and the point inside its wrt symbol's domain. A margin SymPy's assumptions prove
positive is dropped; one they prove nonpositive means no real root at all."""

from __future__ import annotations

import sympy as sp

from dlsym._budget import TimeLimit, within

# what each function needs of its argument (a) to be real and finite: margins, each > 0
_NEEDS = {
    sp.log: lambda a: (a,),
    sp.asin: lambda a: (1 - a, 1 + a),
    sp.acos: lambda a: (1 - a, 1 + a),
    sp.atanh: lambda a: (1 - a, 1 + a),
    sp.acosh: lambda a: (a - 1,),
    sp.LambertW: lambda a: (a + sp.exp(-1),),
}

# whether a value is in a domain (None: not known; an unlisted domain, real, holds
# every value): a stationary point's, a closed form's 0/0 value's (_special_values)
IN_DOMAIN = {
    "positive": lambda c: c.is_positive,
    "nonnegative": lambda c: c.is_nonnegative,
    "unit_interval": lambda c: sp.And(c > 0, c < 1) if c.is_number else (c.is_positive or None),
}

# the margins that keep a point inside a wrt symbol's domain (as IN_DOMAIN: domains an
# entry of a point can leave)
_INSIDE = {
    "positive": lambda x: (x,),
    "nonnegative": lambda x: (x,),
    "unit_interval": lambda x: (x, 1 - x),
}


def _fractional(node) -> bool:
    """A power whose base must be positive to be real: x**(1/2), x**(-3/2), x**a."""
    return isinstance(node, sp.Pow) and node.exp.is_integer is not True


def _real_power(node) -> bool:
    """A fractional power real wherever its base is what SymPy knows it to be."""
    if node.base.is_positive:
        return True
    return bool(node.base.is_nonnegative and node.exp.is_nonnegative)


def margins(e, domain=None, unit=frozenset()) -> tuple | None:
    """The margins (each to be > 0) under which ``e``, a closed form, is real and in
    ``domain``, those not already proven; None where one is proven never positive
    (e is not real anywhere: log(−1 − a²)). ``unit``: the symbols of the unit interval
    (``at_corners``)."""
    found: list = []
    for node in sp.preorder_traversal(e):
        rule = _NEEDS.get(type(node))
        if rule is not None:
            found += rule(node.args[0])
        elif _fractional(node) and not _real_power(node):
            found.append(node.base)
    inside = _INSIDE.get(domain)
    if inside is not None:
        found += inside(e)
    out: list = []
    for m in found:
        sign = positive(m)
        if sign is None and unit:
            sign = True if positive_inside(m, unit) else None
        if sign is True:
            continue
        if sign is False:
            return None
        if m not in out:
            out.append(m)
    return tuple(out)


SECONDS_TO_DECIDE = 1.0  # sympy.together on one margin


def positive(m) -> bool | None:
    """m > 0 proven (True), m <= 0 proven (False), or not known; over one fraction
    where the terms alone say nothing (1 − p/(p + q) is q/(p + q), positive for
    positive p and q: the optimal discriminator's D* < 1)."""
    for together in (False, True):
        try:
            e = within(SECONDS_TO_DECIDE, sp.together, m) if together else m
        except TimeLimit:
            return None
        if e.is_positive:
            return True
        if e.is_nonpositive:
            return False
    return None


def at_corners(e, unit) -> list:
    """``e`` at each corner of the unit interval of the symbols of ``unit`` in which it
    is affine (p π + q (1 − π) at π = 0 and 1: q and p), or [e] where it is affine in
    none of them. An affine function of π takes its least value on [0, 1] at an end, so
    e > 0 (>= 0) on the interval exactly where it is at both: a proof SymPy's
    assumptions, which know π > 0 but not π <= 1, do not find."""
    out = [e]
    for u in sorted(unit & e.free_symbols, key=str):
        slope = sp.diff(e, u)
        if slope.has(u):
            continue  # not affine in u: its ends say nothing
        out = [c for x in out for c in (x.subs(u, 0), x.subs(u, 1))]
    return out


def positive_inside(m, unit) -> bool:
    """m > 0 inside the unit interval (0, 1) of the symbols of ``unit``: m, or the
    numerator and denominator of m over one fraction, each positive (or each negative) by SymPy's
    assumptions or ``_corners_positive`` (the prior-weighted discriminator's
    D* = p π/(p π + q (1 − π)) < 1, whose denominator is q at π = 0 and p at π = 1)."""
    if _corners_positive(m, unit):
        return True
    try:
        parts = sp.fraction(within(SECONDS_TO_DECIDE, sp.together, m))
    except TimeLimit:
        return False

    def inside(x):
        return positive(x) is True or _corners_positive(x, unit)

    # both parts positive, or both negative: −c e^(−b)/(c − 1) of a softplus stationary
    # point, c in (0, 1), was printed as a condition that always holds
    return parts[1] != 1 and (all(inside(x) for x in parts) or all(inside(-x) for x in parts))


def _corners_positive(e, unit) -> bool:
    """e, (multi-)affine in symbols of the unit interval, is > 0 inside it: there it is
    its corner values averaged with positive weights (π and 1 − π, their products), so
    corner values all >= 0 and one > 0 make it positive."""
    corners = at_corners(e, unit)
    if len(corners) == 1:
        return False
    signs = [positive(c) for c in corners]
    nonnegative = all(s is True or c == 0 or c.is_nonnegative for s, c in zip(signs, corners))
    return nonnegative and any(s is True for s in signs)
