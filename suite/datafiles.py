"""Data files: where they live, checksums, and downloads from the official source.

Every file a task reads is declared as a :class:`DataFile` (path relative to the data directory,
SHA-256, official source). :func:`resolve` returns the verified local path; a missing file is
fetched from its source unless ``RNNBENCH_OFFLINE=1`` (or no source is known), and any failure
raises :class:`DataFileError` naming the file, its checksum and where to get it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


class DataFileError(FileNotFoundError):
    """A data file is missing or corrupt; the message names the file, checksum and source."""

DATA_ENV = "RNNBENCH_DATA"
OFFLINE_ENV = "RNNBENCH_OFFLINE"


@dataclass(frozen=True)
class DataFile:
    """One file of a benchmark data set.

    ``url`` points at the official source; when it serves a zip archive, ``member`` names the
    file inside it (nested archives: members separated by ``!``).
    """

    path: str  #: relative to the data directory, e.g. "sysid/cascaded_tanks/dataBenchmark.mat"
    sha256: str
    url: str | None = None
    member: str | None = None
    source: str = ""  #: human-readable provenance and citation


def default_data_dir() -> Path:
    """``$RNNBENCH_DATA``, else ``./data``."""
    return Path(os.environ.get(DATA_ENV, "data")).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=256)
def _verified(path: str, mtime_ns: int, size: int, sha256: str) -> bool:
    return _sha256(Path(path)) == sha256


def _describe(file: DataFile, data_dir: Path) -> str:
    where = file.url or "no public download known"
    if file.member:
        where += f" (archive member {file.member})"
    return (
        f"  file:     {data_dir / file.path}\n"
        f"  sha256:   {file.sha256}\n"
        f"  source:   {where}\n"
        + (f"  about:    {file.source}\n" if file.source else "")
        + f"  fix: place the file there, or point --data-dir / ${DATA_ENV} at a directory that has it"
    )


def _download(file: DataFile, target: Path) -> None:
    assert file.url is not None
    with urllib.request.urlopen(file.url, timeout=60) as response:  # noqa: S310 (official https source)
        payload = response.read()
    if file.member:
        for name in file.member.split("!"):
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                payload = archive.read(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(payload)
    shutil.move(tmp.name, target)


def resolve(file: DataFile, data_dir: Path | None = None) -> Path:
    """The verified local path of ``file``; downloads it when missing and a source is known."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    path = data_dir / file.path
    if not path.is_file():
        offline = os.environ.get(OFFLINE_ENV, "0") not in ("", "0", "false")
        if file.url is None or offline:
            raise DataFileError(f"missing data file {file.path}\n{_describe(file, data_dir)}")
        try:
            _download(file, path)
        except Exception as exc:  # network, archive layout, permissions
            raise DataFileError(
                f"missing data file {file.path}, and downloading it failed ({type(exc).__name__}: {exc})\n"
                f"{_describe(file, data_dir)}"
            ) from None
    stat = path.stat()
    if not _verified(str(path.resolve()), stat.st_mtime_ns, stat.st_size, file.sha256):
        raise DataFileError(
            f"checksum mismatch for data file {file.path} (sha256 {_sha256(path)})\n{_describe(file, data_dir)}"
        )
    return path
