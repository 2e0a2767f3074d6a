"""Users' names: any identifier that is not a function of the language names a symbol,
dim or define, and nothing dlsym does internally (generated code, the parser's constants,
the derivation's own symbols) captures it."""

import ast
import builtins
import importlib.util
import io
import math

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from conftest import compile_latex
from rich.console import Console
from test_codegen import _functions

import dlsym
from dlsym._cli import main
from dlsym.codegen._module import generate
from dlsym.codegen._table import HELPERS, NAMES
from dlsym.expr._parse import FUNCTIONS
from dlsym.printing._render import render_text

# Symbols and dims named after the generated code's modules (np, jnp, jax, scipy), its
# functions and locals (objective, g, residuals), SymPy's constants and singletons (E,
# pi, I, S, N), the language's constants (e, pi), builtins (float, self) and old
# reserved words (step, sign, tsum, maxmask, matmul)
SPEC = {
    "name": "awkward_names",
    "title": "Names that generated code and SymPy use themselves",
    "symbols": {
        "E": {"shape": ["tsum", "jax"]},
        "e": {"shape": ["tsum"], "domain": "unit_interval"},
        "np": {"shape": ["jax"]},
        "jnp": {"shape": ["jax"]},
        "pi": {"domain": "positive"},
        "self": {},
        "step": {},
        "sign": {},
        "scipy": {},
        "float": {},
        "I": {},
        "S": {},
        "N": {},
        "g": {},
        "residuals": {},
        "x_1": {},
        "W2": {},
        "matmul": {},
    },
    "dims": {"tsum": 4, "jax": 3},
    "define": {
        "maxmask": "E @ np",
        "objective": "sigmoid(maxmask)",
    },
    "objective": "-mean(e * log(objective)) + pi / 2 * sum(np**2) + self * step * sum(jnp * np)"
    " + erf(sign) * exp(1) * pi + I * S * N * g * residuals * float + x_1 * W2 * matmul",
    "wrt": ["np", "sign", "self", "I"],
    "derive": ["gradient"],
}


def point(seed=0):
    rng = np.random.default_rng(seed)
    p = {name: rng.normal() for name in SPEC["symbols"]}
    p.update(E=rng.normal(size=(4, 3)), e=rng.uniform(0.1, 0.9, 4), pi=1.7)
    p.update(np=rng.normal(size=3), jnp=rng.normal(size=3))
    return p


def expected(p):
    """The gradient, by hand in NumPy."""
    prob = 1 / (1 + np.exp(-(p["E"] @ p["np"])))
    rest = p["S"] * p["N"] * p["g"] * p["residuals"] * p["float"]
    return {
        "np": p["E"].T @ (-p["e"] * (1 - prob) / 4)
        + p["pi"] * p["np"]
        + p["self"] * p["step"] * p["jnp"],
        "sign": 2 / math.sqrt(math.pi) * math.exp(-(p["sign"] ** 2)) * math.e * p["pi"],
        "self": p["step"] * np.sum(p["jnp"] * p["np"]),
        "I": rest,
    }


@pytest.fixture(scope="module")
def derived():
    return dlsym.derive(SPEC)


def test_awkward_names_derive_and_verify(derived):
    report = derived.verify(points=4, seed=0)
    assert report.passed, report
    assert {c.kind for c in report.checks} >= {"gradient"}
    # the declared names stay plain symbols (SymPy's E, I, S, N, pi are not involved)
    for decl in derived.spec.symbols:
        assert type(decl.symbol) is sp.Symbol and decl.symbol.name == decl.name


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_function_takes_the_users_names(derived, backend):
    p = point()
    got = derived.function("gradient", backend=backend)(**p)
    for wrt, want in expected(p).items():
        np.testing.assert_allclose(np.asarray(got[wrt]), want, rtol=1e-12, atol=1e-14)


def test_the_constants_are_the_users_where_declared(derived):
    """The results' "expr" reads back with the spec's names: e and pi are the user's
    symbols there, so the constants are written exp(1) and 4*atan(1)."""
    text = derived.expr_of(derived.results["gradient"]["sign"].expr)
    assert text == "2*exp(1)*pi*exp(-sign**2)/sqrt((4*atan(1)))"
    spec = dict(SPEC, objective=text, wrt="sign", derive=["gradient"])
    again = dlsym.derive(spec).spec.objective
    assert again.equals(derived.results["gradient"]["sign"].expr)
    # without a declared e or pi they are the language's constants
    d = dlsym.derive(
        {"name": "c", "symbols": {"x": {}}, "objective": "pi * exp(1) * x", "wrt": "x"}
    )
    assert d.results["gradient"]["x"].expr == sp.pi * sp.E
    assert d.expr_of(d.results["gradient"]["x"].expr) == "e*pi"


def load(source, path):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_codegen_module_runs_under_the_users_names(derived, tmp_path):
    p = point(1)
    want = expected(p)
    args = [p[s.name] for s in derived.spec.symbols]
    for target in ("numpy", "jax"):
        source = generate(derived, target, custom_vjp=target == "jax")
        assert source.count(f"{SPEC['name']}") >= 1
        module = load(source, tmp_path / f"names_{target}.py")
        for wrt, value in want.items():
            got = getattr(module, f"gradient_{wrt}")(**p)
            np.testing.assert_allclose(np.asarray(got), value, rtol=1e-12, atol=1e-14)
        # d.function runs the module's functions, word for word (less the docstrings)
        functions = _functions(source)
        names = [f"gradient_{wrt}" for wrt in SPEC["wrt"]]
        got = derived.function("gradient", backend=target).source
        assert got == "\n\n".join(functions[n] for n in names)
    import jax

    closed = jax.grad(module.objective_custom_vjp, argnums=(2, 7))(*args)
    np.testing.assert_allclose(closed[0], want["np"], rtol=1e-12)
    np.testing.assert_allclose(closed[1], want["sign"], rtol=1e-12)


def _free_reads(function: ast.FunctionDef) -> set:
    """The names a function reads that it does not bind itself."""
    bound = {a.arg for a in function.args.args}
    bound |= {
        n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    reads = {
        n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return reads - bound


@pytest.mark.parametrize("target", ["numpy", "jax"])
def test_no_internal_name_can_capture_a_users_name(derived, target):
    """Every name a generated function reads without binding it is bound by the module
    (an import, a helper, a function, an alias) and is none of the spec's names: a user's
    name, a parameter or local there, would otherwise hide it. The spec takes every name
    the generated code reads when nothing collides."""
    assert NAMES <= derived.spec.names  # every module name the table reads is taken
    source = generate(derived, target, custom_vjp=target == "jax")
    tree = ast.parse(source)
    module_names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module_names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef):
            module_names.add(node.name)
        elif isinstance(node, ast.Assign):
            module_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    users = derived.spec.names
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            reads = _free_reads(node)
            assert reads <= module_names, (node.name, reads - module_names)
            assert not reads & users, (node.name, reads & users)
            assert not reads & set(dir(builtins)), (node.name, reads)


def test_no_collision_keeps_the_plain_names():
    d = dlsym.derive({"name": "p", "symbols": {"x": {}}, "objective": "erf(x) + pi", "wrt": "x"})
    numpy_code = generate(d, "numpy")
    assert "import numpy as np\nimport scipy.special\n" in numpy_code
    assert "np.exp(-x**2)/np.sqrt(np.pi)" in numpy_code
    jax_code = generate(d, "jax", custom_vjp=True)
    assert "import jax.scipy.special\nimport jax.numpy as jnp\n" in jax_code
    assert "@jax.custom_vjp\ndef _objective_custom_vjp(x):" in jax_code
    assert "def objective_custom_vjp(x):" in jax_code
    assert "def _objective_bwd(residuals, g):" in jax_code


def test_one_collision_renames_that_name_only():
    d = dlsym.derive({"name": "p", "symbols": {"np": {}}, "objective": "exp(np)", "wrt": "np"})
    assert d.function("gradient").source.endswith("    return _np.exp(np)\n")
    assert d.function("gradient")(np=np.array(0.5)) == pytest.approx(math.exp(0.5))


def test_derivation_symbols_do_not_capture_users_names():
    """The loss, output and adjoint symbols of the steps are not a spec's ell, f_out or
    bar_z."""
    d = dlsym.derive(
        {
            "name": "adj",
            "symbols": {"ell": {}, "f_out": {}, "bar_z": {}},
            "define": {"z": "ell * f_out"},
            "objective": "z**2 + bar_z * ell",
            "wrt": ["ell", "bar_z"],
        }
    )
    assert d.verify(points=3).passed
    got = d.function("gradient")(ell=2.0, f_out=3.0, bar_z=5.0)
    assert float(got["ell"]) == pytest.approx(2 * 6 * 3 + 5)
    assert float(got["bar_z"]) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "name",
    sorted(set(FUNCTIONS) & {"sum", "sigmoid", "ones", "eye", "where", "transpose", "maximum"}),
)
@pytest.mark.parametrize("role", ["symbols", "dims", "define"])
def test_a_function_name_is_refused_where_it_is_declared(tmp_path, name, role):
    body = {
        "symbols": f"symbols:\n  {name}: {{}}\nobjective: x\n",
        "dims": f"symbols:\n  x: {{}}\ndims:\n  {name}: 2\nobjective: x\n",
        "define": f"symbols:\n  x: {{}}\ndefine:\n  {name}: x\nobjective: x\n",
    }[role]
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: f\n{body}wrt: x\n")
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify"])
    assert result.exit_code == 2, result.output
    what = {"symbols": "symbol", "dims": "dimension", "define": "define"}[role]
    line = {"symbols": 3, "dims": 5, "define": 5}[role]
    assert f"{path}:{line}:3: " in result.stderr, result.stderr
    assert f"{what} '{name}' has the name of a function of the expression language" in result.stderr
    assert "Traceback" not in result.output


def test_helpers_and_temporaries_are_names_no_spec_can_write():
    assert all(h.startswith("_") for h in HELPERS)
    with pytest.raises(dlsym.SpecError, match="not a plain identifier"):
        dlsym.derive({"name": "u", "symbols": {"_t0": {}}, "objective": "_t0", "wrt": "_t0"})


SCALARS = {
    "name": "scalar_names",
    "symbols": {"e": {}, "pi": {}, "E": {}, "self": {}, "step": {}, "lambda_": {}, "x": {}},
    "objective": "e * exp(x) + exp(1) * pi + erf(E * x) + self * step * lambda_",
    "wrt": ["x", "pi"],
    "derive": ["gradient"],
}


@pytest.mark.latex
@pytest.mark.parametrize("spec", [SPEC, SCALARS], ids=lambda s: s["name"])
def test_latex_of_awkward_names_compiles(spec, tmp_path, pdflatex):
    d = dlsym.derive(spec)
    compile_latex(pdflatex, tmp_path, "names", d.latex(standalone=True))


def test_latex_and_text_of_awkward_names():
    d = dlsym.derive(SCALARS)
    grad = d.results["gradient"]["x"]
    # the user's e is italic, Euler's number upright (there is a symbol called e)
    assert (
        d.latex_of(grad.expr)
        == r"e \mathrm{e}^{x} + \frac{2 E \mathrm{e}^{- E^{2} x^{2}}}{\sqrt{\pi}}"
    )
    assert d.latex_of(d.results["gradient"]["pi"].expr) == r"\mathrm{e}"
    assert d.latex_names[d.spec.symbol("lambda_").symbol] == r"\lambda"
    # a name of several letters is one italic word, not a product of letters
    assert r"\lambda \mathit{self} \mathit{step}" in d.latex_of(d.spec.objective)
    assert d.text_of(d.results["gradient"]["pi"].expr) == "ℯ"
    assert d.expr_of(grad.expr) == "e*exp(x) + 2*E*exp(-E**2*x**2)/sqrt((4*atan(1)))"


def test_yaml_1_1_boolean_words_are_names(tmp_path):
    """YAML 1.1 reads off, on, yes and no as booleans: a symbol named off (an offset)
    was the name 'False'. dlsym reads YAML 1.2's booleans, true and false, alone."""
    path = tmp_path / "offset.yaml"
    path.write_text(
        "name: poisson_offset\n"
        "symbols:\n  X: {shape: [m, n]}\n  off: {shape: [m]}\n  on: {}\n  beta: {shape: [n]}\n"
        "dims: {m: 4, n: 2}\n"
        "objective: sum(exp(X @ beta + off)) * on\n"
        "wrt: beta\n"
    )
    d = dlsym.derive(path)
    assert [s.name for s in d.spec.symbols] == ["X", "off", "on", "beta"]
    assert d.results["gradient"]["beta"].method  # derived
    assert d.verify(points=4).passed
    rng = np.random.default_rng(0)
    X, off, beta = rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=2)
    np.testing.assert_allclose(
        d.function("gradient")(X=X, off=off, on=0.5, beta=beta),
        0.5 * X.T @ np.exp(X @ beta + off),
    )


def test_names_of_several_letters_and_capital_greek_read_as_papers_write_them():
    """lr, decay and the dim fin were set as products of italic letters (l r); Sigma
    was the Latin word. The terminal shows the names as written (it showed mathitlr
    once the LaTeX had \\mathit)."""
    d = dlsym.derive(
        {
            "name": "words",
            "symbols": {
                "W": {"shape": ["fout", "fin"]},
                "x": {"shape": ["fin"]},
                "lr": {"domain": "positive"},
                "Sigma": {"shape": ["fin", "fin"]},
                "Delta": {},
            },
            "dims": {"fin": 3, "fout": 2},
            "objective": "lr * sum((W @ x)**2) / fin + Delta * x @ Sigma @ x",
            "wrt": "x",
        }
    )
    latex = d.latex_of(d.spec.objective)
    assert r"\mathit{lr}" in latex and r"{\mathit{fin}}" in latex
    # Delta stays a word: Δ is the direction of a Hessian's action, of a Taylor model
    assert r"\boldsymbol{\Sigma}" in latex and r"\mathit{Delta}" in latex
    buf = io.StringIO()
    render_text(d, Console(file=buf, width=100, color_system=None))
    text = buf.getvalue()
    assert "mathit" not in text and "lr⋅sum" in text and "Σ" in text


def test_a_matrix_named_i_is_told_apart_from_the_identity():
    """x @ I @ x + lam ‖x‖² with the spec's own matrix I: the Hessian read I + 2λI + Iᵀ,
    two of them the user's and one the identity; the identity now shows its size."""
    d = dlsym.derive(
        {
            "name": "i_collide",
            "symbols": {"x": {"shape": ["n"]}, "I": {"shape": ["n", "n"]}, "lam": {}},
            "dims": {"n": 3},
            "objective": "x @ I @ x + lam * sum(x**2)",
            "wrt": "x",
            "derive": ["hessian"],
        },
        verify=True,
    )
    assert d.verification.passed, d.verification
    shown = d.result_display("hessian")["latex"]
    assert (
        shown
        == r"\nabla^{2}_{\mathbf{x}} \ell = \mathbf{I} + 2 \lambda \mathbf{I}_{n} + \mathbf{I}^{\top}"
    )
    buf = io.StringIO()
    render_text(d, Console(file=buf, width=100, color_system=None))
    assert "∇²_x ℓ = I + 2⋅λ⋅I_n + Iᵀ" in buf.getvalue()
    # without a symbol I, the identity is I alone
    plain = dlsym.derive(
        {
            "name": "ridge",
            "symbols": {"x": {"shape": ["n"]}, "lam": {}},
            "dims": {"n": 3},
            "objective": "lam * sum(x**2)",
            "wrt": "x",
            "derive": ["hessian"],
        }
    )
    assert plain.result_display("hessian")["latex"].endswith(r"2 \lambda \mathbf{I}")
