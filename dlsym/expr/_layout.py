"""Operations that move entries without computing new ones: NumPy's indexing (ints,
slices, ``None``), ``transpose(X, axes)`` / ``swapaxes``, ``reshape``, ``concatenate``,
``stack``, ``take_along_axis`` and ``einsum`` (which multiplies and sums, but is read
entry by entry like them), with the adjoints that put entries back (``scatter``,
``put_along_axis``). They work on tensors of any rank (shared/spec-format.md, "Tensors of
any rank"). Their non-tensor arguments (axes, index items, shapes, the einsum
subscripts) are *static*: listed in each class's ``static`` and never differentiated.
"""

from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str

from dlsym.expr import _ops as ops
from dlsym.expr._ops import TensorOp
from dlsym.expr._shapes import ShapeError, fmt_shape, size


def _ints(t) -> tuple:
    return tuple(int(a) for a in t)


def _normalized(axis: int, rank: int, name: str) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for {rank} axes in {name}")
    return axis % rank


class expand_dims(TensorOp):
    """``expand_dims(a, (axes...))``: new axes of size 1 at those positions of the result
    (``x[None, :]``, ``X[:, None]``)."""

    nargs = 2
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        s, axes = list(shapes[0]), sorted(_ints(args[1]))
        for axis in axes:
            s.insert(axis, sp.Integer(1))
        return tuple(s)


class permute(TensorOp):
    """``permute(a, (perm...))`` is ``numpy.transpose(a, perm)``; ``swapaxes`` is one."""

    nargs = 2
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        s, perm = shapes[0], _ints(args[1])
        if sorted(perm) != list(range(len(s))):
            raise ShapeError(
                f"axes {perm} are not a permutation of the {len(s)} axes of a {fmt_shape(s)}"
            )
        return tuple(s[p] for p in perm)


def swap_last(rank: int) -> tuple:
    """The permutation that swaps the last two axes (a stack of matrices transposed)."""
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


class reshape(TensorOp):
    """``reshape(a, (dims...))``, in C order as NumPy's; the sizes must match."""

    nargs = 2
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        new = tuple(args[1])
        if sp.expand(size(new) - size(shapes[0])) != 0:
            raise ShapeError(
                f"cannot reshape a {fmt_shape(shapes[0])} into [{', '.join(map(str, new))}]: "
                "the sizes differ"
            )
        return new


# An index item is an Integer (x[2]), a Tuple(start, stop, step) (a slice, its bounds
# resolved against the axis's size) or the empty Tuple (None: a new axis). A negative
# step runs from start down to stop, which is -1 where it runs through entry 0 (x[::-1]
# is (n - 1, -1, -1)): NumPy would read a stop of -1 as the last entry, so printers and
# explicit entries write it as an omitted stop (``stop_of``).
NEWAXIS = sp.Tuple()


def slice_length(start, stop, step):
    return sp.ceiling((stop - start) / step) if step != 1 else stop - start


def stop_of(item):
    """A slice item's stop as NumPy takes it: None where a negative step runs through 0."""
    start, stop, step = item
    return None if step < 0 and stop == -1 else stop


class index(TensorOp):
    """``index(a, (items...))``: NumPy's basic indexing, ``x[1:]``, ``X[:, 0]``,
    ``x[None, :]``. Axes past the items are kept whole."""

    nargs = 2
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        s, items = shapes[0], args[1]
        axis, out = 0, []
        for item in items:
            if item == NEWAXIS:
                out.append(sp.Integer(1))
                continue
            if axis >= len(s):
                raise ShapeError(f"too many indices for a {fmt_shape(s)}")
            if isinstance(item, sp.Tuple):
                out.append(slice_length(*item))
            axis += 1
        return tuple(out) + tuple(s[axis:])


def size_one_entries(items, dims) -> tuple:
    """The axes of size 1 that ``items`` take entry 0 of, where every other item is a
    whole axis (the gradient's [:, 0] of X[B, T, n] @ w, taken as a matrix [n, 1]);
    () where any entry is left out."""
    if len(items) > len(dims) or NEWAXIS in items:
        return ()
    dropped = []
    for axis, (i, n) in enumerate(zip(items, dims)):
        if isinstance(i, sp.Tuple) and tuple(i) == (0, n, 1):
            continue
        if i == 0 and n == 1:
            dropped.append(axis)
            continue
        return ()
    return tuple(dropped)


class scatter(TensorOp):
    """``scatter(g, items, (dims...))``: zeros of shape ``dims`` with ``g`` placed at
    ``items``, the adjoint of ``index``."""

    nargs = 3
    static = (1, 2)

    @classmethod
    def result_shape(cls, args, shapes):
        return tuple(args[2])


class concatenate(TensorOp):
    """``concatenate(axis, a, b, ...)``: NumPy's ``concatenate([a, b, ...], axis)``."""

    nargs = None
    static = (0,)

    @classmethod
    def result_shape(cls, args, shapes):
        parts = shapes[1:]
        first = parts[0]
        if not first:
            raise ShapeError("concatenate needs arrays, got a scalar")
        axis = _normalized(int(args[0]), len(first), "concatenate")
        for s in parts[1:]:
            if len(s) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis
            ):
                raise ShapeError(
                    f"cannot concatenate a {fmt_shape(first)} and a {fmt_shape(s)} "
                    f"along axis {axis}: the other sizes differ"
                )
        total = sp.Add(*(s[axis] for s in parts))
        return tuple(first[:axis]) + (total,) + tuple(first[axis + 1 :])


class stack(TensorOp):
    """``stack(axis, a, b, ...)``: NumPy's ``stack([a, b, ...], axis)``."""

    nargs = None
    static = (0,)

    @classmethod
    def result_shape(cls, args, shapes):
        parts = shapes[1:]
        for s in parts[1:]:
            if s != parts[0]:
                raise ShapeError(f"cannot stack a {fmt_shape(parts[0])} and a {fmt_shape(s)}")
        axis = _normalized(int(args[0]), len(parts[0]) + 1, "stack")
        s = list(parts[0])
        s.insert(axis, sp.Integer(len(parts)))
        return tuple(s)


class take_along_axis(TensorOp):
    """``take_along_axis(a, ids, axis)`` with labels ``ids`` (``domain: {index: k}``) of
    the same rank: ``a``'s entries at ``ids`` along ``axis``."""

    nargs = 3
    static = (2,)

    @classmethod
    def result_shape(cls, args, shapes):
        s, ids = shapes[0], shapes[1]
        if len(ids) != len(s):
            raise ShapeError(
                f"take_along_axis needs labels of the same rank as the array: a "
                f"{fmt_shape(ids)} for a {fmt_shape(s)} (index with ids[:, None])"
            )
        axis = _normalized(int(args[2]), len(s), "take_along_axis")
        for i, (a, b) in enumerate(zip(s, ids)):
            if i != axis and a != b and b != 1:
                raise ShapeError(
                    f"take_along_axis: labels {fmt_shape(ids)} do not fit a {fmt_shape(s)}"
                )
        return tuple(ids[i] if i == axis else s[i] for i in range(len(s)))


class put_along_axis(TensorOp):
    """``put_along_axis(g, ids, axis, n)``: each entry of ``g`` added at its label along
    ``axis`` (of size n), zeros elsewhere; the adjoint of ``take_along_axis``."""

    nargs = 4
    static = (2, 3)

    @classmethod
    def result_shape(cls, args, shapes):
        s = list(shapes[0])
        s[int(args[2])] = args[3]
        return tuple(s)


def einsum_parts(subscripts: str) -> tuple[list[str], str]:
    """('ij,jk->ik') -> (['ij', 'jk'], 'ik'); the implicit output as NumPy's (the letters
    used once, in alphabetical order)."""
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins = subscripts
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return ins.split(","), out


class einsum(TensorOp):
    """``einsum(subscripts, a, b, ...)``: NumPy's, explicit letters only (no ``...``)."""

    nargs = None
    static = (0,)

    @classmethod
    def result_shape(cls, args, shapes):
        text = args[0].name if isinstance(args[0], Str) else str(args[0])
        ins, out = einsum_parts(text)
        operands = shapes[1:]
        if len(ins) != len(operands):
            raise ShapeError(f"einsum '{text}' names {len(ins)} operands, got {len(operands)}")
        sizes: dict = {}
        for letters, s in zip(ins, operands):
            if len(letters) != len(s):
                raise ShapeError(
                    f"einsum '{text}': '{letters}' has {len(letters)} letters for a {fmt_shape(s)}"
                )
            for c, d in zip(letters, s):
                if sizes.setdefault(c, d) != d:
                    raise ShapeError(f"einsum '{text}': '{c}' is both {sizes[c]} and {d}")
        for c in out:
            if c not in sizes or out.count(c) > 1:
                raise ShapeError(
                    f"einsum '{text}': output letter '{c}' is not an input's, or repeats"
                )
        return tuple(sizes[c] for c in out)


# Operations each of whose entries is an entry of their tensor argument, or a sum of its
# entries: linear, with weights 1 (or 1/n for a mean). An expectation passes through
# them (dlsym.calculus._moments) and they keep the curvature of the entries they
# gather (dlsym.calculus._curvature).
SELECTIONS = (
    ops.transpose,
    ops.tsum,
    ops.tmean,
    ops.trace,
    ops.diag,
    ops.entry,
    index,
    reshape,
    permute,
    expand_dims,
)
