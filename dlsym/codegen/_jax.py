"""JAX, set up once for dlsym: float64 on.

JAX computes in float32 unless ``jax_enable_x64`` is set, and then silently returns
float32 for float64 inputs. dlsym's references and generated functions need float64 (and
compute in float32 only where a caller asks for it with ``dtype``), so every JAX path in
the package goes through ``jax_x64()``: the one place that switches it on.
"""

from __future__ import annotations

import functools


@functools.cache
def jax_x64():
    """The ``jax`` module with float64 enabled."""
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax
