"""What the user's code may not change in the process that checks it.

``dlsym check`` computes its reference and compares in the child process that also
imports and calls the user's function (``_isolated``). A function that replaces
``np.abs`` with zeros made a wrong gradient pass (exit 0); one that replaced ``np.max``,
``np.asarray`` or ``builtins.max`` crashed the comparison (exit 3); a module that
replaced dlsym's own comparison at import made a zero gradient pass. Around the import
and every call, the attributes of the modules the checker computes with are noted and
compared after: a replaced or removed one is put back and the check refused, located
(exit 2). NumPy's error handling and print options and Python's recursion limit are put
back silently: a function may set them for its own arithmetic.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np

from dlsym._errors import UserFunctionError

# the modules whose attributes the reference and the comparison read, and dlsym's own
# (a module that replaced dlsym.check._gradient's comparison at import made a zero
# gradient pass)
WATCHED = ("builtins", "math", "pickle", "numpy", "numpy.linalg", "numpy.random", "jax.numpy")
OWN = "dlsym"


def _watched() -> list:
    own = [n for n in list(sys.modules) if n == OWN or n.startswith(OWN + ".")]
    return [*WATCHED, *sorted(own)]


def _noted() -> dict:
    return {name: dict(vars(sys.modules[name])) for name in _watched() if name in sys.modules}


def _own_values() -> list:
    """What dlsym's own modules define (their classes and functions, not what they
    import)."""
    return [
        value
        for name in _watched()
        if (name == OWN or name.startswith(OWN + ".")) and name in sys.modules
        for value in list(vars(sys.modules[name]).values())
        if isinstance(value, (type, types.FunctionType))
        and getattr(value, "__module__", "").startswith(OWN)
    ]


def _own_classes(values: list) -> dict:
    """dlsym's classes -> their attributes: a function that set
    ``_report.CheckReport.passed = property(lambda self: True)`` crashed the report
    (exit 3), and one that fitted the property with a setter would have passed."""
    return {value: dict(vars(value)) for value in values if isinstance(value, type)}


def _own_code(values: list, classes: dict) -> dict:
    """dlsym's functions (of its modules and classes) -> their code: setting
    ``Caller.__call__.__code__`` changes the function in place, the same object."""
    functions = [v for v in values if isinstance(v, types.FunctionType)]
    functions += [v for attrs in classes.values() for v in attrs.values()]
    return {f: f.__code__ for f in functions if isinstance(f, types.FunctionType)}


@contextlib.contextmanager
def sealed(who: str):
    """Run the user's code (``who``: "your function", "importing grad.py") and refuse
    what it changed of WATCHED, after putting it back."""
    own = _own_values()
    before, classes = _noted(), _own_classes(own)
    code = _own_code(own, classes)
    modules = {name: sys.modules.get(name) for name in _watched()}
    errors, printing = np.geterr(), np.get_printoptions()
    depth = sys.getrecursionlimit()
    try:
        yield
    finally:
        # first: a function may lower it for its own recursion, and what follows needs
        # Python's (setrecursionlimit(20) ended the check in a RecursionError: exit 3);
        # no builtin here, which the function may have replaced (max, put back below)
        now = sys.getrecursionlimit()
        sys.setrecursionlimit(depth if depth > now else now)
        changed = []
        for name, module in modules.items():
            if module is not None and sys.modules.get(name) is not module:
                sys.modules[name] = module
                changed.append(f"sys.modules[{name!r}]")
        for name, attrs in before.items():
            now = vars(sys.modules[name])
            for key, value in attrs.items():
                if now.get(key, now) is not value:
                    now[key] = value
                    changed.append(f"{name}.{key}")
        for cls, attrs in classes.items():
            now = vars(cls)
            for key in set(attrs) | set(now):
                if key not in attrs:
                    delattr(cls, key)
                elif now.get(key, now) is not attrs[key]:
                    setattr(cls, key, attrs[key])
                else:
                    continue
                changed.append(f"{cls.__module__}.{cls.__qualname__}.{key}")
        for function, was in code.items():
            if function.__code__ is not was:
                function.__code__ = was
                changed.append(f"{function.__module__}.{function.__qualname__}.__code__")
        np.seterr(**errors)
        np.set_printoptions(**printing)
        if changed and sys.exc_info()[0] is None:
            shown = ", ".join(changed[:4]) + (
                f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            )
            raise UserFunctionError(
                f"{who} replaced {shown}: dlsym check runs beside it with these (the calls "
                "in dlsym check's child process, the whole check in dlsym.testing), so it "
                "cannot check code that changes them (put back; patch a copy, or use your "
                "own names)"
            )
