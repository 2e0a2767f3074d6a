"""``dlsym codegen``: a readable, importable Python module from a derivation.

One function per result (the objective, the gradient for each ``wrt``, the Hessian, the
Jacobian), each taking the spec's symbols in the spec's order, with a docstring giving
shapes and the LaTeX of the formula. The named intermediates become local variables,
common subexpressions are shared (``sympy.cse``), matrix results stay matrix code
(``d[:, None] * X`` for ``diag(d) X``), and the stability rewrites of ``_stable`` are
applied. The module needs NumPy (and SciPy for ``erf``) or JAX, never dlsym.
"""

from __future__ import annotations

from dlsym._errors import SpecError
from dlsym._version import __version__
from dlsym.calculus._derive import direction_symbol
from dlsym.codegen._function import FunctionWriter, module_source, result_names
from dlsym.printing._render import plain_prose
from dlsym.spec._common import calculus_only


def _shape_doc(shape) -> str:
    return "scalar" if not shape else f"[{', '.join(str(d) for d in shape)}]"


_SUMMARY = {
    "objective": "The objective of {spec}.",
    "output": "The output of {spec}.",
    "gradient": "The gradient of the objective with respect to {wrt}.",
    "hessian": "The Hessian of the objective with respect to {wrt}.",
    "jacobian": "The Jacobian of the output with respect to {wrt}.",
    "newton_step": "The Newton step -H^{{-1}} g of the objective in {wrt}.",
    "stationary": "The stationary point in {wrt}: the gradient is 0 there.",
    "taylor": "The second-order Taylor model of the objective at {wrt}.",
}


def in_docstring(text: str, raw: bool = False) -> str:
    """``text`` (a spec's title, a path, a LaTeX formula: user text) made safe inside a
    triple-quoted docstring of generated code: a quote can never close it (a title
    holding three quotes then ran code on import: every quote is escaped, which in a
    raw docstring keeps its backslash but still cannot close it), a backslash never
    starts an escape (doubled, outside a raw docstring, where LaTeX stays as written),
    and what Python's source may not hold (NUL, a lone surrogate) is an escape, or in a
    raw docstring the replacement character."""
    if not raw:
        text = text.replace("\\", "\\\\")
    text = text.replace('"', '\\"')
    return "".join(
        c if c.isprintable() or c in "\n\t" else "\ufffd" if raw else repr(c)[1:-1] for c in text
    )


def _doc(spec, kind: str, wrt: str, shape, latex: str, extra=()) -> tuple:
    """Docstring lines: what the function computes, the argument and result shapes, and
    the LaTeX of the formula. ``extra``: (name, shape) of parameters after the symbols."""
    return (
        f'r"""{_SUMMARY[kind].format(spec=spec.name, wrt=wrt)}',
        "",
        "Args:",
        *(f"    {s.name}: {_shape_doc(s.shape)}" for s in spec.symbols),
        *(f"    {n}: {_shape_doc(s)}" for n, s in extra),
        f"Returns: {_shape_doc(shape)}",
        "",
        f"LaTeX: {in_docstring(latex, raw=True)}",
        '"""',
    )


def generate(d, target: str = "numpy", custom_vjp: bool = False, source: str = "") -> str:
    if target not in ("numpy", "jax"):
        raise ValueError("target must be 'numpy' or 'jax'")
    if custom_vjp and target != "jax":
        raise ValueError("--custom-vjp needs --target jax")
    if d.section is not None:  # a section other than calculus (DerivationBase.section)
        calculus_only(d.header.doc, "dlsym codegen")
    spec = d.spec
    w = FunctionWriter(spec, target)
    name, expr, shape = w.primary()
    functions = [w.function(name, expr, shape, _doc(spec, name, "", shape, d.latex_of(expr)))]
    skipped = []  # results without a closed form: said in the module's docstring
    for kind, parts in d.results.items():
        names = result_names(kind, parts)
        for wrt, r in parts.items():
            if r.entries is not None:
                raise SpecError(
                    f"the {kind} with respect to {wrt} was derived as explicit "
                    "entries; codegen emits matrix-form results only",
                    spec.doc.loc("derive"),
                )
            name = names[wrt]
            if r.verdict is not None:  # convexity: a verdict, whose Hessian has its own kind
                skipped.append(f"{name}: a verdict, not a function ({r.verdict.word})")
                continue
            if r.expr is None:
                skipped.append(f"{name}: not generated ({plain_prose(r.method)})")
                continue
            display = d.result_display(kind)
            latex = display["latex"] if len(parts) == 1 else display["wrt"][wrt]["latex"]
            if kind == "taylor":  # a model in a direction: one more parameter per symbol
                syms = [spec.symbol(n).symbol for n in r.about]
                extra = {direction_symbol(x): d.algebra.shape(direction_symbol(x)) for x in syms}
                about = ", ".join(f"{x.name} + {delta.name}" for x, delta in zip(syms, extra))
                about = f"({about})" if len(syms) > 1 else about
                doc = _doc(spec, kind, about, (), latex, [(x.name, s) for x, s in extra.items()])
                functions.append(w.function(name, r.expr, (), doc, extra=extra))
                continue
            functions.append(w.result(name, r, _doc(spec, kind, wrt, r.shape, latex)))
    if custom_vjp:
        functions.append(_custom_vjp(d, w.names))
    header = [
        f'"""Generated by dlsym {__version__} from '
        f"{in_docstring(source or spec.name)}: {in_docstring(spec.title)}.",
        "",
        f"Regenerate with: dlsym codegen {in_docstring(source or spec.name)} --target {target}"
        + (" --custom-vjp" if custom_vjp else ""),
        "Functions take the spec's symbols in this order: "
        f"{', '.join(s.name for s in spec.symbols)}.",
        *(in_docstring(line) for line in skipped),
        '"""',
    ]
    return "\n".join(header) + "\n\n" + module_source(target, functions, names=w.names)


def _custom_vjp(d, names) -> str:
    """The objective with the closed-form gradient as its backward. Its functions take
    the spec's symbols, so the module functions they call and their own locals are
    named by ``names`` (``_objective = objective`` where a symbol is called objective).

    ``objective_custom_vjp`` is a def that forwards its arguments, by position, to the
    ``jax.custom_vjp``: that object's ``__call__(self, *args, **kwargs)`` would take a
    symbol named ``self``, passed by keyword, as its own. Its ``__wrapped__`` is the
    ``jax.custom_vjp``, which ``dlsym check`` differentiates (``framework_of``)."""
    spec = d.spec
    args = ", ".join(s.name for s in spec.symbols)
    grads = d.results.get("gradient", {})
    called = ["objective"] + [f"gradient_{n}" for n in grads]
    aliases = "".join(f"{names(f)} = {f}\n" for f in called if names(f) != f)
    res, g, jax, jnp, objective = (names(n) for n in ("residuals", "g", "jax", "jnp", "objective"))
    cot = ", ".join(
        f"{g} * {names(f'gradient_{s.name}')}({args})"
        if s.name in grads
        else f"{jnp}.zeros_like({s.name})"
        for s in spec.symbols
    )
    # the spec's names do not start with "_": the underscored ones here are never theirs
    return (
        (f"{aliases}\n\n" if aliases else "")
        + f"@{jax}.custom_vjp\ndef _objective_custom_vjp({args}):\n"
        f"    return {objective}({args})\n\n\n"
        f"def _objective_fwd({args}):\n    return {objective}({args}), ({args},)\n\n\n"
        f"def _objective_bwd({res}, {g}):\n    {args}, = {res}\n"
        f"    return ({cot},)\n\n\n"
        "_objective_custom_vjp.defvjp(_objective_fwd, _objective_bwd)\n\n\n"
        f"def objective_custom_vjp({args}):\n"
        f'    """The objective; its backward is the closed-form gradient '
        f'({", ".join(grads)})."""\n'
        f"    return _objective_custom_vjp({args})\n\n\n"
        "# a def, not the jax.custom_vjp, whose call would take a symbol named self as its\n"
        "# own; dlsym check differentiates what it wraps\n"
        "objective_custom_vjp.__wrapped__ = _objective_custom_vjp\n"
    )
