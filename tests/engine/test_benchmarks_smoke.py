"""Every benchmark runs in a seconds-long smoke mode, so none can rot unnoticed (the measurements themselves
are taken by hand and reported in the README, never asserted as timings here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
EXTRA = {"suite_probe.py": ["suites/v1-cpu.yaml"]}


def test_every_benchmark_is_listed():
    assert {"tbptt_throughput.py", "results_scale.py", "orchestration_overhead.py", "parallel_in_time.py",
            "suite_probe.py", "adaptive_k_vs_authors.py"} <= set(BENCHMARKS)


@pytest.mark.ray
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_mode(name):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, f"benchmarks/{name}", *EXTRA.get(name, []), "--smoke"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip(), "a benchmark prints what it measured"
