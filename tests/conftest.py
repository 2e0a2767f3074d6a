import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# `pytest -n auto` (the README's test command): one process per core, at most this many.
# Each holds its own JAX and SymPy (about 1.4 GB at its peak), and the suite's slowest
# tests run for seconds, so more processes would only queue for memory
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may not be installed
def pytest_xdist_auto_num_workers(config):
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@pytest.fixture(autouse=True, scope="session")
def _jax_in_float64():
    """JAX in float64 from the first test of each process, as dlsym's first verification
    sets it: run in one process, every test after the first verification had it, and a
    test that runs a generated JAX module at rtol 1e-12 passed or failed (float32) by
    which tests ran before it in its process (pytest -n)."""
    from dlsym.codegen._jax import jax_x64

    jax_x64()


CATALOG = ROOT / "derivations"


def derive_objective(symbols, objective, wrt, dims, define=None, derive=("gradient",), name="spec"):
    """``dlsym.derive`` of a calculus spec written inline: the tests' shorthand."""
    import dlsym

    spec = {
        "name": name,
        "symbols": symbols,
        "dims": dims,
        "objective": objective,
        "wrt": wrt,
        "derive": list(derive),
    }
    if define:
        spec["define"] = define
    return dlsym.derive(spec)


def wide_weights_spec(n: int) -> dict:
    """n scalar weights over one define each reads: s_i = s_(i-1) + w_i tanh(x), the
    objective sum(s_(n-1)²); every gradient holds the whole chain (tests of output and
    codegen cost in the number of wrt symbols)."""
    return {
        "name": "wide",
        "symbols": {"x": {"shape": ["k"]}, **{f"w{i}": {} for i in range(n)}},
        "dims": {"k": 3},
        "define": {"s0": "w0 * x", **{f"s{i}": f"s{i - 1} + w{i} * tanh(x)" for i in range(1, n)}},
        "objective": f"sum(s{n - 1}**2)",
        "wrt": [f"w{i}" for i in range(n)],
    }


def check_against_jax_grad(d, reference, point, names, points=6):
    """A derived gradient in closed form (no explicit-entry step), verified, and equal to
    ``jax.grad`` of ``reference`` (a hand-written JAX function of the spec's symbols) at
    ``point``: the tensor, convolution and batch tests' shared check."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dlsym.codegen._jax import jax_x64

    assert all(r.method == "matrix form" for r in d.results["gradient"].values())
    report = d.verify(points=points)
    assert report.passed, report
    got = d.function("gradient")(**point)
    got = got if isinstance(got, dict) else {names[0]: got}
    jax_x64()  # float64 in JAX
    args = [jnp.asarray(point[n]) for n in names]
    others = {k: jnp.asarray(v) for k, v in point.items() if k not in names}
    expected = jax.grad(
        lambda *xs: reference(**dict(zip(names, xs)), **others), tuple(range(len(names)))
    )(*args)
    for name, want in zip(names, expected):
        assert got[name].shape == point[name].shape
        np.testing.assert_allclose(got[name], np.asarray(want), rtol=1e-10, atol=1e-12)
    return got


def compile_latex(pdflatex, directory, name: str, text: str):
    """Write ``text`` to ``directory/name.tex``, compile it with ``pdflatex`` (the
    fixture's executable) and assert that it compiled; returns the PDF's path."""
    import subprocess

    tex = directory / f"{name}.tex"
    tex.write_text(text)
    proc = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return directory / f"{name}.pdf"


def catalog_specs():
    """Every spec in the catalog, of every section."""
    return sorted(CATALOG.glob("*.yaml"))


def section_specs(section):
    """The catalog specs of one section: None for calculus, or a module name of
    dlsym.spec._common.SECTIONS such as 'mdp'."""
    from dlsym.spec._common import section_of
    from dlsym.spec._yamlfile import load_file

    return [p for p in catalog_specs() if section_of(load_file(p)) == section]


def calculus_specs():
    return section_specs(None)


def pytest_configure(config):
    config.addinivalue_line("markers", "latex: needs pdflatex (required when CI=true)")


@pytest.fixture
def pdflatex():
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is required under CI=true (install texlive-latex-base)")
        pytest.skip("pdflatex not installed")
    return exe
