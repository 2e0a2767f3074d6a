"""Linear recurrences solved for t (shared/spec-format.md, "Recurrences": ``closed_form``).

A state updated as s_t = a_t s_{t-1} + Σ_k b_{k,t} r_{k,t-1} + c_t (r: the other states),
with a, b free of the states and of the step's inputs without a law, has
E[s_t] = E[a] E[s_{t-1}] + Σ_k E[b_k] E[r_{k,t-1}] + E[c] when the inputs are independent
and identically distributed over the steps (or constant): a_t is drawn after s_{t-1} is
made, so the two are independent. Adam's first moment m_t = β₁ m_{t-1} + (1 − β₁) g_t
from m_0 = 0 gives E[m_t] = (1 − β₁ᵗ) E[g]: the bias its correction divides out. E[c]
comes from the moments engine (its steps are kept).

States are solved in turn where each reads only itself and states solved before it (a
triangular system: EMA of the parameters, Nesterov, a Polyak sum): the earlier states'
closed forms at t − 1 enter as a forcing term in t, and ``sympy.rsolve`` solves the
first-order recurrence under a time limit (where it fails on a constant rate and a
forcing of geometric terms Σ cⱼ ρⱼᵗ, the geometric series: SGD's second moment); its
answer is checked exactly at a few steps.
A coefficient may read an earlier state without random inputs (the static Kalman
estimate's gain p_(t−1)/(p_(t−1) + r)): its closed form at t − 1 puts t in the rate.
An update a s/(b s + c) (the static Kalman variance) is linear in 1/s; a Möbius update
(a s + b)/(c s + d) with real fixed points p± (the Kalman variance with process noise)
is linear in (s − p₊)/(s − p₋). Two states that read each other (heavy ball on a
quadratic) are solved together through the powers of their 2 × 2 step matrix
(``_pair``). A vector state whose update is entry by entry (a matrix product or a
reduction only in terms that read no state) is solved as a scalar, entry by entry. The
rate may hold the index t (Polyak's average: 1 − 1/t).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.utilities.iterables import strongly_connected_components

from dlsym._budget import TimeLimit, within
from dlsym.calculus._affine import NoClosedForm, unwritten
from dlsym.calculus._convexity import provably_nonnegative
from dlsym.calculus._moments import Moments
from dlsym.calculus._simplify import factored, positive_first
from dlsym.calculus._special_values import (
    SECONDS_TO_FACTOR,
    at_special_values,
    can_vanish,
    vanishing,
)
from dlsym.expr import _ops as ops
from dlsym.expr._piecewise import vanishes, where

# the static Kalman estimate's rsolve takes 1.9 s on an idle core: with 5 s, three of
# four copies run at once on two cores said "no closed form" (a result that depended on
# the machine's load); a solve that fails in earnest fails fast
SECONDS_TO_SOLVE = 12.0
CHECKED_STEPS = 4  # rsolve's answer against the recurrence at t = 1..4, at rationals
DIGITS = 50  # ... to which each residue is evaluated
SECONDS_TO_CHECK = 4.0  # ... each within
# a vector state's initial value entry by entry (zeros(n) is 0 in every entry)
ENTRY_OF = {ops.zeros: sp.S.Zero, ops.ones: sp.S.One}


@dataclass(frozen=True)
class Solved:
    state: str
    rate: object  # a (of 1/s for the reciprocal form)
    drive: object  # E[c] + Σ_k E[b_k] r_{k,t-1}: the earlier states as their prev symbols
    start: object  # E[s_0]
    value: object  # E[s_t] (s_t without random inputs), in t
    random: bool  # whether the inputs are random (the value is an expectation)
    form: str = "linear"  # a key of FORMS: which quantity the linear recurrence is in
    # a Möbius update's fixed points and its denominator γ s + δ: (p₊, p₋, γ, δ); its
    # rate is (γ p₋ + δ)/(γ p₊ + δ)
    fixed: tuple = ()
    # the Möbius form's values where it is 0/0 inside the domains, ((mask, value), ...):
    # its discriminant 0 (one double fixed point p, the static Kalman filter with no
    # process noise: 1/(s − p) gains c each step), and γ = 0 (an affine map)
    branches: tuple = ()
    # a coupled pair's (τ, Δ, D, u*_i, (M w_0)_i, (w_0)_i, s, the pair's names) of its
    # step matrix M: trace, determinant, discriminant; this state's fixed point and its
    # parts; s(k, τ, Δ, D) is s_k, in the given symbols
    pair: tuple = ()
    # the values of the symbols where the value is 0/0 and no limit was found: "wd ≠ 0"
    caveats: tuple = ()


@dataclass(frozen=True)
class _Equation:
    """u_t = rate u_{t-1} + Σ_k coupling[r_k] r_{k,t-1} + drive, u = s or 1/s."""

    rate: object
    coupling: dict  # prev symbol of another state -> its coefficient (in expectation)
    drive: object
    start: object  # u_0
    random: bool
    fixed: tuple = ()  # the Möbius form's (p₊, p₋, γ, δ), as shown
    gates: frozenset = frozenset()  # prev symbols of states read in the rate (``_gates``)
    branches: tuple = ()  # the Möbius form's ((mask, value), ...) where it is 0/0
    # its fixed points as computed, s read back in them (far, near, the sign of b in
    # them, b, s₀): ``_mobius``
    roots: tuple = ()


class _Context:
    def __init__(self, rec):
        spec = dataclasses.replace(rec.spec, laws=rec.laws)
        self.rec = rec
        self.moments = Moments(spec, labels={r.cur: f"{r.name}_{rec.index}" for r in rec.reads})
        self.every = frozenset(rec.laws)
        self.prev = {s.prev for s in rec.states}
        self.fixed_reads = {r.cur for r in rec.reads} - self.every

    def expect(self, e):
        return sp.simplify(self.moments.expect(e, self.every))


def time_symbol(rec) -> sp.Symbol:
    return rec.step


def solve_linear(rec) -> tuple:
    """(Solved per state, the moments engine's steps); NoClosedForm where a state's
    update fits no form, or states are coupled."""
    ctx = _Context(rec)
    equations = {s.name: _equation(ctx, s) for s in rec.states}
    values, out = {}, {}
    # the symbols of every initial value: a state's value is read as their response
    # plus the forced one
    starts = set().union(*(eq.start.free_symbols for _, eq in equations.values()))
    starts -= set(rec.spec.dim_symbols.values())
    for group in _in_turn(rec, equations):
        if len(group) > 1:  # two states that read each other: through their step matrix
            paired = _pair(rec, equations, group)
            for name in group:
                s, (form, eq) = rec.state(name), equations[name]
                value, parts = paired[name]
                values[name] = value
                value, caveats = at_special_values(rec.spec, value, rec.step)
                value = _in_shape(value, s.shape)
                drive = positive_first(sp.factor(eq.drive)) + sum(
                    (b * p for p, b in eq.coupling.items()), sp.S.Zero
                )
                out[name] = Solved(
                    name,
                    eq.rate,
                    drive,
                    s.init,
                    value,
                    eq.random,
                    "pair",
                    pair=parts,
                    caveats=caveats,
                )
            continue
        (name,) = group
        s, (form, eq) = rec.state(name), equations[name]
        t = rec.step
        known = _at_earlier_step(rec, name, eq, values, out)
        forcing = eq.drive.xreplace(known) + sum(
            (
                b.xreplace(known) * values[_state_of(rec, p)].xreplace({t: t - 1})
                for p, b in eq.coupling.items()
            ),
            sp.S.Zero,
        )
        if known:  # the rate in t: (r + (t − 1) p₀)/(r + t p₀) for the Kalman gain's
            eq = dataclasses.replace(eq, rate=sp.cancel(eq.rate.xreplace(known)))
        # w_t = k w_(t−1) of the Möbius form is w_0 kᵗ, nothing for rsolve to find
        u = eq.start * eq.rate**t if eq.fixed else _rsolve(name, eq.rate, forcing, eq.start, t)
        general = FORMS[form].back(u, eq, t)
        # at t = 0 too: a later state reads it (a Möbius state in its shown form: the
        # stable one's choices between forms are comparisons, which simplify, run on a
        # later state's value, evaluated to nan comparisons)
        read = _from_fixed(u, eq, t, stable=False) if form == "mobius" else general
        values[name] = special_branches(read, eq.branches)
        # the Möbius form's value is stated in its fixed points already: simplify takes
        # seconds over their square roots and finds nothing shorter
        value = (
            special_branches(general, eq.branches, t)
            if eq.fixed
            else _readable(sp.simplify(_for_steps(values[name], t)), starts, t)
        )
        # powers of one base multiplied (y of x_t = r x + c t, y_t = r y + x read
        # r r^t r^(-1-t): 1, but 0 · inf = nan at r = 0 in the code)
        value = sp.powsimp(value, deep=True, combine="exp")
        _expressible(name, value)
        value, caveats = at_special_values(rec.spec, value, rec.step)
        value = _in_shape(value, s.shape)
        drive = positive_first(sp.factor(eq.drive)) + sum(
            (b * p for p, b in eq.coupling.items()), sp.S.Zero
        )
        # an expectation where its inputs are random, or those of a state it reads
        random = eq.random or any(out[_state_of(rec, p)].random for p in eq.coupling)
        rate = equations[name][1].rate  # as the update reads it: in the gates at t − 1
        out[name] = Solved(
            name,
            rate,
            drive,
            s.init,
            value,
            random,
            form,
            eq.fixed,
            branches=eq.branches,
            caveats=caveats,
        )
    return tuple(out[s.name] for s in rec.states), tuple(ctx.moments.steps)


def _in_shape(value, shape):
    """A state's value in the state's shape where SymPy's 0 lost it: E m_t = 0 of a
    vector m (Adam's first moment of zero-mean gradients) read 0 in the JSON, while a
    nonzero one reads c*ones(n)."""
    return ops.zeros(*shape) if shape and value == 0 else value


def _for_steps(value, t):
    """``value`` at t = 1..T, where the closed form is stated: rsolve's RisingFactorial(0,
    t) = 0·1⋯(t − 1), the mark of a rate that is 0 at t = 1 (1 − 1/t), is 0 there, and
    ratios of factorials cancel (t!/(t − 1)! = t)."""
    return sp.gammasimp(value.replace(lambda e: e == sp.RisingFactorial(0, t), lambda e: 0))


def _at_earlier_step(rec, name, eq, values, out) -> dict:
    """Each gate of ``eq`` (a state read in its rate) as its closed form at t − 1. It
    must be deterministic: E[f(p_(t−1)) x_(t−1)] is f(p_(t−1)) E[x_(t−1)] only where
    p_(t−1) is not random."""
    t = rec.step
    known = {}
    for gate in sorted(eq.gates, key=str):
        other = _state_of(rec, gate)
        if out[other].random:
            raise NoClosedForm(
                f"the update of {name} reads {other} in its rate, and {other} is random: "
                f"the expectation of a product with a function of {other} is not solved here"
            )
        known[gate] = values[other].xreplace({t: t - 1})
    return known


def _readable(value, start: set, t=None):
    """The response to the start plus the forced one (θ₀ − g η t), each factored, as a
    paper writes an optimizer's iterate; one factored term where they do not separate.
    A value in three or more powers ρᵗ (SGD's second moment: 1, (1 − a lr)ᵗ and
    (1 − a lr)^(2t)) as Σ K_ρ ρᵗ, each coefficient factored: one fraction over their
    common denominator hides which term decays how fast."""
    powers = _by_powers(value, t) if t is not None else None
    if powers is not None:
        return powers
    forced = value.xreplace({x: sp.S.Zero for x in start})
    if forced in (0, value) or forced.has(sp.nan, sp.zoo):
        return positive_first(sp.factor(value))
    return positive_first(sp.factor(value - forced)) + positive_first(sp.factor(forced))


def _by_powers(value, t):
    """Σ K_ρ ρᵗ with each K_ρ factored, where value is such a sum of three or more
    terms of distinct powers ρᵗ (a constant is 1ᵗ); None otherwise."""
    groups = _geometric_terms(value, t)
    if groups is None:
        return None
    if len([k for k in groups.values() if k != 0]) < 3 and not _over_a_power(value, t):
        return None  # b (aᵗ − bᵗ)/(a − b) reads better as it is
    return sp.Add(*[positive_first(sp.factor(k)) * b**t for b, k in groups.items() if k != 0])


def _over_a_power(value, t) -> bool:
    """Whether value multiplies a power aᵗ by one over another, bᵗ (a leaky
    integrator's (τ − dt)ᵗ/τᵗ): bᵗ overflows float64 long before the ratio's power does
    (nan from t = 103 at τ = 1000), so the terms are written in the ratio's
    ((τ − dt)/τ)ᵗ."""
    signs = {
        p.exp.could_extract_minus_sign()
        for p in value.atoms(sp.Pow)
        if t in p.exp.free_symbols and t not in p.base.free_symbols
    }
    return signs == {True, False}  # 2⁻ᵗ alone is as it was: no power to overflow


def _state_of(rec, prev) -> str:
    return next(s.name for s in rec.states if s.prev == prev)


def _equation(ctx, s) -> tuple:
    """(form, _Equation) of the first form in FORMS that fits ``s``'s update."""
    update, init = _entrywise(s, ctx.prev)
    reasons = []
    for name, form in FORMS.items():
        eq = form.equation(ctx, s, update, init)
        if isinstance(eq, _Equation):
            return name, eq
        reasons.append(eq)
    raise NoClosedForm(reasons[0])  # the linear form's reason: the one a reader expects


def _entrywise(s, prev) -> tuple:
    """(update, initial value) of one entry of ``s``: a scalar's own; a vector's where
    its update is entry by entry (SymPy's + * ** are NumPy's elementwise ones here)."""
    if not s.shape:
        return s.update, s.init
    # a tensor operation that reads no state is part of the drive (an EMA of A @ g_t):
    # each entry still reads only its own entry of the state
    opaque = sorted(
        {type(e).__name__ for e in s.update.atoms(ops.TensorOp) if e.free_symbols & prev}
    )
    if opaque:
        raise NoClosedForm(
            f"{s.name} is a {len(s.shape)}-axis state whose update is not entry by entry "
            f"({', '.join(opaque)}): closed forms are for scalars and elementwise updates"
        )
    init = s.init.replace(lambda e: type(e) in ENTRY_OF, lambda e: ENTRY_OF[type(e)])
    return s.update, init


def _linear(ctx, s, u, init):
    """u = a s_{t-1} + Σ b_k r_{k,t-1} + c with a, b free of the states but its gates
    (``_gates``): an _Equation, or the reason it is not one."""
    gates = _gates(ctx, s, u)
    free = ctx.prev - gates
    coefficients = {p: sp.expand(sp.diff(u, p)) for p in free}
    drive = u.xreplace({p: sp.S.Zero for p in free})
    affine = sp.expand(u - sum(b * p for p, b in coefficients.items()) - drive) == 0
    # a rate may read random inputs (x_t = a_t x_{t-1}): a_t is independent of
    # x_{t-1}, which only earlier draws made, so E[a_t x_{t-1}] = E[a] E[x_{t-1}]
    held = free | ctx.fixed_reads
    if not affine or any(b.free_symbols & held for b in coefficients.values()):
        return (
            f"the update of {s.name} is not linear in {s.name} and the other states with "
            "constant coefficients"
        )
    rec = ctx.rec
    varying = {r.name for r in rec.reads if r.cur in drive.free_symbols & ctx.fixed_reads}
    if varying:  # x_t with no law: the solution is a sum over the steps, not one term
        names = ", ".join(sorted(varying))
        raise NoClosedForm(
            f"{s.name}'s update reads {names}[{rec.index}], which changes with "
            f"{rec.index} and has no distribution: the solution is a sum over the steps "
            f"(give {names} a distribution for the expectation)"
        )
    read = set().union(drive.free_symbols, *(b.free_symbols for b in coefficients.values()))
    coupling = {p: ctx.expect(b) for p, b in coefficients.items() if p != s.prev and b != 0}
    return _Equation(
        ctx.expect(coefficients[s.prev]),
        coupling,
        ctx.moments.expect(drive, ctx.every),
        init,
        bool(read & ctx.every),
        gates=gates,
    )


def _gates(ctx, s, u) -> frozenset:
    """The other states that ``s``'s update reads other than as a term b r_(t−1) with a
    constant b: in its rate (the static Kalman filter's x_t = x_(t−1) + p_(t−1)/(p_(t−1)
    + r) (z_t − x_(t−1)) reads the variance p in its gain). Where such a state has a
    closed form of its own and no random input, it is a known function of t − 1 in
    ``s``'s equation (``_at_earlier_step``)."""
    return frozenset(
        p for p in ctx.prev - {s.prev} if sp.diff(u, p).free_symbols & (ctx.prev | ctx.fixed_reads)
    )


def _reciprocal(ctx, s, u, init):
    """u = a s/(b s + c), a, b, c constants: 1/s_t = (c/a) (1/s_{t-1}) + b/a, linear in
    1/s (the static Kalman variance p r/(p + r): 1/p_t = 1/p_{t-1} + 1/r)."""
    p = s.prev
    reads = {r.cur for r in ctx.rec.reads}
    parts = sp.fraction(sp.together(u))
    if u.free_symbols & ((ctx.prev - {p}) | reads) or not all(x.is_polynomial(p) for x in parts):
        return f"the update of {s.name} is not a ratio a {s.name}/(b {s.name} + c)"
    numerator, denominator = (sp.Poly(x, p) for x in parts)
    if numerator.degree() != 1 or numerator.coeff_monomial(1) != 0 or denominator.degree() != 1:
        return f"the update of {s.name} is not a ratio a {s.name}/(b {s.name} + c)"
    a = numerator.coeff_monomial(p)
    b, c = denominator.all_coeffs()
    return _Equation(sp.cancel(c / a), {}, sp.cancel(b / a), 1 / init, False)


def _mobius(ctx, s, u, init):
    """u = (α s + β)/(γ s + δ), constants, γ ≠ 0 (the scalar Kalman filter's variance
    (a² p + q) r/(a² p + q + r), predict and update in one step): a Möbius map. With
    real fixed points p₊ ≠ p₋ (γ p² + (δ − α) p − β = 0), w = (s − p₊)/(s − p₋) is
    linear: w_t = k w_(t−1), k = (γ p₋ + δ)/(γ p₊ + δ). They are real where the
    discriminant (δ − α)² + 4 β γ is >= 0 for every value of the symbols (their
    domains); otherwise the map rotates and no real form is claimed."""
    p = s.prev
    reads = {r.cur for r in ctx.rec.reads}
    parts = sp.fraction(sp.together(u))
    why = f"the update of {s.name} is not a ratio (a {s.name} + b)/(c {s.name} + d)"
    if u.free_symbols & ((ctx.prev - {p}) | reads) or not all(x.is_polynomial(p) for x in parts):
        return why
    numerator, denominator = (sp.Poly(x, p) for x in parts)
    if numerator.degree() > 1 or denominator.degree() != 1:
        return why
    alpha, beta = numerator.coeff_monomial(p), numerator.coeff_monomial(1)
    gamma, delta = denominator.all_coeffs()
    discriminant = (delta - alpha) ** 2 + 4 * beta * gamma
    if not provably_nonnegative(ctx.rec.spec, discriminant):
        # the last form, and the one the update has: its reason, not the linear one's
        raise NoClosedForm(
            f"the update of {s.name} is a Möbius map (a {s.name} + b)/(c {s.name} + d) "
            "whose fixed points are not real for every value of its symbols (the "
            f"discriminant (d − a)² + 4 b c = {sp.factor(discriminant)} is not >= 0 for "
            "all of them): it rotates, and no real closed form is claimed"
        )
    sqrt_d = sp.sqrt(discriminant)
    plus, minus = ((alpha - delta) + sqrt_d) / (2 * gamma), ((alpha - delta) - sqrt_d) / (2 * gamma)
    fixed = (plus, minus, gamma, delta)  # as the derivation shows them
    rate = _rate(minus, plus, gamma, delta)
    # a double fixed point p = (α − δ)/(2γ) where the discriminant is 0 (a = ±1, q = 0 of
    # the Kalman variance): there p± coincide, the form above is 0/0, and
    # 1/(f(s) − p) = 1/(s − p) + c with c = γ/(γ p + δ) = 2γ/(α + δ)
    t = ctx.rec.step
    branches = []
    # γ = 0 (a = 0 of the Kalman variance of an AR process: a white-noise state; h = 0,
    # nothing observed): the map is affine, s_t = k s_(t−1) + c with k = α/δ, c = β/δ,
    # and the forms here divide by γ. One branch per factor of γ that can vanish, each at
    # its own root, and first: the double fixed point's form divides by γ too (γ = a² h²
    # of a Kalman variance: the mask on γ ≈ 0 at h = 0 gave the a = 0 branch's q r/(q + r),
    # and the discriminant's, also 0 at h = 0, gave p₀ for the growing p₀ + q t)
    try:
        factors = within(SECONDS_TO_FACTOR, sp.factor, gamma)
    except TimeLimit:
        factors = gamma  # one branch for γ whole, where it has one root
    for factor in sp.Mul.make_args(factors):
        base = factor.base if isinstance(factor, sp.Pow) else factor
        found = vanishing(ctx.rec.spec, base) if base.free_symbols else None
        if found is None:
            continue
        x, root = found
        k, c = ((v / delta).xreplace({x: root}) for v in (alpha, beta))
        s0 = init.xreplace({x: root})
        # kᵗ at k = 0 is rsolve's mark RisingFactorial(0, t): 1 at t = 0, 0 from t = 1
        power = sp.RisingFactorial(0, t) if k == 0 else k**t
        affine = s0 + c * t if k == 1 else power * s0 + c * (1 - power) / (1 - k)
        if affine.has(sp.nan, sp.zoo):
            continue
        # its own 0/0: k = a² is 1 at a = ±1 of the h = 0 branch (p₀ + q t)
        affine, _ = at_special_values(ctx.rec.spec, affine, t)
        branches.append((vanishes(base, x, root), affine))
    # a double fixed point p = (α − δ)/(2γ) where the discriminant is 0 (a = ±1, q = 0 of
    # the Kalman variance): there p± coincide, the form above is 0/0, and
    # 1/(f(s) − p) = 1/(s − p) + c with c = γ/(γ p + δ) = 2γ/(α + δ)
    if can_vanish(ctx.rec.spec, discriminant):
        p, c = (alpha - delta) / (2 * gamma), 2 * gamma / (alpha + delta)
        # tested as ((p₊ − p₋)/2)² = D/(4γ²) ≈ 0, relative to the fixed points' size: D
        # itself is ∝ h² of a Kalman variance, under the absolute 1.5e-8 at h = 1e-5,
        # where the fixed points are ±√(q r)/h apart and this branch gave p₀ for p₀ + q t
        mask = vanishes(discriminant / (4 * gamma**2), discriminant, sp.S.Zero)
        branches.append((mask, p + 1 / (1 / (init - p) + c * t)))
    start = (init - plus) / (init - minus)
    # α − δ with its terms grouped where they cancel: a² r − q − r is r (a² − 1) − q,
    # exact at a = 1, where the difference of r and r left q = 1e-18 to rounding of
    # size 1e-10 (the fixed points ±√D/(2γ) 6e-5 off, a variance 3e-3 off); the
    # computed roots and rate use it, the shown ones keep the spec's order
    b = _grouped(alpha - delta)
    sqrt_d = sp.sqrt(b**2 + 4 * beta * gamma)
    if provably_nonnegative(ctx.rec.spec, b):
        sign = sp.S.One
    elif provably_nonnegative(ctx.rec.spec, -b):
        sign = sp.S.NegativeOne
    else:  # one `where` on it around the value (_from_fixed), not one per root
        sign = sp.Dummy("sign")
    # the fixed points as computed, without cancellation (Numerical Recipes §5.6): the far
    # one (b ± √D)/(2γ) with the sign of b, the near one −2β/(b ± √D) through their
    # product −β/γ. The shown ((α − δ) ∓ √D)/(2γ) loses the near one as γ → 0 (a Kalman
    # variance at h = 1e-7: 2e-3 off). The value is the same with p₊ and p₋ swapped, so
    # which of the two each is does not matter
    far = b + sign * sqrt_d
    return _Equation(
        rate,
        {},
        sp.S.Zero,
        start,
        False,
        fixed,
        branches=tuple(branches),
        roots=(
            far / (2 * gamma),
            -2 * beta / far,
            sign,
            b,
            init,
            _stable_rate(ctx, alpha, beta, gamma, delta, sqrt_d),
        ),
    )


@dataclass(frozen=True)
class _StableRate:
    """The Möbius form's rate without cancellation (``_stable_rate``)."""

    sigma: Any  # the sign of S = α + δ
    kappa: Any  # 4 det/(S + σ√D)²: k where b has the sign σ, 1/k otherwise
    log_kappa: Any  # log κ (as log1p(−2σ√D/(S + σ√D)) near 1), where det >= 0; else None
    spread: Any  # √D/γ: p₊ − p₋ where b >= 0 (their roles swap with b's sign)


def _grouped(e):
    """``e`` collected in the one symbol that leaves it the fewest terms (r (a² − 1) −
    q), or as it is: a sum whose terms cancel, written with the cancelling ones
    together."""
    e = sp.expand(e)
    forms = [e] + [sp.collect(e, x) for x in sorted(e.free_symbols, key=sp.default_sort_key)]
    # the fewest terms (the most grouped), then the fewest operations
    return min(forms, key=lambda f: (len(sp.Add.make_args(f)), sp.count_ops(f)))


def _stable_rate(ctx, alpha, beta, gamma, delta, sqrt_d):
    """The rate k = (γ p₋ + δ)/(γ p₊ + δ) without cancellation, or None where the sign σ
    of S = α + δ is not known. The two γ p + δ are (S ± √D)/2 with product det = αδ − βγ;
    the shown k divides by the one that cancels, (S − σ√D)/2, which is 0 in float64 for
    a precise sensor (a Kalman variance at r = 1e-8 q: k = inf, p_t nan). κ = 4 det/(S +
    σ√D)² is the rate of magnitude at most 1, k or 1/k, and 1 − κᵗ is
    −expm1(t log1p(κ − 1)) with κ − 1 = −2σ√D/(S + σ√D): near a double fixed point
    (κ → 1) 1 − κᵗ cancelled too (q = 1e-14 at a = 1: 3e-7 off)."""
    spec = ctx.rec.spec
    S = alpha + delta
    if provably_nonnegative(spec, S):
        sigma = sp.S.One
    elif provably_nonnegative(spec, -S):
        sigma = sp.S.NegativeOne
    else:
        return None
    det = sp.expand(alpha * delta - beta * gamma)
    try:  # a² r² for the Kalman variance, written without its cancelling terms
        det = within(SECONDS_TO_FACTOR, sp.factor, det)
    except TimeLimit:
        pass
    big = S + sigma * sqrt_d
    kappa = 4 * det / big**2
    log_kappa = None
    if provably_nonnegative(spec, det):
        # log1p(κ − 1) where κ is near 1; log κ where it is small, as κ − 1 rounds to
        # −1 or below there (log1p: nan) and log κ's absolute error is then what counts
        log_kappa = where(
            kappa <= sp.Rational(1, 2), sp.log(kappa), log1p(-2 * sigma * sqrt_d / big)
        )
    return _StableRate(sigma, kappa, log_kappa, sqrt_d / gamma)


def _rate(near, far, gamma, delta):
    """k = (γ p₋ + δ)/(γ p₊ + δ), the rate of the ratio of the distances to the fixed
    points."""
    rate = (gamma * near + delta) / (gamma * far + delta)
    if rate.is_number:  # the continued fraction 1/(1 + x): (3 − √5)/2... not a ratio of sums
        rate = sp.radsimp(rate)
    return rate


def special_branches(value, branches, t=None):
    """``value`` with a Möbius map's own values where its form is 0/0 (``_mobius``):
    where(mask, there, value) for each (mask, there); with ``t``, each as stated for
    t = 1..T (``_for_steps``: q r/(q + r), not 0ᵗ p₀ + q r (1 − 0ᵗ)/(q + r))."""
    for mask, there in reversed(branches):
        value = where(mask, there if t is None else _for_steps(there, t), value)
    return value


def _from_fixed(w, eq, t, stable=True):
    """s from w = (s − p₊)/(s − p₋) = w₀ kᵗ, over (s₀ − p₋): (p₊ (s₀ − p₋) − p₋ (s₀ − p₊)
    kᵗ)/((s₀ − p₋) − (s₀ − p₊) kᵗ), as the fixed-point form is written (and defined
    where s₀ = p₋); with ``stable`` (and ``_stable_rate`` found the sign it needs), the
    same value in forms that do not cancel in floating point, for its code."""
    plus, minus, sign, b, s0, rate = eq.roots
    stable = rate if stable else None

    def value(at):  # with the sign of b ``at`` (the fixed points' roles follow it)
        p, m = plus.xreplace({sign: at}), minus.xreplace({sign: at})
        if stable is None:
            away, near = s0 - p, s0 - m
            power = _rate(m, p, *eq.fixed[2:]) ** t
            return (p * near - m * away * power) / (near - away * power)
        # the ratio (s − near)/(s − far) to the attracting and repelling fixed points is
        # (s₀ − near)/(s₀ − far) κᵗ, so with d = near − far and the denominator
        # D_t = (s₀ − far) − (s₀ − near) κᵗ = d + (s₀ − near)(1 − κᵗ):
        # s_t − near = d (s₀ − near) κᵗ/D_t and s_t − far = d (s₀ − far)/D_t.
        # D_t in whichever of its two forms adds terms of one sign, and s_t from
        # whichever fixed point the sum cancels less from: the shown form cancelled to
        # 0 where kᵗ → 0 (a precise sensor: nan), near a double fixed point, and from
        # p₀ = 1e-6 toward 0.75e6 (a = 2, 1e-4 off)
        power = stable.kappa**t
        gone = (  # 1 − κᵗ
            -expm1(t * stable.log_kappa) if stable.log_kappa is not None else 1 - power
        )
        spread = at * stable.spread  # p − m
        near, far, d = (p, m, spread) if at == stable.sigma else (m, p, -spread)
        den = where((s0 - near) * d >= 0, d + (s0 - near) * gone, (s0 - far) - (s0 - near) * power)
        to_near, to_far = d * (s0 - near) * power / den, d * (s0 - far) / den
        return where(
            sp.Abs(near) + sp.Abs(to_near) <= sp.Abs(far) + sp.Abs(to_far),
            near + to_near,
            far + to_far,
        )

    if isinstance(sign, sp.Dummy):
        return where(b >= 0, value(sp.S.One), value(sp.S.NegativeOne))
    return value(sign)


@dataclass(frozen=True)
class _Form:
    equation: object  # (ctx, state, update, init) -> _Equation, or why it does not fit
    back: object  # (the solved u_t, its _Equation, t) -> s_t


# Which quantity of a state is linear in its past, tried in this order
FORMS = {
    "linear": _Form(_linear, lambda u, eq, t: u),
    "reciprocal": _Form(_reciprocal, lambda u, eq, t: 1 / u),
    "mobius": _Form(_mobius, _from_fixed),
}


def _in_turn(rec, equations) -> list:
    """The states in groups, in an order where each group reads only itself and those
    before it: one state, or two that read each other (heavy ball: v reads w, w reads
    v; ``_pair``); a larger coupled group has no closed form here."""
    names = [s.name for s in rec.states]
    edges = [
        (name, _state_of(rec, p))
        for name, (_, eq) in equations.items()
        for p in (*eq.coupling, *eq.gates)
    ]
    order = []
    for group in strongly_connected_components((names, edges)):  # the read ones first
        group = sorted(group, key=names.index)
        if len(group) > 2:
            raise NoClosedForm(_coupled(rec, equations, group))
        order.append(group)
    return order


def _pair(rec, equations, group) -> dict:
    """Two states that read each other, u_t = M u_(t−1) + c with M and c constant: from
    the fixed point u* = (I − M)⁻¹ c, u_t = u* + Mᵗ (u_0 − u*), and by Cayley–Hamilton
    Mᵗ = s_t M − Δ s_(t−1) I, s_t = (λ₊ᵗ − λ₋ᵗ)/(λ₊ − λ₋) for the eigenvalues
    λ± = (τ ± √D)/2 (τ = tr M, Δ = det M, D = τ² − 4Δ). Written real: where D > 0,
    (λ₊ᵗ − λ₋ᵗ)/√D; where D < 0 (λ± = √Δ e^(±iθ)), 2 Δ^(t/2) sin(tθ)/√(−D) with
    θ = π/2 − atan(τ/√(−D)); a `where` on D's sign where the domains do not decide it
    (heavy ball on a quadratic: its iterates oscillate for a large momentum). Both
    branches take |D| and |Δ| so that neither is nan. A drive or rate that reads t, or
    a coupling to a state outside the pair, is no closed form here."""
    t = rec.step
    (fx, ex), (fy, ey) = (equations[n] for n in group)
    px, py = (rec.state(n).prev for n in group)
    if (fx, fy) != ("linear", "linear") or any(
        set(eq.coupling) - {px, py} or eq.gates or eq.drive.has(t) or eq.rate.has(t)
        for eq in (ex, ey)
    ):
        raise NoClosedForm(_coupled(rec, equations, group))
    a, b = ex.rate, ex.coupling.get(py, sp.S.Zero)
    c, d = ey.coupling.get(px, sp.S.Zero), ey.rate
    tau, delta = sp.simplify(a + d), sp.simplify(a * d - b * c)
    drives = [ex.drive, ey.drive]
    if all(sp.simplify(x) == 0 for x in drives):
        fixed = [sp.S.Zero, sp.S.Zero]
    else:
        det = sp.factor(1 - tau + delta)  # det(I − M)
        if det == 0:
            raise NoClosedForm(
                f"the states {', '.join(group)} read each other with a step matrix that has "
                "the eigenvalue 1: the forced part grows with t, and is not solved here"
            )
        # factored where that is no longer: heavy ball's u* = (I − M)⁻¹ c read
        # (a c lr mu + a c lr (1 − mu))/(a lr) for its minimizer c
        fixed = [
            factored(((1 - d) * drives[0] + b * drives[1]) / det),
            factored((c * drives[0] + (1 - a) * drives[1]) / det),
        ]
    w0 = [ex.start - fixed[0], ey.start - fixed[1]]
    moved = [a * w0[0] + b * w0[1], c * w0[0] + d * w0[1]]
    disc = sp.simplify(tau**2 - 4 * delta)
    kind = (
        "real"
        if provably_nonnegative(rec.spec, disc)
        else "rotating"
        if provably_nonnegative(rec.spec, -disc)
        else "both"
    )

    def s(k, tau=tau, delta=delta, disc=disc, scaled=False):
        """s_k; ``scaled``: Δ s_k, which in the Jordan case (Δ = (τ/2)²) is written
        k (τ/2)^(k + 1): k (τ/2)^(k − 1) at k = 0 and τ = 0 was 0·0⁻¹ = nan (the
        nilpotent step matrix of Nesterov at lr = 1/a, whose θ_1 was nan)."""
        factor = delta if scaled else 1
        root = sp.sqrt(sp.Abs(disc))
        real = factor * (((tau + root) / 2) ** k - ((tau - root) / 2) ** k) / root
        theta = sp.pi / 2 - sp.atan(tau / root)
        rotating = factor * 2 * sp.Abs(delta) ** (k / 2) * sp.sin(k * theta) / root
        # a repeated eigenvalue τ/2 (heavy ball at critical damping, the tuning that
        # converges fastest): s_k = k (τ/2)^(k − 1), the limit of both, which are 0/0 there
        jordan = k * (tau / 2) ** (k + 1 if scaled else k - 1)
        if disc.is_number:
            return jordan if disc == 0 else real if disc > 0 else rotating
        split = (
            where(sp.StrictGreaterThan(disc, 0), real, rotating)
            if kind == "both"
            else real
            if kind == "real"
            else rotating
        )
        # the limit's error grows as t² |D|: 7.5e-5 at t = 2000 inside a window of √ε
        # that ignored t (heavy ball near critical damping, T = 2000)
        return where(vanishes(disc, disc, 0, 0, t), jordan, split)

    return {
        name: (
            fixed[i] + s(t) * moved[i] - s(t - 1, scaled=True) * w0[i],
            (tau, delta, disc, fixed[i], moved[i], w0[i], s, tuple(group)),
        )
        for i, name in enumerate(group)
    }


def _coupled(rec, equations, group) -> str:
    """Why a coupled group is left: its step matrix, whose power M^t is the solution."""
    prevs = [rec.state(n).prev for n in group]
    rows = []
    for n in group:
        eq = equations[n][1]
        rows.append([eq.rate if p == rec.state(n).prev else eq.coupling.get(p, 0) for p in prevs])
    m = sp.Matrix(rows)
    return (
        f"the states {', '.join(group)} read each other: ({', '.join(group)})_t = M "
        f"({', '.join(group)})_(t-1) + c with M = {m.tolist()}, whose solution is the "
        "matrix power M^t; a matrix power in a symbolic t is not solved in this version"
    )


def _rsolve(name, rate, forcing, start, t):
    if rate == 0:
        return _unread(name, forcing, start, t)
    f = sp.Function("f")
    equation = f(t) - rate * f(t - 1) - forcing
    failed = ""
    try:
        value = within(SECONDS_TO_SOLVE, sp.rsolve, equation, f(t), {f(0): start})
    except TimeLimit:
        raise NoClosedForm(f"solving for {name}_t took over {SECONDS_TO_SOLVE:g} s") from None
    # a form rsolve does not take; or one it fails inside (v_t = v_(t-1) + m_(t-1) with
    # m_t = (1 − b^t)/(1 − b): rsolve_hyper's AttributeError), where a sum may do; or
    # one it gives up on (th_t = th_(t−1) − lr g/t: the sum is −lr g H_t)
    except (ValueError, NotImplementedError, AttributeError, TypeError, IndexError) as exc:
        value, failed = None, f" ({exc})"
    for fallback in (_geometric, _summed, _telescoped):
        if value is None:
            value = fallback(rate, forcing, start, t)
    if value is None:
        raise NoClosedForm(f"sympy.rsolve found no closed form for {name}_t{failed}")
    _check(name, value, rate, forcing, start, t)
    return value


def _expressible(name, value) -> None:
    """NoClosedForm where the closed form (as shown: rsolve's RisingFactorial(0, t) of
    Polyak's average simplifies away) holds a function the language does not write."""
    foreign = unwritten(value)
    if foreign:  # s_t = t s_(t−1) is s_0 t!: no function of the language, no code
        raise NoClosedForm(
            f"the closed form for {name}_t holds {', '.join(foreign)}, which the expression "
            f"language and the generated code do not have: {name}_t = {value}"
        )


def _unread(name, forcing, start, t):
    """x_t = f(t) for an update that does not read x (Adam's bias-corrected m̂_t =
    (β₁ m_(t−1) + (1 − β₁) g)/(1 − β₁ᵗ)): f simplified (to g: rsolve gave up on it),
    x_0 at t = 0. RisingFactorial(0, t), 1 at t = 0 and 0 after, picks between them, as
    it marks rsolve's own answers for a rate 0 at t = 1 (``_for_steps`` sets it to 0)."""
    try:
        value = within(SECONDS_TO_SOLVE, sp.simplify, forcing)
    except TimeLimit:
        value = forcing
    first = sp.RisingFactorial(0, t)
    out = first * start + (1 - first) * value
    _check(name, out, sp.S.Zero, forcing, start, t)
    return out


def _geometric(rate, forcing, start, t):
    """x_t = r x_(t−1) + Σⱼ cⱼ ρⱼᵗ for constants r, cⱼ, ρⱼ (a constant is c 1ᵗ): the sum
    Σ_(k=1..t) r^(t−k) ρᵏ is ρ (ρᵗ − rᵗ)/(ρ − r), or t rᵗ where ρ = r, so
    x_t = rᵗ x_0 + Σⱼ cⱼ that. SGD's second moment on a quadratic, r = (1 − a lr)² with a
    forcing in (1 − a lr)ᵗ, took sympy.summation 15 s (rsolve fails inside); this is
    the textbook's geometric series, checked like rsolve's answer. None where the
    forcing is not such a sum."""
    groups = None if rate.has(t) else _geometric_terms(forcing, t)
    if groups is None:
        return None
    r = sp.factor(rate)
    value = r**t * start
    for base, coeff in groups.items():
        rho = sp.factor(base)
        if sp.simplify(rho - r) == 0:
            value += coeff * t * r**t
        else:
            value += coeff * rho * (rho**t - r**t) / (rho - r)
    return value


def _geometric_terms(e, t) -> dict | None:
    """{ρ: c}, e = Σ c ρᵗ (a term free of t has ρ = 1), or None where a term is no such
    power."""
    groups: dict = {}
    for term in sp.Add.make_args(sp.expand(e, power_base=False, mul=True, multinomial=False)):
        coeff, dep = term.as_independent(t, as_Add=False)
        power = _base_of(dep, t)
        if power is None:
            return None
        base, extra = power
        groups[base] = groups.get(base, 0) + coeff * extra
    return groups


def _base_of(dep, t):
    """(ρ, c) with dep = c ρᵗ (ρ^(t − 1) is ρ⁻¹ ρᵗ, x^(2t) is (x²)ᵗ; (1, 1) for a dep
    of 1), or None."""
    base, extra = sp.Integer(1), sp.Integer(1)
    for factor in sp.Mul.make_args(dep):
        if factor == 1:
            continue
        if not isinstance(factor, sp.Pow) or factor.base.has(t):
            return None
        exponent = sp.expand(factor.exp)  # k t + c: (ρᵏ)ᵗ ρᶜ
        k = exponent.coeff(t)
        shift = exponent - k * t
        if k == 0 or k.has(t) or shift.has(t):
            return None
        base, extra = base * factor.base**k, extra * factor.base**shift
    return base, extra


def _summed(rate, forcing, start, t):
    """x_t = a x_(t−1) + f(t) for a constant rate a as aᵗ x_0 + Σ_(k=1..t) a^(t−k) f(k),
    by sympy.summation within SECONDS_TO_SOLVE, or None (``_generic_piece``): rate 1 (a
    sum), and a forcing in aᵗ that rsolve fails inside (an EMA of g_t times the momentum
    it updates: E c_t = b E c_(t−1) + A + B b^(t−1), whose answer holds t bᵗ)."""
    if rate.has(t):
        return None
    k = sp.Dummy("k", integer=True, positive=True)
    term = forcing.xreplace({t: k}) * (rate ** (t - k) if rate != 1 else 1)
    # a state read at t − 1 whose own update does not read it (a_t = g_t) is a_0 at t = 1
    # only: its mark RisingFactorial(0, k − 1) is 1 at k = 1, 0 after. The sum is the
    # generic term's plus the first term's difference, for t >= 1 (the mark 1 − R(0, t))
    mark = sp.RisingFactorial(0, k - 1)
    first = sp.S.Zero
    if term.has(mark):
        generic = term.xreplace({mark: sp.S.Zero})
        first = (term - generic).xreplace({k: 1}) * (1 - sp.RisingFactorial(0, t))
        term = generic
    total = _step_sum(term, k, t)
    if total is None:
        return None
    value = rate**t * start + total
    try:  # the mark kept as it is: simplify writes R(0, t) as a factorial of −t
        return within(SECONDS_TO_SOLVE, sp.simplify, value) + first
    except TimeLimit:
        return value + first


def _telescoped(rate, forcing, start, t):
    """x_t = (d(t − 1)/d(t)) x_(t−1) + f(t) for a polynomial d (Polyak's running average
    a_t = a_(t−1) + (θ_(t−1) − a_(t−1))/t, rate (t − 1)/t, which rsolve fails inside):
    u_t = d(t) x_t adds up, u_t = u_0 + Σ_(k=1..t) d(k) f(k), by sympy.summation within
    SECONDS_TO_SOLVE. Where d(0) = 0 the rate is 0 at t = 1 and x_0 is read only there:
    RisingFactorial(0, t) (1 at t = 0, 0 after; _for_steps) marks it, and keeps the
    division by d(t) away from t = 0. None for any other rate."""
    num, den = sp.fraction(sp.together(rate))
    if not den.has(t) or not den.is_polynomial(t) or sp.expand(num - den.xreplace({t: t - 1})):
        return None
    k = sp.Dummy("k", integer=True, positive=True)
    total = _step_sum((den * forcing).xreplace({t: k}), k, t)
    if total is None:
        return None
    first = sp.RisingFactorial(0, t)
    at_zero = den.xreplace({t: 0})
    return first * start + (1 - first) * (at_zero * start + total) / (den + first)


def _step_sum(term, k, t):
    """Σ_(k=1..t) term by sympy.summation within SECONDS_TO_SOLVE, or None where it takes
    longer, fails, or leaves a Sum or a Piecewise (``_generic_piece`` first)."""
    for shift in SUM_SHIFTS:
        # Σ_(k=1..t) 1/(k + 1) is left a Sum by SymPy; as Σ_(k=2..t+1) 1/k it is
        # H_(t+1) − 1 (SGD with lr/(t + 1) steps)
        try:
            total = within(
                SECONDS_TO_SOLVE,
                sp.summation,
                term.xreplace({k: k - shift}),
                (k, 1 + shift, t + shift),
            )
        except (TimeLimit, ValueError, NotImplementedError, AttributeError, TypeError):
            return None
        total = _generic_piece(total)
        if not total.has(sp.Sum, sp.Piecewise):
            return total
    return None


SUM_SHIFTS = (0, 1, 2, -1)  # the index shifts a sum is tried at


def _generic_piece(total):
    """A sum SymPy split at a parameter's single value (Σ b^k: t where b = 1) as the
    generic piece, the answer for every other value."""
    return total.replace(
        lambda e: (
            isinstance(e, sp.Piecewise)
            and all(isinstance(c, sp.Eq) for _, c in e.args[:-1])
            and e.args[-1].cond is sp.true
        ),
        lambda e: e.args[-1].expr,
    )


def _check(name, value, rate, forcing, start, t) -> None:
    """rsolve's answer at t = 0..CHECKED_STEPS against the recurrence, each symbol at a
    rational of its own (exact): a wrong answer is no closed form, not a claim."""
    free = sorted((value.free_symbols | forcing.free_symbols | rate.free_symbols) - {t}, key=str)
    at = {x: sp.Rational(2 * i + 3, 4 * i + 7) for i, x in enumerate(free)}
    residues = [value.xreplace({t: 0}) - start]
    residues += [
        (value - rate * value.xreplace({t: t - 1}) - forcing).xreplace({t: k})
        for k in range(1, CHECKED_STEPS + 1)
    ]
    if not all(_vanishes_at(name, r.xreplace(at)) for r in residues):
        raise NoClosedForm(f"sympy.rsolve's answer for {name}_t does not satisfy the recurrence")


def _vanishes_at(name, residue) -> bool:
    """Whether a residue at rationals is 0: to DIGITS digits (a wrong answer is off by
    O(1)), or, where it is no number then, simplified. Each within SECONDS_TO_CHECK:
    simplify alone ran without bound on a Kalman gain k_t = (p + q)/(p + q + r) of a
    Möbius p_t (nested radicals to the t-th power: past 250 s)."""
    try:
        value = within(SECONDS_TO_CHECK, sp.N, residue, DIGITS)
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            return False  # 0/0 at the rationals: unchecked, so not claimed
        if value.is_number:
            return bool(abs(value) < sp.Float(10) ** (-DIGITS // 2))
        return within(SECONDS_TO_CHECK, sp.simplify, residue) == 0
    except TimeLimit:
        raise NoClosedForm(
            f"the closed form for {name}_t could not be checked against the recurrence "
            f"within {SECONDS_TO_CHECK:g} s a step"
        ) from None
