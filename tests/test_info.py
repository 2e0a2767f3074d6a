"""Information theory: exact values, proofs, verification that can fail, located errors."""

import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from conftest import CATALOG, section_specs

import dlsym
from dlsym._cli import main

CE = {
    "name": "ce",
    "distributions": {"p": {"categorical": 4}, "q": {"categorical": 4}},
    "identities": ["cross_entropy(p, q) == entropy(p) + kl(p, q)", "kl(p, q) >= 0"],
}

BITS = {
    "name": "bits",
    "units": "bits",
    "distributions": {
        "p": {"categorical": [0.5, 0.25, 0.125, 0.125]},
        "q": {"categorical": ["1/4", "1/4", "1/4", "1/4"]},
    },
    "quantities": ["entropy(p)", "kl(p, q)", "cross_entropy(p, q)", "jsd(p, q)"],
}

TABLE = [
    ["1/8", "1/16", "1/32", "1/32"],
    ["1/16", "1/8", "1/32", "1/32"],
    ["1/16", "1/16", "1/16", "1/16"],
    ["1/4", 0, 0, 0],
]
JOINT = {
    "name": "joint",
    "units": "bits",
    "distributions": {"p": {"joint": TABLE, "variables": ["X", "Y"]}},
    "quantities": [
        "entropy(X)",
        "entropy(Y)",
        "entropy(X, Y)",
        "entropy(Y | X)",
        "entropy(X | Y)",
        "mutual_information(X, Y)",
    ],
    "identities": [
        "entropy(X, Y) == entropy(X) + entropy(Y | X)",
        "mutual_information(X, Y) == entropy(X) - entropy(X | Y)",
        "mutual_information(X, Y) == kl(p, X * Y)",
        "mutual_information(X, Y) >= 0",
    ],
}


def test_exact_values_in_bits():
    d = dlsym.derive(BITS)
    exprs = {k: r.expr for k, r in d.results.items()}
    assert exprs == {
        "entropy(p)": "7/4",
        "kl(p, q)": "1/4",
        "cross_entropy(p, q)": "2",
        "jsd(p, q)": "-3*log(3)/(4*log(2)) + 5/4",
    }
    assert d.results["jsd(p, q)"].latex == (
        r"\mathrm{JSD}\left(p \,\|\, q\right) = "
        r"\frac{5}{4} - \frac{3 \log_{2} 3}{4}"
    )
    assert d.results["jsd(p, q)"].extra["text"] == "5/4 - 3 log2(3)/4"
    step = d.steps[0]
    assert step.text.splitlines()[0] == "H(p) = -Σ_i p_i log2(p_i)    [expand the definitions]"
    assert step.latex.startswith(r"H\left(p\right) &= - \sum_{i=1}^{4} p_{i} \log_{2} p_{i}")
    assert d.results["entropy(p)"].extra == {"units": "bits", "value": 1.75, "text": "7/4"}
    assert d.verify().passed


def test_joint_table_cover_thomas():
    """Cover & Thomas, example 2.2.1 (transposed): rows index X."""
    d = dlsym.derive(JOINT)
    exprs = {k: r.expr for k, r in d.results.items() if d.results[k].value is not None}
    assert exprs == {
        "entropy(X)": "2",
        "entropy(Y)": "7/4",
        "entropy(X, Y)": "27/8",
        "entropy(Y | X)": "11/8",
        "entropy(X | Y)": "13/8",
        "mutual_information(X, Y)": "3/8",
    }
    statuses = [r.extra["status"] for r in d.results.values() if r.value is None]
    assert statuses == [
        "proved",
        "proved",
        "proved",
        "proved by Gibbs' inequality (Jensen's inequality for the concave log)",
    ]
    assert d.tables[0].rows[-1] == ("p(y)", "1/2", "1/4", "1/8", "1/8", "1")
    assert d.tables[1].rows[3] == ("X=4", "1", "0", "0", "0")
    report = d.verify()
    assert report.passed
    assert report.points > 1  # identities run at random tables too


def test_proof_steps_cross_entropy():
    d = dlsym.derive(CE)
    step = d.steps[0]
    assert step.title == "Identity cross_entropy(p, q) == entropy(p) + kl(p, q)"
    assert step.text.splitlines()[0] == "H(p, q) = -Σ_i p_i log(q_i)    [expand the definitions]"
    assert step.text.splitlines()[-1] == " = H(p) + KL(p ‖ q)    [expand the definitions]"
    assert step.latex.startswith(
        r"H\left(p, q\right) &= - \sum_{i=1}^{4} p_{i} \log q_{i} "
        r"&& \text{expand the definitions} \\"
    )
    gibbs = d.steps[1]
    assert "Jensen's inequality: the log is concave" in gibbs.text
    assert d.results["kl(p, q) >= 0"].extra["proved"] is True


def test_conditional_entropy_steps():
    d = dlsym.derive(JOINT)
    step = next(s for s in d.steps if s.title == "Quantity entropy(Y | X)")
    rules = [line.rsplit("[", 1)[1].rstrip("]") for line in step.text.splitlines()]
    assert rules == [
        "expand the definitions",
        "definition of the conditional",
        "log of a product and of a quotient",
        "linearity of the sum",
        "marginalization and normalization",
        "substitute the probabilities",
    ]
    assert r"p\left(y \mid x\right)" in step.latex


def test_verification_fails_on_a_wrong_closed_form(monkeypatch):
    from dlsym.sections.info import _values as _info_values

    real = _info_values.Evaluator.derived

    def off(self, expr):
        return real(self, expr) * 1.001

    monkeypatch.setattr(_info_values.Evaluator, "derived", off)
    report = dlsym.derive(BITS).verify()
    assert not report.passed
    assert [c.passed for c in report.checks] == [False] * 4


def test_wrong_identity_fails_and_says_so(tmp_path):
    spec = dict(CE, identities=["cross_entropy(p, q) == entropy(q) + kl(p, q)"])
    d = dlsym.derive(spec)
    r = d.results["cross_entropy(p, q) == entropy(q) + kl(p, q)"]
    assert r.extra["status"] == "checked numerically" and r.extra["proved"] is False
    assert "could not close the equation symbolically" in d.notes[0]
    assert not d.verify().passed
    path = tmp_path / "wrong.yaml"
    path.write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 1, result.output


def test_false_inequality_fails():
    spec = dict(CE, identities=["entropy(p) <= cross_entropy(q, p) - 10"])
    d = dlsym.derive(spec)
    assert not d.verify().passed


def test_infinite_kl_is_reported_not_nan():
    spec = {
        "name": "inf",
        "distributions": {"p": {"categorical": ["1/2", "1/2", 0]}, "q": {"categorical": [1, 0, 0]}},
        "quantities": ["kl(p, q)", "kl(q, p)"],
    }
    d = dlsym.derive(spec)
    assert d.results["kl(p, q)"].expr == "oo"
    assert d.results["kl(q, p)"].expr == "log(2)"
    assert d.results["kl(p, q)"].extra["text"] == "∞"
    assert d.notes == (
        "kl(p, q) is infinite: a logarithm of a zero probability has a non-zero "
        "weight (for a KL divergence or cross-entropy: the first distribution "
        "puts mass where the second has none)",
    )
    report = d.verify()
    assert report.passed, report


def test_json_output(tmp_path):
    path = tmp_path / "bits.yaml"
    path.write_text(json.dumps(BITS))
    result = CliRunner().invoke(main, ["derive", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["results"]["entropy(p)"]["expr"] == "7/4"
    assert out["verification"]["passed"] is True


# --- bad input ---------------------------------------------------------------------


def derive_cli(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path, CliRunner().invoke(main, ["derive", str(path), "--no-verify"])


BAD = [
    (
        "distributions:\n  p: {categorical: [0.5, 0.4]}\nquantities: [entropy(p)]\n",
        3,
        20,
        "the probabilities of 'p' sum to 9/10, not 1 exactly",
    ),
    (
        "distributions:\n  p: {categorical: [1.5, -0.5]}\nquantities: [entropy(p)]\n",
        3,
        21,
        "probability 1 of 'p' is 3/2, more than 1; probabilities lie in [0, 1]",
    ),
    (
        "distributions:\n  p: {categorical: [0.5, -0.5, 1]}\nquantities: [entropy(p)]\n",
        3,
        26,
        "probability 2 of 'p' is negative (-1/2)",
    ),
    (
        "distributions:\n  p: {categorical: 3}\nquantities: [entropi(p)]\n",
        4,
        14,
        "unknown function 'entropi' (did you mean 'entropy'?)",
    ),
    (
        "distributions:\n  p: {categorical: 3}\n  q: {categorical: 4}\nquantities: ['kl(p, q)']\n",
        5,
        15,
        "kl() compares two distributions over the same outcomes; here 3 outcomes and 4 outcomes",
    ),
    (
        "distributions:\n  p: {categorical: 3}\nunits: bytes\nquantities: [entropy(p)]\n",
        4,
        8,
        "units must be nats or bits, got 'bytes'",
    ),
    (
        "distributions:\n  p: {categorical: 3}\n  q: {categorical: 3}\n"
        "quantities: ['cross_entropy(0.5 * p + q, q)']\n",
        5,
        15,
        "the weights of the mixture in cross_entropy(0.5 * p + q, q) sum to 3/2, not 1",
    ),
    (
        "distributions:\n  p: {joint: [[0.5, 0.25], [0.25]]}\nquantities: [entropy(p)]\n",
        3,
        28,
        "row 2 of the joint 'p' has 1 entries; row 1 has 2",
    ),
    (
        "distributions:\n  p: {categorical: 3}\nquantities: [entropy(p | p)]\n",
        4,
        22,
        "entropy() here takes the variables of a joint table (none declared)",
    ),
    (
        "distributions:\n  g: {gaussian: {mean: [0, 0], cov: [[1, 2], [2, 1]]}}\n"
        "quantities: [entropy(g)]\n",
        3,
        37,
        "the covariance of 'g' is not positive definite (eigenvalues 3, -1)",
    ),
    ("quantities: [entropy(p)]\n", 2, 1, "an information-theory spec needs 'distributions'"),
    (
        "distributions:\n  p: {categorical: 3}\nidentities: [entropy(p)]\n",
        4,
        14,
        "an identity needs '==' (or '>=', '<=' for an inequality)",
    ),
    # vectors are a diagonal Gaussian's mean and variance only
    (
        "symbols:\n  m: {shape: [k]}\n  v: {shape: [j], domain: positive}\ndims: {k: 2, j: 3}\n"
        "distributions:\n  g: {gaussian: {mean: m, var: v}}\nquantities: [entropy(g)]\n",
        7,
        17,
        "the mean and variance of 'g' have different shapes ([j] and [k])",
    ),
    (
        "symbols:\n  m: {shape: [k]}\ndims: {k: 2}\ndistributions:\n  p: {bernoulli: m}\n"
        "quantities: [entropy(p)]\n",
        6,
        18,
        "the parameter of 'p' must be a scalar, got a vector [k]",
    ),
    (
        "symbols:\n  m: {shape: [k]}\ndims: {k: 2}\ndistributions:\n"
        "  g: {gaussian: {mean: m, var: 1}}\nquantities: ['entropy(g) + m']\n",
        7,
        15,
        "expected an expression here, got a vector (sum(...) makes it a number)",
    ),
    # probabilities in symbols must stay in [0, 1] over the symbols' domains
    (
        "symbols:\n  a: {}\ndistributions:\n  p: {bernoulli: a}\nquantities: [entropy(p)]\n",
        5,
        18,
        "the parameter of 'p' is -0.132 at a = -0.132, outside [0, 1], for values its "
        "symbols can take (a: real)",
    ),
    (
        "symbols:\n  r: {domain: unit_interval}\ndistributions:\n"
        "  p: {categorical: [r - 1/2, 1 - r, 1/2]}\nquantities: ['entropy(p)']\n",
        5,
        21,
        "probability 1 of 'p' is -0.207 at r = 0.293, outside [0, 1]",
    ),
]


@pytest.mark.parametrize("body,line,col,message", BAD)
def test_located_errors(tmp_path, body, line, col, message):
    path, result = derive_cli(tmp_path, "name: t\n" + body)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:{line}:{col}:" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_catalog_specs_verify():
    specs = section_specs("info")
    assert specs
    for path in specs:
        report = dlsym.derive(path).verify()
        assert report.passed, (path, report)


def test_gaussian_closed_forms():
    from conftest import CATALOG

    d = dlsym.derive(CATALOG / "gaussian_entropy.yaml")
    assert d.results["entropy(g)"].expr == "log(2*e*pi*sigma**2)/2"
    assert d.results["entropy(g)"].extra["text"] == "log(2 e π sigma**2)/2"
    assert d.results["entropy(g)"].latex == (
        r"H\left(g\right) = "
        r"\frac{\log\left(2 e \pi \sigma^{2}\right)}{2}"
    )
    assert d.results["entropy(h)"].expr == "log(12*pi**2*exp(2))/2"
    vae = dlsym.derive(CATALOG / "vae_kl.yaml")
    assert vae.results["kl(q, prior)"].expr == "mu**2/2 + sigma**2/2 - log(sigma) - 1/2"
    rules = [line.rsplit("[", 1)[1].rstrip("]") for line in vae.steps[0].text.splitlines()]
    assert rules == [
        "expand the definitions",
        "log density of the Gaussian",
        "linearity of the expectation",
        "Gaussian moments",
        "regroup",
    ]
    assert vae.verify().passed


def test_multivariate_quadrature_check_can_fail(monkeypatch):
    from conftest import CATALOG

    from dlsym.sections.info import _values as _info_values

    report = dlsym.derive(CATALOG / "vae_kl_multivariate.yaml").verify()
    assert report.passed and report.max_abs_error < 1e-12
    assert report.checks[0].reference == "Gauss-Hermite quadrature (6^k nodes)"
    real = _info_values.Evaluator.derived
    monkeypatch.setattr(
        _info_values.Evaluator, "derived", lambda self, e: real(self, e) * (1 + 1e-5)
    )
    report = dlsym.derive(CATALOG / "vae_kl_multivariate.yaml").verify()
    assert not report.passed


FIVE = {
    "name": "five",
    "symbols": {"s": {"domain": "positive"}},
    "distributions": {
        "a": {
            "gaussian": {
                "mean": [0, 1, 0, 0, 1],
                "cov": [[1 if i == j else 0 for j in range(5)] for i in range(5)],
            }
        },
        "b": {
            "gaussian": {
                "mean": [0] * 5,
                "cov": [["s**2" if i == j else 0 for j in range(5)] for i in range(5)],
            }
        },
    },
    "quantities": ["kl(a, b)"],
    "verify": {"points": 4},
}


def test_monte_carlo_check_in_five_dimensions(monkeypatch):
    from dlsym.sections.info import _values as _info_values

    d = dlsym.derive(FIVE)
    assert d.results["kl(a, b)"].expr == "5*log(s) - 5/2 + 7/(2*s**2)"
    report = d.verify()
    assert report.passed, report
    assert report.checks[0].reference == "jax Monte Carlo (200000 samples) (5 standard errors)"
    real = _info_values.Evaluator.derived
    monkeypatch.setattr(_info_values.Evaluator, "derived", lambda self, e: real(self, e) + 0.1)
    assert not dlsym.derive(FIVE).verify().passed


def test_gan_optimal_discriminator_identity_proved():
    from conftest import CATALOG

    d = dlsym.derive(CATALOG / "gan_jsd.yaml")
    r = d.results["gan_value(p_data, p_g) == -log(4) + 2 * jsd(p_data, p_g)"]
    assert r.extra["status"] == "proved"
    assert (
        d.steps[1].text.splitlines()[-1]
        == " = 2 JSD(p_data ‖ p_g) - log(4)    [expand the definitions]"
    )
    disc = d.steps[0]
    assert disc.title == "Optimal discriminator for gan_value(p_data, p_g)"
    assert disc.text.splitlines()[3] == "D*_i = p_data_i/(p_data_i + p_g_i)    [solve for D_i]"
    assert disc.latex.splitlines()[4] == (
        r"\frac{\partial^{2} V}{\partial D_{i}^{2}} &= - \left(\frac{{p_{g}}_{i}}"
        r"{\left(-1 + D_{i}\right)^{2}} + \frac{{p_{\mathrm{data}}}_{i}}{D_{i}^{2}}\right) "
        r"&& \text{second derivative} \\"
    )
    assert (
        d.results["optimal discriminator D*(p_data, p_g)"].expr == "p_data[i]/(p_data[i] + p_g[i])"
    )
    report = d.verify()
    assert report.passed
    assert report.checks[0].kind == "optimal discriminator"


def test_wrong_discriminator_is_caught(monkeypatch):
    from conftest import CATALOG

    from dlsym.sections.info import _gan as _info_gan

    real = _info_gan.derive

    def wrong(ctx, info):
        disc = real(ctx, info)
        return _info_gan.Discriminator(disc.info, disc.rows, disc.optimum**2, disc.text)

    monkeypatch.setattr(_info_gan, "derive", wrong)
    report = dlsym.derive(CATALOG / "gan_jsd.yaml").verify()
    assert not report.passed and not report.checks[0].passed


def test_softmax_cross_entropy_gradient_is_the_calculus_spec():
    """The gradient of softmax cross-entropy with respect to the logits is derived by the
    Foundation engine from the calculus spec softmax_cross_entropy (documented choice)."""
    from conftest import CATALOG

    d = dlsym.derive(CATALOG / "softmax_cross_entropy.yaml")
    assert d.result_display("gradient")["expr"] == "softmax(z) - y"


def test_maximum_likelihood_by_lagrange_multiplier(monkeypatch):
    from conftest import CATALOG

    from dlsym.sections.info import _argmin as _info_argmin

    d = dlsym.derive(CATALOG / "categorical_mle.yaml")
    r = d.results["argmin(cross_entropy(data, q), q)"]
    assert (r.expr, r.latex, r.extra) == (
        "data[i]",
        r"q^{*}_{i} = \hat{p}_{i}",
        {"values": ["3/8", "1/8", "1/2"]},
    )
    lines = d.steps[0].text.splitlines()
    assert lines[2:6] == [
        "∂L/∂q_i = λ - data_i/q_i    [differentiate each sum term by term]",
        " = 0    [stationary point]",
        "q_i = data_i/λ    [solve for q_i]",
        "λ = 1    [from Σ_i q_i = 1 and the normalization of the other distributions]",
    ]
    assert d.verify().passed
    real = _info_argmin.derive
    monkeypatch.setattr(
        _info_argmin,
        "derive",
        lambda ctx, am, decls=(): _info_argmin.Minimizer(
            am, real(ctx, am).rows, real(ctx, am).optimum ** 2, am.text
        ),
    )
    report = dlsym.derive(CATALOG / "categorical_mle.yaml").verify()
    assert not report.passed and report.checks[0].kind == "argmin"


def test_argmin_of_a_mixture_objective():
    spec = {
        "name": "m",
        "symbols": {"a": {"domain": "unit_interval"}},
        "distributions": {
            "p": {"categorical": 3},
            "r": {"categorical": 3},
            "q": {"categorical": 3},
        },
        "quantities": ["argmin(a * kl(p, q) + (1 - a) * cross_entropy(r, q), q)"],
    }
    d = dlsym.derive(spec)
    r = d.results["argmin(a * kl(p, q) + (1 - a) * cross_entropy(r, q), q)"]
    assert r.expr == "a*p[i] - a*r[i] + r[i]"
    assert d.verify().passed


@pytest.mark.parametrize(
    "units,quantity",
    [
        ("nats", "argmin(entropy(q), q)"),
        ("bits", "argmin(entropy(q), q)"),
        ("nats", "argmin(entropy(q) + 0*entropy(d), q)"),
    ],
)
def test_argmin_of_entropy_has_no_interior_minimum(tmp_path, units, quantity):
    """Entropy is concave: its one stationary point on the simplex, the uniform q, is its
    maximum; its minimum (0) is at every vertex, a one-hot q, where no multiplier
    condition holds. It used to give q* = 1/3, and a single BFGS start at the uniform
    point (a stationary point) agreed."""
    body = (
        f"name: t\nunits: {units}\ndistributions:\n  q: {{categorical: 3}}\n"
        f"  d: {{categorical: 3}}\nquantities: ['{quantity}']\n"
    )
    path, result = derive_cli(tmp_path, body)
    assert result.exit_code == 2, result.output
    assert f"{path}:6:15:" in result.stderr, result.stderr
    assert "no interior minimum: the objective is concave on the simplex" in result.stderr
    assert "q*_i = 1/3 is its maximum" in result.stderr
    assert "a vertex of the simplex (a one-hot q)" in result.stderr


@pytest.mark.parametrize(
    "quantity,title,last",
    [
        (
            "argmax(entropy(q), q)",
            "Maximizer",
            [
                "∂²L/∂q_i² = -1/q_i    [second derivative; the Hessian is diagonal]",
                " < 0    [for every q_i in (0, 1): concave on the simplex, so the stationary "
                "point is the maximum]",
            ],
        ),
        (
            "argmin(-entropy(q), q)",
            "Minimizer",
            [
                "∂²L/∂q_i² = 1/q_i    [second derivative; the Hessian is diagonal]",
                " > 0    [for every q_i in (0, 1): convex on the simplex, so the stationary "
                "point is the minimum]",
            ],
        ),
    ],
)
def test_the_maximum_of_entropy_is_uniform(quantity, title, last):
    """H(q) is concave (∂² = -1/q_i < 0): its stationary point, the uniform q, is its
    maximum, and the minimum of -H(q)."""
    d = dlsym.derive(
        {"name": "t", "distributions": {"q": {"categorical": 3}}, "quantities": [quantity]}
    )
    r = d.results[quantity]
    assert (r.expr, r.extra) == ("1/3", {"values": ["1/3", "1/3", "1/3"]})
    assert d.steps[0].title == f"{title} {quantity}"
    assert d.steps[0].text.splitlines()[-2:] == last
    report = d.verify()
    assert report.passed and "the best of 4 starts" in report.checks[0].reference
    assert report.checks[0].kind == quantity[:6]


def test_argmax_of_a_convex_objective_has_no_interior_maximum(tmp_path):
    """Cross-entropy is convex in q: its stationary point q = p is the minimum; it grows
    without bound towards the simplex's boundary."""
    body = (
        "name: t\ndistributions:\n  p: {categorical: 3}\n  q: {categorical: 3}\n"
        "quantities: ['argmax(cross_entropy(p, q), q)']\n"
    )
    path, result = derive_cli(tmp_path, body)
    assert result.exit_code == 2 and f"{path}:5:15:" in result.stderr, result.stderr
    assert "no interior maximum: the objective is convex on the simplex" in result.stderr
    assert "q*_i = p_i is its minimum (argmin gives it)" in result.stderr


@pytest.mark.parametrize(
    "quantity,kind", [("argmin(entropy(q), q)", "min"), ("argmax(-entropy(q), q)", "max")]
)
def test_argmin_check_fails_on_a_maximizer(monkeypatch, quantity, kind):
    """Sabotage: a derivation that claims entropy's maximizer, the uniform q, as its
    minimizer fails verification: BFGS from near each vertex finds entropy ~0 there, below
    log 3 at q*. The same for the maximum of -H(q)."""
    from dlsym.sections.info import _argmin as _info_argmin

    monkeypatch.setattr(
        _info_argmin,
        "derive",
        lambda ctx, am, decls=(): _info_argmin.Minimizer(am, (), sp.Rational(1, 3), am.text),
    )
    d = dlsym.derive(
        {
            "name": "t",
            "distributions": {"q": {"categorical": 3}},
            "quantities": [quantity],
        }
    )
    report = d.verify()
    (check,) = report.checks
    assert not report.passed and check.kind == f"arg{kind}" and not check.passed
    assert check.max_abs_error > 0.5  # the numeric optimum is near a vertex
    assert f"the {kind}imizer disagrees with the numeric {kind}imum" in check.note
    assert "at q*" in check.note


def test_argmin_with_undecided_curvature_is_left_to_verification():
    """With a real (not in [0, 1]) the weights a p_i + (1 - a) r_i may be negative: the
    second derivative's sign is undecided, the stationary point is kept with a note, and
    verification finds the objective lower near a vertex (unbounded below there)."""
    spec = {
        "name": "m",
        "symbols": {"a": {}},
        "distributions": {
            "p": {"categorical": 3},
            "r": {"categorical": 3},
            "q": {"categorical": 3},
        },
        "quantities": ["argmin(a * kl(p, q) + (1 - a) * cross_entropy(r, q), q)"],
    }
    d = dlsym.derive(spec)
    assert any("not proven a minimum" in n for n in d.notes), d.notes
    assert not d.verify().passed


@pytest.mark.parametrize(
    "quantity,message",
    [
        ("argmin(entropy(p), p)", "argmin() minimizes over a symbolic categorical distribution"),
        ("entropy(q) + argmin(entropy(q), q)", "argmin(objective, q) is a whole quantity"),
        ("argmax(entropy(p), p)", "argmax() maximizes over a symbolic categorical distribution"),
        ("argmax(entropy(q))", "argmax() takes argmax(objective, q)"),
        ("1 - argmax(entropy(q), q)", "argmax(objective, q) is a whole quantity"),
    ],
)
def test_argmin_errors(tmp_path, quantity, message):
    body = (
        "name: t\ndistributions:\n  p: {categorical: [0.5, 0.5]}\n  q: {categorical: 2}\n"
        f"quantities: ['{quantity}']\n"
    )
    path, result = derive_cli(tmp_path, body)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert f"{path}:5:" in result.stderr


def test_correlated_symbolic_covariance_stays_real():
    """log det [[1, r], [r, 1]] = log(1 - r) + log(1 + r): factor's -(r - 1)(r + 1) split with
    expand_log(force=True) gave log(r - 1) + log(r + 1) + i pi, off the real line."""
    d = dlsym.derive(
        {
            "name": "g",
            "symbols": {"r": {"domain": "unit_interval"}},
            "distributions": {"g": {"gaussian": {"mean": [0, 0], "cov": [[1, "r"], ["r", 1]]}}},
            "quantities": ["entropy(g)"],
        }
    )
    r = d.results["entropy(g)"]
    assert "I" not in r.expr and "pi/2" not in r.expr
    import sympy as sp

    value = float(sp.sympify(r.expr, locals={"r": sp.Symbol("r")}).subs("r", sp.Rational(1, 2)))
    from scipy.stats import multivariate_normal

    assert abs(value - multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]]).entropy()) < 1e-12
    assert d.verify().passed


def test_an_identity_with_infinite_sides_and_valid_json():
    spec = {
        "name": "inf",
        "distributions": {"p": {"categorical": ["1/2", "1/2"]}, "q": {"categorical": [1, 0]}},
        "identities": ["cross_entropy(p, q) == entropy(p) + kl(p, q)"],
    }
    d = dlsym.derive(spec)
    report = d.verify()
    # infinite on both sides at the given tables, finite at the random ones: agreement
    assert report.passed, report
    from dlsym.printing._render import to_json

    out = json.loads(to_json(d))  # strict: NaN or Infinity would not parse in other tools
    assert out["verification"]["passed"] is True
    assert "NaN" not in to_json(d) and "Infinity" not in to_json(d)


def test_function_evaluates_closed_forms():
    import numpy as np
    from scipy.stats import entropy

    d = dlsym.derive(CATALOG / "vae_kl.yaml")
    f = d.function("kl(q, prior)")
    assert f.arguments == ("mu", "sigma")
    mu, sigma = np.array([0.0, 1.0, -0.5]), np.array([1.0, 2.0, 0.3])
    np.testing.assert_allclose(
        f(mu=mu, sigma=sigma), (mu**2 + sigma**2 - 1 - np.log(sigma**2)) / 2, rtol=1e-14
    )
    d = dlsym.derive(
        {
            "name": "c",
            "distributions": {"p": {"categorical": 3}, "q": {"categorical": 3}},
            "quantities": ["kl(p, q)"],
        }
    )
    kl = d.function("kl(p, q)", backend="jax")
    p, q = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]), np.array([1 / 3] * 3)
    np.testing.assert_allclose(kl(p=p, q=q), [entropy(p[0], q), entropy(p[1], q)], rtol=1e-6)
    with pytest.raises(KeyError, match="the quantities are: kl"):
        d.function("entropy(p)")
    with pytest.raises(TypeError, match="takes p, q"):
        kl(p=p)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_function_counts_an_outcome_of_probability_zero_as_zero(backend):
    """0 log 0 = 0, as the definitions say: an entropy at a one-hot p, and a KL or
    cross-entropy where both put 0 on an outcome, were nan (p log p in the code); where
    q alone is 0, the KL is inf. Checked against scipy's entr and rel_entr."""
    from scipy.special import entr, rel_entr

    d = dlsym.derive(
        {
            "name": "c",
            "distributions": {"p": {"categorical": 3}, "q": {"categorical": 3}},
            "quantities": ["kl(p, q)", "entropy(p)", "cross_entropy(p, q)"],
        }
    )
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.6, 0.0])
    onehot = np.array([0.0, 1.0, 0.0])
    assert float(d.function("entropy(p)", backend)(p=onehot)) == 0.0 == entr(onehot).sum()
    kl = d.function("kl(p, q)", backend)
    assert float(kl(p=p, q=q)) == pytest.approx(rel_entr(p, q).sum(), rel=1e-14)
    assert float(kl(p=p, q=q[::-1])) == np.inf == rel_entr(p, q[::-1]).sum()
    ce = d.function("cross_entropy(p, q)", backend)(p=onehot, q=q)
    assert float(ce) == pytest.approx(-np.log(0.6), rel=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_function_of_a_bernoulli_of_a_logit_is_stable(backend):
    """cross_entropy(Bern(y), Bern(sigmoid(z))) was log(1 − sigmoid(40)) = −inf (inf at
    z = 40) and 5e-6 off at z = 30: the section's code now gets the stable rewrites the
    calculus code has, y softplus(−z) + (1 − y) softplus(z)."""
    d = dlsym.derive(
        {
            "name": "b",
            "symbols": {"z": {}, "y": {"domain": "unit_interval"}},
            "distributions": {"t": {"bernoulli": "y"}, "m": {"bernoulli": "sigmoid(z)"}},
            "quantities": ["cross_entropy(t, m)"],
        }
    )
    f = d.function("cross_entropy(t, m)", backend)
    for z, y in ((40.0, 0.5), (30.0, 0.5), (-800.0, 0.5), (40.0, 1 - 1e-9)):
        want = y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
        assert float(f(z=z, y=y)) == pytest.approx(want, rel=1e-12)


def test_diagonal_gaussian_with_vector_parameters():
    """N(mu, diag(s2)) in k dimensions: the sum over coordinates of the univariate terms,
    checked by quadrature of scipy's multivariate_normal (which never sees the formula)."""
    import numpy as np

    d = dlsym.derive(CATALOG / "vae_kl_diagonal.yaml")
    kl = d.results["kl(q, prior)"]
    assert kl.expr == "sum((mu**2 + s2 - log(s2) - 1)/2)"
    assert r"\sum_{i=1}^{k}" in kl.latex and r"\boldsymbol{\mu}" in kl.latex
    identity = d.results["kl(q, prior) == sum(mu**2 + s2 - 1 - log(s2)) / 2"]
    assert identity.extra["proved"] is True
    report = d.verify()
    assert report.passed
    assert {c.reference for c in report.checks} >= {"Gauss-Hermite quadrature (6^k nodes)"}
    f = d.function("kl(q, prior)")
    mu, s2 = np.array([0.5, -1.0, 0.0]), np.array([0.5, 2.0, 1.0])
    assert abs(f(mu=mu, s2=s2) - 0.5 * np.sum(mu**2 + s2 - 1 - np.log(s2))) < 1e-14


def test_diagonal_gaussian_check_can_fail(monkeypatch):
    import sympy as sp

    import dlsym.sections.info._gauss as gauss

    real = gauss.Rules.moments
    s2 = sp.Symbol("s2", positive=True)

    def wrong(self, expr):  # the moments with the variance off by 0.1%
        return real(self, expr).subs(s2, s2 * sp.Rational(1001, 1000))

    monkeypatch.setattr(gauss.Rules, "moments", wrong)
    d = dlsym.derive(CATALOG / "vae_kl_diagonal.yaml")
    assert not d.verify().passed


def test_multivariate_gaussians_with_matrix_symbols():
    """N(m1, S1), N(m2, S2) with S spd matrix symbols: the textbook KL in matrix form,
    checked by quadrature at random SPD matrices and against NumPy by hand."""
    import numpy as np

    d = dlsym.derive(CATALOG / "gaussian_kl_matrix.yaml")
    kl = d.results["kl(p, q)"]
    assert kl.expr == (
        "(-k - logdet(S1) + logdet(S2) + (m1 - m2) @ inv(S2) @ (m1 - m2) + trace(inv(S2) @ S1))/2"
    )
    assert (
        r"\left(\boldsymbol{\mu}_1 - \boldsymbol{\mu}_2\right)^{\top} "
        r"\boldsymbol{\Sigma}_2^{-1}"
    ) in kl.latex
    assert d.results["kl(p, prior)"].expr == "(-k - logdet(S1) + m1 @ m1 + trace(S1))/2"
    # one notation from the first step to the last: the generic parameters are bold as
    # the spec's own symbols are, the outcome a bold vector; a prior whose LaTeX name is
    # a formula (N(0, I)) is named upright in a subscript
    tex = d.latex()
    assert r"\mathbb{E}_{\mathbf{x} \sim p}\left[\log p\left(\mathbf{x}\right)" in tex
    assert (
        r"\left(\mathbf{x} - \boldsymbol{\mu}_{q}\right)^{\top} \boldsymbol{\Sigma}_{q}^{-1}"
    ) in tex
    assert r"\log\det\left(\boldsymbol{\Sigma}_{\mathrm{prior}}\right)" in tex
    assert r" \Sigma_" not in tex and r"\mu_{" not in tex
    assert r"{x \sim" not in tex and r"\left(x" not in tex
    report = d.verify()
    assert report.passed
    assert "Gauss-Hermite quadrature (6^k nodes)" in {c.reference for c in report.checks}
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    S1, S2 = A @ A.T + np.eye(3), B @ B.T + np.eye(3)
    m1, m2 = rng.standard_normal(3), rng.standard_normal(3)
    by_hand = 0.5 * (
        np.trace(np.linalg.solve(S2, S1))
        + (m2 - m1) @ np.linalg.solve(S2, m2 - m1)
        - 3
        + np.log(np.linalg.det(S2) / np.linalg.det(S1))
    )
    assert abs(d.function("kl(p, q)")(m1=m1, m2=m2, S1=S1, S2=S2) - by_hand) < 1e-12


def test_matrix_symbol_gaussian_errors(tmp_path):
    body = (
        "symbols:\n  m: {shape: [k]}\n  S: {shape: [k, k]}\ndims: {k: 2}\n"
        "distributions:\n  g: {gaussian: {mean: m, cov: S}}\nquantities: [entropy(g)]\n"
    )
    path, result = derive_cli(tmp_path, "name: t\n" + body)
    assert result.exit_code == 2 and "symbol 'S' is a matrix" in result.stderr
    assert "give it domain spd" in result.stderr
    body = body.replace("S: {shape: [k, k]}", "S: {shape: [k, k], domain: spd}").replace(
        "mean: m,", "mean: [0, 0],"
    )
    path, result = derive_cli(tmp_path, "name: t\n" + body)
    assert result.exit_code == 2 and "the mean of 'g' must be a vector of size k" in result.stderr


def test_univariate_gaussian_beside_a_matrix_one_stays_univariate():
    spec = {
        "name": "u",
        "symbols": {"m": {"shape": ["k"]}, "S": {"shape": ["k", "k"], "domain": "spd"}},
        "dims": {"k": 3},
        "distributions": {
            "p": {"gaussian": {"mean": "m", "cov": "S"}},
            "u": {"gaussian": {"mean": 0, "var": 2}},
        },
        "quantities": ["kl(u, p)", "entropy(u)"],
    }
    d = dlsym.derive(spec)
    # beside p, u is N(0, 2 I); on its own it is the univariate N(0, 2)
    assert (
        d.results["kl(u, p)"].expr
        == "-k/2 - k*log(2)/2 + logdet(S)/2 + m @ inv(S) @ m/2 + trace(inv(S))"
    )
    assert d.results["entropy(u)"].expr == "log(4*e*pi)/2"
    assert d.verify().passed


def test_diagonal_beside_a_matrix_symbol_gaussian_is_refused(tmp_path):
    body = (
        "symbols:\n  m: {shape: [k]}\n  w: {shape: [k], domain: positive}\n"
        "  S: {shape: [k, k], domain: spd}\ndims: {k: 2}\ndistributions:\n"
        "  p: {gaussian: {mean: m, cov: S}}\n  g: {gaussian: {mean: m, var: w}}\n"
        "quantities: ['kl(p, g)']\n"
    )
    path, result = derive_cli(tmp_path, "name: t\n" + body)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        "of a diagonal Gaussian (vector variances) and one with a covariance matrix"
        in result.stderr
    )


def test_coordinate_sums_evaluate_in_batches():
    import numpy as np

    f = dlsym.derive(CATALOG / "vae_kl_diagonal.yaml").function("kl(q, prior)")
    mu, s2 = np.arange(12.0).reshape(4, 3) / 10, np.ones((4, 3)) * 0.5
    np.testing.assert_allclose(
        f(mu=mu, s2=s2), 0.5 * np.sum(mu**2 + s2 - 1 - np.log(s2), axis=-1), rtol=1e-14
    )


def test_matrix_symbol_gaussian_check_can_fail(monkeypatch):
    import sympy as sp

    import dlsym.sections.info._gauss as gauss

    real = gauss.Rules._matrix_term

    def wrong(self, e):  # tr(S2^-1 S1) off by 1%
        out = real(self, e)
        return out * sp.Rational(101, 100) if isinstance(e, gauss.Trace) else out

    monkeypatch.setattr(gauss.Rules, "_matrix_term", wrong)
    report = dlsym.derive(CATALOG / "gaussian_kl_matrix.yaml").verify()
    assert not report.passed
    assert "Gauss-Hermite quadrature (6^k nodes)" in {
        c.reference for c in report.checks if not c.passed
    }


def test_an_infinite_number_as_a_quantity_is_a_located_error():
    # info quantities go through the same expression-text checks as every expression
    with pytest.raises(dlsym.SpecError, match="numbers must be finite in quantity 1"):
        dlsym.derive(
            {"name": "q", "distributions": {"p": {"categorical": 3}}, "quantities": [float("inf")]}
        )


def test_symmetric_quantities_take_the_table_in_either_order():
    # rows index Y here: entropy(X, Y) and mutual_information(X, Y) are symmetric, so
    # they are the table's joint entropy and mutual information whatever the order
    table = [["1/8", "1/4"], ["3/8", "1/4"]]
    d = dlsym.derive(
        {
            "name": "yx",
            "units": "bits",
            "distributions": {"p": {"joint": table, "variables": ["Y", "X"]}},
            "quantities": ["mutual_information(X, Y)", "entropy(X, Y)"],
        }
    )
    P = np.array([[1 / 8, 1 / 4], [3 / 8, 1 / 4]])
    py, px = P.sum(axis=1), P.sum(axis=0)
    mi = float(np.sum(P * np.log2(P / np.outer(py, px))))
    assert d.results["mutual_information(X, Y)"].extra["value"] == pytest.approx(mi, rel=1e-12)
    assert d.results["entropy(X, Y)"].extra["value"] == pytest.approx(
        -float(np.sum(P * np.log2(P))), rel=1e-12
    )
    assert d.verify().passed


def test_a_large_tables_marginal_keeps_its_log_whole(monkeypatch):
    # factor_list on a sum of 32 cells (a 32 x 32 table's marginal) took a minute over
    # the 64 marginals; a sum of that many terms has no factor to find
    import sympy as sp

    from dlsym.sections.info import _sym

    cells = sp.symbols("c0:20", positive=True)

    def refuse(*args, **kwargs):
        raise AssertionError("factored")

    monkeypatch.setattr(_sym.sp, "factor_list", refuse)
    assert _sym.split_log(sp.Add(*cells)) == sp.log(sp.Add(*cells))


def test_a_symbolic_20_by_20_table_derives_and_verifies():
    d = dlsym.derive(
        {
            "name": "t20",
            "distributions": {"p": {"joint": [20, 20], "variables": ["X", "Y"]}},
            "quantities": ["mutual_information(X, Y)", "entropy(X, Y)"],
            "identities": ["mutual_information(X, Y) == entropy(X) - entropy(X | Y)"],
        }
    )
    report = d.verify(points=4)
    assert report.passed, [c for c in report.checks if not c.passed]


def test_an_inequality_with_an_infinite_side_is_decided_exactly(tmp_path):
    """kl(p, q) = inf where q puts 0 on an outcome p does not: 'kl(p, q) <= -1' passed
    (the tolerance, relative to the sides, was itself infinite: -inf >= -inf), with 1
    point and no error; inf <= -1 is false. The true 'kl(p, q) >= 0' still holds there."""
    head = "name: t\ndistributions:\n  p: {categorical: [1/2, 1/2]}\n  q: {categorical: [1, 0]}\n"
    false = tmp_path / "false.yaml"
    false.write_text(
        head + "identities:\n  - kl(p, q) <= -1\n  - cross_entropy(p, q) <= entropy(p)\n"
    )
    result = CliRunner().invoke(main, ["derive", str(false)])
    assert result.exit_code == 1, result.output
    d = dlsym.derive(false, verify=True)
    assert [c.passed for c in d.verification.checks if c.kind == "inequality"] == [False, False]
    true = tmp_path / "true.yaml"
    true.write_text(
        head + "identities:\n  - kl(p, q) >= 0\n  - cross_entropy(p, q) >= entropy(p)\n"
    )
    assert dlsym.derive(true, verify=True).verification.passed


def test_a_side_that_overflows_float64_on_the_way_is_evaluated_exactly(tmp_path):
    """log(2 π e 1e308)/2 = 356.017...: 2 π e 1e308 is past float64, its log is not. The
    reference and the closed form both read it exactly (mpmath, SymPy); it was inf on
    both, and the true identity failed. A false one (+1) still fails; a side past any
    float (exp(exp(exp(1000)))) is printed and compared as inf, not a crash."""
    head = "name: t\ndistributions:\n  g: {gaussian: {mean: 0, var: 1e308}}\nidentities:\n"
    true = tmp_path / "true.yaml"
    true.write_text(
        head + "  - entropy(g) == log(2 * pi * e * 1e308) / 2\n"
        "  - entropy(g) <= exp(exp(exp(1000)))\n"
    )
    d = dlsym.derive(true, verify=True)
    assert d.verification.passed, d.verification
    expected = 0.5 * (np.log(2 * np.pi * np.e) + 308 * np.log(10))
    assert expected == pytest.approx(356.0170428542877, rel=1e-15)
    false = tmp_path / "false.yaml"
    false.write_text(head + "  - entropy(g) == log(2 * pi * e * 1e308) / 2 + 1\n")
    result = CliRunner().invoke(main, ["derive", str(false)])
    assert result.exit_code == 1, result.output
    assert "expected 357.0170429, derived 356.0170429" in " ".join(result.output.split())


def test_a_conditional_entropy_whose_cells_cancel_has_its_value():
    """H(X | Y) of a 1 x 4 table (X has one outcome): the two sums cancel to 0, and the
    value was left out (the unevaluated Sum printed as the result, no 'value')."""
    d = dlsym.derive(
        {
            "name": "one_row",
            "distributions": {
                "p": {"joint": [["1/4", "1/4", "1/4", "1/4"]], "variables": ["X", "Y"]}
            },
            "quantities": ["entropy(X | Y)", "entropy(Y | X)"],
        },
        verify=True,
    )
    assert d.result_display("entropy(X | Y)")["value"] == 0.0
    assert d.result_display("entropy(Y | X)")["value"] == pytest.approx(np.log(4))
    assert d.verification.passed


def test_an_identity_undefined_at_a_table_is_checked_where_it_is_defined():
    import yaml

    """kl(p, q) − cross_entropy(p, q) == −entropy(p) at q = (1, 0), p = (1/2, 1/2): the
    left side is inf − inf there, undefined; the identity (proved) failed there with
    'the reference is not finite'. That point is left out, said in the note."""
    head = "name: t\ndistributions:\n  p: {categorical: [1/2, 1/2]}\n  q: {categorical: [1, 0]}\n"
    d = dlsym.derive(
        yaml.safe_load(head + "identities:\n  - kl(p, q) - cross_entropy(p, q) == -entropy(p)\n"),
        verify=True,
    )
    assert d.verification.passed, d.verification
    notes = " ".join(c.note for c in d.verification.checks)
    assert "where it is undefined (inf - inf) left out" in notes
    # a false one, checked at the given tables alone, where it is undefined: nothing
    # could be compared, so verification cannot run (never a pass)
    wrong = dlsym.derive(
        yaml.safe_load(head + "identities:\n  - kl(p, q) - cross_entropy(p, q) == entropy(p)\n")
    )
    with pytest.raises(dlsym.SpecError, match="undefined .inf - inf. at every point"):
        wrong.verify()


def test_the_gaussian_kl_reference_is_integrated_in_the_standardized_variable():
    """quad over m_a ± 40σ_a in x lost σ_a at a mean of 1e12 (the interval's ends round
    to within 1e-4 of each other relative to the mean); in z = (x − m_a)/σ_a the
    reference keeps the KL of N(1e12, 1) from N(1e12 + 3, 4) to its closed form."""
    from dlsym.sections.info._gauss_num import _univariate_ref

    params = [(np.array([1e12]), np.array([[1.0]])), (np.array([1e12 + 3]), np.array([[4.0]]))]
    want = np.log(2.0) + (1 + 9) / (2 * 4) - 0.5
    np.testing.assert_allclose(_univariate_ref("kl", params), want, rtol=1e-9)


def test_the_kl_of_two_gaussians_keeps_the_squared_mean_gap():
    """KL(N(m1, s1²) ‖ N(m2, s2²)) = log(s2/s1) + (s1² + (m1 − m2)²)/(2 s2²) − 1/2, with
    (m1 − m2)² kept whole: multiplied out (m1²/(2 s2²) − m1 m2/s2² + ...) it read worse
    and cancelled to 0 in float64 at m1 = 1e8, m2 = 1e8 + 1, where the KL is 1/2."""
    d = dlsym.derive(
        {
            "name": "kl_normals",
            "symbols": {
                "m1": {},
                "m2": {},
                "s1": {"domain": "positive"},
                "s2": {"domain": "positive"},
            },
            "distributions": {
                "p": {"gaussian": {"mean": "m1", "var": "s1**2"}},
                "q": {"gaussian": {"mean": "m2", "var": "s2**2"}},
            },
            "quantities": ["kl(p, q)"],
        }
    )
    assert "(m1 - m2)**2" in d.results["kl(p, q)"].expr
    f = d.function("kl(p, q)")
    assert f(m1=1e8, m2=1e8 + 1, s1=1.0, s2=1.0) == pytest.approx(0.5, rel=1e-15)
    assert f(m1=0.3, m2=-1.1, s1=0.7, s2=1.9) == pytest.approx(
        np.log(1.9 / 0.7) + (0.49 + 1.4**2) / (2 * 1.9**2) - 0.5, rel=1e-14
    )
    assert d.verify().passed


@pytest.mark.parametrize(
    "symbols, distributions, claim",
    [
        # H(N(0, s)) = log(2πe s)/2 < 0 for s < 1/(2πe): at s in [0.5, 2] it held
        ({"s": {"domain": "positive"}}, {"g": {"gaussian": {"mean": 0, "var": "s"}}},
         "entropy(g) >= 0"),
        ({"s": {"domain": "positive"}}, {"g": {"gaussian": {"mean": 0, "var": "s"}}},
         "entropy(g) <= 2"),  # fails for s > e³/(2π)
        # KL(Bern(a) ‖ Bern(1/2)) passes 0.5 for a < 0.04 or a > 0.96
        ({"a": {"domain": "unit_interval"}},
         {"p": {"bernoulli": "a"}, "q": {"bernoulli": "1/2"}}, "kl(p, q) <= 0.5"),
    ],
)  # fmt: skip
def test_an_unproved_inequality_is_searched_out_to_its_symbols_extremes(
    symbols, distributions, claim
):
    """An inequality that no classical argument proves was 'verification passed' from
    16 draws in the samplers' ranges (positive in [0.5, 2], the unit interval in
    [0.05, 0.95]), though false elsewhere in the domain; it is checked at each scalar
    symbol's extremes too, and fails there."""
    d = dlsym.derive(
        {"name": "claim", "symbols": symbols, "distributions": distributions,
         "identities": [claim]}
    )  # fmt: skip
    report = d.verify()
    assert not report.passed
    assert report.points == 16 + 6  # six extremes of the one symbol
    true = dlsym.derive(
        {"name": "claim", "symbols": symbols, "distributions": distributions,
         "identities": [claim.replace("<= 0.5", "<= 1").replace("<= 2", "<= entropy(g) + s")
                        .replace(">= 0", ">= entropy(g) - s")]}
    )  # fmt: skip
    assert true.verify().passed


def test_an_argmin_on_a_face_of_the_simplex_is_searched_there(monkeypatch):
    """argmin(kl(q, p), q) with p = (1/2, 1/2, 0): q* = p is right, but KL(q‖p) is +inf
    wherever q weighs the third outcome, so at every point softmax logits reach, and the
    check said the minimizer disagrees (exit 1). The search is on the face q may weigh
    (the outcomes whose vertex is finite); a wrong q* there still fails."""
    from dlsym.sections.info import _argmin as _info_argmin

    spec = {
        "name": "face",
        "distributions": {"p": {"categorical": [0.5, 0.5, 0]}, "q": {"categorical": 3}},
        "quantities": ["argmin(kl(q, p), q)"],
    }
    assert dlsym.derive(spec).verify().passed
    real = _info_argmin.derive
    monkeypatch.setattr(
        _info_argmin,
        "derive",
        lambda ctx, am, decls=(): _info_argmin.Minimizer(
            am, real(ctx, am).rows, 0 * real(ctx, am).optimum + sp.Rational(1, 3), am.text
        ),
    )
    report = dlsym.derive(spec).verify()
    assert not report.passed and report.checks[0].kind == "argmin"


def test_a_sum_of_probabilities_off_by_a_tiny_amount_reads_as_a_number(tmp_path):
    """[1e-300, 0.5, 0.5] sums to 1 + 1e-300: the error printed the exact fraction, two
    301-digit numbers (the MDP section's already said 1 + 1e-300)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\ndistributions:\n  r: {categorical: [1e-300, 0.5, 0.5]}\n"
        "quantities:\n  - entropy(r)\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2
    assert "the probabilities of 'r' sum to 1 + 1e-300, not 1 exactly" in result.stderr


def test_a_one_dimensional_gaussians_kl_with_itself_is_0():
    """m [1], S [1, 1] (sizes written as literals): KL(p‖p) read (tr(eye(1)) − 1)/2, a
    number SymPy could not evaluate, and float() of it was an internal error (exit 3).
    tr I_n is n."""
    d = dlsym.derive(
        {"name": "self_kl", "symbols": {"m": {"shape": [1]},
         "S": {"shape": [1, 1], "domain": "spd"}},
         "distributions": {"p": {"gaussian": {"mean": "m", "cov": "S"}},
                           "q": {"gaussian": {"mean": "m", "cov": "S"}}},
         "quantities": ["kl(p, q)"]},
        verify=True,
    )  # fmt: skip
    assert d.verification.passed, d.verification
    assert d.result_display("kl(p, q)")["expr"] == "0"


def test_a_vector_of_variances_under_cov_is_a_diagonal_covariance():
    """The README says a covariance may be "a vector of variances (diagonal)": written
    `cov: v` with v a vector it was refused ("must be a square matrix symbol"); it is
    read as `var: v`, with the same results."""
    base = {
        "name": "diag",
        "symbols": {
            "m1": {"shape": ["k"]},
            "m2": {"shape": ["k"]},
            "v1": {"shape": ["k"], "domain": "positive"},
            "v2": {"shape": ["k"], "domain": "positive"},
        },
        "dims": {"k": 3},
        "quantities": ["kl(q, p)"],
    }
    as_cov = dlsym.derive(
        {
            **base,
            "distributions": {
                "q": {"gaussian": {"mean": "m1", "cov": "v1"}},
                "p": {"gaussian": {"mean": "m2", "cov": "v2"}},
            },
        },
        verify=True,
    )
    as_var = dlsym.derive(
        {
            **base,
            "distributions": {
                "q": {"gaussian": {"mean": "m1", "var": "v1"}},
                "p": {"gaussian": {"mean": "m2", "var": "v2"}},
            },
        }
    )
    assert as_cov.verification.passed
    assert as_cov.to_dict()["results"] == as_var.to_dict()["results"]
    m1, m2, v1, v2 = np.array([0.1, 1, -2]), np.zeros(3), np.array([1, 2, 0.5]), np.ones(3)
    got = as_cov.function("kl(q, p)")(m1=m1, m2=m2, v1=v1, v2=v2)
    want = np.sum((v1 + (m1 - m2) ** 2) / v2 - 1 - np.log(v1 / v2)) / 2
    assert float(got) == pytest.approx(want, rel=1e-14)
