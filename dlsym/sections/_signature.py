"""The calling convention of every value function (``d.function(kind)``): the spec's
symbols as keywords, or positionally in the spec's order, as arrays in NumPy conventions;
sizes read off the arrays; leading axes a batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlsym.expr._shapes import SizeMismatch, solve_sizes

BACKENDS = ("numpy", "jax")


def array_module(backend: str):
    """numpy, or jax.numpy (imported here: JAX takes seconds to import, and NumPy callers
    should not pay for it)."""
    if backend == "jax":
        import jax.numpy as jnp

        return jnp
    return np


@dataclass(frozen=True)
class Signature:
    """The arguments of a value function: the symbols ``decls`` (SymbolDecl), by keyword
    or positionally in this order, as arrays in NumPy conventions (a vector is 1-D).

    Sizes named by dims are read off the arrays, so a function works at other sizes
    than the spec's (which are the default for a size no argument shows). Axes in front
    of a symbol's declared ones are a batch: ``batched`` calls the one-instance function
    once per batch entry and stacks the results."""

    decls: tuple
    dims: dict  # dim Symbol -> the spec's value
    what: str  # the function's name, for messages
    batch: bool = True  # leading axes are a batch; False: exactly the declared axes
    # names a call may leave out (a stationary point's wrt symbols, which its closed form
    # does not read: the contract's "functions of the other symbols"); left out, they
    # are zeros of their declared shape
    optional: tuple = ()

    @property
    def names(self) -> tuple:
        return tuple(d.name for d in self.decls)

    def bind(self, args: tuple, kwargs: dict) -> dict:
        names = self.names
        if len(args) > len(names):
            raise TypeError(
                f"{self.what} takes {len(names)} arguments ({', '.join(names) or 'none'})"
            )
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(
                    f"{self.what}: unexpected argument {k!r}; expected {', '.join(names)}"
                )
            if k in values:
                raise TypeError(f"{self.what}: argument {k!r} given twice")
            values[k] = v
        missing = [n for n in names if n not in values and n not in self.optional]
        if missing:
            raise TypeError(f"{self.what}: missing argument(s): {', '.join(missing)}")
        absent = [d for d in self.decls if d.name not in values]
        if absent:  # zeros at the sizes the others show (a dim only they carry: the spec's)
            given = dataclasses.replace(
                self, decls=tuple(d for d in self.decls if d.name in values)
            )
            sizes, _ = given.sizes(values)
            values.update({d.name: np.zeros(self.shape(d.shape, sizes)) for d in absent})
        # a Python float or int of a real symbol as NumPy's: the code divides by it, and
        # 1/0.0 is Python's ZeroDivisionError where NumPy's 1/0 is inf under the code's
        # errstate (a branch at a = 0 is chosen after both are computed); labels stay ints
        labels = {d.name for d in self.decls if getattr(d, "index_size", None) is not None}
        for n in names:
            # x = 1j: cast to real with a ComplexWarning, the gradient 2i came out 0
            if np.iscomplexobj(values[n]):
                raise ValueError(f"{self.what}: '{n}' is complex; the symbols are real")
        return {
            n: np.float64(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and n not in labels
            else v
            for n, v in ((n, values[n]) for n in names)
        }

    def sizes(self, values: dict) -> tuple[dict, tuple]:
        """({dim Symbol: size}, the batch shape) of bound arrays, whose labels are
        checked against the sizes (``labels``)."""
        pairs: list = []  # (the declared size, the array's size, whose)
        batches: list = []
        for decl in self.decls:
            shape = np.shape(values[decl.name])
            lead = len(shape) - len(decl.shape)
            if lead < 0 or (lead and not self.batch):
                raise ValueError(
                    f"{self.what}: '{decl.name}' should have {len(decl.shape)} axes "
                    f"(shape {[str(d) for d in decl.shape]}), got shape {shape}"
                )
            batches.append(shape[:lead])
            pairs += [(d, n, decl.name) for d, n in zip(decl.shape, shape[lead:])]
        try:
            found = solve_sizes([(d, n) for d, n, _ in pairs])
        except SizeMismatch as exc:
            raise ValueError(f"{self.what}: '{pairs[exc.index][2]}' has {exc}") from None
        try:
            batch = np.broadcast_shapes(*batches) if batches else ()
        except ValueError:
            raise ValueError(
                f"{self.what}: the batch axes (in front of the declared ones) do not "
                f"broadcast: {', '.join(f'{d.name} {b}' for d, b in zip(self.decls, batches))}"
            ) from None
        sizes = {d: found.get(d, v) for d, v in self.dims.items()}
        self.labels(values, sizes)  # every value function reads its sizes here
        return sizes, batch

    def labels(self, values: dict, sizes: dict) -> None:
        """Refuse a label (domain {index: k}) outside 0..k-1: indexing with it would
        wrap around (-1 is the last class) or fail deep in the generated code. Labels
        traced by jax.jit hold no values to check, and are left to JAX."""
        for decl in self.decls:
            if getattr(decl, "index_size", None) is None:
                continue
            try:
                labels = np.asarray(values[decl.name])
            except TypeError:  # a JAX tracer (TracerArrayConversionError is a TypeError)
                continue
            try:
                k = int(decl.index_size.xreplace(sizes))
            except TypeError:  # a size no argument shows and the spec leaves open
                continue
            bad = labels[(labels < 0) | (labels >= k)]
            if bad.size:
                raise ValueError(
                    f"{self.what}: '{decl.name}' holds labels 0..{k - 1} (domain "
                    f"{{index: {decl.index_size}}}), got {bad.flat[0].item()!r}"
                )

    @staticmethod
    def shape(declared: tuple, sizes: dict) -> tuple:
        """A declared shape (numbers and dim Symbols) at the sizes of ``sizes``."""
        return tuple(int(d.xreplace(sizes)) for d in declared)

    def function(self, one: Callable, xp, name: str | None = None, doc: str = "") -> Callable:
        """The value function of ``one(values, sizes)``: its arguments bound by ``bind``
        and a batch handled by ``batched``, named ``name`` (``what`` by default)."""

        def value(*args, **kwargs):
            return self.batched(self.bind(args, kwargs), one, xp)

        value.__name__ = name or self.what
        value.__doc__ = doc or f"{self.what}; takes {', '.join(self.names) or 'no arguments'}"
        return value

    def batched(self, values: dict, one: Callable, xp) -> Any:
        """``one(values, sizes)`` for one instance, or per entry of the batch, stacked
        (a dict of arrays stays a dict)."""
        sizes, batch = self.sizes(values)
        if not batch:
            return one(values, sizes)
        full = {}
        for d in self.decls:
            v = xp.asarray(values[d.name])
            full[d.name] = xp.broadcast_to(v, batch + v.shape[v.ndim - len(d.shape) :])
        outs = [one({k: v[i] for k, v in full.items()}, sizes) for i in np.ndindex(batch)]
        if isinstance(outs[0], dict):
            return {
                k: xp.reshape(xp.stack([o[k] for o in outs]), batch + np.shape(outs[0][k]))
                for k in outs[0]
            }
        return xp.reshape(xp.stack(outs), batch + np.shape(outs[0]))
