"""``rnnbench report``: one self-contained static HTML page of a results store (no server, no CDN, no script).

Per experiment: the leaderboards per task (bootstrap CIs, ties with the best), the aggregates across its
tasks (mean rank, interquartile mean with stratified bootstrap intervals, performance profiles), validation
curves averaged by method with bands, faceted by task, quality against cost with the Pareto front,
time-to-target and quality at equal fractions of the training time, method diagnostics (adaptive K, Newton
iterations, alpha, ...), the environment the trials ran in and the resolved manifest of every run. Figures
are matplotlib SVG inlined in the page.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from suite.analysis import compare, plots
from suite.analysis.ranking import display_rows, leaderboard
from suite.store.results import ResultsStore, run_records

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:24px;color:#1b1f24}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:2.2em}
h3{margin-top:1.6em}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f3f5f7}
tr.best td{background:#e8f6ec}tr.tied td{background:#f4fbf6}tr.failed td{color:#8a4040;background:#fbf1f1}
.note{color:#57606a;font-size:13px}.fig{overflow-x:auto;margin:8px 0}pre{background:#f6f8fa;padding:10px;
overflow-x:auto;font-size:12px}nav a{margin-right:14px}code{background:#f3f5f7;padding:1px 4px}
"""


@dataclass
class ReportOptions:
    experiment: str | None = None
    split_by: list[str] = field(default_factory=list)
    test: str = "ttest"
    targets: dict[str, float] = field(default_factory=dict)
    target_quantile: float = 0.5
    cost: str = "wall_time_s"
    export_dir: str | None = None  #: also write every figure (SVG, PDF) and table (CSV, LaTeX) here


_EXPORT: dict[str, Any] = {"dir": None, "n": 0, "exp": ""}  # set by render for one call


def _export_name(kind: str) -> str | None:
    if not _EXPORT["dir"]:
        return None
    _EXPORT["n"] += 1
    return str(Path(_EXPORT["dir"]) / f"{_slug(_EXPORT['exp'])}-{_EXPORT['n']:02d}-{kind}")


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular of ``df`` (no jinja2 needed)."""
    def esc(v: Any) -> str:
        text = _cell(v)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                     ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
            text = text.replace(a, b)
        return text
    lines = [r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
             " & ".join(esc(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _table(df: pd.DataFrame, row_classes: list[str] | None = None) -> str:
    name = _export_name("table")
    if name:
        df.to_csv(f"{name}.csv", index=False)
        Path(f"{name}.tex").write_text(to_latex(df))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "never" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def _figure(fig: Any, caption: str) -> str:
    _EXPORT["fig"] = _EXPORT.get("fig", 0) + 1
    prefix = f"f{_EXPORT['fig']}"
    return (f'<div class="fig">{plots.to_svg(fig, prefix=prefix, export=_export_name("figure"))}</div>'
            f'<p class="note">{html.escape(caption)}</p>')


def _leaderboard_html(board: pd.DataFrame) -> str:
    headers, rows = display_rows(board)
    df = pd.DataFrame([r[1:] for r in rows], columns=headers[1:])
    classes = []
    for r in board.itertuples():
        if r.status != "ranked":  # failed, or a test metric that is not finite
            classes.append("failed")
        elif r.rank == 1:
            classes.append("best")
        elif not pd.isna(r.tied_with_best) and bool(r.tied_with_best):
            classes.append("tied")
        else:
            classes.append("")
    return _table(df, classes)


def _section_experiment(store: ResultsStore, experiment: str, opts: ReportOptions) -> str:
    trials = store.trials(experiment)
    curves = store.curves(experiment)
    board = leaderboard(store, split_by=opts.split_by, experiment=experiment, test=opts.test)
    counts = trials["status"].value_counts().to_dict()
    parts = [f'<h2 id="exp-{html.escape(experiment)}">Experiment {html.escape(experiment)}</h2>',
             f'<p class="note">{len(trials)} trials: ' + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
             + f"; {board['task'].nunique()} task(s), {len(board)} entries. Selection on validation, test over seeds; "
             "95 % CI: bootstrap (BCa) of the mean, clipped to the metric's range, only with ≥ 3 seeds; ≈ / light "
             f"green: not distinguishable from the best (paired {opts.test} test, Holm-corrected, 5 %).</p>"]
    parts.append(f'<h3 id="leaderboard-{_slug(experiment)}">Leaderboards</h3>')
    for task, g in board.groupby("task", sort=True):
        parts.append(f"<h4>{html.escape(task)}</h4>" + _leaderboard_html(g.reset_index(drop=True)))
    if board["task"].nunique() > 1:
        agg = compare.across_tasks(board)
        ranks = agg["mean_rank"].reset_index().rename(columns={"index": "entry"})
        parts.append(f'<h3 id="across-tasks-{_slug(experiment)}">Across tasks</h3>')
        parts.append("<p>Mean rank (failed or missing: last)</p>" + _table(ranks))
        parts.append("<p>Interquartile mean of per-seed scores normalised per task (0 = best entry's mean, 1 = "
                     "worst), stratified bootstrap 95 % interval</p>" + _table(agg["iqm"]))
        if not agg["profile"].empty:
            parts.append(_figure(plots.profile(agg["profile"]), "Performance profiles: the fraction of tasks on "
                                 "which an entry's mean is within a factor tau of the best entry's."))
    else:
        parts.append(f'<h3 id="across-tasks-{_slug(experiment)}">Across tasks</h3><p class="note">one task: no cross-task aggregate.</p>')
    long = compare.validation_curves(board, trials, curves) if not curves.empty else pd.DataFrame()
    parts.append(f'<h3 id="curves-{_slug(experiment)}">Learning curves</h3>')
    if len(long):
        parts.append(_figure(plots.mean_band(long, x="train_time_s", facet=("task",), label="label",
                                             ylabel="validation " + ", ".join(sorted(long["metric"].unique())),
                                             title="validation"),
                             "Validation metric of the selected configurations against training time: mean over "
                             "seeds (line) and range over seeds (band)."))
        parts.append(_figure(plots.mean_band(long, x="step", facet=("task",), label="label",
                                             ylabel="validation metric", title="validation, by update"),
                             "The same curves against the number of updates."))
    else:
        parts.append('<p class="note">no validation curves recorded.</p>')
    parts.append(f'<h3 id="cost-{_slug(experiment)}">Quality against cost</h3>')
    cost = compare.cost_table(board, opts.cost)
    if len(cost):
        parts.append(_figure(plots.pareto(cost, opts.cost, compare.COSTS[opts.cost]),
                             "Test metric against cost; circled points and the dashed line: the Pareto front."))
        fronts = {}
        for c, name in compare.COSTS.items():
            t = compare.cost_table(board, c)
            fronts[name] = t[t["on_front"]].groupby("task")["label"].agg(lambda s: ", ".join(sorted(s)))
        parts.append("<p>Pareto-optimal entries per cost</p>" + _table(pd.DataFrame(fronts).rename_axis("task").reset_index()))
    if len(long):
        ttt = compare.time_to_target(board, trials, curves, targets=opts.targets, quantile=opts.target_quantile)
        parts.append(f"<p>Time to target (training seconds; target: given per task, else the {opts.target_quantile:g} "
                     "quantile of the best validation values reached by the task's selected trials; a seed that "
                     "never reaches it counts as never)</p>" + _table(ttt))
        parts.append("<p>Validation metric at equal fractions of the task's largest training time (mean over "
                     "seeds)</p>" + _table(compare.quality_at_budget(board, trials, curves)))
    diag = compare.diagnostics_summary(trials, curves, board)
    parts.append(f'<h3 id="diagnostics-{_slug(experiment)}">Method diagnostics</h3>')
    if len(diag):
        parts.append(_table(diag))
        d = curves[curves["split"] == "diag"]
        b = board[board["status"] == "ranked"].assign(label=compare.label_of(board[board["status"] == "ranked"]))
        t = trials[trials["config_id"].isin(b["config_id"])][["trial_key", "config_id"]].merge(
            b[["config_id", "task", "label"]], on="config_id")
        d = d.merge(t, on="trial_key")
        for metric in [m for m in ("K", "newton_iters", "alpha", "residual", "grad_cos", "beta") if m in set(d["metric"])]:
            parts.append(_figure(plots.mean_band(d[d["metric"] == metric], x="step", facet=("task",), label="label",
                                                 ylabel=metric, title=f"diagnostic {metric}"),
                                 f"{metric} over updates (selected configurations; mean and range over seeds)."))
    else:
        parts.append('<p class="note">no method diagnostics recorded.</p>')
    parts.append(f'<h3 id="failed-{_slug(experiment)}">Failed trials</h3>')
    failed = trials[trials["status"] != "ok"]
    if len(failed):
        cols = [c for c in ("task", "model", "method", "seed", "status", "error", "log_path", "trial_key") if c in failed]
        view = failed[cols].copy()
        if "error" in view:
            view["error"] = view["error"].map(lambda e: "" if pd.isna(e) else str(e).strip().splitlines()[0][:200] if str(e).strip() else "")
        parts.append(f'<p class="note">{len(failed)} of {len(trials)} trials did not end ok; the log path is '
                     'relative to the results folder.</p>' + _table(view.reset_index(drop=True)))
    else:
        parts.append('<p class="note">none: every trial ended ok.</p>')
    env_cols = [c for c in ("hostname", "gpu_model", "suite_version", "python", "torch_version", "ray_version",
                            "numpy_version", "git_commit", "git_dirty") if c in trials]
    env = trials[env_cols].astype(str).drop_duplicates()
    parts.append(f'<h3 id="environment-{_slug(experiment)}">Environment</h3>' + _table(env))
    parts.append(f'<h3 id="manifest-{_slug(experiment)}">Manifest</h3>')
    runs = run_records(store, experiment)
    if runs:
        for r in runs[-3:]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("started_at", 0)))
            parts.append(f"<details><summary>run of {when} on {html.escape(str(r.get('host')))}"
                         f" (rnnbench {html.escape(str(r.get('suite_version')))}, commit {html.escape(str(r.get('git_commit')))})</summary>"
                         f"<p>command: <code>{html.escape(' '.join(map(str, r.get('argv', []))))}</code>; overrides: "
                         f"<code>{html.escape(json.dumps(r.get('overrides', [])))}</code></p>"
                         f"<p>resolved manifest</p><pre>{html.escape(json.dumps(r.get('resolved'), indent=2))}</pre>"
                         f"<p>manifest file {html.escape(str(r.get('manifest_path')))}</p>"
                         f"<pre>{html.escape(r.get('manifest_text', ''))}</pre></details>")
    else:
        parts.append('<p class="note">no stored manifest (results written before rnnbench 0.2).</p>')
    return "\n".join(parts)


def render(results: str, opts: ReportOptions | None = None) -> str:
    """The report of the store at ``results`` as one HTML document."""
    opts = opts or ReportOptions()
    store = ResultsStore(results)
    experiments = [opts.experiment] if opts.experiment else store.experiments()
    nav = " ".join(f'<a href="#exp-{html.escape(e)}">{html.escape(e)}</a>' for e in experiments)
    if opts.export_dir:
        Path(opts.export_dir).mkdir(parents=True, exist_ok=True)
    sections = []
    try:
        for e in experiments:
            _EXPORT.update(dir=opts.export_dir, n=0, exp=e)
            sections.append(_section_experiment(store, e, opts))
    finally:
        _EXPORT.update(dir=None, n=0, exp="", fig=0)
    body = "\n".join(sections)
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rnnbench report: "
            f"{html.escape(results)}</title><style>{CSS}</style></head><body>"
            f"<h1>rnnbench report</h1><p class=\"note\">{html.escape(results)} — made {made}</p><nav>{nav}</nav>"
            f"{body}</body></html>")
