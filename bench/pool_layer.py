"""Strided, padded and overlapping pooling: dlsym's generated gradient against
``jax.grad`` of ``lax.reduce_window``, the way a JAX user pools, side by side in one run.

    python bench/pool_layer.py [--batch 32] [--channels 16] [--size 32]

Each case is ``sum(sin(pool(X, k, stride, padding)))`` in NCHW; both gradients run under
``jax.jit`` and agree at a random point (no ties there: ``reduce_window``'s gradient
gives a tie to one entry, dlsym's splits it). Overlapping max pooling is the costly
case: an entry may win several windows, and splitting each window's ties takes one pass
per offset in the window, where XLA's ``select_and_scatter`` picks one entry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from conv_layer import best_of  # noqa: E402  (one timing harness for the layer benchmarks)

import dlsym  # noqa: E402
from dlsym.codegen._jax import jax_x64  # noqa: E402

# (kind, window, stride, padding): side by side, a ResNet stem, overlapping windows
CASES = [("max", 2, 2, 0), ("max", 3, 2, 1), ("max", 3, 1, 1), ("avg", 3, 1, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    jax_x64()
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(args.batch, args.channels, args.size, args.size)))
    print(
        f"pooling B={args.batch} C={args.channels} H=W={args.size}, float64, "
        f"{jax.devices()[0].platform}: gradient of sum(sin(pool(X)))"
    )
    for kind, k, stride, padding in CASES:
        d = dlsym.derive(
            {
                "name": "pool",
                "symbols": {"X": {"shape": ["B", "C", "H", "W"]}},
                "dims": {"B": args.batch, "C": args.channels, "H": args.size, "W": args.size},
                "objective": f"sum(sin({kind}_pool2d(X, {k}, {stride}, {padding})))",
                "wrt": ["X"],
                "derive": ["gradient"],
            }
        )
        generated = d.function("gradient", backend="jax")
        pads = [(0, 0), (0, 0), (padding, padding), (padding, padding)]
        window, strides = (1, 1, k, k), (1, 1, stride, stride)

        def forward(X, kind=kind, window=window, strides=strides, pads=pads, k=k):
            if kind == "max":
                y = jax.lax.reduce_window(X, -jnp.inf, jax.lax.max, window, strides, pads)
            else:
                y = jax.lax.reduce_window(X, 0.0, jax.lax.add, window, strides, pads) / k**2
            return jnp.sum(jnp.sin(y))

        ours = jax.jit(lambda X, generated=generated: generated(X=X))
        autodiff = jax.jit(jax.grad(forward))
        np.testing.assert_allclose(ours(X), autodiff(X), rtol=1e-9, atol=1e-12)
        t_ours, t_auto = best_of(ours, X, calls=1), best_of(autodiff, X, calls=1)
        print(
            f"  {kind}_pool2d(X, {k}, stride={stride}, padding={padding})  generated "
            f"{t_ours * 1e3:7.2f} ms   jax.grad {t_auto * 1e3:7.2f} ms   "
            f"{t_ours / t_auto:.2f}x"
        )


if __name__ == "__main__":
    main()
