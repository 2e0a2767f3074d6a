"""``dlsym codegen``: a readable, importable Python module from a derivation.

One function per result (the objective, the gradient for each ``wrt``, the Hessian, the
Jacobian), each taking the spec's symbols in the spec's order, with a docstring giving
shapes and the LaTeX of the formula. The named intermediates become local variables,
common subexpressions are shared (``sympy.cse``), matrix results stay matrix code
(``d[:, None] * X`` for ``diag(d) X``), and the stability rewrites of ``_stable`` are
applied. The module needs NumPy (and SciPy for ``erf``) or JAX, never dlsym.
"""

from __future__ import annotations

import sympy as sp

from dlsym._errors import SpecError
from dlsym._version import __version__
from dlsym.calculus._derive import Engine
from dlsym.codegen._stable import stabilize
from dlsym.expr import _ops as ops
from dlsym.printing._printers import ExprPrinter, _no_units_import
from dlsym.spec._common import calculus_only

# name -> (numpy code, jax code); "{0}" is the first argument
CALLS = {
    "exp": ("np.exp", "jnp.exp"),
    "log": ("np.log", "jnp.log"),
    "sqrt": ("np.sqrt", "jnp.sqrt"),
    "Abs": ("np.abs", "jnp.abs"),
    "sign": ("np.sign", "jnp.sign"),
    "sin": ("np.sin", "jnp.sin"),
    "cos": ("np.cos", "jnp.cos"),
    "tanh": ("np.tanh", "jnp.tanh"),
    "atan": ("np.arctan", "jnp.arctan"),
    "log1p": ("np.log1p", "jnp.log1p"),
    "expm1": ("np.expm1", "jnp.expm1"),
    "erf": ("erf", "jax.scipy.special.erf"),
    "sigmoid": ("_sigmoid", "jax.nn.sigmoid"),
    "softplus": ("_softplus", "jax.nn.softplus"),
    "relu": ("_relu", "jax.nn.relu"),
    "step": ("_step", "_step"),
    "softmax": ("_softmax", "jax.nn.softmax"),
    "log_softmax": ("_log_softmax", "jax.nn.log_softmax"),
    "logsumexp": ("_logsumexp", "jax.scipy.special.logsumexp"),
    "tsum": ("np.sum", "jnp.sum"),
    "tmean": ("np.mean", "jnp.mean"),
    "tmax": ("np.max", "jnp.max"),
    "tmin": ("np.min", "jnp.min"),
    "norm": ("np.linalg.norm", "jnp.linalg.norm"),
    "trace": ("np.trace", "jnp.trace"),
    "det": ("np.linalg.det", "jnp.linalg.det"),
    "inv": ("np.linalg.inv", "jnp.linalg.inv"),
    "logdet": ("_logdet", "_logdet"),
    "diag": ("np.diag", "jnp.diag"),
    "outer": ("np.outer", "jnp.outer"),
    "maxmask": ("_maxmask", "_maxmask"),
}

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

# helper functions, emitted only when used
HELPERS = {
    "numpy": {
        "_sigmoid": "def _sigmoid(x):\n    # 1 / (1 + exp(-x)), accurate and finite for any x\n"
        "    return np.exp(-np.logaddexp(0.0, -x))\n",
        "_softplus": "def _softplus(x):\n    # log(1 + exp(x)) without overflow\n"
        "    return np.logaddexp(0.0, x)\n",
        "_relu": "def _relu(x):\n    return np.maximum(x, 0.0)\n",
        "_step": "def _step(x):\n    return (x > 0) * 1.0\n",
        "_softmax": "def _softmax(z):\n    e = np.exp(z - np.max(z))\n    return e / np.sum(e)\n",
        "_logsumexp": "def _logsumexp(z, axis=None):\n    m = np.max(z, axis=axis, keepdims=True)\n"
        "    out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m\n"
        "    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())\n",
        "_log_softmax": "def _log_softmax(z):\n    return z - _logsumexp(z)\n",
        "_logdet": "def _logdet(a):\n    return np.linalg.slogdet(a)[1]\n",
        "_maxmask": "def _maxmask(a):\n    out = np.zeros_like(a)\n"
        "    out.flat[np.argmax(a)] = 1.0\n    return out\n",
        "_gram": GRAM.replace("XP.", "np."),
    },
    "jax": {
        "_step": "def _step(x):\n    return (x > 0) * 1.0\n",
        "_logdet": "def _logdet(a):\n    return jnp.linalg.slogdet(a)[1]\n",
        "_maxmask": "def _maxmask(a):\n    flat = jnp.ravel(a)\n"
        "    return (jnp.arange(flat.size) == jnp.argmax(flat)).reshape(a.shape) * 1.0\n",
        "_gram": GRAM.replace("XP.", "jnp."),
    },
}
HELPER_NEEDS = {"_log_softmax": ("_logsumexp",)}


class ModulePrinter(ExprPrinter):
    """Our expression language, with calls resolved to NumPy or JAX and ``diag`` products
    printed as broadcasting (O(n^2), not O(n^3))."""

    def __init__(self, shape, target: str):
        super().__init__(shape)
        self.target = target
        self.used: set = set()

    @property
    def xp(self) -> str:
        return "np" if self.target == "numpy" else "jnp"

    def _call(self, name: str) -> str:
        code = CALLS[name][0 if self.target == "numpy" else 1]
        if code.startswith("_") or code == "erf":
            self.used.add(code)
        return code

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name not in CALLS:
            return super()._print_Function(expr)
        args = [self._print(a) for a in expr.args]
        if isinstance(expr, ops._Reduction) and len(args) > 1:
            args = [args[0], f"axis={args[1]}"]
        return f"{self._call(name)}({', '.join(args)})"

    _print_exp = _print_log = _print_Abs = _print_sin = _print_cos = _print_tanh = _print_atan = (
        _print_erf
    ) = _print_sign = _print_log1p = _print_expm1 = _print_Function

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sp.S.Half:
            return f"{self._call('sqrt')}({self._print(expr.base)})"
        return super()._print_Pow(expr, rational)

    def _print_Pi(self, expr):
        return f"{self.xp}.pi"

    def _print_Exp1(self, expr):
        return f"{self.xp}.e"

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Integer(self, expr):
        return str(expr.p)

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
            and len(self.shape(a.args[0])) == 1
        ):
            # diag(u) A^T A diag(u) = (A diag(u))^T (A diag(u)), A diag(u) = A * u
            self.used.add("_gram")
            return (
                f"_gram({self._wrap(b.args[0].args[0], postfix=True)} * "
                f"{self._wrap(a.args[0], postfix=True)})"
            )
        if not isinstance(a, ops.transpose) or len(self.shape(a)) != 2:
            return None
        left = a.args[0]
        if b == left:
            self.used.add("_gram")
            return f"_gram({self._print(left)})"
        if (
            isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.diag)
            and b.args[1] == left
            and len(self.shape(b.args[0].args[0])) == 1
        ):
            self.used.add("_gram")
            return f"_gram({self._print(left)}, {self._print(b.args[0].args[0])})"
        return None

    def _diagonal(self, expr):
        """v when ``expr`` is diag(v) or a product of such diagonals (their entrywise
        product), else None."""
        if isinstance(expr, ops.diag) and len(self.shape(expr.args[0])) == 1:
            return expr.args[0]
        if isinstance(expr, ops.matmul):
            u, v = (self._diagonal(x) for x in expr.args)
            if u is not None and v is not None:
                return u * v
        return None

    def _print_matmul(self, expr):
        a, b = expr.args
        v = self._diagonal(expr)
        if v is not None:  # diag(u) diag(v) = diag(u * v): one vector, not n^2 products
            return f"{self._call('diag')}({self._print(v)})"
        gram = self._gram(expr)
        if gram is not None:
            return gram
        if (
            isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.diag)
            and len(self.shape(a)) == 2
            and len(self.shape(b.args[0].args[0])) == 1
        ):
            # A (diag(v) C) = (A * v) C: scale the columns of A, as hand-written code does
            v, c = b.args[0].args[0], b.args[1]
            left = f"({self._wrap(a, postfix=True)} * {self._wrap(v, postfix=True)})"
            return f"{left} @ {self._wrap(c, postfix=True)}"
        if isinstance(a, ops.transpose) and len(self.shape(b)) == 1:
            # A^T v as the row-vector product v @ A: XLA's CPU backend materializes the
            # transpose for A.T @ v, 10x slower at n = 1000 (bench/codegen_speed.py)
            return f"{self._wrap(b, postfix=True)} @ {self._wrap(a.args[0], postfix=True)}"
        if isinstance(a, ops.diag) and len(self.shape(a.args[0])) == 1:
            col = f"{self._wrap(a.args[0], postfix=True)}[:, None]"
            return f"({col} * {self._wrap(b, postfix=True)})"
        if isinstance(b, ops.diag) and len(self.shape(b.args[0])) == 1:
            return f"({self._wrap(a, postfix=True)} * {self._wrap(b.args[0], postfix=True)})"
        return super()._print_matmul(expr)

    def _print_ones(self, expr):
        return f"{self.xp}.ones(({', '.join(self._print(a) for a in expr.args)},))"

    def _print_eye(self, expr):
        return f"{self.xp}.eye({self._print(expr.args[0])})"

    def _print_unit(self, expr):
        i, n = expr.args
        return f"{self.xp}.eye({self._print(n)})[{i}]"


# operations whose structure the printer turns into cheaper code (diag(v) A -> broadcast,
# A^T v -> v @ A, diag(u) A^T A diag(u) -> _gram(A * u)); a cse temporary bound to one of
# them would hide that structure behind a plain name and print an O(n^3) dense product
_STRUCTURAL = (ops.diag, ops.transpose)


def _unhide(temps, reduced):
    """Rebind each temporary ``_t = diag(v)`` / ``_t = A^T`` to its argument (``_t = v``)
    and put the operation back where ``_t`` is used, so ``v`` is still computed once while
    the printer sees ``diag(_t)`` / ``_t.T``. An atomic argument needs no temporary."""
    swap, out = {}, []
    for sym, value in temps:
        value = value.xreplace(swap)
        if isinstance(value, _STRUCTURAL):
            (arg,) = value.args
            if arg.is_Atom:
                swap[sym] = value
                continue
            swap[sym] = type(value)(sym)
            value = arg
        out.append((sym, value))
    return out, [r.xreplace(swap) for r in reduced]


def _shape_doc(shape) -> str:
    return "scalar" if not shape else f"[{', '.join(str(d) for d in shape)}]"


class _Writer:
    def __init__(self, d, target: str):
        self.d = d
        self.spec = d.spec
        self.target = target
        self.printer = ModulePrinter(d.algebra.shape, target)
        self.args = ", ".join(s.name for s in d.spec.symbols)
        self.defines = {df.symbol: df for df in d.spec.defines}
        self.engine = Engine(d.spec)  # expands and folds the intermediates

    def _dims(self, exprs) -> list[str]:
        """``m, n = X.shape``-style lines for the dims an expression uses."""
        needed = [
            s for s in self.spec.dim_symbols.values() if any(s in e.free_symbols for e in exprs)
        ]
        lines = []
        for dim in needed:
            for decl in self.spec.symbols:
                if dim in decl.shape:
                    lines.append(f"{dim} = {decl.name}.shape[{decl.shape.index(dim)}]")
                    break
        return lines

    def body(self, exprs) -> list[str]:
        """Statements computing ``exprs``: intermediates first, then shared temporaries."""
        with _no_units_import():
            exprs = [self.engine.fold(stabilize(self.engine.expand(e))) for e in exprs]
            used, lines = set(), []
            for df in self.spec.defines:  # the named intermediates, in dependency order
                if any(df.symbol in self._closure(e) for e in exprs):
                    used.add(df.symbol)
            defs = [df for df in self.spec.defines if df.symbol in used]
            lines += self._dims(exprs + [df.expr for df in defs])
            for df in defs:
                lines.append(f"{df.name} = {self.printer.doprint(stabilize(df.expr))}")
            temps, reduced = _unhide(
                *sp.cse(exprs, symbols=sp.numbered_symbols("_t"), optimizations=None)
            )
            for sym, value in temps:
                # the temporaries' shapes live in the printer's own table, not the spec's
                shape = self.printer.shape
                self.printer.shape = shape.extended({sym: shape(value)})
                lines.append(f"{sym} = {self.printer.doprint(value)}")
            return lines, [self.printer.doprint(r) for r in reduced]

    def _closure(self, e) -> set:
        """The intermediates ``e`` needs, directly or through other intermediates."""
        out, todo = set(), [s for s in e.free_symbols if s in self.defines]
        while todo:
            s = todo.pop()
            if s not in out:
                out.add(s)
                todo += [t for t in self.defines[s].expr.free_symbols if t in self.defines]
        return out

    def function(self, name: str, expr, doc: str, shape) -> str:
        lines, (result,) = self.body([expr])
        params = "\n".join(f"        {s.name}: {_shape_doc(s.shape)}" for s in self.spec.symbols)
        out = [
            f"def {name}({self.args}):",
            f'    r"""{self._summary(name, shape)}',
            "",
            "    Args:",
            params,
            f"    Returns: {_shape_doc(shape)}",
            "",
            f"    LaTeX: {doc}",
            '    """',
        ]
        out += [f"    {line}" for line in lines]
        out.append(f"    return {self._broadcast(result, expr, shape)}")
        return "\n".join(out) + "\n"

    def _summary(self, name, shape) -> str:
        kind, _, wrt = name.partition("_")
        return {
            "objective": f"The objective of {self.spec.name}.",
            "gradient": f"The gradient of the objective with respect to {wrt}.",
            "hessian": f"The Hessian of the objective with respect to {wrt}.",
            "jacobian": f"The Jacobian of the output with respect to {wrt}.",
        }.get(kind, name)

    def _broadcast(self, code, expr, shape) -> str:
        """A constant or lower-rank result (0, 2*I) broadcast to the declared shape."""
        if tuple(self.spec.algebra.shape(expr)) == tuple(shape):
            return code
        dims = ", ".join(str(d) for d in shape)
        return f"{self.printer.xp}.broadcast_to({code}, ({dims},)) * 1.0"


def generate(d, target: str = "numpy", custom_vjp: bool = False, source: str = "") -> str:
    if target not in ("numpy", "jax"):
        raise ValueError("target must be 'numpy' or 'jax'")
    if custom_vjp and target != "jax":
        raise ValueError("--custom-vjp needs --target jax")
    if d.section is not None:  # a section other than calculus (DerivationBase.section)
        calculus_only(d.header.doc, "dlsym codegen")
    w = _Writer(d, target)
    spec = d.spec
    functions = []
    target_expr = spec.objective if spec.objective is not None else spec.output
    first = "objective" if spec.objective is not None else "output"
    functions.append(
        w.function(
            first, target_expr, d.latex_of(target_expr), tuple(spec.algebra.shape(target_expr))
        )
    )
    for kind, parts in d.results.items():
        for wrt, r in parts.items():
            if r.entries is not None:
                raise SpecError(
                    f"the {kind} with respect to {wrt} was derived as explicit "
                    "entries; codegen emits matrix-form results only",
                    spec.doc.loc("derive"),
                )
            functions.append(
                w.function(
                    f"{kind}_{wrt}",
                    r.compact,
                    d.result_display(kind)["latex"]
                    if len(parts) == 1
                    else d.result_display(kind)["wrt"][wrt]["latex"],
                    r.shape,
                )
            )
    header = [
        f'"""Generated by dlsym {__version__} from {source or spec.name}: {spec.title}.',
        "",
        f"Regenerate with: dlsym codegen {source or spec.name} --target {target}"
        + (" --custom-vjp" if custom_vjp else ""),
        "Functions take the spec's symbols in this order: "
        f"{', '.join(s.name for s in spec.symbols)}.",
        '"""',
        "",
    ]
    if target == "numpy":
        header.append("import numpy as np")
        if "erf" in w.printer.used:
            header.append("from scipy.special import erf")
    else:
        header += ["import jax", "import jax.numpy as jnp", "import jax.scipy.special"]
    helpers = []
    needed = set(w.printer.used)
    for h in list(needed):
        needed.update(HELPER_NEEDS.get(h, ()))
    for name, code in HELPERS[target].items():
        if name in needed:
            helpers.append(code)
    parts = ["\n".join(header) + "\n", *helpers, *functions]
    if custom_vjp:
        parts.append(_custom_vjp(d))
    return "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _custom_vjp(d) -> str:
    spec = d.spec
    names = [s.name for s in spec.symbols]
    args = ", ".join(names)
    grads = d.results.get("gradient", {})
    cot = ", ".join(
        f"g * gradient_{n}({args})" if n in grads else f"jnp.zeros_like({n})" for n in names
    )
    return (
        f"@jax.custom_vjp\ndef objective_custom_vjp({args}):\n"
        f'    """The objective; its backward is the closed-form gradient '
        f'({", ".join(grads)})."""\n'
        f"    return objective({args})\n\n\n"
        f"def _objective_fwd({args}):\n    return objective({args}), ({args},)\n\n\n"
        f"def _objective_bwd(residuals, g):\n    {args}, = residuals\n"
        f"    return ({cot},)\n\n\n"
        "objective_custom_vjp.defvjp(_objective_fwd, _objective_bwd)\n"
    )
