"""Multirun sweeps: one directory per job, a summary with a row per job, failures as rows."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.cli import DONE_FILE, FAILED_FILE
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.reports.sweep import (
    SUMMARY_CSV,
    SUMMARY_PLOT,
    SweepSummary,
    swept_keys,
    write_summary,
)

pytest_plugins = ["tests.sweep_fixtures"]

EXPRESSION, VALENCE = "loss.weights.expression", "loss.weights.valence"


def test_loss_ratio_sweep_leaves_every_job_and_a_summary(loss_sweep):
    jobs = sorted(p for p in loss_sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 4
    for job in jobs:
        metrics = json.loads((job / "results" / "metrics.json").read_text())
        assert {"test/acc", "test/valence_ccc", "test/arousal_ccc"} <= set(metrics)

    summary = pd.read_csv(loss_sweep / SUMMARY_CSV)
    assert summary["job"].tolist() == [0, 1, 2, 3]
    assert (summary["status"] == "ok").all()
    ratios = set(zip(summary[EXPRESSION], summary[VALENCE], strict=True))
    assert ratios == set(itertools.product([0.9, 0.6], [0.05, 0.2]))
    assert swept_keys(summary) == [EXPRESSION, VALENCE]
    first = json.loads((loss_sweep / summary["dir"][0] / "results" / "metrics.json").read_text())
    assert summary["test/acc"][0] == pytest.approx(first["test/acc"])
    assert (loss_sweep / SUMMARY_PLOT).stat().st_size > 10_000


def test_a_failed_job_is_a_row_and_the_sweep_goes_on(tiny_sweep, tmp_path):
    # The failing job comes first, so the second one shows that the sweep went on after it
    # (which skips testing, to save time: it only has to finish).
    result = tiny_sweep(tmp_path, f"{EXPRESSION}=-1,0.9", "test=false")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = pd.read_csv(tmp_path / SUMMARY_CSV).set_index("job")
    assert summary["status"].tolist() == ["failed", "ok"]
    assert summary.loc[0, "error"].startswith("ConfigError: loss.weights must hold non-negative")
    assert (tmp_path / summary.loc[0, "dir"] / "results" / FAILED_FILE).is_file()
    assert (tmp_path / summary.loc[1, "dir"] / "checkpoints" / "last.ckpt").is_file()


def _fake_job(sweep_dir: Path, num: int, overrides: list[str]) -> None:
    hydra_dir = sweep_dir / f"{num}_job" / ".hydra"
    hydra_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), hydra_dir / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"num": num}}}), hydra_dir / "hydra.yaml")


def test_a_sweep_without_metrics_gets_a_table_and_no_plot(tmp_path):
    # e.g. a sweep of predict: nothing to plot, but every job is listed.
    for num in (1, 0):
        _fake_job(tmp_path, num, ["input=faces", f"+detector.scale={1 + num / 10}"])
    summary = write_summary(tmp_path)
    assert summary["job"].tolist() == [0, 1]
    assert summary["detector.scale"].tolist() == ["1.0", "1.1"]
    assert (tmp_path / SUMMARY_CSV).is_file() and not (tmp_path / SUMMARY_PLOT).exists()


def test_the_loss_ratio_search_is_the_one_readme_describes():
    # Read as a file: composing it needs the optional Optuna plugin, absent from the test extra.
    search = OmegaConf.load(CONFIG_DIR / "hparams_search" / "loss_ratios.yaml")
    # A multi-objective NSGA-II search maximising validation accuracy and both CCCs (of the best
    # checkpoint: the test split never chooses) ...
    assert "override /hydra/sweeper/sampler: nsgaii" in OmegaConf.to_yaml(search.defaults)
    assert list(search.optimized_metric) == ["val/acc", "val/valence_ccc", "val/arousal_ccc"]
    assert list(search.hydra.sweeper.direction) == ["maximize"] * 3
    # ... over the valence and arousal weights.
    assert set(search.hydra.sweeper.params) == {"loss.weights.valence", "loss.weights.arousal"}


@pytest.mark.slow
def test_a_two_trial_search_leaves_its_pareto_front(tiny_sweep, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = tiny_sweep(tmp_path, "hparams_search=loss_ratios", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    front = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert front.solutions and set(front.solutions[0].params) == {
        "loss.weights.valence",
        "loss.weights.arousal",
    }
    assert len(pd.read_csv(tmp_path / SUMMARY_CSV)) == 2


@pytest.mark.slow
def test_a_persistent_search_continues_and_optimises_the_best_checkpoints_validation(
    tiny_sweep, tmp_path
):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = [
        "hparams_search=loss_ratios",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.storage={storage}",
    ]
    # Two launches of one trial each: the second one (after an interruption, or to add trials)
    # continues the study the first left in its sqlite file.
    for launch in ("first", "second"):
        result = tiny_sweep(tmp_path / launch, *search)
        assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="loss_ratios", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    assert trials[0].params != trials[1].params  # the second launch drew new settings
    # Each trial's values are the validation metrics of its job's best checkpoint (never test
    # metrics), in the order of optimized_metric.
    objectives = ["val/acc", "val/valence_ccc", "val/arousal_ccc"]
    jobs = sorted(tmp_path.glob("*/*/checkpoints/best-*.ckpt"))
    assert len(jobs) == 2
    for trial, checkpoint in zip(trials, jobs, strict=True):
        stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
        assert trial.values == pytest.approx([stored["fer_val_results"][k] for k in objectives])
        assert stored["fer_config"]["loss"]["weights"]["valence"] == pytest.approx(
            trial.params["loss.weights.valence"]
        )


def test_a_killed_job_is_unfinished_and_an_earlier_sweeps_jobs_are_left_out(tmp_path):
    for num in range(3):
        _fake_job(tmp_path, num, [f"seed={num}"])
    earlier = tmp_path / "2_job" / ".hydra" / "hydra.yaml"
    os.utime(earlier, (time.time() - 600, time.time() - 600))  # a larger sweep, killed, rerun
    (tmp_path / "0_job" / "results").mkdir()
    (tmp_path / "0_job" / "results" / DONE_FILE).write_text("done\n")
    summary = write_summary(tmp_path, since=time.time() - 60)
    assert summary["job"].tolist() == [0, 1]
    assert summary["status"].tolist() == ["ok", "unfinished"]


def test_a_sweep_whose_every_job_failed_exits_non_zero(tmp_path, capsys):
    for num in range(2):
        _fake_job(tmp_path, num, [f"seed={num}"])
        (tmp_path / f"{num}_job" / "results").mkdir()
        (tmp_path / f"{num}_job" / "results" / FAILED_FILE).write_text("ConfigError: bad\n")
    callback = SweepSummary()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    callback.on_multirun_start(config)
    with pytest.raises(SystemExit) as caught:
        callback.on_multirun_end(config)
    assert caught.value.code == 1
    assert (tmp_path / SUMMARY_CSV).is_file()
    assert capsys.readouterr().err.startswith("error: all 2 jobs of the sweep failed")
