"""Check a hand-written gradient against the exact symbolic one, and say how it is wrong.

The reference is the derived closed form evaluated in float64 at the very inputs the
user's function sees (drawn by the verification kit's samplers, rounded to its dtype
first), so there is no finite-difference noise floor. The tolerance comes from the dtype
and from the reference's own conditioning, measured at each point: the kit's policy for
checking code (``dlsym.verify.check_tolerance``). A mismatch is then tested against a
table of common mistakes (``_diagnose``).
"""

from __future__ import annotations

import inspect
import io
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import sympy as sp

from dlsym._api import derive, load_document
from dlsym._errors import DeviceError, SpecError, UserFunctionError
from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.sections.calculus import Derivation
from dlsym.spec._common import calculus_only
from dlsym.spec._yamlfile import Document
from dlsym.verify import (
    DTYPES,
    check_tolerance,
    check_tolerance_why,
    generator,
    jax_device,
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


# --- the user's function -------------------------------------------------------------


def load_function(target: str) -> tuple[Callable, str]:
    """``path/to/file.py:function`` or ``package.module:function``."""
    if ":" not in target:
        raise UserFunctionError(
            f"--grad {target!r}: expected FILE.py:FUNCTION or module.sub:FUNCTION"
        )
    where, _, name = target.rpartition(":")
    if not name.isidentifier():
        raise UserFunctionError(f"--grad {target!r}: {name!r} is not a function name")
    try:
        if where.endswith(".py") or "/" in where or Path(where).exists():
            path = Path(where)
            if not path.is_file():
                raise UserFunctionError(f"--grad: {where}: no such file")
            import importlib.util

            mod_name = f"_dlsym_user_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.path.insert(0, str(path.resolve().parent))
            try:
                module_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            import importlib

            sys.path.insert(0, str(Path.cwd()))
            try:
                module = importlib.import_module(where)
            finally:
                sys.path.remove(str(Path.cwd()))
    except UserFunctionError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise UserFunctionError(f"--grad: no module named {where!r}") from None
        raise UserFunctionError(
            f"importing {where} raised {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised: report it as theirs
        raise UserFunctionError(
            f"importing {where} raised {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        raise UserFunctionError(
            f"--grad: {where} has no function {name!r}"
            + (f" (it has: {', '.join(sorted(found)[:8])})" if found else "")
        )
    return fn, f"{Path(where).name}:{name}"


def _user_traceback(exc: BaseException) -> str:
    """The traceback without dlsym's own frames: the user's code is what they need."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "/dlsym/" not in f.filename.replace("\\", "/") and "importlib" not in f.filename
    ]
    lines = traceback.format_list(frames) if frames else []
    return "".join(lines + traceback.format_exception_only(type(exc), exc))


def _framework(fn) -> str:
    """numpy, jax, torch, or one of the autodiff forms (custom_vjp, torch.autograd.Function)."""
    if "jax" in sys.modules:
        import jax

        if isinstance(fn, jax.custom_vjp):
            return "jax.custom_vjp"
    if "torch" in sys.modules:
        import torch

        if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function):
            return "torch.autograd.Function"
    module = getattr(fn, "__module__", "") or ""
    try:  # the modules the function's code refers to: globals and closure cells alike
        refs = inspect.getclosurevars(fn)
        names = {**refs.globals, **refs.nonlocals}
    except (TypeError, ValueError):
        names = {}
    used = {
        getattr(v, "__name__", "").split(".")[0]
        for v in names.values()
        if inspect.ismodule(v) or callable(v)
    }
    for fw in ("torch", "jax"):
        if module.split(".")[0] == fw or fw in used:
            return fw
    return "numpy"


def _convention(fn, names: list) -> str:
    """'kwargs' when the signature names the spec's symbols, else 'positional'."""
    target = fn.forward if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "positional"
    params = [p for p in sig.parameters.values() if p.name != "ctx"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return "kwargs"
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if named and set(named) <= set(names):
        return "kwargs"
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(named) == len(names):
        return "positional"
    raise UserFunctionError(
        f"the function's parameters ({', '.join(named)}) are neither the "
        f"spec's symbols by name nor {len(names)} positional ones "
        f"({', '.join(names)})"
    )


class _Caller:
    """Calls the user's function in its own framework and returns NumPy float64 arrays."""

    def __init__(self, fn, names, wrt, framework, dtype, device):
        self.fn, self.names, self.wrt = fn, names, wrt
        self.framework, self.dtype, self.device = framework, dtype, device
        self.convention = _convention(fn, names)
        self.params = self._params()
        if framework.startswith("jax"):
            if dtype == "float64":
                jax_x64()
            self.jax_device = jax_device(device)
        if framework.startswith("torch"):
            import torch

            self.torch_device = torch.device("cuda" if device == "gpu" else "cpu")
            if device == "gpu" and not torch.cuda.is_available():
                raise DeviceError("--device gpu: PyTorch sees no CUDA device")
        elif framework == "numpy" and device == "gpu":
            raise DeviceError("--device gpu: a NumPy function runs on the CPU only")

    def _params(self):
        target = self.fn.forward if inspect.isclass(self.fn) else self.fn
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
        return [n for n in params if n in self.names]

    def convert(self, x):
        if self.framework.startswith("jax"):
            import jax
            import jax.numpy as jnp

            return jax.device_put(jnp.asarray(x, dtype=self.dtype), self.jax_device)
        if self.framework.startswith("torch"):
            import torch

            dt = torch.float32 if self.dtype == "float32" else torch.float64
            return torch.tensor(np.asarray(x), dtype=dt, device=self.torch_device)
        return np.asarray(x, dtype=DTYPES[self.dtype])

    def _invoke(self, fn, values: dict):
        if self.convention == "kwargs":
            keep = self.params if self.params is not None else self.names
            return fn(**{k: values[k] for k in keep})
        return fn(*[values[n] for n in self.names])

    def __call__(self, point: dict):
        values = {n: self.convert(point[n]) for n in self.names}
        try:
            if self.framework == "jax.custom_vjp":
                import jax

                argnums = tuple(self.names.index(w) for w in self.wrt)
                out = jax.grad(lambda *a: self.fn(*a), argnums=argnums)(
                    *[values[n] for n in self.names]
                )
                out = dict(zip(self.wrt, out))
            elif self.framework == "torch.autograd.Function":
                import torch

                for w in self.wrt:
                    values[w].requires_grad_(True)
                y = self.fn.apply(*[values[n] for n in self.names])
                grads = torch.autograd.grad(y, [values[w] for w in self.wrt])
                out = dict(zip(self.wrt, grads))
            else:
                out = self._invoke(self.fn, values)
        except Exception as exc:  # noqa: BLE001 - the user's code raised: report it as theirs
            raise UserFunctionError(
                f"your function raised {type(exc).__name__}: {exc}", _user_traceback(exc)
            ) from None
        return self._split(out)

    def _split(self, out) -> dict:
        if len(self.wrt) == 1 and not isinstance(out, (dict, tuple, list)):
            out = {self.wrt[0]: out}
        elif isinstance(out, (tuple, list)) and len(out) == len(self.wrt):
            out = dict(zip(self.wrt, out))
        elif isinstance(out, dict):
            missing = [w for w in self.wrt if w not in out]
            if missing:
                raise UserFunctionError(f"the returned dict lacks {', '.join(missing)}")
        else:
            raise UserFunctionError(
                f"expected the gradient{'s' if len(self.wrt) > 1 else ''} "
                f"with respect to {', '.join(self.wrt)}, got "
                f"{type(out).__name__}"
            )
        return {w: _to_numpy(out[w]) for w in self.wrt}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# --- diagnosis ---------------------------------------------------------------------------


def _fits(got, hyp, tol) -> bool:
    return got.shape == hyp.shape and bool(np.all(np.abs(got - hyp) <= 2 * tol))


def _factor_name(c: float, dims: dict) -> str | None:
    for name, n in dims.items():
        if n > 2 and np.isclose(c, n, rtol=1e-3):
            return f"off by a factor {n} = {name}: a sum where the mean over {name} is meant?"
        if n > 2 and np.isclose(c, 1 / n, rtol=1e-3):
            return f"off by a factor 1/{n} = 1/{name}: a mean where the sum over {name} is meant?"
    for k, text in ((2, "2 (a dropped 1/2?)"), (0.5, "1/2 (a missing factor 2?)")):
        if np.isclose(c, k, rtol=1e-6):
            return f"off by a constant factor {text}"
    return f"off by a constant factor {c:.6g} (relative error {c - 1:+.2e})"


def _diagnose(got, ref, tol, terms: list, dims: dict) -> str | None:
    """Which common mistake explains ``got`` (points x shape) given the reference."""
    if got.shape != ref.shape:
        if (
            got.ndim == 3
            and got.shape == ref.swapaxes(1, 2).shape
            and _fits(got, ref.swapaxes(1, 2), tol.swapaxes(1, 2))
        ):
            return "transposed: you return the transpose of the gradient"
        return None
    if _fits(got, -ref, tol):
        return "sign flipped: your gradient is the negative of the expected one"
    if got.ndim == 3 and got.shape[1] == got.shape[2] and _fits(got, ref.swapaxes(1, 2), tol):
        return "transposed: you return the transpose of the gradient"
    denom = float(np.sum(ref * ref))
    if denom > 0:
        c = float(np.sum(got * ref) / denom)
        if abs(c - 1) > 1e-12 and _fits(got, c * ref, tol):
            return _factor_name(c, dims)
    for text, value in terms:
        # got = ref + (c - 1) * term: one term scaled by c (0: missing, -1: sign, m: sum/mean)
        tt = float(np.sum(value * value))
        if tt == 0:
            continue
        c = 1 + float(np.sum((got - ref) * value) / tt)
        if abs(c - 1) < 1e-9 or not _fits(got, ref + (c - 1) * value, tol):
            continue
        for k, what in (
            (0, f"a missing term: {text}"),
            (-1, f"the term {text} has the wrong sign"),
            (2, f"the term {text} is counted twice"),
        ):
            if abs(c - k) < 1e-6:
                return what
        return f"the term {text} is {_factor_name(c, dims)}"
    if got.ndim >= 2:
        for shift in (1, -1):
            if _fits(got, np.roll(ref, shift, axis=-1), tol):
                return "entries shifted by one position along the last axis (an off-by-one index?)"
        if got.ndim == 3:
            for shift in (1, -1):
                if _fits(got, np.roll(ref, shift, axis=1), tol):
                    return "entries shifted by one position along the first axis (wrong axis?)"
    return None


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
    """Compare ``fn`` (a hand-written gradient) with the spec's symbolic gradient."""
    if dtype not in DTYPES:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    if isinstance(wrt, str):
        wrt = [wrt]
    d = _derivation_for(spec, wrt)
    wrt = list(d.spec.wrt)
    names = [s.name for s in d.spec.symbols]
    framework = _framework(fn)
    caller = _Caller(fn, names, wrt, framework, dtype, device)
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
        diagnosis = _diagnose(g, ref, tol, terms, d.spec.dims)
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
