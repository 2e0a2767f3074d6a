"""Reverse-mode rules of the operations that move entries (``dlsym.expr._layout``).

Each is linear in its tensor argument, so its adjoint is the operation that moves the
entries back: a transpose of axes transposes back, a reshape reshapes back, indexing
scatters into zeros, a concatenation is sliced apart, ``take_along_axis`` puts each
entry back at its label, and an ``einsum`` is another ``einsum`` with the upstream
gradient in the operand's place. ``_rules.VJP_RULES`` includes this table.
"""

from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str

from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops


class NoMatrixRule(Exception):
    """No matrix-form rule applies; callers fall back to explicit entries."""


def _vjp_expand_dims(alg, e, g):
    a, axes = e.args
    return [(a, alg.squeeze(g, tuple(int(i) for i in axes)))], (
        "a new axis of size 1 (None): its adjoint takes the axis away again"
    )


def _vjp_permute(alg, e, g):
    a, perm = e.args
    perm = [int(p) for p in perm]
    back = tuple(perm.index(i) for i in range(len(perm)))
    return [(a, alg.permute(g, back))], "a transpose of axes: its adjoint transposes back"


def _vjp_reshape(alg, e, g):
    a = e.args[0]
    return [(a, alg.reshape(g, alg.shape(a)))], "reshape: its adjoint reshapes back"


def _vjp_index(alg, e, g):
    a, items = e.args
    dims = sp.Tuple(*alg.shape(a))
    if _reversals(items, dims):  # x[::-1] moves every entry: it is its own adjoint
        return [(a, layout.index(g, items))], "a reversal: its adjoint reverses back"
    dropped = layout.size_one_entries(items, dims)
    if dropped:  # u[:, 0] of u [n, 1]: no entry left out, the axis only goes back
        return [(a, alg.expand_dims(g, dropped))], (
            "entry 0 of an axis of size 1: its adjoint puts the axis back"
        )
    return [(a, layout.scatter(g, items, dims))], (
        "indexing: its adjoint puts the entries back in place, zeros elsewhere"
    )


def _reversals(items, dims) -> bool:
    """Every item a whole axis, one at least reversed (x[::-1], X[:, ::-1])."""
    whole = [
        isinstance(i, sp.Tuple)
        and i != layout.NEWAXIS
        and (tuple(i) == (0, n, 1) or tuple(i) == (n - 1, -1, -1))
        for i, n in zip(items, dims)
    ]
    return len(items) <= len(dims) and all(whole) and any(i[2] == -1 for i in items)


def _vjp_scatter(alg, e, g):
    inner, items, _ = e.args
    return [(inner, layout.index(g, items))], "a scatter's adjoint picks the same entries"


def _whole(alg, a, axis: int) -> list:
    return [alg.whole(a, i) for i in range(axis)]


def _vjp_concatenate(alg, e, g):
    axis, *parts = e.args
    axis = int(axis) % len(alg.shape(e))
    out, start = [], sp.Integer(0)
    for part in parts:
        stop = start + alg.shape(part)[axis]
        items = _whole(alg, e, axis) + [sp.Tuple(start, stop, sp.Integer(1))]
        out.append((part, layout.index(g, sp.Tuple(*items))))
        start = stop
    return out, "concatenation: each part's adjoint is its slice of the upstream gradient"


def _vjp_stack(alg, e, g):
    axis, *parts = e.args
    axis = int(axis) % len(alg.shape(e))
    head = _whole(alg, e, axis)
    return [
        (part, layout.index(g, sp.Tuple(*head, sp.Integer(i)))) for i, part in enumerate(parts)
    ], "stacking: each part's adjoint is its entry of the upstream gradient"


def _vjp_take_along(alg, e, g):
    a, ids, axis = e.args
    rank = len(alg.shape(a))
    n = alg.shape(a)[int(axis) % rank]
    if int(axis) % rank == rank - 1 and isinstance(ids, layout.expand_dims):
        if tuple(int(i) for i in ids.args[1]) == (rank - 1,):
            # one label per row, logp[y[:, None]]: g broadcast over the one-hot rows
            # (g: [B, 1] times onehot(y, k): [B, k]), the form the softmax rule simplifies
            return [(a, g * ops.onehot(ids.args[0], n))], (
                "take_along_axis with one label per row picks onehot(y)-weighted entries: "
                "its adjoint is $g \\odot \\mathrm{onehot}(y)$"
            )
    return [(a, layout.put_along_axis(g, ids, axis, n))], (
        "take_along_axis picks entries at the labels: its adjoint adds each back at its label"
    )


def _vjp_put_along(alg, e, g):
    inner, ids, axis, _ = e.args
    return [(inner, layout.take_along_axis(g, ids, axis))], (
        "put_along_axis's adjoint takes the same entries"
    )


def _vjp_einsum(alg, e, g):
    """d einsum: the operand's subscripts become the output, the upstream gradient takes
    the operand's place; a letter only that operand has is summed over, so its adjoint
    copies along it (a vector of ones)."""
    subs, *xs = e.args
    ins, out = layout.einsum_parts(subs.name)
    contributions = []
    for k, x in enumerate(xs):
        target, links = _distinct_letters(ins[k], set(subs.name))
        others = [(ins[j], xs[j]) for j in range(len(xs)) if j != k]
        dims0 = dict(zip(ins[k], alg.shape(x)))
        # a letter repeated in the operand (a diagonal, 'ii->i') reads its entries where
        # the indices agree: the adjoint puts them there, through identity matrices
        others += [(a + b, ops.eye(dims0[a])) for a, b in links]
        present = set(out).union(*(set(sub) for sub, _ in others))
        extra = [c for c in target if c not in present]
        dims = {c: dims0[ins[k][i]] for i, c in enumerate(target)}
        terms = ([(out, g)] if out else []) + others + [(c, alg.ones((dims[c],))) for c in extra]
        scale = g if not out else sp.Integer(1)
        if len(terms) == 1 and terms[0][0] == target:
            back = terms[0][1]
        elif not terms:
            back = alg.ones(alg.shape(x))
        else:
            text = ",".join(sub for sub, _ in terms) + "->" + target
            back = layout.einsum(Str(text), *(t for _, t in terms))
        contributions.append((x, scale * back))
    return contributions, (
        "einsum is linear in each operand: its adjoint is an einsum of the upstream "
        "gradient with the other operands, onto the operand's letters"
    )


def _distinct_letters(letters: str, used: set) -> tuple[str, list]:
    """``letters`` with each repeat renamed to an unused letter, and the (letter, new
    letter) pairs renamed: 'ii' -> ('ij', [('i', 'j')])."""
    free = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used]
    out, links, seen = "", [], set()
    for c in letters:
        if c in seen:
            new = free.pop(0)
            links.append((c, new))
            c = new
        seen.add(c)
        out += c
    return out, links


LAYOUT_VJP_RULES = {
    layout.expand_dims: _vjp_expand_dims,
    layout.permute: _vjp_permute,
    layout.reshape: _vjp_reshape,
    layout.index: _vjp_index,
    layout.scatter: _vjp_scatter,
    layout.concatenate: _vjp_concatenate,
    layout.stack: _vjp_stack,
    layout.take_along_axis: _vjp_take_along,
    layout.put_along_axis: _vjp_put_along,
    layout.einsum: _vjp_einsum,
    ops.zeros: lambda alg, e, g: ([], "constant"),
}
