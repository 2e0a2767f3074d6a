"""Validate a located YAML document into a frozen ``Spec`` (calculus sections).

Every check runs before anything is derived, and every failure names the file,
line and column of the offending node (``SpecError``, exit code 2). Reading located
values is ``_read``; declared symbols, their domains and dims are ``_symbols``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._moments import moments_in
from dlsym.expr._names import check_user_name
from dlsym.expr._parse import NOT_FINITE, Scope
from dlsym.spec._latex import checked_latex
from dlsym.spec._laws import parse_laws
from dlsym.spec._read import _check_keys, _mapping, _parse
from dlsym.spec._symbols import SymbolDecl, _dims, _symbols, default_latex, told_apart
from dlsym.spec._yamlfile import Document

CALCULUS_KINDS = (
    "gradient",
    "jacobian",
    "hessian",
    "newton_step",
    "taylor",
    "stationary",
    "convexity",
)
# the kinds a scalar objective has (the rest of CALCULUS_KINDS: the Jacobian of an output)
OBJECTIVE_KINDS = ("gradient", "hessian", "newton_step", "taylor", "stationary", "convexity")
# Kinds that belong to another section's spec: kind -> the key that spec needs.
SECTION_KINDS = {
    **dict.fromkeys(("lagrangian", "kkt", "dual", "solution"), "minimize"),
    **dict.fromkeys(
        (
            "bellman_expectation",
            "v_pi",
            "q_pi",
            "bellman_optimality",
            "v_star",
            "q_star",
            "policy_star",
        ),
        "mdp",
    ),
    **dict.fromkeys(("riccati", "gain"), "lqr"),
}
LATER_KINDS = {"hvp"}
# the kinds of a spec with random symbols (spec._laws): moments in closed form
RANDOM_KINDS = ("closed_form",)
COMMON_KEYS = (
    "name",
    "title",
    "description",
    "symbols",
    "dims",
    "define",
    "wrt",
    "derive",
    "verify",
    "objective",
    "output",
)
VERIFY_KEYS = ("points", "seed", "rtol", "atol", "dtype", "device")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Define:
    name: str
    symbol: sp.Symbol
    expr: Any  # SymPy expression over inputs and earlier defines
    latex: str | None = None  # how it is typeset, where the spec says ({expr, latex})


@dataclass(frozen=True)
class VerifyOptions:
    points: int = 16
    seed: int = 0
    rtol: float | None = None  # None: the policy's value for dtype (dlsym.verify.tolerance)
    atol: float | None = None
    dtype: str = "float64"
    device: str = "cpu"
    # where the spec asks for its device (verify.device), to locate a device it lacks
    device_loc: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    description: str
    file: str
    symbols: tuple  # SymbolDecl, in the spec's order
    dims: dict  # name -> int (for verification only)
    dim_symbols: dict  # name -> SymPy Symbol
    defines: tuple  # Define, in dependency order
    objective: Any  # scalar SymPy expression, or None
    output: Any  # vector/matrix SymPy expression, or None
    wrt: tuple  # names
    derive: tuple  # kinds
    verify: VerifyOptions
    algebra: Algebra = field(repr=False, compare=False)
    doc: Document = field(repr=False, compare=False)
    # random symbol -> its distribution (spec._laws.Law); empty unless the spec has some
    laws: dict = field(default_factory=dict, repr=False, compare=False)

    def symbol(self, name: str) -> SymbolDecl:
        return next(s for s in self.symbols if s.name == name)

    @property
    def latex_names(self) -> dict:
        """Symbol -> LaTeX, for every input, intermediate and dim."""
        names = {s.symbol: s.latex for s in self.symbols}
        names |= {s: default_latex(k, ()) for k, s in self.dim_symbols.items()}
        for d in self.defines:
            names[d.symbol] = d.latex or default_latex(d.name, self.algebra.shape(d.symbol))
        return names

    @property
    def names(self) -> frozenset:
        """Every name the spec declares: its symbols, dims and defines."""
        return frozenset(
            [s.name for s in self.symbols] + list(self.dims) + [d.name for d in self.defines]
        )

    @property
    def dim_values(self) -> dict:
        return {self.dim_symbols[k]: v for k, v in self.dims.items()}


def _told_apart(decls, defines, algebra) -> tuple[list, list]:
    """The symbols and defines, a define's default LaTeX that a symbol's or another
    define's prints as well typeset as its name (``told_apart``), the symbol's too."""
    named = [
        (d.name, d.latex or default_latex(d.name, algebra.shape(d.symbol)), algebra.shape(d.symbol))
        for d in defines
    ]
    apart = told_apart(decls, named)
    decls = [dataclasses.replace(s, latex=apart.get(s.name, s.latex)) for s in decls]
    defines = [dataclasses.replace(d, latex=apart.get(d.name, d.latex)) for d in defines]
    return decls, defines


def _with_constants(doc, e, constants: dict, path: tuple, where: str):
    """``e`` with the defines that are constants put in; a located error where that
    makes a constant that is not a finite real number (p: 0, then log(p); p: 16, then
    log(1 - p)): each expression alone passed the parser's check, and the generated code
    named SymPy's zoo or I (NameError)."""
    if not constants:
        return e
    value = e.xreplace(constants)
    if value.has(*NOT_FINITE):
        names = ", ".join(str(s) for s in constants if s in e.free_symbols)
        raise SpecError(
            f"{where} has a constant that is not a finite real number once the constant "
            f"value of {names} is put in (a division by zero, log(0), the log or square "
            "root of a negative number)",
            doc.loc(*path),
        )
    return value


def _names_in(text) -> set:
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()  # the real parse reports it, with its location
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


# a define is an expression, or {expr: ..., latex: ...} with its own LaTeX name
DEFINE_KEYS = ("expr", "latex")


def define_text(value):
    return value.get("expr") if isinstance(value, dict) else value


def _define_order(doc, raw: dict) -> list[str]:
    """Topological order of the define names; a cycle is a located error."""
    deps = {name: _names_in(define_text(text)) & set(raw) for name, text in raw.items()}
    order, state = [], {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = trail[trail.index(name) :] + [name]
            raise SpecError(f"cycle in define: {' -> '.join(cycle)}", doc.key_loc("define", name))
        state[name] = "active"
        for dep in sorted(deps[name]):
            visit(dep, trail + [name])
        state[name] = "done"
        order.append(name)

    for name in raw:
        visit(name, [])
    return order


def _verify_options(doc) -> VerifyOptions:
    raw = _mapping(doc, doc.data.get("verify"), ("verify",), "verify")
    _check_keys(doc, raw, VERIFY_KEYS, ("verify",), "verify")
    opts = {}
    for key in ("points", "seed"):
        if key in raw:
            v = raw[key]
            low = 1 if key == "points" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low or v > 100_000:
                raise SpecError(
                    f"verify.{key} must be an integer from {low} to 100000, got {v!r}",
                    doc.loc("verify", key),
                )
            opts[key] = v
    for key in ("rtol", "atol"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise SpecError(
                    f"verify.{key} must be a number in [0, 1), got {v!r}", doc.loc("verify", key)
                )
            opts[key] = float(v)
    choices = {"dtype": ("float64", "float32"), "device": ("cpu", "gpu")}
    for key, allowed in choices.items():
        if key in raw:
            if raw[key] not in allowed:
                raise SpecError(
                    f"verify.{key} must be one of {', '.join(allowed)}, got {raw[key]!r}",
                    doc.loc("verify", key),
                )
            opts[key] = raw[key]
    if "device" in raw:
        opts["device_loc"] = doc.loc("verify", "device")
    return VerifyOptions(**opts)


def check_name(doc: Document) -> str:
    """The spec's ``name`` (required, an identifier); ``title`` and ``description`` are text."""
    data = doc.data
    name = data.get("name")
    if name is None:
        raise SpecError("missing required key 'name'", doc.loc())
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(
            f"name must be an identifier such as 'ridge_regression', got {name!r}", doc.loc("name")
        )
    for key in ("title", "description"):
        if key in data and not isinstance(data[key], str):
            raise SpecError(f"{key} must be text", doc.loc(key))
    return name


def build_spec(doc: Document) -> Spec:
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError(
            "a spec must be a YAML mapping of keys (name, symbols, objective, ...)", doc.loc()
        )
    _check_keys(doc, data, COMMON_KEYS, (), "the spec")
    name = check_name(doc)

    dims, dim_symbols = _dims(doc)
    decls = _symbols(doc, dim_symbols)
    algebra = Algebra(
        ops.ShapeTable({d.symbol: d.shape for d in decls}),
        frozenset(
            d.symbol for d in decls if d.domain in ("simplex", "onehot") and len(d.shape) == 1
        ),
        frozenset(d.symbol for d in decls if d.domain == "spd"),
        {d.symbol: d.index_size for d in decls if d.domain == "index"},
        # one-hot rows, and a simplex matrix's rows (soft labels): each sums to 1
        frozenset(
            d.symbol for d in decls if d.domain in ("simplex", "onehot") and len(d.shape) > 1
        ),
        {dim_symbols[k]: v for k, v in dims.items()},
    )
    table = {d.name: d.symbol for d in decls}

    raw_define = _mapping(doc, data.get("define"), ("define",), "define")
    constants: dict = {}  # define symbol -> its value, where it is a constant (p: 0)
    for dname, value in raw_define.items():
        loc = doc.key_loc("define", dname)
        check_user_name(dname, "define", loc)
        if isinstance(value, dict):
            extra = [k for k in value if k not in DEFINE_KEYS]
            if extra or "expr" not in value:
                raise SpecError(
                    f"define '{dname}' as a mapping takes expr (required) and latex"
                    + (f", not '{extra[0]}'" if extra else ""),
                    doc.key_loc("define", dname, extra[0]) if extra else loc,
                )
        if dname in table:
            raise SpecError(f"define '{dname}' has the name of a declared symbol", loc)
        if dname in dim_symbols:
            raise SpecError(f"define '{dname}' has the name of a dimension", loc)
    defines = []
    # one table of names and one of shapes, each define's added once it is parsed (in
    # dependency order, so nothing before it holds its name): copying them per define
    # would cost the square of the number of defines
    algebra = algebra.extended({})
    names = dict(table)
    scope = Scope(names, dim_symbols, algebra, {dim_symbols[k]: v for k, v in dims.items()})
    for dname in _define_order(doc, raw_define):
        value = raw_define[dname]
        path = ("define", dname, "expr") if isinstance(value, dict) else ("define", dname)
        expr = _parse(doc, path, f"define '{dname}'", scope)
        symbol = sp.Symbol(dname, real=True)
        algebra.shape.declare(symbol, algebra.shape(expr))
        names[dname] = symbol
        latex = None
        if isinstance(value, dict) and value.get("latex") is not None:
            if not isinstance(value["latex"], str):
                raise SpecError(
                    f"the latex of define '{dname}' must be a string, got "
                    f"{type(value['latex']).__name__}",
                    doc.loc("define", dname, "latex"),
                )
            # untrusted text bound for a PDF: the same grammar as a symbol's latex
            latex = checked_latex(
                value["latex"],
                f"the latex of define '{dname}'",
                doc.loc("define", dname, "latex"),
            )
        at = (path, f"define '{dname}'")
        expr_with = _with_constants(doc, expr, constants, *at)
        if not expr_with.free_symbols:  # a constant: put in where it is read
            constants[symbol] = expr_with
        defines.append(Define(dname, symbol, expr, latex))
    # Defines are parsed in dependency order; any unknown name inside one is reported
    # by the parser with the full scope, so a later define may use an earlier one freely.

    if "objective" in data and "output" in data:
        raise SpecError(
            "give either 'objective' (scalar) or 'output' (vector), not both", doc.key_loc("output")
        )
    objective = output = None
    if "objective" in data:
        objective = _parse(doc, ("objective",), "objective", scope)
        if algebra.shape(objective) != ():
            raise SpecError(
                f"objective must be a scalar, got a {ops.fmt_shape(algebra.shape(objective))}"
                "; reduce it with sum() or mean(), or use 'output' for a Jacobian",
                doc.loc("objective"),
            )
    elif "output" in data:
        output = _parse(doc, ("output",), "output", scope)
        if not algebra.shape(output):
            raise SpecError(
                "output must be a vector, matrix or tensor, got a scalar; use 'objective' "
                "for a scalar",
                doc.loc("output"),
            )
    else:
        raise SpecError(
            "missing 'objective' (a scalar to differentiate) or 'output' "
            "(a vector, for a Jacobian)",
            doc.loc(),
        )

    for what, e in (("objective", objective), ("output", output)):
        if e is not None:
            _with_constants(doc, e, constants, (what,), what)
    laws = parse_laws(doc, decls, scope)
    _check_moments(doc, objective if objective is not None else output, defines, laws)
    if laws:
        if "wrt" in data:
            raise SpecError(
                "a spec with random symbols derives moments in closed form; "
                "differentiating them (wrt) is not supported yet",
                doc.key_loc("wrt"),
            )
        wrt, derive = (), _random_kinds(doc, data.get("derive"))
    else:
        wrt = _wrt(doc, data.get("wrt"), table, raw_define, algebra.index_symbols)
        derive = _derive_kinds(doc, data.get("derive"), objective is not None)
    decls, defines = _told_apart(decls, defines, algebra)
    return Spec(
        name=name,
        title=data.get("title") or name.replace("_", " ").capitalize(),
        description=data.get("description") or "",
        file=doc.file,
        symbols=tuple(decls),
        dims=dims,
        dim_symbols=dim_symbols,
        defines=tuple(defines),
        objective=objective,
        output=output,
        wrt=wrt,
        derive=derive,
        verify=_verify_options(doc),
        algebra=algebra,
        doc=doc,
        laws=laws,
    )


def _check_moments(doc, target, defines, laws) -> None:
    """Moments (expect, variance, covariance) need random symbols, and random symbols
    need moments around them: a located error for a spec that breaks either, or nests
    one moment in another. One pass over the defines, each as written (writing them out
    would cost the spec's nesting exponentially)."""
    key = "objective" if "objective" in doc.data else "output"
    holds: dict = {}  # define -> it holds a moment, itself or through a define it uses
    loose: dict = {}  # define -> the random symbols it uses outside any moment

    def facts(e, loc):
        found = moments_in(e)
        bare = e.xreplace({m: sp.Dummy() for m in found}).free_symbols
        for m in found:
            if any(moments_in(a) for a in m.args) or any(holds.get(x) for x in m.free_symbols):
                raise SpecError(
                    f"{type(m).__name__}() holds another moment; nested moments are not "
                    "supported: write the inner one out",
                    loc,
                )
        held = bool(found) or any(holds.get(x) for x in bare)
        random = (bare & set(laws)).union(*(loose.get(x, ()) for x in bare))
        return held, random

    for d in defines:
        holds[d.symbol], loose[d.symbol] = facts(d.expr, doc.loc("define", d.name))
    held, random = facts(target, doc.loc(key))
    if not laws:
        if held or any(holds.values()):
            raise SpecError(
                "expect(), variance() and covariance() average over random symbols, and "
                "this spec has none: give a symbol a distribution (normal(0, 1), "
                "bernoulli(p), ...)",
                doc.loc(key),
            )
        return
    if not held:
        raise SpecError(
            f"the {key} has no expect(), variance() or covariance(); a spec with random "
            "symbols derives their closed forms",
            doc.loc(key),
        )
    if random:
        name = sorted(map(str, random))[0]
        raise SpecError(
            f"'{name}' is random, so the {key} must use it inside expect(), variance() or "
            f"covariance(); outside them its value is not a number",
            doc.loc(key),
        )


def _random_kinds(doc, raw) -> tuple:
    kinds = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    for i, k in enumerate(kinds):
        if k not in RANDOM_KINDS:
            loc = doc.loc("derive", i) if isinstance(raw, list) else doc.loc("derive")
            raise SpecError(
                f"derive kind {k!r} does not apply to a spec with random symbols; one of: "
                f"{', '.join(RANDOM_KINDS)}",
                loc,
            )
    return tuple(dict.fromkeys(kinds)) or RANDOM_KINDS


def _wrt(doc, raw, table, defines, index_symbols=frozenset()) -> tuple:
    if raw is None:
        raise SpecError("missing 'wrt': the symbol(s) to differentiate with respect to", doc.loc())
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise SpecError("'wrt' is empty", doc.loc("wrt"))
    seen = []
    for i, n in enumerate(names):
        loc = doc.loc("wrt", i) if isinstance(raw, list) else doc.loc("wrt")
        if not isinstance(n, str):
            raise SpecError(f"wrt entries must be symbol names, got {n!r}", loc)
        if n in defines:
            raise SpecError(
                f"wrt '{n}' is an intermediate (define); differentiate with respect "
                "to a declared symbol",
                loc,
            )
        if n not in table:
            raise SpecError(f"wrt '{n}' is not a declared symbol{did_you_mean(n, table)}", loc)
        if table[n] in index_symbols:
            raise SpecError(
                f"wrt '{n}' has an index domain (integer labels 0..k-1): labels are not "
                "differentiated",
                loc,
            )
        if n in seen:
            raise SpecError(f"wrt names '{n}' twice", loc)
        seen.append(n)
    return tuple(seen)


def _derive_kinds(doc, raw, has_objective: bool) -> tuple:
    if raw is None:
        return ("gradient",) if has_objective else ("jacobian",)
    kinds = raw if isinstance(raw, list) else [raw]
    out = []
    for i, k in enumerate(kinds):
        loc = doc.loc("derive", i) if isinstance(raw, list) else doc.loc("derive")
        if not isinstance(k, str):
            raise SpecError(f"derive lists kinds by name (gradient, hessian, ...), got {k!r}", loc)
        if k in RANDOM_KINDS:
            raise SpecError(
                f"derive kind '{k}' needs random symbols: give a symbol a distribution "
                "(normal(0, 1), bernoulli(p), ...) and the objective an expect()",
                loc,
            )
        if k in LATER_KINDS:
            raise SpecError(f"derive kind '{k}' is not supported by this version of dlsym yet", loc)
        if k in SECTION_KINDS:
            raise SpecError(
                f"derive kind '{k}' belongs to a spec with '{SECTION_KINDS[k]}'; "
                f"this is a calculus spec (objective or output)",
                loc,
            )
        if k not in CALCULUS_KINDS:
            raise SpecError(
                f"unknown derive kind {k!r}{did_you_mean(str(k), CALCULUS_KINDS)}; "
                f"one of: {', '.join(CALCULUS_KINDS)}",
                loc,
            )
        if k in OBJECTIVE_KINDS and not has_objective:
            raise SpecError(
                f"'{k}' needs a scalar 'objective'; for 'output' derive a jacobian", loc
            )
        if k == "jacobian" and has_objective:
            raise SpecError(
                "'jacobian' needs a vector 'output'; the derivative of a scalar "
                "'objective' is its gradient",
                loc,
            )
        if k in out:
            raise SpecError(f"derive lists '{k}' twice", loc)
        out.append(k)
    return tuple(out)
