"""Errors that reach the user: each knows its exit code and formats its own message.

Modelled on click's ``BadParameter``: a ``SpecError`` carries the file, line and
column of the offending YAML node, so the CLI can print ``file:line:col: message``
and exit with code 2 without a traceback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a YAML node starts: 1-based line and column, as editors count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class DlsymError(Exception):
    """Base of every error dlsym reports to the user."""

    exit_code = 2

    def format(self) -> str:
        return str(self)


class SpecError(DlsymError):
    """Bad input: a spec, an argument or a file. Exit code 2."""

    def __init__(self, message: str, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class DeviceError(DlsymError):
    """A requested device (``--device gpu``) is not available. Exit code 2."""


class EnvironmentSettingError(DlsymError):
    """An environment variable holds a value the run cannot start with
    (``JAX_PLATFORMS=garbage``, an unknown flag in ``XLA_FLAGS``); the message names the
    variable and its value. Exit code 2."""


class VerificationError(DlsymError):
    """A derived result disagrees with its numeric reference. Exit code 1."""

    exit_code = 1


def did_you_mean(name: str, candidates) -> str:
    """`` (did you mean 'x'?)`` when a close candidate exists, else empty."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class UserFunctionError(DlsymError):
    """The user's function could not be checked: it is missing, raised, or returned the
    wrong shape. Exit code 2. ``user_traceback`` holds the traceback of an exception
    raised inside the user's own code, shown apart from ours."""

    def __init__(self, message: str, user_traceback: str = ""):
        super().__init__(message)
        self.message = message
        self.user_traceback = user_traceback

    def format(self) -> str:
        if not self.user_traceback:
            return self.message
        return (
            f"{self.message}\n--- traceback from your code ---\n"
            f"{self.user_traceback.rstrip()}\n--- end of your traceback ---"
        )


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the text the CLI prints for ``exc``: a dlsym error's own message,
    or an internal error (exit 3) named by its type."""
    if isinstance(exc, DlsymError):
        return exc.exit_code, f"error: {exc.format()}"
    return 3, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)"
