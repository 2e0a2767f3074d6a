"""Convexity by the composition rules (Boyd & Vandenberghe, §3.2): the curvature of an
expression in a set of variables, entry by entry, from the curvature of its parts.

Affine in the variables: constants, the variables, sums, constant multiples, products
with constant matrices, transposes, slices and reshapes. Then

- a nonnegative combination of convex terms is convex (a constant weight c >= 0, a
  scalar or elementwise, proven by ``_convexity.provably_nonnegative``); c <= 0 turns
  convex into concave; sums and means of entries keep the entries' curvature;
- h(g) is convex where h is convex and g affine, or h convex and nondecreasing and g
  convex (exp, softplus, relu, max, logsumexp); concave where h is concave and
  nondecreasing and g concave (log); |g| and norm(g) of an affine g are convex, an even
  power of one too, and a quadratic form gᵀ M g with M provably PSD;
- log σ(g) = −softplus(−g) and log(1 − σ(g)) = −softplus(g) are concave in an affine g
  (the logistic log-likelihood), log_softmax of an affine g too.

Every rule is sufficient, none necessary: an unknown curvature is not a counterexample
(the calculus section then searches for one numerically). It proves convexity jointly in
several variables, where a Hessian's blocks would have to be shown PSD together, and in
a matrix, whose Hessian is only an action.
"""

from __future__ import annotations

import sympy as sp

from dlsym.calculus._affine import product_chain
from dlsym.calculus._convexity import (
    provably_nonnegative,
    psd_quadratic_form,
    signed_symbols,
)
from dlsym.expr import _elementwise as elementwise
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr import _piecewise as piecewise
from dlsym.expr._conv import BILINEAR, avg_pool2d

AFFINE, CONVEX, CONCAVE = "affine", "convex", "concave"

# a function h: (what the proof calls it, its curvature, nondecreasing?)
_FUNCTIONS = {
    sp.exp: ("exp", CONVEX, True),
    elementwise.softplus: ("softplus", CONVEX, True),
    elementwise.relu: ("relu", CONVEX, True),
    sp.Abs: (r"$|\cdot|$", CONVEX, False),
    sp.log: ("log", CONCAVE, True),
    piecewise.maximum: ("maximum", CONVEX, True),
    piecewise.minimum: ("minimum", CONCAVE, True),
    ops.tmax: ("max", CONVEX, True),
    ops.tmin: ("min", CONCAVE, True),
    ops.logsumexp: ("logsumexp", CONVEX, True),
    ops.norm: ("a norm", CONVEX, False),
}
# operations that only move, select or add up entries: each entry's curvature is that
# of the entries it comes from (sums of entries: nonnegative combinations)
_ENTRYWISE = (
    *layout.SELECTIONS,
    layout.concatenate,
    layout.stack,
    # entries picked by constant labels (a label's log-probability, an embedding row)
    layout.take_along_axis,
    ops.gather,
    # a window's mean: a nonnegative combination (the padding adds zeros)
    avg_pool2d,
)


# functions that are >= 0 everywhere (a power of one keeps their curvature's proof)
_NONNEGATIVE = (ops.norm, sp.Abs, elementwise.relu, elementwise.softplus, sp.exp)


def _nonnegative(e) -> bool:
    """e >= 0 everywhere: one of _NONNEGATIVE, or a maximum with a nonnegative number
    among its arguments (the squared hinge's maximum(0, 1 − y ⊙ X w))."""
    if isinstance(e, _NONNEGATIVE):
        return True
    return isinstance(e, piecewise.maximum) and any(
        a.is_number and a.is_nonnegative for a in e.args
    )


def _abs_power(factors):
    """|u|^k, unevaluated, of factors that are each |u|^a or u^(2b) of one u (SymPy
    writes |x|³ as x² |x|), or None."""
    total, base = 0, None
    for f in factors:
        b, k = f.as_base_exp()
        inner = b.args[0] if isinstance(b, sp.Abs) else b
        if not k.is_Integer or (not isinstance(b, sp.Abs) and not k.is_even):
            return None
        if base is not None and inner != base:
            return None
        base, total = inner, total + int(k)
    return sp.Pow(sp.Abs(base), total, evaluate=False)


def _combined(parts) -> str | None:
    """The curvature of a sum of terms of these curvatures."""
    kinds = set(parts)
    if None in kinds or {CONVEX, CONCAVE} <= kinds:
        return None
    return next((k for k in (CONVEX, CONCAVE) if k in kinds), AFFINE)


def _flipped(kind):
    return {CONVEX: CONCAVE, CONCAVE: CONVEX}.get(kind, kind)


class Curvature:
    """``of(e)``: AFFINE, CONVEX, CONCAVE or None (not proven) in ``variables``;
    ``used``: the rules a proof used, in words."""

    def __init__(self, spec, variables: set):
        self.spec = spec
        self.variables = variables
        self.used: list = []
        self._memo: dict = {}

    def _say(self, rule: str) -> None:
        if rule not in self.used:
            self.used.append(rule)

    def constant(self, e) -> bool:
        return not (e.free_symbols & self.variables)

    def of(self, e):
        if e not in self._memo:
            self._memo[e] = self._of(e)
        return self._memo[e]

    def _of(self, e):
        if self.constant(e):
            return AFFINE
        if e in self.variables:
            return AFFINE
        if isinstance(e, sp.Add):
            return _combined([self.of(a) for a in e.args])
        if isinstance(e, sp.Mul):
            return self._scaled(e)
        if isinstance(e, sp.Pow):
            return self._power(e)
        if isinstance(e, ops.matmul):
            return self._matmul(e)
        if isinstance(e, BILINEAR):
            # a convolution is linear in its input for a constant kernel, and in its
            # kernel for a constant input (least squares through conv2d was undecided)
            varying = [a for a in e.args[:2] if not self.constant(a)]
            return AFFINE if len(varying) == 1 and self.of(varying[0]) == AFFINE else None
        if (
            isinstance(e, ops.trace)
            and isinstance(e.args[0], ops.inv)
            and e.args[0].args[0] in self.variables
            and any(d.symbol == e.args[0].args[0] and d.domain == "spd" for d in self.spec.symbols)
        ):
            # tr(S⁻¹) is convex on the spd cone (B&V §3.1.5, Exercise 3.18)
            self._say("the trace of the inverse of an spd matrix (convex on the spd cone)")
            return CONVEX
        if isinstance(e, _ENTRYWISE):
            return self._of_tensors(e)
        if isinstance(e, sp.log):
            special = self._log_sigmoid(e.args[0])
            if special is not None:
                return special
            inner = e.args[0]
            # log(softmax(u)) is log_softmax(u), as PyTorch's tutorials write the
            # cross-entropy (it was undecided where log_softmax was proven)
            if isinstance(inner, ops.softmax):
                return self.of(ops.log_softmax(*inner.args))
            # log(det(S)) of an spd S is its logdet, det S > 0 (it was undecided)
            if isinstance(inner, ops.det) and inner.args[0] in self.spec.algebra.symmetric:
                return self.of(ops.logdet(inner.args[0]))
            # log(sum(exp(u))) written out is logsumexp(u) (the whole sum only)
            if (
                isinstance(inner, ops.tsum)
                and len(inner.args) == 1
                and isinstance(inner.args[0], sp.exp)
            ):
                return self.of(ops.logsumexp(inner.args[0].args[0]))
            # log(sum(c ⊙ exp(u))) with c > 0 (a constant) is logsumexp(u + log c)
            if isinstance(inner, ops.tsum) and len(inner.args) == 1:
                c, f = inner.args[0].as_independent(sp.exp, as_Add=False)
                if (
                    isinstance(f, sp.exp)
                    and c != 1
                    and self.constant(c)
                    and provably_nonnegative(self.spec, c)
                    and c.is_zero is not True
                    and self.of(f.args[0]) in (AFFINE, CONVEX)
                ):
                    self._say(
                        r"$\log \sum_i c_i e^{u_i}$, $c_i > 0$, of convex $u_i$ "
                        r"(log-sum-exp of $u + \log c$)"
                    )
                    return CONVEX
            # log(1 + exp(u)) written out is softplus(u) (the logistic loss)
            rest = inner - 1
            if isinstance(inner, sp.Add) and isinstance(rest, sp.exp):
                return self.of(elementwise.softplus(rest.args[0]))
            exponents = self._exponents(inner)
            if exponents is not None and all(self.of(u) in (AFFINE, CONVEX) for u in exponents):
                # log(e^r + e^(−r)), log cosh r + log 2: the log-cosh loss
                self._say(r"$\log \sum_i c_i e^{u_i}$, $c_i > 0$, of convex $u_i$ (log-sum-exp)")
                return CONVEX
        if isinstance(e, ops.log_softmax) and self.of(e.args[0]) == AFFINE:
            self._say("log_softmax of an affine function (concave)")
            return CONCAVE
        if type(e) in _FUNCTIONS:
            return self._composition(e)
        if isinstance(e, piecewise.where):
            return self._piecewise_of_affine(e)
        if isinstance(e, ops.logdet) and e.args[0] in self.spec.algebra.symmetric:
            # log det is concave on the spd cone (B&V §3.1.5), along the symmetric
            # directions the domain has (the convexity check restricts to those)
            self._say("the log-determinant of an spd matrix (concave on the spd cone)")
            return CONCAVE
        return None

    def _exponents(self, e) -> list | None:
        """u₁, u₂, ... of a sum c₁ e^(u₁) + c₂ e^(u₂) + ... with every cᵢ > 0 (a positive
        constant term is c e⁰), two terms at least; None for any other sum."""
        if not isinstance(e, sp.Add):
            return None
        out = []
        for t in e.args:
            c, f = t.as_independent(sp.exp, as_Add=False)
            if not (self.constant(c) and c.is_positive):
                return None
            if isinstance(f, sp.exp):
                out.append(f.args[0])
            elif f == 1:
                out.append(sp.Integer(0))
            else:
                return None
        return out

    def _scaled(self, e):
        varying = [a for a in e.args if not self.constant(a)]
        if len(varying) == 2 and self._x_log_x(*varying):
            c = sp.Mul(*[a for a in e.args if a not in varying])
            if provably_nonnegative(self.spec, c):
                self._say(
                    r"$u \log u$ (or $u \log(u / c)$, $c > 0$) of a nonnegative affine $u$ "
                    "(negative entropy)"
                )
                return CONVEX
            return None
        if len(varying) == 2 and self._quad_over_lin(*varying):
            c = sp.Mul(*[a for a in e.args if a not in varying])
            if provably_nonnegative(self.spec, c):
                self._say(
                    r"$g^2 / v$ of affine $g$ and positive affine $v$ (quadratic over linear)"
                )
                return CONVEX
            return None
        if len(varying) > 1:
            power = _abs_power(varying)
            if power is None:
                return None  # a product of two varying factors: not by these rules
            varying = [power]  # |x|³, which SymPy writes x² |x|
        (f,) = varying
        kind = self.of(f)
        if kind in (None, AFFINE):
            return kind
        return self._weighted(sp.Mul(*[a for a in e.args if self.constant(a)]), kind)

    def _weighted(self, c, kind):
        """The curvature of c f, f of curvature ``kind`` and c constant: kept by
        nonnegative weights, flipped by nonpositive ones, unknown by weights of either
        sign (a scalar factor, or the vector or matrix of c @ f)."""
        if provably_nonnegative(self.spec, c):
            self._say("nonnegative weights")
            return kind
        if provably_nonnegative(self.spec, -c):
            self._say("nonpositive weights (which turn convex into concave)")
            return _flipped(kind)
        return None

    def _quad_over_lin(self, a, b) -> bool:
        """g² · v⁻¹ with g an affine scalar and v an affine scalar that is positive where
        defined: convex jointly (B&V Example 3.18, the perspective of g²), as η²/(2τ) of
        a Gaussian's natural parameters."""
        for sq, inv in ((a, b), (b, a)):
            if not (isinstance(sq, sp.Pow) and sq.exp == 2 and isinstance(inv, sp.Pow)):
                continue
            if inv.exp != -1:
                continue
            g, v = sq.base, inv.base
            shapes = self.spec.algebra.shape(g), self.spec.algebra.shape(v)
            if shapes != ((), ()) or self.of(g) != AFFINE or self.of(v) != AFFINE:
                continue
            if v.is_positive or provably_nonnegative(self.spec, v):
                return True
        return False

    def _x_log_x(self, a, b) -> bool:
        """u log u with u affine and nonnegative on the domains (convex there, 0 log 0 =
        0: a simplex's entries), or u log(u / c) = u log u − u log c with c > 0 constant
        (the generalized KL divergence p log(p/q) − p + q in p)."""
        for u, lg in ((a, b), (b, a)):
            if not isinstance(lg, sp.log):
                continue
            ratio = lg.args[0] / u
            if not self.constant(ratio):
                continue
            if (u.is_positive or provably_nonnegative(self.spec, u)) and (
                ratio.is_positive or provably_nonnegative(self.spec, ratio)
            ):
                return self.of(u) == AFFINE
        return False

    def _power(self, e):
        base, k = e.args
        if not self.constant(k):
            return None
        if k.is_number and k != 1 and base.is_positive and self.of(base) == AFFINE:
            # t^k on t > 0: convex for k >= 1 or k <= 0, concave for 0 <= k <= 1
            if k >= 1 or k <= 0:
                self._say(r"powers $u^k$ ($k \geq 1$ or $k \leq 0$) of a positive affine $u$")
                return CONVEX
            self._say(r"powers $u^k$ ($0 \leq k \leq 1$) of a positive affine $u$ (concave)")
            return CONCAVE
        if k.is_integer and k.is_even and k.is_positive and self.of(base) == AFFINE:
            self._say("even powers of affine functions")
            return CONVEX
        if k.is_number and k >= 1 and _nonnegative(base) and self.of(base) == CONVEX:
            # t^k is convex and nondecreasing for t >= 0
            self._say(r"powers $k \geq 1$ of nonnegative convex functions")
            return CONVEX
        if k == sp.Rational(1, 2) and self._norm_squared(base):
            # √(c + Σ uᵢ²) = ‖(u, √c)‖ of an affine u (pseudo-Huber, √(x·x + 1))
            self._say(r"the square root of $c + \|u\|^2$, the norm of $(u, c^{1/2})$, $u$ affine")
            return CONVEX
        if k == 1:
            return self.of(base)
        return None

    def _norm_squared(self, e) -> bool:
        """e = c + (squares of affine functions), c >= 0 a constant, at least one
        square: entrywise u**2, or the sums u·u, sum(u**2)."""
        squares = 0
        for t in sp.Add.make_args(e):
            if self.constant(t):
                if not provably_nonnegative(self.spec, t):
                    return False
                continue
            c, rest = sp.S.One, t
            if isinstance(t, sp.Mul):
                c = sp.Mul(*[a for a in t.args if self.constant(a)])
                rest = sp.Mul(*[a for a in t.args if not self.constant(a)])
            if not provably_nonnegative(self.spec, c) or not self._square(rest):
                return False
            squares += 1
        return squares > 0

    def _square(self, e) -> bool:
        """e is u**2 (entrywise), u @ u or sum(u**2), with u affine."""
        if isinstance(e, ops.tsum) and len(e.args) == 1:
            e = e.args[0]
        if isinstance(e, sp.Pow) and e.exp == 2:
            return self.of(e.base) == AFFINE
        if isinstance(e, ops.matmul) and e.args[0] == e.args[1]:
            return len(self.spec.algebra.shape(e.args[0])) == 1 and self.of(e.args[0]) == AFFINE
        return False

    def _matmul(self, e):
        chain = product_chain(e)
        varying = [f for f in chain if not self.constant(f)]
        if len(varying) == 1:
            # a constant matrix times a varying one: affine stays affine; convex entries
            # mixed with weights of either sign are not convex, with nonnegative (or
            # nonpositive) weights they are: -y @ log_softmax(W x), y on the simplex
            kind = self.of(varying[0])
            if kind in (None, AFFINE) or len(chain) != 2:
                return kind if kind == AFFINE else None
            (c,) = [f for f in chain if self.constant(f)]
            return self._weighted(c, kind)
        # xᵀ M x (w @ w = ‖w‖²) of an affine x; the entries of Xᵀ M X are not
        if (
            len(varying) == 2
            and all(self.constant(m) for m in chain[1:-1])
            and self.of(chain[-1]) == AFFINE
        ):
            if psd_quadratic_form(self.spec, e) is not None:
                self._say(r"quadratic forms $g^\top M g$ with $M \succeq 0$")
                return CONVEX
        return None

    def _piecewise_of_affine(self, e):
        """h(u) entry by entry, with u affine and h a univariate piecewise function
        (Huber's where(|u| <= d, u²/2, d (|u| − d/2))): convex where each piece is
        convex, the pieces meet, and the slope does not drop at a breakpoint."""
        leaves = self._leaves_of_args(e)
        if not leaves:
            return None
        u = leaves[0]
        t = sp.Dummy("t", real=True)
        subs = {}
        for leaf in leaves:
            # |y − X w| beside X w − y, 0.1 (X w − y) expanded: each a k u + c
            k = self._multiple(leaf, u)
            if k is None:
                return None
            subs[leaf] = k * t + sp.expand(leaf - k * u)
        h = e.xreplace(subs)
        alg = self.spec.algebra
        if any(alg.shape(s) != () for s in h.free_symbols - {t}):
            return None  # a constant that differs by entry: not one function h
        if not convex_piecewise(h.xreplace(signed_symbols(self.spec)), t, self.spec):
            return None
        self._say(
            "a convex piecewise function of an affine function (each piece convex, the "
            "pieces meeting, the slope nondecreasing at each breakpoint)"
        )
        return CONVEX

    def _multiple(self, leaf, u):
        """k with leaf − k u constant, or None."""
        varying = next(a for a in sp.Add.make_args(sp.expand(u)) if not self.constant(a))
        # the term without its constant factors (-X w: X w), whose coefficients compare
        term = sp.Mul(*(f for f in sp.Mul.make_args(varying) if not self.constant(f)))
        k = sp.expand(leaf).coeff(term) / sp.expand(u).coeff(term)
        if k == 0 or not self.constant(k) or not self.constant(sp.expand(leaf - k * u)):
            return None
        return k

    def _affine_leaves(self, e) -> list | None:
        """The largest affine, varying parts of an expression built entry by entry (the
        u's in h(u)), in order without repeats; None where another operation is met."""
        if self.constant(e):
            return []
        if self.of(e) == AFFINE:
            return [e]
        if not isinstance(e, _UNIVARIATE):
            return None
        return self._leaves_of_args(e)

    def _leaves_of_args(self, e) -> list | None:
        """``_affine_leaves`` of each argument of ``e``, together, in order."""
        found: list = []
        for a in e.args:
            more = self._affine_leaves(a)
            if more is None:
                return None
            found += [m for m in more if m not in found]
        return found

    def _log_sigmoid(self, arg):
        """log σ(g) and log(1 − σ(g)) with g affine: concave (−softplus(∓g))."""
        inner = None
        if isinstance(arg, elementwise.sigmoid):
            inner = arg.args[0]
        elif isinstance(arg, sp.Add) and len(arg.args) == 2 and sp.Integer(1) in arg.args:
            rest = arg.args[0] if arg.args[1] == 1 else arg.args[1]
            if isinstance(rest, sp.Mul) and rest.args[0] == -1 and len(rest.args) == 2:
                if isinstance(rest.args[1], elementwise.sigmoid):
                    inner = rest.args[1].args[0]
        if inner is None:
            return self._log_normal_cdf(arg)
        if self.of(inner) != AFFINE:
            return None
        self._say(
            r"$\log \sigma(a)$ and $\log(1 - \sigma(a))$ of affine $a$ (concave: "
            r"$-\mathrm{softplus}(\mp a)$)"
        )
        return CONCAVE

    def _log_normal_cdf(self, arg):
        """log Φ(a) = log((1 ± erf(a/√2))/2) of affine a, Φ or 1 − Φ written with erf (a
        probit model's log-likelihood): concave, Φ being log-concave (B&V §3.5.2)."""
        rest = sp.expand(2 * arg - 1)
        c, f = rest.as_coeff_Mul()
        if abs(c) != 1 or not isinstance(f, sp.erf) or self.of(f.args[0]) != AFFINE:
            return None
        self._say(r"$\log \Phi(a)$ and $\log(1 - \Phi(a))$ of affine $a$ (concave)")
        return CONCAVE

    def _of_tensors(self, e):
        """The combined curvature of ``e``'s tensor arguments (not its axes or sizes)."""
        static = ops.static_positions(e)
        return _combined([self.of(a) for i, a in enumerate(e.args) if i not in static])

    def _composition(self, e):
        name, h, nondecreasing = _FUNCTIONS[type(e)]
        inner = self._of_tensors(e)
        if inner == AFFINE or (nondecreasing and inner == h):
            self._say(f"{name} of {'affine' if inner == AFFINE else inner} functions")
            return h
        return None


# what an entry-by-entry function h(u) may be built of (the comparisons in where's mask)
_UNIVARIATE = (sp.Add, sp.Mul, sp.Pow, sp.Abs, piecewise.where, *piecewise.COMPARISONS)


def convex_piecewise(h, t, spec) -> bool:
    """Whether the scalar function h(t) is provably convex on the real line, h a
    piecewise function (where, abs) of smooth pieces. The breakpoints are where a
    mask's comparison, linear in t, turns; between two the piece that applies is the
    first whose mask SymPy decides true at the middle; then each piece's second
    derivative is >= 0, and at each breakpoint the pieces meet and the slope from the
    right is at least the slope from the left. A sufficient test: anything SymPy cannot
    decide (a breakpoint of unknown sign) is not proven."""
    h = piecewise.as_sympy_piecewise(h).replace(
        sp.Abs, lambda a: sp.Piecewise((a, a >= 0), (-a, True))
    )
    h = sp.piecewise_fold(h)
    if not isinstance(h, sp.Piecewise):
        return False
    points = []
    for rel in h.atoms(sp.core.relational.Relational):
        diff = sp.expand(rel.lhs - rel.rhs)
        slope = diff.diff(t)
        if not diff.has(t):
            continue
        if slope.has(t) or slope == 0:
            return False  # not linear in t
        points.append(sp.simplify(-diff.subs(t, 0) / slope))
    try:
        points = _ordered(points, spec)
    except _Undecided:
        return False
    if len(points) > _MAX_BREAKPOINTS:
        return False
    middles = (
        [points[0] - 1, *((a + b) / 2 for a, b in zip(points, points[1:])), points[-1] + 1]
        if points
        else [sp.Integer(0)]
    )
    pieces = []
    for m in middles:
        piece = _piece_at(h, t, m)
        if piece is None or piece.has(sp.Piecewise, sp.Heaviside, sp.Max, sp.Min):
            return False
        if not provably_nonnegative(spec, sp.simplify(piece.diff(t, 2))):
            return False
        pieces.append(piece)
    for b, left, right in zip(points, pieces, pieces[1:]):
        at_b = _piece_at(h, t, b)
        if at_b is None:
            return False
        values = {sp.simplify(p.subs(t, b)) for p in (left, right, at_b)}
        if len({sp.simplify(v - next(iter(values))) for v in values}) != 1:
            return False  # a jump
        jump = sp.simplify(right.diff(t).subs(t, b) - left.diff(t).subs(t, b))
        if not provably_nonnegative(spec, jump):
            return False
    return True


_MAX_BREAKPOINTS = 16  # a mask with more comparisons than this is not a Huber-like loss


class _Undecided(Exception):
    pass


def _ordered(points, spec) -> list:
    """The distinct breakpoints in increasing order, or _Undecided."""
    out: list = []
    for p in points:
        if any(sp.simplify(p - q) == 0 for q in out):
            continue
        i = 0
        while i < len(out):
            if provably_nonnegative(spec, out[i] - p):
                break
            if not provably_nonnegative(spec, p - out[i]):
                raise _Undecided
            i += 1
        out.insert(i, p)
    return out


def _piece_at(h, t, at):
    """The expression of the first piece of h whose condition SymPy decides true at t =
    at, or None where a condition before it is undecided."""
    for expr, cond in h.args:
        holds = cond.subs(t, at)
        if holds is sp.true:
            return expr
        if holds is not sp.false:
            return None
    return None


def convex_by_composition(spec, objective, variables: set) -> list | None:
    """The rules that prove ``objective`` convex in ``variables`` (jointly), or None."""
    curvature = Curvature(spec, variables)
    kind = curvature.of(objective)
    if kind == AFFINE:
        return ["affine functions"]
    return curvature.used if kind == CONVEX else None


# positive whatever their arguments, which SymPy's assumptions do not see of dlsym's ops
_POSITIVE = (ops.softmax, elementwise.softplus, sp.exp)
# functions bounded in an open interval, as a point π of the unit interval
# (split_domain): strictly inside, unlike _convexity's closed _RANGES, which hold sin and
# cos too (1 − sin x reaches 0, 1 − σ(z) does not)
_BOUNDED = {
    elementwise.sigmoid: lambda p: p,
    sp.erf: lambda p: 2 * p - 1,
    sp.tanh: lambda p: 2 * p - 1,
}


def split_domain(spec, objective, variables: set) -> str | None:
    """Why the objective may not be defined on a convex set of the ``variables`` (in
    words), or None. A Hessian positive semidefinite wherever the objective is defined
    proves convexity only on a convex domain: 1/(x − 5)² has Hessian 6/(x − 5)⁴ >= 0
    and is not convex on the real line (its chord over 5 passes under the pole), and
    was "proved" convex. A pole where b = 0 leaves {b ≠ 0}, convex where b has one sign
    and is concave (or convex) to match; log(b) leaves {b > 0}, convex where b is
    concave (−log(x) on a real x stays convex with the value +∞ for x <= 0, the
    convention of convex analysis, but −log(x²) does not)."""
    from dlsym.calculus._convexity import provably_nonnegative
    from dlsym.calculus._exists import positive_inside

    curvature = Curvature(spec, variables)

    def never_zero(b) -> bool:
        if b.is_positive or b.is_negative or isinstance(b, _POSITIVE):
            return True
        if isinstance(b, ops.det) and b.args[0] in spec.algebra.symmetric:
            return True  # det S > 0 of an spd S
        # σ(u) in (0, 1), erf(u) and tanh(u) in (−1, 1): 1 − σ(z) and the probit's
        # Φ = erf(z/√2)/2 + 1/2 are positive, which SymPy's assumptions do not know;
        # each as π or 2π − 1 of a π in the unit interval
        held, unit = b, set()
        for kind, scaled in _BOUNDED.items():
            for a in b.atoms(kind):
                p = sp.Dummy(positive=True)
                held, unit = held.xreplace({a: scaled(p)}), unit | {p}
        if not unit:
            return False
        unit = frozenset(unit)
        return positive_inside(held, unit) or positive_inside(-held, unit)

    def one_signed(b) -> bool:
        if never_zero(b):
            return True
        kind = curvature.of(b)
        if provably_nonnegative(spec, b):
            return kind in (AFFINE, CONCAVE)
        if provably_nonnegative(spec, -b):
            return kind in (AFFINE, CONVEX)
        return False

    for node in sp.preorder_traversal(objective):
        if isinstance(node, sp.Pow) and node.exp.is_negative:
            b = node.base
            if b.free_symbols & variables and not one_signed(b):
                return "a pole: it divides by an expression of the wrt symbols that can be 0"
        elif isinstance(node, sp.log):
            b = node.args[0]
            if (
                b.free_symbols & variables
                and not never_zero(b)
                and curvature.of(b) not in (AFFINE, CONCAVE)
            ):
                return "a log whose argument is positive on a set that is not convex"
    return None
