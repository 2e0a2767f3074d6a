"""Numbers from the symbolic forms: exact values at given probabilities, numeric
functions at random ones, the tables of a joint distribution, and the checks against
the independent reference of ``_info_num``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.codegen._compile import lambdify
from dlsym.codegen._stable import with_xlogy
from dlsym.sections._base import ValueTable
from dlsym.sections._signature import array_module
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _sym as isym
from dlsym.sections.info._dist import Categorical, Joint
from dlsym.sections.info._gauss_num import reference_name
from dlsym.sections.info._num import Reference, edge_points, rounded, sample
from dlsym.sections.info._proof import is_gaussian
from dlsym.verify import DTYPES, Check, as_dtype, compare, computed


def explicit(ctx, e):
    """Sums written out term by term; marginals and conditionals as sums of cells."""
    e = e.doit() if e.has(sp.Sum) else e
    e = isym.conditional_rule(e)

    def marg(f):
        jf, t = f.owner, (0 if f.role == "mx" else 1)
        m, n = ctx.dists[jf.name].shape
        a = f.args[0]
        cells = (
            [jf.joint(a, b) for b in range(1, n + 1)]
            if t == 0
            else [jf.joint(b, a) for b in range(1, m + 1)]
        )
        return sp.Add(*cells)

    return e.replace(lambda f: isinstance(f, isym._Prob) and f.role in ("mx", "my"), marg)


def given_values(ctx) -> dict:
    """{p[i] or p(x, y): value} for every distribution given with probabilities."""
    out = {}
    for d in ctx.dists.values():
        if isinstance(d, Categorical) and not d.symbolic:
            out.update({d.base[i + 1]: p for i, p in enumerate(d.probs)})
        elif isinstance(d, Joint) and not d.symbolic:
            out.update(
                {
                    d.func.joint(i + 1, j + 1): c
                    for i, row in enumerate(d.table)
                    for j, c in enumerate(row)
                }
            )
    return out


def _cells(e):
    return {a for a in e.atoms(sp.Indexed)} | {f for f in e.atoms(isym._Prob)}


def substitute(e, values):
    """Substitute given probabilities term by term, with 0 log 0 = 0; a term with log 0
    and a non-zero factor is +-oo (KL where the support of p is not inside that of q).
    xreplace, not subs: the keys are table cells (atoms), and subs with a 32 x 32 table's
    1024 of them took over a minute on its 3000 terms."""
    e = sp.expand(isym.expand_logs(e), power_base=False, power_exp=False)
    out = []
    for t in sp.Add.make_args(e):
        outer = sp.Mul(*[f for f in sp.Mul.make_args(t) if not f.has(sp.log)])
        if outer.xreplace(values) == 0:
            continue
        logs = [f for f in sp.Mul.make_args(t) if isinstance(f, sp.log)]
        zero = [f for f in logs if f.args[0].xreplace(values) == 0]
        if zero:
            rest = (t / sp.Mul(*zero)).xreplace(values)
            sign = sp.sign(rest) if rest.is_number else None
            if len(zero) != 1 or sign is None or sign == 0:
                return sp.nan
            out.append(-sign * sp.oo)
            continue
        out.append(t.xreplace(values))
    return sp.Add(*out)


def exact_value(ctx, end):
    """The closed form at the given probabilities (None if a distribution is symbolic)."""
    e = explicit(ctx, end)
    values = given_values(ctx)
    cells = _cells(e)
    if not cells:
        # the cells cancelled (H(X | Y) of a table whose X has one outcome: 0)
        return e if e.is_number else None
    if cells - set(values):
        return None
    used = [values[c] for c in cells]
    if not any(u.is_zero for u in used) and any(u.free_symbols for u in used):
        return e.xreplace(values)  # keep the loss's shape: -(y log q + (1 - y) log(1 - q))
    v = substitute(e, values)
    if v.has(sp.oo, -sp.oo, sp.nan, sp.zoo):
        return v
    return sp.expand(isym.expand_logs(v))


def tables(ctx) -> tuple:
    """The marginals and conditionals of every joint table given with numbers."""
    out = []
    for d in ctx.dists.values():
        if not isinstance(d, Joint) or d.symbolic:
            continue
        X, Y = d.variables
        m, n = d.shape
        px = [sum(row) for row in d.table]
        py = [sum(d.table[i][j] for i in range(m)) for j in range(n)]
        rows = [
            tuple([f"{X}={i + 1}"] + [str(c) for c in row] + [str(px[i])])
            for i, row in enumerate(d.table)
        ]
        rows.append(tuple([f"p({Y.lower()})"] + [str(v) for v in py] + ["1"]))
        out.append(
            ValueTable(
                f"{d.name}: joint p({X.lower()}, {Y.lower()}) with marginals",
                tuple([f"{X} \\ {Y}"] + [f"{Y}={j + 1}" for j in range(n)] + [f"p({X.lower()})"]),
                tuple(rows),
            )
        )
        cond = [
            tuple([f"{X}={i + 1}"] + [str(c / px[i]) if px[i] != 0 else "undefined" for c in row])
            for i, row in enumerate(d.table)
        ]
        out.append(
            ValueTable(
                f"{d.name}: conditional p({Y.lower()} | {X.lower()})",
                tuple([f"{X} \\ {Y}"] + [f"{Y}={j + 1}" for j in range(n)]),
                tuple(cond),
            )
        )
    return tuple(out)


# --- numeric checks ---------------------------------------------------------------------


REFERENCE_NAMES = {
    "entropy": "scipy entr",
    "cross_entropy": "scipy xlogy",
    "kl": "scipy rel_entr",
    "mutual_information": "scipy rel_entr",
    "jsd": "scipy jensenshannon",
    "focal_loss": "numpy",
    "gan_value": "scipy minimize_scalar",
}


def _functions(tree, out=None) -> list:
    out = [] if out is None else out
    if isinstance(tree, ip.Op):
        for a in tree.args:
            _functions(a, out)
    elif isinstance(tree, ip.Info):
        out.append(tree)
    return out


def _prepared(ctx, expr, values):
    """A closed form ready for numbers: sums written out and the given probabilities
    substituted, a coordinate sum's size k set to its dims value."""
    e = expr
    if e.has(sp.Sum, sp.Indexed, isym._Prob):
        e = substitute(explicit(ctx, e), values)
    return e.xreplace(ctx.dims)


def _compiled(e, decls, backend: str):
    """(callable, the decls it takes, the probability cells it takes after them) for the
    prepared closed form ``e``, lambdified with the language's functions."""
    g, used, cells = _compiled_all((e,), decls, backend)
    return (lambda *a: g(*a)[0]), used, cells


def _compiled_all(es, decls, backend: str):
    """The same for several prepared closed forms: the callable returns a list."""
    cells = sorted(set().union(*(_cells(e) for e in es)), key=sp.default_sort_key)
    es = tuple(with_xlogy(e, cells) for e in es)  # 0 log 0 = 0 at a probability of 0
    free = set().union(*(e.free_symbols for e in es))
    used = [d for d in decls if d.symbol in free]
    args = [d.symbol for d in used] + list(cells)
    placeholders = [sp.Symbol(f"_a{k}") for k in range(len(args))]
    g = lambdify(placeholders, [e.xreplace(dict(zip(args, placeholders))) for e in es], backend)
    return g, used, cells


def _cell(c, tables):
    """The value of one probability cell, from ``tables`` (distribution name -> its
    probabilities; leading axes are a batch)."""
    if isinstance(c, sp.Indexed):
        return tables[str(c.base.label)][..., int(c.indices[0]) - 1]
    return tables[c.owner.name][..., int(c.args[0]) - 1, int(c.args[1]) - 1]


def _owner(c) -> str:
    return str(c.base.label) if isinstance(c, sp.Indexed) else c.owner.name


def closed_form_function(ctx, decls, expr, backend: str, name: str):
    """A callable for the closed form ``expr``: keyword arguments are the spec's symbols it
    uses and, for each distribution with symbolic probabilities, its probabilities (a
    vector for a categorical, a table for a joint; leading axes are a batch). Given
    probabilities are already substituted. ``expr`` may be a tuple, the entries of a
    vector (a minimizer q*, an optimal discriminator D*): they are stacked on the last
    axis."""
    vector = isinstance(expr, tuple)
    values = given_values(ctx)
    es = tuple(_prepared(ctx, e, values) for e in (expr if vector else (expr,)))
    f, used, cells = _compiled_all(es, decls, backend)
    names = [d.name for d in used] + list(dict.fromkeys(_owner(c) for c in cells))
    xp = array_module(backend)

    def value(**given):
        if set(given) != set(names):
            raise TypeError(
                f"{name} takes {', '.join(names) or 'no arguments'}; got "
                f"{', '.join(sorted(given)) or 'none'}"
            )
        arrays = {k: xp.asarray(v, dtype=float) for k, v in given.items()}
        out = f(*[arrays[d.name] for d in used], *[_cell(c, arrays) for c in cells])
        if not vector:
            return out[0]
        # an entry free of the arguments (a given probability) comes back as a number
        batch = np.broadcast_shapes(*[np.shape(o) for o in out])
        return xp.stack([xp.broadcast_to(xp.asarray(o, dtype=float), batch) for o in out], -1)

    value.__name__ = "value"
    value.arguments = tuple(names)
    return value


class Evaluator:
    """Derived forms, computed in ``dtype``, and reference values (SciPy, float64) at the
    same sampled points, rounded to ``dtype``."""

    def __init__(self, ctx, decls, points, seed, sizes=None, dtype: str = "float64"):
        # SciPy's stats/special cost about a second to import: only verification pays it.
        self.ctx, self.decls, self.dtype = ctx, decls, dtype
        every_given = (
            all(not getattr(d, "symbolic", False) for d in ctx.dists.values()) and not decls
        )
        n = 1 if every_given else points
        self.fixed = rounded(sample(ctx.dists, decls, n, seed, sizes=sizes), dtype)
        self.random = (
            self.fixed
            if not every_given
            else self.fixed
            + rounded(
                sample(ctx.dists, decls, points, seed + 1, randomize=True, sizes=sizes), dtype
            )
        )
        self.samples = self.fixed
        self.points = len(self.fixed)
        # where an inequality no argument proves is also checked (edge_points)
        self.edges = rounded(edge_points(ctx.dists, decls, self.fixed[0], seed + 2), dtype)
        self.searching = False  # the samples past the fixed ones are the edges
        self.ref = Reference(ctx.dists, ctx.units, seed, ctx.dims)
        self.values = given_values(ctx)
        self._cache = {}

    def reference_name(self, trees) -> str:
        names = []
        for t in trees:
            for info in _functions(t):
                if is_gaussian(self.ctx, info):
                    first = self.fixed[0]
                    k = max(first[a.name][0].shape[0] for a in info.args)
                    n = reference_name(info.fn, self.ctx, info, k)
                else:
                    n = REFERENCE_NAMES[info.fn]
                if n not in names:
                    names.append(n)
        return "; ".join(names) or "exact arithmetic"

    def reference(self, tree):
        vals, ses = [], []
        for pt in self.samples:
            key = (tree, id(pt))  # Monte Carlo references are the slow ones: once each
            if key not in self._cache:
                self._cache[key] = (self.ref(tree, pt), self.ref.mc_se)
            v, se = self._cache[key]
            vals.append(v)
            ses.append(se)
        return np.array(vals, dtype=float), np.array(ses)

    def derived(self, expr):
        """The closed form ``expr`` (SymPy, from the proof) at every point."""
        if self.samples is self.fixed:
            return self._derived(expr, self.fixed, self.values)
        extra = self.samples[len(self.fixed) :]
        return np.concatenate(
            [self._derived(expr, self.fixed, self.values), self._derived(expr, extra, {})]
        )

    def _derived(self, expr, samples, values):
        """The closed form at every point, computed in the verification's dtype."""
        e = _prepared(self.ctx, expr, values)
        if e.is_number and not e.is_finite:  # KL = oo: the support is not inside
            v = float(e) if e in (sp.oo, -sp.oo) else np.nan
            return np.full(len(samples), v, DTYPES[self.dtype])
        f, used, cells = _compiled(e, self.decls, "numpy")
        out = []
        for pt in samples:
            vals = [pt["symbols"][d.symbol] for d in used] + [_cell(c, pt) for c in cells]
            with np.errstate(all="ignore"):
                v = f(*as_dtype(vals, self.dtype))
            if np.iscomplexobj(v):
                # the closed form left the real line (a log of a negative number): NaN,
                # which the check reports as not finite
                v = v.real if abs(v.imag) <= 1e-12 * max(1.0, abs(v.real)) else np.nan
            if not vals and not np.isfinite(v):
                v = _exact_number(e, v)
            # without inputs (every probability given) the closed form is a constant,
            # whatever NumPy computed it in: the number, in the dtype
            out.append(computed(v, self.dtype) if vals else as_dtype(v, self.dtype))
        return np.stack(out)

    def checks(self, item, rtol, atol) -> list:
        stmt = item.statement
        if item.kind == "quantity":
            expected, se = self.reference(stmt.lhs)
            value = item.exact if item.exact is not None else item.lhs.end
            got = self.derived(value)
            if _past_float64(value) and np.isinf(got).all():
                # kl of N(1e200, 1) from N(0, 1) is 5e399: finite, and inf in float64 on
                # both sides, which would agree as if it were infinite
                return [
                    Check(
                        "quantity",
                        stmt.text,
                        self.reference_name([stmt.lhs]),
                        len(got),
                        float("nan"),
                        float("nan"),
                        False,
                        note=f"its exact value, {sp.N(value, 6)}, is past float64 (1.8e308): "
                        "nothing to compare",
                        inconclusive=True,
                    )
                ]
            return [
                _compare(
                    "quantity",
                    stmt.text,
                    self.reference_name([stmt.lhs]),
                    got,
                    expected,
                    se,
                    rtol,
                    atol,
                )
            ]
        # an identity proved for every distribution is checked at random ones as well;
        # an inequality that no argument proves, out to its symbols' extremes too (it
        # passed at 16 draws in the samplers' ranges, H(N(0, s)) >= 0 for s positive)
        general = item.proved and not item.note
        searched = stmt.relation != "==" and not item.proved
        self.samples = (
            self.random if general else self.fixed + self.edges if searched else self.fixed
        )
        self.searching = searched and not general
        self.points = max(self.points, len(self.samples))
        try:
            return self._identity_checks(item, rtol, atol)
        finally:
            self.samples, self.searching = self.fixed, False

    def _identity_checks(self, item, rtol, atol) -> list:
        stmt = item.statement
        lhs, se_l = self.reference(stmt.lhs)
        rhs, se_r = self.reference(stmt.rhs)
        ref = self.reference_name([stmt.lhs, stmt.rhs])
        if stmt.relation == "==":
            both = _compare("identity", stmt.text, ref, lhs, rhs, np.hypot(se_l, se_r), rtol, atol)
            out = [dataclasses.replace(both, dtype="")]  # both sides are references
            if item.proved and not item.note:
                got = self.derived(item.lhs.end)
                out.append(_compare("normal form", stmt.text, ref, got, lhs, se_l, rtol, atol))
            return out
        sign = 1.0 if stmt.relation == ">=" else -1.0
        slack = sign * (lhs - rhs)
        finite = np.isfinite(lhs) & np.isfinite(rhs)
        # the tolerance from finite sides only: an infinite side made it infinite, and
        # kl(p, q) = inf <= -1 passed (-inf >= -inf); an infinite side is compared exactly
        scale = np.where(finite, np.maximum(np.abs(lhs), np.abs(rhs)), 0.0)
        tol = atol + rtol * scale + 5 * np.hypot(se_l, se_r)
        with np.errstate(invalid="ignore"):
            exact = sign * lhs >= sign * rhs  # inf <= -1 is False; a nan side holds nothing
        bad = ~np.where(finite, slack >= -tol, exact)
        # at an extreme (edge_points) a side the reference cannot compute is no evidence;
        # past the fixed points of a proved identity are random ones, which count as ever
        at_edge = np.arange(len(slack)) >= len(self.fixed)
        if not self.searching:
            at_edge[:] = False
        bad &= finite | ~at_edge
        worst = int(np.argmin(slack)) if len(slack) else 0
        violation = float(max(0.0, -np.nanmin(slack))) if np.isfinite(slack).any() else np.inf
        return [
            Check(
                "inequality",
                stmt.text,
                ref,
                len(slack),
                violation,
                0.0,
                not bad.any(),
                None
                if not bad.any()
                else {
                    "point": worst,
                    "index": [],
                    "expected": float(rhs[worst]),
                    "got": float(lhs[worst]),
                },
                "" if not bad.any() else f"violated at {int(bad.sum())} points",
                reference_dtype=rhs.dtype.name,  # both sides are references
            )
        ]


SECONDS_TO_EVALUATE = 2.0


def _past_float64(value) -> bool:
    """A finite constant whose size float64 cannot hold (5e399), decided by SymPy."""
    if not (isinstance(value, sp.Basic) and value.is_number and value.is_finite):
        return False
    try:
        big = within(SECONDS_TO_EVALUATE, lambda: abs(sp.N(value, 30)) > sp.Float("1.8e308"))
    except (TimeLimit, OverflowError, ValueError, TypeError):
        return False
    return big is sp.true


def _exact_number(e, v):
    """A constant closed form that NumPy overflowed on the way (log(2 π e 1e308)/2:
    2 π e 1e308 is past float64, its log is 356) evaluated by SymPy, whose exponents are
    unbounded; NumPy's value where that takes too long or leaves the real line."""
    try:
        exact = within(SECONDS_TO_EVALUATE, lambda: sp.N(e, 30))
    except (TimeLimit, OverflowError, ValueError):  # exp(exp(exp(1000))) is past SymPy too
        return v
    return float(exact) if exact.is_real else v


def _compare(kind, wrt, ref, got, expected, se, rtol, atol) -> Check:
    # the statement undefined at a point (its reference inf − inf: kl(p, q) −
    # cross_entropy(p, q) where q = 0 and p > 0, which the proved normal form, −H(p),
    # reads past): that point compares nothing, and finds nothing wrong
    undefined = np.isnan(expected)
    if kind == "identity":  # both sides are the statement's, evaluated: either undefined
        undefined = undefined | np.isnan(got)
    if undefined.all():
        return Check(
            kind,
            wrt,
            ref,
            len(got),
            float("nan"),
            float("nan"),
            False,
            note="undefined (inf - inf) at every point",
            inconclusive=True,
        )
    if undefined.any():
        keep = ~undefined
        check = _compare(kind, wrt, ref, got[keep], expected[keep], se[keep], rtol, atol)
        said = f"{int(undefined.sum())} point(s) where it is undefined (inf - inf) left out"
        return dataclasses.replace(check, note=f"{check.note}; {said}" if check.note else said)
    both_inf = np.isinf(expected) & np.isinf(got) & (np.sign(expected) == np.sign(got))
    if both_inf.all():
        return Check(kind, wrt, ref, len(got), 0.0, 0.0, True, note="both infinite")
    if both_inf.any():
        # the same infinity on both sides agrees (a KL with q = 0 where p > 0, at the given
        # tables); the finite points are compared as usual
        got, expected = np.where(both_inf, 0.0, got), np.where(both_inf, 0.0, expected)
    if se.any():  # Monte Carlo: the tolerance is 5 standard errors
        atol_arr = atol + 5 * se
        err = np.abs(got - expected)
        ok = err <= atol_arr + rtol * np.abs(expected)
        rel = err / np.maximum(np.abs(expected), 1e-300)
        worst = int(np.argmax(err - atol_arr))
        return Check(
            kind,
            wrt,
            ref + " (5 standard errors)",
            len(got),
            float(err.max()),
            float(rel.max()),
            bool(ok.all()),
            None
            if ok.all()
            else {
                "point": worst,
                "index": [],
                "expected": float(expected[worst]),
                "got": float(got[worst]),
            },
            dtype=got.dtype.name,
            reference_dtype=expected.dtype.name,
        )
    return compare(kind, wrt, ref, got[:, None], expected[:, None], rtol, atol)
