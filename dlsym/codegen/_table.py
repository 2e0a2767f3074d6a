"""The one operation table of dlsym's code generator: one row per operation.

A row gives the code for NumPy and for JAX. A code is either the callable to apply
(``np.exp``: printed ``np.exp(x)``) or, when it holds ``{``, a template filled with the
printed arguments (``{0}``, ``{1}``, ...; ``{args}`` all of them joined, ``{rest}`` all
but the first). A code naming a helper (``_sigmoid``) comes with the helper's source,
written once for both backends with ``XP.`` for the array module; the generated code
defines a helper only where it uses it. ``dlsym codegen`` modules, ``Derivation.function``,
verification and every other numeric evaluation in dlsym print from this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlsym.expr._reserved import RESERVED

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

# name -> row. Names are SymPy class names (``Abs``, ``tsum``, ``maximum``), except ``pi``
# and ``E`` (the constants), and ``sqrt``, ``gram`` and ``broadcast_to``, which the
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
    "maxmask": _same("_maxmask", MAXMASK),
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
    "atan": _same("np.arctan"),
    "log1p": _same("np.log1p"),
    "expm1": _same("np.expm1"),
    "erf": Op("scipy.special.erf", "jax.scipy.special.erf"),
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
    # constants
    "pi": _same("np.pi"),
    "E": _same("np.e"),
}

_HELPER_NAME = re.compile(r"def (_\w+)\(")
_CALLED = re.compile(r"(?<![\w.])(?<!def )(_[a-z]\w*)\(")
# helper name -> source with XP. for the array module
HELPERS = {_HELPER_NAME.match(op.helper).group(1): op.helper for op in OPS.values() if op.helper}

# the modules generated code reads, and how it imports them
IMPORTS = {
    "np": "import numpy as np",
    "scipy": "import scipy.special",
    "jax": "import jax\nimport jax.scipy.special",
    "jnp": "import jax.numpy as jnp",
}
_MODULE = re.compile(r"(?<![\w.])(" + "|".join(IMPORTS) + r")\.")

# Generated code resolves these names besides its own locals and ``_`` helpers: a
# symbol may not take them (names in a spec start with a letter, so ``_`` names are free)
NAMES = frozenset(m for op in OPS.values() for b in BACKENDS for m in _MODULE.findall(op.code(b)))
assert NAMES <= set(IMPORTS), NAMES
assert NAMES <= RESERVED, f"dlsym.expr._reserved must list {sorted(NAMES - RESERVED)}"
assert all(re.fullmatch(r"_[a-z]\w*", name) for name in HELPERS)


def helpers(target: str, code: str, also=()) -> list[str]:
    """The sources of the helpers ``code`` calls (and ``also``), and of those they call, in
    table order."""
    needed: set = set()
    todo = [n for n in _CALLED.findall(code) if n in HELPERS] + list(also)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [n for n in _CALLED.findall(HELPERS[name]) if n in HELPERS]
    xp = "np." if target == "numpy" else "jnp."
    return [src.replace("XP.", xp) for name, src in HELPERS.items() if name in needed]


def imports(target: str, code: str) -> list[str]:
    """The import lines ``code`` needs: NumPy always for the NumPy target (and SciPy where
    it calls it), all of JAX's for the JAX target."""
    if target == "jax":
        return [IMPORTS["jax"], IMPORTS["jnp"]]
    used = set(_MODULE.findall(code))
    return [IMPORTS["np"]] + ([IMPORTS["scipy"]] if "scipy" in used else [])
