"""Expectations against a normal density by rule, not by SymPy's integrator.

``E f(z)`` for ``z ~ N(m, v)`` is written ``z = m + s u`` with ``s = √v`` and ``u``
standard normal; each smooth piece of ``f`` on an interval between its breakpoints is
expanded into terms ``c uᵏ K(u)``, and each kernel ``K`` has a closed form (RULES):

- ``1`` on ``(a, b)``: the truncated moments ``Iₖ(a, b) = ∫ₐᵇ uᵏ φ(u) du``, with
  ``I₀ = Φ(b) − Φ(a)``, ``I₁ = φ(a) − φ(b)`` and
  ``Iₖ = aᵏ⁻¹ φ(a) − bᵏ⁻¹ φ(b) + (k − 1) Iₖ₋₂`` (integration by parts);
- ``exp(γu² + αu + δ)`` on ``(a, b)`` (γ < 1/2): completing the square makes it a normal
  density of ``u`` again, so a truncated moment of a shifted, scaled ``u``;
- ``cos(αu + β)``, ``sin(αu + β)`` on the whole line: the characteristic function,
  ``E uᵏ e^{iαu} = e^{−α²/2} E (w + iα)ᵏ``, its real and imaginary parts;
- ``erf(αu + β)`` on the whole line: ``E erf(αu + β) = erf(β/√(1 + 2α²))`` and, by
  Stein's lemma, ``E u erf(αu + β) = 2α e^{−β²/(1 + 2α²)}/√(π(1 + 2α²))``.

SymPy's integrator takes seconds where it succeeds and gives up on ``E sin²z``,
``E erf z`` and ``E clip(z, −c, c)`` with a symbolic mean (5 s without a result); these
rules take milliseconds and give Φ and φ written with erf and exp. Where a term matches
no rule the caller integrates as before (None).
"""

from __future__ import annotations

import sympy as sp
from sympy.simplify.fu import TR8

SQRT_2PI = sp.sqrt(2 * sp.pi)


def phi(x):
    """The standard normal density, 0 at ±∞."""
    return sp.Integer(0) if x.is_infinite else sp.exp(-(x**2) / 2) / SQRT_2PI


def cdf(x):
    """The standard normal distribution function Φ, written with erf (1 and 0 at ±∞)."""
    if x.is_infinite:
        return sp.Integer(1) if x.is_extended_positive else sp.Integer(0)
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _edge(x, k):
    """xᵏ φ(x), 0 at ±∞ whatever k."""
    return sp.Integer(0) if x.is_infinite else x**k * phi(x)


def truncated_moment(k: int, a, b):
    """∫ₐᵇ uᵏ φ(u) du, by the recursion of integration by parts."""
    if k == 0:
        return cdf(b) - cdf(a)
    if k == 1:
        return phi(a) - phi(b)
    return _edge(a, k - 1) - _edge(b, k - 1) + (k - 1) * truncated_moment(k - 2, a, b)


def _moment(j: int):
    """E wʲ of a standard normal w: (j − 1)!! for even j, 0 for odd."""
    return sp.Integer(0) if j % 2 else sp.factorial2(j - 1)


def _polynomial(k: int, shift, scale, a, b):
    """∫ₐᵇ (shift + scale w)ᵏ φ(w) dw, expanded binomially into truncated moments."""
    return sp.Add(
        *[
            sp.binomial(k, j) * shift ** (k - j) * scale**j * truncated_moment(j, a, b)
            for j in range(k + 1)
        ]
    )


def _exponential(k, exponent, u, a, b):
    """∫ₐᵇ uᵏ e^{γu² + αu + δ} φ(u) du for γ < 1/2: e^{−λu²/2 + αu} with λ = 1 − 2γ is
    e^{α²/(2λ)} √(2π/λ) times the density of N(α/λ, 1/λ); u = α/λ + w/√λ."""
    poly = sp.Poly(exponent, u)
    if poly.degree() > 2:
        return None
    gamma, alpha, delta = (poly.coeff_monomial(u**p) for p in (2, 1, 0))
    lam = 1 - 2 * gamma
    if lam.is_nonpositive is True and (a.is_infinite or b.is_infinite):
        # e^{u²/2} or faster against φ over an infinite end: the integral diverges
        # (E exp(z²) of z ~ N(0, 1)); not finite, said (was "no closed form SymPy finds")
        return sp.zoo
    if lam.is_positive is not True:
        return None  # not known to exist
    shift, scale = alpha / lam, 1 / sp.sqrt(lam)
    ends = [x if x.is_infinite else (x - shift) / scale for x in (a, b)]
    factor = sp.exp(delta + alpha**2 / (2 * lam)) * scale
    return factor * _polynomial(k, shift, scale, *ends)


def _characteristic(k, alpha, beta):
    """(E uᵏ cos(αu + β), E uᵏ sin(αu + β)) over the whole line: with
    E uᵏ e^{iαu} = e^{−α²/2} Σⱼ C(k, j) (iα)^{k−j} E wʲ = e^{−α²/2} (A + iB),
    cos takes Re e^{iβ}(A + iB) = A cos β − B sin β and sin A sin β + B cos β."""
    parts = [sp.Integer(0), sp.Integer(0)]  # A, B
    for j in range(k + 1):
        n = k - j
        term = sp.binomial(k, j) * alpha**n * _moment(j)
        parts[n % 2] += term if n % 4 < 2 else -term  # iⁿ = 1, i, −1, −i
    damping = sp.exp(-(alpha**2) / 2)
    a_, b_ = parts
    return (
        damping * (a_ * sp.cos(beta) - b_ * sp.sin(beta)),
        damping * (a_ * sp.sin(beta) + b_ * sp.cos(beta)),
    )


def _erf(k, alpha, beta):
    """E uᵏ erf(αu + β) over the whole line for k ≤ 1 (the probit integral and Stein's
    lemma), else None."""
    spread = 1 + 2 * alpha**2
    if k == 0:
        return sp.erf(beta / sp.sqrt(spread))
    if k == 1:
        return 2 * alpha * sp.exp(-(beta**2) / spread) / sp.sqrt(sp.pi * spread)
    return None


def _linear(arg, u):
    """(α, β) with arg = αu + β, or None."""
    poly = sp.Poly(arg, u) if arg.is_polynomial(u) else None
    if poly is None or poly.degree() > 1:
        return None
    return poly.coeff_monomial(u), poly.coeff_monomial(1)


def _periodic_or_erf(k, kernel, u, whole_line):
    if not whole_line:
        return None  # a truncated characteristic function needs erf of complex numbers
    line = _linear(kernel.args[0], u)
    if line is None:
        return None
    if isinstance(kernel, sp.erf):
        return _erf(k, *line)
    cos_part, sin_part = _characteristic(k, *line)
    return cos_part if isinstance(kernel, sp.cos) else sin_part


# the kernels with a rule besides e^(...) and 1
KERNELS = (sp.cos, sp.sin, sp.erf)


def _term(term, u, a, b):
    """∫ₐᵇ term φ(u) du for one term c uᵏ K(u), or None where no rule applies."""
    coeff, k, exponent, kernels = sp.Integer(1), 0, sp.Integer(0), []
    for factor in sp.Mul.make_args(term):
        if u not in factor.free_symbols:
            coeff *= factor
        elif factor == u:
            k += 1
        elif factor.is_Pow and factor.base == u and factor.exp.is_Integer and factor.exp > 0:
            k += int(factor.exp)
        elif isinstance(factor, sp.exp):
            exponent += factor.args[0]
        elif isinstance(factor, KERNELS):
            kernels.append(factor)
        else:
            return None
    if not kernels:
        if not exponent.is_polynomial(u):
            return None
        value = _exponential(k, sp.expand(exponent), u, a, b)
    elif len(kernels) == 1 and exponent == 0:
        value = _periodic_or_erf(k, kernels[0], u, a.is_infinite and b.is_infinite)
    else:
        return None
    return None if value is None else coeff * value


def expect(pieces, t, mean, var):
    """E f(t) for t ~ N(mean, var), f given as [(piece, a, b)]: f is piece on (a, b)
    (the pieces cover the line); None where a term matches no rule."""
    u = sp.Dummy("u", real=True)
    s = sp.sqrt(var)
    total = sp.Integer(0)
    for piece, a, b in pieces:
        g = piece.xreplace({t: mean + s * u})
        if g.has(sp.sin, sp.cos):
            g = TR8(g)  # products and powers of sines as sums: sin²x = (1 − cos 2x)/2
        ends = [x if x.is_infinite else (x - mean) / s for x in (a, b)]
        for term in sp.Add.make_args(sp.expand(g)):
            value = _term(term, u, *ends)
            if value is None:
                return None
            total += value
    return cdf_grouped(total)


def cdf_grouped(e):
    """``e`` with each c + c erf(u) (or c − c erf(u)) written c (1 ± erf(u)): 2Φ(√2 u)
    as the printers set it, and as the code computes it without cancelling (erfc: at
    μ = −8 the tail (1 + μ²)(1 + erf(μ/√2))/2 was all rounding, E relu(z)² negative)."""
    for f in sorted(e.atoms(sp.erf), key=sp.default_sort_key):
        expanded = sp.expand(e)
        coefficient = expanded.coeff(f)
        if coefficient == 0 or coefficient.has(f):
            continue
        rest = expanded - coefficient * f
        for sign in (1, -1):
            left = sp.expand(rest - sign * coefficient)
            if len(sp.Add.make_args(left)) < len(sp.Add.make_args(rest)):
                e = sp.factor_terms(sign * coefficient) * (1 + sign * f) + left
                break
    return e
