"""Training-loader throughput against the original project's loader and the decode ceiling.

    python bench/bench_loader.py --images 2000 --workers 2

Generates (once, cached) a synthetic AffectNet-layout folder of 224x224 JPEGs, then measures in
one run:

(a) decode only: cv2.imread + BGR->RGB in a loop on one core, the ceiling per worker;
(b) the original project's loader: index by os.listdir, per sample cv2.imread, three np.load,
    albumentations HorizontalFlip + GaussNoise, a PIL round trip, torchvision ToTensor + Normalize;
(c) this project's training loader at image_size 224 with the same augmentation semantics (random
    flip p=0.5, additive Gaussian noise p=0.5), including the batched normalisation that
    on_after_batch_transfer does (here on the CPU, in the main process);

and the time to load a 287,651-entry index (AffectNet's train_set) and its split.
Targets: (c) >= 5x (b), and (c) >= 0.7 x (a) x workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from fer_lightning.data.affectnet import Index, load_index, save_index
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.split import load_or_make_split
from fer_lightning.data.synthetic import AFFECTNET_TRAIN_COUNTS, ensure_synthetic
from fer_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD

# (c) uses the configured default augmentation.
AUGMENT = OmegaConf.to_container(
    OmegaConf.load(
        Path(__file__).resolve().parent.parent / "conf" / "data" / "affectnet.yaml"
    ).augment
)


def decode_only(paths: list[str]) -> float:
    """Images per second of cv2.imread + cvtColor on this core."""
    start = time.perf_counter()
    for path in paths:
        cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    return len(paths) / (time.perf_counter() - start)


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


def loader_rate(loader: DataLoader, epochs: int, step=None) -> tuple[float, list[float]]:
    """Mean images/s over the epochs after the first (which includes worker start-up)."""
    rates = []
    for epoch in range(epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        count, start = 0, time.perf_counter()
        for batch in loader:
            if step is not None:
                batch = step(batch)
            count += len(batch["image"] if isinstance(batch, dict) else batch[0])
        rates.append(count / (time.perf_counter() - start))
    steady = rates[1:] or rates
    return statistics.mean(steady), rates


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="of (c); the first is warm-up")
    parser.add_argument("--baseline-images", type=int, default=1000, help="(b) is slow")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_lightning"
    root = args.data_dir or cache / f"bench-{args.images}"
    start = time.perf_counter()
    ensure_synthetic(root, train_size=args.images, val_size=200, image_size=224, seed=0)
    print(
        f"dataset: {root} ({args.images} train images, 224x224; {time.perf_counter() - start:.1f}s)"
    )
    images = root / "train_set" / "images"
    paths = [str(images / n) for n in sorted(os.listdir(images))]

    decode_only(paths[:200])  # warm the page cache and the decoder
    a = decode_only(paths)
    print(f"(a) decode only, 1 core:          {a:8.0f} img/s")

    original = DataLoader(
        OriginalDataset(root, args.baseline_images),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
    )
    b, _ = loader_rate(original, 1)
    print(f"(b) original loader, {args.workers} workers:  {b:8.0f} img/s")

    with tempfile.TemporaryDirectory() as tmp:
        datamodule = AffectNetDataModule(
            root=str(root),
            image_size=224,
            batch_size=args.batch_size,
            num_workers=args.workers,
            protocol="official",
            augment=AUGMENT,
            cache_dir=tmp,
            seed=0,
        )
        start = time.perf_counter()
        datamodule.prepare_data()
        datamodule.setup("fit")
        build = time.perf_counter() - start
        loader = datamodule.train_dataloader()
        c, rates = loader_rate(
            loader, args.epochs, lambda x: datamodule.on_after_batch_transfer(x, 0)
        )
    print(
        f"(c) this loader, {args.workers} workers:      {c:8.0f} img/s "
        f"(epochs: {', '.join(f'{r:.0f}' for r in rates)}; first one starts the workers)"
    )
    print(
        f"    index build + check of {args.images + 200} samples: {build:.1f}s (once per dataset)"
    )
    print(f"(c)/(b)             = {c / b:5.1f}x  (target >= 5)")
    print(f"(c)/(a x {args.workers} workers) = {c / (a * args.workers):5.2f}   (target >= 0.7)")

    n = 287_651
    timing = index_timings(n)
    print(
        f"index of {n:,} entries: load {timing['index']:.3f}s (target < 2 s); split: "
        f"draw + write {timing['split_draw']:.2f}s, load {timing['split']:.2f}s"
    )


if __name__ == "__main__":
    main()
