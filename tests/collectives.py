"""A callback that counts the Python-level collectives (`torch.distributed` calls) of every
training step, for the DDP test: added to the real training command as an extra callback, it
wraps the functions in each process and writes that rank's counts to `<dirpath>/rank<r>.json`.

A step's count is what happens from one training batch's start to the next one's, within an
epoch (the epoch's first and last batches excluded, so the epoch boundaries are not counted).
DDP's gradient all-reduce runs in C++ and is not among them.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "barrier",
    "all_gather",
    "all_gather_object",
    "broadcast_object_list",
    "reduce",
    "gather",
    "scatter",
    "all_gather_into_tensor",
    "reduce_scatter_tensor",
    "monitored_barrier",
)
CALLS: Counter = Counter()


def _counted(name: str, function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        CALLS[name] += 1
        return function(*args, **kwargs)

    wrapper.counted = True  # type: ignore[attr-defined]
    return wrapper


def wrap_collectives() -> None:
    for module in (dist, c10d):
        for name in COLLECTIVES:
            function = getattr(module, name, None)
            if function is not None and not getattr(function, "counted", False):
                setattr(module, name, _counted(name, function))


class CountCollectives(pl.Callback):
    def __init__(self, dirpath: str) -> None:
        wrap_collectives()
        self.dirpath = Path(dirpath)
        self.steps: list[dict[str, int]] = []
        self._at: Counter | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        batch_idx = args[-1]
        if self._at is not None and batch_idx > 1:
            self.steps.append(dict(CALLS - self._at))
        self._at = Counter(CALLS) if batch_idx + 1 < trainer.num_training_batches else None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.steps))
