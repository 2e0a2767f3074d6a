"""Readable canonical forms for derived tensor expressions."""

from __future__ import annotations

import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.calculus._piecewise import readable
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra, nesting

MAX_OPS_TO_SIMPLIFY = 400
# SymPy's cancel and factor expand inside every function argument again at every level
# of nesting: their cost doubles with each level (a tanh MLP's gradient at depth 10: 5 s
# for 180 operations), so past this depth only factor_terms (linear) is tried
MAX_NESTING_TO_FACTOR = 6
# SymPy's factor works on a dense polynomial in all of an expression's generators: its
# cost grows exponentially with their number (a Lagrangian's gradient with 20
# multipliers, 43 generators: 0.8 s; 50 multipliers: a minute). cancel grows more
# slowly (a dual function with 50 multipliers, about 100 generators: 1.4 s a call)
MAX_GENERATORS_TO_FACTOR = 16
MAX_GENERATORS_TO_CANCEL = 40
# and each of cancel and factor gets this long: on a chain of 8 nonlinear defines
# (a_i = sin(a) exp(a) / (1 + a^2)) cancel multiplies out a product of sums that doubles
# with each define and never ends; past it the form is left as it was. The catalog's
# longest call takes 0.1 s: the margin keeps the printed forms the same on a machine
# that is busy with other work (a limit that cut in would change a form)
SECONDS_TO_SIMPLIFY = 3.0
# nor on a form whose products of sums multiply out to more terms than this: a chain of
# nonlinear defines' adjoint is a product of one sum per define (2^k terms at depth k)
MAX_EXPANDED_TERMS = 256


def _monomial(e) -> bool:
    """A number times powers of names (``2 a / n``): nothing to cancel or factor, and
    SymPy's polynomial machinery costs milliseconds per call (a chain of 3000 defines
    has 3000 such adjoints)."""
    factors = e.args if isinstance(e, sp.Mul) else (e,)
    return all(
        f.is_Atom or (isinstance(f, sp.Pow) and f.base.is_Atom and f.exp.is_Number) for f in factors
    )


def expanded_terms(e, memo=None, cap: int = 10**6) -> int:
    """How many terms ``e`` has once its products of sums are multiplied out (what
    cancel and factor do first), counted up to ``cap``: ``(1 - t1^2)(1 - t2^2)...(1 -
    tk^2) x`` has 2^k, though it nests only 2 deep."""
    memo = {} if memo is None else memo
    if e in memo:
        return memo[e]
    if isinstance(e, sp.Add):
        n = sum(expanded_terms(a, memo, cap) for a in e.args)
    elif isinstance(e, sp.Mul):
        n = 1
        for a in e.args:
            n = min(cap, n * expanded_terms(a, memo, cap))
    elif isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
        n = min(cap, expanded_terms(e.base, memo, cap) ** min(int(e.exp), 64))
    else:
        n = 1
    memo[e] = min(n, cap)
    return memo[e]


def generators(e, found=None) -> set:
    """The polynomial generators of ``e``: what sums, products and integer powers are
    taken of (``x*y + sin(x)``: x, y, sin(x))."""
    found = set() if found is None else found
    if isinstance(e, (sp.Add, sp.Mul)):
        for a in e.args:
            generators(a, found)
    elif isinstance(e, sp.Pow) and e.exp.is_Integer:
        generators(e.base, found)
    elif not e.is_Number:
        found.add(e)
    return found


def _candidates(e):
    """The forms ``simplify`` chooses the shortest of: ``e``, SymPy's rewrites of it
    (``_rewrites``), and of each a ratio of exponentials in tanh (``_hyperbolic``)."""
    for c in _rewrites(e):
        yield c
        tanh_form = _hyperbolic(c)
        if tanh_form is not None:
            yield tanh_form
    one_way = _sigmoids_one_way(e)
    if one_way is not None:
        yield from _rewrites(one_way)


def _sigmoids_one_way(e):
    """``e`` with σ(−u) as 1 − σ(u) (for each u it holds σ of −u of), expanded, or
    None: binary cross-entropy written with log σ(−z) had the gradient
    (1 − y)(1 − σ(−z)) − y(1 − σ(z)), the textbook's σ(z) − y."""
    sigmoids = e.atoms(ops.sigmoid)
    # only where σ(u) is there too, to merge with: a lone −σ(−z) (a softplus's
    # gradient) stays as written
    negated = [
        s
        for s in sigmoids
        if sp.Mul.make_args(s.args[0])[0] == -1 and ops.sigmoid(-s.args[0]) in sigmoids
    ]
    if not negated:
        return None
    held = e.xreplace({s: 1 - ops.sigmoid(-s.args[0]) for s in negated})
    try:
        return within(SECONDS_TO_SIMPLIFY, sp.expand, held)
    except (TimeLimit, TypeError, ValueError):
        return None


def _rewrites(e):
    yield e
    deep = nesting(e) > MAX_NESTING_TO_FACTOR
    gens = len(generators(e))
    deep = deep or expanded_terms(e) > MAX_EXPANDED_TERMS
    tries = (sp.factor_terms,) if deep else (sp.cancel, sp.factor, sp.factor_terms)
    skip = {sp.factor: gens > MAX_GENERATORS_TO_FACTOR, sp.cancel: gens > MAX_GENERATORS_TO_CANCEL}
    if not deep and not skip[sp.cancel] and _symbolic_powers(e):
        tries += (_powers_combined,)
    whole, kept = _exps_of_sums_kept(e)
    for fn in (f for f in tries if not skip.get(f)):
        try:
            c = within(SECONDS_TO_SIMPLIFY, fn, kept) if fn is not sp.factor_terms else fn(kept)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, TimeLimit):
            continue
        yield c.xreplace(whole)
    if _exps_multiplied(e):
        # e^(x − a) e^(a − x) = 1, e^(x − a) e^(3a − 3x) = e^(2a − 2x): log cosh's Newton
        # step kept both factors, and e^(3u) overflowed where the step is finite
        try:
            merged = within(SECONDS_TO_SIMPLIFY, sp.powsimp, e, True, "exp")
        except (TypeError, ValueError, TimeLimit):
            return
        yield merged
        yield from (c for c in _rewrites(merged) if c is not merged) if merged != e else ()


def _hyperbolic(e):
    """``e``, a ratio with exponentials of one argument u in its denominator (e^(k u),
    small integers k), in tanh(u/2): e^u = (1 + T)/(1 − T). log cosh(a x) written with
    exp had the gradient (a e^(2ax) − a)/(1 + e^(2ax)), nan at a x = 400 where the
    objective is finite, for a tanh(a x); its Hessian 4a² e^(2ax)/(1 + e^(2ax))² is
    a²(1 − tanh²(a x)). None where e is no such ratio."""
    exps = e.atoms(sp.exp)
    if not exps or not any(x in sp.denom(e).atoms(sp.exp) for x in exps):
        return None
    base = min((x.args[0] for x in exps), key=sp.count_ops)
    ks = [sp.cancel(x.args[0] / base) for x in exps]
    if not all(k.is_integer and 0 < abs(k) <= 4 for k in ks):
        return None
    t = sp.Dummy("T")
    held = e.xreplace({x: ((1 + t) / (1 - t)) ** k for x, k in zip(exps, ks)})
    try:
        form = within(SECONDS_TO_SIMPLIFY, sp.factor, within(SECONDS_TO_SIMPLIFY, sp.cancel, held))
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, TimeLimit):
        return None
    return form.xreplace({t: sp.tanh(base / 2)})


def _exps_multiplied(e) -> bool:
    """A product of two exps or more, none of a max or min: merging exp(z − max z) with
    exp(max z) would undo a stabilised softmax."""
    for m in e.atoms(sp.Mul):
        exps = [f for f in m.args if isinstance(f, sp.exp)]
        if len(exps) > 1 and not any(f.has(ops.tmax, ops.tmin, sp.Max, sp.Min) for f in exps):
            return True
    return False


def _termwise(e):
    """Each term of a sum with a denominator cancelled on its own, with a positive one
    where that is as short: cancelling the whole sum puts it over one denominator, which
    is longer, so E[(y − wᵀ(m ⊙ x)/(1 − p))²] kept p (1 − p) S/(p − 1)² for p S/(1 − p)."""
    return sp.Add(*[_positive_denominator(sp.cancel(t)) if sp.denom(t) != 1 else t for t in e.args])


def _exps_of_sums_kept(e):
    """``e`` with each exp of a sum named by a dummy, and the map back. cancel and factor
    expand exp(z − max z) into exp(z) exp(−max z): a stabilised softmax's Hessian came
    out as exp(2 max z) times a sum of exp(z) terms, inf · 0 = NaN at logits of 400,
    where the written form is finite at any size."""
    exps = [x for x in e.atoms(sp.exp) if isinstance(x.args[0], sp.Add)]
    names = {x: sp.Dummy("exp") for x in exps}
    return {v: k for k, v in names.items()}, e.xreplace(names) if names else e


def _symbolic_powers(e) -> bool:
    return any(not p.exp.is_Number for p in e.atoms(sp.Pow))


def _powers_combined(e):
    """Powers of one base multiplied out and added (x^a x^b = x^(a+b) for every x ≠ 0), then
    cancelled and factored: the Bernoulli likelihood p^y (1 − p)^(1−y) differentiated is
    p (1 − p)^y ((1 − y)/(1 − p)^y − y (1 − p)^(1−y)/p), which is p − y. Only where an
    exponent is a symbol: cancel and factor do not see through those. Inside a product
    too, after the products with one left factor are added into one (Xᵀ a − Xᵀ b as
    Xᵀ(a − b): written inline, p^y and (1 − p)^(1−y) each send their own term)."""
    e = _left_factors_collected(e)
    e = e.replace(
        lambda x: isinstance(x, ops.matmul) and _symbolic_powers(x.args[1]),
        lambda x: x.func(x.args[0], _combined(x.args[1])),
    )
    return _combined(e)


def _combined(e):
    return sp.factor(sp.cancel(sp.powsimp(sp.expand(e)))) if _symbolic_powers(e) else e


def _left_factors_collected(e):
    """n₁ A u + n₂ A v (nᵢ numbers) as A (n₁ u + n₂ v)."""
    if not isinstance(e, sp.Add):
        return e
    groups: dict = {}
    rest = []
    for t in e.args:
        c, m = t.as_coeff_Mul()
        if isinstance(m, ops.matmul):
            groups.setdefault(m.args[0], []).append(c * m.args[1])
        else:
            rest.append(t)
    return sp.Add(*rest, *[ops.matmul(left, sp.Add(*right)) for left, right in groups.items()])


def _too_big(e) -> bool:
    """More than MAX_OPS_TO_SIMPLIFY operations. count_ops walks the whole tree, and an
    adjoint that holds the ones after it is a tree far larger than its DAG (10 s of a
    60-define chain): past 4x as many nodes the answer is yes without counting (an
    operation brings at most 3 nodes: x**2, 2*x, a + b)."""
    if tree_size(e, 4 * MAX_OPS_TO_SIMPLIFY) > 4 * MAX_OPS_TO_SIMPLIFY:
        return True
    return sp.count_ops(e) > MAX_OPS_TO_SIMPLIFY


def tree_size(e, limit: int) -> int:
    """The number of nodes of ``e`` written as a tree, counted up to ``limit`` + 1."""
    n = 0
    for _ in sp.preorder_traversal(e):
        n += 1
        if n > limit:
            break
    return n


def _abs_slope_squared(e) -> bool:
    """sign(u)^(2k) or (2 H(u) − 1)^(2k): an even power of |u|'s slope."""
    if isinstance(e, sp.Pow) and e.exp.is_even and isinstance(e.base, sp.sign):
        return True
    if not (isinstance(e, sp.Pow) and e.exp.is_even and isinstance(e.base, sp.Add)):
        return False
    steps = [a for a in e.base.args if isinstance(a, sp.Mul) and sp.Heaviside in map(type, a.args)]
    return (
        len(e.base.args) == 2
        and -1 in e.base.args
        and len(steps) == 1
        and sp.Integer(2) in steps[0].args
        and len(steps[0].args) == 2
    )


def simplify(alg: Algebra, e):
    """The shortest of a few algebraically equal forms (entrywise algebra is safe:
    see _ops), then matrix products collected (``A x + A^T x = (A + A^T) x``) and the
    branches of a ``where`` gathered (``where(c, 1, 1/100)``). The square of |u|'s slope
    2 H(u) − 1 is 1, at u = 0 too: |u|² is u², smooth there (the Hessian of a smooth L1
    loss through a define r = |p − t| was 0 at p = t, jax.hessian's 1/β)."""
    e = _slopes_squared(alg.tidy(e))
    if _monomial(e) or _too_big(e):
        return _slopes_squared(readable(alg, collect_products(alg, e)))
    best = min((alg.tidy(c) for c in _candidates(e)), key=sp.count_ops)
    # and after: gathering a where's branches makes sign(u) where(c, sign(u), 0) a square
    return _slopes_squared(readable(alg, collect_products(alg, _positive_denominator(best))))


def _slopes_squared(e):
    return (
        e.replace(_abs_slope_squared, lambda x: sp.Integer(1))
        if e.has(sp.sign, sp.Heaviside)
        else e
    )


def _flippable(d) -> bool:
    """A sum whose constant is negative and whose other term is positive: p − 1."""
    if not isinstance(d, sp.Add) or len(d.args) != 2:
        return False
    const = [a for a in d.args if a.is_Number]
    rest = [a for a in d.args if not a.is_Number]
    return len(const) == 1 and const[0].is_negative and not rest[0].could_extract_minus_sign()


def _positive_denominator(e):
    """x / (p − 1) as −x / (1 − p), and (y − p) / (m p (p − 1)) as (p − y) / (m p (1 − p)):
    the form the textbooks write (a probability's complement, a positive gap), where a
    sum in the numerator takes the sign (no longer than before)."""
    if not isinstance(e, sp.Mul):
        return e
    flips = [f for f in e.args if isinstance(f, sp.Pow) and f.exp == -1 and _flippable(f.base)]
    if len(flips) != 1:
        return e
    (f,) = flips
    rest = [a for a in e.args if a is not f]
    sums = [a for a in rest if isinstance(a, sp.Add)]
    if sums:  # the numerator's sum takes the sign: y − p becomes p − y
        s = sums[0]
        rest[rest.index(s)] = sp.Add(*[-t for t in s.args])
    else:
        rest.append(sp.Integer(-1))
    flipped = sp.Mul(*rest, sp.Pow(sp.Add(*[-t for t in f.base.args]), -1))
    return flipped if sp.count_ops(flipped) <= sp.count_ops(e) else e


def _vector_left_to_right(alg, e):
    """v^T B (a 1-D vector on the left) is B^T v: the column form papers use."""
    if isinstance(e, ops.matmul):
        a, b = e.args
        if len(alg.shape(a)) == 1 and len(alg.shape(b)) == 2:
            return alg.mm(alg.T(b), a)
    return e


def collect_products(alg: Algebra, e):
    """``A x + A^T x`` as ``(A + A^T) x``, in every sum of ``e``. Remembered per
    expression: a deep network's adjoints each hold the ones after them."""
    if not e.args:
        return e
    memo = alg.memo.get("collect_products")
    if memo is None:
        memo = alg.memo["collect_products"] = ops.ByIdentity()
    return memo.get(e, lambda e: _collect_products(alg, e))


def _collect_products(alg: Algebra, e):
    e = e.func(*[collect_products(alg, a) for a in e.args]) if not isinstance(e, ops.ones) else e
    e = _vector_left_to_right(alg, e)
    if not isinstance(e, sp.Add):
        return e
    groups: dict = {}
    rest = []
    for term in e.args:
        c, t = alg.split_scalar(term)
        if isinstance(t, ops.matmul) and len(alg.shape(t.args[0])) == 2:
            groups.setdefault(t.args[1], []).append(c * t.args[0])
        else:
            rest.append(term)
    for right, lefts in groups.items():
        if len(lefts) == 1:
            rest.append(alg.mm(lefts[0], right))
        else:
            rest.append(alg.mm(sp.Add(*lefts), right))
    return sp.Add(*rest)


def positive_first(e):
    """-μ(β^t − 1) as μ(1 − β^t), b/(b − 1) as −b/(1 − b): each factor (or odd power of
    one) that is a sum with a negative constant negated, and the sign taken out, as a
    paper writes a bias correction."""
    sign, kept = 1, []
    factors = list(sp.Mul.make_args(e))
    # (-1)**t (c η - 1)**t as (1 - c η)**t: gradient descent's factor, as a paper has it
    for f in [f for f in factors if isinstance(f, sp.Pow) and f.base == -1]:
        paired = [
            g
            for g in factors
            if isinstance(g, sp.Pow) and g.exp == f.exp and isinstance(g.base, sp.Add)
        ]
        if paired and f in factors:
            factors.remove(f)
            factors[factors.index(paired[0])] = (-paired[0].base) ** f.exp
    for f in factors:
        if f == -1:
            sign = -sign
        elif isinstance(f, sp.Add) and f.as_coeff_Add()[0] < 0:
            sign, kept = -sign, kept + [-f]
        elif _odd_power_of_negative_sum(f):  # 1/(b - 1) as -1/(1 - b)
            sign, kept = -sign, kept + [(-f.base) ** f.exp]
        else:
            kept.append(f)
    if sign < 0:  # −(mx² p − sx − mx²) S/p as (sx + mx² − mx² p) S/p: the sum takes it
        sums = [i for i, f in enumerate(kept) if isinstance(f, sp.Add)]
        if sums and kept[sums[0]].could_extract_minus_sign():
            kept[sums[0]] = -kept[sums[0]]
            sign = 1
    return sign * sp.Mul(*kept)


def _odd_power_of_negative_sum(f) -> bool:
    return (
        isinstance(f, sp.Pow)
        and isinstance(f.base, sp.Add)
        and f.base.as_coeff_Add()[0] < 0
        and f.exp.is_integer
        and f.exp.is_odd
    )


def factored(e, seconds: float = SECONDS_TO_SIMPLIFY):
    """``e`` factored with its signs as a paper writes them (``positive_first``), where
    that is no longer: a variance E[s²] − (E s)² = x²/q − x² reads x²(1 − q)/q. ``e``
    as it is where factor fails or takes longer than ``seconds``."""
    try:
        out = positive_first(within(seconds, sp.factor, e))
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, TimeLimit):
        out = e
    out = out if sp.count_ops(out) <= sp.count_ops(e) else e
    if isinstance(out, sp.Add):
        try:
            terms = within(seconds, _termwise, out)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, TimeLimit):
            return out
        return terms if sp.count_ops(terms) < sp.count_ops(out) else out
    return out
