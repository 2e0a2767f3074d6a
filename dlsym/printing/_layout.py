"""How the operations that move entries print (``dlsym.expr._layout``): mixins with the
``_print_<op>`` methods of the LaTeX, Unicode and expression-language printers.

Indexing prints as NumPy writes it (``x[1:]``, ``X[:, None]``); a transpose of the last
two axes of a stack as ``X^T`` (each matrix transposed, as papers write batched
products); an ``einsum`` in LaTeX as the index sum it is, ``\\sum_{j} A_{ij} B_{jk}``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

from dlsym.expr import _layout as layout
from dlsym.spec._symbols import braced

# the operations printed here: SymPy's power printer must not hand them an ``exp=``
LAYOUT_OPS = (
    "index",
    "expand_dims",
    "scatter",
    "permute",
    "reshape",
    "concatenate",
    "stack",
    "take_along_axis",
    "put_along_axis",
    "einsum",
    "zeros",
)


def item_texts(items, base_shape, show, clamp=None) -> list[str]:
    """NumPy index items as text: ``0``, ``1:``, ``:n-1``, ``::2``, ``:``, ``None``;
    ``show`` prints a bound. A slice's stop that is the axis's size is left out.
    ``clamp(bound, text, size)``: a step-1-or-more slice's bound as the code computes it
    (``size``: the axis's, or None)."""
    clamp = clamp or (lambda bound, text, size: text)
    out, axis = [], 0
    for item in items:
        if item == layout.NEWAXIS:
            out.append("None")
            continue
        size = base_shape[axis] if base_shape is not None and axis < len(base_shape) else None
        axis += 1
        if not isinstance(item, sp.Tuple):
            out.append(show(item))
            continue
        start, stop, step = item
        if step < 0:  # x[::-1]: the last entry and the stop through 0 left out
            stop = layout.stop_of(item)
            first = size - 1 if size is not None else None
            text = (show(start) if start != first else "") + ":"
            text += show(stop) if stop is not None else ""
        else:
            text = (clamp(start, show(start), size) if start != 0 else "") + ":"
            text += clamp(stop, show(stop), size) if stop != size else ""
        out.append(text + (f":{show(step)}" if step != 1 else ""))
    while out and out[-1] == ":":  # x[1, :] is x[1]
        out.pop()
    return out or [":"]


def pad_widths(expr) -> tuple | None:
    """A scatter that is a zero padding (every item a step-1 slice), as NumPy's
    ``pad_width``: ((before, after), ...) per axis; None for any other scatter."""
    _, items, dims = expr.args
    widths = []
    for i, size in enumerate(dims):
        item = items[i] if i < len(items) else sp.Tuple(0, size, 1)
        if not isinstance(item, sp.Tuple) or item == layout.NEWAXIS or item[2] != 1:
            return None
        before, after = item[0], size - item[1]
        if not (before.is_nonnegative and after.is_nonnegative):
            return None
        widths.append((before, after))
    return tuple(widths)


def _pad_text(widths, show=str) -> str:
    pairs = [f"({show(b)}, {show(e)})" for b, e in widths]
    return "(" + ", ".join(pairs) + ("," if len(pairs) == 1 else "") + ")"


def _perm(e) -> tuple:
    return tuple(int(p) for p in e.args[1])


def _is_matrix_transpose(perm: tuple) -> bool:
    return len(perm) > 2 and perm == layout.swap_last(len(perm))


class LatexLayout:
    """LaTeX: indexing as subscripts in brackets, einsum as an index sum."""

    def _items_latex(self, items, base) -> str:
        shape = self.shape(base) if self.shape is not None and base is not None else None
        texts = item_texts(items, shape, self._print)
        return ",".join(t.replace("None", r"\mathrm{new}") for t in texts)

    def _subscriptable(self, base) -> str:
        """``base`` ready for a subscript: a symbol in braces (its name may carry a
        subscript already, W_{1}), anything else in parentheses."""
        s = self._print(base)
        return braced(s) if base.is_Symbol else rf"\left({s}\right)"

    def _print_index(self, expr):
        base, items = expr.args
        return rf"{self._subscriptable(base)}_{{[{self._items_latex(items, base)}]}}"

    def _print_expand_dims(self, expr):
        base, axes = expr.args
        rank = len(self.shape(base)) + len(axes)
        texts = [r"\mathrm{new}" if i in {int(a) for a in axes} else ":" for i in range(rank)]
        return rf"{self._subscriptable(base)}_{{[{','.join(texts)}]}}"

    def _print_scatter(self, expr):
        g, items, dims = expr.args
        widths = pad_widths(expr)
        if widths is not None:
            inner = ",".join(f"({self._print(b)},{self._print(e)})" for b, e in widths)
            return rf"\operatorname{{pad}}_{{{inner}}}\left({self._print(g)}\right)"
        texts = item_texts(items, tuple(dims), self._print)
        inner = ",".join(t.replace("None", r"\mathrm{new}") for t in texts)
        return rf"\operatorname{{scatter}}_{{[{inner}]}}\left({self._print(g)}\right)"

    def _print_permute(self, expr):
        base = expr.args[0]
        if _is_matrix_transpose(_perm(expr)):
            return rf"{self._postfix(base)}^{{\top}}"
        perm = ",".join(map(str, _perm(expr)))
        return rf"\operatorname{{transpose}}_{{({perm})}}\left({self._print(base)}\right)"

    def _print_reshape(self, expr):
        base, dims = expr.args
        shown = ", ".join(self._print(d) for d in dims)
        return rf"\operatorname{{reshape}}_{{({shown})}}\left({self._print(base)}\right)"

    def _joined(self, name, expr):
        axis, *parts = expr.args
        inner = ", ".join(self._print(p) for p in parts)
        return rf"\operatorname{{{name}}}_{{{axis}}}\left({inner}\right)"

    def _print_concatenate(self, expr):
        rows = _block_rows(expr, self.shape)
        if rows is None:
            return self._joined("concat", expr)
        body = r" \\ ".join(" & ".join(self._print(b) for b in row) for row in rows)
        return rf"\begin{{bmatrix}} {body} \end{{bmatrix}}"

    def _print_stack(self, expr):
        return self._joined("stack", expr)

    def _print_take_along_axis(self, expr):
        a, ids, axis = expr.args
        return rf"\operatorname{{take}}_{{{axis}}}\left({self._print(a)}, {self._print(ids)}\right)"

    def _print_put_along_axis(self, expr):
        g, ids, axis, _ = expr.args
        return rf"\operatorname{{put}}_{{{axis}}}\left({self._print(g)}, {self._print(ids)}\right)"

    def _print_einsum(self, expr):
        subs, *xs = expr.args
        ins, out = layout.einsum_parts(subs.name)
        summed = sorted({c for sub in ins for c in sub} - set(out))
        factors = " ".join(f"{self._subscriptable(x)}_{{{sub}}}" for sub, x in zip(ins, xs) if sub)
        factors = factors or "1"
        scalars = " ".join(self._operand(x) for sub, x in zip(ins, xs) if not sub)
        body = f"{scalars} {factors}".strip() if scalars else factors
        return rf"\sum_{{{','.join(summed)}}} {body}" if summed else body

    def _print_zeros(self, expr):
        return r"\mathbf{0}"


class PrettyLayout:
    """Unicode: indexing as NumPy writes it."""

    def _bracket(self, base, texts):
        # a product indexed is in parentheses: (X Δ)[:, :, None], not X Δ[:, :, None]
        return prettyForm(*self._postfix(base).right(f"[{', '.join(texts)}]"))

    def _print_index(self, expr):
        base, items = expr.args
        return self._bracket(base, item_texts(items, self.shape(base), lambda v: str(v)))

    def _print_expand_dims(self, expr):
        base, axes = expr.args
        rank = len(self.shape(base)) + len(axes)
        return self._bracket(
            base, ["None" if i in {int(a) for a in axes} else ":" for i in range(rank)]
        )

    def _print_permute(self, expr):
        if _is_matrix_transpose(_perm(expr)):
            return prettyForm(*self._postfix(expr.args[0]).right("ᵀ"))
        return self._print_Function(expr)

    def _print_scatter(self, expr):
        widths = pad_widths(expr)
        if widths is None:
            return self._print_Function(expr)
        inner = prettyForm(*self._print(expr.args[0]).right(f", {_pad_text(widths)}"))
        return prettyForm(*prettyForm(*inner.parens()).left("pad"))

    def _joined(self, name, expr):
        """``concatenate([a, b], axis=1)``, as the spec's language writes it."""
        axis, *parts = expr.args
        inner = self._print_seq(parts, "[", "]")
        inner = prettyForm(*inner.right(f", axis={axis}"))
        return prettyForm(*prettyForm(*inner.parens()).left(name))

    def _print_concatenate(self, expr):
        return self._joined("concatenate", expr)

    def _print_stack(self, expr):
        return self._joined("stack", expr)


def _block_rows(expr, shape):
    """The blocks of a block matrix or block vector, row by row: ``concatenate`` along
    axis 0 of vectors, or of matrices that are each ``concatenate`` along axis 1 (a
    joint Hessian's blocks); None for any other concatenation."""
    axis, *parts = expr.args
    if int(axis) != 0 or shape is None:
        return None
    if all(len(shape(p)) == 1 for p in parts):
        return [[p] for p in parts]
    rows = []
    for p in parts:
        if len(shape(p)) != 2:
            return None
        if isinstance(p, layout.concatenate) and int(p.args[0]) in (1, -1):
            rows.append(list(p.args[1:]))
        else:
            rows.append([p])
    return rows


class ExprLayout:
    """The expression language: indexing, ``transpose(X, axes)``, ``concatenate([...])``
    and einsum's quoted subscripts, so a result reads as the spec's language."""

    def _print_index(self, expr):
        base, items = expr.args
        shape = self.shape(base) if self.shape is not None else None
        texts = item_texts(items, shape, self._print, self._slice_bound)
        return f"{self._wrap(base, postfix=True)}[{', '.join(texts)}]"

    _slice_bound = None  # the language writes a bound as it is (the code: CodePrinter)

    def _print_expand_dims(self, expr):
        base, axes = expr.args
        rank = len(self.shape(base)) + len(axes) if self.shape is not None else None
        if rank is None:
            return self._print_Function(expr)
        texts = ["None" if i in {int(a) for a in axes} else ":" for i in range(rank)]
        return f"{self._wrap(base, postfix=True)}[{', '.join(texts)}]"

    def _print_scatter(self, expr):
        widths = pad_widths(expr)
        if widths is None:
            return self._print_Function(expr)
        return f"pad({self._print(expr.args[0])}, {_pad_text(widths, self._print)})"

    def _print_permute(self, expr):
        return f"transpose({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _joined(self, name, expr):
        axis, *parts = expr.args
        return f"{name}([{', '.join(self._print(p) for p in parts)}], axis={axis})"

    def _print_concatenate(self, expr):
        return self._joined("concatenate", expr)

    def _print_stack(self, expr):
        return self._joined("stack", expr)

    def _print_Str(self, expr):
        return repr(expr.name)
