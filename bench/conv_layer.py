"""A batched convolutional layer: dlsym's generated gradient against ``jax.grad`` of the
same JAX forward pass, and the derivation's cost at two batch sizes. Side by side in one
run.

    python bench/conv_layer.py [--batch 32] [--channels 16] [--size 32] [--out 32]

The layer is ``sum(relu(conv2d(X, K, padding=1) + b) ** 2) / B`` in NCHW with a 3x3
kernel. Both gradients (w.r.t. K and b) run under ``jax.jit``: the generated one is
``d.function("gradient", backend="jax")`` (its transposed convolution and kernel
correlation as ``lax.conv_general_dilated`` calls), the reference ``jax.grad`` of a
hand-written forward pass. Targets: generated / autodiff within 1.2x; the derivation's
time flat in the batch size (dims are symbolic), B=1024 / B=8 within 1.3x.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlsym  # noqa: E402
from dlsym.codegen._jax import jax_x64  # noqa: E402


def spec(batch: int, channels: int, size: int, out: int) -> dict:
    return {
        "name": "conv_layer",
        "symbols": {
            "X": {"shape": ["B", "C", "H", "W"]},
            "K": {"shape": ["O", "C", 3, 3]},
            "b": {"shape": ["O"]},
        },
        "dims": {"B": batch, "C": channels, "H": size, "W": size, "O": out},
        "objective": "sum(relu(conv2d(X, K, padding=1) + b[:, None, None]) ** 2) / B",
        "wrt": ["K", "b"],
        "derive": ["gradient"],
    }


def best_of(fn, *args, repeat=7, calls=5):
    """Best time per call (seconds) after a warm-up call (the compilation)."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) / calls)
    return min(times)


def derive_time(batch: int, args) -> float:
    """Best of three derivations (no verification) at this batch size."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        dlsym.derive(spec(batch, args.channels, args.size, args.out))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=int, default=32)
    args = parser.parse_args()

    jax_x64()
    import jax
    import jax.numpy as jnp

    d = dlsym.derive(spec(args.batch, args.channels, args.size, args.out))
    generated = d.function("gradient", backend="jax")
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(args.batch, args.channels, args.size, args.size)))
    K = jnp.asarray(rng.normal(size=(args.out, args.channels, 3, 3)) / 10)
    b = jnp.asarray(rng.normal(size=args.out))

    def forward(K, b, X):
        z = jax.lax.conv_general_dilated(
            X, K, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return jnp.sum(jax.nn.relu(z + b[:, None, None]) ** 2) / X.shape[0]

    ours = jax.jit(lambda K, b, X: generated(X=X, K=K, b=b))
    autodiff = jax.jit(jax.grad(forward, argnums=(0, 1)))
    got, want = ours(K, b, X), autodiff(K, b, X)
    np.testing.assert_allclose(got["K"], want[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got["b"], want[1], rtol=1e-9, atol=1e-9)

    t_ours = best_of(ours, K, b, X)
    t_auto = best_of(autodiff, K, b, X)
    small, large = derive_time(8, args), derive_time(1024, args)
    print(
        f"conv layer B={args.batch} C={args.channels} H=W={args.size} O={args.out} 3x3, "
        f"padding 1, float64, {jax.devices()[0].platform}"
    )
    print(f"  gradient (K, b)   generated {t_ours * 1e3:8.2f} ms   jax.grad {t_auto * 1e3:8.2f} ms")
    print(f"                    generated / jax.grad = {t_ours / t_auto:.2f}x  (target <= 1.2x)")
    print(f"  derivation        B=8 {small:6.2f} s   B=1024 {large:6.2f} s")
    print(f"                    B=1024 / B=8 = {large / small:.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
