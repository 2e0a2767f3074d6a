"""The derived recurrence against JAX autodiff through ``jax.lax.scan``: the spec's own
update and loss (generated code, not the derived adjoints) scanned over T steps, then
``jax.grad`` (or ``jax.jacobian`` of the final state), at the spec's dims."""

from __future__ import annotations

import numpy as np

from dlsym.codegen import _compile as codegen
from dlsym.sections.recurrence._function import user_decls
from dlsym.verify import as_dtype, compare, computed, jax_device, on_device, report, sample_points


def _reference(rec, kind: str):
    import jax
    import jax.numpy as jnp

    (s,) = rec.states
    decls = user_decls(rec)
    dims = list(rec.spec.dim_symbols.values())
    sizes = [rec.spec.dim_values[d] for d in dims]
    names = [d.symbol for d in decls]
    read_cur = [r.cur for r in rec.reads]
    init = codegen.lambdify(names + dims, [s.init], "jax")
    update = codegen.lambdify(names + [s.prev] + read_cur + dims, [s.update], "jax")
    loss = codegen.lambdify(names + [s.cur] + read_cur + dims, [rec.loss or 0], "jax")

    def run(values: dict, h0=None):
        args = [values[d.name] for d in decls]
        seqs = [values[r.name] for r in rec.reads]

        def body(h, xs):
            h = update(*args, h, *xs, *sizes)[0]
            return h, loss(*args, h, *xs, *sizes)[0]

        start = init(*args, *sizes)[0] if h0 is None else h0
        last, losses = jax.lax.scan(body, jnp.asarray(start), seqs)
        return last, jnp.sum(losses)

    if kind == "jacobian":
        (w,) = rec.wrt
        return lambda values: jax.jacobian(lambda h0: run(values, h0)[0])(jnp.asarray(values[w]))

    def grads(values):
        free = {w: jnp.asarray(values[w]) for w in rec.wrt}
        return jax.grad(lambda free: run({**values, **free})[1])(free)

    return grads


def verify_recurrence(d, points, seed, device, dtype, rtol, atol):
    import jax

    rec = d.rec
    drawn = sample_points(rec.spec, points, seed)
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
