"""Deep and long specs: they derive, their results are right, and where a spec is past
what the derivation can write out, the error names the define. No timing here
(bench/derive_scaling.py measures the time against depth and length)."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from conftest import ROOT

import dlsym
from dlsym.calculus._derive import MAX_EXPANDED_NESTING, MAX_SHOWN_NESTING
from dlsym.calculus._simplify import nesting
from dlsym.codegen._jax import jax_x64

sys.path.insert(0, str(ROOT / "bench"))
from derive_scaling import chain, mlp  # noqa: E402  (the benchmark's own specs)


def test_a_sixteen_layer_mlp_derives_and_equals_jax_grad():
    d = dlsym.derive(mlp(16))
    assert all(r.method == "matrix form" for r in d.results["gradient"].values())
    report = d.verify(points=4)
    assert report.passed
    # too deep for the explicit-entry cross-check: autodiff alone checks it
    assert {c.reference for c in report.checks} == {"jax.grad"}
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
