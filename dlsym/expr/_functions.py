"""The functions of the expression language: one row per name in ``FUNCTIONS``, with
how its arguments are read (tensors, a list of tensors, a shape, axes, einsum's
subscripts) and the operation it builds (shared/spec-format.md, "The expression
language" and "Tensors of any rank"). The parser (``_parse``) looks names up here.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.core.symbol import Str

from dlsym.expr import _conv as conv
from dlsym.expr import _layout as layout
from dlsym.expr import _moments as moments
from dlsym.expr import _ops as ops


def _elementwise(cls) -> Callable:
    return lambda alg, a: cls(a)


def _log(alg, a):
    """log, with the log of a gathered softmax the gathered log_softmax: PyTorch's
    cross-entropy written -log(take_along_axis(softmax(Z, 1), y[:, None], 1)) had the
    gradient softmax ⊙ (... / p_y), 1/0 = nan where p_y underflows (a logit of 800);
    gathered after the log, it is softmax(Z) − onehot(y), finite at any logits."""
    if isinstance(a, layout.take_along_axis) and isinstance(a.args[0], ops.softmax):
        return layout.take_along_axis(ops.log_softmax(*a.args[0].args), *a.args[1:])
    return sp.log(a)


def _log1p(alg, a):
    """log1p(exp(u)) is softplus(u), as log(1 + exp(u)) is read: the logistic loss
    written so was convexity "undecided" (no composition rule for log1p of exp)."""
    return ops.softplus(a.args[0]) if isinstance(a, sp.exp) else log1p(a)


def _logaddexp(alg, a, b):
    """NumPy's ``logaddexp(a, b)``, log(eᵃ + eᵇ), as b + softplus(a − b) (softplus(b)
    where a is 0, softplus(a) where b is): equal, and computed without overflow at any
    size, as NumPy's is."""
    if a == 0:
        return ops.softplus(b)
    if b == 0:
        return ops.softplus(a)
    return b + ops.softplus(a - b)


def _heaviside(alg, x, at_zero):
    """NumPy's ``heaviside(x, h0)``: 0 below zero, 1 above, ``h0`` (a number) at zero;
    flat wherever it is differentiable. Results write a tie's share this way
    (``heaviside(a - b, 1/2)``), so they read back as the language."""
    if not at_zero.is_number:
        raise ops.ShapeError("heaviside's value at zero must be a number, such as 1/2")
    return sp.Heaviside(x, at_zero)


def _axis_arg(axis):
    return sp.Tuple(*map(sp.Integer, axis)) if isinstance(axis, tuple) else sp.Integer(axis)


# a whole reduction of a constant tensor ``c 1`` (of size n), as NumPy computes it: what
# ``x**0`` or ``x - x`` (dlsym.expr._parse keeps their shape) reduce to
_OF_A_CONSTANT = {
    ops.tsum: lambda c, n: c * n,
    ops.tmean: lambda c, n: c,
    ops.tmax: lambda c, n: c,
    ops.tmin: lambda c, n: c,
    ops.var: lambda c, n: sp.Integer(0),
    ops.logsumexp: lambda c, n: c + sp.log(n),
}


def _constant(alg, a):
    """``c`` where ``a`` is ``c`` times a tensor of ones (or a tensor of zeros), else None."""
    c, rest = alg.split_scalar(a)
    if isinstance(rest, ops.zeros):
        return sp.Integer(0)
    return c if isinstance(rest, ops.ones) else None


def _reduction(cls) -> Callable:
    def build(alg, a, axis=None, keepdims=False):
        c = _constant(alg, a) if axis is None and not keepdims else None
        if c is not None and cls in _OF_A_CONSTANT:
            return _OF_A_CONSTANT[cls](c, ops.size(tuple(alg.shape(a))))
        if keepdims:
            full = tuple(range(len(alg.shape(a))))
            return cls(a, _axis_arg(full if axis is None else axis), sp.Integer(1))
        if axis is None:
            return cls(a)
        return cls(a, _axis_arg(axis))

    return build


def _axes_in_range(alg, a, axis, name):
    """The reductions' axis check, named by the function written (norm and std are built
    from sum and var, whose messages would name those)."""
    ops.checked_axes((a, _axis_arg(axis)), alg.shape(a), name)


def _along_axis(cls) -> Callable:
    def build(alg, a, axis=None):
        if isinstance(axis, tuple):  # normalised along one axis, not several
            raise ops.ShapeError(
                f"{cls.__name__} takes one axis (an integer), got axis={axis}: it normalises "
                "along a single axis"
            )
        if axis is not None:
            _axes_in_range(alg, a, axis, cls.__name__)
        # a vector's softmax has one axis: written without it, as before
        if axis is None or len(alg.shape(a)) == 1:
            return cls(a)
        return cls(a, sp.Integer(axis))

    return build


def _dot(alg, a, b):
    """NumPy's dot: a scalar's product, else the matrix product of vectors and matrices
    (dot(A, x) is A @ x); past two axes NumPy sums over a's last and b's second-to-last,
    which '@' does not (it batches): refused, located."""
    sa, sb = alg.shape(a), alg.shape(b)
    if not sa or not sb:
        return a * b
    if len(sa) > 2 or len(sb) > 2:
        raise ops.ShapeError(
            f"dot of a {ops.fmt_shape(sa)} and a {ops.fmt_shape(sb)}: past two axes NumPy's "
            "dot sums over the first's last axis and the second's second-to-last, which "
            "'@' does not; write it with einsum"
        )
    return alg.mm(a, b)


def _onehot(alg, ids, k):
    if not (k.is_Integer and k > 0) and not (k.is_Symbol and k.is_integer):
        raise ops.ShapeError("onehot(ids, k) needs the number of classes k: a dim or an integer")
    if ids not in alg.index_symbols:
        raise ops.ShapeError("onehot(ids, k) takes class labels: a symbol with domain {index: k}")
    return ops.onehot(ids, k)


def _norm(alg, a, ord=None, axis=None, keepdims=False):
    """``norm(x)``; along axes (``norm(X, axis=1)``, as numpy.linalg.norm) the 2-norm of
    each slice, sqrt(sum(X**2, axis)). NumPy's second argument is ``ord``, not the axis:
    ``norm(X, 1)`` is a matrix 1-norm there, so only ``ord=2`` of a vector (or along one
    axis), the norm it already is, is taken, and any other a located error."""
    one_axis = len(alg.shape(a)) == 1 or isinstance(axis, int)
    if ord is not None and (ord != 2 or not one_axis):
        raise ops.ShapeError(
            f"norm's second argument is NumPy's ord (here {ord}), not an axis: dlsym's norm "
            "is the 2-norm (Frobenius of a matrix); write norm(X, axis=1) along an axis, "
            "sum(abs(x)) for a 1-norm, max(abs(x)) for the largest entry"
        )
    if axis is None and not keepdims:
        return ops.norm(a)
    if axis is not None:
        _axes_in_range(alg, a, axis, "norm")
    return sp.sqrt(_reduction(ops.tsum)(alg, a**2, axis, keepdims))


def _std(alg, a, axis=None, keepdims=False):
    if axis is not None:
        _axes_in_range(alg, a, axis, "std")
    shape = alg.shape(a)
    axes = range(len(shape)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    count = sp.sympify(ops.size(tuple(shape[i] for i in axes))).xreplace(alg.dims)
    if count == 1:
        # the std of one entry is 0 whatever it is, and its derivative (x − mean)/(n std)
        # is 0/0: PyTorch's batch norm refuses a batch of 1 in training for this reason
        raise ops.ShapeError(
            "std over one entry (at the spec's dims) is 0 for every value, and its "
            "derivative (x − mean)/(n std) is 0/0: reduce over more than one entry"
        )
    return sp.sqrt(_reduction(ops.var)(alg, a, axis, keepdims))


def _transpose(alg, a, axes=None):
    """``transpose(X)`` is ``X.T`` (all axes reversed); ``transpose(X, axes)`` permutes."""
    if axes is None:
        return alg.T(a, written=True)
    rank = len(alg.shape(a))
    if len(axes) != rank:
        raise ops.ShapeError(f"transpose needs {rank} axes for a {ops.fmt_shape(alg.shape(a))}")
    perm = [layout._normalized(x, rank, "transpose") for x in axes]
    if sorted(perm) != list(range(rank)):
        raise ops.ShapeError(f"axes {tuple(axes)} are not a permutation of {rank} axes")
    return alg.permute(a, perm)


def _swapaxes(alg, a, i, j):
    rank = len(alg.shape(a))
    perm = list(range(rank))
    i, j = (layout._normalized(x, rank, "swapaxes") for x in (i, j))
    perm[i], perm[j] = perm[j], perm[i]
    return alg.permute(a, perm)


def _expand_dims(alg, a, axis):
    axes = axis if isinstance(axis, tuple) else (axis,)
    rank = len(alg.shape(a)) + len(axes)
    return alg.expand_dims(a, tuple(layout._normalized(x, rank, "expand_dims") for x in axes))


def _scaled_identity(alg, a):
    """(c, n) of ``c * eye(n)`` (c a scalar, 1 for eye(n) itself), or None."""
    c, rest = alg.split_scalar(a)
    return (c, rest.args[0]) if isinstance(rest, ops.eye) else None


# an isotropic covariance v I written as such: its inverse, determinant and log-determinant
# in v (the MLE of v through logdet(v * eye(d)) was "not affine in v, no closed form")
def _inv(alg, a):
    scaled = _scaled_identity(alg, a)
    return ops.inv(a) if scaled is None else ops.eye(scaled[1]) / scaled[0]


def _det(alg, a):
    scaled = _scaled_identity(alg, a)
    return ops.det(a) if scaled is None else scaled[0] ** scaled[1]


def _logdet(alg, a):
    scaled = _scaled_identity(alg, a)  # log|det(c I)| = n log|c| (|c| is c for c > 0)
    return ops.logdet(a) if scaled is None else scaled[1] * sp.log(sp.Abs(scaled[0]))


def _reshape(alg, a, dims):
    """``reshape(X, (B, -1))``: one -1 takes the size left over, as NumPy's."""
    dims = list(dims)
    free = [i for i, d in enumerate(dims) if d == -1]
    if len(free) > 1:
        raise ops.ShapeError("reshape can infer one size (-1), not more")
    if free:
        rest = ops.size(tuple(d for d in dims if d != -1))
        dims[free[0]] = sp.factor(sp.cancel(ops.size(alg.shape(a)) / rest))
    for d in dims:
        if not (d.is_integer and d.is_positive):
            raise ops.ShapeError(f"reshape: size {d} is not a positive whole number")
    return alg.reshape(a, dims)


def _pad(alg, a, widths, mode="constant"):
    """NumPy's ``pad(a, pad_width)`` with zeros: the array placed inside zeros of the
    padded shape, which is a scatter (its adjoint the slice that takes it back out)."""
    shape = alg.shape(a)
    if not shape:
        raise ops.ShapeError("pad needs an array, got a scalar")
    if not isinstance(widths, tuple):
        widths = (widths, widths)
    if not isinstance(widths[0], tuple):
        widths = (widths,) * len(shape)
    if len(widths) != len(shape):
        raise ops.ShapeError(
            f"pad_width has {len(widths)} pairs for a {ops.fmt_shape(shape)}: one per axis"
        )
    if all(b == 0 and e == 0 for b, e in widths):
        return a
    items = [sp.Tuple(b, b + n, 1) for (b, _), n in zip(widths, shape)]
    dims = sp.Tuple(*(b + n + e for (b, e), n in zip(widths, shape)))
    while items[-1] == sp.Tuple(0, dims[len(items) - 1], 1):
        items.pop()  # axes past the items are whole, as an index's (one form per value)
    return layout.scatter(a, sp.Tuple(*items), dims)


def _joined(cls) -> Callable:
    def build(alg, arrays, axis=0):
        return cls(sp.Integer(axis), *arrays)

    return build


def _take_along_axis(alg, a, ids, axis):
    labels = ops.tensor_symbols(ids)
    if not labels or not labels <= alg.index_symbols:
        raise ops.ShapeError("take_along_axis takes class labels: a symbol with domain {index: k}")
    return layout.take_along_axis(a, ids, sp.Integer(axis))


def _einsum(alg, subscripts, *operands):
    if "..." in subscripts:
        subscripts = _without_ellipsis(subscripts, [alg.shape(x) for x in operands])
    return layout.einsum(Str(subscripts), *operands)


def _without_ellipsis(text: str, shapes: list) -> str:
    """NumPy's ``...`` in einsum subscripts as letters of their own ('...qd,...kd->...qk'
    of [B, H, q, d] and [B, H, k, d] as 'abqd,abkd->abqk'), aligned from the right as
    NumPy broadcasts them; without '->', the ellipsis's letters lead the output, then
    the letters that appear once, sorted, as NumPy's implicit output."""
    ins, arrow, out = text.partition("->")
    parts = ins.split(",")
    if len(parts) != len(shapes):
        raise ops.ShapeError(f"einsum '{text}' names {len(parts)} operands, got {len(shapes)}")
    if any(x.count("...") > 1 for x in (*parts, out)):
        raise ops.ShapeError(f"einsum '{text}': an operand has one '...' at most")
    ranks = []
    for part, shape in zip(parts, shapes):
        rank = len(shape) - len(part.replace("...", "")) if "..." in part else 0
        if rank < 0:
            raise ops.ShapeError(
                f"einsum '{text}': '{part}' has more letters than a {ops.fmt_shape(shape)}"
            )
        ranks.append(rank)
    free = [c for c in string.ascii_letters if c not in text]
    letters = "".join(free[: max(ranks, default=0)])
    named = [p.replace("...", letters[len(letters) - r :]) for p, r in zip(parts, ranks)]
    if arrow:
        out = out.replace("...", letters)
    else:
        plain = ins.replace("...", "").replace(",", "")
        out = letters + "".join(sorted(c for c in set(plain) if plain.count(c) == 1))
    return ",".join(named) + "->" + out


def _positive(value: int | None, what: str) -> sp.Integer:
    if value is None or value < 1:
        raise ops.ShapeError(f"{what} must be a positive integer, got {value}")
    return sp.Integer(value)


def _one(value, n: int, what: str):
    """PyTorch's integer, or tuple of ``n`` integers, one per spatial axis, as one
    integer: the ops take the same stride, padding, dilation and window size along
    every axis (square windows), so a tuple must repeat one value."""
    if not isinstance(value, tuple):
        return value
    if len(value) != n:
        raise ops.ShapeError(f"{what} takes one integer or {n}, got {len(value)}: {value}")
    if len(set(value)) != 1:
        raise ops.ShapeError(
            f"{what} {value}: only the same value along every axis is supported "
            f"(square windows), such as {(value[0],) * n} or {value[0]}"
        )
    return value[0]


def _conv_args(stride, padding, dilation, nd: int) -> tuple:
    stride, padding, dilation = (
        _one(v, nd, what)
        for v, what in zip((stride, padding, dilation), ("stride", "padding", "dilation"))
    )
    if padding is None or padding < 0:
        raise ops.ShapeError(f"padding must be 0 or more, got {padding}")
    return _positive(stride, "stride"), sp.Integer(padding), _positive(dilation, "dilation")


def _conv(nd: int) -> Callable:
    def build(alg, x, k, stride=1, padding=0, dilation=1):
        if isinstance(padding, str):
            x, padding = _named_padding(alg, nd, x, k, stride, padding, dilation)
        return conv.FORWARD[nd](x, k, *_conv_args(stride, padding, dilation, nd))

    return build


def _named_padding(alg, nd: int, x, k, stride, padding: str, dilation) -> tuple:
    """PyTorch's ``padding='valid'`` (none) and ``'same'`` (stride 1: the output as large
    as the input; each spatial axis padded by ``d (k - 1)`` in all, half of it before
    and the odd one after, as PyTorch and NumPy libraries pad an even kernel). The ops
    pad every side alike: another padding is written out, ``pad(X, ...)``, whose adjoint
    slices the transposed convolution. Returns (input, the op's padding)."""
    if padding == "valid":
        return x, 0
    if _one(stride, nd, "stride") != 1:
        raise ops.ShapeError(f"padding='same' needs stride 1, as PyTorch's; got stride={stride}")
    forward = conv.FORWARD[nd]
    forward.check_input(alg.shape(x), "input")
    forward.check_input(alg.shape(k), "kernel")
    d = _positive(_one(dilation, nd, "dilation"), "dilation")
    taps = alg.shape(k)[2:]
    if not all(t.is_Integer for t in taps):
        raise ops.ShapeError(
            f"padding='same' needs the kernel's spatial sizes as numbers, got {ops.fmt_shape(taps)}"
        )
    total = [int(d) * (int(t) - 1) for t in taps]
    widths = [(t // 2, t - t // 2) for t in total]
    if len(set(widths)) == 1 and widths[0][0] == widths[0][1]:
        return x, widths[0][0]  # the op's own padding: the same on every side
    return _pad(alg, x, ((0, 0), (0, 0), *widths)), 0


def _conv_grad(table: dict, nd: int) -> Callable:
    """``conv2d_input_grad(G, K, (H, W), stride=, padding=, dilation=)`` and the
    kernel's: the results' own operations, so a printed result reads back as the
    language."""

    def build(alg, a, b, size, stride=1, padding=0, dilation=1):
        if isinstance(padding, str):
            raise ops.ShapeError(
                f"the gradient operations take an integer padding (no padding={padding!r})"
            )
        return table[nd](a, b, sp.Tuple(*size), *_conv_args(stride, padding, dilation, nd))

    return build


def _pool(cls, grid: bool = False) -> Callable:
    """``max_pool2d(X, k, stride=None, padding=0)`` and ``avg_pool2d``: PyTorch's, the
    stride the window size by default; PyTorch refuses a padding past half the window
    (a window could then read padding only). The operations of their gradients take the
    same window arguments after their arrays (and, for ``unpool2d``, the size of the
    grid after the window): ``max_pool2d_input_grad(G, X, 2)``, ``unpool2d(G, 2, (H,
    W))``, so a printed gradient reads back."""

    def build(alg, *args, stride=None, padding=0):
        (*xs, k), size = (args[:-1], args[-1]) if grid else (args, None)
        if isinstance(padding, str):
            raise ops.ShapeError(
                f"pooling takes an integer padding, as PyTorch's (no padding={padding!r})"
            )
        k = _positive(_one(k, 2, "kernel_size"), "the window size k")
        stride = k if stride is None else _positive(_one(stride, 2, "stride"), "stride")
        padding = _one(padding, 2, "padding")
        if padding is None or padding < 0:
            raise ops.ShapeError(f"padding must be 0 or more, got {padding}")
        if padding > k // 2:
            raise ops.ShapeError(
                f"padding must be at most half the window size ({k} // 2 = {k // 2}), "
                f"as PyTorch's; got {padding}"
            )
        extra = (sp.Tuple(*size),) if grid else ()
        return cls(*xs, k, *extra, stride, sp.Integer(padding))

    return build


@dataclass(frozen=True)
class FunctionRule:
    build: Callable  # (algebra, *args, **kwargs) -> SymPy expression
    arity: int | tuple  # the number of positional arguments, or the numbers allowed
    keywords: tuple = ()  # the keyword arguments it accepts (axis, keepdims)
    # how each positional argument is read (ARGUMENTS below); the last one repeats for
    # any further arguments; tensors when empty
    reads: tuple = ()
    variadic: bool = False  # any number of arguments, at least ``arity``
    # NumPy's names of the positional arguments, so each may be given by keyword too
    # (``take_along_axis(a, ids, axis=1)``, ``expand_dims(x, axis=-1)``)
    params: tuple = ()
    # keywords NumPy also takes positionally after the positional arguments, in order
    # (``sum(x, 1)`` is ``sum(x, axis=1)``)
    positional: tuple = ()
    # entry by entry (exp, maximum, where): the result has the arguments' broadcast
    # shape even where SymPy evaluates it to a number (``exp(0*x)`` is a tensor of ones)
    elementwise: bool = False

    def counts(self) -> tuple:
        return self.arity if isinstance(self.arity, tuple) else (self.arity,)


REDUCE = ("axis", "keepdims")
AXIS = ("axis",)
CONV = ("stride", "padding", "dilation")
POOL = ("stride", "padding")
CONV_GRAD = ("tensor", "tensor", "shape")


# The functions of the expression language (shared/spec-format.md).


def _sizes(dims, name: str) -> tuple:
    """The sizes of ones, zeros or eye: positive (zeros(-1), eye(0) were taken)."""
    for d in dims:
        if d.is_number and not d > 0:
            raise ops.ShapeError(f"{name} needs positive sizes, got {d}")
    return tuple(dims)


def _clip(alg, a, lo, hi):
    """clip(a, lo, hi); with lo and hi one scalar, the constant it is (with a's shape):
    SymPy's explicit Min(Max(a, c), c) folds to c, and a tie at a = c has no gradient to
    split when nothing varies. A bound None is no bound, as NumPy reads it:
    clip(x, 0, None) is maximum(x, 0)."""
    if lo is None and hi is None:
        raise ops.ShapeError("clip needs a lower or an upper bound (both are None)")
    if lo is None:
        return ops.minimum(a, hi)
    if hi is None:
        return ops.maximum(a, lo)
    if lo == hi and not alg.shape(lo):
        return alg.expand_to(lo, alg.shape(a))
    return ops.clip(a, lo, hi)


FUNCTIONS: dict[str, FunctionRule] = {
    "sum": FunctionRule(_reduction(ops.tsum), 1, REDUCE, positional=AXIS),
    "mean": FunctionRule(_reduction(ops.tmean), 1, REDUCE, positional=AXIS),
    "max": FunctionRule(_reduction(ops.tmax), 1, REDUCE, positional=AXIS),
    "min": FunctionRule(_reduction(ops.tmin), 1, REDUCE, positional=AXIS),
    "logsumexp": FunctionRule(_reduction(ops.logsumexp), 1, REDUCE, positional=AXIS),
    "log": FunctionRule(_log, 1, elementwise=True),
    "exp": FunctionRule(_elementwise(sp.exp), 1, elementwise=True),
    "sqrt": FunctionRule(_elementwise(sp.sqrt), 1, elementwise=True),
    "abs": FunctionRule(_elementwise(sp.Abs), 1, elementwise=True),
    "sin": FunctionRule(_elementwise(sp.sin), 1, elementwise=True),
    "cos": FunctionRule(_elementwise(sp.cos), 1, elementwise=True),
    "tanh": FunctionRule(_elementwise(sp.tanh), 1, elementwise=True),
    "atan": FunctionRule(_elementwise(sp.atan), 1, elementwise=True),
    "erf": FunctionRule(_elementwise(sp.erf), 1, elementwise=True),
    "sigmoid": FunctionRule(_elementwise(ops.sigmoid), 1, elementwise=True),
    "softplus": FunctionRule(_elementwise(ops.softplus), 1, elementwise=True),
    "relu": FunctionRule(_elementwise(ops.relu), 1, elementwise=True),
    "log1p": FunctionRule(_log1p, 1, elementwise=True),
    "expm1": FunctionRule(_elementwise(expm1), 1, elementwise=True),
    "logaddexp": FunctionRule(_logaddexp, 2, elementwise=True),
    "softmax": FunctionRule(_along_axis(ops.softmax), 1, AXIS, positional=AXIS),
    "log_softmax": FunctionRule(_along_axis(ops.log_softmax), 1, AXIS, positional=AXIS),
    "norm": FunctionRule(_norm, (1, 2), REDUCE, params=("x", "ord"), positional=AXIS),
    "trace": FunctionRule(lambda alg, a: ops.trace(a), 1),
    "det": FunctionRule(_det, 1),
    "logdet": FunctionRule(_logdet, 1),
    "inv": FunctionRule(_inv, 1),
    "diag": FunctionRule(lambda alg, a: ops.diag(a), 1),
    "outer": FunctionRule(lambda alg, a, b: ops.outer(a, b), 2),
    "dot": FunctionRule(_dot, 2),
    "onehot": FunctionRule(_onehot, 2, params=("ids", "num_classes")),
    "var": FunctionRule(_reduction(ops.var), 1, REDUCE, positional=AXIS),
    "std": FunctionRule(_std, 1, REDUCE, positional=AXIS),
    # moments over the random symbols (symbols with a distribution)
    "expect": FunctionRule(lambda alg, a: moments.expect(a), 1),
    "variance": FunctionRule(lambda alg, a: moments.variance(a), 1),
    "covariance": FunctionRule(lambda alg, a, b: moments.covariance(a, b), 2),
    "ones": FunctionRule(lambda alg, dims: alg.ones(_sizes(dims, "ones")), 1, reads=("shape",)),
    "zeros": FunctionRule(lambda alg, dims: ops.zeros(*_sizes(dims, "zeros")), 1, reads=("shape",)),
    "eye": FunctionRule(lambda alg, dims: ops.eye(*_sizes(dims, "eye")), 1, reads=("dim",)),
    "transpose": FunctionRule(_transpose, (1, 2), reads=("tensor", "axes"), params=("a", "axes")),
    "swapaxes": FunctionRule(
        _swapaxes, 3, reads=("tensor", "int", "int"), params=("a", "axis1", "axis2")
    ),
    "expand_dims": FunctionRule(_expand_dims, 2, reads=("tensor", "axes"), params=("a", "axis")),
    "reshape": FunctionRule(_reshape, 2, reads=("tensor", "shape"), params=("a", "shape")),
    "pad": FunctionRule(
        _pad, 2, ("mode",), reads=("tensor", "widths"), params=("array", "pad_width")
    ),
    "concatenate": FunctionRule(
        _joined(layout.concatenate), 1, AXIS, reads=("tensors",), positional=AXIS
    ),
    "stack": FunctionRule(_joined(layout.stack), 1, AXIS, reads=("tensors",), positional=AXIS),
    "take_along_axis": FunctionRule(
        _take_along_axis, 3, reads=("tensor", "tensor", "int"), params=("arr", "indices", "axis")
    ),
    "einsum": FunctionRule(_einsum, 2, reads=("subscripts", "tensor"), variadic=True),
    # piecewise functions (dlsym.expr._piecewise: NumPy's meaning, the kink convention)
    "maximum": FunctionRule(lambda alg, a, b: ops.maximum(a, b), 2, elementwise=True),
    "minimum": FunctionRule(lambda alg, a, b: ops.minimum(a, b), 2, elementwise=True),
    "clip": FunctionRule(_clip, 3, reads=("tensor", "bound"), elementwise=True),
    # convolution and pooling (dlsym.expr._conv: torch.nn.functional's layouts), and the
    # operations their gradients are written in
    "conv1d": FunctionRule(_conv(1), 2, CONV),
    "conv2d": FunctionRule(_conv(2), 2, CONV),
    "conv1d_input_grad": FunctionRule(_conv_grad(conv.INPUT_GRAD, 1), 3, CONV, CONV_GRAD),
    "conv2d_input_grad": FunctionRule(_conv_grad(conv.INPUT_GRAD, 2), 3, CONV, CONV_GRAD),
    "conv1d_kernel_grad": FunctionRule(_conv_grad(conv.KERNEL_GRAD, 1), 3, CONV, CONV_GRAD),
    "conv2d_kernel_grad": FunctionRule(_conv_grad(conv.KERNEL_GRAD, 2), 3, CONV, CONV_GRAD),
    "max_pool2d": FunctionRule(
        _pool(conv.max_pool2d),
        2,
        POOL,
        reads=("tensor", "size"),
        params=("input", "kernel_size"),
        positional=POOL,
    ),
    "avg_pool2d": FunctionRule(
        _pool(conv.avg_pool2d),
        2,
        POOL,
        reads=("tensor", "size"),
        params=("input", "kernel_size"),
        positional=POOL,
    ),
    "max_pool2d_mask": FunctionRule(_pool(conv.max_pool2d_mask), 2, POOL, ("tensor", "size")),
    "unpool2d": FunctionRule(_pool(conv.unpool2d, grid=True), 3, POOL, ("tensor", "size", "shape")),
    "max_pool2d_input_grad": FunctionRule(
        _pool(conv.max_pool2d_input_grad), 3, POOL, ("tensor", "tensor", "size")
    ),
    "max_pool2d_gather": FunctionRule(
        _pool(conv.max_pool2d_gather), 3, POOL, ("tensor", "tensor", "size")
    ),
    # where's first argument is a comparison, a mask (never differentiated)
    "heaviside": FunctionRule(_heaviside, 2, params=("x1", "x2"), elementwise=True),
    "where": FunctionRule(
        lambda alg, cond, a, b: ops.where(cond, a, b), 3, reads=("mask", "tensor", "tensor")
    ),
}

CONSTANTS = {"pi": sp.pi, "e": sp.E}
