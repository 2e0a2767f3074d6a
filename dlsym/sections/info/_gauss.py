"""Gaussian entropy, cross-entropy and KL as expectations of log densities.

A univariate Gaussian's log density is written out in ``x`` with the spec's own mean and
variance; linearity of the expectation and the moments ``E[x] = mu``,
``E[(x - c)^2] = sigma^2 + (mu - c)^2`` then give the closed form. A multivariate one
keeps the quadratic form whole: ``E_a[(x - mu_b)^T S_b^-1 (x - mu_b)] = tr(S_b^-1 S_a) +
(mu_a - mu_b)^T S_b^-1 (mu_a - mu_b)``, and the given mean vectors and covariance
matrices are substituted at the end.
"""

from __future__ import annotations

import re

import sympy as sp

from dlsym._errors import SpecError
from dlsym.expr import _ops as ops
from dlsym.printing._render import latex_escape
from dlsym.sections.info import _parse as ip
from dlsym.sections.info import _sym as isym
from dlsym.sections.info._dist import Gaussian

X = sp.Symbol("x", real=True)
# the outcome of a multivariate Gaussian: a vector, set in bold as the calculus LaTeX sets
# vectors (its parameters too, below), so the generic steps and the substituted ones read
# alike: (x - mu_q)^T Sigma_q^-1 (x - mu_q), then (mu_1 - mu_2)^T Sigma_2^-1 (mu_1 - mu_2)
X_VECTOR = sp.Symbol("x_vector", real=True)
VECTOR_NAMES = {"latex": {X_VECTOR: r"\mathbf{x}"}, "text": {X_VECTOR: "x"}}


class LogDensity(sp.Function):
    """log g(x) for the Gaussian named by the symbol ``g``, at ``x`` (X or X_VECTOR)."""

    def info_latex(self, printer):
        g, x = (printer._print(a) for a in self.args)
        return rf"\log {g}\left({x}\right)"

    def info_text(self, printer):
        g, x = (printer._print(a) for a in self.args)
        return f"log {g}({x})"


class Expect(sp.Function):
    """E_{x ~ g}[body]."""

    def info_latex(self, printer):
        body, g = self.args
        x = printer._print(X_VECTOR if body.has(X_VECTOR, Quad) else X)
        return rf"\mathbb{{E}}_{{{x} \sim {printer._print(g)}}}\left[{printer._print(body)}\right]"

    def info_text(self, printer):
        body, g = self.args
        return f"E_{printer._print(g)}[{printer._print(body)}]"


_PARAM_LATEX = {
    "quad": lambda b: (
        rf"\left(\mathbf{{x}} - \boldsymbol{{\mu}}_{{{b}}}\right)^{{\top}} "
        rf"\boldsymbol{{\Sigma}}_{{{b}}}^{{-1}} \left(\mathbf{{x}} - \boldsymbol{{\mu}}_{{{b}}}\right)"
    ),
    "logdet": lambda b: rf"\log\det\left(\boldsymbol{{\Sigma}}_{{{b}}}\right)",
    "trace": lambda b, a: (
        rf"\operatorname{{tr}}\left(\boldsymbol{{\Sigma}}_{{{b}}}^{{-1}} "
        rf"\boldsymbol{{\Sigma}}_{{{a}}}\right)"
    ),
    "mahal": lambda b, a: (
        rf"\left(\boldsymbol{{\mu}}_{{{a}}} - \boldsymbol{{\mu}}_{{{b}}}\right)^{{\top}} "
        rf"\boldsymbol{{\Sigma}}_{{{b}}}^{{-1}} "
        rf"\left(\boldsymbol{{\mu}}_{{{a}}} - \boldsymbol{{\mu}}_{{{b}}}\right)"
    ),
}
_PARAM_TEXT = {
    "quad": lambda b: f"(x - μ_{b})ᵀ Σ_{b}⁻¹ (x - μ_{b})",
    "logdet": lambda b: f"log det Σ_{b}",
    "trace": lambda b, a: f"tr(Σ_{b}⁻¹ Σ_{a})",
    "mahal": lambda b, a: f"(μ_{a} - μ_{b})ᵀ Σ_{b}⁻¹ (μ_{a} - μ_{b})",
}


def _param(kind):
    """Display atoms of a multivariate Gaussian's parameters: the quadratic form,
    log det, and the trace and Mahalanobis terms of its moments."""

    def tex(self, printer):
        return _PARAM_LATEX[kind](*[_subscript(printer, a) for a in self.args])

    def txt(self, printer):
        return _PARAM_TEXT[kind](*[printer._print(a) for a in self.args])

    return type(f"Gauss_{kind}", (sp.Function,), {"info_latex": tex, "info_text": txt})


Quad, LogDet, Trace, Mahal = (_param(k) for k in ("quad", "logdet", "trace", "mahal"))


def _subscript(printer, g) -> str:
    """The Gaussian ``g`` as a parameter's subscript: its LaTeX name (Sigma_q), or where
    that is a formula (a prior named N(0, I)) its name upright (Sigma_prior)."""
    tex = printer._print(g)
    if re.search(r"[(){}\\\s,]", tex.replace(r"\mathrm", "")) is None:
        return tex
    return rf"\mathrm{{{latex_escape(g.name.split('[')[0])}}}"


def _gaussian(ctx, d, info):
    if not isinstance(d, ip.DRef) or not isinstance(ctx.dists[d.name], Gaussian):
        raise SpecError(
            f"{info.fn}() of a Gaussian needs Gaussians for every argument "
            "(mixtures of Gaussians have no closed form)",
            info.loc,
        )
    return ctx.dists[d.name]


def definition(ctx, info: ip.Info):
    gs = [_gaussian(ctx, d, info) for d in info.args]
    if info.fn not in ("entropy", "cross_entropy", "kl"):
        raise SpecError(
            f"{info.fn}() of Gaussians has no closed form; use entropy, cross_entropy or kl",
            info.loc,
        )
    sized = [g for g in gs if g.size is not None]
    if sized:
        # N(m, S) with matrix symbols; a univariate Gaussian beside it stands for N(m 1, v I)
        if any(g.diagonal for g in gs):
            raise SpecError(
                f"{info.fn}() of a diagonal Gaussian (vector variances) and one "
                "with a covariance matrix symbol: write both with matrix symbols, "
                "or both with vector variances",
                info.loc,
            )
        if any(g.size != sized[0].size for g in sized) or any(
            g.size is None and not g.univariate for g in gs
        ):
            raise SpecError(f"{info.fn}() compares Gaussians of the same dimension", info.loc)
    elif len({g.mean.shape[0] for g in gs}) != 1 or len({g.univariate for g in gs}) != 1:
        raise SpecError(f"{info.fn}() compares Gaussians of the same dimension", info.loc)
    if len({g.diagonal for g in gs} - {()}) > 1:
        raise SpecError(f"{info.fn}() compares diagonal Gaussians of different sizes", info.loc)
    # a univariate Gaussian beside a matrix-symbol one is lifted to N(m 1, v I) of its size,
    # under a symbol of its own, so that it stays univariate in every other quantity
    sym = [
        ctx.symbols[g.name] if not sized or g.size is not None else _lifted(ctx, g, sized[0].size)
        for g in gs
    ]
    u = ctx.unit
    x = X if all(g.univariate for g in gs) else X_VECTOR
    if info.fn == "entropy":
        e = -Expect(LogDensity(sym[0], x), sym[0])
    elif info.fn == "cross_entropy":
        e = -Expect(LogDensity(sym[1], x), sym[0])
    else:
        e = Expect(LogDensity(sym[0], x) - LogDensity(sym[1], x), sym[0])
    diagonal = next((g.diagonal for g in gs if g.diagonal), None)
    if diagonal:
        # N(mu, diag(var)) has independent coordinates: log g(x) = sum_i log g_i(x_i), so
        # every quantity is the sum over coordinates of the univariate one (a Gaussian
        # with scalar parameters beside it stands for N(m 1, v I) of the same size)
        e = isym.CoordSum(e, diagonal[0])
    return u * e


# --- rules --------------------------------------------------------------------------------


def _walk(expr, fn):
    if not expr.args or isinstance(expr, (LogDensity, Quad, LogDet, Trace, Mahal)):
        return fn(expr)
    args = [_walk(a, fn) for a in expr.args]
    return fn(expr if all(a is b for a, b in zip(args, expr.args)) else expr.func(*args))


def _lifted(ctx, g, k):
    """The display symbol of N(m 1, v I) in k dimensions, for the univariate ``g``."""
    from dataclasses import replace

    s = sp.Symbol(f"{g.name}[{k}]")
    if s not in ctx.lifted:
        base = ctx.symbols[g.name]
        ctx.lifted[s] = replace(g, vector=True, size=k, lifted=True)
        ctx.names[s] = ctx.names[base]
        ctx.text_names[s] = g.name
    return s


class Rules:
    """The rule table for the Gaussians of one spec (their parameters are needed)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.by_symbol = {ctx.symbols[n]: d for n, d in ctx.dists.items() if hasattr(d, "cov")}
        self.by_symbol.update(ctx.lifted)

    @staticmethod
    def _matrix_form(g):
        """(m, S, inv S, log det S) of a Gaussian in matrix form: its symbols, or a lifted
        univariate one's N(m 1, v I)."""
        m, S = g.mean[0], g.cov[0, 0]
        if g.lifted:
            k = g.size
            return m * ops.ones(k), S * ops.eye(k), ops.eye(k) / S, k * sp.log(S)
        return m, S, ops.inv(S), ops.logdet(S)

    def log_density(self, expr):
        def fn(e):
            if not isinstance(e, LogDensity):
                return e
            g = self.by_symbol[e.args[0]]
            if g.univariate:
                m, v = g.mean[0], g.cov[0, 0]
                return -sp.log(2 * sp.pi * v) / 2 - (X - m) ** 2 / (2 * v)
            k = g.dim
            s = e.args[0]
            return -(k * sp.log(2 * sp.pi) + LogDet(s) + Quad(s)) / 2

        return _walk(expr, fn)

    def linearity(self, expr):
        def fn(e):
            if not isinstance(e, Expect):
                return e
            body, g = e.args
            out = []
            for t in sp.Add.make_args(
                sp.expand(body, power_base=False, log=False, multinomial=False)
            ):
                c, dep = t.as_independent(X, Quad, as_Add=False)
                out.append(c * (Expect(dep, g) if dep != 1 else 1))
            return sp.Add(*out)

        return _walk(expr, fn)

    def moments(self, expr):
        def fn(e):
            if not isinstance(e, Expect):
                return e
            body, gs = e.args
            g = self.by_symbol[gs]
            if isinstance(body, Quad):
                b = body.args[0]
                if b == gs:  # tr(I) + 0
                    return sp.sympify(g.dim)
                return Trace(b, gs) + Mahal(b, gs)
            m, v = g.mean[0], g.cov[0, 0]
            if isinstance(body, sp.Pow) and body.exp == 2:
                c = body.base - X
                if not c.has(X):
                    return v + (m + c) ** 2
            poly = sp.Poly(sp.expand(body), X)
            if poly.degree() > 2:
                raise SpecError("moments above the second of a Gaussian are not supported")
            raw = {0: 1, 1: m, 2: v + m**2}
            return sp.Add(*[c * raw[k] for (k,), c in poly.terms()])

        return _walk(expr, fn)

    def substitute(self, expr):
        def fn(e):
            if isinstance(e, (LogDet, Trace, Mahal)) and any(
                self.by_symbol[s].size is not None for s in e.args
            ):
                return self._matrix_term(e)
            return self._entry_term(e)

        return _walk(expr, fn)

    def _matrix_term(self, e):
        """log det S, tr(S_b^-1 S_a), (m_a - m_b)^T S_b^-1 (m_a - m_b) with the matrix
        symbols kept whole, in the calculus engine's matrix operations."""
        alg = self.ctx.algebra
        if isinstance(e, LogDet):
            return self._matrix_form(self.by_symbol[e.args[0]])[3]
        b, a = (self._matrix_form(self.by_symbol[s]) for s in e.args)
        if isinstance(e, Trace):
            c, m = alg.split_scalar(alg.mm(b[2], a[1]))  # tr(2 S^-1) = 2 tr(S^-1)
            return c * ops.trace(m)
        d = a[0] - b[0]
        return alg.mm(d, alg.mm(b[2], d)) if d != 0 else sp.Integer(0)

    def _entry_term(self, e):
        """The same terms of Gaussians given as explicit lists, computed entry by entry."""
        if isinstance(e, LogDet):
            return sp.log(sp.factor(self.by_symbol[e.args[0]].cov.det()))
        if isinstance(e, Trace):
            b, a = (self.by_symbol[s] for s in e.args)
            return sp.simplify((b.cov.inv() * a.cov).trace())
        if isinstance(e, Mahal):
            b, a = (self.by_symbol[s] for s in e.args)
            d = a.mean - b.mean
            return sp.simplify((d.T * b.cov.inv() * d)[0, 0])
        return e

    def regroup(self, expr):
        if expr.has(isym.CoordSum):  # a diagonal Gaussian: regroup one coordinate's terms
            return expr.replace(
                lambda n: isinstance(n, isym.CoordSum),
                lambda n: isym.CoordSum(self._regroup(n.args[0]), n.args[1]),
            )
        return self._regroup(expr)

    def _regroup(self, expr):
        e = sp.expand(isym.expand_logs(expr))
        logs = [t for t in sp.Add.make_args(e) if t.has(sp.log)]
        rest = sp.Add(*[t for t in sp.Add.make_args(e) if not t.has(sp.log)])
        parts = [t.as_independent(sp.log) for t in logs]
        if (
            rest.is_Rational
            and rest != 0
            and all(c.is_Rational and c > 0 and isinstance(f, sp.log) for c, f in parts)
        ):
            # the entropy's textbook form: 1/2 log(2 pi e sigma^2)
            inside = sp.Mul(*[f.args[0] ** (2 * c) for c, f in parts])
            return sp.log(inside * sp.E ** (2 * rest)) / 2
        # the terms free of logs as the rules built them, where expanding made more of
        # them (a square multiplied out): the KL's
        # (s1² + (m1 − m2)²)/(2 s2²), not m1²/(2 s2²) − m1 m2/s2² + m2²/(2 s2²) + ..., which
        # also cancels to 0 in floating point at m1 = 1e8, m2 = 1e8 + 1
        shallow = sp.Add(
            *[t for t in sp.Add.make_args(sp.expand(expr, deep=False)) if not t.has(sp.log)]
        )
        if len(sp.Add.make_args(shallow)) < len(sp.Add.make_args(rest)) and (
            sp.expand(shallow - rest) == 0
        ):
            return sp.factor_terms(sp.Add(*logs)) + sp.factor_terms(shallow)
        return sp.factor_terms(e)

    def table(self):
        return (
            ("log density of the Gaussian", self.log_density),
            ("linearity of the expectation", self.linearity),
            ("Gaussian moments", self.moments),
            ("substitute the parameters", self.substitute),
            ("regroup", self.regroup),
        )


def rules(ctx):
    return Rules(ctx).table()
