"""The public ``Derivation`` object and ``derive()``: the library API the CLI wraps."""

from __future__ import annotations

import copy
import re

import numpy as np
import sympy as sp

from dlsym._budget import step
from dlsym.calculus import _derive as engine
from dlsym.calculus import _second_order as second_order
from dlsym.calculus._run import run
from dlsym.calculus._simplify import tree_size
from dlsym.codegen._compile import program
from dlsym.codegen._function import FunctionWriter, lambda_source, result_names
from dlsym.codegen._jax import jax_x64
from dlsym.expr import _explicit as explicit
from dlsym.printing._printers import (
    ExprPrinter,
    PaperLatexPrinter,
    TensorPrettyPrinter,
    unicode_name,
)
from dlsym.printing._render import latex_escape, plain_prose, step_text
from dlsym.sections._base import DerivationBase
from dlsym.sections._signature import Signature
from dlsym.sections.calculus._counterexample import settle
from dlsym.sections.calculus._verify import verify
from dlsym.spec._spec import Spec, build_spec
from dlsym.spec._symbols import scripted
from dlsym.spec._yamlfile import Document

# The left-hand side of each kind's result, from the LaTeX (or text) names of its wrt
# symbols (two for a block of the joint Hessian, all of them for a joint Taylor model or
# convexity) and of their directions
LHS_LATEX = {
    "grad": lambda v, d: rf"\nabla_{{{v[0]}}} \ell",
    "jac": lambda v, d: rf"\frac{{\partial \mathbf{{f}}}}{{\partial {v[0]}}}",
    "hess": lambda v, d: rf"\nabla^{{2}}_{{{', '.join(v)}}} \ell",
    "hvp": lambda v, d: rf"\nabla^{{2}}_{{{', '.join(v)}}} \ell\,[{d[0]}]",
    "vjp": lambda v, d: (
        rf"\left(\frac{{\partial \mathbf{{f}}}}{{\partial {v[0]}}}\right)^{{\top}}"
        r"[\boldsymbol{\Delta}]"
    ),
    # Boyd & Vandenberghe's Newton step, the model of l at v + Delta, the stationary v;
    # v in braces where it has a script (w_{1}) or is an accent with one (\bar{x}_{t}:
    # TeX unwraps a group of one accent, and {\bar{x}_{t}}_{nt} is a double subscript)
    "newton": lambda v, d: rf"\Delta {scripted(v[0])}_{{\mathrm{{nt}}}}",
    "taylor": lambda v, d: rf"\ell({', '.join(f'{a} + {b}' for a, b in zip(v, d))})",
    "stationary": lambda v, d: rf"{scripted(v[0])}^{{\star}}",
    # the second derivative along a joint direction: <Delta, H Delta>
    "along": lambda v, d: (
        r"\frac{d^{2}}{dt^{2}} \ell("
        + ", ".join(f"{a} + t {b}" for a, b in zip(v, d))
        + r")\big|_{t=0}"
    ),
}
LHS_TEXT = {
    "grad": lambda v, d: f"∇_{v[0]} ℓ",
    "jac": lambda v, d: f"∂f/∂{v[0]}",
    "hess": lambda v, d: f"∇²_{','.join(v)} ℓ",
    "hvp": lambda v, d: f"∇²_{','.join(v)} ℓ[{d[0]}]",
    "vjp": lambda v, d: f"(∂f/∂{v[0]})ᵀ[Δ]",
    "newton": lambda v, d: f"Δ{v[0]}_nt",
    "taylor": lambda v, d: f"ℓ({', '.join(f'{a} + {b}' for a, b in zip(v, d))})",
    "stationary": lambda v, d: f"{v[0]}*",
    "along": lambda v, d: f"d²/dt² ℓ({', '.join(f'{a} + t{b}' for a, b in zip(v, d))}) at t = 0",
}
# a step line's relation (calculus Line.rel) in LaTeX
RELATION_LATEX = {"=": "=", ">": ">"}
# the left-hand side of each kind's result
LHS_OF = {
    "gradient": "grad",
    "jacobian": "jac",
    "hessian": "hess",
    "newton_step": "newton",
    "taylor": "taylor",
    "stationary": "stationary",
    "convexity": "hess",
}
# the most nodes a result's JSON expr has written out as one expression (a tree):
# past it, the result is given in the named intermediates with their definitions
# (``intermediates``), as the steps show it, since printing the tree would cost more
# than the derivation (its printed size grows exponentially with the depth)
MAX_EXPR_NODES = 50_000
# what a result without a value is called in the notes that say why it has none
_WITHOUT_VALUE = {"stationary": "stationary point", "newton_step": "Newton step"}


class Derivation(DerivationBase):
    """A derived spec: ``results`` ({kind: {wrt: Result}}), ``steps``, renderers,
    numeric functions and verification."""

    def __init__(self, spec: Spec, results: dict, steps: list):
        self.spec = spec
        self.results = results
        self.steps = tuple(steps)
        self.verification = None
        self.algebra = engine.derivation_algebra(spec)  # shapes of the adjoints too
        # generated functions and the expanded target, built once: verification asks
        # for them per result, and a transformer block's code takes seconds to write
        self._functions: dict = {}
        self._expanded = None
        # each kind's JSON display, with the results it was worked out from
        self._displays: dict = {}
        names = dict(spec.latex_names)
        names[engine.LOSS] = r"\ell"
        names[engine.OUTPUT] = r"\mathbf{f}"
        for d in spec.defines:
            names[engine.adjoint_symbol(d.symbol)] = (
                rf"\frac{{\partial \ell}}{{\partial {names[d.symbol]}}}"
            )
        for name in spec.wrt:  # the direction a Hessian w.r.t. a matrix acts on
            sym = spec.symbol(name).symbol
            names[engine.direction_symbol(sym)] = (
                rf"\boldsymbol{{\Delta}}_{{{names[sym]}}}"  # one per symbol: Δ_w, Δ_b
                if len(spec.wrt) > 1
                else r"\boldsymbol{\Delta}"
            )
        names[engine.OUTPUT_DIRECTION] = r"\boldsymbol{\Delta}"  # a Jacobian's cotangent
        # the names the joint Newton step writes its stacked system in
        wrt_syms = [spec.symbol(n).symbol for n in spec.wrt]
        for a in wrt_syms:
            names[engine.gradient_symbol(a)] = rf"\nabla_{{{names[a]}}} \ell"
            for b in wrt_syms:
                pair = names[a] if a == b else f"{names[a]}, {names[b]}"
                names[engine.block_symbol(a, b)] = rf"\nabla^{{2}}_{{{pair}}} \ell"
        names[engine.NEWTON_STACKED] = r"\Delta_{\mathrm{nt}}"
        names[engine.STATIONARY_STACKED] = r"x^{\star}"
        names[second_order.NONE] = r"\text{no closed form}"
        names[second_order.NOWHERE] = r"\text{none in the domain}"
        names[second_order.UNDEFINED] = r"\text{not defined}"
        self.latex_names = names
        self.text_names = {s: unicode_name(v) for s, v in names.items()}
        self.text_names[engine.LOSS] = "ℓ"
        self.text_names[engine.OUTPUT] = "f"
        self.text_names[second_order.NONE] = "no closed form"
        self.text_names[second_order.NOWHERE] = "none in the domain"
        self.text_names[second_order.UNDEFINED] = "not defined"
        for a in wrt_syms:
            self.text_names[engine.gradient_symbol(a)] = f"∇_{self.text_names[a]} ℓ"
            for b in wrt_syms:
                pair = ",".join(dict.fromkeys((self.text_names[a], self.text_names[b])))
                self.text_names[engine.block_symbol(a, b)] = f"∇²_{pair} ℓ"
        self.text_names[engine.NEWTON_STACKED] = "Δ_nt"
        self.text_names[engine.STATIONARY_STACKED] = "x*"
        for d in spec.defines:
            self.text_names[engine.adjoint_symbol(d.symbol)] = f"∂ℓ/∂{self.text_names[d.symbol]}"

    @property
    def name(self) -> str:
        return self.spec.name

    title = property(lambda self: self.spec.title)
    description = property(lambda self: self.spec.description)
    verify_options = property(lambda self: self.spec.verify)

    @property
    def notes(self) -> tuple:
        out = []
        for kind, parts in self.results.items():
            for wrt, r in parts.items():
                if r.entries is not None:
                    out.append(
                        f"the {kind} with respect to {wrt} is given as {r.method} (no "
                        "matrix-form rule applies)"
                    )
                elif r.expr is None:  # a stationary point or Newton step: why it has none
                    out.append(f"the {_WITHOUT_VALUE[kind]} in {wrt}: {r.method}")
                elif r.caveat:  # a value that holds only under what it says
                    out.append(f"the {_WITHOUT_VALUE.get(kind, kind)} in {wrt}: {r.caveat}")
        return tuple(out)

    # -- printing ----------------------------------------------------------------

    # -- step titles: the spec's names set as its symbols --------------------------

    # a name in a title after these words is a symbol or define ("Adjoint of yhat",
    # "with respect to W and b"); nowhere else, so a symbol named "step" stays a word
    _BEFORE_NAMES = ("of", "to", "and", "for", "in")

    def _title_parts(self, title: str):
        """(text, symbol or None) pieces of a title."""
        names = {d.name: d.symbol for d in self.spec.defines}
        names.update({s.name: s.symbol for s in self.spec.symbols})
        out, after = [], False
        for piece in re.split(r"([A-Za-z_][A-Za-z0-9_]*)", title):
            if piece in names and after:
                out.append((piece, names[piece]))
                continue  # after a name, a comma list goes on ("w, b", "w,b")
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", piece):
                after = piece in self._BEFORE_NAMES
            elif piece.strip(" ,") != "":
                after = False
            out.append((piece, None))
        return out

    def title_text(self, title: str) -> str:
        return "".join(
            self.text_names.get(sym, text) if sym is not None else text
            for text, sym in self._title_parts(title)
        )

    def title_latex(self, title: str) -> str:
        return "".join(
            f"${self.latex_names[sym]}$" if sym is not None else latex_escape(text)
            for text, sym in self._title_parts(title)
        )

    def latex_of(self, e) -> str:
        if isinstance(e, tuple):  # a left-hand side: (kind, wrt symbols...)
            kind, *syms = e
            names = [self.latex_names[s] for s in syms]
            directions = [self.latex_names[engine.direction_symbol(s)] for s in syms]
            return LHS_LATEX[kind](names, directions)
        return PaperLatexPrinter(self.algebra.shape, self.latex_names).doprint(e)

    def text_of(self, e) -> str:
        if isinstance(e, tuple):
            kind, *syms = e
            names = [self.text_names[s] for s in syms]
            directions = [self.text_names[engine.direction_symbol(s)] for s in syms]
            return LHS_TEXT[kind](names, directions)
        return TensorPrettyPrinter(self.algebra.shape, self.text_names).doprint(e)

    def expr_of(self, e) -> str:
        return ExprPrinter(self.algebra.shape, self.spec.names).doprint(e)

    def step_text(self, step) -> str:
        return step_text(self, step)

    def step_latex(self, step) -> str:
        rows = []
        for line in step.lines:
            lhs = self.latex_of(line.lhs)
            rel = RELATION_LATEX[line.rel]
            for i, r in enumerate(line.rhs):
                rows.append(f"{lhs if i == 0 else ''} &{rel} {self.latex_of(r)}")
        return " \\\\\n".join(rows)

    def _named_form(self, lhs, full, defined: dict, limit: int = MAX_EXPR_NODES):
        """None where ``full`` is short enough (``limit`` nodes) to print as one
        expression; else the result as its step shows it, in the names of the
        intermediates (the defines and their adjoints), and each name it needs with its
        definition, in the order they are computed. The gradient of a 10-layer residual
        chain written out is a tree of 6 million nodes (each adjoint uses the next one
        twice): 400 MB of JSON in two minutes, where the steps say it in 30 KB."""
        if tree_size(full, limit) <= limit:
            return None
        line = next(
            (
                ln
                for s in self.steps
                for ln in s.lines
                if isinstance(ln.lhs, tuple) and ln.lhs == lhs
            ),
            None,
        )
        if line is None:
            return None
        # the most written-out form the step shows that fits, else its first
        form = next((f for f in reversed(line.rhs) if tree_size(f, limit) <= limit), line.rhs[0])
        needed: set = set()
        todo = [form]
        while todo:
            for s in todo.pop().free_symbols & defined.keys() - needed:
                needed.add(s)
                todo.append(defined[s])
        return form, needed

    def _defined(self) -> dict:
        """Every named intermediate's definition as its step shows it first (in the names
        before it): a define's body, an adjoint in the adjoints after it; in the order
        the steps compute them."""
        return {
            ln.lhs: ln.rhs[0] for s in self.steps for ln in s.lines if isinstance(ln.lhs, sp.Symbol)
        }

    def _intermediates(self, needed: set, defined: dict) -> list:
        """The JSON's ``intermediates``: each needed name and its definition, in order."""
        return [
            {
                "name": self.expr_of(s),
                "expr": self.expr_of(body),
                "latex": f"{self.latex_of(s)} = {self.latex_of(body)}",
            }
            for s, body in defined.items()
            if s in needed
        ]

    def result_display(self, kind: str) -> dict:
        """{"expr", "latex"} per the output contract, and each wrt's part; worked out
        once per state of the results (codegen asks once per function: N functions of
        N wrt blocks each, cubic in the spec, past the budget at 70 scalar weights)."""
        now = tuple(self.results[kind].values())
        was, shown = self._displays.get(kind, ((), None))
        if shown is None or len(was) != len(now) or any(a is not b for a, b in zip(was, now)):
            shown = self._display(kind)
            self._displays[kind] = (now, shown)
        return copy.deepcopy(shown)

    def _display(self, kind: str) -> dict:
        parts: dict = {}
        needed: set = set()
        defined = self._defined()  # the steps' named intermediates, walked once
        for wrt, r in self.results[kind].items():
            named = None
            # its symbols: the wrt's, a block's two, or all of a joint result's
            syms = tuple(self.spec.symbol(n).symbol for n in dict.fromkeys(r.about))
            lhs_key = LHS_OF[kind]
            if r.direction is not None:
                lhs_key = "hvp" if kind in ("hessian", "convexity") else "vjp"
            if kind == "convexity" and r.over:  # along the joint direction
                lhs_key = "along"
            if r.entries is not None:
                # the entries as the language writes them: X[0, 1], not _e_X_0_1
                names = explicit.readable_entries(r.entry_env)
                shown = np.vectorize(lambda e: e.xreplace(names), otypes=[object])(r.entries)
                value = sp.ImmutableMatrix(shown.reshape(shown.shape[0], -1).tolist())
                expr, compact = _nested(shown.tolist(), self.expr_of), value
            elif r.expr is None:  # a stationary point or Newton step without a value
                first = next((w for w in second_order.NO_VALUE if r.method.startswith(w)), None)
                value = compact = second_order.NO_VALUE.get(first, second_order.NOWHERE)
                # the reason as text: the JSON's expr read "so $\nabla\ell = 0$ is ..."
                expr = plain_prose(r.method)
            elif kind == "convexity" and r.over:  # d²ℓ/dt² along a joint direction: its
                value, expr, compact = r.compact, self.expr_of(r.expr), r.compact  # short form
            else:
                value, compact = r.expr, r.compact
                # the limit shared by the kind's results: 200 scalar weights each
                # inlining one 200-term define wrote 7 MB of JSON from a 9 KB spec
                limit = MAX_EXPR_NODES // len(self.results[kind])
                named = self._named_form((lhs_key, *syms), r.expr, defined, limit)
                if named is not None:  # too long as one expression: in named parts
                    value = compact = named[0]
                expr = self.expr_of(value)
            parts[wrt] = {
                "expr": expr,
                "latex": f"{self.latex_of((lhs_key, *syms))} = {self.latex_of(value)}",
                "compact_latex": self.latex_of(compact),
                "method": r.method,
                "shape": [str(d) for d in r.shape],
            }
            if r.expr is not None and r.entries is None and named is not None:
                needed |= named[1]
            if r.exists_where:  # a stationary point real only under conditions: m > 0
                parts[wrt]["where"] = [f"{self.expr_of(m)} > 0" for m in r.exists_where]
                parts[wrt]["where_latex"] = [f"{self.latex_of(m)} > 0" for m in r.exists_where]
            if r.verdict is not None:  # convexity: the verdict, and the Hessian it is about
                v = r.verdict
                parts[wrt]["expr"] = v.word
                parts[wrt]["latex"] += (r" \geq 0" if r.over else r" \succeq 0") if v.convex else ""
                parts[wrt].update(verdict=v.word, reason=plain_prose(v.reason))
                if v.point is not None:
                    parts[wrt]["counterexample"] = {
                        k: np.asarray(x).tolist() for k, x in v.point.items()
                    }
                    parts[wrt]["eigenvalue"] = v.eigenvalue
                if v.other is not None:  # a chord counterexample: its second point
                    parts[wrt]["other"] = {k: np.asarray(x).tolist() for k, x in v.other.items()}
                    parts[wrt]["gap"] = v.gap
        # the named intermediates the results are written in, once for them all (each
        # of 200 weights listed the same 200 defines)
        shared = {"intermediates": self._intermediates(needed, defined)} if needed else {}
        if len(parts) == 1:
            return {**next(iter(parts.values())), **shared}
        return {
            "expr": "; ".join(f"{w}: {p['expr']}" for w, p in parts.items()),
            "latex": " \\\\ ".join(p["latex"] for p in parts.values()),
            "wrt": parts,
            **shared,
        }

    # -- numbers -----------------------------------------------------------------

    def expanded_target(self):
        """The objective (or output) with every intermediate substituted."""
        if self._expanded is None:
            target = self.spec.objective if self.spec.objective is not None else self.spec.output
            self._expanded = engine.Engine(self.spec).expand(target)
        return self._expanded

    def function(self, kind: str = "gradient", backend: str = "numpy"):
        """A callable taking the spec's symbols (keywords, or positionally in the spec's
        order) as arrays in NumPy conventions; returns an array, or a dict of arrays
        when ``wrt`` names several symbols (the Hessian of several: a dict of dicts,
        ``h[a][b]`` of shape a.shape + b.shape, as jax.hessian of a dict of them). It
        runs the functions ``dlsym codegen`` writes (their text is its ``source``); for
        JAX it is a ``jax.jit`` function."""
        if kind == "objective":
            parts = {"objective": None}
        elif kind in self.value_kinds:
            parts = self.results[kind]
            missing = [
                f"{w}: {r.method}" for w, r in parts.items() if r.expr is None and r.entries is None
            ]
            if missing:
                raise ValueError(f"no function for {kind!r}: {'; '.join(missing)}")
        else:
            raise KeyError(self.no_function(kind))
        if (kind, backend) in self._functions:
            return self._functions[kind, backend]
        f = _NumericFunction(self.spec, kind, parts, backend, nest=True)
        if backend == "numpy":
            self._functions[kind, backend] = f
            return f
        # jit straight around the call, binding and checks included: they run while jit
        # traces (once per argument shapes and dtypes), and a call costs what a call of
        # the jitted module function costs, with no Python wrapper in between
        fast = jax_x64().jit(f.__call__)
        fast.source = f.source
        self._functions[kind, backend] = _labels_checked(f, fast)
        return self._functions[kind, backend]

    def numeric_function(self, kind: str, keys: tuple, backend: str = "numpy"):
        """``function(kind)`` for the results ``keys`` of ``kind`` only (the stationary
        points that have a closed form where another has none; one block of a joint
        Hessian), a dict keyed as ``results[kind]`` (an array for one key)."""
        key = ("parts", kind, tuple(keys), backend)
        if key not in self._functions:  # built once: verification asks per result
            parts = {k: self.results[kind][k] for k in keys}
            f = _NumericFunction(self.spec, kind, parts, backend)
            self._functions[key] = f if backend == "numpy" else jax_x64().jit(f.__call__)
        return self._functions[key]

    def taylor_function(self, wrts):
        """The Taylor model in the wrt symbol ``wrts`` (a name), or in all of a joint
        model's (a tuple), as a JAX function of the spec's symbols (in their order) and
        then the directions: generated code, as every value function."""
        wrts = (wrts,) if isinstance(wrts, str) else tuple(wrts)
        if "taylor" not in self.results:  # a bare KeyError: 'taylor' said nothing
            raise KeyError(self.no_function("taylor"))
        models = self.results["taylor"]
        key = engine.joint_key(wrts)
        if key not in models:
            raise KeyError(f"no Taylor model in {key!r}; the models are in: {', '.join(models)}")
        r = models[key]
        directions = [engine.direction_symbol(self.spec.symbol(w).symbol) for w in wrts]
        writer = FunctionWriter(self.spec, "jax")
        extra = {delta: self.algebra.shape(delta) for delta in directions}
        source = writer.function("taylor", r.expr, (), extra=extra)
        return program("jax", source, names=writer.names)["taylor"]

    def condition_function(self, key: str):
        """The margins of the stationary point ``key`` (its ``exists_where``: it exists
        where each is > 0) as a JAX function of the spec's symbols, in their order,
        returning them as a tuple: generated code, as every value function."""
        r = self.results["stationary"][key]
        writer = FunctionWriter(self.spec, "jax")
        names = [f"condition_{i}" for i in range(len(r.exists_where))]
        source = "\n".join(
            writer.function(n, m, tuple(self.algebra.shape(m)))
            for n, m in zip(names, r.exists_where)
        )
        functions = program("jax", source, names=writer.names)
        return lambda *xs: tuple(functions[n](*xs) for n in names)

    # derived kinds that are models or verdicts rather than values: no numeric function
    NOT_VALUES = {
        "taylor": "a model in the direction Δ (verification evaluates it)",
        "convexity": "a verdict (a proof or a counterexample)",
    }

    @property
    def value_kinds(self) -> tuple:
        return tuple(k for k in self.results if k not in self.NOT_VALUES)

    def _verify(self, points, seed, device, dtype, rtol, atol):
        return verify(self, points, seed, device, dtype, rtol, atol)


def _labels_checked(f, fast):
    """``fast`` (f jitted), where the spec has labels (a domain {index: k}) behind a
    check of them outside jit: traced, they hold no values, and XLA clamps a gather, so
    E[ids] with a label 7 of 4 classes gave the value at 3 (the NumPy function refuses
    it). Inside a caller's own jit the labels are traced again, and left to JAX."""
    if not any(getattr(d, "index_size", None) is not None for d in f.signature.decls):
        return fast

    def checked(*args, **kwargs):
        f.signature.sizes(f.signature.bind(args, kwargs))  # ValueError on a bad label
        return fast(*args, **kwargs)

    checked.source = f.source
    return checked


class _NumericFunction:
    def __init__(self, spec: Spec, kind: str, parts: dict, backend: str, nest: bool = False):
        self.spec = spec
        # blocks of a joint Hessian returned as jax.hessian does: h[a][b], the blocks
        # below the diagonal the ones above transposed
        self.blocks = {
            key: r.over for key, r in parts.items() if nest and r is not None and len(r.over) == 2
        }
        # the calling convention of every value function; no batch axes here: under
        # jax.vmap (verification) each call sees one instance
        # a stationary point is a function of the other symbols: its wrt ones may be left out
        optional = tuple(spec.wrt) if kind == "stationary" else ()
        self.signature = Signature(
            tuple(spec.symbols), spec.dim_values, f"the {kind}", batch=False, optional=optional
        )
        self.xp = np if backend == "numpy" else jax_x64().numpy
        entrywise = {w: r for w, r in parts.items() if r is not None and r.entries is not None}
        # some parts in matrix form, some as explicit entries (a Hessian block that fell
        # back to entries beside one that did not): one function for each kind of part
        self.split, self.order = None, list(parts)
        if entrywise and len(entrywise) < len(parts):
            rest = {w: r for w, r in parts.items() if w not in entrywise}
            self.split = [
                (list(group), _NumericFunction(spec, kind, group, backend))
                for group in (entrywise, rest)
            ]
            return
        self.explicit = bool(entrywise)
        if self.explicit:
            # entries at the spec's dims: one scalar argument per entry of each symbol
            env = next(iter(parts.values())).entry_env
            flat = [s for d in spec.symbols for s in np.asarray(env[d.symbol]).flat]
            entries = [list(r.entries.flat) for r in parts.values()]
            self.source = lambda_source("entries", flat, entries, backend)
            self._f = program(backend, self.source)["entries"]
            self.shapes = {wrt: r.entries.shape for wrt, r in parts.items()}
        else:
            # the functions of the dlsym codegen module: objective, gradient_w, ...
            writer = FunctionWriter(spec, backend)
            names = result_names(kind, {w: r for w, r in parts.items() if r is not None})
            named = {
                wrt: writer.primary() if r is None else (names[wrt], r.expr, r.shape)
                for wrt, r in parts.items()
            }
            self.source = "\n\n".join(
                writer.function(*named[wrt]) if r is None else writer.result(named[wrt][0], r)
                for wrt, r in parts.items()
            )
            ns = program(backend, self.source, names=writer.names)
            self._fns = [ns[name] for name, _, _ in named.values()]
            self.shapes = {wrt: shape for wrt, (_, _, shape) in named.items()}

    def __call__(self, /, *args, **kwargs):
        """The results; under ``jax.jit`` this runs once per argument shapes and dtypes,
        while jit traces it (the dims read from the shapes are constants to XLA)."""
        if self.split is not None:
            results = {}
            for keys, f in self.split:
                out = f(*args, **kwargs)
                results.update(out if len(keys) > 1 else {keys[0]: out})
            results = {k: results[k] for k in self.order}  # the parts' order
            return self._nested(results) if self.blocks else results
        xp = self.xp
        bound = self.signature.bind(args, kwargs)
        values = [xp.asarray(bound[n]) for n in self.signature.names]
        # sizes read off the arrays; a dim no argument carries: the spec's
        dims, _ = self.signature.sizes(dict(zip(self.signature.names, values)))
        if self.explicit:
            expected = {self.spec.dim_symbols[k]: v for k, v in self.spec.dims.items()}
            if any(dims.get(d, v) != v for d, v in expected.items()):
                raise ValueError(
                    "this result was derived as explicit entries at the spec's "
                    f"dims {self.spec.dims}; call it with arrays of those sizes"
                )
            outs = self._f(*[x for v in values for x in xp.reshape(v, (-1,))])
        else:
            outs = [f(*values) for f in self._fns]
        # results keep the inputs' floating dtype (float32 in, float32 out)
        dtype = xp.result_type(
            *[v.dtype for v in values if xp.issubdtype(v.dtype, xp.floating)] or [float]
        )
        results = {}
        for (wrt, shape), out in zip(self.shapes.items(), outs):
            if self.explicit:
                out = xp.stack([xp.asarray(o, dtype=dtype) for o in out])
                results[wrt] = xp.reshape(out, shape)
                continue
            shape = self.signature.shape(shape, dims)
            out = xp.asarray(out, dtype=dtype)
            if out.shape != shape:  # a constant or scalar result, e.g. 2*I or 0
                out = xp.array(xp.broadcast_to(out, shape))
            results[wrt] = out
        if self.blocks:
            return self._nested(results)
        return results if len(results) > 1 else next(iter(results.values()))

    def _nested(self, blocks: dict) -> dict:
        """{a: {b: the block a, b}} from the blocks at and above the diagonal."""
        xp, out = self.xp, {}
        for key, (a, b) in self.blocks.items():
            h = blocks[key]
            out.setdefault(a, {})[b] = h
            if a != b:  # ∂²ℓ/∂b∂a: the axes of b first, then a's
                rank_a = len(self.spec.symbol(a).shape)
                axes = tuple(range(rank_a, h.ndim)) + tuple(range(rank_a))
                out.setdefault(b, {})[a] = xp.transpose(h, axes)
        order = list(dict.fromkeys(a for pair in self.blocks.values() for a in pair))
        return {a: {b: out[a][b] for b in order} for a in order}


def derive_calculus(doc: Document) -> Derivation:
    """Validate and derive a calculus spec (``objective``/``output`` and ``wrt``)."""
    spec = build_spec(doc)
    results, steps = run(spec)
    d = Derivation(spec, results, steps)
    if "convexity" in results:
        # numbers past float64 at drawn points (1e308 x²) are found and left out by the
        # search: NumPy's warnings with dlsym's paths are not the user's business
        with step("convexity: searching for a counterexample"), np.errstate(all="ignore"):
            settle(d)
    return d


def _nested(entries, text) -> str:
    """Nested lists of entries as the language's nested list literal."""
    if isinstance(entries, list):
        return "[" + ", ".join(_nested(e, text) for e in entries) + "]"
    return text(entries)
