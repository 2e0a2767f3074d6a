"""A closed-form solution of the KKT conditions (``Solution``: the variables and
multipliers as expressions of the parameters, evaluated by generated code), and the
matrix-form helpers the solvers share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from dlsym.calculus._affine import kinked_in, zero_out
from dlsym.calculus._run import run
from dlsym.calculus._simplify import simplify
from dlsym.codegen import _compile as codegen
from dlsym.sections.constrained._num import SOLVER_ATOL, SOLVER_RTOL, solve_scalar
from dlsym.verify import as_dtype, compare, computed, solver_tolerance


@dataclass
class Solution:
    found: bool
    method: str
    x: dict = field(default_factory=dict)  # variable name -> expr
    multipliers: dict = field(default_factory=dict)  # multiplier Symbol -> expr
    free: tuple = ()  # (Symbol, equation expr == 0, "eq" or "ineq") fixed numerically
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    shown: Any = None
    problem: Any = None
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    # -- numbers ----------------------------------------------------------------------------

    def compiled(self, backend: str = "numpy"):
        """The generated code of the closed forms (once per backend): it takes the
        parameters (spec order), the parametric multipliers (``free``), then the dims,
        and returns the variables, the closed-form multipliers, then each parametric
        multiplier's equation."""
        if backend not in self._compiled:
            self._compiled[backend] = self.lambdified(backend)
        return self._compiled[backend]

    def lambdified(self, backend: str = "numpy"):
        """``compiled``'s code, compiled afresh (not kept: for a look at the closed forms
        before they are final)."""
        p = self.problem
        base = p.base
        args = (
            [s.symbol for s in p.parameters]
            + [f[0] for f in self.free]
            + [base.dim_symbols[k] for k in base.dims]
        )
        exprs = (
            [p.expand(e) for e in self.x.values()]
            + [p.expand(e) for e in self.multipliers.values()]
            + [p.expand(f[1]) for f in self.free]
        )
        return codegen.lambdify(args, exprs, backend)

    def free_values(self, params: list, dims: list) -> list:
        """The parametric multipliers at one point of the parameters (NumPy arrays): each
        the root of its scalar equation (``solve_scalar``), a later one held at 0 while
        an earlier one is solved."""
        fn = self.compiled("numpy")
        at = len(self.x) + len(self.multipliers)
        values: list = []
        for i, (_, _, kind) in enumerate(self.free):
            rest = [0.0] * (len(self.free) - i - 1)

            def eq(t, i=i, rest=rest):
                return float(np.sum(fn(*params, *values, t, *rest, *dims)[at + i]))

            values.append(solve_scalar(eq, nonnegative=(kind == "ineq")))
        return values

    def evaluate(self, num, draw: dict):
        """(x, multipliers) at one draw of the parameters, in ``num.dtype``; free
        multipliers are solved numerically (SciPy's brentq, in float64) first."""
        dtype = num.dtype
        p = self.problem
        dims = [p.base.dims[k] for k in p.base.dims]
        params = [draw[s.name] for s in p.parameters]
        nx, nm = len(self.x), len(self.multipliers)
        values = as_dtype(self.free_values(params, dims), dtype)
        out = self.compiled("numpy")(*as_dtype(params, dtype), *values, *dims)
        x = {
            v: np.broadcast_to(computed(o, dtype), num.shapes[v]) for v, o in zip(self.x, out[:nx])
        }
        mult = {
            s.name: np.broadcast_to(computed(o, dtype), num.shapes[s.name])
            for s, o in zip(self.multipliers, out[nx : nx + nm])
        }
        for (sym, _, _), t in zip(self.free, values):
            mult[sym.name] = np.broadcast_to(t, num.shapes[sym.name])
        return x, mult

    def checks(self, num, good) -> list:
        """The closed forms, in ``num.dtype``, against the solver's optimum."""
        p, dtype = self.problem, num.dtype
        rtol, atol = solver_tolerance(dtype, SOLVER_RTOL, SOLVER_ATOL)
        xs, vals, exp_x, exp_v, ms, exp_m = [], [], [], [], [], []
        for draw, opt in good:
            x, mult = self.evaluate(num, draw)
            xs.append(np.concatenate([np.ravel(x[v]) for v in p.variables]))
            exp_x.append(np.concatenate([np.ravel(opt.x[v]) for v in p.variables]))
            values = as_dtype({**draw, **x}, dtype)
            f = np.asarray(num.parts({k: num.jnp.asarray(v) for k, v in values.items()})[0])
            vals.append([f if p.sense == "minimize" else -f])
            exp_v.append([opt.value])
            if opt.regular and mult:
                ms.append(np.concatenate([np.ravel(mult[k]) for k in sorted(mult)]))
                exp_m.append(np.concatenate([np.ravel(opt.multipliers[k]) for k in sorted(mult)]))
        ref = num.reference
        out = [
            compare(
                "solution",
                ", ".join(p.variables),
                ref,
                np.stack(xs),
                np.stack(exp_x),
                rtol,
                atol,
            ),
            compare("optimal value", "", ref, np.array(vals), np.array(exp_v), rtol, atol),
        ]
        if ms:
            out.append(
                compare(
                    "multipliers",
                    ", ".join(sorted(mult)),
                    num.reference,
                    np.stack(ms),
                    np.stack(exp_m),
                    *solver_tolerance(dtype, SOLVER_RTOL * 10, SOLVER_ATOL * 10),
                )
            )
        return out


# --- matrix-form helpers ---------------------------------------------------------------------


def derivative(problem, expr, wrt):
    """d expr / d wrt in matrix form by the calculus engine: a gradient for a scalar
    expr, a Jacobian for a vector one (None where no matrix-form rule applies)."""
    alg = problem.spec.algebra
    name = wrt.name
    if alg.shape(expr) == ():
        spec = dataclasses.replace(
            problem.spec, objective=expr, output=None, wrt=(name,), derive=("gradient",)
        )
        kind = "gradient"
    elif len(alg.shape(expr)) == 1 and len(alg.shape(wrt)) == 1:
        spec = dataclasses.replace(
            problem.spec, objective=None, output=expr, wrt=(name,), derive=("jacobian",)
        )
        kind = "jacobian"
    else:
        return None
    results, _ = run(spec)
    r = results[kind][name]
    return r.expr if r.method == "matrix form" else None


def hessian(problem, v: str):
    spec = dataclasses.replace(problem.spec, wrt=(v,), derive=("gradient", "hessian"))
    results, _ = run(spec)
    r = results["hessian"][v]
    if r.method != "matrix form":
        return None
    if r.direction is not None:
        # a matrix variable's Hessian is its action on a direction Δ: c Δ (c free of Δ,
        # as for a sum of squares) is c times the identity, the scalar c; another action
        # (A Δ B) has no matrix to invert here
        c = sp.simplify(r.expr / r.direction)
        return c if not c.has(r.direction) and not problem.spec.algebra.shape(c) else None
    return r.expr


def at_zero(problem, e):
    """e with every variable set to 0."""
    alg = problem.spec.algebra
    return simplify(alg, alg.tidy(zero_out(alg, e, set(problem.variable_symbols))))


def has_variables(problem, e) -> bool:
    return bool(problem.expand(e).free_symbols & set(problem.variable_symbols))


def kinked_variables(problem, grads) -> list:
    """The variables L has kinks in (abs, relu, max): at a kink the optimum satisfies
    stationarity with a subgradient (0 in x - z + lam [-1, 1] for the Lasso's proximal
    step), and the gradient's value there (sign(0) = 0) is no residual to check."""
    return [
        v
        for v in problem.variables
        if kinked_in(problem.expand(grads[v].expr), problem.base.symbol(v).symbol)
    ]
