"""Decisions every DDP rank must take together, each at the cost of one collective.

Lightning's `strategy.reduce` puts a barrier before every all-reduce; a vote needs neither the
barrier nor a vote at every step (docs/resuming.md: how often ranks vote during training).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist


def distributed(trainer: pl.Trainer) -> bool:
    return trainer.world_size > 1 and dist.is_available() and dist.is_initialized()


def on_any_rank(trainer: pl.Trainer, *flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true in any process: one all-reduce (none in a single process)."""
    if not distributed(trainer):
        return flags
    votes = torch.tensor(flags, dtype=torch.int32, device=trainer.strategy.root_device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in votes.tolist())


def every_rank(trainer: pl.Trainer, value: Any) -> list[Any]:
    """`value` of every rank, by rank (a picklable object; one gather)."""
    if not distributed(trainer):
        return [value]
    values: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(values, value)
    return values
