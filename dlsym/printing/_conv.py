"""How convolution and pooling print (``dlsym.expr._conv``): mixins with the
``_print_<op>`` methods of the LaTeX, Unicode and expression-language printers.

LaTeX writes a convolution as the index sum it is (shared/spec-format.md: no matrix form
exists, so explicit index sums), as a paper defines one, with the free indices ``b, o,
h, w`` of the result: ``\\sum_{c,i,j} X_{b,c,2h+i-1,2w+j-1} K_{o,c,i,j}`` for stride 2
and padding 1 (entries outside ``X`` are zeros). Its gradients the same way: the
transposed convolution ``\\sum_{o,i,j} G_{b,o,h+1-i,w+1-j} K_{o,c,i,j}`` (with a stride
``s`` the index is ``(h+p-i)/s``, and only whole indices inside ``G`` count), the
kernel's ``\\sum_{b,h,w} X_{b,c,h+i,w+j} G_{b,o,h,w}``. A dilation ``d`` scales the
kernel's offsets: ``X_{b,c,h+2i,w+2j}``, ``G_{b,o,h-2i,w-2j}``. Pooling is an operator
with its window as subscript, ``\\operatorname{maxpool}_{2}(Z)``, and its stride and
padding where they are not the defaults, ``\\operatorname{maxpool}_{3,s=2,p=1}(Z)``; the
gradient of overlapping max pooling is ``\\operatorname{maxunpool}_{3,s=2}(G, Z)``.

Unicode and the expression language write calls with PyTorch's keywords, the defaults
left out: ``conv2d(X, K, stride=2)``, ``conv2d_input_grad(G, K, (H, W), padding=1)``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

from dlsym.expr import _conv as conv

_SPATIAL = {1: ("t",), 2: ("h", "w")}
_OFFSETS = {1: ("i",), 2: ("i", "j")}


def _keywords(stride, padding, dilation=1) -> list[str]:
    out = [f"stride={int(stride)}"] if int(stride) != 1 else []
    out += [f"padding={int(padding)}"] if int(padding) != 0 else []
    return out + ([f"dilation={int(dilation)}"] if int(dilation) != 1 else [])


def call_parts(expr, show) -> tuple[str, list]:
    """The name and arguments of a call in the expression language (``show`` prints an
    argument): tensors, then a size or window, then the keywords that differ from the
    defaults."""
    name, args = type(expr).__name__, expr.args
    if isinstance(expr, conv._Forward):
        return name, [show(args[0]), show(args[1]), *_keywords(*args[2:])]
    if isinstance(expr, (conv._InputGrad, conv._KernelGrad)):
        size = f"({', '.join(show(d) for d in args[2])}{',' if len(args[2]) == 1 else ''})"
        return name, [show(args[0]), show(args[1]), size, *_keywords(*args[3:])]
    # pooling: its tensors, the window size (and the size of unpool2d's grid), then the
    # stride where it is not the window size and the padding where it is not 0
    k, stride, padding = conv.pool_how(expr)
    window = type(expr).window
    out = [show(a) for a in args[:window]] + [str(k)]
    if isinstance(expr, conv.unpool2d):
        out.append(f"({', '.join(show(d) for d in args[2])})")
    return name, out + _pool_keywords(k, stride, padding)


def _pool_keywords(k: int, stride: int, padding: int, names=("stride", "padding")) -> list[str]:
    out = [f"{names[0]}={stride}"] if stride != k else []
    return out + ([f"{names[1]}={padding}"] if padding else [])


def _scaled(factor: int, index: str) -> str:
    return f"{factor}{index}" if factor != 1 else index


def _position(stride: int, out: str, offset: str, padding: int, dilation: int = 1) -> str:
    """The input index ``s h + d i - p`` that output ``h`` reads at kernel offset ``i``."""
    text = f"{_scaled(stride, out)}+{_scaled(dilation, offset)}"
    return text + (f"-{padding}" if padding else "")


def _back(stride: int, pos: str, offset: str, padding: int, dilation: int = 1) -> str:
    """The output index ``(h + p - d i)/s`` whose window reads input ``h`` at offset
    ``i``."""
    text = pos + (f"+{padding}" if padding else "") + f"-{_scaled(dilation, offset)}"
    return rf"\frac{{{text}}}{{{stride}}}" if stride != 1 else text


def _indices(place, nd: int, how) -> list[str]:
    """The spatial indices a term reads (``place``: ``_position`` for the input,
    ``_back`` for the upstream gradient), for the static arguments ``how``: stride,
    padding, dilation."""
    stride, padding, dilation = (int(a) for a in how)
    return [place(stride, h, i, padding, dilation) for h, i in zip(_SPATIAL[nd], _OFFSETS[nd])]


class LatexConv:
    """LaTeX: convolutions as index sums, pooling as operators."""

    def _entry(self, base, indices) -> str:
        return f"{self._subscriptable(base)}_{{{','.join(indices)}}}"

    def _index_sum(self, summed, factors, exp=None) -> str:
        out = rf"\left(\sum_{{{','.join(summed)}}} {' '.join(factors)}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_conv(self, expr, exp=None):
        x, k, *how = conv.full_args(expr)
        nd = type(expr).nd
        at = _indices(_position, nd, how)
        factors = [self._entry(x, ["b", "c", *at]), self._entry(k, ["o", "c", *_OFFSETS[nd]])]
        return self._index_sum(["c", *_OFFSETS[nd]], factors, exp)

    def _print_input_grad(self, expr, exp=None):
        g, k, _, *how = conv.full_args(expr)
        nd = type(expr).nd
        at = _indices(_back, nd, how)
        factors = [self._entry(g, ["b", "o", *at]), self._entry(k, ["o", "c", *_OFFSETS[nd]])]
        return self._index_sum(["o", *_OFFSETS[nd]], factors, exp)

    def _print_kernel_grad(self, expr, exp=None):
        x, g, _, *how = conv.full_args(expr)
        nd = type(expr).nd
        at = _indices(_position, nd, how)
        factors = [self._entry(x, ["b", "c", *at]), self._entry(g, ["b", "o", *_SPATIAL[nd]])]
        return self._index_sum(["b", *_SPATIAL[nd]], factors, exp)

    _print_conv1d = _print_conv2d = _print_conv
    _print_conv1d_input_grad = _print_conv2d_input_grad = _print_input_grad
    _print_conv1d_kernel_grad = _print_conv2d_kernel_grad = _print_kernel_grad

    def _windowed(self, name, expr, exp=None):
        # the window size as subscript, then the stride and padding that differ from
        # the defaults: \operatorname{maxpool}_{3,s=1,p=1}
        k, stride, padding = conv.pool_how(expr)
        sub = ",".join([str(k), *_pool_keywords(k, stride, padding, ("s", "p"))])
        args = ", ".join(self._print(a) for a in expr.args[: type(expr).window])
        out = rf"\operatorname{{{name}}}_{{{sub}}}\left({args}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_max_pool2d(self, expr, exp=None):
        return self._windowed("maxpool", expr, exp)

    def _print_avg_pool2d(self, expr, exp=None):
        return self._windowed("avgpool", expr, exp)

    def _print_max_pool2d_mask(self, expr, exp=None):
        return self._windowed("maxmask", expr, exp)

    def _print_unpool2d(self, expr, exp=None):
        return self._windowed("unpool", expr, exp)

    def _print_max_pool2d_input_grad(self, expr, exp=None):
        return self._windowed("maxunpool", expr, exp)

    def _print_max_pool2d_gather(self, expr, exp=None):
        return self._windowed("maxgather", expr, exp)


class PrettyConv:
    """Unicode: calls with keywords, as the expression language."""

    def _conv_call(self, expr):
        # tensors as pretty forms (a fraction spans lines), sizes and keywords as text
        forms: dict = {}

        def show(a):
            if a.free_symbols and not (a.is_integer or isinstance(a, sp.Tuple)):
                forms[f"\0{len(forms)}"] = self._print(a)
                return f"\0{len(forms) - 1}"
            return sp.sstr(a)

        name, args = call_parts(expr, show)
        out = prettyForm(f"{name}(")
        for i, text in enumerate(args):
            part = forms.get(text, prettyForm(text))
            out = prettyForm(
                *out.right(part if i == 0 else prettyForm(", "), *([part] if i else []))
            )
        return prettyForm(*out.right(")"))

    _print_conv1d = _print_conv2d = _print_conv1d_input_grad = _print_conv2d_input_grad = _conv_call
    _print_conv1d_kernel_grad = _print_conv2d_kernel_grad = _print_max_pool2d = _conv_call
    _print_avg_pool2d = _print_max_pool2d_mask = _print_unpool2d = _conv_call
    _print_max_pool2d_input_grad = _print_max_pool2d_gather = _conv_call


class ExprConv:
    """The expression language: ``conv2d(X, K, stride=2)``, readable back by the parser."""

    def _conv_call(self, expr):
        name, args = call_parts(expr, self._print)
        return f"{name}({', '.join(args)})"

    _print_conv1d = _print_conv2d = _print_conv1d_input_grad = _print_conv2d_input_grad = _conv_call
    _print_conv1d_kernel_grad = _print_conv2d_kernel_grad = _print_max_pool2d = _conv_call
    _print_avg_pool2d = _print_max_pool2d_mask = _print_unpool2d = _conv_call
    _print_max_pool2d_input_grad = _print_max_pool2d_gather = _conv_call
