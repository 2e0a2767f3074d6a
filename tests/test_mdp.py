"""Markov decision processes: exact Bellman solutions, their checks, output and errors."""

import textwrap

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

import dlsym
from conftest import CATALOG, section_specs
from dlsym._cli import main
from dlsym._errors import SpecError

gamma = sp.Symbol("gamma", positive=True)


@pytest.fixture(scope="module")
def derived():
    return {p.stem: dlsym.derive(p) for p in section_specs("._mdp")}


def test_catalog_has_the_issue_examples(derived):
    assert set(derived) >= {"mdp_two_state", "mdp_recycling_robot", "mdp_small_stochastic",
                            "mdp_gridworld"}


@pytest.mark.parametrize("path", section_specs("._mdp"), ids=lambda p: p.stem)
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
    P = sp.Matrix([[sp.Rational(11, 20), sp.Rational(9, 20)], [sp.Rational(1, 2),
                                                                 sp.Rational(1, 2)]])
    want = (sp.eye(2) - gamma * P).inv() * sp.Matrix([sp.Rational(1, 2), 1])
    assert sp.simplify(v["s1"] - want[0]) == 0 and sp.simplify(v["s2"] - want[1]) == 0
    assert d.results["v_pi"].expr == ("[2*(2*gamma + 5)/((gamma - 20)*(gamma - 1)), "
                                      "-2*(3*gamma - 10)/((gamma - 20)*(gamma - 1))]")
    assert v["s1"].subs(gamma, 0) == sp.Rational(1, 2)      # no future: the mean reward
    f = d.function("v_pi")
    np.testing.assert_allclose(f(gamma=0.5), [float(want[0].subs(gamma, 0.5)),
                                              float(want[1].subs(gamma, 0.5))], rtol=1e-14)
    assert f(gamma=np.array([0.1, 0.5, 0.9])).shape == (3, 2)


def test_two_state_equations_written_out(derived):
    d = derived["mdp_two_state"]
    step = d.steps[0]
    assert step.text.splitlines() == [
        "vπ(s1) = 1/2·[0 + γ·vπ(s1)] + 1/2·[1 + γ·[9/10·vπ(s2) + 1/10·vπ(s1)]]",
        "       = 1/2 + γ·[11/20·vπ(s1) + 9/20·vπ(s2)]",
        "vπ(s2) = 1/2·[2 + γ·vπ(s2)] + 1/2·[0 + γ·vπ(s1)]",
        "       = 1 + γ·[1/2·vπ(s1) + 1/2·vπ(s2)]"]
    assert step.latex.splitlines()[0] == (
        r"v_{\pi}\left(\text{s1}\right) &= \frac{1}{2}\, \left[0 + \gamma\, "
        r"v_{\pi}\left(\text{s1}\right)\right] + \frac{1}{2}\, \left[1 + \gamma\, "
        r"\left[\frac{9}{10}\, v_{\pi}\left(\text{s2}\right) + \frac{1}{10}\, "
        r"v_{\pi}\left(\text{s1}\right)\right]\right] \\")
    q = d.results["q_pi"].value
    assert sp.simplify(q[("s1", "stay")] - gamma * d.results["v_pi"].value["s1"]) == 0
    assert "max{0 + γ·v*(s1), 1 + γ·[9/10·v*(s2) + 1/10·v*(s1)]}" in \
        d.results["bellman_optimality"].expr


def test_recycling_robot_symbolic_rewards(derived):
    d = derived["mdp_recycling_robot"]
    v = d.results["v_pi"].value
    r_search, alpha = sp.Symbol("r_search", real=True), sp.Symbol("alpha", positive=True)
    # by hand: v_h = r_s + 9/10 (a v_h + (1 - a) v_l), v_l = 9/10 v_h
    assert sp.simplify(v["high"] - 100 * r_search / (19 - 9 * alpha)) == 0
    assert sp.simplify(v["low"] - 90 * r_search / (19 - 9 * alpha)) == 0
    # rewards given per next state are shown inside the sum over next states
    assert "qπ(low, search) = β·[r_search + 9/10·vπ(low)] + (1 - β)·[-3 + 9/10·vπ(high)]" \
        in d.steps[2].text
    assert np.isnan(d.function("q_pi")(r_search=1, r_wait=0, alpha=0.5, beta=0.5)[0, 2])


def test_small_stochastic_optimum(derived):
    d = derived["mdp_small_stochastic"]
    assert d.results["policy_star"].value == {"start": ("safe",), "middle": ("safe",),
                                              "goal": ("risky",)}
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
    assert grid.rows == (("0", "-2 right", "-1 right", "T"),
                         ("1", "-3 up/right", "-2 up/right", "-1 up"))
    assert any("ties in the optimal policy" in n for n in d.notes)


def test_json_contract(derived):
    out = derived["mdp_small_stochastic"].to_dict()
    assert out["results"]["policy_star"]["policy"] == {"start": ["safe"], "middle": ["safe"],
                                                       "goal": ["risky"]}
    assert out["results"]["v_pi"]["values"]["goal"] == "225130/22259"
    assert {"expr", "latex"} <= set(out["results"]["q_star"])
    assert out["results"]["policy_star"]["latex"].startswith(
        r"\pi_*\left(\text{start}\right) = \text{safe},\ ")
    assert out["results"]["bellman_expectation"]["expr"].startswith(
        "vπ(start) = -1 + 9/10·[1/5·vπ(start) + 4/5·vπ(middle)]; ")
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
    d.optimum.policy["goal"] = ("safe",)        # not greedy with respect to q*
    report = d.verify()
    assert [c.kind for c in report.checks if not c.passed] == ["policy_star"]


def test_cli_exit_1_on_a_wrong_exact_solution(monkeypatch):
    import dlsym._bellman as bellman
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
    result = CliRunner().invoke(main, ["derive", "mdp_two_state", "--format", "latex",
                                       "--standalone", "-o", str(out), "--no-verify"])
    assert result.exit_code == 0
    tex = out.read_text()
    assert r"\mathbf{v}_{\pi} &= \left(I - \gamma\, P_{\pi}\right)^{-1}" in tex
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


@pytest.mark.parametrize("old, new, message", [
    ("{a: 0.5, b: 0.5}", "{a: 0.5, b: 0.4}",
     "bad.yaml:6:12: the probabilities of the transitions from (a, x) sum to 9/10, not 1"),
    ("{a: 0.5, b: 0.5}", "{a: 1.5, b: -0.5}",
     "bad.yaml:6:16: p(a | a, x) is 3/2, not a probability in [0, 1]"),
    ("{b: 1}}\n  rewards", "{c: 1}}\n  rewards",
     "bad.yaml:7:13: unknown state 'c'; the states are: a, b"),
    ("y: {b: 1}", "z: {b: 1}", "bad.yaml:6:30: unknown action 'z'; the actions are: x, y"),
    ("gamma: 0.9", "gamma: 1.5", "bad.yaml:11:10: mdp.gamma must be in [0, 1], got 1.5"),
    ("policy: uniform", "policy: {a: y, b: y}",
     "bad.yaml:12:21: the policy chooses 'y' in state 'b', which is not an action available "
     "there; available: x"),
    ("policy: uniform", "policy: {a: {x: 0.5, y: 0.6}, b: x}",
     "bad.yaml:12:15: the probabilities of the policy in state 'a' sum to 11/10, not 1"),
    ("    b: {x: 2}\n", "", "bad.yaml:8:3: no reward for (b, x)"),
    ("  actions: [x, y]", "  actions: [x, y]\n  discount: 1",
     "bad.yaml:5:3: unknown key 'discount' in mdp; allowed: states, actions, transitions, "
     "rewards, gamma, policy, terminal"),
    ("  states: [a, b]", "  states: [a, b, c]",
     "bad.yaml:5:3: no transitions for state(s) c; give them, or list them in mdp.terminal"),
    ("  states: [a, b]", "  states: [a, yes]",
     "bad.yaml:3:15: state names must be text or integers, got True (YAML reads yes/no/on/off "
     "as booleans: quote the name)"),
])
def test_bad_mdp(tmp_path, old, new, message):
    assert old in BASE
    assert _error(tmp_path, BASE.replace(old, new, 1)) == message


def test_gamma_one_without_terminal_states_is_singular(tmp_path):
    msg = _error(tmp_path, BASE.replace("gamma: 0.9", "gamma: 1"))
    assert msg.startswith("bad.yaml:11:10: gamma = 1 and, under the policy, the state(s) a, b "
                          "never reach a terminal state: I - P_pi is singular")


def test_gamma_one_optimal_needs_a_reachable_terminal(tmp_path):
    text = BASE.replace("gamma: 0.9", "gamma: 1").replace("  policy: uniform\n", "") \
        .replace("  states: [a, b]", "  states: [a, b, t]\n  terminal: [t]")
    msg = _error(tmp_path, text + "derive: [v_star]\n")
    assert msg == ("bad.yaml:12:10: gamma = 1 and no policy reaches a terminal state from a, b: "
                   "v* is not defined (use gamma < 1, or add transitions towards a terminal "
                   "state)")


def test_optimal_values_need_numbers(tmp_path):
    text = BASE.replace("gamma: 0.9", "gamma: g") + "derive: [v_pi, v_star]\n"
    assert _error(tmp_path, text) == (
        "bad.yaml:13:16: 'v_star' compares values exactly, so the MDP must be all numbers; it "
        "has the symbol(s) g (bellman_optimality can still be written out)")


def test_kind_from_another_section(tmp_path):
    assert _error(tmp_path, BASE + "derive: [gradient]\n") == (
        "bad.yaml:13:10: derive kind 'gradient' does not apply to a Markov decision process "
        "spec; one of: bellman_expectation, v_pi, q_pi, bellman_optimality, v_star, q_star, "
        "policy_star")


def test_discount_symbol_needs_the_unit_interval(tmp_path):
    text = "symbols:\n  g: {domain: positive}\n" + BASE.replace("gamma: 0.9", "gamma: g")
    assert _error(tmp_path, text) == ("bad.yaml:2:15: the discount 'g' must have domain "
                                      "unit_interval (0 < gamma < 1), not positive")
