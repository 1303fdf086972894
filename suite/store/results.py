"""The Parquet results store: the ``trials`` and ``curves`` tables, in batched parts and compacted files.

Layout (``RESULTS`` is a local path or a filesystem URI: ``file://``, ``s3://``, ``gs://``, or any fsspec
protocol)::

    RESULTS/trials/EXPERIMENT/part-<ms>-<id>.parquet      rows of trials finished together (one flush)
    RESULTS/trials/EXPERIMENT/compact-<ms>-<id>.parquet   the experiment's rows after compaction
    RESULTS/curves/EXPERIMENT/...                         the same for the curves (one row per report and metric)

Guarantees:

* **One writer.** Only the sweep's driver writes (through :class:`~suite.run.tune_callbacks.ResultsWriter`), in
  batches: a part every N finished trials or S seconds, and at the end of the sweep.
* **Atomic.** A part is written to a hidden temporary name and renamed (object stores write objects
  whole), so a reader never sees half a file. The curves part is written before the trials part: a trial
  row means its curves are stored.
* **Idempotent per trial key.** A rerun of a trial writes a new row with the same ``trial_key`` and a new
  ``run_id``; readers keep the newest row of each key (``written_at``) and only the curves of its run.
* **Compaction** (:meth:`ResultsStore.compact`, ``rnnbench compact``, and automatically at the end of a
  sweep) rewrites an experiment into a few large files without superseded rows. A compacted file names the
  parts it replaces in its Parquet metadata, so a crash between writing it and deleting them loses nothing
  and duplicates nothing: readers skip replaced parts.

* **Upgrades.** Only the identity columns (:data:`IDENTITY_COLUMNS`) are required of a part; any other column a
  part lacks reads as null of its declared type, so adding a field to the record keeps every store readable.
  A part written by a newer rnnbench (a higher schema version; each part names its writer) is read when its
  identity columns are there and refused, naming that release, otherwise. The fixture stores of every shipped
  schema live in ``tests/fixtures/stores``.

Readers go through duckdb, never a per-file loop. A local store's parts are read by duckdb's own Parquet reader,
each column typed as the unified schema of the parts says (no pandas and no ``pyarrow.dataset`` is imported, so
``rnnbench leaderboard`` starts fast); an object store's parts, and parts whose column types differ from the
unified ones, are read through ``pyarrow.dataset``. Plain ``pandas.read_parquet``, ``pyarrow.parquet.read_table``,
duckdb and polars read ``RESULTS/trials`` and ``RESULTS/curves`` directly (rows of reruns appear until the next
compaction; :meth:`ResultsStore.trials` never shows them).
Stores written by rnnbench 0.1 (schema version 1, ``experiment=NAME/KEY.parquet``) are read as well and
migrated by ``rnnbench compact``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from suite._version import SCHEMA_VERSION
from suite.store import layout
from suite.store.record import (
    CURVES_SCHEMA,
    STATUSES,
    TRIALS_SCHEMA,
    CurvePoint,
    TrialRecord,
    curves_to_table,
    records_to_table,
)
from suite.store.results_v1 import (
    LEGACY_FOLDER_PREFIX,
    V1_CURVES_SCHEMA,
    V1_TRIALS_SCHEMA,
    upgrade_curves,
    upgrade_trials,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ResultsStore", "STATUSES", "StoreError", "TABLES", "open_filesystem"]

TABLES = layout.TABLES
_REPLACES_KEY = b"rnnbench.replaces"  # Parquet key-value metadata of a compacted file: the parts it replaces
_VERSION_KEY = b"rnnbench.schema_version"
_WRITER_KEY = b"rnnbench.version"  # the rnnbench release that wrote a part (named when a part cannot be read)
#: the columns a stored part must have (with their stored types); any other column a part lacks reads as null
#: of its declared type, so adding a field to TrialRecord keeps every existing store readable
IDENTITY_COLUMNS = {
    "trials": ("experiment", "trial_key", "config_id", "task", "model", "method", "seed", "status", "run_id",
               "written_at", "schema_version"),
    "curves": ("experiment", "trial_key", "run_id", "split", "metric", "value", "schema_version"),
}


class StoreError(ValueError):
    """The store holds files rnnbench cannot read; the message names them and the fix."""
_ROW_GROUP = 131_072
_SCHEMAS = {"trials": TRIALS_SCHEMA, "curves": CURVES_SCHEMA}


def open_filesystem(root: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the base path inside it for a local path or URI."""
    text = str(root)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec  # any other protocol fsspec knows (memory://, gcs via gcsfs, ...)

        fsspec_fs, path = fsspec.core.url_to_fs(text)
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
    return fs, path.rstrip("/")


def _stamp() -> str:
    return f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"


@dataclass
class _Part:
    path: str
    experiment: str
    legacy: bool = False


@dataclass
class CompactionReport:
    table: str
    experiment: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int


class ResultsStore:
    """Reads and writes the ``trials`` and ``curves`` tables under ``root`` (a path or a URI)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.fs, self.base = open_filesystem(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"ResultsStore({self.root!r})"

    # --- layout ------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def _reachable(self) -> None:
        """Object stores: the bucket exists and answers (checked once); else a StoreError naming URI and cause."""
        if self.local or getattr(self, "_checked", False):
            return
        bucket = self.base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(_unreachable(self.root, exc)) from None
        if info.type == pafs.FileType.NotFound:
            raise StoreError(f"results store {self.root}: the bucket {bucket!r} does not exist (or these credentials "
                             "cannot see it); create it or fix the URI")
        self._checked = True

    def exists(self) -> bool:
        self._reachable()
        try:
            return self.fs.get_file_info(self.base).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(_unreachable(self.root, exc)) from None

    def _listing(self, table: str, experiment: str | None = None) -> list[_Part]:
        """Every readable part of ``table`` (hidden and temporary files skipped)."""
        self._reachable()
        top = self.path(table)
        try:
            if self.fs.get_file_info(top).type != pafs.FileType.Directory:
                return []
            infos = self.fs.get_file_info(pafs.FileSelector(top, recursive=True))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(_unreachable(self.root, exc)) from None
        out = []
        for info in infos:
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet") or info.base_name[0] in "._":
                continue
            folder = info.path[len(top) + 1:].split("/")[0]
            legacy = folder.startswith(LEGACY_FOLDER_PREFIX)
            name = folder[len(LEGACY_FOLDER_PREFIX):] if legacy else folder
            if experiment is None or name == experiment:
                out.append(_Part(info.path, name, legacy))
        return sorted(out, key=lambda p: p.path)

    def experiments(self) -> list[str]:
        return sorted({p.experiment for p in self._listing(layout.TRIALS)})

    def has_legacy(self) -> bool:
        return any(p.legacy for t in TABLES for p in self._listing(t))

    # --- writing (the driver only) -------------------------------------------------------------------------
    def _write_table(self, table: pa.Table, folder: str, prefix: str, metadata: dict[bytes, bytes] | None = None) -> str:
        name = f"{prefix}-{_stamp()}.parquet"
        final = f"{folder}/{name}"
        self.fs.create_dir(folder, recursive=True)
        from suite._version import __version__

        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **(metadata or {}),
                                               _VERSION_KEY: str(SCHEMA_VERSION).encode(),
                                               _WRITER_KEY: __version__.encode()})
        target = f"{folder}/.{name}.tmp" if self.local else final
        try:
            pq.write_table(table, target, filesystem=self.fs, compression="zstd", row_group_size=_ROW_GROUP)
            if target != final:
                self.fs.move(target, final)
        except BaseException:
            if target != final:
                try:
                    self.fs.delete_file(target)
                except OSError:
                    pass
            raise
        return final

    def write(self, records: list[TrialRecord], curves: Iterable[CurvePoint] = (),
              flat_types: dict[str, pa.DataType] | None = None) -> list[str]:
        """Write finished trials and their curves as one part per experiment and table (curves first).

        Sets ``written_at`` on the records. ``flat_types`` fixes the flattened parameter columns (see
        :func:`suite.store.record.records_to_table`). Returns the paths written."""
        now = time.time()
        by_exp: dict[str, list[TrialRecord]] = defaultdict(list)
        for r in records:
            r.written_at = now
            by_exp[r.experiment].append(r)
        curves_by_exp: dict[str, list[CurvePoint]] = defaultdict(list)
        for c in curves:
            curves_by_exp[c.experiment].append(c)
        paths = []
        for exp in sorted(set(by_exp) | set(curves_by_exp)):
            if curves_by_exp.get(exp):
                paths.append(self._write_table(curves_to_table(curves_by_exp[exp]), self.path(layout.CURVES, exp), "part"))
            if by_exp.get(exp):
                paths.append(self._write_table(records_to_table(by_exp[exp], flat_types), self.path(layout.TRIALS, exp), "part"))
        return paths

    def import_rescue(self, path: str | Path) -> int:
        """Write the rows of a rescue file (``rnnbench-rescue-*.jsonl``); returns the number of trial rows."""
        records, curves = _rescue_entries(path)
        self.write(records, curves)
        return len(records)

    # --- reading -------------------------------------------------------------------------------------------
    def _live_parts(self, table: str, experiment: str | None) -> tuple[list[_Part], list[_Part], list[pa.Schema]]:
        """(current parts, legacy parts, their schemas); parts replaced by a compacted file are dropped."""
        parts = self._listing(table, experiment)
        legacy = [p for p in parts if p.legacy]
        current, schemas, replaced, bad = [], [], set(), []
        for p in parts:
            if p.legacy:
                continue
            try:
                schema = _checked_schema(self.fs, p.path, _SCHEMAS[table], IDENTITY_COLUMNS[table])
            except FileNotFoundError:
                continue  # deleted meanwhile (a compaction finished)
            except _BadPart as exc:
                bad.append(f"{p.path}: {exc}")
                continue
            replaced |= set(json.loads((schema.metadata or {}).get(_REPLACES_KEY, b"[]")))
            current.append(p)
            schemas.append(schema.remove_metadata())
        if bad:
            raise StoreError(f"{len(bad)} unreadable file(s) in the {table} table of {self.root}:\n  "
                             + "\n  ".join(bad) + "\nMove them out of the results directory (or delete them); "
                             "`rnnbench run ... --resume` runs the trials they held again.")
        keep = [i for i, p in enumerate(current) if p.path.rsplit("/", 1)[-1] not in replaced]
        return [current[i] for i in keep], legacy, [schemas[i] for i in keep]

    def _needs_dedupe(self, parts: list[_Part], legacy: list[_Part]) -> bool:
        """Rows of a key can repeat only when an experiment has more than one file."""
        per_exp: dict[str, int] = defaultdict(int)
        for p in parts + legacy:
            per_exp[p.experiment] += 1
        return any(n > 1 for n in per_exp.values())

    def _relation(self, con: duckdb.DuckDBPyConnection, table: str, experiment: str | None) -> tuple[str, pa.Schema, bool]:
        """Register the raw rows of ``table`` in ``con`` as ``raw_<table>``; (name, schema, needs dedupe)."""
        parts, legacy, schemas = self._live_parts(table, experiment)
        schema = _unify([_SCHEMAS[table], *schemas])
        sources: list[Any] = []
        if parts:
            native = _native_select(parts, schemas, schema) if self.local else None
            if native is not None:
                sources.append(native)
            else:
                import pyarrow.dataset as ds  # imports pandas (pyarrow does, at import)

                sources.append(ds.dataset([p.path for p in parts], schema=schema, filesystem=self.fs, format="parquet"))
        if legacy:
            import pyarrow.dataset as ds

            v1 = V1_TRIALS_SCHEMA if table == "trials" else V1_CURVES_SCHEMA
            try:
                old = ds.dataset([p.path for p in legacy], schema=v1, filesystem=self.fs, format="parquet").to_table()
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(f"the version-1 {table} files of {self.root} cannot be read ({exc}); move the "
                                 "unreadable part out of the results directory") from None
            upgraded = upgrade_trials(old) if table == "trials" else upgrade_curves(old)
            schema = _unify([schema, upgraded.schema])
            sources.append(upgraded)
        name = f"raw_{table}"
        if not sources:
            empty = _empty_select(schema)
            sources.append(empty if empty is not None else schema.empty_table())
        if len(sources) == 1:
            _attach(con, name, sources[0])
        else:
            for i, src in enumerate(sources):
                _attach(con, f"{name}_{i}", src)
            con.execute(f"CREATE TEMP VIEW {name} AS " + " UNION ALL BY NAME ".join(
                f"SELECT * FROM {name}_{i}" for i in range(len(sources))))
        return name, schema, self._needs_dedupe(parts, legacy)

    def connect(self, experiment: str | None = None) -> duckdb.DuckDBPyConnection:
        """A duckdb connection with the views ``trials`` (newest row per trial key) and ``curves`` (the
        curves of those rows' runs), e.g. ``store.connect().sql("SELECT task, count(*) FROM trials GROUP BY 1")``."""
        return self._open(experiment)[0]

    def _open(self, experiment: str | None) -> tuple[duckdb.DuckDBPyConnection, dict[str, pa.Schema]]:
        con = _database().cursor()
        raw_t, schema_t, dedupe_t = self._relation(con, "trials", experiment)
        raw_c, schema_c, dedupe_c = self._relation(con, "curves", experiment)
        if dedupe_t:
            con.execute(f"CREATE TEMP VIEW trials AS SELECT * FROM {raw_t} QUALIFY row_number() OVER "
                        "(PARTITION BY trial_key ORDER BY written_at DESC, run_id DESC) = 1")
        else:
            con.execute(f"CREATE TEMP VIEW trials AS SELECT * FROM {raw_t}")
        if dedupe_t or dedupe_c:
            # DISTINCT: a flush that failed after its curves part was written leaves the same points twice
            # (they are written again with the trial row); one value per point, compaction drops the rest
            con.execute(f"CREATE TEMP VIEW curves AS SELECT DISTINCT c.* FROM {raw_c} c SEMI JOIN trials t "
                        "ON c.trial_key = t.trial_key AND c.run_id = t.run_id")
        else:
            con.execute(f"CREATE TEMP VIEW curves AS SELECT * FROM {raw_c}")
        return con, {"trials": schema_t, "curves": schema_c}

    def arrow(self, table: str, experiment: str | None = None, columns: list[str] | None = None,
              where: str | None = None) -> pa.Table:
        """The live rows of ``table`` ("trials" or "curves") as an Arrow table, with core column types."""
        con = self.connect(experiment)
        try:
            select = ", ".join(_quote(c) for c in columns) if columns else "*"
            result = con.sql(f"SELECT {select} FROM {table}" + (f" WHERE {where}" if where else "")).to_arrow_table()
        finally:
            con.close()
        return _restore_types(result, _SCHEMAS[table])

    def trials(self, experiment: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """The live ``trials`` rows (one per trial key) as a DataFrame."""
        return self.arrow("trials", experiment, columns).to_pandas()

    def curves(self, experiment: str | None = None) -> pd.DataFrame:
        """The live ``curves`` rows (of the trials' current runs) as a DataFrame."""
        return self.arrow("curves", experiment).to_pandas()

    def records(self, experiment: str | None = None) -> list[TrialRecord]:
        """The live trial rows as :class:`TrialRecord` objects."""
        from suite.store.record import record_from_row

        return [record_from_row(r) for r in self.arrow("trials", experiment).to_pylist()]

    def statuses(self, experiment: str) -> dict[str, str]:
        """``{trial_key: status}`` of the live rows of ``experiment``."""
        t = self.arrow("trials", experiment, ["trial_key", "status"])
        return dict(zip(t["trial_key"].to_pylist(), t["status"].to_pylist()))

    def finished_keys(self, experiment: str) -> set[str]:
        return set(self.statuses(experiment))

    # --- compaction ----------------------------------------------------------------------------------------
    def compact(self, experiment: str | None = None, max_rows_per_file: int = 1_000_000) -> list[CompactionReport]:
        """Rewrite each experiment's parts into a few large files without superseded rows; migrate
        version-1 parts. Safe against crashes at any point (see the module docstring)."""
        reports = []
        for exp in ([experiment] if experiment else self.experiments_of_any_table()):
            # curves first: their live set is read against the trials as they are now
            for table in ("curves", "trials"):
                report = self._compact_one(table, exp, max_rows_per_file)
                if report is not None:
                    reports.append(report)
        return reports

    def experiments_of_any_table(self) -> list[str]:
        return sorted({p.experiment for t in TABLES for p in self._listing(t)})

    def _compact_one(self, table: str, experiment: str, max_rows: int) -> CompactionReport | None:
        parts, legacy, _ = self._live_parts(table, experiment)
        all_files = self._listing(table, experiment)
        if len(parts) <= 1 and not legacy and len(all_files) == len(parts):
            return None  # already one file, nothing superseded
        con, schemas = self._open(experiment)
        try:
            rows_before = con.sql(f"SELECT count(*) FROM raw_{table}").fetchall()[0][0]
            order = "task, model, method, config_id, seed" if table == "trials" else "trial_key, step, split, metric"
            live = _restore_types(con.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_table(), schemas[table])
        finally:
            con.close()
        folder = self.path(table, experiment)
        replaced = [p.path.rsplit("/", 1)[-1] for p in all_files if not p.legacy]
        written = 0
        for start in range(0, max(live.num_rows, 1), max_rows):
            chunk = live.slice(start, max_rows)
            if chunk.num_rows == 0 and live.num_rows:
                break
            self._write_table(chunk, folder, "compact", {_REPLACES_KEY: json.dumps(replaced).encode()})
            written += 1
        for p in all_files:
            try:
                self.fs.delete_file(p.path)
            except (FileNotFoundError, OSError):
                pass
        for p in legacy:
            _remove_empty_dir(self.fs, p.path.rsplit("/", 1)[0])
        return CompactionReport(table, experiment, len(all_files), written, rows_before, live.num_rows)


_DATABASE: tuple[int, duckdb.DuckDBPyConnection] | None = None


def _database() -> duckdb.DuckDBPyConnection:
    """This process's in-memory duckdb database; :meth:`ResultsStore.connect` hands out connections to it
    (cursors: each has its own temporary views, and closing one leaves the others open). Starting a database
    costs about 20 ms of CPU, a cursor next to nothing. A forked child starts its own."""
    global _DATABASE
    if _DATABASE is None or _DATABASE[0] != os.getpid():
        _DATABASE = (os.getpid(), duckdb.connect())
    return _DATABASE[1]


def _unreachable(root: str, exc: BaseException) -> str:
    """One line for a store that cannot be read: the URI and the cause (the first line of what pyarrow says)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return (f"cannot read the results store {root}: {first}. Check the URI, that the endpoint answers, and the "
            "credentials (AWS_* / GOOGLE_* environment or the URI's options)")


class _BadPart(Exception):
    pass


def _checked_schema(fs: pafs.FileSystem, path: str, core: pa.Schema, identity: Iterable[str] = ()) -> pa.Schema:
    """The schema of a part, after checking that it can be read: a Parquet file whose identity columns are
    there with their stored types (any other core column it lacks reads as null; one of another type is read
    through the unified schema). A part written by a newer rnnbench (a higher schema version) is read when its
    identity columns check out, and refused naming the release that wrote it otherwise. FileNotFoundError if
    the part vanished, _BadPart saying what is wrong."""
    try:
        meta = pq.read_metadata(path, filesystem=fs)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise _BadPart(f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    schema = meta.schema.to_arrow_schema()
    kv = meta.metadata or {}
    raw_version = kv.get(_VERSION_KEY)
    try:
        version = int(raw_version) if raw_version is not None else SCHEMA_VERSION
    except ValueError:
        raise _BadPart(f"has an unreadable results schema version {raw_version!r}") from None
    writer = kv.get(_WRITER_KEY, b"").decode(errors="replace")
    newer = f" (written by rnnbench {writer or 'of a newer release'} with results schema version {version}; this " \
            f"rnnbench reads up to version {SCHEMA_VERSION}: upgrade rnnbench to read it)" if version > SCHEMA_VERSION else ""
    if version < 2:
        raise _BadPart(f"written with results schema version {version}; this rnnbench reads version-1 stores only "
                       "in their own layout (experiment=NAME/KEY.parquet)")
    for name in identity:
        i, j = schema.get_field_index(name), core.get_field_index(name)
        if i < 0:
            raise _BadPart(f"lacks the identity column {name!r}: not an rnnbench results part{newer}")
        if j >= 0 and schema.field(i).type != core.field(j).type:
            raise _BadPart(f"identity column {name!r} has type {schema.field(i).type}, expected "
                           f"{core.field(j).type}{newer}")
    column = schema.get_field_index("schema_version")
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        if stats is not None and stats.has_min_max and stats.min < 2:
            raise _BadPart(f"holds rows of schema_version {stats.min}..{stats.max}; this rnnbench reads schema "
                           f"versions 2..{SCHEMA_VERSION} in this layout (version 1 only as experiment=NAME/KEY.parquet)")
    return _null_typed_empty_columns(schema, meta, core)


def _null_typed_empty_columns(schema: pa.Schema, meta: pq.FileMetaData, core: pa.Schema) -> pa.Schema:
    """The schema with flattened string columns that hold no value in this file typed null, so that unifying
    with another file takes that file's type (an unset ``optimizer.momentum`` beside a float64 one)."""
    if meta.num_row_groups == 0:
        return schema
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    for j in range(meta.num_columns):
        name = meta.schema.column(j).path
        i = schema.get_field_index(name)
        if i < 0 or core.get_field_index(name) >= 0 or schema.field(i).type != pa.string():
            continue
        stats = [rg.column(j).statistics for rg in groups]
        if all(s is not None and s.null_count == rg.num_rows for s, rg in zip(stats, groups)):
            schema = schema.set(i, pa.field(name, pa.null()))
    return schema


def _unify(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for parts whose flattened columns differ; conflicting types fall back to string. A column
    typed null (no value in its part) takes the type of the parts that hold values, else string (its type on disk)."""
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fields: dict[str, pa.DataType] = {}
        for s in schemas:
            for f in s:
                known = fields.get(f.name)
                if known is None or known == pa.null():
                    fields[f.name] = f.type
                elif f.type != known and f.type != pa.null():
                    fields[f.name] = pa.string()
        unified = pa.schema(list(fields.items()))
    return pa.schema([pa.field(f.name, pa.string()) if f.type == pa.null() else f for f in unified])


def _restore_types(table: pa.Table, core: pa.Schema) -> pa.Table:
    """duckdb returns microsecond timestamps and may widen types; give the core columns their stored types."""
    columns = []
    for f in table.schema:
        i = core.get_field_index(f.name)
        target = core.field(i).type if i >= 0 else (pa.string() if pa.types.is_string_view(f.type) else f.type)
        if pa.types.is_timestamp(f.type) and i < 0:
            target = pa.timestamp("ms", tz="UTC")
        columns.append(table[f.name].cast(target) if target != f.type else table[f.name])
    return pa.Table.from_arrays(columns, names=table.column_names)


#: duckdb's names of the column types a store holds, for the columns a part lacks (read as typed nulls)
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
                 pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.timestamp("ms", tz="UTC"): "TIMESTAMPTZ"}


def _native_select(parts: list[_Part], schemas: list[pa.Schema], unified: pa.Schema) -> str | None:
    """A duckdb query reading ``parts`` (local files) with duckdb's Parquet reader, with the columns of
    ``unified`` in its order: a part's column of the unified type as it is, a column it lacks (or holds no value
    in, typed null) as a typed NULL. None when a part holds a column of another type (the unified schema casts
    it; ``pyarrow.dataset`` does that, as before) or a missing column has a type without a duckdb name here.
    Runs of parts with the same columns are read by one ``read_parquet``, in the parts' order."""
    runs: list[tuple[tuple[str, ...], list[str]]] = []
    for part, schema in zip(parts, schemas):
        columns = []
        for field in unified:
            i = schema.get_field_index(field.name)
            have = schema.field(i).type if i >= 0 else None
            if have == field.type:
                columns.append(_quote(field.name))
            elif have is None or have == pa.null():
                duck = _DUCKDB_TYPES.get(field.type)
                if duck is None:
                    return None
                columns.append(f"CAST(NULL AS {duck}) AS {_quote(field.name)}")
            else:
                return None
        key = tuple(columns)
        if runs and runs[-1][0] == key:
            runs[-1][1].append(part.path)
        else:
            runs.append((key, [part.path]))
    return " UNION ALL ".join(
        f"SELECT {', '.join(key)} FROM read_parquet([{', '.join(_literal(p) for p in paths)}], "
        "union_by_name = true, hive_partitioning = false)" for key, paths in runs)


def _empty_select(schema: pa.Schema) -> str | None:
    """A query of no rows with the columns of ``schema`` (None for a type without a duckdb name here)."""
    columns = []
    for field in schema:
        duck = _DUCKDB_TYPES.get(field.type)
        if duck is None:
            return None
        columns.append(f"CAST(NULL AS {duck}) AS {_quote(field.name)}")
    return f"SELECT {', '.join(columns)} WHERE false"


def _attach(con: duckdb.DuckDBPyConnection, name: str, source: Any) -> None:
    """``source`` (a query, or an Arrow table or dataset) as the view or table ``name`` of ``con``."""
    if isinstance(source, str):
        con.execute(f"CREATE TEMP VIEW {name} AS {source}")
    else:
        con.register(name, source)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _remove_empty_dir(fs: pafs.FileSystem, path: str) -> None:
    try:
        if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            fs.delete_dir(path)
    except OSError:
        pass


def _rescue_entries(path: str | Path) -> tuple[list[TrialRecord], list[CurvePoint]]:
    records, curves = [], []
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line)
        if "trial" in entry:
            records.append(TrialRecord.from_dict(entry["trial"]))
        elif "curve" in entry:
            curves.append(CurvePoint(**entry["curve"]))
    return records, curves


def run_records(store: ResultsStore, experiment: str) -> list[dict]:
    """The run records of ``experiment`` (``RESULTS/experiments/<name>/run-*.json``: what was run, with which
    manifest and options), oldest first."""
    folder = store.path(layout.EXPERIMENTS, experiment)
    if store.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    out = []
    for info in sorted(store.fs.get_file_info(pafs.FileSelector(folder)), key=lambda i: i.path):
        if info.base_name.endswith(".json"):
            with store.fs.open_input_stream(info.path) as f:
                out.append(json.loads(f.read().decode()))
    return out
