"""``rnnbench suite report``: a static, self-contained leaderboard site (no server, no CDN).

``index.html`` holds the benchmark score of every ruleset (sortable tables: a click on a header sorts by it,
with a few lines of inline script), the performance profiles, and a link to one page per workload
(``workload-<name>.html``): its leaderboard per ruleset, the not-applicable entries with the reason, the
validation curves of the selected configurations (mean over seeds, drawn only where seeds have points), and
quality against cost (test mean against wall time). Figures are matplotlib SVG inlined in the pages; tables
are also written as CSV beside them for papers.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from suite.analysis import plots
from suite.suites.report_tables import board_table, score_table
from suite.suites.score import SuiteScore
from suite.suites.spec import SuiteFile

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:24px;color:#1b1f24}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left}
th{background:#f3f5f7;cursor:pointer}tr.na td{color:#6e7781;background:#f6f8fa}tr.failed td{color:#8a4040;background:#fbf1f1}
.note{color:#57606a;font-size:13px}.fig{overflow-x:auto;margin:8px 0}nav a{margin-right:14px}
"""
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, i){th.addEventListener('click', function(){
 var t=th.closest('table'), b=t.tBodies[0], rows=Array.from(b.rows), asc=th.dataset.asc!=='1'; th.dataset.asc=asc?'1':'0';
 function key(r){var s=r.cells[i].textContent.trim(); var n=parseFloat(s); return isNaN(n)?s:n;}
 rows.sort(function(a,c){var x=key(a),y=key(c); if(typeof x!==typeof y){return typeof x==='number'?-1:1;}
  return (x<y?-1:x>y?1:0)*(asc?1:-1);}); rows.forEach(function(r){b.appendChild(r);});});});
"""


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}<script>{SORT_JS}</script></body></html>")


def _table(df: pd.DataFrame, table_id: str, row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>")
    return f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _svg(fig, fig_id: str) -> str:
    """Inline SVG with its element ids prefixed, so several figures on a page never share an id."""
    return f'<div class="fig">{plots.to_svg(fig, prefix=fig_id)}</div>'


def _curves(result: SuiteScore, curves: pd.DataFrame, board: pd.DataFrame):
    """Long validation curves of the selected configurations (label, seed, step, value); None if none."""
    ranked = board[board["status"] == "ranked"]
    if ranked.empty or curves.empty:
        return None
    rows = result.rows
    parts = []
    for _, entry in ranked.iterrows():
        keys = rows.loc[rows["config_id"] == entry["config_id"], "trial_key"]
        c = curves[curves["trial_key"].isin(keys) & (curves["split"] == "val") & (curves["metric"] == entry["metric"])]
        parts.append(c.assign(label=entry["method"]))
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return None if long.empty else long


def _curve_figure(long: pd.DataFrame, metric: str):
    """Mean over seeds per label on the union of their steps: a seed counts only where it has a point."""
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    palette = plots.colours(long["label"].unique())
    for label, g in long.groupby("label"):
        table = g.pivot_table(index="step", columns="trial_key", values="value", aggfunc="last").sort_index()
        ax.plot(table.index, table.mean(axis=1, skipna=True), color=palette[label], label=label, marker=".")
    ax.set_xlabel("updates")
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _cost_figure(board: pd.DataFrame):
    plt = plots._plt()
    ranked = board[board["status"] == "ranked"]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    palette = plots.colours(ranked["method"])
    for _, r in ranked.iterrows():
        ax.scatter([r["wall_time_s"]], [r["test_mean"]], color=palette[r["method"]], label=r["method"])
    ax.set_xlabel("mean wall time per trial (s)")
    ax.set_ylabel(f"test {ranked['metric'].iloc[0] if len(ranked) else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def write_site(result: SuiteScore, curves: pd.DataFrame, suite: SuiteFile, out_dir: Path, sources: list[str]) -> list[Path]:
    """Write the site into ``out_dir``; returns the pages written (index first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pages: list[Path] = []
    nav = "<nav><a href=index.html>benchmark score</a>" + "".join(
        f"<a href=workload-{slug(w.name)}.html>{html.escape(w.name)}</a>" for w in suite.workloads) + "</nav>"
    body = [f"<h1>rnnbench suite {html.escape(suite.suite)} v{suite.version}</h1>", nav,
            f"<p class=note>{html.escape(suite.description)}. Sources: {html.escape(', '.join(sources))}. "
            "Mean rank: lower is better (1 = best on every workload where the entry applies). Profile area: the "
            "normalised area under the performance profile over tau in [1, 4] (1 = best everywhere). IQM: "
            "interquartile mean of per-seed test values normalised per workload (0 = best entry, 1 = worst), with a "
            "stratified bootstrap 95 % interval. Time to target: validation reached the workload's target.</p>"]
    for ruleset, table in result.score.items():
        frame = score_table(table)
        frame.to_csv(out_dir / f"score-{ruleset}.csv", index=False)
        body.append(f"<h2 id=score-{ruleset}>Benchmark score, ruleset {ruleset}</h2>")
        body.append(_table(frame, f"score-table-{ruleset}"))
        prof = result.profiles.get(ruleset)
        if prof is not None and not prof.empty:
            body.append(_svg(plots.profile(prof), f"profile-{ruleset}"))
    body.append("<h2 id=workloads>Workloads</h2><ul>")
    for w in suite.workloads:
        body.append(f"<li><a href=workload-{slug(w.name)}.html>{html.escape(w.name)}</a>: "
                    f"{html.escape(w.description)} ({html.escape(w.task.name)}, {html.escape(w.model.name)}, "
                    f"{w.budget.steps} updates, target {w.target:g}, hash {w.hash[:8]})</li>")
    body.append("</ul>")
    if result.refused:
        body.append("<h2 id=refused>Refused rows</h2><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in result.refused) + "</ul>")
    index = out_dir / "index.html"
    index.write_text(_page(f"rnnbench {suite.suite}", "\n".join(body)))
    pages.append(index)
    for w in suite.workloads:
        parts = [f"<h1>{html.escape(w.name)}</h1>", nav, f"<p class=note>{html.escape(w.description)}. Task "
                 f"{html.escape(w.task.name)} {html.escape(str(w.task.params or ''))}, model {html.escape(w.model.name)} "
                 f"{html.escape(str(w.model.params or ''))}, {w.budget.steps} updates, evaluation every "
                 f"{w.eval_every.steps}, checkpoint {w.evaluation.checkpoint}, target {w.target:g}, sha256 {w.hash}.</p>"]
        for ruleset in result.score:
            board = result.boards.get((ruleset, w.name))
            parts.append(f"<h2 id=board-{ruleset}>Ruleset {ruleset}</h2>")
            if board is None:
                parts.append("<p class=note>no rows for this workload under this ruleset</p>")
                continue
            frame = board_table(board, result.not_applicable, w.name)
            frame.to_csv(out_dir / f"workload-{slug(w.name)}-{ruleset}.csv", index=False)
            classes = ["na" if r == "n/a" else "failed" if r in ("failed", "not finite") else "" for r in frame["rank"]]
            parts.append(_table(frame, f"board-{ruleset}", classes))
            long = _curves(result, curves, board)
            if long is not None:
                parts.append(_svg(_curve_figure(long, str(board["metric"].iloc[0])), f"curves-{ruleset}"))
                parts.append("<p class=note>validation metric of the selected configurations, mean over the seeds "
                             "that reported at each step</p>")
            if (board["status"] == "ranked").any() and board["wall_time_s"].notna().any():
                parts.append(_svg(_cost_figure(board), f"cost-{ruleset}"))
        page = out_dir / f"workload-{slug(w.name)}.html"
        page.write_text(_page(f"{suite.suite}: {w.name}", "\n".join(parts)))
        pages.append(page)
    return pages

