"""Check a hand-written derivative against the exact symbolic one, and say how it is wrong.

The reference (``_reference``) is the derived closed form evaluated in float64 at the very
inputs the user's function sees (drawn by the verification kit's samplers, rounded to its
dtype first; integer labels stay integers), so there is no finite-difference noise floor.
The tolerance comes from the dtype and from the reference's own conditioning, measured at
each point: the kit's policy for checking code (``dlsym.verify.check_tolerance``). The
returned array is read against the expected layout (``_shapes``: the accepted
conventions, and the shape mistakes), and a mismatch of entries is tested against a table
of common mistakes (``_diagnose.diagnose``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from dlsym._budget import step
from dlsym._errors import SpecError
from dlsym.check._caller import Caller, framework_of
from dlsym.check._diagnose import diagnose
from dlsym.check._frames import CALLING
from dlsym.check._reference import Reference, reference
from dlsym.check._report import CheckReport, Entry, PartReport
from dlsym.check._shapes import Layout, align, mismatch, readable
from dlsym.codegen import _compile as codegen
from dlsym.expr import _ops as ops
from dlsym.verify import (
    DTYPES,
    SAFETY,
    check_tolerance,
    check_tolerance_why,
    drawing,
    generator,
    redrawn,
    sample_points,
)

WORST_SHOWN = 5

__all__ = ["CheckReport", "PartReport", "check_gradient"]


# operations linear in the arguments at these positions: a sum there splits into terms,
# so that `X.T @ (P - Y) / B` has the terms `X.T @ P / B` and `-X.T @ Y / B` (a forgotten
# label term is then named as the missing term it is)
LINEAR = {ops.matmul: (0, 1), ops.tsum: (0,), ops.tmean: (0,), ops.transpose: (0,)}
LINEAR.update({ops.trace: (0,), ops.outer: (0, 1)})


def _split(e, shape) -> list:
    """The additive terms of ``e``, sums inside linear operations included (``shape``:
    the spec's shape table). A term broadcast in a sum (the ``- 1`` of ``sum(P - 1,
    axis=1)``) stays inside it: on its own it would be summed over axes it lacks."""
    if e.is_Add:
        return [t for a in e.args for t in _split(a, shape)]
    linear = LINEAR.get(getattr(e, "func", None), ())
    positions = range(len(e.args)) if e.is_Mul else linear
    for i in positions:
        parts = _split(e.args[i], shape)
        if len(parts) > 1 and i in linear and not _same_shapes(parts, e.args[i], shape):
            continue
        if len(parts) > 1:
            out = []
            for part in parts:
                c, rest = part.as_coeff_Mul()  # a number factors out of a linear operation
                args = list(e.args)
                args[i] = rest
                out.append(c * e.func(*args))
            return out
    return [e]


def _same_shapes(parts, whole, shape) -> bool:
    try:
        return all(tuple(shape(p)) == tuple(shape(whole)) for p in parts)
    except ops.ShapeError:
        return False


def _terms(d, kind: str, wrt: str, points: dict, n_points: int, shape) -> list:
    """Each additive term of the symbolic result, evaluated at every point."""
    r = d.results[kind][wrt]
    if r.entries is not None or r.direction is not None:
        # a Hessian held as its action on a direction: its terms are actions too, not
        # the entries compared (they read the direction _dir_X: a NameError, exit 3)
        return []
    # the result's own terms first (a whole data term off by 1/m), then the finer ones
    # inside linear operations (a forgotten label term)
    terms = list(sp.Add.make_args(r.expr))
    if len(terms) < 2:
        expanded = sp.Add.make_args(sp.expand(r.expr)) if sp.count_ops(r.expr) < 200 else ()
        terms = list(expanded) if 1 < len(expanded) <= 12 else []
    fine = _split(r.expr, d.spec.algebra.shape)
    terms += [t for t in fine if t not in terms] if 1 < len(fine) <= 12 else []
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


def _floating(v) -> bool:
    return not np.issubdtype(np.asarray(v).dtype, np.integer)


def check_gradient(
    spec,
    fn,
    wrt=None,
    dtype: str = "float64",
    points: int = 16,
    seed: int = 0,
    device: str = "cpu",
    name: str | None = None,
    order: int = 1,
) -> CheckReport:
    """Compare ``fn`` (a hand-written derivative) with the spec's symbolic one.

    Parameters
    ----------
    spec : str, Path, Mapping or Document
        A calculus spec whose ``objective`` (or ``output``) ``fn`` differentiates.
    fn : callable
        NumPy, JAX (``jax.custom_vjp`` too) or PyTorch; the spec's symbols by keyword
        or positionally (integer labels as integer arrays); several ``wrt`` come back as
        a dict or a tuple.
    wrt : str or list of str, optional
        What ``fn`` differentiates; default the spec's ``wrt``.
    dtype : {"float64", "float32"}
        The precision ``fn`` is called in; the tolerance follows it
        (``dlsym.verify.check_tolerance``), or the coarser precision ``fn`` returns
        (float32 arrays for float64 inputs: the report's ``returned`` and a note).
    points, seed : int
        Seeded random points, each symbol drawn from its domain.
    device : {"cpu", "gpu"}
        Where JAX and PyTorch functions run.
    name : str, optional
        How the report names ``fn`` (default its ``__name__``).
    order : {1, 2}
        1: ``fn`` returns the gradient (of an ``output``: the Jacobian). 2: the second
        derivative with respect to one symbol of shape S: the Hessian, S + S as
        ``jax.hessian`` lays it out, or, where the Hessian is diagonal (an elementwise
        function's), its diagonal with shape S, as an activation's ``grad2`` returns it.

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
    >>> check_gradient(spec, lambda x: 0 * x + 2 / 4, order=2).parts[0].note
    'returned with shape (4,): compared with the diagonal of the Hessian (shape (4, 4)), which is diagonal here: every off-diagonal entry is 0 at all 16 points'
    """
    plan = plan_check(spec, wrt, dtype, points, seed, device, order)
    return finish_check(plan, call_user(fn, plan.calls, name))


@dataclass(frozen=True)
class Calls:
    """What the user's function is called with and how its returns are read, as plain
    data: all that the process running the user's code is given (``_isolated``). It
    never holds the reference, the comparison or the report, so nothing it runs can
    change them; what it sends back is the function's returns, on its word."""

    names: tuple
    wrt: tuple
    dtype: str
    device: str
    result: str  # "gradient", "jacobian", "hessian"
    shapes: dict  # {wrt: the shape of its derivative}, which a bad return's message names
    layouts: dict  # {wrt: Layout}: which returns are read (``_kept``)
    inputs: tuple  # {symbol: array} per point, in the dtype the function is called in


@dataclass(frozen=True)
class Returns:
    """What the user's function returned at each point, and how it was called."""

    framework: str
    name: str
    got: dict  # {wrt: [array per point]}
    unchecked: tuple = ()  # what else it returned a derivative of (not in wrt)


@dataclass(frozen=True)
class Plan:
    """A check before the user's function is called: its reference, its points (in
    float64) and the reference's values there (in dlsym check, held by a process the
    user's code does not run in: a function that found them in its caller's frames and
    zeroed them, with a zero gradient of its own, made a wrong gradient "match"), and
    the calls to make."""

    ref: Reference
    points: int
    seed: int
    order: int
    exact: dict
    expected: dict  # {wrt: [the reference's derivative per point]}
    calls: Calls


def plan_check(spec, wrt=None, dtype="float64", points=16, seed=0, device="cpu", order=1) -> Plan:
    """The reference, the points and the calls of a check (``check_gradient``)."""
    if dtype not in DTYPES:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    drawn = drawing("check", points=points, seed=seed)
    points, seed = drawn["points"], drawn["seed"]
    if isinstance(wrt, str):
        wrt = [wrt]
    with step("deriving the reference"):
        ref = reference(spec, wrt, order)
    d = ref.derivation
    wrt = list(d.spec.wrt)
    names = [s.name for s in d.spec.symbols]
    samples = _where_defined(ref, d.spec, sample_points(d.spec, points, seed), seed)
    # the inputs the function sees, and the same values in float64 for the reference;
    # integer labels stay integers in both
    rounded = {k: v.astype(DTYPES[dtype]) if _floating(v) else v for k, v in samples.items()}
    exact = {k: v.astype(np.float64) if _floating(v) else v for k, v in rounded.items()}
    expected = _expected(ref, wrt, exact, points)
    calls = Calls(
        tuple(names),
        tuple(wrt),
        dtype,
        device,
        ref.result,
        {w: expected[w][0].shape for w in wrt},
        {w: _layout(ref, w, np.stack(expected[w]), exact) for w in wrt},
        tuple({k: v[p] for k, v in rounded.items()} for p in range(points)),
    )
    return Plan(ref, points, seed, order, exact, expected, calls)


def call_user(fn, calls: Calls, name: str | None = None) -> Returns:
    """The user's function called at every point of ``calls``: the one place the
    user's code runs."""
    framework = framework_of(fn)
    caller = Caller(
        fn,
        list(calls.names),
        list(calls.wrt),
        framework,
        calls.dtype,
        calls.device,
        calls.result,
        calls.shapes,
    )
    got: dict = {w: [] for w in calls.wrt}
    with step(CALLING):  # the user's code: what `dlsym check` names when it hangs or exits
        for point in calls.inputs:
            out = caller(point)
            for w in calls.wrt:
                got[w].append(_kept(out[w], calls.layouts[w]))
    name = name or getattr(fn, "__name__", repr(fn))
    return Returns(framework, name, got, tuple(caller.unchecked))


def finish_check(plan: Plan, returns: Returns) -> CheckReport:
    """The comparison of what the function returned with the reference, and the report."""
    ref, calls, points = plan.ref, plan.calls, plan.points
    wrt, dtype, got = list(calls.wrt), calls.dtype, returns.got
    exact, expected = plan.exact, plan.expected
    returned = _returned(got, dtype)
    # a function that computes in float32 whatever it is given (JAX without x64, a
    # float32 constant) is held to float32's tolerance, at its inputs rounded as it
    # rounds them, and told so; float64's would fail it by rounding alone
    checked = returned or dtype  # float16 too: float32's tolerance failed a right one
    rng = generator(plan.seed + 7)
    tolerance = {w: [] for w in wrt}
    kappa = 0.0
    for p in range(points):
        p64 = {k: v[p] for k, v in exact.items()}
        pdt = {k: v.astype(np.dtype(checked)) if _floating(v) else v for k, v in p64.items()}
        e = {w: expected[w][p] for w in wrt}
        tol, k = check_tolerance(ref.evaluate, p64, pdt, e, checked, rng, ref.autodiff)
        kappa = max(kappa, k)
        for w in wrt:
            tolerance[w].append(tol[w])
    parts = tuple(
        _part(ref, w, got[w], np.stack(expected[w]), np.stack(tolerance[w]), exact, points)
        for w in wrt
    )
    return CheckReport(
        ref.derivation.spec.name,
        returns.name,
        returns.framework,
        dtype,
        points,
        plan.seed,
        parts,
        check_tolerance_why(checked, kappa),
        order=plan.order,
        result=ref.result,
        reference=ref.source,
        notes=((_returned_note(returned, dtype, returns.framework),) if returned else ())
        + _unchecked_note(returns.unchecked, ref.result),
        returned=returned,
    )


def _unchecked_note(names: tuple, result: str) -> tuple:
    """A derivative returned beside the checked ones and not checked: a wrong dX of a
    layer's backward read 'matches' with no word of it."""
    if not names:
        return ()
    listed = ", ".join(names)
    return (
        f"the function also returned a {result} for {listed}, which was not checked (not "
        f"in wrt: name every symbol to check with --wrt, repeated, or wrt= in Python)",
    )


def _where_defined(ref: Reference, spec, samples: dict, seed: int) -> dict:
    """``samples`` with each point where the reference is not finite drawn again where it
    is (``redrawn``), as ``dlsym derive`` verifies: sqrt(x) of a real x is nan at the
    negative draws, where a right gradient was nan too, and read as a mismatch (exit 1)."""

    def defined(drawn: dict) -> np.ndarray:
        count = len(next(iter(drawn.values())))
        ok = np.ones(count, dtype=bool)
        with np.errstate(all="ignore"):
            for p in range(count):
                point = {
                    k: v[p].astype(np.float64) if _floating(v) else v[p] for k, v in drawn.items()
                }
                values = ref.evaluate(**point)
                ok[p] = all(np.isfinite(np.asarray(values[w], dtype=float)).all() for w in values)
        return ok

    ok = defined(samples)
    return samples if ok.all() else redrawn(spec, defined, samples, ~ok, seed)


def _kept(g: np.ndarray, layout: Layout) -> np.ndarray:
    """What is kept of one return: itself, or where no rule reads its shape, a view of
    its shape and dtype that holds no entries (its entries are never compared, and 16
    returns of a (20000, 20000) array held would take 48 GiB)."""
    if readable(g.shape, layout):
        return g
    return np.broadcast_to(np.zeros((), dtype=g.dtype), g.shape)


def _returned(got: dict, dtype: str) -> str | None:
    """The dtype of the coarsest float array returned, where it is coarser than
    ``dtype``, the precision the function was called in; else None."""
    kinds = {np.asarray(g).dtype for arrays in got.values() for g in arrays}
    coarsest = max(kinds, key=lambda t: np.finfo(t).eps, default=None)
    if coarsest is None or np.finfo(coarsest).eps <= np.finfo(DTYPES[dtype]).eps:
        return None
    return str(coarsest)


# why a function returns a coarser precision than it was given, by framework
_WHY_COARSER = {
    "jax": "JAX computes in float32 unless jax_enable_x64 is set when it traces the "
    "function (a jax.jit traced before, a float32 constant)",
    "torch": "a float32 tensor in the computation (a module's parameters) makes PyTorch's "
    "result float32",
    "numpy": "a float32 array or an .astype(float32) in the computation makes NumPy's "
    "result float32",
}


def _returned_note(returned: str, dtype: str, framework: str) -> str:
    # the reasons are float32's; a float16 result is the function's own choice
    why = _WHY_COARSER.get(framework.split(".")[0], "") if returned == "float32" else ""
    on_purpose = (
        ", or pass --dtype float32 (dtype='float32') to check it in float32 on purpose"
        if dtype == "float64" and returned == "float32"
        else ""
    )
    # what it computes in is not seen, only what it returns: a float64 gradient cast to
    # float16 at the end is held to float16's rounding too, where a 2% error passed
    # unsaid ("it computes in float16")
    blind = 2 * SAFETY * float(np.finfo(np.dtype(returned)).eps)
    return (
        f"the function returned {returned} arrays for {dtype} inputs, so it was checked at "
        f"{returned}'s tolerance"
        + (f" ({why})" if why else "")
        + f": an error below about {blind:.2g} of an entry (more where the formula is "
        f"ill-conditioned) cannot be told from {returned}'s rounding; to check it in "
        f"{dtype}, make it compute and return {dtype}{on_purpose}"
    )


def _expected(ref: Reference, wrt, exact: dict, points: int) -> dict:
    """The reference derivative at each point: {wrt symbol: [array per point]}."""
    expected: dict = {w: [] for w in wrt}
    for p in range(points):
        e = ref.evaluate(**{k: v[p] for k, v in exact.items()})
        for w in wrt:
            expected[w].append(e[w])
    return expected


def _layout(ref: Reference, w: str, expected: np.ndarray, exact: dict) -> Layout:
    shape = exact[w].shape[1:]
    full = expected.shape[1:]
    out = full[: len(full) - ref.copies * len(shape)]
    names = tuple(str(dim) for dim in ref.derivation.spec.symbol(w).shape)
    dims = tuple(ref.derivation.spec.dims.items())
    return Layout(w, shape, out, ref.copies, ref.result, names, dims)


def _part(ref: Reference, w, got_list, expected, tol, exact, points) -> PartReport:
    layout = _layout(ref, w, expected, exact)
    shapes = sorted({np.shape(g) for g in got_list})
    if len(shapes) > 1:
        return _unmatched(
            layout,
            shapes[0],
            tol,
            f"returned arrays of different shapes at different points: {shapes}",
        )
    if not readable(shapes[0], layout):  # its entries were not kept (_kept)
        return _unmatched(layout, shapes[0], tol, mismatch(shapes[0], layout))
    g = np.stack([np.asarray(g, dtype=np.float64) for g in got_list])
    aligned = align(g, expected, tol, layout)
    if isinstance(aligned, str):
        return _unmatched(layout, g.shape[1:], tol, aligned)
    err = np.abs(aligned.got - aligned.ref)
    if aligned.mistake is not None and bool(np.all(err <= aligned.tol)):
        # every entry right once the layout is undone (a transpose): the mistake is the
        # layout, and a table of errors 0 with "worst entries" equal on both sides said
        # nothing of it
        return _unmatched(layout, g.shape[1:], tol, aligned.mistake)
    passed = aligned.mistake is None and bool(np.all(err <= aligned.tol))
    shape = aligned.ref.shape[1:]
    scale = np.max(np.abs(aligned.ref).reshape(points, -1), axis=1, initial=0.0)
    scale = scale.reshape((points,) + (1,) * len(shape))
    rel = err / np.maximum(np.abs(aligned.ref), np.maximum(scale * 1e-12, 1e-300))
    worst, diagnosis = (), None
    if not passed:
        ratio = (err / aligned.tol).reshape(-1)
        ratio[np.isnan(err).reshape(-1)] = np.inf  # a nan returned is among the worst
        worst = tuple(
            Entry(
                int(i[0]),
                tuple(int(j) for j in i[1:]),
                float(aligned.ref[i]),
                float(aligned.got[i]),
            )
            for i in (np.unravel_index(f, err.shape) for f in np.argsort(-ratio)[:WORST_SHOWN])
        )
        full = shape == layout.full
        terms = (
            _terms(ref.symbolic, ref.kind, w, exact, points, shape)
            if full and aligned.mistake is None and ref.symbolic is not None
            else []
        )
        axes = (
            (tuple(map(str, layout.out_shape)) + layout.axis_names * layout.copies)
            if full
            else layout.axis_names
        )
        diagnosis = aligned.mistake or diagnose(
            aligned.got,
            aligned.ref,
            aligned.tol,
            terms,
            ref.derivation.spec.dims,
            axes,
            ref.result,
        )
    return PartReport(
        w,
        layout.full,
        float(err.max(initial=0)),
        float(rel.max(initial=0)),
        float(aligned.tol.max(initial=0)),
        passed,
        worst,
        diagnosis,
        got_shape=g.shape[1:],
        note=aligned.note,
    )


def _unmatched(layout: Layout, got_shape, tol, diagnosis: str) -> PartReport:
    """A return whose entries cannot be set against the expected ones."""
    nan = float("nan")
    maxtol = float(tol.max(initial=0))
    return PartReport(
        layout.wrt, layout.full, nan, nan, maxtol, False, (), diagnosis, got_shape=tuple(got_shape)
    )
