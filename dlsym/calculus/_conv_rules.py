"""Reverse-mode rules of convolution and pooling (``dlsym.expr._conv``).

A convolution is linear in its input and in its kernel: its adjoint in the input is the
transposed convolution of the upstream gradient with the kernel (``conv_input_grad``),
and in the kernel the correlation of the input with the upstream gradient
(``conv_kernel_grad``). Those two are bilinear too, and their adjoints are the
convolution and each other, so second derivatives (Hessians w.r.t. a kernel) stay in
this form:

    <U, conv(X, K)>            = <conv_input_grad(U, K), X> = <conv_kernel_grad(X, U), K>
    <V, conv_input_grad(G, K)> = <conv(V, K), G>             = <conv_kernel_grad(V, G), K>
    <V, conv_kernel_grad(X, G)> = <conv_input_grad(G, V), X> = <conv(X, V), G>

Pooling: average pooling's adjoint copies ``g / k^2`` over each window (``unpool2d``;
where windows overlap, an entry adds up its windows' shares), and ``unpool2d``'s adjoint
is sum pooling, ``k^2`` times average pooling (with zero padding, and PyTorch's divisor
``k^2``, the same windows). Max pooling's routes ``g`` to each window's largest entry,
split equally among ties (the kink convention): where windows do not overlap, as
``unpool2d(g) * max_pool2d_mask(X)``; where they do, an entry may win several windows
and adds up what each gives it, ``max_pool2d_input_grad(g, X)``, whose adjoint in ``g``
is ``max_pool2d_gather`` and the other way round (both flat in ``X``).
``_rules.VJP_RULES`` includes this table.
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr import _conv as conv


def _spatial(alg, a, nd: int) -> sp.Tuple:
    return sp.Tuple(*alg.shape(a)[-nd:])


def _vjp_conv(alg, e, g):
    x, k, *how = conv.full_args(e)  # stride, padding, dilation
    nd = type(e).nd
    return [
        (x, conv.INPUT_GRAD[nd](g, k, _spatial(alg, x, nd), *how)),
        (k, conv.KERNEL_GRAD[nd](x, g, _spatial(alg, k, nd), *how)),
    ], (
        "a convolution is linear in each argument: its adjoint in the input is the "
        "transposed convolution of $G$ with the kernel, in the kernel the correlation of "
        "the input with $G$ (entries outside the input, the padding, are zeros)"
    )


def _vjp_input_grad(alg, e, g):
    gin, k, size, *how = conv.full_args(e)
    nd = type(e).nd
    return [
        (gin, conv.FORWARD[nd](g, k, *how)),
        (k, conv.KERNEL_GRAD[nd](g, gin, _spatial(alg, k, nd), *how)),
    ], "the transposed convolution is bilinear: its adjoints are a convolution and a correlation"


def _vjp_kernel_grad(alg, e, g):
    x, gin, size, *how = conv.full_args(e)
    nd = type(e).nd
    return (
        [
            (x, conv.INPUT_GRAD[nd](gin, g, _spatial(alg, x, nd), *how)),
            (gin, conv.FORWARD[nd](x, g, *how)),
        ],
        "the kernel's correlation is bilinear: its adjoints are a transposed convolution and a convolution",
    )


def _vjp_max_pool(alg, e, g):
    x, *how = conv.full_args(e)  # window, stride, padding
    if not conv.overlapping(e):  # each entry in one window at most
        back = conv.unpool2d(g, how[0], _spatial(alg, x, 2), *how[1:])
        return [(x, back * conv.max_pool2d_mask(x, *how))], (
            "max pooling: the adjoint goes to the largest entry of each window, split equally "
            "among ties"
        )
    return [(x, conv.max_pool2d_input_grad(g, x, *how))], (
        "overlapping max pooling: each window's adjoint goes to its largest entry, split "
        "equally among ties, and an entry adds up what it gets from every window it wins"
    )


def _vjp_avg_pool(alg, e, g):
    x, k, *how = conv.full_args(e)
    return [(x, conv.unpool2d(g, k, _spatial(alg, x, 2), *how) / k**2)], (
        "average pooling: the adjoint spreads $g / k^2$ over each window"
        + (" (overlapping windows add up)" if conv.overlapping(e) else "")
    )


def _vjp_unpool(alg, e, g):
    gin, k, _, *how = conv.full_args(e)
    return [(gin, k**2 * conv.avg_pool2d(g, k, *how))], "unpooling's adjoint sums each window"


def _vjp_max_input_grad(alg, e, g):
    gin, x, *how = conv.full_args(e)
    return [(gin, conv.max_pool2d_gather(g, x, *how))], (
        "routing to each window's largest entries is linear in what it routes: its adjoint "
        "reads the same entries back (and is flat in the input, piecewise constant)"
    )


def _vjp_max_gather(alg, e, g):
    v, x, *how = conv.full_args(e)
    return [(v, conv.max_pool2d_input_grad(g, x, *how))], (
        "reading each window's largest entries is linear in what it reads: its adjoint "
        "routes back to them"
    )


CONV_VJP_RULES = {
    **{cls: _vjp_conv for cls in conv.FORWARD.values()},
    **{cls: _vjp_input_grad for cls in conv.INPUT_GRAD.values()},
    **{cls: _vjp_kernel_grad for cls in conv.KERNEL_GRAD.values()},
    conv.max_pool2d: _vjp_max_pool,
    conv.avg_pool2d: _vjp_avg_pool,
    conv.unpool2d: _vjp_unpool,
    conv.max_pool2d_mask: lambda alg, e, g: ([], "constant"),  # piecewise constant
    conv.max_pool2d_input_grad: _vjp_max_input_grad,
    conv.max_pool2d_gather: _vjp_max_gather,
}
