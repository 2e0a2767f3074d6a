"""Constrained optimization: Lagrangian, KKT, dual and closed-form solutions, each checked
against SciPy's SLSQP optimum and JAX autodiff, and located errors for bad specs."""

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

import dlsym
from dlsym._cli import main
from dlsym._errors import SpecError

from conftest import CATALOG, section_specs

SPECS = section_specs("._constrained")


def catalog(name):
    return dlsym.derive(CATALOG / f"{name}.yaml")


# --- the catalog verifies ------------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_catalog_spec_verifies(path):
    d = dlsym.derive(path)
    report = d.verify(points=6)
    assert report.passed, [c for c in report.checks if not c.passed]
    kinds = {c.kind for c in report.checks}
    assert {"optimum", "stationarity", "KKT residuals"} <= kinds


def test_catalog_has_the_issue_problems():
    names = {p.stem for p in SPECS}
    assert {"water_filling", "least_norm", "equality_qp", "max_entropy", "simplex_projection",
            "ridge_ball", "svm_hard_margin"} <= names


# --- Lagrangian and KKT --------------------------------------------------------------------


def test_water_filling_lagrangian_and_kkt():
    d = catalog("water_filling")
    lag = d.results["lagrangian"]
    assert lag.expr == "nu*(sum(x) - 1) - (lam @ x) - sum(log(x + alpha))"
    assert lag.latex.startswith(
        r"\mathcal{L}\left(\mathbf{x}, \boldsymbol{\lambda}, \nu\right) = ")
    assert [s["expr"] for s in lag.extra["standard_form"]] == ["-x", "sum(x) - 1"]
    assert [s["latex"] for s in lag.extra["standard_form"]] == [
        r"- \mathbf{x} \preceq 0", r"\operatorname{sum}\left(\mathbf{x}\right) - 1 = 0"]
    kkt = d.results["kkt"]
    assert kkt.extra["stationarity"]["x"]["expr"] == "nu*ones(n) - lam - 1/(x + alpha)"
    assert kkt.extra["dual_feasibility"] == [r"\boldsymbol{\lambda} \succeq 0"]
    assert kkt.extra["complementary_slackness"] == [
        r"- \boldsymbol{\lambda} \odot \mathbf{x} = 0"]
    titles = [s.title for s in d.steps]
    assert titles[:7] == ["Problem", "Standard form", "Lagrangian", "KKT: stationarity",
                          "KKT: primal feasibility", "KKT: dual feasibility",
                          "KKT: complementary slackness"]


def test_maximize_is_negated_with_a_step():
    d = dlsym.derive({"name": "t", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
                      "maximize": "-sum(x**2)", "subject_to": ["sum(x) == 1"], "wrt": "x"})
    assert d.steps[1].title == "Maximization as minimization"
    assert r"f_{0} &= \operatorname{sum}\left(\mathbf{x}^{2}\right)" in d.steps[1].latex
    assert d.results["kkt"].extra["stationarity"]["x"]["expr"] == "2*x + nu*ones(n)"


def test_chained_comparison_is_two_constraints():
    d = dlsym.derive({"name": "t", "symbols": {"x": {"shape": ["n"]}}, "dims": {"n": 3},
                      "minimize": "sum((x - 2)**2)", "subject_to": ["0 <= x <= 1"],
                      "wrt": "x"})
    assert [c.func for c in d.problem.constraints] == [
        -sp.Symbol("x", real=True), sp.Symbol("x", real=True) - 1]
    assert [c.multiplier.name for c in d.problem.constraints] == ["lam1", "lam2"]
    assert d.verify(points=3).passed


# --- verification can fail -------------------------------------------------------------------


def test_wrong_stationarity_is_caught(monkeypatch):
    d = catalog("water_filling")
    grads = d.lagrangian_derivation.results["gradient"]
    # a scaled gradient still vanishes at the optimum: add a term instead
    x = sp.Symbol("x", real=True)
    wrong = dataclasses.replace(grads["x"], expr=grads["x"].expr + x / 1000)
    monkeypatch.setitem(grads, "x", wrong)
    report = d.verify(points=4)
    assert not report.passed
    failed = {c.kind for c in report.checks if not c.passed}
    assert failed == {"stationarity", "KKT residuals"}
