"""The time limit enforced from outside the trial's worker.

A trial blocked in C with the GIL held (a C extension or ``ctypes.PyDLL`` call that never returns) stops every
thread of its worker, including the guard that gives a trial up after ``time_limit_s`` (:mod:`suite.run.trial_guard`):
the sweep waited forever. So a trial with a time limit also starts this small process. If the worker is still
running ``limit + grace + margin`` seconds later, it writes a marker saying so and kills the worker; Ray then
reports the trial lost, and the marker turns its row into ``timeout`` (on the driver, or in the restarted trial,
which ends at once instead of blocking again). The process is stopped when the trial ends in time.

    python -m suite.run.trial_killer PID CREATE_TIME DELAY_S MARKER
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARGIN_S = 10.0  #: beyond the in-process guard's grace: the guard gets the first chance


def marker_path(trial_key: str) -> Path:
    """Where the marker of a killed trial is written (per node; the driver reads it in local runs)."""
    return Path(tempfile.gettempdir()) / "rnnbench-killed" / f"{trial_key}.txt"


def start(trial_key: str, delay_s: float) -> subprocess.Popen | None:
    """Watch this worker; kill it if it still runs ``delay_s`` seconds from now."""
    import psutil

    try:
        created = psutil.Process().create_time()
        return subprocess.Popen([sys.executable, "-m", "suite.run.trial_killer", str(os.getpid()), repr(created),
                                 repr(float(delay_s)), str(marker_path(trial_key))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except (OSError, psutil.Error):
        return None


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def take_marker(trial_key: str) -> str | None:
    """The message of a marker left for this trial (removed), or None."""
    path = marker_path(trial_key)
    try:
        text = path.read_text()
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return text


def main(pid: int, created: float, delay_s: float, marker: str) -> None:
    import psutil

    time.sleep(delay_s)
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 1e-3 or not proc.is_running():
            return
    except psutil.Error:
        return
    path = Path(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"trial exceeded its time limit and its worker did not respond (blocked in C with the GIL held?): "
                    f"rnnbench killed the worker {delay_s:.0f} s after the trial started")
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
