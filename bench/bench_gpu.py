"""End-to-end training throughput per model, and the time one AffectNet epoch would take.

    python bench/bench_gpu.py                     # on a GPU: 50,000 images at 224, four models
    python bench/bench_gpu.py images=64 image_size=32 steps=3 models=[tnet] accelerator=cpu
    python bench/bench_gpu.py models=[timm:tf_efficientnet_b0,resnet18]   # timm:NAME: model=timm

Arguments are `key=value` as for every command of the project (DEFAULTS below; without a GPU the
defaults are CPU-sized, CPU_DEFAULTS). A mistake is one line on stderr and exit status 2.

What is timed is what `python -m fer_lightning.train trainer=gpu model=NAME` runs: the config is
composed from conf/ with those overrides (trainer=cpu settings with accelerator=cpu), and the
project's datamodule (JPEG decode + augmentation in workers, uint8 batches from pinned memory,
normalisation on the device), module (loss, metrics, logging) and Lightning Trainer (mixed
precision, cudnn.benchmark, channels-last) train for warmup + steps batches. A callback times
the last `steps` of them, each one complete (wait for data, transfer, forward, backward, step),
and reports where the batch was normalised, which shows that happened on the device.

The dataset is AffectNet's layout (train_set/, val_set/ with images and annotations), made by
fer_lightning.data.synthetic: `unique` distinct faces are drawn by a pool of processes (one shard
of the ids each, so drawing 5,000 faces at 224 takes seconds rather than the ~10 minutes 50,000
would take), then hard-linked to `images` training ids. Decoding cost per image is the same as
for distinct images; repeats only make the page cache's job easier, and AffectNet at 224 (~6 GB)
fits a GPU machine's page cache after its first epoch anyway. The set is cached in `data_dir`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli import parse_key_values, register_resolvers, run_command
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.errors import ConfigError
from fer_lightning.labels import AFFECTNET_SUBSETS
from fer_lightning.models import register_model_configs
from fer_lightning.module import MultiTaskModule
from fer_lightning.paths import CONFIG_DIR, user_cache_dir

PAPER_MODELS = ("tnet", "squeezenet", "mobilenet_v3_large", "efficientnet_b0")
AFFECTNET_TRAIN = 230_120  # the original project's training split (80% of train_set)
GOAL = ("squeezenet", 224, 4000.0)  # on one H200
MARKER = "bench.json"
ANNOTATIONS = ("exp", "val", "aro", "lnd")


def _shard_sizes(total: int, shards: int) -> list[int]:
    return [total // shards + (k < total % shards) for k in range(shards)]


def _draw_shard(root: Path, train: int, val: int, size: int, seed: int) -> Path:
    return ensure_synthetic(root, train_size=train, val_size=val, image_size=size, seed=seed)


def _link_sample(source: Path, target: Path, source_id: int, target_id: int) -> None:
    os.link(source / "images" / f"{source_id}.jpg", target / "images" / f"{target_id}.jpg")
    for part in ANNOTATIONS:
        os.link(
            source / "annotations" / f"{source_id}_{part}.npy",
            target / "annotations" / f"{target_id}_{part}.npy",
        )


def make_dataset(root: Path, images: int, unique: int, size: int, processes: int) -> Path:
    """An AffectNet-layout set of `images` training ids over `unique` drawn faces (see above).

    Reused when `root` already holds one made with the same arguments. val_set holds one face
    per 50 training ids (at least 8 and one per shard): setup needs it, the bench never validates.
    """
    unique = min(unique, images)
    shards = max(1, min(processes, unique // 8))  # every shard draws some train and val faces
    val = max(8, shards, images // 50)
    params = {"images": images, "unique": unique, "val": val, "image_size": size}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    train_sizes, val_sizes = _shard_sizes(unique, shards), _shard_sizes(val, shards)
    shard_roots = [root / ".unique" / f"shard-{k}" for k in range(shards)]
    with ProcessPoolExecutor(shards) as pool:
        drawn = list(
            pool.map(
                _draw_shard, shard_roots, train_sizes, val_sizes, [size] * shards, range(shards)
            )
        )
    for subset in AFFECTNET_SUBSETS:
        for part in ("images", "annotations"):
            directory = root / subset / part
            if directory.exists():  # a set made with other arguments
                for stale in directory.iterdir():
                    stale.unlink()
            directory.mkdir(parents=True, exist_ok=True)
    # Shard k's train ids are 0..n_k-1 and its val ids continue from n_k (the layout of
    # fer_lightning/data/synthetic/writer.py).
    faces = [(shard, i) for shard, n in zip(drawn, train_sizes, strict=True) for i in range(n)]
    for target_id in range(images):
        shard, source_id = faces[target_id % unique]
        _link_sample(shard / "train_set", root / "train_set", source_id, target_id)
    target_id = images
    for shard, n_train, n_val in zip(drawn, train_sizes, val_sizes, strict=True):
        for source_id in range(n_train, n_train + n_val):
            _link_sample(shard / "val_set", root / "val_set", source_id, target_id)
            target_id += 1
    marker.write_text(json.dumps(params) + "\n")
    return root


class StepTimer(pl.Callback):
    """Wall time of `steps` training batches after `warmup` ones, and where batches were normalised.

    The clock runs from the end of batch `warmup` to the end of batch `warmup + steps`, so it
    covers exactly `steps` complete iterations. On a GPU it waits for queued work at both ends.
    """

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.done = 0
        self.images = 0
        self.started = self.seconds = 0.0
        self.batch_on = ""

    @staticmethod
    def _now(module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        image = batch["image"]  # as the module receives it: after transfer and normalisation
        self.batch_on = f"{image.dtype}".removeprefix("torch.") + f" on {image.device}"

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: dict,
        batch_idx: int,
    ) -> None:
        self.done += 1
        if self.done == self.warmup:
            self.started = self._now(pl_module)
        elif self.done > self.warmup:
            self.images += len(batch["image"])
            if self.done == self.warmup + self.steps:
                self.seconds = self._now(pl_module) - self.started


def model_overrides(model: str) -> list[str]:
    """`timm:NAME` is `model=timm model.name=NAME`; any other name is `model=NAME`."""
    library, sep, name = model.partition(":")
    if sep and library == "timm":
        return ["model=timm", f"model.name={name}"]
    return [f"model={model}"]


def bench_config(model: str, root: Path, args: SimpleNamespace, out: Path) -> DictConfig:
    """The training config of `model` as the train app composes it, set up for timing only."""
    trainer = ["trainer=gpu"] if args.accelerator == "gpu" else ["trainer=cpu"]
    overrides = [
        f"paths.output_dir={out}",
        "data=affectnet",
        f"data.root={root}",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        *([f"++data.loader={args.loader}"] if args.loader else []),
        *model_overrides(model),
        "model.pretrained=false",
        "scheduler=none",
        f"module.compile={str(args.compile).lower()}",
        *trainer,
        f"++trainer.max_steps={args.warmup + args.steps}",
        "++trainer.max_epochs=-1",
        "++trainer.limit_val_batches=0",
        "++trainer.num_sanity_val_steps=0",
        "++trainer.enable_checkpointing=false",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def warn_if_shared_memory_is_small(data: DictConfig) -> None:
    """Worker processes' batches travel through /dev/shm; a container's default (64 MB) cannot
    hold them. (Loader threads write into the batch directly and need none.)"""
    if data.get("loader", "processes") != "processes":
        return
    shm = Path("/dev/shm")
    batch_bytes = data.batch_size * 3 * data.image_size**2  # uint8
    need = data.num_workers * data.prefetch_factor * batch_bytes
    if shm.is_dir() and shutil.disk_usage(shm).total < need:
        print(
            f"warning: /dev/shm holds {shutil.disk_usage(shm).total / 2**20:.0f} MiB, but the "
            f"loader may keep {need / 2**20:.0f} MiB of batches in flight: lower workers= or "
            "batch_size=, or give the container more shared memory",
            file=sys.stderr,
        )


def bench_model(model: str, root: Path, args: SimpleNamespace) -> dict[str, object]:
    """Images per second of training `model` end to end, with what the run used."""
    with tempfile.TemporaryDirectory() as out:
        cfg = bench_config(model, root, args, Path(out))
        warn_if_shared_memory_is_small(cfg.data)
        pl.seed_everything(cfg.seed)
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        # A tiny CPU set may hold fewer images than one batch.
        datamodule.batch_size = min(datamodule.batch_size, datamodule.split_sizes["train"])
        module = MultiTaskModule.from_config(cfg)
        timer = StepTimer(args.warmup, args.steps)
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False)
        trainer.fit(module, datamodule=datamodule)
    if not timer.seconds:
        raise RuntimeError(f"{model}: training stopped before {args.warmup + args.steps} batches")
    return {
        "model": model,
        "batch": datamodule.batch_size,
        "loader": f"{cfg.data.get('loader', 'processes')} x {cfg.data.num_workers}",
        "precision": str(trainer.precision),
        "images_per_s": timer.images / timer.seconds,
        "batch_on": timer.batch_on,
    }


def print_table(rows: list[dict[str, object]], image_size: int) -> None:
    print(
        f"\nend-to-end training at {image_size}x{image_size}; AffectNet epoch = "
        f"{AFFECTNET_TRAIN:,} images"
    )
    header = (
        f"{'model':<20} {'batch':>5} {'loader':>14} {'precision':>10} {'throughput':>18} "
        f"{'epoch':>9}  batch"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        rate = float(row["images_per_s"])
        minutes = AFFECTNET_TRAIN / rate / 60
        print(
            f"{row['model']:<20} {row['batch']:>5} {row['loader']:>14} {row['precision']:>10} "
            f"{rate:>9.1f} images/s {minutes:>7.1f} min  {row['batch_on']}"
        )
    name, size, goal = GOAL
    for row in rows:
        if row["model"] == name and image_size == size and "cuda" in str(row["batch_on"]):
            verdict = "met" if float(row["images_per_s"]) >= goal else "NOT met"
            print(f"goal {name} >= {goal:,.0f} images/s at {size} on one GPU: {verdict}")


DEFAULTS = {
    "images": 50_000,  # training ids
    "unique": 5_000,  # distinct faces drawn
    "image_size": 224,
    "batch_size": 256,
    "warmup": 20,  # untimed batches (>= 1)
    "steps": 100,  # timed batches
    "workers": max(1, len(os.sched_getaffinity(0)) - 1),
    "loader": None,  # data.loader; None: the config's
    "models": list(PAPER_MODELS),
    "accelerator": "gpu",
    "compile": False,  # torch.compile the network
    "data_dir": None,
}
# Without a GPU: a run of minutes rather than hours, on inputs of the quick start's size.
CPU_DEFAULTS = {
    "images": 2_000,
    "unique": 500,
    "image_size": 64,
    "batch_size": 64,
    "warmup": 3,
    "steps": 20,
    "accelerator": "cpu",
}
EXAMPLE = "images=64 image_size=32 steps=3 models=[tnet] accelerator=cpu"


def parse_args(argv: list[str]) -> SimpleNamespace:
    defaults = DEFAULTS if torch.cuda.is_available() else {**DEFAULTS, **CPU_DEFAULTS}
    args = SimpleNamespace(**parse_key_values(argv, defaults, EXAMPLE))
    if args.warmup < 1 or args.steps < 1:
        raise ConfigError("warmup and steps must be at least 1")
    if args.accelerator not in ("gpu", "cpu"):
        raise ConfigError(f"accelerator must be gpu or cpu, got {args.accelerator!r}")
    if isinstance(args.models, str):
        args.models = [args.models]
    return args


def main() -> int:
    args = parse_args(sys.argv[1:])
    register_resolvers()
    register_model_configs()
    name = f"bench-gpu-{args.images}-{args.unique}-{args.image_size}"
    root = Path(args.data_dir) if args.data_dir else user_cache_dir() / name
    start = time.perf_counter()
    make_dataset(root, args.images, args.unique, args.image_size, args.workers + 1)
    print(
        f"dataset: {root} ({args.images:,} training ids over {min(args.unique, args.images):,} "
        f"faces, {args.image_size}x{args.image_size}; {time.perf_counter() - start:.1f}s)"
    )
    rows = []
    for model in args.models:
        rows.append(bench_model(model, root, args))
        print(f"{model}: {rows[-1]['images_per_s']:.1f} images/s", flush=True)
    print_table(rows, args.image_size)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
