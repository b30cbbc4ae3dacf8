"""Finding the checkpoint to continue from, and starting over (the end-to-end fallback to
last-prev.ckpt is in test_runs_fault_tolerance.py)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.runs.checkpoints import (
    remove_interrupted_saves,
    resume_checkpoint,
    start_over,
)


def test_resume_false_moves_the_earlier_attempt_aside(tmp_path):
    for name in ("checkpoints/last.ckpt", "results/metrics.json", "csv/metrics.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    cfg = OmegaConf.create({"resume": False, "ckpt_path": None})
    start_over(tmp_path, [tmp_path / "csv" / "metrics.csv"])
    assert resume_checkpoint(cfg, tmp_path) is None
    (old,) = tmp_path.glob("old-*")
    for name in ("checkpoints/last.ckpt", "results/metrics.json", "csv/metrics.csv"):
        assert (old / name).read_text() == name and not (tmp_path / name).exists()


def test_no_readable_checkpoint_is_one_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("last.ckpt", "last-prev.ckpt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="resume=false") as error:
        resume_checkpoint(OmegaConf.create({"resume": True, "ckpt_path": None}), tmp_path)
    assert "\n" not in str(error.value)
    assert len(list((tmp_path / "checkpoints").glob("*.unreadable"))) == 2


def test_a_rerun_removes_what_an_interrupted_save_left(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in (".last.ckpt.k3j2x9.tmp", "last.ckpt", ".last.ckpt.staged"):
        (checkpoints / name).write_bytes(b"x")
    remove_interrupted_saves(tmp_path)
    assert sorted(p.name for p in checkpoints.iterdir()) == [".last.ckpt.staged", "last.ckpt"]
