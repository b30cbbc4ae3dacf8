"""runs.finished: the newest run, sweep and dataset, and epoch curves whatever the loggers were."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from fer_lightning.runs.finished import (
    RunData,
    epoch_table,
    history_checkpoint,
    newest_data,
    newest_run,
    newest_sweep,
)


def _finished(
    run_dir: Path, age_s: float, root: str | None = None, cwd: Path | None = None, **layout: object
):
    metrics = run_dir / "results" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("{}")
    os.utime(metrics, (time.time() - age_s,) * 2)
    record = run_dir / ".hydra"
    record.mkdir()
    OmegaConf.save(
        OmegaConf.create({"data": {"root": root, **layout} if root else None}),
        record / "config.yaml",
    )
    hydra = {"hydra": {"runtime": {"cwd": str(cwd or run_dir)}}}
    OmegaConf.save(OmegaConf.create(hydra), record / "hydra.yaml")


def test_the_newest_run_sweep_and_dataset_are_found_under_outputs(tmp_path):
    outputs = tmp_path / "outputs"
    assert newest_run(outputs) is None and newest_sweep(outputs) is None
    assert newest_data(outputs) is None
    _finished(outputs / "train/runs/a", 300, root="Dataset/synthetic", cwd=tmp_path)
    ferplus = {"format": "fer2013", "labels": "ferplus", "images": None}
    _finished(outputs / "train/multirun/s/0_x", 200, root="/data/FER2013", **ferplus)
    # The newest: an eval that chose no data, so the dataset is the one before it.
    _finished(outputs / "eval/runs/a/default", 100)
    (outputs / "train/multirun/s/sweep_summary.csv").write_text("job\n")
    assert newest_run(outputs) == outputs / "eval/runs/a/default"
    assert newest_sweep(outputs) == outputs / "train/multirun/s"
    # Its layout and the layout's settings that were set, as the notebook reads the data with.
    assert newest_data(outputs) == RunData(Path("/data/FER2013"), "fer2013", {"labels": "ferplus"})
    # A relative data.root is taken from the directory the run's command started in; a run
    # recorded before data.format existed read AffectNet's layout.
    (outputs / "train/multirun/s/0_x/results/metrics.json").unlink()
    assert newest_data(outputs) == RunData(tmp_path / "Dataset/synthetic", "affectnet", {})


def test_curves_come_from_the_csv_log_or_else_the_checkpoint(trained_run, tmp_path):
    logged = epoch_table(trained_run)
    assert list(logged.index) == [1, 2]
    # A run without the CSV logger: the same epochs from the history in its last checkpoint.
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("csv"))
    carried = epoch_table(copy)
    assert list(carried.index) == [1, 2]
    for column in ("train/acc", "val/acc", "val/loss", "train/loss_epoch"):
        assert carried[column].to_numpy() == pytest.approx(logged[column].to_numpy(), rel=1e-6)
    # The CSV log holds every logged value; the checkpoint's history its four and the monitor.
    assert "val/f1_macro" in logged.columns and "val/f1_macro" not in carried.columns


def test_an_evals_curves_are_those_of_the_checkpoint_it_scored(trained_run, tmp_path):
    evaluated = tmp_path / "eval"
    (evaluated / "results").mkdir(parents=True)
    checkpoint = Path(os.path.relpath(trained_run / "checkpoints" / "last.ckpt", tmp_path))
    pd.DataFrame([{"task": "eval", "checkpoint": str(checkpoint)}]).to_csv(
        evaluated / "results" / "experiment.csv", index=False
    )
    # eval named the checkpoint relative to the directory it was started in.
    (evaluated / ".hydra").mkdir()
    hydra = {"hydra": {"runtime": {"cwd": str(tmp_path)}}}
    OmegaConf.save(OmegaConf.create(hydra), evaluated / ".hydra" / "hydra.yaml")
    assert history_checkpoint(evaluated) == tmp_path / checkpoint
    assert list(epoch_table(evaluated).index) == [1, 2]
    (tmp_path / "gone").mkdir()
    assert epoch_table(tmp_path / "gone").empty
    # The scored checkpoint deleted since: no history, no curves.
    pd.DataFrame([{"task": "eval", "checkpoint": str(tmp_path / "deleted.ckpt")}]).to_csv(
        evaluated / "results" / "experiment.csv", index=False
    )
    assert history_checkpoint(evaluated) is None and epoch_table(evaluated).empty


@pytest.mark.parametrize("hydra", [None, {}, {"hydra": {}}, {"hydra": {"runtime": {}}}])
def test_a_run_without_its_start_directory_takes_a_relative_root_from_here(
    tmp_path, monkeypatch, hydra
):
    """A run directory copied without `.hydra/hydra.yaml`, or with one that lacks the start
    directory, reads a relative `data.root` from the current directory."""
    run = tmp_path / "outputs" / "run"
    _finished(run, 0, root="Dataset/synthetic")
    record = run / ".hydra" / "hydra.yaml"
    record.unlink()
    if hydra is not None:
        OmegaConf.save(OmegaConf.create(hydra), record)
    monkeypatch.chdir(tmp_path)
    assert newest_data(tmp_path / "outputs") == RunData(
        tmp_path / "Dataset/synthetic", "affectnet", {}
    )
