"""Speed of dlsym's generated JAX code against autodiff and hand-written closed forms,
and the cost of deriving symbolically versus on explicit entries. Side by side in one run.

    python bench/codegen_speed.py [--quick] [--sizes N ...] [--device cpu|gpu]

The generated code is timed as users of the Python API get it, ``d.function(kind,
backend="jax")`` (argument checks included), and as the ``dlsym codegen`` module under
``jax.jit``: both run the same generated functions. Tables are printed with rich and saved
to bench/results/codegen_speed_<device>.json (codegen_speed_<device>_partial.json for
--quick or --sizes). The ratios are medians over rounds of paired ratios (times taken back
to back in one round); autodiff / d.function above 1 means the generated code is faster;
d.function / hand-written at most 1.05 is the target for gradients. The last column counts
the operations of each compiled XLA program; "(same)" marks a d.function whose program
does exactly the hand-written one's work, so their time ratio is noise.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlsym  # noqa: E402
from dlsym.codegen._module import generate  # noqa: E402
from dlsym.spec._yamlfile import load_file  # noqa: E402

M = 2000  # rows of X in the regression problems, as in shared/field-notes.md


def best_of(fn, *args, repeat=7, min_time=0.05):
    """Best time per call in seconds: warm up (compile), then the minimum over `repeat`
    rounds of enough calls to last `min_time`."""
    fn(*args).block_until_ready()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args).block_until_ready()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 16:
            break
        n *= 4
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        out.block_until_ready()
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def side_by_side(fns, *args, rounds=15, min_time=0.05):
    """Time per call of each function, measured in interleaved rounds (f1, f2, f3, then
    f3, f2, f1, ...) so that drift in the machine's speed hits all of them alike. Returns each function's
    best time and, for every function, the median over rounds of its time divided by the
    first function's time in the same round (paired ratios cancel the drift)."""
    counts = []
    for fn in fns:
        fn(*args).block_until_ready()
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn(*args).block_until_ready()
            if time.perf_counter() - t0 >= min_time / 3 or n >= 1 << 16:
                break
            n *= 4
        counts.append(n)
    per_round = []
    for r in range(rounds):
        times = [0.0] * len(fns)
        # every other round in reverse order, so that no function always runs right
        # after the same other one (caches, the scheduler)
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            fn, n = fns[i], counts[i]
            t0 = time.perf_counter()
            for _ in range(n):
                out = fn(*args)
            out.block_until_ready()
            times[i] = (time.perf_counter() - t0) / n
        per_round.append(times)
    best = [min(r[i] for r in per_round) for i in range(len(fns))]
    paired = [float(np.median([r[i] / r[0] for r in per_round])) for i in range(len(fns))]
    return best, paired


_HLO_OP = re.compile(r"=\s*([a-z0-9\[\]{},]+)\s+([a-z\-]+)\(")


def xla_ops(fn, args) -> collections.Counter:
    """The operations of the compiled (optimized) XLA program, as (opcode, result shape),
    without parameters, bitcasts and constants: two functions with equal counters do the
    same work, so their timings can differ only by noise."""
    import jax

    ops = collections.Counter()
    for line in jax.jit(fn).lower(*args).compile().as_text().splitlines():
        m = _HLO_OP.search(line)
        if m and m.group(2) not in (
            "parameter",
            "bitcast",
            "constant",
            "tuple",
            "get-tuple-element",
        ):
            ops[(m.group(2), re.sub(r"\{[^}]*\}", "", m.group(1)))] += 1
    return ops


def module_for(name: str, overrides: dict):
    data = dict(load_file(ROOT / "derivations" / f"{name}.yaml").data, **overrides)
    d = dlsym.derive(data)
    src = generate(d, "jax", source=name)
    path = Path(tempfile.mkdtemp()) / f"gen_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return d, mod


def problems(jnp, jax):
    """name -> (spec name, spec overrides, inputs(n, rng), hand-written grad, hand Hessian,
    wrt index)."""

    def logistic_inputs(n, rng):
        X = rng.standard_normal((M, n)) / np.sqrt(n)
        return [X, rng.uniform(0.05, 0.95, M), rng.standard_normal(n), np.float64(0.1)]

    # hand-written closed forms in the fast idiom: v @ X rather than X.T @ v
    def logistic_grad(X, y, w, lam):
        return (jax.nn.sigmoid(X @ w) - y) @ X / X.shape[0] + lam * w

    def logistic_hess(X, y, w, lam):
        p = jax.nn.sigmoid(X @ w)
        return (X.T * (p * (1 - p))) @ X / X.shape[0] + lam * jnp.eye(X.shape[1])

    def ridge_inputs(n, rng):
        return [
            rng.standard_normal((M, n)),
            rng.standard_normal(M),
            rng.standard_normal(n),
            np.float64(0.1),
        ]

    def ridge_grad(X, y, w, lam):
        return 2 * ((X @ w - y) @ X) + 2 * lam * w

    def ridge_hess(X, y, w, lam):
        return 2 * X.T @ X + 2 * lam * jnp.eye(X.shape[1])

    def sce_inputs(n, rng):
        return [rng.standard_normal(n), np.eye(n)[rng.integers(n)]]

    def sce_grad(z, y):
        return jax.nn.softmax(z) - y

    def sce_hess(z, y):
        s = jax.nn.softmax(z)
        return jnp.diag(s) - jnp.outer(s, s)

    def mlp_inputs(n, rng):
        return [
            rng.standard_normal(n),
            rng.standard_normal(n),
            rng.standard_normal((n, n)) / np.sqrt(n),
            rng.standard_normal(n),
            rng.standard_normal((n, n)) / np.sqrt(n),
            rng.standard_normal(n),
        ]

    def mlp_grad(x, y, W1, b1, W2, b2):  # the gradient with respect to W1
        h = jnp.tanh(W1 @ x + b1)
        return jnp.outer(((W2 @ h + b2 - y) @ W2) * (1 - h**2), x)

    def mlp_grad_b1(x, y, W1, b1, W2, b2):
        h = jnp.tanh(W1 @ x + b1)
        return ((W2 @ h + b2 - y) @ W2) * (1 - h**2)

    def mlp_hess_b1(x, y, W1, b1, W2, b2):
        # J^T J plus the curvature of tanh, with J = W2 diag(1 - h^2)
        h = jnp.tanh(W1 @ x + b1)
        u = 1 - h**2
        J = W2 * u
        return J.T @ J - 2 * jnp.diag(((W2 @ h + b2 - y) @ W2) * h * u)

    return {
        "logistic regression": (
            "logistic_regression",
            {},
            logistic_inputs,
            logistic_grad,
            logistic_hess,
            2,
        ),
        "ridge regression": ("ridge_regression", {}, ridge_inputs, ridge_grad, ridge_hess, 2),
        "softmax cross-entropy": (
            "softmax_cross_entropy",
            {"derive": ["gradient", "hessian"]},
            sce_inputs,
            sce_grad,
            sce_hess,
            0,
        ),
        "2-layer MLP (wrt W1)": ("mlp_2layer", {"wrt": "W1"}, mlp_inputs, mlp_grad, None, 2),
        # the Hessian with respect to a matrix has no matrix form; b1's does
        "2-layer MLP (wrt b1)": (
            "mlp_2layer",
            {"wrt": "b1", "derive": ["gradient", "hessian"]},
            mlp_inputs,
            mlp_grad_b1,
            mlp_hess_b1,
            3,
        ),
    }


def measure(table, rows, name, n, fns, args, rounds):
    """Check d.function == generated == autodiff, then time (d.function, generated module,
    autodiff, hand-written) side by side; one table row and one JSON record."""
    api, generated, autodiff, _ = fns
    np.testing.assert_allclose(generated(*args), autodiff(*args), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(api(*args), generated(*args), rtol=1e-12, atol=1e-15)
    (tp, tg, ta, th), (_, rg, ra, rh) = side_by_side(fns, *args, rounds=rounds)
    op, og, oa, oh = (xla_ops(f, args) for f in fns)
    ops = f"{sum(op.values())} / {sum(oa.values())} / {sum(oh.values())}" + (
        " (same)" if op == oh else ""
    )
    table.add_row(
        name,
        str(n),
        f"{tp * 1e3:.3f} ms",
        f"{tg * 1e3:.3f} ms",
        f"{ta * 1e3:.3f} ms",
        f"{th * 1e3:.3f} ms",
        f"{ra:.2f}x",
        f"{1 / rh:.2f}x",
        f"{1 / rg:.2f}x",
        ops,
    )
    rows.append(
        {
            "problem": name,
            "n": n,
            "api_s": tp,
            "generated_s": tg,
            "autodiff_s": ta,
            "hand_s": th,
            # paired ratios against d.function (the public API)
            "autodiff_over_api": ra,
            "api_over_hand": 1 / rh,
            "api_over_generated": 1 / rg,
            "xla_ops": {
                "api": sum(op.values()),
                "generated": sum(og.values()),
                "autodiff": sum(oa.values()),
                "hand": sum(oh.values()),
            },
            "same_xla_ops_as_hand": op == oh,
        }
    )


def runtime_tables(console, sizes, grad_only_sizes, results):
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    grad_table = Table(
        title="gradient: time per call, d.function(backend='jax') vs the generated module "
        "(jit) vs jax.grad (jit) vs hand-written (jit)"
    )
    hess_table = Table(
        title="Hessian: time per call, d.function(backend='jax') vs the generated module "
        "(jit) vs jax.hessian (jit) vs hand-written (jit)"
    )
    for t in (grad_table, hess_table):
        for col in (
            "problem",
            "n",
            "d.function",
            "module",
            "autodiff",
            "hand-written",
            "autodiff / d.function",
            "d.function / hand-written",
            "d.function / module",
            "XLA ops d.function / auto / hand",
        ):
            t.add_column(col, justify="right" if col != "problem" else "left")
    for name, (spec, over, inputs, hand_g, hand_h, k) in problems(jnp, jax).items():
        d, mod = module_for(spec, over)
        wrt = d.spec.wrt[0]
        api_g = d.function("gradient", backend="jax")
        gen_g = jax.jit(getattr(mod, f"gradient_{wrt}"))
        auto_g = jax.jit(jax.grad(mod.objective, argnums=k))
        for n in sizes + grad_only_sizes:
            args = [jnp.asarray(a) for a in inputs(n, rng)]
            measure(
                grad_table,
                results["gradient"],
                name,
                n,
                [api_g, gen_g, auto_g, jax.jit(hand_g)],
                args,
                rounds=15,
            )
            if hand_h is None or n not in sizes:
                continue
            api_h = d.function("hessian", backend="jax")
            gen_h = jax.jit(getattr(mod, f"hessian_{wrt}"))
            auto_h = jax.jit(jax.hessian(mod.objective, argnums=k))
            measure(
                hess_table,
                results["hessian"],
                name,
                n,
                [api_h, gen_h, auto_h, jax.jit(hand_h)],
                args,
                rounds=5,
            )
    console.print(grad_table)
    console.print(hess_table)


def symbolic_table(console, results, explicit_sizes):
    import sympy as sp

    from dlsym.expr import _explicit as explicit

    table = Table(title="logistic regression: derivation time, symbolic sizes vs explicit entries")
    for col in ("method", "n", "gradient", "gradient + Hessian"):
        table.add_column(col)
    base = load_file(ROOT / "derivations" / "logistic_regression.yaml").data
    for n in (10, 100, 1000, 10000):
        t0 = time.perf_counter()
        dlsym.derive(dict(base, dims={"m": 2 * n, "n": n}, derive=["gradient"]))
        tg = time.perf_counter() - t0
        t0 = time.perf_counter()
        dlsym.derive(dict(base, dims={"m": 2 * n, "n": n}))
        th = time.perf_counter() - t0
        table.add_row("matrix form (dlsym)", str(n), f"{tg:.3f} s", f"{th:.3f} s")
        results["symbolic"].append({"method": "matrix", "n": n, "gradient_s": tg, "hessian_s": th})
    d = dlsym.derive(dict(base, derive=["gradient"]))
    for n in explicit_sizes:
        sizes = {d.spec.dim_symbols["m"]: 2 * n, d.spec.dim_symbols["n"]: n}
        env = {
            s.symbol: explicit.entry_symbols(
                s.name, s.symbol, tuple(int(x.subs(sizes)) for x in s.shape)
            )
            for s in d.spec.symbols
        }
        env.update({k: sp.Integer(v) for k, v in sizes.items()})
        t0 = time.perf_counter()
        value = explicit.expand(d.expanded_target(), env)
        grad = explicit.jacobian_entries(value, env[d.spec.symbol("w").symbol])
        tg = time.perf_counter() - t0
        explicit.jacobian_entries(grad, env[d.spec.symbol("w").symbol])
        th = time.perf_counter() - t0
        table.add_row("explicit entries (sympy.diff)", str(n), f"{tg:.3f} s", f"{th:.3f} s")
        results["symbolic"].append(
            {"method": "explicit", "n": n, "gradient_s": tg, "hessian_s": th}
        )
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="time only these n (gradients and Hessians; no symbolic table), e.g. 1000",
    )
    args = ap.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        device = jax.devices(args.device)[0]
    except RuntimeError:
        sys.exit(f"--device {args.device}: JAX sees no {args.device.upper()}")
    console = Console(width=200)  # the tables have ten columns
    results = {
        "machine": platform.platform(),
        "device": str(device),
        "dtype": "float64",
        "gradient": [],
        "hessian": [],
        "symbolic": [],
    }
    sizes = args.sizes or ([10, 100] if args.quick else [10, 100, 1000])
    grad_only = [] if args.quick or args.sizes else [10000]
    with jax.default_device(device):
        runtime_tables(console, sizes, grad_only, results)
    if not args.sizes:
        symbolic_table(console, results, [2, 3] if args.quick else [2, 5, 10])
    # a reduced run does not replace the full run's record
    partial = "_partial" if args.quick or args.sizes else ""
    out = ROOT / "bench" / "results" / f"codegen_speed_{device.platform}{partial}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"saved {out.relative_to(ROOT)} ({device})")


if __name__ == "__main__":
    main()
