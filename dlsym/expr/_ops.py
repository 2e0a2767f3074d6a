"""The tensor operations of the expression language, as SymPy classes with shapes.

Design: a vector or matrix symbol is an ordinary *commutative* SymPy ``Symbol``
whose shape lives in a side table. ``+ - * / **`` and the elementwise functions
(``exp``, ``log``, ``tanh``...) are SymPy's own scalar classes, read with NumPy's
elementwise semantics; every SymPy identity for scalars (``x*x = x**2``,
``log(exp(x)) = x``, cancelling) then holds entry by entry, so SymPy's scalar
simplifier is safe to use. Everything that is *not* elementwise (matrix product,
transpose, reductions, softmax, ...) is one of the opaque ``Function`` subclasses
below, which SymPy's algebra cannot look inside. Each carries its shape rule.

We deliberately avoid SymPy's ``MatrixSymbol`` algebra: its derivatives are
unreliable (sympy#28618, #26585, #16588, see shared/field-notes.md).
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr._elementwise import (  # noqa: F401 (ops.sigmoid & co. are read from here too)
    ELEMENTWISE,
    elementwise_derivative,
    relu,
    sigmoid,
    softplus,
    step,
)
from dlsym.expr._piecewise import (  # noqa: F401 (ops.maximum & co. are read from here too)
    COMPARISONS,
    clip,
    heaviside,
    maximum,
    minimum,
    where,
)
from dlsym.expr._shapes import (  # noqa: F401 (ops.broadcast & co. are read from here too)
    Shape,
    ShapeError,
    broadcast,
    fmt_shape,
    size,
    unbroadcast_axes,
)


class TensorOp(sp.Function):
    """Base of the opaque, non-elementwise operations. ``static`` lists the positions of
    arguments that are not tensors (axes, dims, indices: shape () and never
    differentiated); "all" when every argument is (``ones(m, n)``)."""

    static: tuple | str = ()

    def _eval_is_real(self):
        return True

    def _eval_evalf(self, prec):
        # no number: SymPy would look the name up in mpmath, where ones(2) is a matrix
        # (TypeError inside an assumption query on lam + ones(2) * s, an ill-placed
        # "infinite at the spec's dims" that depended on PYTHONHASHSEED)
        return None

    @classmethod
    def result_shape(cls, args: tuple, shapes: tuple) -> Shape:
        raise NotImplementedError


def _square(name: str, s: Shape, arg=None) -> None:
    if name in ("inv", "logdet") and isinstance(arg, zeros):
        raise ShapeError(
            f"{name} of a matrix that simplifies to 0 (such as 0 * eye(n) or A - A), which is "
            "singular"
        )
    if len(s) != 2 or s[0] != s[1]:
        if arg is not None and arg == 0:  # 0 * eye(n), A - A: SymPy keeps the number 0
            singular = ", which is singular" if name in ("inv", "logdet") else ""
            raise ShapeError(
                f"{name} of a matrix that simplifies to 0 (such as 0 * eye(n) or A - A){singular}"
            )
        raise ShapeError(f"{name} needs a square matrix, got a {fmt_shape(s)}")


def checked_axes(args, shape, name):
    """The reduced axes of a reduction as a sorted tuple (an ``axis=`` int or tuple), or
    None for all entries."""
    if len(args) < 2:
        return None
    raw = args[1]
    axes = tuple(int(a) for a in raw) if isinstance(raw, sp.Tuple) else (int(raw),)
    for axis in axes:
        if not -len(shape) <= axis < len(shape):
            raise ShapeError(f"axis {axis} is out of range for a {fmt_shape(shape)} in {name}")
    out = tuple(sorted({a % len(shape) for a in axes}))
    if len(out) != len(axes):
        raise ShapeError(f"axis {tuple(axes)} repeats an axis in {name}")
    return out


def reduced_axes(e, shape) -> tuple:
    """The axes a reduction ``e`` of an argument of ``shape`` reduces (all by default)."""
    axes = checked_axes(e.args, shape, type(e).__name__)
    return tuple(range(len(shape))) if axes is None else axes


def keepdims(e) -> bool:
    """Whether a reduction keeps its reduced axes with size 1 (``keepdims=True``)."""
    return len(e.args) > 2 and bool(e.args[2])


def keywords(e) -> dict:
    """The keyword arguments of a reduction, a softmax or a maxmask as the language
    writes them: ``{"axis": 1}``, ``{"axis": (0, 1), "keepdims": True}``; empty for the
    defaults."""
    out: dict = {}
    if isinstance(e, (_Reduction, _VectorMap, maxmask)) and len(e.args) > 1:
        ax = e.args[1]
        out["axis"] = tuple(int(a) for a in ax) if isinstance(ax, sp.Tuple) else int(ax)
    if isinstance(e, _Reduction) and keepdims(e):
        out["keepdims"] = True
    return out


class matmul(TensorOp):
    """``numpy.matmul``: vectors and matrices, and stacks of matrices (rank 3 and more),
    whose leading axes broadcast; a vector operand is promoted and its axis dropped."""

    nargs = 2

    @classmethod
    def result_shape(cls, args, shapes):
        a, b = shapes
        if not a or not b:
            raise ShapeError("'@' needs vectors or matrices on both sides; use '*' for scalars")
        inner_a = a[-1]
        inner_b = b[0] if len(b) == 1 else b[-2]
        if inner_a != inner_b:
            raise ShapeError(
                f"cannot multiply a {fmt_shape(a)} by a {fmt_shape(b)}: "
                f"inner sizes {inner_a} and {inner_b} differ"
            )
        if len(a) <= 2 and len(b) <= 2:
            return tuple(a[:-1]) + tuple(b[1:])
        lead = broadcast(tuple(a[:-2]), tuple(b[:-2]), "matrix-multiply the stacks of")
        rows = tuple(a[-2:-1])
        cols = tuple(b[-1:]) if len(b) > 1 else ()
        return lead + rows + cols


class transpose(TensorOp):
    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        (s,) = shapes
        return tuple(reversed(s))


class _Reduction(TensorOp):
    """``f(a)``, ``f(a, axis)`` or ``f(a, axis, keepdims)``: the axis an Integer or a
    Tuple of them, keepdims 0 or 1 (NumPy's meaning)."""

    nargs = (1, 2, 3)
    static = (1, 2)
    label = "sum"

    @classmethod
    def result_shape(cls, args, shapes):
        (s,) = shapes[:1]
        axes = checked_axes(args, s, cls.label)
        if axes is None:
            axes = tuple(range(len(s)))
        if len(args) > 2 and bool(args[2]):
            return tuple(sp.Integer(1) if i in axes else d for i, d in enumerate(s))
        return tuple(d for i, d in enumerate(s) if i not in axes)


def _reduction_text(self, printer) -> str:
    """As the expression language writes it (sum(x), not SymPy's tsum(x)): the text a
    message puts an expression in (the roots of a stationary condition it lists)."""
    (a, *rest) = self.args
    axis = f", axis={printer._print(rest[0])}" if rest else ""
    keep = ", keepdims=True" if len(rest) > 1 and bool(rest[1]) else ""
    return f"{self.label}({printer._print(a)}{axis}{keep})"


_Reduction._sympystr = _reduction_text


class _Additive(_Reduction):
    """A sum or a mean: positive (nonnegative) where every entry is, since a reduced
    axis has at least one entry (a dim is a positive integer). The exponential MLE
    λ* = n/sum(x) of a positive x showed the condition n/sum(x) > 0."""

    def _eval_is_positive(self):
        return True if self.args[0].is_positive else None

    def _eval_is_nonnegative(self):
        return True if self.args[0].is_nonnegative else None


class tsum(_Additive):
    label = "sum"


class tmean(_Additive):
    label = "mean"


class tmax(_Reduction):
    label = "max"


class tmin(_Reduction):
    label = "min"


class logsumexp(_Reduction):
    label = "logsumexp"


class var(_Reduction):
    """NumPy's variance (``ddof=0``): the mean squared deviation from the mean."""

    label = "var"


class _VectorMap(TensorOp):
    """softmax and log_softmax along one axis (``axis=``, default the last, as
    ``jax.nn``): the shape stays. A vector's is written without the axis."""

    nargs = (1, 2)
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        s = shapes[0]
        if not s:
            raise ShapeError(f"{cls.__name__} needs a vector or a matrix, got a scalar")
        if len(args) > 1:
            checked_axes(args, s, cls.__name__)
        return s


def map_axis(e, shape) -> int:
    """The axis a softmax / log_softmax runs along (the last by default)."""
    return int(e.args[1]) % len(shape) if len(e.args) > 1 else len(shape) - 1


class softmax(_VectorMap):
    pass


class log_softmax(_VectorMap):
    pass


class norm(TensorOp):
    """The 2-norm of a vector, the Frobenius norm of a matrix, |x| of a scalar."""

    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        return ()

    def _eval_is_nonnegative(self):
        return True


class trace(TensorOp):
    nargs = 1

    @classmethod
    def eval(cls, a):
        # tr I_n = n: a Gaussian's KL with itself read (tr(eye(1)) − 1)/2, a number SymPy
        # cannot evaluate (float() of it was an internal error, exit 3)
        if isinstance(a, eye):
            return a.args[0]
        return None

    @classmethod
    def result_shape(cls, args, shapes):
        _square("trace", shapes[0], args[0])
        return ()


class det(TensorOp):
    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        _square("det", shapes[0], args[0])
        return ()


class logdet(TensorOp):
    """log(det(A)) of a matrix with positive determinant (e.g. an SPD matrix)."""

    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        _square("logdet", shapes[0], args[0])
        return ()


class inv(TensorOp):
    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        _square("inv", shapes[0], args[0])
        return shapes[0]


class diag(TensorOp):
    """As NumPy's: a vector becomes a diagonal matrix, a square matrix its diagonal."""

    nargs = 1

    @classmethod
    def result_shape(cls, args, shapes):
        (s,) = shapes
        if len(s) == 1:
            return (s[0], s[0])
        if len(s) == 2:
            _square("diag", s)
            return (s[0],)
        raise ShapeError(f"diag needs a vector or a square matrix, got a {fmt_shape(s)}")


class outer(TensorOp):
    nargs = 2

    @classmethod
    def result_shape(cls, args, shapes):
        a, b = shapes
        if len(a) != 1 or len(b) != 1:
            raise ShapeError(f"outer needs two vectors, got a {fmt_shape(a)} and a {fmt_shape(b)}")
        return (a[0], b[0])


class ones(TensorOp):
    """A tensor of ones; its arguments are its dims."""

    nargs = None
    static = "all"

    @classmethod
    def result_shape(cls, args, shapes):
        return tuple(args)

    def _eval_is_positive(self):
        return True


class zeros(TensorOp):
    """A tensor of zeros; its arguments are its dims. Also what ``x - x`` or ``0 * x``
    is (dlsym.expr._parse keeps the shape SymPy's number 0 would lose)."""

    nargs = None
    static = "all"

    @classmethod
    def result_shape(cls, args, shapes):
        return tuple(args)


class eye(TensorOp):
    """The identity matrix of size n."""

    nargs = 1
    static = "all"

    @classmethod
    def result_shape(cls, args, shapes):
        return (args[0], args[0])


class entry(TensorOp):
    """Plain integer indexing: ``entry(x, i)`` is x[i], ``entry(X, i, j)`` is X[i, j]."""

    nargs = (2, 3)
    static = (1, 2)

    @classmethod
    def result_shape(cls, args, shapes):
        s = shapes[0]
        idx = args[1:]
        if len(idx) > len(s):
            raise ShapeError(f"too many indices ({len(idx)}) for a {fmt_shape(s)}")
        for i, d in zip(idx, s):
            if int(i) < 0:
                raise ShapeError("negative indices are not supported (sizes are symbolic)")
            if d.is_Integer and int(i) >= int(d):
                raise ShapeError(f"index {int(i)} is out of range for size {d}")
        return tuple(s[len(idx) :])


class unit(TensorOp):
    """The standard basis vector e_i of size n (the adjoint of indexing)."""

    nargs = 2
    static = "all"

    @classmethod
    def result_shape(cls, args, shapes):
        return (args[1],)


class gather(TensorOp):
    """``E[ids]``: the rows of ``E`` picked by the labels ``ids`` (``domain: {index: V}``),
    an embedding lookup; shape ``ids.shape + E.shape[1:]``. It is ``onehot(ids, V) E``,
    so its adjoint is ``onehot(ids, V)^T G`` (rows scattered back and added)."""

    nargs = 2

    @classmethod
    def result_shape(cls, args, shapes):
        table, ids = shapes
        if not table:
            raise ShapeError("indexing with labels needs a vector or a matrix to pick from")
        return tuple(ids) + tuple(table[1:])


class onehot(TensorOp):
    """``onehot(ids, k)``: one-hot rows of the class labels ``ids`` (integers 0..k-1,
    ``domain: {index: k}``), shape ``ids.shape + [k]``. Never differentiated."""

    nargs = 2
    static = (1,)

    @classmethod
    def result_shape(cls, args, shapes):
        return tuple(shapes[0]) + (args[1],)

    def _eval_is_nonnegative(self):
        return True


class maxmask(TensorOp):
    """The adjoint share of each entry in a max: ``1/c`` on each of the ``c`` largest
    entries (ties split the gradient equally, as JAX), 0 elsewhere; ``maxmask(a, axis)``
    does this along ``axis`` (an Integer or a Tuple of them), for ``max(a, axis=)``."""

    nargs = (1, 2)
    static = (1,)
    # piecewise constant in its argument (a step where the largest entry changes): a
    # gradient holding it (max(x) + sum(x²): maxmask(x) + 2x) only looks affine
    kinked = True

    @classmethod
    def result_shape(cls, args, shapes):
        return shapes[0]

    def _eval_is_nonnegative(self):
        return True


# The functions with kinks (points where the derivative jumps): verification samples
# points exactly on them too (dlsym.verify._sampling, "kinks")
KINKED = (relu, step, sp.Abs, sp.sign, sp.Heaviside, maximum, minimum, clip, where, tmax, tmin)


def has_kinks(expr) -> bool:
    """Whether ``expr`` holds a function with a kink (``KINKED``, or an operation marked
    ``kinked``, as max pooling in dlsym.expr._conv)."""
    return any(
        isinstance(n, KINKED) or getattr(n, "kinked", False) for n in sp.preorder_traversal(expr)
    )


def product_chain(e) -> list:
    """The factors of a matrix product chain, left to right (``A @ (B @ C)``: A, B, C)."""
    if isinstance(e, matmul):
        return product_chain(e.args[0]) + product_chain(e.args[1])
    return [e]


def static_positions(e):
    """The positions of ``e``'s arguments that are not tensors (see ``TensorOp.static``)."""
    st = getattr(type(e), "static", ())
    return range(len(e.args)) if st == "all" else st


def tensor_symbols(e) -> set:
    """The symbols ``e``'s value depends on: its free symbols less those only in static
    arguments (the dims in ``x[1:n]``)."""
    if e.is_Symbol:
        return {e}
    static = static_positions(e) if isinstance(e, TensorOp) else ()
    return set().union(*(tensor_symbols(a) for i, a in enumerate(e.args) if i not in static))


def distinct_parts(e):
    """Every subexpression of ``e`` once, ``e`` first: a walk of its DAG. A chain of
    defines written out shares each layer between its terms, so SymPy's tree walks
    (``atoms``, ``has``) visit it exponentially often (80 tanh layers: 175 million
    visits in the reality checks of a result). Keyed by id, as ``ByIdentity``."""
    seen: set = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(getattr(x, "args", ()))


class ByIdentity:
    """A memo of a function of expressions, keyed by the object rather than its value.

    SymPy hashes a rational by its numerator and denominator as Python ints, and an
    int's hash is taken modulo 2**61 - 1: 2**k and 2**(k + 61) hash alike, and so do
    the sums holding them. A chain of halvings (``a_i = a_{i-1}/2 + x``, 3000 defines)
    puts its 3000 sums into 61 buckets of a value-keyed dict, and every lookup of a new
    one compared it with ~50 others: a third of the derivation's time. Keyed by ``id``,
    with the object kept alive so that its id is never reused; an equal expression
    built twice is computed twice, its shared subtrees still found."""

    __slots__ = ("_values",)

    def __init__(self):
        self._values: dict = {}

    def get(self, e, compute):
        hit = self._values.get(id(e))
        if hit is not None:
            return hit[1]
        value = compute(e)
        self._values[id(e)] = (e, value)
        return value


class ShapeTable:
    """Shape inference for any expression over symbols with known shapes."""

    def __init__(self, symbol_shapes: dict):
        self.symbols = dict(symbol_shapes)
        self._memo = ByIdentity()

    def extended(self, symbol_shapes: dict) -> ShapeTable:
        """A new table that also knows ``symbol_shapes``. Tables are never changed in
        place: a memoised shape must not go stale when a symbol is added later."""
        return ShapeTable({**self.symbols, **symbol_shapes})

    def declare(self, symbol, shape) -> None:
        """Add a symbol that no expression seen so far holds: a define's name, declared
        once its body is parsed and before anything uses it. No memoised shape can go
        stale, and a spec of n defines is read without n copies of the table."""
        if symbol in self.symbols:
            raise ValueError(f"{symbol} is declared already")
        self.symbols[symbol] = shape

    def __call__(self, expr) -> Shape:
        return self._memo.get(expr, self._infer)

    def _infer(self, expr) -> Shape:
        if expr.is_Symbol:
            return self.symbols.get(expr, ())
        if expr.is_Number or expr.is_NumberSymbol or not expr.args:
            return ()
        if isinstance(expr, TensorOp):
            static = static_positions(expr)
            shapes = tuple(() if i in static else self(a) for i, a in enumerate(expr.args))
            return type(expr).result_shape(expr.args, shapes)
        shape: Shape = ()
        for a in expr.args:
            shape = broadcast(shape, self(a))
        return shape
