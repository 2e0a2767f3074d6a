"""The codebase's own checks, run by the README's test command so CI runs them too:
ruff (lint and format), import-linter (the pipeline's layers, sections independent of
each other, no import cycles) and mypy on the public API. Each tool comes with the
package's test extra; on a laptop without one its test skips, under CI=true it fails."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    pytest.skip(f"{name} is not installed")


def _run(args, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_no_control_characters_in_the_sources():
    """A '\\f' or '\\t' written into a generated source (a justification's \\frac and
    \\theta once became a form feed and a tab, which reached the LaTeX) is a control
    character no source means: only newlines (split on them alone: str.splitlines
    would split at the form feed too, and find nothing)."""
    bad = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("dlsym", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
        if any(ord(c) < 32 for c in line)
    ]
    assert bad == []


# The repository's top level as the developers' guide lays it out; anything else
# tracked there is a stray (a probe's g1.pid was committed once with a fix).
TOP_LEVEL = {
    ".ci",
    ".gitignore",
    "ARCHITECTURE.md",
    "README.md",
    "bench",
    "cli.py",
    "derivations",
    "dlsym",
    "docs",
    "pyproject.toml",
    "tests",
}


def test_top_level_holds_only_the_project():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = _run(["git", "ls-files"])
    assert out.returncode == 0, out.stderr
    tracked = {line.split("/", 1)[0] for line in out.stdout.splitlines()}
    assert tracked - TOP_LEVEL == set()
    assert {"dlsym", "tests", "README.md", "pyproject.toml", ".ci"} <= tracked


def test_ruff_lint():
    out = _run([_tool("ruff"), "check", "dlsym", "tests", "bench", "cli.py"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format():
    out = _run([_tool("ruff"), "format", "--check", "dlsym", "tests", "bench", "cli.py"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_public_api():
    out = _run([_tool("mypy")])
    assert out.returncode == 0, out.stdout + out.stderr


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # the copy under test first on the path, so import-linter reads it, not the install
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return _run(
        [_tool("lint-imports"), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
    )


def test_import_contracts_hold():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # a cycle between two modules of one package
        (
            "dlsym/sections/info/_dist.py",
            "from dlsym.sections.info import _sym",
            "No import cycles",
        ),
        # a lower layer importing a higher one (the expression language reading a section)
        ("dlsym/expr/_ops.py", "from dlsym.sections import _base", "The pipeline"),
        # one section importing another
        ("dlsym/sections/mdp/_solve.py", "from dlsym.sections.lqr import _check", "Sections"),
    ],
)
def test_import_contracts_can_fail(tmp_path, module, line, broken):
    """The contracts are not vacuous: each breaks when the import it forbids appears."""
    shutil.copytree(
        ROOT / "dlsym", tmp_path / "dlsym", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{line}  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0, out.stdout
    assert "0 broken" not in out.stdout
    assert broken in out.stdout.split("Broken contracts")[1]


def test_every_bounded_step_handles_its_time_limit():
    """within(seconds, fn, ...) raises TimeLimit past its seconds; each call sits in a try
    that handles it (or in a lambda called there): one unguarded (the odd-function check
    of a moment, 1 s of simplify) escaped on a busy machine and failed a derivation."""
    import ast

    unguarded = []
    for path in sorted((ROOT / "dlsym").rglob("*.py")):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "within"):
                continue
            p, guarded = node, False
            while p in parents and not guarded:
                p = parents[p]
                if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    break
                guarded = isinstance(p, ast.Try) and any(
                    h.type is None or "TimeLimit" in ast.unparse(h.type) for h in p.handlers
                )
            if not guarded:
                unguarded.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unguarded, unguarded
