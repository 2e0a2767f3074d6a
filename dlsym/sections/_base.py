"""The derivation contract every section satisfies, and the data its renderers print.

``DerivationBase`` is the contract: ``results``, ``steps``, ``latex()``, ``to_dict()``
(the JSON of shared/spec-format.md), ``function(kind, backend)`` for every kind in
``value_kinds``, ``verify()``, and ``section`` (which section derived it). The calculus
``Derivation`` and every ``SectionDerivation`` (constrained optimization, information
theory, MDP, LQR) subclass it, so the CLI, the renderers and the Python API never ask
which section they hold.

``Signature`` is the calling convention of the sections' value functions: the spec's
symbols as keywords (or positionally in the spec's order), in NumPy conventions.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import sympy as sp

from dlsym._errors import DeviceError, SpecError
from dlsym.codegen import _compile as codegen
from dlsym.codegen._jax import jax_x64
from dlsym.expr import _ops as ops
from dlsym.printing._render import latex_document, latex_escape, markdown, math_displays
from dlsym.sections._signature import BACKENDS
from dlsym.spec._common import Header
from dlsym.verify import VerificationReport, at_extremes, draw, drawing, generator, tolerance

# --- what the renderers print ----------------------------------------------------------


@dataclass(frozen=True)
class ShownStep:
    """A step already printed: ``latex`` holds the rows of an ``align*`` block
    (``lhs &= rhs \\\\ ...``), ``text`` the same for a terminal."""

    title: str
    latex: str
    text: str
    justification: str  # prose, with $...$ math


@dataclass(frozen=True)
class ValueTable:
    """A table of results (values per state, per state and action, ...)."""

    title: str
    columns: tuple
    rows: tuple  # tuples of str, one per column
    latex_rows: tuple = ()  # the same cells as LaTeX math, when they differ


@dataclass(frozen=True)
class Shown:
    """One result as the output contract shows it, plus the exact value."""

    expr: str
    latex: str
    value: Any = None  # the exact SymPy value (Matrix, dict, ...), for the Python API
    extra: dict = field(default_factory=dict)  # more JSON fields for this result


class DerivationBase(abc.ABC):
    """A derived spec: what every section returns from ``dlsym.derive``.

    Attributes
    ----------
    results : dict
        ``{kind: result}`` for each derived kind (``gradient``, ``solution``, ``v_pi``,
        ...); ``result_display(kind)`` gives its ``{"expr", "latex"}`` for the JSON.
    steps : tuple
        The derivation, step by step; ``step_latex(step)`` and ``step_text(step)``
        print one.
    tables, notes : tuple
        Tables of values and remarks shown after the steps (may be empty).
    verification : VerificationReport or None
        The last report of ``verify()``, None before.
    section : str or None
        The section id of ``dlsym._api.BUILDERS``: None for calculus, else
        "constrained", "info", "mdp" or "lqr"; callers read it instead of probing
        attributes.

    Examples
    --------
    >>> import dlsym
    >>> d = dlsym.derive({"name": "square", "symbols": {"x": {}},
    ...                   "objective": "x**2", "wrt": "x"})
    >>> sorted(d.to_dict())
    ['name', 'results', 'steps', 'title']
    >>> d.to_dict()["results"]["gradient"]["expr"]
    '2*x'
    >>> print(d.latex())
    \\begingroup\\sloppy
    \\section*{Square}
    \\begin{align*}
    \\intertext{\\textbf{Objective} (the function to differentiate)}
    \\ell &= x^{2} \\\\
    \\intertext{\\textbf{Gradient with respect to $x$} (chain rule: compose the adjoints; power rule: $d(u^c) = c u^{c-1} du$)}
    \\nabla_{x} \\ell &= 2 x
    \\end{align*}
    \\par\\endgroup
    <BLANKLINE>
    """

    results: dict
    steps: tuple
    tables: tuple = ()
    verification: VerificationReport | None = None
    section: str | None = None

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    @abc.abstractmethod
    def title(self) -> str: ...

    @property
    @abc.abstractmethod
    def description(self) -> str: ...

    @property
    def notes(self) -> tuple:
        return ()

    @property
    @abc.abstractmethod
    def verify_options(self):
        """The spec's ``verify`` key (``VerifyOptions``)."""

    @abc.abstractmethod
    def result_display(self, kind: str) -> dict:
        """``{"expr", "latex", ...}`` of one result, as the JSON output shows it."""

    @abc.abstractmethod
    def step_latex(self, step) -> str:
        """The rows of an ``align*`` block for one step."""

    @abc.abstractmethod
    def step_text(self, step) -> str:
        """One step as terminal text."""

    # derived kinds that are not values, and what each is instead (each section's table)
    NOT_VALUES: dict = {}
    # what the section calls its value kinds in messages ("the quantities are: ...")
    VALUES_CALLED = "value kinds"

    def what_is(self, kind: str) -> str:
        """What a derived kind that is not a value is instead, for messages."""
        return self.NOT_VALUES.get(kind, "not a value")

    def no_function(self, kind: str) -> str:
        """The message for a kind ``function`` does not take."""
        kinds = ", ".join(self.value_kinds)
        takes = (
            f"the {self.VALUES_CALLED} are: {kinds}"
            if kinds
            else "this derivation has no value kinds (derive one to get a function)"
        )
        if kind in self.results:
            return f"{kind!r} is {self.what_is(kind)}, so it has no numeric function; {takes}"
        derived = ", ".join(self.results) or "nothing"
        return f"no result {kind!r} (derived: {derived}); {takes}"

    @property
    def value_kinds(self) -> tuple:
        """The kinds ``function`` accepts: every derived result whose value is a number
        or an array. The calculus default is every result (the calculus ``function``
        also takes "objective"); sections whose results include equations, proofs or
        formulas without a value say which of them are values."""
        return tuple(self.results)

    @abc.abstractmethod
    def function(self, kind: str, backend: str = "numpy") -> Callable:
        """A numeric function of the result ``kind``, running generated code.

        Parameters
        ----------
        kind : str
            One of ``value_kinds``: a derived kind whose result is a value or an array
            (``gradient``, ``jacobian``, ``hessian``, ``solution``, ``dual``, ``v_pi``,
            ...).
        backend : {"numpy", "jax"}
            The array library of the generated code; ``"jax"`` is jit-compiled and
            computes in the inputs' precision (float64 in, float64 out).

        Returns
        -------
        callable
            Takes the spec's symbols as keyword arguments (or positionally, in the spec's
            order) in NumPy conventions (a vector is a 1-D array) and returns an array,
            or a dict of arrays when the result has several parts (several ``wrt``).

        Raises
        ------
        KeyError
            ``kind`` was not derived, or is not a value (``kkt``, ``identities``); the
            message names the value kinds there are.
        ValueError
            The result has no closed form to compute (a constrained solution that was
            not found in closed form).

        Examples
        --------
        >>> import dlsym, numpy as np
        >>> d = dlsym.derive({"name": "ridge",
        ...     "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]},
        ...                 "w": {"shape": ["n"]}, "lam": {"domain": "positive"}},
        ...     "dims": {"m": 5, "n": 2},
        ...     "objective": "sum((X @ w - y)**2) + lam * sum(w**2)", "wrt": "w"})
        >>> grad = d.function("gradient")
        >>> grad(X=np.eye(2), y=np.zeros(2), w=np.array([1.0, -1.0]), lam=0.5)
        array([ 3., -3.])
        """

    def latex(
        self,
        standalone: bool = False,
        *,
        numbered: bool = False,
        only: str | None = None,
        columns: int = 1,
    ) -> str:
        """The derivation as LaTeX: an ``align*`` block per step, or with
        ``standalone=True`` a complete document that compiles with ``pdflatex``, an
        article of ``columns`` (1 or 2) columns. ``numbered``: the results after the
        steps, numbered and labelled ``eq:<spec>-<kind>`` to cite; ``only="results"``:
        the results without the steps."""
        if only not in (None, "results"):
            raise ValueError(f"only must be None or 'results', got {only!r}")
        if columns not in (1, 2):
            raise ValueError(f"columns must be 1 or 2, got {columns!r}")
        return latex_document(self, standalone, numbered, only, columns)

    # a step's title as the terminal and LaTeX show it; a section whose titles name its
    # symbols ("Adjoint of yhat") sets them as the symbols are set (Adjoint of ŷ)
    def title_text(self, title: str) -> str:
        return title

    def title_latex(self, title: str) -> str:
        return latex_escape(title)

    def markdown(self) -> str:
        """The derivation as Markdown with ``$$`` math (GitHub, Jupyter): what
        ``dlsym derive --format markdown`` prints."""
        return markdown(self)

    # Jupyter and IPython show a derivation as typeset math: the notebook picks one of
    # these (Markdown holds the steps' titles and reasons too; LaTeX is math only, each
    # step one aligned display, as MathJax has no \intertext)
    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_latex_(self) -> str:
        return math_displays(self)

    def to_dict(self) -> dict:
        """The JSON output contract (shared/spec-format.md, "Output contract")."""
        out: dict = {
            "name": self.name,
            "title": self.title,
            "results": {k: self.result_display(k) for k in self.results},
            "steps": [
                {"title": s.title, "latex": self.step_latex(s), "justification": s.justification}
                for s in self.steps
            ],
        }
        if self.tables:
            out["tables"] = [
                {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
                for t in self.tables
            ]
        if self.notes:
            out["notes"] = list(self.notes)
        if self.verification is not None:
            out["verification"] = self.verification.to_dict()
        return out

    def verify(
        self,
        points: int | None = None,
        seed: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> VerificationReport:
        """Check every result numerically against an independent reference.

        Parameters
        ----------
        points, seed : int, optional
            How many seeded random points (each symbol drawn from its domain).
        device : {"cpu", "gpu"}, optional
            Where JAX computes; asking for an absent GPU raises ``DeviceError``.
        dtype : {"float64", "float32"}, optional
            The precision of the comparison.
        rtol, atol : float, optional
            Tolerances; left out, they come from the spec's ``verify`` key, else from
            the kit's policy for ``dtype`` (``dlsym.verify.tolerance``).

        Returns
        -------
        VerificationReport
            ``passed``, ``max_abs_error``, ``max_rel_error``, ``reference`` and one
            ``Check`` per comparison; also kept as ``self.verification``.

        Examples
        --------
        >>> import dlsym
        >>> d = dlsym.derive({"name": "softplus", "symbols": {"x": {}},
        ...                   "objective": "softplus(x)", "wrt": "x",
        ...                   "derive": ["gradient", "hessian"]})
        >>> report = d.verify(points=8, seed=1)
        >>> report.passed, report.points
        (True, 8)
        >>> [c.reference for c in report.checks]
        ['its text in jax.numpy', 'its text in jax.numpy', 'jax.grad', 'sympy.diff on explicit entries', 'jax.hessian', 'sympy.diff on explicit entries']
        """
        drawn = drawing("verify()", points=points, seed=seed)
        points, seed = drawn["points"], drawn["seed"]
        opts = self.verify_options
        dtype = dtype or opts.dtype
        rtol, atol = tolerance(
            dtype, opts.rtol if rtol is None else rtol, opts.atol if atol is None else atol
        )
        jax_x64()  # every reference is JAX: set up (or the environment refused) first
        try:
            # NumPy's overflow and 0 * inf warnings (generated NumPy code at a point past
            # float64's range): every check finds those values itself and says so
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.verification = self._verify(
                    points=points or opts.points,
                    seed=opts.seed if seed is None else seed,
                    device=device or opts.device,
                    dtype=dtype,
                    rtol=rtol,
                    atol=atol,
                )
        except DeviceError as exc:
            if device is not None or opts.device_loc is None:
                raise  # asked for on the command line: --device says so
            raise SpecError(
                str(exc).replace(f"--device {opts.device}", f"verify.device: {opts.device}"),
                opts.device_loc,
            ) from None
        failed = [c for c in self.verification.checks if not c.passed]
        if failed and all(c.inconclusive for c in failed):
            # every failure compared nothing (values past the dtype's range on both sides
            # at every point, 1e308 ‖x‖², E[x¹⁰⁰⁰] = 999!!; a Monte Carlo estimate heavy
            # tails left without a conclusion, E[x¹⁰⁰]): nothing was found wrong, and
            # nothing could be checked; as for memory, a located error, not exit 1
            said = "; ".join(dict.fromkeys(f"{c.kind}: {c.note}" for c in failed))
            doc = self._document()
            keys = [k for k in _TARGET_KEYS if k in doc.data]
            raise SpecError(
                f"verification cannot run in {dtype}: {said}",
                doc.loc(keys[0]) if keys else doc.loc(),
            )
        return self.verification

    def _document(self):
        """The spec's YAML document, to locate an error in it (a calculus spec's, or the
        header's of every other section)."""
        owner: Any = getattr(self, "spec", None) or getattr(self, "header")
        return owner.doc

    @abc.abstractmethod
    def _verify(
        self, points: int, seed: int, device: str, dtype: str, rtol: float, atol: float
    ) -> VerificationReport: ...


# the keys that hold what a spec derives, where an error about all of it points
_TARGET_KEYS = (
    "objective",
    "output",
    "minimize",
    "maximize",
    "quantities",
    "identities",
    "recurrence",
    "mdp",
)


class SectionDerivation(DerivationBase):
    """A derived non-calculus spec. Subclasses set ``results`` ({kind: Shown}),
    ``steps`` (ShownStep), ``tables`` and ``notes``, and implement ``_verify``."""

    def __init__(self, head: Header, results: dict, steps: list, tables=(), notes=()):
        self.header = head
        self.results = results
        self.steps = tuple(steps)
        self.tables = tuple(tables)
        self._notes = tuple(notes)
        self.verification = None

    name = property(lambda self: self.header.name)
    title = property(lambda self: self.header.title)
    description = property(lambda self: self.header.description)
    notes = property(lambda self: self._notes)
    verify_options = property(lambda self: self.header.verify)

    def step_latex(self, step: ShownStep) -> str:
        return step.latex

    def step_text(self, step: ShownStep) -> str:
        return step.text

    def result_display(self, kind: str) -> dict:
        r = self.results[kind]
        return {"expr": r.expr, "latex": r.latex, **r.extra}

    # -- numbers ----------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def value_kinds(self) -> tuple: ...

    def function(self, kind: str, backend: str = "numpy") -> Callable:
        """A numeric function of the result ``kind``: see the section's ``_function``.
        A kind that is not among ``value_kinds`` is a KeyError naming those there are; a
        value kind whose value was not found (a closed form that does not exist) is a
        ValueError saying why."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: use 'numpy' or 'jax'")
        missing = self.unavailable(kind)
        if missing is not None:
            raise ValueError(f"no function for {kind!r}: {missing}")
        if kind not in self.value_kinds:
            raise KeyError(self.no_function(kind))
        return self._function(kind, backend)

    def unavailable(self, kind: str) -> str | None:
        """Why a derived value kind has no function (no closed form found), or None."""
        return None

    @abc.abstractmethod
    def _function(self, kind: str, backend: str) -> Callable:
        """The function of a kind among ``value_kinds``, for a known backend."""


RANGE_DRAWS = 64  # seeded draws of the symbols at which a written probability is checked


def probability_range_error(p, decls, what: str, sizes=None) -> str | None:
    """Why the probability ``p``, written in scalar symbols, can leave [0, 1] over the
    symbols' domains (checked at seeded draws from them, what verification samples), or
    None. ``bernoulli: a`` with a real a, or r - 1/2 with r in (0, 1), are caught here
    rather than as NaN in the verification."""
    return range_error(
        p,
        decls,
        what,
        lambda v: -1e-12 <= v <= 1 + 1e-12,
        "outside [0, 1]",
        "write it so that it stays a probability, or choose domains for the symbols that "
        "keep it in [0, 1] (unit_interval is (0, 1))",
        sizes,
        edges=True,
    )


def range_error(
    e, decls, what: str, inside, outside: str, fix: str, sizes=None, edges: bool = False
) -> str | None:
    """Why ``e``, written in scalar symbols and dims, can leave the range ``inside``
    accepts over the symbols' domains (checked at seeded draws from them), or None.
    ``sizes``: the dims' values, those verification uses (LeCun's variance gain**2 / n
    is checked at the spec's n). ``edges``: at each symbol's domain EXTREMES too (the
    others as first drawn), where 1.001 a of an a in (0, 1) leaves [0, 1] and no draw
    in the samplers' [0.05, 0.95] shows it."""
    e = sp.sympify(e)
    dims = [f"{k} = {v}" for k, v in (sizes or {}).items() if k in e.free_symbols]
    e = e.xreplace(sizes or {})
    used = [d for d in decls if not d.shape and d.symbol in e.free_symbols]
    if not used:  # a number (the −1 of cov: -S) is checked as it is
        if not e.is_number:
            return None
        v = complex(e.evalf())
        if abs(v.imag) <= 1e-12 and inside(v.real):
            return None
        sized = f" at {', '.join(dims)}" if dims else ""
        return f"{what} is {v.real:.3g}{sized}, {outside}"  # no symbol to give a domain
    rng = generator(0)
    points = [{d.symbol: float(draw(rng, d.domain)) for d in used} for _ in range(RANGE_DRAWS)]
    if edges:
        points += at_extremes(points[0], used)
    for point in points:
        at = {k: sp.Float(v) for k, v in point.items()}
        v = complex(e.xreplace(at).evalf())
        if abs(v.imag) > 1e-12 or not inside(v.real):
            where = ", ".join([f"{d.name} = {_shown(float(at[d.symbol]))}" for d in used] + dims)
            doms = ", ".join(f"{d.name}: {d.domain}" for d in used)
            return (
                f"{what} is {_shown(v.real)} at {where}, {outside}, for values its symbols "
                f"can take ({doms}); {fix}"
            )
    return None


def _shown(x: float) -> str:
    """x to three digits, or to ten where three round it onto a bound (1.000999 at
    a = 0.999999999 read "1 at a = 1")."""
    short = f"{x:.3g}"
    return f"{x:.10g}" if float(short) != x and float(short) in (0.0, 1.0) else short


# what each family's scalar parameters must satisfy, checked at drawn values of the
# symbols in them: (the parameter's value as a function of all, test, what fails, fix)
LAW_RANGES = {
    "normal": (
        lambda m, v: v,
        lambda x: x > 0,
        "not positive",
        "a variance must be positive: give its symbols a positive domain",
    ),
    "uniform": (
        lambda a, b: b - a,
        lambda x: x > 0,
        "not positive",
        "uniform(low, high) needs low < high for every value of its symbols",
    ),
}


def check_laws(doc, laws, decls, sizes, names=None) -> None:
    """A located error for a distribution whose parameters leave their range at values
    the symbols can take (a variance s with s real, bernoulli(q) with q real), at the
    dims' ``sizes``.
    ``names``: the spec's name of a random symbol the engine renamed (a recurrence's
    read g_t is the spec's g)."""
    for sym, law in laws.items():
        r = (names or {}).get(sym, str(sym))
        loc = doc.loc("symbols", r, "distribution")
        if law.family == "bernoulli":
            why = probability_range_error(law.params[0], decls, f"the p of '{r}'", sizes)
        elif law.family == "categorical":
            # the probabilities of the labels: a symbol on the simplex, which verification
            # draws there, so every draw is a distribution
            p = law.params[0]
            on_simplex = [
                d for d in decls if d.symbol == p and d.domain == "simplex" and len(d.shape) == 1
            ]
            why = (
                None
                if on_simplex
                else f"the probabilities of '{r}' must be a symbol with domain: simplex "
                f"(a vector of them that sums to 1), got {p}"
            )
        elif law.family == "mvnormal":
            why = _covariance_error(law.params[1], decls, r, sizes)
        elif law.family in LAW_RANGES:
            value, inside, outside, fix = LAW_RANGES[law.family]
            what = "the var" if law.family == "normal" else "high - low"
            why = range_error(
                value(*law.params), decls, f"{what} of '{r}'", inside, outside, fix, sizes
            )
        else:
            why = None
        if why:
            raise SpecError(why, loc)


def _covariance_error(cov, decls, name: str, sizes) -> str | None:
    """Why ``cov`` may not be a covariance (symmetric positive semidefinite for every
    value of its symbols), or None: an spd symbol, eye(n), or either times a positive
    scalar. Anything else could be indefinite (a real S drawn as any matrix: Cholesky
    then failed, exit 3)."""
    spd = {d.symbol for d in decls if d.domain == "spd"}
    c, rest = sp.Integer(1), cov
    if isinstance(cov, sp.Mul):
        scalars = [f for f in cov.args if not isinstance(f, ops.TensorOp) and f not in spd]
        c, rest = sp.Mul(*scalars), sp.Mul(*[f for f in cov.args if f not in scalars])
    if rest in spd or isinstance(rest, ops.eye):
        return range_error(
            c,
            decls,
            f"the scale of the cov of '{name}'",
            lambda x: x > 0,
            "not positive",
            "a covariance must be positive definite: give its symbols a positive domain",
            sizes,
        )
    return (
        f"the cov of '{name}' must be a covariance matrix for every value of its symbols: "
        f"a symbol with domain: spd, eye(n), or either times a positive scalar; got {cov}"
    )


def law_parameters(laws, arguments, dims) -> dict:
    """{random symbol: f(*values of ``arguments``, *sizes of ``dims``) -> its law's
    parameters as float arrays}, each compiled once: a verification evaluates them at
    every point."""
    out = {}
    for r, law in laws.items():
        fn = codegen.lambdify(list(arguments) + list(dims), list(law.params), "numpy")
        out[r] = lambda *xs, fn=fn: tuple(np.asarray(v, dtype=float) for v in fn(*xs))
    return out
