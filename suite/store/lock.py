"""One driver per experiment: a lock file in the results store.

``RESULTS/locks/<experiment>.lock`` holds who runs the experiment (host, pid, start time). It is created
atomically (exclusive create on a local filesystem; create-then-verify on object stores) and removed when
the sweep ends, however it ends. A lock left by a driver that was killed is *stale*: on the same host a
dead pid is detected and the lock taken over; a lock from another host needs ``--force-unlock``.

Taking a lock over is read, judge, delete, create: two drivers doing it at once could both succeed (the second
deleter removes the first one's new lock). On a local filesystem the whole sequence therefore runs under an
exclusive ``flock`` of ``RESULTS/locks/<experiment>.lock.guard`` (a file that is never deleted), so takeovers
are serialised and the second driver finds the first one's live lock. Object stores have no such primitive
here; there the lock is written and read back (a race of two takeovers within one round trip remains).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import psutil

from suite.store import layout
from suite.store.results import ResultsStore


class LockedError(RuntimeError):
    """Another driver holds the experiment's lock; the message says who and what to do."""


@dataclass
class ExperimentLock:
    store: ResultsStore
    experiment: str
    token: str = ""

    @property
    def path(self) -> str:
        return self.store.path(*layout.lock_file(self.experiment))

    def _read(self) -> dict | None:
        try:
            with self.store.fs.open_input_stream(self.path) as f:
                return json.loads(f.read().decode() or "{}")
        except (FileNotFoundError, OSError, ValueError):
            return None

    def _stale(self, owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        if not isinstance(pid, int) or not psutil.pid_exists(pid):
            return True
        try:  # a reused pid: another process started after the lock was written
            return psutil.Process(pid).create_time() > float(owner.get("started_at", 0)) + 1
        except psutil.Error:
            return True

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise acquisitions of this experiment's lock on a local filesystem (see the module docstring)."""
        if not self.store.local:
            yield
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        self.store.fs.create_dir(self.store.path(layout.LOCKS), recursive=True)
        with open(self.path + ".guard", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def acquire(self, force: bool = False) -> str | None:
        """Take the lock; returns a note when a stale lock was taken over, raises LockedError when held."""
        with self._guard():
            return self._acquire(force)

    def _acquire(self, force: bool) -> str | None:
        self.token = uuid.uuid4().hex
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(), "token": self.token}
        note = None
        existing = self._read()
        if existing is not None:
            if not (force or self._stale(existing)):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(existing.get("started_at", 0)))
                raise LockedError(
                    f"experiment {self.experiment!r} in {self.store.root} is being run by another driver "
                    f"(host {existing.get('host')}, pid {existing.get('pid')}, since {since}). Wait for it, use "
                    f"another --results or experiment name, or, if that driver is gone, pass --force-unlock.")
            note = (f"took over the lock of experiment {self.experiment!r} left by a driver that is gone "
                    f"(host {existing.get('host')}, pid {existing.get('pid')})")
            self._delete()
        self.store.fs.create_dir(self.store.path(layout.LOCKS), recursive=True)
        payload = json.dumps(owner).encode()
        if self.store.local:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raise LockedError(f"experiment {self.experiment!r} was locked by another driver a moment ago") from None
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
        else:
            with self.store.fs.open_output_stream(self.path) as f:
                f.write(payload)
            if (self._read() or {}).get("token") != self.token:
                raise LockedError(f"experiment {self.experiment!r} was locked by another driver a moment ago")
        return note

    def release(self) -> None:
        if self.token and (self._read() or {}).get("token") == self.token:
            self._delete()
        self.token = ""

    def _delete(self) -> None:
        try:
            self.store.fs.delete_file(self.path)
        except (FileNotFoundError, OSError):
            pass

    def __enter__(self) -> ExperimentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(store: ResultsStore, experiment: str) -> dict | None:
    """The owner of the experiment's lock if a live driver holds it, else None."""
    lock = ExperimentLock(store, experiment)
    owner = lock._read()
    return None if owner is None or lock._stale(owner) else owner


__all__ = ["ExperimentLock", "LockedError", "is_locked"]
