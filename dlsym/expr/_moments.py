"""The moments of the expression language: ``expect(e)``, ``variance(e)`` and
``covariance(a, b)`` over a spec's random symbols (shared/spec-format.md, "Random
variables and expectations"). They are opaque here; ``dlsym.calculus._moments`` derives
their closed forms, and verification estimates them by sampling.
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr._ops import ShapeError, TensorOp, fmt_shape


class expect(TensorOp):
    """E[e], entry by entry: the shape of e."""

    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        return shapes[0]


class variance(TensorOp):
    """Var e, entry by entry (the diagonal of covariance(e, e)): the shape of e."""

    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        return shapes[0]


class covariance(TensorOp):
    """Cov(a, b) = E[(a - E a)(b - E b)ᵀ]: a scalar for two scalars, a p x q matrix for a
    p-vector and a q-vector (as numpy.cov's cross block)."""

    nargs = 2

    @classmethod
    def result_shape(cls, args, shapes):
        a, b = shapes
        if len(a) > 1 or len(b) > 1 or len(a) != len(b):
            raise ShapeError(
                f"covariance needs two scalars or two vectors, got a {fmt_shape(a)} and a "
                f"{fmt_shape(b)}; index a matrix's entries or rows first"
            )
        return (a[0], b[0]) if a else ()


MOMENTS = (expect, variance, covariance)


def moments_in(e) -> list:
    """The outermost moments in ``e``, in the order they appear."""
    if not isinstance(e, sp.Basic):
        return []
    if isinstance(e, MOMENTS):
        return [e]
    out = []
    for a in e.args:
        out.extend(m for m in moments_in(a) if m not in out)
    return out
