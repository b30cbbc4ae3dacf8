"""Finding and reading finished runs, whatever their loggers were: what the notebooks start from.

A finished run is a directory with `results/metrics.json` (train, eval, or one job of a sweep;
docs/run-directory.md). Its epoch curves come from its CSV log when it kept one, else from the
history its checkpoint carries (`runs/history.py`), so a run with any logger, or none, and an eval
of a checkpoint both have them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from fer_lightning.data.formats import DEFAULT_LAYOUT, READER_SETTINGS
from fer_lightning.runs.checkpoints import CHECKPOINT_DIR, load_checkpoint
from fer_lightning.runs.history import TRAIN_KEYS, VAL_KEYS, checkpoint_history
from fer_lightning.runs.run_lock import RECORD_DIR

METRICS_FILE = Path("results") / "metrics.json"
CSV_LOG = Path("csv") / "metrics.csv"
SWEEP_SUMMARY = "sweep_summary.csv"


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime, default=None)


def finished_runs(outputs: Path) -> list[Path]:
    """Every finished run directory under `outputs` (any command, plain runs and sweep jobs)."""
    return [p.parent.parent for p in outputs.glob(f"**/{METRICS_FILE}")]


def newest_run(outputs: Path) -> Path | None:
    """The run under `outputs` whose results were written last; None when there is none."""
    newest = _newest([run / METRICS_FILE for run in finished_runs(outputs)])
    return newest.parent.parent if newest else None


def newest_sweep(outputs: Path) -> Path | None:
    """The sweep directory under `outputs` whose summary was written last; None when none."""
    newest = _newest(list(outputs.glob(f"**/{SWEEP_SUMMARY}")))
    return newest.parent if newest else None


def _recorded(run_dir: Path, name: str) -> dict:
    path = run_dir / RECORD_DIR / name
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def _started_in(run_dir: Path) -> Path:
    """The directory the run's command was started in, which its relative paths are taken from."""
    cwd = _recorded(run_dir, "hydra.yaml").get("hydra", {}).get("runtime", {}).get("cwd")
    return Path(cwd) if cwd else Path.cwd()


@dataclass(frozen=True)
class RunData:
    """The dataset a run read: its directory, its layout (`data.format`) and that layout's
    settings (`data.labels`, `data.images`, ... where set), as `data.check` takes them."""

    root: Path
    format: str
    settings: dict[str, Any]


def run_data(run_dir: Path) -> RunData | None:
    """The dataset of a run's recorded config; None when its command chose no data (eval of a
    checkpoint on the data it was trained on)."""
    data = _recorded(run_dir, "config.yaml").get("data") or {}
    if not data.get("root"):
        return None
    settings = {key: data[key] for key in READER_SETTINGS if data.get(key) is not None}
    layout = data.get("format") or DEFAULT_LAYOUT
    return RunData(_started_in(run_dir) / data["root"], layout, settings)


def newest_data(outputs: Path) -> RunData | None:
    """The dataset of the newest run under `outputs` that names one."""
    runs = sorted(finished_runs(outputs), key=lambda r: (r / METRICS_FILE).stat().st_mtime)
    return next((data for data in map(run_data, reversed(runs)) if data), None)


def history_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the run's full history: a training run's last.ckpt, else the checkpoint
    an eval scored (results/experiment.csv names it); None when it is gone."""
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if last.is_file():
        return last
    experiment = run_dir / "results" / "experiment.csv"
    if not experiment.is_file():
        return None
    named = pd.read_csv(experiment)["checkpoint"].dropna()
    if named.empty:
        return None
    path = Path(named.iloc[0])
    path = path if path.is_absolute() else _started_in(run_dir) / path
    return path if path.is_file() else None


def epoch_table(run_dir: Path) -> pd.DataFrame:
    """One row per epoch, indexed from 1, columns named as the module logs them (`train/acc`,
    `val/loss`, ...): every logged value from the CSV log when the run kept one, else loss,
    accuracy and the monitored metric from its checkpoint's history; empty without either."""
    csv = run_dir / CSV_LOG
    if csv.is_file():
        logged = pd.read_csv(csv).filter(regex="^(epoch|train/|val/)")
        # A row per logging step, epoch values on rows of their own: one row per epoch.
        epochs = logged.groupby("epoch").mean().dropna(how="all")
        epochs.index = epochs.index.astype(int) + 1
        if not epochs.empty:  # an eval's CSV log holds no epochs
            return epochs
    checkpoint = history_checkpoint(run_dir)
    rows = checkpoint_history(load_checkpoint(checkpoint)) if checkpoint else []
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("epoch").rename(columns={**TRAIN_KEYS, **VAL_KEYS})
