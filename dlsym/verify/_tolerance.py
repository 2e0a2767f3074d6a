"""One tolerance policy per dtype.

Verification (``DerivationBase.verify``): the default ``rtol``/``atol`` of a comparison
in each dtype. float64 results agree with their references to a few ulps, so 1e-7 leaves
room for rounding through long formulas without hiding a wrong term. float32 carries about
seven digits and loses one or two over a few operations, so its errors sit near 1e-5. A
spec's ``verify: {rtol, atol}``, or the caller's, overrides the policy. No section sets
tolerances of its own: a comparison with a numeric solver's result (SLSQP, a bounded
scalar search) is held to that solver's documented accuracy, or to the dtype's policy
where that is coarser (``solver_tolerance``).

``dlsym check`` (``check_tolerance``): a per-entry tolerance measured at each point, for
checking a user's code rather than a derivation; see its docstring.
"""

from __future__ import annotations

import numbers

import numpy as np

from dlsym._errors import SpecError
from dlsym.verify._sampling import interval

TOLERANCES = {"float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5)}
SAFETY = 16  # tolerance = SAFETY x the error a correct implementation can show

# A fixed-point iteration used as a reference (value iteration, the Riccati recursion)
# stops when an update changes its iterate by less than this, relative to its largest
# entry: about four ulps of the dtype (eps: 2.2e-16, 1.2e-7), below which the updates are
# rounding noise that need not ever reach zero.
ITERATION_TOL = {"float64": 1e-15, "float32": 5e-7}
# an iteration whose change, once below this (relative to the iterate), has stopped
# shrinking has settled at rounding error: LQR's Riccati recursion with A = diag(1000, 1)
# hovers at 4e-10 with P ~ 2.6e6, above ITERATION_TOL for ever
SETTLED_TOL = {"float64": 1e-12, "float32": 1e-5}


def tolerance(
    dtype: str, rtol: float | None = None, atol: float | None = None, who: str = "verify()"
) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``: the given values, or the policy's defaults. A
    value no spec's ``verify`` key would take is a SpecError: ``verify(rtol=-1)`` failed
    every check of a right result, ``rtol=1e300`` passed any, ``dtype="float16"`` was a
    KeyError."""
    if dtype not in TOLERANCES:
        raise SpecError(f"{who}: dtype must be one of {', '.join(TOLERANCES)}, got {dtype!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1
        ):
            raise SpecError(f"{who}: {name} must be a number in [0, 1), got {value!r}")
    default_rtol, default_atol = TOLERANCES[dtype]
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def solver_tolerance(dtype: str, rtol: float, atol: float) -> tuple[float, float]:
    """``(rtol, atol)`` of a comparison with a numeric solver's result that is good to
    ``rtol``/``atol``: the solver's accuracy, or the dtype's where the derived values
    computed in that dtype are coarser (float32 against a float64 solver)."""
    default_rtol, default_atol = TOLERANCES[dtype]
    return max(rtol, default_rtol), max(atol, default_atol)


def cancellation_bound(
    dtype: str, rtol: float, atol: float, expected, magnitude, length: int
) -> np.ndarray:
    """Per-entry bound of a comparison whose derived side sums terms of ``magnitude``
    (an array like ``expected``: the entries' absolute terms, products of ``length``-long
    dot products) that cancel to ``expected``: ``atol + rtol |expected|``, or the
    rounding error such a sum carries, SAFETY x length x eps x magnitude, where that is
    larger. LQR's Riccati right-hand side with A = diag(1e6, 1) sums Aᵀ P A ~ 2.6e24 to
    P ~ 2.6e12: float64 keeps four digits of it, and a right P failed at rtol 1e-7."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    plain = atol + rtol * np.abs(expected)
    return np.maximum(plain, SAFETY * length * eps * np.asarray(magnitude))


# --- dlsym check ------------------------------------------------------------------------

_NUDGE = interval(-1.0, 1.0)  # relative moves of the inputs, in units of eps
# Agreement to this fraction of the gradient's largest entry at a point is a match
# whatever the measured errors: about 4500 ulps in float64, far below anything a
# gradient is used for, and the size of the change that a loss's own guard constant
# makes (``log(p + eps)`` with eps = 2.2e-16 moves the exact gradient by eps / p, which a
# hand-written ``p - y`` rightly leaves out). In float32, SAFETY x eps max|g| is coarser
# already.
FLOOR = {"float64": 1e-12, "float32": 0.0}


def check_tolerance(
    fn64, point64: dict, point_dtype: dict, expected: dict, dtype: str, rng, autodiff=None
):
    """``dlsym check``'s tolerance, per entry of the gradient at one point:
    max(SAFETY x (eps |g| + eps max|g| + R + S), FLOOR[dtype] x max|g|), where R is the
    rounding error in ``dtype`` (0 for float64) of the reference formula and of
    ``autodiff`` (reverse mode through the spec's text, as jax.grad and PyTorch compute
    it), the largest at the point, and S the change when the inputs move by one rounding
    error (the conditioning). Returns ({wrt: tolerance}, the largest conditioning factor
    (R + S) / (eps max|g|))."""
    eps = float(np.finfo(np.dtype(dtype)).eps)  # float16 too: what a function returned
    owns = []
    if dtype != "float64":
        owns = [fn64(**point_dtype)]
        if autodiff is not None:
            with np.errstate(all="ignore"):
                try:
                    owns.append(autodiff(**point_dtype))
                except Exception:  # noqa: BLE001 - only an estimate: the formula's stands
                    pass
    spread = {w: np.zeros_like(v) for w, v in expected.items()}
    for _ in range(2):
        # integer labels (domain {index: k}) index arrays: they are not nudged
        moved = {
            k: v * (1 + eps * _NUDGE(rng, np.shape(v))) if _floating(v) else v
            for k, v in point64.items()
        }
        g = fn64(**moved)
        for w in expected:
            spread[w] = np.maximum(spread[w], np.abs(np.asarray(g[w]) - expected[w]))
    tol, kappa = {}, 0.0
    for w, e in expected.items():
        scale = float(np.max(np.abs(e), initial=0.0))
        # the reference's own rounding in dtype, normwise: its largest at the point for
        # every entry. Entry by entry it is one sample of a rounding error, near 0 by
        # luck at some entries, and jax.grad of attention in float32 (20 eps max|g| at
        # an entry where the reference happened to round to 0.3) was flagged
        rounding = max(
            (
                _largest_finite(np.asarray(own[w], dtype=np.float64) - e)
                for own in owns
                if np.shape(own[w]) == np.shape(e)  # autodiff in another layout: no estimate
            ),
            default=0.0,
        )
        base = eps * np.abs(e) + eps * scale
        tol[w] = np.maximum(
            SAFETY * (base + rounding + spread[w]) + np.finfo(np.float64).tiny,
            FLOOR.get(dtype, 0.0) * scale,
        )
        kappa = max(kappa, float(np.max((rounding + spread[w]) / (eps * scale + 1e-300))))
    return tol, kappa


def _largest_finite(d) -> float:
    """The largest finite |d| (autodiff of the text can overflow where the derived
    formula does not: it is then no estimate of rounding)."""
    d = np.abs(np.asarray(d, dtype=np.float64))
    return float(np.max(d[np.isfinite(d)], initial=0.0))


def _floating(v) -> bool:
    return not np.issubdtype(np.asarray(v).dtype, np.integer)


def check_tolerance_why(dtype: str, kappa: float) -> str:
    """How ``check_tolerance`` was set, as ``dlsym check`` prints it."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    floor = f", and at least {FLOOR[dtype]:g} max|g|" if FLOOR.get(dtype) else ""
    return (
        f"per entry, {SAFETY} x (eps |g| + eps max|g| + the largest {dtype} rounding of "
        "the reference formula and of reverse-mode autodiff at the point + its change "
        "when the inputs move by one rounding error)"
        f"{floor}; eps = {eps:.3g} ({dtype}); largest measured conditioning factor "
        f"{kappa:.3g}"
    )
