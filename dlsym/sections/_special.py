"""Verification points at the special values of a closed form's where branches.

A closed form that reads 0/0 at some admissible values carries its limit there as
``where(vanishes(d, x, r), limit, general)`` (``calculus._special_values``): r = 1 of
x_t = r x + c, two equal rates, k = 0 of Var[exp(k u)]. No drawn point hits x = r, so
the verifications of recurrences and moments add one point there per branch: each
branch is checked, not only the general form.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from dlsym.calculus._exists import IN_DOMAIN
from dlsym.codegen import _compile as codegen
from dlsym.expr._piecewise import near_zero, vanishes


def special_points(values, decls, points) -> list:
    """For each ``where(vanishes(d, x, r), ...)`` of the closed forms ``values`` with x a scalar
    symbol: the first drawn point with x put at r there, where that is a real number
    inside x's domain (r = 1 of a rate in unit_interval is not; a = b of two real rates
    is), and near r for a Taylor branch. Masks of an expression (a Möbius map's
    discriminant) have no such point."""
    domains = {x.name: x.domain for x in decls if not x.shape}
    masks = sorted(
        {
            m
            for value in values
            for m in sp.sympify(value).atoms(vanishes)
            if isinstance(m.args[1], sp.Symbol) and m.args[1].name in domains
        },
        key=str,
    )
    out = []
    for mask in masks:
        _, x, root = mask.args[:3]
        names = sorted(root.free_symbols, key=str)
        value_of = codegen.lambdify(names, [root], "numpy")
        # a branch taken near x = r too (its Taylor polynomial): a point inside that
        # neighbourhood as well, at a tenth of its width
        offsets = (0.0, 0.1 * near_zero(mask)) if len(mask.args) > 3 else (0.0,)
        for at in points:
            try:
                value = complex(np.asarray(value_of(*[at[n.name] for n in names])[0]))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                continue
            if value.imag != 0 or not np.isfinite(value.real):
                continue
            # each inside x's domain: r at an open end of it (a lr → 0 of positive a
            # and lr) has only the point near it
            near = [
                {**at, x.name: np.float64(value.real + o)}
                for o in offsets
                if IN_DOMAIN.get(domains[x.name], lambda c: True)(sp.Float(value.real + o))
                in (True, sp.true)
            ]
            if near:
                out += near
                break
    return out
