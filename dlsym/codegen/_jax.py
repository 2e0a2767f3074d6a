"""JAX, set up once for dlsym: float64 on, and an environment it can start in.

JAX computes in float32 unless ``jax_enable_x64`` is set, and then silently returns
float32 for float64 inputs. dlsym's references and generated functions need float64 (and
compute in float32 only where a caller asks for it with ``dtype``), so every JAX path in
the package goes through ``jax_x64()``: the one place that switches it on, and that sets
the rest of the configuration dlsym's own code relies on (implicit rank promotion: a
user's ``JAX_NUMPY_RANK_PROMOTION=raise`` stopped its (3, 3) * (3,) products).

JAX reads its settings from the environment. A value it cannot use (``JAX_ENABLE_X64=
maybe``, ``JAX_PLATFORMS=garbage``) raised from deep inside it, and an unknown flag in
``XLA_FLAGS`` makes XLA end the process with exit status 1, which dlsym's contract reads
as "a result was found wrong". Each is an ``EnvironmentSettingError`` (exit 2) naming the
variable, raised before any JAX computation.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

from dlsym._errors import EnvironmentSettingError

# how long the check of XLA_FLAGS may take (it starts XLA's CPU client in a child
# process: 0.2 s); past it, the flags are taken as they are
XLA_CHECK_SECONDS = 30.0

# the child of _check_xla_flags: XLA parses XLA_FLAGS as its first client starts, and
# ends the process on a flag it does not know
_START_XLA = """
try:
    from jaxlib import xla_client
    xla_client.make_cpu_client()
except (ImportError, AttributeError):  # another jaxlib: through jax
    import jax
    jax.devices("cpu")
"""


def _unset_hint(name: str) -> str:
    return f"fix or unset it (env -u {name} dlsym ...)"


def _imported():
    """``import jax``; JAX reads its boolean and enumerated settings from the environment
    as it is imported and raises ``ValueError`` on a value it cannot read."""
    try:
        import jax
    except ValueError as exc:
        text = str(exc)
        named = [
            name
            for name in sorted(os.environ)
            if name.startswith("JAX_") and (name in text or name.lower() in text)
        ]
        if not named:
            raise
        name = named[0]
        raise EnvironmentSettingError(
            f"environment variable {name}={os.environ[name]!r}: JAX cannot start with it "
            f"({text}); {_unset_hint(name)}"
        ) from None
    return jax


def _check_xla_flags() -> None:
    """XLA ends the process (exit status 1, with no exception to catch) on a flag in
    ``XLA_FLAGS`` it does not know: start its CPU client in a child process first, and
    say which flag if it ends that one."""
    flags = os.environ.get("XLA_FLAGS", "")
    if not flags.strip():
        return
    try:
        child = subprocess.run(
            [sys.executable, "-c", _START_XLA],
            capture_output=True,
            text=True,
            timeout=XLA_CHECK_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # not checked: XLA reads them itself
    if child.returncode == 0:
        return
    said = re.search(r"Unknown flags? in XLA_FLAGS:\s*(.*)", child.stderr)
    why = f"XLA does not know {said.group(1).strip()}" if said else "XLA cannot start with it"
    raise EnvironmentSettingError(
        f"environment variable XLA_FLAGS={flags!r}: {why}; {_unset_hint('XLA_FLAGS')}"
    )


def _started(jax) -> None:
    """JAX's backends, started now: ``JAX_PLATFORMS`` naming a platform this
    installation lacks (``garbage``, ``gpu`` on a CPU-only machine) fails here."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as exc:  # JAX_PLATFORMS=cuda: a bare assert
        platforms = os.environ.get("JAX_PLATFORMS")
        if platforms is None:
            raise
        said = str(exc).split(" (set JAX_PLATFORMS")[0] or f"{type(exc).__name__} inside JAX"
        raise EnvironmentSettingError(
            f"environment variable JAX_PLATFORMS={platforms!r}: JAX cannot start its "
            f"backends ({said}); unset it, or name platforms this JAX has (cpu; cuda "
            "with jax[cuda] installed), and pick the device with --device"
        ) from None


@functools.cache
def jax_x64():
    """The ``jax`` module with float64 enabled and its backends started; a setting in
    the environment that JAX cannot start with is an ``EnvironmentSettingError``."""
    jax = _imported()
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "allow")
    _check_xla_flags()
    _started(jax)
    return jax
