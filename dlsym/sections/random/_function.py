"""The closed form as a function of the fixed symbols (the random ones are averaged
out), through the one code generator, in the calling convention of every section."""

from __future__ import annotations

from dlsym.codegen import _compile as codegen
from dlsym.codegen._stable import stabilize
from dlsym.sections._signature import Signature, array_module


def fixed_decls(spec) -> tuple:
    """The symbols that are not random: the closed form's arguments."""
    return tuple(d for d in spec.symbols if d.symbol not in spec.laws)


def closed_form_function(spec, expr, shape, backend: str):
    """``f(**fixed symbols)`` -> the closed form's value, an array of ``shape`` (dims
    read off the arguments, the spec's where none shows them)."""
    decls = fixed_decls(spec)
    dims = list(spec.dim_symbols.values())
    # stable where the textbook form is not: 1 + erf(u) as erfc(−u) in a normal's tail
    fn = codegen.lambdify([d.symbol for d in decls] + dims, [stabilize(expr)], backend)
    signature = Signature(decls, spec.dim_values, "closed_form")
    xp = array_module(backend)

    def one(values, sizes):
        out = fn(*[values[d.name] for d in decls], *[sizes[s] for s in dims])[0]
        return xp.broadcast_to(xp.asarray(out, dtype=float), Signature.shape(shape, sizes))

    return signature.function(one, xp)
