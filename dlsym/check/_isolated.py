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

The parent derives the reference and draws the points (``plan_check``); the child is
given only the calls to make (``Calls``: the inputs, how to read the returns). It is
spawned (a forked JAX can deadlock), tells the parent which step it is in
(``dlsym._budget.step``: importing, calling), and sends back what the function returned
at each point, or the error's text, as bytes the parent reads without unpickling (NumPy's
``.npz`` without pickles, and JSON). The parent compares and writes the report: the
user's code shares no memory with the verdict (in one process, a function found the
result pipe and sent a forged passing report, and one patched the report's class), and
what it writes down the pipe is data, never code run in the parent. The returns are the
child's word: code written to deceive the check can send others than its function's
(the README says so); the parent reads them as frames as they arrive, bounded in size,
floats only, so that no message of the child's hangs, floods or crashes it. Python's
``faulthandler`` writes the child's stack to a file when its time is up (then ends it) or
when it crashes, so the parent names the user's line.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import math
import multiprocessing
import os
import re
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from dlsym._budget import OverTime, escaped, listening, step
from dlsym._budget import budget as time_budget
from dlsym._errors import describe
from dlsym.check._frames import CALLING, IMPORTING, locate
from dlsym.check._gradient import Calls, Returns, finish_check, plan_check
from dlsym.check._report import CheckReport
from dlsym.check._shapes import readable

# seconds the parent waits past the budget for the child's own stop (faulthandler's,
# which writes where it was) before it kills the child
GRACE = 2.0
# seconds the child's own start-up may take (a spawned interpreter importing dlsym and
# NumPy) before the user's code starts and its budget with it: 3 s of --budget spent
# there on a loaded machine read "importing grad.py ran past the time budget (an
# endless loop at import?)" for a module that defines one function
STARTUP = 60.0
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


# what the child's message is, by its first byte: a step it is in, what the function
# returned, or why there is nothing to compare
STEP, RETURNS, ERROR = b"S", b"R", b"E"
UNREADABLE = (
    "error: the check's report could not be read: the checked code wrote on dlsym's result "
    "pipe (it runs beside the check), so there is no verdict"
)


def check_isolated(job: Job, budget: float | None) -> Outcome:
    """Run ``job`` under ``budget`` seconds (None or 0: no limit): its reference and
    points here, the user's code in a child process, the comparison here."""
    try:
        with time_budget(budget, job.spec):
            plan = plan_check(
                job.spec,
                list(job.wrt) if job.wrt else None,
                job.dtype,
                job.points,
                job.seed,
                job.device,
                job.order,
            )
    except (Exception, OverTime) as exc:  # noqa: BLE001 - a spec's error, reported with its exit code
        if isinstance(exc, OverTime):  # past the budget as it was closing (budget._close)
            exc = escaped(exc, budget, job.spec)
        return _failed(job, exc)
    returns = _called(job, plan.calls, budget)
    if isinstance(returns, Outcome):
        return returns
    try:
        return Outcome(finish_check(plan, returns))
    except Exception as exc:  # noqa: BLE001 - dlsym's own: exit 3, said
        return _failed(job, exc)


def _failed(job: Job, exc: BaseException) -> Outcome:
    code, text = describe(exc)
    if job.debug:
        text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(None, code, text)


def _called(job: Job, calls: Calls, budget) -> Returns | Outcome:
    """What the user's function returned at the points of ``calls``, run in a child
    process; or the Outcome that says why there is none. ``budget`` seconds (None or 0:
    no limit) count from when the user's code starts: the child's start-up has
    ``STARTUP`` of its own."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    fd, dump = tempfile.mkstemp(prefix="dlsym-check-", suffix=".txt")
    os.close(fd)
    child = context.Process(
        target=_child, args=(send, job, calls, dump, budget), name="dlsym check", daemon=True
    )
    outcome: Returns | Outcome | None = None
    now, killed = "", False
    relay = _Relay()
    frames = _Frames(_largest(calls))
    os.set_blocking(receive.fileno(), False)
    try:
        with relay.started():
            child.start()
        send.close()  # the child's end: the pipe reads as ended when the child is gone
        deadline = time.time() + budget + STARTUP if budget else None
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
            # read as it comes, never blocking: a frame the user's code began and never
            # finished kept the parent in recv_bytes past the budget
            messages, ended = frames.read(receive.fileno())
            for message in messages:
                # bytes, read as data: anything but a message of ours (the user's code
                # can reach the pipe) ends the check with no verdict
                kind, body = message[:1], message[1:]
                if kind == STEP:
                    if budget and not now:  # the user's code starts: its budget too
                        deadline = time.time() + budget
                    now = body.decode(errors="replace")
                    continue
                outcome = _read(kind, body, calls) or Outcome(None, 2, UNREADABLE)
                break
            if outcome is None and frames.broken:
                outcome = Outcome(None, 2, UNREADABLE)
            if ended:  # the child's end closed: ended without a result
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


class _Frames:
    """multiprocessing's frames (a 4-byte big-endian length, or -1 and an 8-byte one,
    then the bytes) read from a non-blocking pipe as they arrive. ``broken``: a length
    that is no frame of ours (negative, or past ``limit``), after which nothing is read."""

    def __init__(self, limit: int):
        # a bytearray: appended to and cut from its front in place (bytes were copied
        # whole on every read, quadratic in a message near the limit)
        self.limit, self.buffer, self.broken = limit, bytearray(), False

    def read(self, fd: int) -> tuple[list, bool]:
        """(the whole messages now in the pipe, whether it reached its end)."""
        ended = False
        while not self.broken:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:  # all of it, for now
                break
            except OSError:
                data = b""
            if not data:
                ended = True
                break
            self.buffer += data
            if len(self.buffer) > self.limit + 16:
                self.broken = True
        return self._messages(), ended

    def _messages(self) -> list:
        out = []
        while not self.broken and len(self.buffer) >= 4:
            (size,) = struct.unpack("!i", self.buffer[:4])
            start = 4
            if size == -1:
                if len(self.buffer) < 12:
                    break
                (size,) = struct.unpack("!Q", self.buffer[4:12])
                start = 12
            if size < 0 or size > self.limit:
                self.broken = True
                break
            if len(self.buffer) < start + size:
                break
            out.append(bytes(self.buffer[start : start + size]))
            del self.buffer[: start + size]
        return out


def _largest(calls: Calls) -> int:
    """The most bytes a message of the child's may hold: every return at its expected
    shape in float64, four times over, and 64 MiB for the rest (a return of another
    shape no rule reads is sent as its shape alone)."""
    per_point = sum(8 * math.prod(shape) for shape in calls.shapes.values())
    return 4 * per_point * len(calls.inputs) + (64 << 20)


def _sent_returns(returns: Returns, calls: Calls) -> bytes:
    """What the function returned, as the bytes of an ``.npz`` (no pickles): each
    array, or the shape and dtype alone of a return no rule reads (its entries are never
    compared, and need not cross the pipe)."""
    arrays: dict = {}
    got: dict = {}
    for w, items in returns.got.items():
        got[w] = []
        for a in items:
            a = np.asarray(a)
            if readable(a.shape, calls.layouts[w]):
                got[w].append(f"a{len(arrays)}")
                # a copy in C order that keeps a 0-d return 0-d: ascontiguousarray made
                # it (1,), and the report said a scalar gradient had shape (1,)
                arrays[got[w][-1]] = np.array(a, order="C", copy=True)
            else:
                got[w].append({"shape": list(a.shape), "dtype": a.dtype.str})
    meta = {
        "framework": returns.framework,
        "name": returns.name,
        "got": got,
        "unchecked": list(returns.unchecked),
    }
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return RETURNS + buf.getvalue()


def _read(kind: bytes, body: bytes, calls: Calls) -> Returns | Outcome | None:
    """The child's last message: what the function returned, or the Outcome of an error;
    None where it is no message of ours."""
    try:
        if kind == ERROR:
            said = json.loads(body.decode())
            # an error's code is the int 2 or 3: 0 (or 1) with no report would read as a
            # verdict, and sys.exit(2.0) prints 2.0 and exits 1
            code = said["code"] if type(said["code"]) is int and said["code"] in (2, 3) else 2
            return Outcome(None, code, str(said["text"]))
        if kind == RETURNS:
            return _returns(body, calls)
    except Exception:  # noqa: BLE001 - what the user's code wrote down the pipe
        return None
    return None


def _returns(body: bytes, calls: Calls) -> Returns:
    """The Returns in the bytes ``_sent_returns`` wrote, every part checked: a symbol
    and a point for each, numbers only."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        # stored, as np.savez writes them: a deflated member could declare gigabytes (a
        # 6 MB bomb grew the parent to 15 GB)
        if any(
            m.compress_type != zipfile.ZIP_STORED or m.file_size > len(body)
            for m in archive.infolist()
        ):
            raise ValueError("members are stored")
    with np.load(io.BytesIO(body), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        got: dict = {}
        for w in calls.wrt:
            entries = meta["got"][w]
            if len(entries) != len(calls.inputs):
                raise ValueError("a return per point")
            got[w] = []
            for e in entries:
                if isinstance(e, str):
                    a = z[e]
                else:  # read by no rule: its shape and dtype, as _kept keeps it
                    a = np.broadcast_to(np.zeros((), dtype=np.dtype(e["dtype"])), tuple(e["shape"]))
                if a.dtype.kind != "f":  # the child sends the float arrays _caller made
                    raise ValueError("floats only")
                got[w].append(a)
    framework, name, unchecked = meta["framework"], meta["name"], meta["unchecked"]
    if not isinstance(framework, str) or not isinstance(name, str):
        raise ValueError("names are text")
    if not isinstance(unchecked, list) or not all(n in calls.names for n in unchecked):
        raise ValueError("the spec's symbols")
    return Returns(framework, name, got, tuple(unchecked))


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


# the user's prints pass through with their control characters in caret notation
# (ESC as ^[, CR as ^M, as cat -v shows them): an escape sequence that clears the
# screen, or a CR that returns to the line's start, could draw a fake verdict above or
# over dlsym's report. Line breaks and tabs stay.
_VISIBLE = {c: b"^" + bytes([c ^ 0x40]) for c in (*range(0x20), 0x7F) if c not in (0x09, 0x0A)}


def _visible(data: bytes) -> bytes:
    if not any(c in _VISIBLE for c in data):
        return data
    return b"".join(_VISIBLE.get(c, bytes([c])) for c in data)


def _write(stream, data: bytes) -> None:
    data = _visible(data)
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
NO_EXIT = (
    ", not exit (os._exit ends the process: no report can follow) or close the process's "
    "files (dlsym's pipes among them)"
)
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
    if killed and not now:  # never reached the user's code: the start-up's own limit
        return (
            f"{subject} did not reach your code within {STARTUP:g} s of starting, and was "
            "stopped (a machine out of memory or CPU?)"
        )
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


def _child(send, job: Job, calls: Calls, dump: str, budget: float | None) -> None:
    """The child process: the user's function called at the points of ``calls``, its
    steps told to the parent as they change."""
    if hasattr(os, "setsid"):  # its own session and process group: the parent ends the
        os.setsid()  # group, and what the user's code started (a fork) goes with it
        _end_with_parent(dump)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the parent, which ends this
    from dlsym.check import _caller  # noqa: F401 - dlsym's own, loaded before the budget

    # what sending the returns needs, loaded before the user's code runs: a module that
    # set RLIMIT_NOFILE to 3 at import left none to import zipfile with (exit 3)
    _sent_returns(Returns("", "", {}), calls)
    try:
        with open(dump, "w") as stack:
            faulthandler.enable(stack)  # a crash: the stack, to locate it
            if budget:  # past the budget: the stack, then exit
                faulthandler.dump_traceback_later(budget, exit=True, file=stack)
            with listening(lambda now: send.send_bytes(STEP + now.encode())):
                message = _run(job, calls)
            faulthandler.cancel_dump_traceback_later()
            for stream in (sys.stdout, sys.stderr):  # the user's prints come first
                try:
                    stream.flush()
                except (AttributeError, OSError, ValueError):  # closed or replaced by theirs
                    pass
            send.send_bytes(message)
    except OSError:  # the user's code closed the pipe or the stack's file: no result
        os._exit(1)  # to send, and the parent says so (no traceback of dlsym's here)
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


def _run(job: Job, calls: Calls) -> bytes:
    """The message for the parent: what the function returned, or the error's text."""
    loaded = False
    try:
        # NumPy, and JAX or PyTorch as the function needs them, load here, in the child
        from dlsym.check._caller import load_function, raised
        from dlsym.check._gradient import call_user

        with step(IMPORTING):
            fn, name = load_function(job.grad)
        loaded = True
        return _sent_returns(call_user(fn, calls, name), calls)
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and the like are theirs
        if not isinstance(exc, Exception):  # not caught as the user's where it was raised
            exc = raised(exc, "your function" if loaded else f"importing {job.where}")
        failed = _failed(job, exc)
        return ERROR + json.dumps({"code": failed.code, "text": failed.text}).encode()
