"""Driver-side Ray Tune callbacks: the results writer and the progress display.

:class:`ResultsWriter` turns Tune's results into :class:`~suite.store.record.TrialRecord` rows and
:class:`~suite.store.record.CurvePoint` rows and hands them to the store in batches (every ``flush_every``
finished trials or ``flush_s`` seconds, and at the end). It does no I/O per report, so the driver keeps
pace with Tune. :class:`ProgressCallback` shows a progress bar and one plain line per finished trial.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from suite.run.sweep import TrialSpec
from suite.store.record import ERROR_MESSAGE_LIMIT, CurvePoint, TrialRecord, curve_points, records_to_table
from suite.store.results import ResultsStore

try:  # the callbacks need Tune's base class; ray is imported by the orchestrator anyway
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]



class ResultsWriter(Callback):
    """Writes one ``trials`` row and the ``curves`` of every trial that ends (driver only, batched)."""

    def __init__(self, results: str, specs: dict[str, TrialSpec], flat_types: dict[str, Any] | None = None,
                 flush_every: int = 200, flush_s: float = 5.0) -> None:
        self.results = results
        self.specs = specs
        self.flat_types = flat_types
        self.flush_every, self.flush_s = flush_every, flush_s
        self.written: dict[str, str] = {}  #: trial key -> status of every row handed to the store
        self.runs_by_node: dict[str, list[str]] = defaultdict(list)  #: run ids of the finished trials, per node
        self.last_row: TrialRecord | None = None
        self.on_row: Callable[[TrialRecord], None] | None = None
        self._curves: dict[str, list[CurvePoint]] = defaultdict(list)
        self._run: dict[str, str] = {}
        self._attempts: dict[str, int] = defaultdict(int)
        self._last: dict[str, dict[str, Any]] = {}
        self._final: dict[str, TrialRecord] = {}
        self._pending: list[TrialRecord] = []
        self._pending_curves: list[CurvePoint] = []
        self._last_flush = time.monotonic()
        self._store: ResultsStore | None = None
        self._started: set[str] = set()
        self._flush_error: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with its experiment state
        return {**self.__dict__, "_store": None, "on_row": None}

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore(self.results)
        return self._store

    # --- Tune hooks --------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started.add(trial.config["key"])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        key = trial.config["key"]
        run_id = result.get("run_id") or ""
        if self._run.get(key) != run_id:  # a new attempt (Ray restarted the trial): its curves start afresh
            self._run[key] = run_id
            self._attempts[key] += 1
            self._curves.pop(key, None)
        spec = self.specs[key]
        if result.get("final"):
            self._final[key] = TrialRecord.from_json(result["record"])
            if result.get("diag_events"):  # diagnostics logged after the last progress report
                last = self._last.get(key, {})
                self._curves[key] += curve_points(spec.experiment, key, run_id,
                                                  {**last, "diag_events": result["diag_events"]})
        else:
            self._last[key] = {k: result.get(k) for k in ("step", "samples", "epoch", "train_time_s", "wall_time_s")}
            self._curves[key] += curve_points(spec.experiment, key, run_id, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial.config["key"], trial_id=trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        key = trial.config["key"]
        err = _trial_error(trial)
        from suite.run.trial_killer import take_marker

        killed = take_marker(key)  # the worker was killed at the trial's time limit (blocked in C)
        record = self.finish(key, trial_id=trial.trial_id, status="timeout" if killed else "error",
                             error=killed or describe_lost_trial(err))
        if record.log_path is None:  # the trial died before its final report: point to its captured output
            spec = self.specs[key]
            relative = f"logs/{spec.experiment}/{key}.log"
            try:
                if self.store.fs.get_file_info(self.store.path(relative)).size:
                    record.log_path = relative
            except OSError:
                pass

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._pending and time.monotonic() - self._last_flush >= self.flush_s:
            self._try_flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._try_flush()

    def count_attempts(self, key: str, n: int) -> None:
        """At least ``n`` executions of ``key`` were made (some may have died before their first report)."""
        self._attempts[key] = max(self._attempts[key], n)

    def running(self) -> list[str]:
        """Keys of trials that started and have no row yet."""
        return sorted(self._started - set(self.written))

    # --- rows --------------------------------------------------------------------------------------------
    def finish(self, key: str, *, trial_id: str | None = None, status: str | None = None,
               error: str | None = None) -> TrialRecord:
        """Queue the row of trial ``key``: its final record, or (without one) a row with ``status``."""
        record = self._final.pop(key, None)
        if record is None:
            record = self.specs[key].new_record(self._run.get(key, ""))
            record.status = status or "pruned"
            record.error = error if status else "stopped early by the scheduler"
            last = self._last.get(key, {})
            record.steps, record.samples, record.epochs = last.get("step"), last.get("samples"), last.get("epoch")
            record.train_time_s, record.wall_time_s = last.get("train_time_s"), last.get("wall_time_s")
        elif status is not None:  # the trial reported its end, then Ray lost it: keep its record
            record.error = record.error or error
        record.trial_id = trial_id
        record.attempts = max(1, self._attempts.get(key, 1))
        self._pending.append(record)
        self._pending_curves += self._curves.pop(key, [])
        self._last.pop(key, None)
        self.written[key] = record.status
        if record.node_id and record.run_id:
            self.runs_by_node[record.node_id].append(record.run_id)
        self.last_row = record
        if self.on_row is not None:
            self.on_row(record)
        if len(self._pending) >= self.flush_every:
            self._try_flush()
        return record

    def flush(self) -> None:
        """Write the queued rows (one part per table); a failed write keeps them queued and raises."""
        if not self._pending and not self._pending_curves:
            return
        records = [self._storable(r) for r in self._pending]
        self.store.write(records, self._pending_curves, self.flat_types)
        self._pending, self._pending_curves = [], []
        self._last_flush = time.monotonic()
        self._flush_error = None

    def _try_flush(self) -> None:
        """Flush from inside Tune: an error (disk full, store gone) must not end the sweep; the rows stay
        queued and the next flush tries again."""
        try:
            self.flush()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._flush_error:
                print(f"rnnbench: could not write {len(self._pending)} finished trials to {self.results} "
                      f"({message}); keeping them and trying again", file=sys.stderr)
            self._flush_error = message
            self._last_flush = time.monotonic()

    def _storable(self, record: TrialRecord) -> TrialRecord:
        """The record, or (if it cannot be converted to a row) an error row of its trial that says why."""
        try:
            records_to_table([record], self.flat_types)
            return record
        except Exception as exc:
            row = self.specs[record.trial_key].new_record(record.run_id)
            row.trial_id, row.attempts, row.node_id = record.trial_id, record.attempts, record.node_id
            row.error = (f"the trial ended with status {record.status!r}, but its row could not be stored "
                         f"({type(exc).__name__}: {exc})")[:ERROR_MESSAGE_LIMIT]
            return row

    def close(self) -> str | None:
        """The last flush. If the store cannot be written, the queued rows go to a local rescue file
        (returned as a note) so nothing finished is lost."""
        try:
            self.flush()
            return None
        except Exception as exc:
            path = Path(f"rnnbench-rescue-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl").resolve()
            with open(path, "w") as f:
                for r in self._pending:
                    f.write(json.dumps({"trial": dataclasses.asdict(r)}, default=str) + "\n")
                for c in self._pending_curves:
                    f.write(json.dumps({"curve": dataclasses.asdict(c)}, default=str) + "\n")
            n = len(self._pending)
            self._pending, self._pending_curves = [], []
            return (f"could not write {n} finished trials to {self.results} ({type(exc).__name__}: {exc}); they are "
                    f"saved in {path}: fix the store, then `rnnbench import-rows {self.results} {path}`")


def _trial_error(trial: Any) -> Any:
    """Ray's account of a failed trial: its error text in storage, its local error file, or the exception."""
    for read in (lambda: trial.get_error(), lambda: Path(trial.error_file).read_text(),
                 lambda: trial.get_pickled_error()):
        try:
            err = read()
        except Exception:
            continue
        if err:
            return err
    return None


def describe_lost_trial(err: Any) -> str:
    """What Ray says about a trial it lost, with the likely cause first (Ray's own text follows)."""
    if err is None:
        return "trial failed outside the method (worker lost or crashed)"
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    text = "\n".join(line for line in text.splitlines() if not line.startswith("Failure # ")).strip()
    lowered = text.lower()
    if "outofmemory" in lowered or "low on memory" in lowered:
        cause = "killed by Ray's memory monitor: the node ran low on memory (lower resources per node, or ask for more memory)"
    elif "sigsegv" in lowered or "segmentation" in lowered or "died unexpectedly" in lowered or "actordied" in lowered:
        cause = "the trial's worker process died (a crash such as a segmentation fault, or the process was killed)"
    else:
        cause = "trial failed outside the method"
    return f"{cause}: {text}"[:ERROR_MESSAGE_LIMIT]


class ProgressCallback(Callback):
    """A rich progress bar (trials finished out of the total, by status) and one line per finished trial."""

    def __init__(self, total: int, writer: ResultsWriter, console: Console | None = None) -> None:
        self.total, self.writer = total, writer
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._running = 0
        self._started: dict[str, float] = {}  #: trial key -> when it started (the running trials' elapsed times)
        self._t0: float | None = None
        self._counts: dict[str, int] = defaultdict(int)
        writer.on_row = self._row

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_progress": None, "_task": None, "console": None}

    def setup(self, **info: Any) -> None:
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=self.console, transient=False)
        self._progress.start()
        self._t0 = time.time()
        self._task = self._progress.add_task("trials", total=self.total, status="starting the first trials ...")

    def _update(self) -> None:
        if self._progress is None:
            return
        done = len(self.writer.written)
        text = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        now = time.time()
        running = f"running={self._running}"
        if self._started:
            running += f" (longest {_duration(now - min(self._started.values()))})"
        eta = ""
        if done and self._t0 is not None and done < self.total:  # from the throughput of the finished trials
            eta = f" eta ~{_duration((now - self._t0) * (self.total - done) / done)}"
        self._progress.update(self._task, completed=done, status=f"{running} {text}{eta}")

    def _row(self, record: TrialRecord) -> None:
        self._counts[record.status] += 1
        self._running = max(0, self._running - 1)
        self._started.pop(record.trial_key, None)
        if self._progress is not None:  # one line per finished trial (also in batch logs)
            self._progress.console.print(trial_summary(record, len(self.writer.written), self.total),
                                         highlight=False, soft_wrap=True)
        self._update()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running += 1
        key = (getattr(trial, "config", None) or {}).get("key")
        if key:
            self._started[key] = time.time()
        self._update()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update()  # the running trials' elapsed time and the ETA move on between results

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._update()
            self._progress.stop()
            self._progress = None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def trial_summary(r: TrialRecord, done: int, total: int) -> str:
    """One line for a finished trial: ``[3/12] tbptt/lstm/silverbox seed 0 1a2b3c4d: ok  val mse=... test=...``."""

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    text = f"[{done}/{total}] {r.method}/{r.model}/{r.task} seed {r.seed} {r.trial_key[:8]}: {r.status}"
    if r.status in ("ok", "timeout") and r.primary_metric:
        text += f"  val {r.primary_metric}={fmt(r.metric('val'))} test={fmt(r.metric('test'))}"
    if r.wall_time_s is not None:
        text += f"  ({r.wall_time_s:.0f} s)"
    if r.error and r.status != "ok":
        text += f"  {str(r.error).splitlines()[0][:160]}"
    return text
