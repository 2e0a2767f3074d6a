"""pytest API: ``assert_gradient`` fails a test with the same report as ``dlsym check``.

In a test suite::

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_my_grad(dtype):
        assert_gradient("derivations/softmax_cross_entropy.yaml", my_grad, wrt="z", dtype=dtype)
"""

from __future__ import annotations

from dlsym.check._gradient import CheckReport, check_gradient


def assert_gradient(
    spec,
    fn,
    wrt=None,
    dtype: str = "float64",
    points: int = 16,
    seed: int = 0,
    device: str = "cpu",
    order: int = 1,
) -> CheckReport:
    """Fail a test unless ``fn`` computes the gradient of ``spec``'s objective (with
    ``order=2``: its second derivative).

    Parameters
    ----------
    spec : str, Path or Mapping
        A calculus spec (file or mapping) whose ``objective`` ``fn`` differentiates.
    fn : callable
        The hand-written gradient: NumPy, JAX (``jax.custom_vjp`` too) or PyTorch,
        taking the spec's symbols by keyword or positionally; several ``wrt`` come back
        as a dict or a tuple.
    wrt : str or list of str, optional
        The symbol(s) ``fn`` differentiates; default the spec's ``wrt``.
    dtype : {"float64", "float32"}
        The precision ``fn`` is called in; the tolerance follows it.
    points, seed : int
        Seeded random points, each symbol drawn from its domain.
    device : {"cpu", "gpu"}
        Where JAX and PyTorch functions run.
    order : {1, 2}
        2: ``fn`` returns the Hessian with respect to one symbol of shape S (shape
        S + S, as ``jax.hessian``), or its diagonal (shape S) where the Hessian is
        diagonal, as an activation's ``grad2`` returns it.

    Returns
    -------
    CheckReport
        When it passes; ``report.format()`` is the text ``dlsym check`` prints.

    Raises
    ------
    AssertionError
        ``fn`` is wrong; the message is the full report, with the worst entries and a
        diagnosis (sign, transpose, factor, missing term, ...).
    dlsym.SpecError, dlsym.UserFunctionError
        Bad spec, or ``fn`` itself failed.

    Examples
    --------
    >>> from dlsym.testing import assert_gradient
    >>> spec = {"name": "least_squares",
    ...         "symbols": {"X": {"shape": ["m", "n"]}, "w": {"shape": ["n"]},
    ...                     "y": {"shape": ["m"]}},
    ...         "dims": {"m": 5, "n": 3},
    ...         "objective": "sum((X @ w - y)**2) / 2", "wrt": "w"}
    >>> def grad(X, w, y):
    ...     return X.T @ (X @ w - y)
    >>> assert_gradient(spec, grad).passed
    True
    >>> def wrong_sign(X, w, y):
    ...     return X.T @ (y - X @ w)
    >>> assert_gradient(spec, wrong_sign)
    Traceback (most recent call last):
    ...
    AssertionError:
    dlsym check: wrong_sign (numpy, float64) DOES NOT MATCH the derivative of least_squares
    ...
    diagnosis (w): sign flipped: your gradient is the negative of the expected one
    """
    report = check_gradient(
        spec, fn, wrt=wrt, dtype=dtype, points=points, seed=seed, device=device, order=order
    )
    if not report.passed:
        raise AssertionError("\n" + report.format())
    return report


__all__ = ["assert_gradient", "check_gradient"]
