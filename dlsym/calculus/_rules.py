"""Matrix-form derivative rules, one per operation, as lookup tables.

``VJP_RULES`` (reverse mode): given an expression ``e`` and the adjoint ``g`` of
its value (same shape as ``e``), return the adjoint contribution for each of its
arguments, with the rule's name as justification. Applied backwards over the
``define`` chain this gives gradients in matrix form with symbolic sizes.

``JAC_RULES`` (forward mode): the Jacobian of a vector-valued expression with
respect to a vector ``x``, as a matrix expression (``diag(f'(a)) J_a``,
``(diag(s) - s s^T) J_a``...). The Hessian is the Jacobian of the gradient.
"""

from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str

from dlsym.calculus import _piecewise as piecewise
from dlsym.calculus._conv_rules import CONV_VJP_RULES
from dlsym.calculus._layout_rules import LAYOUT_VJP_RULES, NoMatrixRule
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra, einsum_as_ops

# --- reverse mode -----------------------------------------------------------------


def _vjp_add(alg: Algebra, e, g):
    return [(a, alg.sum_to(g, alg.shape(a), alg.shape(e))) for a in e.args], "sum rule"


def _vjp_mul(alg, e, g):
    out = []
    for i, a in enumerate(e.args):
        if a.is_number:
            continue
        others = sp.Mul(*(e.args[:i] + e.args[i + 1 :]))
        out.append((a, alg.sum_to(g * others, alg.shape(a), alg.shape(e))))
    kind = "product rule" + (" (elementwise)" if alg.shape(e) else "")
    return out, kind


def _vjp_pow(alg, e, g):
    base, ex = e.args
    full = alg.shape(e)
    out = [(base, alg.sum_to(g * ex * base ** (ex - 1), alg.shape(base), full))]
    if not ex.is_number:
        out.append((ex, alg.sum_to(g * e * sp.log(base), alg.shape(ex), full)))
    return out, "power rule: $d(u^c) = c u^{c-1} du$"


def _vjp_elementwise(alg, e, g):
    u = sp.Dummy("u", real=True)
    d = ops.elementwise_derivative(type(e)(u))
    name = type(e).__name__
    formula = sp.sstr(d).replace("_u", "u").replace("**", "^").replace("*", " ")
    return [(e.args[0], g * ops.elementwise_derivative(e))], f"${name}'(u) = {formula}$"


def _vjp_log(alg, e, g):
    """log(sum(exp(u))) written out is logsumexp(u), and log(1 + exp(u)) softplus(u):
    their adjoints softmax(u) g and σ(u) g, which stay finite where exp(u)/sum(exp(u))
    and exp(u)/(1 + exp(u)) are inf/inf (u = 800), in the gradient and in every
    derivative of it (the Hessian of the written-out forms was nan there)."""
    (a,) = e.args
    if isinstance(a, ops.tsum) and len(a.args) == 1 and isinstance(a.args[0], sp.exp):
        out, why = _vjp_logsumexp(alg, ops.logsumexp(a.args[0].args[0]), g)
        return out, f"log(sum(exp(u))) = logsumexp(u): {why}"
    if isinstance(a, sp.Add) and len(a.args) == 2 and 1 in a.args:
        (rest,) = [t for t in a.args if t != 1]
        if isinstance(rest, sp.exp):
            u = rest.args[0]
            return [(u, g * ops.sigmoid(u))], r"$d \log(1 + e^{u}) = \sigma(u)\, du$"
    return _vjp_elementwise(alg, e, g)


def _vjp_matmul_stack(alg, e, g):
    """A product with a stack of matrices (rank 3 or more): per matrix, as for matrices,
    then summed over the stack axes an operand was broadcast along; a vector operand is
    a one-row (or one-column) matrix whose axis goes again at the end."""
    a, b = e.args
    sa, sb = alg.shape(a), alg.shape(b)
    g = alg.expand_to(g, alg.shape(e))  # g broadcast along an axis (a mean's adjoint)
    a2 = alg.expand_dims(a, (0,)) if len(sa) == 1 else a
    b2 = alg.expand_dims(b, (1,)) if len(sb) == 1 else b
    g2 = g
    if len(sb) == 1:
        g2 = alg.expand_dims(g2, (len(alg.shape(g2)),))
    if len(sa) == 1:
        g2 = alg.expand_dims(g2, (len(alg.shape(g2)) - 1,))
    ga = alg.sum_to(alg.mm(g2, alg.mT(b2)), alg.shape(a2))
    gb = alg.sum_to(alg.mm(alg.mT(a2), g2), alg.shape(b2))
    return (
        [
            (a, alg.squeeze(ga, (0,)) if len(sa) == 1 else ga),
            (b, alg.squeeze(gb, (1,)) if len(sb) == 1 else gb),
        ],
        "$d(A B)$ per matrix of the stack: $\\nabla_A = G B^T$, $\\nabla_B = A^T G$, summed over broadcast stack axes",
    )


def _vjp_matmul(alg, e, g):
    a, b = e.args
    sa, sb = alg.shape(a), alg.shape(b)
    if len(sa) > 2 or len(sb) > 2:
        return _vjp_matmul_stack(alg, e, g)
    if alg.shape(g) and alg.shape(g) != alg.shape(e):
        g = alg.expand_to(g, alg.shape(e))  # [1, k] broadcast down the rows
    if len(sa) == 1 and len(sb) == 1:  # u . v
        return [(a, g * b), (b, g * a)], "$d(u^T v) = v^T du + u^T dv$"
    if len(sa) == 2 and len(sb) == 1:  # A v
        return [
            (a, alg.outer(g, b)),
            (b, alg.mm(alg.T(a), g)),
        ], "$d(A v)$: $\\nabla_A = g v^T$, $\\nabla_v = A^T g$"
    if len(sa) == 1 and len(sb) == 2:  # v^T B
        return [
            (a, alg.mm(b, g)),
            (b, alg.outer(a, g)),
        ], "$d(v^T B)$: $\\nabla_v = B g$, $\\nabla_B = v g^T$"
    return (
        [(a, alg.mm(g, alg.T(b))), (b, alg.mm(alg.T(a), g))],
        "$d(A B)$: $\\nabla_A = G B^T$, $\\nabla_B = A^T G$",
    )


def _vjp_transpose(alg, e, g):
    return [(e.args[0], alg.T(g))], "$d(A^T) = (dA)^T$"


def _spread(alg, e, g):
    """The adjoint of a reduction: g copied back along the reduced axes."""
    shape = alg.shape(e.args[0])
    return alg.spread(g, shape, ops.reduced_axes(e, shape), ops.keepdims(e))


def _vjp_sum(alg, e, g):
    return [(e.args[0], _spread(alg, e, g))], "$d\\,\\mathrm{sum}(u) = 1^T du$"


def _vjp_mean(alg, e, g):
    shape = alg.shape(e.args[0])
    count = ops.size(tuple(shape[i] for i in ops.reduced_axes(e, shape)))
    return [
        (e.args[0], _spread(alg, e, g) / count)
    ], f"$d\\,\\mathrm{{mean}}(u) = 1^T du / {count}$"


def _vjp_var(alg, e, g):
    a = e.args[0]
    shape = alg.shape(a)
    axes = ops.reduced_axes(e, shape)
    count = ops.size(tuple(shape[i] for i in axes))
    if axes == tuple(range(len(axes))):
        # leading axes: the mean broadcasts back without keepdims (NumPy's rules), the
        # form a spec writes mu = mean(X, axis=0) in, so the steps can name it
        centered = a - alg.reduce_mean(a, axes)
    else:
        centered = a - ops.tmean(a, sp.Tuple(*map(sp.Integer, axes)), sp.Integer(1))
    return [(a, 2 * _spread(alg, e, g) * centered / count)], (
        f"$d\\,\\mathrm{{var}}(u) = 2 (u - \\bar u)^T du / {count}$ (the deviations sum to zero)"
    )


def _vjp_max(alg, e, g):
    # min(u) = -max(-u): the same mask, of -u. Ties split the gradient equally (the
    # mask is 1/c on each of c largest entries), as jax.grad of jnp.max does
    a = e.args[0]
    sign = 1 if isinstance(e, ops.tmax) else -1
    if len(e.args) == 1:
        return (
            [(a, g * ops.maxmask(sign * a))],
            "$d \\max(u)$: the adjoint goes to the largest entry, split equally among ties",
        )
    return (
        [(a, _spread(alg, e, g) * ops.maxmask(sign * a, e.args[1]))],
        "$d \\max(U)$ along an axis: the adjoint goes to the largest entry of each slice, "
        "split equally among ties",
    )


def _softmax_along(alg, a, e):
    """softmax(a) along the one axis a logsumexp ``e`` of a matrix runs over."""
    (axis,) = ops.reduced_axes(e, alg.shape(a))
    return ops.softmax(a, sp.Integer(axis))


def _vjp_logsumexp(alg, e, g):
    a = e.args[0]
    shape = alg.shape(a)
    if len(shape) == 1:
        return [(a, g * ops.softmax(a))], "$d\\,\\mathrm{logsumexp}(u) = \\mathrm{softmax}(u)^T du$"
    axes = ops.reduced_axes(e, shape)
    if len(axes) == len(shape):
        return [
            (a, g * sp.exp(a - ops.logsumexp(a)))
        ], "$d\\,\\mathrm{logsumexp}(U) = \\exp(U - \\mathrm{logsumexp}\\,U) : dU$"
    if len(axes) > 1:
        kept = ops.logsumexp(a, sp.Tuple(*map(sp.Integer, axes)), sp.Integer(1))
        return [(a, _spread(alg, e, g) * sp.exp(a - kept))], (
            "$d\\,\\mathrm{logsumexp}(U)$ over axes is the softmax over them, "
            "$\\exp(U - \\mathrm{logsumexp}\\,U)$"
        )
    return [
        (a, _spread(alg, e, g) * _softmax_along(alg, a, e))
    ], "$d\\,\\mathrm{logsumexp}(U)$ along an axis is the softmax along it"


def _vjp_softmax(alg, e, g):
    a = e.args[0]
    shape = alg.shape(a)
    if alg.shape(g) == () and shape:
        # a constant adjoint c 1 (−sum(s log s): log's s/s reads −1): Jᵀ (c 1) =
        # s ⊙ (c 1 − c sᵀ1) = 0, as sᵀ1 = 1 along the axis (it was sᵀ @ −1, exit 3)
        return [(a, sp.Integer(0))], r"softmax: $J^T (c\,1) = 0$, as $s^T 1 = 1$"
    if len(shape) == 1:
        return (
            [(a, e * (g - alg.mm(e, g)))],
            "softmax: $J = \\mathrm{diag}(s) - s s^T$, so $J^T g = s \\odot (g - s^T g)$",
        )
    axis = ops.map_axis(e, shape)
    if len(shape) > 2:  # s (g - sum(s g, axis, keepdims=True)), broadcast as NumPy does
        back = alg.reduce_sum(e * g, axis, keepdims=True)
        return [(a, e * (g - back))], (
            "softmax along an axis: $J^T g = s \\odot (g - \\sum_{axis} s \\odot g)$"
        )
    back = alg.spread(alg.reduce_sum(e * g, axis), shape, (axis,))
    return (
        [(a, e * (g - back))],
        "softmax along an axis: $J^T g = s \\odot (g - \\mathrm{sum}(s \\odot g))$, "
        "the sum along that axis",
    )


def _vjp_log_softmax(alg, e, g):
    a = e.args[0]
    shape = alg.shape(a)
    s = ops.softmax(*e.args)
    if alg.shape(g) == () and shape:
        g = alg.expand_to(g, shape)  # a constant adjoint: sum(g) is k g, not g
    if len(shape) == 1:
        return (
            [(a, g - s * alg.reduce_sum(g))],
            "log-softmax: $J = I - 1 s^T$, so $J^T g = g - s\\,\\mathrm{sum}(g)$",
        )
    axis = ops.map_axis(e, shape)
    if len(shape) > 2:
        back = alg.reduce_sum(g, axis, keepdims=True)
        return [(a, g - s * back)], (
            "log-softmax along an axis: $J^T g = g - s \\odot \\sum_{axis} g$"
        )
    back = alg.spread(alg.reduce_sum(g, axis), shape, (axis,))
    return (
        [(a, g - s * back)],
        "log-softmax along an axis: $J^T g = g - s \\odot \\mathrm{sum}(g)$, the sum along "
        "that axis",
    )


def _vjp_norm(alg, e, g):
    (a,) = e.args
    return [(a, g * a / e)], "$d\\|u\\| = u^T du / \\|u\\|$"


def _vjp_trace(alg, e, g):
    (a,) = e.args
    return [
        (a, g * ops.eye(alg.shape(a)[0]))
    ], "$d\\,\\mathrm{tr}(A) = \\mathrm{tr}(dA)$, so the gradient is $I$"


def _vjp_det(alg, e, g):
    (a,) = e.args
    return [
        (a, g * e * alg.T(ops.inv(a)))
    ], "Jacobi's formula: $d \\det A = \\det A\\, \\mathrm{tr}(A^{-1} dA)$"


def _vjp_logdet(alg, e, g):
    (a,) = e.args
    return [
        (a, g * alg.T(ops.inv(a)))
    ], "$d \\log\\det A = \\mathrm{tr}(A^{-1} dA)$, so the gradient is $A^{-T}$"


def _vjp_inv(alg, e, g):
    (a,) = e.args
    it = alg.T(e)
    return [(a, -alg.mm(alg.mm(it, g), it))], "$d(A^{-1}) = -A^{-1}\\, dA\\, A^{-1}$"


def _vjp_diag(alg, e, g):
    (a,) = e.args
    back = alg.diag(g) if len(alg.shape(g)) == 1 else ops.diag(g)
    return [(a, back)], "diag is linear: its adjoint takes the diagonal back"


def _vjp_outer(alg, e, g):
    u, v = e.args
    return [
        (u, alg.mm(g, v)),
        (v, alg.mm(alg.T(g), u)),
    ], "$d(u v^T)$: $\\nabla_u = G v$, $\\nabla_v = G^T u$"


def _vjp_gather(alg, e, g):
    table, ids = e.args
    n = alg.shape(table)[0]
    picked = ops.onehot(ids, n)
    rank = len(alg.shape(ids))
    if rank == 0 and alg.shape(g) == ():  # z[y] of a vector z: onehot(y) g
        back = picked * g
    elif rank <= 1:
        back = alg.outer(picked, g) if not rank else alg.mm(alg.T(picked), g)
    else:  # labels of any rank (a batch of bags): sum over all their axes
        lead = "abcdefghijklmnop"[:rank]
        rest = "qrstuvw"[: len(alg.shape(table)) - 1]
        # a gradient copied along label axes (the adjoint of a mean over a bag) enters
        # the sum once, without its copies: the einsum reads its axes as they are
        c, h, copied = _copies(alg, g)
        kept = "".join(x for i, x in enumerate(lead + rest) if i not in copied)
        back = c * layout.einsum(Str(f"{lead}z,{kept}->z{rest}"), picked, h)
    return [(table, back)], (
        "a gather $E[y]$ is $\\mathrm{onehot}(y)\\, E$: its adjoint scatters the rows back, "
        "$\\mathrm{onehot}(y)^T G$"
    )


def _copies(alg, g):
    """(c, h, axes) where ``g`` is ``c * expand_dims(h, axes) * ones(shape)``, a value
    copied along new axes (the adjoint of a reduction); (1, g, ()) otherwise."""
    c, rest = alg.split_scalar(g)
    if isinstance(rest, sp.Mul):
        ones = [f for f in rest.args if isinstance(f, ops.ones)]
        others = [f for f in rest.args if not isinstance(f, ops.ones)]
        if len(ones) == 1 and len(others) == 1 and isinstance(others[0], layout.expand_dims):
            if tuple(alg.shape(ones[0])) == tuple(alg.shape(g)):
                inner, axes = others[0].args
                return c, inner, tuple(int(a) for a in axes)
    return sp.Integer(1), g, ()


def _vjp_entry(alg, e, g):
    a, *idx = e.args
    shape = alg.shape(a)
    units = [ops.unit(i, d) for i, d in zip(idx, shape)]
    if len(shape) == 1:
        back = g * units[0]
    elif len(idx) == 2:
        back = g * ops.outer(units[0], units[1])
    else:
        back = alg.outer(units[0], g)
    return [(a, back)], "indexing: the adjoint is scattered to the indexed entry"


def _vjp_constant(alg, e, g):
    return [], "constant"


VJP_RULES = {
    sp.Add: _vjp_add,
    sp.Mul: _vjp_mul,
    sp.Pow: _vjp_pow,
    ops.matmul: _vjp_matmul,
    ops.transpose: _vjp_transpose,
    ops.tsum: _vjp_sum,
    ops.tmean: _vjp_mean,
    ops.tmax: _vjp_max,
    ops.tmin: _vjp_max,
    ops.logsumexp: _vjp_logsumexp,
    ops.var: _vjp_var,
    ops.softmax: _vjp_softmax,
    ops.log_softmax: _vjp_log_softmax,
    ops.norm: _vjp_norm,
    ops.trace: _vjp_trace,
    ops.det: _vjp_det,
    ops.logdet: _vjp_logdet,
    ops.inv: _vjp_inv,
    ops.diag: _vjp_diag,
    ops.outer: _vjp_outer,
    ops.entry: _vjp_entry,
    ops.ones: _vjp_constant,
    ops.eye: _vjp_constant,
    ops.unit: _vjp_constant,
    ops.maxmask: _vjp_constant,
    ops.onehot: _vjp_constant,
    ops.gather: _vjp_gather,  # labels are integers: nothing flows back to them
    **{cls: _vjp_elementwise for cls in ops.ELEMENTWISE},
    sp.log: _vjp_log,  # log(sum(exp(u))) and log(1 + exp(u)) as what they are
    **LAYOUT_VJP_RULES,
    **piecewise.VJP,  # maximum, minimum, clip, where
    **CONV_VJP_RULES,  # convolution and pooling
}


def vjp_rule(e):
    for cls in type(e).__mro__:
        if cls in VJP_RULES:
            return VJP_RULES[cls]
    raise NoMatrixRule(f"no derivative rule for {type(e).__name__}")


def backprop(alg: Algebra, expr, seed, active: set, rules_used: list | None = None) -> dict:
    """Reverse-mode over one expression tree: adjoint of each active symbol in it.

    ``active`` holds the symbols whose adjoints we want (inputs and intermediate
    names); subtrees without them are skipped.
    """
    out: dict = {}

    def walk(e, g):
        if g == 0 or not (e.free_symbols & active):
            return
        if e.is_Symbol:
            out[e] = out.get(e, 0) + g
            return
        rule = vjp_rule(e)
        contributions, why = rule(alg, e, g)
        if rules_used is not None and why not in rules_used and why != "sum rule":
            rules_used.append(why)
        for arg, contrib in contributions:
            walk(arg, alg.tidy(contrib))

    walk(expr, seed)
    return out


# --- forward mode (Jacobians, Hessians) ----------------------------------------------


class Jacobian:
    """Matrix-form Jacobian of vector expressions with respect to the vector ``x``."""

    def __init__(self, alg: Algebra, x, rules_used: list):
        self.alg = alg
        self.x = x
        self.n = alg.shape(x)[0]
        self.rules_used = rules_used

    def note(self, why: str) -> None:
        if why not in self.rules_used:
            self.rules_used.append(why)

    def grad(self, e):
        """d(scalar e)/dx as a vector (reverse mode)."""
        adj = backprop(self.alg, e, sp.Integer(1), {self.x}, self.rules_used)
        return adj.get(self.x, sp.Integer(0))

    def __call__(self, e):
        alg = self.alg
        if self.x not in e.free_symbols:
            return sp.Integer(0)
        shape = alg.shape(e)
        if shape == ():
            return self.grad(e)
        if len(shape) != 1:
            raise NoMatrixRule("the Jacobian of a matrix-valued expression has no matrix form")
        if e == self.x:
            return ops.eye(self.n)
        for cls in type(e).__mro__:
            rule = JAC_RULES.get(cls)
            if rule is not None:
                return alg.tidy(rule(self, e, shape))
        if isinstance(e, ops.ELEMENTWISE):
            self.note("elementwise $f$: $J = \\mathrm{diag}(f'(a)) J_a$")
            return alg.mm(alg.diag(ops.elementwise_derivative(e)), self(e.args[0]))
        return self.by_reverse_mode(e, shape)

    def by_reverse_mode(self, e, shape):
        """J of a vector e with no forward rule (a sum along an axis of a matrix, such
        as sum(X - mu, axis=0)): Jᵀ v = ∇_x ⟨v, e⟩ by the reverse-mode rules, for a
        direction v of e's shape, is linear in v, and its forward Jacobian in v is Jᵀ
        (-N v for the example: J = -N I). Once: Jᵀ v is made of linear operations,
        which have forward rules; where it is not, no matrix form."""
        if self.x.name.startswith(_DIRECTION):
            raise NoMatrixRule(f"no matrix-form Jacobian rule for {type(e).__name__}")
        v = sp.Symbol(f"{_DIRECTION}{self.x.name}", real=True)
        alg = self.alg.extended({v: shape})
        back = backprop(alg, alg.reduce_sum(v * e), sp.Integer(1), {self.x}, self.rules_used)
        transposed = Jacobian(alg, v, self.rules_used)(back.get(self.x, sp.Integer(0)))
        if transposed == 0:
            return sp.Integer(0)
        if v in transposed.free_symbols:
            raise NoMatrixRule(f"no matrix-form Jacobian rule for {type(e).__name__}")
        self.note("by reverse mode: $J^\\top v = \\nabla_x \\langle v, e \\rangle$")
        return self.alg.T(transposed)


# the direction the reverse-mode fallback of a Jacobian differentiates along ('_': never
# a spec's name)
_DIRECTION = "_jac_dir_"


def _broadcast_rows(J: Jacobian, a, ja, shape):
    """J_a of a vector of shape (1,) broadcast to ``shape``: 𝟏 J_a, each row of the
    result the one row of a's (a bias of shape [1], as torch's nn.Linear(n, 1) has, in
    X w + b: its Hessian block with w was 2Xᵀ/m, of shape [n, m], not 2Xᵀ𝟏/m)."""
    if ja != 0 and J.alg.shape(a) == (1,) and tuple(shape) != (1,):
        return J.alg.mm(ops.ones(shape[0], 1), ja)
    return ja


def _jac_add(J: Jacobian, e, shape):
    terms = []
    for a in e.args:
        ja = J(a)
        if ja != 0 and J.alg.shape(a) == ():
            ja = J.alg.outer(J.alg.ones(shape), ja)
        terms.append(_broadcast_rows(J, a, ja, shape))
    return sp.Add(*terms)


def _jac_mul(J: Jacobian, e, shape):
    alg = J.alg
    terms = []
    for i, a in enumerate(e.args):
        if J.x not in a.free_symbols:
            continue
        others = sp.Mul(*(e.args[:i] + e.args[i + 1 :]))
        if alg.shape(a) == ():
            terms.append(alg.outer(alg.expand_to(others, shape), J(a)))
        elif alg.shape(others) == ():
            terms.append(others * _broadcast_rows(J, a, J(a), shape))
        else:
            J.note(
                "elementwise product: $J(u \\odot v) = \\mathrm{diag}(v) J_u + \\mathrm{diag}(u) J_v$"
            )
            if alg.shape(others) != tuple(shape):
                # v broadcast to the product's shape first: g ⊙ s with s of shape (1,)
                # (a sum over rows of a keepdims mean, mean(X, 1, keepdims)²) is diag(s 𝟏),
                # not a 1 × 1 diag(s) that broadcasts onto every entry
                others = others * ops.ones(*shape)
            terms.append(alg.mm(alg.diag(others), _broadcast_rows(J, a, J(a), shape)))
    return sp.Add(*terms)


def _jac_pow(J: Jacobian, e, shape):
    base, ex = e.args
    if J.x in ex.free_symbols:
        raise NoMatrixRule("a power with a variable exponent has no matrix-form Jacobian rule")
    J.note("power: $J(u^c) = \\mathrm{diag}(c u^{c-1}) J_u$")
    return J.alg.mm(J.alg.diag(ex * base ** (ex - 1)), J(base))


def _jac_matmul(J: Jacobian, e, shape):
    a, b = e.args
    alg = J.alg
    if J.x in a.free_symbols and isinstance(a, ops.matmul) and len(alg.shape(b)) == 1:
        # (A P) h as A (P h): the factor holding x meets a vector (then a rule below)
        return J(alg.mm(a.args[0], alg.mm(a.args[1], b)))
    if (
        J.x in a.free_symbols
        and isinstance(a, sp.Add)
        and len(alg.shape(b)) == 1
        and all(alg.shape(t) == alg.shape(a) for t in a.args)
    ):
        # (I − k hᵀ) P h term by term: (k hᵀ) v = k (hᵀ v) has a rule where the sum has
        # none (the Kalman gain's gradient in k)
        J.note("a sum of matrices times a vector, term by term")
        return J(sp.Add(*(alg.mm(t, b) for t in a.args)))
    if J.x in a.free_symbols and len(alg.shape(a)) == 2:
        return J.by_reverse_mode(e, shape)  # a matrix that depends on x
    if len(alg.shape(a)) == 2:
        J.note("linear map: $J(A u) = A J_u$")
        return alg.mm(a, J(b))
    if J.x in b.free_symbols:
        return J.by_reverse_mode(e, shape)
    J.note("linear map: $J(B^T u) = B^T J_u$")
    return alg.mm(alg.T(b), J(a))


def _jac_softmax(J: Jacobian, e, shape):
    J.note("softmax: $J = \\mathrm{diag}(s) - s s^T$")
    return J.alg.mm(J.alg.diag(e) - J.alg.outer(e, e), J(e.args[0]))


def _jac_log_softmax(J: Jacobian, e, shape):
    J.note("log-softmax: $J = I - 1 s^T$")
    s = ops.softmax(e.args[0])
    return J.alg.mm(ops.eye(shape[0]) - J.alg.outer(J.alg.ones(shape), s), J(e.args[0]))


def _jac_transpose(J: Jacobian, e, shape):
    return J(e.args[0])


def _jac_einsum(J: Jacobian, e, shape):
    """An einsum that is an operation the rules know (``einsum('ij,j->i', X, w)`` is
    X @ w): that operation's Jacobian, so least squares written with einsum has its
    Hessian, and a stationary point, in matrix form."""
    plain = einsum_as_ops(J.alg, e)
    if plain is e:
        return J.by_reverse_mode(e, shape)
    J.note("an einsum that is a product, a sum or a transpose: as that operation")
    return J(plain)


def _jac_tsum(J: Jacobian, e, shape):
    """A sum along an axis of a sum of products, term by term: each term's sum is one
    the algebra's sum rules put in matrix form. The softmax Hessian in a bias broadcast
    over a batch is the Jacobian in v of sum((v − (P v) 1ᵀ) ⊙ P, axis=0), which is
    v ⊙ sum(P, 0) − Pᵀ P v, so diag(sum(P, 0)) − Pᵀ P (it had no matrix form: explicit
    entries, 50 s for a 3 × 3 batch, or a crash on symbolic labels). Else by reverse
    mode."""
    axis = ops.keywords(e).get("axis")
    if axis is not None and not ops.keepdims(e):
        full = J.alg.shape(e.args[0])
        terms = sp.Add.make_args(sp.expand_mul(e.args[0]))
        # each term of the full shape: a term broadcast in the sum (X − μ: μ's rows) is
        # no sum of its own along the axis
        if len(terms) > 1 and all(J.alg.shape(t) == full for t in terms):
            J.note("a sum along an axis is linear: the sum of each term's")
            return sp.Add(*[J(J.alg.reduce_sum(t, axis)) for t in terms])
    return J.by_reverse_mode(e, shape)


def _jac_piecewise_constant(J: Jacobian, e, shape):
    J.note("the argmax mask is piecewise constant: its Jacobian is 0 almost everywhere")
    return sp.Integer(0)


JAC_RULES = {
    sp.Add: _jac_add,
    sp.Mul: _jac_mul,
    sp.Pow: _jac_pow,
    ops.matmul: _jac_matmul,
    ops.softmax: _jac_softmax,
    ops.log_softmax: _jac_log_softmax,
    ops.transpose: _jac_transpose,
    ops.maxmask: _jac_piecewise_constant,
    layout.einsum: _jac_einsum,
    ops.tsum: _jac_tsum,
    **piecewise.JAC,  # maximum, minimum, clip, where
}
