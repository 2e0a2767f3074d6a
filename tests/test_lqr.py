"""LQR: the Riccati equation from the Bellman equation, checked against scipy's DARE."""

import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CATALOG

import dlsym
from dlsym._cli import main
from dlsym._errors import SpecError

SPEC = CATALOG / "lqr_double_integrator.yaml"


@pytest.fixture(scope="module")
def d():
    return dlsym.derive(SPEC)


def test_riccati_and_gain(d):
    assert (
        d.results["riccati"].expr
        == "P = Q + A.T @ P @ A - A.T @ P @ B @ inv(R + B.T @ P @ B) @ B.T @ P @ A"
    )
    assert d.results["gain"].expr == "K = inv(R + B.T @ P @ B) @ B.T @ P @ A"
    assert d.results["gain"].latex == (
        r"\mathbf{K} = \left(\mathbf{R} + \mathbf{B}^{\top} "
        r"\mathbf{P} \mathbf{B}\right)^{-1} \mathbf{B}^{\top} "
        r"\mathbf{P} \mathbf{A}"
    )
    assert [s.title for s in d.steps] == [
        "Problem and value guess",
        "Bellman equation",
        "Minimize over the action",
        "Optimal action",
        "Substitute the minimizer",
        "Simplify",
        "Discrete-time algebraic Riccati equation",
    ]


def test_minimization_uses_the_engine(d):
    # the engine's matrix-form gradient, with P, Q, R symmetric (domain spd)
    assert (
        d.bellman.result_display("gradient")["expr"] == "2*(R @ u) + 2*(B.T @ P @ (A @ x + B @ u))"
    )
    assert d.bellman.result_display("hessian")["expr"] == "2*R + 2*(B.T @ P @ B)"
    assert "∇_u = 2⋅R u + 2⋅Bᵀ P (A x + B u)" in d.steps[2].text


def test_double_integrator_instance(d):
    from scipy.linalg import solve_discrete_are

    A = np.array([[1, 0.1], [0, 1]])
    B = np.array([[0.005], [0.1]])
    P = solve_discrete_are(A, B, np.eye(2), np.eye(1))
    np.testing.assert_allclose(d.results["riccati"].extra["instance"], P, rtol=1e-12)
    K = np.array(d.results["gain"].extra["instance"])
    np.testing.assert_allclose(K, [[0.9170745631, 1.6355961850]], rtol=1e-9)
    # the gain stabilizes the double integrator
    assert np.max(np.abs(np.linalg.eigvals(A - B @ K))) < 1


def test_verifies_every_step(d):
    report = d.verify(points=8, seed=3)
    assert report.passed, report
    assert report.points == 9  # 8 random systems and the given one
    wrts = {c.wrt for c in report.checks}
    assert {
        "u* = -K x",
        "substitution",
        "simplification",
        "DARE residual",
        "P",
        "stability",
    } <= wrts
    refs = {c.reference for c in report.checks}
    assert "scipy.linalg.solve_discrete_are" in refs and "jax.grad" in refs


def test_wrong_riccati_formula_fails(monkeypatch):
    import dlsym.sections.lqr._check as check

    real = check.riccati_formula

    def wrong_sign(P, A, B, Q, R, xp=np):
        return real(P, A, B, Q, R, xp) + 2 * xp.swapaxes(A, -1, -2) @ P @ B @ check.gain_formula(
            A, B, R, P, xp
        )  # + instead of -

    monkeypatch.setattr(check, "riccati_formula", wrong_sign)
    report = dlsym.derive(SPEC).verify(points=4)
    assert not report.passed
    assert "DARE residual" in {c.wrt for c in report.checks if not c.passed}


def test_renamed_matrices(tmp_path):
    text = (
        SPEC.read_text()
        .replace(
            "  A: {shape: [n, n], latex: '\\mathbf{A}'}",
            "  F: {shape: [n, n], latex: '\\mathbf{F}'}",
        )
        .replace("\n  A: A\n", "\n  A: F\n")
    )
    path = tmp_path / "renamed.yaml"
    path.write_text(text)
    d = dlsym.derive(path, verify=True, points=4)
    assert d.verification.passed
    assert d.results["gain"].expr == "K = inv(R + B.T @ P @ B) @ B.T @ P @ F"
    assert d.steps[-1].text == "P = Q + Fᵀ P F - Fᵀ P B (R + Bᵀ P B)⁻¹ Bᵀ P F"


def test_cli_latex_compiles_shape(tmp_path):
    result = CliRunner().invoke(
        main, ["derive", "lqr_double_integrator", "--format", "latex", "--no-verify"]
    )
    assert result.exit_code == 0
    assert r"\mathbf{u}^* &= \dlsymfit{-\mathbf{K} \mathbf{x}, \quad" in result.output
    assert r"\begin{tabular}" in result.output


BASE = """\
name: bad
symbols:
  A: {shape: [n, n]}
  B: {shape: [n, k]}
  Q: {shape: [n, n], domain: spd}
  R: {shape: [k, k], domain: spd}
dims: {n: 2, k: 1}
lqr: {A: A, B: B, Q: Q, R: R}
"""


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "  Q: {shape: [n, n], domain: spd}",
            "  Q: {shape: [n, n]}",
            "bad.yaml:5:6: lqr.Q 'Q' must have domain spd (a positive definite cost)",
        ),
        (
            "  R: {shape: [k, k], domain: spd}",
            "  R: {shape: [n, n], domain: spd}",
            "bad.yaml:6:14: lqr.R 'R' has shape ['n', 'n']; with B of shape ['n', 'k'] it must be "
            "['k', 'k']",
        ),
        ("B: B, Q", "B: C, Q", "bad.yaml:8:16: lqr.B: 'C' is not a declared symbol"),
        (
            "R: R}",
            "R: R, S: Q}",
            "bad.yaml:8:31: unknown key 'S' in lqr; allowed: A, B, Q, R, values",
        ),
        (
            "  A: {shape: [n, n]}\n",
            "  A: {shape: [n, n]}\n  K: {shape: [n, n]}\n",
            "bad.yaml:4:3: 'K' is the name the derivation gives to the gain; rename the symbol",
        ),
    ],
)
def test_bad_lqr(tmp_path, old, new, message):
    text = BASE.replace(old, new, 1)
    if "K: {" in new:
        text = text.replace("lqr: {A: A", "lqr: {A: K")
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        dlsym.derive(path)
    assert str(info.value).replace(str(path), "bad.yaml") == message


def _values(tmp_path, A, Q="[[1, 0], [0, 1]]", B="[[0], [1]]"):
    """The exit-2 message for a spec whose lqr.values are A, B, Q (R = [[1]])."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        BASE.replace(
            "lqr: {A: A, B: B, Q: Q, R: R}",
            textwrap.dedent(f"""\
        lqr:
          A: A
          B: B
          Q: Q
          R: R
          values:
            A: {A}
            B: {B}
            Q: {Q}
            R: [[1]]"""),
        )
    )
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    return result.stderr.strip().replace(str(path), "bad.yaml")


def test_bad_values(tmp_path):
    assert _values(tmp_path, "[[1, 0.1], [0, 1]]", Q="[[1, 0], [0, -1]]", B="[[0.005], [0.1]]") == (
        "error: bad.yaml:16:8: lqr.values.Q must be symmetric positive semidefinite"
    )


def test_a_state_cost_on_the_position_alone_is_accepted():
    """Q = diag(1, 0) on the double integrator (the textbook's position-only cost):
    positive semidefinite, and (A, Q) detectable, was refused ("must be symmetric
    positive definite", exit 2). P and K equal SciPy's."""
    from scipy.linalg import solve_discrete_are

    A, B, Q, R = [[1, 1], [0, 1]], [[0], [1]], [[1, 0], [0, 0]], [[0.01]]
    d = dlsym.derive(_instance("position_cost", A, B, Q, R), verify=True)
    assert d.verification.passed, d.verification
    P = solve_discrete_are(*(np.array(m, dtype=float) for m in (A, B, Q, R)))
    np.testing.assert_allclose(d.result_display("riccati")["instance"], P, rtol=1e-10)


def test_a_state_cost_blind_to_an_unstable_mode_gets_the_stabilizing_solution():
    """Q = diag(0, 1) beside A = diag(2, 1), whose unstable mode Q does not see but the
    input reaches: value iteration from P = Q stayed at P[0, 0] = 0, a fixed point that
    does not stabilize, and verification failed against SciPy's 20.6 (exit 1). It starts
    from Q + s I; P, and d.function's in NumPy and JAX, are SciPy's."""
    from scipy.linalg import solve_discrete_are

    A, B, Q, R = [[2, 0], [0, 1]], [[1], [1]], [[0, 0], [0, 1]], [[1]]
    d = dlsym.derive(_instance("blind", A, B, Q, R), verify=True)
    assert d.verification.passed, d.verification
    arrays = [np.array(m, dtype=float) for m in (A, B, Q, R)]
    P = solve_discrete_are(*arrays)
    np.testing.assert_allclose(d.result_display("riccati")["instance"], P, rtol=1e-10)
    for backend in ("numpy", "jax"):
        got = d.function("riccati", backend)(**dict(zip("ABQR", arrays)))
        np.testing.assert_allclose(np.asarray(got), P, rtol=1e-9, err_msg=backend)


def test_a_system_that_cannot_be_stabilized_is_a_located_error(tmp_path):
    # the first state grows by 2x each step and the input cannot reach it
    msg = _values(tmp_path, "[[2, 0], [0, 1]]")
    assert msg.startswith("error: bad.yaml:14:5: scipy.linalg.solve_discrete_are found no ")
    assert msg.endswith(
        "(A, B) is not stabilizable: no input reaches the mode at eigenvalue 2, so the "
        "Riccati equation has no stabilizing solution"
    )


def test_a_stabilizable_system_the_solver_fails_on_is_not_called_unstabilizable(tmp_path):
    """A = diag(1e10, 1), B = [1, 1]: controllable (the PBH test finds every mode reached),
    but SciPy's Schur solver finds no finite solution. It was reported "(A, B) is not
    stabilizable", with SciPy's warnings raw on stderr."""
    msg = _values(tmp_path, "[[1e10, 0], [0, 1]]", B="[[1], [1]]")
    assert msg.endswith(
        "the system is stabilizable and detectable (PBH test), so the solver failed "
        "numerically: its entries span too many orders of magnitude, or its inputs reach "
        "some modes only faintly (rescale the state or the input)"
    ), msg
    assert "Warning" not in msg


def test_a_fast_mode_recursion_settles_at_rounding_and_verifies():
    """A = diag(1000, 1): the Riccati recursion's change hovers at 4e-10 where P ~ 2.6e6,
    above 1e-15 |P| for ever; "did not converge" failed a right P (exit 1)."""
    d = dlsym.derive(
        _instance("fast", [[1e3, 0], [0, 1]], [[1], [1]], [[1, 0], [0, 1]], [[1]]),
        verify=True,
    )
    assert d.verification.passed, d.verification


def test_a_right_p_whose_riccati_terms_dwarf_it_verifies(recwarn):
    """A = diag(1e6, 1): the Riccati right-hand side sums Aᵀ P A ~ 2.6e24 down to P ~
    2.6e12, so float64 keeps four of its digits; the residual and the recursion were held
    to rtol 1e-7 and a right P failed (exit 1), with SciPy's LinAlgWarning printed raw.
    The shown P is the stabilizing solution (the iteration at 80 digits)."""
    d = dlsym.derive(
        _instance("fast", [[1e6, 0], [0, 1]], [[1], [1]], [[1, 0], [0, 1]], [[1]]),
        verify=True,
    )
    assert d.verification.passed, d.verification
    P = np.array(d.results["riccati"].extra["instance"])
    assert P[0, 0] == pytest.approx(2618037224820.9376, rel=1e-9)  # float64 keeps 10 digits
    assert P[1, 1] == pytest.approx(2.6180359887523421, rel=1e-9)
    notes = {c.reference: c.note for c in d.verification.checks if c.kind == "riccati"}
    assert "held to the rounding of the Riccati terms" in notes["scipy DARE"]
    assert not [w for w in recwarn if "scipy" in str(w.filename)]


def test_the_rounding_bound_still_catches_a_wrong_riccati_formula(monkeypatch):
    """The widened bound is the rounding of the terms at each point: on the well-
    conditioned random systems it is far below rtol, and a formula off by 1e-6 fails."""
    from dlsym.sections.lqr import _check

    right = _check.riccati_formula
    monkeypatch.setattr(
        _check, "riccati_formula", lambda P, *a, **k: right(P, *a, **k) * (1 + 1e-6)
    )
    d = dlsym.derive(
        _instance("fast", [[1e6, 0], [0, 1]], [[1], [1]], [[1, 0], [0, 1]], [[1]]),
        verify=True,
    )
    failed = {c.reference for c in d.verification.checks if not c.passed}
    assert {"scipy.linalg.solve_discrete_are", "scipy DARE"} <= failed, failed


def test_nan_in_values_is_a_located_error(tmp_path):
    assert _values(tmp_path, "[[.nan, 0], [0, 1]]") == (
        "error: bad.yaml:14:8: lqr.values.A has an entry that is not a finite number (.nan or "
        ".inf, or past float64's range)"
    )
    # an integer past float64 was an OverflowError (exit 3)
    assert _values(tmp_path, "[[1" + "0" * 400 + ", 0], [0, 1]]").endswith("past float64's range)")


def test_an_ill_conditioned_r_is_checked_against_a_refined_dare():
    """R = 1e12: SciPy's Schur-method P is off by 1e-5 relative (Riccati residual 2.6e6),
    and the right derived P failed against it (exit 1); refined by Newton's method on the
    Riccati equation, the reference is right to rounding (P00 = 8.40000000072e11, the
    iteration at 50 digits)."""
    from dlsym.sections.lqr._check import dare

    A, B = np.array([[1.1, 0.1], [0.0, 0.9]]), np.array([[0.0], [1.0]])
    Q, R = np.eye(2), np.array([[1e12]])
    assert dare(A, B, Q, R)[0, 0] == pytest.approx(8.40000000072e11, rel=1e-11)
    d = dlsym.derive(
        _instance("huge_r", A.tolist(), B.tolist(), Q.tolist(), R.tolist()),
        verify=True,
    )
    assert d.verification.passed, d.verification


@pytest.mark.parametrize(("a", "b", "r"), [(1.0, 1e-8, 1.0), (0.999999, 1.0, 1e12)])
def test_a_slow_closed_loop_is_solved_by_newtons_method_and_verifies(a, b, r):
    """A = 1, B = 1e-8 (closed loop at 1 − 1e-8) and A = 0.999999, R = 1e12: value
    iteration from Q moves P by about 1 per update toward 1e8, so it had not converged
    in 100,000 and verification failed a right P (exit 1), d.function said "(A, B) is
    not stabilizable". Newton's method on the derived equation goes on from there; P is
    the positive root of the scalar DARE b²P² + (r(1 − a²) − b²)P − r = 0."""
    c2, c1, c0 = b * b, r * (1 - a * a) - b * b, -r
    exact = (-c1 + np.sqrt(c1 * c1 - 4 * c2 * c0)) / (2 * c2)
    spec = _instance("slow", [[a]], [[b]], [[1.0]], [[r]])
    spec["dims"] = {"n": 1, "k": 1}
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    for backend in ("numpy", "jax"):
        P = d.function("riccati", backend=backend)(A=[[a]], B=[[b]], Q=[[1.0]], R=[[r]])
        # float64 knows P to ε / (1 − ρ²) relative: 1e-8 at ρ = 1 − 1e-8
        assert float(np.asarray(P)[0, 0]) == pytest.approx(exact, rel=2e-8)


def _instance(name, A, B, Q, R):
    """The spec of a 2-state, 1-input LQR with values A, B, Q, R (nested lists)."""
    return {
        "name": name,
        "symbols": {
            "A": {"shape": ["n", "n"]},
            "B": {"shape": ["n", "k"]},
            "Q": {"shape": ["n", "n"], "domain": "spd"},
            "R": {"shape": ["k", "k"], "domain": "spd"},
        },
        "dims": {"n": 2, "k": 1},
        "lqr": {"A": "A", "B": "B", "Q": "Q", "R": "R", "values": {"A": A, "B": B, "Q": Q, "R": R}},
        "derive": ["riccati", "gain"],
    }


def test_a_reference_p_that_does_not_stabilize_is_a_located_error(monkeypatch):
    """100 states, 2 inputs: SciPy's P left the closed loop at 2.5 and verification
    called the derivation wrong (exit 1). A P whose closed loop is not stable is no
    solution of the given values: a located error, exit 2."""
    from dlsym.sections.lqr import _section

    real = _section.solve_instance
    monkeypatch.setattr(_section, "solve_instance", lambda values: (*real(values)[:2], 2.504))
    with pytest.raises(
        SpecError, match=r"leaves the closed loop unstable \(spectral radius 2.504\)"
    ):
        dlsym.derive(_instance("s", [[1.1, 0], [0, 0.9]], [[1], [1]], [[1, 0], [0, 1]], [[1]]))


def test_an_ill_conditioned_dare_is_held_to_the_references_own_residual():
    """A 50-state, 2-input system (A = I + 0.1 N(0, 1)): SciPy's refined P leaves a
    Riccati residual of 2.8e-4 of P, and the right derived equation's residual there
    was called a disagreement (exit 1). The check is held to twice the reference's own
    residual at that system, and says so; a formula off by 1e-6 still fails on the
    well-conditioned random systems (test above)."""
    rng = np.random.default_rng(5)
    n = 50
    A = np.eye(n) + 0.1 * rng.normal(size=(n, n))
    B = rng.normal(size=(n, 2))
    spec = _instance("ill", A.tolist(), B.tolist(), np.eye(n).tolist(), np.eye(2).tolist())
    spec["dims"] = {"n": n, "k": 2}
    d = dlsym.derive(spec, verify=True)
    assert d.verification.passed, d.verification
    (residual,) = [
        c for c in d.verification.checks if c.reference == "scipy.linalg.solve_discrete_are"
    ]
    assert "held to SciPy's own residual at 1 of 17 systems" in residual.note
