"""Linear recurrences solved for t (shared/spec-format.md, "Recurrences": ``closed_form``).

A scalar state updated as s_t = a_t s_{t-1} + c_t, with a free of the states and of the
step's inputs without a law, has E[s_t] = E[a] E[s_{t-1}] + E[c] when the inputs are
independent and identically distributed over the steps (or constant): a_t is drawn
after s_{t-1} is made, so the two are independent; a first-order linear recurrence
with constant coefficients, which ``sympy.rsolve`` solves under a time limit. Adam's
first moment m_t = β₁ m_{t-1} + (1 − β₁) g_t from m_0 = 0 gives E[m_t] = (1 − β₁ᵗ) E[g]:
the bias its correction divides out. E[c] comes from the moments engine (its steps are
kept).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._moments import Moments

SECONDS_TO_SOLVE = 5.0


@dataclass(frozen=True)
class Solved:
    state: str
    rate: object  # a
    drive: object  # E[c]
    start: object  # E[s_0]
    value: object  # E[s_t] (s_t without random inputs), in t
    random: bool  # whether the inputs are random (the value is an expectation)


def time_symbol(rec) -> sp.Symbol:
    return sp.Symbol(rec.index, integer=True, nonnegative=True)


def solve_linear(rec) -> tuple:
    """(Solved per state, the moments engine's steps); NoClosedForm where a state's
    update is not linear with constant coefficients."""
    spec = dataclasses.replace(rec.spec, laws=rec.laws)
    moments = Moments(spec, labels={r.cur: f"{r.name}_{rec.index}" for r in rec.reads})
    every = frozenset(rec.laws)
    t = time_symbol(rec)
    prev = {s.prev for s in rec.states}
    reads = {r.cur for r in rec.reads}
    out = []
    for s in rec.states:
        if s.shape:
            raise NoClosedForm(
                f"{s.name} is a {len(s.shape)}-axis state; closed forms are for scalars"
            )
        u = s.update
        rate = sp.simplify(sp.diff(u, s.prev))
        drive = u.xreplace({p: 0 for p in prev})
        linear = sp.expand(u - rate * s.prev - drive) == 0
        # a rate may read random inputs (x_t = a_t x_{t-1}): a_t is independent of
        # x_{t-1}, which only earlier draws made, so E[a_t x_{t-1}] = E[a] E[x_{t-1}]
        fixed_reads = reads - every
        if not linear or rate.free_symbols & (prev | fixed_reads) or drive.free_symbols & prev:
            raise NoClosedForm(
                f"the update of {s.name} is not linear in {s.name} with a constant rate "
                "(or it couples states)"
            )
        varying = {r.name for r in rec.reads if r.cur in drive.free_symbols and r.cur not in every}
        if varying:  # x_t with no law: the solution is a sum over the steps, not one term
            names = ", ".join(sorted(varying))
            raise NoClosedForm(
                f"{s.name}'s update reads {names}[{rec.index}], which changes with "
                f"{rec.index} and has no distribution: the solution is a sum over the steps "
                f"(give {names} a distribution for the expectation)"
            )
        mean_drive = moments.expect(drive, every)
        random = bool((drive.free_symbols | rate.free_symbols) & every)
        rate = sp.simplify(moments.expect(rate, every))
        start = s.init
        f = sp.Function("f")
        equation = f(t) - rate * f(t - 1) - mean_drive
        try:
            value = within(SECONDS_TO_SOLVE, sp.rsolve, equation, f(t), {f(0): start})
        except TimeLimit:
            raise NoClosedForm(f"solving for {s.name}_t took over {SECONDS_TO_SOLVE:g} s") from None
        if value is None:
            raise NoClosedForm(f"sympy.rsolve found no closed form for {s.name}_t")
        value = positive_first(sp.factor(sp.simplify(value)))
        out.append(
            Solved(s.name, rate, positive_first(sp.factor(mean_drive)), start, value, random)
        )
    return tuple(out), tuple(moments.steps)


def positive_first(e):
    """-μ(β^t − 1) as μ(1 − β^t), b/(b − 1) as −b/(1 − b): each factor (or odd power of
    one) that is a sum with a negative constant negated, and the sign taken out, as a
    paper writes a bias correction."""
    sign, kept = 1, []
    factors = list(sp.Mul.make_args(e))
    # (-1)**t (c η - 1)**t as (1 - c η)**t: gradient descent's factor, as a paper has it
    for f in [f for f in factors if isinstance(f, sp.Pow) and f.base == -1]:
        paired = [
            g
            for g in factors
            if isinstance(g, sp.Pow) and g.exp == f.exp and isinstance(g.base, sp.Add)
        ]
        if paired and f in factors:
            factors.remove(f)
            factors[factors.index(paired[0])] = (-paired[0].base) ** f.exp
    for f in factors:
        if f == -1:
            sign = -sign
        elif isinstance(f, sp.Add) and f.as_coeff_Add()[0] < 0:
            sign, kept = -sign, kept + [-f]
        elif _odd_power_of_negative_sum(f):  # 1/(b - 1) as -1/(1 - b)
            sign, kept = -sign, kept + [(-f.base) ** f.exp]
        else:
            kept.append(f)
    return sign * sp.Mul(*kept)


def _odd_power_of_negative_sum(f) -> bool:
    return (
        isinstance(f, sp.Pow)
        and isinstance(f.base, sp.Add)
        and f.base.as_coeff_Add()[0] < 0
        and f.exp.is_integer
        and f.exp.is_odd
    )
