"""Rewrites that keep generated code finite and accurate where the naive formula is not.

Each rule maps a SymPy pattern to an equal expression that does not overflow or lose
precision (``log(sigmoid(z))`` is ``-softplus(-z)``: exact for z = -1000, where the
naive form gives log(0) = -inf). Applied bottom-up, to a fixed point.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from dlsym.expr import _ops as ops


def _log_rule(e):
    (a,) = e.args
    if isinstance(a, ops.sigmoid):  # log(sigmoid(z)) = -softplus(-z)
        return -ops.softplus(-a.args[0])
    if isinstance(a, ops.softmax):  # log(softmax(z)) = log_softmax(z)
        return ops.log_softmax(a.args[0])
    if isinstance(a, ops.tsum) and len(a.args) == 1 and isinstance(a.args[0], sp.exp):
        return ops.logsumexp(a.args[0].args[0])  # log(sum(exp(z))) = logsumexp(z)
    if isinstance(a, sp.Add) and sp.Integer(1) in a.args:
        rest = a - 1
        if isinstance(rest, sp.exp):  # log(1 + exp(z)) = softplus(z)
            return ops.softplus(rest.args[0])
        if isinstance(-rest, ops.sigmoid):  # log(1 - sigmoid(z)) = -softplus(z)
            return -ops.softplus((-rest).args[0])
        return log1p(rest)  # log(1 + x) = log1p(x)
    return None


def _add_rule(e):
    args = list(e.args)
    if sp.Integer(1) in args:
        rest = sp.Add(*[a for a in args if a != 1])
        if isinstance(-rest, ops.sigmoid):  # 1 - sigmoid(z) = sigmoid(-z)
            return ops.sigmoid(-(-rest).args[0])
    if sp.Integer(-1) in args:
        rest = sp.Add(*[a for a in args if a != -1])
        if isinstance(rest, sp.exp):  # exp(x) - 1 = expm1(x)
            return expm1(rest.args[0])
    return None


RULES = {sp.log: _log_rule, sp.Add: _add_rule}


def stabilize(e):
    """``e`` with every rule of ``RULES`` applied, innermost first."""
    if not e.args or isinstance(e, (ops.ones, ops.eye, ops.unit)):
        return e
    new = e.func(*[stabilize(a) for a in e.args])
    rule = RULES.get(type(new))
    if rule is not None:
        out = rule(new)
        if out is not None:
            return stabilize(out)
    return new
