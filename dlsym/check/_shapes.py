"""How the array a user's function returns is read against the expected layout.

Accepted (each says so in the report when it is not the plain layout):

- the layout of JAX: a gradient has its symbol's shape, a Hessian ``S + S``, a Jacobian
  ``output.shape + S``;
- the same entries with size-1 axes added or dropped: a bias gradient kept as ``[1, k]``
  (``sum(axis=0, keepdims=True)``) for ``b: [k]``, a scalar as ``[1]``;
- the diagonal alone, with the symbol's shape, where the expected result is diagonal at
  every point checked: the elementwise second derivative an activation's ``grad2`` returns
  (and an elementwise output's derivative).

Anything else is a failure whose diagnosis names both shapes and, where a table of
common shape mistakes explains the entries (a transpose, a sum over the batch not taken
or taken where none was meant, a flattened Hessian), says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """What the function's return is compared with: ``full`` = ``out + wrt * copies``."""

    wrt: str
    wrt_shape: tuple  # ints
    out_shape: tuple  # () for an objective
    copies: int  # 1 for a gradient or a Jacobian, 2 for a Hessian, ...
    result: str  # "gradient", "Hessian", ...
    axis_names: tuple  # the dim name of each axis of wrt_shape, or its size
    dims: tuple = ()  # the spec's (dim name, size): names the axes a return has too many

    @property
    def full(self) -> tuple:
        return self.out_shape + self.wrt_shape * self.copies

    @property
    def blocks(self) -> int:
        """How many copies of the wrt shape a diagonal runs through (0: no diagonal)."""
        if self.out_shape == ():
            return self.copies if self.copies >= 2 else 0
        return self.copies + 1 if self.out_shape == self.wrt_shape else 0


@dataclass(frozen=True)
class Aligned:
    """The entries to compare, each array (points, *shape)."""

    got: np.ndarray
    ref: np.ndarray
    tol: np.ndarray
    note: str | None = None
    mistake: str | None = None  # a shape mistake: the part fails whatever its entries


def _fits(got, ref, tol) -> bool:
    return got.shape == ref.shape and bool(np.all(np.abs(got - ref) <= 2 * tol))


def _diagonal(a: np.ndarray, layout: Layout):
    """(the diagonal, shaped (points, *wrt_shape); the rest, with the diagonal zeroed)."""
    n, k = int(np.prod(layout.wrt_shape, dtype=int)), layout.blocks
    flat = a.reshape((a.shape[0],) + (n,) * k).copy()
    at = (slice(None),) + (np.arange(n),) * k
    diag = flat[at].reshape((a.shape[0],) + layout.wrt_shape)
    flat[at] = 0
    return diag, flat


def _shape(s) -> str:
    return str(tuple(s))


# --- accepted layouts ---------------------------------------------------------------------


def _exact(got, ref, tol, layout):
    if got.shape[1:] == layout.full:
        return Aligned(got, ref, tol)
    return None


def _size_one_axes(got, ref, tol, layout):
    squeeze = [d for d in got.shape[1:] if d != 1]
    if squeeze != [d for d in layout.full if d != 1]:
        return None
    note = (
        f"returned with shape {_shape(got.shape[1:])}; the {layout.result} has shape "
        f"{_shape(layout.full)}: compared after dropping size-1 axes (keepdims)"
    )
    return Aligned(got.reshape(ref.shape), ref, tol, note)


def _diagonal_only(got, ref, tol, layout):
    if layout.blocks < 2 or [d for d in got.shape[1:] if d != 1] != [
        d for d in layout.wrt_shape if d != 1
    ]:
        return None
    diag_ref, off_ref = _diagonal(ref, layout)
    diag_tol, off_tol = _diagonal(tol, layout)
    g = got.reshape(diag_ref.shape)
    off = float(np.max(np.abs(off_ref) - off_tol, initial=-np.inf))
    if off <= 0:
        note = (
            f"returned with shape {_shape(got.shape[1:])}: compared with the diagonal of "
            f"the {layout.result} (shape {_shape(layout.full)}), which is diagonal here: "
            f"every off-diagonal entry is 0 at all {got.shape[0]} points"
        )
        return Aligned(g, diag_ref, diag_tol, note)
    largest = float(np.max(np.abs(off_ref)))
    diag_ok = "its diagonal matches" if _fits(g, diag_ref, diag_tol) else "and it is not"
    mistake = (
        f"returned shape {_shape(got.shape[1:])}, expected {_shape(layout.full)}: a return "
        f"of the symbol's shape is read as the diagonal, but this {layout.result} is not "
        f"diagonal (off-diagonal entries up to {largest:.3g}); {diag_ok}"
    )
    return Aligned(g, diag_ref, diag_tol, mistake=mistake)


ACCEPTED = (_exact, _size_one_axes, _diagonal_only)


# --- shape mistakes: (test, what it means) --------------------------------------------------


def _transposed(got, ref, tol, layout):
    if len(layout.full) != 2 or got.shape[1:] != layout.full[::-1]:
        return None
    g = got.swapaxes(1, 2)
    what = (
        f"transposed: you return the transpose of the {layout.result}"
        if _fits(g, ref, tol)
        else "transposed, and even transposed the entries differ"
    )
    return Aligned(g, ref, tol, mistake=_mismatch(got, layout, what))


def _axis_name(layout, size: int) -> str:
    """``8 = B``: the size and the dim it is, where one dim of the spec has that size."""
    names = {str(n) for n, s in layout.dims if s == size}
    return f"{size} = {names.pop()}" if len(names) == 1 else str(size)


def _extra_axis(got, ref, tol, layout):
    """One axis too many: per-example gradients not reduced over the batch."""
    shape = got.shape[1:]
    if len(shape) != len(layout.full) + 1:
        return None
    for axis in range(len(shape)):
        if shape[:axis] + shape[axis + 1 :] != layout.full:
            continue
        size = _axis_name(layout, shape[axis])
        for reduce, what in ((np.sum, "sum"), (np.mean, "mean")):
            if _fits(reduce(got, axis=axis + 1), ref, tol):
                return _mismatch(
                    got,
                    layout,
                    f"its {what} over axis {axis} (size {size}) matches: the per-example "
                    f"{layout.result}s were not reduced over that axis (the batch?)",
                )
        return _mismatch(got, layout, f"one axis too many (axis {axis}, size {size})")
    return None


def _missing_axis(got, ref, tol, layout):
    """One axis too few: a sum over the batch where each example has its own row."""
    shape = got.shape[1:]
    if len(shape) + 1 != len(layout.full):
        return None
    for axis in range(len(layout.full)):
        if layout.full[:axis] + layout.full[axis + 1 :] != shape:
            continue
        for reduce, what in ((np.sum, "sum"), (np.mean, "mean")):
            if _fits(got, reduce(ref, axis=axis + 1), reduce(tol, axis=axis + 1)):
                size = _axis_name(layout, layout.full[axis])
                return _mismatch(
                    got,
                    layout,
                    f"it is the {what} of the expected {layout.result} over axis {axis} "
                    f"(size {size}): "
                    f"the {layout.result} with respect to {layout.wrt} keeps that axis "
                    "(one row per example)",
                )
        return _mismatch(got, layout, f"axis {axis} (size {layout.full[axis]}) is missing")
    return None


def _flattened(got, ref, tol, layout):
    shape, full = got.shape[1:], layout.full
    if int(np.prod(shape, dtype=int)) != int(np.prod(full, dtype=int)) or len(shape) >= len(full):
        return None
    if _fits(got.reshape(ref.shape), ref, tol):
        return _mismatch(
            got,
            layout,
            f"it is the {layout.result} flattened: reshaped to {_shape(full)} (row-major) it "
            f"matches; return the layout of JAX ({_shape(full)})",
        )
    return None


MISTAKES = (_transposed, _extra_axis, _missing_axis, _flattened)


def _squeezed(shape) -> list:
    return [d for d in shape if d != 1]


def _drops_an_axis(longer, shorter) -> bool:
    return len(longer) == len(shorter) + 1 and any(
        longer[:a] + longer[a + 1 :] == shorter for a in range(len(longer))
    )


# the shapes the rules above read, by shape alone: a return of any other shape is a
# mismatch whatever its entries, which are then never stacked over the points (a
# (20000, 20000) array for a (4,) gradient would take 48 GiB over 16 points)
READ = (
    lambda s, lay: _squeezed(s) == _squeezed(lay.full),  # exact, size-1 axes
    lambda s, lay: lay.blocks >= 2 and _squeezed(s) == _squeezed(lay.wrt_shape),  # diagonal
    lambda s, lay: len(lay.full) == 2 and s == lay.full[::-1],  # transposed
    lambda s, lay: _drops_an_axis(s, lay.full),  # one axis too many
    lambda s, lay: _drops_an_axis(lay.full, s),  # one axis too few
    lambda s, lay: (
        len(s) < len(lay.full) and int(np.prod(s, dtype=int)) == int(np.prod(lay.full, dtype=int))
    ),  # flattened
)


def readable(shape: tuple, layout: Layout) -> bool:
    """Whether a return of ``shape`` (one point's) is one a rule reads: accepted, or a
    shape mistake whose entries say which."""
    return any(test(tuple(shape), layout) for test in READ)


def mismatch(shape: tuple, layout: Layout) -> str:
    """Why a return of ``shape`` (one point's), which no rule reads, cannot be compared."""
    return (
        f"returned shape {_shape(shape)}, expected {_shape(layout.full)} "
        f"(the {layout.result} with respect to {layout.wrt})"
    )


def _mismatch(got, layout: Layout, what: str | None = None) -> str:
    text = mismatch(got.shape[1:], layout)
    return f"{text}: {what}" if what else text


def align(got: np.ndarray, ref: np.ndarray, tol: np.ndarray, layout: Layout) -> Aligned | str:
    """The entries to compare, or (a string) why the return cannot be compared."""
    for rule in ACCEPTED + MISTAKES:
        found = rule(got, ref, tol, layout)
        if found is not None:
            return found
    return _mismatch(got, layout)
