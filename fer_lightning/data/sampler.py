"""The one sampler of every loader: seeded per epoch, sharded across DDP ranks, resumable.

It yields ``(index, epoch)`` pairs rather than indices. The sampler lives in the main process,
where Lightning calls ``set_epoch`` each epoch; passing the epoch along with each index is how it
reaches the dataset in the workers, even persistent ones, so augmentation can be seeded from
(seed, epoch, index).

Sharding (the Trainer runs with ``use_distributed_sampler: false``, so nothing else shards):

- training orders (``shuffle``, ``balanced``) give every rank the same number of samples, as DDP
  needs: the epoch's order is padded by repeating its first samples until it divides by the world
  size, then rank r takes positions r, r + world, ... (at most world - 1 repeats per epoch);
- ``sequential`` (evaluation) is never padded: rank r takes r::world, so every sample is scored
  exactly once and ranks may differ by one sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

MODES = ("sequential", "shuffle", "balanced")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size; (0, 1) outside distributed runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` for one rank's share of an epoch.

    ``shuffle`` is a permutation drawn from (seed, epoch). ``balanced`` draws ``len(labels)``
    samples with replacement, each class equally likely and each sample uniform within its class,
    also from (seed, epoch). The same (seed, epoch) gives the same order in every process.
    """

    def __init__(
        self,
        num_samples: int,
        mode: str = "sequential",
        seed: int = 0,
        labels: np.ndarray | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "balanced" and (labels is None or len(labels) != num_samples):
            raise ValueError("the balanced mode needs one label per sample")
        self.num_samples = num_samples
        self.mode = mode
        self.seed = seed
        self.labels = labels
        self.epoch = 0
        self._skip = 0  # samples of this epoch to skip on the next iteration (resuming)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def epoch_order(self) -> np.ndarray:
        """The whole epoch's order of dataset indices, before sharding (same on every rank)."""
        n = self.num_samples
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.mode == "shuffle":
            return rng.permutation(n)
        if self.mode == "balanced":
            assert self.labels is not None
            by_class = np.argsort(self.labels, kind="stable")
            present, starts, counts = np.unique(
                self.labels[by_class], return_index=True, return_counts=True
            )
            picked = rng.integers(0, len(present), size=n)
            within = (rng.random(n) * counts[picked]).astype(np.int64)
            return by_class[starts[picked] + within]
        return np.arange(n)

    def _shard(self, order: np.ndarray) -> np.ndarray:
        rank, world = rank_and_world()
        if self.mode != "sequential" and len(order) % world:
            pad = world - len(order) % world
            order = np.concatenate([order, np.resize(order, pad)])
        return order[rank::world]

    def __len__(self) -> int:
        rank, world = rank_and_world()
        if self.mode == "sequential":
            return len(range(rank, self.num_samples, world))
        return -(-self.num_samples // world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        share = self._shard(self.epoch_order())
        start, self._skip = self._skip, 0
        for index in share[start:]:
            yield int(index), self.epoch

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues epoch ``state['epoch']`` after ``yielded`` of this
        rank's samples (the loader passes the samples of the batches trained, see
        fer_lightning/data/loaders.py)."""
        self.epoch = int(state["epoch"])
        self._skip = int(state["yielded"])
