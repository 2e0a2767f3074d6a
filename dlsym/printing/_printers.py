"""Renderers of tensor expressions, built on SymPy's printer classes.

``PaperLatexPrinter`` subclasses ``LatexPrinter`` and ``TensorPrettyPrinter``
subclasses ``PrettyPrinter``; each overrides only what needs paper conventions:
``^\\top``, ``\\odot`` for elementwise products of tensors, bold vectors and
matrices (the spec's ``latex`` names), ``\\operatorname{diag}``, a vector on the
left of a product shown as a row (``x^\\top A``).
"""

from __future__ import annotations

import re
import sys
import types
from contextlib import contextmanager

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.pretty_symbology import greek_unicode
from sympy.printing.pretty.stringpict import prettyForm
from sympy.printing.str import StrPrinter

from dlsym.expr import _ops as ops
from dlsym.expr._normal_forms import NormalCDF, NormalPDF, cdf_form, pdf_form
from dlsym.expr._piecewise import shown
from dlsym.printing._conv import ExprConv, LatexConv, PrettyConv
from dlsym.printing._layout import LAYOUT_OPS, ExprLayout, LatexLayout, PrettyLayout
from dlsym.spec._symbols import braced


class _NoQuantity:
    """Nothing is an instance of this: our expressions carry no physical units."""


@contextmanager
def _no_units_import():
    """SymPy's ``_print_Mul`` imports ``sympy.physics.units`` (about 0.25 s, a fifth of
    ``dlsym derive --no-verify``) only to test ``isinstance(x, Quantity)``. While our
    printers run, a stub answers that import; it is removed afterwards, so a later real
    import is unaffected. Nothing happens if the real module is already loaded."""
    name = "sympy.physics.units"
    if name in sys.modules:
        yield
        return
    stub = types.ModuleType(name)
    stub.Quantity = _NoQuantity
    sys.modules[name] = stub
    try:
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


class _FastPrint:
    # a branch at a special value x = r is shown at r, not as the Taylor polynomial the
    # code takes near r (dlsym.expr._piecewise.shown); the code printer prints it whole
    shows_special_values = True

    def doprint(self, expr):
        if self.shows_special_values:
            expr = shown(expr)
        with _no_units_import():
            try:
                return super().doprint(expr)
            except OverflowError:
                # SymPy orders a sum's number terms by their value, and evaluating
                # exp(exp(exp(1000))) overflows its float conversion: as written, then
                self._settings["order"] = "none"
                return super().doprint(expr)


def _split_mul(shape, expr):
    """Split a product for display: (negative?, numerator, denominator, tensor count).

    Numerator and denominator are lists of (factor, is_tensor); a tensor factor
    with a negative power goes to the denominator, as does any scalar one."""
    coeff, factors = expr.as_coeff_mul()
    negative = coeff < 0
    coeff = abs(coeff)
    num, den = [], []
    if coeff.p != 1 or not factors:
        num.append((sp.Integer(coeff.p), False))
    if coeff.q != 1:
        den.append((sp.Integer(coeff.q), False))
    for f in factors:
        if isinstance(f, sp.Pow) and f.exp.is_number and f.exp < 0:
            base = f.base if f.exp == -1 else f.base**-f.exp
            den.append((base, shape(base) != ()))
        else:
            num.append((f, shape(f) != ()))
    tensors = sum(t for _, t in num + den)
    return negative, num, den, tensors


def _positive_first(expr):
    """``X w - y`` rather than SymPy's ``-y + X w``: negative terms go last."""
    terms = sorted(expr.args, key=lambda t: t.could_extract_minus_sign())
    return sp.Add(*terms, evaluate=False)


def _is_row(shape, e) -> bool:
    """A vector product already printed as a row (``v^T M``): no second transpose."""
    return isinstance(e, ops.matmul) and len(shape(e.args[0])) == 1 and len(shape(e)) == 1


class _row_context:
    """While a product's left factor prints, a vector times a matrix in it stays a row
    (xᵀA in xᵀ A x): only a product that is itself a vector reads as a column."""

    def __init__(self, printer, row: bool):
        self.printer, self.row = printer, row

    def __enter__(self):
        self.saved = getattr(self.printer, "_in_row", False)
        self.printer._in_row = self.row

    def __exit__(self, *exc):
        self.printer._in_row = self.saved


def _column_form(shape, a, b) -> bool:
    """``a @ b`` is a vector times a matrix, giving a vector: a column vector's papers
    write it ``bᵀ a`` (xᵀA, a row, mixed with the column A x reads wrong)."""
    if shape is None:
        return False
    return len(shape(a)) == 1 and len(shape(b)) == 2 and not _is_row(shape, a)


def _postfix_parens(shape, e) -> bool:
    """A postfix ^T or ^{-1} binds tighter than a product: (A B)^T needs parentheses,
    and so does a scalar times a matrix (inv(c S) printed S c^{-1}, read as S / c)."""
    return _needs_parens(shape, e) or isinstance(e, (sp.Mul, ops.matmul, ops.outer))


def _needs_parens(shape, e) -> bool:
    if isinstance(e, sp.Add):
        return True
    if isinstance(e, sp.Mul):
        return (
            e.could_extract_minus_sign()
            or sum(shape(f) != () for f in e.args) > 1
            or any(f.is_number for f in e.args)
        )
    return isinstance(e, sp.Pow)


# --- LaTeX ------------------------------------------------------------------------

_LATEX_FUNCTIONS = {
    ops.sigmoid: r"\sigma",
    ops.softplus: r"\operatorname{softplus}",
    ops.relu: r"\operatorname{ReLU}",
    ops.step: r"\operatorname{step}",
    ops.softmax: r"\operatorname{softmax}",
    ops.onehot: r"\operatorname{onehot}",
    ops.log_softmax: r"\operatorname{log\,softmax}",
    ops.logsumexp: r"\operatorname{logsumexp}",
    ops.tsum: r"\operatorname{sum}",
    ops.tmean: r"\operatorname{mean}",
    ops.tmax: r"\max",
    ops.tmin: r"\min",
    ops.var: r"\operatorname{Var}",
    ops.trace: r"\operatorname{tr}",
    ops.det: r"\det",
    ops.logdet: r"\log\det",
    ops.diag: r"\operatorname{diag}",
    ops.maxmask: r"\operatorname{maxmask}",
    NormalCDF: r"\Phi",
    NormalPDF: r"\phi",
}


# the letters an axis's index takes where its own is a symbol of the spec's
_SPARE_INDICES = ("i", "j", "l", "r", "s", "u")


def index_letters(shape, axes, taken=frozenset()) -> list[str]:
    """The index of each axis as a paper names it: ``b`` for an axis of size ``B``, ``k``
    for one of size ``k`` (a one-letter dim), else ``i_{axis}``; where that letter is a
    symbol of the spec (``taken``: a bias b beside a batch of size B read
    ∇_b ℓ = Σ_b (…)/B), the first spare one that is not."""
    out = []
    for a in axes:
        d = shape[a % len(shape)] if shape else None
        name = str(d)
        one_letter = getattr(d, "is_Symbol", False) and len(name) == 1 and name.isalpha()
        # an axis of size B is indexed by b; of size k, by k itself (softmax_k)
        letter = name.lower() if one_letter else f"i_{{{a % max(len(shape), 1)}}}"
        if letter in taken or letter in out:
            letter = next((c for c in _SPARE_INDICES if c not in taken and c not in out), letter)
        out.append(letter)
    return out


class PaperLatexPrinter(_FastPrint, LatexConv, LatexLayout, LatexPrinter):
    def __init__(self, shape, names: dict, settings: dict | None = None):
        super().__init__({"symbol_names": names, **(settings or {})})
        self.shape = shape
        # a symbol shown as e (one called e) takes SymPy's italic e: Euler's number is
        # then the upright e of ISO 80000-2, in e^x too
        self.euler = r"\mathrm{e}" if "e" in names.values() else "e"

    def _print(self, expr, **kwargs):
        # E prints through its own _latex method, before any _print_Exp1
        return self.euler if expr is sp.E else super()._print(expr, **kwargs)

    def parenthesize_super(self, s):
        """A base with a superscript or a prime (a name x''_{1}) as a group under a power:
        SymPy's braces only a ^, and x''_{1}^{2} is TeX's double superscript."""
        return braced(s) if "'" in s and "^" not in s else super().parenthesize_super(s)

    def _print_ExpBase(self, expr, exp=None):
        return self._do_exponent(f"{self.euler}^{{{self._print(expr.args[0])}}}", exp)

    def _operand(self, e) -> str:
        s = self._print(e)
        return rf"\left({s}\right)" if _needs_parens(self.shape, e) else s

    def _side(self, factors, alone: bool) -> str:
        """Scalars first (SymPy's own printing), then tensors joined with odot."""
        scal = sp.Mul(*[f for f, t in factors if not t])
        tens = [f for f, t in factors if t]
        parts = [] if scal == 1 and tens else [self._operand(scal) if tens else self._print(scal)]
        if alone and len(tens) == 1 and not parts:
            return self._print(tens[0])
        parts += [r" \odot ".join(self._operand(f) for f in tens)] if tens else []
        return " ".join(parts)

    def _print_Mul(self, expr):
        if (shown := pdf_form(expr)) is not expr:
            return self._print(shown)
        negative, num, den, tensors = _split_mul(self.shape, expr)
        if tensors < 2 and not any(t for _, t in den):
            return super()._print_Mul(expr)
        body = self._side(num, alone=bool(den))
        if den:
            body = rf"\frac{{{body}}}{{{self._side(den, alone=True)}}}"
        return "- " + body if negative else body

    def _print_Add(self, expr, order=None):
        if (shown := cdf_form(expr)) is not expr:
            return self._print(shown)
        return super()._print_Add(_positive_first(expr), order="none")

    def _print_matmul(self, expr):
        a, b = expr.args
        if _column_form(self.shape, a, b) and not getattr(self, "_in_row", False):
            return f"{self._transposed(b)} {self._operand(a)}"  # v M: papers write M^T v
        # a left factor that prints as a row (x^T A in x^T A x) keeps its vector-matrix
        # products rows; any other vector is a column, transposed below
        row = _is_row(self.shape, a)
        with _row_context(self, row):
            left = self._operand(a)
        if len(self.shape(a)) == 1 and not row:
            # a vector on the left is a row: (X^T y)^T M, not X^T y^T M; inside the
            # parentheses it is a column again
            with _row_context(self, False):
                left = rf"{self._postfix(a)}^{{\top}}"
        return f"{left} {self._operand(b)}"

    def _transposed(self, m) -> str:
        """M^T, or M where m is itself a transpose."""
        if isinstance(m, ops.transpose):
            return self._operand(m.args[0])
        return rf"{self._postfix(m)}^{{\top}}"

    # ops we print ourselves, that SymPy's _print_Pow would call with exp= (as it does
    # for any Function base): the power goes outside, around parentheses where needed
    # (convolution and pooling take exp= themselves: dlsym.printing._conv)
    _OWN = ("matmul", "transpose", "inv", "outer", "ones", "eye", "unit", "entry") + LAYOUT_OPS

    def _print_Pow(self, expr, **kwargs):
        base, ex = expr.args
        own = type(base).__name__ in self._OWN
        root_or_fraction = ex.is_Rational and ((abs(ex.p) == 1 and ex.q != 1) or ex.is_negative)
        if not own or root_or_fraction:
            return super()._print_Pow(expr, **kwargs)
        b = self._print(base)
        if type(base).__name__ != "entry":
            b = rf"\left({b}\right)"
        return rf"{{{b}}}^{{{self._print(ex)}}}"

    def _postfix(self, e) -> str:
        s = self._print(e)
        if _postfix_parens(self.shape, e):
            return rf"\left({s}\right)"
        # a base that has its own superscript or prime (a name W^{(1)}, x') is a group:
        # X^a^b and x'^a^b are TeX's "double superscript" error
        return braced(s) if "^" in s or "'" in s else s

    def _print_transpose(self, expr):
        if isinstance(expr.args[0], ops.inv):  # (A^{-1})^T, as papers write it: A^{-T}
            return rf"{self._postfix(expr.args[0].args[0])}^{{-\top}}"
        return rf"{self._postfix(expr.args[0])}^{{\top}}"

    def _print_inv(self, expr):
        return rf"{self._postfix(expr.args[0])}^{{-1}}"

    def _print_outer(self, expr):
        u, v = expr.args
        # v's transpose is a postfix: a name with a superscript of its own in braces
        # (y^{2}^{\top} is TeX's double superscript), a product in parentheses
        return rf"{self._operand(u)} {self._postfix(v)}^{{\top}}"

    def _print_norm(self, expr, exp=None):
        out = rf"\left\lVert {self._print(expr.args[0])} \right\rVert"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_ones(self, expr):
        return r"\mathbf{1}"

    def _print_eye(self, expr):
        # a matrix of the spec's named I is \mathbf{I} too: the identity then shows
        # its size (I + 2λI + Iᵀ had two of the user's I and one identity)
        if r"\mathbf{I}" in self._settings["symbol_names"].values():
            return rf"\mathbf{{I}}_{{{self._print(expr.args[0])}}}"
        return r"\mathbf{I}"

    def _print_unit(self, expr):
        return rf"\mathbf{{e}}_{{{self._print(expr.args[0])}}}"

    def _print_entry(self, expr, exp=None):
        base, *idx = expr.args
        # a subscript binds tighter than a product: (W x)_0, not W x_0
        body = self._print(base)
        if _postfix_parens(self.shape, base):
            body = rf"\left({body}\right)"
        elif "_" in body or "'" in body:  # a name's own subscript (w_{1}): {w_{1}}_{0}
            body = braced(body)
        out = rf"{body}_{{{', '.join(self._print(i) for i in idx)}}}"
        # a power of it (y_i^2, as SymPy's printer asks for a function's): braced whole
        return out if exp is None else rf"{{{out}}}^{{{exp}}}"

    _print_gather = _print_entry  # E[y]: the rows of E at the labels y, E_{y}

    def _print_Function(self, expr, exp=None):
        name = _LATEX_FUNCTIONS.get(type(expr))
        if name is None:
            return super()._print_Function(expr, exp)
        arg = self._print(expr.args[0])
        axis = ops.keywords(expr).get("axis")
        if axis is not None:  # the axes as the indices summed over: \sum_{b,t}
            axes = axis if isinstance(axis, tuple) else (axis,)
            # the spec's symbols, not its dims (integers): k indexes an axis of size k
            taken = {str(sym) for sym in self._settings["symbol_names"] if not sym.is_integer}
            letters = index_letters(self.shape(expr.args[0]), axes, frozenset(taken))
            if isinstance(expr, ops.tsum):
                name = r"\sum"
            name = rf"{name}_{{{','.join(letters)}}}"
        out = rf"{name}\left({arg}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_harmonic(self, expr, exp=None):  # H_t, as papers write the harmonic number
        out = rf"H_{{{self._print(expr.args[0])}}}"
        return rf"{out}^{{{exp}}}" if exp else out

    # -- moments (dlsym.expr._moments): E[x], Var[x], Cov[a, b] --

    def _moment(self, name, expr, exp=None):
        args = ", ".join(self._print(a) for a in expr.args)
        out = rf"{name}\left[{args}\right]"
        return rf"\left({out}\right)^{{{exp}}}" if exp else out

    def _print_expect(self, expr, exp=None):
        return self._moment(r"\mathbb{E}", expr, exp)

    def _print_variance(self, expr, exp=None):
        return self._moment(r"\operatorname{Var}", expr, exp)

    def _print_covariance(self, expr, exp=None):
        return self._moment(r"\operatorname{Cov}", expr, exp)

    # -- piecewise functions (dlsym.expr._piecewise) --

    def _call(self, name, expr, exp=None):
        out = rf"{name}\left({', '.join(self._print(a) for a in expr.args)}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_maximum(self, expr, exp=None):
        return self._call(r"\max", expr, exp)

    def _print_minimum(self, expr, exp=None):
        return self._call(r"\min", expr, exp)

    def _print_clip(self, expr, exp=None):
        return self._call(r"\operatorname{clip}", expr, exp)

    def _print_where(self, expr, exp=None):
        return self._call(r"\operatorname{where}", expr, exp)

    def _print_vanishes(self, expr):  # the value where a closed form reads 0/0
        return self._print(sp.Eq(expr.args[1], expr.args[2], evaluate=False))

    def _print_Heaviside(self, expr, exp=None):
        # H(0) = 1/2 always (dlsym.expr._piecewise.heaviside): the argument alone
        out = rf"H\left({self._print(expr.args[0])}\right)"
        return rf"{out}^{{{exp}}}" if exp else out


# --- Unicode terminal -----------------------------------------------------------------

_GREEK = {v: greek_unicode[v] for v in greek_unicode}


_SUBSCRIPT = str.maketrans("0123456789+-", "₀₁₂₃₄₅₆₇₈₉₊₋")


def subscripts(s: str) -> str:
    """``_{1}``, ``_2``, ``_{+}`` as Unicode subscripts (ν₁, X₊), those of subscripts too
    (``g_{1_{2}}``: g₁₂); other subscripts stay."""
    while True:
        out = re.sub(
            r"_(?:\{([0-9+\-₀-₉₊₋]+)\}|([0-9]))",
            lambda m: (m.group(1) or m.group(2)).translate(_SUBSCRIPT),
            s,
        )
        if out == s:
            return out
        s = out


_FONTS = "mathbf|boldsymbol|mathrm|mathit|mathcal|mathbb|bm|operatorname|text"
_ACCENTS = {"hat": "\u0302", "tilde": "\u0303"}  # combining marks


def without_groups(s: str) -> str:
    """Font commands dropped and accents as combining marks (\\mathbf{X} -> X,
    \\hat{y} -> ŷ), innermost groups first until none is left: \\hat{\\mathbf{y}} and
    \\boldsymbol{\\tilde{\\lambda}} nest them either way."""
    while True:
        out = re.sub(rf"\\({_FONTS})\{{([^{{}}]*)\}}", r"\2", s)
        out = re.sub(
            rf"\\({'|'.join(_ACCENTS)})\{{([^{{}}]*)\}}",
            lambda m: m.group(2) + _ACCENTS[m.group(1)],
            out,
        )
        if out == s:
            return out
        s = out


def unicode_name(latex: str) -> str:
    """A readable Unicode name from a LaTeX name: ``\\mathbf{X}`` -> X, ``\\lambda`` -> λ."""
    s = without_groups(subscripts(latex))
    s = re.sub(r"\\([A-Za-z]+)", lambda m: _GREEK.get(m.group(1), m.group(1)), s)
    return s.replace("{", "").replace("}", "").replace("\\", "")


_TEXT_FUNCTIONS = {
    ops.sigmoid: "σ",
    ops.tsum: "sum",
    ops.tmean: "mean",
    ops.tmax: "max",
    ops.tmin: "min",
    ops.trace: "tr",
    ops.maxmask: "maxmask",
    NormalCDF: "Φ",
    NormalPDF: "φ",
}


class TensorPrettyPrinter(_FastPrint, PrettyConv, PrettyLayout, PrettyPrinter):
    def __init__(self, shape, names: dict):
        super().__init__({"use_unicode": True, "wrap_line": False})
        self.shape = shape
        self.names = names

    def _print_Symbol(self, e, bold_name=False):
        if e in self.names:
            return prettyForm(self.names[e])
        return super()._print_Symbol(e)

    def _operand(self, e):
        p = self._print(e)
        return prettyForm(*p.parens()) if _needs_parens(self.shape, e) else p

    def _join(self, parts, sep):
        out = parts[0]
        for p in parts[1:]:
            out = prettyForm(*out.right(sep, p))
        return out

    def _side(self, factors, alone: bool):
        scal = sp.Mul(*[f for f, t in factors if not t])
        tens = [f for f, t in factors if t]
        parts = [] if scal == 1 and tens else [self._operand(scal) if tens else self._print(scal)]
        if alone and len(tens) == 1 and not parts:
            return self._print(tens[0])
        if tens:
            parts.append(self._join([self._operand(f) for f in tens], " ⊙ "))
        return self._join(parts, "⋅")

    def _print_Mul(self, expr):
        if (shown := pdf_form(expr)) is not expr:
            return self._print(shown)
        negative, num, den, tensors = _split_mul(self.shape, expr)
        if tensors < 2 and not any(t for _, t in den):
            return super()._print_Mul(expr)
        body = self._side(num, alone=bool(den))
        if den:
            body = body / self._side(den, alone=True)
        if negative:
            body = prettyForm(*body.left("-"))
        body.binding = prettyForm.MUL
        return body

    def _print_Add(self, expr, order=None):
        if (shown := cdf_form(expr)) is not expr:
            return self._print(shown)
        return super()._print_Add(_positive_first(expr), order="none")

    def _print_matmul(self, expr):
        a, b = expr.args
        if _column_form(self.shape, a, b) and not getattr(self, "_in_row", False):
            # v M, a vector: Mᵀ v, as papers write it
            t = self._operand(b.args[0]) if isinstance(b, ops.transpose) else None
            left = t if t is not None else prettyForm(*self._postfix(b).right("ᵀ"))
            out = prettyForm(*left.right(" ", self._operand(a)))
            out.binding = prettyForm.MUL
            return out
        row = _is_row(self.shape, a)
        with _row_context(self, row):
            left = self._operand(a)
        if len(self.shape(a)) == 1 and not row:
            with _row_context(self, False):
                left = prettyForm(*self._postfix(a).right("ᵀ"))
        out = prettyForm(*left.right(" ", self._operand(b)))
        out.binding = prettyForm.MUL
        return out

    def _postfix(self, e):
        p = self._print(e)
        return prettyForm(*p.parens()) if _postfix_parens(self.shape, e) else p

    def _print_transpose(self, expr):
        if isinstance(expr.args[0], ops.inv):  # A⁻ᵀ, as the LaTeX's A^{-T}
            return prettyForm(*self._postfix(expr.args[0].args[0]).right("⁻ᵀ"))
        return prettyForm(*self._postfix(expr.args[0]).right("ᵀ"))

    def _print_inv(self, expr):
        return prettyForm(*self._postfix(expr.args[0]).right("⁻¹"))

    def _print_outer(self, expr):
        u, v = expr.args
        out = prettyForm(*self._operand(u).right(" ", self._postfix(v), "ᵀ"))
        out.binding = prettyForm.MUL
        return out

    def _print_norm(self, expr):
        # prettyForm.parens knows only its own bracket table (no "‖" in SymPy 1.14)
        inner = self._print(expr.args[0])
        return prettyForm(*prettyForm(*inner.left("‖")).right("‖"))

    def _print_ones(self, expr):
        return prettyForm("𝟏")

    def _print_eye(self, expr):
        if "I" in self.names.values():  # as in LaTeX: the identity with its size
            return prettyForm(f"I_{self._print(expr.args[0]).render(wrap_line=False)}")
        return prettyForm("I")

    def _print_unit(self, expr):
        return prettyForm(f"e_{expr.args[0]}")

    def _print_entry(self, expr):
        base, *idx = expr.args
        body = self._print(base)
        if _postfix_parens(self.shape, base):  # (W x)[0], not W x[0]
            body = prettyForm(*body.parens())
        return prettyForm(*body.right(f"[{', '.join(map(str, idx))}]"))

    def _print_gather(self, expr):
        base, ids = expr.args
        return prettyForm(*self._operand(base).right(f"[{self._print(ids)}]"))

    def _print_Function(self, e, sort=False, func_name=None, left="(", right=")"):
        if isinstance(e, ops.TensorOp) or type(e) in _TEXT_FUNCTIONS:
            name = _TEXT_FUNCTIONS.get(type(e), type(e).__name__)
            args = e.args
            keywords = ops.keywords(e)
            if keywords:
                shown = ", ".join(f"{k}={v}" for k, v in keywords.items())
                name, args = f"{name}[{shown}]", args[:1]
            return self._helper_print_function(e.func, args, func_name=name)
        return super()._print_Function(e, sort=sort, func_name=func_name, left=left, right=right)

    def _moment(self, name, e):
        return self._helper_print_function(e.func, e.args, func_name=name, left="[", right="]")

    def _print_harmonic(self, e):  # H_t (a subscript where Unicode has the letter)
        return self._print(sp.Symbol(f"H_{e.args[0]}"))

    def _print_vanishes(self, e):  # the value where a closed form reads 0/0
        return self._print(sp.Eq(e.args[1], e.args[2], evaluate=False))

    def _print_expect(self, e):
        return self._moment("E", e)

    def _print_variance(self, e):
        return self._moment("Var", e)

    def _print_covariance(self, e):
        return self._moment("Cov", e)

    def _print_Heaviside(self, e):
        # H(0) = 1/2 always (dlsym.expr._piecewise.heaviside): the argument alone
        return self._helper_print_function(e.func, e.args[:1], func_name="H")


# --- plain expression language (the JSON "expr") ----------------------------------------

_EXPR_NAMES = {
    "tsum": "sum",
    "tmean": "mean",
    "tmax": "max",
    "tmin": "min",
    "Abs": "abs",
    "Heaviside": "heaviside",  # NumPy's heaviside(x, 1/2): the value at 0 is the second
}


# The language's constants, and how they are written where a spec declares their names
# (a declared name is the user's symbol): exp(1) and atan(1) evaluate to e and pi/4
_CONSTANTS = {sp.E: ("e", "exp(1)"), sp.pi: ("pi", "(4*atan(1))")}


class ExprPrinter(_FastPrint, ExprConv, ExprLayout, StrPrinter):
    """Prints results in dlsym's own expression language (NumPy-like syntax).

    ``declared`` are the names the spec declares (symbols, dims, defines), which its
    text reads as the user's, never as the constants ``pi`` and ``e``."""

    def __init__(self, shape, declared=frozenset()):
        super().__init__({"order": None})
        self.shape = shape
        self.declared = declared

    def _constant(self, expr) -> str:
        plain, spelled = _CONSTANTS[expr]
        return spelled if plain in self.declared else plain

    _print_Exp1 = _print_Pi = _constant

    def _shape_call(self, name, expr) -> str:
        """ones(n), ones((m, n)): NumPy's one shape argument, as the language reads it."""
        dims = [self._print(a) for a in expr.args]
        return f"{name}({dims[0]})" if len(dims) == 1 else f"{name}(({', '.join(dims)}))"

    def _print_ones(self, expr):
        return self._shape_call("ones", expr)

    def _print_zeros(self, expr):
        return self._shape_call("zeros", expr)

    def _print_unit(self, expr):  # e_i: row i of the identity
        i, n = expr.args
        return f"eye({self._print(n)})[{self._print(i)}]"

    def _print_Add(self, expr, order=None):
        return super()._print_Add(_positive_first(expr), order="none")

    def _elementwise(self, name, expr) -> str:
        # SymPy's Max(a, b, c) is the language's maximum(maximum(a, b), c): elementwise,
        # as a closed form's clip is (x* = Min(c, u) read as Python's min on arrays)
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"{name}({out}, {self._print(a)})"
        return out

    def _print_Max(self, expr):
        return self._elementwise("maximum", expr)

    def _print_Min(self, expr):
        return self._elementwise("minimum", expr)

    def parenthesize(self, item, level, strict=False):
        # '*' and '@' share one precedence in Python and group left to right, so a
        # product inside a product needs parentheses: 2*v*(u @ v), not 2*v*u @ v
        if isinstance(item, ops.matmul):
            return f"({self._print(item)})"
        return super().parenthesize(item, level, strict)

    def _wrap(self, e, postfix=False):
        s = self._print(e)
        compound = (sp.Add, sp.Mul, sp.Pow) + ((ops.matmul,) if postfix else ())
        return f"({s})" if isinstance(e, compound) else s

    def _print_matmul(self, expr):
        return f"{self._wrap(expr.args[0])} @ {self._wrap(expr.args[1])}"

    def _print_transpose(self, expr):
        return f"{self._wrap(expr.args[0], postfix=True)}.T"

    def _print_entry(self, expr):
        base, *idx = expr.args
        return f"{self._wrap(base, postfix=True)}[{', '.join(map(str, idx))}]"

    _print_gather = _print_entry

    def _print_Function(self, expr):
        name = type(expr).__name__
        name = _EXPR_NAMES.get(name, name)
        keywords = ops.keywords(expr)
        if keywords:
            args = [self._print(expr.args[0])] + [f"{k}={v}" for k, v in keywords.items()]
        else:
            args = [self._print(a) for a in expr.args]
        return f"{name}({', '.join(args)})"

    _print_Abs = _print_Heaviside = _print_Function

    def _print_step(self, expr):
        # ReLU's derivative, 0 at 0: NumPy's heaviside with that value, so a result reads
        # back as the language (``step`` stays free as a user's name)
        return f"heaviside({self._print(expr.args[0])}, 0)"

    def _print_sign(self, expr):
        # abs's derivative, 0 at 0: 2 H(u) − 1 with NumPy's heaviside at 1/2, so a result
        # reads back as the language (``sign`` is no function of it: it is free as a
        # user's name, and sign * sign(x) was ambiguous)
        return f"(2*heaviside({self._print(expr.args[0])}, 0.5) - 1)"

    def _print_maxmask(self, expr):
        # the gradient of max: 1/c on each of the c largest entries, written with where and
        # max so that a result reads back as the language (``maxmask`` stays free as a
        # user's name)
        a = self._print(expr.args[0])
        axis = f", axis={expr.args[1]}, keepdims=True" if len(expr.args) > 1 else ""
        hit = f"where({a} == max({a}{axis}), 1, 0)"
        return f"({hit}/sum({hit}{axis}))"

    def _print_Relational(self, expr):
        # a mask of where(): Python's operators (StrPrinter writes Eq(a, b), Ne(a, b))
        return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

    def _print_vanishes(self, expr):  # the value where a closed form reads 0/0: x == r
        return self._print_Relational(sp.Eq(expr.args[1], expr.args[2], evaluate=False))
