"""The spec's expressions read a second time, straight into ``jax.numpy``: a reference
that shares nothing with dlsym's parser, SymPy's simplification or the code generator.

Every other check differentiates the objective as dlsym parsed it, so a parse that
changes the function (SymPy folding ``x - x`` to a shapeless 0, so that ``sum(x**0)``
was 1) would pass them all: derived result and reference come from the same wrong
expression. This reader walks the text's Python syntax tree (already checked by
``dlsym.expr._parse``'s allow-list; nothing here evaluates text) and calls the NumPy
function each name means, one row per name in ``_CALLS``. A name it does not know
(convolutions, the gradient helpers) means no such check, never a guess.
"""

from __future__ import annotations

import ast
import operator


class NotRead(Exception):
    """The text uses something this reader does not implement: no check from it."""


def _reduction(name):
    def call(jnp, a, axis=None, keepdims=False):
        return getattr(jnp, name)(a, axis=_axis(axis), keepdims=bool(keepdims))

    return call


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _logsumexp(jnp, a, axis=None, keepdims=False):
    from jax.scipy.special import logsumexp

    return logsumexp(a, axis=_axis(axis), keepdims=bool(keepdims))


def _nn(name):
    def call(jnp, a, axis=-1):
        import jax

        return getattr(jax.nn, name)(a, axis=axis)

    return call


def _norm(jnp, a, ord=None, axis=None, keepdims=False):  # ord: 2 or None (the parser's)
    if axis is None:  # every entry: the Frobenius norm of a matrix, the 2-norm of a vector
        return jnp.sqrt(jnp.sum(a * a))
    return jnp.linalg.norm(a, axis=_axis(axis), keepdims=bool(keepdims))


def _erf(jnp, a):
    from jax.scipy.special import erf

    return erf(a)


def _heaviside(jnp, x, h0):
    return jnp.where(x > 0, 1.0, jnp.where(x < 0, 0.0, h0))


def _shape(dims):
    return tuple(int(d) for d in dims) if isinstance(dims, (list, tuple)) else (int(dims),)


def _pad(jnp, a, widths, mode="constant"):
    if isinstance(widths, (int, float)):
        widths = int(widths)
    elif widths and not isinstance(widths[0], (list, tuple)):
        widths = tuple(int(w) for w in widths)
    else:
        widths = tuple(tuple(int(w) for w in pair) for pair in widths)
    return jnp.pad(a, widths, mode=mode)


def _onehot(jnp, ids, k):
    import jax

    return jax.nn.one_hot(jnp.asarray(ids).astype(int), int(k))


def _per_axis(value, n: int) -> tuple:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * n


def _conv(n: int):
    """``torch.nn.functional.conv{n}d`` without bias (NCHW / OIHW; NCL / OIL), by
    ``jax.lax.conv_general_dilated``; ``padding`` a number, a tuple, 'valid' or 'same'."""

    def call(jnp, x, k, stride=1, padding=0, dilation=1):
        import jax

        dilation = _per_axis(dilation, n)
        if padding == "valid":
            padding = 0
        if padding == "same":  # d (k - 1) zeros per axis, the odd one after (PyTorch's)
            total = [d * (size - 1) for d, size in zip(dilation, k.shape[2:])]
            pads = [(t // 2, t - t // 2) for t in total]
        else:
            pads = [(p, p) for p in _per_axis(padding, n)]
        layout = ("NCH", "OIH", "NCH") if n == 1 else ("NCHW", "OIHW", "NCHW")
        return jax.lax.conv_general_dilated(
            x, k, _per_axis(stride, n), pads, rhs_dilation=dilation, dimension_numbers=layout
        )

    return call


def _pool(kind: str):
    """``torch.nn.functional.{max,avg}_pool2d`` (square windows over the last two axes,
    padding -inf for max and zeros counted in the divisor for avg), by
    ``jax.lax.reduce_window``."""

    def call(jnp, x, k, stride=None, padding=0):
        import jax

        k = _per_axis(k, 2)[0]
        s = k if stride is None else _per_axis(stride, 2)[0]
        p = _per_axis(padding, 2)[0]
        lead = x.ndim - 2
        window, strides = (1,) * lead + (k, k), (1,) * lead + (s, s)
        pads = ((0, 0),) * lead + ((p, p), (p, p))
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads) / (k * k)

    return call


# name -> (jax.numpy, *arguments, **keywords) -> array: NumPy's meaning of each function
# of the expression language (shared/spec-format.md), written from NumPy's documentation
_CALLS = {
    "sum": _reduction("sum"),
    "mean": _reduction("mean"),
    "max": _reduction("max"),
    "min": _reduction("min"),
    "var": _reduction("var"),
    "std": _reduction("std"),
    "logsumexp": _logsumexp,
    "log": lambda jnp, a: jnp.log(a),
    "exp": lambda jnp, a: jnp.exp(a),
    "sqrt": lambda jnp, a: jnp.sqrt(a),
    "abs": lambda jnp, a: jnp.abs(a),
    "sin": lambda jnp, a: jnp.sin(a),
    "cos": lambda jnp, a: jnp.cos(a),
    "tanh": lambda jnp, a: jnp.tanh(a),
    "atan": lambda jnp, a: jnp.arctan(a),
    "erf": _erf,
    "sigmoid": lambda jnp, a: 1 / (1 + jnp.exp(-a)),
    "softplus": lambda jnp, a: jnp.logaddexp(a, 0.0),
    "relu": lambda jnp, a: jnp.maximum(a, 0.0),
    "log1p": lambda jnp, a: jnp.log1p(a),
    "expm1": lambda jnp, a: jnp.expm1(a),
    "logaddexp": lambda jnp, a, b: jnp.logaddexp(a, b),
    "softmax": _nn("softmax"),
    "log_softmax": _nn("log_softmax"),
    "norm": _norm,
    "trace": lambda jnp, a: jnp.trace(a),
    "det": lambda jnp, a: jnp.linalg.det(a),
    "logdet": lambda jnp, a: jnp.log(jnp.linalg.det(a)),
    "inv": lambda jnp, a: jnp.linalg.inv(a),
    "diag": lambda jnp, a: jnp.diag(a),
    "outer": lambda jnp, a, b: jnp.outer(a, b),
    "dot": lambda jnp, a, b: jnp.dot(a, b),
    "onehot": _onehot,
    "ones": lambda jnp, dims: jnp.ones(_shape(dims)),
    "zeros": lambda jnp, dims: jnp.zeros(_shape(dims)),
    "eye": lambda jnp, n: jnp.eye(int(n)),
    "transpose": lambda jnp, a, axes=None: jnp.transpose(a, _axis(axes)),
    "swapaxes": lambda jnp, a, i, j: jnp.swapaxes(a, int(i), int(j)),
    "expand_dims": lambda jnp, a, axis: jnp.expand_dims(a, _axis(axis)),
    "reshape": lambda jnp, a, shape: jnp.reshape(a, _shape(shape)),
    "pad": _pad,
    "concatenate": lambda jnp, parts, axis=0: jnp.concatenate(parts, axis=axis),
    "stack": lambda jnp, parts, axis=0: jnp.stack(parts, axis=axis),
    "take_along_axis": lambda jnp, a, ids, axis: jnp.take_along_axis(
        a, jnp.asarray(ids).astype(int), axis=int(axis)
    ),
    "einsum": lambda jnp, subscripts, *xs: jnp.einsum(subscripts, *xs),
    "maximum": lambda jnp, a, b: jnp.maximum(a, b),
    "minimum": lambda jnp, a, b: jnp.minimum(a, b),
    "clip": lambda jnp, a, lo, hi: jnp.clip(a, lo, hi),
    "heaviside": _heaviside,
    "where": lambda jnp, cond, a, b: jnp.where(cond, a, b),
    "conv1d": _conv(1),
    "conv2d": _conv(2),
    "max_pool2d": _pool("max"),
    "avg_pool2d": _pool("avg"),
}
# the language's functions this reader leaves out: the moments (a random spec's, checked
# by enumeration or Monte Carlo) and the operations gradients are written in (results,
# not objectives); a spec that uses one gets no check from its text
NOT_READ = frozenset(
    {
        "expect",
        "variance",
        "covariance",
        "conv1d_input_grad",
        "conv2d_input_grad",
        "conv1d_kernel_grad",
        "conv2d_kernel_grad",
        "max_pool2d_mask",
        "unpool2d",
        "max_pool2d_input_grad",
        "max_pool2d_gather",
    }
)
# NumPy's positional keywords (``sum(x, 1)`` is ``sum(x, axis=1)``) need no table: the
# functions above take them in NumPy's order

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
}
_COMPARE = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_CONSTANTS = {"pi": 3.141592653589793, "e": 2.718281828459045}


def _call(node, name: str):
    """``node``'s arguments if it calls ``name`` with one positional argument, else None."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name and node.args:
        return node.args
    return None


def _one_plus(node):
    """``a`` where ``node`` is ``1 + a`` or ``a + 1``, else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        for one, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(one, ast.Constant) and one.value == 1:
                return other
    return None


def _one_minus(node):
    """``a`` where ``node`` is ``1 - a``, else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        if isinstance(node.left, ast.Constant) and node.left.value == 1:
            return node.right
    return None


class _Reader:
    """Reads one spec's trees. Where the text is a formula a careful NumPy user would not
    evaluate as written (log of a sigmoid, 1 - sigmoid(z), log(sum(exp(z)))) it computes
    the same function the careful way, as dlsym's own reference does
    (``dlsym.codegen._stable``): exact rewrites, so the check still compares the
    function the text means, and one that stays finite and accurate where the naive
    formula is log(0) or 1 - (1 - 1e-13)."""

    def __init__(self, jnp, names: dict, trees: dict):
        self.jnp = jnp
        self.names = names  # symbols (arrays), dims (ints), defines read so far
        self.trees = trees  # the defines' trees, to see through a name to its formula

    def look(self, node):
        """``node``, or the formula of the define it names (``log(p)`` with ``p:
        sigmoid(z)`` is ``log(sigmoid(z))``)."""
        while isinstance(node, ast.Name) and node.id in self.trees:
            node = self.trees[node.id].body
        return node

    def _log(self, node):
        import jax

        arg = self.look(node.args[0])
        inner = _call(arg, "sigmoid")
        if inner:  # log(sigmoid(z)) = -softplus(-z)
            return -jax.nn.softplus(-self.read(inner[0]))
        inner = _call(self.look(_one_minus(arg)), "sigmoid")
        if inner:  # log(1 - sigmoid(z)) = -softplus(z)
            return -jax.nn.softplus(self.read(inner[0]))
        if _call(arg, "softmax"):  # log(softmax(z)) = log_softmax(z)
            return self._Call(ast.Call(ast.Name("log_softmax"), arg.args, arg.keywords))
        inner = _call(arg, "sum")
        if inner and _call(self.look(inner[0]), "exp"):  # log(sum(exp(z))) = logsumexp(z)
            exp_arg = _call(self.look(inner[0]), "exp")
            return self._Call(
                ast.Call(ast.Name("logsumexp"), [exp_arg[0], *arg.args[1:]], arg.keywords)
            )
        rest = _one_plus(arg)
        if rest is not None:
            inner = _call(self.look(rest), "exp")
            if inner:  # log(1 + exp(z)) = softplus(z)
                return jax.nn.softplus(self.read(inner[0]))
            return self.jnp.log1p(self.read(rest))
        return self.jnp.log(self.read(node.args[0]))

    def read(self, node):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise NotRead(type(node).__name__)
        return method(node)

    def _Expression(self, node):
        return self.read(node.body)

    def _Constant(self, node):
        # numbers; einsum's subscripts; keepdims=True; None and ... inside an index
        if not (isinstance(node.value, (int, float, str)) or node.value in (None, Ellipsis)):
            raise NotRead(repr(node.value))
        return node.value

    def _Name(self, node):
        if node.id in self.names:
            return self.names[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise NotRead(node.id)

    def _BinOp(self, node):
        inner = _call(self.look(_one_minus(node)), "sigmoid")
        if inner:  # 1 - sigmoid(z) = sigmoid(-z), without the cancellation
            return _CALLS["sigmoid"](self.jnp, -self.read(inner[0]))
        a, b = self.read(node.left), self.read(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(a, int) and isinstance(b, int) and b < 0:
            a = float(a)  # 2**-1 is 0.5, as SymPy reads it
        return _BINARY[type(node.op)](a, b)

    def _UnaryOp(self, node):
        value = self.read(node.operand)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        raise NotRead(type(node.op).__name__)

    def _Compare(self, node):
        if len(node.ops) != 1:
            raise NotRead("chained comparison")
        return _COMPARE[type(node.ops[0])](self.read(node.left), self.read(node.comparators[0]))

    def _Attribute(self, node):
        if node.attr != "T":
            raise NotRead(node.attr)
        return self.jnp.asarray(self.read(node.value)).T

    def _Tuple(self, node):
        return tuple(self.read(e) for e in node.elts)

    def _List(self, node):
        return [self.read(e) for e in node.elts]

    def _Slice(self, node):
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else int(self.read(p)) for p in parts))

    def _Subscript(self, node):
        base = self.read(node.value)
        index = self.read(node.slice)
        return base[index if isinstance(index, tuple) else (index,)]

    def _Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in _CALLS:
            raise NotRead(getattr(node.func, "id", "call"))
        if node.func.id == "log" and len(node.args) == 1:
            return self._log(node)
        args = [self.read(a) for a in node.args]
        kwargs = {k.arg: self.read(k.value) for k in node.keywords}
        return _CALLS[node.func.id](self.jnp, *args, **kwargs)


def text_reader(texts: dict, target: str, symbols: list, dims: dict):
    """A function of the ``symbols`` (names, in order) that computes the expression
    ``target`` from the ``texts`` ({name: text}: the defines, in an order where each
    comes after the ones it uses, and the target) at the sizes ``dims`` ({name: int}).
    ``NotRead`` where a text uses a function this module does not implement."""
    import jax.numpy as jnp

    trees = {name: ast.parse(text.strip(), mode="eval") for name, text in texts.items()}
    for tree in trees.values():  # every name known before any point is drawn
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) not in _CALLS:
                raise NotRead(getattr(node.func, "id", "call"))

    def evaluate(*xs):
        names = {**dims, **dict(zip(symbols, xs))}
        r = _Reader(jnp, names, trees)
        for name, tree in trees.items():
            names[name] = r.read(tree)
        return jnp.asarray(names[target], dtype=float)

    return evaluate
