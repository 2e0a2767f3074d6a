"""The derivation: results in matrix form, and the steps that lead to them.

Gradients: reverse mode over the ``define`` chain. The objective is
backpropagated first; then each intermediate, latest first, gets its adjoint
(one step each: the chain-rule form in terms of later adjoints, then its value);
finally each ``wrt`` symbol collects its adjoint (the composition step) and is
simplified. Jacobians and Hessians use the forward matrix-form rules, and fall
back to explicit entries at the spec's ``dims`` when none applies (and say so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from dlsym._errors import SpecError
from dlsym.calculus._rules import Jacobian, NoMatrixRule, backprop
from dlsym.calculus._simplify import simplify, tree_size
from dlsym.expr import _explicit as explicit
from dlsym.expr._algebra import nesting
from dlsym.spec._spec import Spec

# The steps' own symbols start with '_', which no spec name can (dlsym.expr._names): a
# symbol or define called 'ell' is not the loss, 'bar_z' not the adjoint of z
LOSS = sp.Symbol("_ell", real=True)  # the objective's name in the steps: \ell
OUTPUT = sp.Symbol("_f_out", real=True)  # the output's name in the steps: \mathbf{f}


@dataclass(frozen=True)
class Line:
    """``lhs = rhs[0] = rhs[1] = ...`` in one step; ``rel`` another relation than "="
    (">": the condition under which a stationary point exists, m > 0)."""

    lhs: Any
    rhs: tuple
    rel: str = "="


@dataclass(frozen=True)
class Step:
    title: str
    lines: tuple
    justification: str


@dataclass(frozen=True)
class Result:
    """One derived result for one ``wrt`` symbol."""

    kind: str
    wrt: str
    expr: Any  # in the spec's input symbols (self-contained)
    compact: Any  # in terms of the named intermediates
    shape: tuple  # SymPy dims (output.shape + wrt.shape for a Jacobian)
    method: str = "matrix form"
    entries: Any = None  # explicit fallback: object array of scalar entries
    entry_env: dict = field(default_factory=dict)  # symbol -> entry symbols (fallback)
    # a Hessian w.r.t. a matrix or tensor: ``expr`` is its action on this direction
    # (a Hessian-vector product, linear in it); its entries are that action at the unit
    # directions, laid out as jax.hessian lays them out (wrt.shape + wrt.shape)
    direction: Any = None
    # convexity: a Verdict (dlsym.calculus._second_order); ``expr`` is then the Hessian
    verdict: Any = None
    # a result about several wrt symbols at once: a block of the joint Hessian (a, b)
    # (layout a.shape + b.shape, as jax.hessian's), or a joint Taylor model or
    # convexity verdict (all of them); empty for a result about ``wrt`` alone
    over: tuple = ()
    # a stationary point solved with these other wrt symbols at their stationary values
    # put in (a joint one: verification checks them together)
    given: tuple = ()
    # a stationary point that exists only where each of these margins is > 0 (entry by
    # entry): the conditions on the other symbols under which its closed form is real
    # and inside the domain (calculus/_exists); verification draws points where they hold
    exists_where: tuple = ()
    # what the value holds only under, said beside it (a root of the ambient gradient of
    # a simplex symbol that is on the simplex for some values of the others only)
    caveat: str = ""

    @property
    def about(self) -> tuple:
        """The wrt symbols the result is about: a joint one's, or its own."""
        return self.over or (self.wrt,)


def joint_key(names) -> str:
    """How results about several wrt symbols are keyed (and named in JSON): "w,b"."""
    return ",".join(names)


def block_key(a: str, b: str) -> str:
    """The key of the joint Hessian's block ∂²ℓ/∂a∂b in a result dict."""
    return joint_key((a, b))


def result_key(r: Result) -> str:
    """A result's key in its kind's dict: its wrt symbol, or the symbols of a joint one."""
    return joint_key(r.about)


def adjoint_symbol(sym: sp.Symbol) -> sp.Symbol:
    return sp.Symbol(f"_bar_{sym.name}", real=True)


def direction_symbol(sym: sp.Symbol) -> sp.Symbol:
    """The direction a Hessian w.r.t. ``sym`` acts on (a leading '_': never a user's)."""
    return sp.Symbol(f"_dir_{sym.name}", real=True)


# the cotangent a Jacobian's transpose acts on (shape: the output's)
OUTPUT_DIRECTION = sp.Symbol("_dir_out", real=True)


def block_symbol(a: sp.Symbol, b: sp.Symbol) -> sp.Symbol:
    """The joint Newton step's name for the Hessian block of a and b, as a matrix."""
    return sp.Symbol(f"_H[{a.name},{b.name}]", real=True)


def gradient_symbol(a: sp.Symbol) -> sp.Symbol:
    """The joint Newton step's name for the gradient in a, as a vector."""
    return sp.Symbol(f"_g[{a.name}]", real=True)


# the joint Newton step of several wrt symbols, stacked ('_': never a spec's name)
NEWTON_STACKED = sp.Symbol("_newton_stacked", real=True)
# their joint stationary point where the gradients are jointly affine, stacked
STATIONARY_STACKED = sp.Symbol("_stationary_stacked", real=True)


def stacked_sizes(spec: Spec, names=None) -> list | None:
    """Each wrt symbol's (of ``names``, all by default) number of rows in a stacked
    system (a scalar: 1), or None where one is a matrix or tensor."""
    decls = [spec.symbol(n) for n in (spec.wrt if names is None else names)]
    if any(len(d.shape) > 1 for d in decls):
        return None
    return [d.shape[0] if d.shape else sp.Integer(1) for d in decls]


def derivation_algebra(spec: Spec, ambient: bool = True):
    """The spec's algebra, also knowing the adjoint symbols' shapes (each that of its
    intermediate) and the directions' (each that of its wrt symbol). A derived fact,
    kept beside the frozen spec, never added to it. ``ambient``: the wrt symbols' domain
    facts (S = Sᵀ, sum(p) = 1) left out, as while differentiating."""
    shape = spec.algebra.shape
    derived = {adjoint_symbol(d.symbol): shape(d.symbol) for d in spec.defines}
    for name in spec.wrt:
        sym = spec.symbol(name).symbol
        derived[direction_symbol(sym)] = shape(sym)
    if spec.output is not None:
        derived[OUTPUT_DIRECTION] = shape(spec.output)
    sizes = stacked_sizes(spec) if len(spec.wrt) > 1 else None
    if sizes is not None:  # the names the joint Newton step shows its system in
        syms = [spec.symbol(n).symbol for n in spec.wrt]
        for a, na in zip(syms, sizes):
            derived[gradient_symbol(a)] = (na,)
            for b, nb in zip(syms, sizes):
                derived[block_symbol(a, b)] = (na, nb)
        derived[NEWTON_STACKED] = (sp.Add(*sizes),)
        derived[STATIONARY_STACKED] = (sp.Add(*sizes),)
    # a wrt symbol on the simplex is differentiated in the ambient space (docs/spec.md):
    # sum(p) = 1 folded in its gradient would drop the -11ᵀ/sum(p)² of log(sum(p))'s
    # Hessian, which differentiates that gradient again
    wrt = frozenset(spec.symbol(n).symbol for n in spec.wrt) if ambient else frozenset()
    return spec.algebra.extended(derived, ambient=wrt)


# The derivation writes intermediates out in terms of the inputs (the results, which the
# generated code and the verification evaluate), and SymPy walks such expressions
# recursively, its cost growing with the square of the depth here: a chain of defines
# that nests deeper than this once written out (200 matrix products in a row, each
# using the one before: about 45 s) is refused at the define that reaches it, with the
# recursion limit that dlsym.derive sets (20000 frames) well above what it needs. A
# tanh MLP of depth 64 nests 128 deep.
MAX_EXPANDED_NESTING = 200


def _expanded_defines(spec: Spec) -> dict:
    """{define symbol: its body in the spec's symbols}, each written from the ones
    before it; a located error first where one would nest past MAX_EXPANDED_NESTING."""
    depth: dict = {}
    for d in spec.defines:
        depth[d.symbol] = nesting(d.expr, depth)
        if depth[d.symbol] > MAX_EXPANDED_NESTING:
            raise SpecError(
                f"define '{d.name}' nests {depth[d.symbol]} functions and products deep "
                f"once the intermediates it uses are written out; the derivation "
                f"substitutes them, and stops at {MAX_EXPANDED_NESTING} levels",
                spec.doc.key_loc("define", d.name),
            )
    expanded: dict = {}
    for d in spec.defines:
        expanded[d.symbol] = spec.algebra.tidy(d.expr.xreplace(expanded))
    return expanded


class Engine:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.alg = derivation_algebra(spec)
        self.inputs = {d.symbol for d in spec.symbols}
        self.steps: list[Step] = []
        # each intermediate's body in the spec's symbols: expanding is then one
        # substitution, whatever the depth; built once per spec, since the derivation,
        # verification and each generated function all take an engine of their own
        # (keyed by the defines too: specs made from one with dataclasses.replace share
        # its algebra)
        memo = spec.algebra.memo.setdefault("expanded defines", {})
        if spec.defines not in memo:
            memo[spec.defines] = _expanded_defines(spec)
        self._expanded: dict = memo[spec.defines]
        self._names: dict | None = None  # body (expanded or as written) -> name
        self._quotient_list: list | None = None

    # -- names <-> bodies ------------------------------------------------------

    def expand(self, e):
        """Substitute every intermediate by its definition."""
        return self.alg.tidy(e.xreplace(self._expanded)) if self._expanded else e

    def fold(self, e):
        """Write an expression with the intermediates' names where their bodies occur,
        also inside a larger sum (``b + W h - y`` is ``yhat - y`` when ``yhat = W h + b``).

        One substitution of every body at once: it matches from the top down, so the
        outermost body that occurs is named (an intermediate's whole body, not the ones
        nested in it), which is what naming the bodies one define at a time in order
        gives, in one walk instead of one per define. Sums and powers, which can also
        occur as parts of larger ones, get a walk of their own."""
        if self._names is None:
            self._names = {}
            parts = []  # (sum or power body, name), in the defines' order
            for d in self.spec.defines:
                for body in (self._expanded[d.symbol], d.expr):
                    self._names.setdefault(body, d.symbol)
                    parts.append((body, d.symbol))
            self._parts = _Parts(parts)
        return self._fold_quotients(self._parts.fold(e.xreplace(self._names)))

    def _fold_quotients(self, e):
        """Where a name is a quotient, ``xhat = (X - mu) / sigma``, its numerator reads
        ``sigma * xhat`` (kept only where that is shorter): batch norm's backward pass
        in its compact form, in x-hat."""
        for numerator, named in self._quotients():
            folded = self.alg.tidy(e.xreplace({numerator: named}))
            if sp.count_ops(folded) < sp.count_ops(e):
                e = folded
        return e

    def _quotients(self) -> list:
        """(numerator, denominator x name) of each intermediate that is a sum over one
        symbol, found once."""
        if self._quotient_list is None:
            self._quotient_list = []
            for d in self.spec.defines:
                body = d.expr
                if not isinstance(body, sp.Mul):
                    continue
                dens = [f for f in body.args if isinstance(f, sp.Pow) and f.exp == -1]
                if len(dens) != 1 or not dens[0].base.is_Symbol:
                    continue
                numerator = body * dens[0].base
                if isinstance(numerator, sp.Add):
                    self._quotient_list.append((numerator, dens[0].base * d.symbol))
        return self._quotient_list

    # -- gradient --------------------------------------------------------------

    def gradient(self) -> dict:
        try:
            return self._matrix_gradient()
        except NoMatrixRule as exc:
            # e.g. logsumexp(X, axis=1): no matrix-form rule yet, so explicit entries
            spec = self.spec
            self.steps = [s for s in self.steps if s.title == "Objective"][:1]
            return {
                name: self._explicit(
                    "gradient",
                    spec.objective,
                    spec.symbol(name),
                    f"Gradient with respect to {name}",
                    ("grad", spec.symbol(name).symbol),
                    f"no matrix-form rule ({exc})",
                )
                for name in spec.wrt
            }

    def _matrix_gradient(self) -> dict:
        spec, alg = self.spec, self.alg
        defines = spec.defines
        active = self.inputs | {d.symbol for d in defines}
        rules: list = []
        # each symbol's contributions, summed once it is reached: adding each to a
        # growing sum would rebuild it every time (a symbol used by n defines: n^2)
        contributions = {
            sym: [c]
            for sym, c in backprop(alg, spec.objective, sp.Integer(1), active, rules).items()
        }
        # the rules each adjoint's contributions went through, by the symbol they reach:
        # a step names the rules that produced it, not the last ones used
        why_of = {sym: list(rules) for sym in contributions}
        self.steps.append(
            Step(
                "Objective",
                (Line(LOSS, (spec.objective,)),)
                + tuple(Line(d.symbol, (d.expr,)) for d in defines),
                "the forward pass: each named intermediate in order"
                if defines
                else "the function to differentiate",
            )
        )
        values: dict = {}
        for d in reversed(defines):
            bar = adjoint_symbol(d.symbol)
            local = alg.tidy(sp.Add(*contributions.pop(d.symbol, [])))
            value = simplify(alg, self.fold(alg.tidy(local.xreplace(values))))
            values[bar] = value
            why = "; ".join(["chain rule", *why_of.pop(d.symbol, [])])
            self.steps.append(
                Step(
                    f"Adjoint of {d.name}",
                    (Line(bar, shown_forms((self.fold(local), value))),),
                    why,
                )
            )
            rules = []
            for sym, contrib in backprop(alg, d.expr, bar, active, rules).items():
                contributions.setdefault(sym, []).append(contrib)
                seen = why_of.setdefault(sym, [])
                seen += [r for r in rules if r not in seen]
        results = {}
        for name in spec.wrt:
            decl = spec.symbol(name)
            chain = alg.tidy(sp.Add(*contributions.get(decl.symbol, [])))
            compact = simplify(alg, self.fold(alg.tidy(chain.xreplace(values))))
            full = simplify(alg, self.expand(compact))
            used = why_of.get(decl.symbol, [])
            why = "; ".join(["chain rule: compose the adjoints", *used])
            self.steps.append(
                Step(
                    f"Gradient with respect to {name}",
                    (Line(("grad", decl.symbol), shown_forms((self.fold(chain), compact, full))),),
                    why,
                )
            )
            results[name] = Result("gradient", name, full, compact, decl.shape)
        return results

    # -- Jacobian and Hessian ----------------------------------------------------------

    def _matrix_jacobian(self, kind, expr, decl, title, lhs, lead, shape):
        rules: list = []
        jac = Jacobian(self.alg, decl.symbol, rules)(self.expand(expr))
        full = simplify(self.alg, jac)
        compact = simplify(self.alg, self.fold(full))
        self.steps.append(
            Step(title, (Line(lhs, shown_forms((compact, full))),), "; ".join([lead] + rules))
        )
        return Result(kind, decl.name, full, compact, shape)

    def _explicit(self, kind, expr, decl, title, lhs, reason, second=False):
        spec = self.spec
        env = {
            s.symbol: explicit.entry_symbols(
                s.name, s.symbol, tuple(int(d.subs(spec.dim_values)) for d in s.shape)
            )
            for s in spec.symbols
        }
        env.update({spec.dim_symbols[k]: sp.Integer(v) for k, v in spec.dims.items()})
        try:
            values = explicit.expand(self.expand(expr), env)
        except NotImplementedError as exc:
            raise SpecError(
                f"cannot derive the {kind} with respect to {decl.name}: {reason}, and {exc}",
                spec.doc.loc("derive"),
            ) from None
        entries = explicit.jacobian_entries(values, env[decl.symbol])
        if second:  # True: the same symbol again; a declaration: the block with that one
            again = decl if second is True else second
            entries = explicit.jacobian_entries(entries, env[again.symbol])
        entries = (
            np.vectorize(sp.simplify, otypes=[object])(entries) if entries.size <= 64 else entries
        )
        sizes = ", ".join(f"{k}={v}" for k, v in spec.dims.items())
        method = f"explicit entries at {sizes}"
        shape = tuple(sp.Integer(n) for n in entries.shape)
        # shown with the entries as the language writes them (X[0, 1], not _e_X_0_1)
        shown = np.vectorize(lambda e: e.xreplace(explicit.readable_entries(env)), otypes=[object])(
            entries
        )
        self.steps.append(
            Step(
                title,
                (
                    Line(
                        lhs,
                        (
                            sp.ImmutableDenseNDimArray(shown.tolist())
                            if shown.ndim > 2
                            # a scalar's one entry as a 1 × 1 (a 0-d array has no shape[0])
                            else sp.ImmutableMatrix(
                                shown.reshape(shown.shape[0] if shown.ndim else 1, -1).tolist()
                            ),
                        ),
                    ),
                ),
                f"{reason}; {method}, by sympy.diff",
            )
        )
        return Result(kind, decl.name, None, None, shape, method, entries, env)

    def jacobian(self) -> dict:
        spec = self.spec
        out = {}
        self.steps.append(
            Step(
                "Output",
                (Line(OUTPUT, (spec.output,)),)
                + tuple(Line(d.symbol, (d.expr,)) for d in spec.defines),
                "the function whose Jacobian we take",
            )
        )
        for name in spec.wrt:
            decl = spec.symbol(name)
            title, lhs = f"Jacobian with respect to {name}", ("jac", decl.symbol)
            out_shape = tuple(self.alg.shape(spec.output))
            if decl.shape == ():
                out[name] = self._jacobian_of_scalar(decl, title, lhs, out_shape)
                continue
            try:
                if len(decl.shape) != 1 or len(out_shape) != 1:
                    raise NoMatrixRule(f"'{name}' or the output is not a vector")
                out[name] = self._matrix_jacobian(
                    "jacobian",
                    spec.output,
                    decl,
                    title,
                    lhs,
                    "Jacobian of the output, rule by rule",
                    out_shape + decl.shape,
                )
            except NoMatrixRule:
                # a matrix or tensor on either side (or a vector map through a matrix
                # that depends on x): the Jacobian's transpose, as its action on a
                # cotangent, in reverse mode like a gradient
                out[name] = self._jacobian_by_directions(decl, title)
        return out

    def _jacobian_of_scalar(self, decl, title, lhs, out_shape) -> Result:
        """``df/dt`` for a scalar ``t``: an array of the output's shape (jax.jacobian's
        layout, output.shape + ()). The action of its transpose on a cotangent U,
        ``sum(U * df/dt)``, is linear in U, so the Jacobian is that action's gradient in
        U: both by the gradient rules, and no direction left in the result."""
        rules: list = []
        inner = self.alg.reduce_sum(self.expand(self.spec.output) * OUTPUT_DIRECTION)
        action = backprop(self.alg, inner, sp.Integer(1), {decl.symbol}, rules)
        action = action.get(decl.symbol, sp.Integer(0))
        jac = backprop(self.alg, action, sp.Integer(1), {OUTPUT_DIRECTION}, rules)
        full = simplify(self.alg, jac.get(OUTPUT_DIRECTION, sp.Integer(0)))
        compact = simplify(self.alg, self.fold(full))
        why = "the derivative of each entry of the output with respect to a scalar"
        self.steps.append(
            Step(title, (Line(lhs, shown_forms((compact, full))),), "; ".join([why, *rules]))
        )
        return Result("jacobian", decl.name, full, compact, out_shape)

    def _jacobian_by_directions(self, decl, title) -> Result:
        """The Jacobian of the output ``f`` w.r.t. ``x`` (any shapes) as the action of its
        transpose on a cotangent ``U`` of the output's shape: ``J^T[U] = grad_x
        sum(f * U)``, the gradient rules applied once. Its entries, laid out as
        jax.jacobian's (output.shape + x.shape), are that action at each unit cotangent."""
        why = (
            "the Jacobian of a matrix- or tensor-valued map is written as its "
            "transpose's action on a cotangent $\\Delta$ of the output's shape, the "
            "gradient of $\\mathrm{sum}(\\mathbf{f} \\odot \\Delta)$; its entries, laid "
            "out as jax.jacobian's, are that action at each unit cotangent"
        )
        shape = tuple(self.alg.shape(self.spec.output)) + decl.shape
        value = self.expand(self.spec.output)
        return self._by_directions("jacobian", value, OUTPUT_DIRECTION, decl, title, why, shape)

    def _by_directions(self, kind, value, direction, decl, title, why, shape, lhs=None) -> Result:
        """``grad_x sum(value * direction)``: the action of a Jacobian's transpose (of a
        Hessian, when ``value`` is a gradient) on ``direction``, in matrix form, and its
        step."""
        lhs = lhs or ("hvp" if kind == "hessian" else "vjp", decl.symbol)
        inner = self.alg.reduce_sum(value * direction)
        full, compact = self._differentiated(inner, decl, title, lhs, why)
        return Result(kind, decl.name, full, compact, shape, direction=direction)

    def _differentiated(self, scalar, decl, title, lhs, why) -> tuple:
        """(full, compact) gradient of ``scalar`` w.r.t. ``decl`` by the reverse-mode
        rules, and its step (``why``, then the rules it used): a scalar's second
        derivative, a Hessian block with a scalar, an action on a direction."""
        rules: list = []
        back = backprop(self.alg, scalar, sp.Integer(1), {decl.symbol}, rules)
        full = simplify(self.alg, back.get(decl.symbol, sp.Integer(0)))
        compact = simplify(self.alg, self.fold(full))
        line = Line(lhs, shown_forms((compact, full)))
        self.steps.append(Step(title, (line,), "; ".join([why, *rules])))
        return full, compact

    def hessian(self, gradients: dict, name: str | None = None) -> dict:
        """{name: the Hessian w.r.t. ``name``}, the spec's one wrt symbol by default
        (a stationary point takes each of several in turn)."""
        spec = self.spec
        if name is None:
            (name,) = spec.wrt
        decl = spec.symbol(name)
        grad = gradients[name].expr
        title, lhs = f"Hessian with respect to {name}", ("hess", decl.symbol)
        try:
            if grad is None:
                raise NoMatrixRule("the gradient itself is explicit entries")
            if decl.shape == ():
                why = "differentiate the derivative once more"
                full, compact = self._differentiated(grad, decl, title, lhs, why)
                return {name: Result("hessian", name, full, compact, ())}
            if len(decl.shape) != 1:
                return {name: self._hessian_by_directions(grad, decl, title)}
            try:
                # the layout is wrt.shape + wrt.shape even where the gradient is a constant
                return {
                    name: self._matrix_jacobian(
                        "hessian",
                        grad,
                        decl,
                        title,
                        lhs,
                        "the Hessian is the Jacobian of the gradient",
                        decl.shape + decl.shape,
                    )
                }
            except NoMatrixRule:
                # a gradient that no forward rule reads (a logsumexp of an outer product of
                # w, Huber on a rank-3 batch) still has its action H[Δ] by reverse mode
                # once more: the explicit entries were tied to the dims, and ran past the
                # budget at small sizes
                return {name: self._hessian_by_directions(grad, decl, title)}
        except NoMatrixRule as exc:
            return {
                name: self._explicit(
                    "hessian",
                    spec.objective,
                    decl,
                    title,
                    lhs,
                    f"no matrix-form rule ({exc})",
                    second=True,
                )
            }

    def hessian_block(self, gradients: dict, a: str, b: str) -> Result:
        """The block ∂²ℓ/∂a∂b of the joint Hessian of several wrt symbols, laid out as
        jax.hessian's (a.shape + b.shape): the derivative of one gradient w.r.t. the
        other symbol. A scalar on either side makes it a gradient (of the scalar one's
        derivative), two vectors a Jacobian; with a matrix or tensor on either side it
        is the action ``H_ab[Δ] = ∇_b ⟨∇_a ℓ, Δ⟩`` on a direction of a's shape, whose
        entries at the unit directions are laid out a.shape + b.shape."""
        spec = self.spec
        da, db = spec.symbol(a), spec.symbol(b)
        ga, gb = gradients[a].expr, gradients[b].expr
        title = f"Hessian block with respect to {a} and {b}"
        lhs = ("hess", da.symbol, db.symbol)
        shape = da.shape + db.shape
        why = f"differentiate the gradient in {a} with respect to {b}"
        try:
            if ga is None or gb is None:
                raise NoMatrixRule("a gradient itself is explicit entries")
            if db.shape == () or da.shape == ():
                # the scalar one's derivative (a scalar) differentiated w.r.t. the other
                scalar, other = (gb, da) if db.shape == () else (ga, db)
                full, compact = self._differentiated(scalar, other, title, lhs, why)
                result = Result("hessian", a, full, compact, shape)
            elif (
                len(da.shape) == 1
                and len(db.shape) == 1
                and (result := self._vector_block(ga, db, title, lhs, shape, b, a))
            ):
                pass
            else:
                why = (
                    f"a block with {_acted_on(max(len(da.shape), len(db.shape)))} "
                    f"is written as its action on a direction $\\Delta$ shaped like {a} (the "
                    f"gradient in {b} of the inner product of the gradient in {a} with "
                    "$\\Delta$); its entries, laid out as jax.hessian's, are that action at "
                    "each unit direction"
                )
                direction = direction_symbol(da.symbol)
                lhs = ("hvp", da.symbol, db.symbol)
                result = self._by_directions("hessian", ga, direction, db, title, why, shape, lhs)
                result = dataclasses.replace(result, wrt=a)
        except NoMatrixRule as exc:
            result = self._explicit(
                "hessian", spec.objective, da, title, lhs, f"no matrix-form rule ({exc})", second=db
            )
        return dataclasses.replace(result, over=(a, b))

    def _vector_block(self, ga, db, title, lhs, shape, b, a) -> Result | None:
        """The block of two vectors as the Jacobian of a's gradient in b, or None where
        the forward rules have none (then it is an action, as a matrix's block is)."""
        try:
            result = self._matrix_jacobian(
                "hessian", ga, db, title, lhs, f"the Jacobian in {b} of the gradient in {a}", shape
            )
        except NoMatrixRule:
            return None
        return dataclasses.replace(result, wrt=a)  # the block's first symbol

    def _hessian_by_directions(self, grad, decl, title) -> Result:
        """The Hessian w.r.t. a matrix or tensor ``W`` (or a vector whose gradient no
        forward rule reads), a 4-way (or more) tensor, as its
        action on a direction: ``H[V] = grad_W sum(grad_W(l) * V)``, reverse mode once
        more through the gradient (H is symmetric, so this is H V). It stays in matrix
        form; its entries are H at the unit directions."""
        why = (
            f"a Hessian w.r.t. {_acted_on(len(decl.shape))} is "
            "written as its action on a direction $\\Delta$ (the gradient of "
            "$\\langle \\nabla \\ell, \\Delta \\rangle$); its entries, laid out as "
            "jax.hessian's, are that action at each unit direction"
        )
        direction = direction_symbol(decl.symbol)
        shape = decl.shape + decl.shape
        return self._by_directions("hessian", grad, direction, decl, title, why, shape)


def _acted_on(rank: int) -> str:
    """What a Hessian written as an action is taken in, by the rank of its symbol."""
    return {1: "a vector whose gradient has no forward-mode Jacobian rule", 2: "a matrix"}.get(
        rank, "a tensor"
    )


class _Parts:
    """Names for parts of larger sums and powers, in one walk whatever the number of
    intermediates: ``b + W h - y`` is ``yhat - y`` when ``yhat = W h + b`` (the terms of
    a sum body inside a larger sum), ``(v + eps)^(3/2)`` is ``sigma^3`` when ``sigma =
    sqrt(v + eps)`` (whole multiples of a power body's exponent). Bodies are indexed by
    their terms and bases, so each node of the walk looks only at the bodies it can
    hold; at a node they apply in the defines' order, each seeing the previous one's
    result, as naming them one define at a time did."""

    def __init__(self, bodies):
        self.sums: list = []  # (terms, name)
        self.by_term: dict = {}  # a term -> indices into sums
        self.by_base: dict = {}  # a base -> [(exponent, name)]
        for body, name in bodies:
            if isinstance(body, sp.Add):
                for t in body.args:
                    self.by_term.setdefault(t, []).append(len(self.sums))
                self.sums.append((frozenset(body.args), name))
            elif isinstance(body, sp.Pow) and body.exp.is_Rational:
                self.by_base.setdefault(body.base, []).append((body.exp, name))

    def fold(self, e):
        if not self.sums and not self.by_base:
            return e
        memo: dict = {}

        def walk(x):
            if not x.args:
                return x
            if x in memo:
                return memo[x]
            args = [walk(a) for a in x.args]
            out = x.func(*args) if any(a is not b for a, b in zip(args, x.args)) else x
            if isinstance(out, sp.Add):
                out = self._sum(out)
            if isinstance(out, sp.Pow) and out.base in self.by_base and out.exp.is_Rational:
                for p, name in self.by_base[out.base]:
                    k = out.exp / p
                    if k.is_Integer:
                        out = name**k
                        break
            memo[x] = out
            return out

        return walk(e)

    def _sum(self, x):
        done: set = set()
        while isinstance(x, sp.Add):
            args = set(x.args)
            candidates = sorted(
                {i for t in x.args for i in self.by_term.get(t, ()) if i not in done}
            )
            for i in candidates:
                terms, name = self.sums[i]
                done.add(i)
                if terms <= args and terms != args:
                    x = name + sp.Add(*(args - terms))
                    break
            else:
                return x
        return x


# A step shows a later form of a line (the chain substituted, everything in the inputs)
# only while it stays readable: written as a tree, the fully substituted gradient of a
# deep network grows with its depth much faster than the spec, and printing it would
# cost more than the derivation. The first form, in the named intermediates, is always
# shown; results keep every form (code generation shares their common parts).
MAX_SHOWN_NODES = 3000
# nor one nested deeper than this (functions and products inside each other): a 2-D
# printout grows with the square of the nesting, and a form 24 levels deep (an MLP's
# input adjoint at depth 8) is as far as anyone reads one
MAX_SHOWN_NESTING = 24


def in_matrix_form(spec: Spec, kind: str, target, names) -> dict:
    """{name: the gradient (``kind`` "gradient", ``target`` a scalar) or the Jacobian
    ("jacobian", a tensor) of ``target`` with respect to each of ``names``}, by the
    engine on ``spec`` with ``target`` in place of its objective or output: what the
    moments and recurrences take one step's derivative with. NoMatrixRule, naming the
    symbol, where a result is explicit entries instead."""
    role = (
        {"objective": target, "output": None}
        if kind == "gradient"
        else {
            "objective": None,
            "output": target,
        }
    )
    sub = dataclasses.replace(spec, **role, wrt=tuple(names), derive=(kind,))
    engine = Engine(sub)
    results = engine.gradient() if kind == "gradient" else engine.jacobian()
    for name, r in results.items():
        if r.method != "matrix form":
            raise NoMatrixRule(f"the {kind} with respect to {name} ({r.method})")
    return {name: r.expr for name, r in results.items()}


def shown_forms(exprs) -> tuple:
    out = []
    for e in exprs:
        if not out or (
            out[-1] != e
            and tree_size(e, MAX_SHOWN_NODES) <= MAX_SHOWN_NODES
            and nesting(e) <= MAX_SHOWN_NESTING
        ):
            out.append(e)
    return tuple(out)
