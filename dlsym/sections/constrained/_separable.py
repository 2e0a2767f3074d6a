"""Separable stationarity: when x enters grad L only elementwise, it is solved entry by
entry as a scalar equation, clipped at a bound x >= l (water-filling, sparsemax), and
normalizing multipliers are solved where the sum allows it (the Gibbs form of maximum
entropy)."""

from __future__ import annotations

import sympy as sp

from dlsym.calculus._affine import NoClosedForm, as_scalar, elementwise_in, roots
from dlsym.calculus._convexity import provably_nonnegative
from dlsym.calculus._simplify import simplify
from dlsym.expr import _ops as ops
from dlsym.sections.constrained._show import Name, Rel, Rows, Seq
from dlsym.sections.constrained._solution import Solution


def linear_sums(alg, e):
    """sum() is linear: pull scalar factors and sums of terms out of it, so that
    ``sum(exp(-1 - nu) exp(a))`` becomes ``exp(-1 - nu) sum(exp(a))``."""

    def rule(n):
        if not (isinstance(n, ops.tsum) and len(n.args) == 1):
            return n
        body = sp.expand(n.args[0], power_exp=True, mul=True, multinomial=False)
        terms = body.args if isinstance(body, sp.Add) else (body,)
        out = 0
        for t in terms:
            c, rest = alg.split_scalar(t) if alg.shape(t) else (t, None)
            out += c * (
                alg.reduce_sum(rest) if rest is not None else ops.size(alg.shape(n.args[0]))
            )
        return out

    def entry_rule(n):
        # x[i] is linear too: (c - nu1 e_0 + 2 nu1 e_1)[1] is c[1] + 2 nu1, which
        # sympy can solve for nu1 (as an opaque entry(...) it cannot)
        body, idx = n.args[0], n.args[1:]
        if len(idx) != 1 or len(alg.shape(body)) != 1:
            return n
        body = sp.expand(body, power_exp=False, mul=True, multinomial=False)
        out = 0
        for t in body.args if isinstance(body, sp.Add) else (body,):
            c, rest = alg.split_scalar(t)
            if alg.shape(rest) == ():  # a scalar broadcast over the vector
                out += c * rest
            elif isinstance(rest, ops.unit):
                out += c * (1 if rest.args[0] == idx[0] else 0)
            elif isinstance(rest, ops.ones):
                out += c
            else:
                out += c * ops.entry(rest, *idx)
        return out

    e = e.replace(lambda n: isinstance(n, ops.tsum), rule)
    return e.replace(lambda n: isinstance(n, ops.entry), entry_rule)


def entry_root(spec, G0, x, v, admissible: str, shown=lambda e: e):
    """The one root of an entry's stationarity condition G0 = 0 in x, the solvers'
    shared step: the root minimizes L in that entry only where G0's slope in x is
    nonnegative (L convex in it) for ``admissible`` multipliers. ``shown`` turns
    a stand-in back into the user's symbol for the message. Solved within a time limit
    (roots); no single root in closed form is NoClosedForm."""
    slope = sp.diff(G0, x)
    if not provably_nonnegative(spec, slope):
        raise NoClosedForm(
            f"stationarity's slope in an entry of {v}, {shown(slope)}, is not "
            f"nonnegative for {admissible} (L may not be convex in it)"
        )
    found = roots(G0, x)
    if found is None or len(found) != 1:
        n = "no" if found is None else len(found)
        raise NoClosedForm(f"stationarity has {n} solutions for an entry of {v} in closed form")
    return found[0]


def gibbs(e):
    """exp(u) / sum(exp(u)) is softmax(u)."""

    def rule(n):
        exps = [f for f in n.args if isinstance(f, sp.exp)]
        for f in exps:
            den = sp.Pow(ops.tsum(f), -1)
            if den in n.args:
                rest = [g for g in n.args if g not in (f, den)]
                return sp.Mul(*rest) * ops.softmax(f.args[0])
        return n

    return e.replace(lambda n: isinstance(n, sp.Mul), rule)


# equality constraints whose multipliers are solved one at a time in terms of the others
# (x[i] - 2 x[i+1] == b_i): each substitution grows the rest, so past this many the
# closed form is not attempted (the numeric optimum is still checked)
MAX_COUPLED = 8


def _clipped(x, level, slope):
    """max(x, l) for a lower bound (slope −1), min(x, u) for an upper one, or x itself
    where the bound provably never binds (D* = p/(p + q) inside 0 <= D <= 1 for
    positive p, q: its difference from each end has a known sign)."""
    gap = sp.together(x - level)
    if (gap.is_nonnegative if slope == -1 else gap.is_nonpositive) is True:
        return x
    return sp.Max(x, level) if slope == -1 else sp.Min(x, level)


def solve_separable(problem, grads, show: Rows) -> Solution:
    p, alg = problem, problem.spec.algebra
    if len(p.variables) != 1 or len(p.base.symbol(p.variables[0]).shape) != 1:
        raise NoClosedForm("not a single vector variable")
    v = p.variables[0]
    x = p.base.symbol(v).symbol
    G = p.expand(grads[v].expr)
    if not elementwise_in(G, x):
        raise NoClosedForm(f"{v} does not enter the stationarity condition elementwise")
    bounds = []  # (constraint, slope, level): x >= l has slope −1, x <= u slope 1
    for c in p.inequalities:
        f = p.expand(c.func)
        slope = sp.diff(as_scalar(f), x) if elementwise_in(f, x) else None
        if slope not in (1, -1) or c.shape != alg.shape(x) or any(b[1] == slope for b in bounds):
            raise NoClosedForm(
                "inequalities other than one bound x >= l or x <= u, or one of each (a box)"
            )
        bounds.append((c, slope, simplify(alg, -(f - slope * x) / slope)))
    bounds.sort(key=lambda b: b[1])  # the lower bound first: clip(x, l, u)
    bound = bounds[0] if bounds else None
    for c in p.equalities:
        if c.shape != ():
            raise NoClosedForm("a vector equality constraint")
    if len(bounds) == 2 and p.equalities:
        raise NoClosedForm("a box beside an equality constraint")
    G0 = as_scalar(G.xreplace({b[0].multiplier.symbol: 0 for b in bounds}))
    # each entry's root minimizes L only where L is convex in it: for sum(x**2) with
    # sum(x**2) == 1, the slope 2 + 2 nu vanishes at the optimum (nu = -1) and the root
    # x = 0 that sympy returns (assuming nu != -1) is not the answer
    xu = entry_root(problem.spec, G0, x, v, "every admissible multiplier")
    if alg.shape(xu) == ():
        # every entry has the same value (no vector parameter in it): keep the vector's
        # shape, or sum(x) would count one entry instead of k
        xu = xu * alg.ones(alg.shape(x))
    # x as a function of the equalities' multipliers (ν, or η where the spec has a ν)
    # (with a bound alone, its multiplier at 0: the entry before the clip)
    nus = [c.multiplier.symbol for c in p.equalities]
    args = (", ".join(map(show.latex, nus)), ", ".join(map(show.text, nus)))
    if not nus and bound:
        lams = [b[0].multiplier.symbol for b in bounds]
        args = tuple(", ".join(f"{say(m)} = 0" for m in lams) for say in (show.latex, show.text))
    # with no constraint at all (a GAN discriminator maximized entry by entry), each
    # entry's root is the solution: x*, not x() (the multiplier of no bound: exit 3)
    named = (
        Name(rf"{show.var_latex(v)}({args[0]})", f"{v}({args[1]})")
        if nus or bound
        else Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*")
    )
    rows = [(named, "=", xu)]
    why = [r"stationarity acts entry by entry: each entry solves one scalar equation"]
    xs = xu
    mults = {}
    if bound:
        for _, slope, level in bounds:
            xs = _clipped(xs, level, slope)
        for c, slope, _ in bounds:
            # a box: where one end binds, the other's formula has the opposite sign
            lam = simplify(alg, -slope * G0.xreplace({x: xs}))
            mults[c.multiplier.symbol] = lam if len(bounds) == 1 else sp.Max(0, lam)
        rows.append((Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", xs))
        why.append(
            "where the unconstrained entry would cross the bound, complementary "
            "slackness sets it at the bound (its multiplier becomes positive): a "
            "clip, valid since stationarity is monotone in the entry (checked "
            "numerically)"
        )
    free, coupled = [], 0
    multipliers = {c.multiplier.symbol for c in p.constraints}
    for c in p.equalities:
        nu = c.multiplier.symbol
        h = simplify(alg, alg.tidy(p.expand(c.func).xreplace({x: xs})))
        sols = []
        if not bound:
            found = roots(linear_sums(alg, h), nu)
            sols = [s for s in found or () if s.is_real is not False]
        if len(sols) == 1 and not any(
            isinstance(n, ops.TensorOp) and nu in n.free_symbols
            for n in sp.preorder_traversal(sols[0])
        ):
            value = simplify(alg, sols[0])
            if value.free_symbols & multipliers:
                coupled += 1
                if coupled > MAX_COUPLED:
                    raise NoClosedForm(
                        f"more than {MAX_COUPLED} equality constraints couple their "
                        "multipliers (a linear system, eliminated one multiplier at a "
                        "time only up to this many: the expressions grow with each)"
                    )
            mults = {k: e.xreplace({nu: value}) for k, e in mults.items()}
            mults[nu] = value
            xs = gibbs(simplify(alg, linear_sums(alg, xs.xreplace({nu: value}))))
            free = [(m, eq.xreplace({nu: value}), k) for m, eq, k in free]
            rows.append((nu, "=", value))
            why.append(f"the constraint {c.number} fixes ${c.multiplier.latex}$ in closed form")
        else:
            free.append((nu, h, "eq"))
    if len(free) > 1:
        raise NoClosedForm("more than one multiplier left to a system of equations")
    for m, eq, _ in free:
        # sum(x) == 1 beside sum(x) == 2: with ν₁ eliminated, the second reads −1 = 0
        # (it was shown as the equation that "fixes ν₂", and x* = 1/n claimed)
        if m not in eq.free_symbols:
            which = "inconsistent: no point satisfies them" if eq != 0 else "redundant"
            raise NoClosedForm(
                f"with the other multipliers eliminated, the equality constraints read "
                f"{show.text(eq)} = 0, free of {show.text(m)}: they are {which}"
            )
    for m, eq, _ in free:
        rows.append(
            (
                Seq((eq, Rel("="), "0")),
                "",
                Name(rf"\text{{fixes }} {show.latex(m)}", f"fixes {show.text(m)}"),
            )
        )
        why.append(
            "the remaining multiplier solves one scalar equation (monotone in it), "
            "solved numerically: the solution is parametric"
        )
    if nus and not bound:  # with a bound, the clip row above already shows x*
        rows.append((Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", xs))
    sol = Solution(True, "separable stationarity", {v: xs}, mults, tuple(free), problem=p)
    sol.steps = [show.step("Solution: " + sol.method, rows, "; ".join(why))]
    return sol
