"""The benchmark corpus stays honest: every correct hand-written gradient passes dlsym's
check in both dtypes (no false alarms), and its hand-written mutants are caught."""

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from corpus import CASES  # noqa: E402

from dlsym.check._gradient import check_gradient  # noqa: E402


def test_corpus_size():
    assert len(CASES) >= 30
    assert sum(len(c.mutants) for c in CASES) >= 40
    assert {c.family for c in CASES} == {"activation", "loss", "layer", "reduction"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_correct_gradient_passes_and_mutants_fail(case):
    for dtype in ("float32", "float64"):
        assert check_gradient(case.spec, case.grad, wrt=case.wrt, dtype=dtype, points=8).passed
    for name, mutant in case.mutants.items():
        assert not check_gradient(
            case.spec, mutant, wrt=case.wrt, dtype="float32", points=8
        ).passed, name
