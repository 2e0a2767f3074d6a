"""Constrained optimization: the Lagrangian, the KKT conditions, the dual and closed-form
solutions, derived step by step and verified against an independent solver.

Pipeline: ``_kkt_problem`` validates the spec into a ``Problem`` in standard form; the
stationarity condition is the gradient of L(x, lambda, nu) with respect to x, derived by
the calculus engine (``dlsym.calculus._derive``) in matrix form; ``_kkt_solve`` finds the dual
and closed-form solutions where it can; ``_kkt_verify`` checks everything with SciPy
(the optimum, from several starts) and JAX (gradients, KKT residuals).
"""

from __future__ import annotations

from dlsym._budget import step
from dlsym.calculus._run import run
from dlsym.sections._base import SectionDerivation, Shown
from dlsym.sections.calculus._derivation import Derivation
from dlsym.sections.constrained._dual import derive_dual
from dlsym.sections.constrained._function import dual_function, solution_function
from dlsym.sections.constrained._problem import (
    SECTION_KEYS,
    Problem,
    multiplier_family,
    parse_problem,
    show_pair,
)
from dlsym.sections.constrained._show import Name, Rel, Rows, Seq
from dlsym.sections.constrained._solution import kinked_variables
from dlsym.sections.constrained._solve import derive_solution
from dlsym.sections.constrained._verify import verify
from dlsym.spec._common import header
from dlsym.spec._yamlfile import Document

KINDS = ("lagrangian", "kkt", "dual", "solution")
DEFAULT_KINDS = ("lagrangian", "kkt")


class ConstrainedDerivation(SectionDerivation):
    """``problem`` (the spec in standard form), ``lagrangian_derivation`` (the calculus
    derivation of L's gradient), ``dual`` and ``solution`` (None unless derived).

    Value kinds (``function``): "solution" (the optimal wrt variables as functions of the
    parameters, a dict when there are several), "multipliers" (a dict of the optimal
    multipliers, beside a solution of a problem with constraints) and "dual" (g(lambda,
    nu)); see ``_function``. A solution or dual with no closed form has no function.
    """

    section = "constrained"
    NOT_VALUES = {
        "lagrangian": "the Lagrangian L(x, lambda, nu), an expression (its gradient in x is "
        "d.lagrangian_derivation.function('gradient'))",
        "kkt": "the KKT conditions, a system of equations and inequalities",
    }

    def __init__(
        self,
        head,
        results,
        steps,
        notes,
        problem: Problem,
        lagrangian_derivation,
        dual=None,
        solution=None,
    ):
        super().__init__(head, results, steps, notes=notes)
        self.problem = problem
        self.lagrangian_derivation = lagrangian_derivation  # calculus Derivation of L
        self.dual = dual
        self.solution = solution

    # -- numbers ----------------------------------------------------------------------

    def _derived(self) -> dict:
        """value kind -> (the Solution or Dual it comes from, or None when not derived)"""
        sol = self.solution
        return {
            "dual": self.dual,
            "solution": sol,
            # no constraints, no multipliers
            "multipliers": sol if self.problem.constraints else None,
        }

    @property
    def value_kinds(self) -> tuple:
        return tuple(k for k, r in self._derived().items() if r is not None and r.found)

    def unavailable(self, kind: str) -> str | None:
        r = self._derived().get(kind)
        if r is None or r.found:
            return None
        return "; ".join(r.notes) or "no closed form was found"

    def _function(self, kind: str, backend: str):
        """ "solution": the optimum's variables, "multipliers": its multipliers (see
        ``solution_function``); "dual": the dual function (``dual_function``)."""
        if kind == "dual":
            return dual_function(self.dual, backend)
        return solution_function(self.solution, kind, backend)

    def _verify(self, points, seed, device, dtype, rtol, atol):
        return verify(self, points, seed, device, dtype, rtol, atol)


def build(doc: Document) -> ConstrainedDerivation:
    head = header(doc, SECTION_KEYS, KINDS, DEFAULT_KINDS)
    problem = parse_problem(doc)
    with step("gradient of the Lagrangian"):
        results_by_kind, engine_steps = run(problem.spec)
    grads = results_by_kind["gradient"]
    d = Derivation(problem.spec, results_by_kind, engine_steps)
    show = Rows(d, problem)
    steps = problem_steps(show, problem)
    steps += kkt_steps(show, problem, grads, engine_steps)
    results, notes = {}, []
    if "lagrangian" in head.derive:
        results["lagrangian"] = lagrangian_result(show, problem)
    if "kkt" in head.derive:
        results["kkt"] = kkt_result(show, problem, grads)
    dual = solution = None
    if "dual" in head.derive or "solution" in head.derive:
        if "dual" in head.derive:
            with step("dual function"):
                dual = derive_dual(problem, grads, show)
            steps += dual.steps
            results["dual"] = dual.shown
            notes += dual.notes
        if "solution" in head.derive:
            with step("closed-form solution"):
                solution = derive_solution(problem, grads, show)
            steps += solution.steps
            results["solution"] = solution.shown
            notes += solution.notes
    kinked = kinked_variables(problem, grads)
    if kinked:
        notes.append(
            f"the Lagrangian has kinks in {', '.join(kinked)}: at a kink the optimum "
            "satisfies stationarity with a subgradient, so verification does not check the "
            "KKT residuals at the solver's optimum (it checks the rest)"
        )
    return ConstrainedDerivation(head, results, steps, notes, problem, d, dual, solution)


# --- steps -------------------------------------------------------------------------------


def constraint_row(show: Rows, c) -> tuple:
    """``g_i = func <= 0`` (or ``h_j = func = 0``) as a row."""
    rel = show.relation("<=" if c.kind == "ineq" else "==", c.shape)
    return (show.func_name(c), "=", Seq((c.func, Rel(rel), "0")))


def lagrangian_rows(show: Rows, p: Problem) -> list:
    terms = [Name("f_{0}", "f₀")]
    for c in p.constraints:
        name, m = show.func_name(c), c.multiplier
        mt = show.text_name(m)
        if len(c.shape) == 2:
            terms.append(
                Name(
                    rf"\operatorname{{sum}}\left({m.latex} \odot {name.latex}\right)",
                    f"sum({mt} ⊙ {name.text})",
                )
            )
        elif len(c.shape) == 1:
            terms.append(Name(rf"{m.latex}^{{\top}} {name.latex}", f"{mt}ᵀ {name.text}"))
        else:
            terms.append(Name(f"{m.latex} {name.latex}", f"{mt} {name.text}"))
    generic = Name(" + ".join(t.latex for t in terms), " + ".join(t.text for t in terms))
    return [(show.lagrangian_lhs(), "=", generic), (None, "=", lagrangian_display(p))]


def lagrangian_display(p: Problem):
    alg = p.spec.algebra  # knows the multipliers' shapes
    return p.f + sum((show_pair(alg, c.multiplier.symbol, c.func) for c in p.constraints), 0)


def problem_steps(show: Rows, p: Problem) -> list:
    rows = [(show.sense_name(p.sense), "quad", p.objective)]
    for i, c in enumerate(p.constraints):
        head = Name(r"\text{subject to}", "subject to") if i == 0 else None
        rows.append((head, "quad", Seq((c.lhs, Rel(show.relation(c.sense, c.shape)), c.rhs))))
    steps = [show.step("Problem", rows, "as written; vector constraints hold elementwise")]
    if p.sense == "maximize":
        steps.append(
            show.step(
                "Maximization as minimization",
                [
                    (Name(r"\max f", "max f"), "=", Name(r"-\min \left(-f\right)", "-min(-f)")),
                    (Name("f_{0}", "f₀"), "=", p.f),
                ],
                "maximizing $f$ is minimizing $f_{0} = -f$: the same maximizer, and "
                r"$\max f = -\min f_{0}$; the KKT conditions below are those of $f_{0}$",
            )
        )
    if not p.constraints:
        steps.append(
            show.step(
                "Standard form",
                [(Name("f_{0}", "f₀"), "=", p.f)],
                "no constraints: the KKT conditions reduce to stationarity",
            )
        )
        return steps
    rows = [(Name("f_{0}", "f₀"), "=", p.f)] + [constraint_row(show, c) for c in p.constraints]
    steps.append(
        show.step(
            "Standard form",
            rows,
            r"each constraint moved to one side: $g(x) \le 0$ for inequalities (a $\ge$ "
            r"constraint is negated), $h(x) = 0$ for equalities; a vector constraint holds "
            "elementwise and gets a multiplier vector of its shape",
        )
    )
    kinds = (
        [rf"${multiplier_family(p.inequalities[0])} \succeq 0$ for the inequalities"]
        if p.inequalities
        else []
    ) + (
        [rf"${multiplier_family(p.equalities[0])}$ free for the equalities"] if p.equalities else []
    )
    steps.append(
        show.step(
            "Lagrangian",
            lagrangian_rows(show, p),
            "one multiplier per constraint entry: " + ", ".join(kinds),
        )
    )
    return steps


def stationarity_rows(show: Rows, p: Problem, grads: dict) -> list:
    rows = []
    for v in p.variables:
        r = grads[v]
        chain = [r.compact] if r.compact == r.expr else [r.compact, r.expr]
        rows += [(show.grad_lhs(v) if i == 0 else None, "=", e) for i, e in enumerate(chain)]
        rows.append((None, "=", "0"))
    return rows


def kkt_steps(show: Rows, p: Problem, grads: dict, engine_steps) -> list:
    # each variable's gradient step lists its rules; name every rule once
    rules = "; ".join(
        dict.fromkeys(
            part
            for s in engine_steps
            if s.title.startswith("Gradient")
            for part in s.justification.split("; ")
        )
    )
    steps = [
        show.step(
            "KKT: stationarity",
            stationarity_rows(show, p, grads),
            r"the gradient of $\mathcal{L}$ with respect to each variable vanishes at the "
            f"optimum; derived in matrix form by dlsym's reverse-mode rules ({rules})",
        )
    ]
    if p.constraints:
        steps.append(
            show.step(
                "KKT: primal feasibility",
                [primal_row(show, c) for c in p.constraints],
                "the optimum satisfies every constraint",
            )
        )
    if p.inequalities:
        steps.append(
            show.step(
                "KKT: dual feasibility",
                [dual_row(show, c) for c in p.inequalities],
                "multipliers of inequalities are nonnegative: an inequality can only push the "
                "optimum back into the feasible set, never pull it out",
            )
        )
        steps.append(
            show.step(
                "KKT: complementary slackness",
                [slack_row(show, c) for c in p.inequalities],
                r"each inequality is either active ($g_i = 0$) or its multiplier vanishes "
                rf"(${multiplier_family(p.inequalities[0])}_i = 0$), entry by entry ($\odot$ "
                "is the elementwise product)",
            )
        )
    return steps


def primal_row(show, c):
    return (c.func, show.relation("<=" if c.kind == "ineq" else "==", c.shape), "0")


def dual_row(show, c):
    return (c.multiplier.symbol, show.relation(">=", c.shape), "0")


def slack_row(show, c):
    return (c.multiplier.symbol * c.func, "=", "0")


def one_line(show: Rows, row) -> str:
    return show.rows_latex([row]).replace("&", "")


# --- results -----------------------------------------------------------------------------


def lagrangian_result(show: Rows, p: Problem) -> Shown:
    full = lagrangian_display(p)
    standard = [
        {
            "constraint": c.number,
            "kind": c.kind,
            "as_written": c.text,
            "expr": show.expr(c.func),
            "multiplier": c.multiplier.name,
            "latex": one_line(show, primal_row(show, c)),
        }
        for c in p.constraints
    ]
    multipliers = {
        c.multiplier.name: {
            "constraint": c.number,
            "kind": c.kind,
            "shape": [str(s) for s in c.shape],
            "latex": c.multiplier.latex,
        }
        for c in p.constraints
    }
    return Shown(
        show.expr(full),
        f"{show.lagrangian_lhs().latex} = {show.latex(full)}",
        p.lagrangian,
        {"sense": p.sense, "standard_form": standard, "multipliers": multipliers},
    )


def kkt_result(show: Rows, p: Problem, grads: dict) -> Shown:
    stationarity = {
        v: {
            "expr": show.expr(grads[v].expr),
            "latex": f"{show.grad_lhs(v).latex} = {show.latex(grads[v].expr)} = 0",
        }
        for v in p.variables
    }
    primal = [one_line(show, primal_row(show, c)) for c in p.constraints]
    dual = [one_line(show, dual_row(show, c)) for c in p.inequalities]
    slack = [one_line(show, slack_row(show, c)) for c in p.inequalities]
    parts = [f"grad_{v} L = {s['expr']} = 0" for v, s in stationarity.items()]
    parts += [f"{show.expr(c.func)} {'<=' if c.kind == 'ineq' else '=='} 0" for c in p.constraints]
    for c in p.inequalities:
        parts += [f"{c.multiplier.name} >= 0", f"{show.expr(c.multiplier.symbol * c.func)} == 0"]
    latex = [s["latex"] for s in stationarity.values()] + primal + dual + slack
    return Shown(
        "; ".join(parts),
        r",\quad ".join(latex),
        None,
        {
            "stationarity": stationarity,
            "primal_feasibility": primal,
            "dual_feasibility": dual,
            "complementary_slackness": slack,
        },
    )
