"""How information-theory expressions print: textbook LaTeX and one-line terminal text.

The objects are SymPy expressions built by ``_info_sym``: sums over outcomes
(``Sum``), probabilities (``p[i]`` as :math:`p_i`, joint-table functions as
:math:`p(x, y)`, :math:`p(x)`, :math:`p(y \\mid x)`), unevaluated information quantities
(``Entropy``, ``KL``, ...) and expectations. Probabilities print before logarithms
(:math:`p_i \\log q_i`, not :math:`\\log q_i \\, p_i`), as a reader expects.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from dlsym.expr._ops import TensorOp
from dlsym.printing._printers import ExprPrinter, PaperLatexPrinter, _FastPrint
from dlsym.spec._symbols import braced

_SINGLE_STAR = re.compile(r"(?<!\*)\*(?!\*)")


def _factor_rank(f) -> int:
    if f.is_Number:
        return 0
    if isinstance(f, (sp.log, Log2)) or (
        isinstance(f, sp.Pow) and isinstance(f.base, (sp.log, Log2))
    ):
        return 3
    if (
        isinstance(f, (sp.Indexed, sp.Function))
        and getattr(f, "role", "prob") == "prob"
        or getattr(f, "role", "") in ("joint", "mx", "my", "cond")
    ):
        return 2
    if f.is_Symbol:
        return 1
    if f.is_Add:  # (1 - y) log(1 - q): the weight before the log, as on paper
        return 2
    return 4


def _ordered(expr):
    """The factors of a product with numbers, symbols, probabilities, logs in that order."""
    return sorted(expr.args, key=lambda f: (_factor_rank(f), sp.default_sort_key(f)))


def _tensor_op(expr) -> bool:
    return isinstance(expr, TensorOp)


class InfoLatexPrinter(_FastPrint, LatexPrinter):
    def __init__(self, names: dict | None = None, shape=None):
        super().__init__({"symbol_names": names or {}})
        self.names = names or {}
        self.shape = shape  # a ShapeTable: matrix-form terms print as the calculus does

    def _print_sigmoid(self, expr, exp=None):
        out = rf"\sigma\left({self._print(expr.args[0])}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_Mul(self, expr):
        order = self._settings["order"]
        self._settings["order"] = "none"
        try:
            c, rest = expr.as_coeff_Mul()
            if c.is_negative:
                neg = -expr
                inner = self._print(neg)
                # -(a + b): the sign applies to the whole sum
                return "- " + (rf"\left({inner}\right)" if neg.is_Add else inner)
            if rest.is_Mul and not any(
                isinstance(f, sp.Pow) and f.exp.is_negative for f in rest.args
            ):
                args = ([c] if c != 1 else []) + _ordered(rest)
                return super()._print_Mul(sp.Mul(*args, evaluate=False))
            return super()._print_Mul(expr)
        finally:
            self._settings["order"] = order

    def _print_log(self, expr, exp=None):
        arg = expr.args[0]
        inner = self._print(arg)
        simple = arg.is_Symbol or isinstance(arg, (sp.Indexed, sp.Function)) or arg.is_Integer
        tex = rf"\log {inner}" if simple else rf"\log\left({inner}\right)"
        return rf"\left({tex}\right)^{{{exp}}}" if exp else tex

    def _print_Indexed(self, expr):
        base = self.names.get(expr.base.label, self._print(expr.base.label))
        idx = ",".join(self._print(i) for i in expr.indices)
        if "_" in base or "^" in base:  # p_{data} -> {p_{data}}_{i}; \hat{q}_1 -> {\hat{q}_1{}}_{i}
            base = braced(base)
        return f"{base}_{{{idx}}}"

    def _print_Symbol(self, expr, style="plain"):
        if expr in self.names:
            return self.names[expr]
        return super()._print_Symbol(expr)

    def _print_Function(self, expr, exp=None):
        hook = getattr(expr, "info_latex", None)
        if callable(hook):
            tex = hook(self)
            return rf"\left({tex}\right)^{{{exp}}}" if exp else tex
        if self.shape is not None and _tensor_op(expr):
            # matrix-form terms as the calculus LaTeX prints them (mu^T Sigma^-1 mu, tr)
            tex = PaperLatexPrinter(self.shape, self.names)._print(expr)
            return rf"\left({tex}\right)^{{{exp}}}" if exp else tex
        return super()._print_Function(expr, exp)

    def _print_Sum(self, expr):
        body = expr.function
        inner = self._print(body)
        if body.is_Add:
            inner = rf"\left({inner}\right)"
        sums = "".join(
            rf"\sum_{{{self._print(j)}={self._print(a)}}}^{{{self._print(b)}}} "
            for j, a, b in reversed(expr.limits)
        )
        return sums + inner


class InfoExprPrinter(StrPrinter):
    """The "expr" field: SymPy's string form, matrix-form terms in the expression language
    (logdet(S2), (m1 - m2) @ inv(S2) @ (m1 - m2))."""

    def __init__(self, shape=None):
        super().__init__()
        self.shape = shape

    def _print_Function(self, expr):
        if self.shape is not None and _tensor_op(expr):
            return ExprPrinter(self.shape)._print(expr)
        return super()._print_Function(expr)

    def _print_Exp1(self, expr):  # Euler's number is the language's e (E is SymPy's)
        return "e"


class InfoTextPrinter(_FastPrint, StrPrinter):
    printmethod = "_info_str"  # Indexed's own _sympystr would win over _print_Indexed

    def __init__(self, names: dict | None = None, shape=None):
        super().__init__({"order": "none"})
        self.names = names or {}
        self.shape = shape

    def _print_Add(self, expr, order=None):
        # 1 - y, not -y + 1: terms with a leading minus go last
        terms = sorted(
            sp.Add.make_args(expr),
            key=lambda t: (t.could_extract_minus_sign(), sp.default_sort_key(t)),
        )
        return super()._print_Add(sp.Add(*terms, evaluate=False), order="none")

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"

    def _print_Mul(self, expr):
        # a product reads as juxtaposition, as on paper: p_i log(q_i), 2 JSD(p ‖ q)
        return _SINGLE_STAR.sub(" ", self._mul(expr))

    def _mul(self, expr):
        c, rest = expr.as_coeff_Mul()
        if rest.is_Mul and not any(isinstance(f, sp.Pow) and f.exp.is_negative for f in rest.args):
            args = ([c] if c != 1 else []) + _ordered(rest)
            if c == -1:
                return "-" + super()._print_Mul(sp.Mul(*_ordered(rest), evaluate=False))
            return super()._print_Mul(sp.Mul(*args, evaluate=False))
        return super()._print_Mul(expr)

    def _print_Indexed(self, expr):
        idx = ",".join(self._print(i) for i in expr.indices)
        return f"{self.names.get(expr.base.label, str(expr.base.label))}_{idx}"

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Function(self, expr):
        hook = getattr(expr, "info_text", None)
        if callable(hook):
            return hook(self)
        if self.shape is not None and _tensor_op(expr):
            return InfoExprPrinter(self.shape)._print_Function(expr)
        return super()._print_Function(expr)

    def _print_Sum(self, expr):
        body = self._print(expr.function)
        if expr.function.is_Add:
            body = f"({body})"
        return "".join(f"Σ_{self._print(j)} " for j, _, _ in reversed(expr.limits)) + body

    def _print_Infinity(self, expr):
        return "∞"

    def _print_Exp1(self, expr):
        return "e"

    def _print_Pi(self, expr):
        return "π"


class Log2(sp.Function):
    """log base 2, for display only: bits are computed as log(x) / log(2)."""

    @classmethod
    def eval(cls, arg):
        if arg.is_Integer and arg > 0 and int(arg) & (int(arg) - 1) == 0:
            return sp.Integer(int(arg).bit_length() - 1)  # log2(8) = 3

    def info_latex(self, printer):
        arg = self.args[0]
        inner = printer._print(arg)
        simple = arg.is_Symbol or isinstance(arg, (sp.Indexed, sp.Function)) or arg.is_Integer
        return rf"\log_{{2}} {inner}" if simple else rf"\log_{{2}}\left({inner}\right)"

    def info_text(self, printer):
        return f"log2({printer._print(self.args[0])})"


def _log_degree(e):
    """The degree of ``e`` as a polynomial in logarithms (None when mixed)."""
    if isinstance(e, sp.log):
        return 1 if _log_degree(e.args[0]) == 0 else None
    if e.is_Add:
        degs = {_log_degree(t) for t in e.args}
        return degs.pop() if len(degs) == 1 else None
    if e.is_Mul:
        degs = [_log_degree(f) for f in e.args]
        return None if None in degs else sum(degs)
    if e.is_Pow:
        d = _log_degree(e.base)
        if d == 0 and not e.exp.has(sp.log):
            return 0
        return d * int(e.exp) if d is not None and e.exp.is_Integer and e.exp > 0 else None
    if isinstance(e, sp.Sum):
        return _log_degree(e.function)
    if e.has(sp.log) and not isinstance(e, (sp.Indexed,)):
        return None
    return 0


def in_bits(e):
    """Show ``c * f / log(2)`` as ``c * f`` with log_2 for log, where every term of ``f``
    has exactly one logarithm (so that the rewrite is exact)."""
    inv = 1 / sp.log(2)

    def fix(m):
        rest = m * sp.log(2)
        if _log_degree(rest) == 1:
            return rest.replace(sp.log, Log2)
        return m

    return e.replace(lambda x: x.is_Mul and inv in x.args, fix)
