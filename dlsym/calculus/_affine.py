"""Solving conditions in matrix form: an expression with symbols set to 0 (the constant
part of an affine gradient, g = H x + r), inverses with their scalar factors pulled
out, and conditions in which x enters only elementwise (solved entry by entry as one
scalar equation). Shared by the stationary points of calculus specs
(``_second_order``) and the KKT solvers (``sections/constrained``)."""

from __future__ import annotations

import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._conv import BILINEAR
from dlsym.expr._elementwise import ELEMENTWISE, elementary
from dlsym.expr._piecewise import vanishes, where
from dlsym.expr._shapes import ShapeError

SECONDS_TO_SOLVE = 5.0  # sympy.solve on one scalar equation


class NoClosedForm(Exception):
    """A solver does not apply; the message says why (shown to the user). Its parts are
    text and SymPy expressions, so that the section shows each expression in the
    expression language (``text``) rather than as SymPy's internal names."""

    def __init__(self, *parts):
        super().__init__(*parts)
        self.parts = parts

    def __str__(self) -> str:
        return self.text(str)

    def text(self, show) -> str:
        return "".join(p if isinstance(p, str) else show(p) for p in self.parts)


# the functions a closed form may hold: those the expression language writes and the
# code generator computes (entry by entry, and dlsym's tensor operations), and the
# harmonic number H_t (code: ψ(t + 1) + γ), not its generalized H_t^(m)
# a where and its vanishes mask: a closed form's branch at a special value (_special_values)
EXPRESSIBLE = (*ELEMENTWISE, ops.TensorOp, sp.harmonic, where, vanishes)


def unwritten(value) -> list[str]:
    """The functions in ``value`` that the language and the generated code do not have
    (LambertW of a stationary point, a factorial of a recurrence), sorted."""
    return sorted(
        {
            type(f).__name__
            for f in value.atoms(sp.Function)
            if not isinstance(f, EXPRESSIBLE) or isinstance(f, sp.harmonic) and len(f.args) > 1
        }
    )


class Singular(NoClosedForm):
    """A closed form would invert a matrix that is singular at the spec's dims."""


def inverse(alg, m):
    """m^{-1} with scalar factors pulled out: (2 A)^{-1} = A^{-1}/2, I^{-1} = I.
    Raises Singular where m's rank cannot reach its size at the spec's dims."""
    if alg.shape(m) == ():
        return 1 / m
    _check_rank(alg, m)
    if isinstance(m, sp.Add):
        m = sp.factor_terms(m)
    c, rest = alg.split_scalar(m)
    if c != 1:
        return inverse(alg, rest) / c
    if isinstance(m, ops.eye):
        return m
    if isinstance(m, ops.inv):  # (S⁻¹)⁻¹ = S
        return m.args[0]
    return ops.inv(m)


def _check_rank(alg, m) -> None:
    if _ones_in_null_space(alg, m):
        raise Singular(
            "the matrix it would invert maps the ones vector to 0 (its rows sum to 0, "
            "as the softmax Hessian diag(p) − p pᵀ with sum(p) = 1): it is singular, so "
            "the condition has no unique solution"
        )
    size = _at_dims(alg, alg.shape(m)[-1])
    bound = rank_at_most(alg, m)
    if size is not None and bound is not None and bound < size:
        at = ", ".join(f"{d} = {v}" for d, v in alg.dims.items())
        raise Singular(
            f"the {size}×{size} matrix it would invert has rank at most {bound} at the "
            f"spec's dims ({at}; a product of matrices is no fuller than its thinnest "
            "factor, diag(v) than v's nonzero entries, one for the mask of a max away "
            "from ties): it is singular, so the condition has no unique solution (none, or "
            "a whole affine set of them, depending on the data)"
        )


# M 1 term by term, for the terms whose product with the ones vector has a form
_TIMES_ONES = {
    ops.diag: lambda alg, v: v,
    ops.outer: lambda alg, a, b: a * alg.reduce_sum(b),  # 1 for a softmax or a simplex
}


def _ones_in_null_space(alg, m) -> bool:
    """Whether M 1 = 0 provably (diag(p) − p pᵀ with sum(p) = 1)."""
    if len(alg.shape(m)) != 2 or not isinstance(m, sp.Add):
        return False
    parts = []
    for term in m.args:
        c, rest = alg.split_scalar(term)
        rule = _TIMES_ONES.get(type(rest))
        if rule is None or len(alg.shape(rest.args[0])) != 1:
            return False
        parts.append(c * rule(alg, *rest.args))
    return sp.expand(sp.Add(*parts)) == 0


def size_at_dims(alg, m):
    """The number of columns of the square matrix ``m`` at the spec's dims, or None."""
    shape = alg.shape(m)
    return _at_dims(alg, shape[-1]) if len(shape) == 2 else None


def _at_dims(alg, d):
    value = sp.sympify(sp.sympify(d).xreplace(alg.dims))
    return int(value) if value.is_Integer else None


# an upper bound on a matrix's rank, by the op at its top (``rank_at_most``): a product
# is no fuller than its thinnest factor, a sum no fuller than its terms together
_RANK = {
    ops.matmul: lambda alg, a, b: _min(rank_at_most(alg, a), rank_at_most(alg, b)),
    ops.transpose: lambda alg, a: rank_at_most(alg, a),
    ops.outer: lambda alg, a, b: 1,
    ops.inv: lambda alg, a: _at_dims(alg, alg.shape(a)[-1]),
    ops.eye: lambda alg, n: _at_dims(alg, n),
    ops.diag: lambda alg, v: _nonzero_entries(alg, v),
    ops.ones: lambda alg, *dims: 1,  # 𝟏𝟏ᵀ: the Hessian of sum(x)²
}


def _nonzero_entries(alg, v):
    """A bound on the nonzero entries of the vector v: one where a factor is the mask of
    a vector's max (the Hessian of max(abs(erf(x))) is diag(maxmask(...) ...): rank 1
    away from ties, so no Newton step), else v's length."""
    if any(isinstance(f, ops.maxmask) and len(f.args) == 1 for f in sp.Mul.make_args(v)):
        return 1
    return _at_dims(alg, alg.shape(v)[0])


def _min(*bounds):
    known = [b for b in bounds if b is not None]
    return min(known) if known else None


def rank_at_most(alg, m) -> int | None:
    """An upper bound on the rank of the matrix ``m`` at the spec's dims (None where a
    dim has no value): ``2 Xᵀ X`` with X 2×3 has rank at most 2, not 3."""
    shape = alg.shape(m)
    if len(shape) != 2:
        return None
    full = _min(*(_at_dims(alg, d) for d in shape))
    if isinstance(m, sp.Add):
        parts = [rank_at_most(alg, t) for t in m.args]
        return None if None in parts else _min(full, sum(parts))
    c, rest = alg.split_scalar(m)
    if c != 1:
        return rank_at_most(alg, rest)
    rule = _RANK.get(type(m))
    return _min(full, rule(alg, *m.args)) if rule else full


# rebuilding an op after a symbol was set to 0: the Algebra's constructors drop zeros
_REBUILD = {
    ops.matmul: lambda alg, a, b: alg.mm(a, b),
    ops.transpose: lambda alg, a: alg.T(a),
    ops.outer: lambda alg, a, b: alg.outer(a, b),
}


# ops that are 0 where their first argument is 0 (x[0], sum(x), diag(x) at x = 0);
# not logsumexp (log n at 0) or the elementwise functions
_ZERO_AT_ZERO = (
    ops.entry,
    ops.gather,
    ops.tsum,
    ops.tmean,
    ops.tmax,
    ops.tmin,
    ops.var,
    ops.diag,
    ops.trace,
    ops.norm,
    layout.expand_dims,  # mu[None, :] at mu = 0
    layout.index,
)


def zero_out(alg, e, symbols):
    """e with ``symbols`` set to 0, rebuilt bottom-up so that ``A @ 0`` is 0 (a plain
    xreplace leaves a matrix product with a scalar, which has no shape)."""
    if e in symbols:
        return sp.Integer(0)
    if not e.args or isinstance(e, (ops.ones, ops.eye)):
        return e
    args = [zero_out(alg, a, symbols) for a in e.args]
    if type(e) in _REBUILD:
        return _REBUILD[type(e)](alg, *args)
    if isinstance(e, _ZERO_AT_ZERO) and args[0] == 0:
        return sp.Integer(0)
    if isinstance(e, layout.einsum) and any(a == 0 for a in args[1:]):
        return sp.Integer(0)  # linear in each operand
    if isinstance(e, BILINEAR) and any(a == 0 for a in args[:2]):
        return sp.Integer(0)  # conv2d(X, 0): a kernel of 0 (it was "needs a NCHW kernel")
    try:
        out = e.func(*args)
    except ShapeError as exc:
        # softmax(0 * x): a zero tensor has no scalar stand-in here
        raise NoClosedForm(f"{e.func.__name__} of a variable set to 0: {exc}") from exc
    shape = alg.shape(e)
    if shape and out != 0 and out.is_number:
        # (x - 2)**2 at x = 0 is 4 in every entry: a number has no shape, and sum(4)
        # would be 4, not 4 n (the dual of min ‖x - 2‖² s.t. sum(x) = 1 was wrong)
        return out * alg.ones(shape)
    return out


def elementwise_in(e, x) -> bool:
    """x enters e only through elementwise operations (no product, sum, ... contains it)."""
    return not any(
        isinstance(n, ops.TensorOp) and x in n.free_symbols for n in sp.preorder_traversal(e)
    )


def as_scalar(e):
    """Entry-by-entry reading of an elementwise expression: ones(n) is 1."""
    return e.replace(lambda n: isinstance(n, ops.ones), lambda n: sp.Integer(1))


def kinked_in(e, x) -> bool:
    """A function with a kink (abs, relu, max, sign, where...) whose argument holds x:
    the derivative rules give such a function's second derivative as 0 almost
    everywhere, so a gradient holding one (x - z + lam sign(x)) looks affine to the
    Hessian and is not: x* = z for the Lasso's proximal step was the result."""
    return any(
        (isinstance(n, ops.KINKED) or getattr(n, "kinked", False)) and x in n.free_symbols
        for n in sp.preorder_traversal(e)
    )


def _standing_for(e):
    """A real name for ``e`` with the sign SymPy knows of it (a sum of squares is
    nonnegative: s = −√(sum((x − m)²)/N) is then no root for a positive s)."""
    if e.is_positive:
        return sp.Dummy("b", positive=True)
    return sp.Dummy("b", nonnegative=True) if e.is_nonnegative else sp.Dummy("b", real=True)


def roots(equation, unknown) -> list | None:
    """sympy.solve(equation = 0, unknown) within SECONDS_TO_SOLVE: its roots, or None
    where it gives up, fails or runs out of time."""
    # a tensor operation free of the unknown is one number to the solver: sympy.solve
    # multiplied out sum((x − m)²) into sum(m² + x² − 2 m x) (s* of a Gaussian's MLE, which
    # then cancelled to 0 in float64 at x ~ 1e8)
    blocks: dict = {}
    equation = equation.replace(
        lambda e: isinstance(e, ops.TensorOp) and unknown not in e.free_symbols,
        lambda e: blocks.setdefault(e, _standing_for(e)),
    )
    try:
        # SymPy inverts exp and log, not dlsym's sigmoid: σ(a) = p as 1/(1 + e^{-a}) = p
        found = within(SECONDS_TO_SOLVE, sp.solve, elementary(equation), unknown)
    except (TimeLimit, NotImplementedError, ValueError, TypeError, sp.PolynomialError):
        return None
    # replace() works bottom up: an outer block's key holds the names of the blocks
    # inside it (sum((y − b₁)²) for b₁ = X @ w), put back first (the noise variance of a
    # regression solved in turn was sum((y − b)²)/m, b no symbol of the spec: exit 3)
    back: dict = {}
    for e, d in blocks.items():
        back[d] = e.xreplace(back)
    return [r.xreplace(back) for r in found] if isinstance(found, list) else None


product_chain = ops.product_chain  # the factors of A @ (B @ C): A, B, C


def chain_product(alg, factors):
    """The matrix product of ``factors``, left to right: product_chain's inverse."""
    return alg.mm_chain(factors)
