"""Back-propagation through time for a recurrence with a symbolic horizon T
(shared/spec-format.md, "Recurrences").

The loss is ℓ = Σ_{t=1}^{T} ℓ_t(h_t) + L(h_T) with h_t = f(h_{t-1}, x_t; θ) (L: a final
loss at the last step only, ``recurrence.final``). Its adjoints δ_t = ∂ℓ/∂h_t obey

    δ_T = ∇_h ℓ_T(h_T) + ∇_h L(h_T),        δ_t = ∇_h ℓ_t(h_t) + J_{t+1}ᵀ δ_{t+1},

and the gradient of a parameter is a sum over the steps of the step's vector-Jacobian
product with its adjoint, ∇_θ ℓ = Σ_t (∂f/∂θ)ᵀ δ_t + ∂ℓ_t/∂θ, plus ∂L/∂θ at T. Each of
these is one step's expression, differentiated by the calculus engine as the gradient
of a scalar: the adjoint recursion is ∇ of ℓ_t(h) + ⟨δ_{t+1}, f(h, x_{t+1})⟩ in h, so
no Jacobian is formed and nothing is unrolled. The Jacobian ∂h_T/∂h_0 is the product of the step
Jacobians J_t = ∂f/∂h_{t-1}. Where the new state's expression reappears in a result
(1 − tanh(u)², σ(u)(1 − σ(u))) it is written as the state itself (h_t, h_{t+1}).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from dlsym._errors import SpecError
from dlsym.calculus._derive import in_matrix_form
from dlsym.calculus._rules import NoMatrixRule
from dlsym.calculus._simplify import simplify
from dlsym.expr import _ops as ops


@dataclass(frozen=True)
class BPTT:
    terminal: dict  # state name -> δ_T, in the states at t and the inputs at t
    adjoint: dict  # state name -> δ_t, also in the states at t + 1, inputs, δ_{t+1}
    summands: dict  # wrt name -> step t's term of its gradient (δ_t, h_{t-1}, h_t, x_t)
    initial: dict  # wrt name of an initial state's symbol -> ∂ℓ/∂h_0 (h_0 as h_t, δ_1)
    # wrt name -> ∂(final loss)/∂θ, in the states at t read at t = T (an output layer's
    # weights under a loss at the last step only); absent where the final loss has none
    final: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class StepJacobian:
    state: str
    step: object  # J_t = ∂h_t/∂h_{t-1}, in h_{t-1}, h_t and x_t


def _pair(alg, a, b):
    """⟨a, b⟩ for tensors of one shape (a b for scalars)."""
    return a * b if alg.shape(a) == () else ops.tsum(a * b)


def _in_matrix_form(rec, kind, target, names, where) -> dict:
    try:
        return in_matrix_form(rec.spec, kind, target, names)
    except NoMatrixRule as exc:
        raise SpecError(
            f"no matrix form for {str(exc).replace('_', '', 1)}; a recurrence needs one",
            rec.head.doc.loc(*where),
        ) from None


def _gradients(rec, objective, names) -> dict:
    return _in_matrix_form(rec, "gradient", objective, names, ("recurrence",))


def derive_bptt(rec) -> BPTT:
    alg = rec.spec.algebra

    def folded(update: str, made: str) -> dict:
        """Each state's update (the attribute ``update``) -> the state it makes
        (``made``), as written and as the results write it: a row-vector update
        tanh(h @ W + ...) reads tanh(Wᵀ h + ...) there (simplify's order), and
        1 − h_t² was written out in full. A compound expression only: a bare number or
        symbol (h: 2, h: w) would turn every 2 or w into h_t."""
        out: dict = {}
        for s in rec.states:
            e = getattr(s, update)
            if not e.is_Atom:
                out[e] = getattr(s, made)
                out.setdefault(simplify(alg, alg.tidy(e)), getattr(s, made))
        return out

    fold_next, fold_cur = folded("update_next", "next"), folded("update", "cur")
    cur_names = [str(s.cur) for s in rec.states]
    loss = rec.loss if rec.loss is not None else sp.S.Zero
    final = rec.final if rec.final is not None else sp.S.Zero
    # δ_T takes the final loss too; the recursion for t < T does not
    terminal = _gradients(rec, loss + final, cur_names)
    coupled = sp.Add(*[_pair(alg, s.adjoint_next, s.update_next) for s in rec.states])
    adjoint = _gradients(rec, loss + coupled, cur_names)
    initial = {}
    for s in rec.states:
        if isinstance(s.init, sp.Symbol) and str(s.init) in rec.wrt:
            initial[str(s.init)] = _gradients(rec, coupled, [str(s.cur)])[str(s.cur)]
    params = [w for w in rec.wrt if w not in initial]
    summands = {}
    if params:
        step = sp.Add(*[_pair(alg, s.adjoint, s.update) for s in rec.states]) + loss
        summands = _gradients(rec, step, params)
    reads_final = [w for w in params if rec.spec.symbol(w).symbol in final.free_symbols]
    at_end = _gradients(rec, final, reads_final) if reads_final else {}
    return BPTT(
        {s.name: alg.tidy(terminal[str(s.cur)].xreplace(fold_cur)) for s in rec.states},
        {s.name: alg.tidy(adjoint[str(s.cur)].xreplace(fold_next)) for s in rec.states},
        {w: alg.tidy(e.xreplace(fold_cur)) for w, e in summands.items()},
        {w: alg.tidy(e.xreplace(fold_next)) for w, e in initial.items()},
        {w: alg.tidy(e.xreplace(fold_cur)) for w, e in at_end.items()},
    )


def step_jacobian(rec) -> StepJacobian:
    (s,) = rec.states
    if len(s.shape) > 1:
        raise SpecError(
            "the Jacobian of the final state is derived for a vector or scalar state",
            rec.head.doc.loc("recurrence", "state"),
        )
    where = ("recurrence", "update")
    # a scalar state's step Jacobian is its derivative, a number: ∂h_T/∂h_0 = ∏ J_t
    # (the vanishing gradient of a scalar RNN, w σ'(·) per step)
    kind = "jacobian" if s.shape else "gradient"
    step = _in_matrix_form(rec, kind, s.update, [str(s.prev)], where)[str(s.prev)]
    fold = {} if s.update.is_Atom else {s.update: s.cur}
    return StepJacobian(s.name, rec.spec.algebra.tidy(step.xreplace(fold)))
