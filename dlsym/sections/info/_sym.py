"""Information quantities as SymPy sums over outcomes, and the named rewrite rules
that carry a proof from the definitions to a normal form.

A categorical distribution ``p`` has probabilities ``p[i]`` (an ``IndexedBase``); a
joint table has ``p(x, y)`` and its marginals ``p(x)``, ``p(y)`` (function classes
made per table). Each information quantity is first an unevaluated atom
(``Entropy(p)``, ``KL(p, q)``) that prints as in a textbook; ``definition`` turns it
into a sum, and the rules below (log of a product, linearity, marginalization, ...)
rewrite sums until two sides of an identity meet, or do not.
"""

from __future__ import annotations

import sympy as sp

from dlsym._errors import SpecError
from dlsym.sections.info import _parse as ip
from dlsym.sections.info._dist import Categorical, Joint
from dlsym.sections.info._joint import _Prob

I = sp.Symbol("i", integer=True, positive=True)  # the index of a categorical outcome


# --- information atoms: unevaluated quantities, printed as in a textbook -------------


def _atom(label, latex, text):
    def tex(self, printer):
        return latex(*[printer._print(a) for a in self.args])

    def txt(self, printer):
        return text(*[printer._print(a) for a in self.args])

    return type(label, (sp.Function,), {"info_latex": tex, "info_text": txt})


ATOMS = {
    "entropy": _atom(
        "Entropy", lambda *a: rf"H\left({', '.join(a)}\right)", lambda *a: f"H({', '.join(a)})"
    ),
    "conditional": _atom(
        "CondEntropy", lambda y, x: rf"H\left({y} \mid {x}\right)", lambda y, x: f"H({y} | {x})"
    ),
    "cross_entropy": _atom(
        "CrossEntropy", lambda a, b: rf"H\left({a}, {b}\right)", lambda a, b: f"H({a}, {b})"
    ),
    "kl": _atom(
        "KL",
        lambda a, b: rf"D_{{\mathrm{{KL}}}}\left({a} \,\|\, {b}\right)",
        lambda a, b: f"KL({a} ‖ {b})",
    ),
    "jsd": _atom(
        "JSD",
        lambda a, b: rf"\mathrm{{JSD}}\left({a} \,\|\, {b}\right)",
        lambda a, b: f"JSD({a} ‖ {b})",
    ),
    "mutual_information": _atom(
        "MI", lambda x, y: rf"I\left({x}; {y}\right)", lambda x, y: f"I({x}; {y})"
    ),
    "focal_loss": _atom(
        "Focal",
        lambda a, b, g: rf"\mathrm{{FL}}_{{{g}}}\left({a}, {b}\right)",
        lambda a, b, g: f"FL_{g}({a}, {b})",
    ),
    "gan_value": _atom(
        "GanValue",
        lambda a, b: rf"V\left(D^{{*}}; {a}, {b}\right)",
        lambda a, b: f"V(D*; {a}, {b})",
    ),
}
ProductOfMarginals = _atom(
    "ProductOfMarginals", lambda x, y: rf"{x} \otimes {y}", lambda x, y: f"{x}⊗{y}"
)


# --- from the parsed tree to SymPy ----------------------------------------------------


class Context:
    """The distributions of a spec and what their names print as."""

    def __init__(self, dists: dict, units: str, vectors=frozenset(), dims=None, algebra=None):
        self.dists = dists
        self.algebra = algebra  # the spec's symbols' shapes and spd set (matrix-form terms)
        self.shape = algebra.shape if algebra is not None else None
        self.lifted = {}  # display symbol -> a univariate Gaussian lifted to k dims
        self.vectors = frozenset(vectors)  # vector symbols (diagonal Gaussians, sum())
        self.dims = dict(dims or {})  # dim Symbol -> Integer, for numbers
        self.unit = sp.Integer(1) if units == "nats" else 1 / sp.log(2)
        self.units = units
        self.symbols = {}  # distribution / variable name -> display Symbol
        self.names = {}  # display Symbol -> LaTeX
        self.text_names = {}
        self.jf = {}  # joint name -> JointFunctions
        for name, d in dists.items():
            s = sp.Symbol(name)
            self.symbols[name] = s
            self.names[s] = d.latex
            if isinstance(d, Categorical):
                self.names[d.base] = d.latex
                self.names[d.base.label] = d.latex
            if isinstance(d, Joint):
                self.jf[name] = d.func
                for v in d.variables:
                    vs = sp.Symbol(v)
                    self.symbols[v] = vs
        self.Categorical, self.Joint = Categorical, Joint

    # display arguments of atoms
    def show(self, d):
        if isinstance(d, ip.DRef):
            return self.symbols[d.name]
        if isinstance(d, ip.DVar):
            return self.symbols[self.dists[d.joint].variables[d.var]]
        if isinstance(d, ip.DPair):
            return self.symbols[d.joint]
        if isinstance(d, ip.DProd):
            x, y = (self.symbols[v] for v in self.dists[d.joint].variables)
            return ProductOfMarginals(x, y)
        if isinstance(d, ip.DMix):
            return sp.Add(*[self.scalar(w) * self.show(t) for w, t in d.terms])
        raise TypeError(d)

    def scalar(self, tree):
        """A scalar tree with information quantities as atoms (row 0 of a proof)."""
        if isinstance(tree, ip.Num):
            return tree.value
        if isinstance(tree, ip.Op):
            args = [self.scalar(a) for a in tree.args]
            return OPS[tree.op](*args)
        if isinstance(tree, ip.Info):
            return self.atom(tree)
        raise TypeError(tree)

    def atom(self, info: ip.Info):
        a = info.args
        if info.fn == "entropy" and isinstance(a[0], ip.DCond):
            j = self.dists[a[0].joint]
            y, x = (self.symbols[j.variables[t]] for t in (a[0].target, 1 - a[0].target))
            return ATOMS["conditional"](y, x)
        if info.fn == "entropy" and isinstance(a[0], ip.DPair):
            return ATOMS["entropy"](*[self.symbols[v] for v in self.dists[a[0].joint].variables])
        if info.fn == "mutual_information":
            return ATOMS["mutual_information"](
                *[self.symbols[v] for v in self.dists[a[0].joint].variables]
            )
        shown = [self.show(d) if isinstance(d, ip.DIST_TYPES) else self.scalar(d) for d in a]
        return ATOMS[info.fn](*shown)


class CoordSum(sp.Function):
    """sum_{i=1}^{k} body_i: the sum over the k coordinates of an entrywise expression in
    vector symbols (a diagonal Gaussian's independent coordinates, or the spec's sum())."""

    nargs = 2

    def info_latex(self, printer):
        body, k = self.args
        return rf"\sum_{{i=1}}^{{{printer._print(k)}}} \left[{printer._print(body)}\right]_{{i}}"

    def info_text(self, printer):
        return f"sum({printer._print(self.args[0])})"

    def _sympystr(self, printer):  # the expression language's sum(), for "expr" fields
        return f"sum({printer._print(self.args[0])})"


def sum_rule(expr, vectors):
    """Linearity of the coordinate sum: constants come out (a term without a vector
    symbol sums to k times itself), so sum(x)/2 and sum(x/2) meet. ``vectors``: the
    spec's vector symbols."""

    def rule(n):
        body, k = n.args
        out = sp.Integer(0)
        for t in sp.Add.make_args(sp.expand(body, log=False, power_exp=False, power_base=False)):
            c, rest = t.as_independent(*(t.free_symbols & set(vectors)), as_Add=False)
            out += c * (k if rest == 1 else CoordSum(rest, k))
        return out

    return expr.replace(lambda n: isinstance(n, CoordSum), rule)


OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "neg": lambda a: -a,
    "log": sp.log,
    "exp": sp.exp,
    "sqrt": sp.sqrt,
    "log2": lambda a: sp.log(a) / sp.log(2),
    "sum": lambda a, k: CoordSum(a, k),
}


# --- outcome spaces and definitions -------------------------------------------------------


def space(ctx: Context, d):
    """The outcomes ``d`` is a distribution over: ('cat', k), ('var', joint, v),
    ('pair', joint) or ('gauss', name)."""
    if isinstance(d, ip.DRef):
        dist = ctx.dists[d.name]
        if isinstance(dist, ctx.Categorical):
            return ("cat", dist.k)
        if isinstance(dist, ctx.Joint):
            return ("pair", d.name)
        return ("gauss", d.name)
    if isinstance(d, ip.DVar):
        return ("var", d.joint, d.var)
    if isinstance(d, (ip.DPair, ip.DProd)):
        return ("pair", d.joint)
    if isinstance(d, ip.DMix):
        spaces = {space(ctx, t) for _, t in d.terms}
        if len(spaces) != 1:
            return ("mixed",)
        s = spaces.pop()
        return ("mixed",) if s[0] == "gauss" else s
    raise TypeError(d)


def describe(ctx, s) -> str:
    if s[0] == "cat":
        return f"{s[1]} outcomes"
    if s[0] == "var":
        j = ctx.dists[s[1]]
        return f"the values of {j.variables[s[2]]} ({j.shape[s[2]]})"
    if s[0] == "pair":
        return f"the cells of the table '{s[1]}'"
    return "a Gaussian" if s[0] == "gauss" else "mixed outcomes"


def at(ctx: Context, d, idx):
    """The probability that ``d`` gives outcome ``idx`` (i, or (x, y), or x)."""
    if isinstance(d, ip.DRef):
        dist = ctx.dists[d.name]
        if isinstance(dist, ctx.Categorical):
            return dist.base[idx]
        return ctx.jf[d.name].joint(*idx)
    if isinstance(d, ip.DVar):
        return ctx.jf[d.joint].marginal[d.var](idx)
    if isinstance(d, ip.DPair):
        return ctx.jf[d.joint].joint(*idx)
    if isinstance(d, ip.DProd):
        f = ctx.jf[d.joint]
        return f.marginal[0](idx[0]) * f.marginal[1](idx[1])
    if isinstance(d, ip.DMix):
        return sp.Add(*[ctx.scalar(w) * at(ctx, t, idx) for w, t in d.terms])
    raise TypeError(d)


def summation(ctx: Context, s, body):
    """Σ over the outcomes of space ``s`` of ``body(idx)``: nested single sums."""
    if s[0] == "cat":
        return sp.Sum(body(I), (I, 1, s[1]))
    f, shape = ctx.jf[s[1]], ctx.dists[s[1]].shape
    if s[0] == "var":
        v = f.index[s[2]]
        return sp.Sum(body(v), (v, 1, shape[s[2]]))
    x, y = f.index
    return sp.Sum(sp.Sum(body((x, y)), (y, 1, shape[1])), (x, 1, shape[0]))


def _same_space(ctx, info, a, b):
    sa, sb = space(ctx, a), space(ctx, b)
    if "mixed" in (sa[0], sb[0]) or sa != sb:
        raise SpecError(
            f"{info.fn}() compares two distributions over the same outcomes; "
            f"here {describe(ctx, sa)} and {describe(ctx, sb)}",
            info.loc,
        )
    return sa


def definition(ctx: Context, info: ip.Info):
    """The definition of one information quantity as a sum (in the spec's units)."""
    a, fn, u = info.args, info.fn, ctx.unit
    log = sp.log
    if fn == "entropy" and isinstance(a[0], ip.DCond):
        f = ctx.jf[a[0].joint]
        t = a[0].target
        cond = f.conditional[t]
        x, y = f.index
        return -u * summation(
            ctx, ("pair", a[0].joint), lambda ix: f.joint(*ix) * log(cond(ix[t], ix[1 - t]))
        )
    if fn == "mutual_information":
        f = ctx.jf[a[0].joint]
        return u * summation(
            ctx,
            ("pair", a[0].joint),
            lambda ix: (
                f.joint(*ix) * log(f.joint(*ix) / (f.marginal[0](ix[0]) * f.marginal[1](ix[1])))
            ),
        )
    if fn == "entropy":
        s = space(ctx, a[0])
        return -u * summation(ctx, s, lambda ix: at(ctx, a[0], ix) * log(at(ctx, a[0], ix)))
    if fn == "focal_loss":
        s = _same_space(ctx, info, a[0], a[1])
        g = ctx.scalar(a[2])
        return -u * summation(
            ctx,
            s,
            lambda ix: at(ctx, a[0], ix) * (1 - at(ctx, a[1], ix)) ** g * log(at(ctx, a[1], ix)),
        )
    s = _same_space(ctx, info, a[0], a[1])
    p, q = (lambda ix: at(ctx, a[0], ix)), (lambda ix: at(ctx, a[1], ix))
    if fn == "cross_entropy":
        return -u * summation(ctx, s, lambda ix: p(ix) * log(q(ix)))
    if fn == "kl":
        return u * summation(ctx, s, lambda ix: p(ix) * log(p(ix) / q(ix)))
    if fn == "jsd":
        half = sp.Rational(1, 2)
        m = lambda ix: (p(ix) + q(ix)) / 2  # noqa: E731
        return u * (
            half * summation(ctx, s, lambda ix: p(ix) * log(p(ix) / m(ix)))
            + half * summation(ctx, s, lambda ix: q(ix) * log(q(ix) / m(ix)))
        )
    if fn == "gan_value":
        d = lambda ix: p(ix) / (p(ix) + q(ix))  # noqa: E731
        return u * summation(ctx, s, lambda ix: p(ix) * log(d(ix)) + q(ix) * log(1 - d(ix)))
    raise SpecError(f"{fn}() has no definition for these distributions", info.loc)


# --- the rewrite rules of a proof ---------------------------------------------------------


def _walk(expr, fn):
    """Apply ``fn`` bottom-up to every subexpression."""
    if not expr.args or isinstance(expr, (sp.Indexed, _Prob)):
        return fn(expr)
    args = [_walk(a, fn) for a in expr.args]
    # rebuilding an unchanged node would re-evaluate it (2*(a + b) distributes)
    new = expr if all(a is b for a, b in zip(args, expr.args)) else expr.func(*args)
    return fn(new)


def conditional_rule(expr):
    """p(y | x) = p(x, y) / p(x)."""

    def fn(e):
        if isinstance(e, _Prob) and e.role == "cond":
            jf = e.owner
            t = jf.conditional.index(type(e))
            target, given = e.args
            xy = (given, target) if t == 1 else (target, given)
            return jf.joint(*xy) / jf.marginal[1 - t](given)
        return e

    return _walk(expr, fn)


# factor_list works on a dense polynomial in all its generators: a 32 x 32 table's
# marginal sums 32 cells, and factoring the 64 of them took a minute (a sum of that
# many cells has no factor to find anyway)
MAX_TERMS_TO_FACTOR = 16


def split_log(arg):
    """log(arg) as a sum of logs of its factors, every factor kept positive: log(1 - r**2)
    is log(1 - r) + log(r + 1), never log(r - 1) + log(r + 1) + i pi (what
    expand_log(force=True) gives from factor's -(r - 1)(r + 1)). When no sign flip makes
    the constant positive, the log stays whole."""
    num, den = sp.fraction(sp.together(arg))
    if den != 1:
        return split_log(num) - split_log(den)
    if isinstance(num, sp.Add) and len(num.args) > MAX_TERMS_TO_FACTOR:
        return sp.log(num)  # a marginal of a large table: a sum of cells, whole
    try:
        coeff, factors = sp.factor_list(num)
    except sp.PolynomialError:  # p[i] q[i], exp(...): factors of probabilities, positive
        return sp.expand_log(sp.log(num), force=True)
    oriented = []
    for f, k in factors:
        # each factor the way round it is positive: provably, or read as 1 - a rather
        # than a - 1 (a negative constant term); an odd power flips the constant's sign
        if f.is_positive is not True and ((-f).is_positive or f.as_coeff_add()[0] < 0):
            f, coeff = -f, coeff * (-1) ** k
        oriented.append((f, k))
    if coeff < 0:
        odd = [i for i, (f, k) in enumerate(oriented) if k % 2 and f.is_positive is not True]
        if not odd:
            return sp.log(arg)
        f, k = oriented[odd[0]]
        oriented[odd[0]] = (-f, k)
        coeff = -coeff
    out = sp.expand_log(sp.log(coeff), force=True) if coeff != 1 else sp.Integer(0)
    for f, k in oriented:
        # log(f^2) = 2 log|f|: an even power of a factor of unknown sign stays whole
        out += k * sp.expand_log(sp.log(f), force=True) if k % 2 or f.is_positive else sp.log(f**k)
    return out


def expand_logs(expr):
    """expand_log(force=True) without its sign errors: every log split by ``split_log``."""
    return expr.replace(lambda e: isinstance(e, sp.log), lambda e: split_log(e.args[0]))


def log_rule(expr):
    """log(a b) = log a + log b, log(a / b) = log a - log b, log 4 = 2 log 2."""

    def fn(e):
        if isinstance(e, sp.log):
            return split_log(e.args[0])
        return e

    return _walk(expr, fn)


def _expand(e):
    return sp.expand(e, log=False, power_exp=False, power_base=False, multinomial=True)


def _peel(e: sp.Sum):
    """A sum as (the inner sum or summand, the outermost limit): SymPy merges nested sums
    into one with several limits, innermost first."""
    if len(e.limits) > 1:
        return sp.Sum(e.function, *e.limits[:-1]), e.limits[-1]
    return e.function, e.limits[0]


def linearity(expr):
    """Σ (a + b) = Σ a + Σ b and Σ c a = c Σ a for c free of the index."""
    if isinstance(expr, sp.Sum):
        inner, (j, lo, hi) = _peel(expr)
        body = _expand(linearity(inner))
        out = []
        for t in sp.Add.make_args(body):
            c, dep = t.as_independent(j, as_Add=False)
            out.append(c * (sp.Sum(dep, (j, lo, hi)) if dep != 1 else hi - lo + 1))
        return sp.Add(*out)
    if expr.args and not isinstance(expr, (sp.Indexed, _Prob)):
        return expr.func(*[linearity(a) for a in expr.args])
    return expr


def _marginal_sum(e):
    if not isinstance(e, sp.Sum):
        return e
    inner, lim = _peel(e)
    f = marginalization(inner)
    j = lim[0]
    if isinstance(f, sp.Indexed) and f.indices == (j,):
        return sp.Integer(1)
    if isinstance(f, _Prob) and f.role in ("mx", "my") and f.args == (j,):
        return sp.Integer(1)
    if isinstance(f, _Prob) and f.role == "joint":
        a, b = f.args
        if b == j and not a.has(j):
            return f.owner.marginal[0](a)
        if a == j and not b.has(j):
            return f.owner.marginal[1](b)
    if isinstance(f, sp.Sum):  # Σ_x Σ_y c(y) p(x, y) = Σ_y c(y) Σ_x p(x, y)
        body, klim = _peel(f)
        c, dep = body.as_independent(j, as_Add=False)
        if isinstance(dep, _Prob) and dep.role == "joint" and not c.has(j):
            return sp.Sum(c * _marginal_sum(sp.Sum(dep, lim)), klim)
    if f.is_Mul:  # Σ_x c p(x, y) with c free of x
        c, dep = f.as_independent(j, as_Add=False)
        if c != 1:
            reduced = _marginal_sum(sp.Sum(dep, lim))
            if not isinstance(reduced, sp.Sum):
                return c * reduced
    return sp.Sum(f, lim)


def marginalization(expr):
    """Σ_y p(x, y) = p(x), Σ_x p(x, y) = p(y), Σ_i p_i = 1 (and exchanging the order of
    a double sum when the outer index appears only in p(x, y))."""
    if isinstance(expr, sp.Sum):
        return _marginal_sum(expr)
    if expr.args and not isinstance(expr, (sp.Indexed, _Prob)):
        return expr.func(*[marginalization(a) for a in expr.args])
    return expr


def regroup(expr):
    return _expand(expr)


RULES = (
    ("definition of the conditional", conditional_rule),
    ("log of a product and of a quotient", log_rule),
    ("linearity of the sum", linearity),
    ("marginalization and normalization", marginalization),
    ("linearity of the sum", linearity),
    ("marginalization and normalization", marginalization),
    ("regroup", regroup),
)
