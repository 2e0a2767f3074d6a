"""Results built on the gradient and the Hessian: the Newton step, the second-order
Taylor model, the stationary point and convexity.

- ``newton_step``: Δ = −H⁻¹ g (a scalar: −g / h), in matrix form, for a scalar or a
  vector ``wrt``. For a matrix the step solves H[Δ] = −G, a system with one unknown per
  entry and no matrix form in general: refused, with that said.
- ``taylor``: ℓ(x + Δ) ≈ ℓ + ⟨g, Δ⟩ + ½ ⟨Δ, H[Δ]⟩ for a ``wrt`` of any shape (for a
  vector ⟨Δ, H[Δ]⟩ is Δᵀ H Δ; for a matrix H[Δ] is the Hessian's action, which the
  Hessian step derives).
- ``stationary``: g = 0 solved where g is affine in its ``wrt`` symbol: the Hessian does
  not depend on it, so g = H x + r with r = g at x = 0, and x* = −H⁻¹ r. For a matrix X
  the Hessian's action H[Δ] must be Δ M, M Δ or c Δ (M, c free of X): X* = −r M⁻¹,
  −M⁻¹ r or −r / c (the Kalman gain K M = N is the first). A nonlinear gradient that
  holds x only elementwise is solved entry by entry (one scalar equation, one root: the
  optimal GAN discriminator). Anything else, kinks (|x|: its second derivative is 0
  almost everywhere, so the gradient only looks affine), or conditions that couple
  several ``wrt`` symbols, is said to have no closed form, never guessed.
- ``convexity``: a proof that the Hessian is PSD (``_convexity``), or undecided here; the
  calculus section searches for a counterexample numerically.

Each writes its step; verification checks each against JAX (``sections/calculus``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import sympy as sp

from dlsym._budget import TimeLimit, within
from dlsym.calculus._affine import (
    SECONDS_TO_SOLVE,
    NoClosedForm,
    Singular,
    as_scalar,
    chain_product,
    elementwise_in,
    inverse,
    kinked_in,
    product_chain,
    rank_at_most,
    roots,
    unwritten,
    zero_out,
)
from dlsym.calculus._convexity import (
    constant_form_matrix,
    provably_nonnegative,
    provably_psd,
    psd_action,
    psd_terms,
)
from dlsym.calculus._curvature import convex_by_composition, split_domain
from dlsym.calculus._derive import (
    LOSS,
    NEWTON_STACKED,
    STATIONARY_STACKED,
    Engine,
    Line,
    Result,
    Step,
    block_key,
    block_symbol,
    direction_symbol,
    gradient_symbol,
    joint_key,
    shown_forms,
    stacked_sizes,
)
from dlsym.calculus._exists import IN_DOMAIN, margins, positive
from dlsym.calculus._rules import backprop
from dlsym.calculus._simplify import simplify
from dlsym.calculus._special_values import singular_inside
from dlsym.expr import _layout as layout
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import einsum_as_ops
from dlsym.expr._elementwise import elementary
from dlsym.expr._ops import tensor_symbols
from dlsym.expr._shapes import ShapeError

# how a stationary point was found: an affine gradient solved in matrix form, or an
# elementwise one solved entry by entry (verification checks them differently)
AFFINE = "matrix form"
ENTRYWISE = "entrywise root"
# ... the one of several roots where the second derivative is positive (checked as such)
MINIMUM = "entrywise root, the one local minimum"
THROUGH_INVERSE = "root through the inverse"  # a matrix that enters only as X^{-1}
JOINT_ROOT = "root of the joint system"  # scalars solved together (checked jointly)
# the methods whose stationary point verification checks as a root of the gradient
ROOTS = (ENTRYWISE, MINIMUM, THROUGH_INVERSE)
# the method a stationary point without a closed form is given as (the result has no value)
NO_CLOSED_FORM = "no closed form"
# what its step shows in place of a value ('_': never a spec's name)
NONE = sp.Symbol("_none")
NOWHERE = sp.Symbol("_nowhere")  # a stationary point outside the domain
# the method of a Newton step through a singular (or 0) Hessian: no step exists
NOT_DEFINED = "not defined"
UNDEFINED = sp.Symbol("_undefined")
# what a result without a value shows, by its method's first words (else NOWHERE)
NO_VALUE = {NO_CLOSED_FORM: NONE, NOT_DEFINED: UNDEFINED}
# the domains whose points sum to 1 (each row, for a matrix)
SUMS_TO_ONE = ("simplex", "onehot")


class _Undefined(NotImplementedError):
    """The Newton step −H⁻¹g does not exist: H is singular or 0 (a plain
    NotImplementedError: it may exist, but has no matrix form here)."""


def _result(engine: Engine, kind, decl, full, title, lhs, why, shape=None, where=()) -> Result:
    """The Result ``full`` (simplified) and its step; ``where``: margins shown after it
    as conditions m > 0."""
    alg = engine.alg
    full = simplify(alg, alg.tidy(full))
    compact = simplify(alg, engine.fold(full))
    # the written-out form only while it stays readable, as every step shows it
    conditions = tuple(Line(m, (sp.Integer(0),), ">") for m in where)
    engine.steps.append(Step(title, (Line(lhs, shown_forms((compact, full))), *conditions), why))
    return Result(kind, decl.name, full, compact, decl.shape if shape is None else shape)


def newton_step(engine: Engine, grads: dict, hessians: dict) -> dict:
    """The Newton step for each wrt symbol, or a result without a value that says why
    there is none: the spec's other results stand (a singular Hessian used to end the
    whole spec, its Hessian and convexity verdict with it)."""
    try:
        if len(engine.spec.wrt) > 1:
            return _joint_newton_step(engine, grads, hessians)
        return _newton_step_alone(engine, grads, hessians)
    except NotImplementedError as exc:
        first = NOT_DEFINED if isinstance(exc, _Undefined) else NO_CLOSED_FORM
        decls = [engine.spec.symbol(n) for n in engine.spec.wrt]
        lines = tuple(Line(("newton", d.symbol), (NO_VALUE[first],)) for d in decls)
        reason = f"{first}: {exc}"
        engine.steps.append(Step(f"Newton step for {', '.join(engine.spec.wrt)}", lines, reason))
        return {d.name: Result("newton_step", d.name, None, None, d.shape, reason) for d in decls}


def _newton_step_alone(engine: Engine, grads: dict, hessians: dict) -> dict:
    (name,) = engine.spec.wrt
    decl, alg = engine.spec.symbol(name), engine.alg
    g, h = grads[name].expr, hessians[name]
    title = f"Newton step for {name}"
    if g is None or h.expr is None:
        raise NotImplementedError("the gradient or the Hessian has no matrix form here")
    if h.expr == 0:
        raise _Undefined(
            "the Hessian is 0 (the objective is linear, or piecewise linear as relu and abs "
            f"are, in {name}): the second-order model has no minimiser to step to"
        )
    if decl.shape == ():
        full = -g / h.expr
        why = r"the minimiser of the second-order model: $\Delta = -g / h$ ($h \neq 0$)"
    elif len(decl.shape) == 1 and h.direction is None and h.expr is not None:
        try:
            full = -alg.mm(inverse(alg, h.expr), g)
        except Singular as exc:  # X 2×3 in ‖X w − y‖²: the step is not unique
            raise _Undefined(f"the Hessian is singular: {exc}") from exc
        why = r"the minimiser of the second-order model: $\Delta = -H^{-1} g$ ($H$ invertible)"
    elif len(decl.shape) == 2 and h.direction is not None:
        # H[Δ] + G = 0 is the stationary condition's form with G for R: Δ M, M Δ, L Δ R
        try:
            full, _, _ = _matrix_solved(alg, name, h.expr, g, h.direction)
        except NoClosedForm as exc:
            raise NotImplementedError(
                # the reasons are prose for LaTeX ($\Delta M$); an error is plain text
                f"the Newton step w.r.t. {name} solves H[Δ] = −G, and "
                f"{exc.text(str).replace('$', '').replace(chr(92) + 'Delta', 'Δ')}; derive "
                "the hessian (its action H[Δ]) and solve it numerically"
            ) from exc
        why = (
            r"the minimiser of the second-order model: $H[\Delta] = -G$ ($G$ the gradient), "
            r"whose action is $\Delta M$, $M \Delta$ or $L \Delta R$ with the factors free "
            r"of $\Delta$, solved for $\Delta$ through their inverses"
        )
    else:
        raise NotImplementedError(
            "the Newton step w.r.t. a matrix or tensor solves H[Δ] = −G, one unknown per "
            "entry, with no matrix form in general; derive the hessian (its action H[Δ]) "
            "and solve it numerically"
        )
    return {name: _result(engine, "newton_step", decl, full, title, ("newton", decl.symbol), why)}


def taylor(engine: Engine, grads: dict, hessians: dict) -> dict:
    """ℓ + ⟨g, Δ⟩ + ½ ⟨Δ, H[Δ]⟩ with Δ the wrt symbol's direction symbol."""
    if len(engine.spec.wrt) > 1:
        return _joint_taylor(engine, grads, hessians)
    (name,) = engine.spec.wrt
    spec, alg = engine.spec, engine.alg
    decl = spec.symbol(name)
    delta = direction_symbol(decl.symbol)
    g, h = grads[name].expr, hessians[name]
    f = engine.expand(spec.objective)
    if g is None or h.expr is None:
        raise NotImplementedError("the gradient or the Hessian has no matrix form here")
    if decl.shape == ():
        full = f + g * delta + h.expr * delta**2 / 2
    elif h.direction is None:  # a vector: H is a matrix
        full = f + alg.mm(g, delta) + alg.mm(delta, alg.mm(h.expr, delta)) / 2
    else:  # H[Δ], the Hessian's action, in the same direction symbol
        full = f + alg.reduce_sum(g * delta) + alg.reduce_sum(delta * h.expr) / 2
    why = (
        r"the second-order Taylor model: the value, the gradient along $\Delta$ and half "
        r"the curvature along $\Delta$ (the remainder is $o(\|\Delta\|^2)$)"
    )
    result = _result(
        engine, "taylor", decl, full, f"Taylor model in {name}", ("taylor", decl.symbol), why, ()
    )
    return {name: result}


class Coupled(NoClosedForm):
    """A wrt symbol's condition holds other wrt symbols: solvable once they are."""

    def __init__(self, name, others):
        listed = ", ".join(sorted(str(s) for s in others))
        super().__init__(f"the condition for {name} couples it with {listed}")


def stationary(engine: Engine, grads: dict, hessian_of, joint_blocks=None) -> dict:
    """x* with g(x*) = 0 for each wrt symbol, or a result saying why there is no closed
    form. ``hessian_of(name)``: the Hessian Result of one wrt symbol.

    Several wrt symbols are solved in turn, as a textbook does the Gaussian's mean and
    variance: a symbol whose condition holds others waits until they are solved, and is
    then solved with their stationary values put in (m* = mean(x) first, whatever v is;
    then v* = mean((x − m*)²)). Such a point is a joint one (``given``: the symbols put
    in), and verification checks it jointly."""
    spec = engine.spec
    wrt_symbols = {spec.symbol(n).symbol for n in spec.wrt}
    out: dict = {}
    known: dict = {}
    waiting: dict = {}  # a symbol whose condition holds unsolved others -> why (Coupled)
    pending, progress = list(spec.wrt), True
    while pending and progress:
        progress = False
        for name in list(pending):
            decl = spec.symbol(name)
            try:
                full, why, method, used = _solved(
                    engine, name, grads[name].expr, hessian_of(name), wrt_symbols, known
                )
            except Coupled as exc:
                waiting[name] = exc  # tried again once another is solved
                continue
            except NoClosedForm as exc:
                if _holds_unsolved(engine, grads[name].expr, decl.symbol, wrt_symbols, known):
                    # Rosenbrock's x alone is a cubic in y; with y* = x² put in, x* = 1
                    waiting[name] = exc
                    continue
                out[name] = _no_point(engine, decl, f"{NO_CLOSED_FORM}: {exc}")
            else:
                given = tuple(n for n in spec.wrt if spec.symbol(n).symbol in used)
                outside = _outside_domain(engine.alg, decl, full)
                unit = {d.symbol for d in spec.symbols if d.domain == "unit_interval"}
                conditions = margins(full, decl.domain, frozenset(unit))
                if outside is not None:
                    reason = (
                        f"no stationary point in the domain: the gradient is 0 only at "
                        f"{name} = {outside}, and {name} is {decl.domain}"
                    )
                    if decl.domain in SUMS_TO_ONE:
                        rows = "rows sum" if len(decl.shape) > 1 else "entries sum"
                        reason += (
                            f": its {rows} to {_row_sums_off_one(engine.alg, full)}, not 1 "
                            "(the gradient is the ambient one; a minimum on the simplex is a "
                            "constrained problem: minimize, subject_to: sum(...) == 1)"
                        )
                    out[name] = _no_point(engine, decl, reason, outside=True)
                elif conditions is None:
                    reason = (
                        f"no real stationary point: the gradient's one root, {name} = "
                        f"{full}, is real for no value of the other symbols"
                    )
                    out[name] = _no_point(engine, decl, reason, outside=True)
                else:
                    caveat = _may_leave(engine, decl, full)
                    if caveat:
                        why += f"; {caveat}"
                    if given:
                        listed = ", ".join(given)
                        why += (
                            f"; with {listed} at {'its' if len(given) == 1 else 'their'} "
                            "stationary value put in (a joint stationary point)"
                        )
                    if conditions:
                        which = "condition" if len(conditions) == 1 else "conditions"
                        holds = "holds" if len(conditions) == 1 else "hold"
                        why += (
                            f"; the root is real and in {name}'s domain only where the "
                            f"{which} below {holds}, and elsewhere "
                            r"$\nabla\ell = 0$ has no solution"
                        )
                    singular = singular_inside(spec, engine.alg, full)
                    if singular:
                        why += (
                            f"; it holds where it is defined: {', and '.join(singular)}; "
                            r"there $\nabla\ell = 0$ has no solution or a whole set of them"
                        )
                    title = f"Stationary point in {name}"
                    lhs = ("stationary", decl.symbol)
                    result = _result(
                        engine, "stationary", decl, full, title, lhs, why, where=conditions
                    )
                    out[name] = dataclasses.replace(
                        result,
                        method=method,
                        given=given,
                        exists_where=conditions,
                        caveat=caveat or "",
                    )
                    known[decl.symbol] = result.expr
            pending.remove(name)
            progress = True
    if len(pending) > 1 and joint_blocks is not None:
        solved = _jointly_affine(engine, grads, joint_blocks, pending, known)
        if solved is None:
            solved = _eliminated(engine, grads, hessian_of, joint_blocks, pending, known)
        if solved is None:
            solved = _joint_scalars(engine, grads, pending, known)
        if solved is not None:
            out.update(solved)
            pending = []
    for name in pending:  # each waits on another that is never solved
        out[name] = _no_point(engine, spec.symbol(name), f"{NO_CLOSED_FORM}: {waiting[name]}")
    return {name: out[name] for name in spec.wrt}


def _jointly_affine(engine: Engine, grads: dict, joint_blocks, names, known):
    """The stationary point of scalar and vector symbols whose gradients are jointly
    affine in them (least squares with an intercept, wrt [w, b]): the stacked system
    H x + r = 0 with every Hessian block free of them, r the gradients at 0, so
    x* = −H⁻¹ r, each symbol its rows. None where it is not (then each is 'couples')."""
    spec, alg = engine.spec, engine.alg
    decls = [spec.symbol(n) for n in names]
    sizes = stacked_sizes(spec, names)
    if sizes is None or any(grads[n].expr is None for n in names):
        return None
    symbols = {d.symbol for d in decls}
    blocks = joint_blocks()
    h = {}
    for a in names:
        for b in names[names.index(a) :]:
            block = blocks.get(block_key(a, b))
            if block is None or block.expr is None or block.direction is not None:
                return None
            e = engine.expand(block.expr).xreplace(known)
            if tensor_symbols(e) & symbols:
                return None
            h[a, b] = e
    r = {
        n: simplify(
            alg, alg.tidy(zero_out(alg, engine.expand(grads[n].expr).xreplace(known), symbols))
        )
        for n in names
    }
    # (built for scalars too: it refuses a singular H by its rows first)
    stacked = _stacked_solve(alg, decls, sizes, lambda a, b: h[a, b], lambda d: r[d.name])
    # two scalars by Cramer's rule, as a textbook writes simple linear regression; three
    # or more by the stacked system, whose code solves it numerically: a quadratic fit's
    # 3×3 determinants of power sums (Σx⁴ ~ 6e10 at x = 300 ± 1) cancelled to a
    # coefficient 97 % off (c46s F10), where solving the same system keeps 5e-5
    if all(d.shape == () for d in decls) and len(decls) <= MAX_CRAMER_SOLVED:
        return _by_cramer(engine, decls, h, r)
    schur = _by_schur(engine, grads, decls, h, r, known)
    if schur is not None:
        return schur
    joint = ", ".join(names)
    why = (
        rf"the gradients are jointly affine in {joint} (every block of the Hessian is free of "
        r"them): the stacked system $H x + r = 0$, $r$ the gradients at 0, so "
        r"$x^{\star} = -H^{-1} r$, each symbol its rows"
    )
    out = {}
    every = list(names) == list(spec.wrt)  # the stacked name's shape is all of them
    if every:  # the system shown with the blocks by name, as the joint Newton step's

        def column(d):
            v = r[d.name]
            return v if d.shape else layout.reshape(v * alg.ones((1,)), sp.Tuple(1))

        shown = _stacked_solve(
            alg,
            decls,
            sizes,
            lambda a, b: block_symbol(spec.symbol(a).symbol, spec.symbol(b).symbol),
            column,
            named=True,
        )
        line = Line(STATIONARY_STACKED, (shown,))
        engine.steps.append(Step(f"Stationary point in {joint} jointly", (line,), why))
        compacts = _stacked_rows(STATIONARY_STACKED, decls, sizes)
    for d, full in _stacked_rows(stacked, decls, sizes).items():
        decl = spec.symbol(d)
        lhs = ("stationary", decl.symbol)
        if every:
            line = Line(lhs, (compacts[d],))
            engine.steps.append(
                Step(f"Stationary point in {d}", (line,), f"the rows of the joint point for {d}")
            )
            full = simplify(alg, alg.tidy(full))
            result = Result("stationary", d, full, compacts[d], decl.shape)
        else:
            result = _result(engine, "stationary", decl, full, f"Stationary point in {d}", lhs, why)
        given = tuple(n for n in names if n != d)
        out[d] = dataclasses.replace(result, method=AFFINE, given=given)
    return out


def _by_schur(engine: Engine, grads: dict, decls, h, r, known):
    """A vector w and a scalar b (least squares with an intercept) whose ∇²_b ℓ = h is
    provably nonzero: b's own condition solved for any w, b(w) = −∇_b ℓ|_{b=0} / h, and
    put into w's: the Schur complement, (H_ww − c cᵀ/h) w* = c r_b/h − r_w (c = ∇²_{w,b} ℓ,
    r the gradients at 0), the centred normal equations (XᵀX − Xᵀ𝟏𝟏ᵀX/m) w* =
    Xᵀy − Xᵀ𝟏 sum(y)/m, as textbooks write them; then b* = b(w*). The stacked form read
    −concatenate([...])⁻¹ concatenate([...]). None for other shapes, or where h may be 0
    (a KKT-like [[A, c], [cᵀ, 0]] is invertible while its corner is not)."""
    vectors = [d for d in decls if len(d.shape) == 1]
    scalars = [d for d in decls if d.shape == ()]
    if len(decls) != 2 or len(vectors) != 1 or len(scalars) != 1:
        return None
    (v,), (s,) = vectors, scalars
    alg = engine.alg
    corner = h[s.name, s.name]
    if positive(corner) is not True and positive(-corner) is not True:
        return None
    c = h.get((v.name, s.name), h.get((s.name, v.name)))
    if alg.shape(c) != v.shape:
        return None
    # b's gradient is affine in b with slope h: ∇_b ℓ = h b + ∇_b ℓ|_{b=0}
    at_zero = zero_out(alg, engine.expand(grads[s.name].expr).xreplace(known), {s.symbol})
    b_of_w = simplify(alg, alg.tidy(-at_zero / corner))
    complement = simplify(alg, alg.tidy(h[v.name, v.name] - alg.outer(c, c) / corner))
    rhs = simplify(alg, alg.tidy(c * r[s.name] / corner - r[v.name]))
    w_star = alg.mm(inverse(alg, complement), rhs)
    names = [d.name for d in decls]
    engine.steps.append(
        Step(
            f"Stationary point in {s.name} for any {v.name}",
            (Line(("stationary", s.symbol), (b_of_w,)),),
            f"{s.name}'s own condition, affine in {s.name} with a nonzero slope $h$ (the "
            f"Hessian's block in {s.name}, {s.name}), solved with {v.name} as a constant",
        )
    )
    w, b = v.name, s.name
    why = (
        f"the gradients are jointly affine in {w}, {b} (every block of the Hessian is free "
        f"of them): with {b}* above put in, {w}'s condition is "
        rf"$(A - c\,c^\top/h)\,{w}^{{\star}} = c\,r_{b}/h - r_{w}$ ($A$, $c$, $h$: the "
        f"Hessian's blocks in ({w}, {w}), ({w}, {b}), ({b}, {b}); $r$: the gradients at 0), "
        "the Schur complement of $h$"
    )
    w_result = _joint_result(engine, v, w_star, why, AFFINE, names)
    at = f"{s.name}* above at {v.name} = {v.name}*"
    b_star = b_of_w.xreplace({v.symbol: w_result.expr})
    b_result = _joint_result(engine, s, b_star, at, AFFINE, names)
    return {v.name: w_result, s.name: b_result}


MAX_CRAMER_SOLVED = 2  # scalars whose stationary point is written by Cramer's rule


def _by_cramer(engine: Engine, decls, h, r) -> dict:
    """Scalars alone: H x = −r solved entry by entry, x_i* = det H_i / det H (H_i: H with
    its column i replaced by −r), as a textbook writes simple linear regression's slope
    (n Σxy − Σx Σy)/(n Σx² − (Σx)²); the stacked form read −[[∇²_a ℓ, ∇²_{a,b} ℓ], ...]⁻¹
    concatenate([reshape(...)]) with a* its row 0. Past its checks in _stacked_solve,
    H is not singular by its rows; det H may still vanish at some data (every x equal),
    where the point holds where it is defined."""
    names = [d.name for d in decls]
    k = len(names)
    H = sp.Matrix(k, k, lambda i, j: h[names[min(i, j)], names[max(i, j)]])
    det, numerators = _cramer(H, sp.Matrix([-r[n] for n in names]))
    joint = ", ".join(names)
    why = (
        rf"the gradients are jointly affine in {joint} (the Hessian is free of them): "
        rf"the {k}×{k} system $H x = -r$, $r$ the gradients at 0, solved by Cramer's rule, "
        r"$x_i^{\star} = \det H_i / \det H$ ($H_i$: $H$ with column $i$ replaced by $-r$)"
    )
    return {
        d.name: _joint_result(engine, d, num / det, why, AFFINE, names)
        for d, num in zip(decls, numerators)
    }


def _cramer(H, rhs) -> tuple:
    """(det H, [det H_i]) of H x = rhs, H_i being H with its column i replaced by rhs:
    Cramer's rule, x_i = det H_i / det H, each determinant expanded and its common
    factors taken out."""

    def det_of(m):
        return sp.factor_terms(sp.expand(m.det(method="berkowitz")))

    numerators = []
    for i in range(H.rows):
        Hi = H.copy()
        Hi[:, i] = rhs
        numerators.append(det_of(Hi))
    return det_of(H), numerators


def _joint_result(engine: Engine, d, value, why: str, method: str, names) -> Result:
    """The stationary Result of one of several symbols solved together: its step, how
    it was found, and the others it was solved with (verification checks them jointly)."""
    result = _result(
        engine,
        "stationary",
        d,
        value,
        f"Stationary point in {d.name}",
        ("stationary", d.symbol),
        why,
    )
    given = tuple(n for n in names if n != d.name)
    return dataclasses.replace(result, method=method, given=given)


def _eliminated(engine: Engine, grads: dict, hessian_of, joint_blocks, names, known):
    """The stationary point of a matrix W and a vector or scalar b whose gradients are
    jointly affine (a linear layer's least squares, ‖X W + b − Y‖²), where stacking them
    has no matrix form: b solved for any W (b* = mean of the rows of Y − X W), put into
    W's condition, which stays affine in W and is solved in matrix form (the centred
    normal equations), then b* at W*. None where it does not apply."""
    if len(names) != 2:
        return None
    spec, alg = engine.spec, engine.alg
    decls = {n: spec.symbol(n) for n in names}
    symbols = {d.symbol for d in decls.values()}
    blocks = joint_blocks()
    for i, a in enumerate(names):
        for b in names[i:]:
            block = blocks.get(block_key(a, b))
            if block is None or block.expr is None:
                return None
            if tensor_symbols(engine.expand(block.expr)) & symbols:
                return None
    for e_name, o_name in (tuple(names), tuple(reversed(names))):
        e, o = decls[e_name], decls[o_name]
        if len(e.shape) > 1 or len(o.shape) != 2:
            continue
        try:
            e_full, e_why, _ = _solved_alone(
                engine, e_name, grads[e_name].expr, hessian_of(e_name), symbols
            )
            e_full = engine.expand(e_full).xreplace(known)
            g = engine.expand(grads[o_name].expr).xreplace(known).xreplace({e.symbol: e_full})
            r = simplify(alg, alg.tidy(zero_out(alg, g, {o.symbol})))
            delta = direction_symbol(o.symbol)
            action = g.xreplace({o.symbol: delta}) - r
            o_full, o_why, method = _matrix_solved(alg, o_name, action, r, delta)
        except NoClosedForm:
            continue
        e_lhs, o_lhs = ("stationary", e.symbol), ("stationary", o.symbol)
        engine.steps.append(
            Step(
                f"Stationary point in {e_name} for any {o_name}",
                (Line(e_lhs, (simplify(alg, alg.tidy(e_full)),)),),
                f"{e_name}'s own condition, solved with {o_name} as a constant: {e_why}",
            )
        )
        why = (
            f"the gradients are jointly affine in {o_name}, {e_name} (every block of the "
            f"Hessian is free of them): with {e_name}* above put in, {o_name}'s condition "
            f"stays affine in {o_name}; {o_why}"
        )
        o_result = _result(
            engine, "stationary", o, o_full, f"Stationary point in {o_name}", o_lhs, why
        )
        at = f"{e_name}* above at {o_name} = {o_name}*"
        e_at = e_full.xreplace({o.symbol: o_result.expr})
        e_result = _result(
            engine, "stationary", e, e_at, f"Stationary point in {e_name}", e_lhs, at
        )
        return {
            o_name: dataclasses.replace(o_result, method=method, given=(e_name,)),
            e_name: dataclasses.replace(e_result, method=AFFINE, given=(o_name,)),
        }
    return None


def _holds_unsolved(engine: Engine, g, x, wrt_symbols, known) -> bool:
    """Whether the gradient ``g`` in ``x`` holds another wrt symbol not solved yet."""
    if g is None:
        return False
    return bool(tensor_symbols(engine.expand(g)) & (wrt_symbols - {x} - set(known)))


def _joint_scalars(engine: Engine, grads: dict, names, known):
    """The stationary point of scalar symbols whose conditions are solved together by
    sympy.solve (within SECONDS_TO_SOLVE): Rosenbrock's (1 − x)² + 100(y − x²)², where
    neither is solved alone (x's condition is a cubic in y), has the one point (1, 1).
    None where the system is not solved in time or has no single real point in the
    domains (several are no closed form of "the" point)."""
    spec = engine.spec
    decls = [spec.symbol(n) for n in names]
    if any(d.shape != () or grads[d.name].expr is None for d in decls):
        return None
    equations = [engine.expand(grads[d.name].expr).xreplace(known) for d in decls]
    unknowns = [d.symbol for d in decls]
    if not all(e.is_rational_function(*unknowns) for e in equations):  # polynomials too
        return None
    try:
        found = within(SECONDS_TO_SOLVE, partial(sp.solve, dict=True), equations, unknowns)
    except (TimeLimit, NotImplementedError, ValueError, TypeError, AttributeError):
        return None
    real = [
        point
        for point in found
        if set(point) == set(unknowns)
        and all(v.is_real for v in point.values())
        and all(_outside_domain(engine.alg, d, point[d.symbol]) is None for d in decls)
    ]
    if len(real) != 1:
        return None
    (point,) = real
    joint = ", ".join(names)
    why = (
        rf"neither condition is solved alone (each holds the others): $\nabla\ell = 0$ in "
        rf"{joint} together, a polynomial system, by sympy.solve: one real solution"
    )
    out = {}
    for d in decls:
        out[d.name] = _joint_result(engine, d, point[d.symbol], why, JOINT_ROOT, names)
    return out


def _no_point(engine, decl, reason, outside=False) -> Result:
    engine.steps.append(
        Step(
            f"Stationary point in {decl.name}",
            (Line(("stationary", decl.symbol), (NOWHERE if outside else NONE,)),),
            reason,
        )
    )
    return Result("stationary", decl.name, None, None, decl.shape, reason)


def _outside_domain(alg, decl, full):
    """The stationary point where it is outside the wrt symbol's domain whatever the
    other symbols are (x² + 2x on positive x: x* = −1), else None. A scalar, or a
    vector or matrix c 1 of one value; SymPy's assumptions decide the sign of a
    symbolic one (−a² − 1), and where they cannot, nothing is claimed."""
    # a stationary point a domain excludes for every value of the other symbols is no
    # stationary point of the spec's
    if decl.domain in SUMS_TO_ONE:
        return full if _row_sums_off_one(alg, full) is not None else None
    test = IN_DOMAIN.get(decl.domain)
    if test is None:
        return None
    c, rest = (full, None) if alg.shape(full) == () else alg.split_scalar(full)
    if rest is not None and not isinstance(rest, ops.ones):
        return None
    inside = test(c)
    return full if inside in (False, sp.false) else None


# the structured domains a root of the ambient gradient is on only where it is provably
# so: else it is a stationary point of the function off the domain, not of the spec's
_STRUCTURED = ("simplex", "onehot", "orthogonal", "spd")


def _may_leave(engine: Engine, decl, full) -> str | None:
    """What the root ``full`` of a simplex, onehot, orthogonal or spd symbol's (ambient)
    gradient holds only under, where it is not provably on that domain, else None:
    sum(x log x) + aᵀx on the simplex has its root at exp(−1 − a), whose entries sum
    to 1 for some a only (the minimiser there is softmax(−a)); ‖X − A‖² of an orthogonal
    X has its root at A (the minimiser is A's polar factor). Those were given bare, as if
    on the domain; the root stands (the gradient is the ambient one, docs/spec.md), said
    with what it holds under."""
    if decl.domain not in _STRUCTURED:
        return None
    spec, alg = engine.spec, engine.alg
    own = {d.symbol: d.domain for d in spec.symbols}
    if own.get(full) == decl.domain:  # a symbol of the same domain: on it
        return None
    if decl.domain in SUMS_TO_ONE:
        rows = _row_sums(alg, full)
        ones = sp.Integer(1) if alg.shape(rows) == () else alg.ones(alg.shape(rows))
        if simplify(alg, alg.tidy(rows - ones)) == 0:
            return None
        rows_word = "rows sum" if len(decl.shape) > 1 else "entries sum"
        return (
            f"it is the root of the ambient gradient, on the {decl.domain} only where its "
            f"{rows_word} to 1 (for some values of the other symbols); the minimum on the "
            f"{decl.domain} is a constrained problem (minimize, subject_to: sum(...) == 1)"
        )
    if decl.domain == "spd" and provably_psd(spec, full):
        return None
    return (
        f"it is the root of the ambient gradient, {decl.domain} only for some values of "
        f"the other symbols; the minimum over {decl.domain} matrices is a constrained "
        "problem"
    )


def _row_sums(alg, full):
    """What the rows of ``full`` sum to (its entries, for a vector), term by term."""
    axis = None if len(alg.shape(full)) == 1 else -1
    return sp.Add(*[alg.reduce_sum(t, axis=axis) for t in sp.Add.make_args(full)])


def _row_sums_off_one(alg, full):
    """What the rows of ``full`` (its entries, for a vector) sum to where that is a value
    other than 1 whatever the other symbols are, else None: the gradient of a simplex
    symbol is the ambient one (docs/spec.md), so its root need not lie on the simplex
    (sum((P − Q)²) + sum(P): P* = Q − 1/2, whose rows sum to 1 − k/2). Where SymPy cannot
    decide it, nothing is claimed."""
    rows = _row_sums(alg, full)
    if alg.shape(rows) == ():
        one, (c, rest) = sp.Integer(1), (sp.expand(rows - 1), sp.Integer(1))
    else:
        one = alg.ones(alg.shape(rows))
        c, rest = alg.split_scalar(sp.expand(rows - one))
    if rest != one or c.is_zero is not False:
        return None  # 1, or what the sum is depends on the symbols (or is not read here)
    return 1 + c


def _solved(engine: Engine, name, g, hess: Result, wrt_symbols, known=None) -> tuple:
    """(x*, why, method, the solved symbols x* held) of one wrt symbol, the ``known``
    ones' stationary values put in; Coupled where x* would hold another unsolved one."""
    x = engine.spec.symbol(name).symbol
    if g is None or hess.expr is None:
        raise NoClosedForm("the gradient or the Hessian has no matrix form")
    # solved with the known ones as constants, then their values put in: v* =
    # sum((x - m)²)/N at m* = sum(x)/N reads as the textbook's, which solving the
    # condition with m* put in first does not (sum((N x - sum(x))²)/N³)
    known = known or {}
    full, why, method = _solved_alone(engine, name, g, hess, wrt_symbols)
    held = tensor_symbols(engine.expand(full))
    others = held & (wrt_symbols - {x} - set(known))
    if others:
        raise Coupled(name, others)
    used = held & set(known)
    return (engine.expand(full).xreplace(known) if used else full), why, method, used


def _solved_alone(engine: Engine, name, g, hess: Result, wrt_symbols) -> tuple:
    spec, alg = engine.spec, engine.alg
    decl = spec.symbol(name)
    x = decl.symbol
    if kinked_in(engine.expand(g), x):
        raise NoClosedForm(
            f"the gradient has kinks in {name} (abs, relu, max, ...): it is piecewise, "
            "and its pieces are not solved here"
        )
    if x in tensor_symbols(engine.expand(hess.expr)):
        if len(decl.shape) == 2:
            try:
                return _through_inverse(alg, name, x, engine.expand(g))
            except NoClosedForm:
                pass  # then entry by entry, or no closed form with that reason
        return _entrywise(engine, name, engine.expand(g), wrt_symbols)
    # an einsum that is a product reads as one in the solution: (XᵀX)⁻¹ Xᵀ y
    plain = engine.expand(g).replace(
        lambda e: isinstance(e, layout.einsum), lambda e: einsum_as_ops(alg, e)
    )
    r = simplify(alg, alg.tidy(zero_out(alg, plain, {x})))
    h = hess.expr
    if h == 0 and r == 0:  # a constant in it: the gradient is 0 everywhere
        raise NoClosedForm(
            f"the objective does not depend on {name}: every point is stationary, none "
            "is the stationary point"
        )
    if h == 0:  # of a vector or matrix too: the gradient does not depend on it
        raise NoClosedForm(f"the objective is linear in {name}: no stationary point")
    if decl.shape == ():
        # other wrt symbols may cancel (the Gaussian's m* = sum(x)/v / (N/v)); if not,
        # the caller says it couples
        return (
            sp.cancel(-r / h) if alg.shape(r) == () and alg.shape(h) == () else -r / h,
            r"$\nabla\ell = h x + r$ with $h$ free of $x$ ($r$: the gradient at $x = 0$), so "
            r"$x^{\star} = -r / h$",
            AFFINE,
        )
    diagonal = _diagonal(alg, h)
    if diagonal is not None:  # each entry its own equation: the mean of a diagonal
        return (  # Gaussian, m diag(1/v) μ − sum(X, 0)/v, is sum(X, 0)/m whatever v is
            -r / diagonal,
            r"$\nabla\ell = \operatorname{diag}(d) x + r$ with $d$ free of $x$ ($r$: the "
            r"gradient at $x = 0$): each entry solves its own equation, $x^{\star} = -r / d$",
            AFFINE,
        )
    if hess.direction is None:
        x = _unknown(name, "x")
        return (
            -alg.mm(inverse(alg, h), r),
            rf"$\nabla\ell = H {x} + r$ with $H$ free of ${x}$ ($r$: the gradient at ${x} = 0$), "
            rf"so ${x}^{{\star}} = -H^{{-1}} r$",
            AFFINE,
        )
    return _matrix_solved(alg, name, h, r, hess.direction)


def _unknown(name: str, placeholder: str) -> str:
    """The wrt symbol's name in a step's formula where it is one plain letter apart from
    the formula's own (W M + G₀: the placeholder X was read as a data matrix X beside W,
    and R, the gradient at 0, as the Kalman gain's noise covariance R), else the
    placeholder."""
    own = {"G", "H", "M", "R", "L", "c", "d", "r"}
    return (
        name
        if len(name) == 1 and name.isascii() and name.isalpha() and name not in own
        else placeholder
    )


def _diagonal(alg, h):
    """d where the vector Hessian h is diag(d): a sum of scalars times diag(u) or the
    identity; else None."""
    if len(alg.shape(h)) != 2:
        return None
    d = sp.S.Zero
    for term in sp.Add.make_args(h):
        c, rest = alg.split_scalar(term)
        if isinstance(rest, ops.diag) and len(alg.shape(rest.args[0])) == 1:
            d += c * rest.args[0]
        elif isinstance(rest, ops.eye):
            d += c
        else:
            return None
    return None if d.is_number else d  # c I alone: −H⁻¹ r is already −r/c


def _through_inverse(alg, name, x, g) -> tuple:
    """X* for a gradient in which the matrix X enters only through X⁻¹, as in Gaussian
    maximum likelihood: a X⁻¹ + B = 0 gives X⁻¹ = −B/a (a precision matrix: X* = −a B⁻¹),
    and a X⁻¹ + X⁻¹ M X⁻¹ = 0, multiplied by X on both sides, a X + M = 0 (a covariance:
    X* = −M/a); a a scalar, B and M free of X."""
    y = sp.Symbol(f"_inverse_of_{name}", real=True)
    inner = alg.extended({y: alg.shape(x)})
    # the ambient gradient of log det X is X⁻ᵀ: where X enters only as X⁻ᵀ, y stands for
    # X⁻ᵀ and X* is the transpose of what solving for X⁻¹ would give (tr(A X) - log det X
    # has X* = A⁻¹, not A⁻ᵀ); where both appear, they are read as one (X symmetric)
    t_inv = ops.transpose(ops.inv(x))
    transposed = g.has(t_inv) and not g.xreplace({t_inv: y}).has(ops.inv(x))
    gy = g.xreplace({t_inv: y, ops.inv(x): y})
    if x in tensor_symbols(gy):
        raise NoClosedForm(f"{name} does not enter the gradient only through its inverse")
    rate, constant, middle = sp.Integer(0), [], []
    for term in sp.Add.make_args(sp.expand(gy)):
        c, rest = inner.split_scalar(term)
        if rest == y:
            rate += c
        elif y not in tensor_symbols(rest):
            constant.append(term)
        elif _sandwich(rest, y) is not None:
            middle.append(c * _sandwich(rest, y))
        else:
            raise NoClosedForm(f"a term {term} of the gradient is not a X⁻¹ M X⁻¹ form")
    if rate == 0 or (constant and middle):
        raise NoClosedForm("the gradient is not a X⁻¹ + B or a X⁻¹ + X⁻¹ M X⁻¹")
    if constant:
        b = sp.Add(*constant)
        return (
            inverse(alg, alg.T(-b / rate) if transposed else -b / rate),
            rf"$\nabla\ell = a {name}^{{-1}} + B$ with $a$ a scalar and $B$ free of ${name}$: "
            rf"${name}$ enters only through its inverse, so ${name}^{{-1}} = -B / a$",
            THROUGH_INVERSE,
        )
    m = sp.Add(*middle)
    return (
        alg.T(-m / rate) if transposed else -m / rate,
        rf"$\nabla\ell = a {name}^{{-1}} + {name}^{{-1}} M {name}^{{-1}}$ with $M$ free of "
        rf"${name}$: multiplied by ${name}$ on both sides, $a {name} + M = 0$, so "
        rf"${name}^{{\star}} = -M / a$",
        THROUGH_INVERSE,
    )


def _sandwich(e, y):
    """M where e is y @ M @ y (however the products nest), else None."""
    factors = product_chain(e)
    if len(factors) < 3 or factors[0] != y or factors[-1] != y:
        return None
    inside = factors[1:-1]
    if any(y in tensor_symbols(f) for f in inside):
        return None
    m = inside[0]
    for f in inside[1:]:
        m = ops.matmul(m, f)
    return m


def _entrywise(engine: Engine, name, g, wrt_symbols) -> tuple:
    """x* where x enters the gradient only elementwise: each entry solves one scalar
    equation (the optimal GAN discriminator: p / D - q / (1 - D) = 0), by sympy.solve
    within SECONDS_TO_SOLVE (``_affine.roots``); one root, or no closed form."""
    alg = engine.alg
    x = engine.spec.symbol(name).symbol
    if alg.shape(x) == () and not elementwise_in(g, x):
        g = _sums_in_powers(alg, g, x)
    if not elementwise_in(g, x):
        raise NoClosedForm(
            f"the gradient is not affine in {name} (the Hessian depends on it), and {name} "
            r"does not enter it entry by entry, so $\nabla\ell = 0$ is a nonlinear system"
        )
    if any(isinstance(f, PERIODIC) and x in f.free_symbols for f in sp.preorder_traversal(g)):
        # cos(x) = 0 has the roots π/2 + kπ for every integer k; sympy.solve gives those
        # of one period, and a choice among them would be no closed form of "the" point
        raise NoClosedForm(
            f"{name} enters the gradient through a periodic function (sin, cos, tan): "
            "such a condition has a root in every period (cos x = 0), or none at all "
            "(e^x + 3x² + cos x > 0), and no one closed form"
        )
    found = roots(as_scalar(g), x)
    if not found:
        raise NoClosedForm(
            f"{name} enters the gradient entry by entry, and each entry's equation has "
            "no solution found (sympy.solve)"
        )
    why = (
        f"{name} enters the gradient entry by entry: each entry solves one scalar "
        r"equation $\partial\ell / \partial x_i = 0$, with one root"
    )
    root = found[0] if len(found) == 1 else _one_minimum(x, as_scalar(g), found)
    if root is None:
        listed = []
        for r in found:
            listed += [", " if listed else "", r]
        raise NoClosedForm(
            f"{name} enters the gradient entry by entry, and each entry's equation has "
            f"{len(found)} solutions (sympy.solve: ",
            *listed,
            "), none of them the only one where the second derivative is positive",
        )
    if len(found) > 1:
        why = (
            f"{name} enters the gradient entry by entry: each entry solves one scalar "
            rf"equation $\partial\ell / \partial x_i = 0$, with {len(found)} roots; the "
            r"second derivative is positive at one of them and negative at the others: "
            "the one local minimum"
        )
    foreign = unwritten(root)
    if foreign:  # exp(z) − c z + λ z²/2: z* = c/λ − W(e^(c/λ)/λ), no code for W (exit 3)
        raise NoClosedForm(
            f"the root holds {', '.join(foreign)}, which the expression language and the "
            f"generated code do not have: {name}* = ",
            root,
        )
    if alg.shape(root) != alg.shape(x):  # the same value in every entry
        root = root * alg.ones(alg.shape(x))
    return root, why, ENTRYWISE if len(found) == 1 else MINIMUM


def _sums_in_powers(alg, g, x):
    """``g`` with each full sum that holds the scalar ``x`` polynomially written as its
    powers of x times sums free of it: sum((d − μ)²) is sum(d²) − 2μ sum(d) + n μ², so
    N(μ, μ²)'s likelihood condition is the quadratic n μ² + μ sum(d) − sum(d²) = 0 in μ
    (it was "a nonlinear system"). A sum that is no polynomial in x stays."""

    def powers(s):
        (arg,) = s.args
        shape = alg.shape(arg)
        size = sp.Mul(*shape)
        try:
            poly = sp.Poly(sp.expand(arg), x)
        except sp.PolynomialError:
            return s
        out = sp.S.Zero
        for (k,), c in poly.terms():
            total = alg.reduce_sum(c) if alg.shape(c) == tuple(shape) else c * size
            out += x**k * total
        return out

    return g.replace(
        lambda e: isinstance(e, ops.tsum) and len(e.args) == 1 and x in e.free_symbols, powers
    )


# functions whose equations have a root in every period
PERIODIC = (sp.sin, sp.cos, sp.tan, sp.cot, sp.sec, sp.csc)


def _one_minimum(x, equation, found):
    """The root of the entry's equation g(x) = 0 (``found``: all of them) where g' is
    provably positive while it is provably negative at every other: the one local
    minimum (x³ − 3 c x with c > 0: √c of ±√c), else None. A root where g' is 0 may be
    a minimum as well (x⁴ at 0), so the others must be maxima."""
    slope = sp.diff(elementary(equation), x)
    at = [slope.subs(x, r) for r in found]
    minima = [r for r, h in zip(found, at) if positive(h) is True]
    if len(minima) != 1:
        return None
    others = [h for r, h in zip(found, at) if r is not minima[0]]
    return minima[0] if all(positive(-h) is True for h in others) else None


def _distributed(alg, e):
    """Matrix products multiplied out over sums, (Δ H P + Δ H Pᵀ) Hᵀ as
    Δ H P Hᵀ + Δ H Pᵀ Hᵀ: each term of an action then starts or ends with Δ. With a
    bias eliminated (X W + b − Y, b* = mean of the rows of Y − X W), also: a column sum
    of a sum term by term, sum(X Δ, axis=0) = (1ᵀX) Δ; Xᵀ times a vector broadcast
    down the rows, Xᵀ (1 vᵀ) = (Xᵀ1) vᵀ; and a (cᵀ Δ) = (a cᵀ) Δ."""
    if isinstance(e, sp.Add):
        return sp.Add(*(_distributed(alg, t) for t in e.args))
    c, rest = alg.split_scalar(e)
    if c != 1:
        return sp.Add(*(c * t for t in sp.Add.make_args(_distributed(alg, rest))))
    if isinstance(e, ops.matmul):
        a, b = (_distributed(alg, x) for x in e.args)
        shape = alg.shape(b)
        return sp.Add(
            *(
                _times(alg, ta, tb, shape)
                for ta in sp.Add.make_args(a)
                for tb in sp.Add.make_args(b)
            )
        )
    column_sum = _column_sum(alg, e)
    if column_sum is not None:
        return column_sum
    if isinstance(e, ops.transpose) and len(alg.shape(e)) == 2:
        # (A B)ᵀ = Bᵀ Aᵀ, term by term: the row-vector convention X Wᵀ of a weighted
        # least squares acts as (diag(c) X Δᵀ)ᵀ X = Δ Xᵀ diag(c) X, a Δ M term
        return sp.Add(
            *(_transposed(alg, t) for t in sp.Add.make_args(_distributed(alg, e.args[0])))
        )
    if isinstance(e, ops.outer):
        u, v = (_distributed(alg, x) for x in e.args)
        if isinstance(u, sp.Add) or isinstance(v, sp.Add):
            return sp.Add(
                *(
                    _distributed(alg, alg.outer(tu, tv))
                    for tu in sp.Add.make_args(u)
                    for tv in sp.Add.make_args(v)
                )
            )
        if isinstance(v, ops.matmul) and len(alg.shape(v.args[0])) == 1:
            return _distributed(alg, alg.mm(alg.outer(u, v.args[0]), v.args[1]))
        if isinstance(u, ops.matmul) and len(alg.shape(u.args[1])) == 1:
            return _distributed(alg, alg.mm(u.args[0], alg.outer(u.args[1], v)))
    scaled = _scaled_rows(alg, e)
    return e if scaled is None else _distributed(alg, scaled)


def _transposed(alg, term):
    """A product chain's transpose as the chain of its factors' transposes, reversed."""
    c, rest = alg.split_scalar(term)
    return c * chain_product(alg, [alg.T(f) for f in reversed(product_chain(rest))])


def _times(alg, a, b, shape):
    """a @ b for a term b of a sum of ``shape``: where b is a vector broadcast down the
    rows of that matrix sum, a (1 bᵀ) = (a 1) bᵀ."""
    if len(shape) == 2 and alg.shape(b) == (shape[1],) and len(alg.shape(a)) == 2:
        return _distributed(alg, alg.outer(alg.reduce_sum(a, 1), b))
    return alg.mm(a, b)


def _column_sum(alg, e):
    """sum(A + B, axis=0) term by term, each term's sum by the algebra's rules
    (sum(X Δ, 0) = (1ᵀX) Δ), multiplied out; None where e is no such sum (or a term is
    broadcast: its sum would count its rows)."""
    if not (isinstance(e, ops.tsum) and len(e.args) == 2 and e.args[1] in (0, -2)):
        return None
    inner = _distributed(alg, e.args[0])
    shape = alg.shape(inner)
    if len(shape) != 2 or any(alg.shape(t) != shape for t in sp.Add.make_args(inner)):
        return None
    summed = [alg.reduce_sum(t, 0) for t in sp.Add.make_args(inner)]
    if any(isinstance(t, ops.tsum) and t.args[0] == e.args[0] for t in summed):
        return None
    return sp.Add(*(_distributed(alg, t) for t in summed))


def _scaled_rows(alg, e):
    """c[:, None] * M (or c 1ᵀ ⊙ M) as diag(c) @ M, and c[None, :] * M (1 cᵀ ⊙ M) as
    M @ diag(c), or None: a row
    weight in a weighted least squares (sum(c[:, None] * (X W − Y)²)) is a factor of the
    product chain then."""
    if not isinstance(e, sp.Mul):
        return None
    if len(e.args) != 2:
        return _column_weights(alg, e)
    for w, m in (e.args, reversed(e.args)):
        if len(alg.shape(m)) != 2:
            continue
        if isinstance(w, sp.Pow) and isinstance(w.base, layout.expand_dims):
            # c[:, None]² of sum((c[:, None] (X Wᵀ − Y))²): the weight is c²
            w = layout.expand_dims(w.base.args[0] ** w.exp, w.base.args[1])
        if isinstance(w, layout.expand_dims):
            (axis,) = (int(a) for a in w.args[1])
            c = w.args[0]
            if len(alg.shape(c)) == 1:
                return alg.mm(ops.diag(c), m) if axis == 1 else alg.mm(m, ops.diag(c))
        # c 1ᵀ (a row weight broadcast by the gradient of sum(c * sum(R², axis=1))) as
        # diag(c) on the left, 1 cᵀ on the right
        if isinstance(w, ops.outer) and isinstance(w.args[1], ops.ones):
            return alg.mm(ops.diag(w.args[0]), m)
        if isinstance(w, ops.outer) and isinstance(w.args[0], ops.ones):
            return alg.mm(m, ops.diag(w.args[1]))
    return None


def _column_weights(alg, e):
    """c ⊙ (A B) with c of shape [r, 1] (a product of such columns) broadcast along the
    columns of the product, [r, k], as diag(c[:, 0]) A B, or None: the logistic
    Hessian's action Xᵀ(p ⊙ (1 − p) ⊙ (X Δ)) of a column vector w [n, 1] had no
    matrix form (its Newton step was "no closed form"; a vector w's read
    Xᵀ diag(p ⊙ (1 − p)) X)."""
    products = [a for a in e.args if isinstance(a, ops.matmul)]
    if len(products) != 1:
        return None
    (m,) = products
    shape = alg.shape(m)
    if len(shape) != 2:
        return None
    weights = [a for a in e.args if a is not m]
    if any(alg.shape(w) != (shape[0], 1) for w in weights):
        return None
    c = alg.squeeze(sp.Mul(*weights), (1,))
    return alg.mm(ops.diag(c), m)


def _matrix_solved(alg, name, action, r, delta) -> tuple:
    """``_matrix_solved_as_written``, or no closed form where the action's terms are no
    products of matrices (it was exit 3): a batch of rank 3 (X [B, T, n] @ W), whose
    products do not multiply out as matrices' do, or a matrix's row beside a vector's
    entry (X @ W[0] + b[0] jointly in [W, b])."""
    try:
        return _matrix_solved_as_written(alg, name, action, r, delta)
    except ShapeError as exc:
        raise NoClosedForm(
            f"the Hessian's action on {name} has terms that do not multiply out as "
            "products of matrices: a linear system without a matrix form here"
        ) from exc


def _matrix_solved_as_written(alg, name, action, r, delta) -> tuple:
    """X* from H[X] + r = 0 where the action H[Δ] is Δ M or M Δ: each term of it a
    scalar times Δ, or a product chain starting (every term) or ending (every term)
    with Δ, M the sum of the rest (2 Δ R + 2 Δ H P Hᵀ: M = 2 (R + H P Hᵀ))."""
    if len(alg.shape(delta)) != 2:  # a kernel [O, C, kh, kw], a batch X [B, T, d]
        raise NoClosedForm(
            f"{name} is a tensor of rank {len(alg.shape(delta))}: the condition is a linear "
            "system without a matrix form here"
        )
    n_rows, n_cols = alg.shape(delta)
    x = _unknown(name, "X")
    right, left = [], []  # the terms' M in Δ M, and in M Δ
    sandwiches = []  # (c, L, R) of the terms c L Δ R
    action = _distributed(alg, action)
    for term in sp.Add.make_args(action):
        c, rest = alg.split_scalar(term)
        chain = product_chain(rest)
        if rest == delta:
            right.append(c * ops.eye(n_cols))
            left.append(c * ops.eye(n_rows))
        elif len(chain) > 1 and delta not in _free(chain[1:]) and chain[0] == delta:
            right.append(c * chain_product(alg, chain[1:]))
        elif len(chain) > 1 and delta not in _free(chain[:-1]) and chain[-1] == delta:
            left.append(c * chain_product(alg, chain[:-1]))
        elif chain.count(delta) == 1 and delta not in _free([f for f in chain if f != delta]):
            k = chain.index(delta)  # L Δ R: both sides
            sandwiches.append((c, tuple(chain[:k]), tuple(chain[k + 1 :])))
        else:
            raise NoClosedForm(
                f"the Hessian's action on {name} has a term that is not $\\Delta M$, "
                "$M \\Delta$ or $L \\Delta R$, so the condition is a linear system without a "
                "matrix form here"
            )
    terms = len(sp.Add.make_args(action))
    if sandwiches and len(sandwiches) == terms and len({(a, b) for _, a, b in sandwiches}) == 1:
        # c L Δ R + G_0 = 0 (two-sided least squares: 2 AᵀA Δ B Bᵀ): X* = -L⁻¹ G_0 R⁻¹ / c
        c = sp.Add(*(k for k, _, _ in sandwiches))
        _, lhs, rhs = sandwiches[0]
        lm, rm = chain_product(alg, list(lhs)), chain_product(alg, list(rhs))
        return (
            -alg.mm(alg.mm(inverse(alg, lm), r), inverse(alg, rm)) / c,
            rf"$\nabla\ell = c\,L {x} R + G_0$ with $L$, $R$ free of ${x}$ ($G_0$: the "
            rf"gradient at ${x} = 0$), so ${x}^{{\star}} = -L^{{-1}} G_0 R^{{-1}} / c$",
            AFFINE,
        )
    if sandwiches:
        raise NoClosedForm(
            f"the Hessian's action on {name} has $L \\Delta R$ terms with different $L$, $R$ "
            "(or beside $\\Delta M$ terms): a linear system without a matrix form here"
        )
    if len(right) == terms:
        m = simplify(alg, alg.tidy(sp.Add(*right)))
        return (
            -alg.mm(r, inverse(alg, m)),
            rf"$\nabla\ell = {x} M + G_0$ with $M$ free of ${x}$ ($G_0$: the gradient at "
            rf"${x} = 0$), so ${x}^{{\star}} = -G_0 M^{{-1}}$",
            AFFINE,
        )
    if len(left) == terms:
        m = simplify(alg, alg.tidy(sp.Add(*left)))
        return (
            -alg.mm(inverse(alg, m), r),
            rf"$\nabla\ell = M {x} + G_0$ with $M$ free of ${x}$ ($G_0$: the gradient at "
            rf"${x} = 0$), so ${x}^{{\star}} = -M^{{-1}} G_0$",
            AFFINE,
        )
    raise NoClosedForm(
        f"the Hessian's action on {name} mixes $\\Delta M$ and $M \\Delta$ terms (a "
        "Sylvester equation), which has no closed form in matrix form"
    )


def _free(factors) -> set:
    return set().union(*(f.free_symbols for f in factors))


@dataclass(frozen=True)
class Verdict:
    """Whether the objective is convex in a wrt symbol: ``convex`` True (``reason``: the
    proof), False (a counterexample: the drawn ``point`` where the Hessian has the
    eigenvalue ``eigenvalue`` < 0, or two points whose chord passes below the graph at
    the midpoint, by ``gap``) or None (neither found)."""

    convex: bool | None
    reason: str
    point: dict | None = None
    eigenvalue: float | None = None
    # a chord counterexample (where the objective has kinks, which no Hessian sees):
    # the second point, and f(midpoint) − (f(point) + f(other))/2 > 0
    other: dict | None = None
    gap: float | None = None

    @property
    def word(self) -> str:
        return {True: "convex", False: "not convex", None: "undecided"}[self.convex]


def convexity(engine: Engine, grads: dict, hessians: dict) -> dict:
    """A proof that the Hessian is PSD (a nonnegative combination of PSD terms), or an
    undecided verdict, which the calculus section then settles with a counterexample
    if it finds one (a numeric search: not this layer's)."""
    if len(engine.spec.wrt) > 1:
        return _joint_convexity(engine, hessians)
    (name,) = engine.spec.wrt
    h = hessians[name]
    terms = None
    kinked = _kinked(engine)
    if h.expr is not None and h.direction is None and not kinked:
        terms = psd_terms(engine.spec, h.expr)
    elif h.expr is not None and not kinked:  # a matrix's: its action on the direction
        terms = psd_action(engine.spec, engine.alg, h.expr, h.direction)
    rules = None if terms is not None else _by_composition(engine)
    if terms is not None and h.direction is not None:
        verdict = Verdict(
            True,
            r"the Hessian acts on a direction $\Delta$ as a nonnegative combination of "
            rf"$M \Delta N$, with $M$ and $N$ among {', '.join(terms)}, each positive "
            r"semidefinite: $\langle \Delta, M \Delta N \rangle = \lVert M^{1/2} \Delta "
            rf"N^{{1/2}} \rVert^2 \geq 0$, so the objective is convex in {name}",
        )
    elif terms is not None:
        verdict = Verdict(
            True,
            f"the Hessian is a nonnegative combination of {', '.join(terms)}, each positive "
            f"semidefinite, so the objective is convex in {name}",
        )
    elif rules is not None:
        verdict = Verdict(True, _composition_reason(rules, name))
    elif kinked:
        verdict = Verdict(None, _KINKED)
    else:
        verdict = Verdict(None, "no proof that the Hessian is positive semidefinite was found")
    verdict = _on_its_domain(engine, verdict, name)
    # the Hessian the verdict is about, as its own step showed it (its action on Δ for a
    # matrix, its entries where no matrix-form rule applied)
    shown = next(s for s in reversed(engine.steps) if s.title == f"Hessian with respect to {name}")
    engine.steps.append(Step(f"Convexity in {name}", shown.lines, verdict.reason))
    result = dataclasses.replace(h, kind="convexity", verdict=verdict)
    return {name: result}


# -- several wrt symbols: the joint Hessian ------------------------------------------

# the scalar a joint result moves along: ℓ(x + t Δ_x, y + t Δ_y, ...) ('_': never a spec's)
ALONG = sp.Symbol("_t_along", real=True)


def along_directions(engine: Engine):
    """⟨Δ, H Δ⟩ = d²ℓ/dt² at t = 0, the second derivative of the objective with every
    wrt symbol x moved to x + t Δ_x, by the gradient rules twice in the scalar t. For
    any shapes; no Hessian block is formed."""
    spec, alg = engine.spec, engine.alg
    moved = {}
    for name in spec.wrt:
        x = spec.symbol(name).symbol
        moved[x] = x + ALONG * direction_symbol(x)
    f = engine.expand(spec.objective).xreplace(moved)
    inner = alg.extended({ALONG: ()})
    first = backprop(inner, inner.tidy(f), sp.Integer(1), {ALONG}).get(ALONG, sp.Integer(0))
    second = backprop(inner, first, sp.Integer(1), {ALONG}).get(ALONG, sp.Integer(0))
    return simplify(alg, alg.tidy(second.xreplace({ALONG: sp.Integer(0)})))


def _joint_taylor(engine: Engine, grads: dict, blocks: dict) -> dict:
    """ℓ + Σ ⟨∇ₓℓ, Δₓ⟩ + ½ Σ ⟨Δₓ, H_xy Δ_y⟩ over the blocks of the joint Hessian (each
    pair above the diagonal twice); where a block has no matrix form, the second
    derivative along the joint direction (``along_directions``) in their place."""
    spec, alg = engine.spec, engine.alg
    f = engine.expand(spec.objective)
    if any(grads[n].expr is None for n in spec.wrt):
        raise NotImplementedError("a gradient has no matrix form here")
    linear = sp.Integer(0)
    for name in spec.wrt:
        x = spec.symbol(name).symbol
        linear += _inner(alg, grads[name].expr, direction_symbol(x))
    if all(b.expr is not None for b in blocks.values()):
        curvature = sp.Integer(0)
        for b in blocks.values():
            a_name, b_name = b.over
            term = _quadratic(engine, b, a_name, b_name)
            curvature += term if a_name == b_name else 2 * term
        how = r"$\sum_{x, y} \langle \Delta_x, H_{xy} \Delta_y \rangle$ over the blocks"
    else:
        curvature = along_directions(engine)
        how = r"$\frac{d^2}{dt^2}\ell(x + t\Delta_x, \dots)|_{t=0}$"
    full = f + linear + curvature / 2
    label = joint_key(spec.wrt)
    why = (
        "the second-order Taylor model in all of them at once: the value, each gradient "
        f"along its direction, and half the curvature along the joint direction, {how} "
        "of the joint Hessian, the blocks off the diagonal included"
    )
    decl = spec.symbol(spec.wrt[0])
    lhs = ("taylor", *(spec.symbol(n).symbol for n in spec.wrt))
    result = _result(engine, "taylor", decl, full, f"Taylor model in {label}", lhs, why, ())
    return {label: dataclasses.replace(result, over=tuple(spec.wrt))}


def _quadratic(engine: Engine, block: Result, a: str, b: str):
    """⟨Δ_a, H_ab Δ_b⟩ for one block of the joint Hessian (a.shape + b.shape), in
    matrix form; a block given as its action on Δ_a: ⟨H_ab[Δ_a], Δ_b⟩."""
    spec, alg = engine.spec, engine.alg
    da, db = (direction_symbol(spec.symbol(n).symbol) for n in (a, b))
    h = block.expr
    if block.direction is not None:
        return _inner(alg, h, db)
    ra, rb = len(spec.symbol(a).shape), len(spec.symbol(b).shape)
    if ra == 0 or rb == 0:  # a scalar on either side: entrywise products
        return _inner(alg, da * h, db)
    return alg.mm(da, alg.mm(h, db))


def _inner(alg, a, b):
    """⟨a, b⟩: the sum of the entrywise product (a product, for scalars)."""
    return a * b if alg.shape(a) == () and alg.shape(b) == () else alg.reduce_sum(a * b)


def _stacked_solve(alg, decls, sizes, block_of, column_of, named=False):
    """−H⁻¹ g of the stacked system: the Hessian blocks ``block_of(a, b)`` of scalar and
    vector symbols as one matrix (below the diagonal, the transposes of those above) and
    the columns ``column_of(decl)`` stacked. ``named``: the blocks are names, as shown."""
    k = range(len(decls))

    def block(i, j):
        """Block (i, j) as an (n_i, n_j) matrix; below the diagonal, (j, i) transposed
        (a name below the diagonal is its own: ∂²ℓ/∂b∂a)."""
        if named:
            return block_of(decls[i].name, decls[j].name)
        if i > j:
            return ops.transpose(block(j, i))
        h = block_of(decls[i].name, decls[j].name)
        if alg.shape(h) == (sizes[i], sizes[j]):
            return h
        if h == 0:  # no coupling: 0 * ones would fold to SymPy's 0, which has no shape
            return ops.zeros(sizes[i], sizes[j])
        if not alg.shape(h):  # a scalar block (a constant one): n_i x n_j of it
            return h * alg.ones((sizes[i], sizes[j]))
        return layout.reshape(h, sp.Tuple(sizes[i], sizes[j]))

    def column(i):
        g = column_of(decls[i])
        if g == 0 and not named:  # no linear term (no y in it): 0 has no shape
            return ops.zeros(sizes[i])
        if named or decls[i].shape:
            return g
        return layout.reshape(g * alg.ones((1,)), sp.Tuple(1))

    if not named:
        rows = _block_rows(alg, decls, block_of)
        for i in k:
            # a symbol that enters only linearly and alone (sum(x²) + s in [x, s]): its
            # rows of H are 0, and H is singular
            if all(b == 0 for b in rows[i]):
                raise Singular(
                    f"the Hessian's rows for {decls[i].name} are 0 ({decls[i].name} enters "
                    "the objective linearly and alone): it is singular"
                )
        _no_proportional_rows(alg, decls, sizes, rows)
        _no_rank_deficit(alg, decls, sizes, rows)
    h = layout.concatenate(0, *(layout.concatenate(1, *(block(i, j) for j in k)) for i in k))
    return -alg.mm(ops.inv(h), layout.concatenate(0, *(column(i) for i in k)))


def _block_rows(alg, decls, block_of) -> list:
    """The joint Hessian's blocks row by row, each as it stands in its row: below the
    diagonal, the transpose of the block above (whose left factor is not the row's)."""
    order = _order(decls)
    rows = []
    for a in decls:
        row = []
        for b in decls:
            h = block_of(*sorted((a.name, b.name), key=order))
            row.append(h if order(a.name) <= order(b.name) else alg.T(h))
        rows.append(row)
    return rows


def _no_rank_deficit(alg, decls, sizes, rows) -> None:
    """Singular where the joint Hessian has rank below its size at the spec's dims, a
    symbol's rows no fuller than the left factor its blocks share: least squares with an
    intercept, [w, b], X 2×3, has rows Xᵀ[X 1] for w (rank at most 2) and one for b, 3
    < 4 (its step inverted a singular matrix: verification failed, exit 1)."""
    total, bound, said = 0, 0, []
    for i, d in enumerate(decls):
        size = sp.sympify(sp.sympify(sizes[i]).xreplace(alg.dims))  # dims' values are ints
        if not size.is_Integer:
            return
        height = int(size)
        total += height
        firsts = {product_chain(alg.split_scalar(h)[1])[0] for h in rows[i] if h != 0}
        (first,) = firsts if len(firsts) == 1 else (None,)
        rank = rank_at_most(alg, first) if first is not None else None
        if rank is not None and rank < height:
            said.append(f"the rows for {d.name} share a left factor of rank at most {rank}")
            height = rank
        bound += height
    if bound < total:
        raise Singular(
            f"the joint Hessian is {total}×{total} at the spec's dims with rank at most "
            f"{bound} ({'; '.join(said)}): it is singular"
        )


def _no_proportional_rows(alg, decls, sizes, rows) -> None:
    """Singular where one symbol's rows of the joint Hessian are a scalar times
    another's, block by block: (x + y − c)² in [x, y] has [[2, 2], [2, 2]], sum((u − v −
    a)²) in [u, v] has [[2I, −2I], [−2I, 2I]] (its step was an inverse of a singular
    matrix: verification "cannot run", blaming the domains)."""
    k = range(len(decls))
    for i in k:
        for i2 in k:
            if i2 <= i or sizes[i] != sizes[i2]:
                continue
            ratios = []
            for j in k:
                b1, b2 = rows[i][j], rows[i2][j]
                if b1 == 0 and b2 == 0:
                    continue
                (c1, m1), (c2, m2) = alg.split_scalar(b1), alg.split_scalar(b2)
                if b1 == 0 or b2 == 0 or m1 != m2:
                    break
                ratios.append(c2 / c1)
            else:
                if ratios and all(sp.cancel(r - ratios[0]) == 0 for r in ratios):
                    a, b = decls[i].name, decls[i2].name
                    raise Singular(
                        f"the Hessian's rows for {b} are {sp.cancel(ratios[0])} times those "
                        f"for {a}: it is singular"
                    )


def _order(decls):
    names = [d.name for d in decls]
    return names.index


def _stacked_rows(stacked, decls, sizes):
    """Each symbol's rows of a stacked vector (a scalar's one entry)."""
    out, start = {}, sp.Integer(0)
    for d, n in zip(decls, sizes):
        item = sp.Tuple(start, start + n, sp.Integer(1)) if d.shape else start
        out[d.name] = layout.index(stacked, sp.Tuple(item))
        start = start + n
    return out


# scalars whose joint Newton step is written by Cramer's rule; past that, the stacked
# system, whose code solves it: a quadratic fit's step at x = 300 ± 1 was inf (its 3×3
# determinant of power sums rounded to 0)
MAX_CRAMER = 2


def _newton_by_cramer(engine: Engine, decls, grads: dict, blocks: dict) -> dict | None:
    """The joint Newton step of a few scalars as a textbook writes it, H Δ = −g by
    Cramer's rule, Δ_i = det H_i / det H; the stacked form read −[[∇²_x ℓ, ∇²_{x,y} ℓ],
    ...]⁻¹ concatenate([...]) with Δx its row 0 (Rosenbrock's step). A determinant that
    is 0 at every point is "not defined": (x − y)⁴ and exp(x + 2y) in [x, y] have
    Hessians of rank 1, whose rows are proportional by a factor the row test does not
    see, and the step was claimed and raised LinAlgError. None where the determinant
    does not expand within the time budget (the stacked form then)."""
    alg = engine.alg
    names = [d.name for d in decls]
    k = len(names)
    H = sp.Matrix(k, k, lambda i, j: blocks[block_key(names[min(i, j)], names[max(i, j)])].expr)
    g = sp.Matrix([grads[n].expr for n in names])
    try:
        # each of the k + 1 determinants within SECONDS_TO_SOLVE, as one budget
        det, numerators = within(SECONDS_TO_SOLVE * (k + 1), _cramer, H, -g)
    except TimeLimit:
        return None
    if det == 0:
        raise _Undefined(
            f"the Hessian is singular at every point (its determinant is 0 in "
            f"{', '.join(names)}): the second-order model has no unique minimiser"
        )
    joint = ", ".join(names)
    why = (
        rf"the minimiser of the joint second-order model, $H \Delta = -g$ for the {k} "
        r"scalars, solved by Cramer's rule: $\Delta_i = \det H_i / \det H$ ($H_i$: $H$ "
        r"with column $i$ replaced by $-g$; $\det H \neq 0$)"
    )
    lines, out = [], {}
    for d, num in zip(decls, numerators):
        full = simplify(alg, num / det)
        compact = simplify(alg, engine.fold(full))
        lines.append(Line(("newton", d.symbol), (compact,) if compact == full else (compact, full)))
        out[d.name] = Result("newton_step", d.name, full, compact, d.shape)
    engine.steps.append(Step(f"Newton step for {joint} jointly", tuple(lines), why))
    return out


def _joint_newton_step(engine: Engine, grads: dict, blocks: dict) -> dict:
    """The joint Newton step of several scalar or vector wrt symbols: the blocks of the
    Hessian and the gradients stacked into one system, Δ = −H⁻¹ g, each symbol's step
    its rows of Δ. Matrices have no matrix form for it (as for one matrix). The step
    shows the system with the blocks by name; the results are written out in full."""
    spec, alg = engine.spec, engine.alg
    sizes = stacked_sizes(spec)
    if sizes is None:
        raise NotImplementedError(
            "the joint Newton step with a matrix or tensor among the wrt symbols solves "
            "H[Δ] = −G, one unknown per entry, with no matrix form in general; derive the "
            "hessian (its blocks) and solve it numerically"
        )
    decls = [spec.symbol(n) for n in spec.wrt]
    if any(grads[d.name].expr is None for d in decls) or any(
        b.expr is None or b.direction is not None for b in blocks.values()
    ):
        raise NotImplementedError("a gradient or a Hessian block has no matrix form here")
    try:  # its checks first: they name the rows that make H singular
        stacked = _stacked_solve(
            alg,
            decls,
            sizes,
            lambda a, b: blocks[block_key(a, b)].expr,
            lambda d: grads[d.name].expr,
        )
    except Singular as exc:
        raise _Undefined(f"the Hessian is singular: {exc}") from exc
    if all(not d.shape for d in decls) and len(decls) <= MAX_CRAMER:
        by_cramer = _newton_by_cramer(engine, decls, grads, blocks)
        if by_cramer is not None:
            return by_cramer
    shown = _stacked_solve(
        alg,
        decls,
        sizes,
        lambda a, b: block_symbol(spec.symbol(a).symbol, spec.symbol(b).symbol),
        lambda d: gradient_symbol(d.symbol),
        named=True,
    )
    joint = ", ".join(spec.wrt)
    engine.steps.append(
        Step(
            f"Newton step for {joint} jointly",
            (Line(NEWTON_STACKED, (shown,)),),
            r"the minimiser of the joint second-order model: the blocks of the Hessian "
            r"(those below the diagonal, the transposes of those above) and the gradients "
            r"stacked, $\Delta = -H^{-1} g$ ($H$ invertible)",
        )
    )
    out = {}
    rows = _stacked_rows(stacked, decls, sizes)
    for d, compact in _stacked_rows(NEWTON_STACKED, decls, sizes).items():
        line = Line(("newton", spec.symbol(d).symbol), (compact,))
        engine.steps.append(
            Step(f"Newton step for {d}", (line,), f"the rows of the joint step for {d}")
        )
        out[d] = Result("newton_step", d, rows[d], compact, spec.symbol(d).shape)
    return out


def _on_its_domain(engine: Engine, verdict: Verdict, about: str) -> Verdict:
    """A proof stands only where the objective is defined on a convex set of the wrt
    symbols (``split_domain``); otherwise the verdict is undecided, for the numeric
    search, and says why."""
    if verdict.convex is not True:
        return verdict
    spec = engine.spec
    variables = {spec.symbol(n).symbol for n in spec.wrt}
    why = split_domain(spec, engine.expand(spec.objective), variables)
    if why is None:
        return verdict
    return Verdict(
        None,
        f"the Hessian is positive semidefinite wherever the objective is defined, but the "
        f"objective has {why} inside the domain of {about}, which may split the domain "
        "(1/(x - 5)^2 is convex on each side of 5, not on the real line)",
    )


# Where the objective has kinks in a wrt symbol, its Hessian is that of the pieces: 0 for
# -relu(x), which is concave. Only the composition rules, which know each kink's side,
# prove convexity there.
_KINKED = (
    "the objective has kinks (relu, abs, max, ...) in the wrt symbols, where the "
    "Hessian of its pieces says nothing about convexity (-relu has Hessian 0 and is "
    "concave), and the composition rules did not prove it"
)


def _kinked(engine: Engine) -> bool:
    spec = engine.spec
    f = engine.expand(spec.objective)
    return any(kinked_in(f, spec.symbol(n).symbol) for n in spec.wrt)


def _by_composition(engine: Engine) -> list | None:
    """The composition rules that prove the objective convex in every wrt symbol at
    once (``_curvature``), or None."""
    spec = engine.spec
    variables = {spec.symbol(n).symbol for n in spec.wrt}
    return convex_by_composition(spec, engine.expand(spec.objective), variables)


def _composition_reason(rules: list, over: str) -> str:
    return (
        f"the objective is convex in {over} by the composition rules: {'; '.join(rules)} "
        "(a convex function of an affine one is convex, and so is a nonnegative "
        "combination of convex ones)"
    )


def _constant_joint_verdict(engine: Engine, q) -> Verdict | None:
    """Where every wrt symbol is a scalar and the joint Hessian is a matrix of rational
    numbers (a quadratic objective), the verdict by exact arithmetic: SymPy's
    ``is_positive_semidefinite`` on it, and where it is not PSD its smallest eigenvalue,
    negative at every point (the calculus section puts a drawn one in, which
    verification checks by jax.hessian); else None."""
    spec = engine.spec
    if any(spec.symbol(n).shape for n in spec.wrt):
        return None
    directions = [direction_symbol(spec.symbol(n).symbol) for n in spec.wrt]
    H = constant_form_matrix(q, directions)
    if H is None:
        return None
    about = f"{', '.join(spec.wrt)} jointly"
    if H.is_positive_semidefinite:
        return Verdict(
            True,
            "the joint Hessian is a constant matrix of rational numbers (the objective is "
            "quadratic), positive semidefinite by exact arithmetic (SymPy's "
            f"is_positive_semidefinite), so the objective is convex in {about}",
        )
    low = float(min(np.linalg.eigvalsh(np.array(H.tolist(), dtype=float))))
    return Verdict(
        False,
        "not convex in "
        f"{about}: the joint Hessian is a constant matrix of rational numbers (the "
        "objective is quadratic), not positive semidefinite by exact arithmetic (SymPy's "
        f"is_positive_semidefinite): its smallest eigenvalue, {low:.6g} < 0, is the same at "
        "every point (the result's 'counterexample' is one)",
        eigenvalue=low,
    )


def _joint_convexity(engine: Engine, blocks: dict) -> dict:
    """Convexity in several wrt symbols at once: the joint Hessian PSD. A proof: the
    second derivative along every joint direction, d²ℓ/dt² = ⟨Δ, H Δ⟩, is a scalar
    provably >= 0 (a sum of p (1 − p) (Xᵀ Δ_w + Δ_b)² and ‖Δ‖² terms); else undecided,
    for the calculus section's numeric search."""
    spec = engine.spec
    label = joint_key(spec.wrt)
    q = along_directions(engine)
    decl = spec.symbol(spec.wrt[0])
    lhs = ("along", *(spec.symbol(n).symbol for n in spec.wrt))
    rules = _by_composition(engine)
    constant = _constant_joint_verdict(engine, q) if rules is None else None
    if rules is not None:
        verdict = Verdict(True, _composition_reason(rules, f"{', '.join(spec.wrt)} jointly"))
    elif constant is not None:
        verdict = constant
    elif _kinked(engine):
        verdict = Verdict(None, _KINKED)
    elif provably_nonnegative(spec, q):
        verdict = Verdict(
            True,
            "the second derivative along every joint direction, "
            r"$\langle \Delta, H \Delta \rangle$, is nonnegative for every value of the "
            f"symbols, so the joint Hessian is positive semidefinite and the objective is "
            f"convex in {', '.join(spec.wrt)} jointly",
        )
    else:
        verdict = Verdict(
            None,
            "no proof that the second derivative along every joint direction is "
            "nonnegative was found",
        )
    verdict = _on_its_domain(engine, verdict, f"{', '.join(spec.wrt)} jointly")
    compact = simplify(engine.alg, engine.fold(q))
    # the step shows what the verdict is about: the objective for the composition rules,
    # the second derivative along a joint direction otherwise (in its compact form)
    line = Line(LOSS, (engine.fold(spec.objective),)) if rules else Line(lhs, (compact,))
    engine.steps.append(Step(f"Convexity in {label}", (line,), verdict.reason))
    result = Result("convexity", decl.name, q, compact, (), verdict=verdict, over=tuple(spec.wrt))
    return {label: result}
