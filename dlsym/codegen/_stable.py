"""Rewrites that keep generated code finite and accurate where the naive formula is not.

Each rule maps a SymPy pattern to an equal expression that does not overflow or lose
precision (``log(sigmoid(z))`` is ``-softplus(-z)``: exact for z = -1000, where the
naive form gives log(0) = -inf; ``exp(u)/sum(exp(u))``, the gradient of a logsumexp, is
``exp(u - logsumexp(u))``, and ``exp(u)/(1 + exp(u))``, a softplus's, ``sigmoid(u)``: the
naive forms are inf/inf at u = 1000; ``exp(a)/(exp(a) + exp(b))`` ``sigmoid(a - b)``, 0/0
where both underflow; ``exp(u)/(1 + exp(u))**2``, a logistic Hessian's weight,
``sigmoid(u) sigmoid(-u)``). Applied bottom-up, to a fixed point.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from dlsym.expr import _ops as ops
from dlsym.expr._piecewise import where


class erfc(sp.Function):
    """1 − erf(x), for code only (the table's row "erfc"): SymPy's own erfc writes
    erfc(−x) as 2 − erfc(x) whenever it is built again (common subexpressions), which is
    the cancellation this is for."""

    nargs = 1


class xlogy(sp.Function):
    """x log y, and 0 where x = 0 (``scipy.special.xlogy``), for code only: the
    information quantities' convention 0 log 0 = 0 (``with_xlogy``)."""

    nargs = 2


def with_xlogy(e, weights):
    """``e`` with each product ``w log(y)`` whose factor ``w`` is one of ``weights`` (the
    probabilities an entropy, cross-entropy or KL sums over) as ``xlogy(w, y)``: an
    outcome of probability 0 counts 0, as the definitions say, where the naive code was
    0 · log 0 = nan (an entropy at a one-hot p)."""
    weights = set(weights)

    def rewrite(m):
        args = list(m.args)
        w = next((a for a in args if a in weights), None)
        logs = [a for a in args if isinstance(a, sp.log)]
        if w is None or not logs:
            return m
        args.remove(w)
        args.remove(logs[0])
        return sp.Mul(*args) * xlogy(w, logs[0].args[0])

    return e.replace(lambda m: isinstance(m, sp.Mul), rewrite)


def _log_rule(e):
    (a,) = e.args
    if isinstance(a, ops.sigmoid):  # log(sigmoid(z)) = -softplus(-z)
        return -ops.softplus(-a.args[0])
    if isinstance(a, ops.softmax):  # log(softmax(z)) = log_softmax(z), along its axis
        return ops.log_softmax(*a.args)
    if isinstance(a, ops.tsum) and len(a.args) == 1 and isinstance(a.args[0], sp.exp):
        return ops.logsumexp(a.args[0].args[0])  # log(sum(exp(z))) = logsumexp(z)
    if isinstance(a, sp.Add) and sp.Integer(1) in a.args:
        rest = a - 1
        if isinstance(rest, sp.exp):  # log(1 + exp(z)) = softplus(z)
            return ops.softplus(rest.args[0])
        if isinstance(-rest, ops.sigmoid):  # log(1 - sigmoid(z)) = -softplus(z)
            return -ops.softplus((-rest).args[0])
        return log1p(rest)  # log(1 + x) = log1p(x)
    return None


def _add_rule(e):
    args = list(e.args)
    if sp.Integer(1) in args:
        rest = sp.Add(*[a for a in args if a != 1])
        if isinstance(-rest, ops.sigmoid):  # 1 - sigmoid(z) = sigmoid(-z)
            return ops.sigmoid(-(-rest).args[0])
        # 1 + erf(u) = erfc(−u), 1 − erf(u) = erfc(u): 2Φ(μ/σ) of a normal's tail, which
        # was all rounding at μ/σ = −8 (E relu(z)² of z ~ N(−8, 1) came out negative)
        if isinstance(rest, sp.erf):
            return erfc(-rest.args[0])
        if isinstance(-rest, sp.erf):
            return erfc((-rest).args[0])
    if len(args) == 2 and sp.Integer(1) in args:
        (power,) = [-a for a in args if a != 1]
        if isinstance(power, sp.Pow) and power.exp.free_symbols:
            base, t = power.args
            if isinstance(base, sp.Add) and sp.Integer(1) in base.args:
                # 1 − (1 + x)ᵗ = −expm1(t log1p(x)) where 1 + x > 0: an optimizer's
                # 1 − (1 − a lr)ᵗ kept 2e-5 of its digits at a lr = 1e-12; a negative
                # base (a step past 2/a) takes the power as it is
                return where(base > 0, -expm1(t * log1p(base - 1)), e)
    if sp.Integer(-1) in args:
        rest = sp.Add(*[a for a in args if a != -1])
        if isinstance(rest, sp.exp):  # exp(x) - 1 = expm1(x)
            return expm1(rest.args[0])
        # sigmoid(z) - 1 = -sigmoid(-z): a written-out softplus's Newton step
        # 1/(sigmoid(u) − 1) was 1/0 = −inf at u = 50 for −(1 + e⁵⁰)
        if isinstance(rest, ops.sigmoid):
            return -ops.sigmoid(-rest.args[0])
    return None


def _mul_rule(e):
    args = list(e.args)
    distributed = _cancelling(args)
    if distributed is not None:
        return distributed
    for i, f in enumerate(args):
        if not (isinstance(f, sp.Pow) and f.exp.is_negative):
            continue
        rest = args[:i] + args[i + 1 :]
        powered = _sigmoid_powers(f, rest)
        if powered is not None:
            return powered
        if f.exp != -1:
            continue
        base = f.base
        if isinstance(base, ops.tsum) and len(base.args) == 1 and isinstance(base.args[0], sp.exp):
            num = base.args[0]
            if num in rest:  # exp(u) / sum(exp(u)) = exp(u - logsumexp(u))
                rest.remove(num)
                return sp.Mul(*rest) * sp.exp(num.args[0] - ops.logsumexp(num.args[0]))
        if (
            isinstance(base, sp.Add)
            and len(base.args) == 2
            and all(isinstance(a, sp.exp) for a in base.args)
        ):
            num = next((a for a in base.args if a in rest), None)
            if num is not None:  # exp(a) / (exp(a) + exp(b)) = sigmoid(a - b)
                # the optimal GAN discriminator of densities written exp(log p): both
                # exps underflow at log p = -740, and the quotient was 5e-3 off
                (other,) = [a for a in base.args if a is not num]
                rest.remove(num)
                return sp.Mul(*rest) * ops.sigmoid(num.args[0] - other.args[0])
    return None


def _sigmoid_powers(f, rest):
    """exp(j u)/(1 + exp(u))ᵏ as σ(u)ʲ σ(−u)ᵏ⁻ʲ (0 <= j <= k): a softplus's gradient
    exp(u)/(1 + exp(u)) is σ(u), 1/(1 + exp(u)) is σ(−u), and the logistic loss's Hessian
    weight e^u/(1 + e^u)² is σ(u) σ(−u), each of which the naive form gives as inf/inf =
    nan once u passes 709 (a Newton step of log1p(exp(−y Xw)) at margins of 800, where
    the loss and its step are finite). None where ``f`` is no such power."""
    k = -f.exp
    base = f.base
    if not (k.is_Integer and k >= 1 and isinstance(base, sp.Add) and len(base.args) == 2):
        return None
    if sp.Integer(1) not in base.args:
        return None
    (e,) = [a for a in base.args if a != 1]
    if not isinstance(e, sp.exp):
        return None
    u = e.args[0]
    for i, g in enumerate(rest):
        j = g.args[0] / u if isinstance(g, sp.exp) else None
        if j is not None and j.is_Integer and 0 < j <= k:
            others = rest[:i] + rest[i + 1 :]
            return sp.Mul(*others) * ops.sigmoid(u) ** j * ops.sigmoid(-u) ** (k - j)
    return sp.Mul(*rest) * ops.sigmoid(-u) ** k


def _cancelling(args):
    """p (a − y/p) as p a − y: a factor multiplied into the sum whose term divides by it.
    Softmax cross-entropy with an entropy bonus β Σ P log P kept P (β + β log P − Y/P),
    and a focal loss σ(−z) p ((1 − y)/σ(−z) − y/p ...): 0 · inf = nan where P or σ(−z)
    underflows (logits of 400; JAX's autodiff is finite there). SymPy cancels the
    product term by term once it is distributed."""
    for s in (a for a in args if isinstance(a, sp.Add)):
        for f in args:
            if f is s or f.is_number:
                continue
            if any(sp.Pow(f, -1) in sp.Mul.make_args(t) for t in s.args):
                rest = [a for a in args if a is not s and a is not f]
                return sp.Mul(*rest) * sp.Add(*[f * t for t in s.args])
    return None


def _inv_rule(e):
    """inv(diag(v)) = diag(1/v) (v a vector: inv takes a square matrix): where an entry
    of v is 0 (a Huber loss's Newton step, its Hessian diag(where(|r| <= d, 1, 0)) at a
    residual past d), NumPy's inv raised LinAlgError and JAX's gave nan in every entry;
    the step is ±inf in that entry alone, in both."""
    (a,) = e.args
    if isinstance(a, ops.diag):
        return ops.diag(1 / a.args[0])
    return None


RULES = {sp.log: _log_rule, sp.Add: _add_rule, sp.Mul: _mul_rule, ops.inv: _inv_rule}


def stabilize(e, memo=None):
    """``e`` with every rule of ``RULES`` applied, innermost first, and each scalar
    constant evaluated (``_constant``). Each distinct part once (``memo``, which callers
    may share): a chain of defines written out is a tree exponentially larger than its
    DAG (40 tanh layers: 122 thousand visits of 83 parts, 8 s), and whether a part is
    constant is read from its arguments, not from its free symbols (a walk of its whole
    tree at every part: 80 relu layers, 60 s)."""
    return _stabilized(e, {} if memo is None else memo)[0]


def _stabilized(e, memo):
    """(``e`` stabilized, whether it holds no symbol and no tensor operation)."""
    if not e.args:
        return e, bool(getattr(e, "is_number", False))
    if isinstance(e, (ops.ones, ops.eye, ops.unit)):
        return e, False
    hit = memo.get(e)
    if hit is not None:
        return hit
    parts = [_stabilized(a, memo) for a in e.args]
    constant = all(c for _, c in parts) and not isinstance(e, ops.TensorOp)
    folded = _constant(e) if constant else None
    if folded is not None:
        memo[e] = (folded, True)
        return memo[e]
    args = [p for p, _ in parts]
    new = e.func(*args) if args != list(e.args) else e
    rule = RULES.get(type(new))
    out = rule(new) if rule is not None else None
    # first: a rule's output may keep its input as a branch (1 − bᵗ where b < 0)
    memo[e] = memo[new] = (new, constant)
    if out is not None:
        memo[e] = memo[new] = _stabilized(out, memo)
    return memo[e]


# digits SymPy evaluates a constant to: past float64's 17, so the printed number is
# float64's nearest
CONSTANT_DIGITS = 30


def _constant(e):
    """A scalar constant that applies a function (no symbol, no tensor: log(sigmoid(-800)),
    1/(1 + exp(-3/2))) as the number SymPy evaluates it to, at CONSTANT_DIGITS: computed term by term in
    float64 the first is log(0) = -inf (exp(800) overflows), where it is -800; and the
    rules' rewrites of a constant (1/(1 + exp(u)) is sigmoid(-u), which SymPy evaluates
    back) would not end. None where ``e`` is not one, or is exact already (a rational),
    or does not evaluate to a finite real number (left for the located checks)."""
    if not isinstance(e, sp.Expr) or e.is_Rational or e.free_symbols or e.has(ops.TensorOp):
        return None
    # a function of a constant (exp(800), sigmoid(3/2)) is what overflows or loops; a
    # power or π (sqrt(2), 1/sqrt(pi)) computes as exactly as its value, and reads better
    if not e.is_number or not e.atoms(sp.Function):
        return None
    value = e.evalf(CONSTANT_DIGITS)
    if not (isinstance(value, sp.Float) and value.is_finite):
        return None
    return value
