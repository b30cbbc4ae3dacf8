"""A dataset in any layout of fer_lightning/data/formats (AffectNet's by default, or its synthetic
stand-in) as a LightningDataModule.

Batches are dicts::

    image       uint8 [N, 3, H, W] RGB in the loader, channels-last (the threads loader decodes
                each sample straight into its slot of an NHWC batch; see dataset.collate);
                float32 ImageNet-normalised after on_after_batch_transfer (which runs on the
                batch's device, so on the GPU)
    expression  int64 [N], AffectNet codes 0-7 (0-6 with data.classes=7), whatever the dataset
    va          float32 [N, 2], valence and arousal in [-1, 1]; NaN for a sample without them
    index       int64 [N], the sample's position in its split (see sample_paths)

With ``data.cache=decoded`` the samples are read from a decoded store (decoded_store.py) instead
of their image files, with the same batches; with ``data.augment_on=device`` the in-place flip
and noise run in ``on_after_batch_transfer`` instead of the loader (device_augment.py), with the
same result.

See docs/data.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from torch.utils.data import DataLoader

from fer_lightning.data.dataset import AffectNetDataset, collate
from fer_lightning.data.decoded_store import CACHES, DecodedStore, shared_store
from fer_lightning.data.device_augment import AUGMENT_ON, DeviceAugment
from fer_lightning.data.formats import DEFAULT_LAYOUT, READER_SETTINGS, reader
from fer_lightning.data.index import Index, cache_dir_for, load_or_build_index
from fer_lightning.data.loaders import LOADERS, PINNED_MEMORY_MB, default_workers
from fer_lightning.data.locks import dataset_lock
from fer_lightning.data.sampler import EpochSampler, rank_and_world
from fer_lightning.data.shared_memory import require_shared_memory
from fer_lightning.data.split import (
    PARTS,
    PROTOCOLS,
    load_or_make_split,
    read_split_record,
    write_split_record,
)
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.data.transforms import (
    SeededAugment,
    build_augment,
    build_inplace,
    normalize,
)
from fer_lightning.errors import ConfigError
from fer_lightning.labels import EXPRESSION_NAMES
from fer_lightning.values import is_int, is_number

log = logging.getLogger(__name__)

SAMPLERS = ("shuffle", "balanced")
# The batch key under which a training batch carries its device augmentation's plan from
# on_before_batch_transfer to on_after_batch_transfer (which removes it).
_PLAN = "_device_augment_plan"


def balanced_class_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """sklearn's 'balanced' rule, n_samples / (n_classes * count_c); 0 for an absent class."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.zeros_like(counts)
    present = counts > 0
    weights[present] = counts.sum() / (len(counts) * counts[present])
    return weights


class AffectNetDataModule(pl.LightningDataModule):
    """Indexed, checked, leak-free dataset splits with seeded augmentation and sharding.

    Arguments mirror ``conf/data/affectnet.yaml``; see the comments there. ``format`` names the
    layout's reader; ``labels``, ``images``, ``manifest`` and ``crop_margin`` are settings of some
    readers (None: the reader's default, or not one of its settings). ``split_file`` (not a
    config key: a run sets it, see `fer_lightning.train`) is a run's record of its split: read
    when it exists, else written with the split drawn from the dataset cache. Without it the
    split is the cache's alone (notebooks, tests).
    """

    def __init__(
        self,
        root: str = "Dataset/",
        format: str = DEFAULT_LAYOUT,
        labels: str | None = None,
        images: str | None = None,
        manifest: str | None = None,
        crop_margin: float | None = None,
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int | None = None,
        loader: str = "threads",
        classes: int = 8,
        protocol: str = "holdout",
        test_fraction: float = 0.2,
        val_fraction: float = 0.05,
        sampler: str = "shuffle",
        seed: int = 0,
        augment: Sequence[Any] | None = None,
        augment_inplace: Sequence[Any] | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 4,
        pinned_memory_mb: float | None = PINNED_MEMORY_MB,
        cache_dir: str | None = None,
        rebuild_index: bool = False,
        check_workers: int | None = None,
        synthetic: dict[str, int] | None = None,
        split_file: str | os.PathLike | None = None,
        cache: str | None = None,
        augment_on: str = "loader",
    ) -> None:
        super().__init__()
        _validate(locals())
        self.root = _absolute(root)
        self.format = format
        manifest = None if manifest is None else os.path.abspath(_absolute(manifest))
        settings = zip(READER_SETTINGS, (labels, images, manifest, crop_margin), strict=True)
        self.reader_options = {key: value for key, value in settings if value is not None}
        reader(format, **self.reader_options)  # an unknown format or setting fails here
        self.image_size = image_size
        self.batch_size = batch_size
        self.loader = loader
        if num_workers is None:
            num_workers = default_workers()
        # The loader settings as both backends take them, off where there are no workers.
        workers = num_workers > 0
        self.loader_options = {
            "num_workers": num_workers,
            "pin_memory": pin_memory and torch.cuda.is_available(),
            "persistent_workers": persistent_workers and workers,
            "prefetch_factor": prefetch_factor if workers else None,
            "pinned_memory_mb": pinned_memory_mb,
        }
        self.num_classes = classes
        self.protocol = protocol
        self.fraction = test_fraction if protocol == "holdout" else val_fraction
        # A predefined split draws a test part only when the layout has none.
        self.test_fraction = test_fraction if protocol == "predefined" else None
        self.sampler = sampler
        self.seed = seed
        self.augment = build_augment(augment)
        self.augment_inplace = build_inplace(augment_inplace)
        self.cache = cache
        self.augment_on = augment_on
        self.device_augment: DeviceAugment | None = None
        if augment_on == "device":
            if self.augment is not None:
                raise ConfigError(
                    "data.augment_on=device moves only data.augment_inplace to the device; "
                    "data.augment's transforms draw from the same random stream first: set "
                    "data.augment=[] or data.augment_on=loader"
                )
            if self.augment_inplace:
                self.device_augment = DeviceAugment(self.augment_inplace, seed)
        self.cache_dir = cache_dir
        self.rebuild_index = rebuild_index
        self.check_workers = check_workers
        self.synthetic = dict(synthetic) if synthetic else None
        self.split_file = Path(split_file) if split_file is not None else None
        # Which split test_dataloader serves: "test", or "val" to score the validation split.
        self.test_split = "test"
        self.class_names = list(EXPRESSION_NAMES[:classes])
        self.datasets: dict[str, AffectNetDataset] = {}
        self._warned = False
        self._prepared: tuple[Index, dict[str, np.ndarray], DecodedStore | None] | None = None
        self._train_sampler: EpochSampler | None = None
        self.prepare_data_per_node = False  # one preparation per job, on the shared cache

    @property
    def uses_balanced_sampler(self) -> bool:
        """True when training batches are class-balanced, so the loss should be unweighted."""
        return self.sampler == "balanced"

    @property
    def split_sizes(self) -> dict[str, int]:
        return {part: len(ds) for part, ds in self._require_setup().items()}

    def _store(self, index: Index, build: bool) -> DecodedStore | None:
        if self.cache is None:
            return None
        cache = cache_dir_for(self.root, self.cache_dir, self.format, self.reader_options)
        return shared_store(
            self.root, cache, index, self.image_size, build, self.rebuild_index, self.check_workers
        )

    def _index_and_split(
        self, rebuild: bool, build: bool = True
    ) -> tuple[Index, dict[str, np.ndarray]]:
        layout, options = self.format, self.reader_options
        # Before cache_dir_for creates root/.fer_cache.
        reader(layout, **options).require(self.root)
        cache = cache_dir_for(self.root, self.cache_dir, layout, options)
        # Dataset problems are logged once per run: by the process that prepares the data, or
        # by rank 0 when nothing prepared it in this process.
        quiet = self._warned or rank_and_world()[0] != 0
        index, _ = load_or_build_index(
            self.root, cache, rebuild, self.check_workers, quiet, layout, options, build=build
        )
        self._warned = True
        record = self.split_file
        if record is not None and record.is_file():
            return index, read_split_record(record, index, self.num_classes)
        rows = load_or_make_split(
            cache,
            index,
            self.protocol,
            self.num_classes,
            self.seed,
            self.fraction,
            test_fraction=self.test_fraction,
        )
        if record is not None:
            write_split_record(record, index, rows)
        return index, rows

    def prepare_data(self) -> None:
        """Generates the synthetic dataset if configured; builds the index and split once.

        Lightning calls this in one process of the job (global rank 0: `prepare_data_per_node`
        is false, so several nodes do not build into one shared cache at once); what it loads is
        kept for ``setup`` in the same process, and the other ranks read the files it wrote,
        never building them (the cache must be on a file system every node shares).
        """
        with dataset_lock(self.root):
            if self.synthetic is not None:
                ensure_synthetic(self.root, **self.synthetic)
            index, rows = self._index_and_split(rebuild=self.rebuild_index)
            self._prepared = index, rows, self._store(index, build=True)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self._prepared is None:
            rank_zero = rank_and_world()[0] == 0
            index, rows = self._index_and_split(rebuild=False, build=rank_zero)
            store = self._store(index, build=False)
        else:
            index, rows, store = self._prepared
        self._prepared = None
        for part in PARTS:
            if len(rows[part]) == 0:
                raise ConfigError(
                    f"the {part} split of {self.root} is empty: the dataset is too small for "
                    f"protocol={self.protocol} with fraction {self.fraction:g}"
                )
        train_augment = None
        inplace = self.augment_inplace if self.device_augment is None else []
        if self.augment is not None or inplace:
            train_augment = SeededAugment(self.augment, inplace, self.seed)
        self.datasets = {
            part: AffectNetDataset(
                index,
                rows[part],
                self.image_size,
                train_augment if part == "train" else None,
                store,
            )
            for part in PARTS
        }
        log.info("split sizes (%s protocol): %s", self.protocol, self.split_sizes)

    def _require_setup(self) -> dict[str, AffectNetDataset]:
        if not self.datasets:
            raise RuntimeError("call setup() first")
        return self.datasets

    def class_weights(self) -> torch.Tensor:
        """Balanced class weights of the training split (float32, one per class)."""
        labels = self._require_setup()["train"].expression
        counts = np.bincount(labels, minlength=self.num_classes)
        if (counts == 0).any():
            log.warning("classes without training samples get weight 0: %s", counts.tolist())
        return torch.from_numpy(balanced_class_weights(counts).astype(np.float32))

    def sample_paths(self, split: str) -> list[str]:
        """The image path of every sample of ``split``, by its ``index`` in batches."""
        dataset = self._require_setup()[split]
        return [dataset.path(i) for i in range(len(dataset))]

    def _loader(self, part: str, sampler: EpochSampler, drop_last: bool) -> DataLoader:
        loader = LOADERS[self.loader](
            self._require_setup()[part],
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            **self.loader_options,
            collate_fn=collate,
            # Worker seeds come from here rather than the global RNG, so creating an iterator does
            # not move the dropout RNG stream (a resumed run creates them at different points).
            generator=torch.Generator().manual_seed(self.seed),
        )
        if self.loader == "processes":
            workers, prefetch = loader.num_workers, loader.prefetch_factor or 0
            require_shared_memory(self.batch_size, self.image_size, workers, prefetch)
        return loader

    def train_dataloader(self) -> DataLoader:
        dataset = self._require_setup()["train"]
        sampler = EpochSampler(len(dataset), self.sampler, self.seed, dataset.expression)
        self._train_sampler = sampler
        # A last batch of one sample breaks batch norm; drop the incomplete batch when
        # there is at least one complete one.
        return self._loader("train", sampler, drop_last=len(sampler) > self.batch_size)

    def _eval_loader(self, part: str) -> DataLoader:
        sampler = EpochSampler(len(self._require_setup()[part]), "sequential", self.seed)
        return self._loader(part, sampler, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_split)

    def _augments_on_device(self, batch: Any) -> bool:
        trainer = self.trainer
        return (
            self.device_augment is not None
            and isinstance(batch, dict)
            and trainer is not None
            and trainer.training
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``data.augment_on=device``: plans a training batch's flip and noise on the host,
        from the epoch the training sampler is on (the loader's key)."""
        if self._augments_on_device(batch):
            assert self.device_augment is not None
            epoch = self._train_sampler.epoch if self._train_sampler is not None else 0
            batch = {**batch, _PLAN: self.device_augment.plan(batch["index"], epoch)}
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The planned flip and noise (``data.augment_on=device``), then float conversion and
        ImageNet normalisation, batched, on the batch's device."""
        if not isinstance(batch, dict):
            return batch
        image = batch.get("image")
        if _PLAN in batch and self.device_augment is not None:
            batch = dict(batch)
            image = self.device_augment.apply(image, batch.pop(_PLAN))
        if image is not None and image.dtype == torch.uint8:
            batch = {**batch, "image": normalize(image)}
        return batch


def _absolute(root: str | os.PathLike) -> Path:
    """Relative roots are taken from where the command was started, also inside Hydra runs."""
    if HydraConfig.initialized():
        return Path(to_absolute_path(str(root)))
    return Path(root)


def _validate(args: dict[str, Any]) -> None:
    """One-line ConfigErrors for values that would otherwise fail far from the config."""

    def fail(message: str) -> None:
        raise ConfigError(message)

    if args["classes"] not in (7, 8):
        fail(f"data.classes must be 8 or 7 (7 drops Contempt), got {args['classes']}")
    if args["protocol"] not in PROTOCOLS:
        fail(f"data.protocol must be one of {', '.join(PROTOCOLS)}, got {args['protocol']!r}")
    if args["sampler"] not in SAMPLERS:
        fail(f"data.sampler must be one of {', '.join(SAMPLERS)}, got {args['sampler']!r}")
    if args["cache"] not in CACHES:
        fail(f"data.cache must be null or decoded, got {args['cache']!r}")
    if args["augment_on"] not in AUGMENT_ON:
        fail(f"data.augment_on must be one of {', '.join(AUGMENT_ON)}, got {args['augment_on']!r}")
    if args["loader"] not in LOADERS:
        fail(f"data.loader must be one of {', '.join(LOADERS)}, got {args['loader']!r}")
    for key in ("test_fraction", "val_fraction"):
        if not (is_number(args[key]) and 0 < args[key] < 1):
            fail(f"data.{key} must be between 0 and 1, got {args[key]!r}")
    for key in ("image_size", "batch_size", "prefetch_factor"):
        if not is_int(args[key]) or args[key] < 1:
            fail(f"data.{key} must be a positive integer, got {args[key]!r}")
    workers = args["num_workers"]
    if workers is not None and (not is_int(workers) or workers < 0):
        fail(f"data.num_workers must be 0 or more, got {args['num_workers']!r}")
    budget = args["pinned_memory_mb"]
    if budget is not None and not (is_number(budget) and budget > 0):
        fail(f"data.pinned_memory_mb must be a positive number of MiB or null, got {budget!r}")
    if not is_int(args["seed"]) or args["seed"] < 0:
        fail(f"data.seed must be a non-negative integer, got {args['seed']!r}")
