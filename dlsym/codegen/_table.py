"""The one operation table of dlsym's code generator: one row per operation.

A row gives the code for NumPy and for JAX. A code is either the callable to apply
(``np.exp``: printed ``np.exp(x)``) or, when it holds ``{``, a template filled with the
printed arguments (``{0}``, ``{1}``, ...; ``{args}`` all of them joined, ``{rest}`` all
but the first). A code naming a helper (``_sigmoid``) comes with the helper's source,
written once for both backends with ``XP.`` for the array module; the generated code
defines a helper only where it uses it. The module names here (``np``, ``jax``, ...) are
the plain ones; ``_names.Names`` renames them where a spec takes them. ``dlsym codegen`` modules, ``Derivation.function``,
verification and every other numeric evaluation in dlsym print from this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlsym.codegen._conv_code import CONV_HELPERS, CONV_ROWS

BACKENDS = ("numpy", "jax")


@dataclass(frozen=True)
class Op:
    numpy: str
    jax: str
    helper: str = ""  # source of the `_name` function a code above calls
    # how template arguments are parenthesized: "operand" (``(a + b) @ c``), "postfix"
    # (``(a @ b).T``, ``(a + b)[0]``) or "" (arguments of a call need none)
    wrap: str = ""

    def code(self, backend: str) -> str:
        return self.numpy if backend == "numpy" else self.jax


def _same(code: str, helper: str = "", wrap: str = "") -> Op:
    """A row whose JAX code is its NumPy code with ``np.`` as ``jnp.``."""
    return Op(code, code.replace("np.", "jnp."), helper, wrap)


SIGMOID = """def _sigmoid(x):
    # 1 / (1 + exp(-x)), accurate and finite for any x
    return XP.exp(-XP.logaddexp(0.0, -x))
"""
SOFTPLUS = """def _softplus(x):
    # log(1 + exp(x)) without overflow
    return XP.logaddexp(0.0, x)
"""
RELU = "def _relu(x):\n    return XP.maximum(x, 0.0)\n"
STEP = "def _step(x):\n    return (x > 0) * 1.0\n"
SOFTMAX = """def _softmax(z, axis=-1):
    e = XP.exp(z - XP.max(z, axis=axis, keepdims=True))
    return e / XP.sum(e, axis=axis, keepdims=True)
"""
LOGSUMEXP = """def _logsumexp(z, axis=None, keepdims=False):
    m = XP.max(z, axis=axis, keepdims=True)
    out = XP.log(XP.sum(XP.exp(z - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return out
    return XP.squeeze(out, axis=axis) if axis is not None else out.reshape(())
"""
LOG_SOFTMAX = """def _log_softmax(z, axis=-1):
    return z - _logsumexp(z, axis=axis, keepdims=True)
"""
LOGDET = "def _logdet(a):\n    return XP.linalg.slogdet(a)[1]\n"
MAXMASK = """def _maxmask(a, axis=None):
    # 1/c on each of the c largest entries (of each slice along axis): ties split the
    # adjoint equally, as jax.grad of jnp.max does
    hit = (a == XP.max(a, axis=axis, keepdims=True)) * 1.0
    return hit / XP.sum(hit, axis=axis, keepdims=True)
"""
ABS = """def _abs(x):
    # |x| whose autodiff gives sign(x), so 0 at 0 (jnp.abs's gives 1 there): dlsym's kink
    # convention abs'(0) = sign(0) = 0, which the JAX reference of verification must share
    return x * XP.sign(x)
"""
COORD_SUM = """def _coord_sum(body, k):
    # information theory's sum over k coordinates, the last axis (leading axes are a
    # batch); a term free of vectors counts k times
    b = XP.asarray(body)
    if b.ndim == 0 or b.shape[-1] != k:
        b = b[..., None]
    return XP.sum(XP.broadcast_to(b, b.shape[:-1] + (k,)), axis=-1)
"""
# A^T diag(v) A by symmetric blocks: 2.3x faster than jax.hessian for the logistic
# Hessian at n = 1000, where the plain product reaches 1.9x (bench/codegen_speed.py)
SCATTER = """def _scatter(g, index, shape):
    # zeros with g at a basic index (the adjoint of indexing); JAX's arrays are immutable
    out = XP.zeros(shape, dtype=XP.result_type(g, 0.0))
    if hasattr(out, "at"):
        return out.at[index].set(g)
    out[index] = g
    return out
"""
PUT_ALONG = """def _put_along(g, ids, axis, n):
    # each entry of g added back at its label along `axis` (of size n): the adjoint of
    # take_along_axis, as a one-hot product (no Python loop, repeated labels add up)
    hot = XP.moveaxis(ids, axis, -1)[..., None] == XP.arange(n)
    back = XP.sum(XP.moveaxis(g, axis, -1)[..., None] * hot, axis=-2)
    return XP.moveaxis(back, -1, axis)
"""
UNITS = """def _units(shape, dtype):
    # the unit arrays of a space of this shape, one per entry
    n = 1
    for d in shape:
        n *= d
    return XP.eye(n, dtype=dtype).reshape((n,) + tuple(shape))
"""
GRAM = """def _gram(a, v=None, block=256):
    # a.T @ diag(v) @ a is symmetric: compute the blocks on and above the diagonal only
    # and mirror the rest (about 5/8 of the flops at n = 1000, half for large n)
    at = a.T * v if v is not None else a.T
    n = a.shape[1]
    if n <= block:
        return at @ a
    edges = list(range(0, n, block)) + [n]
    k = len(edges) - 1
    upper = {(i, j): at[edges[i]:edges[i + 1]] @ a[:, edges[j]:edges[j + 1]]
             for i in range(k) for j in range(i, k)}
    return XP.block([[upper[(i, j)] if j >= i else upper[(j, i)].T for j in range(k)]
                     for i in range(k)])
"""

# name -> row. Names are SymPy class names (``Abs``, ``tsum``, ``maximum``), except ``pi``,
# ``e``, ``inf`` and ``nan`` (the constants), and ``sqrt``, ``gram`` and ``broadcast_to``, which the
# printer emits for x**(1/2), Gram products and results broadcast to their declared
# shape; SymPy's own ``Max`` and ``Min`` print through ``maximum`` and ``minimum``.
OPS = {
    # tensor operations
    "matmul": _same("{0} @ {1}", wrap="operand"),
    "transpose": _same("{0}.T", wrap="postfix"),
    "entry": _same("{0}[{rest}]", wrap="postfix"),
    "tsum": _same("np.sum"),
    "tmean": _same("np.mean"),
    "tmax": _same("np.max"),
    "tmin": _same("np.min"),
    "logsumexp": Op("_logsumexp", "jax.scipy.special.logsumexp", LOGSUMEXP),
    "softmax": Op("_softmax", "jax.nn.softmax", SOFTMAX),
    "log_softmax": Op("_log_softmax", "jax.nn.log_softmax", LOG_SOFTMAX),
    "norm": _same("np.linalg.norm"),
    "trace": _same("np.trace"),
    "det": _same("np.linalg.det"),
    "logdet": _same("_logdet", LOGDET),
    "inv": _same("np.linalg.inv"),
    "diag": _same("np.diag"),
    "outer": _same("np.outer"),
    "ones": _same("np.ones(({args},))"),
    "eye": _same("np.eye({0})"),
    "unit": _same("np.eye({1})[{0}]"),
    "onehot": Op("np.eye({1})[{0}]", "jax.nn.one_hot({0}, {1})"),
    "gather": _same("{0}[{1}]", wrap="postfix"),
    # a Hessian or Jacobian from its action at each unit direction ({0}: the action's
    # function, {1}: its arguments, {2}: the directions' shape, {3}: the result's shape,
    # {4}: an array of the dtype), laid out as jax.hessian's / jax.jacobian's
    "by_directions": Op(
        "np.stack([{0}({1}, _e) for _e in _units({2}, {4}.dtype)]).reshape({3})",
        "jax.vmap(lambda _e: {0}({1}, _e))(_units({2}, {4}.dtype)).reshape({3})",
        UNITS,
    ),
    "maxmask": _same("_maxmask", MAXMASK),
    "var": _same("np.var"),
    "zeros": _same("np.zeros(({args},))"),
    "expand_dims": _same("np.expand_dims({0}, {1})"),
    "permute": _same("np.transpose({0}, {1})"),
    "reshape": _same("np.reshape({0}, {1})"),
    "scatter": _same("_scatter({0}, np.s_[{1}], {2})", SCATTER),
    "concatenate": _same("np.concatenate([{rest}], axis={0})"),
    "stack": _same("np.stack([{rest}], axis={0})"),
    "take_along_axis": _same("np.take_along_axis({0}, {1}, axis={2})"),
    "put_along_axis": _same("_put_along", PUT_ALONG),
    # NumPy's einsum calls BLAS only when asked to optimize; JAX's always does
    "einsum": Op("np.einsum({0}, {rest}, optimize=True)", "jnp.einsum({0}, {rest})"),
    "gram": _same("_gram", GRAM),
    "broadcast_to": _same("np.broadcast_to"),
    # elementwise functions
    "exp": _same("np.exp"),
    "log": _same("np.log"),
    "sqrt": _same("np.sqrt"),
    "Abs": Op("np.abs", "_abs", ABS),
    "sign": _same("np.sign"),
    "sin": _same("np.sin"),
    "cos": _same("np.cos"),
    "tanh": _same("np.tanh"),
    # not in the language: sympy.diff writes tanh' as 1/cosh² in explicit entries
    "cosh": _same("np.cosh"),
    "sinh": _same("np.sinh"),
    "atan": _same("np.arctan"),
    "log1p": _same("np.log1p"),
    "expm1": _same("np.expm1"),
    "erf": Op("scipy.special.erf", "jax.scipy.special.erf"),
    # not in the language: 1 ± erf(u) of a closed form, where erf(u) is near ∓1 (_stable)
    "erfc": Op("scipy.special.erfc", "jax.scipy.special.erfc"),
    # not in the language: p log q of an information quantity, 0 where p = 0 (_stable)
    "xlogy": Op("scipy.special.xlogy", "jax.scipy.special.xlogy"),
    # the harmonic number H_t = 1 + 1/2 + ... + 1/t of a closed form (SGD's 1/t steps):
    # ψ(t + 1) + γ, exact to rounding for every t, no loop
    "harmonic": Op(
        "(scipy.special.digamma({0} + 1) + np.euler_gamma)",
        "(jax.scipy.special.digamma({0} + 1) + jnp.euler_gamma)",
    ),
    "sigmoid": Op("_sigmoid", "jax.nn.sigmoid", SIGMOID),
    "softplus": Op("_softplus", "jax.nn.softplus", SOFTPLUS),
    "relu": Op("_relu", "jax.nn.relu", RELU),
    "step": _same("_step", STEP),
    "maximum": _same("np.maximum"),  # binary: the printer nests Max(a, b, c)
    # piecewise functions (dlsym.expr._piecewise) and the tie share H(x), H(0) = 1/2;
    # JAX differentiates these with the same kink convention as dlsym's rules
    "minimum": _same("np.minimum"),  # binary: the printer nests Min(a, b, c)
    "clip": _same("np.clip"),
    "where": _same("np.where"),
    "Heaviside": _same("np.heaviside"),
    # information theory's sum over k coordinates
    "CoordSum": _same("_coord_sum", COORD_SUM),
    # constants; inf and nan as the array module's (a builtin such as float() could be
    # a user's name)
    # a sliced axis's size, ceiling(n/2) of x[::2] (dims are Python ints at call time)
    "ceiling": _same("int(-(-({0}) // 1))"),
    "floor": _same("int(({0}) // 1)"),
    "pi": _same("np.pi"),
    "e": _same("np.e"),
    "inf": _same("np.inf"),
    "nan": _same("np.nan"),
    # convolution and pooling (dlsym.expr._conv), their helpers in _conv_code
    **{name: Op(*codes) for name, codes in CONV_ROWS.items()},
}

_HELPER_NAME = re.compile(r"def (_\w+)\(")
_CALLED = re.compile(r"(?<![\w.])(?<!def )(_[a-z]\w*)\(")
# helper name -> source with XP. for the array module
HELPERS = {
    _HELPER_NAME.match(src).group(1): src
    for src in [op.helper for op in OPS.values() if op.helper] + list(CONV_HELPERS)
}

# the modules generated code reads: name -> (module, submodules it needs loaded)
IMPORTS = {
    "np": ("numpy", ()),
    "scipy": ("scipy", ("scipy.special",)),
    "jax": ("jax", ("jax.scipy.special",)),
    "jnp": ("jax.numpy", ()),
}
MODULE = re.compile(r"(?<![\w.])(" + "|".join(IMPORTS) + r")\.")

# Generated code resolves these names besides its own locals and ``_`` helpers (names in
# a spec start with a letter, so ``_`` names are free); ``_names.Names`` renames them
# where a spec takes them
NAMES = frozenset(m for op in OPS.values() for b in BACKENDS for m in MODULE.findall(op.code(b)))
assert NAMES <= set(IMPORTS), NAMES
assert all(re.fullmatch(r"_[a-z]\w*", name) for name in HELPERS)


def helpers(code: str, also, xp: str) -> list[str]:
    """The sources of the helpers ``code`` calls (and ``also``), and of those they call, in
    table order, with ``xp`` for the array module."""
    needed: set = set()
    todo = [n for n in _CALLED.findall(code) if n in HELPERS] + list(also)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [n for n in _CALLED.findall(HELPERS[name]) if n in HELPERS]
    return [src.replace("XP.", xp + ".") for name, src in HELPERS.items() if name in needed]
