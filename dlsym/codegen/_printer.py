"""The printer of dlsym's code generator: SymPy expressions as NumPy or JAX code.

Every operation prints from its row of ``_table.OPS``. Where shapes are known, products
with a structure print as the cheaper code a person would write: ``diag(v) A`` as the
broadcast ``v[:, None] * A`` (O(n^2), not O(n^3)), ``A^T v`` as ``v @ A``, and
``A^T diag(v) A`` as the symmetric Gram product ``_gram(A, v)``.
"""

from __future__ import annotations

import math

import sympy as sp

from dlsym.codegen._names import Names
from dlsym.codegen._table import OPS
from dlsym.expr import _ops as ops
from dlsym.expr._piecewise import near_zero, where
from dlsym.printing._layout import item_texts
from dlsym.printing._printers import ExprPrinter


class CodePrinter(ExprPrinter):
    """Our expression language with every operation resolved through the table.

    ``shape`` is a shape table for the symbols, or None where shapes are unknown (the
    structured products then print as plain ones); ``names`` renames symbols (to the
    parameters of a function whose arguments are not plain names); ``fresh`` names the
    modules the code reads around the user's names."""

    shows_special_values = False  # a branch's Taylor polynomial near x = r is code

    # Our code comes from the table only: not from an object's own ``_sympystr`` (which
    # prints the expression language, e.g. a coordinate sum as ``sum(...)``)
    printmethod = "_dlsym_code"

    def __init__(self, target: str, shape=None, names: dict | None = None, fresh: Names = Names()):
        super().__init__(shape)
        self.target = target
        self.names = names or {}
        self.fresh = fresh

    def doprint(self, expr, *args, **kwargs):
        # A decimal is read exactly (0.7978845608028654 is 3989422804014327/5e15), and
        # products of them make rationals whose numerator overflows JAX's int64 (and
        # NumPy's): such a number prints as its nearest double, all the precision the
        # computation has anyway.
        if isinstance(expr, sp.Basic):
            big = {
                r: sp.Float(r, 17) for r in expr.atoms(sp.Rational) if max(abs(r.p), r.q) > 2**53
            }
            expr = expr.xreplace(big) if big else expr
        return super().doprint(expr, *args, **kwargs)

    def _print_vanishes(self, expr):
        """|d| <= near_zero (1 + Σ|d's terms|): the closed form's 0/0 value is taken to
        rounding (dlsym.expr._piecewise.vanishes)."""
        d = expr.args[0]
        scale = sp.Add(*[sp.Abs(term) for term in sp.Add.make_args(sp.expand(d))])
        bound = 1 + scale
        if len(expr.args) > 4:  # at step t: |d| t that small, |D| t² for a limit (vanishes)
            power = 2 if expr.args[3] == 0 else 1
            bound = bound / ops.maximum(sp.Integer(1), sp.Abs(expr.args[4])) ** power
        return f"({self._print(sp.Abs(d))} <= {near_zero(expr)!r}*({self._print(bound)}))"

    def row(self, name: str) -> str:
        """The code of the row ``name``, its modules named around the user's names."""
        return self.fresh.code(OPS[name].code(self.target))

    def _rank(self, e):
        return None if self.shape is None else len(self.shape(e))

    def op(self, name: str, args) -> str:
        """The row ``name`` applied to the printed ``args``."""
        code = self.row(name)
        if "{" not in code:
            return f"{code}({', '.join(args)})"
        return code.format(*args, args=", ".join(args), rest=", ".join(args[1:]))

    def _apply(self, expr) -> str:
        name = type(expr).__name__
        if name not in OPS:
            raise NotImplementedError(f"no code for {name}: add a row to dlsym.codegen._table")
        wrap = OPS[name].wrap
        if wrap:
            args = [self._wrap(a, postfix=wrap == "postfix") for a in expr.args]
        else:
            args = [self._print(a) for a in expr.args]
        keywords = ops.keywords(expr)  # axis=, keepdims= of reductions and softmax
        if keywords:
            args = [args[0]] + [f"{k}={v}" for k, v in keywords.items()]
        return self.op(name, args)

    _print_Function = _print_transpose = _print_entry = _apply
    _print_exp = _print_log = _print_sin = _print_cos = _print_tanh = _print_atan = _print_erf = (
        _print_sign
    ) = _print_log1p = _print_expm1 = _print_erfc = _print_xlogy = _print_Heaviside = (
        _print_step
    ) = _apply

    # operations that move entries: NumPy's indexing syntax (inherited from the
    # expression language's printer) or their rows of the table
    _print_permute = _print_reshape = _print_concatenate = _print_stack = _apply
    _print_take_along_axis = _print_put_along_axis = _print_einsum = _print_zeros = _apply
    _print_ones = _print_unit = _apply  # the table's rows, not the language's spelling
    _print_maxmask = _apply  # the table's helper, not the where the language writes it with

    def _print_Abs(self, expr):
        # |b^e| = |b|^e for real b and e: NumPy's b**e is nan for a negative b and a
        # fractional e (SymPy's simplify wrote the Hessian of |w|^w with |w^(w - 1)|)
        arg = expr.args[0]
        if isinstance(arg, sp.Pow) and arg.exp.is_real is not False and not arg.exp.is_integer:
            return self._print(sp.Pow(sp.Abs(arg.base), arg.exp, evaluate=False))
        return self._apply(expr)

    # convolution and pooling: every argument positional, static ones as Python literals
    _print_conv1d = _print_conv2d = _print_conv1d_input_grad = _print_conv2d_input_grad = _apply
    _print_conv1d_kernel_grad = _print_conv2d_kernel_grad = _apply
    _print_max_pool2d = _print_avg_pool2d = _print_max_pool2d_mask = _print_unpool2d = _apply
    _print_max_pool2d_input_grad = _print_max_pool2d_gather = _apply
    _print_floor = _apply  # a strided convolution's output size

    def _slice_bound(self, bound, text: str, size) -> str:
        """A slice bound in a dim that is not 0 or more at every size. A negative number
        written (x[-5:] of an axis of n) is read as n - 5, which the code clamps at 0 as
        NumPy clamps the bound written: at n = 4 the slice n - 5:n took the last entry,
        where x[-5:] takes all four. A dim expression written (x[n - m:]) is left as it
        is: where it is negative NumPy counts it from the end, as it does the text the
        JSON shows (clamped, it took every entry at n = 3, m = 4, where x[-1:] takes
        one)."""
        if not bound.free_symbols or sp.sympify(bound).is_nonnegative is True:
            return text
        offset = sp.sympify(bound - size) if size is not None else None
        if offset is not None and offset.is_Integer and offset < 0:
            return f"max({text}, 0)"
        return text if size is not None else f"max({text}, 0)"

    def _print_scatter(self, expr):
        g, items, dims = expr.args
        index = ", ".join(item_texts(items, tuple(dims), self._print, self._slice_bound))
        shape = f"({', '.join(self._print(d) for d in dims)},)"
        return self.op("scatter", [self._print(g), index, shape])

    def _print_Max(self, expr):
        # np.maximum is binary (a third argument would be its `out`): nest
        first, *rest = expr.args
        if not rest:
            return self._print(first)
        rest = self._print(type(expr)(*rest, evaluate=False))
        return self.op(
            "maximum" if isinstance(expr, sp.Max) else "minimum", [self._print(first), rest]
        )

    _print_Min = _print_Max

    def _print_Piecewise(self, expr):
        # SymPy's own Piecewise (the explicit-entry form of where) as nested where rows
        (value, cond), *rest = expr.args
        if cond is sp.true or not rest:
            return self._print(value)
        rest = self._print(sp.Piecewise(*rest, evaluate=False))
        return self.op("where", [self._print(cond), self._print(value), rest])

    def _print_ITE(self, expr):
        # a Piecewise whose condition holds another where (ELU after ELU, explicitly):
        # SymPy writes the condition as an if-then-else of conditions
        return self.op("where", [self._print(a) for a in expr.args])

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sp.S.Half:
            return self.op("sqrt", [self._print(expr.base)])
        if expr.exp == -sp.S.Half:
            return f"(1/{self.op('sqrt', [self._print(expr.base)])})"
        return super()._print_Pow(expr, rational)

    def _print_Symbol(self, expr):
        return self.names.get(expr) or super()._print_Symbol(expr)

    _print_Dummy = _print_Symbol

    def _print_Pi(self, expr):
        return self.row("pi")

    def _print_Exp1(self, expr):
        return self.row("e")

    def _print_Infinity(self, expr):
        return self.row("inf")

    def _print_NegativeInfinity(self, expr):
        return f"(-{self.row('inf')})"

    def _print_NaN(self, expr):
        return self.row("nan")

    # SymPy's complex infinity (1/0 as it simplifies a value at a point: the Hessian of
    # |w|^w at w = 0) has no sign: undefined, as NumPy's 1/0 of mixed signs
    _print_ComplexInfinity = _print_NaN

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Integer(self, expr):
        return str(expr.p)

    def _print_Float(self, expr):
        # the nearest double in full (SymPy prints 15 digits, which can change it)
        x = float(expr)
        if math.isfinite(x):
            return repr(x)
        return self.row("nan") if x != x else f"({'-' if x < 0 else ''}{self.row('inf')})"

    # -- structured products ------------------------------------------------------------

    def _gram(self, expr):
        """A^T diag(v) A, A^T A or diag(u) A^T A diag(u), the same matrix on both sides: a
        symmetric Gram matrix."""
        a, b = expr.args
        if (
            isinstance(a, ops.diag)
            and isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.transpose)
            and isinstance(b.args[1], ops.matmul)
            and b.args[1].args == (b.args[0].args[0], a)
            and self._rank(a.args[0]) == 1
        ):
            # diag(u) A^T A diag(u) = (A diag(u))^T (A diag(u)), A diag(u) = A * u
            left, u = (self._wrap(x, postfix=True) for x in (b.args[0].args[0], a.args[0]))
            return self.op("gram", [f"{left} * {u}"])
        if not isinstance(a, ops.transpose) or self._rank(a) != 2:
            return None
        left = a.args[0]
        if b == left:
            return self.op("gram", [self._print(left)])
        if (
            isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.diag)
            and b.args[1] == left
            and self._rank(b.args[0].args[0]) == 1
        ):
            return self.op("gram", [self._print(left), self._print(b.args[0].args[0])])
        return None

    def _diagonal(self, expr):
        """v when ``expr`` is diag(v) or a product of such diagonals (their entrywise
        product), else None."""
        if isinstance(expr, ops.diag) and self._rank(expr.args[0]) == 1:
            return expr.args[0]
        if isinstance(expr, ops.matmul):
            u, v = (self._diagonal(x) for x in expr.args)
            if u is not None and v is not None:
                return u * v
        return None

    def _mask(self, a):
        """(cond, keep) where ``a`` is diag(where(cond, 1, 0)) (keep: True) or
        diag(where(cond, 0, 1)) (False), else None."""
        if not (isinstance(a, ops.diag) and isinstance(a.args[0], where)):
            return None
        cond, one, other = a.args[0].args
        if (one, other) == (1, 0):
            return cond, True
        if (one, other) == (0, 1):
            return cond, False
        return None

    def _print_matmul(self, expr):
        a, b = expr.args
        v = self._diagonal(expr)
        if v is not None:  # diag(u) diag(v) = diag(u * v): one vector, not n^2 products
            return self.op("diag", [self._print(v)])
        gram = self._gram(expr)
        if gram is not None:
            return gram
        if (
            isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.diag)
            and self._rank(a) == 2
            and self._rank(b.args[0].args[0]) == 1
            and self._diagonal(a) is None  # diag(u) (diag(v) C) scales C's rows, below
        ):
            # A (diag(v) C) = (A * v) C: scale the columns of A, as hand-written code does
            v, c = b.args[0].args[0], b.args[1]
            left = f"({self._wrap(a, postfix=True)} * {self._wrap(v, postfix=True)})"
            return self.op("matmul", [left, self._wrap(c, postfix=True)])
        if isinstance(a, ops.transpose) and self._rank(b) == 1:
            # A^T v as the row-vector product v @ A: XLA's CPU backend materializes the
            # transpose for A.T @ v, 10x slower at n = 1000 (bench/codegen_speed.py)
            return self.op(
                "matmul", [self._wrap(b, postfix=True), self._wrap(a.args[0], postfix=True)]
            )
        mask = self._mask(a)
        if mask is not None:
            # diag(where(c, 0, 1)) B keeps B's rows where c fails: selected, not scaled,
            # since 0 * B is nan where B is (the Hessian of where(x == 0, 1, sin(x)/x) at
            # x = 0, whose other branch divides by x)
            cond, keep = mask
            col = f"({self._print(cond)})" + ("" if self._rank(b) == 1 else "[:, None]")
            rows = self._print(b)
            picked = [rows, "0"] if keep else ["0", rows]
            return self.op("where", [col, *picked])
        if isinstance(a, ops.diag) and self._rank(a.args[0]) == 1:
            # diag(v) B scales the rows of B; diag(v) w of a vector w is v * w (with v
            # as a column it was the outer product: sum((diag(x) @ y)**2) computed 42
            # for 14)
            v = self._wrap(a.args[0], postfix=True)
            col = v if self._rank(b) == 1 else f"{v}[:, None]"
            return f"({col} * {self._wrap(b, postfix=True)})"
        if isinstance(b, ops.diag) and self._rank(b.args[0]) == 1:
            return f"({self._wrap(a, postfix=True)} * {self._wrap(b.args[0], postfix=True)})"
        if isinstance(b, ops.matmul):
            # a @ (b @ c) as derived: Python's @ groups from the left, and (a @ b) @ c
            # can cost more and share less. Attention's dWq = sum_b Xᵀ (dS K) reuses dS K,
            # the adjoint of Q that dX needs too; (Xᵀ dS) K is a second T x T product
            # (bench/attention_layer.py)
            return self.op("matmul", [self._wrap(a), f"({self._print(b)})"])
        return self._apply(expr)
