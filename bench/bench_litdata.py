"""LitData's optimized format against the decoded store, reading decoded samples (needs litdata).

    pip install litdata && nice python bench/bench_litdata.py images=2000 size=224

Both hold the same decoded uint8 samples of bench_loader.py's synthetic set (224x224 JPEGs,
generated once): the decoded store (fer_lightning/data/decoded_store.py), and LitData's
``optimize`` output (one numpy array per sample, uncompressed chunks). Then, in this process, in
the order of a shuffled epoch, after one unrecorded pass: the store's ``read`` into a reused
batch slot, and ``StreamingDataset[i]`` (random access into its chunks) copied into the same
slot; per ``rounds`` rounds alternating, the median images/s and the ratio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.decoded_store import build_store
from fer_lightning.data.index import cache_dir_for, load_or_build_index
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.errors import ConfigError
from fer_lightning.paths import user_cache_dir

DEFAULTS = {"images": 2000, "size": 224, "rounds": 5}


class Sample:
    """Sample ``row`` of the store, for LitData's ``optimize`` (picklable, unlike a lambda)."""

    def __init__(self, store) -> None:
        self.store = store

    def __call__(self, row: int) -> np.ndarray:
        return self.store.read(row)


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, "images=2000 size=224"))
    try:
        import litdata
    except ImportError:
        raise ConfigError("this bench needs litdata: pip install litdata") from None
    root = user_cache_dir() / f"bench-{args.images}"
    ensure_synthetic(root, train_size=args.images, val_size=200, image_size=224, seed=0)
    cache = cache_dir_for(root)
    index, _ = load_or_build_index(root, cache, quiet=True)
    store = build_store(cache, index, args.size, None)
    order = np.random.default_rng(0).permutation(store.count).tolist()
    slot = np.empty((args.size, args.size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        litdata.optimize(
            fn=Sample(store),
            inputs=list(range(store.count)),
            output_dir=out,
            chunk_bytes="64MB",
            num_workers=1,
        )
        print(f"litdata optimize of {store.count} samples: {time.perf_counter() - start:.1f}s")
        streaming = litdata.StreamingDataset(out)

        def by_store() -> None:
            for row in order:
                store.read(row, slot)

        def by_litdata() -> None:
            for row in order:
                slot[...] = streaming[row]

        rates: dict[str, list[float]] = {"store": [], "litdata": []}
        for k in range(args.rounds + 1):
            for name, run in (("store", by_store), ("litdata", by_litdata)):
                start = time.perf_counter()
                run()
                if k:
                    rates[name].append(store.count / (time.perf_counter() - start))
    ratio = [a / b for a, b in zip(rates["store"], rates["litdata"], strict=True)]
    print(f"{args.size} px, one process, random order; median images/s of {args.rounds} rounds")
    for name, values in rates.items():
        print(f"{name:10}{statistics.median(values):10.0f}")
    print(f"store/litdata {statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
    for path in (store.pixels, store.pixels.with_suffix(".npz")):
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
