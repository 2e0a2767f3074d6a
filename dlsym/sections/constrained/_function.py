"""Numeric functions of a constrained problem's closed forms (``d.function``): the optimum
and its multipliers as functions of the parameters, and the dual function.

Both run the generated code of the closed forms (``Solution.compiled``,
``Dual.compiled``), the code the verification compares with SciPy's optimum. A
*parametric* multiplier (fixed by one scalar equation, ``Solution.free``) is found per
call by ``solve_scalar`` (a bracketing grid and Brent's method, to rounding error) on
the NumPy code, at one point of the parameters at a time.
"""

from __future__ import annotations

import numpy as np

from dlsym.sections._signature import Signature, array_module

# what d.function takes, and what the solution function returns for each
SOLUTION_PARTS = {"solution": "the variables", "multipliers": "the multipliers"}


def solution_function(sol, part: str, backend: str):
    """The optimum as a function of the parameters (``part`` "solution": the wrt
    variables, an array, or a dict of arrays when there are several) or its multipliers
    (``part`` "multipliers": always a dict, multiplier name -> array, in constraint
    order; parametric ones included).

    Arguments: the parameters (every symbol not in wrt), by keyword or positionally in
    the spec's order; sizes are read off the arrays. Axes in front of a parameter's
    declared ones are a batch, solved one entry at a time (a parametric multiplier needs
    a root per point) and stacked. With ``backend="jax"`` the closed form runs as JAX
    code; a parametric multiplier's root is still found by SciPy on the host, so such a
    function takes concrete arrays, not ``jax.jit`` tracers.
    """
    p = sol.problem
    base = p.base
    xp = array_module(backend)
    sig = Signature(p.parameters, base.dim_values, part)
    fn = sol.compiled(backend)
    nx, nm = len(sol.x), len(sol.multipliers)
    shapes = {c.multiplier.name: c.shape for c in p.constraints}
    shapes.update({v: base.symbol(v).shape for v in p.variables})

    def as_shape(o, name, sizes):
        # a constant or a scalar broadcast over a vector (x = 0, lam = 0) gets its shape
        return xp.broadcast_to(xp.asarray(o, dtype=float), sig.shape(shapes[name], sizes))

    def one(values: dict, sizes: dict):
        params = [xp.asarray(values[s.name], dtype=float) for s in p.parameters]
        dims = [sizes[base.dim_symbols[k]] for k in base.dims]
        free = sol.free_values([np.asarray(v) for v in params], dims) if sol.free else []
        out = fn(*params, *free, *dims)
        if part == "solution":
            x = {v: as_shape(o, v, sizes) for v, o in zip(sol.x, out[:nx])}
            return x if len(x) > 1 else next(iter(x.values()))
        found = {m.name: o for m, o in zip(sol.multipliers, out[nx : nx + nm])}
        found.update({m.name: t for (m, _, _), t in zip(sol.free, free)})
        return {
            c.multiplier.name: as_shape(found[c.multiplier.name], c.multiplier.name, sizes)
            for c in p.constraints
        }

    doc = f"{SOLUTION_PARTS[part].capitalize()} at the optimum; takes " + (
        ", ".join(sig.names) or "no arguments"
    )
    return sig.function(one, xp, part, doc)


def dual_function(dual, backend: str):
    """The dual function g(lambda, nu) = inf_x L(x, lambda, nu), a scalar (an array over
    the batch axes).

    Arguments: the parameters (every symbol not in wrt, spec order) then the multipliers
    (constraint order: ``results['lagrangian'].extra['multipliers']`` names them), by
    keyword or positionally. For ``maximize`` it is the dual of minimizing f0 = -f, so it
    bounds -max f from below. Where a variable enters L linearly (the SVM's bias), g is
    -inf off the dual constraints (``results['dual'].extra['dual_constraints']``); this
    function returns the closed form, which is g on them, and does not test them.
    """
    p = dual.problem
    base = p.base
    xp = array_module(backend)
    sig = Signature(
        p.parameters + tuple(c.multiplier for c in p.constraints), base.dim_values, "dual"
    )
    fn = dual.compiled(backend)

    def one(values: dict, sizes: dict):
        args = [xp.asarray(values[n], dtype=float) for n in sig.names]
        dims = [sizes[base.dim_symbols[k]] for k in base.dims]
        return xp.asarray(fn(*args, *dims)[0], dtype=float)

    return sig.function(one, xp, "dual", f"The dual function; takes {', '.join(sig.names)}")
