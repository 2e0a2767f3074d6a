"""The JAX device and precision every verification runs on."""

from __future__ import annotations

from dlsym._errors import DeviceError


def jax_device(device: str):
    import jax

    try:
        return jax.devices(device)[0]
    except RuntimeError:
        found = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise DeviceError(
            f"--device {device}: JAX sees no {device.upper()} "
            f"(available: {found}); not falling back silently"
        ) from None
