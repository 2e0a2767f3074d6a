"""Which results a calculus spec derives, in which order: the gradient first (the
Hessian and every second-order result start from it), then the Hessian, then the
results built on the gradient and the Hessian (``_second_order``); an output's Jacobian
on its own."""

from __future__ import annotations

import dataclasses

import sympy as sp

from dlsym._budget import step
from dlsym._errors import Location, SpecError
from dlsym.calculus import _affine
from dlsym.calculus import _second_order as second
from dlsym.calculus._derive import Engine, block_key, derivation_algebra
from dlsym.calculus._simplify import simplify
from dlsym.expr import _ops as ops
from dlsym.spec._spec import Spec

# the kinds built on the gradient and the Hessian (the joint one of several wrt symbols)
_ON_THE_HESSIAN = {
    "newton_step": second.newton_step,
    "taylor": second.taylor,
    "convexity": second.convexity,
}


# what the objective does with a matrix that must be invertible, and what a singular
# one means for it (det(outer(x, a)) is 0 everywhere, and its derivative through the
# inverse, det(M) M⁻ᵀ, was nan: exit 1 on a function with no derivative rule left)
_SINGULAR_USES = {
    ops.inv: "inverts",
    ops.logdet: "takes the log-determinant of",
    ops.det: "takes the determinant of",
}
_SINGULAR_MEANS = {
    ops.inv: "the function is not defined",
    ops.logdet: "the function is −∞ everywhere",
    ops.det: "the function is 0 everywhere and its derivative through the inverse is not defined",
}


def _no_singular_inverse(spec: Spec, engine: Engine) -> None:
    """A located error where the objective (or output) inverts, or takes the
    (log-)determinant of, a matrix that is singular at the spec's dims (inv(X.T @ X)
    with X 2×3 has rank at most 2): the function is not defined, and its derivatives
    compared "passed" on round-off of size 1e16 (exit 0), or were nan (exit 1)."""
    target = spec.objective if spec.objective is not None else spec.output
    if target is None:
        return
    alg = spec.algebra
    for node in sp.preorder_traversal(engine.expand(target)):
        if type(node) not in _SINGULAR_USES:
            continue
        m = node.args[0]
        size, bound = _affine.size_at_dims(alg, m), _affine.rank_at_most(alg, m)
        if size is not None and bound is not None and bound < size:
            what = "objective" if spec.objective is not None else "output"
            raise SpecError(
                f"the {what} {_SINGULAR_USES[type(node)]} a {size}×{size} matrix of rank at "
                f"most {bound} at the spec's dims (a product of matrices is no fuller than "
                "its thinnest factor): it is singular, so "
                f"{_SINGULAR_MEANS[type(node)]}; give dims where it is invertible",
                spec.doc.loc(what),
            )


def run(spec: Spec) -> tuple[dict, list]:
    """Derive every requested kind: {kind: {wrt: Result}} and the steps."""
    with step("writing out the defines", entry_loc(spec)):
        engine = Engine(spec)
    _no_singular_inverse(spec, engine)
    results: dict = {}
    wrt = ", ".join(spec.wrt)
    kinds = set(spec.derive)
    if kinds - {"jacobian"}:
        with step(f"gradient w.r.t. {wrt}", entry_loc(spec, "gradient", *spec.derive)):
            grads = engine.gradient()
        if "gradient" in kinds:
            results["gradient"] = grads
        hessians: dict = {}

        def hessian_of(name: str):
            if name not in hessians:
                with step(
                    f"Hessian w.r.t. {name}",
                    entry_loc(spec, "hessian", *_ON_THE_HESSIAN, "stationary"),
                ):
                    hessians.update(engine.hessian(grads, name))
            return hessians[name]

        blocks: dict = {}
        if kinds & {"hessian", *_ON_THE_HESSIAN}:
            if len(spec.wrt) == 1:
                blocks = {spec.wrt[0]: hessian_of(spec.wrt[0])}
            else:
                blocks = _joint_hessian(engine, grads, hessian_of)
        if "hessian" in kinds:
            results["hessian"] = blocks
        for kind, build in _ON_THE_HESSIAN.items():
            if kind in kinds:
                with step(f"{kind.replace('_', ' ')} in {wrt}", entry_loc(spec, kind)):
                    try:
                        results[kind] = build(engine, grads, blocks)
                    except NotImplementedError as exc:
                        raise SpecError(
                            f"cannot derive the {kind} w.r.t. {wrt}: {exc}", _kind_loc(spec, kind)
                        ) from None
        if "stationary" in kinds:

            def joint_blocks():
                # once: its steps are shown once where both the jointly affine and the
                # elimination attempts ask for it
                if not blocks:
                    blocks.update(_joint_hessian(engine, grads, hessian_of))
                return blocks

            with step(f"stationary point in {wrt}", entry_loc(spec, "stationary")):
                results["stationary"] = second.stationary(engine, grads, hessian_of, joint_blocks)
    if "jacobian" in kinds:
        with step(f"Jacobian w.r.t. {wrt}", entry_loc(spec, "jacobian")):
            results["jacobian"] = engine.jacobian()
    _real(spec, results)
    return _on_the_domain(spec, results, engine.steps)


def _on_the_domain(spec: Spec, results: dict, steps: list) -> tuple[dict, list]:
    """Results and steps with the wrt symbols' domain facts applied once everything is
    differentiated: S⁻ᵀ = S⁻¹ for an spd S, sum(p) = 1 on the simplex. The engine keeps
    them out (a derivative of the folded gradient is not the Hessian: docs/spec.md,
    ambient); the values agree wherever the domain holds, the only points a result is
    evaluated at, and read as a paper writes them: 2 S⁻¹x, not (S⁻¹ + S⁻ᵀ)x."""
    alg = derivation_algebra(spec, ambient=False)
    facts = alg.symmetric | alg.sums_to_one | alg.rows_sum_to_one
    if not any(spec.symbol(n).symbol in facts for n in spec.wrt):
        return results, steps

    def fold(e):
        return simplify(alg, alg.tidy(e)) if isinstance(e, sp.Basic) else e

    def folded(r):
        return dataclasses.replace(r, expr=fold(r.expr), compact=fold(r.compact))

    results = {kind: {k: folded(r) for k, r in part.items()} for kind, part in results.items()}
    steps = [
        dataclasses.replace(
            s,
            lines=tuple(
                dataclasses.replace(line, rhs=tuple(fold(e) for e in line.rhs)) for line in s.lines
            ),
        )
        for s in steps
    ]
    return results, steps


# what a derived result may not hold, and why it would: a located error instead
def _holds(*atoms):
    return lambda e: any(p in atoms for p in ops.distinct_parts(e))


def _complex_number(e) -> bool:
    """A power of numbers that is not real: (-8)**(1/3) is 2 (-1)**(1/3) to SymPy."""
    return any(
        isinstance(p, sp.Pow) and p.is_number and p.is_extended_real is False
        for p in ops.distinct_parts(e)
    )


_NOT_REAL = (
    (
        lambda e: _holds(sp.I)(e) or _complex_number(e),
        "is not real for any value of its symbols: its {kind} with respect to {key} holds "
        "the imaginary unit (a square root or log of an expression that is negative "
        "everywhere, such as sqrt(-1 - x**2), or a root of a negative number, such as "
        "(-8)**(1/3), which NumPy's float powers make nan)",
    ),
    (
        _holds(sp.zoo, sp.oo, -sp.oo, sp.nan),
        "has no finite {kind} with respect to {key}: it holds an infinity or 0/0 (a "
        "function of a constant 0 where its derivative is infinite, such as 0**w, whose "
        "derivative is 0**w log 0)",
    ),
)


def _real(spec: Spec, results: dict) -> None:
    """A located error where a result holds the imaginary unit (SymPy rewrote the square
    root or log of an expression that is negative for every value of its symbols,
    sqrt(-1 - x**2) = i sqrt(1 + x**2), so the objective is nowhere real) or an infinity
    (code generated from it would name SymPy's ``zoo``), also once the dims are put in
    (sum(x) / (m - 2) with m = 2 divides by 0 at the spec's sizes)."""
    where = "objective" if spec.objective is not None else "output"
    # the function itself, where no result shows it (sum((-u)**(1/3)) w.r.t. an unused
    # x: the gradient 0 is real, the objective and its generated code complex)
    written = [getattr(spec, "objective", None), *(d.expr for d in spec.defines)]
    test, message = _NOT_REAL[0]
    if any(isinstance(e, sp.Basic) and test(e) for e in written):
        raise SpecError(
            f"the {where} is not real for any value of its symbols: it holds the imaginary "
            "unit (a square root or log of an expression negative everywhere, or a root of "
            "a negative number, such as (-8)**(1/3) or (-u)**(1/3) with u positive, which "
            "NumPy's float powers make nan)",
            spec.doc.loc(where),
        )
    for kind, parts in results.items():
        for key, r in parts.items():
            if not isinstance(r.expr, sp.Basic):
                continue
            for test, message in _NOT_REAL:
                if test(r.expr):
                    raise SpecError(
                        f"the {where} " + message.format(kind=kind, key=key), spec.doc.loc(where)
                    )
            try:
                at_dims = r.expr.xreplace({k: sp.Integer(v) for k, v in spec.dim_values.items()})
                bad = any(test(at_dims) for test, _ in _NOT_REAL)
            except (TypeError, ValueError, ZeroDivisionError):  # SymPy evaluating 1/0 inside
                bad = True
            if bad:
                raise SpecError(
                    f"the {where}'s {kind} with respect to {key} is infinite, 0/0 or not "
                    f"real at the spec's dims ({_dims(spec)}): an expression in the dims is "
                    "0 there under a division (sum(x) / (m - 2) with m = 2), or negative "
                    "under a root",
                    spec.doc.loc(where),
                )


def _dims(spec: Spec) -> str:
    return ", ".join(f"{k} = {v}" for k, v in spec.dims.items())


def _joint_hessian(engine: Engine, grads: dict, hessian_of) -> dict:
    """The blocks of the joint Hessian of several wrt symbols, each pair once (a before
    b in ``wrt``): {block_key(a, b): Result}; the blocks below the diagonal are these
    transposed, which the numeric function fills in."""
    wrt = engine.spec.wrt
    out = {}
    for i, a in enumerate(wrt):
        with step(f"Hessian w.r.t. {a}"):
            out[block_key(a, a)] = dataclasses.replace(hessian_of(a), over=(a, a))
        for b in wrt[i + 1 :]:
            with step(f"Hessian block w.r.t. {a} and {b}"):
                out[block_key(a, b)] = engine.hessian_block(grads, a, b)
    return out


def entry_loc(spec: Spec, *kinds: str) -> Location:
    """Where the work on ``kinds`` is said to be (a budget error's location): the entry
    of the first of them that ``derive`` lists, else the objective's (or output's) key."""
    listed = spec.doc.data.get("derive")
    for kind in kinds:
        if isinstance(listed, list) and kind in listed:
            return spec.doc.loc("derive", listed.index(kind))
    return spec.doc.key_loc("objective" if spec.objective is not None else "output")


def _kind_loc(spec: Spec, kind: str):
    """Where ``derive`` lists ``kind``."""
    listed = spec.doc.data.get("derive")
    if isinstance(listed, list) and kind in listed:
        return spec.doc.loc("derive", listed.index(kind))
    return spec.doc.loc("derive")
