import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
