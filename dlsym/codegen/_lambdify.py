"""Numeric functions from SymPy results, through ``lambdify`` with ``cse=True``.

Our printer prints every function by its class name (``matmul(X, w)``,
``sigmoid(z)``, ``erf(x)``) and each backend supplies a namespace table of
implementations, so NumPy and JAX share one printer and differ only in the
table. (SymPy's own JAX printing of ``erf`` is wrong: sympy#27895.)
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import sympy as sp
from sympy.printing.lambdarepr import LambdaPrinter

from dlsym.expr._reserved import RESERVED


class CodePrinter(LambdaPrinter):
    """Prints calls by class name; the backend table resolves them."""

    def _print_Function(self, expr):
        name = type(expr).__name__
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    _print_exp = _print_log = _print_Abs = _print_sin = _print_cos = _print_tanh = _print_atan = (
        _print_erf
    ) = _print_sign = _print_log1p = _print_expm1 = _print_Function

    def _print_Pow(self, expr, rational=False):
        base, ex = expr.args
        if ex == sp.S.Half:
            return f"sqrt({self._print(base)})"
        if ex == -sp.S.Half:
            return f"(1/sqrt({self._print(base)}))"
        return super()._print_Pow(expr, rational=rational)

    def _print_Pi(self, expr):
        return "pi"

    def _print_Exp1(self, expr):
        return "E"

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print_Max(self, expr):
        # np.maximum is binary (a third argument would be its `out`): nest
        first, *rest = expr.args
        if not rest:
            return self._print(first)
        return f"maximum({self._print(first)}, {self._print(sp.Max(*rest, evaluate=False))})"


def _axis(axis):
    return None if axis is None else int(axis)


def _coords(xp, body, k):
    """``body`` with its last axis the k coordinates (a constant or a batch of constants
    gains that axis)."""
    b = xp.asarray(body)
    if b.ndim == 0 or b.shape[-1] != k:
        b = b[..., None]
    return xp.broadcast_to(b, b.shape[:-1] + (k,))


def _namespace(xp, special, nn) -> dict:
    """Implementations of every printed name for one array library."""

    def softmax(z):
        e = xp.exp(z - xp.max(z))
        return e / xp.sum(e)

    def logsumexp(a, axis=None):
        return special.logsumexp(a, axis=_axis(axis))

    def maxmask(a):
        flat = xp.reshape(a, (-1,))
        mask = xp.arange(flat.shape[0]) == xp.argmax(flat)
        return xp.reshape(mask.astype(a.dtype), a.shape)

    def unit(i, n):
        return (xp.arange(int(n)) == int(i)).astype(float)

    def entry(a, *idx):
        return a[tuple(int(i) for i in idx)]

    return {
        "matmul": xp.matmul,
        "transpose": lambda a: xp.swapaxes(a, -1, -2) if a.ndim == 2 else a,
        "tsum": lambda a, axis=None: xp.sum(a, axis=_axis(axis)),
        "tmean": lambda a, axis=None: xp.mean(a, axis=_axis(axis)),
        "tmax": lambda a, axis=None: xp.max(a, axis=_axis(axis)),
        "tmin": lambda a, axis=None: xp.min(a, axis=_axis(axis)),
        "logsumexp": logsumexp,
        "softmax": softmax,
        "log_softmax": lambda z: z - special.logsumexp(z),
        "norm": lambda a: xp.sqrt(xp.sum(a * a)),
        "trace": xp.trace,
        "det": xp.linalg.det,
        "logdet": lambda a: xp.linalg.slogdet(a)[1],
        "inv": xp.linalg.inv,
        "diag": xp.diag,
        "outer": xp.outer,
        "ones": lambda *dims: xp.ones(tuple(int(d) for d in dims)),
        "eye": lambda n: xp.eye(int(n)),
        "unit": unit,
        "entry": entry,
        "maxmask": maxmask,
        "exp": xp.exp,
        "log": xp.log,
        "sqrt": xp.sqrt,
        "Abs": xp.abs,
        "sign": xp.sign,
        "sin": xp.sin,
        "cos": xp.cos,
        "tanh": xp.tanh,
        "atan": xp.arctan,
        "erf": special.erf,
        "log1p": xp.log1p,
        "expm1": xp.expm1,
        "sigmoid": nn["sigmoid"],
        "softplus": lambda x: xp.logaddexp(0.0, x),
        "relu": lambda x: xp.maximum(x, 0.0),
        "step": lambda x: (x > 0) * 1.0,
        "maximum": xp.maximum,
        # information theory's sum over k coordinates (a term free of vectors counts k
        # times); the coordinates are the last axis, leading axes are a batch
        "CoordSum": lambda body, k: xp.sum(_coords(xp, body, int(k)), axis=-1),
        "pi": np.pi,
        "E": np.e,
    }


@functools.lru_cache(maxsize=None)
def namespace(backend: str) -> dict:
    if backend == "numpy":
        import scipy.special as special

        return _namespace(np, special, {"sigmoid": special.expit})
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        import jax.scipy.special as special

        return _namespace(jnp, special, {"sigmoid": jax.nn.sigmoid})
    raise ValueError(f"unknown backend {backend!r}: use 'numpy' or 'jax'")


# Names the generated code resolves from the namespace: a symbol may not take them.
class _Names:
    def __getattr__(self, name):
        return self


NAMES = frozenset(_namespace(_Names(), _Names(), {"sigmoid": None}))
assert NAMES <= RESERVED, f"dlsym.expr._reserved must list {sorted(NAMES - RESERVED)}"


def _cse(exprs):
    # Temporaries start with '_' so they can never shadow a user's symbol.
    return sp.cse(exprs, symbols=sp.numbered_symbols("_t"))


def lambdify(args, exprs, backend: str):
    return sp.lambdify(
        args, exprs, modules=[namespace(backend)], printer=CodePrinter, cse=_cse, docstring_limit=0
    )


def source(args, exprs, backend: str = "numpy") -> str:
    return inspect.getsource(lambdify(args, exprs, backend))
