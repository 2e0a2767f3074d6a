"""Explicit entries: expand a tensor expression into scalar SymPy expressions at
concrete sizes.

This is the independent cross-check (plain ``sympy.diff`` on the entries, compared
with the matrix-form result) and the fallback when no matrix-form rule applies.
It shares nothing with the matrix-form rules but the operation classes, and its
cost grows fast with the sizes (shared/field-notes.md), so it runs at small ones.
"""

from __future__ import annotations

import functools
import operator
import time

import numpy as np
import sympy as sp

from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._conv_explicit import CONV_EXPAND


def O(x):  # noqa: E743 (an object array, read like a constructor)
    """A NumPy object array (0-d for scalars) holding SymPy expressions."""
    return np.asarray(x, dtype=object)


def entry_symbols(name: str, symbol: sp.Symbol, sizes: tuple):
    """One scalar SymPy symbol per entry, with the tensor's assumptions.

    The leading underscore keeps entry names apart from user names, which must
    start with a letter."""
    assumptions = {
        k: v for k, v in symbol.assumptions0.items() if k in ("real", "positive", "nonnegative")
    }
    if not sizes:
        return O(sp.Symbol(f"_e_{name}", **assumptions))
    out = np.empty(sizes, dtype=object)
    for idx in np.ndindex(*sizes):
        out[idx] = sp.Symbol(f"_e_{name}_" + "_".join(map(str, idx)), **assumptions)
    return out


def readable_entries(env: dict) -> dict:
    """Each entry symbol of ``env`` (``entry_symbols``'s, by tensor symbol) -> how the
    expression language writes it: x for a scalar's, X[0, 1] (``entry``) for a vector's
    or a matrix's; a higher rank's keep their names. For showing explicit entries."""
    out = {}
    for symbol, entries in env.items():
        entries = np.asarray(entries, dtype=object)
        if not isinstance(symbol, sp.Symbol) or entries.ndim > 2:
            continue
        for idx in np.ndindex(*entries.shape):
            e = entries[idx]
            if isinstance(e, sp.Symbol):
                out[e] = ops.entry(symbol, *map(sp.Integer, idx)) if idx else symbol
    return out


def _map(fn):
    return lambda x: O(np.vectorize(fn, otypes=[object])(x)) if O(x).ndim else O(fn(O(x).item()))


def _axes(axis):
    return tuple(int(a) for a in axis) if isinstance(axis, sp.Tuple) else int(axis)


def _sum(x, axis=None, keepdims=0):
    x = O(x)
    if axis is None:
        return O(sp.Add(*x.flat))
    # NumPy's own sum over an object array adds the SymPy entries
    return O(np.sum(x, axis=_axes(axis), keepdims=bool(keepdims)))


def _count(x, axis):
    shape = O(x).shape
    if axis is None:
        return O(x).size
    axes = _axes(axis)
    return int(np.prod([shape[a] for a in (axes if isinstance(axes, tuple) else (axes,))]))


def _softmax_axis(z, axis=-1):
    e = _map(sp.exp)(z)
    return O(e / _sum(e, axis, 1))


def _log_softmax_axis(z, axis=-1):
    return O(O(z) - _map(sp.log)(_sum(_map(sp.exp)(z), axis, 1)))


def _item(x):
    return O(x).item() if O(x).ndim == 0 else O(x)


# Berkowitz's determinant has no division and simplifies nothing: SymPy's default
# inverse (Gaussian elimination) simplifies every pivot candidate, minutes for a 3 x 3
# Hessian of sigmoids (a Newton map's Jacobian) inside one call no deadline can stop
def _det(a):
    return O(sp.Matrix(O(a).tolist()).det(method="berkowitz"))


def _inv(a):
    m = sp.Matrix(O(a).tolist())
    inverse = m.adjugate(method="berkowitz") / m.det(method="berkowitz")
    return O(np.array(inverse.tolist(), dtype=object))


def _no_explicit(*args):
    # SymPy's Max(a, b, c) differentiates to Heaviside(a - Max(b, c)), H(0) = 1/2 for
    # each: 1/2 + 1/2 + 1/2 at a three-way tie, not the equal split 1/3 of dlsym's
    # convention (and JAX's). Verification samples such ties, so the reductions max and
    # min have no explicit form; the JAX check covers them
    raise NotImplementedError("max/min have no explicit-entry derivative")


def _zip(fn):
    """``fn`` of scalars applied entry by entry, broadcasting as NumPy does."""
    return lambda *xs: O(np.vectorize(fn, otypes=[object])(*map(O, xs)))


# The piecewise functions (dlsym.expr._piecewise) as SymPy's own Max, Min and Piecewise
# on entries: sympy.diff of a two-argument Max is Heaviside(a - b), H(0) = 1/2, an
# independent statement of the tie convention. clip is min(max(a, lo), hi), as jnp.clip
PIECEWISE = {
    ops.maximum: _zip(lambda a, b: sp.Max(a, b)),
    ops.minimum: _zip(lambda a, b: sp.Min(a, b)),
    ops.clip: _zip(lambda a, lo, hi: sp.Min(sp.Max(a, lo), hi)),
    ops.where: _zip(lambda c, a, b: sp.Piecewise((a, c), (b, True))),
    sp.Heaviside: _zip(lambda x, h0=sp.S.Half: sp.Heaviside(x, h0)),
    **{cls: (lambda c: _zip(lambda a, b: c(a, b)))(cls) for cls in ops.COMPARISONS},
}


def _ones(*dims):
    return O(np.full(tuple(int(d) for d in dims), sp.Integer(1), dtype=object))


def _eye(n):
    n = int(n)
    out = np.full((n, n), sp.Integer(0), dtype=object)
    for i in range(n):
        out[i, i] = sp.Integer(1)
    return out


def _unit(i, n):
    out = np.full((int(n),), sp.Integer(0), dtype=object)
    out[int(i)] = sp.Integer(1)
    return out


def _index_items(items):
    """An ``index`` op's items as a NumPy index (sizes already concrete)."""
    out = []
    for item in items:
        if item == layout.NEWAXIS:
            out.append(None)
        elif isinstance(item, sp.Tuple):
            stop = layout.stop_of(item)
            start, step = int(item[0]), int(item[2])
            stop = None if stop is None else int(stop)
            if step > 0:  # x[-5:] of n entries is n - 5:n, clamped at 0 as the code does
                start, stop = max(start, 0), None if stop is None else max(stop, 0)
            out.append(slice(start, stop, step))
        else:
            out.append(int(item))
    return tuple(out)


def _scatter(g, items, dims):
    out = np.full(tuple(int(d) for d in dims), sp.Integer(0), dtype=object)
    out[_index_items(items)] = O(g)
    return out


def _labels(ids):
    labels = O(ids)
    if any(not getattr(x, "is_Integer", False) for x in np.ravel(labels)):
        # symbolic labels (a spec's y with domain {index: k}): an entry picked by an
        # unknown label has no explicit form (int() of a symbol was a TypeError: exit 3)
        raise NotImplementedError("entries picked by symbolic labels have no explicit form")
    return np.asarray(labels, dtype=int)


def _put_along(g, ids, axis, n):
    g, ids, axis = O(g), _labels(ids), int(axis)
    shape = list(g.shape)
    shape[axis] = int(n)
    out = np.full(tuple(shape), sp.Integer(0), dtype=object)
    for idx in np.ndindex(*g.shape):
        at = list(idx)
        at[axis] = ids[tuple(i if d > 1 else 0 for i, d in zip(idx, ids.shape))]
        out[tuple(at)] += g[idx]
    return out


def _var(x, axis=None, keepdims=0):
    mean = O(_sum(x, axis, 1) / _count(x, axis))
    dev = O(x) - mean
    return O(_sum(dev * dev, axis, keepdims) / _count(x, axis))


EXPAND = {
    sp.Add: lambda *a: O(functools.reduce(operator.add, map(O, a))),
    sp.Mul: lambda *a: O(functools.reduce(operator.mul, map(O, a))),
    sp.Pow: lambda a, b: (
        O(sp.Pow(_item(a), _item(b)))
        if O(a).ndim == O(b).ndim == 0
        else O(np.power(O(a), O(b)))  # entry by entry, an exponent array too (2 ** x)
    ),
    ops.matmul: lambda a, b: O(np.matmul(O(a), O(b))),
    ops.transpose: lambda a: O(a).T,
    ops.tsum: _sum,
    ops.tmean: lambda x, axis=None, keepdims=0: O(_sum(x, axis, keepdims) / _count(x, axis)),
    ops.tmax: _no_explicit,
    ops.tmin: _no_explicit,
    ops.logsumexp: lambda x, axis=None, keepdims=0: _map(sp.log)(
        _sum(_map(sp.exp)(x), axis, keepdims)
    ),
    ops.softmax: _softmax_axis,
    ops.log_softmax: _log_softmax_axis,
    ops.norm: lambda a: O(sp.sqrt(_sum(O(a) * O(a)).item())),
    ops.trace: lambda a: O(sp.Add(*np.diag(O(a)))),
    ops.det: _det,
    ops.logdet: lambda a: O(sp.log(_det(a).item())),
    ops.inv: _inv,
    ops.diag: lambda a: O(np.diag(O(a))) if O(a).ndim == 1 else O(np.array(np.diag(O(a)))),
    ops.outer: lambda u, v: O(np.multiply.outer(O(u), O(v))),
    ops.ones: _ones,
    ops.eye: _eye,
    ops.unit: _unit,
    ops.entry: lambda a, *idx: O(O(a)[tuple(int(i) for i in idx)]),
    ops.maxmask: _no_explicit,
    # labels arrive as integers (the check draws them first): plain indexing
    ops.var: _var,
    layout.expand_dims: lambda a, axes: O(np.expand_dims(O(a), tuple(int(i) for i in axes))),
    layout.permute: lambda a, perm: O(np.transpose(O(a), tuple(int(i) for i in perm))),
    layout.reshape: lambda a, dims: O(O(a).reshape(tuple(int(d) for d in dims))),
    layout.index: lambda a, items: O(O(a)[_index_items(items)]),
    layout.scatter: _scatter,
    layout.concatenate: lambda axis, *xs: O(np.concatenate([O(x) for x in xs], axis=int(axis))),
    layout.stack: lambda axis, *xs: O(np.stack([O(x) for x in xs], axis=int(axis))),
    layout.take_along_axis: lambda a, ids, axis: O(
        np.take_along_axis(O(a), _labels(ids), axis=int(axis))
    ),
    layout.put_along_axis: _put_along,
    layout.einsum: lambda subs, *xs: O(np.einsum(str(subs), *[O(x) for x in xs])),
    ops.zeros: lambda *dims: O(np.full(tuple(int(d) for d in dims), sp.Integer(0), dtype=object)),
    ops.onehot: lambda ids, k: O(_eye(k)[np.asarray(O(ids), dtype=int)]),
    ops.gather: lambda table, ids: O(O(table)[np.asarray(O(ids), dtype=int)]),
    **{cls: (lambda c: lambda a: _map(c)(a))(cls) for cls in ops.ELEMENTWISE},
    **PIECEWISE,  # after ELEMENTWISE: Heaviside takes its value at 0 too
    **CONV_EXPAND,  # convolution and pooling, from their index definitions
}


def expand(expr, env: dict, deadline: float | None = None):
    """``expr`` with every tensor symbol replaced by its entries (``env``). Past
    ``deadline`` (a ``time.monotonic()`` value) it stops with ``TimeoutError``: entries
    nested as deep as a deep network are slow for SymPy to build."""
    memo: dict = {}
    sizes = {s: v for s, v in env.items() if isinstance(v, sp.Basic)}

    def walk(e):
        if e in memo:
            return memo[e]
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the explicit entries took longer than their budget")
        if e.is_Symbol:
            out = env.get(e, O(e))
        elif e.is_Number or e.is_NumberSymbol or not e.args:
            out = O(e)
        else:
            for cls in type(e).__mro__:
                if cls in EXPAND:
                    break
            else:
                raise NotImplementedError(f"no explicit form for {type(e).__name__}")
            static = ops.static_positions(e)
            # static arguments (axes, dims) are not expanded; a dim among them takes
            # its concrete size
            args = [a.xreplace(sizes) if i in static else walk(a) for i, a in enumerate(e.args)]
            out = EXPAND[cls](*args)
        memo[e] = out
        return out

    return O(walk(expr))


def jacobian_entries(values, wrt_entries, deadline: float | None = None):
    """d values / d wrt, laid out as ``values.shape + wrt.shape`` (as jax.jacobian).
    Past ``deadline`` (a ``time.monotonic()`` value) it stops with ``TimeoutError``."""
    values, wrt_entries = O(values), O(wrt_entries)
    out = np.empty(values.shape + wrt_entries.shape, dtype=object)
    for j in np.ndindex(*wrt_entries.shape):
        diff = _Diff(wrt_entries[j], deadline)
        for i in np.ndindex(*values.shape):
            out[i + j] = diff(values[i])
    return out


# Functions that differentiate by the chain rule through their ``fdiff``; others (Abs,
# Piecewise, ...) have their own ``_eval_derivative`` and go to sympy.diff
_CHAIN_RULE = sp.Function._eval_derivative


class _Diff:
    """``sympy.diff(e, x)`` on explicit entries, remembering the derivative of every shared
    subexpression. Explicit entries share much (a softmax's denominator is in every entry of
    its row, a layer norm's mean in every entry of the layer), and ``sympy.diff``, which
    walks them as trees, differentiates each copy again: minutes for one attention entry.
    Each node is differentiated as SymPy would (sums, the product and power rules, and
    each function's own ``fdiff``, what ``sympy.diff`` itself uses); anything else goes
    to ``sympy.diff``. ``d sign(x) = 2 DiracDelta(x)`` is zero at every point a sample
    can hit."""

    def __init__(self, x, deadline: float | None):
        self.x, self.deadline, self.memo = x, deadline, {}

    def __call__(self, e):
        try:
            return self._d(e)
        except RecursionError:
            raise TimeoutError("explicit entries nested too deeply to differentiate") from None

    def _d(self, e):
        if e in self.memo:
            return self.memo[e]
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("sympy.diff on explicit entries ran past its budget")
        x = self.x
        if x not in e.free_symbols:
            out = sp.Integer(0)
        elif e == x:
            out = sp.Integer(1)
        elif e.is_Add:
            out = sp.Add(*[self._d(a) for a in e.args])
        elif e.is_Mul:
            args = e.args
            out = sp.Add(
                *[sp.Mul(*args[:i], self._d(a), *args[i + 1 :]) for i, a in enumerate(args)]
            )
        elif e.is_Pow and x not in e.exp.free_symbols:
            out = e.exp * e.base ** (e.exp - 1) * self._d(e.base)
        elif isinstance(e, sp.Function) and type(e)._eval_derivative is _CHAIN_RULE:
            out = sp.Integer(0)
            for i, a in enumerate(e.args):
                da = self._d(a)
                if da != 0:
                    out += e.fdiff(i + 1) * da
        else:
            out = sp.diff(e, x)
        if out.has(sp.DiracDelta):
            out = out.replace(sp.DiracDelta, lambda *a: sp.Integer(0))
        self.memo[e] = out
        return out
