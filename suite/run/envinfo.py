"""Environment metadata recorded with every trial: versions, git state, host, node, devices."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
import torch

from suite._version import __version__

_PACKAGES = ("torch", "ray", "numpy", "pandas", "pyarrow", "wandb", "pydantic")


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout this code runs from, or (None, None) outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return commit or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Static facts about this process's environment (cached)."""
    commit, dirty = git_state()
    info: dict[str, Any] = {
        "suite_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": psutil.cpu_count(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    info.update({f"{p}_version": _version(p) for p in _PACKAGES})
    info["gpu_model"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


class PeakMemory:
    """Samples this process's resident memory in a background thread; also CUDA max allocated (its peak is
    reset when the sampler is created, so it covers one trial)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self.start_rss = self._proc.memory_info().rss
        self.peak_rss = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def peak_increase(self) -> int:
        """Peak resident memory above the level at the start: what this trial itself added (a reused
        worker's cached tasks and earlier trials are not counted)."""
        return max(0, self.peak_rss - self.start_rss)

    def cuda_peak(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None

