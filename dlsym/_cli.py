"""The command line: a thin layer over the library API (``dlsym.derive``)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from dlsym._budget import (
    STOPPED_IN_FLIGHT,
    OverTime,
    escaped,
    interruptible,
    listening,
    step,
    stop_if_interrupted,
)
from dlsym._budget import budget as time_budget
from dlsym._catalog import catalog_dir
from dlsym._catalog import resolve as find_spec
from dlsym._errors import DlsymError, SpecError, describe
from dlsym._version import __version__
from dlsym.printing._render import terminal_text

FORMATS = ("text", "latex", "markdown", "json")
# seconds a spec may take by default: a run that would hang ends with a located exit 2
# within a minute, start-up included; the catalog's slowest spec takes about 6 s
DEFAULT_BUDGET = 50.0
EXAMPLES = """
\b
Examples:
  dlsym derive derivations/logistic_regression.yaml
  dlsym derive ridge_regression --format latex --standalone -o ridge.tex
  dlsym derive derivations/*.yaml --no-verify
  dlsym derive softmax_jacobian --format json --points 64 --seed 1
  dlsym list
"""


def resolve(spec: str) -> str:
    """A path, or the name of a catalog spec (``ridge_regression``)."""
    return str(find_spec(spec))


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _report(exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    code, text = describe(exc)
    _echo_error(text)
    return code


def _echo_error(text: str) -> None:
    """An error on stderr as a terminal should show it: its text may hold the user's
    (an exception's message from the checked code, a spec's name), whose control and
    format characters (ESC sequences, a CR, U+202E) would redraw or turn the screen, and
    click strips ESC sequences only where stderr is no terminal. Standard error that
    cannot take it (``2>/dev/full``) loses the line, not the exit code (an OSError
    here ended every error in exit 1, "a result was found wrong")."""
    try:
        click.echo(terminal_text(text), err=True)
    except OSError:
        _drop_stream(sys.stderr)


class _Budget(click.ParamType):
    """Seconds, 0 for no limit: a finite number up to a year (nan, inf and 1e308 passed
    FloatRange and ended in SIGALRM's overflow, exit 3)."""

    name = "seconds"
    LONGEST = 365 * 24 * 3600.0

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 <= seconds <= self.LONGEST:  # also false for nan
            self.fail(f"{value} is not between 0 (no limit) and {self.LONGEST:.0f} s", param, ctx)
        return seconds


BUDGET = _Budget()

# exit status of a run stopped by Ctrl-C, as the shells give a process SIGINT ends
INTERRUPTED = 130


class _Main(click.Group):
    """The commands, stopped by Ctrl-C with one line and exit 130: click's own answer,
    "Aborted!" and exit 1, reads as "a result was found wrong"."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:
            # click's report of a usage error (exit 2) on a stderr that cannot take it
            # (2>/dev/full) raised here, and the status was 1, "a result was found wrong"
            if exc.errno in (errno.EPIPE, None) or _stderr_takes_text():
                raise
            _drop_stream(sys.stderr)
            sys.exit(2)

    def invoke(self, ctx):
        global _writing
        _writing = False
        debug = "--debug" in ctx.args  # the command's arguments, before it reads them
        try:
            with interruptible():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            if debug:
                raise
            # a second Ctrl-C while Python shuts down (JAX's atexit clean-up) printed a
            # KeyboardInterrupt traceback: the run is ending already
            with contextlib.suppress(ValueError):  # not the main thread: nothing to set
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            said = "while writing the output" if _writing else "before writing any output"
            _say(f"error: interrupted (Ctrl-C): stopped {said}")
            ctx.exit(INTERRUPTED)


def run() -> None:
    """The console script (and ``cli.py``): ``main``, and after Ctrl-C an exit that skips
    the interpreter's shutdown. An interruption that lands in XLA leaves its threads in a
    state where Python's finalization crashed (SIGSEGV, exit -11, in 4 runs of 6
    interrupted 2-3 s in), after the line saying it was interrupted: everything is
    written or removed by then, so 130 is said directly."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(INTERRUPTED)
        # click's own usage errors on a stderr that cannot take them (2>/dev/full):
        # flushed at shutdown, their OSError made the exit status 1 instead of 2
        try:
            sys.stderr.flush()
        except OSError:
            _drop_stream(sys.stderr)
        except (ValueError, AttributeError):
            pass  # closed or None: nothing is buffered
        if STOPPED_IN_FLIGHT[0] and isinstance(exc.code, int):
            # a budget stop that landed in XLA (a 60-scalar convexity search): Python's
            # finalization then died by SIGSEGV, exit 139 after the exit-2 line; the
            # output is written (atomically) or not by now, as after Ctrl-C
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()
            os._exit(exc.code)
        raise


def _stderr_takes_text() -> bool:
    try:
        sys.stderr.write("\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _say(text: str) -> None:
    """A line on stderr, where stderr can take it (closed, or a reader gone: nothing)."""
    with contextlib.suppress(OSError, ValueError):
        _echo_error(text)


# whether a command has begun writing its output (what an interruption says)
_writing = False

STDOUT_CLOSED = "cannot write the output to standard output: it is closed (give -o FILE)"


def _stdout_or_exit(output) -> None:
    """Exit 2 now, before any work, if the output is for standard output and it is
    closed (``dlsym derive spec.yaml >&-``, where Python's stdout is None)."""
    if output in (None, "-") and sys.stdout is None:
        _say(f"error: {STDOUT_CLOSED}")
        sys.exit(2)


def _emit(text: str) -> None:
    """Print ``text``, the command's output. Standard output closed or failing (a full
    disk, ``> /dev/full``) is a ``SpecError`` (exit 2); a reader that stopped reading
    (``| head -1``) is not an error of the run: the rest is dropped in silence, and the
    exit code stays the run's."""
    global _writing
    stop_if_interrupted()  # Ctrl-C swallowed on the way: nothing is written
    if sys.stdout is None:
        raise SpecError(STDOUT_CLOSED)
    _writing = True
    try:
        try:
            click.echo(text, nl=False)
        except UnicodeEncodeError:
            # PYTHONIOENCODING=latin-1 (or cp1252) cannot take λ, ∇, ⊙: a traceback at
            # exit 1 ("verification failed") was all the run said. The characters it
            # cannot show are written as \uXXXX, and stderr says why
            encoding = getattr(sys.stdout, "encoding", None) or "ascii"
            _say(
                f"note: standard output's encoding {encoding} cannot show some characters "
                "of the output; they are written as \\uXXXX (set PYTHONIOENCODING=utf-8)"
            )
            sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    except OSError as exc:
        _drop_stdout()
        raise SpecError(
            f"cannot write the output to standard output: {exc.strerror or exc}"
        ) from None


def _drop_stdout() -> None:
    _drop_stream(sys.stdout)


def _drop_stream(stream) -> None:
    """A standard stream onto /dev/null: what is still buffered would fail again when
    Python flushes it at exit ("Exception ignored ... BrokenPipeError")."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def _output_name(ctx, param, value):
    """``-o ''`` refused before any work is done (it printed the whole derivation
    first); ``-o -`` is standard output, as the Unix tools read it."""
    if value == "":
        raise click.BadParameter("needs a file name (leave it out, or give -, to print)")
    return value


def _output_option(help_text: str):
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False),
        callback=_output_name,
        help=help_text,
    )


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.version_option(__version__, prog_name="dlsym")
def main():
    """dlsym: gradients, Jacobians and Hessians in matrix form, derived step by step
    with SymPy and verified numerically against JAX autodiff."""


def _render(
    d,
    fmt: str,
    standalone: bool,
    to_terminal: bool,
    numbered: bool = False,
    only=None,
    many: bool = False,
    columns: int = 1,
) -> str:
    from dlsym.printing._render import json_text, markdown, render_text, to_json

    if fmt == "latex":
        return d.latex(standalone=standalone, numbered=numbered, only=only, columns=columns)
    if only == "results":  # the results alone: what a script or a paper's table reads
        shown = {k: d.result_display(k) for k in d.results}
        if fmt == "json":
            return json_text({"name": d.name, "results": shown}) + "\n"
        if fmt == "markdown":
            rows = "\n".join(f"- **{k}**: ${v.get('latex', '')}$" for k, v in shown.items())
            return f"# {d.title}\n\n{rows}\n"
        lines = "".join(f"{k}: {v.get('expr', '')}\n" for k, v in shown.items())
        return f"# {d.name}\n{lines}" if many else lines  # several specs: say whose
    if fmt == "json":
        return to_json(d) + "\n"
    if fmt == "markdown":
        return markdown(d)
    buf = io.StringIO()
    render_text(d, _console_for_stdout(buf) if to_terminal else _plain_console(buf))
    return buf.getvalue()


def _plain_console(buf) -> Console:
    return Console(file=buf, width=120, force_terminal=False, highlight=False)


def _console_for_stdout(buf) -> Console:
    """A console writing into ``buf`` as it would on standard output (a terminal's width
    and colours, or plain text): the output is printed by ``_emit``, in one place that
    says when standard output cannot take it."""
    real = Console(highlight=False)
    return Console(
        file=buf,
        # COLUMNS=0 made rich's width 0, and every line empty: exit 0 with no output
        width=real.width if real.width > 0 else 80,
        force_terminal=real.is_terminal,
        color_system=real.color_system,  # type: ignore[arg-type]
        no_color=real.no_color,
        highlight=False,
    )


def _one_spec(spec, options: dict, debug: bool = False, progress=None, task=None) -> tuple:
    """Derive (and verify) one spec: (status, exit code, its output or None, the
    messages for stderr). In this process (with its progress line) or in a worker of
    ``-j N`` (whose messages are sent back, to be printed in the specs' order)."""
    from dlsym._api import derive as derive_spec
    from dlsym._api import load_document
    from dlsym.printing._render import worst_lines
    from dlsym.spec._common import worked_on

    messages: list[str] = []
    doing = ["deriving", ""]  # what, and the step inside it (from _budget.step)

    def show(step: str = "") -> None:
        doing[1] = step
        if progress is not None:
            words = doing[:1] + [spec] + ([step] if step else [])
            progress.update(task, description=" ".join(words))

    status, code, piece = "derived", 0, None
    with listening(show):
        show()
        try:
            report = None
            with time_budget(options["budget"], str(spec)):
                doc = load_document(resolve(spec))
                with step("", worked_on(doc)):  # a budget error's location, at least
                    d = derive_spec(doc)
                    if not options["no_verify"]:
                        doing[0] = "verifying"
                        show()
                        with step("verification"):
                            report = d.verify(**options["verify"])
                if report is not None:
                    status = "verified" if report.passed else "FAILED"
                    if not report.passed:
                        code = 1
                        if options["fmt"] != "text" or not options["to_terminal"]:
                            messages += [f"{spec}: {line}" for line in worst_lines(report)]
                if not options["many"] and progress is not None:
                    progress.stop()  # the one result goes to the terminal: no live line
                # under the budget too: a 16-layer residual Jacobian derived and verified
                # in 45 s took 50 s more to print (exit 0 at 104 s)
                with step(f"writing the {options['fmt']} output", worked_on(doc)):
                    if options["fmt"] == "json" and options["many"]:
                        piece = d.to_dict()
                    else:
                        piece = _render(
                            d,
                            options["fmt"],
                            options["standalone"],
                            options["to_terminal"],
                            options["numbered"],
                            options["only"],
                            options["many"],
                            options["columns"],
                        )
        except (Exception, OverTime) as exc:  # noqa: BLE001 - every failure is reported
            status = "error"
            if debug:
                raise
            if isinstance(exc, OverTime):  # past its limit while the limit was closing
                exc = escaped(exc, options["budget"], str(spec))
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf):  # click.echo(err=True) into the message
                code = _report(exc, False)
            messages.append(buf.getvalue().rstrip("\n"))
    return status, code, piece, messages


def _in_processes(specs, options: dict, jobs: int, progress, task) -> list:
    """Each spec in a worker process (spawned: a forked JAX can deadlock), the results
    in the specs' order, the progress line advancing as each finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    done: dict = {}
    handled = _stops_on_termination()
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(_one_spec, spec, options): i for i, spec in enumerate(specs)}
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        done[i] = future.result()
                    except Exception as exc:  # noqa: BLE001 - a worker that died: said
                        done[i] = (
                            "error",
                            3,
                            None,
                            [f"internal error: {type(exc).__name__}: {exc}"],
                        )
                    progress.update(task, description=f"derived {specs[i]}")
                    progress.advance(task)
            except KeyboardInterrupt:
                # Ctrl-C, or SIGTERM/SIGHUP (_Terminated): the specs not started are
                # dropped, and the running ones stopped (the pool would wait for them;
                # a terminal's Ctrl-C reaches them too, a kill of this process does not:
                # SIGTERM left both workers running for a minute and more)
                workers = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in workers:
                    worker.terminate()
                raise
    except _Terminated as exc:  # the workers are stopped: now end as the signal asks
        _restore(handled)
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        raise
    finally:
        _restore(handled)
    return [done[i] for i in range(len(specs))]


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while workers run: handled as Ctrl-C is, then re-sent."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stops_on_termination() -> dict:
    """SIGTERM and SIGHUP raise _Terminated (where they are not ignored: nohup keeps
    SIGHUP ignored); {signal: its previous handler}."""

    def stop(signum, frame):
        raise _Terminated(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, stop)
    return previous


def _restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    previous.clear()


def _die_with_parent(parent: int) -> None:
    """A worker's first act: it ends when dlsym (``parent``) does, however dlsym ends
    (SIGKILL runs no handler of the parent's): Linux's PR_SET_PDEATHSIG, and where the
    parent is already gone, at once. Elsewhere nothing (the parent's handlers stop the
    workers)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(143)


DERIVE_EXAMPLES = """
\b
Examples:
  dlsym derive logistic_regression
  dlsym derive derivations/ridge_regression.yaml --format latex --standalone -o ridge.tex
  dlsym derive ridge_regression --format latex --standalone --columns 2 -o ridge2.tex
  dlsym derive derivations/*.yaml --no-verify -j 4
  dlsym derive my_loss.yaml --format json --points 64 --seed 1 --device gpu
"""


@main.command(epilog=DERIVE_EXAMPLES)
@click.argument("specs", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Output format.",
)
@_output_option("Write to FILE (atomically).")
@click.option("--standalone", is_flag=True, help="LaTeX: a complete document for pdflatex.")
@click.option(
    "--columns",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="--standalone: an article of 1 or 2 columns (a fragment fits both as it is).",
)
@click.option(
    "--numbered",
    is_flag=True,
    help="LaTeX: the results numbered and labelled eq:<spec>-<kind>, to cite with \\eqref.",
)
@click.option(
    "--only",
    type=click.Choice(["results"]),
    help="Print the results without the steps (any format).",
)
@click.option("--no-verify", is_flag=True, help="Skip the numeric verification.")
@click.option(
    "--points",
    type=click.IntRange(1, 100_000),
    help="Verification points.  [default: the spec's verify.points, else 16]",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    help="Seed of the verification points.  [default: the spec's verify.seed, else 0]",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "gpu"]),
    help="JAX backend for verification.  [default: the spec's verify.device, else cpu]",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    help="Verification precision.  [default: the spec's verify.dtype, else float64]",
)
@click.option(
    "--budget",
    type=BUDGET,
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Seconds each spec may take (derivation and verification); past it, exit 2 "
    "naming the step. 0: no limit.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Derive the specs on N processes (a folder of specs: a paper's appendix, a "
    "course's catalog); the output keeps the specs' order.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def derive(
    specs, fmt, output, standalone, columns, numbered, only, no_verify, points, seed, device,
    dtype, budget, jobs, debug,
):  # fmt: skip
    """Derive the results of each SPEC (a YAML file or a catalog name), show the steps,
    and verify them numerically."""
    for flag, given in (("--standalone", standalone), ("--numbered", numbered)):
        if given and fmt != "latex":  # never ignored in silence
            raise click.UsageError(f"{flag} is for --format latex (the format is {fmt})")
    if columns != 1 and not standalone:
        raise click.UsageError(
            "--columns is for --standalone (a LaTeX fragment fits one and two columns as it is)"
        )
    _stdout_or_exit(output)
    from dlsym.printing._render import write_atomic

    outputs, rows, code = [], [], 0
    many = len(specs) > 1
    options = dict(
        fmt=fmt, standalone=standalone, columns=columns, numbered=numbered, only=only,
        no_verify=no_verify,
        verify=dict(points=points, seed=seed, device=device, dtype=dtype), budget=budget,
        many=many, to_terminal=not output and not many,
    )  # fmt: skip
    # on a terminal, what is running now (deriving, verifying each spec), so a
    # long step is never a silent wait; transient, and nothing when stderr is a file
    err = _stderr()
    progress = Progress(console=err, transient=True, disable=not (many or err.is_terminal))
    with progress:
        task = progress.add_task("deriving", total=len(specs))
        if jobs > 1 and many and not debug:
            done = _in_processes(specs, options, jobs, progress, task)
        else:
            done = []
            for spec in specs:
                done.append(_one_spec(spec, options, debug, progress, task))
                progress.advance(task)
    for spec, (status, spec_code, piece, messages) in zip(specs, done):
        for message in messages:  # errors and a failed check's worst entries, in order
            _echo_error(message)
        code = max(code, spec_code)
        if piece is not None:
            outputs.append(piece)
        rows.append((spec, status))
    if fmt == "json" and many:
        from dlsym.printing._render import json_text

        outputs = [json_text(outputs) + "\n"]
    text = "".join(outputs) if fmt in ("json",) else "\n".join(outputs)
    try:
        if _to_file(output):
            if text and code >= 2:
                # a spec failed: the file would hold the others' output alone, and the
                # README promises an existing file is left untouched when a run fails
                _echo_error(f"error: {output}: not written, a spec failed (see above)")
            elif text:
                stop_if_interrupted()  # Ctrl-C swallowed on the way: nothing is written
                write_atomic(output, text, reading=specs)
        elif text:
            _emit(text if text.endswith("\n") else text + "\n")
    except DlsymError as exc:
        code = max(code, _report(exc, debug))
    if many:
        table = Table(title="Summary", title_justify="left")
        table.add_column("spec")
        table.add_column("status")
        for spec, status in rows:
            table.add_row(Text(spec), Text(status))
        _stderr().print(table)
    sys.exit(code)


@main.command(name="list")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="A table, or JSON: one object per spec (name, section, title, derive, path).",
)
def list_catalog(fmt):
    """List the catalog of derivations with their titles.

    \b
    Examples:
      dlsym list
      dlsym list --format json
    """
    import json

    from dlsym.spec._common import RANDOM, SECTIONS, section_of

    _stdout_or_exit(None)
    from dlsym.spec._yamlfile import load_file

    rows = []
    for path in sorted(catalog_dir().glob("*.yaml")):
        doc = load_file(path)
        data = doc.data if isinstance(doc.data, dict) else {}
        module = section_of(doc)
        sections = [*SECTIONS.values(), RANDOM]
        section = next((name for name, mod in sections if mod == module), "calculus")
        kinds = data.get("derive") or (["gradient"] if module is None else ["(default)"])
        rows.append(
            {
                "name": path.stem,
                "section": section,
                "title": str(data.get("title", "")),
                "derive": [str(k) for k in kinds],
                "path": str(path),
            }
        )
    if fmt == "json":
        _emit_or_exit(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=Text(f"Catalog ({catalog_dir()})"), title_justify="left")
    # a name is what the user types next: never cut (the title and kinds wrap instead)
    width = max((len(r["name"]) for r in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=width)
    for col in ("section", "title", "derive"):
        table.add_column(col)
    for r in rows:
        cells = (r["name"], r["section"], r["title"], ", ".join(r["derive"]))
        table.add_row(*(Text(c) for c in cells))  # a title is not rich markup
    buf = io.StringIO()
    _console_for_stdout(buf).print(table)
    _emit_or_exit(buf.getvalue())


def _emit_or_exit(text: str) -> None:
    """``_emit``, or its error and exit 2."""
    try:
        _emit(text)
    except DlsymError as exc:
        sys.exit(_report(exc, False))


def _to_file(output) -> bool:
    """Whether -o names a file: ``-o -`` is standard output, as the Unix tools read it
    (an empty name never gets here: ``_output_name``)."""
    return output not in (None, "-")


@main.command()
@_output_option("Write to FILE (atomically).")
def schema(output):
    """Print the JSON Schema of the spec format, for editors.

    \b
    Examples:
      dlsym schema -o dlsym-spec.schema.json
    then, as the first line of a spec (VS Code's YAML extension, any YAML language server):
      # yaml-language-server: $schema=dlsym-spec.schema.json
    """
    import json

    from dlsym._schema import schema as spec_schema

    _stdout_or_exit(output)
    text = json.dumps(spec_schema(), indent=2) + "\n"
    if _to_file(output):
        from dlsym.printing._render import write_atomic

        try:
            write_atomic(output, text)
        except DlsymError as exc:
            sys.exit(_report(exc, False))
        return
    _emit_or_exit(text)


@main.command()
@click.argument("spec")
@click.option(
    "--grad",
    "grad",
    required=True,
    help="The function to check: path/to/file.py:function or module.sub:function.",
)
@click.option(
    "--wrt",
    multiple=True,
    help="Symbol(s) the function differentiates (default: the spec's wrt). Repeat for several.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Precision the function is called in.",
)
@click.option(
    "--order",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="2: the function returns the second derivative (the Hessian, or its diagonal "
    "where the Hessian is diagonal, as an activation's grad2).",
)
@click.option("--points", type=click.IntRange(1, 100_000), default=16, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option(
    "--budget",
    type=BUDGET,
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Seconds the check may take (importing your module, deriving, calling your "
    "function); past it, exit 2 naming the line it was at. 0: no limit.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(spec, grad, wrt, dtype, order, points, seed, device, budget, debug):
    """Check a hand-written gradient (or, with --order 2, Hessian) against the
    symbolic one of SPEC.

    \b
    Exit 0 when it matches, 1 when it does not (with a diagnosis), 2 for bad input.
    Examples:
      dlsym check softmax_cross_entropy --grad mygrads.py:softmax_ce_grad --dtype float32
      dlsym check batched_softmax_regression --grad layers.py:dense_backward --wrt W --wrt b
      dlsym check logistic_regression --grad mygrads.py:logistic_hessian --order 2
    """
    from dlsym.check._isolated import Job, check_isolated

    _stdout_or_exit(None)
    try:  # the user's code runs in a child process: whatever it does, a verdict comes back
        job = Job(resolve(spec), grad, wrt or None, dtype, points, seed, device, order, debug)
        outcome = check_isolated(job, budget)
    except Exception as exc:  # noqa: BLE001 - reported with its exit code
        sys.exit(_report(exc, debug))
    if outcome.report is None:
        _echo_error(outcome.text)
        sys.exit(outcome.code)
    buf = io.StringIO()
    try:
        outcome.report.render(_console_for_stdout(buf))
        passed = bool(outcome.report.passed)
    except Exception:  # noqa: BLE001 - a report the checked code made, not dlsym's
        click.echo(
            "error: the check's report could not be read: the checked code wrote on "
            "dlsym's result pipe (it runs beside the check), so there is no verdict",
            err=True,
        )
        sys.exit(2)
    _emit_or_exit(buf.getvalue())
    sys.exit(0 if passed else 1)


@main.command()
@click.argument("spec")
@click.option("--target", type=click.Choice(["numpy", "jax"]), default="numpy", show_default=True)
@_output_option("Write the module to FILE (atomically) instead of stdout.")
@click.option(
    "--custom-vjp",
    is_flag=True,
    help="JAX: also emit objective_custom_vjp, whose backward is the closed form.",
)
@click.option(
    "--budget",
    type=BUDGET,
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Seconds the derivation and the code may take; past it, exit 2 naming the step. "
    "0: no limit.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def codegen(spec, target, output, custom_vjp, budget, debug):
    """Write a readable Python module computing SPEC's objective and derived results.

    \b
    Example:
      dlsym codegen logistic_regression --target jax --custom-vjp -o logistic.py
    """
    from dlsym._api import derive as derive_spec
    from dlsym._api import load_document
    from dlsym.codegen._module import generate
    from dlsym.printing._render import write_atomic
    from dlsym.spec._common import calculus_only, worked_on

    _stdout_or_exit(output)
    try:
        if custom_vjp and target != "jax":
            raise SpecError("--custom-vjp needs --target jax")
        path = resolve(spec)
        # bounded as derive is (it ran 90 s past derive's stop on 12 chained defines)
        with time_budget(budget, str(path)):
            doc = load_document(path)
            # said before deriving: a recurrence spec was derived for 34 s, then refused
            calculus_only(doc, "dlsym codegen")
            with step("", worked_on(doc)):  # where a budget stop says it was
                d = derive_spec(doc)
            with step("writing the code", worked_on(doc)):
                text = generate(d, target, custom_vjp, source=spec)
    except (Exception, OverTime) as exc:  # noqa: BLE001 - reported with its exit code
        if isinstance(exc, OverTime):  # past the budget as it was closing
            exc = escaped(exc, budget, spec)
        sys.exit(_report(exc, debug))
    if _to_file(output):
        try:
            stop_if_interrupted()  # Ctrl-C swallowed on the way: nothing is written
            write_atomic(output, text, reading=(spec,))
        except DlsymError as exc:
            sys.exit(_report(exc, debug))
    else:
        _emit_or_exit(text)
