"""Constrained optimization: Lagrangian, KKT, dual and closed-form solutions, each checked
against SciPy's SLSQP optimum and JAX autodiff, and located errors for bad specs."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from conftest import CATALOG, section_specs

import dlsym
from dlsym._cli import main
from dlsym._errors import SpecError

SPECS = section_specs("constrained")


def catalog(name):
    return dlsym.derive(CATALOG / f"{name}.yaml")


# --- the catalog verifies ------------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_catalog_spec_verifies(path):
    d = dlsym.derive(path)
    report = d.verify(points=6)
    assert report.passed, [c for c in report.checks if not c.passed]
    kinds = {c.kind for c in report.checks}
    assert {"optimum", "stationarity", "KKT residuals"} <= kinds


def test_catalog_has_the_issue_problems():
    names = {p.stem for p in SPECS}
    assert {
        "water_filling",
        "least_norm",
        "equality_qp",
        "max_entropy",
        "simplex_projection",
        "ridge_ball",
        "svm_hard_margin",
    } <= names


# --- Lagrangian and KKT --------------------------------------------------------------------


def test_water_filling_lagrangian_and_kkt():
    d = catalog("water_filling")
    lag = d.results["lagrangian"]
    assert lag.expr == "nu*(sum(x) - 1) - (lam @ x) - sum(log(x + alpha))"
    assert lag.latex.startswith(r"\mathcal{L}\left(\mathbf{x}, \boldsymbol{\lambda}, \nu\right) = ")
    assert [s["expr"] for s in lag.extra["standard_form"]] == ["-x", "sum(x) - 1"]
    assert [s["latex"] for s in lag.extra["standard_form"]] == [
        r"- \mathbf{x} \preceq 0",
        r"\operatorname{sum}\left(\mathbf{x}\right) - 1 = 0",
    ]
    kkt = d.results["kkt"]
    assert kkt.extra["stationarity"]["x"]["expr"] == "nu*ones(n) - lam - 1/(x + alpha)"
    assert kkt.extra["dual_feasibility"] == [r"\boldsymbol{\lambda} \succeq 0"]
    assert kkt.extra["complementary_slackness"] == [r"- \boldsymbol{\lambda} \odot \mathbf{x} = 0"]
    titles = [s.title for s in d.steps]
    assert titles[:7] == [
        "Problem",
        "Standard form",
        "Lagrangian",
        "KKT: stationarity",
        "KKT: primal feasibility",
        "KKT: dual feasibility",
        "KKT: complementary slackness",
    ]


def test_maximize_is_negated_with_a_step():
    d = dlsym.derive(
        {
            "name": "t",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "maximize": "-sum(x**2)",
            "subject_to": ["sum(x) == 1"],
            "wrt": "x",
        }
    )
    assert d.steps[1].title == "Maximization as minimization"
    assert r"f_{0} &= \operatorname{sum}\left(\mathbf{x}^{2}\right)" in d.steps[1].latex
    assert d.results["kkt"].extra["stationarity"]["x"]["expr"] == "2*x + nu*ones(n)"


def test_the_gaussian_mle_maximised_without_constraints_holds_where_the_data_vary():
    """maximize the log-likelihood in (μ, σ²), σ² positive: σ²* = mean((x − μ*)²) is in
    the domain only where the data are not all equal. It was "no closed form" (the
    stationary point exists only under conditions); now the solution, with that
    condition in a note, verified against SLSQP."""
    d = dlsym.derive(
        {
            "name": "gaussian_mle",
            "symbols": {"x": {"shape": ["n"]}, "mu": {}, "s2": {"domain": "positive"}},
            "dims": {"n": 6},
            "maximize": "-n / 2 * log(2 * pi * s2) - sum((x - mu)**2) / (2 * s2)",
            "wrt": ["mu", "s2"],
            "derive": ["solution"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    x = np.array([0.3, -1.2, 2.0, 0.7, 0.1, -0.4])
    got = d.function("solution")(x=x)
    np.testing.assert_allclose(got["mu"], x.mean(), rtol=1e-12)
    np.testing.assert_allclose(got["s2"], x.var(), rtol=1e-12)
    assert any("holds where sum((x - sum(x)/n)**2)/n > 0" in n for n in d.notes), d.notes


def _gan_discriminator(**more):
    """The optimal discriminator's problem, entry by entry over n points."""
    return {
        "name": "gan_discriminator",
        "symbols": {
            "p": {"shape": ["n"], "domain": "positive"},
            "q": {"shape": ["n"], "domain": "positive"},
            "D": {"shape": ["n"], "domain": "unit_interval"},
        },
        "dims": {"n": 4},
        "maximize": "sum(p * log(D) + q * log(1 - D))",
        "wrt": "D",
        "derive": ["solution"],
        **more,
    }


def test_a_vector_maximized_entry_by_entry_without_constraints():
    """The GAN discriminator as maximize: sum(p log D + q log(1 − D)), no subject_to:
    the separable path asked for the multiplier of a bound that was not there (exit 3,
    TypeError). D* = p/(p + q), verified against SLSQP."""
    d = dlsym.derive(_gan_discriminator(), verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("solution")["expr"] == "D* = p/(p + q)"
    p, q = np.array([0.1, 2.0, 0.5, 3.0]), np.array([0.4, 1.0, 0.5, 0.01])
    np.testing.assert_allclose(d.function("solution")(p=p, q=q), p / (p + q), rtol=1e-12)


def test_a_box_on_a_vector_is_a_clip_with_a_multiplier_for_each_end():
    """0 <= D <= 1 beside the GAN discriminator, and -1 <= x <= 1 beside sum((x − c)²)/2:
    the separable path took one bound only ("no closed form" for the vector, where the
    scalar was solved, c46s F4). A box clips: x* = min(1, max(−1, c)), each bound's
    multiplier max(0, ·) of the gradient at x* (the other's sign where one binds:
    verified against SLSQP's); a bound that never binds is left out (D* = p/(p + q)
    for positive p, q)."""
    box = {
        "name": "box",
        "symbols": {"x": {"shape": ["n"]}, "c": {"shape": ["n"]}},
        "dims": {"n": 5},
        "minimize": "sum((x - c)**2) / 2",
        "subject_to": ["-1 <= x <= 1"],
        "wrt": "x",
        "derive": ["solution"],
    }
    d = dlsym.derive(box, verify=True)
    assert d.verification.passed, d.verification
    clip = "minimum(1, maximum(-1, c))"
    assert d.result_display("solution")["expr"] == (
        f"x* = {clip}; lam1* = maximum(0, {clip} - c); lam2* = maximum(0, c - {clip})"
    )
    c = np.array([-3.0, -0.5, 0.2, 1.5, 4.0])
    np.testing.assert_allclose(d.function("solution")(c=c), np.clip(c, -1, 1))
    gan = dlsym.derive(_gan_discriminator(subject_to=["0 <= D <= 1"]), verify=True)
    assert gan.verification.passed, gan.verification
    assert gan.result_display("solution")["expr"] == "D* = p/(p + q); lam1* = 0; lam2* = 0"


def test_chained_comparison_is_two_constraints():
    d = dlsym.derive(
        {
            "name": "t",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "minimize": "sum((x - 2)**2)",
            "subject_to": ["0 <= x <= 1"],
            "wrt": "x",
        }
    )
    assert [c.func for c in d.problem.constraints] == [
        -sp.Symbol("x", real=True),
        sp.Symbol("x", real=True) - 1,
    ]
    assert [c.multiplier.name for c in d.problem.constraints] == ["lam1", "lam2"]
    assert d.verify(points=3).passed


def test_multipliers_take_letters_no_symbol_is_shown_as():
    """The spec's own lam (a vector, shown bold lambda), mu and nu: the multipliers are
    kappa and eta, in the formulas and in the prose; with every letter taken, kkt_lam is
    a lambda with a tilde, and named apart from a symbol kkt_lam (its function took the
    name twice: a SyntaxError, exit 3)."""
    d = dlsym.derive(
        {
            "name": "t",
            "symbols": {
                "x": {"shape": ["n"]},
                "nu": {"domain": "positive"},
                "lam": {"shape": ["n"], "domain": "positive"},
                "mu": {},
            },
            "dims": {"n": 3},
            "minimize": "sum((x - lam)**2) * nu + mu",
            "subject_to": ["sum(x) == 1", "x >= 0"],
            "wrt": "x",
            "derive": ["lagrangian", "kkt", "solution"],
        }
    )
    assert [c.multiplier.latex for c in d.problem.constraints] == [r"\eta", r"\boldsymbol{\kappa}"]
    steps = {s.title: s for s in d.steps}
    assert (
        r"$\boldsymbol{\kappa} \succeq 0$ for the inequalities" in steps["Lagrangian"].justification
    )
    assert r"$\boldsymbol{\eta}$ free for the equalities" in steps["Lagrangian"].justification
    assert r"($\boldsymbol{\kappa}_i = 0$)" in steps["KKT: complementary slackness"].justification
    solution = next(s for s in d.steps if s.title.startswith("Solution"))
    assert r"\mathbf{x}(\eta) &=" in solution.latex, solution.latex
    assert "x(η)" in solution.text
    assert d.verify(points=3).passed
    taken = dlsym.derive(
        {
            "name": "t",
            "symbols": {
                "x": {"shape": ["n"]},
                **{name: {} for name in ("lam", "mu", "kappa", "kkt_lam")},
            },
            "dims": {"n": 3},
            "minimize": "sum((x - lam)**2) + mu * kappa * kkt_lam",
            "subject_to": ["x >= 0"],
            "wrt": "x",
        }
    )
    (c,) = taken.problem.constraints
    assert (c.multiplier.name, c.multiplier.latex) == ("kkt_lam_", r"\boldsymbol{\tilde{\lambda}}")
    assert "ℒ(x, λ̃) = f₀ + λ̃ᵀ g₁" in taken.steps[2].text
    assert taken.verify(points=3).passed


# --- verification can fail -------------------------------------------------------------------


def test_wrong_stationarity_is_caught(monkeypatch):
    d = catalog("water_filling")
    grads = d.lagrangian_derivation.results["gradient"]
    # a scaled gradient still vanishes at the optimum: add a term instead
    x = sp.Symbol("x", real=True)
    wrong = dataclasses.replace(grads["x"], expr=grads["x"].expr + x / 1000)
    monkeypatch.setitem(grads, "x", wrong)
    report = d.verify(points=4)
    assert not report.passed
    failed = {c.kind for c in report.checks if not c.passed}
    assert failed == {"stationarity", "KKT residuals"}


def test_wrong_closed_form_fails_the_cli(monkeypatch):
    """A deliberately wrong closed form (x* off by 0.1%) must fail: exit code 1."""
    from dlsym.sections.constrained import _solution as _kkt_solve

    evaluate = _kkt_solve.Solution.evaluate

    def wrong(self, num, draw):
        x, mult = evaluate(self, num, draw)
        return {k: v * 1.001 for k, v in x.items()}, mult

    monkeypatch.setattr(_kkt_solve.Solution, "evaluate", wrong)
    result = CliRunner().invoke(main, ["derive", str(CATALOG / "least_norm.yaml"), "--points", "3"])
    assert result.exit_code == 1, result.output
    assert "solution (x) disagrees with scipy SLSQP" in result.stderr + result.output


def test_wrong_dual_fails(monkeypatch):
    d = catalog("least_norm")
    monkeypatch.setattr(d.dual, "function", d.dual.function * sp.Rational(101, 100))
    report = d.verify(points=3)
    assert not report.passed
    assert [c.kind for c in report.checks if not c.passed] == ["dual value = primal value"]


def test_infeasible_problem_is_a_clear_verdict(tmp_path):
    path = tmp_path / "infeasible.yaml"
    path.write_text(
        "name: infeasible\n"
        "symbols:\n  x: {shape: [n]}\n"
        "dims: {n: 3}\n"
        "minimize: sum(x**2)\n"
        "subject_to:\n  - x >= 1\n  - sum(x) <= 0\n"
        "wrt: x\n"
    )
    # no optimum at any draw and none claimed in closed form: the spec's problem has
    # none, a located error at its constraints (it was exit 1, 'verification failed')
    result = CliRunner().invoke(main, ["derive", str(path), "--points", "2"])
    assert result.exit_code == 2, result.output
    assert f"{path}:7:3: the problem has no optimum to verify against: infeasible" in result.stderr
    assert "the problem looks infeasible" in result.stderr
    # a problem without parameters is one problem: solved once, from 16 starts
    with pytest.raises(SpecError, match=r"constraints .to 1e-07. from 16 starts; the problem "):
        dlsym.derive(path).verify(points=2)


def test_a_solver_run_that_settles_is_stopped():
    """sum(x**2) <= -1 has no feasible point: SLSQP ran 1000 iterations and trust-constr
    3000 from each start to say so (33 s). A run is stopped once its violation has not
    dropped by 1 % in STALL_ITERATIONS iterations; one that descends, or that has been
    feasible, runs on. A feasible run is stopped (settled) once neither its objective nor
    its violation moves in SETTLED_ITERATIONS: at xy = 1, SLSQP bounced at (1, 1) to 2e-8
    until its 1000th iteration from 4 of 16 starts."""
    from dlsym.sections.constrained import _num

    def run(violations, values=None):  # the iteration the run is stopped at, or None
        stall = _num._Stall(lambda z: float(z[0]))  # an iterate here is its violation
        values = values or [0.0] * len(violations)
        for it, (v, f) in enumerate(zip(violations, values), 1):
            try:
                stall(SimpleNamespace(x=[v], fun=f))
            except StopIteration:
                return it, stall.settled
        return None

    n, m = _num.STALL_ITERATIONS, _num.SETTLED_ITERATIONS
    assert run([1.0] * 1000) == (n + 1, False)  # infeasible, settled at 1: stopped
    assert run([1.0 * 0.995**k for k in range(1000)]) is None  # halves every ~140 steps
    assert run([1.0] * 100 + [1e-9] + [1.0] * 900) is None  # once feasible, never stalled
    assert run([1e-9] * 1000) == (m + 1, True)  # feasible, nothing moves: settled
    assert run([1e-9] * 1000, [-1e-6 * k for k in range(1000)]) is None  # descending
    # the objective still, the violation being restored: not settled
    assert run([1e-8 * 0.9**k for k in range(1000)]) is None
    spec = {
        "name": "no_point", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
        "minimize": "sum(x)", "subject_to": ["sum(x**2) <= -1"], "wrt": "x",
    }  # fmt: skip
    num = _num.Numeric(dlsym.derive(spec).problem)
    calls = []
    value_and_grad = num.f
    num.f = lambda z, params: calls.append(1) or value_and_grad(z, params)
    optimum = num.solve({}, np.random.default_rng(0))
    assert not optimum.feasible and optimum.violation == pytest.approx(1.0, rel=1e-3)
    # the objective's evaluations in its 4 SLSQP runs and one trust-constr run: 5808;
    # without the stop 21151 (4 x 1000 SLSQP iterations, 3000 of trust-constr)
    assert len(calls) < 10_000


# --- closed forms --------------------------------------------------------------------------


def test_least_norm_solution_and_dual():
    d = catalog("least_norm")
    sol = d.results["solution"]
    assert sol.extra["x"]["x"]["expr"] == "A.T @ inv(A @ A.T) @ b"
    assert sol.extra["x"]["x"]["latex"] == (
        r"\mathbf{A}^{\top} \left(\mathbf{A} \mathbf{A}^{\top}\right)^{-1} \mathbf{b}"
    )
    assert sol.extra["multipliers"] == {"nu": "-(inv(A @ A.T) @ b)"}
    assert d.results["dual"].expr == "-sum(b*nu) - sum((A.T @ nu)**2)/2"


def test_least_norm_with_more_equations_than_unknowns_claims_no_closed_form(tmp_path):
    # A 4×2: A Aᵀ (4×4) has rank at most 2, so Aᵀ(AAᵀ)⁻¹b is no solution; A x = b is
    # generically infeasible, which the solver then finds: a located error, not exit 1
    text = (CATALOG / "least_norm.yaml").read_text().replace("{m: 2, n: 4}", "{m: 4, n: 2}")
    path = tmp_path / "tall.yaml"
    path.write_text(text)
    d = dlsym.derive(path)
    reasons = d.results["solution"].extra["reasons"]
    assert any("the 4×4 matrix it would invert has rank at most 2" in r for r in reasons)
    result = CliRunner().invoke(main, ["derive", str(path), "--points", "2"])
    assert result.exit_code == 2, result.output
    assert f"{path}:12:3: the problem has no optimum to verify against: infeasible" in (
        result.stderr
    )


def test_ridge_ball_multiplier_is_the_penalty():
    d = catalog("ridge_ball")
    sol = d.results["solution"]
    assert sol.extra["x"]["w"]["expr"] == "inv(lam*eye(n) + X.T @ X) @ X.T @ y"
    assert sol.extra["parametric"] == {
        "lam": "sum((inv(lam*eye(n) + X.T @ X) @ X.T @ y)**2) - r**2"
    }
    report = d.verify(points=8)
    assert report.passed
    mult = next(c for c in report.checks if c.kind == "multipliers")
    assert mult.passed and mult.reference == "scipy SLSQP (4 starts)"
    # both branches occur at these draws: an active ball (lam > 0) and an inactive one
    from dlsym.sections.constrained._verify import Numeric, sample_parameters

    num = Numeric(d.problem)
    lams = [
        d.solution.evaluate(num, draw)[1]["lam"]
        for draw in sample_parameters(d.problem, 8, d.header.verify.seed)
    ]
    assert min(lams) == 0 and max(lams) > 0


def test_ridge_ball_equals_the_penalty_form_numerically():
    """The ball-constrained optimum (SLSQP, knowing nothing of dlsym) is the minimizer of
    the penalty form sum((X w - y)**2) + lam sum(w**2) at the derived multiplier, and that
    minimizer is where ridge_regression's derived gradient vanishes."""
    from scipy.optimize import minimize

    d = catalog("ridge_ball")
    ridge = catalog("ridge_regression")
    grad = ridge.function("gradient")
    from dlsym.sections.constrained._verify import Numeric, sample_parameters

    num = Numeric(d.problem)
    active = 0
    for draw in sample_parameters(d.problem, 8, seed=3):
        X, y, r = draw["X"], draw["y"], float(draw["r"])
        xs, mults = d.solution.evaluate(num, draw)
        lam = float(mults["lam"])
        cons = [{"type": "ineq", "fun": lambda w: r**2 - w @ w, "jac": lambda w: -2 * w}]
        ball = minimize(
            lambda w: np.sum((X @ w - y) ** 2),
            np.zeros(3),
            method="SLSQP",
            constraints=cons,
            options={"ftol": 1e-15, "maxiter": 500},
        ).x
        np.testing.assert_allclose(np.asarray(xs["w"]), ball, atol=1e-6)
        # the penalty form's minimizer: its (independently derived) gradient vanishes there
        np.testing.assert_allclose(grad(X=X, y=y, w=ball, lam=lam), 0, atol=1e-5)
        active += lam > 0
    assert active >= 2  # the equivalence is tested where the ball binds


def test_svm_dual():
    d = catalog("svm_hard_margin")
    dual = d.results["dual"]
    assert dual.expr == "sum(lam1) + sum(lam2) - sum((N.T @ lam2 + Xp.T @ lam1)**2)/2"
    assert dual.extra["dual_constraints"] == [
        "sum(lam2) - sum(lam1) == 0",
        "lam1 >= 0",
        "lam2 >= 0",
    ]
    assert d.results["solution"].extra["found"] is False
    assert d.results["solution"].expr.startswith("no closed form found")


def test_a_constraint_without_a_multiplier_at_the_optimum_has_no_kkt_solution():
    """min sum(x) s.t. sum(x²) <= 0: the optimum x = 0 has no multiplier (the constraint's
    gradient vanishes there). It read "λ* = 0 if zoo ≤ 0, else the root of n/(4λ²) = 0",
    and verification failed on the multiplier (exit 1)."""
    d = dlsym.derive(
        {"name": "t", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
         "minimize": "sum(x)", "subject_to": ["sum(x**2) <= 0"], "wrt": "x",
         "derive": ["kkt", "solution"]},
        verify=True,
    )  # fmt: skip
    sol = d.results["solution"]
    assert sol.extra["found"] is False
    assert "n/(4*lam**2) = 0 has no root λ > 0" in sol.expr
    assert "constraint qualification fails" in sol.expr
    assert "x(λ) is undefined at λ = 0" in sol.expr
    assert d.verification.passed, d.verification
    # sum(x²) <= −1 is infeasible: g(x(λ)) = 1 at every λ (it read "λ: root of 1 = 0")
    d = dlsym.derive(
        {"name": "t", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
         "minimize": "sum(x**2)", "subject_to": ["sum(x**2) <= -1"], "wrt": "x",
         "derive": ["solution"]}
    )  # fmt: skip
    sol = d.results["solution"]
    assert sol.extra["found"] is False
    assert "the constraint does not hold at x(0) and 1 = 0 has no root λ > 0" in sol.expr


# --- bad input -----------------------------------------------------------------------------

HEADER = (
    "name: t\nsymbols:\n  x: {shape: [n]}\n  A: {shape: [m, n]}\n  b: {shape: [m]}\n"
    "dims: {m: 2, n: 3}\nwrt: x\n"
)  # lines 1-7


BAD = [
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - sum(x) + 1\n",
        10,
        5,
        "constraint 1 is not a comparison",
        id="not-a-comparison",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - 3\n",
        10,
        5,
        "constraint 1 must be a comparison such as 'x >= 0'",
        id="number",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - sum(x) < 1\n",
        10,
        12,
        "strict inequalities ('<') are not constraints",
        id="strict",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - norm(x) == 1\n",
        10,
        5,
        "'==' on norm() in constraint 1",
        id="equality-on-norm",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - abs(x) == b[0]\n",
        10,
        5,
        "'==' on abs() in constraint 1",
        id="equality-on-abs",
    ),
    pytest.param(
        "minimize: x**2\nsubject_to:\n  - sum(x) == 1\n",
        8,
        11,
        "minimize must be a scalar, got a vector [n]",
        id="vector-objective",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - A @ x == c\n",
        10,
        14,
        "unknown name 'c' in constraint 1",
        id="undeclared-symbol",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - 'sum(x) >= sigmod(1)'\n",
        10,
        16,
        "unknown function 'sigmod' (did you mean 'sigmoid'?); the language's functions: abs",
        id="quoted-constraint",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - sum(b) >= 0\n",
        10,
        5,
        "constraint 1 does not involve the variables (x)",
        id="parameters-only",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - x == b\n",
        10,
        5,
        "cannot compare a vector [n] and a vector [m]",
        id="shapes",
    ),
    pytest.param(
        "minimize: sum(x**2)\nmaximize: sum(x)\n",
        9,
        1,
        "give either 'minimize' or 'maximize', not both",
        id="both-senses",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to: x >= 0\n",
        9,
        13,
        "subject_to must be a list of constraints",
        id="not-a-list",
    ),
    pytest.param(
        "minimize: sum(x**2)\nsubject_to:\n  - 0 <= x >= 1\n",
        10,
        5,
        "a chain of comparisons must run one way",
        id="mixed-chain",
    ),
    pytest.param(
        "subject_to:\n  - x >= 0\n", 8, 1, "missing 'minimize' or 'maximize'", id="no-objective"
    ),
    pytest.param(
        "minimize: sum(x**2)\nderive: [lagrangian, gradient]\n",
        9,
        22,
        "derive kind 'gradient' does not apply to a constrained optimization spec",
        id="calculus-kind",
    ),
    pytest.param(
        "maximize: -sum(x**2)\nderive: [stationary]\n",
        9,
        10,
        "one of: lagrangian, kkt, dual, solution (it is a calculus spec's kind: write the "
        "function as 'objective:' (with wrt:), or derive 'solution'",
        id="stationary-of-maximize",
    ),
]


@pytest.mark.parametrize("tail, line, col, message", BAD)
def test_bad_spec_is_a_located_error(tmp_path, tail, line, col, message):
    path = tmp_path / "spec.yaml"
    path.write_text(HEADER + tail, encoding="utf-8")
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {path}:{line}:{col}: "), result.stderr
    assert message in result.stderr


def _derive(tail):
    return dlsym.derive(
        dict(
            __import__("yaml").safe_load(HEADER + tail),
            derive=["lagrangian", "kkt", "dual", "solution"],
        )
    )


@pytest.mark.parametrize(
    "tail, reason",
    [
        # L's Hessian 2 (lam - 1) I is indefinite for lam < 1: x = 0 maximizes L
        (
            "maximize: sum(x**2)\nsubject_to:\n  - sum(x**2) <= 1\n",
            "the Lagrangian's Hessian in x, (2*lam - 2)*eye(n), is not positive semidefinite",
        ),
        # the optimum has nu = -1, where the "solution" x = -P^{-1} r = 0 does not exist
        (
            "minimize: sum(x**2)\nsubject_to:\n  - sum(x**2) == 1\n",
            "the Lagrangian's Hessian in x, (2*nu + 2)*eye(n), is not positive semidefinite",
        ),
    ],
)
def test_nonconvex_problems_get_no_false_closed_form(tail, reason):
    d = _derive(tail)
    sol = d.results["solution"]
    assert sol.extra["found"] is False and reason in sol.expr
    assert (
        d.results["dual"].extra.get("found", True) is False or "no closed" in d.results["dual"].expr
    )
    assert d.verify(points=4).passed  # the numeric optimum still meets the KKT conditions


def test_max_entropy_without_a_vector_parameter_keeps_k_entries():
    d = dlsym.derive(
        {
            "name": "t",
            "symbols": {"p": {"shape": ["k"], "domain": "positive"}},
            "dims": {"k": 4},
            "maximize": "-sum(p * log(p))",
            "subject_to": ["sum(p) == 1"],
            "wrt": "p",
            "derive": ["solution"],
        }
    )
    assert d.results["solution"].extra["multipliers"] == {"nu": "log(k) - 1"}
    assert d.results["solution"].extra["x"]["p"]["expr"] == "ones(k)/k"
    assert d.verify(points=4).passed


def test_unbounded_problem_is_a_clear_verdict():
    d = _derive("minimize: sum(x)\nsubject_to:\n  - x <= 1\n")
    with pytest.raises(SpecError) as caught:
        d.verify(points=4)
    message = str(caught.value)
    assert "the problem has no optimum to verify against: unbounded: at 4 of 4 draws" in message
    assert message.endswith(
        "the problem looks unbounded below (or its infimum is not attained), so it has no optimum"
    )


def test_an_lp_unbounded_at_most_draws_has_no_optimum_to_verify_against():
    """min c·x s.t. sum(x) == 1 is unbounded unless c is a multiple of 1: SLSQP ran off at
    14 of 16 draws and stopped somewhere at the other 2, whose KKT residuals then failed
    the check (exit 1, though nothing claims an optimum)."""
    d = dlsym.derive(
        {"name": "lp", "symbols": {"x": {"shape": ["n"]}, "c": {"shape": ["n"]}},
         "dims": {"n": 3}, "minimize": "c @ x", "subject_to": ["sum(x) == 1"], "wrt": "x",
         "derive": ["lagrangian", "kkt", "dual", "solution"]}
    )  # fmt: skip
    assert d.results["dual"].extra["dual_constraints"] == ["c + nu*ones(n) == 0"]
    with pytest.raises(SpecError, match="no optimum to verify against: unbounded: at"):
        d.verify()


def test_variables_coupled_through_a_multiplier_have_no_separate_dual():
    """min x² + y² s.t. xy = 1: each variable's Hessian alone is 2, but ν couples them
    and L is unbounded below for |ν| > 2: the dual read −ν for every ν (from each
    gradient at 0, where the coupling vanishes), which was wrong past |ν| = 2."""
    d = dlsym.derive(
        {"name": "xy", "symbols": {"x": {}, "y": {}}, "minimize": "x**2 + y**2",
         "subject_to": ["x*y == 1"], "wrt": ["x", "y"], "derive": ["dual", "solution"]},
        verify=True,
    )  # fmt: skip
    assert d.results["dual"].expr.startswith("no closed-form dual function found")
    assert "couple the variables" in d.results["dual"].expr
    assert d.verification.passed, d.verification


def test_missing_wrt_and_api_error():
    with pytest.raises(SpecError, match="missing 'wrt': the optimization variable"):
        dlsym.derive({"name": "t", "symbols": {"x": {}}, "minimize": "x**2"})


# --- rendering -----------------------------------------------------------------------------


def test_latex_and_terminal_show_the_same_steps():
    d = catalog("water_filling")
    latex = d.latex()
    assert (
        r"\mathcal{L}\left(\mathbf{x}, \boldsymbol{\lambda}, \nu\right) &= f_{0} + "
        r"\boldsymbol{\lambda}^{\top} g_{1} + \nu h_{1}" in latex
    )
    assert r"\boldsymbol{\lambda} &\succeq 0" in latex
    assert r"- \boldsymbol{\lambda} \odot \mathbf{x} &= 0" in latex
    text = d.steps[2].text
    assert text.splitlines()[0] == "ℒ(x, λ, ν) = f₀ + λᵀ g₁ + ν h₁"


def test_json_output_contract():
    result = CliRunner().invoke(
        main, ["derive", str(CATALOG / "least_norm.yaml"), "--format", "json", "--points", "3"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out["results"]) == {"lagrangian", "kkt", "dual", "solution"}
    assert out["verification"]["passed"] is True
    assert out["verification"]["max_abs_error"] < 1e-9
    assert all(set(s) == {"title", "latex", "justification"} for s in out["steps"])


def test_separable_solutions_are_the_known_forms():
    water = catalog("water_filling").results["solution"]
    assert water.expr.startswith("x* = maximum(0, 1/nu - alpha)")
    assert water.extra["parametric"] == {"nu": "sum(maximum(0, 1/nu - alpha)) - 1"}
    sparsemax = catalog("simplex_projection").results["solution"]
    assert sparsemax.extra["x"]["x"]["expr"] == "maximum(0, z - nu)"
    gibbs = catalog("max_entropy").results["solution"]
    assert gibbs.extra["x"]["p"]["expr"] == "softmax(-a*nu2)"
    assert gibbs.extra["x"]["p"]["latex"] == (
        r"\operatorname{softmax}\left(- \mathbf{a} \nu_{2}\right)"
    )
    assert gibbs.extra["multipliers"] == {"nu1": "log(sum(exp(-a*nu2))) - 1"}


def test_sign_tests_treat_a_multiplier_as_any_nonnegative_value():
    from dlsym.calculus._convexity import provably_nonnegative, provably_psd

    d = catalog("ridge_ball")
    lam = d.problem.constraints[0].multiplier.symbol
    assert provably_nonnegative(d.problem.spec, 2 * lam) and provably_nonnegative(
        d.problem.spec, 1 / (1 + lam) ** 2
    )
    assert not provably_nonnegative(d.problem.spec, 1 - lam)  # true at lam = 0 only
    from dlsym.expr import _ops as ops

    n = d.problem.base.dim_symbols["n"]
    X = d.problem.base.symbol("X").symbol
    assert provably_psd(d.problem.spec, 2 * lam * ops.eye(n) + 2 * ops.matmul(ops.transpose(X), X))
    assert not provably_psd(d.problem.spec, (2 * lam - 2) * ops.eye(n))


# --- many listed constraints ----------------------------------------------------------------


def listed(constraints, n, derive=("lagrangian", "kkt", "dual", "solution")):
    return {
        "name": "listed",
        "symbols": {"x": {"shape": ["n"]}, "c": {"shape": ["n"]}},
        "dims": {"n": n},
        "minimize": "sum((x - c)**2)/2",
        "subject_to": list(constraints),
        "wrt": "x",
        "derive": list(derive),
    }


def test_an_entry_constraint_has_a_dual_and_verifies():
    # the dual sets x to 0 inside x[0] + x[1]: that used to index a scalar 0 (a crash)
    d = dlsym.derive(listed(["x[0] + x[1] <= 1"], 3))
    report = d.verify(points=4)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert {"dual value = primal value", "stationarity"} <= {c.kind for c in report.checks}


def test_coupled_equalities_solve_entry_by_entry():
    # x[i] - 2 x[i+1] == i: each multiplier is solved from an entry of x(nu), which
    # needs the entry of a sum of unit vectors written out ((c - nu e_0 + 2 nu e_1)[1])
    d = dlsym.derive(listed([f"x[{i}] - 2*x[{i + 1}] == {i}" for i in range(3)], 5))
    sol = d.results["solution"]
    assert sol.extra["found"] and sol.extra["method"] == "separable stationarity"
    assert set(sol.extra["multipliers"]) == {"nu1", "nu2", "nu3"}
    report = d.verify(points=4)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert {"solution", "multipliers"} <= {c.kind for c in report.checks}


def test_many_coupled_equalities_have_no_closed_form_but_verify():
    from dlsym.sections.constrained._separable import MAX_COUPLED

    m = MAX_COUPLED + 2
    d = dlsym.derive(listed([f"x[{i}] - 2*x[{i + 1}] == {i}" for i in range(m)], m + 2))
    sol = d.results["solution"]
    assert not sol.extra["found"]
    assert f"more than {MAX_COUPLED} equality constraints couple" in sol.expr
    report = d.verify(points=3)
    assert report.passed, [c for c in report.checks if not c.passed]


def test_fifty_listed_bounds_derive_and_verify():
    # 50 multipliers: factor() on the Lagrangian's gradient took a minute, SLSQP at
    # ftol 1e-15 ran every start to maxiter, and jax.grad of L was traced per point
    d = dlsym.derive(listed([f"x[{i}] <= {i + 1}" for i in range(50)], 50, ("kkt", "solution")))
    assert "lam50*eye(n)[49]" in d.results["kkt"].expr  # e_49, as the language writes it
    report = d.verify(points=3)
    assert report.passed, [c for c in report.checks if not c.passed]


def test_water_filling_over_fifty_channels_starts_inside_the_domain():
    # log(alpha + x) is finite at a normal draw of 50 entries about once in 1e15 tries:
    # the solver's starts alternate with draws in (0.1, 0.9)
    import yaml

    spec = yaml.safe_load((CATALOG / "water_filling.yaml").read_text())
    d = dlsym.derive({**spec, "dims": {"n": 50}})
    report = d.verify(points=3)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert next(c for c in report.checks if c.kind == "solution").max_abs_error < 1e-6


def test_a_clip_prints_as_the_languages_elementwise_minimum_and_reads_back():
    d = dlsym.derive(
        listed(["x <= u"], 3, ("solution",))
        | {"symbols": {"x": {"shape": ["n"]}, "c": {"shape": ["n"]}, "u": {"shape": ["n"]}}}
    )
    x_star = d.results["solution"].extra["x"]["x"]["expr"]
    assert x_star == "minimum(c, u)"  # not SymPy's Min, which reads as Python's min
    back = dlsym.derive(
        {
            "name": "read_back",
            "symbols": {"c": {"shape": ["n"]}, "u": {"shape": ["n"]}, "w": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": f"sum({x_star} * w)",
            "wrt": "w",
        }
    )
    c, u = np.array([1.0, 2.0, 3.0]), np.array([2.0, 1.0, 5.0])
    np.testing.assert_array_equal(back.function("gradient")(c=c, u=u, w=c), [1.0, 1.0, 3.0])


BALL = {
    "name": "ball_projection",
    "symbols": {"x": {"shape": ["n"]}, "a": {"shape": ["n"]}, "r": {"domain": "positive"}},
    "dims": {"n": 3},
    "minimize": "sum((x - a)**2) / 2",
    "subject_to": ["sum(x**2) <= r**2"],
    "wrt": "x",
    "derive": ["lagrangian", "kkt", "solution"],
}


def test_the_l2_ball_projection_has_its_multiplier_in_closed_form():
    """lam* = max(0, (||a|| - r) / (2 r)) and x* = a min(1, r / ||a||), the textbook
    projection, in NumPy: inside the ball and outside it."""
    d = dlsym.derive(BALL)
    sol = d.function("solution")
    for a, r in ((np.array([3.0, 0.0, 4.0]), 1.0), (np.array([0.1, -0.2, 0.3]), 2.0)):
        norm = np.linalg.norm(a)
        np.testing.assert_allclose(sol(a=a, r=r), a * min(1.0, r / norm), rtol=1e-12)
        lam = d.function("multipliers")(a=a, r=r)
        lam = lam["lam"] if isinstance(lam, dict) else lam
        np.testing.assert_allclose(lam, max(0.0, (norm - r) / (2 * r)), rtol=1e-12, atol=1e-15)
    assert "root" not in d.result_display("solution")["expr"]
    assert d.verify(points=8).passed


def test_an_inequality_that_must_be_active_is_solved_through_its_multiplier():
    """Cobb–Douglas utility under a budget, max log x + log y s.t. x + p y <= c: each
    variable's stationarity reads it alone, x(λ) = 1/λ has no value at λ = 0, so the
    budget is active: λ* = 2/c, x* = c/2, y* = c/(2p) (it was "no closed form"). The
    same for a vector, max Σ w log x s.t. c·x <= B: x* = B w/(c Σw)."""
    d = dlsym.derive(
        {"name": "cobb_douglas",
         "symbols": {v: {"domain": "positive"} for v in ("x", "y", "c", "p")},
         "maximize": "log(x) + log(y)", "subject_to": ["x + p * y <= c"],
         "wrt": ["x", "y"], "derive": ["solution"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("solution")["expr"] == "x* = c/2; y* = c/(2*p); lam* = 2/c"
    got = d.function("solution")(c=3.0, p=0.5)
    np.testing.assert_allclose([got["x"], got["y"]], [1.5, 3.0], rtol=1e-15)
    latex = d.latex()
    assert r"g_{1}(x(\lambda)) &= \frac{2}{\lambda} - c" in latex
    d = dlsym.derive(
        {"name": "allocation",
         "symbols": {"x": {"shape": ["n"], "domain": "positive"},
                     "w": {"shape": ["n"], "domain": "positive"},
                     "c": {"shape": ["n"], "domain": "positive"}, "B": {"domain": "positive"}},
         "dims": {"n": 4}, "maximize": "sum(w * log(x))", "subject_to": ["c @ x <= B"],
         "wrt": "x", "derive": ["solution"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    w, c = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.2, 1.0, 4.0, 0.5])
    np.testing.assert_allclose(
        d.function("solution")(w=w, c=c, B=7.0), 7.0 * w / (c * w.sum()), rtol=1e-14
    )
    # where x(0) exists the constraint may be inactive: not this solver's case (the
    # ball projection's closed form comes from the linear solver, with its max(0, ·))
    ball = dlsym.derive(BALL)
    assert ball.solution.method == "linear stationarity"


def test_the_lasso_proximal_step_is_not_given_a_smooth_closed_form():
    """|x| has a kink: its derivative sign(x) looks affine to the Hessian (its own
    derivative is 0 almost everywhere), which gave x* = z. The solution now says it has
    no closed form, and verification (which passed no KKT residual check at a kink)
    passes."""
    d = dlsym.derive(
        {
            "name": "lasso_prox",
            "symbols": {
                "x": {"shape": ["n"]},
                "z": {"shape": ["n"]},
                "lam": {"domain": "positive"},
            },
            "dims": {"n": 3},
            "minimize": "sum((x - z)**2) / 2 + lam * sum(abs(x))",
            "wrt": "x",
            "derive": ["lagrangian", "kkt", "solution"],
        }
    )
    assert any("kinks in x" in n for n in d.notes)
    assert "no closed form" in d.result_display("solution")["expr"]
    report = d.verify(points=8)
    assert report.passed and "KKT residuals" not in {c.kind for c in report.checks}


# --- a matrix variable on the spd cone ----------------------------------------------

GAUSSIAN_MLE = {
    "name": "gaussian_cov_mle_kkt",
    "symbols": {"X": {"shape": ["n", "d"]}, "C": {"shape": ["d", "d"], "domain": "spd"}},
    "dims": {"n": 8, "d": 3},
    "minimize": "n / 2 * logdet(C) + 0.5 * trace(X @ inv(C) @ X.T)",
    "subject_to": [],
    "wrt": "C",
    "derive": ["lagrangian", "kkt", "solution"],
}


def test_the_gaussian_covariance_mle_as_a_kkt_problem():
    """Issue 16's false failure: SLSQP over a matrix left the spd cone, where logdet and
    the inverse mean nothing. The reference now searches the Cholesky factor; with no
    constraints the closed form is the calculus engine's stationary point, XᵀX/n."""
    d = dlsym.derive(GAUSSIAN_MLE)
    assert d.result_display("solution")["expr"] == "C* = (X.T @ X)/n"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3))
    np.testing.assert_allclose(d.function("solution")(X=X), X.T @ X / 8, rtol=1e-12)
    report = d.verify()
    assert report.passed, report
    assert {"optimum", "stationarity", "KKT residuals", "solution"} <= {
        c.kind for c in report.checks
    }


def test_a_wrong_covariance_fails_against_the_solver():
    d = dlsym.derive(GAUSSIAN_MLE)
    d.solution.x = {"C": d.solution.x["C"] * sp.Rational(8, 9)}  # X^T X/(n + 1) at n = 8
    d.solution._compiled.clear()
    report = d.verify()
    assert not report.passed
    assert [c.kind for c in report.checks if not c.passed] == ["solution", "optimal value"]


def test_an_spd_variable_under_a_constraint_verifies():
    """max logdet(C) s.t. tr(C) = 1 (no closed form here): the solver's optimum stays on
    the spd cone (C* = I/3), so the KKT checks pass."""
    d = dlsym.derive(
        {
            "name": "maxdet",
            "symbols": {"C": {"shape": ["d", "d"], "domain": "spd"}},
            "dims": {"d": 3},
            "minimize": "-logdet(C)",
            "subject_to": ["trace(C) == 1"],
            "wrt": "C",
            "derive": ["lagrangian", "kkt", "solution"],
        }
    )
    report = d.verify(points=4)
    assert report.passed, report


def test_a_matrix_variable_with_an_identity_hessian_is_solved():
    """The nearest matrix with a given trace: min ½‖X − A‖² s.t. tr X = c. L's Hessian in
    X acts on a direction as Δ ↦ Δ, the identity: convex, X* = A − (tr A − c)/n I (it
    said 'the Hessian _dir_X is not positive semidefinite' and gave no closed form)."""
    d = dlsym.derive(
        {
            "name": "trace_projection",
            "symbols": {"X": {"shape": ["n", "n"]}, "A": {"shape": ["n", "n"]}, "c": {}},
            "dims": {"n": 3},
            "minimize": "sum((X - A)**2) / 2",
            "subject_to": ["trace(X) == c"],
            "wrt": "X",
            "derive": ["lagrangian", "kkt", "solution"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    assert "_dir" not in " ".join(d.notes)
    A, c = np.arange(9.0).reshape(3, 3), 2.0
    got = d.function("solution")(A=A, c=c)
    np.testing.assert_allclose(got, A - (np.trace(A) - c) / 3 * np.eye(3), rtol=1e-12)
    assert np.trace(got) == pytest.approx(c)


def test_a_vector_equality_to_a_number_holds_entry_by_entry():
    """x == 1 for a vector x: one multiplier per entry, ν = -2·1 and x* = 1 for
    min ‖x‖² (the constant part lost its shape: ν = -2/I, and a NumPy error)."""
    d = dlsym.derive(
        {
            "name": "pinned",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "minimize": "sum(x**2)",
            "subject_to": ["x == 1"],
            "wrt": "x",
            "derive": ["lagrangian", "kkt", "solution"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    np.testing.assert_array_equal(d.function("solution")(), np.ones(3))


def test_a_repeated_equality_is_feasible_and_an_unbounded_problem_says_so():
    """A x = b written twice makes SLSQP's subproblem singular, which read as
    'infeasible' (a false failure): SciPy's trust-constr takes over where SLSQP finds no
    feasible point. min -‖x‖² on sum(x) = 1 runs to -inf: 'unbounded', not infeasible."""
    symbols = {"x": {"shape": ["n"]}, "A": {"shape": ["m", "n"]}, "b": {"shape": ["m"]}}
    twice = dlsym.derive(
        {
            "name": "twice",
            "symbols": symbols,
            "dims": {"n": 3, "m": 1},
            "minimize": "sum(x**2)",
            "subject_to": ["A @ x == b", "A @ x == b"],
            "wrt": "x",
            "derive": ["lagrangian", "kkt", "solution"],
        }
    )
    assert twice.verify(points=4).passed
    unbounded = dlsym.derive(
        {
            "name": "unbounded",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "minimize": "-sum(x**2)",
            "subject_to": ["sum(x) == 1"],
            "wrt": "x",
            "derive": ["lagrangian", "kkt", "solution"],
        }
    )
    with pytest.raises(SpecError, match="no optimum to verify against: unbounded"):
        unbounded.verify(points=4)


def test_a_constant_term_of_a_vector_objective_counts_once_per_entry():
    """min ‖x − 2‖² s.t. sum(x) = 1: setting x to 0 in (x − 2)² gave the number 4, and
    sum(4) = 4, not 4n: the dual and x* = 2 − (sum(2) − 1)/n were wrong (verification
    caught it, exit 1). Now x* = 1/n in every entry, ν = (4n − 2)/n."""
    d = dlsym.derive(
        {
            "name": "shift",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "minimize": "sum((x - 2)**2)",
            "subject_to": ["sum(x) == 1"],
            "wrt": "x",
            "derive": ["dual", "solution"],
        }
    )
    x = d.function("solution")()
    np.testing.assert_allclose(x["x"] if isinstance(x, dict) else x, np.full(3, 1 / 3))
    assert d.verify(points=4).passed


def test_a_matrix_variable_with_a_vector_constraint():
    """min ‖X − A‖² s.t. sum(X, axis=1) = 1 (rows on an affine set): the dual and the
    solution's matrix algebra met shapes they had no form for (ShapeError, exit 3). The
    dual is sum(A²) − sum(ν) − ‖ν 1ᵀ − 2A‖²/4, the solution numeric; both verified."""
    d = dlsym.derive(
        {
            "name": "rows",
            "symbols": {"X": {"shape": ["n", "m"]}, "A": {"shape": ["n", "m"]}},
            "dims": {"n": 2, "m": 3},
            "minimize": "sum((X - A)**2)",
            "subject_to": ["sum(X, axis=1) == 1"],
            "wrt": "X",
            "derive": ["kkt", "dual", "solution"],
        }
    )
    A, nu = np.arange(6.0).reshape(2, 3) / 5, np.array([0.3, -1.2])
    g = d.function("dual")(A=A, nu=nu)
    X = A - np.outer(nu, np.ones(3)) / 2  # the Lagrangian's minimiser
    lagrangian = np.sum((X - A) ** 2) + nu @ (X.sum(axis=1) - 1)
    assert float(g) == pytest.approx(lagrangian, rel=1e-12)
    assert d.verify(points=4).passed


def test_a_feasible_set_of_one_point_has_nonnegative_multipliers():
    """min (x − 3)² s.t. x >= 1, x <= 1: both constraints active with opposite
    gradients, so least squares split the multiplier and one came out negative: 'KKT
    residuals: dual feasibility' failed (exit 1) though nothing closed-form was claimed.
    Bounded least squares keeps the inequality multipliers nonnegative."""
    d = dlsym.derive(
        {
            "name": "pinned",
            "symbols": {"x": {}},
            "minimize": "(x - 3)**2",
            "subject_to": ["x >= 1", "x <= 1"],
            "wrt": "x",
        }
    )
    assert d.verify(points=4).passed


@pytest.mark.parametrize("scale", ["1e12", "1e-12"])
def test_an_objective_of_any_scale_is_checked_at_its_own(scale):
    """1e12 ‖x − 1‖²: stationarity's residual 7e-4 is 4e-16 of the multiplier 2e12 it
    sums (a false 'KKT residuals' failure); 1e-12 ‖x − 1‖²: SLSQP's absolute ftol
    stopped 1e-5 from the optimum (a false 'primal from dual' failure). The residual is
    relative to the multipliers, and SLSQP searches the objective scaled to size 1."""
    d = dlsym.derive(
        {
            "name": "scaled",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "minimize": f"{scale} * sum((x - 1)**2)",
            "subject_to": ["sum(x) == 1"],
            "wrt": "x",
            "derive": ["kkt", "dual", "solution"],
        }
    )
    assert d.verify(points=8).passed


def test_a_problem_past_float64_is_verification_that_cannot_run(tmp_path):
    """sum(x) >= 1e308 is feasible, but its points' squares overflow and SLSQP finds
    none: that is the solver's failure, said so (exit 2), not 'the problem looks
    infeasible' (nor exit 1 for the right closed form)."""
    path = tmp_path / "huge.yaml"
    path.write_text(
        "name: huge\nsymbols:\n  P: {shape: [n, n], domain: spd}\n  x: {shape: [n]}\n"
        "dims: {n: 2}\nminimize: x @ P @ x\nsubject_to:\n  - sum(x) >= 1e308\nwrt: x\n"
    )
    args = ["derive", str(path), "--points", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"{path}:8:3: verification cannot run: the solver found no feasible" in result.stderr
    assert "numbers reach 1e+308" in result.stderr and "looks infeasible" not in result.stderr
    # with the closed form claimed: the same, at the problem's sense
    path.write_text(path.read_text() + "derive: [lagrangian, kkt, solution]\n")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"{path}:6:11: verification cannot run in float64: optimum: the solver" in (
        result.stderr
    )


GAN_BOX = {
    "name": "gan_box",
    "symbols": {"p": {"domain": "positive"}, "q": {"domain": "positive"}, "D": {}},
    "maximize": "p * log(D) + q * log(1 - D)",
    "subject_to": ["D >= 0", "D <= 1"],
    "wrt": "D",
    "derive": ["solution"],
}


def test_inequalities_the_stationary_point_satisfies_are_inactive(monkeypatch):
    """The optimal discriminator written with its box 0 <= D <= 1 had no closed form;
    D* = p/(p + q) of the objective alone is inside for every p, q > 0, so λ = 0 and it
    is the solution. A bound it may cross (D <= 0.3) is no such case, and claiming it
    is one fails verification."""
    from dlsym.sections.constrained import _unconstrained

    d = dlsym.derive(GAN_BOX, verify=True)
    assert d.verification.passed, d.verification
    assert d.result_display("solution")["expr"].startswith("D* = p/(p + q)")
    np.testing.assert_allclose(d.function("solution")(p=1.0, q=3.0), 0.25)
    tight = {**GAN_BOX, "subject_to": ["D >= 0", "D <= 0.3"]}
    assert "inactive" not in dlsym.derive(tight).result_display("solution")["expr"]
    monkeypatch.setattr(_unconstrained, "provably_nonnegative", lambda spec, e: True)
    assert not dlsym.derive(tight).verify(points=8).passed


def test_a_parametric_multiplier_far_out_is_found_and_one_float64_cannot_hold_is_nan():
    """Sparsemax of z = (1e15, 0, 0): ν = 1e15 − 1 was past the root search's grid
    (±1e8), so the solution was nan; the grid goes on to 1e300. At z = −1e30 in every
    entry, ν = −1e30 − 1/3 is not a float64, and nan says so (not a wrong point)."""
    d = dlsym.derive(
        {
            "name": "sparsemax",
            "symbols": {"z": {"shape": ["k"]}, "x": {"shape": ["k"]}},
            "dims": {"k": 3},
            "minimize": "sum((x - z)**2) / 2",
            "subject_to": ["x >= 0", "sum(x) == 1"],
            "wrt": "x",
            "derive": ["solution"],
        }
    )
    f = d.function("solution")
    np.testing.assert_array_equal(f(z=np.array([1e15, 0.0, 0.0])), [1.0, 0.0, 0.0])
    assert np.isnan(f(z=np.full(3, -1e30))).all()


@pytest.mark.parametrize("n", [3, 4])
def test_equalities_dependent_at_the_dims_have_a_closed_form_that_holds(n):
    """x[0] == 1, x[1] == 2, x[2] == 3 and sum(x) == 6: dependent at n = 3. The
    separable solver's multipliers divided by n − Σ sum(e_i), which read 0 at n = 3 only
    once the dims were put in (a closed form nan there; SLSQP read the problem as
    infeasible); with sum(e_i) = 1 known the multiplier of sum(x) == 6 is 0, and
    x* = e_0 + 2 e_1 + 3 e_2 holds for every n >= 3 (the entries past the third sum to
    0, and their squares are least at 0)."""
    d = dlsym.derive(
        {
            "name": "dependent",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": n},
            "minimize": "sum(x**2)",
            "subject_to": ["x[0] == 1", "x[1] == 2", "x[2] == 3", "sum(x) == 6"],
            "wrt": "x",
            "derive": ["solution"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    np.testing.assert_array_equal(d.function("solution")(), [1.0, 2.0, 3.0] + [0.0] * (n - 3))


@pytest.mark.parametrize(
    "sense, objective, bounds, why",
    [
        # f = −x²: its stationary point is its maximum
        ("maximize", "x**2", ["x <= 1", "x >= -2"], "the objective is concave"),
        ("maximize", "sum(x**2)", ["sum(x) <= 1"], "the objective is concave"),
        # 0 is an inflection; the optimum is −1
        ("minimize", "x**3", ["x >= -1"], "second derivative in x at the stationary point is 0"),
    ],
)
def test_a_stationary_point_that_is_no_minimum_is_not_claimed_optimal(
    sense, objective, bounds, why
):
    """The inequalities' solver took ∇f = 0 with every constraint inactive as the
    optimum whatever f: x* = 0 for maximizing x² on [−2, 1] (SLSQP: −2) and for x³ on
    x >= −1 (−1), each exit 1. ∇f = 0 is necessary, not sufficient: where the point is
    provably no minimum there is no closed form, and the numeric optimum is checked."""
    vector = "sum" in objective
    d = dlsym.derive(
        {"name": "nonminimum", "symbols": {"x": {"shape": ["n"]} if vector else {}},
         "dims": {"n": 2}, sense: objective, "subject_to": bounds, "wrt": "x",
         "derive": ["kkt", "solution"]}
    )  # fmt: skip
    shown = d.results["solution"].expr
    assert shown.startswith("no closed form found") and why in shown, shown


def test_inconsistent_equalities_are_said_to_be_so(tmp_path):
    """sum(x) == 1 beside sum(x) == 2: the separable solver showed '−1 = 0 fixes ν₂' and
    claimed x* = 1/n (exit 1). With ν₁ eliminated the second constraint is free of ν₂:
    inconsistent, no closed form, and the run ends in a located error (exit 2)."""
    path = tmp_path / "infeasible.yaml"
    path.write_text(
        "name: infeasible\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\nminimize: sum(x**2)\n"
        "subject_to:\n  - sum(x) == 1\n  - sum(x) == 2\nwrt: x\n"
        "derive: [lagrangian, kkt, solution]\n"
    )
    d = dlsym.derive(str(path))
    shown = d.results["solution"].expr
    assert shown.startswith("no closed form found"), shown
    assert "they are inconsistent: no point satisfies them" in shown, shown
    result = CliRunner().invoke(main, ["derive", str(path), "--points", "2"])
    assert result.exit_code == 2, result.output
    assert f"{path}:6:3: the problem has no optimum to verify against: infeasible" in (
        result.stderr
    )


def test_a_closed_form_that_leaves_the_variables_domain_is_not_the_solution():
    """min ‖x − a‖² s.t. sum(x) = 1 of a positive x gave x* = a − (sum(a) − 1)/n with no
    condition: [5, −5, 1] at a = [5, −5, 1], where the optimum (the domain a bound, as
    the solver keeps it) is [1, 0, 0]; the solver's Newton polish walked out of the
    bound to agree. No closed form is claimed, and the numeric optimum stays inside."""
    d = dlsym.derive(
        {"name": "bounded", "symbols": {"x": {"shape": ["n"], "domain": "positive"},
         "a": {"shape": ["n"]}}, "dims": {"n": 3}, "minimize": "sum((x - a)**2)",
         "subject_to": ["sum(x) == 1"], "wrt": "x", "derive": ["kkt", "solution"]}
    )  # fmt: skip
    shown = d.results["solution"].expr
    assert shown.startswith("no closed form found") and "for some values only" in shown, shown
    assert d.verify(points=4).passed
    from dlsym.sections.constrained._num import Numeric

    optimum = Numeric(d.problem).solve({"a": np.array([5.0, -5.0, 1.0])}, np.random.default_rng(0))
    np.testing.assert_allclose(optimum.x["x"], [1.0, 0.0, 0.0], atol=1e-6)


def test_a_matrix_inequality_is_typeset_entry_by_entry_not_in_the_semidefinite_order():
    """X >= 0 on a matrix holds entry by entry; it was typeset −X ⪯ 0, which for a
    matrix reads as negative semidefinite (c46h F5). Vectors keep ⪯, componentwise."""
    d = dlsym.derive(
        {
            "name": "m",
            "symbols": {
                "X": {"shape": ["n", "n"]},
                "C": {"shape": ["n", "n"]},
                "x": {"shape": ["n"]},
            },
            "dims": {"n": 2},
            "minimize": "sum((X - C)**2) + sum(x**2)",
            "subject_to": ["X >= 0", "x >= 1"],
            "wrt": ["X", "x"],
            "derive": ["lagrangian", "kkt"],
        }
    )
    latex = d.latex()
    assert r"- \mathbf{X} \le 0" in latex and r"\mathbf{X} \preceq" not in latex, latex
    assert r"\preceq 0" in latex  # the vector's 1 − x ⪯ 0
