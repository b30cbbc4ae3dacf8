"""Reading checkpoints, finding the one to continue from, starting over, and a copied run
directory using its own (the end-to-end fallback to last-prev.ckpt is in
test_runs_fault_tolerance.py)."""

from __future__ import annotations

import csv
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.runs.checkpoints import (
    AtomicCheckpointIO,
    commit_checkpoint,
    load_checkpoint,
    reanchor,
    remove_interrupted_saves,
    resume_checkpoint,
    start_over,
)
from tests.conftest import compose_in, trained_overrides


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


NAMES = ("last.ckpt", "last-prev.ckpt")  # the last checkpoint, and the one it replaced


def test_no_readable_checkpoint_is_one_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in NAMES:
        (tmp_path / "checkpoints" / name).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError) as error:
        resume_checkpoint(OmegaConf.create({"resume": True, "ckpt_path": None}), tmp_path)
    unreadable = [UNREADABLE["garbage"].format(tmp_path / "checkpoints" / name) for name in NAMES]
    assert str(error.value) == (
        f"{'; '.join(unreadable)}: no readable checkpoint left, resume=false starts over"
    )
    assert len(list((tmp_path / "checkpoints").glob("*.unreadable"))) == 2


def test_a_rerun_removes_what_an_interrupted_save_left(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in (".last.ckpt.k3j2x9.tmp", "last.ckpt", ".last.ckpt.staged"):
        (checkpoints / name).write_bytes(b"x")
    remove_interrupted_saves(tmp_path)
    assert sorted(p.name for p in checkpoints.iterdir()) == [".last.ckpt.staged", "last.ckpt"]


def _broken(kind: str, path: Path) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "tensor":
        torch.save(torch.zeros(2), path)
    else:
        path.write_bytes(
            {"empty": b"", "garbage": b"not a checkpoint", "pickle": pickle.dumps({})}[kind]
        )


@pytest.mark.parametrize("kind", ["empty", "garbage", "pickle", "tensor", "directory"])
def test_any_unreadable_last_checkpoint_falls_back_with_one_warning(
    trained_run, tmp_path, caplog, kind
):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", checkpoints / "last-prev.ckpt")
    _broken(kind, checkpoints / "last.ckpt")
    # The rerun of the same experiment: the run's own config.
    stored = torch.load(checkpoints / "last-prev.ckpt", weights_only=True)["fer_config"]
    cfg = OmegaConf.create({**stored, "resume": True, "ckpt_path": None})
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(cfg, tmp_path) == str(checkpoints / "last-prev.ckpt")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"{UNREADABLE[kind].format(checkpoints / 'last.ckpt')} (renamed *.unreadable); resuming "
        f"from {checkpoints / 'last-prev.ckpt'}"
    )
    assert (checkpoints / "last.ckpt.unreadable").exists()


def test_a_run_cut_off_between_the_two_renames_resumes_from_the_previous_checkpoint(
    trained_run, tmp_path
):
    """A save moves `last.ckpt` aside, then renames the new file to it: a kill in between leaves
    only `last-prev.ckpt`."""
    (tmp_path / "checkpoints").mkdir()
    previous = tmp_path / "checkpoints" / "last-prev.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", previous)
    stored = torch.load(previous, weights_only=True)["fer_config"]
    assert resume_checkpoint(OmegaConf.create(stored), tmp_path) == str(previous)
    other = OmegaConf.create({**stored, "seed": stored["seed"] + 1})
    with pytest.raises(ConfigError) as refused:
        resume_checkpoint(other, tmp_path)
    assert str(refused.value) == (
        f"this command is another experiment than the run in {tmp_path} (seed "
        f"{stored['seed']} -> {stored['seed'] + 1}): rerun with the run's values to continue it "
        "(docs/resuming.md), resume=false to start over there, or another hydra.run.dir for a "
        "new run"
    )


def test_ckpt_path_continues_that_checkpoint_only_for_the_same_experiment(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, weights_only=True)["fer_config"]
    assert resume_checkpoint(OmegaConf.create({**stored, "ckpt_path": str(ckpt)}), tmp_path) == (
        str(ckpt)
    )
    other = OmegaConf.create({**stored, "seed": stored["seed"] + 1, "ckpt_path": str(ckpt)})
    with pytest.raises(ConfigError) as refused:
        resume_checkpoint(other, tmp_path)
    assert str(refused.value) == (
        f"ckpt_path={ckpt} is a checkpoint of another experiment (seed {stored['seed']} -> "
        f"{stored['seed'] + 1}); ckpt_path continues only the same experiment "
        f"(docs/resuming.md): init_from={ckpt} starts a new run from its weights"
    )
    missing = OmegaConf.create({**stored, "ckpt_path": str(tmp_path / "none.ckpt")})
    with pytest.raises(ConfigError, match=r"^checkpoint not found at "):
        resume_checkpoint(missing, tmp_path)


def test_without_a_resume_key_a_run_continues_from_its_last_checkpoint(trained_run, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "last.ckpt")
    stored = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["fer_config"]
    cfg = OmegaConf.create({key: value for key, value in stored.items() if key != "resume"})
    assert resume_checkpoint(cfg, tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    # resume=false on a DDP rank that sees the checkpoint before rank zero has moved it aside.
    assert resume_checkpoint(OmegaConf.create({**stored, "resume": False}), tmp_path) is None


UNREADABLE = {
    "empty": "cannot read checkpoint {} (EOFError): it is empty, cut short, corrupted or not a "
    "checkpoint",
    "garbage": "cannot read checkpoint {}: it holds more than weights and plain values, so it is "
    "not loaded (a file that would run code, or not a checkpoint)",
    "tensor": "{} is not a fer-lightning checkpoint (it needs a state_dict of tensors and a "
    "fer_config of plain values)",
    "directory": "checkpoint {} is a directory: pass ckpt_path=PATH to a .ckpt file",
}
UNREADABLE["pickle"] = UNREADABLE["garbage"]


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_checkpoint_is_one_line(tmp_path, kind):
    _broken(kind, tmp_path / "x.ckpt")
    with pytest.raises(ConfigError) as error:
        load_checkpoint(tmp_path / "x.ckpt")
    assert str(error.value) == UNREADABLE[kind].format(tmp_path / "x.ckpt")


class Code:
    """Unpickled, it would create the directory `victim`: a file that runs code when loaded."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def __reduce__(self):
        return (os.makedirs, (str(self.victim),))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    victim = tmp_path / "victim"
    torch.save({"state_dict": {}, "fer_config": {"model": Code(victim)}}, tmp_path / "x.ckpt")
    with pytest.raises(ConfigError, match="it holds more than weights and plain values"):
        load_checkpoint(tmp_path / "x.ckpt")
    assert not victim.exists()
    with pytest.raises(ConfigError) as missing:
        load_checkpoint(tmp_path / "y.ckpt")
    assert str(missing.value) == (
        f"checkpoint not found at {tmp_path / 'y.ckpt'}: pass ckpt_path=PATH to a .ckpt file"
    )


@pytest.mark.parametrize(
    "checkpoint",
    [
        {"state_dict": {"w": torch.zeros(1)}},
        {"fer_config": {}},
        {"state_dict": [torch.zeros(1)], "fer_config": {}},
        {"state_dict": {"w": 1.0}, "fer_config": {}},
        {"state_dict": {1: torch.zeros(1)}, "fer_config": {}},
        {"state_dict": {}, "fer_config": [{}]},
        {"state_dict": {}, "fer_config": {"model": torch.zeros(1)}},
        {"state_dict": {}, "fer_config": {"model": [1, torch.zeros(1)]}},
    ],
)
def test_a_file_of_another_shape_is_not_a_fer_lightning_checkpoint(tmp_path, checkpoint):
    torch.save(checkpoint, tmp_path / "x.ckpt")
    with pytest.raises(ConfigError, match="is not a fer-lightning checkpoint"):
        load_checkpoint(tmp_path / "x.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "fer_config": {"a": [1]}}, tmp_path / "y.ckpt")
    assert load_checkpoint(tmp_path / "y.ckpt")["fer_config"] == {"a": [1]}


def test_a_state_saved_in_another_folder_names_the_files_of_this_one():
    old, new = "/data/a/run/checkpoints", "/scratch/b/run/checkpoints"
    state = {
        "dirpath": old,
        "best_model_path": f"{old}/best-epoch003.ckpt",
        "kth_best_model_path": f"{old}/best-epoch003.ckpt",
        "last_model_path": "",
        "best_k_models": {f"{old}/best-epoch003.ckpt": 0.5, "/elsewhere/best.ckpt": 0.6},
        "best_model_score": 0.5,
    }
    reanchor(state, new)
    assert state == {
        "dirpath": new,
        "best_model_path": f"{new}/best-epoch003.ckpt",
        "kth_best_model_path": f"{new}/best-epoch003.ckpt",
        "last_model_path": "",
        "best_k_models": {f"{new}/best-epoch003.ckpt": 0.5, "/elsewhere/best.ckpt": 0.6},
        "best_model_score": 0.5,
    }
    for unanchored in ({"best_model_path": f"{old}/best.ckpt"}, {"dirpath": new}):
        kept = dict(unanchored)
        reanchor(kept, new)  # no folder saved, or this one: nothing to move
        assert kept == unanchored


def test_a_copied_run_directory_resumes_and_tests_its_own_checkpoints(
    trained_run, tiny_dataset, tmp_path
):
    from fer_lightning.train import train

    shutil.copytree(trained_run, tmp_path / "run")
    cfg = compose_in(tmp_path, "train", trained_overrides(tiny_dataset))
    train(cfg)
    (row,) = csv.DictReader((tmp_path / "run" / "results" / "experiment.csv").open())
    assert Path(row["checkpoint"]).parent == tmp_path / "run" / "checkpoints"
    assert Path(row["checkpoint"]).is_file()


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint_and_is_one_line(
    tmp_path, monkeypatch
):
    import errno

    from fer_lightning.cli import outside_error
    from fer_lightning.runs.checkpoints import AtomicCheckpointIO

    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    good = path.read_bytes()

    def full_disk(obj, file):
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(file.name))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as error:
        io.save_checkpoint({"step": 2}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    message = outside_error(error.value)
    assert message.startswith("cannot write ") and "free space or write elsewhere" in message
    assert "\n" not in message


def test_a_save_over_last_ckpt_keeps_the_one_it_replaces_and_only_that_one(tmp_path):
    io = AtomicCheckpointIO()
    for name, value in [("last.ckpt", 1), ("last.ckpt", 2), ("best.ckpt", 1), ("best.ckpt", 2)]:
        io.save_checkpoint({"value": value}, tmp_path / name)
    read = {p.name: torch.load(p, weights_only=True)["value"] for p in tmp_path.iterdir()}
    assert read == {"last.ckpt": 2, "last-prev.ckpt": 1, "best.ckpt": 2}
    torch.save({"value": 3}, tmp_path / "staged")
    commit_checkpoint(tmp_path / "staged", tmp_path / "last.ckpt")
    read = {p.name: torch.load(p, weights_only=True)["value"] for p in tmp_path.iterdir()}
    assert read == {"last.ckpt": 3, "last-prev.ckpt": 2, "best.ckpt": 2}
    with pytest.raises(TypeError) as refused:
        io.save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"compress": True})
    assert str(refused.value) == "AtomicCheckpointIO.save_checkpoint does not take storage_options"


def test_checkpoints_are_read_weights_only_onto_the_cpu(tmp_path, monkeypatch):
    """Asked for explicitly: torch before 2.6 (pyproject.toml allows 2.2) loads whole pickles by
    default, and a checkpoint saved on a GPU must load on a machine without one."""
    torch.save({"state_dict": {"w": torch.zeros(1)}, "fer_config": {}}, tmp_path / "x.ckpt")
    asked: list[dict] = []
    load = torch.load

    def recording(*args, **kwargs):
        asked.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    load_checkpoint(tmp_path / "x.ckpt")
    assert asked == [{"map_location": "cpu", "weights_only": True}]
