"""What a hand-written derivative is compared with: the derived closed form of the
spec (gradient, Jacobian, Hessian), or, where the derivation has no second derivative to
give, JAX autodiff of the spec's own objective or output, which the report then says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dlsym._api import derive, load_document
from dlsym._errors import SpecError
from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.sections.calculus import Derivation
from dlsym.spec._common import calculus_only
from dlsym.spec._yamlfile import Document

# (output spec?, order) -> (derive kind, the result's name, copies of the wrt shape)
KINDS = {
    (False, 1): ("gradient", "gradient", 1),
    (False, 2): ("hessian", "Hessian", 2),
    (True, 1): ("jacobian", "Jacobian", 1),
    (True, 2): (None, "second derivative", 2),  # no derive kind: JAX autodiff only
}


@dataclass(frozen=True)
class Reference:
    derivation: Derivation  # of the first-order result: the spec, its symbols and dims
    kind: str | None  # the derivation's result kind, None when JAX autodiff is the reference
    result: str
    copies: int
    evaluate: Callable  # (**point) -> {wrt: float64 array}
    source: str  # how the report names the reference
    symbolic: Derivation | None  # whose results[kind] are its expressions (None: autodiff)
    # JAX reverse-mode autodiff of the spec's own objective (first order; None where JAX
    # cannot trace it): evaluated in the checked dtype, its rounding is the other half of
    # what a right float32 implementation can show (check_tolerance)
    autodiff: Callable | None = None


def _document(source) -> Document:
    doc = source.spec.doc if isinstance(source, Derivation) else load_document(source)
    if not isinstance(doc.data, dict):
        derive(doc)  # reports the located error
    calculus_only(doc, "dlsym check")
    return doc


def _derive(doc: Document, kinds: list, wrt) -> Derivation:
    data = dict(doc.data, derive=kinds)
    if wrt is not None:
        data["wrt"] = list(wrt)
    return derive(Document(data, doc.file, doc.locations, doc.source))


def _as_dict(fn, wrt: list):
    def evaluate(**point):
        out = fn(**point)
        out = out if isinstance(out, dict) else {wrt[0]: out}
        return {w: np.asarray(out[w], dtype=np.float64) for w in wrt}

    return evaluate


def reference(source, wrt, order: int) -> Reference:
    """The reference of ``order`` (1 or 2) for ``wrt`` (None: the spec's)."""
    if order not in (1, 2):
        raise SpecError(f"order must be 1 or 2, got {order!r}")
    doc = _document(source)
    names = [wrt] if isinstance(wrt, str) else wrt
    if names is None and isinstance(doc.data.get("wrt"), str):
        names = [doc.data["wrt"]]
    output = "output" in doc.data and "objective" not in doc.data
    first = KINDS[output, 1][0]
    d = _derive(doc, [first], names)
    names = list(d.spec.wrt)
    kind, result, copies = KINDS[output, order]
    if order == 1:
        evaluate = _as_dict(d.function(kind), names)
        return Reference(
            d,
            kind,
            result,
            copies,
            evaluate,
            f"the derived {result}",
            d,
            _reverse(d, output, names),
        )
    if len(names) != 1:
        raise SpecError(
            f"--order 2 checks the second derivative with respect to one symbol; name it "
            f"with --wrt (the spec's wrt is {', '.join(names)})"
        )
    why = "the derivation gives no second derivative of an output"
    if kind is not None:
        try:
            d2 = _derive(doc, [kind], names)
            evaluate = _as_dict(d2.function(kind), names)
            method = d2.results[kind][names[0]].method
            source = f"the derived {result} ({method})"
            return Reference(d, kind, result, copies, evaluate, source, d2)
        except Exception as exc:  # noqa: BLE001 - any failure to derive: autodiff, said so
            why = f"no {result} could be derived ({type(exc).__name__}: {exc})"
    evaluate, how = _autodiff(d, output, names[0])
    return Reference(d, None, result, copies, evaluate, f"{how} ({why})", None)


def _traced(d: Derivation):
    """The spec's objective (or output) as a JAX function of its symbols, in the
    floating dtype of its inputs; the symbols' names."""
    jax_x64()
    import jax.numpy as jnp

    spec = d.spec
    names = [s.name for s in spec.symbols]
    dim_args = [spec.dim_symbols[k] for k in spec.dims]
    dim_vals = [spec.dims[k] for k in spec.dims]
    f = codegen.lambdify([s.symbol for s in spec.symbols] + dim_args, [d.expanded_target()], "jax")

    def target(*xs):
        floats = [x.dtype for x in xs if jnp.issubdtype(x.dtype, jnp.floating)]
        return jnp.asarray(f(*xs, *dim_vals)[0], dtype=jnp.result_type(*floats))

    return target, names


def _reverse(d: Derivation, output: bool, wrt: list):
    """jax.grad (jax.jacrev of an output) of the spec's text: how jax.grad and PyTorch
    compute the first derivative, whose rounding in float32 can exceed the derived
    formula's (attention's softmax backward: 280 eps max|g| at a point where the derived
    formula rounded to 1). None where the text does not trace."""
    import jax
    import jax.numpy as jnp

    try:
        target, names = _traced(d)
        argnums = tuple(names.index(w) for w in wrt)
        first = jax.jit((jax.jacrev if output else jax.grad)(target, argnums=argnums))
    except Exception:  # noqa: BLE001 - only a tolerance estimate: the derived one stands
        return None

    def evaluate(**point):
        out = first(*[jnp.asarray(point[n]) for n in names])
        return {w: np.asarray(v, dtype=np.float64) for w, v in zip(wrt, out)}

    return evaluate


def _autodiff(d: Derivation, output: bool, wrt: str):
    """JAX's second derivative of the spec's own objective (or output), in float64."""
    jax = jax_x64()
    import jax.numpy as jnp

    target, names = _traced(d)
    argnum = names.index(wrt)
    if output:
        second = jax.jacfwd(jax.jacfwd(target, argnums=argnum), argnums=argnum)
        how = "jax.jacfwd(jax.jacfwd(output)) of the spec's output"
    else:
        second = jax.hessian(target, argnums=argnum)
        how = "jax.hessian of the spec's objective"
    fast = jax.jit(second)

    def evaluate(**point):
        return {wrt: np.asarray(fast(*[jnp.asarray(point[n]) for n in names]), dtype=np.float64)}

    return evaluate, how
