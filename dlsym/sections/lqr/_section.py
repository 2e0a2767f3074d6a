"""LQR: the discrete-time algebraic Riccati equation derived from the Bellman equation.

Guess a quadratic value V(x) = x^T P x, write the Bellman equation, minimize over the
action with the calculus engine's matrix-form gradient and Hessian, substitute the
minimizer back, and simplify to the Riccati equation and the optimal gain. Every step is
an identity between matrices; ``_lqr_check`` evaluates each at random stabilizable
systems against scipy.linalg.solve_discrete_are and JAX autodiff.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.printing._printers import unicode_name
from dlsym.sections._base import SectionDerivation, Shown, ShownStep, ValueTable
from dlsym.sections.calculus._derivation import derive_calculus
from dlsym.sections.lqr._check import check_lqr, solve_instance, unstabilizable
from dlsym.sections.lqr._function import GAIN_FORMULA, RICCATI_FORMULA, lqr_function, renamed
from dlsym.spec._common import Header, header
from dlsym.spec._symbols import _dims, _symbols, braced
from dlsym.spec._yamlfile import Document
from dlsym.verify import report

ROLES = ("A", "B", "Q", "R")
LQR_KEYS = ROLES + ("values",)
KINDS = ("riccati", "gain")
# names of the engine's own symbols in the Bellman step; the spec's names must differ
STATE, ACTION, VALUE, GAIN = "x", "u", "P", "K"


@dataclass(frozen=True)
class LQR:
    names: dict  # role -> the spec's symbol name
    latex: dict  # role -> LaTeX of that symbol
    n: str  # state dimension name
    k: str  # action dimension name
    dims: dict  # name -> int, for verification
    domains: dict  # role -> domain
    values: dict | None  # role -> numpy array: a concrete system to solve


def _matrix(doc, path, rows, cols, role) -> np.ndarray:
    raw = doc.data
    for key in path:
        raw = raw[key]
    ok = isinstance(raw, list) and raw and all(isinstance(r, list) for r in raw)
    if ok:
        ok = (
            all(len(r) == cols for r in raw)
            and len(raw) == rows
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in raw for v in r)
        )
    if not ok:
        raise SpecError(
            f"lqr.values.{role} must be a {rows} x {cols} list of rows of numbers", doc.loc(*path)
        )
    try:
        out = np.array(raw, dtype=float)
    except OverflowError:  # an integer past float64 (10**400): read as inf, refused below
        out = np.full((rows, cols), np.inf)
    if not np.all(np.isfinite(out)):
        raise SpecError(
            f"lqr.values.{role} has an entry that is not a finite number (.nan or .inf, "
            "or past float64's range)",
            doc.loc(*path),
        )
    return out


def build_lqr(doc: Document) -> tuple[Header, LQR]:
    if not isinstance(doc.data, dict):
        raise SpecError("a spec must be a YAML mapping of keys", doc.loc())
    head = header(doc, ("lqr",), KINDS, KINDS)
    raw = doc.data["lqr"]
    if not isinstance(raw, dict):
        raise SpecError("lqr must map A, B, Q, R to declared matrix symbols", doc.loc("lqr"))
    for key in raw:
        if key not in LQR_KEYS:
            raise SpecError(
                f"unknown key '{key}' in lqr{did_you_mean(str(key), LQR_KEYS)}; "
                f"allowed: {', '.join(LQR_KEYS)}",
                doc.key_loc("lqr", key),
            )
    dims, dim_symbols = _dims(doc)
    decls = {d.name: d for d in _symbols(doc, dim_symbols)}
    names, latex, domains = {}, {}, {}
    for role in ROLES:
        name = raw.get(role, role if role in decls else None)
        if name is None:
            raise SpecError(
                f"lqr.{role} is missing (the name of a declared matrix)", doc.key_loc("lqr")
            )
        if not isinstance(name, str) or name not in decls:
            raise SpecError(
                f"lqr.{role}: '{name}' is not a declared symbol{did_you_mean(str(name), decls)}",
                doc.loc("lqr", role),
            )
        taken = {STATE: "state", ACTION: "action", VALUE: "value matrix", GAIN: "gain"}
        if name in taken:
            raise SpecError(
                f"'{name}' is the name the derivation gives to the {taken[name]}; "
                "rename the symbol",
                doc.key_loc("symbols", name),
            )
        d = decls[name]
        if len(d.shape) != 2:
            raise SpecError(
                f"lqr.{role}: '{name}' must be a matrix (shape [rows, cols])",
                doc.loc("symbols", name),
            )
        names[role], latex[role], domains[role] = name, d.latex, d.domain
    shape = {role: decls[names[role]].shape for role in ROLES}
    n, k = shape["B"]
    want = {"A": (n, n), "B": (n, k), "Q": (n, n), "R": (k, k)}
    for role in ROLES:
        if shape[role] != want[role]:
            raise SpecError(
                f"lqr.{role} '{names[role]}' has shape "
                f"{[str(s) for s in shape[role]]}; with B of shape "
                f"{[str(n), str(k)]} it must be {[str(s) for s in want[role]]}",
                doc.loc("symbols", names[role], "shape"),
            )
    for role in ("Q", "R"):
        if domains[role] != "spd":
            raise SpecError(
                f"lqr.{role} '{names[role]}' must have domain spd (a positive definite cost)",
                doc.loc("symbols", names[role]),
            )
    if not all(isinstance(s, sp.Symbol) for s in (n, k)):
        raise SpecError(
            "the sizes of B must be dimension names from dims (symbolic sizes)",
            doc.loc("symbols", names["B"], "shape"),
        )
    values = None
    if "values" in raw:
        given = raw["values"]
        if not isinstance(given, dict) or set(given) != set(ROLES):
            raise SpecError(
                "lqr.values must give all of A, B, Q, R as lists of rows", doc.loc("lqr", "values")
            )
        sizes = {
            "A": (dims[str(n)],) * 2,
            "B": (dims[str(n)], dims[str(k)]),
            "Q": (dims[str(n)],) * 2,
            "R": (dims[str(k)],) * 2,
        }
        values = {role: _matrix(doc, ("lqr", "values", role), *sizes[role], role) for role in ROLES}
        # Q positive semidefinite (a cost on the position alone, diag(1, 0), as the
        # textbook's double integrator has it: the PBH test says where Q does not see
        # an unstable mode), R positive definite (the gain inverts R + BᵀPB)
        for role, semi in (("Q", True), ("R", False)):
            m = values[role]
            eig = np.linalg.eigvalsh((m + m.T) / 2)
            least = eig.min() >= -1e-12 * np.abs(eig).max() if semi else eig.min() > 0
            if not np.allclose(m, m.T) or not least:
                raise SpecError(
                    f"lqr.values.{role} must be symmetric positive "
                    + ("semidefinite" if semi else "definite"),
                    doc.loc("lqr", "values", role),
                )
    return head, LQR(names, latex, str(n), str(k), dims, domains, values)


# --- the derivation ------------------------------------------------------------------------


def _engine_spec(lqr: LQR) -> dict:
    """The Bellman right-hand side as a calculus spec, for the calculus engine."""
    N, K = lqr.names, lqr
    return {
        "name": "lqr_bellman_minimization",
        "symbols": {
            N["A"]: {"shape": [K.n, K.n], "latex": K.latex["A"]},
            N["B"]: {"shape": [K.n, K.k], "latex": K.latex["B"]},
            N["Q"]: {"shape": [K.n, K.n], "domain": "spd", "latex": K.latex["Q"]},
            N["R"]: {"shape": [K.k, K.k], "domain": "spd", "latex": K.latex["R"]},
            VALUE: {"shape": [K.n, K.n], "domain": "spd", "latex": r"\mathbf{P}"},
            STATE: {"shape": [K.n], "latex": r"\mathbf{x}"},
            ACTION: {"shape": [K.k], "latex": r"\mathbf{u}"},
        },
        "dims": dict(lqr.dims),
        "define": {"x_next": f"{N['A']} @ {STATE} + {N['B']} @ {ACTION}"},
        "objective": f"{STATE} @ {N['Q']} @ {STATE} + {ACTION} @ {N['R']} @ {ACTION} "
        f"+ x_next @ {VALUE} @ x_next",
        "wrt": ACTION,
        "derive": ["gradient", "hessian"],
    }


class LQRDerivation(SectionDerivation):
    """Value kinds (``function``): "riccati" (P, the stabilizing solution of the DARE)
    and "gain" (K, u = -K x), functions of A, B, Q, R (``lqr_function``)."""

    section = "lqr"

    def __init__(self, head, lqr, bellman, results, steps, tables, notes):
        super().__init__(head, results, steps, tables, notes)
        self.lqr = lqr
        self.bellman = bellman  # the engine's calculus Derivation of the minimization

    @property
    def value_kinds(self) -> tuple:
        return tuple(k for k in KINDS if k in self.results)

    def _function(self, kind: str, backend: str):
        return lqr_function(self.bellman, self.lqr.names, kind, backend)

    def _verify(self, points, seed, device, dtype, rtol, atol):
        checks, dev, systems = check_lqr(self, points, seed, device, dtype, rtol, atol)
        return report(checks, systems, dtype, dev, rtol, atol)


def derive_lqr(head: Header, lqr: LQR) -> LQRDerivation:
    bellman = derive_calculus(Document(_engine_spec(lqr), "<lqr>", {}))
    # a name with a superscript or prime of its own braced for ^{\top} (A^{(1)}, A')
    A, B, Q, R = (
        braced(lqr.latex[r]) if "^" in lqr.latex[r] or "'" in lqr.latex[r] else lqr.latex[r]
        for r in ROLES
    )
    P, x, u = r"\mathbf{P}", r"\mathbf{x}", r"\mathbf{u}"
    K = r"\mathbf{K}"
    grad = bellman.result_display("gradient")["latex"].split(" = ", 1)[1]
    hess = bellman.result_display("hessian")["latex"].split(" = ", 1)[1]
    t = r"^{\top}"
    steps = [
        ShownStep(
            "Problem and value guess",
            rf"{x}_{{t+1}} &= {A} {x}_t + {B} {u}_t, \quad c({x}, {u}) = {x}{t} {Q} {x} "
            rf"+ {u}{t} {R} {u} \\"
            f"\nV({x}) &= {x}{t} {P} {x}, \\quad {P} = {P}{t}",
            "x' = A x + B u,  c(x, u) = xᵀ Q x + uᵀ R u\nV(x) = xᵀ P x,  P = Pᵀ",
            "Linear dynamics and a quadratic cost summed over an infinite horizon; the "
            "value of a quadratic cost under linear dynamics is a quadratic form, so "
            "guess $V(x) = x^\\top P x$ with $P$ symmetric.",
        ),
        ShownStep(
            "Bellman equation",
            rf"{x}{t} {P} {x} &= \min_{{{u}}} \left[{x}{t} {Q} {x} + {u}{t} {R} {u} + "
            rf"\left({A} {x} + {B} {u}\right){t} {P} \left({A} {x} + {B} {u}\right)\right]",
            "xᵀ P x = min_u [xᵀ Q x + uᵀ R u + (A x + B u)ᵀ P (A x + B u)]",
            "$V(x) = \\min_u [c(x, u) + V(x')]$: pay the stage cost, then act optimally "
            "from the next state.",
        ),
        ShownStep(
            "Minimize over the action",
            rf"\nabla_{{{u}}} &= {grad} \\" + "\n" + rf"\nabla^{{2}}_{{{u}}} &= {hess}",
            f"∇_u = {bellman.text_of(bellman.results['gradient'][ACTION].expr)}\n"
            f"∇²_u = {bellman.text_of(bellman.results['hessian'][ACTION].expr)}",
            "Matrix-form gradient and Hessian of the bracket with respect to $u$, by "
            "reverse-mode rules through $x' = A x + B u$ (and $P, Q, R$ symmetric). The "
            "Hessian is positive definite ($R \\succ 0$, $P \\succeq 0$), so the "
            "stationary point is the minimum.",
        ),
        ShownStep(
            "Optimal action",
            rf"\left({R} + {B}{t} {P} {B}\right) {u}^* &= -{B}{t} {P} {A} {x} \\"
            f"\n{u}^* &= -{K} {x}, \\quad {K} = \\left({R} + {B}{t} {P} {B}\\right)^{{-1}} "
            rf"{B}{t} {P} {A}",
            "(R + Bᵀ P B) u* = -Bᵀ P A x\nu* = -K x,  K = (R + Bᵀ P B)⁻¹ Bᵀ P A",
            "Set the gradient to zero and solve the linear system; the optimal policy "
            "is linear in the state.",
        ),
        ShownStep(
            "Substitute the minimizer",
            rf"{x}{t} {P} {x} &= {x}{t} \left[{Q} + {K}{t} {R} {K} + \left({A} - {B} {K}"
            rf"\right){t} {P} \left({A} - {B} {K}\right)\right] {x} \\"
            f"\n{P} &= {Q} + {K}{t} {R} {K} + \\left({A} - {B} {K}\\right){t} {P} "
            rf"\left({A} - {B} {K}\right)",
            "xᵀ P x = xᵀ [Q + Kᵀ R K + (A - B K)ᵀ P (A - B K)] x\n"
            "P = Q + Kᵀ R K + (A - B K)ᵀ P (A - B K)",
            "With $u = -K x$ the bracket is a quadratic form in $x$; equal for every "
            "$x$ and both sides symmetric, the matrices are equal.",
        ),
        ShownStep(
            "Simplify",
            rf"{K}{t} {R} {K} + {K}{t} {B}{t} {P} {B} {K} &= {K}{t} \left({R} + {B}{t} "
            rf"{P} {B}\right) {K} = {K}{t} {B}{t} {P} {A} \\"
            f"\n{P} &= {Q} + {A}{t} {P} {A} - {A}{t} {P} {B} {K}",
            "Kᵀ R K + Kᵀ Bᵀ P B K = Kᵀ (R + Bᵀ P B) K = Kᵀ Bᵀ P A\nP = Q + Aᵀ P A - Aᵀ P B K",
            "Expand $(A - B K)^\\top P (A - B K)$; the two terms quadratic in $K$ "
            "combine into $K^\\top (R + B^\\top P B) K$, and $(R + B^\\top P B) K = "
            "B^\\top P A$ by the definition of $K$, so they cancel one of the cross "
            "terms.",
        ),
        ShownStep(
            "Discrete-time algebraic Riccati equation",
            rf"{P} &= {Q} + {A}{t} {P} {A} - {A}{t} {P} {B} \left({R} + {B}{t} {P} {B}"
            rf"\right)^{{-1}} {B}{t} {P} {A}",
            "P = Q + Aᵀ P A - Aᵀ P B (R + Bᵀ P B)⁻¹ Bᵀ P A",
            "Substitute $K$: the DARE. Its stabilizing solution $P \\succeq 0$ gives "
            "the optimal cost $x^\\top P x$ and the gain $K$.",
        ),
    ]
    text_names = {role: unicode_name(lqr.latex[role]) for role in ROLES}
    if any(text_names[r] != r for r in ROLES):  # the spec's own names in the text too
        steps = [
            replace(
                st,
                text=renamed(st.text, text_names),
                justification=renamed(st.justification, text_names),
            )
            for st in steps
        ]
    results = {}
    if "riccati" in head.derive:
        results["riccati"] = Shown(
            "P = " + renamed(RICCATI_FORMULA, lqr.names),
            steps[-1].latex.replace("&=", "="),
        )
    if "gain" in head.derive:
        results["gain"] = Shown(
            "K = " + renamed(GAIN_FORMULA, lqr.names),
            rf"{K} = \left({R} + {B}{t} {P} {B}\right)^{{-1}} {B}{t} {P} {A}",
            extra={"policy": "u = -K x"},
        )
    tables = []
    if lqr.values is not None:
        try:
            with warnings.catch_warnings():  # SciPy's on the way to failing: said below
                warnings.simplefilter("ignore")
                P_num, K_num, rho = solve_instance(lqr.values)
        except (np.linalg.LinAlgError, ValueError) as e:
            # SciPy's DARE fails when (A, B) cannot be stabilized (or (A, Q) has an
            # unobservable mode on the unit circle): the Riccati equation has no stabilizing
            # solution, which is a property of the user's system, not a crash. It also
            # fails on a stabilizable system whose entries span many orders (A = diag(1e10,
            # 1)), which was then called not stabilizable: the PBH test tells them apart
            raise SpecError(
                f"scipy.linalg.solve_discrete_are found no solution for the given values "
                f"({e}): {_why_no_solution(lqr.values)}",
                head.doc.loc("lqr", "values"),
            ) from None
        if not rho < 1:
            # a P that does not stabilize: no answer either (100 states and 2 inputs, a
            # closed loop at 2.5, which verification then found "wrong", exit 1)
            raise SpecError(
                "scipy.linalg.solve_discrete_are's P for the given values leaves the closed "
                f"loop unstable (spectral radius {rho:.4g}): {_why_no_solution(lqr.values)}",
                head.doc.loc("lqr", "values"),
            )
        fmt = np.array2string
        for key, value in (("riccati", P_num), ("gain", K_num)):
            if key in results:
                results[key] = replace(
                    results[key], extra={**results[key].extra, "instance": value.tolist()}
                )
        tables.append(
            ValueTable(
                "The given system (lqr.values), solved numerically",
                ("quantity", "value"),
                (
                    ("P", fmt(P_num, precision=6)),
                    ("K", fmt(K_num, precision=6)),
                    ("spectral radius of A - B K", f"{rho:.6g}"),
                ),
            )
        )
    return LQRDerivation(head, lqr, bellman, results, steps, tables, ())


def build(doc: Document):
    """Validate and derive an LQR spec (the section's entry point, ``dlsym._api``)."""
    return derive_lqr(*build_lqr(doc))


def _why_no_solution(values) -> str:
    """Why SciPy found no stabilizing P: the mode no input reaches (PBH test), or, for a
    stabilizable system, numerics."""
    why = unstabilizable(values)
    if why:
        return f"{why}, so the Riccati equation has no stabilizing solution"
    return (
        "the system is stabilizable and detectable (PBH test), so the solver failed "
        "numerically: its entries span too many orders of magnitude, or its inputs reach "
        "some modes only faintly (rescale the state or the input)"
    )
