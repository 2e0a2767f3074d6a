"""A constrained-optimization spec, validated into a ``Problem`` in standard form.

``minimize``/``maximize`` is a scalar expression; each ``subject_to`` entry is a
comparison, split here with ``ast`` (never evaluated): each side goes through the
calculus parser (``dlsym.expr._parse``), with its column offset mapped back into the YAML
text so that errors point inside the constraint. A chain ``0 <= x <= 1`` is two
constraints. Every constraint is then written in standard form, ``g(x) <= 0`` or
``h(x) = 0``, elementwise for vectors, and gets a multiplier of its own shape.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sympy as sp

from dlsym._errors import SpecError
from dlsym.calculus._derive import Engine
from dlsym.expr import _ops as ops
from dlsym.expr._parse import Scope, parse_expression
from dlsym.spec._read import _col_shift, _parse
from dlsym.spec._spec import Spec, build_spec
from dlsym.spec._symbols import SymbolDecl
from dlsym.spec._yamlfile import Document

SECTION_KEYS = ("minimize", "maximize", "subject_to", "define", "wrt")

# comparison operator -> (sense, LaTeX, text); '>=' is rewritten as '<=' with sides swapped
SENSES = {ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "=="}
REFUSED_COMPARISONS = {
    ast.Lt: "strict inequalities ('<') are not constraints (the feasible set would not be "
    "closed); use '<='",
    ast.Gt: "strict inequalities ('>') are not constraints (the feasible set would not be "
    "closed); use '>='",
    ast.NotEq: "'!=' is not a constraint",
    ast.Is: "'is' is not a constraint",
    ast.IsNot: "'is not' is not a constraint",
    ast.In: "'in' is not a constraint",
    ast.NotIn: "'not in' is not a constraint",
}

# Functions whose level sets are kinks or spheres: fine in an inequality (a convex
# sublevel set such as a norm ball), but an equality on them has no usable gradient at the
# kink (|x| = c, max(x) = c) and is never convex. Say so instead of deriving nonsense.
INEQUALITY_ONLY = {
    ops.norm: "norm",
    sp.Abs: "abs",
    ops.tmax: "max",
    ops.tmin: "min",
    ops.relu: "relu",
    sp.Max: "max",
    sp.Min: "min",
}

# multiplier names (first free one wins): inequalities, then equalities; the last of
# each is taken whatever the spec's letters (with underscores added where a symbol has
# its name), so its LaTeX is one no symbol's default prints as
MULTIPLIER_NAMES = {"ineq": ("lam", "mu", "kappa", "kkt_lam"), "eq": ("nu", "eta", "xi", "kkt_nu")}
MULTIPLIER_LATEX = {
    "lam": r"\lambda",
    "mu": r"\mu",
    "kappa": r"\kappa",
    "kkt_lam": r"\tilde{\lambda}",
    "nu": r"\nu",
    "eta": r"\eta",
    "xi": r"\xi",
    "kkt_nu": r"\tilde{\nu}",
}


def multiplier_family(c) -> str:
    """The LaTeX of the letter a constraint's multiplier family is named by (λ for
    λ₁, λ₂), in bold: the prose speaks of the family as one vector (λ ⪰ 0)."""
    base = MULTIPLIER_LATEX[c.multiplier.name.rstrip("0123456789").rstrip("_")]
    return rf"\boldsymbol{{{base}}}"


@dataclass(frozen=True)
class Constraint:
    """One constraint in standard form: ``func <= 0`` (ineq) or ``func = 0`` (eq)."""

    number: int  # 1-based, in the order written (chains give several)
    kind: str  # "ineq" or "eq"
    sense: str  # as written: "<=", ">=", "=="
    lhs: Any
    rhs: Any
    func: Any  # g(x) or h(x), over the inputs and the define names
    shape: tuple
    text: str
    path: tuple  # YAML path of the constraint
    multiplier: SymbolDecl


@dataclass(frozen=True)
class Problem:
    sense: str  # "minimize" or "maximize"
    objective: Any  # as written
    f: Any  # the function minimized (-objective for maximize)
    constraints: tuple  # Constraint
    variables: tuple  # wrt names
    base: Spec  # the user's symbols, dims and defines
    lagrangian: Any  # L(x, lambda, nu)
    spec: Spec  # calculus spec of L (symbols + multipliers), for the engine
    doc: Document = field(repr=False, compare=False)

    @property
    def inequalities(self):
        return tuple(c for c in self.constraints if c.kind == "ineq")

    @property
    def equalities(self):
        return tuple(c for c in self.constraints if c.kind == "eq")

    @property
    def variable_symbols(self) -> tuple:
        return tuple(self.base.symbol(v).symbol for v in self.variables)

    @property
    def parameters(self) -> tuple:
        return tuple(s for s in self.base.symbols if s.name not in self.variables)

    @cached_property
    def _engine(self) -> Engine:
        # one engine for every expansion: it writes the defines' bodies out once
        return Engine(self.spec)  # the spec knows the multipliers

    def expand(self, e):
        """Substitute every intermediate (define) by its body."""
        return self._engine.expand(e)


def parse_problem(doc: Document) -> Problem:
    data = doc.data
    if "objective" in data or "output" in data:
        key = "objective" if "objective" in data else "output"
        raise SpecError(
            f"'{key}' cannot be combined with minimize/maximize: a constrained "
            "problem states its objective as 'minimize: ...' or 'maximize: ...'",
            doc.key_loc(key),
        )
    if "minimize" in data and "maximize" in data:
        raise SpecError("give either 'minimize' or 'maximize', not both", doc.key_loc("maximize"))
    sense = "minimize" if "minimize" in data else "maximize" if "maximize" in data else None
    if sense is None:
        raise SpecError(
            "missing 'minimize' or 'maximize': the scalar objective of the constrained problem",
            doc.key_loc("subject_to"),
        )
    if "wrt" not in data:
        raise SpecError("missing 'wrt': the optimization variable(s), e.g. 'wrt: x'", doc.loc())
    base = _base_spec(doc)
    alg = base.algebra
    scope = Scope(
        {**{s.name: s.symbol for s in base.symbols}, **{d.name: d.symbol for d in base.defines}},
        base.dim_symbols,
        alg,
    )
    objective = _parse(doc, (sense,), sense, scope)
    if alg.shape(objective) != ():
        raise SpecError(
            f"{sense} must be a scalar, got a {ops.fmt_shape(alg.shape(objective))}; "
            "reduce it with sum() or mean()",
            doc.loc(sense),
        )
    variables = base.wrt
    var_syms = {base.symbol(v).symbol for v in variables}
    engine = Engine(base)
    if not engine.expand(objective).free_symbols & var_syms:
        raise SpecError(
            f"{sense} does not depend on the variables ({', '.join(variables)})", doc.loc(sense)
        )
    constraints = _constraints(doc, scope, base, var_syms, engine)
    f = objective if sense == "minimize" else -objective
    decls = _multipliers(base, constraints)
    constraints = tuple(dataclasses.replace(c, multiplier=m) for c, m in zip(constraints, decls))
    alg = alg.extended({m.symbol: m.shape for m in decls})  # base's algebra stays as parsed
    lagrangian = f + sp.Add(*[pair(alg, c.multiplier.symbol, c.func) for c in constraints])
    spec = dataclasses.replace(
        base,
        symbols=base.symbols + tuple(decls),
        objective=lagrangian,
        derive=("gradient",),
        algebra=alg,
    )
    return Problem(sense, objective, f, constraints, variables, base, lagrangian, spec, doc)


def pair(alg, multiplier, func):
    """The multiplier term of L: ``sum(lambda * g)`` (lambda^T g for vectors). Written as a
    sum of an elementwise product, it stays well-shaped when g becomes a broadcast scalar
    (``1 - y*(X w)`` at w = 0)."""
    if alg.shape(multiplier) == ():
        return multiplier * func
    return ops.tsum(multiplier * func)


def show_pair(alg, multiplier, func):
    """The same term as printed: ``lambda^T g`` for a vector, ``sum(Lambda . G)`` for a
    matrix."""
    shape = alg.shape(multiplier)
    if len(shape) == 1 and alg.shape(func) == shape:
        return alg.mm(multiplier, func)
    return pair(alg, multiplier, func)


def _base_spec(doc: Document) -> Spec:
    """The common keys (symbols, dims, define, wrt, verify) through the calculus validator,
    so they get the same checks and located errors; the objective is a placeholder."""
    data = {
        k: v
        for k, v in doc.data.items()
        if k not in ("minimize", "maximize", "subject_to", "derive")
    }
    data["objective"] = "0"
    return build_spec(Document(data, doc.file, doc.locations, doc.source))


def _constraints(doc, scope, base, var_syms, engine) -> list:
    raw = doc.data.get("subject_to")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(
            "subject_to must be a list of constraints such as '- x >= 0'", doc.loc("subject_to")
        )
    out = []
    for i, text in enumerate(raw):
        out.extend(_constraint(doc, ("subject_to", i), scope, base, var_syms, engine, len(out) + 1))
    return out


def _char_index(text: str, lineno: int, col_bytes: int) -> int:
    """Character index in ``text`` of an ast (1-based line, UTF-8 byte column)."""
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: lineno - 1])
    line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    return start + len(line.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))


def _constraint(doc, path, scope, base, var_syms, engine, number) -> list:
    text = doc.data
    for key in path:
        text = text[key]
    where = f"constraint {path[1] + 1}"
    if isinstance(text, bool) or not isinstance(text, str):
        shown = type(text).__name__ if not isinstance(text, (int, float)) else repr(text)
        raise SpecError(
            f"{where} must be a comparison such as 'x >= 0' or 'sum(x) == 1', got {shown}",
            doc.loc(*path),
        )
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    shift = _col_shift(doc, path)

    def locate_at(offset):
        return lambda index: doc.text_loc(path, text, lead + offset + index)

    def loc_of(index):
        return locate_at(0)(index) or doc.loc(*path)

    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # the expression parser reports it, with its location
        parse_expression(text, where, doc.loc(*path), scope, shift, locate_at(0))
        raise SpecError(f"{where} cannot be parsed", doc.loc(*path)) from None
    body = tree.body
    if not isinstance(body, ast.Compare):
        raise SpecError(
            f"{where} is not a comparison: write it as 'lhs <= rhs', 'lhs >= rhs' or 'lhs == rhs'",
            loc_of(0),
        )
    sides = [body.left, *body.comparators]
    senses = []
    for op, left in zip(body.ops, sides):
        end = _char_index(stripped, left.end_lineno, left.end_col_offset)
        at = end + len(stripped[end:]) - len(stripped[end:].lstrip(" \t\r\n)"))
        if type(op) in REFUSED_COMPARISONS:
            raise SpecError(f"{REFUSED_COMPARISONS[type(op)]} in {where}", loc_of(at))
        senses.append(SENSES[type(op)])
    if len(senses) > 1 and ("==" in senses or len(set(senses)) > 1):
        raise SpecError(
            f"{where}: a chain of comparisons must run one way ('0 <= x <= 1')", loc_of(0)
        )
    parsed = []
    for node in sides:
        start = _char_index(stripped, node.lineno, node.col_offset)
        end = _char_index(stripped, node.end_lineno, node.end_col_offset)
        parsed.append(
            (
                parse_expression(
                    stripped[start:end],
                    where,
                    loc_of(start),
                    scope,
                    shift + lead + start,
                    locate_at(start),
                ),
                start,
            )
        )
    alg = base.algebra
    out = []
    for sense, (lhs, at), (rhs, _) in zip(senses, parsed, parsed[1:]):
        try:
            shape = ops.broadcast(alg.shape(lhs), alg.shape(rhs), "compare")
        except ops.ShapeError as exc:
            raise SpecError(f"{exc} in {where}", loc_of(at)) from None
        func = alg.tidy(lhs - rhs if sense != ">=" else rhs - lhs)
        expanded = engine.expand(func)
        if not expanded.free_symbols & var_syms:
            names = ", ".join(base.wrt)
            unfolded = engine.expand(lhs - rhs)
            if unfolded.free_symbols & var_syms:
                # sum(p) == 1 of a simplex variable: its domain already says it
                raise SpecError(
                    f"{where} always holds on the variables' domains (a simplex sums to "
                    "1): drop it, the domain already constrains them",
                    loc_of(at),
                )
            raise SpecError(
                f"{where} does not involve the variables ({names}); a constraint "
                "on the parameters alone is not part of the problem",
                loc_of(at),
            )
        if sense == "==":
            _check_equality(expanded, var_syms, where, loc_of(at))
        out.append(
            Constraint(
                number + len(out),
                "eq" if sense == "==" else "ineq",
                sense,
                lhs,
                rhs,
                func,
                shape,
                stripped,
                path,
                None,
            )
        )
    return out


def _check_equality(expanded, var_syms, where, loc) -> None:
    for node in sp.preorder_traversal(expanded):
        name = INEQUALITY_ONLY.get(type(node))
        if name and node.free_symbols & var_syms:
            raise SpecError(
                f"'==' on {name}() in {where}: {name} is not smooth (or its level "
                "set is not convex), so an equality on it has no Lagrange "
                f"multiplier; write an inequality ({name}(...) <= c) or a smooth "
                "form (sum(x**2) == r**2)",
                loc,
            )


def _multipliers(base: Spec, constraints) -> list:
    used = {s.name for s in base.symbols} | {d.name for d in base.defines} | set(base.dim_symbols)
    # a vector's \boldsymbol{\lambda} is the letter \lambda too
    used_latex = {re.sub(r"^\\(boldsymbol|mathbf)\{(.*)\}$", r"\2", s.latex) for s in base.symbols}
    out = []
    for kind in ("ineq", "eq"):
        group = [c for c in constraints if c.kind == kind]
        if not group:
            continue

        def names(stem, k=len(group)):
            return {stem} if k == 1 else {f"{stem}{j}" for j in range(1, k + 1)}

        *letters, last = MULTIPLIER_NAMES[kind]
        stem = next(
            (
                n
                for n in letters
                if not names(n) & used
                and MULTIPLIER_LATEX[n] not in used_latex
                and not any(u.startswith(MULTIPLIER_LATEX[n] + "_") for u in used_latex)
            ),
            # every letter taken: kkt_lam, or kkt_lam_ (and so on) where a symbol has
            # that name too (its function's arguments were named twice: exit 3)
            next(last + "_" * i for i in itertools.count() if not names(last + "_" * i) & used),
        )
        for j, c in enumerate(group, 1):
            name = stem if len(group) == 1 else f"{stem}{j}"
            base_latex = MULTIPLIER_LATEX[stem.rstrip("_")]
            latex = rf"\boldsymbol{{{base_latex}}}" if c.shape else base_latex
            if len(group) > 1:
                latex += f"_{{{j}}}"
            symbol = sp.Symbol(name, real=True)
            out.append(
                (
                    c.number,
                    SymbolDecl(
                        name, symbol, c.shape, "nonnegative" if kind == "ineq" else "real", latex
                    ),
                )
            )
    return [d for _, d in sorted(out, key=lambda t: t[0])]
