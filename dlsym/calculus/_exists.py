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

# the margins that keep a point inside a wrt symbol's domain (as _second_order's
# _IN_DOMAIN: domains an entry of a point can leave)
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


def margins(e, domain=None) -> tuple | None:
    """The margins (each to be > 0) under which ``e``, a closed form, is real and in
    ``domain``, those not already proven; None where one is proven never positive
    (e is not real anywhere: log(−1 − a²))."""
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
    for form in (lambda: m, lambda: within(SECONDS_TO_DECIDE, sp.together, m)):
        try:
            e = form()
        except TimeLimit:
            return None
        if e.is_positive:
            return True
        if e.is_nonpositive:
            return False
    return None
