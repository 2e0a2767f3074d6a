"""The piecewise functions of the expression language: ``maximum``, ``minimum``, ``clip``
and ``where``, with NumPy's meaning and broadcasting, and the kink convention every
derivative rule and reference follows (shared/spec-format.md, "Tensors of any rank"):

- ``relu'(0) = 0`` and ``abs'(0) = sign(0) = 0`` (the minimum-norm subgradient, as
  PyTorch);
- ties in ``maximum``, ``minimum``, ``max``, ``min`` and ``clip`` split the gradient
  equally, as JAX does: ``maximum(a, b)`` at ``a == b`` gives ``g/2`` to each, written
  with the Heaviside step ``H(0) = 1/2`` (SymPy's ``Heaviside``, whose default value at 0
  is 1/2); ``clip(a, lo, hi)`` is ``minimum(maximum(a, lo), hi)``, as ``jnp.clip``
  computes it, so at ``a == lo`` half goes to ``a`` and half to ``lo``;
- ``where(cond, a, b)`` sends the gradient to the branch it picks; the mask ``cond`` (a
  comparison, allowed only there) is never differentiated.
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr._elementwise import ELEMENTWISE


class _Piecewise(sp.Function):
    """Elementwise and broadcasting, like ``+`` (so not a ``TensorOp``: the shape table
    broadcasts the arguments' shapes, the mask's included)."""

    def _eval_is_real(self):
        return True


class _Extremum(_Piecewise):
    nargs = 2
    numeric = sp.Max  # SymPy's, for two numbers

    @classmethod
    def eval(cls, a, b):
        if a == b:
            return a
        if a.is_Number and b.is_Number:
            return cls.numeric(a, b)


class maximum(_Extremum):
    """NumPy's ``maximum(a, b)``, entry by entry."""


class minimum(_Extremum):
    """NumPy's ``minimum(a, b)``, entry by entry."""

    numeric = sp.Min


class clip(_Piecewise):
    """NumPy's ``clip(a, lo, hi)``: ``minimum(maximum(a, lo), hi)``."""

    nargs = 3

    @classmethod
    def eval(cls, a, lo, hi):
        if a.is_Number and lo.is_Number and hi.is_Number:
            return sp.Min(sp.Max(a, lo), hi)


class where(_Piecewise):
    """NumPy's ``where(cond, a, b)``: ``a`` where the comparison ``cond`` holds, else
    ``b``. A comparison SymPy can decide (``x > 0`` for a positive x) picks a branch."""

    nargs = 3

    @classmethod
    def eval(cls, cond, a, b):
        if cond is sp.true:
            return a
        if cond is sp.false:
            return b
        if a == b:
            return a
        # inside a branch its mask is known: where(c, 2 where(c, x, 0), 0) = where(c, 2 x, 0)
        a2, b2 = (_known(x, cond, i) for i, x in ((1, a), (2, b)))
        if (a2, b2) != (a, b):
            return cls(cond, a2, b2)


class vanishes(sp.Function):
    """``vanishes(d, x, r)``: the mask of a closed form's branch at a value of its
    symbols where it reads 0/0 (``dlsym.calculus._special_values``), d its denominator
    and x = r the value that makes d 0. Shown as ``x = r``; computed to rounding, |d| <=
    NEAR_ZERO (1 + Σ|d's terms|): at a = 0.3, γ = 0.7 the rates 1 − a and γ are one
    double while a == 1 − γ is False, and the general branch divided 0 by −6e-17 (its
    error is about ε/|d|, the limit's about |d| t: they meet near √ε).

    ``vanishes(d, x, r, m)``: d divides the general form to the power m ≥ 2 (c (t + r
    rᵗ − r − r t)/(r − 1)² of x_t = r x + c t), whose error is about ε/|d|ᵐ: 1.5e-2 at
    r = 1 + 1e-7, inside no √ε. Its branch is the Taylor polynomial of degree m + 2
    about x = r, whose error is about |d|ᵐ⁺³, taken where |d| <= NEAR_ZERO^(2/(2m + 3))
    (1 + Σ|d's terms|), where the two meet (6e-3 for m = 2). ``vanishes(d, x, r, m,
    t)``: in a recurrence at step t, whose terms grow as (t d)ᵏ/k!: where |d| t is
    that small; m = 1 too there (x₀ + c t, the limit of rᵗ x₀ + c (1 − rᵗ)/(1 − r), is
    off by about c t² |d|/2, past √ε at t = 2000). ``vanishes(D, D, 0, 0, t)``: the limit
    itself at a discriminant D = 0 (a repeated eigenvalue: t (τ/2)^(t−1) of heavy ball
    at critical damping), off by about t² |D| relative: where |D| t² <= √ε.

    ``vanishes(d, x, r, m, t, True)``: r is an open end of x's domain (0 of a positive
    symbol): no value there reads 0/0, but near it the general form cancels, and the
    Taylor polynomial is taken where |d| t is small as above. Not shown: it is a value
    of the code, not one the spec's symbols take."""

    nargs = (3, 4, 5, 6)

    @classmethod
    def eval(cls, d, x, r, order=None, step=None, end=None):
        if d.is_number:
            return sp.true if d == 0 else sp.false


NEAR_ZERO = 1.5e-8  # about √ε of float64


def near_zero(mask) -> float:
    """How near 0 a ``vanishes`` mask's d is taken as 0, relative to its terms (and
    over its step t, where it has one)."""
    if len(mask.args) <= 3 or mask.args[3] == 0:  # the limit itself: √ε
        return NEAR_ZERO
    return NEAR_ZERO ** (2 / (2 * int(mask.args[3]) + 3))  # its Taylor polynomial


# the Taylor polynomial's degree past a branch's pole order (``vanishes``)
TAYLOR_DEGREE_PAST_ORDER = 2


def shown(e):
    """``e`` as the derivation shows it: a branch at a special value x = r with its value
    there (its Taylor polynomial about x = r, which the code takes near it, is the limit
    at it)."""
    if not isinstance(e, sp.Basic) or not e.has(vanishes):
        return e

    def at_value(w):  # replace goes bottom-up: the branches are shown already
        d, x, r = w.args[0].args[:3]
        if len(w.args[0].args) > 5:  # near an open end: the general form is the value
            return w.args[2]
        return where(vanishes(d, x, r), w.args[1].xreplace({x: r}), w.args[2])

    return e.replace(
        lambda w: (
            isinstance(w, where) and isinstance(w.args[0], vanishes) and len(w.args[0].args) > 3
        ),
        at_value,
    )


def _known(x, cond, branch: int):
    """``x`` with each ``where(cond, ...)`` in it replaced by its branch ``branch``, where
    the path to it is entry by entry: through a matmul, a reduction, a softmax or an
    index, the entries of ``x`` depend on other entries of the inner ``where``, whose
    masks differ from this entry's (a leaky ReLU's ``H @ W2`` mixes both branches)."""
    if not x.has(where):
        return x
    if isinstance(x, where) and x.args[0] == cond:
        return _known(x.args[branch], cond, branch)
    if isinstance(x, _ENTRYWISE):
        args = [_known(a, cond, branch) for a in x.args]
        return x if list(x.args) == args else x.func(*args)
    return x


# each as one SymPy Piecewise of scalars, for what reads SymPy's own forms (an integral
# against a density splits at its breakpoints); ties as NumPy computes the value
SYMPY_FORMS = {
    maximum: lambda a, b: sp.Piecewise((a, a >= b), (b, True)),
    minimum: lambda a, b: sp.Piecewise((a, a <= b), (b, True)),
    clip: lambda a, lo, hi: sp.Piecewise((lo, a < lo), (hi, a > hi), (a, True)),
    where: lambda c, a, b: sp.Piecewise((a, c), (b, True)),
}


def as_sympy_piecewise(e):
    """``e`` with its piecewise functions written as SymPy's Piecewise (SYMPY_FORMS)."""
    return e.replace(lambda x: type(x) in SYMPY_FORMS, lambda x: SYMPY_FORMS[type(x)](*x.args))


# what keeps each entry in its place: a mask known at an entry is known inside these
_ENTRYWISE = (sp.Add, sp.Mul, sp.Pow, _Piecewise, *ELEMENTWISE)


def heaviside(x):
    """The step ``H(x)`` with ``H(0) = 1/2``: how much of a tie's gradient each side gets."""
    return sp.Heaviside(x, sp.S.Half)


COMPARISONS = (
    sp.StrictGreaterThan,
    sp.GreaterThan,
    sp.StrictLessThan,
    sp.LessThan,
    sp.Equality,
    sp.Unequality,
)
