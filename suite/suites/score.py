"""``rnnbench suite score``: join a results store with the reference store and score every entry.

Rows are first *admitted*: a row belongs to this suite when its experiment name is
``<suite>.<workload>.<ruleset>.<hash8>`` (:func:`suite.suites.spec.parse_experiment`). A row is refused, with
a message naming which, when its experiment belongs to another suite, to a workload the suite file does not
have, to a workload whose definition changed (its hash differs from the suite file's), or when rnnbench older
than the suite's ``requires_rnnbench`` wrote it. Refused rows are never mixed in.

Each admitted row gets its entry *label*: the reference entry whose compiled configuration it is (matched by
``config_id``, exact), otherwise its method name (a new method). Then, per ruleset and workload, the ordinary
leaderboard (:func:`suite.analysis.ranking.leaderboard`: the configuration with the best mean validation score per
label, test mean over seeds, BCa interval, ties with the best by a Holm-corrected paired t-test) and, across
workloads, the **benchmark score** of each label:

* ``mean_rank``: its rank among the entries applicable to a workload (1 = best; ties share the mean rank; a
  failed entry ranks after every ranked one), averaged over the workloads where it applies; a workload where an
  entry has no rows at all (a store still being filled) is *missing* for it: counted apart, not ranked;
* ``profile_area``: the performance profile (Dolan & Moré, as AlgoPerf) -- per workload the ratio of its test
  mean to the best one (best / value for ``max`` metrics), rho(tau) the fraction of its applicable workloads
  with ratio <= tau -- and its normalised area over tau in [1, 4]: 1 = best on every workload, 0 = never
  within 4x of the best (AlgoPerf's benchmark score);
* ``iqm`` with ``iqm_low``/``iqm_high``: the interquartile mean of its per-seed test values pooled over
  workloads after per-workload normalisation (0 = the best entry's mean, 1 = the worst ranked entry's mean, so
  lower is better; the unit is never below 1 % of ``|best|``, so a workload where the entries tie does not blow
  seed noise up, and the scale stays free of the metric's unit), with a stratified bootstrap 95 % interval
  (seeds resampled within workloads);
* ``ttt_reached`` / ``ttt_median_steps``: time to target in updates -- the first evaluation step at which a
  seed's validation metric reached the workload's target; the count of (workload, seed) runs that reached it,
  and the median over the workloads where every seed reached it of the median step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from suite.registry import Registry
from suite.suites.compile import validated, workload_manifest
from suite.suites.spec import RULESETS, SuiteFile, parse_experiment

TAUS = np.linspace(1.0, 4.0, 121)


class ScoreError(ValueError):
    """Nothing to score (no admissible rows); the message says why."""


@dataclass
class Admission:
    rows: pd.DataFrame  #: admitted trial rows, with ``workload``, ``ruleset`` and ``label`` columns
    refused: list[str] = field(default_factory=list)  #: one line per refused group of rows


def _version_tuple(v: Any) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(v).split(".")[:2])
    except ValueError:
        return (0,)


def admit(trials: pd.DataFrame, suite: SuiteFile, source: str) -> Admission:
    """Keep the rows of ``trials`` that belong to ``suite`` as it is now (see the module docstring)."""
    if trials.empty:
        return Admission(trials.assign(workload=[], ruleset=[], label=[]))
    hashes = {w.name: w.hash for w in suite.workloads}
    keep = np.zeros(len(trials), dtype=bool)
    workload, ruleset, refused = [None] * len(trials), [None] * len(trials), []
    need = _version_tuple(suite.requires_rnnbench)
    for exp, idx in trials.groupby("experiment").indices.items():
        parsed = parse_experiment(exp)
        if parsed is None:
            continue  # not a suite experiment: other sweeps may share the store
        s, w, r, h8 = parsed
        n = len(idx)
        if s != suite.suite:
            refused.append(f"{source}: {n} rows of experiment {exp} belong to suite {s!r}, not {suite.suite!r}")
            continue
        if w not in hashes:
            refused.append(f"{source}: {n} rows of experiment {exp}: suite {suite.suite} (version {suite.version}) "
                           f"has no workload {w!r}")
            continue
        if hashes[w][:8] != h8:
            refused.append(f"{source}: {n} rows of workload {w} were run on an earlier definition of it (hash {h8}, "
                           f"the suite file's is {hashes[w][:8]}): rerun them with `rnnbench suite run`")
            continue
        versions = trials["suite_version"].iloc[idx] if "suite_version" in trials else pd.Series([None] * n)
        old = [v for v in versions.dropna().unique() if _version_tuple(v) < need]
        if old:
            refused.append(f"{source}: {n} rows of experiment {exp} were written by rnnbench {', '.join(map(str, old))}, "
                           f"older than this suite requires ({suite.requires_rnnbench})")
            continue
        keep[idx] = True
        for i in idx:
            workload[i], ruleset[i] = w, r
    rows = trials.assign(workload=workload, ruleset=ruleset)[keep].reset_index(drop=True)
    return Admission(rows, refused)


def reference_labels(suite: SuiteFile, registry: Registry) -> dict[str, str]:
    """``config_id -> label`` of every reference configuration of the suite (both rulesets)."""
    from suite.run.sweep import expand

    out: dict[str, str] = {}
    for w in suite.workloads:
        for ruleset in RULESETS:
            compiled = workload_manifest(suite, w, ruleset, suite.methods, registry)
            if not compiled.data["methods"]:
                continue
            manifest = validated(compiled, registry)
            specs = expand(manifest, registry).trials
            # expand keeps the manifest's method order and repeats each configuration once per seed
            per_config = len(manifest.seeds)
            for i, label in enumerate(compiled.labels):
                for spec in specs[i * per_config:(i + 1) * per_config]:
                    out[spec.config_id] = label
    return out


def not_applicable(suite: SuiteFile, registry: Registry, labels: dict[str, str]) -> dict[tuple[str, str], str]:
    """``(workload, label) -> reason`` for reference labels and new methods known to the registry."""
    from suite.suites.compile import applicability
    from suite.suites.spec import SuiteMethod

    entries = list(suite.methods)
    for label, method in labels.items():
        if label not in {e.label for e in entries} and method in registry.names("methods"):
            entries.append(SuiteMethod(label=label, method=method))
    out = {}
    for w in suite.workloads:
        for e in entries:
            reason = applicability(e, w, registry)
            if reason:
                out[(w.name, e.label)] = reason
    return out


@dataclass
class SuiteScore:
    boards: dict[tuple[str, str], pd.DataFrame]  #: (ruleset, workload) -> leaderboard (method column = label)
    score: dict[str, pd.DataFrame]  #: ruleset -> benchmark score table
    profiles: dict[str, pd.DataFrame]  #: ruleset -> rho(tau) per label
    ttt: dict[str, pd.DataFrame]  #: ruleset -> time to target per (workload, label)
    not_applicable: dict[tuple[str, str], str]
    refused: list[str]
    rows: pd.DataFrame


def label_rows(rows: pd.DataFrame, ref_labels: dict[str, str]) -> pd.DataFrame:
    labels = [ref_labels.get(c, m) for c, m in zip(rows["config_id"], rows["method"])]
    return rows.assign(label=labels, method_plugin=rows["method"], method=labels)


def _ttt(rows: pd.DataFrame, curves: pd.DataFrame, board: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per label: seeds, seeds that reached ``target`` on validation, median first step (inf unless all did)."""
    out = []
    for _, entry in board.iterrows():
        keys = rows.loc[rows["config_id"] == entry["config_id"], "trial_key"]
        c = curves[(curves["trial_key"].isin(keys)) & (curves["split"] == "val") & (curves["metric"] == entry["metric"])]
        steps = []
        for _, run in c.groupby("trial_key"):
            run = run.sort_values("step")
            v = run["value"].to_numpy(dtype=float)
            hit = v <= target if entry["direction"] == "min" else v >= target
            steps.append(float(run["step"].to_numpy()[np.argmax(hit)]) if hit.any() else math.inf)
        seeds = len(keys)
        steps += [math.inf] * (seeds - len(steps))
        out.append({"label": entry["method"], "target": target, "seeds": seeds,
                    "reached": sum(math.isfinite(s) for s in steps),
                    "median_steps": float(np.median(steps)) if steps else math.inf})
    return pd.DataFrame(out, columns=["label", "target", "seeds", "reached", "median_steps"])


def _normalised_values(g: pd.DataFrame) -> dict[str, tuple[np.ndarray, tuple[float, float]]]:
    ranked = g[g["status"] == "ranked"]
    if ranked.empty:
        return {}
    direction = ranked["direction"].iloc[0]
    means = ranked["test_mean"].to_numpy(dtype=float)
    sign = 1.0 if direction == "min" else -1.0
    best, worst = (means * sign).min(), (means * sign).max()
    # the unit is the spread of the entries' means, but at least 1 % of |best|: a workload where every entry
    # ties (all at one value) must not blow seed noise up to the scale of real differences elsewhere
    floor = 0.01 * abs(best) if best != 0 else 1.0
    unit = max(worst - best, floor)
    return {r["method"]: (np.asarray(r["test_values"], dtype=float) * sign, (best, best + unit))
            for _, r in ranked.iterrows()}


def benchmark_score(boards: dict[str, pd.DataFrame], ttt: pd.DataFrame, na: dict[tuple[str, str], str],
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The benchmark score table and the performance profiles over the workloads of one ruleset."""
    from suite.analysis.stats import stratified_bootstrap_iqm

    labels = sorted({m for b in boards.values() for m in b["method"]} |
                    {label for (w, label) in na if w in boards})
    ranks: dict[str, list[float]] = {label: [] for label in labels}
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    values: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}
    norms: dict[str, dict[str, tuple[float, float]]] = {label: {} for label in labels}
    applicable = {label: 0 for label in labels}
    missing = {label: 0 for label in labels}
    for workload, b in boards.items():
        direction = b["direction"].dropna().iloc[0] if b["direction"].notna().any() else "min"
        raw: dict[str, float] = {}
        for label in labels:
            if (workload, label) in na:
                continue
            row = b[b["method"] == label]
            if row.empty:  # no rows at all (a partial store): missing, neither ranked nor counted as failed
                missing[label] += 1
                continue
            applicable[label] += 1
            ranked = not row.empty and row["status"].iloc[0] == "ranked"
            raw[label] = float(row["test_mean"].iloc[0]) if ranked else math.nan
        s = pd.Series(raw, dtype=float)
        oriented = s if direction == "min" else -s
        r = oriented.rank(method="average", na_option="bottom")  # failed or missing: after every ranked entry
        for label in s.index:
            ranks[label].append(float(r[label]))
        finite = s[np.isfinite(s)]
        best = (finite.min() if direction == "min" else finite.max()) if len(finite) else math.nan
        for label, v in s.items():
            if not math.isfinite(v):
                ratio = math.inf
            elif v == best:
                ratio = 1.0
            elif v <= 0 or best <= 0:  # ratios need positive values: only the best counts as within reach
                ratio = math.inf
            else:
                ratio = v / best if direction == "min" else best / v
            ratios[label].append(ratio)
        for label, (vals, norm) in _normalised_values(b).items():
            if label in values:
                values[label][workload], norms[label][workload] = vals, norm
    profile = pd.DataFrame({label: [np.mean(np.asarray(ratios[label]) <= t) if ratios[label] else 0.0 for t in TAUS]
                            for label in labels}, index=pd.Index(TAUS, name="tau"))
    rows = []
    for label in labels:
        area = float(np.trapezoid(profile[label].to_numpy(), TAUS) / (TAUS[-1] - TAUS[0])) if ratios[label] else math.nan
        point, low, high = (stratified_bootstrap_iqm(values[label], normalise=norms[label], seed=seed)
                            if values[label] else (math.nan, math.nan, math.nan))
        t = ttt[ttt["label"] == label] if not ttt.empty else ttt
        all_reached = t[(t["reached"] == t["seeds"]) & (t["seeds"] > 0)] if not t.empty else t
        rows.append({"label": label, "mean_rank": float(np.mean(ranks[label])) if ranks[label] else math.nan,
                     "profile_area": area, "iqm": point, "iqm_low": low, "iqm_high": high,
                     "workloads": applicable[label], "ranked": len(values[label]), "missing": missing[label],
                     "ttt_reached": int(t["reached"].sum()) if not t.empty else 0,
                     "ttt_runs": int(t["seeds"].sum()) if not t.empty else 0,
                     "ttt_median_steps": float(np.median(all_reached["median_steps"])) if len(all_reached) else math.inf})
    table = pd.DataFrame(rows).sort_values(["mean_rank", "label"], na_position="last").reset_index(drop=True)
    return table, profile


def score(trials: pd.DataFrame, curves: pd.DataFrame, suite: SuiteFile, registry: Registry,
          refused: list[str] | None = None, test: str = "ttest") -> SuiteScore:
    """Score admitted, labelled rows (see the module docstring)."""
    from suite.analysis.ranking import leaderboard

    ref = reference_labels(suite, registry)
    rows = label_rows(trials, ref)
    if rows.empty:
        raise ScoreError("no rows of suite " + suite.suite + " to score" + (": " + "; ".join(refused) if refused else ""))
    na = not_applicable(suite, registry, dict(zip(rows["label"], rows["method_plugin"])))
    boards: dict[tuple[str, str], pd.DataFrame] = {}
    scores, profiles, ttts = {}, {}, {}
    for ruleset in RULESETS:
        rs_rows = rows[rows["ruleset"] == ruleset]
        if rs_rows.empty:
            continue
        per_workload, ttt_parts = {}, []
        for w in suite.workloads:
            wr = rs_rows[rs_rows["workload"] == w.name]
            if wr.empty:
                continue
            board = leaderboard(wr.drop(columns=["workload", "ruleset", "label", "method_plugin"]), test=test)
            board = board.assign(workload=w.name, ruleset=ruleset)
            boards[(ruleset, w.name)] = per_workload[w.name] = board
            t = _ttt(wr, curves, board[board["status"] == "ranked"], w.target)
            ttt_parts.append(t.assign(workload=w.name))
        ttt = pd.concat(ttt_parts, ignore_index=True) if ttt_parts else pd.DataFrame(
            columns=["label", "target", "seeds", "reached", "median_steps", "workload"])
        scores[ruleset], profiles[ruleset] = benchmark_score(per_workload, ttt, na)
        ttts[ruleset] = ttt
    return SuiteScore(boards, scores, profiles, ttts, na, list(refused or []), rows)
