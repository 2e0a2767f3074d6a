"""The standard normal's Φ and φ, for display: a closed form computed with erf and exp
reads as a textbook writes it.

``E relu(z)`` for ``z ~ N(μ, v)`` comes out of the integral as
``μ/2 + μ erf(μ/√(2v))/2 + √v e^{−μ²/(2v)}/√(2π)``; a paper writes ``μ Φ(μ/√v) + √v φ(μ/√v)``,
and GELU is ``x Φ(x)``. Two local rewrites, for LaTeX and terminal text only (the
expression language has erf, not Φ, so JSON's ``expr`` and generated code keep erf):

- in a sum, ``erf(a) = 2 Φ(√2 a) − 1`` where that makes the sum shorter (the constant
  halves of ``k (1 + erf a)/2`` cancel), or one term longer with every ``√2 a`` free of
  √2; a lone ``erf`` stays one;
- in a product, its sums as above, and ``e^{−x²/2}/√(2π) = φ(x)`` where the rest has no π left and ``x`` is
  written without √2 (the derivative of erf, ``2 e^{−x²}/√π``, stays as it is).
"""

from __future__ import annotations

import sympy as sp


class NormalCDF(sp.Function):
    """Φ(x), the standard normal distribution function: display only, never evaluated."""

    nargs = 1


class NormalPDF(sp.Function):
    """φ(x), the standard normal density: display only, never evaluated."""

    nargs = 1


_ROOT_2PI = sp.sqrt(2 * sp.pi)


def _times_root_2(a):
    """√2 a, into the terms of a sum (√2 (√2 c/2 + √2 μ/2) is c + μ)."""
    return sp.Add(*[sp.sqrt(2) * t for t in sp.Add.make_args(a)])


def _as_cdf(factor):
    """erf(a) as 2Φ(√2 a) − 1; any other factor as it is."""
    if isinstance(factor, sp.erf):
        return 2 * NormalCDF(_times_root_2(factor.args[0])) - 1
    return factor


def cdf_form(add):
    """A sum with erf(a) written 2Φ(√2 a) − 1 where that shortens it, else the sum. Only
    an erf that is a factor of a term: one deeper sits in a sum of its own, rewritten
    (or not) when that sum is printed."""
    ours = [f for t in add.args for f in sp.Mul.make_args(t) if isinstance(f, sp.erf)]
    if not isinstance(add, sp.Add) or not ours:
        return add
    terms = [
        sp.expand_mul(sp.Mul(*[_as_cdf(f) for f in sp.Mul.make_args(t)]), deep=False)
        for t in add.args
    ]
    new, before = len(sp.Add.make_args(sp.Add(*terms))), len(add.args)
    # a shorter sum, or at most one term longer where every Φ's argument is written
    # without √2 (x Φ(x) of GELU, Φ((c − μ)/σ)); erf(μ/√(1 + 2v)) is no Φ of anything
    natural = all(not _times_root_2(f.args[0]).has(sp.sqrt(2)) for f in ours)
    return sp.Add(*terms) if new < before or (natural and new <= before + 1) else add


def _point(exponent):
    """x with e^{exponent} = e^{−x²/2}, written without √2, or None."""
    square = sp.factor(-2 * exponent)
    x = sp.powdenest(sp.sqrt(square), force=True).replace(sp.Abs, lambda a: a)  # φ is even
    if x.has(sp.sqrt(2)) or sp.expand(x**2 - square) != 0:
        return None
    return x


def pdf_form(mul):
    """A product c e^{−x²/2} with c √(2π) free of π as (c √(2π)) φ(x), else the product;
    a factor that is a sum rewritten (cdf_form) joins the product's numbers: GELU's
    x (1 + erf(x/√2))/2 is x Φ(x), not x (2 Φ(x))/2."""
    if not isinstance(mul, sp.Mul):
        return mul
    sums = [cdf_form(f) for f in mul.args]
    if any(new is not old for new, old in zip(sums, mul.args)):
        return sp.Mul(*sums)
    exps = [f for f in mul.args if isinstance(f, sp.exp)]
    if len(exps) != 1:
        return mul
    rest = mul / exps[0] * _ROOT_2PI
    if rest.has(sp.pi):
        return mul
    x = _point(exps[0].args[0])
    return mul if x is None else rest * NormalPDF(x)
