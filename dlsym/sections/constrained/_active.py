"""One inequality that must be active: each variable's stationarity condition reads that
variable alone, entry by entry, so x(λ) solves one scalar equation per entry; where x(0)
does not exist (the objective alone has no stationary point: log utility keeps rising
as x grows), complementary slackness leaves λ > 0, and λ* is the one positive root of
g(x(λ)) = 0. Cobb–Douglas utility under a budget, max log x + log y s.t. x + p y <= c:
x(λ) = 1/λ, y(λ) = 1/(λ p), λ* = 2/c, so x* = c/2 and y* = c/(2 p)."""

from __future__ import annotations

import sympy as sp

from dlsym.calculus._affine import NoClosedForm, as_scalar, elementwise_in, roots
from dlsym.calculus._simplify import simplify
from dlsym.sections.constrained._separable import entry_root, linear_sums
from dlsym.sections.constrained._show import Name, Rows
from dlsym.sections.constrained._solution import Solution


def solve_active(problem, grads, show: Rows) -> Solution:
    p, alg = problem, problem.spec.algebra
    if p.equalities or len(p.inequalities) != 1 or p.inequalities[0].shape != ():
        raise NoClosedForm("not one scalar inequality alone")
    c = p.inequalities[0]
    lam = c.multiplier.symbol
    # λ > 0 while x(λ) is solved: SymPy then drops the roots of the other sign
    positive = sp.Dummy(lam.name, positive=True)
    symbols = {v: p.base.symbol(v).symbol for v in p.variables}
    x_of = {}
    for v, x in symbols.items():
        G = p.expand(grads[v].expr).xreplace({lam: positive})
        if G.free_symbols & (set(symbols.values()) - {x}):
            raise NoClosedForm(f"the stationarity condition of {v} reads another variable")
        if not elementwise_in(G, x):
            raise NoClosedForm(f"{v} does not enter its stationarity condition entry by entry")
        G0 = as_scalar(G)
        found = entry_root(p.spec, G0, x, v, "every λ > 0", lambda e: e.xreplace({positive: lam}))
        x_of[v] = alg.expand_to(found, alg.shape(x))
    if not any(e.xreplace({positive: 0}).is_finite is False for e in x_of.values()):
        # x(0) may be the optimum (the constraint inactive): the linear and the
        # unconstrained solvers decide that case
        raise NoClosedForm("x(λ) exists at λ = 0, where the constraint may be inactive")
    at = {symbols[v]: e for v, e in x_of.items()}
    g = simplify(alg, linear_sums(alg, alg.tidy(p.expand(c.func).xreplace(at))))
    if g.free_symbols & set(symbols.values()):
        raise NoClosedForm("the constraint at x(λ) still reads the variables")
    found = roots(g, positive)
    if found is None or len(found) != 1:
        raise NoClosedForm(
            f"g(x(λ)) = 0 has {'no' if found == [] else 'no single'} root λ > 0 in closed form"
        )
    lam_star = simplify(alg, found[0])
    xs = {
        v: simplify(alg, linear_sums(alg, e.xreplace({positive: lam_star})))
        for v, e in x_of.items()
    }
    lam_tex, lam_txt = c.multiplier.latex, show.text(lam)
    back = {positive: lam}
    rows = [
        (Name(rf"{show.var_latex(v)}({lam_tex})", f"{v}({lam_txt})"), "=", e.xreplace(back))
        for v, e in x_of.items()
    ]
    fn = show.func_name(c)
    rows.append(
        (Name(rf"{fn.latex}(x({lam_tex}))", f"{fn.text}(x({lam_txt}))"), "=", g.xreplace(back))
    )
    rows.append((Name(rf"{lam_tex}^{{\star}}", f"{lam_txt}*"), "=", lam_star))
    rows += [(Name(rf"{show.var_latex(v)}^{{\star}}", f"{v}*"), "=", e) for v, e in xs.items()]
    why = (
        "stationarity reads each variable alone, entry by entry: each entry solves one "
        f"scalar equation for $x({lam_tex})$; $x(0)$ does not exist (the objective alone "
        "has no stationary point), so by complementary slackness the constraint is "
        f"active with ${lam_tex} > 0$, the one positive root of $g(x({lam_tex})) = 0$"
    )
    sol = Solution(True, "one active inequality", xs, {lam: lam_star}, (), problem=p)
    sol.steps = [show.step("Solution: " + sol.method, rows, why)]
    return sol
