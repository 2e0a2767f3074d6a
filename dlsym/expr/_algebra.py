"""Shape-aware constructors that keep tensor expressions in a readable canonical form.

Both the parser and the derivation rules build expressions through ``Algebra`` so
that, e.g., a scalar factor is always pulled out of a matrix product
(``X^T (2 r)`` becomes ``2 X^T r``) and the transpose of a vector is the vector
itself (vectors are 1-D, as in NumPy; printers add ``^T`` where a vector stands
on the left of a product).
"""

from __future__ import annotations

import sympy as sp

from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops

# past this nesting, a sum's common factor is its rational content only (_common_factor)
FACTOR_TERMS_NESTING = 6


def nesting(e, memo=None) -> int:
    """How deeply functions and operations nest in ``e`` (``tanh(W @ tanh(W @ x))``: 4);
    shared subtrees are measured once. ``memo`` may start with symbols' own nestings
    (an intermediate's, written out)."""
    memo = {} if memo is None else memo
    if e in memo:
        return memo[e]
    if not e.args:
        return 0
    inner = max(nesting(a, memo) for a in e.args)
    memo[e] = inner + (0 if isinstance(e, (sp.Add, sp.Mul, sp.Pow)) else 1)
    return memo[e]


def _inverse_pair(a, b) -> bool:
    return (isinstance(a, ops.inv) and a.args[0] == b) or (
        isinstance(b, ops.inv) and b.args[0] == a
    )


def _is_row(e, shape) -> bool:
    """``v[None, :]``: a vector as one row, which broadcasts as the vector does."""
    return (
        isinstance(e, layout.expand_dims)
        and len(shape(e.args[0])) == 1
        and tuple(int(i) for i in e.args[1]) == (0,)
    )


def _is_rows(e) -> bool:
    """``outer(1, v)``: the vector v copied down the rows of a matrix."""
    return isinstance(e, ops.outer) and isinstance(e.args[0], ops.ones)


def _softmax_vector(alg, g) -> bool:
    return isinstance(g, ops.softmax) and len(alg.shape(g)) == 1


def _column(e):
    """u where ``e`` is u 1ᵀ (outer(u, ones)): u repeated along the columns, else None."""
    if isinstance(e, ops.outer) and isinstance(e.args[1], ops.ones):
        return e.args[0]
    return None


class Algebra:
    def __init__(
        self,
        shapes: ops.ShapeTable,
        sums_to_one: frozenset = frozenset(),
        symmetric: frozenset = frozenset(),
        index_symbols: frozenset | dict = frozenset(),
        rows_sum_to_one: frozenset = frozenset(),
        dims: dict | None = None,
    ):
        self.shape = shapes
        # the spec's dims (dim symbol -> size): a closed form that inverts a matrix
        # checks that its rank can reach its size there (A Aᵀ with A 4×2 never does)
        self.dims = dict(dims or {})
        # matrices and tensors whose rows (last axis) are one-hot (domain onehot): a
        # batch of labels, sum(Y, axis=-1) = 1
        self.rows_sum_to_one = set(rows_sum_to_one)
        # integer labels (domain {index: k}): gathered and one-hot encoded, never
        # differentiated; given as a mapping, each one's number of classes k too, which
        # onehot's k and a gathered table's rows must match (the parser checks it)
        self.index_symbols = frozenset(index_symbols)
        sizes = index_symbols if isinstance(index_symbols, dict) else {}
        self.index_sizes = {s: k for s, k in sizes.items() if k is not None}
        # symbols whose entries sum to 1 (domains simplex and onehot): sum(y) = 1
        self.sums_to_one = set(sums_to_one)
        # symmetric matrices (domain spd): S^T = S, so x^T S x has gradient 2 S x
        self.symmetric = set(symmetric)
        # tidy is a function of the expression (and this algebra)
        self._tidied = ops.ByIdentity()
        # the same for the simplifier's passes (dlsym.calculus._simplify), by pass
        self.memo: dict = {}

    def extended(
        self,
        symbol_shapes: dict,
        ambient: frozenset = frozenset(),
        labels: frozenset | dict = frozenset(),
        sums_to_one: frozenset = frozenset(),
        rows_sum_to_one: frozenset = frozenset(),
    ) -> Algebra:
        """This algebra over more symbols (adjoints, multipliers), leaving this one as
        it is: a parsed spec's algebra is never changed after parsing. ``ambient``:
        symbols whose domain facts (S = Sᵀ, sum(p) = 1) do not hold here (those
        differentiated); ``labels``: more integer labels (a label sequence's step), as
        a mapping to their numbers of classes where they are known; ``sums_to_one``,
        ``rows_sum_to_one``: more symbols with those facts (a one-hot sequence's step)."""
        more = dict(labels) if isinstance(labels, dict) else dict.fromkeys(labels)
        return Algebra(
            self.shape.extended(symbol_shapes),
            frozenset((self.sums_to_one | sums_to_one) - ambient),
            frozenset(self.symmetric - ambient),
            {**{s: self.index_sizes.get(s) for s in self.index_symbols}, **more},
            frozenset((self.rows_sum_to_one | rows_sum_to_one) - ambient),
            self.dims,
        )

    # -- helpers -------------------------------------------------------------------

    def is_scalar(self, e) -> bool:
        return self.shape(e) == ()

    def split_scalar(self, e):
        """(scalar coefficient, tensor part) of a product."""
        if isinstance(e, sp.Mul):
            scal = [f for f in e.args if self.is_scalar(f)]
            rest = [f for f in e.args if not self.is_scalar(f)]
            if scal and rest:
                return sp.Mul(*scal), sp.Mul(*rest)
        return sp.Integer(1), e

    # -- constructors -----------------------------------------------------------

    def T(self, a, written: bool = False):
        """``a.T`` as NumPy's: a matrix transposed, a tensor's axes reversed. ``written``:
        a transpose in the spec's text, where Sᵀ of an spd S stays: S = Sᵀ holds at every
        point, but not for the derivative, which is the ambient one of the formula as
        written (∇_S xᵀSᵀy = y xᵀ, as jax.grad gives it; folded first it was x yᵀ)."""
        s = self.shape(a)
        if len(s) < 2:
            return a
        if len(s) > 2:
            return self.permute(a, tuple(reversed(range(len(s)))))
        if isinstance(a, ops.transpose):
            return a.args[0]
        if isinstance(a, layout.expand_dims) and len(self.shape(a.args[0])) == 1:
            # a column v[:, None] transposed is the row v[None, :], and back
            return layout.expand_dims(a.args[0], sp.Tuple(1 - int(a.args[1][0])))
        symmetric = a in self.symmetric or (isinstance(a, ops.inv) and a.args[0] in self.symmetric)
        if symmetric and not written:
            return a  # S^T = S and inv(S)^T = inv(S) for a symmetric (spd) S
        if isinstance(a, (ops.eye, ops.diag)) or (isinstance(a, ops.ones)):
            return a if not isinstance(a, ops.ones) else ops.ones(*reversed(a.args))
        if isinstance(a, ops.outer):
            return ops.outer(a.args[1], a.args[0])
        if isinstance(a, sp.Add):
            if any(len(self.shape(t)) == 1 for t in a.args):
                # a vector term is broadcast along the rows: (X − m)ᵀ stays whole, as a
                # paper writes the centred data; Xᵀ − m[:, None] showed NumPy's indexing
                # (Σ* of a Gaussian's MLE read (Xᵀ − m_{[:,new]})(X − m)/n)
                return ops.transpose(a)
            return sp.Add(*[self.T(t) for t in a.args])
        c, rest = self.split_scalar(a)
        if c != 1:
            return c * self.T(rest)
        if isinstance(a, ops.tsum) and not ops.keepdims(a) and len(a.args) == 2:
            # (Σ_b M_b)ᵀ = Σ_b M_bᵀ over a stack's axis: Σ_b X_bᵀ X_b is symmetric
            inner, rank = a.args[0], len(self.shape(a.args[0]))
            axes = ops.reduced_axes(a, self.shape(inner))
            if rank == 3 and axes == (0,):
                turned = self.permute(inner, (0, 2, 1))
                if turned == inner:
                    return a
        flipped = self._transposed_product(a)
        return ops.transpose(a) if flipped is None else flipped

    def _common_factor(self, e):
        """A sum with its common scalar factor taken out. factor_terms does it in every
        sum inside too, so a chain of matrix products (each adjoint holding the one
        after it) costs it the whole chain at every step: past a few levels of nesting
        only the rational content comes out (as_content_primitive stops at functions)."""
        if nesting(e, self.memo.setdefault("nesting", {})) > FACTOR_TERMS_NESTING:
            c, p = e.as_content_primitive()
            return c * p
        return sp.factor_terms(e)

    def mm(self, a, b):
        if a == 0 or b == 0:
            return sp.Integer(0)
        # a common scalar factor of a sum comes out of the product: X^T (2 r) = 2 X^T r
        a = self._common_factor(a) if isinstance(a, sp.Add) else a
        b = self._common_factor(b) if isinstance(b, sp.Add) else b
        ca, ra = self.split_scalar(a)
        cb, rb = self.split_scalar(b)
        if ca != 1 or cb != 1:
            return ca * cb * self.mm(ra, rb)
        if len(self.shape(a)) == 1 and len(self.shape(b)) == 1:
            # u^T v is sum(u * v); use that form when the entrywise product cancels
            prod = a * b
            if sp.count_ops(prod) < sp.count_ops(a) + sp.count_ops(b):
                if not self.shape(prod):  # (1/x) * x is 1 to SymPy: n entries of it
                    prod = prod * self.ones(self.shape(a))
                return self.reduce_sum(prod)
        if isinstance(a, ops.eye):
            return b
        if isinstance(b, ops.eye):
            return a
        unstacked = self._broadcast_stack(b)
        if unstacked is not None and len(self.shape(a)) >= 3:
            sa, sb = self.shape(a), self.shape(b)
            if tuple(sa[:-2]) == tuple(sb[:-2]):
                # A @ (q[None] ⊙ 𝟏) with A [B, n, n], q [n, 1]: matmul broadcasts q over
                # A's stack itself (a rank-3 batch's Hessian action Σ_b X_bᵀ X_b Δ)
                return self.mm(a, unstacked)
        if isinstance(a, ops.diag) and isinstance(b, ops.diag):
            # diag(u) diag(v) = diag(u ⊙ v) where that is shorter: diag(x) diag(sign(x))
            # is diag(|x|) (the Hessian of x ⊙ |x|), diag(p) diag(1/p) is I
            u, v = a.args[0], b.args[0]
            if len(self.shape(u)) == len(self.shape(v)) == 1:
                both = sp.Mul(*sign_absorbed([u, v]))
                if sp.count_ops(both) < sp.count_ops(u) + sp.count_ops(v) + 1:
                    if not self.shape(both):  # p ⊙ (1/p) is 1 to SymPy: n ones
                        both = both * self.ones(self.shape(u))
                    return self.diag(both)
        if (
            isinstance(a, ops.diag)
            and isinstance(b, ops.matmul)
            and isinstance(b.args[0], ops.diag)
        ):
            # diag(u) (diag(v) C) as (diag(u) diag(v)) C where those merge: the Hessian of
            # 2 p ⊙ log p has diag(p) diag(1/p) J_p, which at an underflowed p was
            # 0 · inf = nan (the focal loss at a logit of 1000)
            merged = self.mm(a, b.args[0])
            if not isinstance(merged, ops.matmul):
                return self.mm(merged, b.args[1])
        if isinstance(b, ops.unit) and isinstance(a, ops.transpose) and len(self.shape(a)) == 2:
            # Wᵀ e_i is row i of W: the gradient of one entry (W x)_i, W[i] as written
            return layout.index(a.args[0], sp.Tuple(b.args[0]))
        centred = self._identity_and_ones_product(a, b)
        if centred is not None:
            return centred
        if isinstance(a, ops.ones) and isinstance(b, ops.ones):
            # 𝟏 𝟏ᵀ-free: (𝟏ₙₘ 𝟏ₘ) = m 𝟏ₙ, 𝟏ₘᵀ 𝟏ₘₖ = m 𝟏ₖ, 𝟏ₘᵀ 𝟏ₘ = m (a variance of a
            # mean of W x read sum((ones((n, m)) @ ones(m))**2) for n m²)
            inner = self.shape(a)[-1]
            rest = self.shape(a)[:-1] + self.shape(b)[1:]
            return inner * (self.ones(rest) if rest else sp.S.One)
        # a row or column of ones picked by a basis vector: 1 e_i = 1 (the gradient of
        # one entry of (W x) through E[W] = c 1)
        if isinstance(a, ops.ones) and len(a.args) == 2 and isinstance(b, ops.unit):
            return self.ones((a.args[0],))
        if isinstance(b, ops.ones) and len(b.args) == 2 and isinstance(a, ops.unit):
            return self.ones((b.args[1],))
        # e_iᵀ 1 = 1: an entry of an outer product's mean (Var[outer(g, x)[1, 0]] read
        # (eye(n)[0] @ ones(n))²)
        if {type(a), type(b)} == {ops.unit, ops.ones} and len(self.shape(a)) == len(
            self.shape(b)
        ) == 1:
            return sp.S.One
        if isinstance(a, ops.outer) and len(self.shape(b)) == 1:
            # (u wᵀ) v = u (wᵀ v): a vector scaled by a number, whose Jacobian has a rule
            # (the Kalman gain's (I − k hᵀ) P h in k)
            u, w = a.args
            return u * self.mm(w, b)
        if isinstance(b, ops.outer) and len(self.shape(a)) == 1:
            u, w = b.args  # vᵀ (u wᵀ) = (vᵀ u) wᵀ
            return self.mm(a, u) * w
        cancelled = self._cancel_inverse(a, b)
        if cancelled is not None:
            return cancelled
        if isinstance(a, ops.transpose) and isinstance(b, ops.transpose):
            # A^T B^T stays as written: it is already what a paper would print
            return ops.matmul(a, b)
        return ops.matmul(a, b)

    def _stack_sum_of_product(self, g, axis: int):
        """Σ_b (P_b v[:, None]) = (Σ_b P_b) v[:, None] over a stack axis of a product
        whose last factor is a column that holds no stack (X [B, T, n]: Σ_b X_bᵀ X_b Δ
        is sum(Xᵀ X, axis=0) Δ, a matrix times the direction, which a Newton step and a
        stationary point solve), or None. Only a column: Σ_b X_bᵀ (dS_b X_b) Wk of an
        attention's gradient is cheaper, and reads its K = X Wk, left as it is."""
        rank = len(self.shape(g))
        chain = ops.product_chain(g)
        last = chain[-1]
        column = isinstance(last, layout.expand_dims) and len(self.shape(last.args[0])) == 1
        k = len(chain) - 1
        if not column or k < 1 or not 0 <= axis < rank - 2:
            return None
        head = self.mm_chain(chain[:k])
        if len(self.shape(head)) != rank:  # the stack is the head's own
            return None
        return self.mm_chain([self.reduce_sum(head, axis), *chain[k:]])

    def _broadcast_stack(self, e):
        """q of ``q[None, ...] ⊙ 𝟏`` (a matrix copied along new leading stack axes, the
        adjoint of a sum over them), or None."""
        if not isinstance(e, sp.Mul) or len(e.args) != 2:
            return None
        ones = [f for f in e.args if isinstance(f, ops.ones)]
        new = [f for f in e.args if isinstance(f, layout.expand_dims)]
        if len(ones) != 1 or len(new) != 1:
            return None
        inner, axes = new[0].args
        rank = len(self.shape(e))
        stack = tuple(range(rank - len(self.shape(inner))))
        if len(self.shape(inner)) != 2 or tuple(int(i) for i in axes) != stack:
            return None
        return inner if tuple(self.shape(ones[0])) == tuple(self.shape(e)) else None

    def _identity_and_ones(self, e):
        """(α, β, n) where ``e`` is α I + β 𝟏 of n × n matrices (α, β scalars), else None."""
        alpha, beta, n = sp.Integer(0), sp.Integer(0), None
        for term in sp.Add.make_args(e):
            c, rest = self.split_scalar(term)
            if isinstance(rest, ops.eye):
                size, alpha = rest.args[0], alpha + c
            elif (
                isinstance(rest, ops.ones) and len(rest.args) == 2 and rest.args[0] == rest.args[1]
            ):
                size, beta = rest.args[0], beta + c
            else:
                return None
            if n is not None and size != n:
                return None
            n = size
        return alpha, beta, n

    def _identity_and_ones_product(self, a, b):
        """Matrices α I + β 𝟏 are closed under products, 𝟏 𝟏 = n 𝟏: the centring matrix
        C = I − 𝟏/n is idempotent, so the covariance of x − mean(x) is σ² C, not σ² C C
        (whose diagonal no rule sums to Bessel's (n − 1) σ²/n). Only where a sum is one
        side: I and 𝟏 alone have their own rules."""
        if not (isinstance(a, sp.Add) or isinstance(b, sp.Add)):
            return None
        left, right = self._identity_and_ones(a), self._identity_and_ones(b)
        if left is None or right is None or left[2] != right[2]:
            return None
        (a1, b1, n), (a2, b2, _) = left, right
        beta = sp.factor_terms(sp.expand(a1 * b2 + b1 * a2 + n * b1 * b2))
        return a1 * a2 * ops.eye(n) + beta * ops.ones(n, n)

    def mT(self, a):
        """The matrix transpose: A^T of a matrix, every matrix of a stack transposed
        (the last two axes swapped, as ``numpy.matrix_transpose``)."""
        rank = len(self.shape(a))
        return self.T(a) if rank <= 2 else self.permute(a, layout.swap_last(rank))

    def permute(self, a, perm):
        """``numpy.transpose(a, perm)``; the identity and a permutation of a permutation
        fold, and a matrix's one swap is its transpose."""
        perm = tuple(int(p) for p in perm)
        if a == 0 or perm == tuple(range(len(perm))):
            return a
        c, rest = self.split_scalar(a)
        if c != 1:
            return c * self.permute(rest, perm)
        if len(perm) == 2:
            return self.T(a)
        if perm == layout.swap_last(len(perm)):
            flipped = self._transposed_product(a)
            if flipped is not None:
                return flipped
        if isinstance(a, layout.permute):
            inner = tuple(int(p) for p in a.args[1])
            return self.permute(a.args[0], tuple(inner[p] for p in perm))
        return layout.permute(a, sp.Tuple(*perm))

    def _untransposed(self, a):
        """The matrix (or stack of matrices) that ``a`` is the transpose of, or None."""
        if isinstance(a, ops.transpose):
            return a.args[0]
        if isinstance(a, layout.permute):
            perm = tuple(int(p) for p in a.args[1])
            if perm == layout.swap_last(len(perm)):
                return a.args[0]
        return None

    def _transposed_product(self, a):
        """``(X Y Z)ᵀ = Zᵀ Yᵀ Xᵀ`` where that writes no more transposes: the adjoint of
        ``Q Kᵀ`` with respect to K reads ``Sᵀ Q``, not ``(Qᵀ S)ᵀ``; a symmetric factor is
        its own transpose, so (C S Cᵀ)ᵀ = C S Cᵀ and (C S)ᵀ = S Cᵀ for an spd S (the
        Kalman gain's N + C Σ Cᵀ is then one term). None where it would write more."""
        if not isinstance(a, ops.matmul):
            return None
        chain = ops.product_chain(a)
        if any(len(self.shape(f)) < 2 for f in chain):
            return None  # a vector operand's axis is dropped: no per-matrix transpose
        flipped = [self.mT(f) for f in reversed(chain)]

        def transposes(fs) -> int:
            return sum(self._untransposed(f) is not None for f in fs)

        before, after = transposes(chain) + 1, transposes(flipped)
        if after > before or (after == before and not set(chain) & self.symmetric):
            return None
        return self.mm_chain(flipped)

    def mm_chain(self, factors):
        """The matrix product of ``factors``, left to right (ops.product_chain's
        inverse), each product by ``mm``."""
        out = factors[0]
        for f in factors[1:]:
            out = self.mm(out, f)
        return out

    def reshape(self, a, dims):
        """``a`` reshaped to ``dims``; a reshape of a reshape is one reshape."""
        dims = tuple(dims)
        if a == 0 or tuple(self.shape(a)) == dims:
            return a
        c, rest = self.split_scalar(a)
        if c != 1:
            return c * self.reshape(rest, dims)
        if isinstance(a, layout.reshape):
            return self.reshape(a.args[0], dims)
        return layout.reshape(a, sp.Tuple(*dims))

    def expand_dims(self, a, axes):
        """New axes of size 1 at ``axes`` of the result."""
        if not axes or a == 0:
            return a
        c, rest = self.split_scalar(a)
        if c != 1:
            return c * self.expand_dims(rest, axes)
        if isinstance(a, ops.matmul) and tuple(axes) == (len(self.shape(a)),):
            # (M v)[..., None] = M v[:, None]: a batch's X w as a column, so that a sum
            # over the batch of Xᵀ (X Δ)[..., None] is (Σ_b X_bᵀ X_b) Δ
            chain = ops.product_chain(a)
            if len(self.shape(chain[-1])) == 1:
                return self.mm_chain([*chain[:-1], self.expand_dims(chain[-1], (1,))])
        if isinstance(a, layout.index):
            # u[:, :, 0][:, :, None] of u [B, T, 1] is u
            inner, items = a.args
            if layout.size_one_entries(items, self.shape(inner)) == tuple(sorted(axes)):
                return inner
        if isinstance(a, ops.ones):  # a new axis of ones is still ones
            dims = list(a.args)
            for axis in sorted(axes):
                dims.insert(axis, sp.Integer(1))
            return ops.ones(*dims)
        return layout.expand_dims(a, sp.Tuple(*sorted(axes)))

    def squeeze(self, g, axes):
        """``g`` without its axes ``axes`` of size 1: a sum with ``keepdims`` over exactly
        them loses the keepdims, anything else is indexed at 0 there."""
        axes = tuple(sorted(axes))
        if not axes or g == 0:
            return g
        c, rest = self.split_scalar(g)
        if c != 1:  # -sum(..., keepdims=True) squeezes as the sum does
            return c * self.squeeze(rest, axes)
        if isinstance(g, ops.tsum) and ops.keepdims(g):
            if ops.reduced_axes(g, self.shape(g.args[0])) == axes:
                return self.reduce_sum(g.args[0], axes[0] if len(axes) == 1 else axes)
        if isinstance(g, layout.expand_dims) and tuple(int(i) for i in g.args[1]) == axes:
            return g.args[0]
        rank = len(self.shape(g))
        if isinstance(g, ops.matmul) and axes == (rank - 1,):
            # (M v[:, None])[:, 0] = M v: the column taken back out of a product
            last = ops.product_chain(g)[-1]
            if isinstance(last, layout.expand_dims) and tuple(last.args[1]) == (1,):
                inner = last.args[0]
                if len(self.shape(inner)) == 1:
                    return self.mm_chain([*ops.product_chain(g)[:-1], inner])
        items = [sp.Integer(0) if i in axes else self.whole(g, i) for i in range(rank)]
        return layout.index(g, sp.Tuple(*items))

    def whole(self, a, axis):
        """The slice ``:`` of axis ``axis`` of ``a``, as an index item."""
        return sp.Tuple(sp.Integer(0), self.shape(a)[axis], sp.Integer(1))

    def spread(self, g, shape, axes, keep=False):
        """g, the reduction of a value of ``shape`` over ``axes``, copied back to
        ``shape`` (the adjoint of a sum): a kept axis of size 1 broadcasts; a removed one
        is put back with a vector of ones (``g 1^T`` for a row sum of a matrix), or as a
        new axis broadcast against ones for rank 3 and more."""
        shape, axes = tuple(shape), tuple(sorted(axes))
        if keep or len(axes) == len(shape):
            return self.expand_to(g, shape)
        if len(shape) == 2:
            (axis,) = axes
            if axis == 0:
                return self.outer(self.ones(shape[:1]), g)
            return self.outer(g, self.ones(shape[1:]))
        return self.expand_dims(g, axes) * self.ones(shape)

    def _cancel_inverse(self, a, b):
        """A^{-1} A = A A^{-1} = I, also across a product (matmul is associative):
        A^{-1} (A C) = C and (C A^{-1}) A = C. None when nothing cancels."""
        if _inverse_pair(a, b):
            return ops.eye(self.shape(a)[0])
        if isinstance(b, ops.matmul) and _inverse_pair(a, b.args[0]):
            return b.args[1]
        if isinstance(a, ops.matmul) and _inverse_pair(a.args[1], b):
            return a.args[0]
        return None

    def outer(self, u, v):
        if u == 0 or v == 0:
            return sp.Integer(0)
        cu, ru = self.split_scalar(u)
        cv, rv = self.split_scalar(v)
        if cu != 1 or cv != 1:
            return cu * cv * self.outer(ru, rv)
        if isinstance(u, ops.ones) and isinstance(v, ops.ones):
            return ops.ones(*u.args, *v.args)
        if u == v == ops.unit(0, 1):
            # e₀e₀ᵀ of size 1 is I₁: the gradient of M[0, 0] of a 1 x 1 M (a column
            # vector's (Xw − y)ᵀ(Xw − y)) read Xᵀ(Xw − y) @ outer(eye(1)[0], eye(1)[0])
            return ops.eye(1)
        return ops.outer(u, v)

    def diag(self, v):
        if v == 0:
            return sp.Integer(0)
        c, r = self.split_scalar(v)
        if c != 1:
            return c * self.diag(r)
        if isinstance(v, ops.ones) and len(v.args) == 1:
            return ops.eye(v.args[0])
        return ops.diag(v)

    def ones(self, shape):
        return ops.ones(*shape) if shape else sp.Integer(1)

    def expand_to(self, g, shape):
        """Broadcast a scalar g to ``shape`` (the adjoint of a full reduction)."""
        if self.shape(g) == tuple(shape) or not shape:
            return g
        return g * self.ones(shape)

    def sum_to(self, g, shape, full=()):
        """The adjoint of broadcasting: sum g down to ``shape``, the shape it was
        broadcast from (a bias ``b: [k]`` added to ``[B, k]`` gets ``sum(g, axis=0)``).
        ``full``: the shape of the operation's result, which g has even where SymPy
        made it a number (the adjoint of ``s * a`` for ``log(s * a)`` is ``(1/(s a)) a``,
        which SymPy cancels to ``1/s``: n entries of it, summed to n/s, not 1/s)."""
        if full and not self.shape(g):
            g = self.expand_to(g, full)
        have = tuple(self.shape(g))
        shape = tuple(shape)
        if have == shape or not have:
            return g
        if not shape:
            return self.reduce_sum(g)
        lead, kept = ops.unbroadcast_axes(have, shape)
        if lead:
            g = self.reduce_sum(g, lead[0] if len(lead) == 1 else lead)
        if kept:
            g = self.reduce_sum(g, kept[0] if len(kept) == 1 else kept, keepdims=True)
        return g

    def _constant_along(self, f, axes, rank) -> bool:
        """Whether factor ``f`` of a rank-``rank`` product is the same along ``axes``:
        it has no such axis (shapes align on the last axes) or its size there is 1."""
        shape = self.shape(f)
        offset = rank - len(shape)
        return all(a < offset or shape[a - offset] == 1 for a in axes)

    def _squeeze_reduced(self, f, axes, rank):
        """``f`` without its own (size-1) axes among the reduced ``axes`` of a rank-``rank``
        product: what is left aligns with the reduction's result."""
        offset = rank - len(self.shape(f))
        return self.squeeze(f, tuple(a - offset for a in axes if a >= offset))

    def _outer_weighted(self, g, axis, keepdims):
        """sum(A ⊙ outer(u, c), axis=0) = (Aᵀ u) ⊙ c and along axis 1 (A c) ⊙ u: entry j
        is Σ_i A_ij u_i c_j (the softmax Hessian in a bias with real targets, whose row
        weights u are Y's row sums). None where g is no such product (outer(u, 1) is the
        rule below: Aᵀ u alone)."""
        if not (isinstance(g, sp.Mul) and len(g.args) == 2) or keepdims or axis is None:
            return None
        if axis not in (0, -2, 1, -1) or len(self.shape(g)) != 2:
            return None
        outer = [f for f in g.args if isinstance(f, ops.outer)]
        if len(outer) != 1 or isinstance(outer[0].args[1], ops.ones):
            return None
        (o,) = outer
        A = next(f for f in g.args if f is not o)
        if self.shape(A) != self.shape(g):
            return None
        u, c = o.args
        if axis in (0, -2):
            return self.mm(self.T(A), u) * c
        return self.mm(A, c) * u

    def _shared_factor(self, g, axis, keepdims):
        """A sum of matrix products with one left factor, A B + A C, as A (B + C) where
        the sum runs down the rows (along the columns: one right factor, B A + C A as
        (B + C) A), or None: the rows' sum then moves onto A (a Gaussian's mean through
        a define Xc = X − μ, whose adjoint Xc S⁻¹ + Xc S⁻ᵀ kept S⁻¹ + S⁻ᵀ apart, and
        the stationary point said μ couples with S)."""
        if not isinstance(g, sp.Add) or axis is None or keepdims or len(self.shape(g)) != 2:
            return None
        axes = {x % 2 for x in (axis if isinstance(axis, tuple) else (axis,))}
        if len(axes) != 1:
            return None
        side = 0 if axes == {0} else 1  # the factor the sum moves onto
        parts = []
        for term in g.args:
            c, m = self.split_scalar(term)
            if not isinstance(m, ops.matmul) or len(m.args) != 2:
                return None
            parts.append((c, m.args[side], m.args[1 - side]))
        if len({f for _, f, _ in parts}) != 1:
            return None
        factor = parts[0][1]
        rest = sp.Add(*[c * other for c, _, other in parts])
        return self.mm(factor, rest) if side == 0 else self.mm(rest, factor)

    def _row(self, a, i):
        """Row i of the matrix ``a``, taken inside its elementwise powers and products
        (W²[1] as W[1]²)."""
        if isinstance(a, sp.Pow) and len(self.shape(a.base)) == 2:
            return self._row(a.base, i) ** a.exp
        if isinstance(a, sp.Mul):
            return sp.Mul(*[self._row(f, i) if len(self.shape(f)) == 2 else f for f in a.args])
        return layout.index(a, sp.Tuple(i))

    def reduce_sum(self, g, axis=None, keepdims: bool = False):
        """``sum(g, axis, keepdims)``: ``axis`` an int, a tuple of ints or None (all)."""
        if g == 0:
            return sp.Integer(0)
        if isinstance(g, sp.Pow) and isinstance(g.base, ops.eye) and g.exp.is_positive:
            g = g.base  # entries 0 and 1: I**2 = I entrywise (⟨I, I⟩ = tr I)
        if isinstance(g, ops.eye) and axis is None and not keepdims:
            return g.args[0]  # sum(I_n) = n
        if isinstance(g, ops.eye) and axis in (0, 1, -1, -2) and not keepdims:
            # each row and column of I_n sums to 1 (InfoNCE's gradient read
            # outer(sum(eye(B), axis=1), ones(B)) * softmax(...))
            return self.ones((g.args[0],))
        c, r = self.split_scalar(g)
        if c != 1:
            return c * self.reduce_sum(r, axis, keepdims)
        if _centred(self, g, axis):
            # deviations from a mean add up to 0 along its axes: LayerNorm's gradient
            # carried sum(X − mean(X, axis=1, keepdims=True), axis=1, keepdims=True) in a
            # term of its own
            return sp.Integer(0)
        # (after the deviations from a mean: sum(g − mean(g)) is 0, not sum(g) − n mean(g))
        if axis is None and not keepdims and isinstance(g, sp.Add) and self.shape(g):
            # a scalar term broadcast over the entries adds up to size times itself:
            # sum(1 − y) = n − sum(y) (the Bernoulli MLE read sum(y)/(sum(y) + sum(1 − y)))
            scalars = [t for t in g.args if self.shape(t) == ()]
            if scalars:
                rest = sp.Add(*[t for t in g.args if self.shape(t) != ()])
                return sp.Add(*scalars) * ops.size(self.shape(g)) + self.reduce_sum(rest)
        if isinstance(g, ops.outer) and axis is not None and not keepdims:
            # sum(a bᵀ, axis=0) = (Σa) b, along axis 1 a (Σb): sum(outer(1_N, v), 0) = N v
            a, b = g.args
            axes = {x % 2 for x in (axis if isinstance(axis, tuple) else (axis,))}
            if axes == {0}:
                return self.reduce_sum(a) * b
            if axes == {1}:
                return a * self.reduce_sum(b)
        if isinstance(g, ops.matmul) and isinstance(axis, int) and not keepdims:
            pulled = self._stack_sum_of_product(g, axis)
            if pulled is not None:
                return pulled
        if isinstance(g, ops.transpose) and axis is not None and not keepdims:
            # sum(Aᵀ, axis=1) = sum(A, axis=0): the same entries added
            axes = {x % 2 for x in (axis if isinstance(axis, tuple) else (axis,))}
            if len(axes) == 1:
                return self.reduce_sum(g.args[0], 1 - axes.pop())
        if axis is None and not keepdims and isinstance(g, sp.Mul):
            # the whole sum of A ⊙ (e_i 𝟏ᵀ) is the sum of row i of A (DropConnect's
            # Var of one output: sum(W² ⊙ outer(e_1, 1)) is sum(W[1]²))
            picked = [
                f
                for f in g.args
                if isinstance(f, ops.outer)
                and isinstance(f.args[0], ops.unit)
                and isinstance(f.args[1], ops.ones)
            ]
            rest = sp.Mul(*[f for f in g.args if f not in picked[:1]])
            if len(picked) == 1 and len(self.shape(rest)) == 2:
                return self.reduce_sum(self._row(rest, picked[0].args[0].args[0]))
        squared = _units_squared(self, g) if axis is None and not keepdims else None
        if squared is not None:
            return squared  # ‖e_0 − e_1‖² = 2
        common = self._shared_factor(g, axis, keepdims)
        if common is not None:
            g = common  # A B + A C = A (B + C): then the product's rule below
        if (
            isinstance(g, ops.matmul)
            and axis is not None
            and not keepdims
            and len(self.shape(g)) == 2
            and all(len(self.shape(f)) == 2 for f in g.args)
        ):
            # 1ᵀ(A B) = (1ᵀA) B and (A B) 1 = A (B 1): the sum moves onto the factor
            # whose axis it runs over
            a, b = g.args
            axes = {x % 2 for x in (axis if isinstance(axis, tuple) else (axis,))}
            if axes == {0}:
                return self.mm(self.reduce_sum(a, 0), b)
            if axes == {1}:
                return self.mm(a, self.reduce_sum(b, 1))
        if (
            isinstance(g, sp.Mul)
            and len(g.args) == 2
            and axis in (1, -1)
            and not keepdims
            and sorted(len(self.shape(f)) for f in g.args) == [1, 2]
        ):
            # sum(X * w, axis=1) = X @ w: each row's entries times w's, added (a linear
            # model written with broadcasting, whose Hessian then has a matrix form)
            A, v = sorted(g.args, key=lambda f: -len(self.shape(f)))
            if self.shape(A)[1] == self.shape(v)[0]:
                return self.mm(A, v)
        scaled = self._outer_weighted(g, axis, keepdims)
        if scaled is not None:
            return scaled
        if (
            isinstance(g, sp.Mul)
            and len(g.args) == 2
            and axis in (0, -2)
            and not keepdims
            and any(_column(f) is not None for f in g.args)
        ):
            # sum(A * outer(u, 1), axis=0) = Aᵀ u: the adjoint of sum(X * w, axis=1)
            u_col = next(f for f in g.args if _column(f) is not None)
            A = next(f for f in g.args if f is not u_col)
            if len(self.shape(A)) == 2 and self.shape(A) == self.shape(u_col):
                return self.mm(self.T(A), _column(u_col))
        if isinstance(g, sp.Mul) and axis is not None:
            # linearity: a factor constant along the reduced axes comes out,
            # sum(gamma * G, axis=0) = gamma * sum(G, axis=0) for gamma: [n], G: [B, n]
            rank = len(self.shape(g))
            axes = tuple(sorted(a % rank for a in (axis if isinstance(axis, tuple) else (axis,))))
            outside = [f for f in g.args if self._constant_along(f, axes, rank)]
            if outside and len(outside) < len(g.args):
                inside = sp.Mul(*[f for f in g.args if f not in outside])
                if len(self.shape(inside)) == rank:
                    if not keepdims:  # its own size-1 axes among the reduced go too
                        outside = [self._squeeze_reduced(f, axes, rank) for f in outside]
                    return sp.Mul(*outside) * self.reduce_sum(inside, axis, keepdims)
        if isinstance(g, ops.ones) and axis is not None:
            # a sum of ones counts: sum(1_{m x n}, axis=0) = m 1_n
            shape = self.shape(g)
            axes = tuple(
                sorted(a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,)))
            )
            count = ops.size(tuple(shape[a] for a in axes))
            if keepdims:
                return count * self.ones(
                    tuple(sp.Integer(1) if i in axes else d for i, d in enumerate(shape))
                )
            return count * self.ones(tuple(d for i, d in enumerate(shape) if i not in axes))
        if isinstance(g, ops.ones) and axis is None and not keepdims:
            return ops.size(g.args)
        if (g in self.sums_to_one or _softmax_vector(self, g)) and axis is None and not keepdims:
            return sp.Integer(1)  # a simplex symbol, or a softmax of a vector
        if isinstance(g, ops.onehot) and not keepdims:
            rows = len(self.shape(g)) - 1
            if axis in (rows, -1) or (axis is None and rows == 0):
                return self.ones(self.shape(g.args[0]))  # each one-hot row sums to 1
        if (isinstance(g, ops.onehot) or g in self.rows_sum_to_one) and keepdims:
            # sum(onehot(y, k), axis=1, keepdims=True) of Z − logsumexp(Z, 1, keepdims)'s
            # gradient: ones of [B, 1], which softmax(Z) ⊙ it kept (F2, round 44)
            rows = len(self.shape(g)) - 1
            if rows > 0 and axis in (rows, -1):
                return self.ones((*self.shape(g)[:-1], sp.Integer(1)))
        if g in self.rows_sum_to_one and not keepdims:
            rows = len(self.shape(g)) - 1
            if axis in (rows, -1):
                return self.ones(self.shape(g)[:-1])
            if axis is None:
                return ops.size(self.shape(g)[:-1])
        if (
            isinstance(g, ops.tsum)
            and ops.keepdims(g)
            and not keepdims
            and axis is not None
            and ops.reduced_axes(g, self.shape(g.args[0]))
            == tuple(
                sorted(
                    a % len(self.shape(g)) for a in (axis if isinstance(axis, tuple) else (axis,))
                )
            )
        ):
            # summing axes of size 1 again: sum(sum(h, 0, keepdims), 0) = sum(h, 0)
            return self.reduce_sum(g.args[0], axis)
        if axis is None and not keepdims and isinstance(g, ops.unit):
            return sp.Integer(1)  # the unit vector e_i (a row of I)
        if axis is None and not keepdims and isinstance(g, sp.Add):
            # term by term where every term's sum has a closed form: sum(e_0 − 𝟏/B) = 0
            # (Cov[mean(x), x[0] − mean(x)] of i.i.d. entries)
            parts = [self.reduce_sum(t) for t in g.args]
            if not any(p.has(ops.tsum) for p in parts):
                return sp.Add(*parts)
        if axis is None and not keepdims:
            return ops.tsum(g)
        if axis is None:
            axis = tuple(range(len(self.shape(g))))
        ax = sp.Tuple(*map(sp.Integer, axis)) if isinstance(axis, tuple) else sp.Integer(axis)
        return ops.tsum(g, ax, sp.Integer(1)) if keepdims else ops.tsum(g, ax)

    def _broadcast_rows(self, factors, shape):
        """In an elementwise product of a full ``[m, n]`` shape, ``1 v^T`` (a vector
        copied down the rows, the adjoint of a column sum) is ``v`` itself, broadcast by
        NumPy's rules: the form papers write (``gamma * G``, not ``1 gamma^T * G``)."""
        if len(shape) != 2 or not any(self.shape(f) == shape for f in factors if not _is_rows(f)):
            return factors
        return [f.args[1] if _is_rows(f) else f for f in factors]

    def reduce_mean(self, a, axes: tuple):
        """``mean(a, axis=axes)`` as the parser builds it (an int for one axis)."""
        axis = sp.Integer(axes[0]) if len(axes) == 1 else sp.Tuple(*map(sp.Integer, axes))
        return ops.tmean(a, axis)

    def _broadcast_terms(self, terms, shape):
        """In a sum of full ``[m, n]`` shape, a term ``c 1 v^T`` is ``c v`` broadcast."""
        if len(shape) != 2:
            return terms
        out = []
        for t in terms:
            c, rest = self.split_scalar(t)
            if _is_rows(rest):
                out.append(c * rest.args[1])
            elif _is_row(rest, self.shape):  # v[None, :] is v, broadcast the same way
                out.append(c * rest.args[0])
            else:
                out.append(t)
        if not any(self.shape(t) == shape for t in out):
            return terms  # nothing left of the full shape: the rows must stay
        return out

    def _constants_joined(self, terms, shape):
        """In a sum of ``shape``, the scalars and the terms c 𝟏 of that shape, or of one
        that broadcasts to it, are one constant (c + s) 𝟏, which is 0 where they cancel:
        m 𝟏 − mean(m 𝟏) = 0 (the mean of x − mean(x) for x ~ N(m, s)), and m 𝟏[B, d] −
        m 𝟏[1, d] = 0 (of X − mean(X, axis=0, keepdims=True)). Left as they are with no
        c 𝟏 among them: a scalar added to a vector is the vector's business."""
        if not shape:
            return terms
        full, scalars, rest = [], [], []
        for t in terms:
            c, r = self.split_scalar(t)
            if self.shape(t) == ():
                scalars.append(t)
            elif (
                isinstance(r, ops.ones)
                and ops.broadcast(self.shape(r), shape) == shape
                and self.shape(c) == ()
            ):
                full.append(c)
            else:
                rest.append(t)
        if not full or len(full) + len(scalars) < 2:
            return terms
        total = sp.Add(*full, *scalars)
        return rest + ([total * self.ones(shape)] if total != 0 else [])

    def _broadcast_shape(self, args) -> tuple:
        shape: tuple = ()
        for a in args:
            shape = ops.broadcast(shape, self.shape(a))
        return shape

    def tidy(self, e):
        """Remove redundant ``ones`` factors: ``1 * v`` is ``v`` when v already has the
        shape, and ``1^k = 1``. Applied bottom-up after every rule (memoised: the rules
        and the simplifier's candidates share most subtrees)."""
        if not e.args or isinstance(e, ops.ones):
            return e
        return self._tidied.get(e, self._tidy)

    def _tidy(self, e):
        args = [self.tidy(a) for a in e.args]
        if isinstance(e, sp.Pow) and isinstance(args[0], ops.ones) and args[1].is_number:
            return args[0]
        # e_i's entries are 0 and 1: e_iᵏ = e_i (DropConnect's outer(e_i², 𝟏))
        if isinstance(e, sp.Pow) and isinstance(args[0], ops.unit) and args[1].is_positive:
            return args[0]
        # shapes from the tidied arguments: ``e`` itself may hold a product that is only
        # valid once a zero adjoint in it has been tidied away (``X^T @ 0``)
        if isinstance(e, sp.Add):
            shape = self._broadcast_shape(args)
            args = self._constants_joined(args, shape)
            return _rebuilt(e, sp.Add, self._broadcast_terms(_joined_scatters(args), shape))
        if isinstance(e, sp.Mul):
            shape = self._broadcast_shape(args)
            args = self._broadcast_rows(args, shape)
            keep = [a for a in args if not isinstance(a, ops.ones)]
            ones_factors = [a for a in args if isinstance(a, ops.ones)]
            if ones_factors and any(self.shape(a) == shape for a in keep):
                return sp.Mul(*keep)
            if len(ones_factors) > 1:  # 1[B, 1, d] * 1[B, T, d] is 1 of their broadcast
                return sp.Mul(*keep) * self.ones(shape)
            return _rebuilt(e, sp.Mul, sign_absorbed(args))
        if isinstance(e, ops.matmul):
            return self.mm(*args)
        if isinstance(e, ops.transpose):
            return self.T(args[0])
        if isinstance(e, ops.outer):
            return self.outer(*args)
        if isinstance(e, ops.diag) and len(self.shape(args[0])) == 1:
            return self.diag(args[0])
        # an entry of a constant c 𝟏 is c (E b[0] of b ~ N(mb, sb) is mb), and so is its
        # mean, whole or along axes (E[mean(x)] = mean(m 𝟏) = m; E[var(X, axis=0)] is
        # mean(c 𝟏, axis=0) = c 𝟏)
        if isinstance(e, (ops.entry, ops.tmean)):
            factors = sp.Mul.make_args(args[0])
            if isinstance(factors[-1], ops.ones) and all(self.shape(f) == () for f in factors[:-1]):
                return sp.Mul(*factors[:-1]) * self.ones(self.shape(e))
        if isinstance(e, ops.tmean) and isinstance(args[0], ops.outer) and not ops.keepdims(e):
            # mean(a bᵀ, axis=0) = mean(a) b, along axis 1 a mean(b) (a batch's columns of
            # one law: mean(outer(v, 𝟏), axis=0) = mean(v) 𝟏)
            a, b = args[0].args
            axes = ops.reduced_axes(e, self.shape(args[0]))
            if axes == (0,):
                return self.tidy(ops.tmean(a) * b)
            if axes == (1,):
                return self.tidy(a * ops.tmean(b))
        if isinstance(e, ops.tsum):
            # linearity (constant factors come out) and sums of ones, in reduce_sum
            axis = ops.keywords(e).get("axis")
            return self.reduce_sum(args[0], axis, ops.keepdims(e))
        return _rebuilt(e, e.func, args)


# The einsums that are operations the rules know (products, transposes, sums, traces),
# keyed by their subscripts with the letters renamed in order of appearance ('ij,j->i'
# is 'ab,b->a'): E[einsum('ij,j->i', W, x)] is then E[W @ x], by the matmul's rules.
EINSUM_AS_OPS = {
    "a->a": lambda alg, x: x,
    "ab->ab": lambda alg, a: a,
    "ab->ba": lambda alg, a: alg.T(a),
    "a->": lambda alg, x: ops.tsum(x),
    "ab->": lambda alg, a: ops.tsum(a),
    "ab->a": lambda alg, a: ops.tsum(a, sp.Integer(1)),
    "ab->b": lambda alg, a: ops.tsum(a, sp.Integer(0)),
    "aa->": lambda alg, a: ops.trace(a),
    "aa->a": lambda alg, a: ops.diag(a),
    "a,a->": lambda alg, x, y: alg.mm(x, y),
    "a,a->a": lambda alg, x, y: x * y,
    "a,b->ab": lambda alg, x, y: alg.outer(x, y),
    "ab,b->a": lambda alg, a, x: alg.mm(a, x),
    "a,ab->b": lambda alg, x, a: alg.mm(x, a),
    "ab,a->b": lambda alg, a, x: alg.mm(alg.T(a), x),
    "ab,bc->ac": lambda alg, a, b: alg.mm(a, b),
    "ab,ac->bc": lambda alg, a, b: alg.mm(alg.T(a), b),
    "ab,cb->ac": lambda alg, a, b: alg.mm(a, alg.T(b)),
    "ab,ab->ab": lambda alg, a, b: a * b,
    "ab,ab->": lambda alg, a, b: ops.tsum(a * b),
    "ab,ba->": lambda alg, a, b: ops.trace(alg.mm(a, b)),
    "a,ab,b->": lambda alg, x, a, y: alg.mm(alg.mm(x, a), y),
}


def einsum_as_ops(alg, e):
    """An einsum as the operations it computes (``EINSUM_AS_OPS``), or itself where it is
    none of them (a batched contraction stays one einsum)."""
    if not isinstance(e, layout.einsum):
        return e
    ins, out = layout.einsum_parts(e.args[0].name)
    names: dict = {}
    for c in "".join(ins) + out:
        names.setdefault(c, "abcdefghijklmnopqrstuvwxyz"[len(names)])
    key = (
        ",".join("".join(names[c] for c in t) for t in ins) + "->" + "".join(names[c] for c in out)
    )
    rule = EINSUM_AS_OPS.get(key)
    return e if rule is None else rule(alg, *e.args[1:])


def sign_absorbed(factors) -> list:
    """The factors of an entrywise product with uᵏ sign(u) as |u| uᵏ⁻¹ (k a positive
    integer): u sign(u) = |u| at every real u, 0 included. As given where there is none."""
    signs = [f for f in factors if isinstance(f, sp.sign)]
    if not signs:
        return factors
    out = list(factors)
    for s in signs:
        u = s.args[0]
        for i, f in enumerate(out):
            base, k = f.as_base_exp() if isinstance(f, sp.Pow) else (f, sp.Integer(1))
            if base == u and k.is_Integer and k > 0 and s in out:
                out[i] = sp.Abs(u) * u ** (k - 1)
                out.remove(s)
                break
    return out


def _rebuilt(e, func, args):
    """``func(*args)``, or ``e`` itself where ``args`` are its own: building a product
    again derives its assumptions again (half a millisecond for ``x**k``, most of a
    3000-define chain of products)."""
    if len(args) == len(e.args) and all(a is b for a, b in zip(args, e.args)):
        return e
    return func(*args)


def _joined_scatters(terms: list) -> list:
    """Scatters that tile one axis are a concatenation: the adjoint of a fused LSTM's gate
    slices ``Z[:, :H]``, ``Z[:, H:2*H]``, ... is ``concatenate([dI, dF, dG, dO], axis=1)``,
    as its authors write it, not a sum of zero-padded blocks."""
    scatters = [t for t in terms if isinstance(t, layout.scatter)]
    if len(scatters) < 2 or any(t.args[2] != scatters[0].args[2] for t in scatters):
        return terms
    dims = tuple(scatters[0].args[2])
    spans = []  # per scatter: the axis it covers part of, (start, stop), its block
    for t in scatters:
        items = tuple(t.args[1]) + tuple(sp.Tuple(0, d, 1) for d in dims[len(t.args[1]) :])
        if len(items) != len(dims) or not all(isinstance(i, sp.Tuple) for i in items):
            return terms
        partial = [(k, i) for k, (i, d) in enumerate(zip(items, dims)) if tuple(i) != (0, d, 1)]
        if len(partial) != 1 or partial[0][1][2] != 1:
            return terms
        k, (start, stop, _) = partial[0]
        spans.append((k, start, stop, t.args[0]))
    axis = spans[0][0]
    if any(k != axis for k, *_ in spans):
        return terms
    blocks, at = [], sp.Integer(0)
    while spans:  # chain the blocks from 0 to the axis' end; any gap or overlap: keep
        nxt = next((sp_ for sp_ in spans if sp.expand(sp_[1] - at) == 0), None)
        if nxt is None:
            return terms
        spans.remove(nxt)
        blocks.append(nxt[3])
        at = nxt[2]
    if sp.expand(at - dims[axis]) != 0:
        return terms
    rest = [t for t in terms if not isinstance(t, layout.scatter)]
    return rest + [layout.concatenate(sp.Integer(axis), *blocks)]


def _centred(alg, g, axis) -> bool:
    """Whether ``g`` is A − mean(A, axes) (times a number) with the mean's axes among the sum's
    ``axis`` (None: all), the mean broadcast back (keepdims, or a scalar): each line of
    entries it averaged then adds up to 0."""
    if not isinstance(g, sp.Add) or len(g.args) != 2:
        return False
    (c1, a), (c2, m) = (t.as_coeff_Mul() for t in g.args)  # numbers: a mean is a scalar
    if isinstance(a, ops.tmean):
        (c1, a), (c2, m) = (c2, m), (c1, a)
    if not isinstance(m, ops.tmean) or m.args[0] != a or c1 + c2 != 0:
        return False
    shape = alg.shape(a)
    averaged = ops.checked_axes(m.args, shape, "mean")
    if averaged is not None and not (len(m.args) > 2 and bool(m.args[2])):
        return False  # mean(A, axis=1) of [B, d] is [B]: broadcast against the last axis
    raw = sp.Tuple(*axis) if isinstance(axis, tuple) else axis
    summed = ops.checked_axes((a, raw) if axis is not None else (a,), shape, "sum")
    every = tuple(range(len(shape)))
    return set(averaged or every) <= set(summed or every)


def _units_squared(alg, g):
    """Σ_k c_k d_k + b Σ d + b' Σ c + b b' n, the whole sum of u ⊙ v for u = Σ c_i e_i +
    b 𝟏 and v = Σ d_j e_j + b' 𝟏 (the e_i standard basis vectors of one size n at
    integer positions; u = v for a square), times the scalar factors beside them, else
    None. The difference z[0] − z[1] read as (e_0 − e_1)ᵀ z has the squared norm 2; a
    deviation x[0] − mean(x), (e_0 − 𝟏/n)ᵀ x, has 1 − 1/n; and sum((x₀ e_0 + e_1) ⊙ e_1)
    of a covariance of two entries is 1 (it was left in the closed form)."""
    if isinstance(g, sp.Pow) and g.exp == 2:
        scalar, pair = sp.Integer(1), [g.base, g.base]
    elif isinstance(g, sp.Mul):
        pair = [f for f in g.args if alg.shape(f)]
        scalar = sp.Mul(*[f for f in g.args if not alg.shape(f)])
        if len(pair) != 2:
            return None
    else:
        return None
    parts = [_unit_combination(alg, f) for f in pair]
    if None in parts or parts[0][2] != parts[1][2]:
        return None
    (c, b, n), (d, b2, _) = parts
    total = sp.Add(*[c[k] * d[k] for k in c if k in d])
    total += b * sp.Add(*d.values()) + b2 * sp.Add(*c.values()) + b * b2 * n
    return scalar * total


def _unit_combination(alg, e):
    """({position: coefficient}, b, n) of e = Σ c_i e_i + b 𝟏 (vectors of size n, at
    distinct integer positions), else None."""
    terms = e.args if isinstance(e, sp.Add) else (e,)
    coefficients, b, sizes = {}, sp.Integer(0), set()
    for term in terms:
        c, v = alg.split_scalar(term)
        if isinstance(v, ops.ones) and len(v.args) == 1:
            b += c
            sizes.add(v.args[0])
            continue
        if not isinstance(v, ops.unit) or not v.args[0].is_Integer or v.args[0] in coefficients:
            return None
        coefficients[v.args[0]] = c
        sizes.add(v.args[1])
    if len(sizes) != 1 or not coefficients and b == 0:
        return None
    return coefficients, b, sizes.pop()
