"""Repeated seeds in a sweep: sweep_aggregate.csv and its plot (docs/run-directory.md).

A configuration is a job's overrides without `seed`; its finished jobs are the seeds it ran.
Per metric the aggregate gives the mean over seeds, their standard deviation (n - 1) and a 95%
Student-t interval of the mean, `mean -/+ t(0.975, n - 1) * std / sqrt(n)`: what the seeds say
about the configuration, as opposed to the bootstrap intervals of one run (docs/metrics.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
from matplotlib.figure import Figure

AGGREGATE_CSV = "sweep_aggregate.csv"
AGGREGATE_PLOT = "sweep_aggregate.png"
SEED_KEY = "seed"
LEVEL = 0.95
_JOB_COLUMNS = {"job", "status", "error", "dir"}


def configuration_keys(summary: pd.DataFrame) -> list[str]:
    """The override columns of a sweep summary other than the seed: what names a configuration."""
    overrides = [c for c in summary.columns if c not in _JOB_COLUMNS and "/" not in c]
    return [c for c in overrides if c != SEED_KEY]


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float]:
    """Mean, standard deviation (n - 1) and the Student-t interval of the mean; the last three
    NaN for a single value, which says nothing about the spread."""
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(np.std(values, ddof=1))
    half = float(scipy.stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def sweep_aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of the finished jobs: its keys, `n_seeds`, `seeds`, then per
    metric column `<metric>_mean`, `_std`, `_ci_low`, `_ci_high`; in order of first job."""
    metrics = [c for c in summary.columns if "/" in c]
    done = summary[summary["status"] == "ok"].dropna(subset=metrics, how="all")
    keys = configuration_keys(summary)
    labels = done[keys].fillna("").astype(str) if keys else pd.DataFrame(index=done.index)
    rows = []
    for _, group in done.groupby([labels[k] for k in keys] or np.zeros(len(done)), sort=False):
        row = {key: labels.loc[group.index[0], key] for key in keys}
        row["n_seeds"] = len(group)
        if SEED_KEY in group:
            row["seeds"] = ",".join(group[SEED_KEY].astype(str))
        for metric in metrics:
            values = group[metric].dropna().to_numpy(dtype=float)
            stats = t_interval(values)
            row.update(
                dict(
                    zip(
                        (f"{metric}_{s}" for s in ("mean", "std", "ci_low", "ci_high")),
                        stats,
                        strict=True,
                    )
                )
            )
        rows.append(row)
    return pd.DataFrame(rows)


def plot_aggregate(
    aggregate: pd.DataFrame, prefix: str, y: str, xs: tuple[str, ...], path: Path
) -> None:
    """Mean `y` against each of `xs` per configuration, with the 95% t-intervals of both as
    error bars; nothing without those columns."""
    names = [f"{prefix}/{name}" for name in (y, *xs)]
    if aggregate.empty or not all(f"{n}_mean" in aggregate for n in names):
        return
    keys = configuration_keys(aggregate.drop(columns=["n_seeds", "seeds"], errors="ignore"))
    figure = Figure(figsize=(12, 5), layout="constrained")

    def error(name: str) -> np.ndarray:
        mean = aggregate[f"{name}_mean"].to_numpy()
        spread = [mean - aggregate[f"{name}_ci_low"], aggregate[f"{name}_ci_high"] - mean]
        return np.nan_to_num(np.array(spread, dtype=float))

    y_name = f"{prefix}/{y}"
    for axes, x in zip(figure.subplots(1, 2, sharey=True), xs, strict=True):
        x_name = f"{prefix}/{x}"
        axes.errorbar(
            aggregate[f"{x_name}_mean"], aggregate[f"{y_name}_mean"],
            xerr=error(x_name), yerr=error(y_name), fmt="o", capsize=4, color="tab:blue",
        )  # fmt: skip
        for _, row in aggregate.iterrows():
            label = ", ".join(f"{key.split('.')[-1]}={row[key]}" for key in keys)
            axes.annotate(
                f"{label} (n={row['n_seeds']})",
                (row[f"{x_name}_mean"], row[f"{y_name}_mean"]),
                textcoords="offset points", xytext=(4, 4), fontsize=8,
            )  # fmt: skip
        axes.set_xlabel(f"{prefix} {x.replace('_', ' ')} (mean over seeds)")
        axes.margins(x=0.25, y=0.1)
        axes.grid(alpha=0.3)
    figure.axes[0].set_ylabel(f"{prefix} accuracy (mean over seeds)")
    figure.suptitle(f"{len(aggregate)} configurations, 95% t-intervals over seeds")
    figure.savefig(path, dpi=120)


def write_aggregate(
    summary: pd.DataFrame, sweep_dir: Path, prefix: str | None, y: str, xs: tuple[str, ...]
) -> pd.DataFrame:
    """Writes `sweep_aggregate.csv` (and its plot, when the jobs left the plotted metrics)."""
    aggregate = sweep_aggregate(summary)
    if aggregate.empty:
        return aggregate
    aggregate.to_csv(sweep_dir / AGGREGATE_CSV, index=False)
    if prefix is not None:
        plot_aggregate(aggregate, prefix, y, xs, sweep_dir / AGGREGATE_PLOT)
    return aggregate
