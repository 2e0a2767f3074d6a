"""Quantities and identities -> a small typed tree, through ``ast`` and an allow-list.

``entropy(Y | X)`` is a ``BitOr`` and ``kl(p, q) >= 0`` a ``Compare``: the expression
language of the calculus sections refuses both, so this walker builds its own tree.
It never evaluates anything: every node is one of the frozen dataclasses below, and
every value is either a *scalar* (a number, a symbol, an information quantity, and
arithmetic of those) or a *distribution* (a name, a joint variable's marginal, a
product of marginals, a mixture ``(1 - eps) * y + eps * u``). Type errors are
located at the node where they happen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr._parse import CONSTANTS, MAX_DEPTH, _Locator, expression_text
from dlsym.sections.info._dist import Categorical

# --- the tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: sp.Expr


@dataclass(frozen=True)
class Op:
    op: str  # add sub mul div pow neg, or a scalar function: log exp sqrt log2
    args: tuple


@dataclass(frozen=True)
class Info:
    """An information quantity: ``fn`` applied to distributions (and scalars)."""

    fn: str
    args: tuple
    text: str  # as written, for messages and result names
    loc: object


@dataclass(frozen=True)
class DRef:
    name: str  # a declared distribution


@dataclass(frozen=True)
class DVar:
    joint: str  # the marginal of one variable of a joint table
    var: int  # 0 or 1


@dataclass(frozen=True)
class DCond:
    joint: str  # p(target | given), only as the argument of entropy()
    target: int


@dataclass(frozen=True)
class DPair:
    joint: str  # (X, Y) together: the joint table itself


@dataclass(frozen=True)
class DProd:
    joint: str  # p(x) p(y): the product of a joint's marginals


@dataclass(frozen=True)
class DMix:
    terms: tuple  # ((weight: scalar tree, distribution), ...)


@dataclass(frozen=True)
class ArgMin:
    """argmin (or argmax) over a symbolic categorical ``dist`` of a scalar ``objective``:
    a whole quantity, not part of an expression (its value is a distribution)."""

    objective: object
    dist: str
    text: str
    loc: object
    sense: str = "min"  # "min" or "max": OPTIMIZERS[the function's name]


@dataclass(frozen=True)
class Statement:
    relation: str  # '==', '>=', '<=' ; '' for a quantity
    lhs: object
    rhs: object
    text: str
    loc: object


DIST_TYPES = (DRef, DVar, DCond, DPair, DProd, DMix)

# name -> (number of distribution arguments, number of scalar arguments after them, prose)
INFO_FUNCTIONS = {
    "entropy": ((1, 2), 0, "entropy(p), entropy(X, Y) or entropy(Y | X)"),
    "cross_entropy": ((2,), 0, "cross_entropy(p, q)"),
    "kl": ((2,), 0, "kl(p, q)"),
    "jsd": ((2,), 0, "jsd(p, q)"),
    "mutual_information": ((2,), 0, "mutual_information(X, Y)"),
    "focal_loss": ((2,), 1, "focal_loss(y, q, gamma)"),
    "gan_value": ((2,), 0, "gan_value(p_data, p_g)"),
}
SCALAR_FUNCTIONS = ("log", "log2", "exp", "sqrt", "sum")
# argmin(objective, q) and argmax are whole quantities (see ArgMin): name -> sense
OPTIMIZERS = {"argmin": "min", "argmax": "max"}
OTHER_FUNCTIONS = tuple(OPTIMIZERS)  # listed for messages
_ARITH = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}
_RELATIONS = {ast.Eq: "==", ast.GtE: ">=", ast.LtE: "<="}


@dataclass(frozen=True)
class Names:
    """What a name means: a distribution, a joint's variable, a scalar symbol."""

    distributions: dict  # name -> distribution object (_info_dist)
    variables: dict  # variable name -> (joint name, 0 or 1)
    symbols: dict  # name -> SymPy Symbol
    vectors: dict = None  # name -> size (a dim Symbol or Integer) of a vector symbol


class _Walker:
    def __init__(self, text, where, locator, names: Names):
        self.text, self.where, self.locator, self.names = text, where, locator, names

    def at(self, node):
        return self.locator.at(
            self.locator.index(getattr(node, "lineno", 1), getattr(node, "col_offset", 0), True)
        )

    def fail(self, node, message):
        raise SpecError(f"{message} in {self.where}", self.at(node))

    def source(self, node) -> str:
        return ast.get_source_segment(self.locator.stripped, node) or ""

    # each visit returns ("scalar", tree) or ("dist", tree)
    def visit(self, node, depth=0):
        if depth > MAX_DEPTH:
            self.fail(node, f"expression nested deeper than {MAX_DEPTH} levels")
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"'{type(node).__name__}' syntax is not allowed")
        return method(node, depth + 1)

    def scalar(self, node, depth, what="a number"):
        kind, tree = self.visit(node, depth)
        if kind == "vector":
            self.fail(node, f"expected {what} here, got a vector (sum(...) makes it a number)")
        if kind != "scalar":
            self.fail(node, f"expected {what} here, got a distribution")
        return tree

    def value(self, node, depth) -> tuple:
        """(kind, tree) of a number or a vector (entrywise arithmetic on vector symbols)."""
        kind, tree = self.visit(node, depth)
        if kind == "dist":
            self.fail(node, "expected a number here, got a distribution")
        return kind, tree

    def size(self, node, tree):
        """The size of the vector symbols in ``tree`` (one size, or a located error)."""
        sizes = {self.names.vectors[n] for n in _names(tree, self.names)}
        if len(sizes) > 1:
            self.fail(node, "sum() of vectors of different sizes")
        return sizes.pop() if sizes else None

    def dist(self, node, depth, fn):
        kind, tree = self.visit(node, depth)
        if kind != "dist":
            self.fail(node, f"{fn}() takes distributions, got a number")
        return tree

    def visit_Constant(self, node, depth):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(node, f"constant {v!r} is not allowed")
        if isinstance(v, int):
            if v.bit_length() > 4000:
                self.fail(node, "number too large")
            return "scalar", Num(sp.Integer(v))
        if v != v or v in (float("inf"), float("-inf")):
            self.fail(node, "numbers must be finite")
        f = Fraction(repr(v))
        return "scalar", Num(sp.Rational(f.numerator, f.denominator))

    def visit_Name(self, node, depth):
        n, name = self.names, node.id
        if name in n.distributions:
            return "dist", DRef(name)
        if name in n.variables:
            joint, i = n.variables[name]
            return "dist", DVar(joint, i)
        if name in n.symbols:
            return ("vector" if name in (n.vectors or {}) else "scalar"), Num(n.symbols[name])
        if name in CONSTANTS:
            return "scalar", Num(CONSTANTS[name])
        if name in INFO_FUNCTIONS or name in SCALAR_FUNCTIONS:
            self.fail(node, f"'{name}' is a function; call it as {name}(...)")
        known = list(n.distributions) + list(n.variables) + list(n.symbols) + list(CONSTANTS)
        self.fail(node, f"unknown name '{name}'{did_you_mean(name, known)}")

    def visit_UnaryOp(self, node, depth):
        if isinstance(node.op, ast.USub):
            kind, tree = self.value(node.operand, depth)
            return kind, Op("neg", (tree,))
        if isinstance(node.op, ast.UAdd):
            return self.value(node.operand, depth)
        self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")

    def visit_BinOp(self, node, depth):
        if isinstance(node.op, ast.BitOr):
            self.fail(node, "'|' (conditioning) is only allowed as the argument of entropy(Y | X)")
        op = _ARITH.get(type(node.op))
        if op is None:
            self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
        (ka, a), (kb, b) = self.visit(node.left, depth), self.visit(node.right, depth)
        if {ka, kb} <= {"scalar", "vector"}:  # entrywise, as in the calculus language
            return ("vector" if "vector" in (ka, kb) else "scalar"), Op(op, (a, b))
        if op == "add" and ka == kb == "dist":
            return "dist", DMix(self._terms(a) + self._terms(b))
        if op == "mul" and ka == kb == "dist":
            if (
                isinstance(a, DVar)
                and isinstance(b, DVar)
                and a.joint == b.joint
                and {a.var, b.var} == {0, 1}
            ):
                return "dist", DProd(a.joint)
            self.fail(
                node,
                "a product of distributions must be the two marginals of one "
                "joint table, such as X * Y (p(x) p(y))",
            )
        if op == "mul" and {ka, kb} == {"scalar", "dist"}:
            w, d = (a, b) if ka == "scalar" else (b, a)
            return "dist", DMix(tuple((Op("mul", (w, t_w)), t_d) for t_w, t_d in self._terms(d)))
        if op == "div" and ka == "dist" and kb == "scalar":
            return "dist", DMix(tuple((Op("div", (t_w, b)), t_d) for t_w, t_d in self._terms(a)))
        self.fail(
            node,
            f"cannot {'combine' if op != 'sub' else 'subtract'} a "
            f"{'distribution' if ka == 'dist' else 'number'} and a "
            f"{'distribution' if kb == 'dist' else 'number'} with "
            f"'{_SYMBOL[op]}'; "
            "a mixture is written w1 * p + w2 * q",
        )

    @staticmethod
    def _terms(d):
        return d.terms if isinstance(d, DMix) else ((Num(sp.Integer(1)), d),)

    def visit_Compare(self, node, depth):
        self.fail(
            node, "comparisons are only allowed at the top of an identity (lhs == rhs, lhs >= rhs)"
        )

    def visit_Call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only the language's functions can be called")
        name = node.func.id
        if node.keywords:
            self.fail(node, f"{name}() takes no keyword arguments")
        if name in OPTIMIZERS:
            self.fail(
                node,
                f"{name}(objective, q) is a whole quantity; it cannot be part of an expression",
            )
        if name in SCALAR_FUNCTIONS:
            if len(node.args) != 1:
                self.fail(node, f"{name}() takes 1 argument, got {len(node.args)}")
            kind, arg = self.value(node.args[0], depth)
            if name != "sum":
                return kind, Op(name, (arg,))
            if kind != "vector":
                self.fail(
                    node, "sum() adds up the entries of a vector; its argument has no vector symbol"
                )
            return "scalar", Op("sum", (arg, Num(self.size(node, arg))))
        rule = INFO_FUNCTIONS.get(name)
        if rule is None:
            if name in self.names.distributions or name in self.names.symbols:
                self.fail(node, f"'{name}' is not a function")
            every = list(INFO_FUNCTIONS) + list(SCALAR_FUNCTIONS) + list(OTHER_FUNCTIONS)
            self.fail(
                node,
                f"unknown function '{name}'{did_you_mean(name, every)}; one of: {', '.join(every)}",
            )
        n_dist, n_scalar, usage = rule
        n_args = len(node.args)
        if n_args - n_scalar not in n_dist:
            self.fail(
                node, f"{name}() takes {usage}; got {n_args} argument{'s' if n_args != 1 else ''}"
            )
        dnodes = node.args[: n_args - n_scalar]
        if (
            name == "entropy"
            and len(dnodes) == 1
            and isinstance(dnodes[0], ast.BinOp)
            and isinstance(dnodes[0].op, ast.BitOr)
        ):
            args = (self._conditional(dnodes[0], depth),)
        elif name == "entropy" and len(dnodes) == 2 or name == "mutual_information":
            args = (self._pair(node, dnodes, depth, name),)
        else:
            args = tuple(self.dist(a, depth, name) for a in dnodes)
        scalars = tuple(self.scalar(a, depth) for a in node.args[n_args - n_scalar :])
        return "scalar", Info(name, args + scalars, self.source(node), self.at(node))

    def _variable(self, node, depth, fn) -> DVar:
        d = self.dist(node, depth, fn)
        if not isinstance(d, DVar):
            self.fail(
                node,
                f"{fn}() here takes the variables of a joint table "
                f"({', '.join(self.names.variables) or 'none declared'})",
            )
        return d

    def _pair(self, node, dnodes, depth, fn) -> DPair:
        a, b = (self._variable(x, depth, fn) for x in dnodes)
        if a.joint != b.joint or a.var == b.var:
            self.fail(node, f"{fn}() needs the two variables of one joint table")
        # both are symmetric: entropy(Y, X) = entropy(X, Y) and I(Y; X) = I(X; Y), so
        # either order names the same value of the table
        return DPair(a.joint)

    def _conditional(self, node, depth) -> DCond:
        a = self._variable(node.left, depth, "entropy")
        b = self._variable(node.right, depth, "entropy")
        if a.joint != b.joint or a.var == b.var:
            self.fail(node, "entropy(Y | X) needs the two variables of one joint table")
        return DCond(a.joint, a.var)


def _names(tree, names: Names) -> set:
    """The vector symbols' names in a scalar tree."""
    if isinstance(tree, Num):
        return {str(x) for x in tree.value.free_symbols if str(x) in (names.vectors or {})}
    if isinstance(tree, Op):
        return set().union(*[_names(a, names) for a in tree.args])
    return set()


def parse_statement(
    text, where: str, loc, names: Names, col_shift=0, locate=None, relations=("==", ">=", "<=")
) -> Statement:
    """A quantity (``relations=()``) or an identity ``lhs == rhs`` / ``lhs >= rhs``."""
    text = expression_text(text, where, loc)  # the same checks as every expression
    locator = _Locator(text, loc, col_shift, locate)
    try:
        tree = ast.parse(locator.stripped, mode="eval").body
    except SyntaxError as exc:
        index = (
            locator.index(exc.lineno or 1, exc.offset - 1, col_in_bytes=False)
            if exc.offset
            else len(locator.stripped)
        )
        raise SpecError(f"syntax error in {where}: {exc.msg}", locator.at(index)) from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError(f"{where} cannot be parsed (too deeply nested?)", loc) from None
    walker = _Walker(text, where, locator, names)
    start = walker.at(tree)
    try:
        if isinstance(tree, ast.Compare):
            if not relations:
                walker.fail(
                    tree,
                    "a quantity is an expression, not a comparison; list "
                    "equations under identities",
                )
            if len(tree.ops) != 1 or type(tree.ops[0]) not in _RELATIONS:
                walker.fail(
                    tree, "an identity is one comparison: lhs == rhs, lhs >= rhs or lhs <= rhs"
                )
            lhs = walker.scalar(tree.left, 0, "an expression")
            rhs = walker.scalar(tree.comparators[0], 0, "an expression")
            return Statement(_RELATIONS[type(tree.ops[0])], lhs, rhs, locator.stripped, start)
        if relations:
            walker.fail(tree, "an identity needs '==' (or '>=', '<=' for an inequality)")
        if (
            isinstance(tree, ast.Call)
            and isinstance(tree.func, ast.Name)
            and tree.func.id in OPTIMIZERS
        ):
            return Statement("", _argmin(walker, tree, locator), None, locator.stripped, start)
        return Statement("", walker.scalar(tree, 0, "an expression"), None, locator.stripped, start)
    except RecursionError:
        raise SpecError(f"{where} is nested too deeply", loc) from None


def _argmin(walker, node, locator) -> ArgMin:
    name = node.func.id
    verb = {"min": "minimize", "max": "maximize"}[OPTIMIZERS[name]]
    if len(node.args) != 2 or node.keywords:
        walker.fail(
            node,
            f"{name}() takes {name}(objective, q): an expression and the "
            f"symbolic categorical to {verb} over",
        )
    objective = walker.scalar(node.args[0], 1, "an expression")
    target = node.args[1]
    d = walker.names.distributions.get(target.id) if isinstance(target, ast.Name) else None
    if not isinstance(d, Categorical) or not d.symbolic:
        walker.fail(
            target,
            f"{name}() {verb}s over a symbolic categorical distribution ({{categorical: k}})",
        )
    return ArgMin(objective, target.id, locator.stripped, walker.at(node), OPTIMIZERS[name])
