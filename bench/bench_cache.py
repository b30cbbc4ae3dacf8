"""The training loader reading the decoded cache (data.cache=decoded) against the JPEG ceiling.

    nice python bench/bench_cache.py images=2000 workers=2

The companion of bench_loader.py, on its synthetic set of 224x224 JPEGs (generated once, cached)
and with its measurements of the decode ceiling: per image size (``sizes``), alternating over
``rounds`` rounds after one unrecorded warm-up round,

(a2) decode only in ``workers`` processes at once, each image a new array, at that size (JPEG's
     reduced decoding for 112 from 224, as the loader decodes it): "decode-only images/s per
     core times workers", bench_loader.py's ceiling;
(c)  the JPEG loader, data.loader=threads with ``workers`` threads, flip and noise in the loader;
(f)  the same loader reading the decoded cache instead, flip and noise in the loader;
(g)  the same with data.augment_on=device, where the loader only copies bytes; and once more with
     the flip and noise applied after it, as on_after_batch_transfer does (here on the CPU);

Target: (f) >= 3 x (a2) at 224 and at 112 px with 2 workers. Then the store's build: a set of
``build_samples`` training ids (hard links to the generated images, so decoding costs what it
costs for distinct files) is indexed and its decoded store built at each size, timed; the size
and build time for AffectNet's 287,651 samples follow in proportion.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from types import SimpleNamespace

import cv2
from bench_loader import AUGMENT, Rate, in_parallel, iterate, measure, spread

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.decoded_store import build_store, store_paths
from fer_lightning.data.index import cache_dir_for, load_or_build_index
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.labels import SUBSETS
from fer_lightning.paths import user_cache_dir

AFFECTNET = 287_651
STORED = 224  # the generated images' size
FLAGS = {1: cv2.IMREAD_COLOR_RGB, 2: cv2.IMREAD_COLOR_RGB | cv2.IMREAD_REDUCED_GRAYSCALE_2}

DEFAULTS = {
    "images": 2000,
    "workers": 2,
    "batch_size": 64,
    "rounds": 5,
    "sizes": [224, 112],
    "build_samples": 20_000,  # 0: skip the build measurement
    "data_dir": None,
}


def decode_at(size: int, paths: list[str]) -> int:
    """Every path decoded to RGB at ``size`` (224 or 112), each into a new array."""
    flag = FLAGS[STORED // size]
    for path in paths:
        cv2.imread(path, flag)
    return len(paths)


def datamodule(root: Path, cache_dir: str, size: int, args: SimpleNamespace, **options: object):
    dm = AffectNetDataModule(
        root=str(root),
        image_size=size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        loader="threads",
        protocol="official",
        cache_dir=cache_dir,
        seed=0,
        **{**AUGMENT, **options},
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def linked_dataset(source: Path, target: Path, samples: int) -> Path:
    """``samples`` training ids (and the source's val_set) hard-linked to the source's images."""
    if (target / "train_set" / "images" / f"{samples - 1}.jpg").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    for subset in SUBSETS:
        for part in ("images", "annotations"):
            (target / subset / part).mkdir(parents=True)
    images = sorted(os.listdir(source / "train_set" / "images"), key=lambda n: int(n[:-4]))
    ids = [name[:-4] for name in images]
    for k in range(samples):
        sid = ids[k % len(ids)]
        os.link(
            source / "train_set/images" / f"{sid}.jpg", target / "train_set/images" / f"{k}.jpg"
        )
        for part in ("exp", "val", "aro", "lnd"):
            os.link(
                source / "train_set/annotations" / f"{sid}_{part}.npy",
                target / "train_set/annotations" / f"{k}_{part}.npy",
            )
    for folder in ("images", "annotations"):
        for entry in os.listdir(source / "val_set" / folder):
            os.link(source / "val_set" / folder / entry, target / "val_set" / folder / entry)
    return target


def build_figures(root: Path, args: SimpleNamespace) -> None:
    """Times the store's build of ``build_samples`` samples per size; scales it to AffectNet."""
    target = linked_dataset(
        root, root.parent / f"{root.name}-linked-{args.build_samples}", args.build_samples
    )
    cache = cache_dir_for(target)  # the index is kept for the next run; the stores are not
    index, _ = load_or_build_index(target, cache, quiet=True)
    for size in args.sizes:
        start = time.perf_counter()
        store = build_store(cache, index, size, args.workers)
        seconds = time.perf_counter() - start
        gigabytes = store.count * store.sample_bytes / 1e9
        scale = AFFECTNET / store.count
        print(
            f"store of {store.count:,} samples at {size} px: {gigabytes:.2f} GB, built in "
            f"{seconds:.1f}s ({store.count / seconds:.0f} samples/s, {args.workers} threads); "
            f"AffectNet's {AFFECTNET:,}: {gigabytes * scale:.1f} GB, "
            f"{seconds * scale / 60:.1f} min"
        )
        for path in store_paths(cache, index, size):
            path.unlink()


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, "images=2000 workers=2"))
    root = Path(args.data_dir) if args.data_dir else user_cache_dir() / f"bench-{args.images}"
    ensure_synthetic(root, train_size=args.images, val_size=200, image_size=STORED, seed=0)
    images = root / "train_set" / "images"
    paths = [str(images / n) for n in sorted(os.listdir(images))]
    w = args.workers
    pool = Pool(w)
    print(
        f"{args.images} images, {w} workers, best of {args.rounds} rounds; ratios: median (range)"
    )
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            loaders = {
                "c": datamodule(root, tmp, size, args),
                "f": datamodule(root, tmp, size, args, cache="decoded"),
                "g": datamodule(root, tmp, size, args, cache="decoded", augment_on="device"),
            }
            trains = {key: dm.train_dataloader() for key, dm in loaders.items()}
            augment, sampler = loaders["g"].device_augment, trains["g"].sampler

            def augmented(batch: dict, augment=augment, sampler=sampler) -> dict:
                plan = augment.plan(batch["index"], sampler.epoch)
                return {**batch, "image": augment.apply(batch["image"], plan)}

            rates: dict[str, list[Rate]] = {}
            epoch = 1
            for _ in range(args.rounds + 1):
                decode = functools.partial(decode_at, size)
                rates.setdefault("a2", []).append(
                    measure(lambda d=decode: in_parallel(pool, d, paths, w))
                )
                for key, step in (("c", None), ("f", None), ("g", None), ("g+aug", augmented)):
                    loader = trains[key[0]]
                    run = measure(
                        lambda ld=loader, e=epoch, s=step: iterate(ld, range(e, e + 1), s)
                    )
                    rates.setdefault(key, []).append(run)
                    epoch += 1
        rates = {key: measured[1:] for key, measured in rates.items()}
        labels = {
            "a2": f"(a2) decode only, {w} processes at once",
            "c": f"(c) JPEG loader, {w} threads, flip + noise",
            "f": "(f) decoded cache, flip + noise in the loader",
            "g": "(g) decoded cache, augment_on=device: copy only",
            "g+aug": "    + the flip and noise after it (CPU)",
        }
        print(f"\n{size} px{'':42}{'img/s':>8}{'img per CPU-s':>15}{'/(a2) by clock':>20}")
        for key, label in labels.items():
            clock = max(r.per_second for r in rates[key])
            cpu = max(r.per_cpu_second for r in rates[key])
            ratio = [
                r.per_second / a.per_second for r, a in zip(rates[key], rates["a2"], strict=True)
            ]
            print(f"{label:48}{clock:8.0f}{cpu:15.0f}{spread(ratio):>20}")
        ratio = statistics.median(
            r.per_second / a.per_second for r, a in zip(rates["f"], rates["a2"], strict=True)
        )
        verdict = "met" if ratio >= 3 else "NOT met"
        print(f"target (f)/(a2) >= 3 at {size} px: {verdict} ({ratio:.2f})")
    pool.close()
    if args.build_samples:
        print()
        build_figures(root, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
