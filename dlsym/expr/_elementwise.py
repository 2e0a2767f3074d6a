"""The elementwise functions dlsym adds to SymPy's (sigmoid, softplus, step, relu), and
the table of SymPy classes that act entry by entry, with their scalar derivatives."""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p


class sigmoid(sp.Function):
    """The logistic function 1 / (1 + exp(-x))."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sp.exp(-x))

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real


class softplus(sp.Function):
    """log(1 + exp(x)), computed stably."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.log(1 + sp.exp(x))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real


class step(sp.Function):
    """The Heaviside step as used by ReLU's derivative; its derivative is 0 almost
    everywhere (SymPy's ``Heaviside`` differentiates to ``DiracDelta``, which has no
    numeric meaning at sampled points)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Integer(1) if x > 0 else sp.Integer(0)

    def fdiff(self, argindex=1):
        return sp.Integer(0)

    def _eval_is_real(self):
        return True

    def _eval_is_nonnegative(self):
        return True


class relu(sp.Function):
    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)

    def fdiff(self, argindex=1):
        return step(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        return self.args[0].is_real


# dlsym's elementwise functions as SymPy's elementary ones, for what SymPy must see
# through: an integral (the moments' E[f(z)]), an equation to solve (σ(a) = p)
ELEMENTARY = {
    relu: lambda a: sp.Piecewise((a, a > 0), (0, True)),
    step: lambda a: sp.Piecewise((1, a > 0), (0, True)),
    sigmoid: lambda a: 1 / (1 + sp.exp(-a)),
    softplus: lambda a: sp.log(1 + sp.exp(a)),
}


def elementary(e):
    """``e`` with dlsym's elementwise functions written as SymPy's (ELEMENTARY)."""
    return e.replace(lambda x: type(x) in ELEMENTARY, lambda x: ELEMENTARY[type(x)](x.args[0]))


def elementwise_derivative(e):
    """f'(a) of an entrywise f(a). ``sign``, ``step`` and ``Heaviside`` (the tie share of
    ``maximum``'s adjoint) are flat almost everywhere
    (SymPy would give DiracDelta or an unevaluated Derivative, which no sample can use)."""
    if isinstance(e, (sp.sign, step, sp.Heaviside)):
        return sp.Integer(0)
    return e.fdiff(1)


# SymPy classes that act entry by entry; their scalar derivative (``fdiff``) is
# the elementwise derivative.
ELEMENTWISE = (
    sp.exp,
    sp.log,
    sp.Abs,
    sp.sin,
    sp.cos,
    sp.tanh,
    sp.atan,
    sp.erf,
    sp.sign,
    log1p,
    expm1,
    sigmoid,
    softplus,
    relu,
    step,
    sp.Heaviside,  # H(x) with H(0) = 1/2: the share of a tie (dlsym.expr._piecewise)
)


# --- tensor operations ------------------------------------------------------------
