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
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "wide", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


@given(
    objective=scalars,
    wrt=st.sampled_from([["x"], ["A"], ["x", "s"], ["y", "A"]]),
    hessian=st.booleans(),
)
def test_generated_specs_verify_or_are_refused(objective, wrt, hessian):
    spec = {
        "name": "generated",
        "symbols": SYMBOLS,
        "dims": {"n": 3},
        "objective": objective,
        "wrt": wrt,
        "derive": ["gradient", "hessian"] if hessian and len(wrt) == 1 else ["gradient"],
        "verify": {"points": 4},
    }
    try:
        d = dlsym.derive(spec, verify=True, budget=60)
    except SpecError as exc:
        # refused: located (the mapping's position) and said in words
        assert str(exc).startswith("<mapping>:"), exc
        return
    except DlsymError as exc:  # a budget: fine, but say which spec
        pytest.skip(f"{objective}: {exc}")
    report = d.verification
    assert report.passed, (objective, wrt, [c for c in report.checks if not c.passed])
