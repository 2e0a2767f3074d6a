"""Deep and long specs: they derive, their results are right, and where a spec is past
what the derivation can write out, the error names the define. No timing here
(bench/derive_scaling.py measures the time against depth and length)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from conftest import ROOT, wide_weights_spec

import dlsym
from dlsym.calculus._derive import MAX_EXPANDED_NESTING, MAX_SHOWN_NESTING
from dlsym.codegen._jax import jax_x64
from dlsym.expr._algebra import nesting

sys.path.insert(0, str(ROOT / "bench"))
from derive_scaling import chain, mlp, tanh_chain  # noqa: E402  (the benchmark's own specs)


def test_a_sixteen_layer_mlp_derives_and_equals_jax_grad():
    d = dlsym.derive(mlp(16))
    assert all(r.method == "matrix form" for r in d.results["gradient"].values())
    report = d.verify(points=4)
    assert report.passed
    # too deep for the explicit-entry cross-check: autodiff (and the text) check it
    assert {c.reference for c in report.checks} == {"jax.grad", "its text in jax.numpy"}
    rng = np.random.default_rng(0)
    point = {"x": rng.normal(size=3), **{f"W{i}": rng.normal(size=(3, 3)) for i in range(16)}}
    got = d.function("gradient")(**point)

    def loss(W0, x):
        h = x
        for i in range(16):
            h = jnp.tanh((W0 if i == 0 else point[f"W{i}"]) @ h)
        return jnp.sum(h**2)

    jax_x64()
    want = jax.grad(loss, (0, 1))(point["W0"], point["x"])
    np.testing.assert_allclose(got["W0"], want[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got["x"], want[1], rtol=1e-10, atol=1e-13)
    # each adjoint step in the intermediates, then substituted (16 products deep at h0);
    # the gradient written out in the inputs nests 48 deep: left out of the steps (too
    # deep to read), while the result keeps it
    adjoints = [s for s in d.steps if s.title.startswith("Adjoint of")]
    assert len(adjoints) == 16 and len(adjoints[-1].lines[0].rhs) == 2
    (grad_x,) = [s for s in d.steps if s.title == "Gradient with respect to x"]
    assert len(grad_x.lines[0].rhs) == 2
    assert nesting(d.results["gradient"]["x"].expr) > MAX_SHOWN_NESTING


def test_a_chain_of_a_thousand_defines():
    d = dlsym.derive(chain(1000))
    # a_i = a_{i-1}/2 + x: da_999/dx = 2/2^999 + sum_{k<999} 1/2^k
    slope = 2 / 2**999 + sum(1 / 2**k for k in range(999))
    x = 0.7
    a = 2 * x + 1
    for _ in range(999):
        a = a / 2 + x
    np.testing.assert_allclose(d.function("gradient")(x=x), 2 * a * slope, rtol=1e-12)
    assert d.verify(points=3).passed


def test_sums_whose_hashes_collide_are_told_apart():
    """SymPy hashes 1/2**3 and 1/2**64 alike (Python ints hash modulo 2**61 - 1), and
    the derivation's memos are keyed by object: sums that collide get their own
    values, and the chain of halvings above, whose coefficients are exactly these, is
    right at every define."""
    import sympy as sp

    from dlsym.expr._algebra import Algebra
    from dlsym.expr._ops import ShapeTable

    x, v = sp.Symbol("x"), sp.Symbol("v")
    a, b = 2 * x + sp.Rational(1, 2**3), 2 * x + sp.Rational(1, 2**64)
    assert hash(a) == hash(b) and a != b
    alg = Algebra(ShapeTable({x: (), v: (sp.Integer(3),)}))
    assert alg.tidy(a) == a and alg.tidy(b) == b
    assert alg.shape(a * v) == (3,) and alg.shape(b) == ()
    # an equal expression built again is the same value
    assert alg.tidy(2 * x + sp.Rational(1, 2**64)) == b


def test_a_chain_nested_past_the_limit_is_a_located_error(tmp_path):
    n = MAX_EXPANDED_NESTING + 1
    lines = ["a0: W @ x"] + [f"a{i}: W @ a{i - 1} + x" for i in range(1, n)]
    spec = tmp_path / "deep.yaml"
    spec.write_text(
        "name: deep\nsymbols: {x: {shape: [n]}, W: {shape: [n, n]}}\ndims: {n: 2}\n"
        "define:\n" + "".join(f"  {line}\n" for line in lines) + f"objective: sum(a{n - 1})\n"
        "wrt: x\n"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "derive", str(spec)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"deep.yaml:{n + 4}:3: define 'a{n - 1}' nests {n} functions" in out.stderr
    assert f"stops at {MAX_EXPANDED_NESTING} levels" in out.stderr


def test_the_scaling_benchmark_runs_at_small_sizes():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "derive_scaling.py"), "--smoke"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "MLP depth" in out.stdout and "define chain" in out.stdout


LOGISTIC = {
    "name": "logistic",
    "symbols": {
        "X": {"shape": ["m", "n"]},
        "y": {"shape": ["m"], "domain": "unit_interval"},
        "w": {"shape": ["n"]},
    },
    "dims": {"m": 60, "n": 30},
    "define": {"p": "sigmoid(50 * X @ w)"},
    "objective": "-mean(y * log(p) + (1 - y) * log(1 - p))",
    "wrt": "w",
    "derive": ["gradient", "hessian"],
}


def test_the_autodiff_reference_is_the_objective_written_stably():
    """|50 X w| reaches hundreds: log(1 - sigmoid) is log(0) as written; the reference
    differentiates -softplus instead, and verification passes (it failed: not finite)."""
    report = dlsym.derive(LOGISTIC).verify(points=4)
    assert report.passed, report
    assert "the objective itself" not in {c.reference for c in report.checks}
    # the text read a second time reads log(1 - p) of p = sigmoid(z) as -softplus(z) too
    texts = [c for c in report.checks if c.reference == "its text in jax.numpy"]
    assert [c.wrt for c in texts] == ["", "d.function"]
    assert all(c.passed and c.points == 4 for c in texts)


def test_verification_at_large_dims_runs_at_smaller_sizes_and_says_so(monkeypatch):
    from dlsym.sections.calculus import _verify

    # the budget of entries per point: at 200, m and n are capped at 7 (halving from 60)
    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 200)
    d = dlsym.derive(LOGISTIC)
    sizes, at = _verify.verification_sizes(d)
    assert {str(k): v for k, v in sizes.items()} == {"m": 7, "n": 7} and at == " at m=7, n=7"
    report = d.verify(points=4)
    assert report.passed, report
    refs = [c.reference for c in report.checks]
    assert "jax.grad at m=7, n=7" in refs and "jax.hessian at m=7, n=7" in refs
    # within the budget, the spec's own sizes
    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 10**6)
    assert _verify.verification_sizes(d) == (dict(d.spec.dim_values), "")


def test_a_size_that_is_a_power_of_a_dim_is_read_off_the_arrays_at_smaller_sizes(monkeypatch):
    """x: [n*n] at n = 8000 verified at n = 1000 failed (exit 2, JAX's broadcasting
    error): the generated function read n off x's 10⁶ entries only for linear sizes and
    took the spec's n for the result's shape. n*n and n*(n + 1) are solved for."""
    from dlsym.expr._shapes import solve_sizes
    from dlsym.sections.calculus import _verify

    k = sp.Symbol("n")
    assert solve_sizes([(k * k, 10**6)]) == {k: 1000}
    assert solve_sizes([(k * (k + 1) / 2, 55)]) == {k: 10}
    assert solve_sizes([(k * k, 10)]) == {}  # no integer: left to the checks after
    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 200)
    d = dlsym.derive(
        {
            "name": "square",
            "symbols": {"x": {"shape": ["n*n"]}, "y": {"shape": ["n*(n + 1)"]}},
            "dims": {"n": 60},
            "objective": "sum(x**2) + sum(y**3)",
            "wrt": ["x", "y"],
        }
    )
    report = d.verify(points=4)
    assert report.passed, report
    assert any(c.reference.startswith("jax.grad at n=") for c in report.checks)


def test_a_wrong_hessian_still_fails_at_the_smaller_sizes(monkeypatch):
    from dlsym.sections.calculus import _verify

    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 200)
    d = dlsym.derive(LOGISTIC)
    real = d.numeric_function  # what verification evaluates

    def doubled(kind, keys, backend="numpy"):
        f = real(kind, keys, backend)
        return (lambda *a, **k: 2 * f(*a, **k)) if kind == "hessian" else f

    monkeypatch.setattr(d, "numeric_function", doubled)
    report = d.verify(points=4)
    failed = {c.reference for c in report.checks if not c.passed}
    assert "jax.hessian at m=7, n=7" in failed


def test_where_the_smaller_sizes_break_the_spec_verification_runs_at_its_own(monkeypatch):
    from dlsym.sections.calculus import _verify

    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 200)
    real, seen = _verify._verify_at, []

    def fussy(derivation, *args):
        sizes, at = args[-2:]
        seen.append(at)
        if at:  # as a slice x[0:5] of a vector capped below 5 entries would
            raise IndexError("index 4 is out of bounds")
        return real(derivation, *args)

    monkeypatch.setattr(_verify, "_verify_at", fussy)
    report = dlsym.derive(LOGISTIC).verify(points=2)
    assert report.passed and seen == [" at m=7, n=7", ""]
    assert "jax.grad" in {c.reference for c in report.checks}


def test_capped_sizes_never_cut_an_axis_below_an_index_into_it(monkeypatch):
    from dlsym.sections.calculus import _verify

    monkeypatch.setattr(_verify, "VERIFY_MAX_ENTRIES", 200)
    spec = dict(LOGISTIC, objective="-mean(y * log(p) + (1 - y) * log(1 - p)) + w[11]**2")
    d = dlsym.derive(spec)
    sizes, at = _verify.verification_sizes(d)
    # halving from 60 would reach 7; w[11] needs n >= 12
    assert {str(k): v for k, v in sizes.items()} == {"m": 12, "n": 12}
    assert d.verify(points=2).passed


def test_a_product_of_one_sum_per_define_is_not_multiplied_out(monkeypatch):
    # a_i = tanh(a_{i-1}) * x: the adjoint of a_0 is a product of one (1 - tanh^2) per
    # define. It nests 2 deep, but cancel and factor multiply it out first: 2^k terms.
    import sympy as sp

    from dlsym.calculus import _simplify
    from dlsym.calculus._simplify import MAX_EXPANDED_TERMS, expanded_terms
    from dlsym.expr._algebra import Algebra
    from dlsym.expr._ops import ShapeTable

    a = sp.symbols("a0:12")
    x = sp.Symbol("x")
    e = sp.Mul(*[1 - sp.tanh(ai) ** 2 for ai in a]) * x
    assert expanded_terms(e) == 2**12 > MAX_EXPANDED_TERMS
    assert expanded_terms((x + 1) ** 3 * (x + a[0])) == 16

    def refuse(e, *args, **kwargs):
        raise AssertionError("multiplied out")

    monkeypatch.setattr(_simplify.sp, "cancel", refuse)
    monkeypatch.setattr(_simplify.sp, "factor", refuse)
    alg = Algebra(ShapeTable({s: () for s in (*a, x)}))
    out = _simplify.simplify(alg, e)
    assert sp.simplify(out - e) == 0


def test_a_chain_of_nonlinear_defines_derives_and_verifies():
    # 40 defines a_i = tanh(a_{i-1}) * x: the gradient took 30 s at 50 defines before the
    # guard above and a cheaper size test (count_ops walked the whole tree)
    spec = {
        "name": "nonlinear_chain",
        "symbols": {"x": {}},
        "define": {"a0": "tanh(x)", **{f"a{i}": f"tanh(a{i - 1}) * x" for i in range(1, 40)}},
        "objective": "a39",
        "wrt": "x",
    }
    d = dlsym.derive(spec)
    g = d.function("gradient")

    def f(x):
        a = jnp.tanh(x)
        for _ in range(1, 40):
            a = jnp.tanh(a) * x
        return a

    jax_x64()
    for x in (0.3, 0.9, 1.7):
        np.testing.assert_allclose(g(x=x), jax.grad(f)(x), rtol=1e-12)


def test_a_chain_of_thirty_nonlinear_defines_verifies_visiting_each_part_once(monkeypatch):
    """a_i = tanh(a_(i−1)) w + x, 30 deep: its verification ran past 200 s (round 33; the
    spec's budget stops it at 50 s), walking its written-out gradient as a tree, in which
    each layer appears twice per layer above (tanh and 1 − tanh²). Stabilizing the
    code visits each distinct part a few times, not once per path."""
    from dlsym.codegen import _stable

    visits = []
    stabilized = _stable._stabilized
    monkeypatch.setattr(
        _stable, "_stabilized", lambda e, memo: visits.append(e) or stabilized(e, memo)
    )
    d = dlsym.derive(tanh_chain(30), verify=True)
    assert d.verification.passed, d.verification
    assert 0 < len(visits) < 20_000  # 1631 here; the tree walk made 53832


def test_a_chain_of_matrix_products_derives_and_its_code_compiles():
    # a_i = A @ a_{i-1} + b, 120 defines: mm took factor_terms of the whole chain at each
    # step (quadratic), and the generated reference nested 120 parentheses deep, which
    # Python's parser refuses past 200
    n_defines = 120
    spec = {
        "name": "matrix_chain",
        "symbols": {"x": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}, "b": {"shape": ["n"]}},
        "dims": {"n": 3},
        "define": {
            "a0": "A @ x + b",
            **{f"a{i}": f"A @ a{i - 1} + b" for i in range(1, n_defines)},
        },
        "objective": f"sum(a{n_defines - 1}**2)",
        "wrt": ["x", "A"],
    }
    d = dlsym.derive(spec)
    jax_x64()
    rng = np.random.default_rng(0)
    A = 0.3 * rng.standard_normal((3, 3))
    x, b = rng.standard_normal(3), rng.standard_normal(3)

    def f(x, A):
        a = A @ x + b
        for _ in range(1, n_defines):
            a = A @ a + b
        return jnp.sum(a**2)

    got = d.function("gradient")(x=x, A=A, b=b)
    want = jax.grad(f, argnums=(0, 1))(x, A)
    np.testing.assert_allclose(got["x"], want[0], rtol=1e-10)
    np.testing.assert_allclose(got["A"], want[1], rtol=1e-10)
    assert d.verify(points=2).passed


def test_generated_code_nests_no_deeper_than_pythons_parser_allows():
    # Python refuses more than 200 nested parentheses: parts MAX_CODE_NESTING levels
    # high become temporaries
    import math

    import sympy as sp

    from dlsym.codegen._compile import lambdify
    from dlsym.codegen._function import MAX_CODE_NESTING, lambda_source

    x = sp.Symbol("x")
    e = x
    for _ in range(250):
        e = sp.sin(e) + 1
    source = lambda_source("generated", [x], [e], "numpy")
    depth = deepest = 0
    for ch in source:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    assert deepest <= MAX_CODE_NESTING + 5
    want = 0.5
    for _ in range(250):
        want = math.sin(want) + 1
    assert lambdify([x], [e], "numpy")(0.5)[0] == pytest.approx(want, rel=1e-14)


def test_the_terminal_text_of_a_long_chain_shows_its_ends_and_counts_the_rest(tmp_path):
    import yaml
    from click.testing import CliRunner

    from dlsym._cli import main
    from dlsym.printing._render import MAX_TEXT_STEPS

    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain(100)))
    out = CliRunner().invoke(main, ["derive", str(path), "--no-verify"]).output
    # 102 steps (objective, 100 adjoints, gradient); the forward pass has 101 lines
    assert f"... {102 - MAX_TEXT_STEPS} more steps of the same kind" in out
    assert f"... {101 - MAX_TEXT_STEPS} more lines of the same kind" in out
    assert "\n1. Objective" in out and "\n102. Gradient with respect to x" in out
    latex = CliRunner().invoke(main, ["derive", str(path), "--no-verify", "--format", "latex"])
    assert "more steps" not in latex.output  # LaTeX keeps every step


def test_a_long_flat_sum_is_verified_within_bounded_memory(tmp_path):
    """600 chained defines a_i = a_(i−1) + sin(i x): XLA fused the gradient's 600 cosines
    into one kernel, and compiling it took 24 GB (the OOM killer, past the time budget,
    which cannot stop a compile). A large objective is verified op by op: under a 3 GB
    address-space limit the run ends verified, exit 0 (it aborted with bad_alloc)."""
    lines = ["name: long_sum", "symbols:", "  x: {shape: [n]}", "  w: {}", "dims: {n: 3}"]
    lines += ["define:", "  a0: x"] + [f"  a{i}: a{i - 1} + sin(x * {i})" for i in range(1, 601)]
    lines += ["objective: sum(a600) * w", "wrt: [x, w]"]
    spec = tmp_path / "long.yaml"
    spec.write_text("\n".join(lines) + "\n")

    # the limit is set by the child itself: a preexec_fn forks this process, which holds
    # JAX's threads (a RuntimeWarning, an error under pytest)
    limited = (
        "import resource, runpy, sys; "
        "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30)); "
        # the budget raised: memory is under test, and on a busy machine the 600
        # cosines' op-by-op verification neared the default 50 s
        f"sys.argv = ['dlsym', 'derive', {str(spec)!r}, '--format', 'json', '--budget', '300']; "
        f"runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"passed": true' in done.stdout


def _residual_chain(depth: int) -> dict:
    define = {"a0": "x"}
    for i in range(1, depth + 1):
        define[f"a{i}"] = f"a{i - 1} + tanh(W @ a{i - 1})"
    return {
        "name": "residual_chain",
        "symbols": {"x": {"shape": ["n"]}, "W": {"shape": ["n", "n"]}},
        "dims": {"n": 3},
        "define": define,
        "objective": f"sum(a{depth}**2)",
        "wrt": ["x", "W"],
    }


def test_a_deep_residual_chain_in_json_is_given_in_its_named_intermediates():
    """Each adjoint of a residual chain uses the next one twice: written out, the
    gradient of 10 layers is a tree of 6 million nodes (400 MB of JSON, two minutes).
    Past MAX_EXPR_NODES the JSON gives it as the steps do, in the defines and the
    adjoints, with each one's definition in order: evaluated in that order, they are
    jax.grad's gradient."""
    d = dlsym.derive(_residual_chain(10))
    shown = d.to_dict()["results"]["gradient"]
    out = shown["wrt"]
    assert len(json.dumps(shown)) < 200_000
    rng = np.random.default_rng(1)
    point = {"x": rng.normal(size=3), "W": rng.normal(size=(3, 3)) / 2}

    def loss(x, W):
        a = x
        for _ in range(10):
            a = a + jnp.tanh(W @ a)
        return jnp.sum(a**2)

    jax_x64()
    want = jax.grad(loss, (0, 1))(point["x"], point["W"])
    # names, once for both results: the defines a0..a10 and the adjoints _bar_a10..
    # _bar_a0 (a leading "_": never a spec's)
    assert [i["name"] for i in shown["intermediates"]][:2] == ["a0", "a1"]
    for name, expected in zip(("x", "W"), want):
        part = out[name]
        env = {"tanh": np.tanh, "outer": np.outer, **point}
        for i in shown["intermediates"]:  # each in the names before it
            env[i["name"]] = eval(i["expr"], {}, env)  # our own output, in a test
        np.testing.assert_allclose(eval(part["expr"], {}, env), expected, rtol=1e-10)
        assert part["latex"].startswith(r"\nabla_{")
    # a short result is still one expression in the inputs, with no intermediates
    small = dlsym.derive(_residual_chain(2)).to_dict()["results"]["gradient"]
    assert "intermediates" not in small and "a1" not in small["wrt"]["x"]["expr"]


def test_many_results_over_one_define_share_the_json_limit(monkeypatch):
    """200 scalar weights, each gradient inlining a 200-term define: 7 MB of JSON from
    a 9 KB spec. The 50,000 nodes are shared by a kind's results (here 2,000, so that 40
    weights pass their share); past it they are given in the define, listed once;
    evaluated in order they are the gradient."""
    from dlsym.sections.calculus import _derivation

    monkeypatch.setattr(_derivation, "MAX_EXPR_NODES", 2000)
    n = 40
    spec = wide_weights_spec(n)
    shown = dlsym.derive(spec).to_dict()["results"]["gradient"]
    assert len(json.dumps(shown)) < 60_000
    assert [i["name"] for i in shown["intermediates"]] == [f"s{i}" for i in range(n)]
    rng = np.random.default_rng(2)
    env = {"tanh": np.tanh, "sum": np.sum, "x": rng.normal(size=3)}
    env.update({f"w{i}": rng.normal() for i in range(n)})
    for i in shown["intermediates"]:
        env[i["name"]] = eval(i["expr"], {}, env)  # our own output, in a test
    s = env[f"s{n - 1}"]
    want = [2 * np.sum(s * (env["x"] if i == 0 else np.tanh(env["x"]))) for i in range(n)]
    got = [eval(shown["wrt"][f"w{i}"]["expr"], {}, env) for i in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
