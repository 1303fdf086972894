"""Figures for people (matplotlib, headless): curves averaged by method with bands, quality against cost with
the Pareto front, performance profiles. Each function returns a Figure; :func:`to_svg` inlines one in HTML.

Conventions: one colour per method (the same colour for a method in every panel), one panel per
(experiment, task) so that experiments and tasks are never stitched into one line, the mean over seeds as a
line and the range over seeds (min to max) as a band, titles that name the task and the split, and the
legend outside the axes.
"""

from __future__ import annotations

import io
import math
from typing import Iterable

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(labels: Iterable[str]) -> dict[str, str]:
    """A stable colour per label (tab10, then tab20)."""
    plt = _plt()
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _grid(panels: int) -> tuple[int, int]:
    cols = min(3, max(1, panels))
    return math.ceil(panels / cols), cols


def resample(run: pd.DataFrame, x: str, grid: np.ndarray) -> np.ndarray:
    """A trial's curve on ``grid``: the last value reported at or before each point; NaN before its first point
    and after its last (a trial that stopped is not carried forward to where others still run)."""
    run = run.sort_values(x, kind="mergesort")
    xs, vs = run[x].to_numpy(dtype=float), run["value"].to_numpy(dtype=float)
    if not len(xs):
        return np.full(len(grid), np.nan)
    pos = np.searchsorted(xs, grid, side="right") - 1
    return np.where((pos >= 0) & (grid <= xs[-1]), vs[np.clip(pos, 0, None)], np.nan)


def mean_band(long: pd.DataFrame, *, x: str = "step", facet: tuple[str, ...] = ("task",), label: str = "label",
              run: str = "trial_key", ylabel: str = "value", title: str = "", log_y: bool = False,
              points: int = 200):
    """Panels per ``facet`` value, a line per ``label``: the mean over its runs of each run's curve resampled
    on a common grid, with the min-max range over runs as a band. A run counts only where it has points: the
    line is solid where all of the label's runs contribute and dotted where fewer do (the legend gives n)."""
    plt = _plt()
    facets = [k for k in facet if k in long.columns]
    groups = list(long.groupby(facets, sort=True)) if facets else [((), long)]
    palette = colours(long[label].unique())
    nrows, ncols = _grid(len(groups))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.2, 3.3 * nrows), squeeze=False)
    for ax, (key, g) in zip(axes.flat, groups):
        top = float(g[x].max()) if len(g) else 1.0
        grid = np.linspace(0.0, top, points)
        for name, e in g.groupby(label, sort=True):
            curves = np.array([resample(r, x, grid) for _, r in e.groupby(run)])
            with np.errstate(all="ignore"):
                ok = ~np.all(np.isnan(curves), axis=0)
                mean = np.nanmean(curves[:, ok], axis=0)
                lo, hi = np.nanmin(curves[:, ok], axis=0), np.nanmax(curves[:, ok], axis=0)
            n = len(curves)
            count = (~np.isnan(curves[:, ok])).sum(axis=0)
            full = np.where(count == n, mean, np.nan)
            ax.plot(grid[ok], full, color=palette[name], lw=1.6, label=f"{name} (n={n})")
            if (count < n).any():  # fewer runs make these points: dotted, so a join of seeds is not read as a jump
                ax.plot(grid[ok], mean, color=palette[name], lw=1.0, ls=":")
            if n > 1:
                ax.fill_between(grid[ok], lo, hi, color=palette[name], alpha=0.18, lw=0)
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(" / ".join(str(k) for k in key) + (f" — {title}" if title else ""), fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        if log_y and (g["value"] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            base = lab.rsplit(" (n=", 1)[0]
            if base not in [x_.rsplit(" (n=", 1)[0] for x_ in labels]:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def pareto(cost_table: pd.DataFrame, cost: str, cost_label: str):
    """Quality (test mean) against ``cost`` per task, the Pareto front joined by a line."""
    plt = _plt()
    tasks = sorted(cost_table["task"].unique())
    palette = colours(cost_table["label"].unique())
    nrows, ncols = _grid(len(tasks))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.2, 3.3 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        g = cost_table[cost_table["task"] == task]
        for _, r in g.iterrows():
            ax.scatter(r[cost], r["test_mean"], color=palette[r["label"]], s=36, zorder=3,
                       edgecolor="black" if r["on_front"] else "none", label=r["label"])
        front = g[g["on_front"]].sort_values(cost)
        ax.plot(front[cost], front["test_mean"], color="black", lw=1, ls="--", zorder=2)
        arrow = "↓" if g["direction"].iloc[0] == "min" else "↑"
        ax.set_title(f"{task}: test {g['metric'].iloc[0]} {arrow} against {cost_label}", fontsize=9)
        ax.set_xlabel(cost_label)
        ax.set_ylabel(f"test {g['metric'].iloc[0]}")
        if (g[cost] > 0).all() and g[cost].max() / max(g[cost].min(), 1e-12) > 20:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    return fig


def profile(profile: pd.DataFrame):
    """Performance profiles: rho(tau), the fraction of tasks an entry is within a factor tau of the best on."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    palette = colours(profile.columns)
    styles = ["-", "--", "-.", ":"]
    for i, name in enumerate(profile.columns):  # styles and a small offset: equal profiles stay visible
        offset = (i - (len(profile.columns) - 1) / 2) * 0.006
        ax.step(profile.index, profile[name] + offset, where="post", color=palette[name], label=name,
                ls=styles[i % len(styles)], lw=1.6)
    ax.set_xlabel("tau (ratio to the best entry on a task)")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("performance profiles over tasks", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def to_svg(fig, prefix: str | None = None, export: str | None = None) -> str:
    """The figure as inline SVG markup (closes the figure). ``prefix`` makes its element ids unique on a page
    with other figures (matplotlib names them alike); ``export`` (a path without suffix) also writes the figure
    as ``.svg`` and ``.pdf`` for papers."""
    import re

    plt = _plt()
    if export:
        fig.savefig(f"{export}.svg", bbox_inches="tight")
        fig.savefig(f"{export}.pdf", bbox_inches="tight")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    if prefix:
        text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
        text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", text)
        text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    return text


def save(fig, path) -> None:
    plt = _plt()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
