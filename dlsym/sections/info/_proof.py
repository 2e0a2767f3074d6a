"""Chains of named steps for information quantities, identities and inequalities.

A *chain* starts at the quantities as written (``H(p) + D_KL(p || q)``), expands their
definitions into sums, and applies the rules of ``_info_sym`` (and of ``_info_gauss``
for Gaussians) one at a time, keeping each row that changed. An identity is proved when
both sides reach the same normal form; its proof prints the left chain, then the right
chain read backwards. An inequality ``a >= b`` is reduced to a known non-negative
quantity (a KL divergence, by Gibbs' inequality; an entropy) when ``a - b`` has its
normal form.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from dlsym._errors import SpecError
from dlsym.sections.info import _gauss as _info_gauss
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _sym as isym
from dlsym.sections.info._dist import Gaussian


@dataclass(frozen=True)
class Chain:
    rows: tuple  # ((rule or "", expr), ...): rows[0] is the expression as written

    @property
    def start(self):
        return self.rows[0][1]

    @property
    def end(self):
        return self.rows[-1][1]


def _gauss(ctx):
    return _info_gauss


def defined(ctx, tree):
    """The scalar tree with every information quantity replaced by its definition."""
    if isinstance(tree, ip.Num):
        return tree.value
    if isinstance(tree, ip.Op):
        return isym.OPS[tree.op](*[defined(ctx, a) for a in tree.args])
    if isinstance(tree, ip.Info):
        _check_mixtures(ctx, tree)
        if is_gaussian(ctx, tree):
            return _gauss(ctx).definition(ctx, tree)
        return isym.definition(ctx, tree)
    raise TypeError(tree)


def is_gaussian(ctx, info) -> bool:
    """A Gaussian among the arguments, or inside a mixture argument (whose entropy the
    Gaussian rules refuse, located: summing over its outcomes was an IndexError)."""
    return any(_holds_gaussian(ctx, d) for d in info.args)


def _holds_gaussian(ctx, d) -> bool:
    if isinstance(d, ip.DRef):
        return isinstance(ctx.dists[d.name], Gaussian)
    return isinstance(d, ip.DMix) and any(_holds_gaussian(ctx, t) for _, t in d.terms)


def _check_mixtures(ctx, info):
    for d in info.args:
        if isinstance(d, ip.DMix):
            total = sp.simplify(sum(ctx.scalar(w) for w, _ in d.terms))
            if total != 1:
                raise SpecError(
                    f"the weights of the mixture in {info.text} sum to {total}, not 1", info.loc
                )


def rules(ctx, expr):
    """The rules that apply to ``expr``: Gaussian expectations or sums over outcomes."""
    g = _gauss(ctx)
    if expr.has(g.Expect, g.LogDensity):
        return g.rules(ctx)
    return isym.RULES


def chain(ctx, tree) -> Chain:
    start = ctx.scalar(tree)
    rows = [("", start)]
    e = defined(ctx, tree)
    if e != start:
        rows.append(("expand the definitions", e))
    for name, rule in rules(ctx, e):
        new = rule(e)
        if new != e:
            rows.append((name, new))
            e = new
    return Chain(_merge(rows))


def _merge(rows):
    """Consecutive rows of one rule become one row (linearity applied twice, ...)."""
    out = []
    for name, e in rows:
        if out and out[-1][0] == name and name:
            out[-1] = (name, e)
        elif out and e == out[-1][1]:
            continue
        else:
            out.append((name, e))
    return out


def closes(a, b, vectors=frozenset()) -> bool:
    diff = a - b
    if diff.has(isym.CoordSum):  # sum(x)/2 against sum(x/2): linearity of the sum first
        diff = isym.sum_rule(isym.log_rule(diff), vectors)
    diff = isym.regroup(isym.log_rule(diff))
    if diff == 0:
        return True
    if diff.has(sp.Sum):
        return False
    return sp.simplify(diff) == 0


# --- inequalities -----------------------------------------------------------------------


def _pairs(ctx, tree):
    """Distribution arguments of the quantities in ``tree`` (for candidate KLs)."""
    found = []

    def walk(t):
        if isinstance(t, ip.Op):
            for a in t.args:
                walk(a)
        elif isinstance(t, ip.Info):
            for d in t.args:
                if isinstance(d, ip.DIST_TYPES) and not isinstance(d, ip.DCond) and d not in found:
                    found.append(d)
            if t.fn in ("mutual_information",) or (
                t.fn == "entropy" and isinstance(t.args[0], (ip.DCond, ip.DPair))
            ):
                j = t.args[0].joint
                for d in (ip.DPair(j), ip.DProd(j)):
                    if d not in found:
                        found.append(d)

    walk(tree)
    return found


@dataclass(frozen=True)
class Argument:
    rows: tuple  # ((lhs or None, relation, expr, reason), ...); a lhs starts a line
    name: str  # the classical argument


def inequality_argument(ctx, stmt, diff_end, loc) -> Argument | None:
    """``a - b`` (normal form ``diff_end``) as a known non-negative quantity."""
    args = _pairs(ctx, ip.Op("sub", (stmt.lhs, stmt.rhs)))
    for a in args:
        for b in args:
            if a == b:
                continue
            info = ip.Info("kl", (a, b), "kl", loc)
            try:
                kl = chain(ctx, info).end
            except SpecError:
                continue
            if closes(diff_end, kl, ctx.vectors):
                return Argument(
                    (
                        (None, "=", ctx.scalar(info), "regroup: a KL divergence"),
                        (None, r"\ge", sp.Integer(0), "Gibbs' inequality"),
                    )
                    + gibbs_rows(ctx, a, b),
                    "Gibbs' inequality (Jensen's inequality for the concave log)",
                )
            info = ip.Info("jsd", (a, b), "jsd", loc)
            try:
                jsd = chain(ctx, info).end
            except SpecError:
                continue
            for c in (1, 2):
                if closes(diff_end, c * jsd, ctx.vectors):
                    return Argument(
                        (
                            (
                                None,
                                "=",
                                c * ctx.scalar(info),
                                "regroup: a Jensen-Shannon divergence",
                            ),
                            (
                                None,
                                r"\ge",
                                sp.Integer(0),
                                "the JSD is a mean of two KL divergences, each "
                                "non-negative by Gibbs' inequality",
                            ),
                        ),
                        "Gibbs' inequality, through the Jensen-Shannon divergence",
                    )
    for a in args:
        info = ip.Info("entropy", (a,), "entropy", loc)
        if is_gaussian(ctx, info):
            continue
        try:
            h = chain(ctx, info).end
        except SpecError:
            continue
        if closes(diff_end, h, ctx.vectors):
            return Argument(
                (
                    (None, "=", ctx.scalar(info), "regroup: an entropy"),
                    (
                        None,
                        r"\ge",
                        sp.Integer(0),
                        "each term $-p \\log p \\ge 0$ for $0 \\le p \\le 1$",
                    ),
                ),
                "non-negativity of the entropy of a discrete distribution",
            )
    return None


def gibbs_rows(ctx, a, b) -> tuple:
    """The classical proof of D(p || q) >= 0, spelled out for these two distributions."""
    s = isym.space(ctx, a)
    if s[0] == "gauss":
        return ()
    p = lambda ix: isym.at(ctx, a, ix)  # noqa: E731
    q = lambda ix: isym.at(ctx, b, ix)  # noqa: E731
    kl = ctx.scalar(ip.Info("kl", (a, b), "kl", None))
    neg = isym.summation(ctx, s, lambda ix: p(ix) * sp.log(q(ix) / p(ix)))
    jensen = sp.log(isym.summation(ctx, s, lambda ix: sp.Mul(p(ix), q(ix) / p(ix), evaluate=False)))
    return (
        (-kl / ctx.unit, "=", neg, "Gibbs' inequality, the classical argument"),
        (None, r"\le", jensen, "Jensen's inequality: the log is concave"),
        (None, "=", sp.log(isym.summation(ctx, s, q)), "cancel"),
        (None, "=", sp.Integer(0), "probabilities sum to one"),
    )
