"""The verifier can fail: wrong rules are caught by both independent references. And the
verification kit every section shares: one sampler per domain, one tolerance policy per
dtype, one report, float32 everywhere it is asked for."""

import json
import re

import numpy as np
import pytest
import sympy as sp
from conftest import CATALOG, ROOT, check_against_jax_grad

import dlsym
from dlsym import SpecError
from dlsym.calculus import _rules
from dlsym.codegen._jax import jax_x64
from dlsym.expr import _ops as ops
from dlsym.verify import SAMPLERS, _sampling


def _wrong_tanh(alg, e, g):
    # deliberately wrong: 1 + tanh^2 instead of 1 - tanh^2
    return [(e.args[0], g * (1 + sp.tanh(e.args[0]) ** 2))], "wrong"


def _wrong_matmul(alg, e, g):
    # deliberately wrong: forgets the transpose in grad_v = A^T g
    a, b = e.args
    return [
        (a, alg.outer(g, b)),
        (b, alg.mm(a, g) if alg.shape(a)[0] == alg.shape(a)[1] else alg.mm(alg.T(a), g) * 2),
    ], "wrong"


@pytest.mark.parametrize(
    "spec,rule_for,wrong",
    [
        ("mlp_2layer", sp.tanh, _wrong_tanh),
        ("activation_tanh", sp.tanh, _wrong_tanh),
        ("logistic_regression", ops.matmul, _wrong_matmul),
    ],
)
def test_wrong_rule_is_caught(spec, rule_for, wrong, monkeypatch):
    monkeypatch.setitem(_rules.VJP_RULES, rule_for, wrong)
    report = dlsym.derive(CATALOG / f"{spec}.yaml").verify(points=8)
    assert not report.passed
    failed = {c.reference.split(" at ")[0] for c in report.checks if not c.passed}
    assert any(r.startswith("jax.") for r in failed)
    assert "sympy.diff on explicit entries" in failed
    worst = next(c.worst for c in report.checks if not c.passed)
    assert set(worst) == {"point", "index", "expected", "got"}
    assert worst["expected"] != pytest.approx(worst["got"])


def test_correct_rules_pass_and_errors_are_tiny():
    report = dlsym.derive(CATALOG / "mlp_2layer.yaml").verify(points=32, seed=3)
    assert report.passed and report.points == 32
    assert report.max_abs_error < 1e-12
    assert len(report.checks) == 10  # its text twice; four weights x (jax.grad, sympy.diff)


def test_float32_verification_uses_float32_tolerances():
    report = dlsym.derive(CATALOG / "logistic_regression.yaml").verify(points=8, dtype="float32")
    assert report.passed and report.dtype == "float32"
    assert report.rtol == 1e-4


def test_absent_gpu_is_an_error_not_a_cpu_run():
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    with pytest.raises(dlsym.DeviceError, match="no GPU"):
        dlsym.derive(CATALOG / "ridge_regression.yaml").verify(device="gpu")


def test_nan_reference_is_reported_not_passed(monkeypatch):

    d = dlsym.derive(
        {"name": "bad_domain", "symbols": {"x": {}}, "objective": "log(x)", "wrt": "x"}
    )
    # x is real: log of negative samples is nan; those points are drawn again where the
    # objective is defined (x > 0), and verified there
    report = d.verify(points=16)
    assert report.passed and report.points == 16
    # where no draw finds the domain, the nan points stay and fail, said so
    monkeypatch.setattr(_sampling, "DOMAIN_DRAWS", 0)
    report = d.verify(points=16)
    assert not report.passed
    assert "not finite at" in report.checks[0].note and "domain" in report.checks[0].note


def test_a_log_barrier_is_verified_inside_its_domain():
    """−Σ log(b − A x) is defined only where A x < b, which no symbol's domain says: at
    the drawn points it was nan at 15 of 16 (exit 1 for a right convexity proof)."""
    d = dlsym.derive(
        {
            "name": "log_barrier",
            "symbols": {"A": {"shape": ["m", "n"]}, "b": {"shape": ["m"]}, "x": {"shape": ["n"]}},
            "dims": {"m": 5, "n": 2},
            "objective": "-sum(log(b - A @ x))",
            "wrt": "x",
            "derive": ["gradient", "convexity"],
        }
    )
    assert d.result_display("convexity")["verdict"] == "convex"
    report = d.verify(points=16)
    assert report.passed, report
    assert {c.kind for c in report.checks} >= {"gradient", "convexity"}


def test_sizes_stay_symbolic():
    small = dlsym.derive(CATALOG / "logistic_regression.yaml")
    data = dict(small.spec.doc.data, dims={"m": 2000, "n": 1000})
    big = dlsym.derive(data)
    for kind in ("gradient", "hessian"):
        assert big.results[kind]["w"].expr == small.results[kind]["w"].expr


def test_a_matrix_hessian_is_matrix_form_laid_out_as_jax_hessian():
    d = dlsym.derive(
        {
            "name": "matrix_hessian",
            "symbols": {"W": {"shape": ["a", "b"]}, "x": {"shape": ["b"]}},
            "dims": {"a": 2, "b": 2},
            "objective": "sum(tanh(W @ x))",
            "wrt": "W",
            "derive": ["gradient", "hessian"],
        }
    )
    assert d.results["gradient"]["W"].method == "matrix form"
    assert d.results["hessian"]["W"].method == "matrix form"
    W, x = np.array([[0.3, -1.2], [0.8, 0.1]]), np.array([0.5, -2.0])
    # d2/dW_ij dW_kl sum(tanh(W x)) = -2 t_i (1 - t_i^2) x_j x_l [i = k]
    t = np.tanh(W @ x)
    want = np.einsum("ik,j,l->ijkl", np.diag(-2 * t * (1 - t**2)), x, x)
    np.testing.assert_allclose(d.function("hessian")(W=W, x=x), want, atol=1e-14)
    assert d.verify(points=4).passed


@pytest.mark.parametrize(
    "domain,shape,check",
    [
        ("simplex", (5,), lambda v: np.isclose(v.sum(), 1) and (v >= 0).all()),
        ("onehot", (5,), lambda v: v.sum() == 1 and set(v) <= {0.0, 1.0}),
        ("spd", (4, 4), lambda v: np.allclose(v, v.T) and np.linalg.eigvalsh(v).min() > 0),
        ("orthogonal", (4, 4), lambda v: np.allclose(v.T @ v, np.eye(4))),
        ("unit_interval", (6,), lambda v: ((v > 0) & (v < 1)).all()),
        ("positive", (6,), lambda v: (v > 0).all()),
    ],
)
def test_samplers_respect_domains(domain, shape, check):
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert check(SAMPLERS[domain](rng, shape))


# --- the verification kit: one sampler per domain, one report, float32 everywhere --------

IN_DOMAIN = {
    "real": lambda v: np.isfinite(v).all(),
    "positive": lambda v: (v > 0).all(),
    "nonnegative": lambda v: (v >= 0).all(),
    "unit_interval": lambda v: ((v > 0) & (v < 1)).all(),
    # a vector, or each row of a matrix (soft labels)
    "simplex": lambda v: np.allclose(v.sum(axis=-1), 1) and (v >= 0).all(),
    "onehot": lambda v: np.all(v.sum(axis=-1) == 1) and set(v.ravel()) <= {0.0, 1.0},
    "spd": lambda v: np.allclose(v, v.T) and np.linalg.eigvalsh(v).min() > 0,
    "orthogonal": lambda v: np.allclose(v.T @ v, np.eye(len(v))),
}


def test_every_domain_has_one_sampler_whose_draws_lie_in_it():
    from dlsym.spec._symbols import DOMAINS
    from dlsym.verify import draw, generator
    from dlsym.verify._sampling import labels

    # {index: k} is the one domain with a parameter: its sampler, labels, takes k
    assert set(SAMPLERS) | {"index"} == set(DOMAINS) == set(IN_DOMAIN) | {"index"}
    rng = generator(0)
    drawn = labels(rng, 5, (200,))
    assert drawn.dtype.kind == "i" and set(drawn.tolist()) == set(range(5))
    for domain, spec in DOMAINS.items():
        if domain == "index":
            continue
        for rank in spec.ranks or (0, 1, 2, 3):  # every rank the domain allows (any: up to 3)
            shape = (4,) * rank
            for _ in range(20):
                v = draw(rng, domain, shape)
                assert v.shape == shape and v.dtype == np.float64
                assert IN_DOMAIN[domain](v), (domain, v)


def test_a_simplex_matrix_is_one_distribution_per_row_and_a_joint_table_one_over_its_cells():
    from dlsym.sections.info import _num
    from dlsym.verify import draw, generator

    t = draw(generator(0), "simplex", (3, 4))
    assert t.shape == (3, 4) and np.allclose(t.sum(axis=1), 1) and (t >= 0).all()
    # the information section draws a symbolic joint table as one simplex of its cells
    d = dlsym.derive(
        {
            "name": "joint",
            "distributions": {"p": {"joint": [3, 4], "variables": ["X", "Y"]}},
            "quantities": ["entropy(X, Y)"],
        }
    )
    for point in _num.sample(d.ctx.dists, (), 3, 0):
        assert point["p"].shape == (3, 4) and np.isclose(point["p"].sum(), 1)


def test_draws_are_reproducible_from_the_seed():
    spec = dlsym.derive(CATALOG / "logistic_regression.yaml").spec
    from dlsym.verify import sample_points

    a, b, c = (sample_points(spec, 4, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


# numpy's random generator, created or called: only the kit's sampling module may
RANDOM_CALL = re.compile(
    r"default_rng|RandomState|np\.random|numpy\.random|\brng\.\w+\("
    r"|\.(standard_normal|uniform|dirichlet|integers|normal|choice|permutation|shuffle|rvs)\("
)
RANDOM_ALLOWED = {
    "dlsym/verify/_sampling.py",  # the kit: SAMPLERS, generator, interval
    "dlsym/check/_sealed.py",  # names numpy.random to guard it from the user's code
}


def test_only_the_kit_draws_random_numbers():
    package = ROOT / "dlsym"
    offenders = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if str(path.relative_to(ROOT)) not in RANDOM_ALLOWED
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if RANDOM_CALL.search(line)
    ]
    assert not offenders, "draw through dlsym.verify (SAMPLERS, draw, interval):\n" + "\n".join(
        offenders
    )
    # the pattern does find the kit's own calls
    assert RANDOM_CALL.search((package / "verify" / "_sampling.py").read_text())


def test_no_section_sets_its_own_comparison_tolerance():
    """rtol/atol come from the kit's policy (or the spec); a section may only name a
    numeric solver's accuracy, which goes through ``solver_tolerance``."""
    # a literal given as, or scaling, a comparison's rtol/atol; float32-sized literals
    loose = re.compile(
        r"\b(rtol|atol)\s*=\s*[0-9.]|\b(rtol|atol)\s*\*\s*[0-9.]|[0-9.]\s*\*\s*(rtol|atol)\b"
        r"|\b1e-0?[45]\b"
    )
    allowed = {  # numeric solvers' own accuracies, documented where they are
        "dlsym/sections/info/_argmin.py": ("TOL = 1e-5  # a BFGS minimizer",),
        "dlsym/sections/constrained/_num.py": ("brentq(safe, a, b, xtol=1e-15, rtol=4 *",),
        # the steps of convexity's second difference (fractions of a point), no tolerance
        "dlsym/sections/calculus/_verify.py": ("BEND_STEPS = (1e-3, 1e-5, 1e-7)",),
    }
    found = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in sorted((ROOT / "dlsym" / "sections").rglob("*.py"))
        for line in path.read_text().splitlines()
        if loose.search(line)
        and not any(ok in line for ok in allowed.get(str(path.relative_to(ROOT)), ()))
    ]
    assert not found, "\n".join(found)


FLOAT32_SPECS = {  # one spec per section
    "calculus": "logistic_regression",
    "constrained": "equality_qp",
    "info": "cross_entropy_decomposition",
    "mdp": "mdp_small_stochastic",
    "lqr": "lqr_double_integrator",
}


@pytest.mark.parametrize("section", sorted(FLOAT32_SPECS))
def test_float32_computes_the_derived_values_in_float32(section):
    d = dlsym.derive(CATALOG / f"{FLOAT32_SPECS[section]}.yaml")
    report = d.verify(points=4, dtype="float32")
    assert report.passed and report.dtype == "float32" and report.rtol == 1e-4
    assert "(float32, " in report.reference
    derived = [c for c in report.checks if c.dtype]
    assert derived and {c.dtype for c in derived} == {"float32"}
    # and every reference that ran in float64 (SciPy's) is named as such
    f64 = sorted({c.reference for c in report.checks if c.reference_dtype == "float64"})
    assert all(r.split(" at ")[0].split("; ")[0] in report.reference for r in f64)
    if f64:
        assert " in float64)" in report.reference
    float64 = d.verify(points=4)
    assert {c.dtype for c in float64.checks if c.dtype} == {"float64"}
    assert report.reference != float64.reference or not f64


def test_derive_equality_qp_in_float32_through_the_cli():
    from click.testing import CliRunner

    from dlsym._cli import main

    spec = str(CATALOG / "equality_qp.yaml")
    result = CliRunner().invoke(main, ["derive", spec, "--dtype", "float32", "--format", "json"])
    assert result.exit_code == 0, result.output
    v = json.loads(result.output)["verification"]
    assert v["passed"] and v["dtype"] == "float32" and v["rtol"] == 1e-4
    kinds = {c["kind"]: c for c in v["checks"]}
    # the derived KKT conditions and closed forms in float32; SLSQP in float64, said so
    for kind in ("stationarity", "KKT residuals", "solution", "multipliers"):
        assert kinds[kind]["dtype"] == "float32", kind
    assert kinds["stationarity"]["reference_dtype"] == "float32"  # jax.grad of L
    assert kinds["solution"]["reference_dtype"] == "float64"  # SLSQP
    assert "(float32, cpu; scipy SLSQP (4 starts) in float64)" in v["reference"]
    assert "rtol=0.0001, atol=1e-05" in v["tolerance_note"]


def test_solver_comparisons_keep_their_accuracy_in_float64():
    from dlsym.verify import TOLERANCES, solver_tolerance

    assert solver_tolerance("float64", 1e-6, 1e-7) == (1e-6, 1e-7)
    assert solver_tolerance("float32", 1e-6, 1e-7) == TOLERANCES["float32"]


def test_report_names_what_ran_in_another_dtype():
    from dlsym.verify import compare, report

    a32, a64 = np.ones((2, 3), np.float32), np.ones((2, 3))
    checks = [
        compare("gradient", "w", "jax.grad", a32, a32, 1e-4, 1e-5),
        compare("value", "", "scipy thing at n=3", a32, a64, 1e-4, 1e-5),
        compare("other", "", "sympy", a64, a64, 1e-4, 1e-5),
    ]
    assert [(c.dtype, c.reference_dtype) for c in checks] == [
        ("float32", "float32"),
        ("float32", "float64"),
        ("float64", "float64"),
    ]
    r = report(checks, 2, "float32", "cpu", 1e-4, 1e-5)
    assert r.reference == (
        "jax.grad and scipy thing and sympy "
        "(float32, cpu; scipy thing and sympy in float64; derived other in float64)"
    )
    assert (
        report(checks[:1], 2, "float32", "cpu", 1e-4, 1e-5).reference == "jax.grad (float32, cpu)"
    )
    assert (
        report(checks, 2, "float32", "cpu", 1e-4, 1e-5, sort_references=True).reference.split(" (")[
            0
        ]
        == "jax.grad and scipy thing and sympy"
    )


MASKED_SOFTMAX = {
    "name": "masked_softmax",
    "symbols": {
        "x": {"shape": ["n"]},
        "m": {"shape": ["n"], "domain": "unit_interval"},
        "g": {"shape": ["n"]},
    },
    "dims": {"n": 2},
    "objective": "sum(g * softmax(where(m > 0.5, x, -1e9)))",
    "wrt": ["x"],
}


def test_points_where_the_explicit_entries_overflow_are_left_out():
    """A softmax of scores masked with -1e9 along a whole row is 0/0 as explicit entries
    (the generated code shifts by the max and stays finite): those points check
    nothing, and the report says how many were left out instead of failing."""
    import warnings

    d = dlsym.derive(MASKED_SOFTMAX)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the 0/0 of the explicit entries
        report = d.verify(points=4, seed=6)
    explicit = [c for c in report.checks if c.reference.startswith("sympy.diff")]
    assert report.passed and len(explicit) == 1
    assert explicit[0].note == "2 of 3 points left out: the explicit entries overflow there"


def test_a_dim_used_only_as_a_number_keeps_its_value_in_the_explicit_check():
    """k * sum(x**2) with k a dim no symbol is sized by: the cross-check shrinks the dims
    that size symbols (n to 3), not k, which the derived code holds at its value 4."""
    d = dlsym.derive(
        {
            "name": "count",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 5, "k": 4},
            "objective": "k * sum(x**2)",
            "wrt": "x",
            "derive": ["gradient", "hessian"],
        }
    )
    report = d.verify(points=4)
    explicit = [c for c in report.checks if c.reference.startswith("sympy.diff")]
    assert report.passed and len(explicit) == 2, report
    assert explicit[0].reference == "sympy.diff on explicit entries at n=3, k=4"
    np.testing.assert_allclose(d.function("gradient")(x=np.ones(5)), np.full(5, 8.0))


def test_the_explicit_cross_check_has_a_time_budget(monkeypatch):
    """sympy.diff on explicit entries stops at its budget (it can take minutes on a
    batched attention); autodiff still checks every result."""
    from dlsym.sections.calculus import _verify

    d = dlsym.derive(CATALOG / "batched_mlp.yaml")
    monkeypatch.setattr(_verify, "EXPLICIT_SECONDS_EACH", 0.0)
    report = d.verify(points=4)
    assert report.passed
    assert {c.reference for c in report.checks} == {"jax.grad", "its text in jax.numpy"}
    assert {c.wrt for c in report.checks if c.kind == "gradient"} == set(d.spec.wrt)


def test_the_explicit_derivative_is_sympy_diff_with_shared_parts_remembered():
    """Explicit entries share subexpressions (a softmax's denominator); their derivative
    remembers each shared part's, and equals sympy.diff entry by entry."""
    from dlsym.expr._explicit import jacobian_entries

    x = sp.symbols("x0:3", real=True)
    den = sum(sp.exp(v) for v in x)
    values = np.array(
        [sp.exp(v) / den * sp.tanh(v * x[0]) + sp.Max(v, x[1]) + sp.Abs(v) for v in x],
        dtype=object,
    )
    got = jacobian_entries(values, np.array(x, dtype=object))
    point = {v: c for v, c in zip(x, (0.3, -1.2, 0.7))}
    for i in range(3):
        for j in range(3):
            want = sp.diff(values[i], x[j]).replace(sp.DiracDelta, lambda *a: 0)
            assert abs(float(got[i, j].subs(point)) - float(want.subs(point))) < 1e-12


def test_a_simplex_or_onehot_wrt_symbol_has_its_ambient_gradient():
    """The gradient with respect to a vector on the simplex (or one-hot) is the gradient
    of the formula as written in R^n, sum(p) = 1 not substituted first: ∇ sum(p) is 1,
    not 0, as jax.grad gives it (and as a projected or mirror step uses it). The domain
    only says where the points are drawn."""
    d = dlsym.derive(
        {
            "name": "simplex_wrt",
            "symbols": {
                "p": {"shape": ["n"], "domain": "simplex"},
                "y": {"shape": ["n"], "domain": "onehot"},
            },
            "dims": {"n": 4},
            "objective": "sum(p) + sum(y * log(p)) + sum(y)",
            "wrt": ["p", "y"],
        }
    )
    p, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 0.0])
    g = d.function("gradient")(p=p, y=y)
    np.testing.assert_allclose(g["p"], 1 + y / p, rtol=1e-14)
    np.testing.assert_allclose(g["y"], 1 + np.log(p), rtol=1e-14)
    assert d.verify(points=8).passed


def test_a_simplex_wrt_symbol_has_its_ambient_hessian_and_newton_step():
    """The Hessian of log(sum(p)) on the simplex is -11ᵀ/sum(p)² = -11ᵀ there, as
    jax.hessian gives it: the gradient it differentiates keeps sum(p) (folded to 1
    first, the Hessian was 0, and verification failed)."""
    d = dlsym.derive(
        {
            "name": "simplex_hessian",
            "symbols": {"p": {"shape": ["n"], "domain": "simplex"}},
            "dims": {"n": 3},
            "objective": "log(sum(p)) + sum(p**2)",
            "wrt": "p",
            "derive": ["gradient", "hessian", "newton_step"],
        }
    )
    p = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(d.function("hessian")(p=p), 2 * np.eye(3) - 1, rtol=1e-14)
    step = d.function("newton_step")(p=p)
    np.testing.assert_allclose(step, -np.linalg.solve(2 * np.eye(3) - 1, 2 * p + 1), rtol=1e-12)
    assert d.verify(points=8).passed


def test_an_spd_wrt_symbol_has_the_ambient_gradient_of_the_formula_as_written():
    """S = Sᵀ at every spd point, but ∇_S xᵀSᵀy is y xᵀ and ∇_S xᵀSy is x yᵀ: Sᵀ is not
    folded to S before differentiating (it was, giving x yᵀ for both, and verification
    passed, its references built from the folded form). Now as jax.grad of the text."""
    import jax.numpy as jnp

    d = dlsym.derive(
        {
            "name": "spd_wrt",
            "symbols": {
                "x": {"shape": ["n"]},
                "y": {"shape": ["n"]},
                "S": {"shape": ["n", "n"], "domain": "spd"},
            },
            "dims": {"n": 3},
            "objective": "x @ S.T @ y + sum(inv(S).T @ x)",
            "wrt": "S",
        }
    )
    rng = np.random.default_rng(1)
    x, y, B = rng.normal(size=3), rng.normal(size=3), rng.normal(size=(3, 3))
    S = B @ B.T / 3 + np.eye(3)
    got = d.function("gradient")(x=x, y=y, S=S)
    Si = np.linalg.inv(S)
    np.testing.assert_allclose(got, np.outer(y, x) - Si @ np.outer(x, np.ones(3)) @ Si, rtol=1e-12)
    point = {"x": x, "y": y, "S": S}
    check_against_jax_grad(
        d, lambda x, y, S: x @ S.T @ y + jnp.sum(jnp.linalg.inv(S).T @ x), point, ["S"]
    )


def test_a_parse_that_changes_the_function_fails_against_its_text(monkeypatch):
    """The objective as dlsym parsed it is checked against its text read straight into
    jax.numpy. A parse that folds ``x**0`` to a shapeless 1 again (``sum(x**0)`` read as
    1, not n) passes every autodiff check, which differentiate that same parse: only
    this one fails."""
    from dlsym.expr import _parse

    spec = {
        "name": "folded",
        "symbols": {"w": {}, "x": {"shape": ["n"]}},
        "dims": {"n": 3},
        "objective": "w * sum(x**0) + sum(w * x**2)",
        "wrt": "w",
    }
    report = dlsym.derive(spec).verify(points=4)
    assert report.passed
    assert "its text in jax.numpy" in {c.reference for c in report.checks}
    monkeypatch.setattr(_parse._Builder, "shaped", lambda self, shape, out: out)
    report = dlsym.derive(spec).verify(points=4)
    assert not report.passed
    failed = [(c.kind, c.wrt, c.reference) for c in report.checks if not c.passed]
    assert failed == [
        ("objective", "", "its text in jax.numpy"),  # what the references differentiate
        ("objective", "d.function", "its text in jax.numpy"),  # the function a user gets
    ]


X = np.arange(1.0, 13.0).reshape(3, 4) / 7 - 0.8
V = np.array([0.3, -1.2, 2.0])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sum(X, axis=0, keepdims=True) + x[:, None]", X.sum(0, keepdims=True) + V[:, None]),
        ("softmax(X, 0)[1:, ::2]", (np.exp(X) / np.exp(X).sum(0))[1:, ::2]),
        (
            "x[::-1] * X[::-1, 1] + X[::-2, 3] @ x[-1:0:-1]",
            V[::-1] * X[::-1, 1] + X[::-2, 3] @ V[-1:0:-1],
        ),
        ("logsumexp(X, axis=-1)", np.log(np.exp(X).sum(-1))),
        ("X.T @ x - 2**-1", X.T @ V - 0.5),
        ("norm(X) + norm(X, axis=1)", np.linalg.norm(X) + np.linalg.norm(X, axis=1)),
        ("var(X, 1) + std(x)", X.var(1) + V.std()),
        ("where(X > 0, X, 0) + relu(-X)", np.abs(X)),
        ("reshape(X, (n, -1))[..., 0]", X.reshape(3, -1)[..., 0]),
        (
            "einsum('ij,i->j', X, x) + take_along_axis(X, ones((n, 1)), 1)[:, 0] @ x",
            np.einsum("ij,i->j", X, V) + X[:, 1] @ V,
        ),  # fmt: skip
        ("pad(x, (1, 2)) * 1", np.pad(V, (1, 2))),
        ("concatenate([x, x[:2]])", np.concatenate([V, V[:2]])),
        ("heaviside(x - 2, 1/2) + clip(x, -1, 1)", np.heaviside(V - 2, 0.5) + np.clip(V, -1, 1)),
    ],
)
def test_the_text_reader_means_what_numpy_means(text, expected):
    from dlsym.verify import text_reader

    jax_x64()  # float64, as verification reads it (alone, this test ran in float32)
    got = text_reader({"t": text}, "t", ["X", "x"], {"n": 3})(X, V)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-12)


def test_the_text_reader_knows_every_function_or_says_it_does_not():
    from dlsym.expr._functions import FUNCTIONS
    from dlsym.verify._text import _CALLS, NOT_READ

    assert set(_CALLS) | NOT_READ == set(FUNCTIONS) and not set(_CALLS) & NOT_READ


def test_the_text_reader_reads_log_sigmoid_forms_carefully():
    """log(p) and log(1 - p) of a define p = sigmoid(z), log(1 + exp(z)) and
    log(sum(exp(z))) are read as softplus and logsumexp (exact), as dlsym's own reference
    computes them: as written they are log(0), or lose all digits to 1 - (1 - 1e-13)."""
    from scipy.special import logsumexp

    from dlsym.verify import text_reader

    texts = {
        "p": "sigmoid(30 * x)",
        "t": "log(p) + log(1 - p) + log(1 + exp(x)) + log(sum(exp(1000 * x))) + 1 - p",
    }
    x = np.array([-40.0, 1.0, 2.5])
    jax_x64()
    got = np.asarray(text_reader(texts, "t", ["x"], {})(x))
    want = (
        -np.logaddexp(0, -30 * x)
        - np.logaddexp(0, 30 * x)
        + np.logaddexp(0, x)
        + logsumexp(1000 * x)
        + 1 / (1 + np.exp(30 * x))
    )
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize(
    "objective, derive",
    [
        ("std(x) + sum(relu(x))", ["gradient"]),  # equal entries: std's gradient is 0/0
        ("sum(relu(x)) + sum(1/x)", ["gradient"]),  # x = 0: a pole
        ("sum(abs(x)**1.5)", ["gradient", "convexity"]),  # x = 0: the Hessian is infinite
    ],
)
def test_a_kink_point_on_a_singularity_is_drawn_again(objective, derive):
    """Half the points sit on kinks (0, ties) for the kink convention's sake; one that
    also sits on a singularity failed every check. Such points are drawn again off the
    kinks; the kink points left keep checking the convention (the sabotage tests of
    tests/test_piecewise.py still fail)."""
    d = dlsym.derive(
        {
            "name": "singular_kinks",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": objective,
            "wrt": "x",
            "derive": derive,
        }
    )
    report = d.verify(points=16)
    assert report.passed, report


def test_values_past_float64_are_not_compared_and_never_pass_a_wrong_result(tmp_path):
    """sum(exp(1000 x)): at the points where the objective, jax.grad and the result all
    overflow (past 1.8e308) nothing can be compared; the other points are, and say how
    many were skipped (it was exit 1, 'check the symbols' domains'). A wrong gradient
    still fails there. 1e308 ‖x‖², whose gradient overflows at every point, cannot be
    verified in float64 at all: a located error."""
    import dataclasses

    import sympy as sp
    from click.testing import CliRunner

    from dlsym._cli import main

    spec = {
        "name": "big",
        "symbols": {"x": {"shape": [3]}},
        "objective": "sum(exp(1000*x))",
        "wrt": "x",
        "derive": ["gradient", "hessian"],
    }
    d = dlsym.derive(spec)
    report = d.verify()
    assert report.passed, report
    grad = next(c for c in report.checks if c.reference == "jax.grad")
    assert "points overflow float64 (past 1.8e+308) on both sides and are not compared" in grad.note
    assert grad.points < 16
    # the summary says so too: it read "16 points" where a check compared fewer
    from dlsym.printing._render import _compared

    most = max(c.points for c in report.checks)
    assert most < 16 and _compared(report) == (
        f"16 points drawn, {most} compared (the checks' notes say why)"
    )
    r = d.results["gradient"]["x"]
    d.results["gradient"]["x"] = dataclasses.replace(r, expr=r.expr * sp.Rational(999, 1000))
    d._functions.clear()
    assert not d.verify().passed
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\nsymbols: {x: {shape: [3]}}\nobjective: 1e308*sum(x**2)\nwrt: x\n")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:3:12: verification cannot run in float64" in result.stderr


def test_a_reference_not_finite_at_every_point_is_verification_that_cannot_run(tmp_path):
    """tanh(1e309 x): the gradient 1e309 (1 − tanh²) is inf · 0 in float64 at every
    point, in jax.grad too; nothing was compared, so nothing was found wrong: exit 2 at
    the objective (a SpecError), not exit 1."""
    d = dlsym.derive(
        {
            "name": "steep",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "sum(tanh(1e308 * x * 10))",
            "wrt": "x",
        }
    )
    with pytest.raises(SpecError, match="verification cannot run in float64: gradient: the ref"):
        d.verify(points=16)


def test_a_result_that_is_0_wherever_it_does_not_overflow_compares_nothing():
    """x**100000 underflows to 0 below |x| = 1 and overflows above: every compared value
    was 0 on both sides, "passed, error 0". Nothing was compared: exit 2, said."""
    d = dlsym.derive({"name": "steep", "symbols": {"x": {}}, "objective": "x**100000", "wrt": "x"})
    with pytest.raises(SpecError, match="gradient: the reference and the result are 0 at every"):
        d.verify(points=16)
    # a derivative that is 0 on part of the points and finite elsewhere still compares
    d = dlsym.derive(
        {"name": "half", "symbols": {"x": {}}, "objective": "relu(x)**3 + exp(1000 * x)",
         "wrt": "x"}
    )  # fmt: skip
    assert d.verify(points=16).passed


def test_a_dim_past_two_to_the_53_in_the_code_is_a_double():
    """n = 2⁶², read by no axis: the code bound n = 4611686018427387904, and 2 n x is the
    int 2⁶³ to JAX, an OverflowError (exit 3). Past 2⁵³ a dim is written as a double."""
    d = dlsym.derive(
        {
            "name": "huge_dim",
            "symbols": {"x": {}},
            "dims": {"n": 2**62},
            "objective": "x**2 * n",
            "wrt": "x",
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    for backend in ("numpy", "jax"):
        got = d.function("gradient", backend=backend)(x=np.array(1.5))
        assert float(got) == pytest.approx(3.0 * 2.0**62, rel=1e-15)
