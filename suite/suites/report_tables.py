"""Display tables of a suite score, built by column name (a new column never shifts another)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from suite.analysis.ranking import MIN_SEEDS_FOR_CI, NOT_FINITE, not_finite_text


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def score_table(table: pd.DataFrame) -> pd.DataFrame:
    """The benchmark score, one row per entry label, formatted."""
    rows = []
    for _, r in table.iterrows():
        rows.append({
            "entry": r["label"],
            "mean rank ↓": _fmt(r["mean_rank"], 3),
            "profile area ↑": _fmt(r["profile_area"], 3),
            "IQM ↓ [95% CI]": "—" if math.isnan(r["iqm"]) else f"{_fmt(r['iqm'], 3)} [{_fmt(r['iqm_low'], 3)}, {_fmt(r['iqm_high'], 3)}]",
            "ranked/applicable": f"{r['ranked']}/{r['workloads']}" + (f" ({r['missing']} missing)" if r.get("missing") else ""),
            "target reached": f"{r['ttt_reached']}/{r['ttt_runs']}",
            "updates to target": _fmt(r["ttt_median_steps"], 4),
        })
    return pd.DataFrame(rows)


def board_table(board: pd.DataFrame, not_applicable: dict[tuple[str, str], str], workload: str) -> pd.DataFrame:
    """One workload's leaderboard (entries as labels), with the not-applicable entries listed last."""
    rows = []
    for _, r in board.iterrows():
        ranked = not pd.isna(r["rank"])
        tied = r["tied_with_best"]
        tied = False if pd.isna(tied) else bool(tied)
        not_finite = r["status"] == NOT_FINITE
        rank = ((NOT_FINITE if not_finite else "failed") if not ranked
                else f"{int(r['rank'])}" + (" ≈" if tied and r["rank"] != 1 else ""))
        if r["n_ok"] == 0:
            value, ci = "—", "—"
        elif not_finite:
            value, ci = not_finite_text(r["test_values"]), "—"
        else:
            value = _fmt(r["test_mean"]) if math.isnan(r["test_std"]) else f"{_fmt(r['test_mean'])} ± {_fmt(r['test_std'], 2)}"
            ci = (f"n<{MIN_SEEDS_FOR_CI}" if r["n_ok"] < MIN_SEEDS_FOR_CI else
                  "—" if math.isnan(r["ci95_low"]) else f"[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]")
        arrow = "↓" if r["direction"] == "min" else "↑"
        rows.append({"rank": rank, "entry": r["method"], "metric": f"{r['metric']} {arrow}", "test mean ± std": value,
                     "95% CI": ci, "p vs best": "best" if ranked and r["rank"] == 1 else ("—" if pd.isna(r["p_vs_best"]) else _fmt(float(r["p_vs_best"]), 2)),
                     "seeds ok": f"{r['n_ok']}/{r['n_seeds']}", "configs": str(r["configs_tried"]),
                     "wall s": _fmt(r["wall_time_s"], 3)})
    for (w, label), why in sorted(not_applicable.items()):
        if w == workload and label not in set(board["method"]):
            rows.append({"rank": "n/a", "entry": label, "metric": "", "test mean ± std": "not applicable",
                         "95% CI": why, "p vs best": "", "seeds ok": "", "configs": "", "wall s": ""})
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def cost_table(rows: pd.DataFrame, workload_order: list[str]) -> pd.DataFrame:
    """Trials, failures and summed wall time per (ruleset, workload, label), per workload, per label, in all."""
    r = rows.assign(wall=rows["wall_time_s"].astype(float).fillna(0.0), failed=rows["status"] != "ok")
    order = {w: i for i, w in enumerate(workload_order)}
    out = []

    def add(ruleset: str, workload: str, label: str, g: pd.DataFrame) -> None:
        out.append({"ruleset": ruleset, "workload": workload, "entry": label, "trials": len(g),
                    "not ok": int(g["failed"].sum()), "wall time (min)": f"{g['wall'].sum() / 60:.1f}",
                    "per trial (s)": f"{g['wall'].mean():.0f}", "longest (s)": f"{g['wall'].max():.0f}"})

    for ruleset, rg in r.groupby("ruleset", sort=True):
        for workload, wg in sorted(rg.groupby("workload"), key=lambda kv: order.get(kv[0], 1 << 30)):
            for label, lg in wg.groupby("label"):
                add(ruleset, workload, label, lg)
            add(ruleset, workload, "(all)", wg)
        for label, lg in rg.groupby("label"):
            add(ruleset, "(all)", label, lg)
        add(ruleset, "(all)", "(all)", rg)
    return pd.DataFrame(out)
