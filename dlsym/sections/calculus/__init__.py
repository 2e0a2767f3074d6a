"""Calculus specs: gradients, Jacobians and Hessians in matrix form."""

from dlsym.sections.calculus._derivation import Derivation as Derivation
from dlsym.sections.calculus._derivation import derive_calculus as build  # noqa: F401
