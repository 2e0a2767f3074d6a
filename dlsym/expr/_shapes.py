"""Shapes over symbolic sizes: a shape is a tuple of dims (SymPy Symbols for positive
integers, or Integers). NumPy's broadcasting, and how a broadcast value sums back."""

from __future__ import annotations

import sympy as sp

Shape = tuple  # a tuple of dims: SymPy Symbols (positive integers) or Integers


class ShapeError(ValueError):
    """Raised by shape rules; the parser adds the location."""


def fmt_shape(shape: Shape) -> str:
    if not shape:
        return "scalar"
    kind = {1: "vector", 2: "matrix"}.get(len(shape), "tensor")
    return f"{kind} [{', '.join(str(d) for d in shape)}]"


def size(shape: Shape):
    """The number of entries, as a SymPy product of dims."""
    return sp.Mul(*shape) if shape else sp.Integer(1)


def broadcast(a: Shape, b: Shape, what: str = "combine") -> Shape:
    """NumPy's broadcasting over symbolic sizes (shared/spec-format.md, "Tensors of any
    rank"): shapes align on their last axes; two sizes agree when they are the same dim
    (or number) or one of them is 1. ``X @ W + b`` with ``b: [k]`` is a batch of affine
    maps; ``x + y`` with ``x: [m]``, ``y: [n]`` is an error, since m and n are different
    dims and nothing says they are equal."""
    if a == b or not b:
        return a
    if not a:
        return b
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else None
        db = b[-i] if i <= len(b) else None
        if da is None or da == 1:
            out.append(db)
        elif db is None or db == 1 or da == db:
            out.append(da)
        else:
            raise ShapeError(
                f"cannot {what} a {fmt_shape(a)} and a {fmt_shape(b)}: sizes {da} and {db} "
                "of their last axes differ (NumPy broadcasting aligns the last axes)"
            )
    return tuple(reversed(out))


def unbroadcast_axes(shape: Shape, target: Shape) -> tuple[tuple, tuple]:
    """How a value of ``shape`` sums back down to ``target``, the shape it was broadcast
    from: (leading axes to sum away, axes of ``target`` of size 1 to sum with keepdims)."""
    lead = tuple(range(len(shape) - len(target)))
    kept = tuple(i for i, (d, t) in enumerate(zip(shape[len(lead) :], target)) if t == 1 and d != 1)
    return lead, kept
