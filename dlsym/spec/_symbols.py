"""Declared symbols: their shapes, domains (and what SymPy may assume of them), LaTeX
names, and the dims their shapes name."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._names import check_user_name
from dlsym.expr._parse import Scope
from dlsym.spec._latex import ACCENTS, checked_latex
from dlsym.spec._read import _check_keys, _mapping, _parse


@dataclass(frozen=True)
class Domain:
    assumptions: dict
    ranks: tuple | None  # allowed numbers of axes; None: any
    square: bool = False  # matrices must be square


# Where each domain's samples live is in dlsym.verify.SAMPLERS; this table says what
# SymPy may assume about its entries and which shapes it fits.
DOMAINS: dict[str, Domain] = {
    "real": Domain({"real": True}, None),
    "positive": Domain({"positive": True}, None),
    "nonnegative": Domain({"nonnegative": True}, None),
    "unit_interval": Domain({"positive": True}, None),
    # a probability vector, or a matrix whose rows are (soft labels, a policy table)
    "simplex": Domain({"nonnegative": True}, (1, 2)),
    "onehot": Domain({"nonnegative": True}, (1, 2, 3)),  # one-hot rows: the last axis
    "spd": Domain({"real": True}, (2,), square=True),
    "orthogonal": Domain({"real": True}, (2,), square=True),
    # written {index: k}: integer labels 0..k-1 (class labels, token ids)
    "index": Domain({"integer": True, "nonnegative": True}, None),
}

# how a domain's allowed ranks are said
_RANKS = {1: "a vector", 2: "a matrix", 3: "a tensor of 3 axes"}

SYMBOL_KEYS = ("shape", "domain", "latex", "distribution")  # distribution: spec._laws
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
# the capitals that LaTeX has letters for (an A is the Latin A), but those dlsym's own
# notation uses: Δ the direction of a Hessian's action and a Taylor model, Φ the normal
# CDF, Γ the gamma function (a symbol Delta shown as Δ read Δ (4 (x³)ᵀ Δ + ...))
UPPER_GREEK = {"Theta", "Lambda", "Xi", "Pi", "Sigma", "Psi", "Omega"}
LATEX_ALIASES = {"lam": r"\lambda", "lmbda": r"\lambda", "lambda_": r"\lambda"}


@dataclass(frozen=True)
class SymbolDecl:
    name: str
    symbol: sp.Symbol
    shape: tuple  # SymPy dims
    domain: str
    latex: str
    index_size: Any = None  # domain {index: k}: k, a SymPy dim or Integer


def default_latex(name: str, shape) -> str:
    base, _, sub = name.partition("_")
    stem = "\\" + base if base in GREEK | UPPER_GREEK else base
    if base.endswith(tuple("0123456789")) and not sub:
        digits = len(base) - len(base.rstrip("0123456789"))
        stem, sub = base[:-digits], base[-digits:]
        stem = "\\" + stem if stem in GREEK | UPPER_GREEK else stem
    elif len(base) == 2 and base[0].isupper() and base[1].islower() and not sub:
        stem, sub = base[0], base[1]  # Xn, Wq: a matrix with a one-letter subscript
    if name in LATEX_ALIASES:
        stem, sub = LATEX_ALIASES[name], ""
    hat = stem.endswith("hat") and len(stem) > 3
    stem = stem[:-3] if hat else stem
    if shape:
        stem = rf"\boldsymbol{{{stem}}}" if stem.startswith("\\") else rf"\mathbf{{{stem}}}"
    elif len(stem) > 1 and not stem.startswith("\\"):
        # a name of several letters is one variable (ISO 80000-2): lr set as l r reads
        # as a product l times r
        stem = rf"\mathit{{{stem}}}"
    stem = rf"\hat{{{stem}}}" if hat else stem
    return f"{stem}{_nested_subscripts(sub)}"


def _nested_subscripts(sub: str) -> str:
    """``1`` -> ``_{1}``; a subscript with underscores of its own as subscripts of
    subscripts, ``a_b_c`` -> ``_{a_{b_{c}}}`` (``_{a_b_c}`` is TeX's "double subscript"
    error); empty parts (``w__1``, ``w_``) are left out."""
    out = ""
    for part in reversed([p for p in sub.split("_") if p]):
        out = f"_{{{part}{out}}}"
    return out


def scripted(latex: str) -> str:
    """A name's LaTeX ready for a subscript or superscript of dlsym's own (x_{t}): in
    braces where it has a script or a prime already (``{m_{1}}_{t}``, not TeX's
    "double subscript" ``m_{1}_{t}``)."""
    return braced(latex) if any(c in latex for c in "_^'") else latex


def braced(latex: str) -> str:
    """``latex`` as one group. TeX makes a group that holds one accent the accent itself
    (The TeXbook, appendix G; tex.web §1186): ``{\\hat{y}^{2}}^{\top}`` is a double
    superscript, so an accent's group ends with an empty group: ``{\\hat{y}^{2}{}}``."""
    accent = latex.startswith(tuple(f"\\{a}" for a in ACCENTS))
    return f"{{{latex}{{}}}}" if accent else f"{{{latex}}}"


def _dims(doc) -> tuple[dict, dict]:
    raw = _mapping(doc, doc.data.get("dims"), ("dims",), "dims")
    dims, symbols = {}, {}
    for name, value in raw.items():
        check_user_name(name, "dimension", doc.key_loc("dims", name))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SpecError(
                f"dimension '{name}' must be a positive integer, got {value!r}",
                doc.loc("dims", name),
            )
        dims[name] = value
        symbols[name] = sp.Symbol(name, integer=True, positive=True)
    return dims, symbols


MAX_RANK = 8  # tensors of any rank; past 8 axes a spec is more likely a typo


def _shape(doc, name, raw, dim_symbols) -> tuple:
    path = ("symbols", name, "shape")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"shape of '{name}' must be a list such as [n] or [m, n]", doc.loc(*path))
    if len(raw) > MAX_RANK:
        raise SpecError(
            f"shape of '{name}' has {len(raw)} axes; at most {MAX_RANK}", doc.loc(*path)
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
        elif isinstance(d, str) and d.strip().isidentifier():
            raise SpecError(
                f"dimension '{d}' in the shape of '{name}' is not in dims"
                f"{did_you_mean(d, dim_symbols)}",
                doc.loc(*path, i),
            )
        elif isinstance(d, str):
            out.append(_size_expression(doc, name, path + (i,), dim_symbols))
        else:
            raise SpecError(f"bad size {d!r} in the shape of '{name}'", doc.loc(*path, i))
    return tuple(out)


def _size_expression(doc, name, path, dim_symbols) -> sp.Expr:
    """A size written in the dims (``4*H``, ``n + 1``, ``h*dh``), as deep-learning code
    sizes a fused weight; parsed by the expression language, never evaluated. It must be
    a whole number, positive at every size of its dims (``n - 1`` is not: n may be 1),
    and linear in one dim if an argument is to tell that dim (``solve_sizes``)."""
    empty = Algebra(ops.ShapeTable({}), frozenset(), frozenset(), frozenset())
    # the spec's sizes, where given: a size such as n**n**n is refused when it is past
    # any number at them (9**(9**9) would be computed exactly, for minutes)
    raw = doc.data.get("dims")
    values = {
        dim_symbols[k]: v
        for k, v in (raw.items() if isinstance(raw, dict) else ())
        if k in dim_symbols and isinstance(v, int) and not isinstance(v, bool)
    }
    value = _parse(doc, path, f"the shape of '{name}'", Scope({}, dim_symbols, empty, values))
    where = doc.loc(*path)
    if not (value.is_integer and value.free_symbols <= set(dim_symbols.values())):
        raise SpecError(
            f"a size in the shape of '{name}' must be a whole number in the dims, got {value}",
            where,
        )
    if not value.is_positive:
        raise SpecError(
            f"the size {value} in the shape of '{name}' is not positive for every size of its dims",
            where,
        )
    return value


def _symbols(doc, dim_symbols) -> list[SymbolDecl]:
    raw = _mapping(doc, doc.data.get("symbols"), ("symbols",), "symbols")
    decls = []
    for name, info in raw.items():
        loc = doc.key_loc("symbols", name)
        check_user_name(name, "symbol", loc)
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
        if (dom.ranks is not None and len(shape) not in dom.ranks) or (
            dom.square and shape[0] != shape[1]
        ):
            # onehot of a scalar said "needs , but"
            need = "a square matrix" if dom.square else " or ".join(_RANKS[r] for r in dom.ranks)
            raise SpecError(
                f"domain '{domain}' needs {need}, but '{name}' is a {ops.fmt_shape(shape)}",
                doc.loc("symbols", name, "domain"),
            )
        latex = info.get("latex")
        if latex is not None and not isinstance(latex, str):
            raise SpecError(
                f"latex of '{name}' must be a string", doc.loc("symbols", name, "latex")
            )
        if latex is not None:
            latex = checked_latex(latex, f"latex of '{name}'", doc.loc("symbols", name, "latex"))
        symbol = sp.Symbol(name, **dom.assumptions)
        decls.append(
            SymbolDecl(name, symbol, shape, domain, latex or default_latex(name, shape), index_size)
        )
    apart = told_apart(decls)
    return [dataclasses.replace(d, latex=apart.get(d.name, d.latex)) for d in decls]


def told_apart(decls, more=()) -> dict:
    """{name: LaTeX} for the symbols ``decls`` and ``more`` names ((name, LaTeX,
    shape) triples: a spec's defines) whose default LaTeX another of them prints too:
    w__1 and w_1 are both w_{1}, w1 and w_1 too, lam and lambda_ both \\lambda; a paper
    would show two symbols as one. Those are typeset as their names, underscores shown
    (``\\mathrm{w\\_\\_1}``); a LaTeX the spec gives (``latex:``) is the user's choice
    and kept. Names told apart already (the symbols, before the defines) count by their
    default, so that a define w1 is told apart from them too."""
    named = [(d.name, d.latex, d.shape) for d in decls] + list(more)
    shown = {}  # name -> (the LaTeX it collides by, whether it is dlsym's default)
    for name, latex, shape in named:
        default = latex in (default_latex(name, shape), verbatim(name, shape))
        shown[name] = (default_latex(name, shape) if default else latex, default, shape)
    counts = Counter(latex for latex, _, _ in shown.values())
    return {
        name: verbatim(name, shape)
        for name, (latex, default, shape) in shown.items()
        if default and counts[latex] > 1
    }


def verbatim(name: str, shape) -> str:
    """The name as written, in upright (bold for a vector or matrix) type."""
    text = name.replace("_", r"\_")
    return rf"\mathbf{{{text}}}" if shape else rf"\mathrm{{{text}}}"


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
