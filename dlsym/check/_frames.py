"""Whose code a stack frame runs: dlsym's, a library's, or the user's. An error from the
user's code is located at their innermost frame and shown with their frames alone.
Light (no NumPy): the parent process of ``dlsym check`` reads a child's stack with it."""

from __future__ import annotations

import inspect
import sysconfig
import traceback
from pathlib import Path

# the steps (dlsym._budget.step) that run the user's code
IMPORTING = "importing the module"
CALLING = "calling the function"

# dlsym's own source files: under the package's directory, wherever it is installed (a
# checkout's path may itself hold "/dlsym/": the user's module beside it is theirs)
_PACKAGE = Path(__file__).resolve().parent.parent
# the standard library, and the installed packages (NumPy, JAX): code the user calls
_STDLIB = tuple(Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib"))
_LIBRARIES = _STDLIB + tuple(
    Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")
)


def _under(filename: str, roots) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(path.is_relative_to(root) for root in roots)


def ours(filename: str) -> bool:
    return _under(filename, (_PACKAGE,))


def _shown(filename: str) -> bool:
    """A frame the user's traceback shows: not dlsym's, not the import machinery's."""
    return not ours(filename) and "importlib" not in filename


def _source(filename: str) -> bool:
    """Not dlsym's, nor the standard library's, nor a frozen module's (``<frozen runpy>``)."""
    return _shown(filename) and not filename.startswith("<") and not _under(filename, _STDLIB)


def _theirs(filename: str) -> bool:
    """The user's own source: no installed package's either."""
    return _source(filename) and not _under(filename, _LIBRARIES)


def locate(frames) -> str:
    """``file:line`` of the innermost frame that is the user's own (else the innermost
    in an installed package: theirs, or one their code calls), or "" when none.
    ``frames``: (filename, line) pairs, outermost first."""
    frames = list(frames)
    for keep in (_theirs, _source):
        found = [f"{_short(file)}:{line}" for file, line in frames if keep(file)]
        if found:
            return found[-1]
    return ""


def _short(filename: str) -> str:
    """As the user would type it: relative to the working directory when under it (the
    import machinery makes every module's path absolute)."""
    try:
        path = Path(filename).resolve().relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        return filename
    return str(path)


def syntax_at(exc: BaseException) -> str:
    """``file:line`` a ``SyntaxError`` names (the source that does not parse: its
    traceback holds the import machinery's frames alone), or "" when it names none (a
    ``compile`` of a string: ``<string>``)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno and _source(exc.filename):
        return f"{_short(exc.filename)}:{exc.lineno}"
    return ""


def located(exc: BaseException, message: str) -> str:
    """``message`` after the place in the user's code that raised ``exc``."""
    where = syntax_at(exc) or locate(
        (f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)
    )
    return f"{where}: {message}" if where else message


def user_traceback(exc: BaseException) -> str:
    """The traceback without dlsym's own frames: the user's code is what they need."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _shown(f.filename)]
    lines = traceback.format_list(frames) if frames else []
    return "".join(lines) + clipped("".join(traceback.format_exception_only(type(exc), exc)))


# the most of a message of the user's code a report shows: an exception's text of 50 MB
# was printed whole, twice (100 MB on stderr, round 33)
MAX_SHOWN_CHARS = 2000


def clipped(text: str) -> str:
    """``text``, or its first MAX_SHOWN_CHARS characters and how many more there were."""
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}... ({len(text) - MAX_SHOWN_CHARS:,} characters more)\n"


def defined_at(fn) -> str:
    """``file:line`` where the user's function is defined (its ``def``), or "" where it
    has no Python source (a builtin, a callable object): what a return it gave is
    located at, since the line of its ``return`` is gone once it has returned."""
    target = fn.forward if inspect.isclass(fn) and hasattr(fn, "forward") else fn
    try:
        target = inspect.unwrap(target)
    except ValueError:  # a cycle of __wrapped__
        pass
    code = getattr(target, "__code__", None)
    if code is None or not _source(code.co_filename):
        return ""
    return f"{_short(code.co_filename)}:{code.co_firstlineno}"
