"""The JAX device and precision every verification runs on."""

from __future__ import annotations

import contextlib

import numpy as np

from dlsym._errors import DeviceError
from dlsym.codegen._jax import jax_x64

# The dtypes a verification (``--dtype``) and ``dlsym check`` compute in.
DTYPES: dict[str, type[np.floating]] = {"float32": np.float32, "float64": np.float64}


def jax_device(device: str):
    jax = jax_x64()  # first: a setting in the environment JAX cannot start with

    try:
        return jax.devices(device)[0]
    except RuntimeError:
        found = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise DeviceError(
            f"--device {device}: JAX sees no {device.upper()} "
            f"(available: {found}); not falling back silently"
        ) from None


@contextlib.contextmanager
def on_device(dev):
    """JAX on ``dev``, with matrix products in full precision: on recent GPUs JAX
    multiplies float32 matrices in TensorFloat32 (10-bit mantissas) by default, which is
    neither the float32 a verification asked for nor within float32's tolerances. On the
    CPU it changes nothing."""
    import jax

    with jax.default_device(dev), jax.default_matmul_precision("highest"):
        yield


def as_dtype(value, dtype: str):
    """``value`` (an array, or a dict or list of them) as NumPy arrays in ``dtype``: the
    inputs of a derived formula evaluated at that precision."""
    if isinstance(value, dict):
        return {k: as_dtype(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_dtype(v, dtype) for v in value)
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.integer):
        return value  # labels (domain {index: k}) are integers in every precision
    return value.astype(DTYPES[dtype])


def computed(value, dtype: str) -> np.ndarray:
    """An output of a formula evaluated in ``dtype``, as an array: a floating array keeps
    the dtype it was computed in (so a report can say what ran); an exact value, which a
    formula returns for a constant (a Python number, an integer array), takes ``dtype``."""
    a = np.asarray(value)
    exact = isinstance(value, (int, float)) or a.dtype.kind not in "fc"
    return a.astype(DTYPES[dtype]) if exact else a
