"""runs.resume: the decision a training command makes before it fits (continue, from which
checkpoint, or start over), and keep_split_record: a continued run trains on the samples its
checkpoint was trained on, or it does not start; no other record, and no new split, can take
their place."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import CSVLogger

from fer_lightning.errors import ConfigError
from fer_lightning.runs import resume
from fer_lightning.runs.fault_tolerance import FaultTolerance
from fer_lightning.runs.resume import checkpoint_to_resume, keep_split_record

RECORD = '{"train": ["a", "b"], "val": ["c"], "test": ["d"]}'


def run(directory: Path, record: str | None = RECORD) -> Path:
    """A run directory with a checkpoint and, unless None, its split record; its checkpoint."""
    (directory / "checkpoints").mkdir(parents=True)
    checkpoint = directory / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(b"")
    if record is not None:
        (directory / "split.json").write_text(record)
    return checkpoint


def refusal(checkpoint: Path, record: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        keep_split_record(checkpoint, record)
    return str(caught.value)


def test_the_runs_own_checkpoint_continues_on_its_own_record(tmp_path):
    checkpoint = run(tmp_path / "run")
    keep_split_record(checkpoint, tmp_path / "run" / "split.json")
    assert (tmp_path / "run" / "split.json").read_text() == RECORD


def test_the_runs_own_checkpoint_without_its_record_is_refused(tmp_path):
    checkpoint = run(tmp_path / "run", record=None)
    assert refusal(checkpoint, tmp_path / "run" / "split.json") == (
        f"{tmp_path / 'run'} has checkpoints but no split.json, the record of the samples they "
        "were trained on: restore it, or resume=false to start over with a new split"
    )


def test_another_runs_checkpoint_brings_its_record(tmp_path):
    checkpoint = run(tmp_path / "old")
    here = tmp_path / "new" / "split.json"
    here.parent.mkdir()
    keep_split_record(checkpoint, here)
    assert here.read_text() == RECORD
    keep_split_record(checkpoint, here)  # the same record already here
    assert here.read_text() == RECORD


def test_another_runs_checkpoint_without_a_record_is_refused(tmp_path):
    checkpoint = run(tmp_path / "old", record=None)
    here = tmp_path / "new" / "split.json"
    assert refusal(checkpoint, here) == (
        f"{checkpoint} has no split.json beside its checkpoints/ folder, the record of the samples "
        f"it was trained on, so it cannot be continued: init_from={checkpoint} starts a new run "
        "from its weights"
    )
    assert not here.exists()


def test_another_runs_checkpoint_over_another_record_is_refused(tmp_path):
    checkpoint = run(tmp_path / "old")
    here = tmp_path / "new" / "split.json"
    here.parent.mkdir()
    other = RECORD.replace('"d"', '"e"')
    here.write_text(other)
    assert refusal(checkpoint, here) == (
        f"{checkpoint} was trained on other samples than {here} records: continue it in its own "
        "run directory, or choose another hydra.run.dir"
    )
    assert here.read_text() == other


def attempt(directory: Path) -> SimpleNamespace:
    """What an interrupted attempt left in `directory`, and a stand-in Trainer for the rerun: a
    CSV logger, FaultTolerance and another callback."""
    checkpoint = run(directory)
    csv = CSVLogger(directory, name="csv", version="")
    log_file = Path(csv.log_dir) / "metrics.csv"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("step\n0\n")
    aside = log_file.with_name("metrics.csv.resume")  # set aside by the attempt before
    aside.write_text("step\n")
    interrupted = directory / "checkpoints" / ".last.ckpt.x7k2.tmp"
    interrupted.write_bytes(b"cut short")
    callbacks = [EarlyStopping("val/loss"), FaultTolerance(str(directory / "checkpoints"))]
    trainer = SimpleNamespace(loggers=[csv], callbacks=callbacks)
    return SimpleNamespace(
        trainer=trainer, checkpoint=checkpoint, log=log_file, aside=aside, tmp=interrupted
    )


def settings(**overrides) -> OmegaConf:
    """A run's settings; without `resume`, which defaults to true."""
    return OmegaConf.create({"ckpt_path": None, "init_from": None, **overrides})


def test_ckpt_path_and_init_from_together_are_refused_before_anything_moves(tmp_path):
    left = attempt(tmp_path)
    cfg = settings(ckpt_path=str(left.checkpoint), init_from=str(left.checkpoint))
    with pytest.raises(ConfigError) as caught:
        checkpoint_to_resume(cfg, tmp_path, left.trainer)
    assert str(caught.value) == (
        "ckpt_path and init_from exclude each other: ckpt_path continues a run, init_from starts "
        "a new one from its weights (docs/resuming.md)"
    )
    assert left.tmp.exists() and left.aside.exists() and (tmp_path / "split.json").exists()


def test_a_resumed_run_trains_on_its_checkpoints_record_and_sets_its_log_aside(
    tmp_path, monkeypatch, caplog
):
    left = attempt(tmp_path / "new")
    (tmp_path / "new" / "split.json").unlink()
    earlier = run(tmp_path / "old", record=RECORD.replace('"d"', '"e"'))
    found = []
    monkeypatch.setattr(
        resume, "resume_checkpoint", lambda cfg, run_dir: found.append(run_dir) or str(earlier)
    )
    with caplog.at_level(logging.INFO, logger=resume.__name__):
        assert checkpoint_to_resume(settings(), tmp_path / "new", left.trainer) == str(earlier)
    assert found == [tmp_path / "new"]
    assert caplog.messages == [f"resuming from {earlier}"]
    assert left.trainer.callbacks[1].resuming_from == str(earlier)
    assert not hasattr(left.trainer.callbacks[0], "resuming_from")
    assert (tmp_path / "new" / "split.json").read_text() == RECORD.replace('"d"', '"e"')
    assert not left.log.exists() and left.aside.read_text() == "step\n0\n"  # the newer file
    assert not left.tmp.exists() and left.checkpoint.exists()


def test_a_run_from_the_beginning_removes_what_a_continuation_would_have_used(tmp_path, caplog):
    left = attempt(tmp_path)
    left.checkpoint.unlink()
    cfg = settings(init_from=str(tmp_path / "other.ckpt"))  # weights only: no continuation
    with caplog.at_level(logging.INFO, logger=resume.__name__):
        assert checkpoint_to_resume(cfg, tmp_path, left.trainer) is None
    assert caplog.messages == [
        f"checkpoints go to {tmp_path / 'checkpoints'}; after an interruption, rerun the same "
        "command to resume"
    ]
    assert left.trainer.callbacks[1].resuming_from is None
    assert not (tmp_path / "split.json").exists() and not left.aside.exists()
    assert left.log.exists()  # CSVLogger's to replace
    assert not left.tmp.exists()


def test_a_multirun_job_names_the_sweep_directory_to_resume_with(tmp_path, monkeypatch, caplog):
    left = attempt(tmp_path)
    left.checkpoint.unlink()
    monkeypatch.setattr(resume, "in_multirun", lambda: True)
    hydra = SimpleNamespace(get=lambda: SimpleNamespace(sweep=SimpleNamespace(dir="multirun/x")))
    monkeypatch.setattr(resume, "HydraConfig", hydra)
    with caplog.at_level(logging.INFO, logger=resume.__name__):
        assert checkpoint_to_resume(settings(), tmp_path, left.trainer) is None
    assert caplog.messages == [
        f"checkpoints go to {tmp_path / 'checkpoints'}; after an interruption, rerun the same "
        "command with hydra.sweep.dir=multirun/x to resume every job"
    ]


def test_resume_false_moves_the_attempt_aside_whole_and_starts_over(tmp_path):
    left = attempt(tmp_path)
    assert checkpoint_to_resume(settings(resume=False), tmp_path, left.trainer) is None
    (old,) = tmp_path.glob("old-*")
    moved = sorted(str(p.relative_to(old)) for p in old.rglob("*") if p.is_file())
    assert moved == [
        "checkpoints/last.ckpt",
        "csv/metrics.csv",
        "csv/metrics.csv.resume",
        "split.json",
    ]
    assert left.trainer.callbacks[1].resuming_from is None
