"""The command-line layer: the per-job policy of sweeps, the key=value parser of plain commands."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.cli import (
    checkpoint_run_name,
    gpu_precision,
    outside_error,
    parse_key_values,
    run_command,
    run_name,
    run_sweep_job,
)
from fer_lightning.errors import ConfigError

DEFAULTS = {"root": None, "size": 64, "data": {"root": "Dataset/", "workers": None}}


def test_a_search_gets_the_optimized_metrics_of_a_job():
    def task(cfg):
        return {"acc": 0.5, "valence_ccc": 0.25}

    def search(metric):
        return OmegaConf.create({"optimized_metric": metric})

    assert run_sweep_job(task, search("acc")) == 0.5
    assert run_sweep_job(task, search(["acc", "valence_ccc"])) == [0.5, 0.25]
    assert run_sweep_job(task, OmegaConf.create({})) == task(None)
    with pytest.raises(ConfigError, match="arousal_ccc"):
        run_sweep_job(task, search("arousal_ccc"))


def test_a_failed_job_of_several_ranks_ends_them_all(monkeypatch):
    """Recorded and swallowed, one rank's error would leave the others waiting in their next
    collective (a 30-minute hang); a single-process job's failure is recorded, and the sweep goes
    on."""

    def task(cfg):
        raise ValueError("boom")

    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert run_sweep_job(task, OmegaConf.create({})) is None
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.setenv(name, "2")
        with pytest.raises(ValueError, match="boom"):
            run_sweep_job(task, OmegaConf.create({}))
        monkeypatch.delenv(name)


def test_slurm_jobs_end_every_task_when_one_fails(compose_config):
    from hydra import compose, initialize_config_dir

    from fer_lightning.paths import CONFIG_DIR

    compose_config()  # the project's resolvers
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "export SLURM_KILL_BAD_EXIT=1" in cfg.hydra.launcher.setup


def test_key_values_parse_as_numbers_over_the_defaults():
    parsed = parse_key_values(["size=32", "data.workers=3", "root=out/a"], DEFAULTS, "root=DIR")
    assert parsed == {"root": "out/a", "size": 32, "data": {"root": "Dataset/", "workers": 3}}
    assert parse_key_values([], DEFAULTS, "root=DIR") == DEFAULTS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["size"], "expected key=value, got 'size'; keys: root, size, data.root, data.workers"),
        (["=3"], "expected key=value, got '=3'"),
        (["colour=red"], "unknown key 'colour'; keys: root, size, data.root, data.workers"),
        (["data.colour=red"], "unknown key 'data.colour'"),
        (["data=3"], "unknown key 'data'"),
        (["size=[1,"], "could not parse the arguments"),
    ],
)
def test_a_bad_argument_is_one_line_naming_it(argv, message):
    with pytest.raises(ConfigError) as caught:
        parse_key_values(argv, DEFAULTS, "root=DIR")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_command_error_is_one_line_and_exit_status_2(capsys):
    def main() -> int:
        raise ConfigError("root is empty; pass root=DIR")

    with pytest.raises(SystemExit) as caught:
        run_command(main)
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: root is empty; pass root=DIR\n"
    assert run_command(lambda: 0) == 0


def test_run_directory_names_have_no_characters_that_need_quoting():
    assert run_name("") == "default"
    assert run_name("model=tnet,seed=1") == "model-tnet_seed-1"
    long = run_name("loss.weights.expression=0.9," * 10)
    assert len(long) == 91 and long != run_name("loss.weights.expression=0.8," * 10)


def test_runs_of_different_checkpoints_never_share_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    last = "outputs/train/runs/model-tnet/checkpoints/last.ckpt"
    name = checkpoint_run_name(last)
    assert name.startswith("model-tnet-last-") and len(name) == len("model-tnet-last-") + 8
    assert name == checkpoint_run_name(str(tmp_path / last))  # the same file, however named
    assert name != checkpoint_run_name(last.replace("last", "best-epoch001"))
    assert name != checkpoint_run_name(last.replace("model-tnet", "model-tnet_seed-1"))
    copied = tmp_path / "elsewhere" / last
    assert checkpoint_run_name(str(copied)) != name


def test_no_gpu_means_full_precision():
    assert gpu_precision("cpu") == "32-true"
    expected = {"32-true"} if not torch.cuda.is_available() else {"bf16-mixed", "16-mixed"}
    assert gpu_precision("gpu") in expected


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free space or write elsewhere"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "this user may not use it"),
    ],
)
def test_a_full_or_read_only_disk_is_one_line_naming_the_path(code, advice):
    error = OSError(code, "the system's words", "/runs/a/checkpoints/.last.ckpt.x.tmp")
    message = outside_error(error)
    assert message.startswith("cannot write /runs/a/checkpoints/.last.ckpt.x.tmp")
    assert advice in message and "\n" not in message
    assert outside_error(OSError(errno.ENOENT, "gone", "x")) is None  # a bug: its traceback


def _cli(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"fer_lightning.{module}", *args, f"hydra.run.dir={tmp_path}/r"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["eval"], "error: ckpt_path is required: add ckpt_path=..."),
        (["predict", "ckpt_path=a.ckpt"], "error: input is required: add input=..."),
        (["eval", "ckpt_path=a.ckpt", "data.foo=1"], "error: Could not override 'data.foo'"),
        (["export", "ckpt_path=["], "error: cannot parse the overrides"),
        (["train", "optimizer.lr=0"], "error: optimizer.lr must be a number > 0"),
        (["export", "ckpt_path=a.ckpt", "output=a.ckpt"], "error: output="),
        (["train", "hydra.searchpath=foo"], "error: hydra.searchpath must be a list of strings"),
    ],
)
def test_a_command_line_mistake_is_one_line_and_exit_status_2(tmp_path, command, message):
    result = _cli(tmp_path, *command)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(message)
    assert not (tmp_path / "r" / "results").exists()


def test_experiment_presets_stored_from_code_are_options_of_their_group():
    from fer_lightning.cli import unknown_choice
    from fer_lightning.presets import PAPER_ROWS, register_experiment_configs

    register_experiment_configs()
    assert unknown_choice([f"experiment={name}" for name in PAPER_ROWS]) is None
    problem = unknown_choice(["experiment=paper_resnet"])
    assert problem.startswith("unknown experiment 'paper_resnet': choose ")
    assert "paper_tnet" in problem and "quickstart" in problem
