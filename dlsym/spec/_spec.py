"""Validate a located YAML document into a frozen ``Spec`` (calculus sections).

Every check runs before anything is derived, and every failure names the file,
line and column of the offending node (``SpecError``, exit code 2).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._parse import CONSTANTS, FUNCTIONS, Scope, check_identifier, parse_expression
from dlsym.expr._reserved import RESERVED
from dlsym.spec._yamlfile import Document


@dataclass(frozen=True)
class Domain:
    assumptions: dict
    ranks: tuple  # allowed numbers of axes
    square: bool = False  # matrices must be square


# Where each domain's samples live is in dlsym.verify.SAMPLERS; this table says what
# SymPy may assume about its entries and which shapes it fits.
DOMAINS: dict[str, Domain] = {
    "real": Domain({"real": True}, (0, 1, 2)),
    "positive": Domain({"positive": True}, (0, 1, 2)),
    "nonnegative": Domain({"nonnegative": True}, (0, 1, 2)),
    "unit_interval": Domain({"positive": True}, (0, 1, 2)),
    "simplex": Domain({"nonnegative": True}, (1,)),
    "onehot": Domain({"nonnegative": True}, (1,)),
    "spd": Domain({"real": True}, (2,), square=True),
    "orthogonal": Domain({"real": True}, (2,), square=True),
    # written {index: k}: integer labels 0..k-1 (class labels, token ids)
    "index": Domain({"integer": True, "nonnegative": True}, (0, 1, 2)),
}

CALCULUS_KINDS = ("gradient", "jacobian", "hessian")
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
SYMBOL_KEYS = ("shape", "domain", "latex")
VERIFY_KEYS = ("points", "seed", "rtol", "atol", "dtype", "device")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "chi",
    "psi",
    "omega",
}
LATEX_ALIASES = {"lam": r"\lambda", "lmbda": r"\lambda", "lambda_": r"\lambda"}


@dataclass(frozen=True)
class SymbolDecl:
    name: str
    symbol: sp.Symbol
    shape: tuple  # SymPy dims
    domain: str
    latex: str
    index_size: Any = None  # domain {index: k}: k, a SymPy dim or Integer


@dataclass(frozen=True)
class Define:
    name: str
    symbol: sp.Symbol
    expr: Any  # SymPy expression over inputs and earlier defines


@dataclass(frozen=True)
class VerifyOptions:
    points: int = 16
    seed: int = 0
    rtol: float | None = None  # None: the policy's value for dtype (dlsym.verify.tolerance)
    atol: float | None = None
    dtype: str = "float64"
    device: str = "cpu"


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

    def symbol(self, name: str) -> SymbolDecl:
        return next(s for s in self.symbols if s.name == name)

    @property
    def latex_names(self) -> dict:
        """Symbol -> LaTeX, for every input, intermediate and dim."""
        names = {s.symbol: s.latex for s in self.symbols}
        for d in self.defines:
            names[d.symbol] = default_latex(d.name, self.algebra.shape(d.symbol))
        return names

    @property
    def dim_values(self) -> dict:
        return {self.dim_symbols[k]: v for k, v in self.dims.items()}


def default_latex(name: str, shape) -> str:
    base, _, sub = name.partition("_")
    stem = "\\" + base if base in GREEK else base
    if base.endswith(tuple("0123456789")) and not sub:
        digits = len(base) - len(base.rstrip("0123456789"))
        stem, sub = base[:-digits], base[-digits:]
        stem = "\\" + stem if stem in GREEK else stem
    elif len(base) == 2 and base[0].isupper() and base[1].islower() and not sub:
        stem, sub = base[0], base[1]  # Xn, Wq: a matrix with a one-letter subscript
    if name in LATEX_ALIASES:
        stem, sub = LATEX_ALIASES[name], ""
    hat = stem.endswith("hat") and len(stem) > 3
    stem = stem[:-3] if hat else stem
    if shape:
        stem = rf"\boldsymbol{{{stem}}}" if stem.startswith("\\") else rf"\mathbf{{{stem}}}"
    stem = rf"\hat{{{stem}}}" if hat else stem
    return f"{stem}_{{{sub}}}" if sub else stem


# --- validation ----------------------------------------------------------------------


def _check_keys(doc: Document, mapping: dict, allowed, path: tuple, what: str):
    for key in mapping:
        if key not in allowed:
            raise SpecError(
                f"unknown key '{key}' in {what}{did_you_mean(key, allowed)}",
                doc.key_loc(*path, key),
            )


def _mapping(doc, value, path, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a mapping", doc.loc(*path))
    return value


def _col_shift(doc: Document, path) -> int:
    """1 when the YAML scalar at ``path`` is quoted (the text starts one column later)."""
    loc = doc.loc(*path)
    lines = doc.source.splitlines() if doc.source else []
    if 0 < loc.line <= len(lines):
        line = lines[loc.line - 1]
        if loc.col - 1 < len(line) and line[loc.col - 1] in "'\"":
            return 1
    return 0


def _parse(doc: Document, path: tuple, where: str, scope: Scope):
    """Parse the expression at ``path``; its errors point into the YAML text."""
    text = doc.data
    for key in path:
        text = text[key]
    return parse_expression(
        text,
        where,
        doc.loc(*path),
        scope,
        _col_shift(doc, path),
        locate=lambda index: doc.text_loc(path, text, index),
    )


def _dims(doc) -> tuple[dict, dict]:
    raw = _mapping(doc, doc.data.get("dims"), ("dims",), "dims")
    dims, symbols = {}, {}
    for name, value in raw.items():
        check_identifier(name, "dimension name", doc.key_loc("dims", name))
        _check_free(name, "dimension", doc.key_loc("dims", name))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SpecError(
                f"dimension '{name}' must be a positive integer, got {value!r}",
                doc.loc("dims", name),
            )
        dims[name] = value
        symbols[name] = sp.Symbol(name, integer=True, positive=True)
    return dims, symbols


def _shape(doc, name, raw, dim_symbols) -> tuple:
    path = ("symbols", name, "shape")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"shape of '{name}' must be a list such as [n] or [m, n]", doc.loc(*path))
    if len(raw) > 2:
        raise SpecError(
            f"shape of '{name}' has {len(raw)} axes; vectors and matrices only", doc.loc(*path)
        )
    out = []
    for i, d in enumerate(raw):
        if isinstance(d, bool):
            raise SpecError(f"bad size {d!r} in the shape of '{name}'", doc.loc(*path, i))
        if isinstance(d, int):
            if d <= 0:
                raise SpecError(
                    f"sizes must be positive, got {d} in the shape of '{name}'", doc.loc(*path, i)
                )
            out.append(sp.Integer(d))
        elif isinstance(d, str) and d in dim_symbols:
            out.append(dim_symbols[d])
        elif isinstance(d, str):
            raise SpecError(
                f"dimension '{d}' in the shape of '{name}' is not in dims"
                f"{did_you_mean(d, dim_symbols)}",
                doc.loc(*path, i),
            )
        else:
            raise SpecError(f"bad size {d!r} in the shape of '{name}'", doc.loc(*path, i))
    return tuple(out)


def _check_free(name: str, what: str, loc) -> None:
    """Names the generated code or the expression language already use are taken:
    a symbol 'ones' would shadow the code generator's ones(), a symbol 'pi' the constant."""
    if name in CONSTANTS:
        raise SpecError(f"{what} '{name}' would hide the constant {name}; rename it", loc)
    if name in RESERVED and name not in FUNCTIONS:
        raise SpecError(
            f"{what} name '{name}' is reserved by dlsym's generated code; rename it", loc
        )


def _symbols(doc, dim_symbols) -> list[SymbolDecl]:
    raw = _mapping(doc, doc.data.get("symbols"), ("symbols",), "symbols")
    decls = []
    for name, info in raw.items():
        loc = doc.key_loc("symbols", name)
        check_identifier(name, "symbol name", loc)
        _check_free(name, "symbol", loc)
        if name in FUNCTIONS:
            raise SpecError(f"symbol '{name}' has the name of a function", loc)
        if name in dim_symbols:
            raise SpecError(f"'{name}' is declared both as a symbol and as a dimension", loc)
        info = _mapping(doc, info, ("symbols", name), f"symbol '{name}'")
        _check_keys(doc, info, SYMBOL_KEYS, ("symbols", name), f"symbol '{name}'")
        shape = _shape(doc, name, info.get("shape"), dim_symbols)
        domain = info.get("domain", "real")
        index_size = None
        if isinstance(domain, dict):
            domain, index_size = "index", _index_size(doc, name, domain, dim_symbols)
        if not isinstance(domain, str) or domain not in DOMAINS:
            raise SpecError(
                f"unknown domain {domain!r} for '{name}'"
                f"{did_you_mean(str(domain), DOMAINS)}; one of: {', '.join(DOMAINS)}",
                doc.loc("symbols", name, "domain"),
            )
        dom = DOMAINS[domain]
        if len(shape) not in dom.ranks or (dom.square and shape[0] != shape[1]):
            need = "a square matrix" if dom.square else "a vector" if dom.ranks == (1,) else ""
            raise SpecError(
                f"domain '{domain}' needs {need}, but '{name}' is a {ops.fmt_shape(shape)}",
                doc.loc("symbols", name, "domain"),
            )
        latex = info.get("latex")
        if latex is not None and not isinstance(latex, str):
            raise SpecError(
                f"latex of '{name}' must be a string", doc.loc("symbols", name, "latex")
            )
        symbol = sp.Symbol(name, **dom.assumptions)
        decls.append(
            SymbolDecl(name, symbol, shape, domain, latex or default_latex(name, shape), index_size)
        )
    return decls


def _index_size(doc, name, raw: dict, dim_symbols) -> sp.Expr:
    """``{index: k}``: integer labels 0..k-1, k a dim or a positive integer."""
    path = ("symbols", name, "domain")
    if list(raw) != ["index"]:
        raise SpecError(
            f"a domain mapping must be {{index: k}} (integer labels 0..k-1), got "
            f"{', '.join(map(str, raw))}",
            doc.loc(*path),
        )
    k = raw["index"]
    if isinstance(k, str) and k in dim_symbols:
        return dim_symbols[k]
    if isinstance(k, int) and not isinstance(k, bool) and k > 0:
        return sp.Integer(k)
    hint = did_you_mean(k, dim_symbols) if isinstance(k, str) else ""
    raise SpecError(
        f"domain {{index: k}} of '{name}' needs k, the number of labels: a dim or a positive "
        f"integer, got {k!r}{hint}",
        doc.loc(*path, "index"),
    )


def _names_in(text) -> set:
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()  # the real parse reports it, with its location
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _define_order(doc, raw: dict) -> list[str]:
    """Topological order of the define names; a cycle is a located error."""
    deps = {name: _names_in(text) & set(raw) for name, text in raw.items()}
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
        frozenset(d.symbol for d in decls if d.domain in ("simplex", "onehot")),
        frozenset(d.symbol for d in decls if d.domain == "spd"),
        frozenset(d.symbol for d in decls if d.domain == "index"),
    )
    table = {d.name: d.symbol for d in decls}

    raw_define = _mapping(doc, data.get("define"), ("define",), "define")
    for dname in raw_define:
        loc = doc.key_loc("define", dname)
        check_identifier(dname, "define name", loc)
        _check_free(dname, "define", loc)
        if dname in table:
            raise SpecError(f"define '{dname}' has the name of a declared symbol", loc)
        if dname in FUNCTIONS or dname in dim_symbols:
            raise SpecError(
                f"define '{dname}' has the name of a "
                f"{'function' if dname in FUNCTIONS else 'dimension'}",
                loc,
            )
    defines = []
    for dname in _define_order(doc, raw_define):
        scope = Scope({**table, **{d.name: d.symbol for d in defines}}, dim_symbols, algebra)
        path = ("define", dname)
        expr = _parse(doc, path, f"define '{dname}'", scope)
        symbol = sp.Symbol(dname, real=True)
        # a new table per define: a parsed table never changes (its memo stays valid)
        algebra = algebra.extended({symbol: algebra.shape(expr)})
        defines.append(Define(dname, symbol, expr))
    scope = Scope({**table, **{d.name: d.symbol for d in defines}}, dim_symbols, algebra)
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
        if len(algebra.shape(output)) != 1:
            raise SpecError(
                f"output must be a vector, got a {ops.fmt_shape(algebra.shape(output))}",
                doc.loc("output"),
            )
    else:
        raise SpecError(
            "missing 'objective' (a scalar to differentiate) or 'output' "
            "(a vector, for a Jacobian)",
            doc.loc(),
        )

    wrt = _wrt(doc, data.get("wrt"), table, raw_define, algebra.index_symbols)
    derive = _derive_kinds(doc, data.get("derive"), objective is not None, len(wrt))
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
    )


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
                f"wrt '{n}' has domain {{index: k}}: integer labels are not differentiated", loc
            )
        if n in seen:
            raise SpecError(f"wrt names '{n}' twice", loc)
        seen.append(n)
    return tuple(seen)


def _derive_kinds(doc, raw, has_objective: bool, n_wrt: int) -> tuple:
    if raw is None:
        return ("gradient",) if has_objective else ("jacobian",)
    kinds = raw if isinstance(raw, list) else [raw]
    out = []
    for i, k in enumerate(kinds):
        loc = doc.loc("derive", i) if isinstance(raw, list) else doc.loc("derive")
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
        if k in ("gradient", "hessian") and not has_objective:
            raise SpecError(
                f"'{k}' needs a scalar 'objective'; for 'output' derive a jacobian", loc
            )
        if k == "jacobian" and has_objective:
            raise SpecError(
                "'jacobian' needs a vector 'output'; the derivative of a scalar "
                "'objective' is its gradient",
                loc,
            )
        if k == "hessian" and n_wrt != 1:
            raise SpecError("'hessian' needs exactly one wrt symbol", loc)
        if k in out:
            raise SpecError(f"derive lists '{k}' twice", loc)
        out.append(k)
    return tuple(out)
