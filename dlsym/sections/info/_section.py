"""Information theory: entropy, cross-entropy, KL, mutual information and JSD, derived in
closed form, identities proved step by step, every number checked (spec-format.md,
"Information theory").

``build(doc)`` validates a spec with ``distributions`` (and ``quantities``,
``identities``, ``units``), derives each quantity (a chain of named steps ending in a
closed form, an exact value for given tables), proves each identity (both sides to one
normal form), and returns an ``InfoDerivation`` whose ``verify()`` compares everything
with an independent SciPy/JAX reference at random distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from dlsym._errors import SpecError
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._parse import FUNCTIONS, NOT_FINITE, Scope
from dlsym.printing._render import latex_prose, plain_prose
from dlsym.sections._base import SectionDerivation, Shown, ShownStep
from dlsym.sections.info import _argmin as argmin
from dlsym.sections.info import _gan as gan
from dlsym.sections.info import _gauss as gauss
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _proof as proof
from dlsym.sections.info import _sym as isym
from dlsym.sections.info._dist import Joint, check_ranges, parse_distributions
from dlsym.sections.info._print import InfoExprPrinter, InfoLatexPrinter, InfoTextPrinter, in_bits
from dlsym.sections.info._values import (
    Evaluator,
    closed_form_function,
    exact_value,
    given_values,
    tables,
)
from dlsym.spec._common import header
from dlsym.spec._read import _col_shift
from dlsym.spec._symbols import _dims, _symbols
from dlsym.verify import report

SECTION_KEYS = ("distributions", "quantities", "identities", "units")
KINDS = ("quantities", "identities")
UNITS = ("nats", "bits")


@dataclass(frozen=True)
class Item:
    """One quantity or identity, derived."""

    kind: str  # "quantity" or "identity"
    statement: ip.Statement
    lhs: proof.Chain
    rhs: proof.Chain | None
    proved: bool  # identity: both sides closed; quantity: always
    exact: object = None  # a quantity's exact value / closed form (SymPy)
    argument: proof.Argument | None = None
    note: str = ""


def _scope(doc):
    dims, dim_symbols = _dims(doc)
    decls = _symbols(doc, dim_symbols)
    for d in decls:
        if len(d.shape) > 1 and d.domain != "spd":
            raise SpecError(
                f"symbol '{d.name}' is a matrix; in a distribution a matrix is a "
                "covariance: give it domain spd (symmetric positive definite)",
                doc.loc("symbols", d.name),
            )
    algebra = Algebra(
        ops.ShapeTable({d.symbol: d.shape for d in decls}),
        symmetric=frozenset(d.symbol for d in decls if d.domain == "spd"),
    )
    # dim Symbol -> its value in dims: the size k of a vector when numbers are computed
    dim_values = {dim_symbols[n]: sp.Integer(v) for n, v in dims.items()}
    return decls, Scope({d.name: d.symbol for d in decls}, dim_symbols, algebra), dim_values


def _statements(doc, key, names, relations):
    raw = doc.data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{key} must be a list of expressions", doc.loc(key))
    out = []
    for i, text in enumerate(raw):
        path = (key, i)
        where = f"{key[:-3] + 'y' if key == 'quantities' else 'identity'} {i + 1}"
        out.append(
            ip.parse_statement(
                text,
                where,
                doc.loc(*path),
                names,
                _col_shift(doc, path),
                lambda index, p=path, t=text: doc.text_loc(p, t, index),
                relations,
            )
        )
    return out


def build(doc) -> "InfoDerivation":
    if not isinstance(doc.data, dict):
        raise SpecError("a spec must be a YAML mapping of keys", doc.loc())
    data = doc.data
    default = tuple(k for k in KINDS if k in data) or KINDS[:1]
    head = header(doc, SECTION_KEYS, KINDS, default)
    units = data.get("units", "nats")
    if units not in UNITS:
        raise SpecError(f"units must be nats or bits, got {units!r}", doc.loc("units"))
    decls, scope, dim_values = _scope(doc)
    taken = set(scope.symbols) | set(FUNCTIONS) | set(ip.INFO_FUNCTIONS) | {"log2"}
    dists = parse_distributions(doc, scope, taken)
    check_ranges(doc, dists, decls)
    variables = {
        v: (name, i)
        for name, d in dists.items()
        if isinstance(d, Joint)
        for i, v in enumerate(d.variables)
    }
    names = ip.Names(
        dists,
        variables,
        dict(scope.symbols),
        {d.name: d.shape[0] for d in decls if len(d.shape) == 1},
    )
    quantities = _statements(doc, "quantities", names, ())
    identities = _statements(doc, "identities", names, ("==", ">=", "<="))
    for kind in head.derive:
        if not (quantities if kind == "quantities" else identities):
            raise SpecError(f"derive lists '{kind}' but the spec has no {kind}", doc.loc("derive"))
    if not quantities and not identities:
        raise SpecError(
            "an information-theory spec needs quantities or identities to derive",
            doc.key_loc("distributions"),
        )
    ctx = isym.Context(
        dists,
        units,
        vectors={d.symbol for d in decls if len(d.shape) == 1},
        dims=dim_values,
        algebra=scope.algebra,
    )
    items, minimizers = [], []
    if "quantities" in head.derive:
        items += [_quantity(ctx, s) for s in quantities if not isinstance(s.lhs, ip.ArgMin)]
        minimizers = [
            argmin.derive(ctx, s.lhs, decls) for s in quantities if isinstance(s.lhs, ip.ArgMin)
        ]
    if "identities" in head.derive:
        items += [_identity(ctx, s) for s in identities]
    # each symbol's concrete shape (the spec's shapes name only dims), for sampling
    sizes = {d.symbol: tuple(int(x.xreplace(dim_values)) for x in d.shape) for d in decls}
    return InfoDerivation(head, ctx, decls, items, minimizers, sizes)


def _finite(c, stmt):
    """A located error where a statement's expression holds a constant that is not a
    finite real number (entropy(p) + log(-1): SymPy's I, and math.log's domain error in
    the numeric reference, exit 3), as the expression language says for objectives."""
    if any(isinstance(e, sp.Basic) and e.has(*NOT_FINITE) for e in (c.start, c.end)):
        raise SpecError(
            "the expression has a constant that is not a finite real number (a division "
            "by zero, log(0), the log or square root of a negative number)",
            stmt.loc,
        )
    return c


def _quantity(ctx, stmt) -> Item:
    c = _finite(proof.chain(ctx, stmt.lhs), stmt)
    exact = exact_value(ctx, c.end)
    return Item("quantity", stmt, c, None, True, exact)


def _identity(ctx, stmt) -> Item:
    lhs, rhs = (_finite(proof.chain(ctx, side), stmt) for side in (stmt.lhs, stmt.rhs))
    if stmt.relation == "==":
        ok = proof.closes(lhs.end, rhs.end, ctx.vectors)
        note = ""
        if not ok:
            a, b = exact_value(ctx, lhs.end), exact_value(ctx, rhs.end)
            ok = (
                a is not None
                and b is not None
                and not (a - b).has(sp.Sum)
                and proof.closes(a, b, ctx.vectors)
            )
            note = (
                "closed by exact arithmetic at the given probabilities"
                if ok
                else "could not close the equation symbolically; it is checked numerically"
            )
        return Item("identity", stmt, lhs, rhs, ok, note=note)
    diff_tree = ip.Op(
        "sub", (stmt.lhs, stmt.rhs) if stmt.relation == ">=" else (stmt.rhs, stmt.lhs)
    )
    diff = _finite(proof.chain(ctx, diff_tree), stmt)
    arg = proof.inequality_argument(
        ctx,
        ip.Statement(">=", diff_tree.args[0], diff_tree.args[1], "", stmt.loc),
        diff.end,
        stmt.loc,
    )
    note = "" if arg else "no classical argument found; the inequality is checked numerically"
    return Item("identity", stmt, diff, None, arg is not None, argument=arg, note=note)


class InfoDerivation(SectionDerivation):
    """Value kinds (``function``): each quantity, minimizer and optimal discriminator,
    by its text; identities are not values."""

    section = "info"

    def __init__(self, head, ctx, decls, items, minimizers=(), sizes=None):
        self.ctx, self.decls, self.items = ctx, decls, tuple(items)
        self.sizes = sizes or {d.symbol: () for d in decls}
        self.minimizers = tuple(minimizers)
        # the spec's own LaTeX for its symbols (\boldsymbol{\mu}), then the distributions'
        self.latex_printer = InfoLatexPrinter(
            {**{d.symbol: d.latex for d in decls}, **ctx.names, **gauss.VECTOR_NAMES["latex"]},
            ctx.shape,
        )
        self.text_printer = InfoTextPrinter(
            {
                **{s: s.name for s in ctx.names},
                **ctx.text_names,
                **gauss.VECTOR_NAMES["text"],
                argmin.LAMBDA: "λ",
            },
            ctx.shape,
        )
        results, steps = {}, []
        calls = []
        for item in items:
            for tree in (item.statement.lhs, item.statement.rhs):
                if tree is not None:
                    gan.gan_calls(tree, calls)
        self.discriminators = tuple(gan.derive(ctx, c) for c in calls)
        for disc in self.discriminators:
            results[disc.text] = Shown(
                sp.sstr(disc.optimum), rf"D^{{*}}_{{i}} = {self.tex(disc.optimum)}", disc.optimum
            )
            steps.append(
                self._shown_step(
                    f"Optimal discriminator for {disc.info.text}",
                    disc.rows,
                    "pointwise maximization of V(D, G) over D for a fixed generator",
                )
            )
        for m in self.minimizers:
            results[m.text] = Shown(
                sp.sstr(m.optimum),
                rf"q^{{*}}_{{i}} = {self.tex(m.optimum)}",
                m.optimum,
                {"values": self._argmin_values(m)},
            )
            steps.append(
                self._shown_step(
                    f"{m.argmin.sense.title()}imizer {m.text}",
                    m.rows,
                    "Lagrange multiplier for the simplex",
                )
            )
        for item in items:
            results[item.statement.text] = self._shown(item)
            steps.append(self._step(item))
        notes = []
        if ctx.units == "bits":
            notes.append(
                "units: bits (every information quantity is divided by $\\log 2$, "
                "shown as $\\log_2$; log in expressions is the natural logarithm, "
                "log2 the binary one)"
            )
        notes += [f"{i.statement.text}: {i.note}" for i in items if i.note]
        notes += [m.note for m in self.minimizers if m.note]
        notes += [
            f"{i.statement.text} is infinite: a logarithm of a zero probability has a "
            "non-zero weight (for a KL divergence or cross-entropy: the first "
            "distribution puts mass where the second has none)"
            for i in items
            if i.exact is not None and i.exact in (sp.oo, -sp.oo)
        ]
        super().__init__(head, results, steps, tables(ctx), notes)

    def _argmin_values(self, m):
        """q* at the given probabilities, when every other distribution is given."""
        values = given_values(self.ctx)
        k = self.ctx.dists[m.argmin.dist].k
        out = [m.optimum.subs(isym.I, j).xreplace(values) for j in range(1, k + 1)]
        return [str(v) for v in out] if all(v.is_number for v in out) else None

    # -- printing ---------------------------------------------------------------
    def _display(self, e):
        if self.ctx.units == "bits" and isinstance(e, sp.Basic):
            return in_bits(e)
        return e

    def tex(self, e) -> str:
        return self.latex_printer.doprint(self._display(e))

    def txt(self, e) -> str:
        return self.text_printer.doprint(self._display(e))

    def _rows(self, item):
        """(lhs, relation, expr, rule) rows of the item's proof, in order."""
        rows = [(None, "=", e, rule) for rule, e in item.lhs.rows[1:]]
        first = item.lhs.start
        if item.rhs is not None and item.proved and not item.note:
            back = list(item.rhs.rows)
            for k in range(len(back) - 1, 0, -1):
                rows.append((None, "=", back[k - 1][1], back[k][0]))
        elif item.rhs is not None:
            rows.append(
                (
                    None,
                    "?",
                    item.rhs.end,
                    "the right-hand side, reduced the same way: the two normal forms differ",
                )
            )
        if item.exact is not None and item.exact != item.lhs.end:
            rows.append((None, "=", item.exact, "substitute the probabilities"))
        if item.argument is not None:
            arg = list(item.argument.rows)
            if arg[0][2] == item.lhs.start:  # kl(p, q) >= 0: straight to the argument
                rows = arg[1:]
            else:
                rows += arg
        out, lhs = [], first
        for i, (l, rel, e, rule) in enumerate(rows):
            head = l if l is not None else (lhs if i == 0 else None)
            out.append((head, rel, e, rule))
        return out

    def _shown_step(self, title, rows, why) -> ShownStep:
        latex, text, shown = [], [], None
        for lhs, rel, e, rule in rows:
            if lhs is None and rel == "=" and self.tex(e) == shown:
                continue  # the same row once printed (bits hide 1/log 2)
            shown = self.tex(e)
            if isinstance(lhs, tuple):  # a label: (LaTeX, text)
                l_tex, l_txt = lhs
            else:
                l_tex = self.tex(lhs) if lhs is not None else ""
                l_txt = self.txt(lhs) if lhs is not None else ""
            rel_txt = {"=": "=", r"\ge": "≥", r"\le": "≤", "?": "≟", "<": "<", ">": ">"}[rel]
            rel_tex = {"?": r"\overset{?}{=}"}.get(rel, rel)
            latex.append(rf"{l_tex} &{rel_tex} {self.tex(e)} && \text{{{_tex_text(rule)}}}")
            text.append(f"{l_txt} {rel_txt} {self.txt(e)}    [{_plain(rule)}]")
        seen = []
        for _, _, _, r in rows:
            if r and r not in seen:
                seen.append(r)
        return ShownStep(
            title,
            " \\\\\n".join(latex),
            "\n".join(text),
            f"{why}: {'; '.join(seen)}" if seen else why,
        )

    def _step(self, item) -> ShownStep:
        rows = self._rows(item)
        if not rows:
            rows = [(item.lhs.start, "=", item.lhs.start, "as written")]
        stmt = item.statement
        if item.kind == "quantity":
            title, why = f"Quantity {stmt.text}", "closed form from the definitions"
        elif item.argument is not None:
            title, why = f"Inequality {stmt.text}", f"by {item.argument.name}"
        elif stmt.relation in (">=", "<="):
            title, why = f"Inequality {stmt.text}", item.note
        else:
            title = f"Identity {stmt.text}"
            why = (
                "both sides reduce to the same normal form"
                if item.proved and not item.note
                else item.note
            )
        return self._shown_step(title, rows, why)

    def _shown(self, item) -> Shown:
        stmt = item.statement
        if item.kind == "quantity":
            value = item.exact if item.exact is not None else item.lhs.end
            latex = f"{self.tex(item.lhs.start)} = {self.tex(value)}"
            extra = {"units": self.ctx.units}
            if value.is_number and not value.has(sp.Sum, sp.Indexed, isym._Prob):
                extra["value"] = float(value) if value.is_finite else str(value)
            extra["text"] = self.txt(value)
            return Shown(InfoExprPrinter(self.ctx.shape).doprint(value), latex, value, extra)
        status = (
            "proved"
            if item.proved and not item.note
            else "closed at the given probabilities"
            if item.proved
            else "checked numerically"
        )
        if item.argument is not None:
            status = f"proved by {item.argument.name}"
        rel = {"==": "=", ">=": r"\ge", "<=": r"\le"}[stmt.relation]
        lhs, rhs = self.ctx.scalar(stmt.lhs), self.ctx.scalar(stmt.rhs)
        return Shown(
            stmt.text,
            f"{self.tex(lhs)} {rel} {self.tex(rhs)}",
            None,
            {"status": status, "proved": item.proved, "normal_form": self.txt(item.lhs.end)},
        )

    # -- numbers ----------------------------------------------------------------------

    VALUES_CALLED = "quantities"

    def _values(self) -> dict:
        """value kind -> its closed form: a quantity's expression, or the entries of a
        minimizer q* or an optimal discriminator D* (a vector over the outcomes)."""
        out = {
            d.text: _entries(d.optimum, isym.space(self.ctx, d.info.args[0])[1])
            for d in self.discriminators
        }
        out.update(
            {m.text: _entries(m.optimum, self.ctx.dists[m.argmin.dist].k) for m in self.minimizers}
        )
        out.update(
            {
                i.statement.text: i.exact if i.exact is not None else i.lhs.end
                for i in self.items
                if i.kind == "quantity"
            }
        )
        return out

    @property
    def value_kinds(self) -> tuple:
        return tuple(k for k in self.results if k in self._values())

    def what_is(self, kind: str) -> str:
        return "an identity or inequality (a statement, proved or checked numerically)"

    def _function(self, kind: str, backend: str):
        """The closed form of the quantity ``kind`` (as written in ``quantities``), or of a
        minimizer or optimal discriminator (a vector over the outcomes, last axis), as a
        callable: keywords are the spec's symbols and the probabilities of each symbolic
        distribution (``value.arguments`` lists them)."""
        return closed_form_function(self.ctx, self.decls, self._values()[kind], backend, kind)

    # -- verification ----------------------------------------------------------
    def _verify(self, points, seed, device, dtype, rtol, atol):
        ev = Evaluator(self.ctx, self.decls, points, seed, self.sizes, dtype)
        checks = []
        for disc in self.discriminators:
            checks.append(gan.check(self.ctx, disc, ev.ref, ev.fixed))
        for m in self.minimizers:
            checks.append(argmin.check(self.ctx, m, ev.ref, ev.fixed))
        for item in self.items:
            checks += ev.checks(item, rtol, atol)
        # the derived forms run in the dtype, the references in SciPy's float64 (the
        # report says so), all on the CPU whatever device was asked
        return report(checks, ev.points, dtype, "cpu", rtol, atol)


def _entries(entry, k) -> tuple:
    """The k entries of a vector given by its entry at the generic index i."""
    return tuple(entry.subs(isym.I, j) for j in range(1, int(k) + 1))


def _tex_text(rule: str) -> str:
    return latex_prose(rule)


def _plain(rule: str) -> str:
    return plain_prose(rule).replace("\\sum", "Σ").replace("\\ge", "≥").replace("\\le", "≤")
