"""The sections: each validates and derives one kind of spec, and returns a derivation
that satisfies the one contract, ``DerivationBase``."""

from dlsym.sections._base import DerivationBase as DerivationBase
