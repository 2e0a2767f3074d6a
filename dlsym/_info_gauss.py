"""Gaussian information quantities (placeholder)."""
import sympy as sp


class Expect(sp.Function):
    pass


class LogDensity(sp.Function):
    pass


RULES = ()


def definition(ctx, info):
    raise NotImplementedError
