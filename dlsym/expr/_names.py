"""Which names a spec may give its symbols, dims and defines.

Any identifier that is not a Python keyword and not a function of the expression language
belongs to the user: ``E``, ``e``, ``pi``, ``np``, ``jax``, ``self``, ``step``, ``sign``
included. Nothing dlsym does internally restricts them: generated code renames its own
names around the user's (``dlsym.codegen._names``), and the parser looks a name up in the
spec's declarations before its constants, so a declared ``pi`` or ``e`` is the user's
symbol (the printers then spell the constants ``4*atan(1)`` and ``exp(1)``).
"""

from __future__ import annotations

from dlsym._errors import Location, SpecError
from dlsym.expr._parse import FUNCTIONS, check_identifier


def is_function(name: str) -> bool:
    """``name`` is a function of the expression language (all of the contract's are in
    the parser's table now)."""
    return name in FUNCTIONS


def check_user_name(name, what: str, loc: Location) -> None:
    """A symbol, dim or define name: a plain identifier that is not a function's name."""
    check_identifier(name, f"{what} name", loc)
    if is_function(name):
        raise SpecError(
            f"{what} '{name}' has the name of a function of the expression language "
            f"({name}(...)); rename the {what}",
            loc,
        )
