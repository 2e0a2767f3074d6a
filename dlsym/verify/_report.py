"""One report: a ``Check`` per comparison, and the ``VerificationReport`` every section
and ``dlsym check`` return."""

from __future__ import annotations

import dataclasses
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
    # what the compared numbers were computed in, as ``compare`` found them ("" where a
    # check compares no arrays): the derived values, and the reference's
    dtype: str = ""
    reference_dtype: str = ""
    # nothing could be compared, and nothing was found wrong: the reference and the
    # result both past float64's range at every point (1e308 ‖x‖², whose gradient 2e308 x
    # overflows), or a Monte Carlo estimate that no point could conclude (E[x¹⁰⁰])
    inconclusive: bool = False


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


def _range(dtypes: dict) -> str:
    """The narrower of the two dtypes compared, with its largest value: what overflowed
    (a float32 run said "overflow float64")."""
    names = [n for n in (dtypes["dtype"], dtypes["reference_dtype"]) if n]
    name = min(names, key=lambda n: np.finfo(n).max, default="float64")
    return f"{name} (past {float(np.finfo(name).max):.2g})"


def _dtype_name(a: np.ndarray) -> str:
    return a.dtype.name if a.dtype.kind == "f" else ""  # integers, booleans: exact


def compare(kind, wrt, reference, derived, expected, rtol, atol, note="", bounds=None) -> Check:
    """``derived`` against ``expected`` (leading axis: the points), entry by entry:
    ``|derived - expected| <= atol + rtol |expected|``, or ``<= bounds`` (an array like
    ``expected``: a Monte Carlo estimate's confidence bound per entry, reported as the
    worst entry's ``bound``). The dtypes the two arrays were computed in are recorded on
    the ``Check`` (pass them as computed, not cast)."""
    derived, expected = np.asarray(derived), np.asarray(expected)
    dtypes: dict = {"dtype": _dtype_name(derived), "reference_dtype": _dtype_name(expected)}
    derived, expected = derived.astype(float), expected.astype(float)
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
            **dtypes,
        )
    finite = np.isfinite(expected)
    if not finite.all():
        rows = (points, -1)
        bad = ~finite.reshape(rows).all(axis=1)
        # a point where the reference and the result are both not finite, with an ±inf
        # among them, is past float64's range on both sides (1e308 ‖x‖², exp(1000 x), a
        # recurrence h² + w that explodes over 60 steps; a nan beside the inf is inf * 0
        # or inf − inf of the same overflow): nothing to compare there, nothing found wrong
        # (a point nan on both sides counts where others in the check hold ±inf: the
        # exploding recurrence's inf − inf)
        inf = (np.isinf(expected) | np.isinf(derived)).reshape(rows).any(axis=1)
        overflowed = bad & ~np.isfinite(derived).reshape(rows).all(axis=1) & inf.any()
        if (bad & ~overflowed).any() or overflowed.all():
            every = bool(overflowed.all())
            return Check(
                kind,
                wrt,
                reference,
                points,
                float("nan"),
                float("nan"),
                False,
                note=(
                    f"the reference and the result overflow {_range(dtypes)} at every "
                    "point: scale the objective down"
                    if every
                    else f"the reference is not finite at {int((bad & ~overflowed).sum())} of "
                    f"{points} points: check the symbols' domains"
                ),
                # nothing compared at any point: verification cannot run (exit 2)
                inconclusive=every or bool(bad.all()),
                **dtypes,
            )
        keep = ~overflowed
        skipped = int(overflowed.sum())
        check = compare(
            kind,
            wrt,
            reference,
            derived[keep],
            expected[keep],
            rtol,
            atol,
            note,
            None if bounds is None else np.asarray(bounds)[keep],
        )
        said = (
            f"{skipped} of {points} points overflow {_range(dtypes)} on both sides and are "
            "not compared"
        )
        if check.passed and not expected[keep].any() and not derived[keep].any():
            # 0 on both sides wherever it does not overflow: x**100000 underflows below
            # |x| = 1 and overflows above, and "passed, error 0" compared nothing
            return dataclasses.replace(
                check,
                passed=False,
                max_abs_error=float("nan"),
                max_rel_error=float("nan"),
                note="the reference and the result are 0 at every point where they do not "
                "overflow float64 (an underflow, or a value that is 0 there): nothing to "
                "compare; scale the objective or give the symbols other domains",
                inconclusive=True,
                **dtypes,
            )
        return dataclasses.replace(
            check, note=f"{check.note}; {said}" if check.note else said, **dtypes
        )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverged result
        err = np.abs(derived - expected)
        err = np.where(np.isfinite(derived), err, np.inf)
        tol = atol + rtol * np.abs(expected) if bounds is None else np.asarray(bounds)
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
    if bounds is not None:
        worst["bound"] = float(tol[p][entry])
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
        **dtypes,
    )


def _names(reference: str) -> list:
    """The references a check names, each alone ("a and b; c at n=3" -> a, b, c)."""
    return re.split(r" and |; ", reference.split(" at ")[0])


def _add(found: list, items) -> None:
    found += [x for x in dict.fromkeys(items) if x not in found]


def report(
    checks,
    points: int,
    dtype: str,
    device: str,
    rtol: float,
    atol: float,
    sort_references: bool = False,
) -> VerificationReport:
    """The ``VerificationReport`` of a list of ``Check``s (None entries are skipped).

    Its ``reference`` names each reference once, in the order the checks first use it
    (alphabetically with ``sort_references``), then what ran: ``dtype`` and ``device``,
    then whatever was computed in another dtype than ``dtype`` (SciPy's references run in
    float64 whatever was asked), so that a float32 run does not claim more than it did."""
    checks = [c for c in checks if c is not None]
    # other_*: {dtype: names in the order met}
    refs: list = []
    other_refs: dict = {}
    other_derived: dict = {}
    for c in checks:
        names = _names(c.reference)
        _add(refs, names)
        if c.reference_dtype not in ("", dtype):
            _add(other_refs.setdefault(c.reference_dtype, []), names)
        if c.dtype not in ("", dtype):
            _add(other_derived.setdefault(c.dtype, []), [c.kind])
    if sort_references:
        refs.sort()
    ran = [
        f"{'the references' if set(names) == set(refs) else ' and '.join(names)} in {d}"
        for d, names in sorted(other_refs.items())
    ] + [f"derived {' and '.join(kinds)} in {d}" for d, kinds in sorted(other_derived.items())]
    where = "; ".join([f"{dtype}, {device}"] + ran)
    return VerificationReport(
        passed=all(c.passed for c in checks),
        points=points,
        max_abs_error=max((c.max_abs_error for c in checks), default=0.0),
        max_rel_error=max((c.max_rel_error for c in checks), default=0.0),
        # no check at all (a closed form that was not found): said, not an empty name
        reference=(" and ".join(refs) if refs else "nothing to check") + f" ({where})",
        checks=tuple(checks),
        device=device,
        dtype=dtype,
        rtol=rtol,
        atol=atol,
    )
