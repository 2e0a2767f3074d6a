"""dlsym: symbolic derivations for deep learning, shown step by step and verified."""

from ._errors import DeviceError as DeviceError
from ._errors import SpecError as SpecError
from ._errors import UserFunctionError as UserFunctionError
from ._errors import VerificationError as VerificationError

__version__ = "0.1.0"
__all__ = ["Derivation", "DeviceError", "SpecError", "UserFunctionError", "VerificationError",
           "derive"]


def __getattr__(name):
    # SymPy takes most of a second to import: load it on first use, so that
    # `dlsym --version` and `--help` answer at once (PEP 562).
    if name in ("derive", "Derivation"):
        from . import _derivation
        return getattr(_derivation, name)
    raise AttributeError(f"module 'dlsym' has no attribute {name!r}")
