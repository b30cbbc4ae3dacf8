"""Resuming: an interrupted run, rerun with the same command, ends exactly as an uninterrupted one.

The runs go through the real CLI in subprocesses, which are killed (SIGKILL, as a power cut would)
or signalled (SIGTERM, as SLURM does) once a checkpoint within an epoch exists. Two epochs of 12
batches, a checkpoint every 2 optimizer steps; "exactly" means every tensor of the final weights
and every byte of the CSV log (one row per step, flushed at once) equal the uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from fer_lightning.callbacks import NonFiniteLoss, exit_status
from fer_lightning.checkpoint import resume_checkpoint, start_over
from fer_lightning.errors import ConfigError
from tests.conftest import tiny_overrides

EVERY = 2  # checkpoint.every_n_steps
BATCHES = 12  # per epoch: 192 training samples in batches of 16
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}


def command(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fer_lightning.train",
        *tiny_overrides(root),
        "model=tnet",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "test=false",
        f"checkpoint.every_n_steps={EVERY}",
        "trainer.log_every_n_steps=1",
        "+logger.csv.flush_logs_every_n_steps=1",
        *extra,
        f"hydra.run.dir={run_dir}",
    ]


def run(args: list[str]) -> str:
    result = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def interrupt(args: list[str], step: int, signum: int, delay: float = 0.0) -> tuple[int, str]:
    """Starts the command and sends `signum` `delay` seconds after it reports `last.ckpt` saved at
    `step` or later."""
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    seen = []
    for line in iter(process.stdout.readline, b""):
        seen.append(line.decode())
        saved = re.search(r"saved .*last\.ckpt \(epoch \d+, step (\d+)\)", seen[-1])
        if saved and int(saved.group(1)) >= step:
            time.sleep(delay)
            process.send_signal(signum)
            break
    else:
        pytest.fail(f"the run ended before step {step}:\n{''.join(seen)[-3000:]}")
    seen.append(process.stdout.read().decode())
    return process.wait(timeout=120), "".join(seen)


def checkpoint(run_dir: Path, name: str = "last.ckpt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)


def assert_same_run(run_dir: Path, reference: Path) -> None:
    weights, expected = checkpoint(run_dir)["state_dict"], checkpoint(reference)["state_dict"]
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    log, expected_log = (d / "csv" / "metrics.csv" for d in (run_dir, reference))
    assert log.read_text() == expected_log.read_text()


@pytest.fixture(scope="module")
def reference(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    run(command(tiny_dataset, run_dir))
    return run_dir


def test_killed_within_an_epoch_the_rerun_ends_bit_identical(reference, tiny_dataset, tmp_path):
    args = command(tiny_dataset, tmp_path / "run")
    status, _ = interrupt(args, step=BATCHES + 4, signum=signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert checkpoint(tmp_path / "run")["global_step"] % BATCHES != 0  # within epoch 2
    assert "resuming from" in run(args)
    assert_same_run(tmp_path / "run", reference)


def test_sigterm_saves_and_exits_then_the_rerun_ends_bit_identical(
    reference, tiny_dataset, tmp_path
):
    # With 2 persistent worker processes, which fetch ahead of training: the same data all the same.
    args = command(tiny_dataset, tmp_path / "run", "data.loader=processes", "data.num_workers=2")
    status, output = interrupt(args, step=BATCHES + 2, signum=signal.SIGTERM)
    assert status == exit_status(signal.SIGTERM) == 143
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert checkpoint(tmp_path / "run")["global_step"] % BATCHES != 0
    run(args)
    assert_same_run(tmp_path / "run", reference)


def test_an_unreadable_last_checkpoint_falls_back_to_the_previous_one(
    reference, tiny_dataset, tmp_path
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100_000])  # cut short, as by a full disk
    # Resumed with 2 loader threads (data.loader's default backend) this time.
    output = run(command(tiny_dataset, run_dir, "data.num_workers=2"))
    warnings = [line for line in output.splitlines() if "last.ckpt" in line and "WARNING" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "cannot read checkpoint" in warnings[0] and "last-prev.ckpt" in warnings[0]
    assert (run_dir / "checkpoints" / "last.ckpt.unreadable").is_file()
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_killed_three_times_at_random_the_run_ends_bit_identical(reference, tiny_dataset, tmp_path):
    args = command(tiny_dataset, tmp_path / "run")
    rng = random.Random(0)
    steps = sorted(rng.sample(range(EVERY, 2 * BATCHES - 3 * EVERY), 3))
    for step in steps:
        status, _ = interrupt(args, step, signal.SIGKILL, delay=rng.uniform(0, 0.2))
        assert status == -signal.SIGKILL
        rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",").index("step")
        trained = 1 + max(int(row.split(",")[header]) for row in rows[1:])
        resumed_at = checkpoint(tmp_path / "run")["global_step"]
        assert 0 <= trained - resumed_at <= EVERY  # the rerun repeats at most one interval
    run(args)
    assert_same_run(tmp_path / "run", reference)


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


class NanAt(pl.LightningModule):
    """A linear model whose loss is nan at one batch; records its weight after every batch."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.nan_batch = batch
        self.weights: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        return loss * float("nan") if batch_idx == self.nan_batch else loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.weights.append(self.layer.weight.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(24, 4, generator=torch.Generator().manual_seed(0)), 4)


def fit(module: pl.LightningModule, action: str) -> tuple[pl.Trainer, NonFiniteLoss]:
    callback = NonFiniteLoss(action)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module)
    return trainer, callback


def test_a_nonfinite_loss_stops_before_the_update_naming_the_step():
    module = NanAt(batch=3)
    with pytest.raises(ConfigError, match=r"epoch 0, batch 3 \(optimizer step 4\)"):
        fit(module, "stop")
    assert len(module.weights) == 3
    assert torch.equal(module.layer.weight, module.weights[-1])


def test_a_nonfinite_loss_can_skip_its_step_and_weights_never_reach_a_checkpoint(tmp_path):
    module = NanAt(batch=3)
    trainer, callback = fit(module, "skip")
    assert callback.skipped == 1 and len(module.weights) == 6
    assert torch.equal(module.weights[3], module.weights[2])
    assert not torch.equal(module.weights[4], module.weights[3])
    with torch.no_grad():
        module.layer.weight[0, 0] = float("inf")
    with pytest.raises(ConfigError, match="not saving"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
