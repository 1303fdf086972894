"""What protects a trial from itself: a watchdog for its time limit, and the capture of its output.

:class:`Watchdog` ends a trial that runs past ``resources.time_limit_s`` even when the method never calls
``ctx.step`` again. At the limit it raises :class:`~suite.context.TrialTimeout` inside the training thread
(this stops Python code that loops or waits in short calls); if the trial has not ended ``grace_s`` later
(it is blocked inside one long C call), the watchdog sends the trial's final ``timeout`` report itself,
marked ``done`` so Tune ends the trial; the stuck thread keeps the worker from being reused, so Ray
replaces it. Either way the trial gets a ``timeout`` row and the sweep goes on.

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
from typing import Callable, Iterator

from suite.context import TrialTimeout


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in the thread ``thread_id`` at its next Python instruction (None: cancel)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type) if exc_type else ctypes.c_void_p())


class Watchdog:
    """Enforces a trial's wall-clock limit from a daemon thread (see the module docstring)."""

    def __init__(self, limit_s: float | None, on_hard_timeout: Callable[[str], None], grace_s: float = 5.0) -> None:
        self.limit_s, self.grace_s = limit_s, grace_s
        self._on_hard_timeout = on_hard_timeout
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._training = False
        self.claimed_by: str | None = None  #: "trial" or "watchdog": who sent the final report
        self.fired = False

    def start(self) -> Watchdog:
        if self.limit_s:
            threading.Thread(target=self._run, name="rnnbench-watchdog", daemon=True).start()
        return self

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """The span in which the watchdog may interrupt the trial thread."""
        with self._lock:
            self._training = True
        try:
            yield
        finally:
            with self._lock:
                self._training = False
                _raise_in(self._thread_id, None)  # an interrupt that arrived too late is dropped here

    def claim(self) -> bool:
        """The trial is about to send its final report; False if the watchdog already sent one."""
        with self._lock:
            if self.claimed_by is None:
                self.claimed_by = "trial"
                self._done.set()
            return self.claimed_by == "trial"

    @property
    def stopped(self) -> bool:
        """The watchdog sent the final report: whatever the trial thread reports now is dropped."""
        return self.claimed_by == "watchdog"

    def _run(self) -> None:
        if self._done.wait(self.limit_s):
            return
        self.fired = True
        with self._lock:
            if self._training and self.claimed_by is None:
                _raise_in(self._thread_id, TrialTimeout)
        if self._done.wait(self.grace_s):
            return
        with self._lock:
            if self.claimed_by is not None:
                return
            self.claimed_by = "watchdog"
        self._on_hard_timeout(f"trial exceeded its time limit of {self.limit_s:g} s and did not stop within "
                              f"{self.grace_s:g} s more (blocked outside Python); its worker was replaced")


@contextlib.contextmanager
def capture_output(path: str | Path | None) -> Iterator[Path | None]:
    """Send fds 1 and 2 of this process to ``path`` (appending) for the duration; no-op without a path
    or when the folder cannot be written."""
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
