"""Property-based: specs generated from the expression grammar (hypothesis) either derive
a result that verifies against JAX, or are refused with a located error. Never an
internal error, never a false verdict. Derandomized, so CI sees the same specs on every
run; `HYPOTHESIS_PROFILE=wide` explores more."""

import os
import sys

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dlsym  # noqa: E402
import dlsym._api  # noqa: E402
from dlsym._errors import DlsymError, SpecError  # noqa: E402

# dlsym.derive raises Python's recursion limit (dlsym._api.RECURSION_LIMIT); raised
# before hypothesis notes it, the limit is not changed "during" a test
sys.setrecursionlimit(max(sys.getrecursionlimit(), dlsym._api.RECURSION_LIMIT))

settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "wide", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(share: float) -> settings:
    """A test's share of the profile's examples: in CI (50), 4 x 50 gradients, 20
    Hessians (each costs about ten gradients: its blocks, and matrix Hessians as actions
    stacked over every direction) and 100 moments, 320 specs in all."""
    return settings(max_examples=max(1, round(settings.default.max_examples * share)))


SYMBOLS = {
    "x": {"shape": ["n"]},
    "y": {"shape": ["n"]},
    "A": {"shape": ["n", "n"]},
    "s": {},
    "p": {"domain": "positive"},
}

# vectors of size n and scalars, combined as a user writes them
vectors = st.recursive(
    st.sampled_from(["x", "y", "(A @ x)", "(A.T @ y)"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} * {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} - {t[1]})"),
        inner.map(lambda v: f"(A @ {v})"),
        inner.map(lambda v: f"(s * {v})"),
        inner.map(lambda v: f"({v} / p)"),
        st.tuples(
            st.sampled_from(["tanh", "sigmoid", "softplus", "sin", "relu", "abs"]), inner
        ).map(lambda t: f"{t[0]}({t[1]})"),
        inner.map(lambda v: f"softmax({v})"),
        inner.map(lambda v: f"log(1 + {v}**2)"),
    ),
    max_leaves=4,
)
scalars = st.one_of(
    vectors.map(lambda v: f"sum({v})"),
    vectors.map(lambda v: f"mean({v}**2)"),
    vectors.map(lambda v: f"logsumexp({v})"),
    st.tuples(vectors, vectors).map(lambda t: f"dot({t[0]}, {t[1]})"),
    vectors.map(lambda v: f"{v}[0] * s"),
    vectors.map(lambda v: f"sqrt(1 + sum({v}**2))"),
)


def _verified_or_refused(spec: dict, label: str):
    """The verification report of a generated spec, or None where it was refused with a
    located error (the mapping's position, in words); a budget skips, naming the spec."""
    try:
        return dlsym.derive(spec, verify=True, budget=60).verification
    except SpecError as exc:
        assert str(exc).startswith("<mapping>:"), exc
        return None
    except DlsymError as exc:
        pytest.skip(f"{label}: {exc}")


@pytest.mark.parametrize("wrt", [["x"], ["A"], ["x", "s"], ["y", "A"]])
@given(objective=scalars)
def test_generated_gradients_verify_or_are_refused(wrt, objective):
    _check_generated(objective, wrt, ["gradient"])


@examples(0.4)
@given(objective=scalars, wrt=st.sampled_from([["x"], ["A"], ["x", "s"], ["y", "A"]]))
def test_generated_hessians_verify_or_are_refused(objective, wrt):
    # with several wrt symbols, the joint Hessian's blocks
    _check_generated(objective, wrt, ["gradient", "hessian"])


def _check_generated(objective, wrt, derive):
    spec = {
        "name": "generated",
        "symbols": SYMBOLS,
        "dims": {"n": 3},
        "objective": objective,
        "wrt": wrt,
        "derive": derive,
        "verify": {"points": 4},
    }
    report = _verified_or_refused(spec, objective)
    if report is not None:
        assert report.passed, (objective, wrt, [c for c in report.checks if not c.passed])


# --- random symbols: moments in closed form, or "no closed form", never a wrong one ---

RANDOM_SYMBOLS = {
    "z": {"shape": ["n"], "distribution": "normal(0, 1)"},
    "u": {"distribution": "uniform(-1, 1)"},
    "e": {"distribution": "normal(m, s**2)"},
    "b": {"shape": ["n"], "distribution": "bernoulli(q)"},
    "w": {"shape": ["n"]},
    "c": {},
    "m": {},
    "s": {"domain": "positive"},
    "q": {"domain": "unit_interval"},
}
random_scalars = st.recursive(
    st.sampled_from(["(w @ z)", "sum(b * w)", "u", "e", "z[0]", "(c * u)", "sum(z)"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} * {t[1]})"),
        inner.map(lambda v: f"(c * {v})"),
        inner.map(lambda v: f"{v}**2"),
        st.tuples(st.sampled_from(["relu", "exp", "tanh", "abs"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
    ),
    max_leaves=3,
)


@examples(2)
@given(moment=st.sampled_from(["expect", "variance"]), e=random_scalars)
def test_generated_moments_are_right_or_said_to_have_no_closed_form(moment, e):
    """A closed form passes its Monte Carlo (or exact) check; where no rule applies the
    result says so; bad input is a located error. Never an internal error."""
    spec = {
        "name": "moments",
        "symbols": RANDOM_SYMBOLS,
        "dims": {"n": 3},
        "objective": f"{moment}({e})",
        "verify": {"points": 2},
    }
    report = _verified_or_refused(spec, e)
    if report is not None:
        assert report.passed, (moment, e, [c for c in report.checks if not c.passed])
