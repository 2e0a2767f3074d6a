"""One tolerance policy: the default ``rtol``/``atol`` of a comparison in each dtype.

float64 results agree with their references to a few ulps, so 1e-7 leaves room for
rounding through long formulas without hiding a wrong term. float32 carries about seven
digits and loses one or two over a few operations, so its errors sit near 1e-5. A spec's
``verify: {rtol, atol}``, or the caller's, overrides the policy.
"""

from __future__ import annotations

TOLERANCES = {"float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5)}


def tolerance(
    dtype: str, rtol: float | None = None, atol: float | None = None
) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``: the given values, or the policy's defaults."""
    default_rtol, default_atol = TOLERANCES[dtype]
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)
