"""Callables from generated source: the code a ``dlsym codegen`` module would hold, run.

``program`` executes functions printed by ``_function`` with the imports and helpers they
use, as a module would; ``lambdify`` is that for any arguments and SymPy expressions.
For JAX, float64 is switched on first (``jax_x64``): dlsym's numbers are float64 unless a
caller asks for float32 with its inputs.
"""

from __future__ import annotations

import functools
import itertools
import linecache

from dlsym.codegen._function import lambda_source, module_source
from dlsym.codegen._jax import jax_x64
from dlsym.codegen._names import Names
from dlsym.codegen._table import BACKENDS, HELPERS, OPS

_count = itertools.count()


def program(target: str, functions: str, also=(), names: Names = Names()) -> dict:
    """The namespace of the module ``module_source(target, [functions], also, names)``,
    executed. Its text is registered with ``linecache``, so tracebacks and ``inspect`` show
    the generated lines."""
    if target not in BACKENDS:
        raise ValueError(f"unknown backend {target!r}: use 'numpy' or 'jax'")
    if target == "jax":
        jax_x64()
    text = module_source(target, [functions] if functions else [], also, names)
    filename = f"<dlsym generated {next(_count)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict = {"__name__": "dlsym_generated"}
    exec(compile(text, filename, "exec"), namespace)  # our own printed code, never user text
    return namespace


def lambdify(args, exprs, backend: str):
    """A function of ``args`` (SymPy symbols; numbers or arrays when called) returning the
    list ``exprs`` (nested lists kept) evaluated with ``backend``: "numpy" or "jax"."""
    return program(backend, lambda_source("generated", args, exprs, backend))["generated"]


@functools.cache
def namespace(backend: str) -> dict:
    """Each row of the table as a callable (the constants as numbers), by its name: what
    dlsym's expression language (the JSON "expr") evaluates with."""
    lines = []
    for name, op in OPS.items():
        code = op.code(backend)
        if "{" in code:  # a template: its arguments are the lambda's
            args = [f"a[{i}]" for i in range(9)]
            code = "lambda *a: " + code.format(*args, args="*a", rest="*a[1:]")
        lines.append(f"_row_{name} = {code}")
    ns = program(backend, "\n".join(lines) + "\n", also=HELPERS)
    return {name: ns[f"_row_{name}"] for name in OPS}
