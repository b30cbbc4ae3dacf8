"""Loader images/s of AffectNet's CSV release against its .npy layout, on the same faces.

    python bench/bench_crops.py images=2000 context=2 workers=2

Generates (once, cached) ``images`` synthetic faces of ``size`` pixels in the .npy layout, and the
same faces as the CSV release: each pasted into a JPEG photograph ``context`` times its size
(quality 90, like the release's photographs), with its box in the file list
(fer_lightning/data/synthetic/csv_release.py). Then, alternating over ``rounds`` rounds after
one unrecorded warm-up round:

(n) the training loader (the configured data.loader backend, ``workers``, flip + noise of
    conf/data/affectnet.yaml, uint8 batches) over the .npy layout's train_set;
(c) the same loader over the CSV layout, which trains on the face crops the index cut once
    (fer_lightning/data/crops.py);
(p) the way not taken, cutting while decoding: each photograph decoded to RGB, its box sliced out
    and resized into a batch slot, in one thread; against
(n1) the .npy layout's per-sample decode into a slot (fer_lightning/data/decode.py), in one thread.

Prints each rate (best round), the ratios (c)/(n) (target >= 0.8) and (p)/(n1) as median (range)
over the rounds, and the time each layout's index took to build (the CSV one cuts the crops).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from bench_loader import AUGMENT, iterate, measure, spread

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.decode import decode_rgb
from fer_lightning.data.formats.affectnet_csv import READER as CSV
from fer_lightning.data.synthetic.csv_release import write_csv_release
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import TRAIN_SET
from fer_lightning.paths import user_cache_dir

DEFAULTS = {
    "images": 2000,
    "size": 224,  # of the faces, and the training size
    "context": 2.0,  # photograph side / face side
    "workers": 2,
    "batch_size": 64,
    "rounds": 5,
    "data_dir": None,
}
DONE = "bench-crops.done"


def datasets(args: SimpleNamespace) -> tuple[Path, Path]:
    """The .npy layout and the CSV release of the same faces, made once."""
    name = f"bench-crops-{args.images}-{args.size}"
    root = Path(args.data_dir) if args.data_dir else user_cache_dir() / name
    npy, csv = root / "npy", root / f"csv-{args.context:g}"
    ensure_synthetic(npy, args.images, max(16, args.images // 10), args.size, seed=0)
    if not (csv / DONE).is_file():
        write_csv_release(npy, csv, args.context, suffix=".jpg", quality=90)
        write_text_atomic(csv / DONE, "")
    return npy, csv


def prepared(root: Path, layout: str, args: SimpleNamespace) -> tuple[AffectNetDataModule, float]:
    """The datamodule of a layout, set up, and the seconds its index took to build."""
    dm = AffectNetDataModule(
        str(root),
        image_size=args.size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        format=layout,
        cache_dir=str(root.parent / f"cache-{root.name}"),
        rebuild_index=True,
        **AUGMENT,
    )
    start = time.perf_counter()
    dm.prepare_data()
    seconds = time.perf_counter() - start
    dm.setup("fit")
    return dm, seconds


def decode_npy(dm: AffectNetDataModule) -> int:
    """The .npy layout's per-sample decode into one slot, over the training split."""
    dataset = dm.datasets["train"]
    slot = np.empty((dataset.image_size, dataset.image_size, 3), np.uint8)
    for i in range(len(dataset)):
        decode_rgb(dataset.path(i), dataset.image_size, int(dataset.side[i]), out=slot)
    return len(dataset)


def crop_while_decoding(photos: list[tuple[str, tuple[int, int, int, int]]], size: int) -> int:
    """Every photograph decoded, its face sliced out and resized into one slot."""
    slot = np.empty((size, size, 3), np.uint8)
    for path, (x, y, w, h) in photos:
        face = cv2.imread(path, cv2.IMREAD_COLOR_RGB)[y : y + h, x : x + w]
        interpolation = cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
        cv2.resize(face, (size, size), dst=slot, interpolation=interpolation)
    return len(photos)


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, "images=2000 context=2"))
    if args.context < 1 or args.workers < 0 or args.rounds < 1:
        raise ConfigError("context must be at least 1, workers at least 0, rounds at least 1")
    npy_root, csv_root = datasets(args)
    npy, npy_build = prepared(npy_root, "affectnet", args)
    csv, csv_build = prepared(csv_root, "affectnet_csv", args)
    entries = [e for e in CSV.scan(csv_root) if e.subset == TRAIN_SET]
    photos = [(str(csv_root / e.image), e.box) for e in entries]
    loaders = {"n": npy.train_dataloader(), "c": csv.train_dataloader()}
    runs = {
        **{
            key: (lambda loader=loader: iterate(loader, range(1)))
            for key, loader in loaders.items()
        },
        "n1": lambda: decode_npy(npy),
        "p": lambda: crop_while_decoding(photos, args.size),
    }
    rates: dict[str, list] = {key: [] for key in runs}
    for round_ in range(args.rounds + 1):
        for key, run in runs.items():
            rate = measure(run)
            if round_:  # the first round warms caches and thread pools up
                rates[key].append(rate)
    faces = f"{len(photos)} train faces of {args.size} px in photographs {args.context:g}x"
    print(f"{faces}; data in {npy_root.parent}")
    names = {
        "n": f"(n) loader, .npy layout, {args.workers} workers",
        "c": f"(c) loader, CSV layout (crops cut once), {args.workers} workers",
        "n1": "(n1) .npy layout's decode per sample, 1 thread",
        "p": "(p) decode photograph + cut + resize per sample, 1 thread",
    }
    print(f"{'best of ' + str(args.rounds) + ' rounds':62}{'img/s':>8}")
    for key, name in names.items():
        print(f"{name:62}{max(r.per_second for r in rates[key]):8.0f}")

    def ratio(top: str, bottom: str) -> str:
        pairs = zip(rates[top], rates[bottom], strict=True)
        return spread([a.per_second / b.per_second for a, b in pairs])

    print(f"{'ratio: median (range) over rounds':62}")
    print(f"{'(c)/(n), target >= 0.8':62}{ratio('c', 'n'):>20}")
    print(f"{'(p)/(n1): cutting while decoding':62}{ratio('p', 'n1'):>20}")
    print(f"index build: .npy layout {npy_build:.1f}s, CSV layout with crops {csv_build:.1f}s")
    sides = statistics.median(int(s) for s in csv.datasets["train"].side)
    print(f"median stored side of the crops: {sides} px")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
