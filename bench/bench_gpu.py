"""End-to-end training throughput per model, and the time one AffectNet epoch would take.

    python bench/bench_gpu.py                     # on a GPU: 50,000 images at 224, four models
    python bench/bench_gpu.py images=400 image_size=32 batch_size=8 workers=1 steps=3 \
        models=[tnet] accelerator=cpu
    python bench/bench_gpu.py models=[timm:tf_efficientnet_b0,resnet18]   # timm:NAME: model=timm

Arguments are `key=value` as for every command of the project (DEFAULTS below; without a GPU the
defaults are CPU-sized, CPU_DEFAULTS). A mistake is one line on stderr and exit status 2.

What is timed is the training command itself, `python -m fer_lightning.train trainer=gpu
model=NAME` (trainer=cpu with accelerator=cpu) with the config's batch size and workers unless
given, its callbacks and CSV logger, for one epoch cut to the timed window
(`bench/training_rate.py`): the clock starts once the loader's prefetch queue, filled while the
first step was slow, has drained (`warmup` batches after it), and stops `steps` batches later,
before the epoch's end. The table shows where the batch was normalised (on the device).

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
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from training_rate import queue_depth, run_training  # bench/, the script's folder

from fer_lightning.cli import parse_key_values, register_resolvers, run_command
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.errors import ConfigError
from fer_lightning.labels import AFFECTNET_SUBSETS
from fer_lightning.models import register_model_configs
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


def model_overrides(model: str) -> list[str]:
    """`timm:NAME` is `model=timm model.name=NAME`; any other name is `model=NAME`."""
    library, sep, name = model.partition(":")
    if sep and library == "timm":
        return ["model=timm", f"model.name={name}"]
    return [f"model={model}"]


def bench_overrides(model: str, root: Path, args: SimpleNamespace) -> list[str]:
    """The training command's overrides for `model` on the bench's dataset (the config's batch
    size and workers unless given)."""
    trainer = ["trainer=gpu"] if args.accelerator == "gpu" else ["trainer=cpu"]
    return [
        "data=affectnet",
        f"data.root={root}",
        f"data.image_size={args.image_size}",
        *([f"data.batch_size={args.batch_size}"] if args.batch_size else []),
        *([f"data.num_workers={args.workers}"] if args.workers is not None else []),
        *([f"data.loader={args.loader}"] if args.loader else []),
        *model_overrides(model),
        "model.pretrained=false",
        f"module.compile={str(args.compile).lower()}",
        *trainer,
    ]


def composed(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def bench_model(model: str, root: Path, args: SimpleNamespace) -> dict[str, object]:
    """Images per second of the training command for `model`, past the prefetch queue, with
    what the run used (`bench/training_rate.py`)."""
    overrides = bench_overrides(model, root, args)
    cfg = composed(overrides)
    warmup = queue_depth(cfg.data) + args.warmup
    with tempfile.TemporaryDirectory() as out:
        rate = run_training(overrides, Path(out), warmup, args.steps, timeout=3600)
    return {
        "model": model,
        "batch": rate["batch"],
        "loader": f"{cfg.data.loader} x {cfg.data.num_workers}",
        "precision": rate["precision"],
        "images_per_s": rate["images_per_s"],
        "batch_on": rate["batch_on"],
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
    "batch_size": None,  # data.batch_size; None: the config's
    "warmup": 5,  # untimed batches (>= 1) after the loader's prefetch queue has drained
    "steps": 100,  # timed batches
    "workers": None,  # data.num_workers; None: the config's
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
    "warmup": 2,
    "steps": 10,
    "accelerator": "cpu",
}
EXAMPLE = "images=400 image_size=32 batch_size=8 workers=1 steps=3 models=[tnet] accelerator=cpu"


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
    make_dataset(root, args.images, args.unique, args.image_size, len(os.sched_getaffinity(0)))
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
