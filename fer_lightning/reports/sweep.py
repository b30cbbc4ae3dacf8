"""Multirun sweeps: a failed job is recorded instead of ending the sweep, and a summary of all jobs.

Every job of `-m` writes into its own directory under the sweep directory (`hydra.sweep.dir`), with
its overrides in `.hydra/`. When the sweep ends, `SweepSummary` (a Hydra callback, configured in
conf/hydra/default.yaml) reads those directories, not the launcher's in-memory results, so it works
the same whichever launcher ran the jobs, and writes `sweep_summary.csv` and `sweep_summary.png`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from fer_lightning.cli import DONE_FILE, FAILED_FILE
from fer_lightning.reports.seeds import write_aggregate

log = logging.getLogger(__name__)

SUMMARY_CSV = "sweep_summary.csv"
SUMMARY_PLOT = "sweep_summary.png"
# The multi-task trade-off the plot shows: accuracy against each regression's CCC.
PLOT_Y = "acc"
PLOT_X = ("valence_ccc", "arousal_ccc")


def _overrides(job_dir: Path) -> dict[str, str]:
    """The job's command-line overrides as key -> value text, in the order given."""
    lines = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    parsed = OverridesParser.create().parse_overrides(lines)
    return {o.key_or_group: o.get_value_element_as_str() for o in parsed}


def job_status(job_dir: Path) -> str:
    """ok or failed by the marker its job left; unfinished without one (the job was killed)."""
    if (job_dir / "results" / FAILED_FILE).is_file():
        return "failed"
    return "ok" if (job_dir / "results" / DONE_FILE).is_file() else "unfinished"


def job_row(job_dir: Path) -> dict[str, Any]:
    """One job as one row: number, status, overrides, the metrics of `results/metrics.json`."""
    num = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.num
    failed = job_dir / "results" / FAILED_FILE
    metrics = job_dir / "results" / "metrics.json"
    row: dict[str, Any] = {"job": num, "status": job_status(job_dir)}
    row.update(_overrides(job_dir))
    if metrics.is_file():
        row.update(json.loads(metrics.read_text()))
    row["error"] = failed.read_text().strip() if failed.is_file() else ""
    row["dir"] = job_dir.name
    return row


def sweep_summary(sweep_dir: Path, since: float | None = None) -> pd.DataFrame:
    """Every job directory of a sweep (one with `.hydra/overrides.yaml`), one row each, by job.

    With `since` (the sweep's start, a Unix time), only the jobs this sweep started: every job
    rewrites its `.hydra/` when it starts, so an older one is left from an earlier, larger sweep
    in the same directory, and is left out with a warning.
    """
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    if since is not None:
        earlier = [job for job in jobs if (job / ".hydra" / "hydra.yaml").stat().st_mtime < since]
        if earlier:
            log.warning(
                "left out of the summary: %d job directories of an earlier sweep (%s)",
                len(earlier),
                ", ".join(sorted(job.name for job in earlier)),
            )
        jobs = [job for job in jobs if job not in earlier]
    rows = sorted((job_row(job) for job in jobs), key=lambda row: row["job"])
    return pd.DataFrame(rows)


def swept_keys(summary: pd.DataFrame) -> list[str]:
    """The override columns whose value differs between jobs: what the sweep compares."""
    metadata = {"job", "status", "error", "dir"}
    overrides = [c for c in summary.columns if c not in metadata and "/" not in c]
    return [c for c in overrides if summary[c].astype(str).nunique() > 1]


def metric_prefix(summary: pd.DataFrame) -> str | None:
    """`test` for train's results (eval may write `val/...`), None when no job left metrics."""
    prefixes = [c.split("/")[0] for c in summary.columns if c.endswith(f"/{PLOT_Y}")]
    return prefixes[0] if prefixes else None


def plot_sweep(summary: pd.DataFrame, path: Path) -> None:
    """Accuracy against valence and arousal CCC, one labelled point per finished job.

    Draws nothing when no job left these metrics, e.g. in a sweep of predict.
    """
    prefix = metric_prefix(summary)
    columns = [f"{prefix}/{name}" for name in (PLOT_Y, *PLOT_X)]
    if not set(columns) <= set(summary.columns):
        return
    done = summary.dropna(subset=columns)
    keys = swept_keys(summary)
    figure = Figure(figsize=(12, 5), layout="constrained")
    for axes, x in zip(figure.subplots(1, 2, sharey=True), PLOT_X, strict=True):
        column = f"{prefix}/{x}"
        axes.scatter(done[column], done[f"{prefix}/{PLOT_Y}"], color="tab:blue")
        for _, row in done.iterrows():
            label = ", ".join(f"{key.split('.')[-1]}={row[key]}" for key in keys)
            axes.annotate(
                f"#{row['job']} {label}",
                (row[column], row[f"{prefix}/{PLOT_Y}"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        axes.set_xlabel(f"{prefix} {x.replace('_', ' ')}")
        axes.locator_params(axis="x", nbins=5)
        axes.margins(x=0.25, y=0.1)  # room for the labels
        axes.grid(alpha=0.3)
    figure.axes[0].set_ylabel(f"{prefix} accuracy")
    failed = int((summary["status"] == "failed").sum())
    figure.suptitle(f"{len(summary)} jobs, {failed} failed; swept: {', '.join(keys) or 'nothing'}")
    figure.savefig(path, dpi=120)


def write_summary(sweep_dir: Path, since: float | None = None) -> pd.DataFrame:
    """Writes `sweep_summary.csv` (and its plot, when the jobs left metrics) into the sweep dir,
    for the jobs started since `since` (all with None)."""
    summary = sweep_summary(sweep_dir, since)
    if summary.empty:
        log.warning("no job directories in %s: no sweep summary", sweep_dir)
        return summary
    summary.to_csv(sweep_dir / SUMMARY_CSV, index=False)
    plot_sweep(summary, sweep_dir / SUMMARY_PLOT)
    write_aggregate(summary, sweep_dir, metric_prefix(summary), PLOT_Y, PLOT_X)
    failed = summary[summary["status"] == "failed"]
    log.info(
        "sweep summary: %s (%d of %d jobs failed)",
        sweep_dir / SUMMARY_CSV,
        len(failed),
        len(summary),
    )
    for _, row in failed.iterrows():
        log.warning("job %s failed: %s", row["job"], row["error"])
    for _, row in summary[summary["status"] == "unfinished"].iterrows():
        log.warning("job %s did not finish (killed?): rerun the sweep to continue it", row["job"])
    return summary


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary once every job of `-m` has returned, and ends
    the command with exit status 1 when every job failed (docs/commands.md)."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A second of slack: some file systems keep modification times in whole seconds.
        self.started = time.time() - 1.0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Lightning's ddp reruns the command, -m included, in every other rank of a local run.
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = write_summary(sweep_dir, self.started)
        if not summary.empty and (summary["status"] == "failed").all():
            table = sweep_dir / SUMMARY_CSV
            print(
                f"error: all {len(summary)} jobs of the sweep failed: see {table}", file=sys.stderr
            )
            sys.exit(1)
