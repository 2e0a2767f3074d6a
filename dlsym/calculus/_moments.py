"""Moments in closed form: ``expect``, ``variance`` and ``covariance`` over a spec's
random symbols (shared/spec-format.md, "Random variables and expectations").

The rules are the ones a textbook applies, each a step of the derivation:

- linearity: E commutes with sums, scalar factors and every linear operation (indexing,
  sums, transposes, traces), and E[A @ B] = E[A] @ E[B] for independent A and B;
- independence: E of a product of factors that share no random symbol is the product
  of their expectations; the variances of independent terms add;
- an affine function of the random symbols: E[f] is f at the means, and
  Var⟨g, r⟩ = v ‖g‖² for a symbol r with independent entries of variance v
  (gᵀ S g for a normal vector with covariance S), Cov(J r, K r) = J S Kᵀ;
- the law of total variance, for a function affine in one symbol given the others
  (``(W @ x)[0]``: Var = E_x[Var_W] + Var_x(E_W));
- E[s²] = Var s + (E s)², and E[aᵀb] = tr Cov(a, b) + E[a]ᵀE[b] for vectors that share
  random symbols;
- one entry of an elementwise function of a random symbol, E[f(r)], as a one-variable
  integral (``E[relu(z)²] = σ²/2``), by SymPy under a time limit.

Where none applies the moment has no closed form here (``NoClosedForm``, said to the
user). The gradients and Jacobians the affine rules need come from the calculus engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.calculus import _gaussian as gaussian
from dlsym.calculus._affine import NoClosedForm, kinked_in
from dlsym.calculus._columns import COLUMNS, ROWS, one_slice
from dlsym.calculus._convexity import provably_nonnegative
from dlsym.calculus._derive import Engine, in_matrix_form
from dlsym.calculus._rules import NoMatrixRule
from dlsym.calculus._simplify import factored
from dlsym.calculus._special_values import at_special_values
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import einsum_as_ops
from dlsym.expr._elementwise import elementary
from dlsym.expr._moments import covariance, expect, moments_in, variance
from dlsym.expr._piecewise import as_sympy_piecewise, clip, maximum, minimum, where
from dlsym.spec._laws import INDEX_FAMILIES, Law

MAX_ENUMERATED_SYMBOLS = 4  # Bernoulli symbols in one function: 16 outcomes
SECONDS_TO_INTEGRATE = 5.0  # one entry's E[f(r)], by sympy.integrate
SECONDS_TO_SIMPLIFY = 3.0  # its value's simplify


class Diverges(NoClosedForm):
    """The moment does not exist: its integral diverges (E[u^-1.8] of a uniform u, E
    exp(z²) of a normal z). Verification asks it of the square of what it samples:
    where E[f²] diverges, a Monte Carlo estimate of E f has no standard error."""


@dataclass(frozen=True)
class MomentStep:
    title: str
    lhs: Any  # the moment (a SymPy expression), as the step's left-hand side
    rhs: tuple  # what it equals: the rule's form, then the value
    why: str  # the rule, prose with $...$ math


@dataclass(frozen=True)
class ClosedForm:
    target: Any  # the objective or output, defines written out
    values: dict  # each moment in it -> its closed form
    result: Any  # the target with every moment replaced
    # where a moment's value is 0/0 and no limit was found (``at_special_values``)
    caveats: tuple = ()


# --- one entry of a random symbol ----------------------------------------------------


def _weighted_rows(alg, stacked):
    """Σ_k over the rows of a [k, n] stack of products of columns c[:, None], rows v
    (a vector broadcast down the rows) and the identity, as vectors: Σ_k c_k (I)_k ⊙ v
    = c ⊙ v and Σ_k c_k v = (Σ c) v. The score function's E[r_a (e_a − π)] reads
    π ⊙ r − (πᵀ r) π, not sum[axis=0]((I − π) ⊙ r[:, None] ⊙ π[:, None]). None where a
    term has any other factor."""
    total = sp.S.Zero
    for term in sp.Add.make_args(sp.expand(stacked)):
        scalar, columns, rows, identity = sp.S.One, [], [], False
        for f in sp.Mul.make_args(term):
            shape = alg.shape(f)
            if not shape:
                scalar *= f
            elif isinstance(f, layout.expand_dims) and tuple(f.args[1]) == (1,):
                columns.append(f.args[0])
            elif isinstance(f, ops.eye) and not identity:
                identity = True
            elif len(shape) == 1:
                rows.append(f)
            else:
                return None
        if not columns:
            return None
        if identity:
            total += scalar * sp.Mul(*columns, *rows)
        else:
            weight = alg.mm(*columns) if len(columns) == 2 else ops.tsum(sp.Mul(*columns))
            if not rows:
                return None  # a row of ones: its length is the stack's other axis
            total += scalar * weight * sp.Mul(*rows)
    return total


def _named_params(law) -> tuple:
    """A normal's mean and variance as a real and a positive name where they are
    expressions: against N(0, a²) SymPy's integral of t² is a³/|a|, which is −a² for a
    negative a (it reads the density's √(a²) as a in one place and |a| in another);
    against a positive v it is v, and v = a² is put back after. Other laws as given."""
    if law.family != "normal":
        return law.params
    mean, var = law.params
    return (
        mean if mean.is_number else sp.Dummy("m", real=True),
        var if var.is_number else sp.Dummy("v", positive=True),
    )


def _normal_expect(f, t, mean, var):
    # by rule where every term has one (milliseconds; SymPy's integrator takes seconds
    # or gives up on E sin²z, E erf z, E clip(z, −c, c)), else SymPy's integral
    stepped = _steps_as_piecewise(f, (sp.Heaviside, sp.sign, sp.Abs))
    pieces = _pieces(sp.piecewise_fold(stepped), t, -sp.oo, sp.oo)
    ruled = gaussian.expect(pieces or [(stepped, -sp.oo, sp.oo)], t, mean, var)
    if ruled is not None:
        return ruled
    density = sp.exp(-((t - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)
    return _integrate_pieces(f * density, t, -sp.oo, sp.oo)


def _uniform_expect(f, t, low, high):
    if (low, high) == (0, 1) and f.has(sp.log):
        exponential = _through_an_exponential(f, t)
        if exponential is not None:
            return exponential
    return _integrate_pieces(f, t, low, high) / (high - low)


def _through_an_exponential(f, t):
    """E f(u) for u ~ uniform(0, 1) as E g(w) for w = −log u ~ Exp(1), g(w) = f(e^(−w)),
    where g is a polynomial in w and log w: ∫₀^∞ wʲ (log w)ᵏ e^(−w) dw = Γ⁽ᵏ⁾(j + 1).
    Gumbel noise −log(−log u) has mean γ and variance π²/6; SymPy's own integral over
    (0, 1) is −γ − iπ (a branch of the log taken wrong). None where g is not such."""
    w, log_w, a = sp.Dummy("w", positive=True), sp.Dummy("L"), sp.Dummy("a")
    g = sp.expand(sp.expand_log(f.subs(t, sp.exp(-w)), force=False)).subs(sp.log(w), log_w)
    try:
        poly = sp.Poly(g, w, log_w)
    except sp.PolynomialError:
        return None
    if any(c.has(w) for c in poly.coeffs()):  # log(w) left inside another function
        return None
    gamma = sp.gamma(a)
    return sp.expand(sum(c * sp.diff(gamma, a, k).subs(a, j + 1) for (j, k), c in poly.terms()))


def _integrate_pieces(f, t, low, high):
    """∫ f dt over (low, high), one integral per piece where f is piecewise in t with
    numeric breakpoints (relu, leaky relu, clip, where(t > c, ...)): SymPy integrates
    each smooth piece in a fraction of a second, and the whole Piecewise against a
    normal density with a mean not 0 not in 5 s (E[relu(z)], z ~ N(μ, 1)). A step or a
    sign is a Piecewise first: SymPy integrates Heaviside(t) against N(μ, 1) to 1, not
    Φ(μ)."""
    f = _steps_as_piecewise(f)
    pieces = _pieces(sp.piecewise_fold(f), t, low, high)
    if pieces is None:
        return sp.integrate(f, (t, low, high), conds="none")
    return sp.Add(*[sp.integrate(g, (t, a, b), conds="none") for g, a, b in pieces])


def _steps_as_piecewise(f, kinds=(sp.Heaviside, sp.sign)):
    """Steps and signs (and kinds) as Piecewise, to split at their breakpoints."""
    return f.replace(lambda e: isinstance(e, kinds), lambda e: e.rewrite(sp.Piecewise))


def _pieces(f, t, low, high):
    """[(piece, a, b)]: f on each interval between its breakpoints inside (low, high),
    or None where f is not piecewise in t, or a breakpoint or an end is not a number
    (their order is not known)."""
    if not isinstance(f, sp.Piecewise):
        return None
    cuts = set()
    for _, cond in f.args:
        for rel in cond.atoms(sp.core.relational.Relational):
            if t not in rel.free_symbols:
                continue
            roots = sp.solve(sp.Eq(rel.lhs, rel.rhs), t)
            if len(roots) != 1 or roots[0].has(t):
                return None
            cuts.add(roots[0])
    # symbolic breakpoints and ends where their order is known from the symbols'
    # assumptions (clip(g, −c, c) for a positive c: −c < c), else no pieces
    before = functools.cmp_to_key(_compared)
    try:
        inside = sorted((c for c in cuts if _below(low, c) and _below(c, high)), key=before)
        edges = [low, *inside, high]
        if any(not _below(a, b) for a, b in zip(edges, edges[1:])):
            return None
    except _Unordered:
        return None
    pieces = []
    for a, b in zip(edges, edges[1:]):
        probe = (a + b) / 2 if a.is_finite and b.is_finite else (b - 1 if a.is_infinite else a + 1)
        active = [g for g, cond in f.args if cond.subs(t, probe) == True]  # noqa: E712
        if not active or any(c.subs(t, probe) not in (True, False) for _, c in f.args):
            return None
        pieces.append((active[0], a, b))
    return pieces


def _ordered_bounds(e, f, t) -> None:
    """NoClosedForm where a clip's bounds may cross inside the domains: its integral
    reads clip(t, lo, hi) as lo below lo, hi above hi, which NumPy's
    minimum(maximum(t, lo), hi) is only for lo <= hi (for lo > hi it is hi everywhere):
    E[clip(u, c, 2)] of u ~ U(0, 1) came out c for a positive c > 2, where it is 2."""
    for node in f.atoms(clip):
        a, lo, hi = node.args
        if t in lo.free_symbols or t in hi.free_symbols:
            continue
        if sp.Ge(lo, hi) is not sp.false:
            raise NoClosedForm(
                "E[",
                e,
                f"]: the bounds of clip may cross ({lo} >= {hi} is possible in the "
                "domains, where clip is its upper bound everywhere); give the symbols "
                "domains that order them",
            )


def _without_power_towers(one):
    """Each log of a power with a symbolic exponent taken apart: SymPy writes
    E log x of x ~ U(a, a + w) as (log((a + w)^(a + w)/a^a) − w)/w, whose power
    overflows float64 past a + w ≈ 143 (nan at U(150, 151), E log x = 5.01); as
    ((a + w) log(a + w) − a log a − w)/w it does not. The log's argument is positive
    where the integrand is real (a log of a negative point of the support was refused
    as complex), so the logs split."""

    def tower(e):
        return isinstance(e, sp.log) and any(
            isinstance(p, sp.Pow) and p.exp.free_symbols for p in sp.preorder_traversal(e.args[0])
        )

    return one.replace(tower, lambda e: sp.expand_log(e, force=True))


SECONDS_TO_GATHER = 1.0  # sympy.together and factor on a scalar closed form


def _over_one_denominator(alg, e):
    """A scalar closed form of scalars over one denominator and factored where that is
    shorter: an estimator's bias E[σ̂²] − σ² read v (n − 1)/n − v, textbooks' −v/n;
    θ²(1 + 3N)/(12N) − θ²/4 is θ²/(12N). Anything with a tensor in it stays."""
    if alg.shape(e) != () or e.has(ops.TensorOp) or not isinstance(e, sp.Add):
        return e
    try:
        gathered = within(SECONDS_TO_GATHER, lambda: sp.factor(sp.together(e)))
    except (TimeLimit, sp.PolynomialError):
        return e
    return gathered if sp.count_ops(gathered) < sp.count_ops(e) else e


def _items_text(items, shape) -> str:
    """NumPy's text of basic indexing items of an array of ``shape``: 0, :, 1:3, ::2."""
    out, axis = [], 0
    for item in items:
        if item == layout.NEWAXIS:
            out.append("None")
            continue
        if not isinstance(item, sp.Tuple):
            out.append(str(item))
        else:
            start, stop, step = item
            end = "" if stop == shape[axis] else str(stop)
            text = f"{'' if start == 0 else start}:{end}"
            out.append(text + (f":{step}" if step != 1 else ""))
        axis += 1
    return ", ".join(out)


class _Unordered(Exception):
    """Two points whose order the assumptions do not decide."""


def _below(a, b) -> bool:
    """a < b, decided by SymPy (numbers, ±oo, signed symbols); _Unordered where not."""
    if a == b:
        return False
    less = sp.Lt(a, b)
    if less in (sp.true, sp.false):
        return bool(less)
    raise _Unordered


def _compared(a, b) -> int:
    return -1 if _below(a, b) else 1 if _below(b, a) else 0


def _simplified(one):
    """An integral's value simplified, within a budget (as it came where simplify takes
    longer). erf(u) + erfc(u) = 1, which simplify does not see (E[exp(z)] = exp(s²/2)),
    is applied after a first pass; a second pass only where erfc was there: on a value
    with none it undoes the first's work (E clip(z, −c, c) became one fraction of
    exponentials that overflow)."""
    given = one
    try:
        one = within(SECONDS_TO_SIMPLIFY, sp.simplify, one)
        if one.has(sp.erfc):
            one = within(
                SECONDS_TO_SIMPLIFY, sp.simplify, one.replace(sp.erfc, lambda a: 1 - sp.erf(a))
            )
    except TimeLimit:
        pass
    # simplify writes E min(z, c) as (... e^((μ − c)²/2) − √2) e^(−(μ − c)²/2)/(2√π): inf
    # times 0 where |μ − c| > 38; a value with more exponentials that can grow than it
    # was given is kept as given
    return given if _growing(one) > _growing(given) else one


def _growing(e) -> int:
    """The exponentials in e whose exponent is not known to be ≤ 0."""
    return sum(1 for x in e.atoms(sp.exp) if not x.args[0].is_nonpositive)


def _bernoulli_expect(f, t, p):
    return p * f.subs(t, 1) + (1 - p) * f.subs(t, 0)


# the supports of the continuous families, where an integrand must be integrable
SUPPORTS = {
    "normal": lambda *params: sp.S.Reals,
    "uniform": lambda low, high: sp.Interval(low, high),
}


def _complex_somewhere(f, t, law) -> bool:
    """Whether f(t) is complex at a few points of the support (a few of its constants'
    values drawn too): log t for t < 0, sqrt of a negative."""
    support = SUPPORTS.get(law.family, lambda *p: sp.S.Reals)(*law.params)
    free = sorted(f.free_symbols - {t}, key=str)
    for point in (-1.7, -0.3, 0.4, 1.9):
        at = {c: sp.Float(0.37 + 0.1 * k) for k, c in enumerate(free)}
        if support != sp.S.Reals and not support.subs(at).contains(point):
            continue
        value = complex(f.xreplace({**at, t: sp.Float(point)}).evalf())
        if abs(value.imag) > 1e-12:
            return True
    return False


def _pole(f, t, law):
    """A point of the support where f(t) is not integrable, or None: a singularity a
    where (t − a) f(t) does not go to 0 (1/t, 1/t²; log|t| and 1/√|t| are integrable).
    Where SymPy cannot tell, nothing is claimed; a symbolic point counts as inside."""
    if law.family not in SUPPORTS:
        return None
    try:
        points = within(1.0, sp.singularities, f, t, SUPPORTS[law.family](*law.params))
    except (TimeLimit, NotImplementedError, TypeError, ValueError):
        return None
    if isinstance(points, sp.Intersection):
        # {c} ∩ [0, 1] for a symbolic c: its points, each inside as far as is known
        finite = [a for a in points.args if isinstance(a, sp.FiniteSet)]
        points = finite[0] if len(finite) == 1 else points
    if not isinstance(points, sp.FiniteSet):
        return None
    for a in points:
        for side in ("+", "-"):
            try:
                near = within(1.0, sp.limit, (t - a) * f, t, a, side)
            except (TimeLimit, NotImplementedError, TypeError, ValueError):
                return a  # cannot show it integrable: no value is claimed
            if near != 0:
                return a
    return None


@dataclass(frozen=True)
class Family:
    mean: Callable  # params -> E r
    var: Callable  # params -> Var r
    expect: Callable  # (f, t, *params) -> E f(t), t a scalar SymPy symbol


FAMILIES = {
    "normal": Family(lambda m, v: m, lambda m, v: v, _normal_expect),
    "uniform": Family(lambda a, b: (a + b) / 2, lambda a, b: (b - a) ** 2 / 12, _uniform_expect),
    "bernoulli": Family(lambda p: p, lambda p: p * (1 - p), _bernoulli_expect),
}

# the functions a closed form may use: those the expression language (and so the
# generated code) has
IN_LANGUAGE = (
    sp.exp,
    sp.log,
    sp.erf,
    sp.Abs,
    sp.sin,
    sp.cos,
    sp.tanh,
    sp.atan,
    ops.relu,
    ops.sigmoid,
    ops.softplus,
)

# the domains of a scalar c ≤ 1, where maximum(u, c u) is where(u > 0, u, c u)
AT_MOST_ONE = ("unit_interval",)

# maximum(u, c u) = where(u > 0, max(1, c) u, min(1, c) u) for any c, and minimum the
# other way round: (the larger slope's function, the smaller's) on the side u > 0
SLOPES = {maximum: (maximum, minimum), minimum: (minimum, maximum)}

# linear operations: E (over their tensor argument) passes through them, and each is 0
# at 0
LINEAR = layout.SELECTIONS


class Moments:
    """The closed forms of the moments in one spec's objective or output."""

    def __init__(self, spec, labels=None):
        self.spec = spec
        # how steps name a random symbol (a recurrence's g_t for its internal _g_t)
        self.labels = labels or {}
        self.alg = spec.algebra
        self.laws = spec.laws
        self.steps: list[MomentStep] = []
        # the scalar that stands for one entry of a random symbol in an integral -> the
        # entry, to say what has no closed form as the spec wrote it
        self.stands_for: dict = {}
        self._engine = Engine(spec)
        # the scalars whose variance is being found as E[s²] − (E s)² (see there)
        self._by_two_moments: set = set()

    # -- the whole target ------------------------------------------------------------

    def closed_form(self) -> ClosedForm:
        spec = self.spec
        target = spec.objective if spec.objective is not None else spec.output
        target = self._engine.expand(target)
        values = {}
        every = frozenset(self.laws)
        rules = {expect: self.expect, variance: self.variance, covariance: self.covariance}
        caveats: tuple = ()
        for m in moments_in(target):
            args = [self._written_for_rules(a) for a in m.args]
            mark = len(self.steps)
            written = args
            args, sliced = self._slices_as_symbols(args)
            try:
                with contextlib.ExitStack() as stack:
                    for fresh, of, shape, law in sliced:
                        stack.enter_context(self._another_random(fresh, of, shape, law, str(fresh)))
                    value = rules[type(m)](*args, every | {f for f, *_ in sliced})
            except ops.ShapeError as exc:
                # a rule that built a product its shapes do not allow (the Jacobian of a
                # slice difference x[1:] − x[:-1] read as a scalar): no value from it
                del self.steps[mark:]
                raise NoClosedForm(
                    m.func(*m.args), f": the rules' matrix form failed ({exc}), no closed form"
                ) from None
            if value.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                # E log(b) of a Bernoulli b: (1 − p) log 0 is −∞ (SymPy's zoo), no value
                del self.steps[mark:]
                raise NoClosedForm(
                    m.func(*m.args),
                    " is not finite: an outcome or a part of the support gives an infinite "
                    "or undefined value (log 0, 1/0)",
                )
            if list(m.args) != written:
                self._say(
                    "Written for the rules",
                    m,
                    m.func(*written),
                    r"the same at every point: an einsum is the products it computes, an "
                    r"entry of an elementwise function is the function of the entry, "
                    r"$\operatorname{var}(u) = \operatorname{mean}((u - \operatorname{mean}(u))^2)$, "
                    r"$\|u\|^2 = \operatorname{sum}(u^2)$, "
                    r"$x > y$ is $x - y > 0$, and "
                    r"$\max(u, c\,u) = u$ where $u > 0$, $c\,u$ elsewhere, for $c \le 1$",
                    at=mark,
                )
            # factored where no longer: a DropConnect variance's (1 − p) S/p + S is S/p
            values[m], held = at_special_values(spec, self.alg.tidy(factored(self.alg.tidy(value))))
            caveats += held
        result = _over_one_denominator(self.alg, self.alg.tidy(target.xreplace(values)))
        return ClosedForm(target, values, result, caveats)

    def _slices_as_symbols(self, args) -> tuple:
        """(args, [(symbol, of, shape, law)]): a slice of a random symbol whose entries
        are independent and identically distributed (a column W[:, 0], rows X[1:]) as a
        random symbol of its own (``_another_random``) of the slice's shape and the same
        law, where the slice is the only way the args read that symbol: Xavier's
        Var[x @ W[:, 0]] = n σ² (the row-vector layer's one output) had no closed form.
        Its name is the slice as written (no name a user writes holds brackets)."""
        put: dict = {}
        out = []
        for r, law in list(self.laws.items()):
            if not _iid(law, self.alg):
                continue
            slices = {
                a
                for arg in args
                for a in sp.preorder_traversal(arg)
                if isinstance(a, layout.index) and a.args[0] == r
            }
            if len(slices) != 1:
                continue
            (piece,) = slices
            items = _items_text(piece.args[1], self.alg.shape(r))
            fresh = sp.Symbol(f"{self.label(r)}[{items}]", real=True)
            if any(r in a.xreplace({piece: fresh}).free_symbols for a in args):
                continue  # read whole or through other slices too: they may overlap
            put[piece] = fresh
            out.append((fresh, r, self.alg.shape(piece), law))
        return [a.xreplace(put) for a in args], out

    def _written_for_rules(self, e):
        """e as the rules read it, equal to it at every point: an entry of an
        elementwise function as the function of entries (relu(z)[0] is relu(z[0]), one
        integral), a leaky ReLU's maximum(u, α u) as where(u > 0, u, α u) (integrals
        split at 0), an einsum as the products it computes ('ij,j->i' is W @ x)."""
        at_most_one = {d.symbol for d in self.spec.symbols if d.domain in AT_MOST_ONE}
        e = e.replace(lambda x: isinstance(x, layout.einsum), partial(einsum_as_ops, self.alg))
        e = _kinked_at_zero(_entries_inward(self.alg, e), self.alg, at_most_one)
        e = e.replace(lambda x: isinstance(x, ops.var) and self.random(x), _as_mean_square)
        # ‖u‖² as sum(u²): E‖W x‖² read through Var‖u‖ + (E‖u‖)² had no closed form
        e = e.replace(
            lambda x: (
                isinstance(x, sp.Pow)
                and isinstance(x.base, ops.norm)
                and x.exp.is_even is True
                and bool(self.random(x.base))
            ),
            lambda x: ops.tsum(x.base.args[0] ** 2) ** (x.exp / 2),
        )
        e = e.replace(lambda x: isinstance(x, where) and self.random(x), _as_extreme)
        # x > y of two random scalars as x − y > 0: a function of one normal x − y
        e = e.replace(
            lambda x: (
                isinstance(x, sp.core.relational.Relational)
                and x.rhs != 0
                and self.alg.shape(x.lhs) == self.alg.shape(x.rhs) == ()
                and bool(self.random(x.lhs))
                and bool(self.random(x.rhs))
            ),
            lambda x: x.func(x.lhs - x.rhs, 0),
        )
        return e.replace(lambda x: self._two_random(x), _as_abs)

    def _within_unit_interval(self, e):
        """min(1, r) as r and max(0, r) as r for a unit_interval r (SymPy's integral over
        u > r of a uniform draw does not know r <= 1): Cov[1(u > r), u] = r(1 − r)/2."""
        unit = {d.symbol for d in self.spec.symbols if d.domain in AT_MOST_ONE}
        if not unit:
            return e

        def bounded(m) -> bool:
            if not isinstance(m, (sp.Min, sp.Max)) or len(m.args) != 2:
                return False
            number = [a for a in m.args if a.is_number]
            if len(number) != 1 or not ({*m.args} - {*number}) <= unit:
                return False
            return bool(number[0] >= 1) if isinstance(m, sp.Min) else bool(number[0] <= 0)

        return e.replace(bounded, lambda m: next(a for a in m.args if a in unit))

    def _two_random(self, e) -> bool:
        """A maximum or minimum of two random scalars (no scaled pair: _kinked_at_zero's)."""
        return (
            type(e) in SLOPES
            and len(e.args) == 2
            and all(self.alg.shape(a) == () and self.random(a) for a in e.args)
        )

    def _say(self, title, lhs, rhs, why, via=None, at=None):
        """Record a step ``lhs = via = rhs`` (``via``: the rule's form, when it shows more
        than the value) and return the value. ``at``: the step's place, before the steps
        of the moments it was computed from, so that the derivation reads top-down."""
        rhs = self.alg.tidy(rhs)
        forms = (rhs,) if via is None or via == rhs else (via, rhs)
        self.steps.insert(len(self.steps) if at is None else at, MomentStep(title, lhs, forms, why))
        return rhs

    def why_not(self, exc: NoClosedForm, show) -> str:
        """Why a moment has no closed form, each expression shown by ``show`` (the
        expression language) as the spec wrote it."""
        return exc.text(lambda e: show(e.xreplace(self.stands_for)))

    def label(self, r) -> str:
        return self.labels.get(r, str(r))

    def random(self, e, over=None) -> frozenset:
        found = frozenset(s for s in getattr(e, "free_symbols", ()) if s in self.laws)
        return found if over is None else found & over

    # -- expectations ----------------------------------------------------------------

    def expect(self, e, over: frozenset):
        return self._or_by_columns(self._expect, expect, e, over)

    def _gram_form(self, e):
        """``u @ v`` with u = v = (A x) of a scalar chain xᵀ Aᵀ A x (each left factor the
        transpose of its mirror on the right), as the inner product of one vector with
        itself; None for any other product."""
        if not isinstance(e, ops.matmul) or self.alg.shape(e) != ():
            return None
        chain = ops.product_chain(e)
        k = len(chain) // 2
        if len(chain) % 2 or k < 2:
            return None
        if any(self.alg.T(chain[i]) != chain[-1 - i] for i in range(k)):
            return None
        half = self.alg.mm_chain(chain[k:])
        return ops.matmul(half, half)

    def _or_by_columns(self, rules, moment, e, over):
        """A moment (``expect`` or ``variance``) by its ``rules``, or where they find no
        closed form, by the columns or rows of a batch (``_slices_alike``)."""
        mark = len(self.steps)
        try:
            return rules(e, over)
        except NoClosedForm:
            del self.steps[mark:]
            for by in (COLUMNS, ROWS):
                found = self._slices_alike(e, over, moment, by)
                if found is not None:
                    return found
            raise

    def _slices_alike(self, e, over, moment, by):
        """E (or Var, ``moment``) of a function of a random matrix X of i.i.d. entries
        that reads each column (row, ``by``) alone and alike, a batch statistic along
        axis 0 (a layer norm's along axis 1): one column's, spread over the columns.
        None where e is no such function (see ``_columns.one_slice``)."""
        rand = self.random(e, over)
        if len(rand) != 1:
            return None
        (X,) = rand
        law, shape = self.laws[X], self.alg.shape(X)
        if len(shape) != 2 or not _iid(law, self.alg) or not self.alg.shape(e):
            return None
        label = f"{X}[:, j]" if by is COLUMNS else f"{X}[i, :]"
        x = sp.Symbol(label, real=True)
        if one_slice(self.alg, e, X, x, by) is None:
            return None
        size = shape[1 - by.axis]
        mark = len(self.steps)
        with self._another_random(x, X, (size,), law, label):
            one = one_slice(self.alg, e, X, x, by)
            find = {expect: self.expect, variance: self.variance}[moment]
            value = self.alg.tidy(find(one, over | {x}))
        width = self.alg.shape(e)
        if self.alg.shape(value):  # [k] for each column: the [k, n] of them all
            spread = self.alg.ones(width[by.axis : by.axis + 1])
            pair = (value, spread) if by is COLUMNS else (spread, value)
            value, via = (
                self.alg.outer(*pair),
                ops.outer(*[moment(one) if p is value else p for p in pair]),
            )
        else:
            value, via = self._spread(value, width, simplified=True), moment(one) * ops.ones(*width)
        what = "expectation" if moment is expect else "variance"
        return self._say(
            f"{by.name.capitalize()}s of one law",
            moment(e),
            value,
            rf"each {by.name} of ${self.label(X)}$ has the same law (its entries are "
            rf"i.i.d.) and the expression reads each {by.name} alone and alike: every "
            rf"{by.name}'s {what} is the first's",
            via,
            at=mark,
        )

    @contextlib.contextmanager
    def _another_random(self, x, of, shape, law, label):
        """Rules over one more random symbol ``x`` (a slice of ``of``, of its law): a
        symbol of the spec's while they run (the engine finds gradients in x by its
        name), its shape known to the spec's printers for good (the steps show it); no
        name a user writes holds "[:, j]"."""
        if x not in self.spec.algebra.shape.symbols:
            self.spec.algebra.shape.declare(x, shape)
        saved = self.spec, self.laws, self.alg
        self.laws = {**self.laws, x: law}
        self.alg = self.alg.extended({x: shape})
        decl = dataclasses.replace(self.spec.symbol(str(of)), name=str(x), symbol=x, shape=shape)
        self.spec = dataclasses.replace(
            self.spec, symbols=(*self.spec.symbols, decl), algebra=self.alg, laws=self.laws
        )
        self.labels[x] = label
        try:
            yield
        finally:
            self.spec, self.laws, self.alg = saved

    def _expect(self, e, over: frozenset):
        rand = self.random(e, over)
        if not rand:
            return e
        if e.has(layout.einsum):  # 'ij,j->i' is A @ g (a recurrence's drive reads it as
            # written: no linear rule read an einsum, "not linear")
            e = e.replace(lambda x: isinstance(x, layout.einsum), partial(einsum_as_ops, self.alg))
        drawn = [r for r in self.laws if r in rand and self.laws[r].family in INDEX_FAMILIES]
        if drawn:  # a drawn example first; what is left is over the other symbols
            return self._over_examples(e, drawn[0], over)
        if e in self.laws:
            law = self.laws[e]
            return self._say(
                f"Mean of {self.label(e)}",
                expect(e),
                self._mean(e),
                f"the mean of its distribution, {law.text}"
                + ("" if law.family == "mvnormal" else ", in every entry"),
            )
        gated = self._gated(e, over)
        if gated is not None:
            return gated
        if isinstance(e, (layout.stack, layout.concatenate)):
            return self._stacked(e, over, self.expect)
        if isinstance(e, sp.Add):
            return sp.Add(*[self.expect(a, over) for a in e.args])
        if isinstance(e, sp.Mul):
            return self._expect_product(e, over)
        if isinstance(e, LINEAR):
            mark = len(self.steps)
            inner = self.expect(e.args[0], over)
            if inner == 0:
                return sp.Integer(0)
            value = self._rebuild(e, inner)
            if isinstance(e, ops.tsum) and not isinstance(value, ops.tsum):
                same = isinstance(self.alg.split_scalar(inner)[1], ops.ones)
                self._say(
                    "Sum of identically distributed entries" if same else "Sum of the entries",
                    expect(e),
                    value,
                    r"linearity, $\mathbb{E}[\sum_i u_i] = \sum_i \mathbb{E}[u_i]$, and "
                    + (
                        "every entry has the same expectation"
                        if same
                        else "the sum of the entries' expectations in closed form"
                    ),
                    e.func(expect(e.args[0]), *e.args[1:]),
                    at=mark,
                )
            return value
        if isinstance(e, (ops.matmul, ops.outer)):
            norm = self._gram_form(e)
            if norm is not None:  # xᵀ Wᵀ W x = (W x)ᵀ (W x): E‖W x‖²'s rule reads it
                return self.expect(norm, over)
            a, b = e.args
            shared = self.random(a, over) & self.random(b, over)
            if shared and isinstance(e, ops.matmul) and self.alg.shape(e) == ():
                return self._inner_product(e, a, b, over)
            if shared and isinstance(e, ops.outer):
                return self._outer_product(e, a, b, over)
            if shared:
                raise NoClosedForm(
                    "E[",
                    e,
                    "]: a product of two factors that share a random symbol "
                    "(a quadratic form) has no rule here yet",
                )
            build = self.alg.mm if isinstance(e, ops.matmul) else self.alg.outer
            return build(self.expect(a, over), self.expect(b, over))
        if (
            isinstance(e, sp.Pow)
            and e.exp == 2
            and isinstance(e.base, ops.relu)
            and len(self.alg.shape(e)) <= 1
            and not self._one_symbol_elementwise(e.base, over)
        ):
            half = self._rectified_square(e, over)
            if half is not None:
                return half
        if isinstance(e, sp.Pow) and e.exp == 2 and len(self.alg.shape(e.base)) == 2:
            # a matrix squared entry by entry ((X @ W)**2): each entry's Var + mean²
            if not self._one_symbol_elementwise(e.base, over):
                mark = len(self.steps)
                try:
                    return self._second_moment(e, over)
                except NoClosedForm:
                    del self.steps[mark:]
        if isinstance(e, sp.Pow) and e.exp == 2 and len(self.alg.shape(e.base)) <= 1:
            # a square of a compound scalar ((W @ x)[0]**2), or of a vector entry by
            # entry: through its variance; an elementwise function of one symbol is one
            # integral (and Var of it asks for E[f**2], which must not come back here)
            if not self._one_symbol_elementwise(e.base, over):
                # relu(b + (W x)₀)²: a function of one normal u, one integral (through
                # its variance, Var asks back for this E[s²])
                if self.alg.shape(e) == () and not self.affine_in_random(e.base, over):
                    normal = self._function_of_a_normal(e, over)
                    if normal is not None:
                        return normal
                return self._second_moment(e, over)
        if isinstance(e, sp.Pow) and isinstance(e.base, ops.outer) and e.exp.is_Integer:
            # (a bᵀ)ᵏ entry by entry is aᵏ (bᵏ)ᵀ: DropConnect's gradient outer(e_i, x) squared
            a, b = e.base.args
            return self.expect(self.alg.outer(a**e.exp, b**e.exp), over)
        normal = self._function_of_a_normal(e, over)
        if normal is not None:
            return normal
        if len(self.alg.shape(e)) == 1:
            alike = self._entries_alike(e, over, expect)
            if alike is not None:
                return alike
        return self._entrywise(e, over)

    def _function_of_a_normal(self, e, over):
        """E[f(u)] for a scalar u affine in normal symbols: u is normal, N(E u, Var u)
        (each by its rule), and E f(u) one integral against that density.
        E[relu((W x)₀)] = s ‖x‖/√(2π) for W ~ N(0, s²) and a fixed x, E[((W x)₀)⁴] =
        3 s⁴ ‖x‖⁴. None where e is no function of one such u (a function of one symbol
        or entry is one integral as it is)."""
        if self.alg.shape(e) != () or self._one_symbol_elementwise(e, over):
            return None
        rand = self.random(e, over)
        if any(self.laws[r].family not in ("normal", "mvnormal") for r in rand):
            return None
        # the largest such u that is affine: relu(b + (W x)₀)² is a function of
        # b + (W x)₀, inside relu(b + (W x)₀), which holds every random symbol too
        u = next(
            (u for u in _random_arguments(e, rand, self.alg) if self.affine_in_random(u, over)),
            None,
        )
        if u is None:
            return None
        mark = len(self.steps)
        mean = self.alg.tidy(self.expect(u, over))
        var = self.alg.tidy(self.variance(u, over))
        if var == 0:
            del self.steps[mark:]
            return None
        scalar = sp.Dummy("u", real=True)
        # the integral against scalar names for the mean and the (positive) variance,
        # put back in its value and steps: SymPy's against s² sum(x²) itself holds
        # polar_lift, as it does not know the sum positive
        names = {sp.Dummy("m", real=True): mean, sp.Dummy("v", positive=True): var}
        params = tuple(names)
        if mean == 0:  # u ~ −u: an odd f has E f(u) = 0 by its rule, not a 5 s integral
            names, params = {params[1]: var}, (sp.Integer(0), params[1])
        law = Law("normal", params, r"$\mathcal{N}(\mathbb{E} u, \operatorname{Var} u)$")
        self._say(
            "An affine function of normal symbols is normal",
            scalar,
            u,
            r"a linear combination of independent normal entries (or of a normal "
            r"vector's) is normal: $u \sim \mathcal{N}(\mathbb{E} u, \operatorname{Var} u)$",
            at=mark,
        )
        saved = self.laws, self.alg
        self.laws = {**self.laws, scalar: law}
        self.alg = self.alg.extended({scalar: ()})
        self.labels[scalar] = "u"
        self.stands_for[scalar] = u
        start = len(self.steps)
        try:
            value = self._entrywise(e.xreplace({u: scalar}), over | {scalar})
        finally:
            self.laws, self.alg = saved
        back = {name: value for name, value in names.items()}
        self.steps[start:] = [
            dataclasses.replace(
                st,
                lhs=st.lhs.xreplace(back),
                rhs=tuple(self.alg.tidy(x.xreplace(back)) for x in st.rhs),
            )
            for st in self.steps[start:]
        ]
        return self.alg.tidy(value.xreplace(back))

    def _rectified_square(self, e, over):
        """E[relu(u)²] = E[u²]/2 where u is odd in a random symbol r of a symmetric law
        (zero-mean normal, uniform(−a, a)): u(−r) = −u(r) and r ~ −r make u ~ −u, so
        u² lands on each side of 0 with equal weight. He initialisation's forward
        variance: E[relu((W x)₀)²] = E[((W x)₀)²]/2. None where no r shows it."""
        u = e.base.args[0]
        for r in sorted(self.random(u, over), key=str):
            law = self.laws[r]
            if not _symmetric_about_zero(law):
                continue
            if not _odd_in(u, r):
                continue
            mark = len(self.steps)
            value = self.expect(u**2, over) / 2
            return self._say(
                "Second moment of a rectified symmetric variable",
                expect(e),
                value,
                rf"${self.label(r)} \sim -{self.label(r)}$ and the argument is odd in it, so it "
                r"is symmetric about 0: $\mathbb{E}[\operatorname{relu}(u)^2] = "
                r"\mathbb{E}[u^2]/2$",
                at=mark,
            )
        return None

    # -- a drawn example (an index symbol with a distribution) ---------------------

    def _over_examples(self, e, i, over):
        """E_i[f(i)] = Σ_k π_k f(k) for an index i drawn uniformly (π_k = 1/m) or with
        the probabilities p: f written for every example at once (row i of X is X, with
        a leading axis of examples), then its weighted mean over that axis."""
        law = self.laws[i]
        # the other random symbols first, example by example (their rules read scalars):
        # E_i E_rest[f] = E[f], the example drawn independently of the rest
        inner = self.alg.tidy(self.expect(e, over - {i})) if self.random(e, over - {i}) else e
        if i not in inner.free_symbols:  # E_i[c] = c: the other symbols' mean was all of it
            return inner  # (Var[X[i] @ w] of a zero-mean w: its E_w is 0 at every i)
        batch = self._batched(inner, i)
        extra = len(self.alg.shape(e))
        axis = (sp.Integer(0),) if extra else ()  # a scalar's stack: all its entries
        if law.family == "uniform_index":
            value = ops.tmean(batch, *axis)
            why = (
                rf"the example ${self.label(i)}$ is drawn uniformly from $m$: "
                rf"$\mathbb{{E}}_{{{self.label(i)}}}[f] = \sum_k f(k) / m$, the mean over "
                "every example, written for all of them at once"
            )
        else:
            p = law.params[0]
            weights = layout.expand_dims(p, sp.Tuple(*range(1, 1 + extra))) if extra else p
            value = _weighted_rows(self.alg, weights * batch) if extra == 1 else None
            if value is None:
                value = ops.tsum(weights * batch, *axis)
            why = (
                rf"the example ${self.label(i)}$ is drawn with the probabilities "
                rf"$p$: $\mathbb{{E}}_{{{self.label(i)}}}[f] = \sum_k p_k f(k)$, written for "
                "every example at once"
            )
        return self._say(
            f"Expectation over the drawn example {self.label(i)}",
            expect(inner),
            value,
            why,
        )

    def _batched(self, e, i):
        """e at every value of the index i, stacked on a new leading axis: X[i] (row i)
        is X, and each operation is written for the stack (a sum over a row's entries
        sums over axis 1, x_i ⊙ v is X ⊙ v, x_iᵀ w is X w). NoClosedForm where an
        operation has no such form here."""
        out, batched = self._stack(e, i)
        if not batched:
            raise NoClosedForm(f"E over {self.label(i)}: ", e, " does not depend on it")
        return out

    def _outcomes(self, i):
        """How many values the drawn index i takes: m of uniform_index(m), k of a
        categorical over a k-vector of probabilities."""
        law = self.laws[i]
        if law.family == "uniform_index":
            return law.params[0]
        return self.alg.shape(law.params[0])[0]

    def _stack(self, e, i):
        if i not in e.free_symbols:
            return e, False
        alg = self.alg
        if isinstance(e, ops.gather) and e.args[1] == i and i not in e.args[0].free_symbols:
            return e.args[0], True
        if isinstance(e, ops.onehot) and e.args[0] == i and e.args[1] == self._outcomes(i):
            # the one-hot rows of every outcome, stacked: the identity (the score
            # function's E[r_a (e_a − π)] = π ⊙ r − π (πᵀ r))
            return ops.eye(e.args[1]), True
        shape = alg.shape(e)
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow)) or (
            isinstance(e, sp.Function) and not isinstance(e, ops.TensorOp)
        ):  # elementwise: a stacked operand of lower rank gets axes after the stack's
            args = []
            for a in e.args:
                x, b = self._stack(a, i)
                gap = len(shape) - len(alg.shape(a))
                if b and gap:
                    x = layout.expand_dims(x, sp.Tuple(*range(1, 1 + gap)))
                args.append(x)
            return e.func(*args), True
        if isinstance(e, ops.matmul):
            (xa, ba), (xb, bb) = (self._stack(a, i) for a in e.args)
            a, b = e.args
            if ba and not bb:  # x_i W: the stack of rows times W
                return ops.matmul(xa, xb), True
            if bb and not ba and len(alg.shape(b)) == 1 and len(alg.shape(a)) <= 2:  # A x_i
                return ops.matmul(xb, alg.T(xa)) if len(alg.shape(a)) == 2 else ops.matmul(
                    xb, xa
                ), True
            if ba and bb and len(alg.shape(a)) == len(alg.shape(b)) == 1:  # x_iᵀ z_i
                return ops.tsum(xa * xb, sp.Integer(1)), True
        if isinstance(e, (ops.entry, layout.index)):  # x_i[k]: every example's entry k
            x, b = self._stack(e.args[0], i)
            whole = sp.Tuple(sp.Integer(0), alg.shape(x)[0], sp.Integer(1))
            items = e.args[1:] if isinstance(e, ops.entry) else tuple(e.args[1])
            if b and all(i not in a.free_symbols for a in items):
                return layout.index(x, sp.Tuple(whole, *items)), True
        if isinstance(e, ops.transpose) and len(shape) < 2:
            return self._stack(e.args[0], i)
        if isinstance(e, ops.transpose) and len(shape) == 2:  # each example's matrix
            x, b = self._stack(e.args[0], i)
            return layout.permute(x, sp.Tuple(0, 2, 1)), b
        if isinstance(e, (ops.tsum, ops.tmean, ops.tmax, ops.tmin, ops.logsumexp)):
            x, b = self._stack(e.args[0], i)
            rank = len(alg.shape(e.args[0]))
            axes = e.args[1] if len(e.args) > 1 else sp.Tuple(*range(rank))
            items = list(axes) if isinstance(axes, sp.Tuple) else [axes]
            shifted = sp.Tuple(*[a + 1 if a >= 0 else a for a in items])
            if not rank:  # the sum of a scalar is the scalar
                return x, b
            return e.func(x, shifted, *e.args[2:]), b
        raise NoClosedForm(
            f"E over the drawn example {self.label(i)}: {type(e).__name__} of it has no form for "
            "every example at once here"
        )

    def _inner_product(self, e, a, b, over):
        """E[aᵀb] = tr Cov(a, b) + E[a]ᵀE[b] for vectors a, b that share random symbols
        (E[xᵀx] = tr Σ + μᵀμ), with Cov(a, b) from the affine rule."""
        mark = len(self.steps)
        cov = self.alg.tidy(self.covariance(a, b, over))
        c, rest = self.alg.split_scalar(cov)
        if isinstance(rest, ops.eye):  # tr(c I) = c n
            value = c * rest.args[0]
        else:
            value = ops.trace(cov) if self.alg.shape(cov) else cov
        value = value + self.alg.mm(self.expect(a, over), self.expect(b, over))
        return self._say(
            "Expectation of an inner product",
            expect(e),
            value,
            r"$\mathbb{E}[a^\top b] = \operatorname{tr} \operatorname{Cov}(a, b) + "
            r"\mathbb{E}[a]^\top \mathbb{E}[b]$",
            ops.trace(covariance(a, b)) + self.alg.mm(expect(a), expect(b)),
            at=mark,
        )

    def _outer_product(self, e, a, b, over):
        """E[a bᵀ] = Cov(a, b) + E[a] E[b]ᵀ for vectors a, b that share random symbols
        (the second-moment matrix E[x xᵀ] = Σ + μ μᵀ), with Cov(a, b) from its rules."""
        mark = len(self.steps)
        value = self.covariance(a, b, over) + self.alg.outer(
            self.expect(a, over), self.expect(b, over)
        )
        return self._say(
            "Expectation of an outer product",
            expect(e),
            value,
            r"$\mathbb{E}[a b^\top] = \operatorname{Cov}(a, b) + "
            r"\mathbb{E}[a]\,\mathbb{E}[b]^\top$",
            covariance(a, b) + self.alg.outer(expect(a), expect(b)),
            at=mark,
        )

    def _one_symbol_elementwise(self, e, over) -> bool:
        """e is an elementwise function of one random symbol r, or of one entry of r
        where r's entries are independent (clip(u[2], -1, 1)²): one integral."""
        rand = self.random(e, over)
        if len(rand) != 1:
            return False
        (r,) = rand
        if self.laws[r].family == "mvnormal":  # its entries covary: no one integral
            return False
        return _elementwise_in(e, r) or self._through_one_entry(e, r) is not None

    def _over_outcomes(self, e, rand):
        """E f for f entry by entry in Bernoulli symbols: each is 0 or 1, so E f =
        Σ_o P(o) f(o) over their 2ᵏ outcomes, in the language's own functions (relu(1 −
        c), not SymPy's Piecewise, which had no name: E[relu(m − c)]); entries are
        independent, so entry by entry (E|a − b| = 2p(1 − p) for a, b of one law)."""
        order = sorted(rand, key=str)
        total = sp.S.Zero
        for outcome in itertools.product((0, 1), repeat=len(order)):
            weight = sp.Mul(
                *[
                    self.laws[x].params[0] if o else 1 - self.laws[x].params[0]
                    for x, o in zip(order, outcome)
                ]
            )
            if weight == 0:  # bernoulli(0)'s 1: no outcome, whatever f is there (log 0)
                continue
            total += weight * e.xreplace({x: sp.Integer(o) for x, o in zip(order, outcome)})
        total = total.replace(lambda f: isinstance(f, ops.relu), self._signed_relu)
        value = self._spread(self.alg.tidy(factored(sp.expand(total))), self.alg.shape(e))
        names = ", ".join(self.label(x) for x in order)
        return self._say(
            f"Expectation over the outcomes of {names}",
            expect(e),
            value,
            r"a Bernoulli entry is 0 or 1: $\mathbb{E} f = \sum_o P(o)\, f(o)$ over the "
            r"outcomes, entry by entry (the entries are independent)",
        )

    def _signed_relu(self, f):
        """relu(u) as u where u >= 0 and 0 where u <= 0 for every value of its symbols
        (relu(1 − c) of a unit_interval c at an outcome m = 1), else as it is."""
        u = f.args[0]
        if provably_nonnegative(self.spec, u):
            return u
        return sp.S.Zero if provably_nonnegative(self.spec, -u) else f

    def _through_one_entry(self, e, r):
        """(the entry, a scalar standing for it, e with the scalar in its place) where e
        is an elementwise function of one entry of r, whose entries are independent and
        identically distributed (clip(u[2], -1, 1)²), else None."""
        if self.laws[r].family not in FAMILIES:
            return None
        picked = {
            a for a in sp.preorder_traversal(e) if isinstance(a, ops.entry) and a.args[0] == r
        }
        if len(picked) != 1:
            return None
        (entry,) = picked
        scalar = sp.Dummy(f"{r}[{entry.args[1]}]", real=True)  # as the steps show it
        inner = e.xreplace({entry: scalar})
        if r in inner.free_symbols or not _elementwise_in(inner, scalar):
            return None
        return entry, scalar, inner

    def _mean(self, r):
        law = self.laws[r]
        if law.family == "mvnormal":
            mean = law.params[0]
        else:
            mean = FAMILIES[law.family].mean(*law.params)
        return self._spread(mean, self.alg.shape(r)) if self.alg.shape(mean) == () else mean

    def _spread(self, c, shape, simplified=False):
        """A tensor of the given shape whose every entry is c (c itself for a scalar),
        c simplified unless it is (a second simplify can undo the first's work)."""
        c = c if simplified else _simplified(c)
        if c == 0 or not shape:
            return c
        return c * ops.ones(*shape)

    def _expect_product(self, e, over):
        fixed, groups = [], []  # groups of factors linked by a shared random part
        for f in e.args:
            if not self.random(f, over):
                fixed.append(f)
                continue
            parts = self._parts(f, over)
            linked = [g for g in groups if _share(g[0], parts)]
            merged = (parts.union(*(g[0] for g in linked)), [f] + [x for g in linked for x in g[1]])
            groups = [g for g in groups if g not in linked] + [merged]
        if len(groups) == 1:
            inner = sp.Mul(*groups[0][1])
            if inner == e and len(e.args) == 2 and not self._one_symbol_elementwise(e, over):
                pair = self._product_of_affine(e, over)
                if pair is not None:
                    return pair
                kernel = self._arc_cosine(e, over)
                if kernel is not None:
                    return kernel
            if inner == e:  # all factors random: one elementwise function of one symbol
                return self._entrywise(e, over)
            mark = len(self.steps)
            return self._say(
                "Linearity",
                expect(e),
                sp.Mul(*fixed) * self.expect(inner, over),
                "factors with no random symbol come out of the expectation: "
                r"$\mathbb{E}[c\,u] = c\,\mathbb{E}[u]$",
                sp.Mul(*fixed) * expect(inner),
                at=mark,
            )
        parts = [sp.Mul(*g[1]) for g in groups]
        value = self._say(
            "Independence",
            expect(sp.Mul(*parts)),
            sp.Mul(*[self.expect(p, over) for p in parts]),
            "factors with no random symbol in common are independent: "
            r"$\mathbb{E}[uv] = \mathbb{E}[u]\,\mathbb{E}[v]$",
        )
        return sp.Mul(*fixed) * value

    def _arc_cosine(self, e, over):
        """E[relu(u) relu(v)] for scalars u, v affine in normal symbols, of mean 0:
        (σ_u σ_v/2π)(sin θ + (π − θ) cos θ), cos θ = Cov(u, v)/(σ_u σ_v), the arc-cosine
        kernel of degree 1 (Cho & Saul 2009; a ReLU network's NNGP kernel). Written with
        c = Cov(u, v) and D = σ_u² σ_v² − c² (π − θ = π/2 + atan(c/√D)):
        √D/(2π) + c/4 + c atan(c/√D)/(2π). None where e is no such product, a mean is
        not 0, or u, v are proportional (D = 0: relu(u)² has its own rule)."""
        if len(e.args) != 2 or not all(isinstance(f, ops.relu) for f in e.args):
            return None
        u, v = (f.args[0] for f in e.args)
        if self.alg.shape(u) != () or self.alg.shape(v) != ():
            return None
        rand = self.random(u, over) | self.random(v, over)
        if any(self.laws[r].family not in ("normal", "mvnormal") for r in rand):
            return None
        if not (self.affine_in_random(u, over) and self.affine_in_random(v, over)):
            return None
        mark = len(self.steps)
        try:
            means = [sp.simplify(self.alg.tidy(self.expect(x, over))) for x in (u, v)]
            if any(m != 0 for m in means):
                del self.steps[mark:]
                return None
            var_u, var_v = (self.alg.tidy(self.variance(x, over)) for x in (u, v))
            c = self.alg.tidy(self.covariance(u, v, over))
        except NoClosedForm:
            del self.steps[mark:]
            return None
        spread = sp.factor(var_u * var_v - c**2)
        if spread == 0:
            del self.steps[mark:]
            return None
        root = sp.sqrt(spread)
        value = root / (2 * sp.pi) + c / 4 + c * sp.atan(c / root) / (2 * sp.pi)
        return self._say(
            "Arc-cosine kernel",
            expect(e),
            value,
            r"$u, v$ jointly normal of mean 0: $\mathbb{E}[\mathrm{relu}(u)\,\mathrm{relu}(v)] = "
            r"\frac{\sigma_u \sigma_v}{2\pi}(\sin\theta + (\pi - \theta)\cos\theta)$, "
            r"$\cos\theta = \operatorname{Cov}(u, v)/(\sigma_u \sigma_v)$ (Cho and Saul), "
            r"with $\pi - \theta = \pi/2 + \operatorname{atan}(c/\sqrt{\sigma_u^2\sigma_v^2 - c^2})$",
            at=mark,
        )

    def _parts(self, f, over) -> frozenset:
        """The random parts f reads: (r, i) where it reads r only through entries r[i]
        with fixed i of a symbol of independent entries, (r,) for all of r. Distinct
        entries are independent: E[relu(z[0]) relu(z[1])] = E[relu(z[0])] E[relu(z[1])]."""
        out = set()
        for r in self.random(f, over):
            picked = {
                a.args[1:]
                for a in sp.preorder_traversal(f)
                if isinstance(a, ops.entry) and a.args[0] == r
            }
            whole = f.xreplace({ops.entry(r, *i): sp.Dummy() for i in picked})
            if self.laws[r].family in FAMILIES and r not in whole.free_symbols:
                out.update((r, *i) for i in picked)
            else:
                out.add((r,))
        return frozenset(out)

    def _product_of_affine(self, e, over):
        """E[a b] = Cov(a, b) + E[a] E[b] for two scalars affine in the random symbols
        they share (E[x₀ x₁] = S₀₁ + m₀ m₁ for x ~ N(m, S)); None where a factor is not
        affine (Cov of those is itself from E[a b])."""
        a, b = e.args
        if not (self.affine_in_random(a, over) and self.affine_in_random(b, over)):
            return None
        mark = len(self.steps)
        value = self.covariance(a, b, over) + self.expect(a, over) * self.expect(b, over)
        return self._say(
            "Expectation of a product",
            expect(e),
            value,
            r"$\mathbb{E}[a b] = \operatorname{Cov}(a, b) + \mathbb{E}[a]\,\mathbb{E}[b]$, "
            "with $a$ and $b$ affine in the random symbols they share",
            covariance(a, b) + expect(a) * expect(b),
            at=mark,
        )

    def _second_moment(self, e, over):
        s = e.base
        # Var s is asking for E[s²] over the same symbols: not back to Var s (over fewer,
        # E_w[s²] given a drawn example i, it is a moment of its own)
        if (s, over) in self._by_two_moments:
            if isinstance(s, sp.Add):  # (a + b)² = a² + 2ab + b², each by its rule
                return self.expect(sp.expand(e, deep=False), over)
            raise NoClosedForm(
                "E[",
                e,
                "]: no rule applies (it is not linear, a product of independent "
                "factors, or an elementwise function of one random symbol)",
            )
        mark = len(self.steps)
        var, mean = self.variance(s, over), self.expect(s, over)
        return self._say(
            "Second moment",
            expect(e),
            var + mean**2,
            r"$\mathbb{E}[s^2] = \operatorname{Var} s + (\mathbb{E} s)^2$",
            variance(s) + expect(s) ** 2,
            at=mark,
        )

    def _entrywise(self, e, over):
        """E of an elementwise function of one random symbol with independent, identically
        distributed entries: every entry has the same expectation, one integral."""
        rand = self.random(e, over)
        r = next(iter(rand))
        law = self.laws[r]
        one = self._through_one_entry(e, r) if len(rand) == 1 else None
        if one is not None:
            # f(r[0]) of i.i.d. entries: the entry has r's law; a scalar stands for it
            entry, scalar, inner = one
            saved = self.laws, self.alg
            self.laws = {**self.laws, scalar: law}
            self.alg = self.alg.extended({scalar: ()})
            self.labels[scalar] = f"{self.label(r)}[{entry.args[1]}]"
            self.stands_for[scalar] = entry
            try:
                return self._entrywise(inner, over | {scalar})
            finally:
                self.laws, self.alg = saved
        if (
            all(self.laws[x].family == "bernoulli" for x in rand)
            and len(rand) <= MAX_ENUMERATED_SYMBOLS
            and all(_elementwise_in(e, x) for x in rand)
        ):
            return self._over_outcomes(e, rand)
        if len(rand) > 1 or law.family == "mvnormal" or not _elementwise_in(e, r):
            raise NoClosedForm(
                "E[",
                e,
                "]: no rule applies (it is not linear, a product of independent "
                "factors, or an elementwise function of one random symbol)",
            )
        t = sp.Dummy("t", real=True)
        n = self.label(r)
        f = elementary(e.xreplace({r: t}))
        # the parts without t (x_iᵀ w, an entry of a fixed tensor, a leaky ReLU's
        # maximum(1, α)) are constants to the integral: scalar names for them, put back
        # in its value; named before the piecewise functions become SymPy's, whose
        # conditions in constants alone split no interval
        constants = {
            c: sp.Dummy("c", real=True)
            for c in f.atoms(sp.Function)
            if t not in c.free_symbols and type(c) not in IN_LANGUAGE
        }
        _ordered_bounds(e, f, t)
        # dlsym's functions as SymPy's, to integrate
        f = as_sympy_piecewise(f.xreplace(constants))
        pole = _pole(f, t, law)
        if pole is not None:
            raise Diverges(
                "E[",
                e,
                f"] does not exist: the integrand is not integrable at {n} = ",
                pole,
                " (SymPy's principal value, such as E[1/x] = 0, is no expectation)",
            )
        centre = (
            _odd_about(f, t)
            if _symmetric_about_zero(law) and _polynomial_growth(e.xreplace({r: t}), t)
            else None
        )
        if centre == 0:
            # f(−t) = −f(t) and t ~ −t: E f = E f(−t) = −E f, so 0 (f integrable: it
            # grows no faster than a polynomial, and a normal has every moment)
            return self._say(
                f"Odd function of a symmetric variable {n}",
                expect(e),
                self._spread(sp.Integer(0), self.alg.shape(e)),
                rf"${n} \sim -{n}$ ({law.text}) and the function is odd, $f(-t) = -f(t)$: "
                rf"$\mathbb{{E}} f({n}) = \mathbb{{E}} f(-{n}) = -\mathbb{{E}} f({n}) = 0$",
            )
        if centre is not None:
            # sigmoid(t) + sigmoid(−t) = 1: sigmoid − 1/2 is odd, so E sigmoid(z) = 1/2
            # for z ~ N(0, v), an integral SymPy does not finish in 5 s
            c = self.alg.tidy(centre.xreplace({d: c for c, d in constants.items()}))
            return self._say(
                f"Odd about a constant, of a symmetric variable {n}",
                expect(e),
                self._spread(c, self.alg.shape(e)),
                rf"${n} \sim -{n}$ ({law.text}) and $f(t) + f(-t) = 2c$ is constant, so "
                rf"$f - c$ is odd: $\mathbb{{E}} f({n}) = c$",
            )
        params = _named_params(law)
        try:
            one = within(SECONDS_TO_INTEGRATE, FAMILIES[law.family].expect, f, t, *params)
        except TimeLimit:
            raise NoClosedForm(
                "E[", e, f"]: the integral did not finish in {SECONDS_TO_INTEGRATE:g} s"
            ) from None
        # an integral SymPy left unevaluated, before simplify sees it: simplify has
        # turned the integral of Piecewise((c t, c t > 0), (0, True)) over [-1, 1] into 0
        if one.has(sp.Integral):
            raise NoClosedForm("E[", e, "]: the integral has no closed form SymPy finds")
        one = _without_power_towers(_simplified(one))
        one = one.xreplace({name: p for name, p in zip(params, law.params)})
        one = self._within_unit_interval(one)
        if one.has(sp.zoo, sp.oo, -sp.oo) and not one.has(sp.Integral):
            # E exp(z²) of z ~ N(0, 1): the integrand outgrows the density
            raise Diverges("E[", e, "] is not finite: the integral diverges")
        if one.has(sp.Integral) or one.has(sp.nan, sp.zoo, sp.oo):
            raise NoClosedForm("E[", e, "]: the integral has no closed form SymPy finds")
        if one.has(sp.I):
            # log of a uniform(-1, 1) draw is complex where it is negative; a real
            # integrand's value holding i is a form SymPy did not make real
            if _complex_somewhere(f, t, law):
                raise NoClosedForm(
                    "E[", e, "] is not real: the integrand is complex on the support"
                )
            raise NoClosedForm("E[", e, "]: SymPy's integral is not in a real closed form")
        # constants the language has no name for (E[log|z|] holds Euler's γ): their value
        one = one.xreplace(
            {c: sp.Float(c.evalf(17)) for c in one.atoms(sp.NumberSymbol) if c not in (sp.pi, sp.E)}
        )
        unnamed = sorted(
            {type(f).__name__ for f in one.atoms(sp.Function) if type(f) not in IN_LANGUAGE}
            | ({"Piecewise"} if one.has(sp.Piecewise) else set())
        )
        if unnamed:
            raise NoClosedForm(
                "E[",
                e,
                f"]: the integral's value uses {', '.join(unnamed)}, which the "
                "expression language has no name for",
            )
        one = self.alg.tidy(one.xreplace({d: c for c, d in constants.items()}))
        value = self._spread(one, self.alg.shape(e), simplified=True)
        if e.free_symbols - {r} or self.alg.shape(e) == ():
            why = f"one entry of ${n}$ at a time: an integral against its density ({law.text})"
        else:
            why = f"every entry of ${n}$ has the same distribution ({law.text}): one integral"
        if isinstance(e, sp.Pow) and e.base == r and e.exp == 2:
            why = rf"$\mathbb{{E}}[{n}^2] = \operatorname{{Var}} {n} + (\mathbb{{E}} {n})^2$"
        # a scalar symbol (or one standing for an entry, or for an affine normal u) has
        # no entries to speak of
        what = "a function of" if self.alg.shape(r) == () else "an entry of"
        return self._say(f"Expectation of {what} {n}", expect(e), value, why)

    def _gated(self, e, over):
        """E where(c, a, b), or of its k-th power where(c, aᵏ, bᵏ), for a gate c whose
        random symbols are independent of the branches' (a Bernoulli switch between two
        normals, a ReLU gate on an independent value): where(c, a, b) = 1_c a +
        (1 − 1_c) b, so P(c) E a + (1 − P(c)) E b. None for anything else."""
        base, k = e, sp.Integer(1)
        if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
            base, k = e.base, e.exp
        if not self._independent_gate(base, over):
            return None
        c, a, b = base.args
        a, b = a**k, b**k
        mark = len(self.steps)
        p = self.expect(where(c, sp.Integer(1), sp.Integer(0)), over)
        value = p * self.expect(a, over) + (1 - p) * self.expect(b, over)
        return self._say(
            "A gate independent of its branches",
            expect(e),
            self.alg.tidy(value),
            r"$\operatorname{where}(c, a, b) = 1_c\, a + (1 - 1_c)\, b$ (and its power "
            r"$\operatorname{where}(c, a^k, b^k)$), the gate $c$ independent of $a$ and $b$: "
            r"$P(c)\, \mathbb{E} a + (1 - P(c))\, \mathbb{E} b$",
            at=mark,
        )

    def _independent_gate(self, e, over) -> bool:
        """Whether ``e`` is where(c, a, b) with a random gate c whose random symbols are
        not the branches' (which are random too)."""
        if not isinstance(e, where):
            return False
        c, a, b = e.args
        gate, branches = self.random(c, over), self.random(a, over) | self.random(b, over)
        return bool(gate and branches and not gate & branches)

    def _gated_variance(self, s, over):
        """Var where(c, a, b) for a gate c independent of the branches, by the law of
        total variance given the gate: P Var a + (1 − P) Var b + P (1 − P)(E a − E b)².
        From E[s²] − (E s)² a Bernoulli switch between N(1e8, 1) and N(1e8, 4) came out 2.0
        where it is 3.1: two moments of 1e16 cancelled. None for anything else."""
        if not self._independent_gate(s, over):
            return None
        c, a, b = s.args
        mark = len(self.steps)
        p = self.expect(where(c, sp.Integer(1), sp.Integer(0)), over)
        spread = self.expect(a, over) - self.expect(b, over)
        value = (
            p * self.variance(a, over) + (1 - p) * self.variance(b, over) + p * (1 - p) * spread**2
        )
        return self._say(
            "A gate independent of its branches",
            variance(s),
            self.alg.tidy(value),
            r"the law of total variance given the gate $c$, independent of $a$ and $b$: "
            r"$P(c) \operatorname{Var} a + (1 - P(c)) \operatorname{Var} b + P(c)(1 - P(c))"
            r"(\mathbb{E} a - \mathbb{E} b)^2$",
            at=mark,
        )

    def _stacked(self, e, over, moment):
        """E (or Var, entry by entry) of a stack or a concatenation: the parts' moments,
        stacked alike (each kept at its part's shape: E[x[0] − mean(x)] is 0 of a
        vector part, not the number 0)."""
        parts = []
        for a in e.args[1:]:
            value, shape = moment(a, over), self.alg.shape(a)
            if self.alg.shape(value) != shape:
                value = ops.zeros(*shape) if value == 0 else value * ops.ones(*shape)
            parts.append(value)
        return e.func(e.args[0], *parts)

    def _rebuild(self, e, inner):
        if isinstance(e, ops.transpose):
            return self.alg.T(inner)
        if isinstance(e, ops.tsum) and len(e.args) == 1:
            # E[sum(f(r))] = size * E[f(r_0)]: a sum of identically distributed entries
            return _total(self.alg, inner)
        return e.func(inner, *e.args[1:])

    # -- variances -------------------------------------------------------------------

    def _entries_through_a_random_matrix(self, s, over):
        """Var[(C ⊙ r) Y] = v (C ⊙ C)(Y ⊙ Y) entry by entry, and Var[Y (C ⊙ r)] =
        v (Y ⊙ Y)(C ⊙ C), for a random matrix r of independent entries of variance v and
        fixed C (or none) and Y: entry (i, j) is Σ_l C_il r_il Y_lj, a sum of independent
        terms whose variances add, whatever r's mean. DropConnect's
        Var[(M ⊙ W) x] = q(1 − q) W² x²; with no C, a row sum (Var[X W] = v ‖X_b‖² in
        row b). None where s is no such product."""
        scale, product = self.alg.split_scalar(s)  # Var[c u] = c² Var u
        if not isinstance(product, ops.matmul) or self.random(scale, over):
            return None
        a, b = product.args
        if self.random(a, over) and not self.random(b, over):
            masked, fixed, left = a, b, True
        elif self.random(b, over) and not self.random(a, over):
            masked, fixed, left = b, a, False
        else:
            return None
        factors = sp.Mul.make_args(masked)
        rand = [f for f in factors if self.random(f, over)]
        if len(rand) != 1 or len(self.alg.shape(rand[0])) != 2:
            return None
        (r,) = rand
        law = self.laws.get(r)
        if law is None or law.family not in FAMILIES:
            return None
        alg = self.alg
        v = FAMILIES[law.family].var(*law.params)
        weights = [f for f in factors if f is not r]
        squared = alg.tidy(sp.Mul(*[f**2 for f in weights])) if weights else None
        fixed2 = fixed**2
        if squared is not None and alg.shape(squared) == alg.shape(r):
            value = alg.mm(squared, fixed2) if left else alg.mm(fixed2, squared)
        else:  # no weight matrix: a sum of the fixed side's squares along the contraction
            c = squared if squared is not None else sp.Integer(1)
            rows, cols = alg.shape(r)
            if len(alg.shape(fixed)) == 1:
                value = c * alg.reduce_sum(fixed2) * alg.ones((rows if left else cols,))
            elif left:
                value = c * alg.outer(alg.ones((rows,)), alg.reduce_sum(fixed2, 0))
            else:
                value = c * alg.outer(alg.reduce_sum(fixed2, 1), alg.ones((cols,)))
        label = self.label(r)
        return self._say(
            f"Variance of each entry through the independent entries of {label}",
            variance(s),
            scale**2 * v * value,
            rf"each entry is a sum $\sum_l c_l\,{label}_{{il}}$ (or $\sum_l c_l\,{label}_{{lj}}$) "
            rf"over distinct entries of ${label}$, which are independent, so the variances add: "
            rf"$\operatorname{{Var}} = \operatorname{{Var}}[{label}_{{il}}] \sum_l c_l^2$",
        )

    def _product_of_two_random(self, s, over):
        """Var[A B] entry by entry for independent random matrices A and B (either
        transposed; B may be a vector) of i.i.d. entries: entry (i, j) is Σ_l A_il B_lj,
        K independent products, Var[a b] = σ_a² σ_b² + σ_a² μ_b² + μ_a² σ_b² each. The
        logits Q Kᵀ of attention have variance d_k for unit-variance queries and keys,
        which the 1/√d_k scaling undoes. None where s is no such product (Q Qᵀ: its
        diagonal is a sum of squares)."""
        scale, product = self.alg.split_scalar(s)
        if not isinstance(product, ops.matmul) or self.random(scale, over):
            return None
        laws = []
        for f in product.args:
            r = f.args[0] if isinstance(f, ops.transpose) else f
            law = self.laws.get(r)
            if law is None or law.family not in FAMILIES or not r.is_Symbol:
                return None
            if any(self.alg.shape(p) != () for p in law.params) or not over >= {r}:
                return None
            laws.append((r, FAMILIES[law.family], law.params))
        (a, fa, pa), (b, fb, pb) = laws
        terms = self.alg.shape(product.args[0])[-1]
        shape = self.alg.shape(product)
        if a == b:
            return self._gram_of_one_random(s, scale, product, fa, pa, terms, shape)
        ma, va, mb, vb = fa.mean(*pa), fa.var(*pa), fb.mean(*pb), fb.var(*pb)
        value = scale**2 * terms * (va * vb + va * mb**2 + ma**2 * vb)
        la, lb = self.label(a), self.label(b)
        return self._say(
            f"Variance of each entry of a product of independent {la} and {lb}",
            variance(s),
            value * self.alg.ones(self.alg.shape(product)),
            rf"each entry is a sum of ${terms}$ products of independent entries, "
            r"$\operatorname{Var}[a b] = \sigma_a^2 \sigma_b^2 + \sigma_a^2 \mu_b^2 + "
            r"\mu_a^2 \sigma_b^2$, and the products are independent, so the variances add",
        )

    def _gram_of_one_random(self, s, scale, product, family, params, terms, shape):
        """Var[Q Qᵀ] (or Qᵀ Q) of one random matrix of i.i.d. entries: off the diagonal
        K products Q_il Q_jl of independent entries, Var = (σ² + μ²)² − μ⁴; on it K
        squares, Var[q²] = E q⁴ − (E q²)². None for a vector, or a product that is no
        Gram matrix (Q Q)."""
        a, b = product.args
        if len(shape) != 2 or not (
            (isinstance(b, ops.transpose) and b.args[0] == a)
            or (isinstance(a, ops.transpose) and a.args[0] == b)
        ):
            return None
        t = sp.Dummy("t", real=True)
        try:
            fourth = within(SECONDS_TO_INTEGRATE, family.expect, t**4, t, *params)
        except TimeLimit:
            return None
        m, v = family.mean(*params), family.var(*params)
        second = v + m**2
        off = second**2 - m**4
        on = sp.simplify(fourth - second**2)
        alg = self.alg
        value = scale**2 * terms * (off * alg.ones(shape) + (on - off) * ops.eye(shape[0]))
        label = self.label(a.args[0] if isinstance(a, ops.transpose) else a)
        return self._say(
            f"Variance of each entry of the Gram matrix of {label}",
            variance(s),
            value,
            rf"off the diagonal each entry is a sum of ${terms}$ products of two independent "
            r"entries, $\operatorname{Var}[a b] = (\sigma^2 + \mu^2)^2 - \mu^4$; on it a sum "
            r"of squares, $\operatorname{Var}[a^2] = \mathbb{E} a^4 - (\mathbb{E} a^2)^2$",
        )

    def _sums_of_own_entries(self, s, over):
        """Var of each entry of c·sum(G ⊙ R, axis=a) (or a mean) for R of i.i.d. entries
        of variance v and G, c free of random symbols: each entry sums entries of R no
        other entry reads, so its variance is c² v sum(G², axis=a) (inverted dropout's row
        sums: Var[sum(M ⊙ X, axis=1)/k] = (1 − k)/k sum(X², axis=1); it was "no closed
        form" through a random matrix). None where s is no such reduction."""
        c, rest = self.alg.split_scalar(s)
        if self.random(c, over) or type(rest) not in (ops.tsum, ops.tmean):
            return None
        inner = rest.args[0]
        shape = self.alg.shape(inner)
        drawn = [f for f in sp.Mul.make_args(inner) if self.random(f, over)]
        if len(drawn) != 1 or drawn[0] not in self.laws or self.alg.shape(drawn[0]) != shape:
            return None  # a broadcast R would be read by several entries
        (r,) = drawn
        law = self.laws[r]
        if law.family == "mvnormal" or law.family in INDEX_FAMILIES:
            return None
        g = sp.Mul(*[f for f in sp.Mul.make_args(inner) if f != r])
        squares = self.alg.tidy(g**2 * self.alg.ones(shape))
        summed = ops.tsum(squares, *rest.args[1:])
        if isinstance(rest, ops.tmean):  # a mean over N entries: 1/N² of the sum's
            c = c / sp.Mul(*[shape[i] for i in ops.reduced_axes(rest, shape)])
        value = c**2 * FAMILIES[law.family].var(*law.params) * summed
        return self._say(
            "Variance of sums of own entries",
            variance(s),
            value,
            r"each entry sums entries of $R$ that no other entry reads, and they are "
            r"independent: $\operatorname{Var}[\textstyle\sum_j g_j r_j] = "
            r"\sigma^2 \sum_j g_j^2$",
        )

    def _entries_alike(self, s, over, moment=variance):
        """Var[f(W u + c)] (or E, ``moment``) entry by entry for W of i.i.d. entries, u
        free of W, f entry by entry (with scalars and fixed vectors c): every entry is f
        of one row of W times u, rows of one law, so entry i is the first's moment with
        c₀ read as cᵢ (Var[relu(W x)] = s² ‖x‖² (1/2 − 1/(2π)) 𝟏, the entry [0] alone
        had it; E[relu(W x + b)] = σ φ(b/σ) + b Φ(b/σ), σ = s ‖x‖, entry by entry). None
        where s is no such function."""
        if not self._rows_alike(s, over):
            return None
        rows = self.alg.shape(s)[0]
        if any(self.alg.shape(x.args[0]) == (rows,) for x in s.atoms(ops.entry, layout.index)):
            return None  # x[0] written in every entry would read as x_i below
        mark = len(self.steps)
        first = _entries_inward(self.alg, ops.entry(s, sp.Integer(0)))
        # tidied first: E b[0] of a random bias is mb 𝟏[0], which is 1, not a fixed entry
        value = self.alg.tidy((self.variance if moment is variance else self.expect)(first, over))
        fixed = {
            x: x.args[0]
            for x in value.atoms(ops.entry)
            if len(x.args) == 2 and x.args[1] == 0 and self.alg.shape(x.args[0]) == (rows,)
        }
        value = value.xreplace(fixed) if fixed else value * self.alg.ones((rows,))
        return self._say(
            "Entries of one law",
            moment(s),
            value,
            r"each entry is the same function of one row of a random matrix of i.i.d. "
            r"entries times a vector independent of it (and of the same entry of a fixed "
            r"vector, or of a random one of i.i.d. entries): the entries have one law, up "
            r"to that fixed entry, so each has the first's, that entry read as its own",
            at=mark,
        )

    def _rows_alike(self, s, over) -> bool:
        """Whether s is built entry by entry from products W @ u (W a random matrix of
        i.i.d. entries, the same one in each, u free of W) and scalars."""
        found = set()

        def alike(e) -> bool:
            shape = self.alg.shape(e)
            if shape == () or not self.random(e, over):
                return True  # a scalar, or a fixed vector c read entry by entry
            if e in self.laws and _iid(self.laws[e], self.alg):
                return True  # a random bias b of i.i.d. entries, read entry by entry
            if isinstance(e, ops.matmul) and len(e.args) == 2:
                W, u = e.args
                if len(self.alg.shape(u)) == 2 and len(self.alg.shape(W)) == 1:
                    u, W = W, u  # the row convention u @ W: columns of W, alike
                law = self.laws.get(W)
                ok = (
                    law is not None
                    and _iid(law, self.alg)
                    and len(self.alg.shape(W)) == 2
                    and W not in self.random(u, over)
                )
                found.add(W)
                return ok
            if _is_elementwise(e) or isinstance(e, (sp.Add, sp.Mul, sp.Pow)):
                return all(alike(a) for a in e.args)
            return False

        return len(self.alg.shape(s)) == 1 and alike(s) and len(found) == 1

    def stepped(self, f, over) -> bool:
        """Whether a function with a kink or a step (where, heaviside, sign, relu, ...)
        reads a random symbol in ``f``: its gradient is flat almost everywhere (where(z >
        0, 1, 0)'s is 0), so a gradient free of random symbols does not make ``f`` affine
        (Var[where(z > 0, 1, 0)] was 0, not 1/4)."""
        return any(kinked_in(f, r) for r in self.random(f, over))

    def affine_in_random(self, f, over) -> bool:
        """Whether ``f`` is affine in each of its random symbols: its gradient in each
        holds none of them (found in matrix form; where it is not, no)."""
        if self.stepped(f, over) or isinstance(f, sp.logic.boolalg.Boolean):
            return False  # x > y is a condition, no value: no gradient to read
        for r in self.random(f, over):
            try:
                if self.random(self.gradient(f, r), over):
                    return False
            except NoClosedForm:
                return False
        return True

    def gradient(self, s, r):
        """∇_r s in matrix form (the calculus engine), or NoClosedForm."""
        return self._derivative("gradient", s, r)

    def jacobian(self, a, r):
        """∂a/∂r in matrix form (the calculus engine), or NoClosedForm."""
        return self._derivative("jacobian", a, r)

    def _derivative(self, kind, target, r):
        try:
            spec = dataclasses.replace(self.spec, defines=())  # target is written out
            return in_matrix_form(spec, kind, target, [str(r)])[str(r)]
        except NoMatrixRule as exc:
            raise NoClosedForm(f"no matrix form for {exc}") from None

    def _quad(self, g, h, r):
        """Cov(⟨g, r⟩, ⟨h, r⟩) for fixed g and h: v ⟨g, h⟩ for independent entries of
        variance v, gᵀ S h for a normal vector with covariance S."""
        law = self.laws[r]
        if law.family == "mvnormal":
            return self.alg.mm(self.alg.mm(g, law.params[1]), h)
        v = FAMILIES[law.family].var(*law.params)
        if self.alg.shape(g) == ():
            return v * g * h
        return v * _inner(self.alg, g, h)

    def variance(self, s, over: frozenset):
        try:
            return self._or_by_columns(self._variance, variance, s, over)
        except NoClosedForm:
            # last: a batch statistic's columns read as one show its textbook step
            found = self._sums_of_own_entries(s, over)
            if found is None:
                raise
            return found

    def _variance(self, s, over: frozenset):
        rand = self.random(s, over)
        if not rand:
            return sp.Integer(0)
        if any(self.laws[r].family in INDEX_FAMILIES for r in rand):
            if self.alg.shape(s) != ():
                raise NoClosedForm(
                    "Var[",
                    s,
                    "] of a tensor over a drawn example: write covariance(e, e) or "
                    "variance(e[i]) for one entry",
                )
            if all(self.laws[r].family in INDEX_FAMILIES for r in rand):
                return self._mean_squared_deviation(s, over)
            return self._from_two_moments(s, over, ", each over the drawn example")
        if isinstance(s, (layout.stack, layout.concatenate)):
            return self._stacked(s, over, self.variance)
        if self.alg.shape(s) != ():
            moved = sp.Add(*[t for t in sp.Add.make_args(s) if self.random(t, over)])
            if moved != s:  # the rules below read W u, (C ⊙ r) Y: not W u − y
                mark = len(self.steps)
                value = self.variance(moved, over)
                return self._say(
                    "A fixed shift",
                    variance(s),
                    value,
                    r"a term with no random symbol moves every draw alike: "
                    r"$\operatorname{Var}[u + c] = \operatorname{Var}[u]$",
                    variance(moved),
                    at=mark,
                )
            if self._one_symbol_elementwise(s, over):
                return self._from_two_moments(s, over)
            if len(self.alg.shape(s)) == 1:
                # Var of each entry of a vector: the diagonal of its covariance matrix
                # (Var[W x] = s² diag(W Wᵀ) for x of i.i.d. entries)
                mark = len(self.steps)
                try:
                    cov = self.covariance(s, s, over)
                except NoClosedForm:
                    del self.steps[mark:]
                    through = self._entries_through_a_random_matrix(s, over)
                    if through is None:
                        through = self._entries_alike(s, over)
                    if through is None:
                        raise
                    return through
                return self._say(
                    "Variance of each entry",
                    variance(s),
                    _diagonal(self.alg, cov),
                    r"the variances of a vector's entries are the diagonal of its "
                    r"covariance matrix, $\operatorname{Var}[e_i] = \operatorname{Cov}[e, e]_{ii}$",
                    at=mark,
                )
            through = self._entries_through_a_random_matrix(s, over)
            if through is None:
                through = self._product_of_two_random(s, over)
            if through is not None:
                return through
            raise NoClosedForm(
                "Var[",
                s,
                "] of a tensor: write covariance(e, e) for a vector's covariance "
                "matrix, or variance(e[i]) for one entry",
            )
        gated = self._gated_variance(s, over)
        if gated is not None:
            return gated
        quadratic = self._gaussian_quadratic_form(s, over)
        if quadratic is None:
            quadratic = self._gaussian_squared_norm(s, over)
        if quadratic is not None:
            return quadratic
        order = [r for r in self.laws if r in rand]  # the spec's order
        # a step or kink in r: the gradient in r is flat almost everywhere, not affine
        stepped = {r for r in order if kinked_in(s, r)}
        try:
            grads = {r: self.gradient(s, r) for r in order}
        except NoClosedForm:
            if self._one_symbol_elementwise(s, over):
                return self._from_two_moments(s, over)
            raise
        if not stepped and all(not self.random(g, over) for g in grads.values()):
            value = sp.Add(*[self._quad(grads[r], grads[r], r) for r in order])
            return self._say(
                "Variance of an affine function",
                variance(s),
                value,
                r"independent symbols: variances add, and "
                r"$\operatorname{Var}\langle g, r\rangle = \sigma^2 \lVert g \rVert^2$ "
                "for independent entries of variance $\\sigma^2$",
            )
        failures = []
        for r in order:
            if r in stepped or r in self.random(grads[r]):
                continue  # s is not affine in r
            rest = over - {r}
            mark = len(self.steps)
            inner_var = self.alg.tidy(self._quad(grads[r], grads[r], r))
            inner_mean = self.alg.tidy(self.expect(s, frozenset({r})))
            try:
                given = self.expect(inner_var, rest)
                spread = self.variance(inner_mean, rest)
            except NoClosedForm as exc:
                failures.append(exc)
                del self.steps[mark:]
                continue
            others = ", ".join(str(x) for x in order if x != r)
            via = expect(inner_var) + (variance(inner_mean) if inner_mean != 0 else 0)
            return self._say(
                f"Law of total variance, conditioning on {others}",
                variance(s),
                given + spread,
                rf"$\operatorname{{Var}} s = \mathbb{{E}}[\operatorname{{Var}}(s \mid {others})] "
                rf"+ \operatorname{{Var}}(\mathbb{{E}}[s \mid {others}])$; given {others}, "
                rf"$s$ is affine in ${r}$",
                via,
                at=mark,
            )
        if self._one_symbol_elementwise(s, over):
            return self._from_two_moments(s, over)
        if self._sum_of_independent_entries(s, over):
            mark = len(self.steps)
            inner = self.alg.tidy(self.variance(s.args[0], over))
            if isinstance(s, ops.tmean):  # Var[mean u] = Var[sum u]/N²
                size = sp.Mul(*self.alg.shape(s.args[0]))
                return self._say(
                    "Variance of a mean of independent entries",
                    variance(s),
                    _total(self.alg, inner) / size**2,
                    r"the entries are independent, so their variances add, and "
                    r"$\operatorname{Var}[\frac{1}{N}\sum_i u_i] = \frac{1}{N^2} "
                    r"\sum_i \operatorname{Var}[u_i]$",
                    ops.tsum(variance(s.args[0])) / size**2,
                    at=mark,
                )
            value = self._rebuild(s, inner)
            return self._say(
                "Variance of a sum of independent entries",
                variance(s),
                value,
                r"the entries are independent, so their variances add: "
                r"$\operatorname{Var}[\sum_i u_i] = \sum_i \operatorname{Var}[u_i]$",
                ops.tsum(variance(s.args[0])),
                at=mark,
            )
        mark = len(self.steps)
        try:  # E[s²] and E[s] may each have a rule (an integral, a product) of their own
            return self._from_two_moments(s, over)
        except NoClosedForm as exc:
            del self.steps[mark:]
            failures.append(exc)
        raise NoClosedForm(
            "Var[",
            s,
            "]: it is not affine in any random symbol given the others, nor from its "
            "first two moments (",
            *failures[0].parts,
            ")",
        )

    def _gaussian_quadratic_form(self, s, over):
        """Var[xᵀ A x] = tr(A Σ (A + Aᵀ) Σ) + μᵀ(A + Aᵀ) Σ (A + Aᵀ) μ for a normal
        vector x ~ N(μ, Σ) and a fixed A: 2 tr(BΣBΣ) + 4 μᵀBΣBμ of its symmetric part
        B = (A + Aᵀ)/2 (Isserlis: Gaussian fourth moments). With Σ = v I it is
        v² tr(A (A + Aᵀ)) + v ‖(A + Aᵀ) μ‖². Other laws' fourth moments differ (a
        uniform's kurtosis): None there, and where s is no such form."""
        found = _quadratic_form(s)
        if found is None:
            return None
        x, a = found
        law = self.laws.get(x)
        if law is None or law.family not in ("normal", "mvnormal") or self.random(a, over):
            return None
        alg = self.alg
        both = a + alg.T(a)
        mean = self._mean(x)
        if law.family == "mvnormal":
            cov = law.params[1]
            spread = ops.trace(alg.mm(alg.mm(a, cov), alg.mm(both, cov)))
            shifted = alg.mm(alg.mm(alg.mm(mean, both), cov), alg.mm(both, mean))
        else:
            v = FAMILIES["normal"].var(*law.params)
            spread = v**2 * ops.trace(alg.mm(a, both))
            shifted = v * _inner(alg, alg.mm(both, mean), alg.mm(both, mean))
        return self._say(
            "Variance of a Gaussian quadratic form",
            variance(s),
            spread + shifted,
            r"$\operatorname{Var}[x^\top A x] = 2 \operatorname{tr}(B \Sigma B \Sigma) + 4 \mu^\top "
            r"B \Sigma B \mu$ for $x \sim \mathcal{N}(\mu, \Sigma)$ and the symmetric part "
            r"$B = (A + A^\top)/2$ (Gaussian fourth moments, by Isserlis' theorem)",
        )

    def _gaussian_squared_norm(self, s, over):
        """Var‖u‖² = 2 tr(Σ²) + 4 mᵀ Σ m for a vector u ~ N(m, Σ): u affine in normal
        symbols is normal, with m = E u and Σ = Cov(u, u) by their rules (Isserlis,
        as for a quadratic form). ‖u‖² written u @ u or sum(u**2): xᵀx of
        x ~ N(μ 1, I) is a noncentral χ², 2n + 4n μ²; the scatter sum((x − mean(x))²)
        of x ~ N(0, v I) has Σ = v (I − 11ᵀ/n), 2 (n − 1) v². None where u is not
        such a vector (a uniform's fourth moments differ; W x through a random W is
        no normal vector)."""
        u = _squared_norm_of(s)
        if u is None or len(self.alg.shape(u)) != 1:
            return None
        rand = self.random(u, over)
        if not rand or any(self.laws[r].family not in ("normal", "mvnormal") for r in rand):
            return None
        for r in rand:  # affine: its Jacobian is fixed (a random matrix has none here)
            try:
                if self.random(self.jacobian(u, r), over):
                    return None
            except NoClosedForm:
                return None
        mark = len(self.steps)
        cov = self.alg.tidy(self.covariance(u, u, over))
        mean = self.alg.tidy(self.expect(u, over))
        c, rest = self.alg.split_scalar(cov)
        centring = _centring_power(rest)
        why = ""
        if isinstance(rest, ops.eye):  # Σ = c I: tr(Σ²) = c² n, mᵀΣm = c ‖m‖²
            spread = 2 * c**2 * rest.args[0]
            shifted = 4 * c * _inner(self.alg, mean, mean) if mean != 0 else 0
        elif centring is not None:  # Σ = c C for the centring C = I − 11ᵀ/n, C² = C
            cov = c * centring
            n = next(a for a in centring.args if isinstance(a, ops.eye)).args[0]
            spread = 2 * c**2 * (n - 1)
            shifted = 4 * self.alg.mm(self.alg.mm(mean, cov), mean) if mean != 0 else 0
            why = (
                r"; the centring matrix $C = I - \mathbf{1}\mathbf{1}^\top/n$ is idempotent, "
                r"$C^2 = C$, with $\operatorname{tr} C = n - 1$"
            )
        else:
            spread = 2 * ops.trace(self.alg.mm(cov, cov))
            shifted = 4 * self.alg.mm(self.alg.mm(mean, cov), mean) if mean != 0 else 0
        via = 2 * ops.trace(self.alg.mm(covariance(u, u), covariance(u, u))) + 4 * self.alg.mm(
            self.alg.mm(expect(u), covariance(u, u)), expect(u)
        )
        return self._say(
            "Variance of the squared norm of a normal vector",
            variance(s),
            spread + shifted,
            r"an affine function of normal symbols is normal, $u \sim \mathcal{N}(m, \Sigma)$ "
            r"with $m = \mathbb{E}[u]$, $\Sigma = \operatorname{Cov}(u, u)$, and "
            r"$\operatorname{Var} \lVert u \rVert^2 = 2 \operatorname{tr}(\Sigma^2) + "
            r"4 m^\top \Sigma m$ (Gaussian fourth moments, by Isserlis' theorem)" + why,
            via,
            at=mark,
        )

    def _sum_of_independent_entries(self, s, over) -> bool:
        """s = sum(f(r)) of one random symbol r of independent entries, each entry of
        f(r) a function of the same entry of r (so the terms are independent)."""
        if not (isinstance(s, (ops.tsum, ops.tmean)) and len(s.args) == 1):
            return False  # the whole sum or mean (no axis)
        u = s.args[0]
        rand = self.random(u, over)
        if len(rand) != 1:
            return False
        (r,) = rand
        return (
            self.laws[r].family in FAMILIES
            and self.alg.shape(u) == self.alg.shape(r)
            and _elementwise_in(u, r)
        )

    def _mean_squared_deviation(self, s, over):
        """Var s = E[(s − E s)²] over a drawn example only: Σ_k p_k (r_k − Σ_j p_j r_j)²,
        as the textbook writes a categorical's variance; E[s²] − (E s)² cancels in
        float64 (r shifted by 1e8: 4.0 for 0.649)."""
        mark = len(self.steps)
        mean = self.alg.tidy(self.expect(s, over))
        value = self.expect((s - mean) ** 2, over)
        return self._say(
            "Variance as the mean squared deviation",
            variance(s),
            value,
            r"$\operatorname{Var} s = \mathbb{E}[(s - \mathbb{E} s)^2]$, over the drawn "
            "example, whose mean is a number",
            at=mark,
        )

    def _from_two_moments(self, s, over, where: str = ""):
        """Var s = E[s²] − (E s)², each moment by the rules, as a step. While it runs,
        E[s²] may not come back to Var s (``_second_moment``): the two rules would call
        each other for ever."""
        mark = len(self.steps)
        self._by_two_moments.add((s, over))
        try:
            mean = self.expect(s, over)
            second = self.expect(s**2, over)
        finally:
            self._by_two_moments.discard((s, over))
        return self._say(
            "Variance from the first two moments",
            variance(s),
            factored(self.alg.tidy(second - mean**2)),
            r"$\operatorname{Var} s = \mathbb{E}[s^2] - (\mathbb{E} s)^2$" + where,
            at=mark,
        )

    def covariance(self, a, b, over: frozenset):
        if a == b and self.alg.shape(a) == ():
            return self.variance(a, over)
        rand = self.random(a, over) | self.random(b, over)
        if any(self.laws[r].family in INDEX_FAMILIES for r in rand):
            if self.alg.shape(a) != () or self.alg.shape(b) != ():
                raise NoClosedForm(
                    "Cov[",
                    a,
                    ", ",
                    b,
                    "] of tensors over a drawn example: write it for one "
                    "entry of each (covariance(a[0], b[1]))",
                )
            return self._covariance_from_two_moments(a, b, over, ", each over the drawn example")
        order = [r for r in self.laws if r in rand]
        through = self._through_a_random_matrix(a, b, over)
        if through is not None:
            return through
        if any(len(self.alg.shape(r)) > 1 for r in order):
            split = self._covariance_by_bilinearity(a, b, over)
            if split is not None:
                return split
        terms, rule = [], []
        mark = len(self.steps)
        scalars = self.alg.shape(a) == () and self.alg.shape(b) == ()
        for r in order:
            iid = all(self.alg.shape(p) == () for p in self.laws[r].params)
            if len(self.alg.shape(r)) > 1 and not (scalars and iid):
                raise NoClosedForm(
                    "Cov[",
                    a,
                    ", ",
                    b,
                    f"] through the random matrix {self.label(r)}: a rule covers W u and "
                    f"W v for W of independent zero-mean entries, independent of u and v",
                )
            ja, jb = (
                self.jacobian(x, r) if self.alg.shape(x) else self.gradient(x, r) for x in (a, b)
            )
            stepped = self.stepped(a, over) or self.stepped(b, over)
            if stepped or self.random(ja, over) or self.random(jb, over):
                del self.steps[mark:]
                if scalars:
                    total = self._total_covariance(a, b, over, order)
                    if total is not None:
                        return total
                    return self._covariance_from_two_moments(a, b, over)
                raise NoClosedForm(
                    "Cov[",
                    a,
                    ", ",
                    b,
                    f"]: not affine in the random symbols ({self.label(r)} multiplies another)",
                )
            law = self.laws[r]
            cov = (
                law.params[1] if law.family == "mvnormal" else FAMILIES[law.family].var(*law.params)
            )
            terms.append(self._cross(ja, jb, cov, r))
            # a matrix has no covariance matrix to name (i.i.d. entries: v ⟨J, K⟩)
            matrix = len(self.alg.shape(r)) > 1
            rule.append(terms[-1] if matrix else self._cross(ja, jb, covariance(r, r), r))
        return self._say(
            "Covariance of affine functions",
            covariance(a, b),
            sp.Add(*terms),
            r"$\operatorname{Cov}(J r, K r) = J \operatorname{Cov}(r) K^\top$, and "
            "independent symbols do not covary",
            sp.Add(*rule),
            at=mark,
        )

    def _covariance_by_bilinearity(self, a, b, over):
        """Cov(Σ a_k, Σ b_l) = Σ Cov(a_k, b_l), where only terms that share a random
        symbol covary: the terms of a and b grouped by the random symbols that link them,
        one covariance per group (Var[W x + b] = Cov(W x, W x) + Cov(b, b) for a random
        bias b, whose random matrix W the affine rule cannot take together with b). None
        where everything random is one group."""
        groups: list = []  # [random symbols, terms of a, terms of b]
        for side, e in ((1, a), (2, b)):
            for term in sp.Add.make_args(e):
                rand = self.random(term, over)
                if not rand:
                    continue  # a fixed term does not covary
                linked = [g for g in groups if g[0] & rand]
                merged = [rand.union(*(g[0] for g in linked)), [], []]
                for g in linked:
                    merged[1] += g[1]
                    merged[2] += g[2]
                merged[side].append(term)
                groups = [g for g in groups if all(g is not x for x in linked)] + [merged]
        if len(groups) < 2:
            return None
        mark = len(self.steps)
        pairs = [(sp.Add(*g[1]), sp.Add(*g[2])) for g in groups if g[1] and g[2]]
        value = sp.Add(*[self.covariance(x, y, over) for x, y in pairs])
        return self._say(
            "Covariance of sums",
            covariance(a, b),
            value,
            r"covariance is bilinear, $\operatorname{Cov}(\sum_k a_k, \sum_l b_l) = "
            r"\sum_{k, l} \operatorname{Cov}(a_k, b_l)$, and terms with no random symbol in "
            "common are independent: they do not covary",
            sp.Add(*[covariance(x, y) for x, y in pairs]),
            at=mark,
        )

    def _total_covariance(self, a, b, over, order):
        """Cov(a, b) = E[Cov(a, b | rest)] + Cov(E[a | rest], E[b | rest]) for two scalars
        affine in one random symbol r given the others (the rest): two units of a layer
        with random weights of mean m and a random input, Cov((W x)₀, (W x)₁) = n m². None
        where no r makes both affine (a step in a random symbol is never affine), or a
        moment has no rule."""
        if self.stepped(a, over) or self.stepped(b, over):
            return None
        for r in order:
            rest = over - {r}
            if not rest:
                continue
            try:
                if any(r in self.random(self.gradient(x, r), over) for x in (a, b)):
                    continue  # not affine in r itself (the others may stay in)
            except NoClosedForm:
                continue
            mark = len(self.steps)
            try:
                given = self.alg.tidy(self.covariance(a, b, frozenset({r})))
                within_ = self.expect(given, rest)
                means = [self.alg.tidy(self.expect(x, frozenset({r}))) for x in (a, b)]
                between = self.covariance(*means, rest)
            except NoClosedForm:
                del self.steps[mark:]
                continue
            others = ", ".join(self.label(x) for x in order if x != r)
            return self._say(
                f"Law of total covariance, conditioning on {others}",
                covariance(a, b),
                within_ + between,
                rf"$\operatorname{{Cov}}(a, b) = \mathbb{{E}}[\operatorname{{Cov}}(a, b \mid "
                rf"{others})] + \operatorname{{Cov}}(\mathbb{{E}}[a \mid {others}], "
                rf"\mathbb{{E}}[b \mid {others}])$; given {others}, both are affine in "
                rf"${self.label(r)}$",
                expect(given) + covariance(*means),
                at=mark,
            )
        return None

    def _covariance_from_two_moments(self, a, b, over, where: str = ""):
        """Cov(a, b) = E[ab] − E[a] E[b] for two scalars, each moment by the rules
        (Cov(x, x²) = E[x³] − E[x] E[x²])."""
        mark = len(self.steps)
        value = self.expect(a * b, over) - self.expect(a, over) * self.expect(b, over)
        return self._say(
            "Covariance from the first two moments",
            covariance(a, b),
            value,
            r"$\operatorname{Cov}(a, b) = \mathbb{E}[a b] - \mathbb{E}[a]\,\mathbb{E}[b]$" + where,
            at=mark,
        )

    def _through_a_random_matrix(self, a, b, over):
        """Cov(W u, W v) = σ² E[uᵀv] I for W of independent entries of mean 0 and
        variance σ², independent of u and v (random or fixed): E[W u vᵀ Wᵀ]_ij =
        Σ_kl E[W_ik W_jl] E[u_k v_l] = δ_ij σ² E[uᵀv], and E[W u] = 0. A layer's
        pre-activations at initialisation (Xavier, He). None where it does not apply."""
        original, picked = (a, b), None  # entries i, j of W u and W v: δ_ij σ² E[uᵀv]
        if (
            isinstance(a, ops.entry)
            and isinstance(b, ops.entry)
            and len(a.args) == len(b.args) == 2
        ):
            (a, i), (b, j) = a.args, b.args
            if not (i.is_Integer and j.is_Integer):
                return None
            picked = i == j
        if not (isinstance(a, ops.matmul) and isinstance(b, ops.matmul)):
            return None
        (W, u, size), (W2, v, _) = self._matrix_first(a), self._matrix_first(b)
        law = self.laws.get(W)
        if W != W2 or law is None or len(self.alg.shape(W)) != 2 or law.family == "mvnormal":
            return None
        family = FAMILIES[law.family]
        if sp.simplify(family.mean(*law.params)) != 0 or W in self.random(u) | self.random(v):
            return None
        mark = len(self.steps)
        scale = family.var(*law.params) * self.expect(_inner(self.alg, u, v), over)
        if picked is None:
            value = scale * ops.eye(size)
        else:  # one entry of each: the (i, j) entry of σ² E[uᵀv] I
            value = scale if picked else sp.Integer(0)
        return self._say(
            "Covariance through a random matrix",
            covariance(*original),
            value,
            r"$\operatorname{Cov}(W u, W v) = \sigma^2\,\mathbb{E}[u^\top v]\, I$ for $W$ of "
            r"independent zero-mean entries of variance $\sigma^2$, independent of $u, v$",
            at=mark,
        )

    def _matrix_first(self, m) -> tuple:
        """(W, u, the rows of the result) of a product W @ u, or of u @ W for a vector
        u (the row-vector convention of x @ W, which is Wᵀ u: its entries are W's
        columns, each of independent entries as W's rows are)."""
        x, y = m.args
        if len(self.alg.shape(x)) == 1 and len(self.alg.shape(y)) == 2:
            return y, x, self.alg.shape(y)[1]
        return x, y, self.alg.shape(x)[0] if self.alg.shape(x) else None

    def _cross(self, ja, jb, cov, r):
        """J Cov(r) Kᵀ for the derivatives J, K of two functions with respect to r.
        ``cov`` is a scalar for a scalar r or for independent entries of equal variance
        (v I), else a matrix. Of a scalar r the derivatives are scalars or columns; of a
        vector r, gradients (two scalars) or Jacobians (two vectors)."""
        alg = self.alg
        if alg.shape(r) == ():
            return cov * ja * jb if alg.shape(ja) == () else cov * alg.outer(ja, jb)
        if alg.shape(ja) == alg.shape(r):  # gradients: Cov of two scalars
            if alg.shape(cov) == ():
                return cov * _inner(alg, ja, jb)
            return alg.mm(alg.mm(ja, cov), jb)
        if alg.shape(cov) == ():
            return cov * alg.mm(ja, alg.T(jb))
        return alg.mm(alg.mm(ja, cov), alg.T(jb))


def _quadratic_form(s):
    """(x, A) where s is xᵀ A x, written x @ A @ x or x @ (A @ x), else None."""
    if not isinstance(s, ops.matmul):
        return None
    a, b = s.args
    if isinstance(b, ops.matmul) and b.args[1] == a:
        return a, b.args[0]
    if isinstance(a, ops.matmul) and a.args[0] == b:
        return b, a.args[1]
    return None


def _squared_norm_of(s):
    """u where s is ‖u‖², written u @ u or sum(u**2), else None."""
    if isinstance(s, ops.matmul) and s.args[0] == s.args[1]:
        return s.args[0]
    if isinstance(s, ops.tsum) and len(s.args) == 1:
        inner = s.args[0]
        if isinstance(inner, sp.Pow) and inner.exp == 2:
            return inner.base
    return None


def _centring_power(m):
    """C where m is a product of one or more copies of the centring matrix
    C = I − 11ᵀ/n (which subtracts the mean: x − mean(x) = C x), else None."""
    factors = m.args if isinstance(m, ops.matmul) else (m,)
    first = factors[0]
    if not (isinstance(first, sp.Add) and len(first.args) == 2):
        return None
    eyes = [a for a in first.args if isinstance(a, ops.eye)]
    if len(eyes) != 1:
        return None
    n = eyes[0].args[0]
    if first != eyes[0] - ops.ones(n, n) / n:
        return None
    if any(f != first and _centring_power(f) is None for f in factors[1:]):
        return None
    return first


def _total(alg, e):
    """sum(e), the sum of all entries, moved inside where the entries are known: a
    constant tensor's is its size times the constant (E[sum(f(r))] = n E[f(r₀)]), an
    outer product's the product of the sums, a partial sum's the sum of its argument."""
    c, rest = alg.split_scalar(e)
    if c != 1:
        return c * _total(alg, rest)
    if isinstance(e, ops.ones):
        return sp.Mul(*e.args)
    if isinstance(e, ops.outer):
        return _total(alg, e.args[0]) * _total(alg, e.args[1])
    if isinstance(e, ops.tsum):
        return _total(alg, e.args[0])
    return ops.tsum(e) if alg.shape(e) else e


def _random_arguments(e, rand, alg):
    """The scalar subexpressions u of e, largest first, that hold every random symbol of
    e (relu((W @ x)[0]) of W: (W @ x)[0]), so that e is a function of u alone."""
    for u in sp.preorder_traversal(e):
        if u is e or not isinstance(u, sp.Basic) or not (u.free_symbols & rand):
            continue
        if alg.shape(u) != ():
            continue
        scalar = sp.Dummy()
        if not (e.xreplace({u: scalar}).free_symbols & rand):
            yield u


def _odd_about(f, t):
    """c where f(t) + f(−t) = 2c, a constant (f − c is odd: 0 for tanh, 1/2 for sigmoid
    and Φ), shown by simplify within a second; None where it is not, or takes longer
    (on a busy machine x relu(x)'s check ran past it and the TimeLimit escaped)."""
    try:
        both = within(1.0, sp.simplify, f.xreplace({t: -t}) + f)
    except TimeLimit:
        return None
    return both / 2 if t not in both.free_symbols and both.is_finite else None


def _symmetric_about_zero(law) -> bool:
    """r ~ −r: a zero-mean normal, or a uniform(−a, a)."""
    if law.family == "normal":
        return sp.simplify(law.params[0]) == 0
    if law.family == "uniform":
        return sp.simplify(law.params[0] + law.params[1]) == 0
    return False


# functions of the language bounded whatever their argument, and those that grow at most
# as fast as their argument: a function built of them, sums, products and whole powers
# grows at most polynomially, so its expectation exists under a normal or a uniform
BOUNDED = (sp.tanh, sp.atan, sp.erf, sp.sin, sp.cos, sp.sign, ops.sigmoid)
AT_MOST_LINEAR = (ops.relu, ops.softplus, sp.Abs, maximum, minimum)


def _polynomial_growth(e, t) -> bool:
    """Whether |e(t)| ≤ a polynomial in |t|, by its structure (the tables above)."""
    if t not in e.free_symbols:
        return True
    if e == t:
        return True
    if isinstance(e, BOUNDED):
        return True
    if isinstance(e, (sp.Add, sp.Mul, *AT_MOST_LINEAR)):
        return all(_polynomial_growth(a, t) for a in e.args)
    if isinstance(e, sp.Pow):
        return e.exp.is_Integer and e.exp >= 0 and _polynomial_growth(e.base, t)
    return False


def _iid(law, alg) -> bool:
    """Whether a law's entries are independent and of one law: a family of FAMILIES with
    scalar parameters (one law per entry)."""
    return law.family in FAMILIES and all(alg.shape(p) == () for p in law.params)


def _share(a: frozenset, b: frozenset) -> bool:
    """Whether two sets of random parts (``Moments._parts``) overlap: the same symbol,
    and one's entry inside the other's (r holds r[0], W[0] holds W[0, 1])."""
    return any(p[0] == q[0] and (p[: len(q)] == q or q[: len(p)] == p) for p in a for q in b)


def _odd_in(e, r) -> bool:
    """Whether e(−r) = −e(r), by its structure: r itself, a product with one odd factor
    and the rest free of r, a sum of odd terms, and the linear operations (entries,
    transposes, sums, matrix products with one odd side) of odd arguments."""
    if e == r:
        return True
    if r not in e.free_symbols:
        return False
    if isinstance(e, sp.Add):
        return all(_odd_in(t, r) for t in e.args)
    if isinstance(e, (sp.Mul, ops.matmul)):
        varying = [f for f in e.args if r in f.free_symbols]
        return len(varying) == 1 and _odd_in(varying[0], r)
    if isinstance(e, LINEAR):
        return _odd_in(e.args[0], r) and all(r not in a.free_symbols for a in e.args[1:])
    return False


def _as_extreme(w):
    """where(x > y, x, y) as maximum(x, y), and the like (a tie picks either, equal):
    the rules take a maximum of two random scalars as (x + y + |x − y|)/2."""
    cond, a, b = w.args
    if not isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan, sp.LessThan)):
        return w
    larger = cond.lhs if isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan)) else cond.rhs
    smaller = cond.rhs if larger is cond.lhs else cond.lhs
    if (a, b) == (larger, smaller):
        return maximum(a, b)
    if (a, b) == (smaller, larger):
        return minimum(a, b)
    return w


def _as_mean_square(v):
    """NumPy's var(u, axis, keepdims) as its definition, the mean squared deviation from
    the mean along the same axes (the mean kept as axes of size 1, to broadcast): the
    rules take E of a mean and of a square (Bessel's E var(x) = (n − 1) σ²/n)."""
    u, *rest = v.args
    if not rest:
        return ops.tmean((u - ops.tmean(u)) ** 2)
    return ops.tmean((u - ops.tmean(u, rest[0], sp.Integer(1))) ** 2, *rest)


def _diagonal(alg, m):
    """The diagonal of a matrix, c 1 for c I or c 𝟏ₙₙ and c diag(M) for c M, term by
    term."""
    if isinstance(m, sp.Add):
        return alg.tidy(sp.factor_terms(sp.Add(*[_diagonal(alg, t) for t in m.args])))
    c, rest = alg.split_scalar(m)
    if isinstance(rest, sp.Add):  # σ² (I − 𝟏/n)
        return c * _diagonal(alg, rest)
    if isinstance(rest, (ops.eye, ops.ones)):
        return c * alg.ones((rest.args[0],))
    squares = _row_squares(alg, rest)
    return c * (squares if squares is not None else ops.diag(rest))


def _row_squares(alg, m):
    """diag(P Pᵀ) for P = A diag(v): entry i is Σ_j A_ij² v_j², (A ⊙ A)(v ⊙ v). Dropout
    on a linear layer's input, Var[W (mask ⊙ x)/q], read (1 − q) diag(W diag(x) (W
    diag(x))ᵀ)/q where the textbook (and DropConnect here) writes (1 − q) W² x²/q."""
    if not isinstance(m, ops.matmul) or len(m.args) != 2:
        return None
    P, Q = m.args
    if not (isinstance(Q, ops.transpose) and Q.args[0] == P):
        return None
    if not (isinstance(P, ops.matmul) and len(P.args) == 2 and isinstance(P.args[1], ops.diag)):
        return None
    A, v = P.args[0], P.args[1].args[0]
    if len(alg.shape(A)) != 2 or len(alg.shape(v)) != 1:
        return None
    return alg.mm(A**2, v**2)


def _inner(alg, g, h):
    """⟨g, h⟩ = sum(g * h), with ‖outer(u, v)‖² = ‖u‖²‖v‖² and a unit vector's 1."""
    if g == h:
        if isinstance(g, ops.outer):
            return _inner(alg, g.args[0], g.args[0]) * _inner(alg, g.args[1], g.args[1])
        if isinstance(g, ops.unit):
            return sp.Integer(1)
        if isinstance(g, ops.transpose):
            return _inner(alg, g.args[0], g.args[0])
        c, rest = alg.split_scalar(g)
        if c != 1:
            return c**2 * _inner(alg, rest, rest)
        # ‖v ⊙ e_i‖² = v_i²: the gradient of one entry of an elementwise product
        units = [f for f in sp.Mul.make_args(g) if isinstance(f, ops.unit)]
        if len(units) == 1 and len(alg.shape(g)) == 1:
            others = sp.Mul(*[f for f in sp.Mul.make_args(g) if f is not units[0]])
            if alg.shape(others) == alg.shape(g):
                return ops.entry(others, units[0].args[0]) ** 2
    if isinstance(g, ops.outer) and isinstance(h, ops.outer):  # ⟨a bᵀ, c dᵀ⟩ = ⟨a, c⟩⟨b, d⟩
        return _inner(alg, g.args[0], h.args[0]) * _inner(alg, g.args[1], h.args[1])
    if isinstance(g, ops.unit) and isinstance(h, ops.unit) and g.args[1] == h.args[1]:
        if g.args[0].is_Integer and h.args[0].is_Integer:  # ⟨e_i, e_j⟩ = δ_ij
            return sp.Integer(int(g.args[0] == h.args[0]))
    return alg.tidy(ops.tsum(g * h))


def _elementwise_in(e, r) -> bool:
    """r enters e only through elementwise functions, products and powers."""
    if e == r:
        return True
    if r not in e.free_symbols:
        return True
    if isinstance(e, ops.TensorOp):
        return False
    return all(_elementwise_in(a, r) for a in e.args)


def _entries_inward(alg, e):
    """e with each entry of an elementwise function written as the function of the
    entries: relu(z)[0] is relu(z[0]), where(z > 0, z, a z)[1] is where(z[1] > 0, z[1],
    a z[1]). A function of one entry of i.i.d. entries is one integral; of an entry of
    the whole vector, no rule saw it. An operand of another shape than the result's (a
    broadcast vector) keeps it as it is."""
    if not isinstance(e, sp.Basic) or not e.args:
        return e
    if isinstance(e, ops.entry) and _is_elementwise(e.args[0]):
        f, idx = e.args[0], e.args[1:]
        shape = alg.shape(f)
        if all(alg.shape(a) in ((), shape) for a in f.args):
            return _entries_inward(alg, f.func(*[_pick(alg, a, idx) for a in f.args]))
    if isinstance(e, ops.entry) and isinstance(e.args[0], ops.matmul):
        # (X W)[i, j] = X[i, :] W[:, j], (W x)[i] = W[i, :] x: a slice of each factor,
        # which the rules read as i.i.d. vectors (Glorot's Var[(X W)[0, 0]] = n σ²)
        picked = _entry_of_product(alg, e.args[0], e.args[1:])
        if picked is not None:
            return _entries_inward(alg, picked)
    args = [_entries_inward(alg, a) for a in e.args]
    if args == list(e.args):
        return e
    out = e.func(*args)
    # (X W)[0][0]: the row taken first is a product now, whose entry is taken the same way
    if isinstance(out, ops.entry) and isinstance(out.args[0], ops.matmul):
        return _entries_inward(alg, out)
    return out


def _entry_of_product(alg, product, idx):
    """Entry ``idx`` of the matrix product ``a @ b`` (or its row) as the product of a's
    row and b's column, or None for other ranks."""
    a, b = product.args
    sa, sb = alg.shape(a), alg.shape(b)

    def whole(n):
        return sp.Tuple(0, n, 1)

    if len(sa) == 2 and len(sb) == 2 and len(idx) == 2:
        row = layout.index(a, sp.Tuple(idx[0], whole(sa[1])))
        column = layout.index(b, sp.Tuple(whole(sb[0]), idx[1]))
        return alg.mm(row, column)
    if len(sa) == 2 and len(sb) == 2 and len(idx) == 1:  # a row: X[i, :] W
        return alg.mm(layout.index(a, sp.Tuple(idx[0], whole(sa[1]))), b)
    if len(sa) == 1 and len(sb) == 2 and len(idx) == 1 and isinstance(a, layout.index):
        # the row taken above, then its entry: X[i, :] W[:, j] ((X W)[i][j])
        return alg.mm(a, layout.index(b, sp.Tuple(whole(sb[0]), idx[0])))
    return None  # (W x)[i] and the like: the rules of a random matrix read them whole


def _is_elementwise(e) -> bool:
    """An elementwise operation: arithmetic, a comparison (a where's mask), or a function
    that is no tensor operation (relu, exp, maximum, where)."""
    return isinstance(e, (sp.Add, sp.Mul, sp.Pow, sp.core.relational.Relational)) or (
        isinstance(e, sp.Function) and not isinstance(e, ops.TensorOp)
    )


def _pick(alg, a, idx):
    """Entry ``idx`` of an operand of an elementwise operation (a scalar is itself)."""
    if alg.shape(a) == ():
        return a
    return ops.entry(a, *idx)


def _kinked_at_zero(e, alg, at_most_one):
    """e with each maximum(u, c u) (or minimum, or c u first) of a scalar c as
    where(u > 0, max(1, c) u, min(1, c) u): its kink at u = 0 is then in sight of the
    integrals, which split there (written as a maximum, SymPy ran past its time limit
    on E[maximum(z, α z)²]). max(1, c) is 1 for a number below 1 or a symbol in
    ``at_most_one`` (a unit_interval slope: leaky ReLU); otherwise it stays, as the
    function maximum(1, c) that the closed form holds."""
    if not isinstance(e, sp.Basic) or not e.args:
        return e
    args = [_kinked_at_zero(a, alg, at_most_one) for a in e.args]
    if type(e) in SLOPES:
        found = _scaled_pair(alg, *args)
        if found is not None:
            u, c = found
            upper, lower = (_slope(f, c, at_most_one) for f in SLOPES[type(e)])
            return where(sp.StrictGreaterThan(u, 0), upper * u, lower * u)
    return e.func(*args)


def _as_abs(e):
    """max(a, b) = (a + b + |a − b|)/2 and min(a, b) = (a + b − |a − b|)/2: for two
    random scalars, a sum whose one nonlinear term is a function of the difference (of
    two normals, a normal: E[max(z₀, z₁)] = σ/√π for i.i.d. N(0, σ²))."""
    a, b = e.args
    sign = 1 if type(e) is maximum else -1
    return (a + b + sign * sp.Abs(a - b)) / 2


def _scaled_pair(alg, a, b):
    """(u, c) where {a, b} = {u, c u} for a scalar c, else None."""
    for u, v in ((a, b), (b, a)):
        if isinstance(v, sp.Mul) and u in v.args:
            c = v / u
            if alg.shape(c) == () and not c.has(u):
                return u, c
    return None


def _slope(f, c, at_most_one):
    """maximum(1, c) or minimum(1, c), decided where c's domain says c ≤ 1."""
    if c in at_most_one:
        return sp.Integer(1) if f is maximum else c
    return f(sp.Integer(1), c)
