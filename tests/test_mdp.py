"""Markov decision processes: exact Bellman solutions, their checks, output and errors."""

import sys
import textwrap

import numpy as np
import pytest
import sympy as sp
import yaml
from click.testing import CliRunner
from conftest import CATALOG, ROOT, section_specs

import dlsym
from dlsym._cli import main
from dlsym._errors import SpecError

gamma = sp.Symbol("gamma", positive=True)


@pytest.fixture(scope="module")
def derived():
    return {p.stem: dlsym.derive(p) for p in section_specs("mdp")}


def test_catalog_has_the_issue_examples(derived):
    assert set(derived) >= {
        "mdp_two_state",
        "mdp_recycling_robot",
        "mdp_small_stochastic",
        "mdp_gridworld",
    }


@pytest.mark.parametrize("path", section_specs("mdp"), ids=lambda p: p.stem)
def test_catalog_mdp_verifies(path, derived):
    report = derived[path.stem].verify()
    assert report.passed, report
    assert report.max_rel_error < 1e-10
    refs = {c.reference for c in report.checks}
    assert "iterative policy evaluation (JAX)" in refs or "value iteration (JAX)" in refs


def test_two_state_values_as_functions_of_gamma(derived):
    d = derived["mdp_two_state"]
    v = d.results["v_pi"].value
    # by hand: v = (I - gamma P_pi)^{-1} r_pi with r_pi = (1/2, 1),
    # P_pi = [[11/20, 9/20], [1/2, 1/2]]
    P = sp.Matrix(
        [[sp.Rational(11, 20), sp.Rational(9, 20)], [sp.Rational(1, 2), sp.Rational(1, 2)]]
    )
    want = (sp.eye(2) - gamma * P).inv() * sp.Matrix([sp.Rational(1, 2), 1])
    assert sp.simplify(v["s1"] - want[0]) == 0 and sp.simplify(v["s2"] - want[1]) == 0
    assert d.results["v_pi"].expr == (
        "[2*(2*gamma + 5)/((gamma - 20)*(gamma - 1)), -2*(3*gamma - 10)/((gamma - 20)*(gamma - 1))]"
    )
    assert v["s1"].subs(gamma, 0) == sp.Rational(1, 2)  # no future: the mean reward
    f = d.function("v_pi")
    np.testing.assert_allclose(
        f(gamma=0.5), [float(want[0].subs(gamma, 0.5)), float(want[1].subs(gamma, 0.5))], rtol=1e-14
    )
    assert f(gamma=np.array([0.1, 0.5, 0.9])).shape == (3, 2)


def test_two_state_equations_written_out(derived):
    d = derived["mdp_two_state"]
    step = d.steps[0]
    assert step.text.splitlines() == [
        "vπ(s1) = 1/2·[0 + γ·vπ(s1)] + 1/2·[1 + γ·[9/10·vπ(s2) + 1/10·vπ(s1)]]",
        "       = 1/2 + γ·[11/20·vπ(s1) + 9/20·vπ(s2)]",
        "vπ(s2) = 1/2·[2 + γ·vπ(s2)] + 1/2·[0 + γ·vπ(s1)]",
        "       = 1 + γ·[1/2·vπ(s1) + 1/2·vπ(s2)]",
    ]
    assert step.latex.splitlines()[0] == (
        r"v_{\pi}\left(\text{s1}\right) &= \frac{1}{2}\, \left[0 + \gamma\, "
        r"v_{\pi}\left(\text{s1}\right)\right] + \frac{1}{2}\, \left[1 + \gamma\, "
        r"\left[\frac{9}{10}\, v_{\pi}\left(\text{s2}\right) + \frac{1}{10}\, "
        r"v_{\pi}\left(\text{s1}\right)\right]\right] \\"
    )
    q = d.results["q_pi"].value
    assert sp.simplify(q[("s1", "stay")] - gamma * d.results["v_pi"].value["s1"]) == 0
    assert (
        "max{0 + γ·v*(s1), 1 + γ·[9/10·v*(s2) + 1/10·v*(s1)]}"
        in d.results["bellman_optimality"].expr
    )


def test_recycling_robot_symbolic_rewards(derived):
    d = derived["mdp_recycling_robot"]
    v = d.results["v_pi"].value
    r_search, alpha = sp.Symbol("r_search", real=True), sp.Symbol("alpha", positive=True)
    # by hand: v_h = r_s + 9/10 (a v_h + (1 - a) v_l), v_l = 9/10 v_h
    assert sp.simplify(v["high"] - 100 * r_search / (19 - 9 * alpha)) == 0
    assert sp.simplify(v["low"] - 90 * r_search / (19 - 9 * alpha)) == 0
    # rewards given per next state are shown inside the sum over next states
    steps = {s.title: s for s in d.steps}
    assert (
        "qπ(low, search) = β·[r_search + 9/10·vπ(low)] + (1 - β)·[-3 + 9/10·vπ(high)]"
        in steps["Action values q_pi"].text
    )
    # a sum as a coefficient keeps its parentheses in LaTeX too: (1 - alpha) v(low)
    assert (
        r"\alpha\, v_{\pi}\left(\text{high}\right) + \left(1 - \alpha\right) "
        r"v_{\pi}\left(\text{low}\right)"
    ) in steps["Bellman expectation equation for v_pi"].latex
    # q_pi's own equation, through the policy's average at the next state
    assert (
        "qπ(high, search) = r_search + 9/10·[α·qπ(high, search) + (1 - α)·qπ(low, recharge)]"
        in steps["Bellman expectation equation for q_pi"].text
    )
    # a deterministic policy's equation is written once, not twice
    assert steps["Bellman expectation equation for v_pi"].text.splitlines() == [
        "vπ(high) = r_search + 9/10·[α·vπ(high) + (1 - α)·vπ(low)]",
        "vπ(low) = 0 + 9/10·vπ(high)",
    ]
    assert np.isnan(d.function("q_pi")(r_search=1, r_wait=0, alpha=0.5, beta=0.5)[0, 2])


def test_small_stochastic_optimum(derived):
    d = derived["mdp_small_stochastic"]
    assert d.results["policy_star"].value == {
        "start": ("safe",),
        "middle": ("safe",),
        "goal": ("risky",),
    }
    assert d.results["v_star"].value["goal"] == sp.Rational(150510, 14797)
    assert d.results["v_star"].expr == "[85310/14797, 117710/14797, 150510/14797]"
    assert d.optimum.ties == {}
    # v* dominates v_pi of the cautious fixed policy in every state
    assert all(d.optimum.v[s] >= d.evaluation.v[s] for s in d.mdp.states)


def test_gridworld_episodic_gamma_one(derived):
    d = derived["mdp_gridworld"]
    assert [d.optimum.v[s] for s in d.mdp.states] == [-2, -1, 0, -3, -2, -1]
    assert d.optimum.ties == {"c1_0": ("up", "right"), "c1_1": ("up", "right")}
    assert d.evaluation.v["c0_0"] == -16 and d.evaluation.v["c1_2"] == sp.Rational(-44, 5)
    grid = next(t for t in d.tables if t.title == "v* and the optimal actions on the grid")
    assert grid.rows == (
        ("0", "-2 right", "-1 right", "T"),
        ("1", "-3 up/right", "-2 up/right", "-1 up"),
    )
    assert any("ties in the optimal policy" in n for n in d.notes)


def test_q_pi_expectation_equations(derived):
    d = derived["mdp_two_state"]
    step = next(s for s in d.steps if s.title == "Bellman expectation equation for q_pi")
    assert step.text.splitlines() == [
        "qπ(s1, stay) = 0 + γ·[1/2·qπ(s1, stay) + 1/2·qπ(s1, go)]",
        "qπ(s1, go) = 1 + γ·[9/10·[1/2·qπ(s2, stay) + 1/2·qπ(s2, go)] + "
        "1/10·[1/2·qπ(s1, stay) + 1/2·qπ(s1, go)]]",
        "qπ(s2, stay) = 2 + γ·[1/2·qπ(s2, stay) + 1/2·qπ(s2, go)]",
        "qπ(s2, go) = 0 + γ·[1/2·qπ(s1, stay) + 1/2·qπ(s1, go)]",
    ]
    assert d.results["bellman_expectation"].extra["equations"] == 6  # 2 for v, 4 for q
    refs = {c.reference for c in d.verify().checks}
    assert "Bellman residual of the exact q_pi" in refs


def test_optimal_checks_use_the_exact_q_star_and_find_hidden_ties(derived):
    d = derived["mdp_gridworld"]
    refs = {c.reference for c in d.verify().checks}
    assert {
        "Bellman optimality residual of the exact v*",
        "greedy with respect to the exact q*",
        "ties complete under the exact q*",
    } <= refs
    from dataclasses import replace

    from dlsym.sections.mdp._solve import Optimum

    hidden = {**d.optimum.policy, "c1_0": ("up",)}  # "right" is equally good there
    d.optimum = Optimum(d.optimum.iterations, d.optimum.v, d.optimum.q, hidden)
    try:
        report = d.verify()
    finally:
        d.optimum = replace(d.optimum, policy={**hidden, "c1_0": ("up", "right")})
    bad = [c for c in report.checks if not c.passed]
    assert not report.passed and {c.reference for c in bad} == {
        "ties complete under value iteration's q*",
        "ties complete under the exact q*",
    }
    assert bad[0].note == "unreported tie(s): right in c1_0"


def test_json_contract(derived):
    out = derived["mdp_small_stochastic"].to_dict()
    assert out["results"]["policy_star"]["policy"] == {
        "start": ["safe"],
        "middle": ["safe"],
        "goal": ["risky"],
    }
    assert out["results"]["v_pi"]["values"]["goal"] == "225130/22259"
    assert {"expr", "latex"} <= set(out["results"]["q_star"])
    assert out["results"]["policy_star"]["latex"].startswith(
        r"\pi_*\left(\text{start}\right) = \text{safe},\ "
    )
    assert out["results"]["bellman_expectation"]["expr"].startswith(
        "vπ(start) = -1 + 9/10·[1/5·vπ(start) + 4/5·vπ(middle)]; "
    )
    assert all({"title", "latex", "justification"} <= set(s) for s in out["steps"])


def test_wrong_value_fails_verification(derived, monkeypatch):
    from dataclasses import replace

    d = dlsym.derive(CATALOG / "mdp_two_state.yaml")
    ev = d.evaluation
    d.evaluation = replace(ev, v={**ev.v, "s2": ev.v["s2"] * (1 + sp.Rational(1, 10**6))})
    report = d.verify()
    assert not report.passed
    failed = {c.reference for c in report.checks if not c.passed}
    assert failed == {"iterative policy evaluation (JAX)", "Bellman residual of the exact v_pi"}


def test_wrong_policy_fails_verification(monkeypatch):
    d = dlsym.derive(CATALOG / "mdp_small_stochastic.yaml")
    d.optimum.policy["goal"] = ("safe",)  # not greedy with respect to q*
    report = d.verify()
    failed = [c for c in report.checks if not c.passed]
    assert {c.kind for c in failed} == {"policy_star"}
    # not greedy, and the action that is best (risky) is left out, under both q*'s
    assert {c.reference for c in failed} == {
        "greedy with respect to value iteration's q*",
        "greedy with respect to the exact q*",
        "ties complete under value iteration's q*",
        "ties complete under the exact q*",
    }


def test_cli_exit_1_on_a_wrong_exact_solution(monkeypatch):
    import dlsym.sections.mdp._section as bellman

    real = bellman.evaluate

    def off_by_one(mdp, policy, loc=None):
        ev = real(mdp, policy, loc)
        return type(ev)(ev.policy, ev.P, ev.r, {s: v + 1 for s, v in ev.v.items()}, ev.q)

    monkeypatch.setattr(bellman, "evaluate", off_by_one)
    result = CliRunner().invoke(main, ["derive", "mdp_gridworld", "--format", "json"])
    assert result.exit_code == 1
    assert "v_pi disagrees with iterative policy evaluation (JAX)" in result.stderr


def test_cli_text_and_latex(tmp_path):
    result = CliRunner().invoke(main, ["derive", "mdp_gridworld"])
    assert result.exit_code == 0, result.output
    assert "v* and the optimal actions on the grid" in result.output
    assert "verification passed" in result.output
    out = tmp_path / "g.tex"
    result = CliRunner().invoke(
        main,
        [
            "derive",
            "mdp_two_state",
            "--format",
            "latex",
            "--standalone",
            "-o",
            str(out),
            "--no-verify",
        ],
    )
    assert result.exit_code == 0
    tex = out.read_text()
    assert r"\mathbf{v}_{\pi} &= \dlsymfit{\left(I - \gamma\, P_{\pi}\right)^{-1}" in tex
    assert r"\max\left\{" in tex


def test_check_and_codegen_refuse_mdp_specs():
    result = CliRunner().invoke(main, ["codegen", "mdp_two_state"])
    assert result.exit_code == 2
    assert "codegen works on calculus specs" in result.stderr


# --- bad input -------------------------------------------------------------------------------

BASE = """\
name: bad
mdp:
  states: [a, b]
  actions: [x, y]
  transitions:
    a: {x: {a: 0.5, b: 0.5}, y: {b: 1}}
    b: {x: {b: 1}}
  rewards:
    a: {x: 1, y: 0}
    b: {x: 2}
  gamma: 0.9
  policy: uniform
"""


def _error(tmp_path, text) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        dlsym.derive(path)
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    return str(info.value).replace(str(path), "bad.yaml")


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "{a: 0.5, b: 0.5}",
            "{a: 0.5, b: 0.4}",
            "bad.yaml:6:12: the probabilities of the transitions from (a, x) sum to 9/10, not 1",
        ),
        (
            # exactly 1 + 1e-300: a fraction of two 301-digit numbers, said as a decimal
            "{a: 0.5, b: 0.5}",
            "{a: 1, b: 1e-300}",
            "bad.yaml:6:12: the probabilities of the transitions from (a, x) sum to 1 + 1e-300, "
            "not 1",
        ),
        (
            "{a: 0.5, b: 0.5}",
            "{a: 1.5, b: -0.5}",
            "bad.yaml:6:16: p(a | a, x) is 3/2, not a probability in [0, 1]",
        ),
        (
            "{b: 1}}\n  rewards",
            "{c: 1}}\n  rewards",
            "bad.yaml:7:13: unknown state 'c'; the states are: a, b",
        ),
        ("y: {b: 1}", "z: {b: 1}", "bad.yaml:6:30: unknown action 'z'; the actions are: x, y"),
        ("gamma: 0.9", "gamma: 1.5", "bad.yaml:11:10: mdp.gamma must be in [0, 1], got 1.5"),
        (
            "policy: uniform",
            "policy: {a: y, b: y}",
            "bad.yaml:12:21: the policy chooses 'y' in state 'b', which is not an action available "
            "there; available: x",
        ),
        (
            "policy: uniform",
            "policy: {a: {x: 0.5, y: 0.6}, b: x}",
            "bad.yaml:12:15: the probabilities of the policy in state 'a' sum to 11/10, not 1",
        ),
        ("    b: {x: 2}\n", "", "bad.yaml:8:3: no reward for (b, x)"),
        (
            "  actions: [x, y]",
            "  actions: [x, y]\n  discount: 1",
            "bad.yaml:5:3: unknown key 'discount' in mdp; allowed: states, actions, transitions, "
            "rewards, gamma, policy, terminal, P",
        ),
        (
            "  states: [a, b]",
            "  states: [a, b, c]",
            "bad.yaml:5:3: no transitions for state(s) c; give them, or list them in mdp.terminal",
        ),
        (
            "  states: [a, b]",
            "  states: [a, true]",
            "bad.yaml:3:15: state names must be text or integers, got True (YAML reads true and "
            "false as booleans: quote the name)",
        ),
    ],
)
def test_bad_mdp(tmp_path, old, new, message):
    assert old in BASE
    assert _error(tmp_path, BASE.replace(old, new, 1)) == message


def test_gamma_one_without_terminal_states_is_singular(tmp_path):
    msg = _error(tmp_path, BASE.replace("gamma: 0.9", "gamma: 1"))
    assert msg.startswith(
        "bad.yaml:11:10: gamma = 1 and, under the policy, the state(s) a, b "
        "never reach a terminal state: I - P_pi is singular"
    )


def test_gamma_one_optimal_needs_a_reachable_terminal(tmp_path):
    text = (
        BASE.replace("gamma: 0.9", "gamma: 1")
        .replace("  policy: uniform\n", "")
        .replace("  states: [a, b]", "  states: [a, b, t]\n  terminal: [t]")
    )
    msg = _error(tmp_path, text + "derive: [v_star]\n")
    assert msg == (
        "bad.yaml:12:10: gamma = 1 and no policy reaches a terminal state from a, b: "
        "v* is not defined (use gamma < 1, or add transitions towards a terminal "
        "state)"
    )


def test_gamma_one_with_a_free_loop_among_the_optimal_actions(tmp_path):
    # staying in a forever pays 0, going pays -1: v*(a) is 0 or -1 depending on whether
    # the loop counts, and the Bellman optimality equation holds for every v(a) >= -1
    msg = _error(
        tmp_path,
        """\
        name: loop
        mdp: {states: [a, t], actions: [stay, go], terminal: [t],
              transitions: {a: {stay: {a: 1}, go: {t: 1}}},
              rewards: {a: {stay: 0, go: -1}}, gamma: 1}
        derive: [v_star]
        """,
    )
    assert msg.startswith(
        "bad.yaml:4:47: gamma = 1 and the optimal actions can loop forever "
        "among a without reaching a terminal state"
    )


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "a: {x: 1, y: 0}",
            "a: {x: .nan, y: 0}",
            "bad.yaml:9:12: nan is not a finite number; exact arithmetic needs one",
        ),
        (
            "a: {x: 1, y: 0}",
            "a: {x: .inf, y: 0}",
            "bad.yaml:9:12: inf is not a finite number; exact arithmetic needs one",
        ),
        (
            "{a: 0.5, b: 0.5}",
            "{a: .nan, b: 0.5}",
            "bad.yaml:6:16: nan is not a finite number; exact arithmetic needs one",
        ),
    ],
)
def test_nan_and_inf_are_located_errors(tmp_path, old, new, message):
    assert _error(tmp_path, BASE.replace(old, new, 1)) == message


def test_optimal_values_need_numbers(tmp_path):
    text = BASE.replace("gamma: 0.9", "gamma: g") + "derive: [v_pi, v_star]\n"
    assert _error(tmp_path, text) == (
        "bad.yaml:13:16: 'v_star' compares values exactly, so the MDP must be all numbers; it "
        "has the symbol(s) g (bellman_optimality can still be written out)"
    )


def test_kind_from_another_section(tmp_path):
    assert _error(tmp_path, BASE + "derive: [gradient]\n") == (
        "bad.yaml:13:10: derive kind 'gradient' does not apply to a Markov decision process "
        "spec; one of: bellman_expectation, v_pi, q_pi, bellman_optimality, v_star, q_star, "
        "policy_star"
    )


def test_discount_symbol_needs_the_unit_interval(tmp_path):
    text = "symbols:\n  g: {domain: positive}\n" + BASE.replace("gamma: 0.9", "gamma: g")
    assert _error(tmp_path, text) == (
        "bad.yaml:2:15: the discount 'g' must have domain "
        "unit_interval (0 < gamma < 1), not positive"
    )


def test_written_equations_are_checked_against_the_iterative_solutions(monkeypatch):
    import dlsym.sections.mdp._show as show

    d = dlsym.derive(CATALOG / "mdp_two_state.yaml")
    refs = {c.reference for c in d.verify().checks}
    assert {
        "the written equations at iterative policy evaluation's solution",
        "the written equations at value iteration's solution",
    } <= refs
    # a display that drops the discount in one equation is caught
    real = show.expectation_rhs
    monkeypatch.setattr(
        show,
        "expectation_rhs",
        lambda mdp, note, pol, s: (
            real(mdp, note, pol, s).subs(mdp.gamma, 1) if s == "s2" else real(mdp, note, pol, s)
        ),
    )
    failed = [c for c in d.verify().checks if not c.passed]
    assert [c.reference for c in failed] == [
        "the written equations at iterative policy evaluation's solution"
    ]


def test_bellman_optimality_alone_is_still_checked(tmp_path):
    path = tmp_path / "opt.yaml"
    path.write_text(BASE.replace("  policy: uniform\n", "") + "derive: [bellman_optimality]\n")
    report = dlsym.derive(path).verify()
    assert report.passed
    assert [c.reference for c in report.checks] == [
        "the written equations at value iteration's solution"
    ]


def test_a_probability_in_a_real_symbol_is_refused(tmp_path):
    text = "symbols:\n  p: {}\n" + BASE.replace("{a: 0.5, b: 0.5}", "{a: p, b: 1 - p}")
    assert _error(tmp_path, text) == (
        "bad.yaml:8:16: p(a | a, x) is -0.132 at p = -0.132, outside [0, 1], for values its "
        "symbols can take (p: real); write it so that it stays a probability, or choose "
        "domains for the symbols that keep it in [0, 1] (unit_interval is (0, 1))"
    )


def test_a_probability_in_a_positive_symbol_that_stays_in_range_is_accepted(tmp_path):
    text = "symbols:\n  b: {domain: positive}\n" + BASE.replace(
        "{a: 0.5, b: 0.5}", "{a: 1/(1 + b), b: b/(1 + b)}"
    )
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    assert dlsym.derive(path).verify().passed


def test_a_probability_that_leaves_the_range_near_its_domains_edge_is_refused(tmp_path):
    """1.001 a with a in (0, 1) passes 1 for a > 0.999: the 64 draws (in [0.05, 0.95])
    never showed it, and the MDP was derived at exit 0. Each symbol's domain extremes
    are checked too."""
    text = "symbols:\n  a: {domain: unit_interval}\n" + BASE.replace(
        "{a: 0.5, b: 0.5}", "{a: 1.001*a, b: 1 - 1.001*a}"
    )
    assert "p(a | a, x) is 1.0008999 at a = 0.9999, outside [0, 1]" in _error(tmp_path, text)


def test_sampled_probabilities_outside_a_distribution(tmp_path):
    # each symbol in (0, 1), but 1 - p - q is negative where p + q > 1: refused up front
    text = "symbols:\n  p: {domain: unit_interval}\n  q: {domain: unit_interval}\n" + BASE.replace(
        "states: [a, b]", "states: [a, b, t]\n  terminal: [t]"
    ).replace("{a: 0.5, b: 0.5}", "{a: p, b: q, t: 1 - p - q}")
    assert "p(t | a, x) is -0.653 at p = 0.782, q = 0.871, outside [0, 1]" in _error(tmp_path, text)
    # and the verification's own guard says so too, NaN included, if a row got through
    from types import SimpleNamespace

    from dlsym.sections.mdp._check import _not_distributions

    mdp = SimpleNamespace(live=("a",), actions=("x",), symbols=(), parameters=(), policy=None)
    for row in ([[-0.2, 1.2]], [[np.nan, 0.5]]):
        data = {"P": np.array([[row]]), "PI": np.ones((1, 1, 1)), "mask": np.ones((1, 1, 1), bool)}
        assert "from (a, x) are not a distribution" in _not_distributions(mdp, data, {})


def _chain_mdp(n: int) -> dict:
    """A corridor of n states: 'right' moves on with probability 4/5, 'left' back with
    9/10 (decimals are exact: 0.9 is 9/10); every step costs 1; the last state is terminal. Policy iteration from
    'left' everywhere switches one state per iteration: n exact solves."""
    states = [f"s{i}" for i in range(n)]
    transitions, rewards = {}, {}
    for i in range(n - 1):
        left = {f"s{i - 1}": 0.9, f"s{i}": 0.1} if i else {"s0": 1}
        transitions[f"s{i}"] = {"left": left, "right": {f"s{i + 1}": 0.8, f"s{i}": 0.2}}
        rewards[f"s{i}"] = {"left": -1, "right": -1}
    mdp = {"states": states, "actions": ["left", "right"], "terminal": [states[-1]]}
    mdp.update(transitions=transitions, rewards=rewards, gamma=0.9, policy="uniform")
    return {"name": f"corridor_{n}", "mdp": mdp, "derive": ["v_pi", "v_star", "policy_star"]}


def test_a_hundred_state_corridor_solves_exactly_and_matches_a_float_solve():
    d = dlsym.derive(_chain_mdp(100))
    v = d.results["v_star"].value
    assert all(isinstance(v[f"s{i}"], sp.Rational) for i in range(100))
    # independently: value iteration in floats, to convergence
    V = np.zeros(100)
    for _ in range(2000):
        right = -1 + 0.9 * (0.8 * V[1:] + 0.2 * V[:-1])
        back = np.concatenate([[V[0]], 0.9 * V[:-2] + 0.1 * V[1:-1]])
        V = np.concatenate([np.maximum(right, -1 + 0.9 * back), [0.0]])
    np.testing.assert_allclose([float(v[f"s{i}"]) for i in range(100)], V, rtol=1e-12)
    assert set(d.results["policy_star"].value.values()) <= {("right",)}


# --- large MDPs: float64 past EXACT_STATES, equations written for the first states ---------


def corridor(n: int) -> dict:
    """States s0..s{n-1}, the last terminal; 'right' moves right with probability 4/5
    (else left), 'left' the other way; every move costs 1 (the scaling benchmark's)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from derive_scaling import mdp

    return mdp(n)


def corridor_truth(n: int):
    """v* of the corridor (always right) by a dense NumPy solve, independently."""
    live = n - 1
    P = np.zeros((live, live))
    for i in range(live):
        lo = max(i - 1, 0)
        P[i, lo] += 1 / 5
        if i + 1 < live:
            P[i, i + 1] += 4 / 5
    return np.linalg.solve(np.eye(live) - 0.9 * P, -np.ones(live))


def test_a_large_mdp_is_solved_in_float64_and_verified():
    from dlsym.sections.mdp._model import EXACT_STATES
    from dlsym.sections.mdp._show import SHOWN_STATES

    n = EXACT_STATES + 101
    d = dlsym.derive(corridor(n))
    v = np.array([float(d.optimum.v[f"s{i}"]) for i in range(n - 1)])
    np.testing.assert_allclose(v, corridor_truth(n), rtol=1e-11)
    # near the goal, right is strictly better; far from it the two differ by less than
    # float64 resolves at -10, and both count as optimal
    assert all(d.optimum.policy[f"s{i}"] == ("right",) for i in range(n - 60, n - 1))
    assert d.optimum.policy["s0"] == ("left", "right")
    # the steps write out the first states' equations only, and say so
    step = next(s for s in d.steps if s.title == "Bellman optimality equation for v*")
    assert len(step.text.splitlines()) == SHOWN_STATES
    assert f"first {SHOWN_STATES} of the {n - 1} non-terminal states" in step.justification
    assert any(s.title == "Policy iteration (float64)" for s in d.steps)
    ties = next(n for n in d.notes if n.startswith("ties in the optimal policy"))
    assert ties.endswith("more states (policy_star's ties)") and ties.count("in s") == SHOWN_STATES
    # the results keep every state
    assert len(d.results["v_star"].extra["values"]) == n
    report = d.verify()
    assert report.passed, [c for c in report.checks if not c.passed]


def test_near_ties_below_the_tolerance_are_not_false_alarms():
    # exact rationals (200 states): far from the goal q*(left) and q*(right) differ by
    # ~1e-15 at -10. The reference sees a tie there; the derivation, exactly, does not.
    d = dlsym.derive(corridor(200))
    assert d.optimum.policy["s0"] == ("right",)  # exact: right is better, barely
    report = d.verify()
    assert report.passed, [c for c in report.checks if not c.passed]
    ties = next(c for c in report.checks if c.reference == "ties complete under the exact q*")
    assert "left out are within tolerance of the best" in ties.note


def test_more_states_than_the_limit_is_a_located_error(tmp_path):
    from dlsym.sections.mdp._model import MAX_STATES

    spec = corridor(3)
    spec["mdp"]["states"] = [f"s{i}" for i in range(MAX_STATES + 1)]
    with pytest.raises(SpecError, match=f"limited to {MAX_STATES} states"):
        dlsym.derive(spec)


@pytest.mark.parametrize("listed", [True, False], ids=["terminal-listed", "not-listed"])
def test_terminal_states_written_as_zero_reward_self_loops(listed):
    # Gymnasium's P table form: the goal's every action returns to it with reward 0
    spec = {
        "name": "loops",
        "mdp": {
            "states": ["a", "b", "goal"],
            "actions": ["left", "right"],
            "transitions": {
                "a": {"left": {"a": 1}, "right": {"b": 1}},
                "b": {"left": {"a": 1}, "right": {"goal": 1}},
                "goal": {"left": {"goal": 1}, "right": {"goal": 1}},
            },
            "rewards": {
                "a": {"left": -1, "right": -1},
                "b": {"left": -1, "right": -1},
                "goal": {"left": 0, "right": 0},
            },
            "gamma": 1,
            "policy": "uniform",
        },
    }
    if listed:
        spec["mdp"]["terminal"] = ["goal"]
    d = dlsym.derive(spec)
    # v_a = -1 + (v_a + v_b)/2, v_b = -1 + v_a/2: v_a = -6, v_b = -4
    assert d.evaluation.v == {"a": -6, "b": -4, "goal": 0}
    assert d.optimum.v == {"a": -2, "b": -1, "goal": 0}
    assert d.verify().passed


def test_a_terminal_state_with_other_transitions_is_still_an_error():
    spec = {
        "name": "bad",
        "mdp": {
            "states": ["a", "goal"],
            "actions": ["go"],
            "terminal": ["goal"],
            "transitions": {"a": {"go": {"goal": 1}}, "goal": {"go": {"a": 1}}},
            "rewards": {"a": {"go": -1}, "goal": {"go": 0}},
            "gamma": 0.9,
            "policy": "uniform",
        },
    }
    with pytest.raises(SpecError, match="state 'goal' is terminal"):
        dlsym.derive(spec)


def test_an_episodic_mdp_past_the_exact_limit_stays_exact():
    # gamma = 1: the proper policy policy iteration starts from (all 'left' here) takes
    # about 4^n steps to terminate, and float64 returned v = 2.4e16 for it with no
    # warning; exact rationals give the right values
    from dlsym.sections.mdp._model import EXACT_STATES

    n = EXACT_STATES + 61
    spec = corridor(n)
    spec["mdp"]["gamma"] = 1
    d = dlsym.derive(spec)
    assert d.mdp.exact and not any(s.title.endswith("(float64)") for s in d.steps)
    live = n - 1
    P = np.zeros((live, live))  # always right: a well-conditioned system
    for i in range(live):
        P[i, max(i - 1, 0)] += 1 / 5
        if i + 1 < live:
            P[i, i + 1] += 4 / 5
    truth = np.linalg.solve(np.eye(live) - P, -np.ones(live))
    v = np.array([float(d.optimum.v[f"s{i}"]) for i in range(live)])
    np.testing.assert_allclose(v, truth, rtol=1e-12)
    assert all(d.optimum.policy[f"s{i}"] == ("right",) for i in range(live))


def test_a_hostile_number_in_a_self_loop_is_a_located_error_not_a_huge_integer(tmp_path):
    # the self-loop scan reads numbers before the parser does: "1e999999999" as text
    # must not become a billion-digit integer there
    spec = {
        "name": "hostile",
        "mdp": {
            "states": ["a", "goal"],
            "actions": ["go"],
            "transitions": {"a": {"go": {"goal": 1}}, "goal": {"go": {"goal": "1e999999999"}}},
            "rewards": {"a": {"go": -1}, "goal": {"go": 0}},
            "gamma": 0.9,
            "policy": "uniform",
        },
    }
    with pytest.raises(SpecError, match="numbers must be finite"):
        dlsym.derive(spec)


# -- Gymnasium's transition table (mdp.P) -------------------------------------------


def _value_iteration(P, gamma, policy=None, sweeps=2000):
    """By hand, on the table as Gymnasium reads it (floats, done ends the episode):
    v(s) = max_a (or the policy's mean) Σ p (r + γ (1 − done) v(s'))."""
    n = len(P)
    v = np.zeros(n)
    for _ in range(sweeps):
        q = np.array(
            [
                [
                    sum(p * (r + gamma * (not d) * v[int(s2)]) for p, s2, r, d in P[s][a])
                    for a in P[s]
                ]
                for s in P
            ]
        )
        v = q.mean(axis=1) if policy == "uniform" else q.max(axis=1)
    return v, q


def test_frozenlake_from_gymnasiums_table_equals_value_iteration_by_hand():
    """The catalog's FrozenLake is env.unwrapped.P of Gymnasium 1.4, as dumped: v*, v_π
    and the greedy policy equal value iteration written out on that table with NumPy."""
    import yaml

    path = CATALOG / "mdp_frozenlake.yaml"
    P = {int(s): row for s, row in yaml.safe_load(path.read_text())["mdp"]["P"].items()}
    d = dlsym.derive(path)
    v_star, q_star = _value_iteration(P, 0.9)
    v_pi, _ = _value_iteration(P, 0.9, "uniform")
    shown = d.results["v_star"].value
    states = [str(s) for s in range(16)]
    np.testing.assert_allclose([float(shown[s]) for s in states], v_star, rtol=1e-9, atol=1e-15)
    assert all(shown[s] == 0 for s in ("5", "7", "11", "12", "15"))  # holes and the goal
    assert float(shown["0"]) == pytest.approx(0.0689, abs=5e-5)  # the start's, 4 digits
    pi = d.results["v_pi"].value
    np.testing.assert_allclose([float(pi[s]) for s in states], v_pi, rtol=1e-9, atol=1e-15)
    best = d.results["policy_star"].value
    for s in states:
        if s in best:
            ties = np.flatnonzero(np.isclose(q_star[int(s)], q_star[int(s)].max(), rtol=1e-9))
            chosen = best[s] if isinstance(best[s], (list, tuple)) else [best[s]]
            assert {int(a) for a in chosen} <= set(ties), s
    assert d.verify().passed


@pytest.mark.parametrize(
    "table, message, line",
    [
        (
            "{0: {0: [[1.0, 0, 0.0]]}}",
            "an outcome of mdp.P[0][0] must be [probability, next_state, reward, done]",
            4,
        ),
        ("{0: {0: [[1.0, 3, 0.0, false]]}}", "the next state 3 is not a state of mdp.P", 4),
        ("{0: {0: [[1.5, 0, 0.0, false]]}}", "the probability 1.5 is not a number in [0, 1]", 4),
        ("{0: {0: [[1.0, 0, 0.0, 1]]}}", "done must be true or false, got 1", 4),
        (
            "{0: {0: [[0.5, 1, 0.0, true], [0.5, 0, 0.0, false]]}, 1: {0: [[1.0, 1, 0.0, false]]}}",
            "an outcome leads to state 1 without ending the episode, and another",
            4,
        ),
        ("{0: {0: [[0.5, 0, 0.0, false]]}}", "sum", 4),
        ("{0: {0: [[1.0, 0, 1.0, true]]}}", "every state of mdp.P is one an outcome", 4),
    ],
)
def test_a_bad_gymnasium_table_is_a_located_error(tmp_path, table, message, line):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\nmdp:\n  gamma: 0.9\n  P: {table}\nderive: [v_star]\n")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}:" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_gymnasium_table_beside_the_keys_it_gives_is_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: t\nmdp:\n  gamma: 0.9\n  states: [a]\n  P: {0: {0: [[1.0, 0, 1.0, false]]}}\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2 and f"{path}:4:" in result.stderr
    assert "mdp.P gives the states, actions, transitions, rewards, terminal; drop mdp.states" in (
        result.stderr
    )


def test_a_gymnasium_table_with_an_infinite_reward_is_a_located_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nmdp:\n  gamma: 0.9\n  P: {0: {0: [[1.0, 0, .inf, false]]}}\n")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2 and "the reward inf is not a finite number" in result.stderr


def test_a_discount_close_to_one_is_checked_by_its_bellman_residuals():
    """gamma = 1 - 1e-12: value iteration would need about 10^13 sweeps, so it stops at
    its limit short of the answer, which failed a right v*; those points are checked by
    the exact answer's Bellman residuals (and the written equations at it), said in a
    note."""
    text = (CATALOG / "mdp_small_stochastic.yaml").read_text()
    d = dlsym.derive(yaml.safe_load(text.replace("gamma: 0.9", "gamma: 0.999999999999")))
    report = d.verify()
    assert report.passed, report
    notes = [c.note for c in report.checks if c.reference == "convergence"]
    assert notes and all("did not converge" in n for n in notes)
    assert any(c.reference.startswith("Bellman optimality residual") for c in report.checks)


def test_the_iterative_references_of_a_large_mdp_are_capped_by_its_size():
    """A 400-state corridor at γ = 1 drifting away from its goal (values ~ 7e190): each
    iterative reference ran 10⁶ sweeps of 16 points, 90 s past a 50 s budget that is
    checked only between them. The sweeps are capped by the work they cost; the points
    they leave unconverged are checked by the Bellman residuals, said in a note."""
    from dlsym.sections.mdp._check import MAX_ITERATIONS, MAX_WORK, iteration_cap

    assert iteration_cap(16, 400, 2) == int(MAX_WORK // (16 * 400 * 400 * 2)) < 10_000
    assert iteration_cap(16, 4, 2) == MAX_ITERATIONS  # small MDPs iterate as before
    n = 400
    P = {
        f"s{i}": {
            "right": {f"s{i + 1}": 0.4, f"s{max(i - 1, 0)}": 0.6},
            "left": {f"s{max(i - 1, 0)}": 0.9, f"s{i + 1}": 0.1},
        }
        for i in range(n - 1)
    }
    spec = {
        "name": "corridor",
        "mdp": {
            "gamma": 1,
            "states": [f"s{i}" for i in range(n)],
            "actions": ["left", "right"],
            "terminal": [f"s{n - 1}"],
            "transitions": {s: {a: dict(m) for a, m in row.items()} for s, row in P.items()},
            "rewards": {s: {"left": -1, "right": -1} for s in P},
            "policy": "uniform",
        },
        "derive": ["v_pi"],
    }
    d = dlsym.derive(spec)
    report = d.verify(points=1)
    assert report.passed, report
    assert any("did not converge" in c.note for c in report.checks if c.reference == "convergence")


def test_a_gymnasium_row_of_decimals_that_sum_to_one_is_read_as_written(tmp_path):
    """[0.1234567891234, 0.8765432108766] sums to 1 as decimals, and their simplest
    fractions within 1e-12 did not ('sum to 73151268088828019/73151268088828017, not 1',
    a valid table refused); thirds still read as 1/3."""
    P = (
        '{"0": {"0": [[0.1234567891234, 0, 0.0, false], [0.8765432108766, 1, 1.0, false]]},'
        ' "1": {"0": [[1.0, 0, 0.0, false]]}}'
    )
    path = tmp_path / "irr.yaml"
    path.write_text(
        f'name: irr\nmdp: {{"gamma": 0.9, "policy": "uniform", "P": {P}}}\nderive: [v_pi]\n'
    )
    d = dlsym.derive(path, verify=True)
    assert d.verification.passed
    # v0 = p + 0.9 ((1 - p) v0 + p v1), v1 = 0.9 v0: v0 = p / (0.1 + 0.09 p)
    p = 0.8765432108766
    v = d.function("v_pi")()
    assert float(np.asarray(v)[0]) == pytest.approx(p / (0.1 + 0.09 * p), rel=1e-12)


def test_rewards_near_float64s_largest_verify_and_read_as_floats(tmp_path):
    """Rewards of ±1e300 with a discount of 0.999999: v* is 1e306, inside float64, but the
    written equations printed 999999*v/1000000, whose product overflowed (a right v*
    failed, exit 1); and the values read as 307-digit integers. Round 32."""
    spec = {
        "name": "huge",
        "mdp": {
            "states": ["s1", "s2"],
            "actions": ["a", "b"],
            "transitions": {
                "s1": {"a": {"s1": 1}, "b": {"s2": 1}},
                "s2": {"a": {"s2": 1}, "b": {"s1": 1}},
            },
            "rewards": {"s1": {"a": 1e300, "b": -1e300}, "s2": {"a": 1e-300, "b": 0}},
            "gamma": 0.999999,
            "policy": "uniform",
        },
    }
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 0, result.output
    assert "v*(s1) = 1.0e+306" in result.output and "0" * 40 not in result.output


def test_decimals_past_float64_are_read_as_written(tmp_path):
    """0.33333333333333333 three times sums to 1 as written (as floats, 1 − 1e-16: 'sum
    to 1 - 1e-16, not 1', exit 2), and a reward 1.0000000000000001 beats 1 (as a float
    it was 1, a tie in the optimal policy)."""
    path = tmp_path / "decimals.yaml"
    path.write_text(
        "name: decimals\nmdp:\n  states: [a, b, c]\n  actions: [go, stay]\n  terminal: [c]\n"
        "  transitions:\n"
        "    a: {go: {a: 0.33333333333333333, b: 0.33333333333333333, c: 0.33333333333333334},"
        " stay: {a: 1}}\n"
        "    b: {go: {c: 1}, stay: {b: 1}}\n"
        "  rewards:\n    a: {go: 1, stay: 1.0000000000000001}\n    b: {go: 0, stay: 1}\n"
        "  gamma: 0.5\nderive: [v_star, policy_star]\n"
    )
    d = dlsym.derive(path, verify=True)
    assert d.verification.passed, d.verification
    assert d.results["v_star"].value["a"] == sp.Rational(10000000000000001, 5000000000000000)
    assert d.results["policy_star"].value["a"] == ("stay",)


def test_iteration_on_a_cycle_settles_at_its_rounding_level():
    """s → u → s with rewards 1, −1 at γ = 0.99: the iterates' rounding settles at
    about ε/(1 − γ) ≈ 2e-14, above the stop of 1e-15, so both iterative references ran
    their 10⁶ sweeps and were dropped ("did not converge"). The stop is the larger."""
    d = dlsym.derive(
        {"name": "cycle", "mdp": {"states": ["s", "u"], "actions": ["a"],
         "transitions": {"s": {"a": {"u": 1}}, "u": {"a": {"s": 1}}},
         "rewards": {"s": {"a": 1}, "u": {"a": -1}}, "gamma": 0.99, "policy": "uniform"},
         "derive": ["v_pi", "v_star"]}
    )  # fmt: skip
    report = d.verify()
    assert report.passed, report
    assert not [c for c in report.checks if c.reference == "convergence"]
    assert d.results["v_pi"].value["s"] == sp.Rational(100, 199)


def test_an_mdp_whose_every_state_is_terminal_says_so(tmp_path):
    """Two states, each absorbing with reward 0: it said "mdp.transitions must map state
    -> action -> {next_state: probability}" of a map that is one."""
    path = tmp_path / "absorbing.yaml"
    path.write_text(
        "name: absorbing\nmdp:\n  states: [s, u]\n  actions: [a]\n  transitions:\n"
        "    s: {a: {s: 1}}\n    u: {a: {u: 1}}\n  rewards:\n    s: {a: 0}\n    u: {a: 0}\n"
        "  gamma: 0.9\nderive: [v_star]\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2
    assert f"{path}:6:5: every state is terminal" in result.stderr


def test_a_policy_that_names_an_action_at_a_terminal_state_is_accepted(tmp_path):
    """A complete policy table (every state, as Gymnasium's agents write it) was refused:
    "unknown non-terminal state 'done'". A terminal state's value is 0 whatever is
    chosen there; v_pi is the table's without that line (value iteration by hand:
    8.586741, 9.545455)."""
    import yaml

    spec = yaml.safe_load(
        """
name: stoch
mdp:
  states: [low, high, done]
  actions: [wait, work]
  transitions:
    low: {wait: {low: 1}, work: {high: 0.6, low: 0.3, done: 0.1}}
    high: {wait: {high: 0.8, low: 0.2}, work: {done: 0.5, high: 0.5}}
    done: {wait: {done: 1}, work: {done: 1}}
  rewards:
    low: {wait: 0, work: {high: 2, low: -1, done: 5}}
    high: {wait: {high: 1, low: -3}, work: {done: 10, high: 0.5}}
    done: {wait: 0, work: 0}
  terminal: [done]
  gamma: 0.9
  policy:
    low: {wait: 0.25, work: 0.75}
    high: work
    done: wait
derive: [v_pi]
"""
    )
    with_terminal = dlsym.derive(spec, verify=True)
    assert with_terminal.verification.passed
    v = with_terminal.function("v_pi")()
    np.testing.assert_allclose(np.asarray(v)[:2], [8.586741, 9.545455], atol=1e-6)
    del spec["mdp"]["policy"]["done"]
    np.testing.assert_allclose(dlsym.derive(spec).function("v_pi")(), v, rtol=1e-15)
