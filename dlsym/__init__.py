"""dlsym: symbolic derivations for deep learning, shown step by step and verified."""

from dlsym._errors import DeviceError as DeviceError
from dlsym._errors import SpecError as SpecError
from dlsym._errors import UserFunctionError as UserFunctionError
from dlsym._errors import VerificationError as VerificationError
from dlsym._version import __version__ as __version__

__all__ = [
    "Derivation",
    "DeviceError",
    "SpecError",
    "UserFunctionError",
    "VerificationError",
    "derive",
]


def __getattr__(name):
    # SymPy takes most of a second to import: load it on first use, so that
    # `dlsym --version` and `--help` answer at once (PEP 562). Not a cycle: _api sits
    # above everything else in the package.
    if name == "derive":
        from dlsym._api import derive

        return derive
    if name == "Derivation":
        from dlsym.sections.calculus import Derivation

        return Derivation
    raise AttributeError(f"module 'dlsym' has no attribute {name!r}")
