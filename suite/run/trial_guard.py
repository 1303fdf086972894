"""What protects a trial from itself: a time-limit supervisor, and the capture of its output.

:func:`supervise` runs a trial in a thread of its own and waits for it at most ``resources.time_limit_s``.
A method that calls into the context is stopped there past the limit (``ctx.step``, ``ctx.log`` and
evaluations raise :class:`~suite.run.context.TrialTimeout`). At the limit a trial still running its method
after its first update is interrupted with the same exception (this stops Python code that loops without
calling the context; before the first update it is not done: the trial may be importing modules, and an
exception there would leave a half-initialised module behind for the next trial in the worker). If the
trial has not ended ``grace_s`` after the limit (it blocks inside C code), the supervisor gives up on it:
the trial's ``timeout`` record is reported in its place and returned, and the stuck thread is left behind
(whatever it reports later is dropped). Either way the trial gets a ``timeout`` row, the worker is free
for the next trial, and the sweep goes on.

:func:`capture_output` sends the trial's stdout and stderr (file descriptors 1 and 2, so output of C code,
threads and ``logging`` too) to ``RESULTS/logs/<experiment>/<trial_key>.log``, which error rows point to.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from suite.run.context import TrialTimeout

GRACE_S = 5.0  #: how long a trial gets to stop after its time limit before it is given up


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in the thread ``thread_id`` at its next Python instruction (None: cancel)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type) if exc_type else ctypes.c_void_p())


class Interruptible:
    """Marks the span in which a trial thread may be interrupted (its method, after the first update)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self.ready: Callable[[], bool] = lambda: True
        self.given_up = False  #: the supervisor reported this trial's end: later reports are dropped

    @contextlib.contextmanager
    def span(self, ready: Callable[[], bool]) -> Iterator[None]:
        with self._lock:
            self._thread_id, self.ready = threading.get_ident(), ready
        try:
            yield
        finally:
            with self._lock:
                if self._thread_id is not None:
                    _raise_in(self._thread_id, None)  # an interrupt that arrived too late is dropped here
                self._thread_id = None

    def interrupt(self) -> bool:
        with self._lock:
            if self._thread_id is None or not self.ready():
                return False
            _raise_in(self._thread_id, TrialTimeout)
            return True


def supervise(run: Callable[[], Any], give_up: Callable[[str], Any], limit_s: float | None,
              guard: Interruptible, grace_s: float = GRACE_S) -> Any:
    """``run()`` in a daemon thread; its result, or ``give_up(message)``'s when it overruns ``limit_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="rnnbench-trial", daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        interrupted = guard.interrupt()
        thread.join(grace_s)
        if thread.is_alive():
            guard.given_up = True
            how = ("an interrupt was sent and it did not stop (blocked outside Python?)" if interrupted
                   else "it is blocked (outside Python, or before its first update)")
            return give_up(f"trial exceeded its time limit of {limit_s:g} s and was given up {grace_s:g} s later: "
                           f"{how}")
    if "error" in box:
        raise box["error"]
    return box["result"]


@contextlib.contextmanager
def capture_output(path: str | Path | None, limit_bytes: int | None = None) -> Iterator[Path | None]:
    """Send fds 1 and 2 of this process to ``path`` (appending) for the duration; no-op without a path
    or when the folder cannot be written. With ``limit_bytes``, a longer log is cut afterwards to its first
    and last ``limit_bytes / 2`` bytes around a line saying how much was dropped (:func:`cap_log`)."""
    if path is None:
        yield None
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield None
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield target
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        if limit_bytes:
            cap_log(target, limit_bytes)


def cap_log(path: Path, limit_bytes: int) -> int:
    """Keep the head and the tail of a log longer than ``limit_bytes`` (half each) with a line saying how
    many bytes were dropped between them; returns the bytes dropped (0: the log was short enough)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    if size <= limit_bytes:
        return 0
    half = max(limit_bytes // 2, 1)
    dropped = size - 2 * half
    tmp = path.with_name(path.name + ".capping")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read(half))
            dst.write(f"\n[rnnbench: {dropped} bytes of this trial's output dropped here; the log keeps its first and "
                      f"last {half} bytes (resources.log_limit_mib)]\n".encode())
            src.seek(size - half)
            dst.write(src.read(half))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return 0
    return dropped
