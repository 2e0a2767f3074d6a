"""Matrix-form derivative rules of the piecewise functions (``maximum``, ``minimum``,
``clip``, ``where``), with the kink convention of ``dlsym.expr._piecewise``: a tie
splits the gradient equally, through the Heaviside step ``H(0) = 1/2``, as JAX does.
A broadcast operand's adjoint is summed back to its shape (``Algebra.sum_to``), so none
of these assume a rank.

Reverse mode (``VJP``) and forward Jacobians (``JAC``, for Hessians) are tables merged
into ``_rules``'s. The masks themselves (``H``, a comparison) are piecewise constant: their
Jacobian is 0 almost everywhere, and so it is at a kink under this convention too (the
Jacobian of the one-sided derivative).
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr import _elementwise as elementwise
from dlsym.expr import _ops as ops

H = ops.heaviside
TIE = "$H(0) = \\tfrac{1}{2}$: a tie splits the gradient equally"


def _each(alg, pairs):
    """(argument, adjoint) for the arguments that are not numbers, each summed back to
    its own shape (a broadcast bias gets the sum over the batch)."""
    return [(a, alg.sum_to(c, alg.shape(a))) for a, c in pairs if not a.is_number]


def _vjp_maximum(alg, e, g):
    a, b = e.args
    return _each(alg, [(a, g * H(a - b)), (b, g * H(b - a))]), (
        f"$d \\max(u, v)$: $\\nabla_u = g \\odot H(u - v)$, $\\nabla_v = g \\odot H(v - u)$; {TIE}"
    )


def _vjp_minimum(alg, e, g):
    a, b = e.args
    return _each(alg, [(a, g * H(b - a)), (b, g * H(a - b))]), (
        f"$d \\min(u, v)$: $\\nabla_u = g \\odot H(v - u)$, $\\nabla_v = g \\odot H(u - v)$; {TIE}"
    )


def _vjp_clip(alg, e, g):
    # clip(a, lo, hi) = min(max(a, lo), hi), as jnp.clip computes it: at a == lo half of
    # g goes to a and half to lo (JAX 0.10: grad of clip(0., 0., 1.) is (0.5, 0.5, 0.))
    a, lo, hi = e.args
    m = ops.maximum(a, lo)
    # with lo < hi known (numbers), H(hi - max(a, lo)) is H(hi - a): the shorter form
    inside = H(hi - a) if (hi - lo).is_positive else H(hi - m)
    through = g * inside
    return _each(alg, [(a, through * H(a - lo)), (lo, through * H(lo - a)), (hi, g * H(m - hi))]), (
        "$\\mathrm{clip}(u, l, h) = \\min(\\max(u, l), h)$: "
        f"$\\nabla_u = g \\odot H(h - u) \\odot H(u - l)$; {TIE}"
    )


def _vjp_where(alg, e, g):
    cond, a, b = e.args
    return _each(alg, [(a, ops.where(cond, g, 0)), (b, ops.where(cond, 0, g))]), (
        "$d\\,\\mathrm{where}(c, u, v)$: the gradient goes to the branch picked, "
        "$\\nabla_u = \\mathrm{where}(c, g, 0)$; the mask $c$ is not differentiated"
    )


VJP = {
    ops.maximum: _vjp_maximum,
    ops.minimum: _vjp_minimum,
    ops.clip: _vjp_clip,
    ops.where: _vjp_where,
}


# --- forward Jacobians (Hessians) ---------------------------------------------------


def _rows(J, a, shape):
    """J_a with a scalar's gradient (a row) repeated for each entry of ``shape``."""
    ja = J(a)
    if ja != 0 and J.alg.shape(a) == ():
        ja = J.alg.outer(J.alg.ones(shape), ja)
    return ja


def _select(J, shape, pairs, why):
    """sum of diag(mask) J_a over (a, mask): each entry's row of the Jacobian comes from
    the argument it is taken from."""
    J.note(why)
    alg = J.alg
    return sp.Add(
        *(alg.mm(alg.diag(alg.expand_to(m, shape)), _rows(J, a, shape)) for a, m in pairs)
    )


def _jac_maximum(J, e, shape):
    a, b = e.args
    return _select(
        J,
        shape,
        [(a, H(a - b)), (b, H(b - a))],
        f"$J \\max(u, v) = \\mathrm{{diag}}(H(u - v)) J_u + \\mathrm{{diag}}(H(v - u)) J_v$; {TIE}",
    )


def _jac_minimum(J, e, shape):
    a, b = e.args
    return _select(
        J,
        shape,
        [(a, H(b - a)), (b, H(a - b))],
        f"$J \\min(u, v) = \\mathrm{{diag}}(H(v - u)) J_u + \\mathrm{{diag}}(H(u - v)) J_v$; {TIE}",
    )


def _jac_clip(J, e, shape):
    a, lo, hi = e.args
    return J(ops.minimum(ops.maximum(a, lo), hi))


def _jac_where(J, e, shape):
    cond, a, b = e.args
    return _select(
        J,
        shape,
        [(a, ops.where(cond, 1, 0)), (b, ops.where(cond, 0, 1))],
        "$J\\,\\mathrm{where}(c, u, v) = \\mathrm{diag}(c) J_u + \\mathrm{diag}(1 - c) J_v$",
    )


JAC = {
    ops.maximum: _jac_maximum,
    ops.minimum: _jac_minimum,
    ops.clip: _jac_clip,
    ops.where: _jac_where,
}


# --- readable forms -------------------------------------------------------------------


def _strip_ones(alg, e):
    """A branch that is ones of the mask's own shape is 1 (``where(x > 0, 1, 0)``).
    ``e`` may be no ``where`` at all: one whose branches are equal is that branch
    (merging ``where(x > 0, x + 1, x)``'s two masks gives ``where(x > 0, 1, 1)``, 1)."""
    if not isinstance(e, ops.where):
        return e
    shape = alg.shape(e)
    if alg.shape(e.args[0]) != shape:
        return e
    branches = []
    for b in e.args[1:]:
        c, rest = alg.split_scalar(b)
        branches.append(c if isinstance(rest, ops.ones) else b)
    return ops.where(e.args[0], *branches)


def _merge(alg, e):
    """Terms ``u where(c, a, b)`` with one mask ``c`` as one ``where(c, u a, u b)``."""
    groups: dict = {}
    rest = []
    for term in e.args:
        factors = sp.Mul.make_args(term)
        masks = [f for f in factors if isinstance(f, ops.where)]
        if len(masks) != 1:
            rest.append(term)
            continue
        (w,) = masks
        u = sp.Mul(*(f for f in factors if f is not w))
        groups.setdefault(w.args[0], []).append((u, w))
    for cond, terms in groups.items():
        if len(terms) == 1:
            rest.append(terms[0][0] * terms[0][1])
            continue
        a = sp.Add(*(u * w.args[1] for u, w in terms))
        b = sp.Add(*(u * w.args[2] for u, w in terms))
        rest.append(_strip_ones(alg, ops.where(cond, alg.tidy(a), alg.tidy(b))))
    return sp.Add(*rest)


def readable(alg, e):
    """Sums of ``where`` with one mask as one ``where``: the Huber gradient
    ``r where(c, 1, 0) + d sign(r) where(c, 0, 1)`` reads ``where(c, r, d sign(r))``, as a
    textbook writes it; a branch that is ones of the mask's shape is 1."""
    if not e.args or not e.has(ops.where, elementwise.step):
        return e
    e = e.func(*[readable(alg, a) for a in e.args])
    if isinstance(e, ops.where):
        return _strip_ones(alg, e)
    if isinstance(e, sp.Add):
        return _merge(alg, e)
    if isinstance(e, sp.Mul):
        return _masked(alg, e)
    if isinstance(e, ops.matmul) and all(isinstance(a, ops.diag) for a in e.args):
        a, b = (d.args[0] for d in e.args)
        if len(alg.shape(a)) == 1 and len(alg.shape(b)) == 1:  # diag(a) diag(b) = diag(a ⊙ b)
            return ops.diag(_masked(alg, a * b) if isinstance(a * b, sp.Mul) else a * b)
    return e


def _singular(f) -> bool:
    """A factor that can be inf or nan at finite inputs: 1/u, u^(−1/2), log u."""
    return (isinstance(f, sp.Pow) and f.exp.is_negative) or isinstance(f, sp.log)


def _masked(alg, e):
    """``u ⊙ where(c, a, 0)`` as ``where(c, u ⊙ a, 0)``: the guarded square root's
    gradient ``where(x > 0, 1, 0) / (2 √x)`` is 0 · nan = nan at x < 0 in NumPy, and
    ``where(x > 0, 1 / (2 √x), 0)`` is the 0 the guard means (the unpicked branch's nan
    is not picked)."""
    masks = [f for f in e.args if isinstance(f, ops.where) and 0 in f.args[1:]]
    steps = [f for f in e.args if isinstance(f, elementwise.step)]
    if len(masks) + len(steps) != 1:
        return e
    (w,) = masks or steps
    u = sp.Mul(*(f for f in e.args if f is not w))
    if u.is_number:
        return e  # 2 where(c, 1, 0): nothing that can be nan
    if steps:
        # relu's step(z) ⊙ g stays as the textbook writes it; only where g can be
        # 0/0 (a denominator or a log: √relu(x)'s step(x)/(2 √relu(x)))
        if not any(_singular(f) for f in sp.Mul.make_args(u)):
            return e
        w = ops.where(w.args[0] > 0, 1, 0)
    return _strip_ones(alg, ops.where(w.args[0], *(alg.tidy(u * b) for b in w.args[1:])))
