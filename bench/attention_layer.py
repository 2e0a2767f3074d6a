"""The attention catalog spec (derivations/attention.yaml) at realistic sizes: dlsym's
generated gradient against ``jax.grad`` of the same forward pass written in JAX, and the
cost of deriving it at a large batch against a small one. Side by side in one run.

    python bench/attention_layer.py [--quick] [--B 32 --T 128 --n 64 --d 64]

1. Runtime: ``d.function("gradient", backend="jax")`` (the public API, jit-compiled,
   argument checks included) against ``jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))``,
   both returning the gradients with respect to Wq, Wk, Wv and X. Each is warmed up
   (compiled) first; the ratio is the median over rounds of paired ratios (both timed back
   to back in each round, in alternating order), as in bench/codegen_speed.py. Target:
   generated / jax.grad at most 1.2.
2. Derivation: ``dlsym.derive`` of the spec without verification, with dims B=1024 and
   B=8 (the other dims as in the spec), each the median of several runs in one
   interpreter after a first derivation that warms the imports and SymPy's caches. Dims
   are symbolic, so the ratio should be flat (target at most 1.3).

Results go to bench/results/attention_layer_<device>.json (_partial with --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from codegen_speed import side_by_side  # noqa: E402

import dlsym  # noqa: E402
from dlsym.codegen._jax import jax_x64  # noqa: E402
from dlsym.spec._yamlfile import load_file  # noqa: E402

SPEC = ROOT / "derivations" / "attention.yaml"
WRT = ("Wq", "Wk", "Wv", "X")


def spec_with(dims: dict) -> dict:
    data = dict(load_file(SPEC).data)
    data["dims"] = {**data["dims"], **dims}
    return data


def runtime(sizes: dict, rounds: int) -> dict:
    import jax
    import jax.numpy as jnp

    jax_x64()
    d = dlsym.derive(spec_with(sizes))
    generated = d.function("gradient", backend="jax")
    names = [s.name for s in d.spec.symbols]  # X, Wq, Wk, Wv, G: the spec's order

    def loss(Wq, Wk, Wv, X, G):  # the spec's forward pass, as JAX users write it
        Q, K, V = X @ Wq, X @ Wk, X @ Wv
        A = jax.nn.softmax(Q @ jnp.swapaxes(K, -1, -2) / jnp.sqrt(Q.shape[-1]), axis=-1)
        return jnp.sum(G * (A @ V))

    autodiff = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    rng = np.random.default_rng(0)
    B, T, n, dd = sizes["B"], sizes["T"], sizes["n"], sizes["d"]
    shapes = {"X": (B, T, n), "Wq": (n, dd), "Wk": (n, dd), "Wv": (n, dd), "G": (B, T, dd)}
    point = {k: jnp.asarray(rng.normal(size=s) / np.sqrt(s[-1])) for k, s in shapes.items()}

    # one array out of each, so that the timer can block on it
    def gen(*xs):
        out = generated(**dict(zip(names, xs)))
        return out["X"]

    def auto(*xs):
        kw = dict(zip(names, xs))
        return autodiff(kw["Wq"], kw["Wk"], kw["Wv"], kw["X"], kw["G"])[3]

    args = [point[k] for k in names]
    got = generated(**point)
    want = autodiff(point["Wq"], point["Wk"], point["Wv"], point["X"], point["G"])
    for name, w in zip(WRT, want):  # the same numbers before they are timed
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(w), rtol=1e-9, atol=1e-9)
    best, paired = side_by_side([auto, gen], *args, rounds=rounds)
    return {
        "sizes": sizes,
        "jax_grad_ms": best[0] * 1e3,
        "generated_ms": best[1] * 1e3,
        "generated_over_jax_grad": paired[1],
        "device": str(jax.devices()[0]),
    }


def derivation(batches: tuple, repeats: int) -> dict:
    dlsym.derive(spec_with({"B": batches[0]}))  # imports and SymPy's caches, untimed
    times: dict = {b: [] for b in batches}
    for _ in range(repeats):
        for b in batches:  # interleaved, so drift hits both sizes alike
            t0 = time.perf_counter()
            dlsym.derive(spec_with({"B": b}))
            times[b].append(time.perf_counter() - t0)
    med = {b: float(np.median(t)) for b, t in times.items()}
    return {
        "seconds": {str(b): med[b] for b in batches},
        "ratio_large_over_small": med[batches[1]] / med[batches[0]],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    for dim, size in (("B", 32), ("T", 128), ("n", 64), ("d", 64)):
        p.add_argument(f"--{dim}", type=int, default=size)
    a = p.parse_args()
    sizes = {"B": a.B, "T": a.T, "n": a.n, "d": a.d}
    if a.quick:
        sizes = {"B": 4, "T": 16, "n": 8, "d": 8}
    rounds, repeats = (3, 2) if a.quick else (15, 5)
    run = runtime(sizes, rounds)
    print(
        f"gradient of attention at B={sizes['B']}, T={sizes['T']}, n={sizes['n']}, "
        f"d={sizes['d']} ({run['device']}, float64): generated {run['generated_ms']:.3f} ms, "
        f"jax.grad {run['jax_grad_ms']:.3f} ms (best of {rounds} rounds); "
        f"generated / jax.grad = {run['generated_over_jax_grad']:.2f}x "
        f"(median of paired ratios; target <= 1.2x)"
    )
    der = derivation((8, 1024), repeats)
    s = der["seconds"]
    print(
        f"derivation (dlsym.derive, no verification): B=8 {s['8']:.2f} s, "
        f"B=1024 {s['1024']:.2f} s (medians of {repeats}); "
        f"B=1024 / B=8 = {der['ratio_large_over_small']:.2f}x (target <= 1.3x)"
    )
    results = {
        "machine": f"{platform.system()} {platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "runtime": run,
        "derivation": der,
    }
    device = run["device"].split(":")[0].lower()
    out = (
        ROOT / "bench" / "results" / f"attention_layer_{device}{'_partial' if a.quick else ''}.json"
    )
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
