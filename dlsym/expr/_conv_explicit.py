"""Explicit entries of convolution and pooling (``dlsym.expr._conv``) for the sympy.diff
cross-check: each written from its index definition with loops over object arrays
(the sizes there are tiny), sharing nothing with the generated code (strided views,
``lax.conv_general_dilated``). The gradient operations are written as the scatters
they are (each product added where it lands), not as the convolutions the rules
compose them from. ``_explicit.EXPAND`` includes this table.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from dlsym.expr import _conv as conv


def _zeros(shape) -> np.ndarray:
    return np.full(tuple(shape), sp.Integer(0), dtype=object)


def _lands(out_pos, offset, stride, padding, sizes, dilation=1):
    """The input position ``s*h + d*i - p`` that output ``h`` reads at kernel offset
    ``i``, or None where it is padding."""
    at = tuple(stride * h + dilation * i - padding for h, i in zip(out_pos, offset))
    return at if all(0 <= a < n for a, n in zip(at, sizes)) else None


def _conv(x, k, stride, padding, dilation=1):
    x, k = np.asarray(x, dtype=object), np.asarray(k, dtype=object)
    s, p, d = int(stride), int(padding), int(dilation)
    sizes, ks = x.shape[2:], k.shape[2:]
    lengths = tuple((n + 2 * p - d * (m - 1) - 1) // s + 1 for n, m in zip(sizes, ks))
    out = _zeros((x.shape[0], k.shape[0]) + lengths)
    for b, o, *pos in np.ndindex(*out.shape):
        terms = []
        for c in range(x.shape[1]):
            for offset in np.ndindex(*ks):
                at = _lands(pos, offset, s, p, sizes, d)
                if at is not None:
                    terms.append(x[(b, c) + at] * k[(o, c) + offset])
        out[(b, o, *pos)] = sp.Add(*terms)
    return out


def _input_grad(g, k, size, stride, padding, dilation=1):
    g, k = np.asarray(g, dtype=object), np.asarray(k, dtype=object)
    sizes = tuple(int(n) for n in size)
    out = _zeros((g.shape[0], k.shape[1]) + sizes)
    for b, o, *pos in np.ndindex(*g.shape):
        for c in range(k.shape[1]):
            for offset in np.ndindex(*k.shape[2:]):
                at = _lands(pos, offset, int(stride), int(padding), sizes, int(dilation))
                if at is not None:
                    out[(b, c) + at] += g[(b, o, *pos)] * k[(o, c) + offset]
    return out


def _kernel_grad(x, g, size, stride, padding, dilation=1):
    x, g = np.asarray(x, dtype=object), np.asarray(g, dtype=object)
    ks = tuple(int(n) for n in size)
    out = _zeros((g.shape[1], x.shape[1]) + ks)
    for b, o, *pos in np.ndindex(*g.shape):
        for c in range(x.shape[1]):
            for offset in np.ndindex(*ks):
                at = _lands(pos, offset, int(stride), int(padding), x.shape[2:], int(dilation))
                if at is not None:
                    out[(o, c) + offset] += g[(b, o, *pos)] * x[(b, c) + at]
    return out


def _pooled(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def _windows(shape, k, stride=None, padding=0):
    """(output index, [input indices of its window]) over the last two axes: the cells
    of the window inside the input (the padding has none)."""
    k = int(k)
    s, p = k if stride is None else int(stride), int(padding)
    rows, cols = shape[-2:]
    h, w = _pooled(rows, k, s, p), _pooled(cols, k, s, p)
    for lead in np.ndindex(*shape[:-2]):
        for i in range(h):
            for j in range(w):
                cells = [
                    lead + (s * i + a - p, s * j + c - p)
                    for a in range(k)
                    for c in range(k)
                    if 0 <= s * i + a - p < rows and 0 <= s * j + c - p < cols
                ]
                yield lead + (i, j), cells


def _pooled_zeros(x, k, stride, padding) -> np.ndarray:
    k = int(k)
    s, p = k if stride is None else int(stride), int(padding)
    return _zeros(x.shape[:-2] + tuple(_pooled(n, k, s, p) for n in x.shape[-2:]))


# the indicators of a tie as floats: a Hessian's entries hold powers of their count,
# (h1 + h2)**(-2) (times zero), which NumPy refuses for integers
ONE, ZERO = sp.Float(1.0), sp.Float(0.0)


def _ties(values):
    """1 on each entry equal to the largest, 0 elsewhere, as a Piecewise: sympy.diff
    takes each branch's derivative (0), so the cross-check states the equal split of a
    tie on its own, without the mask the rules use."""
    # unevaluated: SymPy would otherwise try to order the entries (seconds per window)
    top = sp.Max(*values, evaluate=False)
    return [sp.Piecewise((ONE, sp.Eq(v, top, evaluate=False)), (ZERO, True)) for v in values]


def _max_pool(x, k, stride=None, padding=0):
    # the padding is -inf: never the largest, so only the window's cells inside X count
    x = np.asarray(x, dtype=object)
    out = _pooled_zeros(x, k, stride, padding)
    for at, cells in _windows(x.shape, k, stride, padding):
        values = [x[c] for c in cells]
        hits = _ties(values)
        # the largest entry, written as the mean of the tied largest: sympy.diff of it
        # gives each of c tied entries 1/c
        out[at] = sp.Add(*(v * h for v, h in zip(values, hits))) / sp.Add(*hits)
    return out


def _max_pool_mask(x, k, stride=None, padding=0):
    x = np.asarray(x, dtype=object)
    out = _zeros(x.shape)
    for _, cells in _windows(x.shape, k, stride, padding):  # windows that do not overlap
        hits = _ties([x[c] for c in cells])
        for c, h in zip(cells, hits):
            out[c] = h / sp.Add(*hits)
    return out


def _max_input_grad(g, x, k, stride=None, padding=0):
    g, x = np.asarray(g, dtype=object), np.asarray(x, dtype=object)
    out = _zeros(x.shape)
    for at, cells in _windows(x.shape, k, stride, padding):
        hits = _ties([x[c] for c in cells])
        for c, h in zip(cells, hits):
            out[c] += g[at] * h / sp.Add(*hits)
    return out


def _max_gather(v, x, k, stride=None, padding=0):
    v, x = np.asarray(v, dtype=object), np.asarray(x, dtype=object)
    out = _pooled_zeros(x, k, stride, padding)
    for at, cells in _windows(x.shape, k, stride, padding):
        hits = _ties([x[c] for c in cells])
        out[at] = sp.Add(*(v[c] * h for c, h in zip(cells, hits))) / sp.Add(*hits)
    return out


def _avg_pool(x, k, stride=None, padding=0):
    # the padding's zeros count in the divisor: k^2 (PyTorch's count_include_pad)
    x = np.asarray(x, dtype=object)
    out = _pooled_zeros(x, k, stride, padding)
    for at, cells in _windows(x.shape, k, stride, padding):
        out[at] = sp.Add(*(x[c] for c in cells)) / int(k) ** 2
    return out


def _unpool(g, k, size, stride=None, padding=0):
    g = np.asarray(g, dtype=object)
    out = _zeros(g.shape[:-2] + tuple(int(n) for n in size))
    for at, cells in _windows(out.shape, k, stride, padding):
        for c in cells:
            out[c] += g[at]
    return out


CONV_EXPAND = {
    **{cls: _conv for cls in conv.FORWARD.values()},
    **{cls: _input_grad for cls in conv.INPUT_GRAD.values()},
    **{cls: _kernel_grad for cls in conv.KERNEL_GRAD.values()},
    conv.max_pool2d: _max_pool,
    conv.avg_pool2d: _avg_pool,
    conv.max_pool2d_mask: _max_pool_mask,
    conv.unpool2d: _unpool,
    conv.max_pool2d_input_grad: _max_input_grad,
    conv.max_pool2d_gather: _max_gather,
}
