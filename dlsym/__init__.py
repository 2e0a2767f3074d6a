"""dlsym: symbolic derivations for deep learning, shown step by step and verified."""

from ._derivation import Derivation as Derivation
from ._derivation import derive as derive
from ._errors import DeviceError as DeviceError
from ._errors import SpecError as SpecError
from ._errors import VerificationError as VerificationError

__version__ = "0.1.0"
