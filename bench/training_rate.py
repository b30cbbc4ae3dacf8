"""The training rate of the real training command: `python -m fer_lightning.train`, with its
callbacks and logger, plus `RateProbe`, which times a window of batches and writes what it saw.

The window starts once the loader's prefetch queue (num_workers x prefetch_factor batches, filled
while the first step was slow) has been drained, so it measures the steady state rather than
batches that were ready before the clock started; it ends before the epoch's last batch, so no
epoch boundary (validation, checkpoint) falls inside it. `bench/bench_gpu.py` and
`bench/gpu_check.py` both time through `run_training`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
SYNC_WARNING = "synchronizing CUDA operation"  # torch.cuda.set_sync_debug_mode("warn")'s text


def queue_depth(data: DictConfig) -> int:
    """Batches the loader holds ready ahead of training."""
    workers = int(data.get("num_workers") or 0)
    return workers * int(data.get("prefetch_factor") or 0) if workers else 0


class RateProbe(pl.Callback):
    """Times training batches `warmup` to `warmup + steps` and writes `out` (JSON): images/s,
    host syncs per step (on CUDA, counted by the sync debug mode's warnings), peak GPU memory,
    pinned host memory, graphs compiled and recompilations, and where the batch was normalised."""

    def __init__(self, out: str, warmup: int, steps: int) -> None:
        self.out, self.warmup, self.steps = Path(out), warmup, steps
        self.done = self.images = 0
        self.started = 0.0
        self.batch_on = ""
        self._caught: list[warnings.WarningMessage] | None = None
        self._catcher: Any = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: dict, *_: Any
    ) -> None:
        image = batch["image"]  # as the module receives it: after transfer and normalisation
        self.batch_on = f"{image.dtype}".removeprefix("torch.") + f" on {image.device}"

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: dict, *_: Any
    ) -> None:
        self.done += 1
        cuda = pl_module.device.type == "cuda"
        if self.done == self.warmup:
            if cuda:
                torch.cuda.synchronize(pl_module.device)
                torch.cuda.reset_peak_memory_stats(pl_module.device)
                self._catcher = warnings.catch_warnings(record=True)
                self._caught = self._catcher.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
            self.started = time.perf_counter()
        elif self.done > self.warmup:
            self.images += len(batch["image"])
            if self.done == self.warmup + self.steps:
                if cuda:
                    torch.cuda.synchronize(pl_module.device)
                seconds = time.perf_counter() - self.started
                self._write(trainer, pl_module, seconds, cuda)

    def _write(self, trainer: pl.Trainer, pl_module: Any, seconds: float, cuda: bool) -> None:
        syncs = None
        if cuda:
            torch.cuda.set_sync_debug_mode(0)
            self._catcher.__exit__(None, None, None)
            syncs = sum(SYNC_WARNING in str(w.message) for w in self._caught or ()) / self.steps
        from torch._dynamo.utils import counters

        result = {
            "images_per_s": self.images / seconds,
            "batch": trainer.train_dataloader.batch_size if trainer.train_dataloader else None,
            "precision": str(trainer.precision),
            "batch_on": self.batch_on,
            "host_syncs_per_step": syncs,
            "peak_gpu_mib": torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            if cuda
            else None,
            "pinned_mib": _pinned_mib() if cuda else None,
            "graphs": counters["stats"].get("unique_graphs", 0),
            "recompiles": sum(counters["recompiles"].values()),
        }
        self.out.write_text(json.dumps(result) + "\n")


def _pinned_mib() -> float | None:
    stats = getattr(torch.cuda, "host_memory_stats", None)
    if stats is None:
        return None
    return stats().get("allocated_bytes.current", 0) / 2**20


def run_training(
    overrides: list[str], out_dir: Path, warmup: int, steps: int, timeout: float
) -> dict[str, Any]:
    """Runs the training command with `overrides` for one epoch of `warmup + steps + 1` batches
    (no test), in `out_dir`, and returns what `RateProbe` measured (raises with the command's
    last output when it failed)."""
    result_file = out_dir / "rate.json"
    command = [
        sys.executable,
        "-m",
        "fer_lightning.train",
        *overrides,
        "test=false",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={warmup + steps + 1}",
        "trainer.limit_val_batches=2",
        "checkpoint.every_minutes=null",
        "+callbacks.rate_probe._target_=bench.training_rate.RateProbe",
        f"+callbacks.rate_probe.out={result_file}",
        f"+callbacks.rate_probe.warmup={warmup}",
        f"+callbacks.rate_probe.steps={steps}",
        f"hydra.run.dir={out_dir / 'run'}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        command, cwd=out_dir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if run.returncode != 0 or not result_file.is_file():
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"training failed (status {run.returncode}): {' | '.join(tail)}")
    return json.loads(result_file.read_text())
