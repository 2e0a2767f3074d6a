"""Readable canonical forms for derived tensor expressions."""

from __future__ import annotations

import sympy as sp

from dlsym.calculus._piecewise import readable
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra

MAX_OPS_TO_SIMPLIFY = 400


def _candidates(e):
    yield e
    for fn in (sp.cancel, sp.factor, sp.factor_terms):
        try:
            yield fn(e)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError):
            continue


def simplify(alg: Algebra, e):
    """The shortest of a few algebraically equal forms (entrywise algebra is safe:
    see _ops), then matrix products collected (``A x + A^T x = (A + A^T) x``) and the
    branches of a ``where`` gathered (``where(c, 1, 1/100)``)."""
    e = alg.tidy(e)
    if sp.count_ops(e) > MAX_OPS_TO_SIMPLIFY:
        return readable(alg, collect_products(alg, e))
    best = min((alg.tidy(c) for c in _candidates(e)), key=sp.count_ops)
    return readable(alg, collect_products(alg, best))


def _vector_left_to_right(alg, e):
    """v^T B (a 1-D vector on the left) is B^T v: the column form papers use."""
    if isinstance(e, ops.matmul):
        a, b = e.args
        if len(alg.shape(a)) == 1 and len(alg.shape(b)) == 2:
            return alg.mm(alg.T(b), a)
    return e


def collect_products(alg: Algebra, e):
    if not e.args:
        return e
    e = e.func(*[collect_products(alg, a) for a in e.args]) if not isinstance(e, ops.ones) else e
    e = _vector_left_to_right(alg, e)
    if not isinstance(e, sp.Add):
        return e
    groups: dict = {}
    rest = []
    for term in e.args:
        c, t = alg.split_scalar(term)
        if isinstance(t, ops.matmul) and len(alg.shape(t.args[0])) == 2:
            groups.setdefault(t.args[1], []).append(c * t.args[0])
        else:
            rest.append(term)
    for right, lefts in groups.items():
        if len(lefts) == 1:
            rest.append(alg.mm(lefts[0], right))
        else:
            rest.append(alg.mm(sp.Add(*lefts), right))
    return sp.Add(*rest)
