"""runs.resume.keep_split_record: a continued run trains on the samples its checkpoint was trained
on, or it does not start; no other record, and no new split, can take their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_lightning.errors import ConfigError
from fer_lightning.runs.resume import keep_split_record

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
