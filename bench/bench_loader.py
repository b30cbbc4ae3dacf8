"""Training-loader throughput against the original project's loader and the decode ceiling.

    python bench/bench_loader.py images=2000 workers=2

Generates (once, cached) a synthetic AffectNet-layout folder of 224x224 JPEGs, then measures in
one run:

(a) decode only: OpenCV's imread straight to RGB in a loop, each image a new array (as a plain
    ``cv2.imread`` returns it: the decode-only rate the targets refer to), once on one core while
    the others idle (a1), and once in ``workers`` processes at the same time (a2): the ceiling the
    workers have, as "decode-only images/s per core times workers"; and a stricter ceiling (a3):
    the loader's own decode call into one reused array in ``workers`` processes (no allocation,
    the array always in cache: the fastest a decode gets here; the loader's batch slots are
    neither);
(b) the original project's loader: index by os.listdir, per sample cv2.imread, three np.load,
    albumentations HorizontalFlip + GaussNoise, a PIL round trip, torchvision ToTensor + Normalize;
(c) this project's training loader at image_size 224 with the same augmentation semantics (random
    flip p=0.5, additive Gaussian noise p=0.5: conf/data/affectnet.yaml), delivering uint8
    batches; once more including the batched normalisation that on_after_batch_transfer does
    (here on the CPU, in the main process; on a GPU machine it runs on the GPU); first with the
    configured data.loader backend, then with the other one (threads or worker processes);
(d) a loader whose samples are ready-made tensors: the cost of moving batches out of worker
    processes (shared memory), which every multi-process loader pays and threads do not;
(e) the loader's per-sample work (decode into a batch slot, augmentation there) in ``workers``
    processes and in ``workers`` threads with no loader around it: the most any loader, or a
    threads loader, could deliver with this augmentation on this machine;

the augmentation's CPU time per image through albumentations and in place, and the time to load
a 287,651-entry index (AffectNet's train_set) and its split.
Targets: (c) >= 5x (b), and (c) >= 0.7 x (a1) x workers, measured as (a2).

Every rate is given by the clock and per CPU-second (this process, its threads and its worker
processes). The measurements alternate over ``rounds`` rounds, so that load from other
processes hits all alike, after one unrecorded round that warms caches and pools up; ratios are
taken within a round and given as the median and range over the rounds, rates as the best round.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from types import SimpleNamespace

import albumentations as A
import cv2
import numpy as np
import psutil
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.dataset import AffectNetDataset
from fer_lightning.data.decode import decode_rgb
from fer_lightning.data.index import Index, load_index, save_index
from fer_lightning.data.loaders import LOADERS
from fer_lightning.data.split import load_or_make_split
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SeededAugment,
    build_augment,
    build_inplace,
)
from fer_lightning.errors import ConfigError
from fer_lightning.labels import AFFECTNET_TRAIN_COUNTS
from fer_lightning.paths import user_cache_dir

# (c) uses the configured default augmentation and loader backend.
CONFIG = OmegaConf.load(Path(__file__).resolve().parent.parent / "conf" / "data" / "affectnet.yaml")
AUGMENT = {key: OmegaConf.to_container(CONFIG[key]) for key in ("augment", "augment_inplace")}


@dataclass(frozen=True)
class Rate:
    """A throughput by the clock and by the CPU time it took (this process and its workers)."""

    images: int
    wall: float  # seconds
    cpu: float  # CPU seconds

    @property
    def per_second(self) -> float:
        return self.images / self.wall

    @property
    def per_cpu_second(self) -> float:
        return self.images / self.cpu


def cpu_seconds() -> float:
    """CPU time of this process, its live children (workers) and its reaped children."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


# CPU times are counted in clock ticks: a short round can take none. A round is charged at least
# one tick, so that a rate by CPU time is always finite (and, if anything, an underestimate).
CLOCK_TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def measure(run: Callable[[], int]) -> Rate:
    wall, cpu = time.perf_counter(), cpu_seconds()
    images = run()
    return Rate(images, time.perf_counter() - wall, max(cpu_seconds() - cpu, CLOCK_TICK))


def decode_only(paths: list[str]) -> int:
    """Every path decoded to RGB, each into a new array (224x224: no resize)."""
    for path in paths:
        cv2.imread(path, cv2.IMREAD_COLOR_RGB)
    return len(paths)


def decode_reused(paths: list[str]) -> int:
    """The loader's decode call for every path, into one reused array."""
    out = np.empty((224, 224, 3), dtype=np.uint8)
    for path in paths:
        decode_rgb(path, 224, 224, out=out)
    return len(paths)


def in_parallel(pool: Pool, run: Callable[[list[str]], int], paths: list[str], n: int) -> int:
    """``run`` over ``n`` processes at once, each on a 1/n share of the paths."""
    return sum(pool.map(run, [paths[k::n] for k in range(n)], chunksize=1))


def load_only(task: tuple[AffectNetDataset, list[int], int]) -> int:
    """The loader's per-sample work (decode into a batch slot, augment there), with no loader."""
    dataset, rows, batch_size = task
    size = dataset.image_size
    slots = np.empty((batch_size, size, size, 3), dtype=np.uint8)
    for k, i in enumerate(rows):
        dataset.load(i, 1, out=slots[k % batch_size])
    return len(rows)


def augmentation_cost(paths: list[str]) -> dict[str, float]:
    """CPU us per image of the flip + noise alone (on a copy of a decoded image), both ways."""
    images = [decode_rgb(path, 224, 224) for path in paths]
    slot = np.empty((224, 224, 3), dtype=np.uint8)
    stages = {
        "albumentations": SeededAugment(
            build_augment(
                [A.HorizontalFlip(p=0.5), A.GaussNoise(std_range=(0.0124, 0.0277), p=0.5)]
            ),
            [],
            seed=0,
        ),
        "in place": SeededAugment(None, build_inplace(CONFIG.augment_inplace), seed=0),
        "neither (the copy only)": SeededAugment(None, [], seed=0),
    }
    cost = {}
    for name, augment in stages.items():
        start = time.process_time()
        for i, image in enumerate(images):
            slot[...] = image
            augment(slot, 0, i)
        cost[name] = (time.process_time() - start) / len(images) * 1e6
    return cost


class TransferOnly(Dataset):
    """Ready-made 224x224 samples: what moving batches from workers costs, with no decoding."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.image = torch.zeros((3, 224, 224), dtype=torch.uint8)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.image, "index": i}


class OriginalDataset(Dataset):
    """The original project's FaceDataSet, as its README describes it."""

    def __init__(self, root: Path, limit: int) -> None:
        self.images = root / "train_set" / "images"
        self.annotations = root / "train_set" / "annotations"
        self.names = sorted(os.listdir(self.images))[:limit]
        # albumentations 1.3's GaussNoise() default, var_limit=(10, 50), in 2.0's terms.
        self.augment = A.Compose(
            [A.HorizontalFlip(p=0.5), A.GaussNoise(std_range=(0.0124, 0.0277), p=0.5)]
        )
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float, float, float]:
        name = self.names[i]
        stem = name.rsplit(".", 1)[0]
        image = cv2.imread(str(self.images / name))  # BGR, as the original fed it
        labels = [
            float(np.load(self.annotations / f"{stem}_{part}.npy"))
            for part in ("exp", "val", "aro")
        ]
        image = self.augment(image=image)["image"]
        return self.to_tensor(Image.fromarray(image)), *labels


def iterate(loader: DataLoader, epochs: range, step: Callable | None = None) -> int:
    """Images delivered over whole epochs, ``step`` applied to every batch."""
    count = 0
    for epoch in epochs:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            if step is not None:
                batch = step(batch)
            count += len(batch["image"] if isinstance(batch, dict) else batch[0])
    return count


def fabricated_index(n: int, root: Path) -> Index:
    """An index shaped like AffectNet's train_set, without any images behind it."""
    rng = np.random.default_rng(0)
    counts = np.round(np.array(AFFECTNET_TRAIN_COUNTS) / sum(AFFECTNET_TRAIN_COUNTS) * n)
    codes = np.repeat(np.arange(8), counts.astype(int))
    codes = np.resize(rng.permutation(codes), n)
    ids = np.arange(n).astype(str)
    return Index(
        root=root,
        subset=(np.arange(n) >= n - 3999).astype(np.uint8),
        ids=ids,
        files=np.char.add(ids, ".jpg"),
        expression=codes.astype(np.int8),
        valence=rng.uniform(-1, 1, n).astype(np.float32),
        arousal=rng.uniform(-1, 1, n).astype(np.float32),
        side=np.full(n, 224, dtype=np.int32),
        digest="bench",
    )


def index_timings(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        index = fabricated_index(n, cache)
        save_index(cache / "index.npz", index, {"fingerprint": {}})
        loads = []
        for _ in range(5):
            start = time.perf_counter()
            loaded = load_index(cache / "index.npz", cache)
            loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        load_or_make_split(cache, loaded, "holdout", 8, 0, 0.2)
        first_split = time.perf_counter() - start
        start = time.perf_counter()
        load_or_make_split(cache, loaded, "holdout", 8, 0, 0.2)
        reload_split = time.perf_counter() - start
    return {"index": statistics.median(loads), "split_draw": first_split, "split": reload_split}


def spread(values: list[float]) -> str:
    """Median and range, e.g. ``0.74 (0.69-0.78)``."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


DEFAULTS = {
    "images": 2000,
    "workers": 2,
    "batch_size": 64,
    "rounds": 5,  # alternating measurements
    "baseline_images": 1000,  # (b) is slow
    "data_dir": None,
}


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, "images=2000 workers=2"))
    if args.workers < 1:
        raise ConfigError("workers must be at least 1: the ceiling is per worker")
    root = Path(args.data_dir) if args.data_dir else user_cache_dir() / f"bench-{args.images}"
    start = time.perf_counter()
    ensure_synthetic(root, train_size=args.images, val_size=200, image_size=224, seed=0)
    print(
        f"dataset: {root} ({args.images} train images, 224x224; {time.perf_counter() - start:.1f}s)"
    )
    images = root / "train_set" / "images"
    paths = [str(images / n) for n in sorted(os.listdir(images))]
    w = args.workers

    decode_only(paths[:200])  # warm the page cache and the decoder
    pool = Pool(w)
    in_parallel(pool, decode_reused, paths[:200], w)

    original = DataLoader(
        OriginalDataset(root, args.baseline_images),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=w,
    )
    b = measure(lambda: iterate(original, range(1)))
    transfer = DataLoader(
        TransferOnly(len(paths)),
        batch_size=args.batch_size,
        num_workers=w,
        persistent_workers=True,
    )
    iterate(transfer, range(1))
    d = measure(lambda: iterate(transfer, range(2)))

    default, other = CONFIG.loader, next(name for name in LOADERS if name != CONFIG.loader)
    with tempfile.TemporaryDirectory() as tmp:
        datamodules = {
            name: AffectNetDataModule(
                root=str(root),
                image_size=224,
                batch_size=args.batch_size,
                num_workers=w,
                loader=name,
                protocol="official",
                cache_dir=tmp,
                seed=0,
                **AUGMENT,
            )
            for name in (default, other)
        }
        start = time.perf_counter()
        for datamodule in datamodules.values():
            datamodule.prepare_data()  # the first one builds the index, the second loads it
            datamodule.setup("fit")
        build = time.perf_counter() - start
        loaders = {name: dm.train_dataloader() for name, dm in datamodules.items()}
        for loader in loaders.values():
            iterate(loader, range(1))  # starts the persistent workers

        def normalised(batch: dict) -> dict:
            return datamodules[default].on_after_batch_transfer(batch, 0)

        # (e): the per-sample work in workers with no loader around it, each its own dataset copy
        # (its augmentation keeps generators); what any loader adds is the rest.
        train = datamodules[default].datasets["train"]
        shares = [
            (copy.deepcopy(train), list(range(k, len(train), w)), args.batch_size) for k in range(w)
        ]
        threads = ThreadPoolExecutor(w)

        rates: dict[str, list[Rate]] = {}
        epoch = 1
        for _ in range(args.rounds + 1):
            rates.setdefault("a1", []).append(measure(lambda: decode_only(paths)))
            for key, run in (("a2", decode_only), ("a3", decode_reused)):
                rates.setdefault(key, []).append(
                    measure(lambda r=run: in_parallel(pool, r, paths, w))
                )
            for key, run in (("e-processes", pool.map), ("e-threads", threads.map)):
                rates.setdefault(key, []).append(measure(lambda r=run: sum(r(load_only, shares))))
            for name, loader in loaders.items():
                for step, suffix in ((None, ""), (normalised, "+norm")):
                    epochs = range(epoch, epoch + 1)
                    run = measure(lambda ld=loader, e=epochs, s=step: iterate(ld, e, s))
                    rates.setdefault(name + suffix, []).append(run)
                    epoch += 1
    rates = {key: measured[1:] for key, measured in rates.items()}  # the first round warms up
    pool.close()
    threads.shutdown()

    def best(key: str, field: str = "per_second") -> float:
        return max(getattr(rate, field) for rate in rates[key])

    def ratios(key: str, ceiling: str, scale: int = 1, field: str = "per_second") -> list[float]:
        pairs = zip(rates[key], rates[ceiling], strict=True)
        return [getattr(c, field) / (scale * getattr(a, field)) for c, a in pairs]

    print(f"{'best of ' + str(args.rounds) + ' rounds':50}{'img/s':>8}{'img per CPU-s':>15}")
    rows = [
        ("(a1) decode only, 1 core, the other(s) idle", rates["a1"]),
        (f"(a2) decode only, {w} processes at once", rates["a2"]),
        (f"(a3) decode into one reused array, {w} processes", rates["a3"]),
        (f"(b) original loader, {w} workers", [b]),
        (f"(c) this loader, {w} {default} (default)", rates[default]),
        ("    + normalising on the CPU", rates[default + "+norm"]),
        (f"    with data.loader={other}", rates[other]),
        ("    + normalising on the CPU", rates[other + "+norm"]),
        (f"(d) moving batches only, {w} processes", [d]),
        (f"(e) per-sample work only, no loader, {w} processes", rates["e-processes"]),
        (f"    the same in {w} threads", rates["e-threads"]),
    ]
    for label, measured in rows:
        clock = max(r.per_second for r in measured)
        cpu = max(r.per_cpu_second for r in measured)
        print(f"{label:50}{clock:8.0f}{cpu:15.0f}")
    print(f"index build + check of {args.images + 200} samples: {build:.1f}s (once per dataset)")
    print(f"{'ratio: median (range) over rounds':50}{'by clock':>20}{'by CPU time':>20}")
    table = [
        (
            "(c)/(b), target >= 5",
            [c.per_second / b.per_second for c in rates[default]],
            [c.per_cpu_second / b.per_cpu_second for c in rates[default]],
        ),
        (
            "(c)/(a2), target >= 0.7",
            ratios(default, "a2"),
            ratios(default, "a2", field="per_cpu_second"),
        ),
        (
            "(c)/(a3), the stricter ceiling",
            ratios(default, "a3"),
            ratios(default, "a3", field="per_cpu_second"),
        ),
        (
            f"(c)/(a1 x {w})",
            ratios(default, "a1", w),
            ratios(default, "a1", field="per_cpu_second"),
        ),
        (
            "    + normalising on the CPU, /(a2)",
            ratios(default + "+norm", "a2"),
            ratios(default + "+norm", "a2", field="per_cpu_second"),
        ),
        (
            f"{default}/{other}",
            ratios(default, other),
            ratios(default, other, field="per_cpu_second"),
        ),
        (
            f"(a2)/(a1 x {w}): decoding on {w} cores at once",
            ratios("a2", "a1", w),
            ratios("a2", "a1", field="per_cpu_second"),
        ),
        (
            "(e) processes/(a2): any loader's limit",
            ratios("e-processes", "a2"),
            ratios("e-processes", "a2", field="per_cpu_second"),
        ),
        (
            "(e) threads/(a2): a threads loader's limit",
            ratios("e-threads", "a2"),
            ratios("e-threads", "a2", field="per_cpu_second"),
        ),
        (
            "(e) processes/(a3)",
            ratios("e-processes", "a3"),
            ratios("e-processes", "a3", field="per_cpu_second"),
        ),
    ]
    for label, clock, cpu in table:
        print(f"{label:50}{spread(clock):>20}{spread(cpu):>20}")
    us = {key: 1e6 / best(key, "per_cpu_second") for key in rates}
    print(
        f"CPU us per image: decode (a2) {us['a2']:.0f}, (a3) {us['a3']:.0f}; "
        f"{default} (c) {us[default]:.0f}, + normalising {us[default + '+norm']:.0f}; "
        f"{other} {us[other]:.0f}, of which moving "
        f"batches out of processes (d) {1e6 / d.per_cpu_second:.0f}"
    )
    cost = augmentation_cost(paths[:400])
    print(
        "CPU us per image of flip + noise alone (1 core, decoded images): "
        + ", ".join(f"{name} {value:.0f}" for name, value in cost.items())
    )

    n = 287_651
    timing = index_timings(n)
    print(
        f"index of {n:,} entries: load {timing['index']:.3f}s (target < 2 s); split: "
        f"draw + write {timing['split_draw']:.2f}s, load {timing['split']:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
