"""Time limits for the steps that can blow up, and the name of the step running now.

SymPy's ``cancel``, ``factor`` and ``solve`` have no size limit of their own: on a chain
of nonlinear defines ``cancel`` multiplies out a product of sums whose size doubles
with each define. Such calls run under ``within(seconds, fn, ...)``, which gives up on
them (``TimeLimit``) after that many seconds of this process's CPU time, whatever else
the machine runs, instead of waiting; a whole spec runs under ``budget(seconds)``
(``dlsym derive --budget``), which stops it with a ``BudgetError`` (exit 2) that names
the ``step`` it was in.

One interval timer (``SIGALRM``) is set to the earliest deadline of the limits that
are open, so limits nest. The interruption is an ``OverTime`` (a ``BaseException``:
SymPy's own ``except Exception`` must not swallow it), turned into ``TimeLimit`` or
``BudgetError`` by the limit that owns it. Outside the main thread, or where there is
no ``SIGALRM``, limits are not enforced.

A step may say where in the spec its work is (``step(name, at=location)``): a budget
error then starts with that ``file:line:col``, as every located error does.

Ctrl-C (``SIGINT``) meets the same finalizers: raised inside JAX's garbage-collector
callback, Python's own ``KeyboardInterrupt`` was printed and dropped, and the run went
on to write its output. ``interruptible()`` raises it outside them, and remembers it:
``stop_if_interrupted()``, at each step and before any output is written, raises it again
where something swallowed it.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from contextlib import contextmanager

from dlsym._errors import DlsymError, Location

# (deadline, token, clock) of the limits open now, outermost first: ``budget`` counts
# wall-clock seconds (what --budget promises), ``within`` this process's CPU seconds, so
# that whether a SymPy step gives up, and so the result, does not depend on the
# machine's load (Adam's closed form was "none" beside two other jobs, its answer alone)
_open: list = []
_steps: list = []  # (name, location or None) of the steps running now, outermost first
_listeners: list = []  # called with the innermost step's name when it changes
_previous = None  # the SIGALRM handler before the first limit opened
# where each open limit's interruption was first raised: (step, location). A raise again
# (RERAISE_SECONDS) can land while the first unwinds, its steps already closed (a
# progress line redrawn in a step's exit): it says where the budget ran out, not ""
_first: dict = {}


class OverTime(BaseException):
    """A limit's deadline passed (raised from the timer's signal handler)."""

    def __init__(self, token, where: str, at: Location | None = None):
        super().__init__()
        self.token = token
        self.where = where  # the step running when it passed (unwinding leaves them)
        self.at = at  # where in the spec that step's work is, when it says


class TimeLimit(Exception):
    """``within``: the call ran past its time."""


class BudgetError(DlsymError):
    """The spec ran past ``--budget``. Exit code 2. Located at ``at`` (the spec entry
    being worked on: its kind in ``derive``, its objective) where known, else ``file``."""

    def __init__(self, seconds: float, where: str, file: str = "", at: Location | None = None):
        if at is None and file:
            # stopped before any step named an entry (reading the YAML): the file's top
            at, where = Location(file, 1, 1), where or "reading the spec"
        self.location = at
        self.message = (
            (f"{at}: " if at else "")
            + f"stopped after {seconds:g} s in {where or 'the derivation'}: the spec ran "
            "past its time budget (raise it with --budget SECONDS, 0 for none)"
        )
        super().__init__(self.message)
        STOPPED_IN_FLIGHT[0] = True


# whether a spec's budget stopped work in flight (it may have been inside XLA, whose
# threads then crash Python's finalization: SIGSEGV, exit 139, after the exit-2 line)
STOPPED_IN_FLIGHT = [False]


def _enforced() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _arm() -> None:
    if _open:
        # CPU time passes no faster than wall-clock time in the one thread SymPy runs
        # in (a limit past its CPU deadline is checked again at each alarm)
        left = min(d - clock() for d, _, clock in _open)
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-4))
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


# an exception raised inside a finalizer, a weakref callback or a garbage-collector
# callback (JAX registers one that frees XLA buffers) is printed and dropped ("Exception
# ignored in ..."), and one raised inside an import leaves the module half made: the
# interruption waits until the code is out of one
RETRY_SECONDS = 0.01
# ... and one raised is raised again if its limit has not closed this long after: caught
# and dropped somewhere (a bare except). Not sooner: unwinding a deep SymPy recursion
# takes a while, and a second interruption raised inside the first one's unwinding (in
# contextlib's __exit__) escaped every handler and killed the process
RERAISE_SECONDS = 1.0


def _in_finalizer(frame) -> bool:
    """Whether ``frame`` runs inside a ``__del__``, a weakref callback or one of
    ``gc.callbacks`` (any caller), or inside an import: an interruption there leaves a
    module half-initialised (``import jax`` at verification's start: an ImportError
    later, exit 3, or an abort in its C++ extension's init, rc 134)."""
    collector = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if (
            code.co_name == "__del__"
            or code in collector
            or code.co_filename.endswith(("weakref.py", "_weakrefset.py"))
            or code.co_filename.startswith("<frozen importlib")
        ):
            return True
        frame = frame.f_back
    return False


def _alarm(signum, frame):
    expired = [token for deadline, token, clock in _open if deadline <= clock() + 1e-4]
    if not expired:
        _arm()
        return
    # again, in case this one is dropped; the limit's own finally disarms the timer
    # when the interruption does reach it
    if _in_finalizer(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        return
    signal.setitimer(signal.ITIMER_REAL, RERAISE_SECONDS)
    # the outermost: it owns the ones inside it
    where, at = _first.setdefault(expired[0], (current(), located_at()))
    raise OverTime(expired[0], where, at)


@contextmanager
def _limit(seconds: float, token: object, clock=time.monotonic):
    """Run the body until ``seconds`` have passed on ``clock``; past it, an ``OverTime``
    carrying ``token``. The caller makes the token before the limit opens, so that an
    interruption is known for its own however early it comes."""
    global _previous
    if not _enforced() or seconds <= 0:
        yield
        return
    if not _open:
        _previous = signal.signal(signal.SIGALRM, _alarm)
    entry = (clock() + seconds, token, clock)
    # on the stack inside the try: an outer limit's interruption can come as the timer is
    # armed (its deadline already past: 0.1 ms), and an entry pushed before the try was
    # never taken off. Its CPU deadline then raised, after the CLI had returned, an
    # OverTime that no limit owned (the budget test's INTERNALERROR in CI)
    try:
        _open.append(entry)
        _arm()
        yield
    finally:
        _close(token)


def _close(token) -> None:
    """Take a limit off the stack. An alarm can still come before the timer is off (the
    deadline passing as the body ends): its interruption, raised here, left the entry on
    the stack, whose expired token every later limit then raised, owned by none (pytest's
    INTERNALERROR, then SIGALRM's default action killed the process). It is dropped, and
    the cleanup done again: the body had ended, and an outer limit's deadline that has
    passed fires again once the timer is re-armed.

    By the limit's ``token``, and called again by its owner (``within``, ``budget``'s
    caller): an interruption raised inside contextlib's exit, before it resumes the
    limit's generator, never reached this, and the entry stayed on the stack with its
    deadline past, to be raised, owned by none, at the next alarm (after the CLI had
    returned: pytest's INTERNALERROR)."""
    while True:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)  # first: no alarm while the stack changes
            _open[:] = [e for e in _open if e[1] is not token]
            _first.pop(token, None)
            _arm()
            if not _open:
                signal.signal(signal.SIGALRM, _previous or signal.SIG_DFL)
            return
        except OverTime:
            continue


def within(seconds: float, fn, *args):
    """``fn(*args)``, or ``TimeLimit`` if it runs past ``seconds`` of CPU time."""
    token = object()
    try:  # around the limit too: its deadline may pass as the limit closes
        with _limit(seconds, token, time.process_time):
            return fn(*args)
    except OverTime as exc:
        if exc.token is not token:
            raise
    finally:
        _close(token)  # taken off here too, whatever contextlib's exit did (_close)
    raise TimeLimit(f"{getattr(fn, '__name__', 'the step')} ran past {seconds:g} s")


@contextmanager
def budget(seconds: float | None, file: str = ""):
    """The whole body under ``seconds`` (None or 0: no limit); past it, ``BudgetError``
    naming the spec's ``file`` and the step it was in. Yields the limit's token (None
    for none): an interruption of it that escapes this exit is ``escaped``."""
    if not seconds:
        yield None
        return
    token = object()
    try:  # around the limit too: its deadline may pass as the limit closes
        with _limit(seconds, token):
            yield token
    except OverTime as exc:
        if exc.token is not token:
            raise
        raise BudgetError(seconds, exc.where, file, exc.at) from None
    finally:
        _close(token)


def escaped(exc: OverTime, seconds: float, file: str = "") -> BudgetError:
    """A budget's interruption raised inside contextlib's exit of ``budget`` itself,
    before its generator was resumed to turn it into a BudgetError: as that error, its
    limit taken off the stack (``_close``)."""
    _close(exc.token)
    return BudgetError(seconds or 0, exc.where, file, exc.at)


@contextmanager
def step(name: str, at: Location | None = None):
    """Mark what runs inside as the step ``name`` (progress and budget errors), whose
    work is at ``at`` in the spec (a budget error's location); an empty name only
    locates what runs inside."""
    stop_if_interrupted()  # a safe point: Ctrl-C stops the run here if it was swallowed
    _steps.append((name, at))
    _tell()
    try:
        yield
    finally:
        _steps.pop()
        _tell()


def current() -> str:
    """The steps running now, outermost first ("gradient w.r.t. W: simplifying")."""
    return ": ".join(name for name, _ in _steps if name)


def located_at() -> Location | None:
    """Where in the spec the innermost step that says so is working."""
    return next((at for _, at in reversed(_steps) if at is not None), None)


def _tell() -> None:
    for listen in _listeners:
        listen(current())


@contextmanager
def listening(fn):
    """Call ``fn`` with ``current()`` whenever the step changes, inside the body."""
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)


_interrupted = False  # Ctrl-C was pressed (in interruptible())


def _sigint(signum, frame):
    global _interrupted
    _interrupted = True
    if _in_finalizer(frame):
        # raised here it would be printed and dropped: sent again a moment later, when
        # the finalizer (JAX's gc callback) is done
        again = threading.Timer(RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGINT))
        again.daemon = True
        again.start()
        return
    raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    """``KeyboardInterrupt`` if Ctrl-C was pressed (and its first one was swallowed)."""
    if _interrupted:
        raise KeyboardInterrupt


@contextmanager
def interruptible():
    """Ctrl-C stops the body with ``KeyboardInterrupt`` (never inside a finalizer, where
    it would be dropped), and ``stop_if_interrupted()`` says it again after. In the main
    thread only (elsewhere, Python's own handling)."""
    global _interrupted
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _interrupted = False
    previous = signal.signal(signal.SIGINT, _sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted = False  # said by the body's KeyboardInterrupt, or never to be
