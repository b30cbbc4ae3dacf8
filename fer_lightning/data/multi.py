"""Joint training: several datasets in one run (`data=multi`, docs/data.md#joint-training).

Each source is a data config of its own (any layout its reader knows), indexed, checked and
split as it would be alone; `MultiDataModule` wraps their datamodules. Its splits are the
concatenation of the sources' splits, in the order of `sources`, so a sample's `index` in a
batch tells its source (`source_of`); the training draws follow per-source `weights` (each
source's share of an epoch's draws, uniform within the source). Image size, batch size,
classes, loader, seed and the augmentation are the multi config's, for every source alike.

A run's split record (`split.json`) lists every source's samples as `<source>:<path>`, and each
source keeps its own record beside it (`split-<source>.json`): a resumed run reads those, and
refuses to go on if they no longer give the samples of `split.json`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from fer_lightning.data.datamodule import AffectNetDataModule, balanced_class_weights
from fer_lightning.data.dataset import AffectNetDataset
from fer_lightning.data.loaders import PINNED_MEMORY_MB
from fer_lightning.data.sampler import EpochSampler, rank_and_world
from fer_lightning.data.split import PARTS
from fer_lightning.data.transforms import SeededAugment
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic

log = logging.getLogger(__name__)

# The keys every source takes from the multi config, whatever its own config says.
SHARED = ("image_size", "batch_size", "classes", "seed", "num_workers", "loader")


def concatenated(parts: Sequence[AffectNetDataset], augment: SeededAugment | None) -> Any:
    """One dataset of `parts` in order: every per-sample array joined, paths made whole."""
    combined = AffectNetDataset.__new__(AffectNetDataset)
    vars(combined).update(vars(parts[0]))
    for name, value in vars(parts[0]).items():
        if isinstance(value, np.ndarray) and len(value) == len(parts[0]):
            setattr(combined, name, np.concatenate([getattr(p, name) for p in parts]))
    combined.root = ""
    combined.files = np.array([p.path(i) for p in parts for i in range(len(p))], dtype=object)
    combined.augment = augment
    combined.substitutions = 0
    return combined


class SourceWeightedSampler(EpochSampler):
    """Training draws of one epoch: as many as the samples, with replacement, source s drawn
    with probability `weight_s / sum(weights)` and each of its samples alike; from (seed, epoch)
    as every order of `EpochSampler`, so sharding and resuming work as there."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int) -> None:
        super().__init__(int(sum(sizes)), "shuffle", seed)
        share = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.probabilities = np.repeat(share / np.asarray(sizes), sizes)

    def epoch_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.choice(self.num_samples, size=self.num_samples, p=self.probabilities)


class MultiDataModule(AffectNetDataModule):
    """The sources' datamodules as one: `sources` maps a name to a data config (as a data
    group holds it), `weights` a name to its sampling weight (1 if not given)."""

    def __init__(
        self,
        sources: Mapping[str, Mapping[str, Any]],
        weights: Mapping[str, float] | None = None,
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int = 2,
        loader: str = "threads",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 4,
        pinned_memory_mb: float | None = PINNED_MEMORY_MB,
        classes: int = 8,
        seed: int = 0,
        augment: Sequence[Any] | None = None,
        augment_inplace: Sequence[Any] | None = None,
        split_file: str | os.PathLike | None = None,
    ) -> None:
        weights = dict(weights or {})
        if len(sources) < 2 or set(weights) - set(sources):
            raise ConfigError(
                f"data=multi needs two or more data.sources and weights only for them, got "
                f"sources {sorted(sources)} and weights {sorted(weights)}"
            )
        if any(not isinstance(w, (int, float)) or w <= 0 for w in weights.values()):
            raise ConfigError(f"data.weights must be positive numbers, got {weights}")
        super().__init__(
            image_size=image_size, batch_size=batch_size, num_workers=num_workers,
            loader=loader, classes=classes, seed=seed, augment=augment,
            augment_inplace=augment_inplace, pin_memory=pin_memory,
            persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
            pinned_memory_mb=pinned_memory_mb,
        )  # fmt: skip
        shared = dict(zip(SHARED, (image_size, batch_size, classes, seed, 0, loader), strict=True))
        self.source_names = list(sources)
        self.weights = [float(weights.get(name, 1.0)) for name in self.source_names]
        self.sources = [instantiate({**node, **shared}) for node in sources.values()]
        self.offsets: dict[str, np.ndarray] = {}
        self.split_file = Path(split_file) if split_file is not None else None

    @property
    def split_file(self) -> Path | None:
        return self._split_file

    @split_file.setter
    def split_file(self, path: Path | None) -> None:
        """The run's record; each source's own goes beside it, `split-<source>.json`."""
        self._split_file = path
        pairs = zip(getattr(self, "source_names", ()), getattr(self, "sources", ()), strict=True)
        for name, source in pairs:
            source.split_file = None if path is None else path.with_name(f"split-{name}.json")

    def prepare_data(self) -> None:
        for source in self.sources:
            source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for source in self.sources:
            source.setup(stage)
        augment = None
        if self.augment is not None or self.augment_inplace:
            augment = SeededAugment(self.augment, self.augment_inplace, self.seed)
        for part in PARTS:
            parts = [source.datasets[part] for source in self.sources]
            self.datasets[part] = concatenated(parts, augment if part == "train" else None)
            self.offsets[part] = np.cumsum([0, *(len(p) for p in parts)])
        self._check_record()
        log.info("sources %s, split sizes: %s", self.source_names, self.split_sizes)

    def _recorded(self) -> dict[str, list[str]]:
        return {
            part: [
                f"{name}:{path}"
                for name, source in zip(self.source_names, self.sources, strict=True)
                for path in source.sample_paths(part)
            ]
            for part in PARTS
        }

    def _check_record(self) -> None:
        """Writes split.json on its first setup; later, refuses samples that differ from it."""
        if self.split_file is None:
            return
        samples = self._recorded()
        if not self.split_file.is_file():
            if rank_and_world()[0] == 0:
                write_text_atomic(self.split_file, json.dumps(samples) + "\n")
            return
        if json.loads(self.split_file.read_text(encoding="utf-8")) != samples:
            raise ConfigError(
                f"the sources' samples differ from those of {self.split_file}: restore the "
                f"split-<source>.json records beside it, or start over (resume=false)"
            )

    def source_of(self, part: str, index: torch.Tensor) -> torch.Tensor:
        """The source (a position in `names`) of each sample `index` of a batch of `part`."""
        offsets = torch.as_tensor(self.offsets[part][1:-1], device=index.device)
        return torch.bucketize(index, offsets, right=True)

    def class_weights(self) -> torch.Tensor:
        """Balanced class weights of the expected training draws (the weights change them)."""
        labels = self.datasets["train"].expression
        draws = np.bincount(
            labels, weights=self._source_sampler().probabilities, minlength=self.num_classes
        )
        return torch.from_numpy(balanced_class_weights(draws).astype(np.float32))

    def _source_sampler(self) -> SourceWeightedSampler:
        sizes = np.diff(self.offsets["train"])
        return SourceWeightedSampler(sizes.tolist(), self.weights, self.seed)

    def train_dataloader(self) -> DataLoader:
        sampler = self._source_sampler()
        self._train_sampler = sampler  # the epoch device augmentation plans for
        return self._loader("train", sampler, drop_last=len(sampler) > self.batch_size)
