"""A local Ray instance that rnnbench started must not outlive its driver.

``ray.shutdown()`` stops the instance when the driver ends normally or on Ctrl-C; a driver killed with SIGKILL
(or by the kernel's OOM killer) runs no code, and Ray's GCS, raylet, dashboard and runtime-env agents and idle
workers stay alive with PPID 1. :func:`start` launches this module as a small detached process that watches the
driver: it keeps the set of the driver's descendants (refreshed twice a second) and, once the driver is gone,
terminates them (SIGTERM, then SIGKILL after 3 s). It exits on its own when the driver ended and nothing of
its Ray instance is left.

    python -m suite.run.ray_watchdog DRIVER_PID
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def start() -> subprocess.Popen | None:
    """Watch this process (call right after starting a private local Ray instance)."""
    try:
        return subprocess.Popen([sys.executable, "-m", "suite.run.ray_watchdog", str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError:
        return None


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(driver_pid: int, poll_s: float = 0.5, grace_s: float = 3.0) -> int:
    """Block until the driver is gone, then stop what it left; returns the number of processes stopped."""
    import psutil

    me = os.getpid()
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return 0
    known: dict[int, psutil.Process] = {}
    while _alive(driver):
        try:
            for child in driver.children(recursive=True):
                if child.pid != me and child.pid not in known:
                    known[child.pid] = child
        except psutil.Error:
            pass
        time.sleep(poll_s)
    left = []
    for p in known.values():  # psutil checks the create time, so a reused pid is never touched
        try:
            if _alive(p):
                left += [p, *[c for c in p.children(recursive=True) if c.pid != me]]
        except psutil.Error:
            continue
    for p in left:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(left)


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    watch(int(sys.argv[1]))
