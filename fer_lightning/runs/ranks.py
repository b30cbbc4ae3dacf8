"""What DDP ranks do together: decisions, each at the cost of one collective, and gathered outputs.

Lightning's `strategy.reduce` puts a barrier before every all-reduce; a vote needs neither the
barrier nor a vote at every step (docs/resuming.md: how often ranks vote during training).
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def gather_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every rank's per-sample outputs, each sample once, ordered by the sample's ``index``.

    Evaluation shards are uneven (rank r scores samples r::world, without padding), which a
    tensor ``all_gather`` cannot take: it needs equal shapes, and padding would have to be cut
    again per rank. Gathering the CPU arrays as objects takes shards of any size; test outputs
    are a few MB even for AffectNet. A rank without samples contributes an empty dict.
    """
    shards = [outputs]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shards = [None] * dist.get_world_size()
        dist.all_gather_object(shards, outputs)
    shards = [shard for shard in shards if shard]
    if not shards:
        return {}
    merged = {key: np.concatenate([shard[key] for shard in shards]) for key in shards[0]}
    order = np.argsort(merged["index"], kind="stable")
    return {key: value[order] for key, value in merged.items()}
