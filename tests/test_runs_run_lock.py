"""One process at a time in a run directory; the lock cannot be redirected by a planted link."""

from __future__ import annotations

import pytest

from fer_lightning.errors import ConfigError
from fer_lightning.runs.run_lock import LOCK_FILE, run_dir_lock
from tests.conftest import run_module, tiny_overrides


def test_a_second_holder_is_refused_until_the_first_ends(tmp_path):
    with run_dir_lock(tmp_path):
        with (
            pytest.raises(ConfigError, match="in use by another process") as error,
            run_dir_lock(tmp_path),
        ):
            pass
        assert "\n" not in str(error.value)
    with run_dir_lock(tmp_path):  # released
        pass


def test_a_planted_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"), run_dir_lock(run_dir):
        pass
    assert victim.read_text() == "keep me"


def test_training_refuses_a_run_directory_in_use_and_writes_nothing_there(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("the first run's log\n")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    with run_dir_lock(run_dir):
        result = run_module(
            "train", *tiny_overrides(tiny_dataset), f"hydra.run.dir={run_dir}", cwd=tmp_path
        )
    assert result.returncode == 2
    assert result.stderr.startswith("error: run directory") and len(result.stderr.splitlines()) == 1
    assert (run_dir / "train.log").read_text() == "the first run's log\n"
    assert [p.name for p in (run_dir / ".hydra").iterdir()] == ["config.yaml"]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "seed: 1\n"
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()
