"""Function sources: the statements that compute expressions, printed by ``CodePrinter``.

``FunctionWriter`` writes one function per result of a derivation (the spec's symbols in,
named intermediates as locals, dims read from the argument shapes, shared subexpressions
as ``_t`` temporaries, the stability rewrites of ``_stable`` applied): the functions of a
``dlsym codegen`` module and of ``Derivation.function`` are the same text.
``lambda_source`` writes one function for any argument list and expressions, for the
numeric evaluations of the sections (references, solvers, value tables).
"""

from __future__ import annotations

import keyword
import re

import sympy as sp

from dlsym.calculus._derive import Engine
from dlsym.codegen._names import Names
from dlsym.codegen._printer import CodePrinter
from dlsym.codegen._stable import stabilize
from dlsym.codegen._table import HELPERS, NAMES
from dlsym.expr import _ops as ops
from dlsym.expr._piecewise import vanishes, where
from dlsym.expr._shapes import linear_parts
from dlsym.printing._printers import _no_units_import

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


def _hide_static(exprs):
    """``exprs`` with the static arguments of operations (axes, index items, shapes such
    as ``(B, n - 1)``) swapped for placeholders, and the map back: a dim expression in
    them is not a value for cse to share, and a temporary there would hide the sizes
    the printer reads."""
    memo: dict = {}
    placeholders: dict = {}

    def hide(e):
        if not e.args:
            return e
        if e not in memo:
            static = ops.static_positions(e) if isinstance(e, ops.TensorOp) else ()
            args = [
                placeholders.setdefault(a, sp.Dummy("static")) if i in static else hide(a)
                for i, a in enumerate(e.args)
            ]
            memo[e] = e.func(*args) if args != list(e.args) else e
        return memo[e]

    return [hide(e) for e in exprs], {v: k for k, v in placeholders.items()}


def _shared(exprs):
    """(temporaries, expressions): common subexpressions as ``_t0, _t1, ...`` (a leading
    '_' keeps them apart from the spec's names), structural ones put back."""
    hidden, back = _hide_static(exprs)
    temps, reduced = sp.cse(hidden, symbols=sp.numbered_symbols("_t"), optimizations=None)
    temps = [(sym, value.xreplace(back)) for sym, value in temps]
    return _shallow(*_unhide(temps, [r.xreplace(back) for r in reduced]))


# Python's parser refuses more than 200 nested parentheses ("too many nested
# parentheses": a chain of 199 defines a_i = A @ a_{i-1} + b written out): a part of an
# expression this many levels high becomes a temporary of its own
MAX_CODE_NESTING = 50


def _shallow(temps, exprs):
    """``temps`` and ``exprs`` with every part ``MAX_CODE_NESTING`` levels high moved to
    a temporary ``_td0, _td1, ...`` computed before the line that uses it."""
    names = iter(sp.numbered_symbols("_td"))
    memo: dict = {}

    def cut(e, out):
        if not e.args:
            return e, 0
        if e not in memo:
            parts = [cut(a, out) for a in e.args]
            args = [p for p, _ in parts]
            new = _rebuilt(e, args) if args != list(e.args) else e
            height = 1 + max(h for _, h in parts)
            if height >= MAX_CODE_NESTING:
                sym = next(names)
                out.append((sym, new))
                new, height = sym, 0
            memo[e] = (new, height)
        return memo[e]

    out_temps = []
    for sym, value in temps:
        out_temps.append((sym, cut(value, out_temps)[0]))
    reduced = [cut(e, out_temps)[0] for e in exprs]
    return out_temps, reduced


def _rebuilt(e, args):
    """``e`` with new arguments, unevaluated: evaluating tanh(_td0 w + x) asks SymPy's
    assumptions about the whole chain below it, at every level (a chain of 25 defines'
    objective took 10 s here, 30 defines over 200 s)."""
    try:
        return e.func(*args, evaluate=False)
    except TypeError:  # a class that takes no evaluate=
        return e.func(*args)


class FunctionWriter:
    """Functions of a calculus spec's symbols, in the spec's order."""

    def __init__(self, spec, target: str):
        self.spec = spec
        # the spec's names are the functions' parameters and locals: the code's own
        # names step around them (np -> _np where a symbol is called np)
        self.names = Names(spec.names)
        self.printer = CodePrinter(target, fresh=self.names)
        self.args = ", ".join(s.name for s in spec.symbols)
        self.defines = {df.symbol: df for df in spec.defines}
        self.engine = Engine(spec)  # expands and folds the intermediates

    def primary(self) -> tuple:
        """(function name, expression, shape) of the objective, or of the output."""
        spec = self.spec
        name = "objective" if spec.objective is not None else "output"
        expr = spec.objective if spec.objective is not None else spec.output
        return name, expr, tuple(spec.algebra.shape(expr))

    def _dims(self, exprs) -> list[str]:
        """``m = X.shape[0]``-style lines for the dims that ``exprs`` use; a dim that no
        symbol's shape carries is the spec's value."""
        lines = []
        for name, dim in self.spec.dim_symbols.items():
            if not any(dim in e.free_symbols for e in exprs):
                continue
            lines.append(f"{dim} = {self._size_of(dim) or _literal(self.spec.dims[name])}")
        return lines

    def _size_of(self, dim) -> str | None:
        """Code reading ``dim`` off an argument's shape: ``X.shape[0]`` where an axis is
        ``dim`` itself, ``W.shape[1] // 4`` where one is ``4*H`` (the sizes a call
        passes are checked against each other by the signature first)."""
        for d in self.spec.symbols:
            if dim in d.shape:
                return f"{d.name}.shape[{d.shape.index(dim)}]"
        for d in self.spec.symbols:
            for i, size in enumerate(d.shape):
                a, c = linear_parts(size, dim) if size.free_symbols == {dim} else (None, None)
                if a is not None and a.is_Integer and c.is_Integer and a > 0:
                    read = f"{d.name}.shape[{i}]"
                    read = f"({read} - {c})" if c > 0 else f"({read} + {-c})" if c < 0 else read
                    return read if a == 1 else f"{read} // {a}"
        return None

    def body(self, expr, shape, extra: dict | None = None) -> tuple[list[str], str]:
        """Statements computing ``expr`` (dims, intermediates, then shared temporaries),
        and the returned expression's code. ``extra``: more parameters and their shapes."""
        # the cse temporaries' shapes go into new tables (ShapeTable.extended): the
        # frozen spec's table is never written, and each function has its own _t0
        shapes = self.spec.algebra.shape
        self.printer.shape = shapes = shapes.extended(extra) if extra else shapes
        with _no_units_import():
            expr = self.engine.fold(stabilize(self.engine.expand(expr)))
            needed = self._closure(expr)
            defs = [df for df in self.spec.defines if df.symbol in needed]  # dependency order
            lines = [f"{df.name} = {self.printer.doprint(stabilize(df.expr))}" for df in defs]
            temps, (result,) = _shared([expr])
            for sym, value in temps:
                self.printer.shape = shapes = shapes.extended({sym: shapes(value)})
                lines.append(f"{sym} = {self.printer.doprint(value)}")
            code = self.printer.doprint(result)
            used = [expr] + [df.expr for df in defs]
            if tuple(shapes(result)) != tuple(shape):
                # a constant or lower-rank result (0, 2*I) broadcast to the declared shape
                dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
                code = f"{self.printer.op('broadcast_to', [code, f'({dims})'])} * 1.0"
                used.append(sp.Tuple(*shape))
            return self._dims(used) + lines, code

    def _closure(self, e) -> set:
        """The intermediates ``e`` needs, directly or through other intermediates."""
        out, todo = set(), [s for s in e.free_symbols if s in self.defines]
        while todo:
            s = todo.pop()
            if s not in out:
                out.add(s)
                todo += [t for t in self.defines[s].expr.free_symbols if t in self.defines]
        return out

    def result(self, name: str, r, doc: tuple = ()) -> str:
        """The function ``name`` of a derived result ``r``: its formula, or, where ``r``
        is an action on a direction (a Hessian w.r.t. a matrix, a Jacobian of a matrix),
        the action's function (``_hvp_W``, ``_vjp_W``) and ``name`` stacking the action
        at every unit direction into the full layout."""
        if r.direction is None:
            return self.function(name, r.expr, r.shape, doc)
        wrt = self.spec.symbol(r.wrt)
        space = (
            tuple(self.spec.algebra.shape(self.primary()[1])) if r.kind == "jacobian" else wrt.shape
        )
        # the action's own function, named after the result's: hessian_W -> _hvp_W
        action = f"_{'hvp' if r.kind == 'hessian' else 'vjp'}_{name.split('_', 1)[-1]}"
        # the action's value: the gradient's shape (the other symbol's, for a block)
        value_shape = self.spec.symbol(r.about[-1]).shape

        def dims(shape) -> str:
            return f"({', '.join(self.printer.doprint(d) for d in shape)}{',' if len(shape) == 1 else ''})"

        stacked = self.printer.op(
            "by_directions", [action, self.args, dims(space), dims(r.shape), wrt.name]
        )
        out = [f"def {name}({self.args}):", *(f"    {d}" if d else "" for d in doc)]
        out += [f"    {line}" for line in self._dims([sp.Tuple(*r.shape)])]
        out.append(f"    return {stacked}")
        hvp = self.function(action, r.expr, value_shape, extra={r.direction: space})
        return hvp + "\n\n" + "\n".join(out) + "\n"

    def function(self, name: str, expr, shape, doc: tuple = (), extra: dict | None = None) -> str:
        """``def name(<the spec's symbols>):`` computing ``expr`` of the declared
        ``shape``, with ``doc`` (lines) as its docstring; ``extra`` parameters (symbol:
        shape) come after the spec's symbols."""
        lines, result = self.body(expr, shape, extra)
        params = ", ".join([self.args, *(s.name for s in (extra or {}))])
        out = [f"def {name}({params}):", *(f"    {d}" if d else "" for d in doc)]
        out += [f"    {line}" for line in lines]
        out.append(f"    return {result}")
        return "\n".join(out) + "\n"


def result_name(kind: str, r) -> str:
    """The generated function of a result: ``gradient_w``, ``hessian_w_b`` for a block
    of a joint Hessian, ``taylor_w_b`` for a joint model."""
    return f"{kind}_{'_'.join(dict.fromkeys(r.about))}"


def result_names(kind: str, parts: dict) -> dict:
    """{key: function name} of one kind's results: ``result_name``'s, unless two of them
    coincide (blocks (a, b_c) and (a_b, c) are both ``hessian_a_b_c``): then each block
    is named by its symbols' positions among the kind's, ``hessian_0_1``."""
    names = {key: result_name(kind, r) for key, r in parts.items()}
    if len(set(names.values())) == len(names):
        return names
    order = list(dict.fromkeys(n for r in parts.values() for n in r.about))
    return {
        key: f"{kind}_{'_'.join(str(order.index(n)) for n in dict.fromkeys(r.about))}"
        for key, r in parts.items()
    }


_TEMPORARY = re.compile(r"_t\d+")


def _safe(name: str) -> bool:
    """A parameter name the generated code can use as is."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in NAMES
        and name not in HELPERS
        and not _TEMPORARY.fullmatch(name)
    )


def _parameters(args) -> list[str]:
    """The symbols' names where all are plain, distinct and free; else ``_a0, _a1, ...``
    (Dummies, entry symbols of any name)."""
    names = [getattr(a, "name", "") for a in args]
    plain = all(isinstance(a, sp.Symbol) and not isinstance(a, sp.Dummy) for a in args)
    if plain and len(set(names)) == len(names) and all(_safe(n) for n in names):
        return names
    return [f"_a{k}" for k in range(len(args))]


def _flatten(exprs, out: list):
    """The expressions of a nested list, in order, and a template of the nesting."""
    if isinstance(exprs, (list, tuple)):
        return [_flatten(e, out) for e in exprs]
    out.append(sp.sympify(exprs))
    return len(out) - 1


def _nest(template, codes) -> str:
    if isinstance(template, list):
        return f"[{', '.join(_nest(t, codes) for t in template)}]"
    return codes[template]


def _literal(size: int) -> str:
    """A dim's value in code: a float past 2⁵³, where JAX's int64 overflows once the
    code multiplies it (n = 2⁶² read 2 n x as the int 2⁶³: an OverflowError, exit 3)
    and a double holds it as well as the arithmetic can."""
    return repr(float(size)) if abs(size) > 2**53 else str(size)


def lambda_source(name: str, args, exprs, target: str) -> str:
    """``def name(*args):`` returning ``exprs`` (a list, nested lists kept) as arrays."""
    params = _parameters(args)
    printer = CodePrinter(target, names=dict(zip(args, params)))
    flat: list = []
    template = _flatten(list(exprs), flat)
    # the stable forms, as the calculus functions get them: a Bernoulli cross-entropy
    # of sigmoid(z) was log(1 - sigmoid(z)) = log(0) = -inf at z = 40 (it is -z)
    flat = [stabilize(e) if isinstance(e, sp.Basic) else e for e in flat]
    with _no_units_import():
        temps, reduced = _shared(flat)
        body = [f"{sym} = {printer.doprint(value)}" for sym, value in temps]
        body.append(f"return {_nest(template, [printer.doprint(r) for r in reduced])}")
    indent = "    "
    lines = [f"def {name}({', '.join(params)}):"]
    branches = (vanishes, where, sp.Piecewise)
    if target == "numpy" and any(getattr(e, "has", lambda *_: False)(*branches) for e in flat):
        # np.where computes both branches: the general one is 0/0 where the mask picks
        # the limit (x₀ + c t at r = 1), or where the other branch holds (a Kalman
        # variance's fixed points chosen by a sign, at a = 0), and says so in a
        # RuntimeWarning
        lines.append(
            f"{indent}with {printer.fresh.code('np.errstate')}(divide='ignore', invalid='ignore'):"
        )
        indent *= 2
    lines += [indent + line for line in body]
    return "\n".join(lines) + "\n"


def module_source(target: str, functions: list[str], also=(), names: Names = Names()) -> str:
    """``functions`` after the import lines and helpers they need (and the helpers
    ``also``): a module's text, two blank lines between its parts. ``names`` is how the
    functions name the modules (``FunctionWriter.names``)."""
    code = "\n".join(functions)
    parts = ["\n".join(names.imports(target, code)), *names.helpers(target, code, also)]
    parts += functions
    return "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"
