"""One report: a ``Check`` per comparison, and the ``VerificationReport`` every section
and ``dlsym check`` return."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Check:
    kind: str
    wrt: str
    reference: str
    points: int
    max_abs_error: float
    max_rel_error: float
    passed: bool
    worst: dict | None = None  # point, index, expected, got (of the worst entry)
    note: str = ""


@dataclass(frozen=True)
class VerificationReport:
    passed: bool
    points: int
    max_abs_error: float
    max_rel_error: float
    reference: str
    checks: tuple
    device: str
    dtype: str
    rtol: float
    atol: float
    tolerance_note: str = ""  # checks held to other tolerances (a numeric solver's)

    def to_dict(self) -> dict:
        out = {
            "passed": self.passed,
            "points": self.points,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "reference": self.reference,
            "device": self.device,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "checks": [c.__dict__ for c in self.checks],
        }
        if self.tolerance_note:
            out["tolerance_note"] = self.tolerance_note
        return out


def compare(kind, wrt, reference, derived, expected, rtol, atol, note="") -> Check:
    derived = np.asarray(derived, dtype=float)
    expected = np.asarray(expected, dtype=float)
    points = expected.shape[0]
    if derived.shape != expected.shape:
        return Check(
            kind,
            wrt,
            reference,
            points,
            float("inf"),
            float("inf"),
            False,
            note=f"shape {derived.shape[1:]} differs from the reference's {expected.shape[1:]}",
        )
    finite = np.isfinite(expected)
    if not finite.all():
        bad = int((~finite.reshape(points, -1).all(axis=1)).sum())
        return Check(
            kind,
            wrt,
            reference,
            points,
            float("nan"),
            float("nan"),
            False,
            note=f"the reference is not finite at {bad} of {points} points: "
            "check the symbols' domains",
        )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverged result
        err = np.abs(derived - expected)
        err = np.where(np.isfinite(derived), err, np.inf)
        tol = atol + rtol * np.abs(expected)
        rel = err / np.maximum(np.abs(expected), max(atol, 1e-300))
    excess = (err - tol).reshape(points, -1)
    flat = int(np.argmax(excess))
    p, i = divmod(flat, excess.shape[1])
    entry = np.unravel_index(i, expected.shape[1:]) if expected.ndim > 1 else ()
    worst = {
        "point": int(p),
        "index": [int(j) for j in entry],
        "expected": float(expected[p][entry]),
        "got": float(derived[p][entry]),
    }
    passed = bool((err <= tol).all())
    return Check(
        kind,
        wrt,
        reference,
        points,
        float(err.max(initial=0.0)),
        float(rel.max(initial=0.0)),
        passed,
        None if passed else worst,
        note,
    )


def report(checks, points: int, dtype: str, device: str, rtol: float, atol: float):
    """A ``VerificationReport`` from a list of ``Check``s."""
    checks = [c for c in checks if c is not None]
    refs = []
    for c in checks:  # each reference once, even inside combined ones ("a and b; c")
        for ref in re.split(r" and |; ", c.reference.split(" at ")[0]):
            if ref not in refs:
                refs.append(ref)
    return VerificationReport(
        passed=all(c.passed for c in checks),
        points=points,
        max_abs_error=max((c.max_abs_error for c in checks), default=0.0),
        max_rel_error=max((c.max_rel_error for c in checks), default=0.0),
        reference=" and ".join(refs) + f" ({dtype}, {device})",
        checks=tuple(checks),
        device=device,
        dtype=dtype,
        rtol=rtol,
        atol=atol,
    )
