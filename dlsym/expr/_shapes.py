"""Shapes over symbolic sizes: a shape is a tuple of dims (SymPy Symbols for positive
integers, or Integers). NumPy's broadcasting, and how a broadcast value sums back."""

from __future__ import annotations

import sympy as sp

Shape = tuple  # a tuple of dims: SymPy Symbols (positive integers) or Integers


class ShapeError(ValueError):
    """Raised by shape rules; the parser adds the location."""

    sizes: tuple = ()  # two sizes that differ, where one pair is to blame


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
        # a size 1 against a missing axis stays 1 ([1, 3] * [3] is [1, 3]; it was None)
        if da is None or (da == 1 and db is not None):
            out.append(db)
        elif db is None or db == 1 or da == db:
            out.append(da)
        else:
            error = ShapeError(
                f"cannot {what} a {fmt_shape(a)} and a {fmt_shape(b)}: sizes {da} and {db} "
                "of their last axes differ (NumPy broadcasting aligns the last axes)"
            )
            error.sizes = (da, db)  # the parser says where they agree at the spec's dims
            raise error
    return tuple(reversed(out))


def unbroadcast_axes(shape: Shape, target: Shape) -> tuple[tuple, tuple]:
    """How a value of ``shape`` sums back down to ``target``, the shape it was broadcast
    from: (leading axes to sum away, axes of ``target`` of size 1 to sum with keepdims)."""
    lead = tuple(range(len(shape) - len(target)))
    kept = tuple(i for i, (d, t) in enumerate(zip(shape[len(lead) :], target)) if t == 1 and d != 1)
    return lead, kept


def solve_sizes(pairs) -> dict:
    """{dim: int} read off ``pairs`` of (declared size, actual size): a plain dim takes
    the size it stands for; a dim that appears only inside a size expression (``4*H``,
    ``n + 1``, declared as ``W: [n, 4*H]``) is solved for, once it is the only unknown
    of a linear one. Raises ``SizeMismatch`` naming the size that does not fit."""
    pairs = [(sp.sympify(d), int(n)) for d, n in pairs]
    found: dict = {}
    for i, (d, n) in enumerate(pairs):
        if d.is_Symbol and found.setdefault(d, n) != n:
            raise SizeMismatch(i, f"size {n} where {d} = {found[d]}")
    for d, n in pairs:
        unknown = d.free_symbols - set(found)
        if len(unknown) == 1:
            (u,) = unknown
            solved = linear_solution(d.xreplace(found), u, n)
            if solved is None:
                solved = increasing_solution(d.xreplace(found), u, n)
            if solved is not None:
                found[u] = solved
    for i, (d, n) in enumerate(pairs):
        if d.free_symbols <= set(found) and int(d.xreplace(found)) != n:
            known = ", ".join(f"{s} = {found[s]}" for s in sorted(d.free_symbols, key=str))
            raise SizeMismatch(
                i,
                f"size {n} where {d} = {d.xreplace(found)} ({known})"
                if known
                else f"size {n} where the spec declares {d}",
            )
    return found


class SizeMismatch(ValueError):
    """An array's size that does not fit its declared one; ``index``: which pair."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


def linear_solution(e, u, n: int) -> int | None:
    """The positive integer ``u`` with ``e(u) = n`` where ``e = a*u + c`` (a, c numbers),
    else None."""
    a, c = linear_parts(e, u)
    if a is None or a == 0:
        return None
    value = (n - c) / a
    return int(value) if value.is_Integer and value > 0 else None


def increasing_solution(e, u, n: int) -> int | None:
    """The positive integer ``u`` with ``e(u) = n`` for a polynomial ``e`` with
    nonnegative coefficients (``n*n``, ``n*(n + 1)/2``), increasing for u >= 1: found by
    bisection. None where ``e`` is no such polynomial or no integer fits. (A size
    ``n*n`` read off an array of 10⁶ entries is n = 1000; the spec's n = 8000 stood for it
    at verification's smaller sizes, and broadcasting failed.)"""
    try:
        poly = sp.Poly(e, u)
    except sp.PolynomialError:
        return None
    if poly.degree() < 1 or not all(c.is_number and c >= 0 for c in poly.all_coeffs()):
        return None
    low, high = 1, max(n, 1)
    while low <= high:
        mid = (low + high) // 2
        value = poly.eval(mid)
        if value == n:
            return mid
        low, high = (mid + 1, high) if value < n else (low, mid - 1)
    return None


def linear_parts(e, u) -> tuple:
    """(a, c) with ``e = a*u + c``, both numbers; (None, None) when ``e`` is not so."""
    a, c = sp.expand(e).coeff(u, 1), sp.expand(e).coeff(u, 0)
    if not (a.is_number and c.is_number) or sp.expand(a * u + c - e) != 0:
        return None, None
    return a, c
