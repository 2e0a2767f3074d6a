"""``dlsym check`` runs the user's code (their module's import, their function's calls)
in a child process, so that nothing it does ends the check without a verdict: a loop
that never returns is stopped at ``--budget``, an ``os._exit(0)``, a crash or a signal
ends the child and not the report (exit 0 with no output would read as a pass in CI),
and a closed ``sys.stdout`` or a ``KeyboardInterrupt`` stays the child's. The child
leads its own session and process group, which the parent kills when the check ends
(by a report, an error or the budget): a process the user's code forked dies with it,
and holds no pipe that dlsym's output is read through. The child ends its group itself
when the parent is gone (killed, its terminal hung up). Its standard output and error
are pipes the parent copies to its own (``_Relay``): a process that leaves the group
(a double fork and setsid) holds only those, which close with dlsym.

The child is spawned (a forked JAX can deadlock), tells the parent which step it is in
(``dlsym._budget.step``: importing, calling, deriving), and sends back the report or
the error's text. Python's ``faulthandler`` writes the child's stack to a file when its
time is up (then ends it) or when it crashes, so the parent names the user's line. This
module is light: the parent imports it without NumPy or SymPy.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from dlsym._budget import listening, step
from dlsym._errors import describe
from dlsym.check._frames import CALLING, IMPORTING, locate
from dlsym.check._report import CheckReport

# seconds the parent waits past the budget for the child's own stop (faulthandler's,
# which writes where it was) before it kills the child
GRACE = 2.0
# seconds a child that sent its result may take to exit before it is killed
EXIT_WAIT = 1.0


@dataclass(frozen=True)
class Job:
    """A ``dlsym check``, as the child runs it (``check_gradient``'s arguments)."""

    spec: str
    grad: str  # FILE.py:FUNCTION or module.sub:FUNCTION
    wrt: tuple | None
    dtype: str
    points: int
    seed: int
    device: str
    order: int
    debug: bool = False  # error texts with the full traceback

    @property
    def where(self) -> str:
        return self.grad.rpartition(":")[0] or self.grad

    @property
    def module(self) -> str:
        return Path(self.where).name

    @property
    def function(self) -> str:
        where, _, name = self.grad.rpartition(":")
        return f"{Path(where).name}:{name}" if where else self.grad


@dataclass(frozen=True)
class Outcome:
    """The check's report, or the exit code and text of what stopped it."""

    report: CheckReport | None
    code: int = 0
    text: str = ""


def check_isolated(job: Job, budget: float | None) -> Outcome:
    """Run ``job`` in a child process under ``budget`` seconds (None or 0: no limit)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    fd, dump = tempfile.mkstemp(prefix="dlsym-check-", suffix=".txt")
    os.close(fd)
    deadline = time.time() + budget if budget else None
    child = context.Process(
        target=_child, args=(send, job, dump, deadline), name="dlsym check", daemon=True
    )
    outcome, now, killed = None, "", False
    relay = _Relay()
    try:
        with relay.started():
            child.start()
        send.close()  # the child's end: the pipe reads as ended when the child is gone
        while outcome is None:
            left = None if deadline is None else max(deadline + GRACE - time.time(), 0.0)
            ready = wait([receive, child.sentinel, *relay.open], timeout=left)
            if not ready:  # past the budget, and the child did not stop itself
                killed = True
                break
            relay.copy([r for r in ready if r in relay.open])
            if receive not in ready:
                if child.sentinel in ready:  # ended; a process of the user's holds the pipe
                    break
                continue  # the user's output only
            try:
                message = receive.recv()
            except (EOFError, OSError):  # ended without a result
                break
            except Exception:  # noqa: BLE001 - what the user's code wrote down the pipe
                break
            # anything else on the pipe (the user's code can reach it) ends the check
            # with no result rather than a traceback here
            kind, value = (
                message if isinstance(message, tuple) and len(message) == 2 else (None, None)
            )
            if kind == "step" and isinstance(value, str):
                now = value
            elif kind == "outcome" and isinstance(value, Outcome):
                outcome = value
            else:
                break
        if killed:
            child.kill()
        child.join(EXIT_WAIT)  # at once, unless a thread of the user's keeps it alive
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()
        stack = Path(dump).read_text(errors="replace")
    finally:
        if child.is_alive():  # the parent interrupted (Ctrl-C): the child goes with it
            child.kill()
        _end_group(child.pid)
        relay.close()  # what the user's code printed, all of it, before the report
        Path(dump).unlink(missing_ok=True)
    if outcome is not None:
        return outcome
    return Outcome(None, 2, f"error: {_ended(job, now, child.exitcode, stack, killed, budget)}")


class _Relay:
    """The child's standard output and error through pipes that the parent copies to
    its own: a process of the user's code that leaves the child's group (a double fork
    and setsid) keeps only these pipes, which close with dlsym, so a reader of dlsym's
    output (a CI log, ``dlsym check ... | cat``) is not held open after the report (it
    waited for such a daemon's 100 s). Off where the streams cannot be redirected."""

    def __init__(self):
        self.pipes: list = []  # (read end, where its bytes go)
        self.open: list = []  # read ends not at their end yet

    @contextlib.contextmanager
    def started(self):
        """The child started with the pipes' write ends as its fds 1 and 2."""
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            saved = [os.dup(1), os.dup(2)]
        except (OSError, ValueError, AttributeError):  # closed or replaced: as they are
            yield
            return
        ends = [os.pipe(), os.pipe()]
        try:
            for fd, (_, write) in zip((1, 2), ends):
                os.dup2(write, fd)
            yield
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            for read, write in ends:
                os.close(write)
                os.set_blocking(read, False)
            self.pipes = [(ends[0][0], sys.stdout), (ends[1][0], sys.stderr)]
            self.open = [read for read, _ in self.pipes]

    def copy(self, ready) -> None:
        """What is waiting on the pipes ``ready``, to dlsym's own streams."""
        for read, stream in self.pipes:
            if read not in ready:
                continue
            while True:
                try:
                    data = os.read(read, 65536)
                except BlockingIOError:  # all of it, for now
                    break
                except OSError:
                    data = b""
                if not data:  # every writer gone
                    self.open = [r for r in self.open if r != read]
                    break
                _write(stream, data)

    def close(self) -> None:
        self.copy([read for read in self.open])
        for read, _ in self.pipes:
            os.close(read)
        self.pipes, self.open = [], []


def _write(stream, data: bytes) -> None:
    try:
        if hasattr(stream, "buffer"):
            stream.buffer.write(data)
        else:  # a text stream of a test runner's
            stream.write(data.decode(errors="replace"))
        stream.flush()
    except (OSError, ValueError):  # our own output closed (a reader that went away)
        pass


# what ran when the child ended without a result, by its outermost step: the subject
# of the message, what the user's code must do instead of exiting, and what running
# past the budget suggests
NO_EXIT = ", not exit (os._exit ends the process: no report can follow)"
RUNNING = {
    IMPORTING: (
        "importing {module}",
        ": a module to check must define its functions" + NO_EXIT,
        " (an endless loop at import?)",
    ),
    CALLING: (
        "the function {function}",
        ": a function to check must return its result" + NO_EXIT,
        " (an endless loop?)",
    ),
}
ELSEWHERE = ("dlsym's check of {function} (in {step})", "", "")  # dlsym's own code


def _ended(job: Job, now: str, exitcode, stack: str, killed: bool, budget) -> str:
    """Why the child ended with no result: where, who, and what happened."""
    running = RUNNING.get(now.split(": ")[0])
    subject, must, slow = running or ELSEWHERE
    subject = subject.format(module=job.module, function=job.function, step=now or "start-up")
    frames = [(f, int(n)) for f, n in re.findall(r'File "(.*)", line (\d+)', stack)]
    # faulthandler writes the innermost call first; in dlsym's own steps no line is theirs
    where = locate(reversed(frames)) if running else ""
    at = f"{where}: " if where else ""
    if killed or stack.startswith("Timeout"):
        return (
            f"{at}{subject} ran past the time budget of {budget:g} s, and was stopped{slow}: "
            "raise it with --budget SECONDS, 0 for none"
        )
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        memory = " (out of memory?)" if -exitcode == getattr(signal, "SIGKILL", None) else ""
        return f"{at}{subject} was ended by signal {name}{memory} before the check finished"
    return (
        f"{at}{subject} ended the process (exit status {exitcode}) before the check finished{must}"
    )


def _end_group(pid: int | None) -> None:
    """Kill what is left of the child's process group: the processes the user's code
    started (an ``os.fork()`` whose child sleeps) hold dlsym's stdout and stderr open,
    and whoever reads them through a pipe (CI, ``subprocess.run``) would wait for them.
    The group outlives the child while any of its members lives (Linux does not reuse
    its id then); none left, or the child ended before it made the group: nothing to do."""
    if pid is None or not hasattr(os, "killpg"):
        return
    try:
        if os.getpgid(pid) != pid:  # the child, not yet a group's leader (or not ours)
            return
    except OSError:  # the child is gone (reaped): its group, if any, is the user's orphans
        pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # no such group: nothing of the user's outlived the child
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _child(send, job: Job, dump: str, deadline: float | None) -> None:
    """The child process: the check, its steps told to the parent as they change."""
    if hasattr(os, "setsid"):  # its own session and process group: the parent ends the
        os.setsid()  # group, and what the user's code started (a fork) goes with it
        _end_with_parent(dump)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the parent, which ends this
    with open(dump, "w") as stack:
        faulthandler.enable(stack)  # a crash: the stack, to locate it
        if deadline is not None:  # past the budget: the stack, then exit
            left = max(deadline - time.time(), 1e-3)
            faulthandler.dump_traceback_later(left, exit=True, file=stack)
        with listening(lambda now: send.send(("step", now))):
            outcome = _run(job)
        faulthandler.cancel_dump_traceback_later()
        for stream in (sys.stdout, sys.stderr):  # the user's prints come before the report
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # closed or replaced by theirs
                pass
        send.send(("outcome", outcome))
    # at once: the interpreter's teardown of SymPy and JAX takes a fifth of a second,
    # and the parent has all it needs (the user's prints were flushed above)
    os._exit(0)


def _end_with_parent(dump: str) -> None:
    """Out of the parent's group, the child is out of reach of what ends the parent
    there (a terminal's hang-up, a signal to the group): when the parent is gone (its
    end of the spawn pipe closes), a thread kills the child's group, the child too. A
    parent killed outright (SIGKILL, SIGTERM) ran no ``finally``: the thread removes
    the stack's file first, or every such kill would leave one in the temp folder."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch():
        wait([parent.sentinel])
        Path(dump).unlink(missing_ok=True)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="dlsym parent watch", daemon=True).start()


def _run(job: Job) -> Outcome:
    loaded = False
    try:
        # SymPy, NumPy and JAX load here, in the child: the parent stays light
        from dlsym.check._caller import load_function, raised
        from dlsym.check._gradient import check_gradient

        with step(IMPORTING):
            fn, name = load_function(job.grad)
        loaded = True
        report = check_gradient(
            job.spec,
            fn,
            wrt=list(job.wrt) if job.wrt else None,
            dtype=job.dtype,
            points=job.points,
            seed=job.seed,
            device=job.device,
            name=name,
            order=job.order,
        )
        return Outcome(report)
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and the like are theirs
        if not isinstance(exc, Exception):  # not caught as the user's where it was raised
            exc = raised(exc, "your function" if loaded else f"importing {job.where}")
        code, text = describe(exc)
        if job.debug:
            text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return Outcome(None, code, text)
