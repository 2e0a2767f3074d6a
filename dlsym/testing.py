"""pytest API: ``assert_gradient`` fails a test with the same report as ``dlsym check``.


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_my_grad(dtype):
    assert_gradient("derivations/softmax_cross_entropy.yaml", my_grad, wrt="z", dtype=dtype)
"""

from __future__ import annotations

from dlsym.check._gradient import CheckReport, check_gradient


def assert_gradient(
    spec, fn, wrt=None, dtype: str = "float64", points: int = 16, seed: int = 0, device: str = "cpu"
) -> CheckReport:
    """Raise ``AssertionError`` (its message: the full report) unless ``fn`` computes the
    gradient of ``spec``'s objective. Bad input raises ``dlsym.SpecError`` or
    ``dlsym.UserFunctionError``. Returns the report when it passes."""
    report = check_gradient(spec, fn, wrt=wrt, dtype=dtype, points=points, seed=seed, device=device)
    if not report.passed:
        raise AssertionError("\n" + report.format())
    return report


__all__ = ["assert_gradient", "check_gradient"]
