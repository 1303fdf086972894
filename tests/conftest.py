"""Test-wide settings: quiet, offline, self-contained Ray and W&B; the data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RNNBENCH_OFFLINE", "1")
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("WANDB_API_KEY", None)


def data_dir() -> Path | None:
    value = os.environ.get("RNNBENCH_DATA")
    return Path(value) if value and Path(value).is_dir() else None


def data_or_skip(*files: str) -> Path:
    """The data directory if it holds ``files`` (paths relative to it); otherwise skip the test."""
    root = data_dir()
    if root is None:
        pytest.skip("needs the benchmark data: set RNNBENCH_DATA (CI uses ../shared/data)")
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        pytest.skip(f"benchmark data files missing under {root}: {', '.join(missing)}")
    return root


@pytest.fixture
def real_data() -> Path:
    """The benchmark data directory; skips the test when RNNBENCH_DATA is not set."""
    d = data_dir()
    if d is None:
        pytest.skip("needs the benchmark data: set RNNBENCH_DATA (CI uses ../shared/data)")
    return d


TOY_MANIFEST = """
name: {name}
tasks:
  - name: toy-sysid
    params: {{length: 120}}
models:
  - name: gru
    params: {{hidden_size: 8}}
methods:
  - name: bptt
  - name: tbptt
    params: {{window: 30, batch_size: 8}}
seeds: [0, 1]
budget: {{steps: 6}}
eval_every: {{steps: 3}}
optimizer: {{name: adam, lr: 0.01}}
resources: {{cpu: 1}}
wandb: {{mode: disabled}}
"""


@pytest.fixture
def toy_manifest_text() -> str:
    return TOY_MANIFEST.format(name="toy")


@pytest.fixture
def write_manifest(tmp_path: Path):
    """write_manifest(text=None, name="toy", **fmt) -> path of a manifest file in tmp_path."""

    def _write(text: str | None = None, name: str = "toy", filename: str = "manifest.yaml") -> Path:
        path = tmp_path / filename
        path.write_text(text if text is not None else TOY_MANIFEST.format(name=name))
        return path

    return _write


def read_wandb_run(run_file: Path) -> dict:
    """An offline W&B run file (the LevelDB-style log of wandb protobuf records), parsed:
    ``{"history": [rows], "summary": {...}, "config": {...}, "tags": [...], "exit_code": int | None}``."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    block, pos, buf, records = 32768, 7, b"", []  # 7-byte W&B header
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += block - pos % block
            continue
        buf += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST fragment
            records.append(buf)
            buf = b""
    out: dict = {"history": [], "summary": {}, "config": {}, "tags": [], "exit_code": None}
    key = lambda item: item.key or "/".join(item.nested_key)  # noqa: E731
    for payload in records:
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "config":
            out["config"].update({key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "run":
            out["tags"] = list(rec.run.tags)
            out["config"].update({key(i): json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
