"""Detection and false alarms of gradient checkers, side by side in one run.

For every correct hand-written gradient of ``bench/corpus.py`` and every mutant of it
(the corpus's hand-written bugs plus generic ones: sign, factor 2, factor 1/2, a 1e-3
relative error, entries shifted by one, a transposed square matrix), each checker says
"ok" or "wrong", in float32 and in float64:

- dlsym: ``dlsym.testing``'s check against the exact symbolic gradient (16 points);
- torch.autograd.gradcheck, defaults, on a ``torch.autograd.Function`` whose backward is
  the hand-written gradient (as a user wraps one);
- jax.test_util.check_grads, defaults (order 1, reverse mode), on a ``jax.custom_vjp``
  whose backward is the hand-written gradient.

    python bench/mutations.py            # prints the table, writes bench/results/mutations.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import dlsym  # noqa: E402
from dlsym.check._gradient import check_gradient  # noqa: E402
from dlsym.verify import sample_points  # noqa: E402

DTYPES = ("float32", "float64")


def generic_mutants(grad):
    """Bugs that apply to any gradient, as output transformations of the correct one."""
    out = {
        "sign": lambda **kw: -grad(**kw),
        "factor_2": lambda **kw: 2 * grad(**kw),
        "factor_half": lambda **kw: grad(**kw) * 0.5,
        "relative_1e-3": lambda **kw: grad(**kw) * (1 + 1e-3),
    }
    return out


def shape_mutants(grad, shape):
    out = {}
    if len(shape) >= 1 and int(np.prod(shape)) > 1:
        out["shifted_entries"] = lambda **kw: np.roll(grad(**kw), 1, axis=-1)
    if len(shape) == 2 and shape[0] == shape[1]:
        out["transposed"] = lambda **kw: grad(**kw).T
    return out


# --- the three checkers ------------------------------------------------------------------


def dlsym_flags(case, fn, dtype) -> bool:
    try:
        return not check_gradient(case.spec, fn, wrt=case.wrt, dtype=dtype, points=16).passed
    except dlsym.UserFunctionError:
        return True


def _numpy_point(d, seed):
    pts = sample_points(d.spec, 1, seed)
    return {k: v[0] for k, v in pts.items()}


def gradcheck_flags(case, fn, dtype, d, point) -> bool:
    import torch

    names = [s.name for s in d.spec.symbols]
    objective = d.function("objective")
    np_dtype = np.float32 if dtype == "float32" else np.float64
    tdtype = torch.float32 if dtype == "float32" else torch.float64

    class Wrapped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            ctx.save_for_backward(*xs)
            arrays = {n: x.detach().numpy() for n, x in zip(names, xs)}
            return torch.as_tensor(np.asarray(objective(**arrays), dtype=np_dtype))

        @staticmethod
        def backward(ctx, g):
            xs = ctx.saved_tensors
            arrays = {n: x.detach().numpy() for n, x in zip(names, xs)}
            grad = torch.as_tensor(np.asarray(fn(**arrays), dtype=np_dtype))
            return tuple(g * grad if n == case.wrt else None for n in names)

    inputs = [
        torch.tensor(
            np.asarray(point[n], dtype=np_dtype), dtype=tdtype, requires_grad=(n == case.wrt)
        )
        for n in names
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return not torch.autograd.gradcheck(Wrapped.apply, inputs)
        except Exception:  # noqa: BLE001 - GradcheckError and friends: the checker says wrong
            return True


def check_grads_flags(case, fn, dtype, d, point) -> bool:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    from dlsym.codegen import _compile as _codegen

    names = [s.name for s in d.spec.symbols]
    spec = d.spec
    obj = _codegen.lambdify(
        [s.symbol for s in spec.symbols] + [spec.dim_symbols[k] for k in spec.dims],
        [d.expanded_target()],
        "jax",
    )
    dims = [spec.dims[k] for k in spec.dims]
    np_dtype = np.float32 if dtype == "float32" else np.float64

    fixed = {n: jnp.asarray(np.asarray(point[n], dtype=np_dtype)) for n in names}
    k = names.index(case.wrt)

    def full_args(x):
        return [x if i == k else fixed[n] for i, n in enumerate(names)]

    # the user's custom backward supplies the gradient of the one wrt argument: check a
    # function of that argument alone, the others held fixed
    @jax.custom_vjp
    def f(x):
        return obj(*full_args(x), *dims)[0]

    def fwd(x):
        return f(x), x

    def bwd(x, g):
        arrays = {n: np.asarray(v) for n, v in zip(names, full_args(x))}
        return (g * jnp.asarray(np.asarray(fn(**arrays), dtype=np_dtype)),)

    f.defvjp(fwd, bwd)
    try:
        check_grads(f, (fixed[case.wrt],), order=1, modes=("rev",))
        return False
    except Exception:  # noqa: BLE001 - AssertionError: the checker says wrong
        return True


CHECKERS = {
    "dlsym": None,
    "torch.autograd.gradcheck": gradcheck_flags,
    "jax.test_util.check_grads": check_grads_flags,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only cases whose name contains this")
    args = ap.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    from corpus import CASES

    console = Console()
    cases = [c for c in CASES if not args.only or args.only in c.name]
    counts = {
        (ch, dt): {
            "caught": 0,
            "mutants": 0,
            "false_alarms": 0,
            "correct": 0,
            "missed": [],
            "flagged": [],
        }
        for ch in CHECKERS
        for dt in DTYPES
    }
    t0 = time.perf_counter()
    n_mutants = 0
    for case in cases:
        d = dlsym.derive(dict(case.spec, wrt=case.wrt, derive=["gradient"]))
        shape = tuple(int(x.subs(d.spec.dim_values)) for x in d.spec.symbol(case.wrt).shape)
        mutants = {**generic_mutants(case.grad), **shape_mutants(case.grad, shape), **case.mutants}
        n_mutants += len(mutants)
        point = _numpy_point(d, seed=1)
        for dtype in DTYPES:
            for checker, run in CHECKERS.items():

                def flags(fn):
                    if run is None:
                        return dlsym_flags(case, fn, dtype)
                    return run(case, fn, dtype, d, point)

                c = counts[(checker, dtype)]
                c["correct"] += 1
                if flags(case.grad):
                    c["false_alarms"] += 1
                    c["flagged"].append(case.name)
                for name, fn in mutants.items():
                    c["mutants"] += 1
                    if flags(fn):
                        c["caught"] += 1
                    else:
                        c["missed"].append(f"{case.name}:{name}")
        console.print(f"{case.name}: {len(mutants)} mutants", style="dim")
    table = Table(
        title=f"{len(cases)} correct gradients, {n_mutants} mutants "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    for col in ("checker", "dtype", "mutants caught", "false alarms"):
        table.add_column(col)
    rows = []
    for (checker, dtype), c in counts.items():
        table.add_row(
            checker,
            dtype,
            f"{c['caught']}/{c['mutants']} ({100 * c['caught'] / max(c['mutants'], 1):.1f}%)",
            f"{c['false_alarms']}/{c['correct']}",
        )
        rows.append({"checker": checker, "dtype": dtype, **c})
    console.print(table)
    for r in rows:
        if r["missed"]:
            console.print(
                f"{r['checker']} ({r['dtype']}) missed: {', '.join(r['missed'][:12])}"
                + (" ..." if len(r["missed"]) > 12 else ""),
                style="dim",
            )
    out = ROOT / "bench" / "results" / "mutations.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cases": len(cases),
                "mutants": n_mutants,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
