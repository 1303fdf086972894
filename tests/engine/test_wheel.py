"""The wheel: installs into a fresh virtual env, finds its built-in plugins, shadows no `datasets`."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, text=True)
    return next(out.glob("rnnbench-*.whl"))


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "suite/_builtin/methods/bptt.py" in names and "suite/_builtin/datasets/sysid.py" in names
    assert not any(n.startswith(("datasets/", "methods/")) for n in names)


def test_wheel_in_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    # the dependencies (torch, ray, ...) come from this interpreter's site-packages, added as a plain path
    # entry: .pth files there (such as the editable install of this checkout) are not processed
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run([str(venv / "bin" / "rnnbench"), "list", "methods", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    infos = {i["name"]: i for i in json.loads(res.stdout)}
    assert {"bptt", "tbptt"} <= set(infos)
    assert all("_builtin" in i["origin"] for i in infos.values() if i["name"] in ("bptt", "tbptt"))
    probe = ("import importlib.util, suite; spec = importlib.util.find_spec('datasets'); "
             "print(suite.__file__); print(spec.origin if spec else None)")
    res = subprocess.run([str(py), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    suite_file, datasets_origin = res.stdout.split()
    assert str(venv) in suite_file  # the wheel's copy, not the checkout
    assert datasets_origin == "None" or str(ROOT) not in datasets_origin
