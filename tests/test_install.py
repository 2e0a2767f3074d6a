"""Installed, not only checked out: the package list is whole, a wheel carries the catalog
(`dlsym list`, catalog names in the CLI and in dlsym.derive), and a checkout whose path
holds "/dlsym/" is still told the user's code from dlsym's."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import CATALOG, ROOT

import dlsym
from dlsym._cli import main


def test_every_package_is_installed():
    """pyproject.toml lists the packages by name (the catalog needs a package-dir
    mapping, which a find directive cannot give): a new subpackage must be listed."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dlsym").rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk | {"dlsym.catalog"}
    assert config["package-dir"] == {"dlsym.catalog": "derivations"}


def test_derive_takes_a_catalog_name():
    d = dlsym.derive("logistic_regression")
    assert d.name == "logistic_regression"
    with pytest.raises(dlsym.SpecError, match="no_such_spec: no such file"):
        dlsym.derive("no_such_spec")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_a_wheel_installed_from_a_path_holding_dlsym_has_the_whole_catalog(tmp_path):
    """A non-editable install (a wheel) into a folder under .../dlsym/..., used from a
    folder with no derivations/: `dlsym list` shows every catalog spec, and catalog
    names derive through the CLI and the Python API."""
    checkout = tmp_path / "dlsym" / "clone"
    wheels, site = tmp_path / "wheels", tmp_path / "dlsym" / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(built.stderr)
        pytest.skip(f"cannot build a wheel here: {built.stderr[-300:]}")
    (wheel,) = wheels.glob("dlsym-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    checkout.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "80"}
    script = (
        "import sys, dlsym\n"
        "from dlsym._cli import main\n"
        "print(dlsym.__file__)\n"
        "print(dlsym.derive('ridge_regression').name)\n"
        "sys.argv = ['dlsym'] + sys.argv[1:]\n"
        "main()\n"
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    where, name, *table = listed.stdout.splitlines()
    assert where.startswith(str(site)) and name == "ridge_regression"
    names = {line.split("│")[1].strip() for line in table if line.count("│") > 2}
    assert names >= {spec.stem for spec in CATALOG.glob("*.yaml")}
    derived = run("derive", "logistic_regression", "--no-verify")
    assert derived.returncode == 0, derived.stderr
    assert "Gradient with respect to w" in derived.stdout


def test_a_user_module_under_a_path_holding_dlsym_keeps_its_traceback(tmp_path):
    """Frames are dlsym's when they are under the installed package, not when their
    path merely holds "/dlsym/" (a checkout at ~/src/dlsym/)."""
    folder = tmp_path / "dlsym" / "work"
    folder.mkdir(parents=True)
    (folder / "grads.py").write_text("def g(logits, y):\n    raise KeyError('boom')\n")
    spec = CATALOG / "softmax_cross_entropy.yaml"
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{folder}/grads.py:g"])
    assert result.exit_code == 2, result.output
    assert "grads.py" in result.stderr and "raise KeyError('boom')" in result.stderr


def test_a_derivation_displays_as_typeset_math_in_a_notebook():
    """A notebook cell that derives a spec shows it as Markdown with $$ math and as
    LaTeX displays (what JupyterLab typesets), run in a real Jupyter kernel."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import dlsym\ndlsym.derive('logistic_regression')"))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    (output,) = [o for o in nb.cells[0].outputs if o.output_type == "execute_result"]
    data = output["data"]
    assert data["text/markdown"].startswith("# Logistic regression with an L2 penalty")
    assert "$$\n\\begin{aligned}" in data["text/markdown"]
    latex = data["text/latex"]
    assert latex.startswith("$$\\begin{aligned}&\\text{1. Objective}")
    assert latex.count("$$") == 2 * latex.count("\\begin{aligned}") and "intertext" not in latex
    assert r"\nabla_{\mathbf{w}} \ell &=" in latex


def test_every_sections_latex_display_is_mathjax_math():
    """No text-mode LaTeX (\\intertext, \\section) inside the displays of any section's
    catalog spec, and each display's braces balance."""
    for name in ("mdp_two_state", "gaussian_entropy", "equality_qp", "xavier_init", "rnn_bptt"):
        latex = dlsym.derive(name)._repr_latex_()
        for display in latex.split("$$")[1::2]:
            assert "\\intertext" not in display and "\\section" not in display, name
            assert display.count("{") == display.count("}"), name


# --- the JSON Schema for editors ---------------------------------------------------


def _schema():
    import json

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_catalog_spec_is_valid_under_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    named = {"name": "t", "define": {"yhat": {"expr": "W @ x", "latex": r"\hat{y}"}}}
    assert not list(validator.iter_errors(named))  # a define with its own LaTeX name
    for path in sorted(CATALOG.glob("*.yaml")):
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.stem, errors)


def test_the_schema_follows_the_validations_tables():
    from dlsym.sections.mdp._model import MDP_KEYS
    from dlsym.spec._recurrence import RECURRENCE_KEYS
    from dlsym.spec._spec import COMMON_KEYS, VERIFY_KEYS
    from dlsym.spec._symbols import DOMAINS, SYMBOL_KEYS

    props = _schema()["properties"]
    assert set(COMMON_KEYS) <= set(props)
    assert set(props["symbols"]["additionalProperties"]["properties"]) == set(SYMBOL_KEYS)
    assert set(props["verify"]["properties"]) == set(VERIFY_KEYS)
    assert set(props["recurrence"]["properties"]) == set(RECURRENCE_KEYS)
    assert set(props["mdp"]["properties"]) == set(MDP_KEYS)
    domains = props["symbols"]["additionalProperties"]["properties"]["domain"]["anyOf"][0]
    assert domains["enum"] == list(DOMAINS)


@pytest.mark.parametrize(
    "spec, wrong",
    [
        ({"name": "t", "objectve": "x"}, "Additional properties are not allowed ('objectve'"),
        ({"name": "t", "symbols": {"x": {"shape": "n"}}}, "'n' is not of type 'array'"),
        ({"name": "t", "symbols": {"x": {"domain": "positve"}}}, "positve"),
        ({"name": "t", "verify": {"points": 0}}, "0 is less than the minimum of 1"),
        ({"name": "t", "dims": {"n": "four"}}, "'four' is not of type 'integer'"),
        ({"title": "no name"}, "'name' is a required property"),
        ({"name": "t", "derive": ["gradiant"]}, "['gradiant'] is not valid"),
    ],
)
def test_the_schema_marks_what_validation_refuses(spec, wrong):
    jsonschema = pytest.importorskip("jsonschema")
    errors = [e.message for e in jsonschema.Draft202012Validator(_schema()).iter_errors(spec)]
    assert any(wrong in e for e in errors), errors


def test_schema_writes_a_file(tmp_path):
    import json

    out = tmp_path / "dlsym-spec.schema.json"
    result = CliRunner().invoke(main, ["schema", "-o", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text())["title"] == "dlsym spec"
