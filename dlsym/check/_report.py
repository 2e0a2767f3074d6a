"""What ``dlsym check`` found: one part per ``wrt`` symbol (its errors, its worst entries,
a diagnosis), the notes on how the function's return was read, and the text it prints.
Plain Python values (no NumPy arrays): ``dlsym check``'s parent process writes it from
what the child that ran the user's code returned (``_isolated``)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

NO_DIAGNOSIS = "no simple explanation found; compare the worst entries above"
# what the user's function returns, by order of the derivative
WHAT = {1: "the derivative", 2: "the second derivative"}


@dataclass(frozen=True)
class Entry:
    point: int
    index: tuple
    expected: float
    got: float


@dataclass(frozen=True)
class PartReport:
    """The check of one ``wrt`` symbol. ``shape`` is what was expected, ``got_shape``
    what the function returned; where they cannot be compared entry by entry the errors
    are NaN and ``worst`` is empty, and ``diagnosis`` says why."""

    wrt: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    max_tolerance: float
    passed: bool
    worst: tuple  # Entry, most out of tolerance first
    diagnosis: str | None
    got_shape: tuple | None = None
    note: str | None = None  # how the return was read (a convention, the diagonal)


@dataclass(frozen=True)
class CheckReport:
    spec: str
    function: str
    framework: str
    dtype: str
    points: int
    seed: int
    parts: tuple
    tolerance_why: str
    order: int = 1
    result: str = "gradient"  # the gradient, the Hessian, the Jacobian, ...
    reference: str = ""  # what the function was compared with
    notes: tuple = ()
    # the precision the function returned where coarser than ``dtype``, which it was
    # called in: the check held it to that precision's tolerance (a note says why)
    returned: str | None = None

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parts)

    @property
    def max_abs_error(self) -> float:
        return _max(p.max_abs_error for p in self.parts)

    @property
    def max_rel_error(self) -> float:
        return _max(p.max_rel_error for p in self.parts)

    def format(self, width: int = 100) -> str:
        from rich.console import Console

        buf = io.StringIO()
        self.render(Console(file=buf, width=width, force_terminal=False, color_system=None))
        return buf.getvalue()

    def render(self, console) -> None:
        from rich.table import Table

        def say(text):
            console.print(text, markup=False, highlight=False, soft_wrap=True)

        verdict = "matches" if self.passed else "DOES NOT MATCH"
        dtype = f"{self.dtype} in, {self.returned} out" if self.returned else self.dtype
        say(
            f"dlsym check: {self.function} ({self.framework}, {dtype}) "
            f"{verdict} {WHAT[self.order]} of {self.spec}"
        )
        if self.reference:
            say(f"reference: {self.reference}")
        table = Table()
        for col in ("wrt", "points", "max abs error", "max rel error", "max tolerance", "result"):
            table.add_column(col)
        for p in self.parts:
            table.add_row(
                p.wrt,
                str(self.points),
                _number(p.max_abs_error),
                _number(p.max_rel_error),
                _number(p.max_tolerance),
                "ok" if p.passed else "MISMATCH",
            )
        console.print(table)
        say(f"tolerance: {self.tolerance_why}")
        for text in self.notes:
            say(f"note: {text}")
        for p in self.parts:
            if p.note:
                say(f"note ({p.wrt}): {p.note}")
            if p.passed:
                continue
            if p.worst:
                worst = Table(
                    title=f"worst entries of the {self.result} with respect to {p.wrt}",
                    title_justify="left",
                )
                for col in ("point", "index", "expected", "got"):
                    worst.add_column(col)
                for e in p.worst:
                    worst.add_row(
                        str(e.point), str(list(e.index)), f"{e.expected:.9g}", f"{e.got:.9g}"
                    )
                console.print(worst)
            say(f"diagnosis ({p.wrt}): {p.diagnosis or NO_DIAGNOSIS}")


def _max(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else float("nan")


def _number(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3e}"
