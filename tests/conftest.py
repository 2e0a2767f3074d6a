import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "derivations"


def catalog_specs():
    return sorted(CATALOG.glob("*.yaml"))


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
