"""The dual function and the dual problem, when the Lagrangian is quadratic in the
variables with a Hessian free of them (quadratic programs, the SVM, the ridge ball): its
infimum is at x = -P^{-1} r, and a variable that enters L linearly becomes a constraint
of the dual problem. Checked against the primal optimum (strong duality) and by
recovering the primal optimum from the multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlsym.calculus._affine import NoClosedForm, inverse
from dlsym.calculus._simplify import simplify
from dlsym.codegen import _compile as codegen
from dlsym.sections._base import Shown
from dlsym.sections.constrained._linear import linear_stationarity
from dlsym.sections.constrained._num import SOLVER_ATOL, SOLVER_RTOL
from dlsym.sections.constrained._show import Name, Rel, Rows, Seq
from dlsym.sections.constrained._solution import at_zero
from dlsym.verify import as_dtype, compare, computed, solver_tolerance

# --- the dual ----------------------------------------------------------------------------


@dataclass
class Dual:
    found: bool
    function: Any = None  # g(lambda, nu)
    x: dict = field(default_factory=dict)  # v -> x(lambda, nu)
    P: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)  # v -> r_v (= 0 in the dual problem)
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    shown: Any = None
    problem: Any = None
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def compiled(self, backend: str = "numpy"):
        """The generated code (once per backend): it takes the parameters (spec order),
        the multipliers (constraint order), then the dims, and returns g, each x(lambda,
        nu), then each Hessian P."""
        if backend not in self._compiled:
            p = self.problem
            base = p.base
            args = (
                [s.symbol for s in p.parameters]
                + [c.multiplier.symbol for c in p.constraints]
                + [base.dim_symbols[k] for k in base.dims]
            )
            exprs = (
                [p.expand(self.function)]
                + [p.expand(e) for e in self.x.values()]
                + [p.expand(e) for e in self.P.values()]
            )
            self._compiled[backend] = codegen.lambdify(args, exprs, backend)
        return self._compiled[backend]

    def checks(self, num, good) -> list:
        """The dual function and the primal recovered from it, in ``num.dtype``, against
        the solver's optimum and its multipliers."""
        p, dtype = self.problem, num.dtype
        rtol, atol = solver_tolerance(dtype, SOLVER_RTOL, SOLVER_ATOL)
        base = p.base
        mults = [c.multiplier for c in p.constraints]
        fn = self.compiled("numpy")
        dims = [base.dims[k] for k in base.dims]
        duals, primals, xs, exp_x, convex = [], [], [], [], True
        for draw, opt in good:
            args = [draw[s.name] for s in p.parameters] + [opt.multipliers[m.name] for m in mults]
            out = fn(*as_dtype(args, dtype), *dims)
            duals.append([computed(out[0], dtype)])
            primals.append([opt.value if p.sense == "minimize" else -opt.value])
            nx = len(self.x)
            if nx:
                xs.append(
                    np.concatenate(
                        [
                            np.ravel(np.broadcast_to(computed(o, dtype), num.shapes[v]))
                            for v, o in zip(self.x, out[1 : 1 + nx])
                        ]
                    )
                )
                exp_x.append(np.concatenate([np.ravel(opt.x[v]) for v in self.x]))
            # convexity decides which check applies: read it in float64 whatever the dtype
            hessians = out[1 + nx :] if dtype == "float64" else fn(*args, *dims)[1 + nx :]
            for hess in hessians:
                eig = np.linalg.eigvalsh(np.atleast_2d(np.asarray(hess, dtype=float)))
                convex = convex and bool(eig.min() >= -1e-10)
        ref = num.reference
        duals, primals = np.array(duals), np.array(primals)
        if convex:
            out = [compare("dual value = primal value", "", ref, duals, primals, rtol, atol)]
        else:  # weak duality only: g <= p*
            gap = np.maximum(duals - primals, 0.0)
            out = [
                compare("dual value <= primal value", "", ref, gap, np.zeros_like(gap), 0.0, atol)
            ]
        if xs:
            out.append(
                compare(
                    "primal from dual",
                    ", ".join(self.x),
                    ref,
                    np.stack(xs),
                    np.stack(exp_x),
                    rtol,
                    atol,
                )
            )
        return out


def _not_found(p, show, text):
    """The dual, said to have no closed form, with the reason."""
    dual = Dual(False, notes=[text], problem=p)
    dual.steps = [
        show.step(
            "Dual function",
            [(Name(r"g", "g"), "", Name(r"\text{no closed form found}", "no closed form found"))],
            text,
        )
    ]
    dual.shown = Shown(text, r"\text{no closed form found}", None, {"found": False})
    return dual


def derive_dual(problem, grads, show: Rows) -> Dual:
    p, alg = problem, problem.spec.algebra
    try:
        lin = linear_stationarity(p, grads)
        value = at_zero(p, p.expand(p.lagrangian))
    except NoClosedForm as exc:
        return _not_found(p, show, f"no closed-form dual function found ({exc})")
    for v, x in lin.x.items():
        r, P = lin.r[v], lin.P[v]
        if not alg.shape(r):
            quad = r**2 / P
        elif not alg.shape(P):  # c I on a vector or matrix variable: ⟨r, r⟩ / c
            quad = alg.reduce_sum(r * r) / P
        elif len(alg.shape(r)) == 1:
            try:
                quad = alg.mm(r, alg.mm(inverse(alg, P), r))
            except NoClosedForm as exc:  # P singular at the dims: L unbounded below off its range
                return _not_found(p, show, f"no closed-form dual function found ({exc})")
        else:
            return _not_found(
                p,
                show,
                f"no closed-form dual function found (the matrix variable {v}'s Hessian is "
                "not a multiple of I: ⟨R, H⁻¹[R]⟩ has no matrix form here)",
            )
        value = value - quad / 2
    value = simplify(alg, alg.tidy(value))
    mults = [c.multiplier for c in p.constraints]
    args = ", ".join(m.latex for m in mults)
    targs = ", ".join(show.text_name(m) for m in mults)
    gname = Name(rf"g\left({args}\right)", f"g({targs})")
    over_tex = ", ".join(show.var_latex(v) for v in p.variables)
    rows = [
        (
            gname,
            "=",
            Name(
                rf"\inf_{{{over_tex}}} \mathcal{{L}}",
                f"inf_{{{', '.join(p.variables)}}} ℒ"
                if len(p.variables) > 1
                else f"inf_{p.variables[0]} ℒ",
            ),
        )
    ]
    rows += [(Name(show.var_latex(v), v), "=", x) for v, x in lin.x.items()]
    rows.append((gname, "=", value))
    why = (
        r"$\mathcal{L}$ is quadratic in the variables with a Hessian $P$ free of them: "
        r"its infimum is at $x = -P^{-1} r$, where it is $\mathcal{L}(0) - r^T P^{-1} r / 2$ "
        r"(finite when $P \succeq 0$)"
    )
    if lin.conditions:
        why += (
            "; a variable that enters $\\mathcal{L}$ linearly makes the infimum "
            "$-\\infty$ unless its coefficient vanishes: a constraint of the dual problem"
        )
    steps = [show.step("Dual function", rows, why)]
    cons = [(c.multiplier.symbol, show.relation(">=", c.shape), "0") for c in p.inequalities]
    cons += [(r, "=", "0") for r in lin.conditions.values()]
    prows = [
        (
            Name(rf"\underset{{{args}}}{{\text{{maximize}}}}", f"maximize over {targs}"),
            "quad",
            value,
        )
    ]
    prows += [
        (
            Name(r"\text{subject to}", "subject to") if i == 0 else None,
            "quad",
            Seq((a, Rel(rel), b)),
        )
        for i, (a, rel, b) in enumerate(cons)
    ]
    steps.append(
        show.step(
            "Dual problem",
            prows,
            "the dual function is a lower bound on the optimal value for every feasible "
            "multiplier; its maximum equals the primal optimum for a convex problem with a "
            "strictly feasible point (Slater)",
        )
    )
    dual = Dual(True, value, dict(lin.x), dict(lin.P), dict(lin.conditions), steps, [], problem=p)
    dual.shown = Shown(
        show.expr(value),
        f"{gname.latex} = {show.latex(value)}",
        value,
        {
            "x_of_multipliers": {v: show.expr(x) for v, x in lin.x.items()},
            "dual_constraints": [show.expr(r) + " == 0" for r in lin.conditions.values()]
            + [f"{c.multiplier.name} >= 0" for c in p.inequalities],
        },
    )
    return dual
