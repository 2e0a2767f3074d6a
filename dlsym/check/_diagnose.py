"""How a hand-written gradient is wrong: a mismatch tested against a table of common
mistakes (a flipped sign, a transpose, a constant factor, a missing or doubled term,
shifted entries), and where none fits, which rows or columns the mismatch is confined to.
Mistakes of shape are ``_shapes``'s."""

from __future__ import annotations

import numpy as np


def _fits(got, hyp, tol) -> bool:
    return got.shape == hyp.shape and bool(np.all(np.abs(got - hyp) <= 2 * tol))


def _factor_name(c: float, dims: dict) -> str | None:
    for name, n in dims.items():
        if n > 2 and np.isclose(c, n, rtol=1e-3):
            return f"off by a factor {n} = {name}: a sum where the mean over {name} is meant?"
        if n > 2 and np.isclose(c, 1 / n, rtol=1e-3):
            return f"off by a factor 1/{n} = 1/{name}: a mean where the sum over {name} is meant?"
    for k, text in ((2, "2 (a dropped 1/2?)"), (0.5, "1/2 (a missing factor 2?)")):
        if np.isclose(c, k, rtol=1e-6):
            return f"off by a constant factor {text}"
    return f"off by a constant factor {c:.6g} (relative error {c - 1:+.2e})"


def diagnose(
    got, ref, tol, terms: list, dims: dict, axes: tuple = (), result: str = "gradient"
) -> str | None:
    """Which common mistake explains ``got`` (points x shape, the shape of ``ref``);
    ``axes`` names each axis of the shape (a dim name or its size), ``result`` what
    ``ref`` is (the gradient, the Hessian, ...)."""
    # an inf or a nan the user's function returned makes the hypotheses' sums inf - inf:
    # no hypothesis fits then, and NumPy's warnings about it are noise on stderr
    with np.errstate(all="ignore"):
        return _diagnose(got, ref, tol, terms, dims, axes, result)


def _diagnose(got, ref, tol, terms: list, dims: dict, axes: tuple, result: str) -> str | None:
    bad = ~np.isfinite(got) & np.isfinite(ref)
    if bad.any():
        kinds = [k for k, test in (("inf", np.isinf), ("nan", np.isnan)) if test(got[bad]).any()]
        return (
            f"your {result} is not finite ({', '.join(kinds)}) in {int(bad.sum())} of "
            f"{bad.size} entries where the expected one is finite: an overflow, a division "
            "by zero or a 0/0?"
        )
    if not np.any(got):  # (a mismatch: the expected result is not zero)
        return "your result is zero everywhere; the expected one is not"
    if np.all(np.abs(got) <= tol):
        # rows of P − Y averaged along the wrong axis: 1e-17 everywhere read "off by a
        # constant factor 7.4e-18"
        return (
            "your result is zero everywhere up to rounding (within the tolerance at every "
            "entry); the expected one is not: a sum or mean along the wrong axis, where "
            "the entries cancel?"
        )
    if _fits(got, -ref, tol):
        return f"sign flipped: your {result} is the negative of the expected one"
    if got.ndim == 3 and got.shape[1] == got.shape[2] and _fits(got, ref.swapaxes(1, 2), tol):
        return f"transposed: you return the transpose of the {result}"
    denom = float(np.sum(ref * ref))
    if denom > 0:
        c = float(np.sum(got * ref) / denom)
        if abs(c - 1) > 1e-12 and _fits(got, c * ref, tol):
            return _factor_name(c, dims)
    for text, value in terms:
        # got = ref + (c - 1) * term: one term scaled by c (0: missing, -1: sign, m: sum/mean)
        tt = float(np.sum(value * value))
        if tt == 0:
            continue
        c = 1 + float(np.sum((got - ref) * value) / tt)
        if abs(c - 1) < 1e-9 or not _fits(got, ref + (c - 1) * value, tol):
            continue
        for k, what in (
            (0, f"a missing term: {text}"),
            (-1, f"the term {text} has the wrong sign"),
            (2, f"the term {text} is counted twice"),
        ):
            if abs(c - k) < 1e-6:
                return what
        return f"the term {text} is {_factor_name(c, dims)}"
    if got.ndim >= 2:
        for shift in (1, -1):
            if _fits(got, np.roll(ref, shift, axis=-1), tol):
                return "entries shifted by one position along the last axis (an off-by-one index?)"
        if got.ndim == 3:
            for shift in (1, -1):
                if _fits(got, np.roll(ref, shift, axis=1), tol):
                    return "entries shifted by one position along the first axis (wrong axis?)"
    return _localised(np.abs(got - ref) > tol, axes)


AXIS_WORDS = {(1, 0): "entry", (2, 0): "row", (2, 1): "column"}  # (ndim, axis) -> word


def _localised(bad, axes: tuple) -> str | None:
    """Only some rows (examples of a batch), columns or entries differ: say which, e.g.
    the last example of the batch, or the class column of the label; one entry alone is
    named by its index."""
    shape = bad.shape[1:]
    cells = np.argwhere(bad.any(axis=0))
    if len(shape) > 1 and len(cells) == 1:
        # (a tensor's one wrong entry read "only indices along axis 0 0 (of 2 = B along
        # axis 0) differ")
        return f"only the entry {[int(i) for i in cells[0]]} differs; the others match"
    for axis, size in enumerate(shape):
        if size < 2:
            continue
        others = tuple(a for a in range(bad.ndim) if a != axis + 1)
        hit = np.flatnonzero(bad.any(axis=others))
        if 0 < len(hit) < size:
            name = axes[axis] if axis < len(axes) else size
            of = f"{size} = {name}" if str(name) != str(size) else str(size)
            listed = ", ".join(map(str, hit[:8])) + (", ..." if len(hit) > 8 else "")
            word = AXIS_WORDS.get((len(shape), axis), "index")
            several = len(hit) > 1
            plural = {"entry": "entries", "index": "indices"}.get(word, word + "s")
            verb = "differ" if several else "differs"
            return (
                f"only {plural if several else word} {listed} (of {of} along axis {axis}) "
                f"{verb}; the others match"
            )
    return None
