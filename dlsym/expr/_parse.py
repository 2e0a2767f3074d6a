"""Expression text -> SymPy, through Python's ``ast`` and an allow-list.

User text never reaches ``eval``, ``exec``, ``sympify`` or ``parse_expr`` (they
evaluate arbitrary Python: sympy#10805). We parse with ``ast.parse`` in ``eval``
mode, accept only the node types below, and build every SymPy object ourselves.
Each node is shape-checked as it is built, so a mismatch is reported at the
column where it happens.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import re
import tokenize
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import sympy as sp
from sympy.calculus.accumulationbounds import AccumBounds

from dlsym._errors import Location, SpecError, did_you_mean
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._conv import WINDOWED
from dlsym.expr._functions import CONSTANTS, FUNCTIONS, FunctionRule  # noqa: F401 (read from here too)

MAX_EXPR_CHARS = 2000
MAX_DEPTH = 48
# operators whose left-nested chains SymPy flattens (Add, Mul): walked, not nested
_FLAT = (ast.Add, ast.Sub, ast.Mult, ast.Div)
MAX_NUMBER_BITS = 4000  # about 1200 decimal digits: '10**10**10' must not hang
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_identifier(name: str, what: str, loc: Location) -> None:
    """Names reach ``lambdify``'s generated source, so they must be plain identifiers."""
    if isinstance(name, str) and keyword.iskeyword(name):
        # 'lambda' is the usual name of a penalty or multiplier, and "not a plain
        # identifier" for a name of letters alone read as a wrong message
        instead = "lam (shown as λ)" if name == "lambda" else f"{name}_ or a longer name"
        raise SpecError(
            f"{what} {name!r} is a Python keyword, which the generated code cannot take "
            f"as a name: call it {instead}",
            loc,
        )
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise SpecError(
            f"{what} {name!r} is not a plain identifier "
            "(letters, digits and '_', starting with a letter)",
            loc,
        )


# the comparisons that make a mask (in where(cond, a, b) only)
_COMPARE = {
    ast.Gt: (">", sp.StrictGreaterThan),
    ast.GtE: (">=", sp.GreaterThan),
    ast.Lt: ("<", sp.StrictLessThan),
    ast.LtE: ("<=", sp.LessThan),
    ast.Eq: ("==", sp.Eq),
    ast.NotEq: ("!=", sp.Ne),
}

_BINOPS = {
    ast.Add: ("add", lambda alg, a, b: a + b),
    ast.Sub: ("subtract", lambda alg, a, b: a - b),
    ast.Mult: ("multiply", lambda alg, a, b: a * b),
    ast.Div: ("divide", lambda alg, a, b: a * _reciprocal(b)),
    ast.Pow: ("raise", lambda alg, a, b: _reciprocal(a) if b == -1 else a**b),
    ast.MatMult: ("matrix-multiply", lambda alg, a, b: alg.mm(a, b)),
}


def _reciprocal(b):
    """1/b, with the logistic function written out, 1/(1 + exp(−z)), read as σ(z) (and
    1/(1 + exp(z)) as σ(−z)): its derivatives then read σ(1 − σ), and its convexity
    argument is σ's, where the exponentials' form was undecided."""
    if isinstance(b, sp.Add) and len(b.args) == 2 and sp.Integer(1) in b.args:
        (e,) = [t for t in b.args if t != 1]
        if isinstance(e, sp.exp):
            return ops.sigmoid(-e.args[0])
    return 1 / b


# Node types we refuse, with the reason we give (checked before anything is built).
_REFUSED = {
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.NamedExpr: "assignments are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.BoolOp: "'and' / 'or' are not allowed",
    ast.List: "lists are not allowed in expressions",
    ast.Tuple: "tuples are not allowed in expressions",
    ast.Dict: "dicts are not allowed in expressions",
    ast.Set: "sets are not allowed in expressions",
}


@dataclass(frozen=True)
class Scope:
    """What names mean inside an expression."""

    symbols: dict  # name -> SymPy Symbol (inputs and define names)
    dims: dict  # name -> SymPy Symbol (positive integer)
    algebra: Algebra
    # the spec's sizes (dim Symbol -> int), where it gives them: an index or a slice that
    # is past an axis at those sizes is refused (JAX would clamp it, silently)
    dim_values: dict = field(default_factory=dict)
    # a recurrence's reads at the time index: {name: (index name, the step's symbol)},
    # so that ``x[t]`` is step t of a [T, ...] symbol (shared/spec-format.md, Recurrences)
    steps: dict = field(default_factory=dict)
    # the recurrence's time index, where there is one (``t``)
    index: str = ""


class _Locator:
    """Maps a position in the parsed (stripped) text back to the spec file.

    ``locate(index)`` (from the YAML document) knows where character ``index`` of the
    raw text is in the file, folded and quoted scalars included; without it we assume
    the text sits on one line at ``loc`` (``col_shift`` columns in, after a quote).
    """

    def __init__(self, text: str, loc: Location, col_shift: int, locate):
        self.text = text
        self.stripped = text.strip()
        self.lead = len(text) - len(text.lstrip())
        self.loc = loc
        self.col_shift = col_shift
        self.locate = locate
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", self.stripped)]

    def index(self, lineno: int, col: int, col_in_bytes: bool) -> int:
        """Character index in the stripped text of (1-based line, 0-based column)."""
        lineno = min(max(lineno, 1), len(self.line_starts))
        start = self.line_starts[lineno - 1]
        if col_in_bytes:  # ast columns count UTF-8 bytes
            end = self.line_starts[lineno] if lineno < len(self.line_starts) else None
            col = len(self.stripped[start:end].encode("utf-8")[:col].decode("utf-8", "ignore"))
        return min(start + col, len(self.stripped))

    def at(self, index: int) -> Location:
        index += self.lead
        found = self.locate(index) if self.locate else None
        if found is not None:
            return found
        before = self.text[:index]
        line = before.count("\n")
        if line == 0:
            return Location(self.loc.file, self.loc.line, self.loc.col + self.col_shift + index)
        return Location(self.loc.file, self.loc.line + line, index - before.rindex("\n"))


def _bare(*args):
    """The arguments with a tensor of zeros as the number 0, for SymPy to simplify
    (``x + zeros(n)`` is ``x``, ``exp(zeros(n))`` is 1); ``_Builder.shaped`` puts the
    shape back on the result."""
    return [sp.Integer(0) if isinstance(a, ops.zeros) else a for a in args]


def _labels_of(alg, ids) -> list:
    """The integer labels an index expression (``y``, ``y[:, None]``) reads."""
    return sorted(ops.tensor_symbols(ids) & alg.index_symbols, key=str)


def _argument(node, i: int, name: str):
    """A call's argument ``i``, given positionally or by its NumPy name."""
    if i < len(node.args):
        return node.args[i]
    return next(kw.value for kw in node.keywords if kw.arg == name)


def _picked(alg, table) -> str:
    return "rows" if len(alg.shape(table)) > 1 else "entries"


# the operations that read integer labels -> [(a label, as written, the size of the axis
# it indexes, that axis in words)]: a label past the axis is an IndexError in NumPy and a
# clamped, wrong value in JAX, and onehot(y, k) of a label >= k is a row of zeros where
# the derivation used "each one-hot row sums to 1" (the gradient softmax(z) - onehot(y,
# k)); so a label's declared number of classes (domain {index: K}) must be that size
LABELED = {
    ops.onehot: lambda alg, e, node: [
        (e.args[0], ast.unparse(_argument(node, 0, "ids")), e.args[1], "onehot has {size}")
    ],
    ops.gather: lambda alg, e, node: [
        (
            e.args[1],
            ast.unparse(node.slice),
            alg.shape(e.args[0])[0],
            f"{ast.unparse(node.value)} has {{size}} {_picked(alg, e.args[0])}",
        )
    ],
    layout.take_along_axis: lambda alg, e, node: [
        (y, str(y), alg.shape(e.args[0])[int(e.args[2])], f"axis {e.args[2]} has {{size}}")
        for y in _labels_of(alg, e.args[1])
    ],
}


# the node each of LABELED reads its labels' text from: an operation that comes out of
# another node (onehot(y, k) * 1 is onehot(y, k) again) had its labels checked in its own
LABELED_NODE = {ops.onehot: ast.Call, ops.gather: ast.Subscript}


def _same_size(a, b, values: dict) -> bool:
    """Equal as written, or at the spec's dims (two dims given the same size)."""
    if sp.simplify(a - b) == 0:
        return True
    a, b = (sp.sympify(x).subs(values) for x in (a, b))
    return a.is_Integer and b.is_Integer and a == b


def _count(size, values: dict) -> str:
    """A size in a message: ``k = 1000`` for a dim the spec gives, else as written."""
    value = sp.sympify(size).subs(values)
    return f"{size} = {value}" if size.free_symbols and value.is_Integer else str(size)


# a decimal literal as Python writes one (no sign: that is a unary minus)
_DECIMAL = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _bits(e, values):
    """An upper bound of log2 |e| for e made of numbers and dims (at ``values``) with
    +, *, ** (never computing e itself); inf past float's range; None where e holds
    anything else or a value cannot be bounded (a negative base, a fraction)."""
    if e.is_Integer or e.is_Rational:
        return math.log2(max(abs(e.p), 1)) if e.p else 0.0
    if e in values:
        return math.log2(max(int(values[e]), 1))
    if isinstance(e, sp.Add):
        parts = [_bits(a, values) for a in e.args]
        return None if None in parts else max(parts) + math.log2(len(parts))
    if isinstance(e, sp.Mul):
        parts = [_bits(a, values) for a in e.args]
        return None if None in parts else sum(parts)
    if isinstance(e, sp.Pow):
        base, exponent = _bits(e.base, values), _bits(e.exp, values)
        if base is None or exponent is None or not e.exp.is_nonnegative:
            return None
        return math.inf if exponent > 1000 else base * 2.0**exponent
    return None


class _Builder:
    def __init__(self, text: str, where: str, locator: _Locator, scope: Scope):
        self.text = text
        self.where = where
        self.locator = locator
        self.scope = scope
        self.alg = scope.algebra
        self.mask_shape: tuple = ()  # the last mask's (where's condition's) operands'

    def at(self, node) -> Location:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        return self.locator.at(self.locator.index(line, col, col_in_bytes=True))

    def fail(self, node, message: str):
        raise SpecError(f"{message} in {self.where}", self.at(node))

    def shape_failed(self, node, exc):
        """``exc``'s message, located; where its two sizes are the same number at the
        spec's dims (a strided convolution's floor(H/2 - 1/2) + 1 against a cotangent
        declared [B, O, 3, 3] at H = 6), it says so and how to write the shape."""
        message = str(exc)
        values = self.scope.dim_values
        if len(exc.sizes) == 2 and values:
            a, b = (sp.sympify(d) for d in exc.sizes)
            if a.free_symbols != b.free_symbols and a.subs(values) == b.subs(values):
                message += (
                    f"; they are equal at the spec's dims ({a.subs(values)}) but not at "
                    "every size, and a shape holds at every size: write both with the "
                    "same dims"
                )
                if a.has(sp.floor) or b.has(sp.floor):
                    message += (
                        " (a strided window's output size, floor(...), is a plain "
                        "expression where its input's size is written as a multiple of "
                        "the stride: H = 2*Hp gives Hp at stride 2)"
                    )
        self.fail(node, message)

    def shape_checked(self, node, build):
        try:
            expr = build()
            self.alg.shape(expr)
            self._windows_fit(expr)
        except ops.ShapeError as exc:
            self.shape_failed(node, exc)
        self._labels_fit(node, expr)
        return expr

    def _windows_fit(self, expr) -> None:
        """A convolution's kernel or a pooling window must fit its input at the spec's
        own sizes too (max_pool2d(A, 5) of a 3 x 3 A): the shape rule, run again with the
        sizes put in, refuses what it could not decide for a symbolic n."""
        values = self.scope.dim_values
        if not values or not isinstance(expr, WINDOWED):
            return
        static = ops.static_positions(expr)
        shapes = tuple(
            () if i in static else tuple(sp.sympify(d).subs(values) for d in self.alg.shape(a))
            for i, a in enumerate(expr.args)
        )
        type(expr).result_shape(expr.args, shapes)

    def _labels_fit(self, node, expr) -> None:
        """Refuse labels whose number of classes (domain {index: K}) is not the size of
        the axis they index (LABELED)."""
        read = LABELED.get(type(expr))
        if not isinstance(node, LABELED_NODE.get(type(expr), ast.AST)):
            return
        values = self.scope.dim_values
        for label, text, size, what in read(self.alg, expr, node) if read else ():
            k = self.alg.index_sizes.get(label)
            if k is None or _same_size(k, size, values):
                continue
            self.fail(
                node,
                f"{ast.unparse(node)}: {text}'s labels range over {_count(k, values)} classes "
                f"(domain {{index: {k}}}), {what.format(size=_count(size, values))}",
            )

    def shaped(self, shape, out):
        """``out`` as a tensor of ``shape``, the shape of the operation as written. SymPy
        evaluates ``x - x``, ``0*x``, ``x/x`` and ``x**0`` to numbers, and a number has
        no shape: without this ``sum(x**0)`` would be 1, not n, and ``logsumexp(x - x)``
        0, not log n (and the reference, built from the same expression, would agree)."""
        have = self.alg.shape(out)
        if tuple(have) == tuple(shape):
            return out
        if out == 0:
            return ops.zeros(*shape)
        return out * self.alg.ones(shape)  # a number, or a tensor that broadcasts to it

    def visit(self, node, depth=0):
        if depth > MAX_DEPTH:
            self.fail(node, f"expression nested deeper than {MAX_DEPTH} levels")
        for refused, reason in _REFUSED.items():
            if isinstance(node, refused):
                self.fail(node, reason)
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"'{type(node).__name__}' syntax is not allowed")
        return method(node, depth + 1)

    def visit_Expression(self, node, depth):
        return self.visit(node.body, depth)

    def visit_Constant(self, node, depth):
        value = node.value
        if isinstance(value, bool) or value is None:
            self.fail(node, f"'{value}' is not a number")
        if isinstance(value, int):
            if value.bit_length() > MAX_NUMBER_BITS:
                self.fail(node, "number too large")
            return sp.Integer(value)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                self.fail(node, "numbers must be finite")
            # exact decimal as written (0.1 -> 1/10; 1.000000000000000000000000000001
            # keeps its last digit, which the float, and so repr, had dropped)
            written = ast.get_source_segment(self.text.strip(), node) or ""
            literal = written.replace("_", "")
            found = _DECIMAL.fullmatch(literal)
            # an exponent past float's (1e-99999999 is 0.0) would be a huge exact power
            if (
                not found
                or len(literal) > MAX_NUMBER_BITS // 4
                or abs(int(found.group(2)[1:] if found.group(2) else 0)) > 400
            ):
                literal = repr(value)
            frac = Fraction(literal)
            return sp.Rational(frac.numerator, frac.denominator)
        if isinstance(value, str):
            self.fail(node, "strings are not allowed")
        self.fail(node, f"constant {value!r} is not allowed")

    def visit_Name(self, node, depth):
        name = node.id
        if name.startswith("__"):
            self.fail(node, f"names starting with '__' are not allowed ('{name}')")
        sc = self.scope
        if name in sc.symbols:
            return sc.symbols[name]
        if name in sc.dims:
            return sc.dims[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            self.fail(node, f"'{name}' is a function; call it as {name}(...)")
        known = list(sc.symbols) + list(sc.dims) + list(FUNCTIONS) + list(CONSTANTS)
        self.fail(node, f"unknown name '{name}'{did_you_mean(name, known)}")

    def visit_BinOp(self, node, depth):
        # a + b + c + ... nests to the left, one level per term, in Python's grammar, and
        # SymPy flattens it again: such a chain is walked in a loop, as one level (a sum
        # of 200 squares was "nested deeper than 48 levels")
        links = [node]
        while isinstance(links[-1].left, ast.BinOp) and type(links[-1].left.op) in _FLAT:
            if type(links[-1].op) not in _FLAT:
                break
            links.append(links[-1].left)
        a = self.visit(links[-1].left, depth)
        for link in reversed(links):
            a = self._binop(link, a, self.visit(link.right, depth))
        return a

    def _binop(self, node, a, b):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
        what, build = op
        if (
            isinstance(node.op, ast.Pow)
            and isinstance(b, sp.Rational)
            and getattr(a, "is_number", False)
            and a not in (0, 1, -1)
        ):
            # SymPy evaluates powers of numbers exactly: bound the size before it tries.
            bits = max(
                (max(abs(r.p).bit_length(), r.q.bit_length()) for r in a.atoms(sp.Rational)),
                default=0,
            )
            if abs(b) * bits > MAX_NUMBER_BITS:
                self.fail(node, "number too large")
        try:
            if isinstance(node.op, ast.MatMult):
                shape = ops.matmul.result_shape((a, b), (self.alg.shape(a), self.alg.shape(b)))
            else:
                shape = ops.broadcast(self.alg.shape(a), self.alg.shape(b), what)
        except ops.ShapeError as exc:
            self.shape_failed(node, exc)
        out = self.shaped(shape, self.shape_checked(node, lambda: build(self.alg, *_bare(a, b))))
        if (
            isinstance(out, sp.Rational)
            and max(abs(out.p).bit_length(), out.q.bit_length()) > MAX_NUMBER_BITS
        ):
            self.fail(node, "number too large")
        if isinstance(node.op, ast.Pow) and self.scope.dim_values:
            # a power of dims (n**n**n**n) is a number once the dims are put in, which
            # SymPy would compute exactly (3**(3**27): the budget's 50 s, unlocated)
            bits = _bits(out, self.scope.dim_values)
            if bits is not None and bits > MAX_NUMBER_BITS:
                self.fail(node, f"number too large: about 2**{bits:.3g} at the spec's dims")
        return out

    def visit_UnaryOp(self, node, depth):
        a = self.visit(node.operand, depth)
        if isinstance(node.op, ast.USub):
            return -a
        if isinstance(node.op, ast.UAdd):
            return a
        self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")

    def visit_Attribute(self, node, depth):
        if node.attr.startswith("_"):
            self.fail(node, f"attribute '.{node.attr}' is not allowed")
        if node.attr != "T":
            self.fail(node, f"attribute access '.{node.attr}' is not allowed (only '.T')")
        return self.alg.T(self.visit(node.value, depth), written=True)

    def visit_Compare(self, node, depth):
        self.fail(
            node,
            "comparisons are only allowed in constraints (subject_to) and as the mask of "
            "where(cond, a, b)",
        )

    def mask(self, node, depth, name):
        """The comparison an argument of ``where`` must be: ``x > 0``, ``mask >= 0.5``
        (one comparison of two broadcastable operands; a mask is never differentiated)."""
        if not isinstance(node, ast.Compare):
            self.fail(node, f"{name}() needs a comparison as its mask, such as x > 0")
        if len(node.ops) != 1:
            self.fail(node, f"one comparison per mask in {name}(); chained ones are not allowed")
        op = _COMPARE.get(type(node.ops[0]))
        if op is None:
            self.fail(node, f"'{type(node.ops[0]).__name__}' is not a comparison of numbers")
        symbol, build = op
        a = self.visit(node.left, depth)
        b = self.visit(node.comparators[0], depth)
        try:
            self.mask_shape = ops.broadcast(
                self.alg.shape(a), self.alg.shape(b), f"compare ({symbol})"
            )
        except ops.ShapeError as exc:
            self.shape_failed(node, exc)
        return build(a, b)

    def _int(self, node, what):
        value = node
        neg = False
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value, neg = node.operand, True
        if not (isinstance(value, ast.Constant) and type(value.value) is int):
            self.fail(node, f"{what} must be an integer")
        return -value.value if neg else value.value

    def _sizes(self, node, what):
        """PyTorch's integer or tuple of integers, one per spatial axis (``stride=(2,
        2)``); a pool's stride may be None, its default. The builder checks the count."""
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
            return tuple(self._int(e, what) for e in node.elts)
        return self._int(node, what)

    def _widths(self, node, depth):
        """NumPy's ``pad_width``: ``n`` (every side), ``(before, after)`` (every axis) or
        ``((before, after), ...)``, one pair per axis: whole numbers 0 or more, or sizes
        in the dims (``C - 1``: a slice's adjoint prints so)."""
        if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
            if all(isinstance(e, (ast.Tuple, ast.List)) for e in node.elts):
                pairs = []
                for e in node.elts:
                    if len(e.elts) != 2:
                        self.fail(e, "pad_width takes (before, after) pairs, one per axis")
                    pairs.append(tuple(self._width(w, depth) for w in e.elts))
                return tuple(pairs)
            if len(node.elts) == 2:
                return tuple(self._width(w, depth) for w in node.elts)
            self.fail(node, "pad_width is n, (before, after) or ((before, after), ...)")
        return self._width(node, depth)

    def _width(self, node, depth):
        if isinstance(node, ast.Constant) or isinstance(node, ast.UnaryOp):
            value = sp.Integer(self._int(node, "a pad width"))
        else:
            value = self._dim_expr(node, depth)
        if not value.is_nonnegative:
            self.fail(node, f"a pad width must be 0 or more, got {value}")
        return value

    def _mode(self, node):
        if not (isinstance(node, ast.Constant) and node.value == "constant"):
            self.fail(node, "pad() pads with zeros only: mode='constant', NumPy's default")
        return node.value

    def _padding(self, node):
        """An integer or tuple of them, or PyTorch's ``'same'`` or ``'valid'``."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value not in ("same", "valid"):
                self.fail(node, f"padding must be a number, 'same' or 'valid', got {node.value!r}")
            return node.value
        return self._sizes(node, "padding")

    def _axis(self, node):
        """``axis=1`` or ``axis=(0, 1)``."""
        if isinstance(node, ast.Tuple):
            if not node.elts:
                self.fail(node, "axis=() names no axis")
            return tuple(self._int(e, "an axis") for e in node.elts)
        return self._int(node, "axis")

    def _bool(self, node, what):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, bool)):
            self.fail(node, f"{what} must be True or False")
        return node.value

    def visit_Subscript(self, node, depth):
        read = self.scope.steps.get(getattr(node.value, "id", None))
        if read is not None and isinstance(node.slice, ast.Name) and node.slice.id == read[0]:
            return read[1]  # x[t]: step t of x
        if read is not None and read[0] in {
            n.id for n in ast.walk(node.slice) if isinstance(n, ast.Name)
        }:
            x, t = node.value.id, read[0]
            self.fail(
                node.slice,
                f"a recurrence reads {x} at step {t} only, as {x}[{t}]: {t} runs from 1 to "
                f"T and {x}[{t}] is the {t}-th step (a NumPy array's {x}[{t} - 1]: write "
                f"{x}[{t}]); an earlier or later step is read through a state that carries it",
            )
        index = self.scope.index
        if index and not isinstance(node.value, ast.Name):
            if isinstance(node.slice, ast.Name) and node.slice.id == index:
                # onehot(y, o)[t]: an expression's step (it said "an index must be ... a
                # symbol with domain {index: k}", k read as the spec's dim k)
                self.fail(
                    node.slice,
                    f"a recurrence reads a [T, ...] symbol at step {index} ({index} indexes "
                    f"a symbol: x[{index}]); {ast.unparse(node.value)} is an expression: "
                    f"index the sequences inside it at {index} instead",
                )
        if index and read is None and isinstance(node.value, ast.Name):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            at = [i for i, e in enumerate(items) if isinstance(e, ast.Name) and e.id == index]
            if at and at[0] > 0:
                # X[:, t] of a batch-first [B, T, k]: read as a size, "a size must be a
                # whole number", which said nothing of the convention
                self.fail(
                    node.slice,
                    f"a recurrence reads a sequence at step {index} along its first axis "
                    f"({node.value.id}[{index}] of a [T, ...] symbol); {ast.unparse(node)} "
                    f"reads its axis {at[0]}: declare {node.value.id} time-major, "
                    f"with T first (a batch [T, B, k]: {node.value.id}[{index}] is then the "
                    "batch at the step)",
                )
        if isinstance(node.slice, ast.Tuple) and not node.slice.elts:
            return self.visit(node.value, depth)  # x[()]: x itself, as in NumPy
        first = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else None
        labels = {str(x): x for x in self.alg.index_symbols}
        if (
            isinstance(first, ast.Name)
            and first.id in labels
            and self.alg.shape(labels[first.id]) == ()
        ):
            # X[i, 0] with one label i is row i, then its entries, (X[i])[0], as in NumPy
            # (read as one index, i was taken for a size); a label sequence's ids[:, 0]
            # is another thing (fancy indexing), not rewritten
            rest = node.slice.elts[1:]
            row = ast.copy_location(ast.Subscript(node.value, first, ast.Load()), node)
            items = rest[0] if len(rest) == 1 else ast.Tuple(rest, ast.Load())
            return self.visit(ast.copy_location(ast.Subscript(row, items, ast.Load()), node), depth)
        if (
            isinstance(first, ast.Name)
            and first.id in labels
            and all(_whole_axis(n) for n in node.slice.elts[1:])
        ):
            # X[ids, :] is X[ids], the rows the labels pick, as in NumPy
            return self.visit(
                ast.copy_location(ast.Subscript(node.value, first, ast.Load()), node), depth
            )
        base = self.visit(node.value, depth)
        # a dim is an integer index (x[n], as a joint result's rows of its stacked step
        # print), read below as a bound is; any other name is a label sequence
        is_dim = isinstance(node.slice, ast.Name) and node.slice.id in self.scope.dims
        if (
            isinstance(node.slice, (ast.Name, ast.Subscript))
            and not _special(node.slice)
            and (not is_dim)
        ):
            # E[ids], or E[tok[t]]: a label sequence read at the step is a label too
            ids = self.visit(node.slice, depth)
            if ids in self.alg.index_symbols:  # E[ids]: a gather (embedding lookup)
                return self.shape_checked(node, lambda: ops.gather(base, ids))
            self.fail(node.slice, "an index must be an integer or a symbol with domain {index: k}")
        nodes = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        shape = self.alg.shape(base)
        plain = all(isinstance(n, (ast.Constant, ast.UnaryOp)) and not _special(n) for n in nodes)
        # as many indices as axes at most: X[0, 0, 0] of a matrix is _index_items' error
        # (the entry took the three and raised a TypeError: exit 3)
        if (
            plain
            and len(nodes) <= len(shape) <= 2
            and all(self._int(n, "an index") >= 0 for n in nodes)
        ):
            # x[i], X[i, j]: an entry, printed x_i
            idx = [sp.Integer(self._int(i, "an index")) for i in nodes]
            for n, i, size in zip(nodes, idx, shape):
                self._within(n, size, i, i + 1, f"index {i}")
            return self.shape_checked(node, lambda: ops.entry(base, *idx))
        items = self._index_items(nodes, shape, depth)
        new = [i for i, item in enumerate(items) if item == layout.NEWAXIS]
        whole = [sp.Tuple(0, d, 1) for d in shape]
        if (
            new
            and [item for item in items if item != layout.NEWAXIS] == whole[: len(items) - len(new)]
        ):
            # only new axes (x[None, :], X[..., None]): a reshape, whose adjoint takes
            # the axes away again, not a scatter into zeros
            return self.shape_checked(node, lambda: self.alg.expand_dims(base, tuple(new)))
        return self.shape_checked(node, lambda: layout.index(base, sp.Tuple(*items)))

    def _index_items(self, nodes, shape, depth) -> list:
        """NumPy's basic indexing as items: an Integer, a (start, stop, step) slice with
        its bounds resolved against the axis's size (negative ones count from the end),
        NEWAXIS for None; ``...`` stands for every axis not named."""
        named = sum(1 for n in nodes if not _special(n))
        if sum(1 for n in nodes if _special(n) == "...") > 1:
            self.fail(nodes[0], "an index can have one '...'")
        if named > len(shape):
            self.fail(nodes[0], f"too many indices ({named}) for a {ops.fmt_shape(shape)}")
        items: list = []
        axis = 0
        for n in nodes:
            kind = _special(n)
            if kind == "None":
                items.append(layout.NEWAXIS)
                continue
            if kind == "...":
                for _ in range(len(shape) - named):
                    items.append(sp.Tuple(sp.Integer(0), shape[axis], sp.Integer(1)))
                    axis += 1
                continue
            size = shape[axis]
            if isinstance(n, ast.Slice):
                step = 1 if n.step is None else self._int(n.step, "a slice step")
                if step == 0:
                    self.fail(n, "a slice step cannot be zero")
                literal = [b for b in (n.lower, n.upper) if b is not None]
                if size.is_Integer and all(
                    isinstance(b, (ast.Constant, ast.UnaryOp)) for b in literal
                ):
                    # a literal size and bounds: clamped as Python and NumPy clamp them
                    # (x[-7:3] of 5 entries is x[0:3]; -7 + 5 was read as -2: the
                    # gradient was 0 everywhere, and a Jacobian's shape exit 3)
                    lo, hi = (
                        None if b is None else self._int(b, "an index") for b in (n.lower, n.upper)
                    )
                    start, stop, _ = (sp.Integer(v) for v in slice(lo, hi, step).indices(int(size)))
                    if not range(int(start), int(stop), step):
                        self.fail(n, f"the slice is empty for size {size}")
                    items.append(sp.Tuple(start, stop, sp.Integer(step)))
                    axis += 1
                    continue
                if step > 0:
                    start = self._bound(n.lower, size, 0, depth)
                    stop = self._bound(n.upper, size, size, depth)
                    empty = (stop - start).is_nonpositive
                else:  # x[::-1]: from the last entry down, through entry 0 (stop -1)
                    start = self._bound(n.lower, size, size - 1, depth)
                    stop = self._bound(n.upper, size, sp.Integer(-1), depth)
                    empty = (start - stop).is_nonpositive
                if empty:
                    self.fail(n, f"the slice is empty for size {size}")
                # a stop given with a negative step is an entry (>= 0): one that NumPy
                # would clip to "through 0" is written as no stop (x[3::-1])
                low, high = (start, stop) if step > 0 else (stop + int(n.upper is None), start + 1)
                self._within(
                    n,
                    size,
                    low,
                    high,
                    f"the slice {start}:{stop}" + (f":{step}" if step != 1 else ""),
                )
                items.append(sp.Tuple(start, stop, sp.Integer(step)))
            else:
                if isinstance(n, ast.Name) and n.id in {str(x) for x in self.alg.index_symbols}:
                    # X[:, y] read y as a size: "a size must be a whole number"
                    self.fail(
                        n,
                        f"labels ({n.id}) index the first axis alone, as X[{n.id}] (a gather "
                        f"of rows); one entry per row is "
                        f"take_along_axis(X, {n.id}[:, None], axis=1), a column per label "
                        f"X.T[{n.id}] or X @ onehot({n.id}, k).T",
                    )
                i = self._bound(n, size, None, depth)
                # as the user wrote it: x[-4] is "index -4 (n - 4)", not "index n - 4"
                written = ast.unparse(n)
                said = f"index {written}" + (f" ({i})" if written != str(i) else "")
                if i.is_negative or (size - i).is_nonpositive:
                    self.fail(n, f"{said} is out of range for size {size}")
                self._within(n, size, i, i + 1, said)
                items.append(i)
            axis += 1
        return items

    def _within(self, node, size, start, stop, what: str) -> None:
        """Refuse entries ``start:stop`` that lie past an axis of ``size`` at the spec's
        own sizes (the derivation holds for sizes where they fit)."""
        values = self.scope.dim_values
        if not values or not (size.free_symbols & set(values)):
            return
        n, a, b = (sp.sympify(x).subs(values) for x in (size, start, stop))
        if all(x.is_Integer for x in (n, a, b)) and (a < 0 or b > n or a >= b):
            self.fail(node, f"{what} is out of range for size {size} = {n} (the spec's dims)")

    def _bound(self, node, size, default, depth):
        """A slice bound or an index: an integer or a dim expression; a negative integer
        counts from the end of the axis."""
        if node is None:
            return sp.Integer(default) if isinstance(default, int) else default
        if isinstance(node, (ast.Constant, ast.UnaryOp)):
            value = self._int(node, "an index")
            return size + value if value < 0 else sp.Integer(value)
        return self._dim_expr(node, depth)

    def visit_Call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only the language's functions can be called")
        name = node.func.id
        rule = FUNCTIONS.get(name)
        if rule is None:
            if name in self.scope.symbols:
                self.fail(node, f"'{name}' is a symbol, not a function")
            if name.startswith("__"):
                self.fail(node, f"names starting with '__' are not allowed ('{name}')")
            self.fail(
                node,
                f"unknown function '{name}'{did_you_mean(name, FUNCTIONS)}; the language's "
                f"functions: {' '.join(sorted(FUNCTIONS))}",
            )
        counts = rule.counts()
        positional = list(node.args)
        keywords = {}  # keyword name -> node, as NumPy takes them
        for kw in node.keywords:
            if kw.arg is None:
                self.fail(kw.value, "'**' arguments are not allowed")
            if kw.arg in keywords:
                self.fail(kw.value, f"{name}() got the keyword '{kw.arg}' twice")
            keywords[kw.arg] = kw.value
        # NumPy's spellings: an axis after the array (``sum(x, 1)``), and positional
        # parameters by their names (``take_along_axis(a, ids, axis=1)``)
        if not rule.variadic and len(positional) > counts[-1]:
            extra = positional[counts[-1] :]
            if len(extra) <= len(rule.positional):
                for kname, value in zip(rule.positional, extra):
                    if kname in keywords:
                        self.fail(value, f"{name}() got '{kname}' twice")
                    keywords[kname] = value
                positional = positional[: counts[-1]]
        for kname in keywords:
            if kname not in rule.keywords and kname not in rule.params:
                allowed = [*rule.params[1:], *rule.keywords]
                takes = f"only {', '.join(allowed)}" if allowed else "no keywords"
                self.fail(node, f"{name}() takes no keyword '{kname}' ({takes})")
        for i, pname in enumerate(rule.params):
            if pname in keywords and pname not in rule.keywords:
                if i < len(positional):
                    self.fail(keywords[pname], f"{name}() got '{pname}' twice")
                if i == len(positional):
                    positional.append(keywords.pop(pname))
        if rule.variadic and len(positional) < counts[0]:
            self.fail(node, f"{name}() takes at least {counts[0]} arguments, got {len(positional)}")
        if not rule.variadic and len(positional) not in counts:
            n = " or ".join(map(str, counts))
            self.fail(
                node,
                f"{name}() takes {n} argument{'s' if counts[-1] > 1 else ''}, got {len(positional)}",
            )
        # what is left is keywords proper: a named positional one was moved, or its
        # count failed above
        kwargs = {kname: KEYWORDS[kname](self, value) for kname, value in keywords.items()}
        reads = rule.reads or ("tensor",)
        args, masks, values = [], [], []
        for i, a in enumerate(positional):
            kind = reads[min(i, len(reads) - 1)]
            args.append(ARGUMENTS[kind](self, a, depth))
            if kind == "mask":  # its operands' shape, which a decided mask has lost
                masks.append(self.mask_shape)
            else:
                values.append(args[-1])
        out = self.shape_checked(node, lambda: rule.build(self.alg, *args, **kwargs))
        if masks:
            # where(x == x, c, 0) is c where SymPy decides x == x, and c has no shape:
            # the shape as written is the mask's and both branches' broadcast (sum of it
            # was 1, not n, and the reference, built from the same expression, agreed)
            shape = masks[0]
            for a in values:
                shape = ops.broadcast(shape, self.alg.shape(a))
            out = self.shaped(shape, out)
        bare = _bare(*args)
        if not rule.elementwise or bare == args:
            return out
        return self.shaped(
            self.alg.shape(out),
            self.shape_checked(node, lambda: rule.build(self.alg, *bare, **kwargs)),
        )

    def _dim_expr(self, node, depth):
        """A size: a positive integer, a dim, or a product / sum of them (``T*d``)."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return sp.Integer(self._int(node, "a size"))
        value = self.visit(node, depth)
        if not (value.free_symbols <= set(self.scope.dims.values()) and value.is_integer):
            self.fail(node, "a size must be a whole number or an expression in the dims")
        return value

    def _shape_arg(self, node, depth):
        """``(B, n)``, ``[B, n]`` or one size."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self._dim_expr(e, depth) for e in node.elts)
        return (self._dim_expr(node, depth),)

    def _tensors(self, node, depth):
        if not isinstance(node, (ast.Tuple, ast.List)) or not node.elts:
            self.fail(node, "expected a list of arrays such as [a, b]")
        return [self.visit(e, depth) for e in node.elts]

    def _subscripts(self, node, depth):
        text = node.value if isinstance(node, ast.Constant) else None
        if not isinstance(text, str):
            self.fail(
                node, "einsum's first argument must be its subscripts string, e.g. 'ij,jk->ik'"
            )
        text = text.replace(" ", "")
        if len(text) > 100 or not EINSUM.match(text):
            self.fail(
                node,
                "einsum subscripts must read like 'bij,bjk->bik' (letters, ',', '->' and "
                "NumPy's '...')",
            )
        return text


# letters, or NumPy's '...' for the leading axes, in each operand and the output
EINSUM = re.compile(r"^([A-Za-z]|\.\.\.)+(,([A-Za-z]|\.\.\.)*)*(->([A-Za-z]|\.\.\.)*)?$")

# how each positional argument is read (never evaluated)
ARGUMENTS = {
    "tensor": lambda b, node, depth: b.visit(node, depth),
    # a tensor, or None for no bound (NumPy's clip(x, 0, None))
    "bound": lambda b, node, depth: None if _special(node) == "None" else b.visit(node, depth),
    "mask": lambda b, node, depth: b.mask(node, depth, "where"),
    "tensors": lambda b, node, depth: b._tensors(node, depth),
    "shape": lambda b, node, depth: b._shape_arg(node, depth),
    "dim": lambda b, node, depth: (b._dim_expr(node, depth),),
    "axes": lambda b, node, depth: b._axis(node),
    "int": lambda b, node, depth: b._int(node, "an axis"),
    "size": lambda b, node, depth: b._sizes(node, "a window size"),
    "subscripts": lambda b, node, depth: b._subscripts(node, depth),
    "widths": lambda b, node, depth: b._widths(node, depth),
}


def _special(node) -> str | None:
    """'None' for a new axis, '...' for an ellipsis, None for anything else."""
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return "..."
    return None


# how each keyword argument's value is read (never evaluated)
KEYWORDS = {
    "axis": lambda builder, node: builder._axis(node),
    "keepdims": lambda builder, node: builder._bool(node, "keepdims"),
    # convolution and pooling (dlsym.expr._conv): integer literals or tuples of them;
    # a pool's stride may be None, PyTorch's default (the window size)
    "stride": lambda builder, node: builder._sizes(node, "stride"),
    "padding": lambda builder, node: builder._padding(node),
    "dilation": lambda builder, node: builder._sizes(node, "dilation"),
    "mode": lambda builder, node: builder._mode(node),  # pad(): zeros, as np.pad's default
}


def expression_text(text, where: str, loc: Location) -> str:
    """A YAML value that should be an expression, as text: a string or a finite number,
    not empty, not over ``MAX_EXPR_CHARS``; otherwise a located error."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SpecError(f"{where} must be an expression, got {type(text).__name__}", loc)
    if isinstance(text, float) and not math.isfinite(text):
        raise SpecError(f"numbers must be finite in {where}", loc)  # YAML's .inf, 1e999
    text = str(text)
    if len(text) > MAX_EXPR_CHARS:
        raise SpecError(f"{where} is longer than {MAX_EXPR_CHARS} characters", loc)
    if not text.strip():
        raise SpecError(f"{where} is empty", loc)
    return text


def parse_expression(
    text,
    where: str,
    loc: Location,
    scope: Scope,
    col_shift: int = 0,
    locate: Callable[[int], Location | None] | None = None,
):
    """Parse ``text`` (found at ``loc``, described as ``where``) into a SymPy expression.

    ``locate(index)``, when given, is where character ``index`` of ``text`` lies in the
    file (see ``Document.text_loc``); errors inside the expression point there."""
    text = expression_text(text, where, loc)
    locator = _Locator(text, loc, col_shift, locate)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        if exc.offset:  # 1-based, in characters; 0 or None: at the end of the text
            index = locator.index(exc.lineno or 1, exc.offset - 1, col_in_bytes=False)
        else:
            index = len(locator.stripped)
        # an expression over several lines (objective: | in YAML keeps its breaks): a
        # break ends it unless brackets are open, and "invalid syntax" said nothing of that
        hint = (
            "; it spans several lines, and a line break ends an expression outside brackets "
            "(write it with YAML's > instead of |, or inside parentheses)"
            if "\n" in text.strip()
            else ""
        )
        raise SpecError(f"syntax error in {where}: {exc.msg}{hint}", locator.at(index)) from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError(f"{where} cannot be parsed (too deeply nested?)", loc) from None
    _plain_tokens(text.strip(), where, locator)
    builder = _Builder(text, where, locator, scope)
    try:
        expr = builder.visit(tree)
    except RecursionError:
        raise SpecError(f"{where} is nested too deeply", loc) from None
    if isinstance(expr, sp.Basic) and expr.has(*NOT_FINITE):
        raise SpecError(
            f"{where} has a constant that is not a finite real number (a division by zero, "
            "log(0), or the square root of a negative number)",
            locator.at(0),
        )
    return expr


def _plain_tokens(text: str, where: str, locator) -> None:
    """A located error for what Python's parser reads past silently: a comment ('x**2 #
    + sin(x)' was x**2, the rest dropped) and a name that is not ASCII, which Python
    reads as its NFKC form (the Kelvin sign as K: a confusable naming another symbol).
    The language has neither; symbol names are ASCII."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return  # ast.parse took it: nothing of these in it
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            what = (
                "a comment ('#'): the language has none, and the rest of the line would be dropped"
            )
        elif tok.type == tokenize.NAME and not tok.string.isascii():
            odd = next(c for c in tok.string if not c.isascii())
            what = (
                f"the name '{tok.string}' is not ASCII ({unicodedata.name(odd, 'U+%04X' % ord(odd))} "
                f"would be read as '{unicodedata.normalize('NFKC', odd)}'): names are ASCII"
            )
        else:
            continue
        index = locator.index(tok.start[0], tok.start[1], col_in_bytes=False)
        raise SpecError(f"{what} in {where}", locator.at(index))


# what SymPy makes of 1/0, log(0), 0/0, sqrt(-1) and atan(1/0) (the bounds
# AccumBounds(-pi/2, pi/2), a range, not a number): no spec means them
NOT_FINITE = (sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I, AccumBounds)


def _whole_axis(node) -> bool:
    """``:`` alone, a whole axis."""
    return (
        isinstance(node, ast.Slice)
        and node.lower is None
        and node.upper is None
        and node.step is None
    )
