"""Check a hand-written gradient against the exact symbolic one, and say how it is wrong.

The reference is the derived closed form evaluated in float64 at the very inputs the
user's function sees (drawn by the verification kit's samplers, rounded to its dtype
first), so there is no finite-difference noise floor. The tolerance comes from the dtype
and from the reference's own conditioning, measured at each point: the kit's policy for
checking code (``dlsym.verify.check_tolerance``). A mismatch is then tested against a
table of common mistakes (``_diagnose.diagnose``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym._api import derive, load_document
from dlsym._errors import SpecError, UserFunctionError
from dlsym.check._caller import Caller, framework_of
from dlsym.check._diagnose import diagnose
from dlsym.codegen import _compile as codegen
from dlsym.sections.calculus import Derivation
from dlsym.spec._common import calculus_only
from dlsym.spec._yamlfile import Document
from dlsym.verify import (
    DTYPES,
    check_tolerance,
    check_tolerance_why,
    generator,
    sample_points,
)

WORST_SHOWN = 5
NO_DIAGNOSIS = "no simple explanation found; compare the worst entries above"


@dataclass(frozen=True)
class Entry:
    point: int
    index: tuple
    expected: float
    got: float


@dataclass(frozen=True)
class PartReport:
    """The check of one ``wrt`` symbol."""

    wrt: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    max_tolerance: float
    passed: bool
    worst: tuple  # Entry, most out of tolerance first
    diagnosis: str | None


@dataclass(frozen=True)
class CheckReport:
    spec: str
    function: str
    framework: str
    dtype: str
    points: int
    seed: int
    parts: tuple
    tolerance_why: str

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parts)

    @property
    def max_abs_error(self) -> float:
        return max(p.max_abs_error for p in self.parts)

    @property
    def max_rel_error(self) -> float:
        return max(p.max_rel_error for p in self.parts)

    def format(self, width: int = 100) -> str:
        from rich.console import Console

        buf = io.StringIO()
        self.render(Console(file=buf, width=width, force_terminal=False, color_system=None))
        return buf.getvalue()

    def render(self, console) -> None:
        from rich.table import Table

        verdict = "matches" if self.passed else "DOES NOT MATCH"
        console.print(
            f"dlsym check: {self.function} ({self.framework}, {self.dtype}) "
            f"{verdict} the derivative of {self.spec}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        table = Table()
        for col in ("wrt", "points", "max abs error", "max rel error", "max tolerance", "result"):
            table.add_column(col)
        for p in self.parts:
            table.add_row(
                p.wrt,
                str(self.points),
                f"{p.max_abs_error:.3e}",
                f"{p.max_rel_error:.3e}",
                f"{p.max_tolerance:.3e}",
                "ok" if p.passed else "MISMATCH",
            )
        console.print(table)
        console.print(
            f"tolerance: {self.tolerance_why}", markup=False, highlight=False, soft_wrap=True
        )
        for p in self.parts:
            if p.passed:
                continue
            worst = Table(
                title=f"worst entries of the gradient with respect to {p.wrt}", title_justify="left"
            )
            for col in ("point", "index", "expected", "got"):
                worst.add_column(col)
            for e in p.worst:
                worst.add_row(str(e.point), str(list(e.index)), f"{e.expected:.9g}", f"{e.got:.9g}")
            console.print(worst)
            diagnosis = p.diagnosis or NO_DIAGNOSIS
            console.print(
                f"diagnosis ({p.wrt}): {diagnosis}", markup=False, highlight=False, soft_wrap=True
            )


# --- the check ---------------------------------------------------------------------------


def _derivation_for(source, wrt) -> Derivation:
    if isinstance(source, Derivation):
        doc = source.spec.doc
    else:
        doc = load_document(source)
    if not isinstance(doc.data, dict):
        return derive(doc)  # reports the located error
    calculus_only(doc, "dlsym check")
    names = wrt if wrt is not None else doc.data.get("wrt")
    if isinstance(names, str):
        names = [names]
    data = dict(doc.data, derive=["gradient"])
    if names is not None:
        data["wrt"] = list(names)
    return derive(Document(data, doc.file, doc.locations, doc.source))


def _terms(d: Derivation, wrt: str, points: dict, n_points: int, shape) -> list:
    """Each additive term of the symbolic gradient, evaluated at every point."""
    expr = d.results["gradient"][wrt].expr
    terms = list(sp.Add.make_args(expr))
    if len(terms) < 2:
        expanded = sp.Add.make_args(sp.expand(expr)) if sp.count_ops(expr) < 200 else ()
        terms = list(expanded) if 1 < len(expanded) <= 12 else []
    if len(terms) < 2:
        return []
    spec = d.spec
    args = [s.symbol for s in spec.symbols] + [spec.dim_symbols[k] for k in spec.dims]
    f = codegen.lambdify(args, terms, "numpy")
    dims = [spec.dims[k] for k in spec.dims]
    values = [np.zeros((n_points,) + shape) for _ in terms]
    for p in range(n_points):
        outs = f(*[points[s.name][p] for s in spec.symbols], *dims)
        for i, o in enumerate(outs):
            values[i][p] = np.broadcast_to(np.asarray(o, dtype=np.float64), shape)
    return [(d.expr_of(t), v) for t, v in zip(terms, values)]


def check_gradient(
    spec,
    fn,
    wrt=None,
    dtype: str = "float64",
    points: int = 16,
    seed: int = 0,
    device: str = "cpu",
    name: str | None = None,
) -> CheckReport:
    """Compare ``fn`` (a hand-written gradient) with the spec's symbolic gradient.

    Parameters
    ----------
    spec : str, Path, Mapping or Document
        A calculus spec whose ``objective`` ``fn`` differentiates.
    fn : callable
        NumPy, JAX (``jax.custom_vjp`` too) or PyTorch; the spec's symbols by keyword
        or positionally; several ``wrt`` come back as a dict or a tuple.
    wrt : str or list of str, optional
        What ``fn`` differentiates; default the spec's ``wrt``.
    dtype : {"float64", "float32"}
        The precision ``fn`` is called in; the tolerance follows it
        (``dlsym.verify.check_tolerance``).
    points, seed : int
        Seeded random points, each symbol drawn from its domain.
    device : {"cpu", "gpu"}
        Where JAX and PyTorch functions run.
    name : str, optional
        How the report names ``fn`` (default its ``__name__``).

    Returns
    -------
    CheckReport
        ``passed``, one part per ``wrt`` with its worst entries and a diagnosis, and
        ``format()``, the text ``dlsym check`` prints.

    Examples
    --------
    >>> from dlsym.check._gradient import check_gradient
    >>> spec = {"name": "scaled_norm", "symbols": {"x": {"shape": ["n"]}},
    ...         "dims": {"n": 4}, "objective": "sum(x**2) / n", "wrt": "x"}
    >>> check_gradient(spec, lambda x: 2 * x / x.size).passed
    True
    >>> report = check_gradient(spec, lambda x: 2 * x, name="forgot_mean")
    >>> report.passed
    False
    >>> report.parts[0].diagnosis
    'off by a factor 4 = n: a sum where the mean over n is meant?'
    """
    if dtype not in DTYPES:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    if isinstance(wrt, str):
        wrt = [wrt]
    d = _derivation_for(spec, wrt)
    wrt = list(d.spec.wrt)
    names = [s.name for s in d.spec.symbols]
    framework = framework_of(fn)
    caller = Caller(fn, names, wrt, framework, dtype, device)
    samples = sample_points(d.spec, points, seed)
    # the inputs the function sees, and the same values in float64 for the reference
    rounded = {k: v.astype(DTYPES[dtype]) for k, v in samples.items()}
    exact = {k: v.astype(np.float64) for k, v in rounded.items()}
    grad64 = d.function("gradient")

    def fn64(**kw):
        out = grad64(**kw)
        return out if isinstance(out, dict) else {wrt[0]: out}

    rng = generator(seed + 7)
    got = {w: [] for w in wrt}
    expected = {w: [] for w in wrt}
    tolerance = {w: [] for w in wrt}
    kappa = 0.0
    for p in range(points):
        p64 = {k: v[p] for k, v in exact.items()}
        pdt = {k: v[p] for k, v in rounded.items()}
        e = {w: np.asarray(v, dtype=np.float64) for w, v in fn64(**p64).items()}
        tol, k = check_tolerance(fn64, p64, pdt, e, dtype, rng)
        kappa = max(kappa, k)
        out = caller(pdt)
        for w in wrt:
            expected[w].append(e[w])
            tolerance[w].append(tol[w])
            got[w].append(out[w])
    parts = []
    for w in wrt:
        ref, tol = np.stack(expected[w]), np.stack(tolerance[w])
        g = np.stack([np.asarray(x) for x in got[w]]) if _same_shapes(got[w]) else None
        shape = ref.shape[1:]
        if g is None or (
            g.shape != ref.shape and not (g.ndim == 3 and g.shape == ref.swapaxes(1, 2).shape)
        ):
            bad = np.shape(got[w][0])
            raise UserFunctionError(
                f"the gradient with respect to {w} has shape {bad}; "
                f"expected {shape} (the shape of {w})"
            )
        parts.append(_part(d, w, g, ref, tol, exact, points))
    why = check_tolerance_why(dtype, kappa)
    return CheckReport(
        d.spec.name,
        name or getattr(fn, "__name__", repr(fn)),
        framework,
        dtype,
        points,
        seed,
        tuple(parts),
        why,
    )


def _same_shapes(arrays) -> bool:
    return len({np.shape(a) for a in arrays}) == 1


def _part(d, w, g, ref, tol, exact, points) -> PartReport:
    shape = ref.shape[1:]
    transposed = g.shape != ref.shape  # a non-square matrix returned transposed
    aligned = g.swapaxes(1, 2) if transposed else g  # entries compared after transposing
    err = np.abs(aligned - ref)
    passed = not transposed and bool(np.all(err <= tol))
    scale = np.max(np.abs(ref).reshape(points, -1), axis=1).reshape((points,) + (1,) * len(shape))
    rel = err / np.maximum(np.abs(ref), np.maximum(scale * 1e-12, 1e-300))
    worst, diagnosis = (), None
    if not passed:
        ratio = (err / tol).reshape(-1)
        worst = tuple(
            Entry(int(i[0]), tuple(int(j) for j in i[1:]), float(ref[i]), float(aligned[i]))
            for i in (np.unravel_index(f, ref.shape) for f in np.argsort(-ratio)[:WORST_SHOWN])
        )
        terms = [] if transposed else _terms(d, w, exact, points, shape)
        diagnosis = diagnose(g, ref, tol, terms, d.spec.dims)
    return PartReport(
        w,
        shape,
        float(err.max(initial=0)),
        float(rel.max(initial=0)),
        float(tol.max(initial=0)),
        passed,
        worst,
        diagnosis,
    )
