"""The derived recurrence against JAX autodiff through ``jax.lax.scan``: the spec's own
update and loss (generated code, not the derived adjoints) scanned over T steps, then
``jax.grad`` (or ``jax.jacobian`` of the final state), at the spec's dims."""

from __future__ import annotations

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.expr import _ops as ops
from dlsym.sections._base import law_parameters
from dlsym.sections._signature import Signature
from dlsym.sections._special import special_points
from dlsym.sections.recurrence._function import user_decls
from dlsym.verify import (
    as_dtype,
    compare,
    computed,
    draws_within,
    jax_device,
    on_device,
    report,
    sample_points,
)
from dlsym.verify._sampling import DRAWN_ENTRIES, dims_loc


def _reference(rec, kind: str):
    import jax
    import jax.numpy as jnp

    states = rec.states
    decls = user_decls(rec)
    dims = list(rec.spec.dim_symbols.values())
    sizes = [rec.spec.dim_values[d] for d in dims]
    names = [d.symbol for d in decls]
    read_cur = [r.cur for r in rec.reads]
    prev, cur = [s.prev for s in states], [s.cur for s in states]
    init = codegen.lambdify(names + dims, [s.init for s in states], "jax")
    update = codegen.lambdify(names + prev + read_cur + dims, [s.update for s in states], "jax")
    loss = codegen.lambdify(names + cur + read_cur + dims, [rec.loss or 0], "jax")
    final = codegen.lambdify(names + cur + read_cur + dims, [rec.final or 0], "jax")

    def run(values: dict, h0=None):
        """(the states after T steps, the loss), the states carried as a tuple."""
        args = [values[d.name] for d in decls]
        seqs = [values[r.name] for r in rec.reads]

        def body(carry, xs):
            new = update(*args, *carry, *xs, *sizes)
            # a constant update (h: 2) comes back a Python number: scan needs each state
            # in its carry's type and shape
            carry = tuple(
                jnp.broadcast_to(jnp.asarray(u, dtype=c.dtype), c.shape) for u, c in zip(new, carry)
            )
            # a constant loss (loss: 1.0) comes back a Python number: JAX's float, as
            # jax.grad needs
            return carry, jnp.asarray(loss(*args, *carry, *xs, *sizes)[0], dtype=float)

        start = init(*args, *sizes) if h0 is None else [h0]
        carry = tuple(jnp.asarray(v, dtype=float) for v in start)
        # T steps even where no [T] input is read (h_t = tanh(w h_{t-1})): scan has no
        # sequence to count them from
        steps = int(rec.spec.dim_values[rec.horizon])
        last, losses = jax.lax.scan(body, carry, seqs, length=steps)
        # the final loss on the states after the last step, with the inputs at T
        at_t = [x[steps - 1] for x in seqs]
        end = jnp.asarray(final(*args, *last, *at_t, *sizes)[0], dtype=float)
        return last, jnp.sum(losses) + end

    if kind == "jacobian":
        (w,) = rec.wrt
        return lambda values: jax.jacobian(lambda h0: run(values, h0)[0][0])(jnp.asarray(values[w]))

    def grads(values):
        free = {w: jnp.asarray(values[w]) for w in rec.wrt}
        return jax.grad(lambda free: run({**values, **free})[1])(free)

    return grads


def verify_recurrence(d, points, seed, device, dtype, rtol, atol):
    import jax

    rec = d.rec
    _within_memory(rec)
    drawn = at_fan_in(rec, sample_points(rec.spec, points, seed))
    decls = user_decls(rec)
    checks = []
    with on_device(jax_device(device)):
        reference = jax.jit(_reference(rec, d.kind))
        derived = d.function(d.kind)
        got, want = {}, {}
        for p in range(points):
            values = {x.name: as_dtype(drawn[x.name][p], dtype) for x in decls}
            ref = reference(values)
            out = derived(**values)
            if d.kind == "jacobian":
                ref, out = {rec.wrt[0]: ref}, {rec.wrt[0]: out}
            elif len(rec.wrt) == 1:
                out = {rec.wrt[0]: out}
            for w in rec.wrt:
                got.setdefault(w, []).append(computed(out[w], dtype))
                want.setdefault(w, []).append(np.asarray(ref[w]))
        name = "jax.jacobian" if d.kind == "jacobian" else "jax.grad"
        for w in rec.wrt:
            checks.append(
                compare(
                    d.kind,
                    w,
                    f"{name} through jax.lax.scan",
                    np.stack(got[w]),
                    np.stack(want[w]),
                    rtol,
                    atol,
                )
            )
    return report(checks, points, dtype, device, rtol, atol)


def at_fan_in(rec, drawn: dict) -> dict:
    """The weights (real symbols of two or more axes that are no sequence) with their
    draws divided by √(last axis), as networks are initialised (LeCun): with unit-normal
    recurrent weights the step Jacobian's norm is about 2√d, and over T steps the
    adjoints of an RNN at d = 64, T = 40 reached 1e17, chaotic, so that jax.grad and a
    right derivation disagreed in their rounding alone (exit 1). At this scale both
    stay O(1), and a wrong adjoint still shows at every size."""
    sequences = {r.name for r in rec.reads}
    out = dict(drawn)
    for decl in user_decls(rec):
        if decl.domain == "real" and len(decl.shape) >= 2 and decl.name not in sequences:
            out[decl.name] = drawn[decl.name] / np.sqrt(drawn[decl.name].shape[-1])
    return out


Z = 5.0  # standard errors, as the random-variables section's Monte Carlo
PATHS = 100_000


def verify_closed_form(d, points, seed, device, dtype, rtol, atol):
    """Each state's closed form at t = 1..T against the recurrence run forward: exactly
    without random inputs, else the mean over Monte Carlo paths within Z standard
    errors. A vector state runs as a vector, its entries each compared."""
    jax_device(device)  # the recurrence runs in NumPy, but an absent GPU is still said
    rec = d.rec
    count = min(points, 4) if rec.laws else points
    drawn = sample_points(rec.spec, count, seed)
    dims = list(rec.spec.dim_symbols.values())
    sizes = [rec.spec.dim_values[s] for s in dims]
    decls = [x for x in user_decls(rec) if x.symbol not in {r.symbol for r in rec.reads}]
    names = [x.symbol for x in decls]
    prevs = [s.prev for s in rec.states]
    update = _update_over_paths(rec, names, prevs, dims)
    init = codegen.lambdify(names + dims, [s.init for s in rec.states], "numpy")
    closed = d.function("closed_form")
    forward = _Forward(rec, update, init, seed)
    got, want, bounds = {}, {}, {}
    # each point with its inputs' draws (the reads), which a special point keeps from the
    # point it was made from
    held = [x.name for x in decls] + [r.name for r in rec.reads]
    points_at = [{n: drawn[n][p] for n in held} for p in range(count)]
    # and at the special values of its where branches (r = 1 of x_t = r x + c, two equal
    # rates), which no drawn point hits: each branch is checked, not only the general form
    points_at += special_points([sol.value for sol in d.derived], decls, points_at)
    for at in points_at:
        args = [at[x.name] for x in decls]
        means, errors = forward.run(args, [at[r.name] for r in rec.reads], sizes)
        value = closed(**{x.name: at[x.name] for x in decls})
        for s in rec.states:
            got.setdefault(s.name, []).append(np.asarray(value[s.name]))
            want.setdefault(s.name, []).append(means[s.name])
            bound = Z * errors[s.name] + atol + rtol * np.abs(means[s.name])
            bounds.setdefault(s.name, []).append(bound)
    paths = forward.paths
    reference = (
        f"Monte Carlo paths of the recurrence ({paths} per point)"
        if rec.laws
        else "the recurrence run forward"
    )
    note = f"{paths} paths per point; bound {Z:g} standard errors" if rec.laws else ""
    checks = [
        compare(
            "closed_form",
            s.name,
            reference,
            np.stack(got[s.name]),
            np.stack(want[s.name]),
            rtol,
            atol,
            note,
            bounds=np.stack(bounds[s.name]),
        )
        for s in rec.states
    ]
    return report(checks, len(points_at), dtype, device, rtol, atol)


def _update_over_paths(rec, names, prevs, dims):
    """The update as a function of the states and inputs of many paths at once (each a
    leading axis). Entry by entry NumPy broadcasts it; a matrix product in it (an EMA of
    A @ g_t) does not take a leading axis (A @ G of G: (paths, k) is no product of A with
    each path's g), so there it is JAX's, vmapped over the paths."""
    arguments = names + prevs + [r.cur for r in rec.reads] + dims + [rec.step]
    updates = [s.update for s in rec.states]
    if not any(u.has(ops.TensorOp) for u in updates):
        return codegen.lambdify(arguments, updates, "numpy")
    import jax

    jax_x64()
    # the dims as their numbers: under jit an argument is traced, and a slice's bounds
    # must be static (g[t][::-1] starts at n − 1: a traced start, exit 3)
    sizes = {d: sp.Integer(rec.spec.dim_values[d]) for d in dims}
    one = codegen.lambdify(arguments, [u.xreplace(sizes) for u in updates], "jax")
    fixed, paths = len(names), len(prevs) + len(rec.reads)
    axes = (None,) * fixed + (0,) * paths + (None,) * (len(dims) + 1)
    batched = jax.jit(jax.vmap(lambda *xs: tuple(one(*xs)), in_axes=axes))

    def update(*xs):
        return [np.asarray(v) for v in batched(*xs)]

    return update


SMALLER_T = "the closed form holds for every t, so a smaller T checks it"


def _within_memory(rec) -> None:
    """A located error where one drawn point's symbols and the states kept at every step
    (jax.lax.scan keeps them for the reverse pass; and the adjoints, as many) are past
    DRAWN_ENTRIES: T = 10⁹ asked JAX for 32 GB (exit 3), or drew 24 GB of inputs before
    the time budget stopped it."""
    inputs = sum(_entries(rec, x.shape) for x in rec.spec.symbols)
    steps, states = _states_at_every_step(rec)
    kept = 2 * states
    if inputs + kept > DRAWN_ENTRIES:
        raise SpecError(
            f"verification cannot run: one drawn point holds {inputs:.3g} entries of the "
            f"symbols and {kept:.3g} of the states and adjoints at every one of "
            f"T = {steps:,} steps, past its {DRAWN_ENTRIES:,}: the derivation holds for every "
            "T, so a smaller T (or smaller dims) checks it, or derive with --no-verify",
            dims_loc(rec.spec.doc),
        )


def _entries(rec, shape) -> int:
    return int(np.prod(Signature.shape(shape, rec.spec.dim_values), dtype=object))


def _states_at_every_step(rec) -> tuple:
    """(T, the entries of every state at every one of the T steps)."""
    steps = int(rec.spec.dim_values[rec.horizon])
    return steps, steps * sum(_entries(rec, s.shape) for s in rec.states)


def _paths(rec) -> int:
    """Monte Carlo paths per point within the kit's memory budget (``draws_within``): the
    random inputs, and the states at every step, at the spec's T (T = 200000 asked for
    149 GiB). Without random inputs one run, within the same budget (T = 10⁹ ran 50 s
    into the time budget and held 3.6 GB)."""
    per_path = sum(
        _entries(rec, rec.spec.symbol(r.name).shape) for r in rec.reads if r.cur in rec.laws
    )
    # and the states kept at every step, (paths, T, *shape) each
    steps, states = _states_at_every_step(rec)
    per_path += states
    loc = dims_loc(rec.spec.doc)
    if not rec.laws:
        if per_path > DRAWN_ENTRIES:
            raise SpecError(
                f"verification cannot run: the recurrence run forward keeps its states at "
                f"every one of T = {steps:,} steps, {per_path:.3g} entries, past its "
                f"{DRAWN_ENTRIES:,}: {SMALLER_T}, or derive with --no-verify",
                loc,
            )
        return 1
    return draws_within(
        PATHS,
        per_path,
        "paths",
        f"the random inputs, and the states at every step; {SMALLER_T}",
        loc,
    )


class _Forward:
    """The spec's own update run forward over T steps on many paths at once (one
    without random inputs): each state's mean over the paths at t = 1..T and its
    standard error."""

    def __init__(self, rec, update, init, seed):
        from dlsym.verify import generator

        self.rec, self.update, self.init = rec, update, init
        self.rng = generator(seed + 1)
        decls = [x for x in user_decls(rec) if x.symbol not in {r.symbol for r in rec.reads}]
        dims = list(rec.spec.dim_symbols.values())
        self.params = law_parameters(rec.laws, [x.symbol for x in decls], dims)
        self.paths = _paths(rec)

    def run(self, args, sequences, sizes) -> tuple:
        from dlsym.verify import draw_law

        rec, paths = self.rec, self.paths
        steps = rec.spec.dims["T"]
        at = dict(zip(rec.spec.dim_symbols.values(), sizes))
        inputs = []
        for r, seq in zip(rec.reads, sequences):
            law = rec.laws.get(r.cur)
            shape = Signature.shape(rec.spec.symbol(r.name).shape, at)
            if law is None:
                inputs.append(np.broadcast_to(seq, (paths,) + shape))
                continue
            params = self.params[r.cur](*args, *sizes)
            inputs.append(draw_law(self.rng, law.family, paths, shape, *params))
        shapes = [(paths,) + Signature.shape(s.shape, at) for s in rec.states]
        state = [
            np.broadcast_to(np.asarray(v, dtype=float), sh)
            for v, sh in zip(self.init(*args, *sizes), shapes)
        ]
        runs = []
        for t in range(steps):
            made = self.update(*args, *state, *[x[:, t] for x in inputs], *sizes, t + 1.0)
            state = [np.broadcast_to(np.asarray(v, dtype=float), sh) for v, sh in zip(made, shapes)]
            runs.append(state)
        means, errors = {}, {}
        for i, s in enumerate(rec.states):
            run = np.stack([r[i] for r in runs], axis=1)  # (paths, T, *shape)
            means[s.name] = run.mean(axis=0)
            spread = run.std(axis=0) / np.sqrt(paths) if rec.laws else 0 * run[0]
            errors[s.name] = spread
        return means, errors
