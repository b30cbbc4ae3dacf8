"""Train/val/test splits: seeded, stratified, written to disk once, and checked for leaks.

The original project redrew its 80/20 split at every run, so its "test" images had partly been
trained on. Here a split is a function of (index content, protocol, classes, seed, fraction),
written as JSON beside the index the first time and read back afterwards; every process and every
rank reads the same file. It is recomputed only when the index content changed (a different
dataset makes the old ids meaningless), with a warning, since results are then not comparable.

Protocols:

- ``holdout`` (the original's): train_set is split stratified into train and test
  (``test_fraction``); val_set validates.
- ``official`` (most papers'): val_set is the test set; a stratified ``val_fraction`` of train_set
  validates.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fer_lightning.data.index import Index, read_cache_json
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import TRAIN_SET, VAL_SET

log = logging.getLogger(__name__)

PROTOCOLS = ("holdout", "official")
PARTS = ("train", "val", "test")


class SplitLeakError(RuntimeError):
    """A sample is in two parts of a split; results computed on it would be invalid."""


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows held out: round(fraction * n) rows, spread over the classes in
    proportion to their counts (largest remainders get the rounding, ties to the lower code).

    Each class is permuted by its own generator seeded by (seed, class), so which rows of a
    class are held out does not depend on the other classes' rows.
    """
    codes, counts = np.unique(labels, return_counts=True)
    quotas = fraction * counts
    take = np.floor(quotas).astype(np.int64)
    total = int(np.floor(fraction * len(labels) + 0.5))
    by_remainder = np.argsort(-(quotas - take), kind="stable")
    take[by_remainder[: max(0, total - int(take.sum()))]] += 1
    held = np.zeros(len(labels), dtype=bool)
    for code, count in zip(codes, take, strict=True):
        rows = np.flatnonzero(labels == code)
        rng = np.random.default_rng([seed, int(code)])
        held[rng.permutation(rows)[:count]] = True
    return held


def make_split(
    index: Index, protocol: str, classes: int, seed: int, fraction: float
) -> dict[str, np.ndarray]:
    """Index rows per part; ``fraction`` is the test (holdout) or val (official) fraction."""
    kept = index.expression < classes
    pool = np.flatnonzero(kept & (index.subset == TRAIN_SET))
    other = np.flatnonzero(kept & (index.subset == VAL_SET))
    held = stratified_holdout(index.expression[pool], fraction, seed)
    if protocol == "holdout":
        return {"train": pool[~held], "val": other, "test": pool[held]}
    return {"train": pool[~held], "val": pool[held], "test": other}


def assert_disjoint(keys: dict[str, list[str]]) -> None:
    """Raise SplitLeakError if any sample key is in two parts."""
    seen: dict[str, str] = {}
    for part in PARTS:
        for key in keys[part]:
            if key in seen:
                raise SplitLeakError(
                    f"{key} is in both {seen[key]} and {part}: the split leaks; delete the split "
                    "file to redraw it"
                )
            seen[key] = part


def split_path(cache_dir: Path, protocol: str, classes: int, seed: int, fraction: float) -> Path:
    return cache_dir / f"split-{protocol}-{classes}classes-seed{seed}-fraction{fraction:g}.json"


def load_or_make_split(
    cache_dir: Path, index: Index, protocol: str, classes: int, seed: int, fraction: float
) -> dict[str, np.ndarray]:
    """Index rows per part, from the split file when it matches this index, else drawn and saved."""
    path = split_path(cache_dir, protocol, classes, seed, fraction)
    saved = read_cache_json(path)
    if saved is not None and saved.get("index_digest") == index.digest:
        row_of = {key: row for row, key in enumerate(index.keys(np.arange(len(index))))}
        assert_disjoint(saved)
        return {part: np.array([row_of[k] for k in saved[part]], dtype=np.int64) for part in PARTS}
    if saved is not None:
        log.warning("the dataset changed since %s was written: drawing a new split", path)
    rows = make_split(index, protocol, classes, seed, fraction)
    keys = {part: index.keys(rows[part]) for part in PARTS}
    assert_disjoint(keys)
    content = {
        "protocol": protocol,
        "classes": classes,
        "seed": seed,
        "fraction": fraction,
        "index_digest": index.digest,
        "sizes": {part: len(rows[part]) for part in PARTS},
        **keys,
    }
    write_text_atomic(path, json.dumps(content) + "\n")
    return rows
