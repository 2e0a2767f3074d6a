"""The user's function: loaded from ``file.py:function`` or ``module:function``, its
framework (NumPy, JAX, PyTorch) and calling convention found, and called in the dtype
and on the device asked for; its own errors come back with its own traceback."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from dlsym._errors import DeviceError, UserFunctionError
from dlsym.check._frames import clipped, defined_at, located, syntax_at, user_traceback
from dlsym.check._sealed import sealed
from dlsym.codegen._jax import jax_x64
from dlsym.verify import (
    DTYPES,
    jax_device,
)

# objectives with a hand-written backward, differentiated once by their framework
AUTODIFF_FORMS = ("jax.custom_vjp", "torch.autograd.Function")


def load_function(target: str) -> tuple[Callable, str]:
    """``path/to/file.py:function`` or ``package.module:function``."""
    if ":" not in target:
        raise UserFunctionError(
            f"--grad {target!r}: expected FILE.py:FUNCTION or module.sub:FUNCTION"
        )
    where, _, name = target.rpartition(":")
    if not name.isidentifier():
        raise UserFunctionError(f"--grad {target!r}: {name!r} is not a function name")
    if not where.strip():  # Path("") is ".", a folder
        raise UserFunctionError(
            f"--grad {target!r}: no file or module before ':' (expected FILE.py:FUNCTION)"
        )
    try:
        if where.endswith(".py") or "/" in where or Path(where).exists():
            path = Path(where)
            if not path.is_file():
                what = (
                    "no such file"
                    if not path.exists()
                    else "a directory, not a file"
                    if path.is_dir()
                    else "not a regular file (a FIFO or a device): give the .py file itself"
                )
                raise UserFunctionError(f"--grad: {where}: {what}")
            import importlib.util

            mod_name = f"_dlsym_user_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None:  # no import machinery reads its suffix (/bin/ls)
                raise UserFunctionError(
                    f"--grad: {where} is not a Python module: expected a .py file "
                    "(or module.sub:FUNCTION)"
                )
            module = importlib.util.module_from_spec(module_spec)
            # registered before it runs, as an import does: a dataclass under `from
            # __future__ import annotations` looks its module up there (it was a false
            # exit 2, "importing ... raised KeyError"), as sys.modules[__name__] does
            sys.modules[mod_name] = module
            # resolved once: the module may change the working folder as it runs
            parent = str(path.resolve().parent)
            sys.path.insert(0, parent)
            try:
                with sealed(f"importing {where}"):
                    module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
            finally:
                if parent in sys.path:
                    sys.path.remove(parent)
        else:
            import importlib

            here = str(Path.cwd())
            sys.path.insert(0, here)
            try:
                with sealed(f"importing {where}"):
                    module = importlib.import_module(where)
            finally:
                if here in sys.path:
                    sys.path.remove(here)
    except UserFunctionError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise UserFunctionError(f"--grad: no module named {where!r}") from None
        raise raised(exc, f"importing {where}") from None
    except SystemExit as exc:  # it would end dlsym with the module's exit code, silently
        raise UserFunctionError(
            located(
                exc,
                f"importing {where} called sys.exit({shown(exc.code)}): move the script's code "
                "under if __name__ == '__main__':",
            ),
            user_traceback(exc),
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised: report it as theirs
        raise raised(exc, f"importing {where}") from None
    try:  # a module's own attribute lookup runs its code too (a property of its class)
        fn = getattr(module, name, None)
    except Exception as exc:  # noqa: BLE001 - the user's module raised: report it as theirs
        raise raised(exc, f"reading {name} from {where}") from None
    if fn is None or not callable(fn):
        found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        raise UserFunctionError(
            f"--grad: {where} has no function {name!r}"
            + (f" (it has: {', '.join(sorted(found)[:8])})" if found else "")
        )
    return fn, f"{Path(where).name}:{name}"


def raised(exc: BaseException, doing: str) -> UserFunctionError:
    """The user's code raised ``exc`` while ``doing`` ("your function", "importing
    grad.py"): located at their innermost frame, with their traceback."""
    return UserFunctionError(located(exc, f"{doing} raised {exception(exc)}"), user_traceback(exc))


def exception(exc: BaseException) -> str:
    """``KeyError: 'w'``: the type and text of an exception of the user's, its type alone
    where its ``__str__`` raises (theirs to define: the report must not fail on it)."""
    try:
        # a SyntaxError located at its file and line: its text without "(grad.py, line 3)"
        text = exc.msg if syntax_at(exc) else str(exc)
    except Exception as inner:  # noqa: BLE001 - the user's __str__ raised
        return f"{type(exc).__name__} (whose str() raised {type(inner).__name__})"
    return clipped(f"{type(exc).__name__}: {text}").rstrip() if text else type(exc).__name__


def shown(value) -> str:
    """``repr(value)``, or ``<Code object>`` where the user's ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - the user's __repr__ raised
        return f"<{type(value).__name__} object>"


def framework_of(fn) -> str:
    """numpy, jax, torch, or one of the autodiff forms (custom_vjp, torch.autograd.Function)."""
    if "jax" in sys.modules:
        import jax

        # itself, or what it wraps (__wrapped__): dlsym codegen's objective_custom_vjp, a
        # def that forwards to one, or a jax.jit of one
        inner, seen = fn, set()
        while inner is not None and id(inner) not in seen:
            if isinstance(inner, jax.custom_vjp):
                return "jax.custom_vjp"
            seen.add(id(inner))
            inner = getattr(inner, "__wrapped__", None)
    if "torch" in sys.modules:
        import torch

        if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function):
            return "torch.autograd.Function"
    # a wrapper that is itself a framework's object (jax.jit's compiled function, of
    # jaxlib; torch.jit's): a jitted body of operators alone (X.T @ (X @ w - y)) refers
    # to no module, and read as NumPy it ran without x64 and was held to float32's
    # tolerance, passing an error of 1e-6
    inner, seen = fn, set()
    while inner is not None and id(inner) not in seen:
        top = (type(inner).__module__ or "").split(".")[0]
        if top in ("jax", "jaxlib", "torch"):
            return "jax" if top.startswith("jax") else "torch"
        seen.add(id(inner))
        inner = getattr(inner, "__wrapped__", None)
    # through decorators that wrap it (functools.wraps): jax.jit's compiled function has
    # no code of its own to read, and read as NumPy it was called without x64 (float32)
    try:
        fn = inspect.unwrap(fn)
    except ValueError:  # a cycle of __wrapped__
        pass
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


def _autograd_class(fn) -> bool:
    """A class with a forward (torch.autograd.Function's form), read by its forward's
    signature; any other class is a callable like a function (it was read for a forward
    it lacks: AttributeError, exit 3), its instance the returned value."""
    return inspect.isclass(fn) and hasattr(fn, "forward")


def _convention(fn, names: list, who: str) -> str:
    """'kwargs' when the signature names the spec's symbols, else 'positional'. ``who``:
    the function as messages name it (``grad.py:3: g``)."""
    target = fn.forward if _autograd_class(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "positional"
    params = [p for p in sig.parameters.values() if p.name != "ctx"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return "kwargs"
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # a parameter with a default (``scale=1.0``, or one functools.partial binds) is left
    # to it: only the spec's symbols are passed
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if set(named) & set(names) and {p.name for p in required} <= set(names):
        return "kwargs"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_all = any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= len(names)
    if (
        takes_all
        and all(p.kind is not p.KEYWORD_ONLY for p in required)
        and (len(required) <= len(names))
    ):
        return "positional"
    raise UserFunctionError(
        f"{who} takes ({', '.join(named)}): neither the spec's symbols by name nor "
        f"{len(names)} positional ones ({', '.join(names)})"
    )


class Caller:
    """Calls the user's function in its own framework and returns NumPy float arrays, in
    the precision the function returned them (float64 for integers)."""

    def __init__(self, fn, names, wrt, framework, dtype, device, result="gradient", shapes=None):
        self.fn, self.names, self.wrt, self.result = fn, names, wrt, result
        self.framework, self.dtype, self.device = framework, dtype, device
        # {wrt: the shape expected of its derivative}, which a bad return's message names
        self.shapes = shapes or {}
        # the symbols it returned a derivative of that are not checked (a layer's
        # backward's dX beside wrt [W, b]): said in the report, not passed over
        self.unchecked: list = []
        # how messages about what it returned name it: "grad.py:3: g", at its def (the
        # line of its return is gone once it has returned)
        self.name = getattr(fn, "__name__", None) or type(fn).__name__
        self.where = defined_at(fn)
        self.who = f"{self.where}: {self.name}" if self.where else self.name
        if result != "gradient" and framework in AUTODIFF_FORMS:
            raise UserFunctionError(
                f"a {framework} is an objective with a hand-written backward, which gives "
                f"a gradient; to check the {result}, pass a function that returns it"
            )
        self.convention = _convention(fn, names, self.who)
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
        target = self.fn.forward if _autograd_class(self.fn) else self.fn
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
        return [n for n in params if n in self.names]

    def convert(self, x):
        # integer labels (domain {index: k}) stay integers: they index arrays
        labels = np.issubdtype(np.asarray(x).dtype, np.integer)
        if self.framework.startswith("jax"):
            import jax
            import jax.numpy as jnp

            dt = None if labels else self.dtype
            return jax.device_put(jnp.asarray(x, dtype=dt), self.jax_device)
        if self.framework.startswith("torch"):
            import torch

            dt = torch.float32 if self.dtype == "float32" else torch.float64
            return torch.tensor(
                np.asarray(x), dtype=torch.int64 if labels else dt, device=self.torch_device
            )
        return np.asarray(x, dtype=np.int64 if labels else DTYPES[self.dtype])

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
                with sealed(f"{self.who} (your function)"):
                    out = self._invoke(self.fn, values)
        except UserFunctionError:
            raise
        except SystemExit as exc:  # exit 0 and no report would read as a pass
            raise UserFunctionError(
                located(
                    exc, f"your function called sys.exit({shown(exc.code)}) instead of returning"
                ),
                user_traceback(exc),
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's code raised: report it as theirs
            raise raised(exc, "your function") from None
        return self._split(out)

    def _split(self, out) -> dict:
        """{wrt: array} from one array, a tuple (in ``wrt`` order, or one entry per
        symbol in the spec's order, as a layer's backward returns dX, dW, db) or a dict
        (keyed by the symbol's name, or as ``dW`` / ``grad_W``)."""
        if isinstance(out, tuple) and hasattr(out, "_asdict"):
            # a namedtuple Grads(b=..., w=...) names its fields: read by name, not by
            # position (in wrt order it swapped b and w, exit 1 on right gradients)
            out = dict(out._asdict())
        if len(self.wrt) == 1 and (not isinstance(out, (dict, tuple, list)) or _numbers(out)):
            # one array, or a plain list of numbers ([2.0, 4.0, 6.0]) that NumPy reads
            # as one: it was "a list of 3", refused
            out = {self.wrt[0]: out}
        elif isinstance(out, (tuple, list)) and len(out) in (len(self.wrt), len(self.names)):
            order = self.wrt if len(out) == len(self.wrt) else self.names
            out = dict(zip(order, out))
            self._unchecked(n for n, v in out.items() if n not in self.wrt and v is not None)
        elif isinstance(out, dict):
            keys = {w: _keys(w, self.names) for w in self.wrt}
            self._unchecked(
                n
                for n in self.names
                if n not in self.wrt and any(out.get(k) is not None for k in _keys(n, self.names))
            )
            for w in self.wrt:
                both = [k for k in keys[w] if out.get(k) is not None]
                if len(both) > 1:
                    # {"w": right, "dw": wrong} read "w" and matched, dw unread
                    raise UserFunctionError(
                        f"{self.who} returned a dict with {' and '.join(map(repr, both))}, "
                        f"each a spelling of the {self.result} for {w}: return one"
                    )
            out = {w: next((out[k] for k in keys[w] if k in out), None) for w in self.wrt}
            missing = [w for w, v in out.items() if v is None]
            if missing:
                raise UserFunctionError(
                    f"{self.who} returned a dict that lacks {', '.join(missing)} (keyed "
                    f"{' or '.join(repr(k) for k in keys[missing[0]])})"
                )
        else:
            what = (
                f"a {type(out).__name__} of {len(out)}"
                if isinstance(out, (tuple, list))
                else f"a {type(out).__name__}"
            )
            raise UserFunctionError(
                f"{self.who} returned {what}; expected the "
                f"{self.result}{'s' if len(self.wrt) > 1 else ''} "
                f"with respect to {', '.join(self.wrt)} (one array, a dict, or a tuple of "
                f"{len(self.wrt)} in wrt order or of {len(self.names)} in the spec's order)"
            )
        return {w: self._array(out[w], w) for w in self.wrt}

    def _unchecked(self, names) -> None:
        self.unchecked += [n for n in names if n not in self.unchecked]

    def _too_coarse(self, dtype: str, eps: float, of: str) -> str:
        return (
            f"{self.who} returned {dtype}{of} (machine epsilon {eps:.3g}): a check in it "
            f"cannot tell a right {self.result} from one off by {16 * eps:.0%}; return "
            "float16 or wider (.astype(np.float32), .float())"
        )

    def _array(self, x, w: str) -> np.ndarray:
        """The return for ``w`` as a NumPy array: a float array keeps its precision, which
        the check reads (float32 returned for float64 inputs); integers and the like
        become float64. What is no array of real numbers is the user's error, located."""
        shape = self.shapes.get(w)
        expected = f"the {self.result} with respect to {w} should be an array" + (
            f" of shape {tuple(shape)}" if shape is not None else ""
        )
        of = f" for {w}" if len(self.wrt) > 1 else ""
        if x is None:  # NumPy would read it as NaN
            raise UserFunctionError(f"{self.who} returned None{of}; {expected}")
        try:
            if hasattr(x, "detach"):  # a PyTorch tensor
                x = x.detach().cpu()
                # bfloat16 (torch's mixed precision) or a float8, which NumPy cannot
                # read: "returned a Tensor" said nothing of why
                eps = _torch_eps(x.dtype)
                if eps is not None and eps > HALF_EPS:
                    raise UserFunctionError(self._too_coarse(str(x.dtype), eps, of))
                x = x.numpy()
            array = np.asarray(x)
            # a copy: a function that reuses one output buffer (np.multiply(..., out=buf))
            # would rewrite the values kept from its earlier calls. Of the expected size
            # only (in any layout the check reads): a wrong one is reported, not kept (a
            # 20000 × 20000 return for a 4-vector was 6 GB)
            if shape is None or array.size == int(np.prod(shape, dtype=np.int64)):
                array = array.copy()
            coarse = _coarser_than_half(array.dtype)
            if coarse is not None:
                raise UserFunctionError(self._too_coarse(array.dtype.name, coarse, of))
            if array.dtype.kind in NOT_NUMBERS or (
                array.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in array.flat)
            ):
                raise TypeError(f"its entries are {_kind_name(array.dtype)}, not numbers")
            if array.dtype.kind not in "fc":  # integers, bools, objects holding numbers
                array = np.asarray(array, dtype=np.float64)
        except UserFunctionError:  # ours, above: said as it is
            raise
        except (TypeError, ValueError) as exc:
            # a ragged list says why in NumPy's words; a str or a generator says enough
            why = f" ({exc})" if isinstance(x, (list, tuple, np.ndarray)) else ""
            if inspect.iscoroutine(x):  # an async def's: never awaited, Python warned so
                x.close()
            raise UserFunctionError(
                f"{self.who} returned a {type(x).__name__}{of}{why}; {expected}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's __array__ (or the like) raised
            text = (
                f"{self.name} returned a {type(x).__name__}{of}, which cannot be read as an "
                f"array: {exception(exc)}"
            )
            # at the line of theirs that raised, else at the function's def
            at = located(exc, text)
            if at == text and self.where:
                at = f"{self.where}: {text}"
            raise UserFunctionError(at, user_traceback(exc)) from None
        if np.iscomplexobj(array):
            returned = f"{self.who} returned a complex {self.result}"
            raise UserFunctionError(_complex_message(array, returned, w))
        return array


HALF_EPS = float(np.finfo(np.float16).eps)


def _torch_eps(dtype) -> float | None:
    """A torch floating dtype's machine epsilon, else None."""
    import torch

    return float(torch.finfo(dtype).eps) if dtype.is_floating_point else None


def _coarser_than_half(dtype) -> float | None:
    """The machine epsilon of a float type coarser than float16 (bfloat16, the float8s
    of ml_dtypes, which NumPy sees as raw records), else None."""
    if dtype.kind in "fc":
        eps = float(np.finfo(dtype).eps)
    elif dtype.kind == "V" and ("float" in dtype.name or "bfloat" in dtype.name):
        try:
            import ml_dtypes

            eps = float(ml_dtypes.finfo(dtype).eps)
        except (ImportError, TypeError, ValueError):
            return None
    else:
        return None
    return eps if eps > HALF_EPS else None


# dtype kinds NumPy would turn into floats that are no numbers: strings ("2" is 2.0),
# bytes, times and durations, raw records (round 33: an array of "2" passed the check)
NOT_NUMBERS = {"U": "strings", "S": "bytes", "m": "durations", "M": "dates", "V": "raw records"}


def _kind_name(dtype) -> str:
    return NOT_NUMBERS.get(dtype.kind, "strings")


def _numbers(out) -> bool:
    """A list of plain numbers, more than one: a vector written out (a list of one is the
    tuple-of-one form, in wrt order)."""
    if not isinstance(out, list) or len(out) < 2:
        return False
    return all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in out)


def _keys(w: str, names) -> tuple:
    """How a returned dict may name the derivative with respect to ``w``: the symbol's
    own name first, then the spellings of NumPy DL code (cs231n's grads, numpy-ml's),
    less those that are another symbol's name (with symbols W and dW, the key 'dW' is
    dW's derivative: it was read as W's, and a right gradient failed the check)."""
    return tuple(k for k in (w, f"d{w}", f"grad_{w}", f"d_{w}") if k == w or k not in names)


def _complex_message(array: np.ndarray, returned: str, w: str) -> str:
    # NumPy's float cast would drop the imaginary part with a mere warning and the check
    # would pass: the derivative of a real objective is real, so a complex one is wrong
    imag = float(np.max(np.abs(array.imag), initial=0.0))
    return (
        f"{returned} with respect to {w} ({array.dtype}, largest imaginary part {imag:.3g}): the "
        "derivative of a real objective is real; return .real only where the imaginary "
        "part is rounding noise (an FFT's)"
    )
