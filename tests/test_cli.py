"""The command line, in-process through click's runner, and as a real process."""

import contextlib
import glob
import json
import os
import subprocess
import sys

import pytest
import sympy as sp
from click.testing import CliRunner
from conftest import CATALOG, ROOT

from dlsym._cli import main
from dlsym.calculus import _rules


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    assert runner.invoke(main, ["--version"]).output.startswith("dlsym, version ")
    out = runner.invoke(main, ["derive", "--help"]).output
    assert "--no-verify" in out and "--standalone" in out and "--device" in out
    assert "Examples:" in runner.invoke(main, ["--help"]).output


def test_list_shows_the_catalog(runner):
    out = runner.invoke(main, ["list"], env={"COLUMNS": "200"}).output
    assert "logistic_regression" in out and "Logistic regression with an L2 penalty" in out
    assert "gradient, hessian" in out


def test_derive_by_catalog_name_verifies(runner):
    result = runner.invoke(main, ["derive", "softmax_cross_entropy", "--points", "4"])
    assert result.exit_code == 0, result.output
    assert "softmax(z) - y" in result.output
    assert "verification passed" in result.output


def test_json_output(runner):
    result = runner.invoke(
        main, ["derive", str(CATALOG / "quadratic_form.yaml"), "--format", "json", "--seed", "7"]
    )
    assert result.exit_code == 0
    out = json.loads(result.output)
    assert out["name"] == "quadratic_form"
    assert out["results"]["hessian"]["expr"] == "A + A.T"
    assert out["verification"]["passed"] is True


def test_output_file_written_atomically(runner, tmp_path):
    target = tmp_path / "ridge.tex"
    result = runner.invoke(
        main,
        [
            "derive",
            "ridge_regression",
            "--format",
            "latex",
            "--standalone",
            "--no-verify",
            "-o",
            str(target),
        ],
    )
    assert result.exit_code == 0
    assert target.read_text().startswith("\\documentclass{article}")
    assert [p.name for p in tmp_path.iterdir()] == ["ridge.tex"]  # no temporary left


def test_failed_output_leaves_old_file(runner, tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nobjective: sigmod(x)\nsymbols: {x: {}}\nwrt: x\n")
    result = runner.invoke(main, ["derive", str(bad), "--format", "json", "-o", str(target)])
    assert result.exit_code == 2
    assert target.read_text() == "old"


def _write(runner, target):
    return runner.invoke(
        main, ["derive", "activation_tanh", "--no-verify", "--format", "json", "-o", str(target)]
    )


def test_output_keeps_the_mode_of_the_file_it_replaces(runner, tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    assert _write(runner, target).exit_code == 0
    assert json.loads(target.read_text())["name"] == "activation_tanh"
    assert target.stat().st_mode & 0o777 == 0o640
    new = tmp_path / "new.json"
    umask = os.umask(0o022)
    try:
        assert _write(runner, new).exit_code == 0
    finally:
        os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o644  # as open() would make it, not 0600


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_output_keeps_the_owner_and_group_of_the_file_it_replaces(runner, tmp_path):
    """`sudo dlsym ... -o shared.tex` made the user's file root's (its mode was kept,
    setgid included, but not its owner)."""
    target = tmp_path / "owned.json"
    target.write_text("old")
    os.chown(target, 65534, 65534)
    target.chmod(0o2640)
    assert _write(runner, target).exit_code == 0
    st = target.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o2640)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.symlink_to(p.parent / "real.json"), "symbolic link"),
        (lambda p: (p.write_text("old"), p.chmod(0o444)), "read-only"),
        (lambda p: None, "does not exist"),  # into a missing folder (below)
    ],
    ids=["fifo", "symlink", "read-only", "missing-folder"],
)
def test_output_refuses_what_is_not_a_writable_regular_file(runner, tmp_path, make, message):
    target = tmp_path / ("missing" if message == "does not exist" else "") / "out.json"
    (tmp_path / "real.json").write_text("real")
    make(target)
    result = _write(runner, target)
    assert result.exit_code == 2
    assert f"error: {target}: cannot write: " in result.output and message in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "real.json").read_text() == "real"  # the link's target is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_output_onto_the_spec_a_folder_or_nothing_is_refused(runner, tmp_path):
    """-o SPEC would replace the spec with its own output; -o out/ names a folder (it
    made a file 'out'); -o '' is no name; -o - is standard output, as Unix tools read it;
    a path too long for the system is a located error, not a traceback."""
    spec = tmp_path / "spec.yaml"
    spec.write_text((CATALOG / "activation_tanh.yaml").read_text())
    before = spec.read_text()
    for command in (["derive", str(spec), "--no-verify"], ["codegen", str(spec)]):
        result = runner.invoke(main, [*command, "-o", str(spec)])
        assert result.exit_code == 2 and "it is the spec being read" in result.output
        assert spec.read_text() == before
    result = runner.invoke(main, ["derive", str(spec), "--no-verify", "-o", f"{tmp_path}/out/"])
    assert result.exit_code == 2 and "it names a folder, not a file" in result.output
    assert not (tmp_path / "out").exists()
    for command in (["derive", str(spec), "--no-verify"], ["codegen", str(spec)], ["schema"]):
        # refused before any work: it printed the whole derivation, then the error
        result = runner.invoke(main, [*command, "-o", ""])
        assert result.exit_code == 2, command
        assert "'-o' / '--output': needs a file name" in result.output
        assert "tanh" not in result.output and "$schema" not in result.output
    result = runner.invoke(main, ["derive", str(spec), "--no-verify", "-o", "-"])
    assert result.exit_code == 0 and "# " in result.output and not (tmp_path / "-").exists()
    long = tmp_path / ("x" * 300) / "f.txt"
    result = runner.invoke(main, ["derive", str(spec), "--no-verify", "-o", str(long)])
    assert result.exit_code == 2 and "File name too long" in result.output
    assert "Traceback" not in result.output


def test_verification_failure_exits_1(runner, monkeypatch):
    monkeypatch.setitem(_rules.VJP_RULES, sp.tanh, lambda alg, e, g: ([(e.args[0], -g)], "wrong"))
    result = runner.invoke(main, ["derive", "activation_tanh", "--points", "4"])
    assert result.exit_code == 1
    assert "verification FAILED" in result.output
    assert "worst at point" in result.output


def test_several_specs_summary(runner):
    result = runner.invoke(
        main,
        [
            "derive",
            "activation_sigmoid",
            "activation_tanh",
            "no_such_spec",
            "--no-verify",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert [o["name"] for o in out] == ["activation_sigmoid", "activation_tanh"]
    assert "no_such_spec: no such file" in result.stderr
    assert "Summary" in result.stderr and "derived" in result.stderr


def test_several_specs_with_one_failing_leave_the_output_file_untouched(runner, tmp_path):
    """-o FILE was replaced by the specs that succeeded alone (exit 2): the README
    promises that a failed run leaves an existing file as it was."""
    out = tmp_path / "out.json"
    out.write_text("old\n")
    args = ["derive", "activation_sigmoid", "no_such_spec", "--no-verify", "--format", "json"]
    result = runner.invoke(main, [*args, "-o", str(out)])
    assert result.exit_code == 2
    assert out.read_text() == "old\n"
    assert f"{out}: not written, a spec failed" in " ".join(result.stderr.split())
    result = runner.invoke(main, [*args[:2], *args[3:], "-o", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text())["name"] == "activation_sigmoid"


def test_gpu_request_without_gpu(runner):
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    result = runner.invoke(main, ["derive", "ridge_regression", "--device", "gpu"])
    assert result.exit_code == 2
    assert "no GPU" in result.stderr and "Traceback" not in result.stderr


def test_real_process_from_checkout_and_no_jax_without_verify(tmp_path):
    # `python cli.py` works from a checkout, and --no-verify never imports JAX
    code = (
        "import runpy, sys; sys.argv = ['cli.py', 'derive', 'logistic_regression', "
        "'--no-verify']\ntry:\n    runpy.run_path('cli.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "∇_w ℓ" in proc.stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_a_single_spec_shows_what_is_running(tmp_path):
    """A long derivation is never a silent wait: on a terminal, a transient line says
    what runs (deriving, then verifying); in a file, nothing but the result."""
    import pty
    import select

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "derive", str(CATALOG / "logistic_regression.yaml")],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        close_fds=True,
    )
    os.close(child_fd)
    out = b""
    while True:
        ready, _, _ = select.select([main_fd], [], [], 1)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(main_fd)
    assert proc.wait() == 0
    text = out.decode(errors="replace")
    assert "deriving" in text and "verifying" in text and "verification passed" in text
    piped = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "derive", str(CATALOG / "logistic_regression.yaml")],
        capture_output=True,
        text=True,
    )
    assert piped.returncode == 0 and piped.stderr == "" and "deriving" not in piped.stdout


def test_only_results_in_every_format():
    runner = CliRunner()
    text = runner.invoke(
        main, ["derive", "logistic_regression", "--only", "results", "--no-verify"]
    )
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == [
        "gradient: lam*w + (X.T @ (sigmoid(X @ w) - y))/m",
        "hessian: lam*eye(n) + (X.T @ diag((1 - sigmoid(X @ w))*sigmoid(X @ w)) @ X)/m",
    ]
    out = runner.invoke(
        main,
        ["derive", "logistic_regression", "--only", "results", "--format", "json", "--no-verify"],
    )
    data = json.loads(out.output)
    assert set(data) == {"name", "results"} and set(data["results"]) == {"gradient", "hessian"}


def test_numbered_results_are_labelled_and_cited(tmp_path, pdflatex):
    """--numbered: each result numbered and labelled eq:<spec>-<kind>; a paper's
    \\eqref to it resolves (two pdflatex runs, no undefined reference)."""
    import subprocess

    out = tmp_path / "r.tex"
    result = CliRunner().invoke(
        main,
        ["derive", "logistic_regression", "--format", "latex", "--standalone", "--numbered",
         "--no-verify", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tex = out.read_text()
    assert r"\label{eq:logistic_regression-gradient}" in tex and r"\begin{align}" in tex
    tex = tex.replace(
        r"\end{document}", r"See \eqref{eq:logistic_regression-hessian}.\end{document}"
    )
    out.write_text(tex)
    for _ in range(2):
        subprocess.run([pdflatex, "-interaction=nonstopmode", out.name], cwd=tmp_path, capture_output=True, timeout=120)  # fmt: skip
    log = (tmp_path / "r.log").read_text(errors="replace")
    assert "undefined" not in log.lower() and "Overfull" not in log


@pytest.mark.parametrize("flag", ["--standalone", "--numbered"])
def test_latex_flags_with_another_format_are_refused(flag):
    result = CliRunner().invoke(main, ["derive", "logistic_regression", flag, "--no-verify"])
    assert result.exit_code == 2
    assert f"{flag} is for --format latex (the format is text)" in result.output


def test_columns_two_is_a_two_column_article_and_only_for_standalone(tmp_path):
    out = tmp_path / "r.tex"
    result = CliRunner().invoke(
        main,
        ["derive", "ridge_regression", "--format", "latex", "--standalone", "--columns", "2",
         "--no-verify", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("\\documentclass[twocolumn]{article}\n")
    refused = CliRunner().invoke(
        main, ["derive", "ridge_regression", "--format", "latex", "--columns", "2"]
    )
    assert refused.exit_code == 2
    assert "--columns is for --standalone (a LaTeX fragment fits one and two" in refused.output


def test_jobs_derive_a_folder_on_processes_in_order(tmp_path):
    """-j 2: the same output as one process, in the specs' order, and a bad spec's
    located error and exit code come back from its worker."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nobjective: x\n")
    specs = ["ridge_regression", str(bad), "quadratic_form"]
    runner = CliRunner()
    one = runner.invoke(main, ["derive", *specs, "--no-verify", "--only", "results"])
    two = runner.invoke(main, ["derive", *specs, "--no-verify", "--only", "results", "-j", "2"])
    assert one.exit_code == two.exit_code == 2
    assert two.stdout == one.stdout
    assert two.stdout.index("# ridge_regression") < two.stdout.index("# quadratic_form")
    assert f"error: {bad}:2:12: unknown name 'x' in objective" in two.stderr


@pytest.mark.parametrize("budget", ["nan", "inf", "1e308", "-1", "abc"])
def test_a_budget_that_is_no_number_of_seconds_is_a_usage_error(runner, budget):
    """nan, inf and 1e308 passed FloatRange(0) and ended in SIGALRM's overflow (exit 3)."""
    result = runner.invoke(main, ["derive", "activation_tanh", "--no-verify", "--budget", budget])
    assert result.exit_code == 2
    assert "Invalid value for '--budget'" in result.output and "Traceback" not in result.output


def _real(args, env=None, timeout=120, closed_stdout=False, **kw):
    """``dlsym ARGS`` in a process of its own (environment, signals, file descriptors);
    ``closed_stdout``: as ``dlsym ARGS >&-`` (a shell, not preexec_fn: a fork of this
    process, where JAX runs threads, warns)."""
    shell = ["sh", "-c", 'exec "$@" >&-', "sh"] if closed_stdout else []
    return subprocess.run(
        [*shell, sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=kw.pop("capture_output", True),
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=timeout,
        **kw,
    )


def test_a_narrow_encoding_or_zero_columns_still_prints_the_derivation():
    """PYTHONIOENCODING=latin-1 cannot take λ: a raw UnicodeEncodeError at exit 1 ("a
    verification failed"); COLUMNS=0 made every line empty, exit 0 and no output."""
    quad = str(CATALOG / "quadratic_form.yaml")
    latin = _real(
        ["derive", quad, "--no-verify"], env={"PYTHONIOENCODING": "latin-1"}, encoding="latin-1"
    )
    assert latin.returncode == 0 and "Traceback" not in latin.stderr
    assert "cannot show some characters" in latin.stderr and "\\u" in latin.stdout
    zero = _real(["derive", quad, "--no-verify"], env={"COLUMNS": "0"})
    assert zero.returncode == 0 and "Quadratic" in zero.stdout, zero.stdout


@pytest.mark.parametrize(
    "env, said",
    [
        ({"JAX_PLATFORMS": "garbage"}, "environment variable JAX_PLATFORMS='garbage': JAX cannot"),
        ({"JAX_ENABLE_X64": "maybe"}, "environment variable JAX_ENABLE_X64='maybe': JAX cannot"),
        # XLA ended the process itself, with exit status 1: "a result was found wrong"
        (
            {"XLA_FLAGS": "--xla_garbage_flag=1"},
            "environment variable XLA_FLAGS='--xla_garbage_flag=1': XLA does not know "
            "--xla_garbage_flag=1",
        ),
        ({"JAX_NUMPY_RANK_PROMOTION": "raise"}, None),  # dlsym's own code promotes ranks
    ],
)
def test_a_jax_setting_in_the_environment_it_cannot_start_with_is_exit_2(env, said):
    """They were internal errors (exit 3) from inside JAX."""
    proc = _real(["derive", "ridge_regression", "--points", "2", "--only", "results"], env)
    assert "Traceback" not in proc.stderr
    if said is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {said}") and "unset" in proc.stderr


def test_standard_output_that_cannot_take_the_output_is_exit_2():
    """> /dev/full was an internal error (exit 3), and a closed standard output (>&-)
    exit 0 with nothing written; a reader that stops reading (| head -1) is no error."""
    spec = str(CATALOG / "activation_tanh.yaml")
    for command in (["derive", spec, "--no-verify"], ["codegen", spec]):
        proc = _real(command, closed_stdout=True)  # refused before any work
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "error: cannot write the output to standard output: it is closed (give -o FILE)\n"
        )
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            proc = _real(["derive", spec, "--no-verify"], capture_output=False, stdout=full, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "error: cannot write the output to standard output: No space left on device\n"
        )
    reader = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "derive", spec, "--no-verify"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader.stdout.close()  # | head -c 0: gone before the output is written
    assert reader.wait(timeout=120) == 0 and reader.stderr.read() == ""
    reader.stderr.close()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "command",
    [
        ["derive", "no_such_spec.yaml"],  # a located error
        ["derive", "no_such_spec.yaml", "--format", "bogus"],  # click's usage error
        ["check"],  # click's missing argument
    ],
)
def test_standard_error_that_cannot_take_the_error_keeps_exit_2(command):
    """2>/dev/full: the error line's write failed (ENOSPC), Python's shutdown printed
    nowhere, and every error exit became 1, the status of a result found wrong."""
    with open("/dev/full", "w") as full:
        proc = _real(command, capture_output=False, stdout=subprocess.PIPE, stderr=full)
    assert proc.returncode == 2


def test_ctrl_c_stops_the_run_with_exit_130_and_writes_nothing(tmp_path):
    """SIGINT landing in JAX's gc callback was printed ("Exception ignored") and dropped,
    and the run wrote its output and exited 0."""
    import signal
    import time

    # SymPy takes far longer than the 3 s below over the Hessian of 8 chained nonlinear
    # defines (logdet(S + outer(x, x)) took seconds once, and now its Hessian has a
    # matrix form: done in 3 s, before the signal)
    spec = tmp_path / "slow.yaml"
    defines = "\n".join(
        f"  a{i}: sin(a{i - 1}) * exp(a{i - 1}) / (1 + a{i - 1}**2)" for i in range(1, 9)
    )
    spec.write_text(
        f"name: slow\nsymbols:\n  x: {{}}\ndefine:\n  a0: x\n{defines}\n"
        "objective: a8\nwrt: x\nderive: [gradient, hessian]\n"
    )
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "derive",
            str(spec),
            "-o",
            str(out),
            "--budget",
            "60",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr == "error: interrupted (Ctrl-C): stopped before writing any output\n"
    assert stdout == "" and not out.exists() and os.listdir(tmp_path) == ["slow.yaml"]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_killed_parallel_run_leaves_no_worker_behind(tmp_path, sig):
    """kill of `dlsym derive -j 2` (not the terminal's Ctrl-C, which reaches the whole
    group): SIGTERM killed the main process only, and both workers ran on for a minute
    and more, holding its output. SIGTERM and SIGHUP now stop them first, then end the
    run as the signal asks; SIGKILL, which runs no handler, ends them through Linux's
    parent-death signal."""
    import signal
    import time

    number = getattr(signal, sig)
    specs = sorted(str(p) for p in CATALOG.glob("*.yaml"))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "derive",
            *specs,
            "-j",
            "2",
            "-o",
            str(tmp_path / "o"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    group = proc.pid

    def members() -> int:  # the live processes of its group, from /proc (no ps needed)
        count = 0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            count += fields[0] != "Z" and int(fields[2]) == group  # state, pgrp
        return count

    deadline = time.monotonic() + 60
    while members() < 3 and time.monotonic() < deadline:  # the main process and 2 workers
        time.sleep(0.2)
    assert members() >= 3
    time.sleep(2)
    proc.send_signal(number)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while members() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = members()
    if left:
        os.killpg(group, signal.SIGKILL)
    assert left == 0
    assert proc.returncode == -number
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("after", [2.0, 2.6, 3.2])
def test_two_ctrl_cs_end_with_exit_130_and_no_crash(tmp_path, after):
    """Two SIGINTs 30 ms apart: the second landed in JAX's atexit clean-up (a
    KeyboardInterrupt traceback), and an interruption inside XLA left Python's shutdown
    to crash (SIGSEGV, exit -11, in 4 runs of 6). The run says it was interrupted and
    ends with 130, its shutdown skipped."""
    import signal
    import time

    spec = CATALOG / "conv2d_layer.yaml"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "derive", str(spec), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.03)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if proc.returncode == 0:  # finished before the signals: nothing to check at this delay
        return
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and stderr.startswith("error: interrupted (Ctrl-C)")
