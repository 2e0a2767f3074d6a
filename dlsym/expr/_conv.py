"""Convolution and pooling, with the layouts and meaning of PyTorch's
``torch.nn.functional`` (shared/spec-format.md, "Tensors of any rank"): ``conv1d`` and
``conv2d`` are cross-correlations of an ``NCL`` / ``NCHW`` input with an ``OIL`` / ``OIHW``
kernel (no bias: a bias broadcasts, ``+ b[:, None, None]``), its taps ``dilation`` apart
(1 by default: a kernel of ``k`` taps spans ``d (k - 1) + 1`` entries of the input);
``max_pool2d`` and ``avg_pool2d`` take ``k x k`` windows over the last two axes,
``stride`` apart (``k`` by default: side by side), the input padded by ``padding`` on
each side (with -inf for max pooling, zeros for average pooling, whose divisor stays
``k^2``); the rows and columns past the last whole window are dropped (PyTorch's floor
mode).

Their gradients are operations of their own, each linear in one argument, so the rules
close over this module (``dlsym.calculus._conv_rules``):

- ``conv_input_grad(G, K, size)``: the transposed convolution, ``G`` spread back over the
  receptive fields through the kernel (the input's gradient; ``size`` is the input's
  spatial sizes, which a strided output does not determine);
- ``conv_kernel_grad(X, G, size)``: the correlation of the input with the upstream
  gradient (the kernel's gradient; ``size`` is the kernel's spatial sizes);
- ``unpool2d(G, k, size)``: each entry added over its window (zeros outside every
  window), the adjoint of sum pooling; ``max_pool2d_mask(X, k)``: where windows do not
  overlap, the share of each entry in its window's maximum, ``1/c`` on each of ``c`` tied
  largest entries (the kink convention: ties split the gradient equally);
- ``max_pool2d_input_grad(G, X, k)``: where windows overlap, each window's ``G`` routed to
  its largest entries (split equally among ties) and added up over the windows an entry
  wins; its adjoint in ``G``, ``max_pool2d_gather(V, X, k)``, reads ``V`` at each
  window's largest entries of ``X``.

Stride, padding, dilation and window sizes are integers (static arguments); the spatial
sizes are dims, so a derivation holds for every batch and image size. Static arguments
added since an operation was first written (the dilation; a pool's stride and padding)
are left out where they are PyTorch's defaults (``_Defaults``), so each value has one
form, the one it had before: ``conv2d(X, K, 1, 0, 1)`` is ``conv2d(X, K, 1, 0)``,
``max_pool2d(X, 2, 2, 0)`` is ``max_pool2d(X, 2)``; ``full_args`` reads them back.
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr._ops import TensorOp
from dlsym.expr._shapes import ShapeError, fmt_shape


def span(kernel, dilation=1):
    """The entries of the input a kernel of ``kernel`` taps, ``dilation`` apart, covers."""
    return dilation * (kernel - 1) + 1


def conv_length(length, kernel, stride, padding, dilation=1):
    """PyTorch's output length ``floor((L + 2p - d(k - 1) - 1)/s) + 1``; with stride 1
    SymPy writes it ``L + 2p - k + 1`` (the floor of a whole number is itself)."""
    # expanded: (H - 1)/2 and H/2 - 1/2 are one size, and SymPy rebuilds the first as the
    # second (a Tuple of sizes, substituted), so shapes must compare in that form
    return sp.floor(sp.expand((length + 2 * padding - span(kernel, dilation)) / stride)) + 1


def sizes(t) -> tuple:
    """A Tuple of sizes in one canonical (expanded) form: simplifying a result may
    rewrite floor(H/2 - 1/2) inside it as floor((H - 1)/2), the same size."""
    return tuple(sp.expand(d) for d in t)


def _too_small(length, kernel, padding) -> bool:
    """Whether the (padded) input is provably shorter than the kernel or window."""
    return bool((length + 2 * padding - kernel).is_negative)


class _Defaults(TensorOp):
    """An operation whose last static arguments are optional: the first ``required``
    arguments are always there, the others default to ``defaults(args)``, and a trailing
    one equal to its default is dropped (``eval``), so one value has one form."""

    required = 0

    @classmethod
    def defaults(cls, args) -> tuple:
        """The default values of the optional arguments, given the required ones."""
        return ()

    @classmethod
    def full(cls, args) -> tuple:
        """``args`` completed with the defaults of the optional ones left out."""
        return tuple(args) + cls.defaults(args)[len(args) - cls.required :]

    @classmethod
    def eval(cls, *args):
        n, defaults = len(args), cls.defaults(args)
        while n > cls.required and args[n - 1] == defaults[n - 1 - cls.required]:
            n -= 1
        return cls(*args[:n]) if n < len(args) else None


def full_args(e) -> tuple:
    """``e``'s arguments with the optional ones it left out (their defaults)."""
    return type(e).full(e.args)


class _Conv(_Defaults):
    """Base of the convolutions: ``nd`` spatial axes after the batch and channel axes;
    the dilation, their last argument, is left out where it is 1."""

    nd = 2
    layout = "NCHW"

    @classmethod
    def defaults(cls, args) -> tuple:
        return (sp.Integer(1),)

    @classmethod
    def check_input(cls, shape, what):
        if len(shape) != cls.nd + 2:
            raise ShapeError(
                f"{cls.__name__} needs a {cls.layout} {what} ({cls.nd + 2} axes: batch, "
                f"channels, {'length' if cls.nd == 1 else 'height, width'}), got a "
                f"{fmt_shape(shape)}"
            )


class _Forward(_Conv):
    """``conv(X, K, stride, padding, dilation)``: ``Y[b,o,h,w] = sum_{c,i,j}
    X[b,c,sh+di-p,sw+dj-p] K[o,c,i,j]``, entries of X outside it being zeros (the
    padding)."""

    nargs, required = (4, 5), 4
    static = (2, 3, 4)

    @classmethod
    def result_shape(cls, args, shapes):
        x, k = shapes[:2]
        stride, padding, dilation = (int(a) for a in cls.full(args)[2:])
        cls.check_input(x, "input")
        cls.check_input(k, "kernel")
        if x[1] != k[1]:
            raise ShapeError(
                f"{cls.__name__}: the input has {x[1]} channels and the kernel takes {k[1]} "
                f"(kernel layout {'OIL' if cls.nd == 1 else 'OIHW'}: out, in, spatial)"
            )
        for length, kernel in zip(x[2:], k[2:]):
            if _too_small(length, span(kernel, dilation), padding):
                dilated = (
                    f", dilated by {dilation}: {span(kernel, dilation)}" if dilation > 1 else ""
                )
                raise ShapeError(
                    f"{cls.__name__}: the kernel ({kernel}{dilated}) is larger than the input "
                    f"({length}{f' + 2*{padding}' if padding else ''})"
                )
        lengths = tuple(conv_length(n, m, stride, padding, dilation) for n, m in zip(x[2:], k[2:]))
        return sizes((x[0], k[0]) + lengths)


class conv1d(_Forward):
    nd, layout = 1, "NCL"


class conv2d(_Forward):
    nd, layout = 2, "NCHW"


class _InputGrad(_Conv):
    """``conv_input_grad(G, K, size, stride, padding, dilation)``: the adjoint of the
    convolution in its input, ``dX[b,c,y,x] = sum G[b,o,h,w] K[o,c,i,j]`` over
    ``sh+di-p = y``, ``sw+dj-p = x``; ``size`` is the input's spatial sizes."""

    nargs, required = (5, 6), 5
    static = (2, 3, 4, 5)

    @classmethod
    def result_shape(cls, args, shapes):
        g, k = shapes[:2]
        size = sizes(args[2])
        cls.check_input(g, "upstream gradient")
        cls.check_input(k, "kernel")
        if g[1] != k[0] or len(size) != cls.nd:
            raise ShapeError(
                f"{cls.__name__}: a {fmt_shape(g)} does not fit a kernel {fmt_shape(k)}"
            )
        return (g[0], k[1]) + size


class conv1d_input_grad(_InputGrad):
    nd, layout = 1, "NCL"


class conv2d_input_grad(_InputGrad):
    nd, layout = 2, "NCHW"


class _KernelGrad(_Conv):
    """``conv_kernel_grad(X, G, size, stride, padding, dilation)``: the adjoint of the
    convolution in its kernel, ``dK[o,c,i,j] = sum_{b,h,w} X[b,c,sh+di-p,sw+dj-p]
    G[b,o,h,w]``; ``size`` is the kernel's spatial sizes."""

    nargs, required = (5, 6), 5
    static = (2, 3, 4, 5)

    @classmethod
    def result_shape(cls, args, shapes):
        x, g = shapes[:2]
        size = sizes(args[2])
        cls.check_input(x, "input")
        cls.check_input(g, "upstream gradient")
        if x[0] != g[0] or len(size) != cls.nd:
            raise ShapeError(f"{cls.__name__}: a {fmt_shape(x)} does not fit a {fmt_shape(g)}")
        return (g[1], x[1]) + size


class conv1d_kernel_grad(_KernelGrad):
    nd, layout = 1, "NCL"


class conv2d_kernel_grad(_KernelGrad):
    nd, layout = 2, "NCHW"


FORWARD = {1: conv1d, 2: conv2d}
INPUT_GRAD = {1: conv1d_input_grad, 2: conv2d_input_grad}
KERNEL_GRAD = {1: conv1d_kernel_grad, 2: conv2d_kernel_grad}


def pool_length(length, k, stride, padding):
    """PyTorch's pooled length ``floor((L + 2p - k)/s) + 1``; ``floor(L/k)`` in the
    form it always had for windows side by side (``s = k``, no padding)."""
    if stride == k and padding == 0:
        return sp.floor(length / k)
    return conv_length(length, k, stride, padding)


def pooled_shape(shape, k: int, name: str, stride: int | None = None, padding: int = 0):
    stride = k if stride is None else stride
    if len(shape) < 2:
        raise ShapeError(
            f"{name} pools the last two axes (height, width), got a {fmt_shape(shape)}"
        )
    for n in shape[-2:]:
        if _too_small(n, k, padding):
            raise ShapeError(
                f"{name}: the window ({k}) is larger than the input "
                f"({n}{f' + 2*{padding}' if padding else ''})"
            )
    lengths = tuple(pool_length(n, k, stride, padding) for n in shape[-2:])
    return sizes(tuple(shape[:-2]) + lengths)


class _Windowed(_Defaults):
    """Base of pooling and the operations of its gradients: ``k x k`` windows over the
    last two axes, the window size ``k`` at position ``window``, the stride (``k`` by
    default: windows side by side) and the padding (0) last. Windows read the input
    ``stride`` apart, from ``padding`` before it; a window past the padded input is
    dropped (PyTorch's floor mode)."""

    window = 1

    @classmethod
    def defaults(cls, args) -> tuple:
        return (args[cls.window], sp.Integer(0))

    @classmethod
    def how(cls, args) -> tuple[int, int, int]:
        """The window size, stride and padding, as integers."""
        full = cls.full(args)
        return int(full[cls.window]), int(full[-2]), int(full[-1])


def pool_how(e) -> tuple[int, int, int]:
    """The window size, stride and padding of a pooling operation ``e``."""
    return type(e).how(e.args)


def overlapping(e) -> bool:
    """Whether the windows of ``e`` overlap (a stride below the window size)."""
    k, stride, _ = pool_how(e)
    return stride < k


class _Pool(_Windowed):
    """``pool(X, k, stride, padding)``: one value per window."""

    nargs, required = (2, 3, 4), 2
    static = (1, 2, 3)

    @classmethod
    def result_shape(cls, args, shapes):
        k, stride, padding = cls.how(args)
        return pooled_shape(shapes[0], k, cls.__name__, stride, padding)


class max_pool2d(_Pool):
    """The largest entry of each window (the padding is -inf: it never wins); its
    derivative jumps where two entries tie."""

    kinked = True


class avg_pool2d(_Pool):
    """The mean of each window, its padding zeros counted (PyTorch's default
    ``count_include_pad=True``: the divisor is always ``k^2``)."""


class max_pool2d_mask(_Windowed):
    """``max_pool2d_mask(X, k, stride, padding)``, of X's shape, for windows that do not
    overlap (``stride >= k``): each entry's share of its window's maximum, ``1/c`` on
    each of the ``c`` largest entries of a window (ties split the gradient equally), 0
    elsewhere and outside every window. Piecewise constant."""

    nargs, required = (2, 3, 4), 2
    static = (1, 2, 3)
    kinked = True

    @classmethod
    def result_shape(cls, args, shapes):
        k, stride, _ = cls.how(args)
        if stride < k:
            raise ShapeError(
                f"max_pool2d_mask needs windows that do not overlap (stride {k} or more)"
            )
        return sizes(shapes[0])

    def _eval_is_nonnegative(self):
        return True


class unpool2d(_Windowed):
    """``unpool2d(G, k, (H, W), stride, padding)``: each entry of G added over its
    ``k x k`` window of an ``H x W`` grid (where windows overlap, their entries add up),
    zeros outside every window; the adjoint of sum pooling."""

    nargs, required = (3, 4, 5), 3
    static = (1, 2, 3, 4)

    @classmethod
    def result_shape(cls, args, shapes):
        return tuple(shapes[0][:-2]) + sizes(args[2])


class _MaxShares(_Windowed):
    """Base of the two operations of overlapping max pooling's gradient, linear in
    their first argument and piecewise constant in the second, ``X``: each window's
    share ``1/c`` of each of its ``c`` largest entries of ``X`` (0 for the others)."""

    nargs, required = (3, 4, 5), 3
    static = (2, 3, 4)
    window = 2
    kinked = True


class max_pool2d_input_grad(_MaxShares):
    """``max_pool2d_input_grad(G, X, k, stride, padding)``, of X's shape: each window's
    entry of G routed to the window's largest entries of X (split equally among ties),
    added up over the windows an entry wins; max pooling's adjoint."""

    @classmethod
    def result_shape(cls, args, shapes):
        g, x = shapes[:2]
        if len(g) != len(x) or tuple(g[:-2]) != tuple(x[:-2]):
            raise ShapeError(
                f"max_pool2d_input_grad: a {fmt_shape(g)} does not fit a {fmt_shape(x)}"
            )
        return sizes(x)


class max_pool2d_gather(_MaxShares):
    """``max_pool2d_gather(V, X, k, stride, padding)``, pooled: each window's value of V
    at its largest entries of X (their mean where they tie); the adjoint of
    ``max_pool2d_input_grad`` in G, and ``max_pool2d(X, ...)`` for ``V = X``."""

    @classmethod
    def result_shape(cls, args, shapes):
        v, x = shapes[:2]
        if tuple(v) != tuple(x):
            raise ShapeError(f"max_pool2d_gather: a {fmt_shape(v)} does not fit a {fmt_shape(x)}")
        k, stride, padding = cls.how(args)
        return pooled_shape(x, k, cls.__name__, stride, padding)


CONV_OPS = (
    conv1d,
    conv2d,
    conv1d_input_grad,
    conv2d_input_grad,
    conv1d_kernel_grad,
    conv2d_kernel_grad,
    max_pool2d,
    avg_pool2d,
    max_pool2d_mask,
    unpool2d,
    max_pool2d_input_grad,
    max_pool2d_gather,
)


# the operations whose kernel or window must fit the input (at the spec's own sizes too:
# the parser runs their shape rules again with the dims put in)
WINDOWED = (_Conv, _Windowed)
# those linear in each of their two operands (a convolution, and its two adjoints): 0
# where either is 0
BILINEAR = (_Conv,)
