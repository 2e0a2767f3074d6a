"""The distributions of random symbols (shared/spec-format.md, "Random variables and
expectations"): ``distribution: normal(0, s**2)`` or ``{normal: {mean: mu, cov: S}}``.

A distribution is read like an expression, without ``eval``: Python's ``ast`` finds the
family and its arguments, and each argument is parsed by the expression parser, so an
error in one points at its column in the YAML text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._parse import Scope, parse_expression

# family -> the names of its parameters, in the order they are written. Entries of a
# vector or matrix are independent and identically distributed; ``mvnormal`` (written
# {normal: {mean: mu, cov: S}}) is one vector with a covariance matrix.
FAMILIES = {
    "normal": ("mean", "var"),
    "uniform": ("low", "high"),
    "bernoulli": ("p",),
}
MULTIVARIATE = ("mean", "cov")
# the laws of an index symbol (domain {index: m}): one drawn example or minibatch member,
# uniformly (its one parameter: m) or with the probabilities p (a vector of size m)
INDEX_FAMILIES = ("uniform_index", "categorical")


@dataclass(frozen=True)
class Law:
    """The distribution of one random symbol."""

    family: str  # a key of FAMILIES, or "mvnormal"
    params: tuple  # SymPy expressions, in FAMILIES[family] (or MULTIVARIATE) order
    text: str  # as the spec writes it, for messages


def parse_laws(doc, decls, scope: Scope) -> dict:
    """{symbol: Law} for every declared symbol with a ``distribution`` key."""
    laws = {}
    for decl in decls:
        info = doc.data["symbols"][decl.name] or {}  # `x:` with nothing: a real scalar
        if "distribution" not in info:
            continue
        path = ("symbols", decl.name, "distribution")
        if decl.domain == "index":
            laws[decl.symbol] = _index_law(doc, path, info["distribution"], decl, scope)
            continue
        if "domain" in info:
            raise SpecError(
                f"'{decl.name}' has a domain and a distribution; a random symbol's values "
                "come from its distribution: drop the domain",
                doc.key_loc("symbols", decl.name, "domain"),
            )
        raw = info["distribution"]
        if isinstance(raw, dict):
            laws[decl.symbol] = _multivariate(doc, path, raw, decl, scope)
        elif isinstance(raw, str):
            laws[decl.symbol] = _written(doc, path, raw, decl, scope)
        else:
            raise SpecError(
                f"the distribution of '{decl.name}' must be written like normal(0, 1), "
                "uniform(-1, 1), bernoulli(p) or {normal: {mean: mu, cov: S}}",
                doc.loc(*path),
            )
    for sym, law in laws.items():
        for p in law.params:
            others = sorted(str(s) for s in p.free_symbols if s in laws)
            if others:
                raise SpecError(
                    f"the distribution of '{sym}' depends on the random symbol "
                    f"'{others[0]}'; parameters must be fixed symbols or numbers",
                    doc.loc("symbols", str(sym), "distribution"),
                )
    return laws


def _index_law(doc, path, raw, decl, scope) -> Law:
    """``uniform`` or ``categorical(p)`` for an index symbol: the example drawn."""
    loc = doc.loc(*path)
    m = decl.index_size
    if decl.shape != ():
        raise SpecError(
            f"a drawn index must be one label (a scalar), but '{decl.name}' is a "
            f"{ops.fmt_shape(decl.shape)}; draw one example and write the batch with it",
            doc.loc("symbols", decl.name, "shape"),
        )
    text = raw.strip() if isinstance(raw, str) else ""
    if text == "uniform":
        return Law("uniform_index", (m,), text)
    try:
        tree = ast.parse(text, mode="eval").body if text else None
    except SyntaxError:
        tree = None
    if not (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, ast.Name)
        and tree.func.id == "categorical"
        and len(tree.args) == 1
        and not tree.keywords
    ):
        raise SpecError(
            f"'{decl.name}' is an index (domain {{index: {m}}}): its distribution is "
            "uniform (a uniformly drawn example) or categorical(p) (p: the probability "
            "of each label)",
            loc,
        )
    p = _argument(doc, path, raw, tree.args[0], f"the probabilities of '{decl.name}'", scope)
    if scope.algebra.shape(p) != (m,):
        raise SpecError(
            f"the probabilities of '{decl.name}' must be a vector of size {m} (one per "
            f"label), got a {ops.fmt_shape(scope.algebra.shape(p))}",
            loc,
        )
    return Law("categorical", (p,), text)


def _argument(doc, path, text: str, node, where: str, scope):
    """One argument of a distribution's call (the ``ast`` node of the stripped
    ``text``), parsed by the expression parser where it stands in the YAML scalar, so
    an error points at its column."""
    stripped = text.strip()
    start = len(text) - len(text.lstrip()) + len(stripped.encode()[: node.col_offset].decode())
    return parse_expression(
        ast.get_source_segment(stripped, node),
        where,
        doc.loc(*path),
        scope,
        locate=lambda i: doc.text_loc(path, text, start + i),
    )


def _written(doc, path, text: str, decl, scope) -> Law:
    """``normal(0, s**2)``: a call of a family with its parameters."""
    loc = doc.loc(*path)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        tree = None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise SpecError(
            f"the distribution of '{decl.name}' must be a family and its parameters, like "
            f"normal(0, 1); one of: {', '.join(FAMILIES)}",
            loc,
        )
    family = tree.func.id
    if family not in FAMILIES:
        raise SpecError(
            f"unknown distribution '{family}'{did_you_mean(family, FAMILIES)}; one of: "
            f"{', '.join(FAMILIES)} (a multivariate normal: {{normal: {{mean: mu, cov: S}}}})",
            loc,
        )
    names = FAMILIES[family]
    nodes = dict(zip(names, tree.args))
    for kw in tree.keywords:
        if kw.arg not in names or kw.arg in nodes:
            raise SpecError(f"{family}() takes {', '.join(names)}, once each; got '{kw.arg}'", loc)
        nodes[kw.arg] = kw.value
    if len(tree.args) > len(names) or set(nodes) != set(names):
        raise SpecError(f"{family}() takes {len(names)} parameters: {', '.join(names)}", loc)
    params = []
    for name in names:
        where = f"the {name} of '{decl.name}'"
        value = _argument(doc, path, text, nodes[name], where, scope)
        if scope.algebra.shape(value) != ():
            raise SpecError(
                f"{where} must be a scalar (the entries of '{decl.name}' are independent "
                "and identically distributed); a vector mean with a covariance matrix is "
                "{normal: {mean: mu, cov: S}}",
                loc,
            )
        params.append(value)
    _check_numbers(family, dict(zip(names, params)), decl.name, loc)
    return Law(family, tuple(params), text.strip())


def _check_numbers(family, params: dict, name: str, loc) -> None:
    """Parameters written as numbers must make a distribution (the symbolic ones are
    checked at drawn values by the section, where the domains are known)."""
    p, var = params.get("p"), params.get("var")
    if p is not None and p.is_number and not 0 <= p <= 1:
        raise SpecError(f"the p of '{name}' is {p}, outside [0, 1]", loc)
    if var is not None and var.is_number and not var > 0:
        raise SpecError(f"the var of '{name}' is {var}, not positive", loc)
    low, high = params.get("low"), params.get("high")
    if low is not None and (high - low).is_number and not high - low > 0:
        raise SpecError(f"uniform(low, high) needs low < high; '{name}' has {low}, {high}", loc)


def _multivariate(doc, path, raw: dict, decl, scope) -> Law:
    """``{normal: {mean: mu, cov: S}}``: one normal vector with a covariance matrix."""
    inner = raw.get("normal")
    if list(raw) != ["normal"] or not isinstance(inner, dict) or set(inner) != set(MULTIVARIATE):
        raise SpecError(
            "a distribution mapping must be {normal: {mean: mu, cov: S}} (a multivariate "
            "normal); write the others like normal(0, 1)",
            doc.loc(*path),
        )
    if len(decl.shape) != 1:
        raise SpecError(
            f"a multivariate normal needs a vector, but '{decl.name}' is a "
            f"{ops.fmt_shape(decl.shape)}",
            doc.loc(*path),
        )
    params = []
    for name in MULTIVARIATE:
        at = path + ("normal", name)
        text = inner[name]
        value = parse_expression(
            text,
            f"the {name} of '{decl.name}'",
            doc.loc(*at),
            scope,
            locate=lambda i, at=at, text=text: doc.text_loc(at, text, i),
        )
        shape = scope.algebra.shape(value)
        n = decl.shape[0]
        fits = shape in ((), (n,)) if name == "mean" else shape == (n, n)
        if not fits:
            need = f"a scalar or a vector of size {n}" if name == "mean" else f"an {n} x {n} matrix"
            raise SpecError(
                f"the {name} of '{decl.name}' must be {need}, got a {ops.fmt_shape(shape)}",
                doc.loc(*at),
            )
        params.append(value)
    return Law("mvnormal", tuple(params), f"normal(mean={params[0]}, cov={params[1]})")
