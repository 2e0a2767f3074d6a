"""A batch's columns or rows: a function of a random matrix ``X`` that treats every
column alike and reads each alone, as a batch statistic does (``var(X, axis=0)``,
``X - mean(X, axis=0, keepdims=True)``, ``C @ X``), or every row (layer norm's
``(X - mean(X, axis=1, keepdims=True)) * g``, ``X @ W``). With i.i.d. entries every
column (row) has one law, so the moments of such a function are one column's (row's),
spread over them all: ``E[var(X, axis=0)] = E[var(x)] 𝟏 = (B - 1)/B σ² 𝟏``. ``one_slice``
writes the function for one column or row ``x``, or says it is no such function."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from dlsym.expr import _ops as ops

# reductions within one slice: one slice's is the reduction of that slice alone
WITHIN = (ops.tsum, ops.tmean)


@dataclass(frozen=True)
class Slicing:
    """Columns (``axis`` 1: the columns are told apart by the last axis, reductions run
    along axis 0, a fixed matrix multiplies from the left) or rows (``axis`` 0)."""

    axis: int  # the axis that tells the slices apart
    name: str  # as the steps say it

    @property
    def within(self) -> int:
        return 1 - self.axis


COLUMNS = Slicing(1, "column")
ROWS = Slicing(0, "row")


def one_slice(alg, e, X, x, by: Slicing):
    """``e`` for one column (row) ``x`` of ``X``: the axis that tells them apart
    dropped, so a ``[k, n]`` part becomes a ``[k]`` vector for a column and an ``[n]``
    or ``[1, n]`` part a scalar. A fixed vector broadcast along the rows (layer norm's
    gain) is every row's. None where ``e`` mixes slices (a reduction across them,
    ``X.T``, a fixed tensor that differs from slice to slice) or is no such function."""
    size = alg.shape(X)[by.axis]
    if alg.shape(X)[0] == alg.shape(X)[1]:
        return None  # a square batch: which axis an operand broadcasts along is unclear

    def image(e):
        if e == X:
            return x
        shape = alg.shape(e)
        if X not in e.free_symbols:
            if shape == () or (by is ROWS and len(shape) == 1):
                return e  # a scalar, or a vector broadcast along the rows: every row's
            return None
        if by is COLUMNS and (not shape or shape[-1] != size):
            return None
        if by is ROWS and (len(shape) != 2 or shape[0] != size) and shape != (size,):
            return None
        if len(shape) > 2:
            return None
        if isinstance(e, WITHIN):
            u = e.args[0]
            if len(alg.shape(u)) != 2 or ops.reduced_axes(e, alg.shape(u)) != (by.within,):
                return None
            inner = image(u)
            return None if inner is None else e.func(inner)
        if isinstance(e, ops.matmul) and len(e.args) == 2:
            # C @ X: each column of the product is C times that column; X @ W: each row
            # is that row times W
            fixed, u = e.args if by is COLUMNS else e.args[::-1]
            if X in fixed.free_symbols or len(alg.shape(fixed)) != 2:
                return None
            inner = image(u)
            if inner is None:
                return None
            return ops.matmul(fixed, inner) if by is COLUMNS else ops.matmul(inner, fixed)
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow)) or (
            isinstance(e, sp.Function) and not isinstance(e, ops.TensorOp)
        ):
            parts = [image(a) for a in e.args]
            return None if any(p is None for p in parts) else e.func(*parts)
        return None

    return image(e)
