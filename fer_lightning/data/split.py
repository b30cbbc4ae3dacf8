"""Train/val/test splits: seeded, stratified, written to disk once, and checked for leaks.

The original project redrew its 80/20 split at every run, so its "test" images had partly been
trained on. Here a split is a function of (index content, protocol, classes, seed, fraction),
written as JSON beside the index the first time and read back afterwards; every process and every
rank reads the same file. It is recomputed only when the index content changed (a different
dataset makes the old ids meaningless), with a warning, since results are then not comparable.

That cache serves new runs. A run keeps its own record, `split.json` in its run directory
(`RECORD_FILE`, docs/run-directory.md): the sample keys of each part as it first drew them. A
resumed run, and eval of its checkpoints, read that record, so a dataset changed in between never
moves a trained sample into the test part; a recorded sample that is gone or no longer usable is
an error, not a redraw.

Protocols:

- ``holdout`` (the original's): train_set is split stratified into train and test
  (``test_fraction``); val_set validates.
- ``official`` (most papers'): val_set is the test set; a stratified ``val_fraction`` of train_set
  validates.
- ``predefined`` (for layouts with their own parts: FER2013, RAF-DB, a manifest's ``split``
  column): each sample's subset is its part. A layout without a test part has a stratified
  ``test_fraction`` of train_set tested (as ``holdout`` does); one without a validation part has a
  stratified ``val_fraction`` of the rest of train_set validate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fer_lightning.data.index import Index, read_cache_json
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import TEST_SET, TRAIN_SET, VAL_SET

log = logging.getLogger(__name__)

PROTOCOLS = ("holdout", "official", "predefined")
PARTS = ("train", "val", "test")
RECORD_FILE = "split.json"


class SplitLeakError(ConfigError):
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
    index: Index,
    classes: int,
    protocol: str,
    seed: int,
    fraction: float,
    test_fraction: float | None = None,
) -> dict[str, np.ndarray]:
    """Index rows per part; ``fraction`` is the test (holdout) or val (official, predefined)
    fraction; ``test_fraction`` the test fraction of a predefined split without a test part."""
    kept = index.expression < classes
    pool = np.flatnonzero(kept & (index.subset == TRAIN_SET))
    other = np.flatnonzero(kept & (index.subset == VAL_SET))
    if protocol == "predefined":
        if test_fraction is None:
            raise ValueError("the predefined protocol needs a test_fraction")
        return _predefined(index, kept, seed, fraction, test_fraction)
    held = stratified_holdout(index.expression[pool], fraction, seed)
    if protocol == "holdout":
        return {"train": pool[~held], "val": other, "test": pool[held]}
    return {"train": pool[~held], "val": pool[held], "test": other}


def _predefined(
    index: Index, kept: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """The layout's own parts; a missing test, then val, part drawn from train_set."""
    parts = {
        part: np.flatnonzero(kept & (index.subset == subset))
        for part, subset in (("train", TRAIN_SET), ("val", VAL_SET), ("test", TEST_SET))
    }
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
        if len(parts[part]) == 0:
            pool = parts["train"]
            held = stratified_holdout(index.expression[pool], fraction, seed)
            parts["train"], parts[part] = pool[~held], pool[held]
    return parts


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


def split_path(
    cache_dir: Path,
    protocol: str,
    classes: int,
    seed: int,
    fraction: float,
    test_fraction: float | None = None,
) -> Path:
    test = "" if test_fraction is None else f"-test{test_fraction:g}"
    return (
        cache_dir / f"split-{protocol}-{classes}classes-seed{seed}-fraction{fraction:g}{test}.json"
    )


def load_or_make_split(
    cache_dir: Path,
    index: Index,
    protocol: str,
    classes: int,
    seed: int,
    fraction: float,
    *,
    test_fraction: float | None = None,
) -> dict[str, np.ndarray]:
    """Index rows per part, from the split file when it matches this index, else drawn and saved.

    ``test_fraction`` is for ``predefined`` only (see `make_split`)."""
    path = split_path(cache_dir, protocol, classes, seed, fraction, test_fraction)
    saved = read_cache_json(path)
    if saved is not None and saved.get("index_digest") == index.digest:
        row_of = {key: row for row, key in enumerate(index.keys(np.arange(len(index))))}
        assert_disjoint(saved)
        return {part: np.array([row_of[k] for k in saved[part]], dtype=np.int64) for part in PARTS}
    if saved is not None:
        log.warning("the dataset changed since %s was written: drawing a new split", path)
    rows = make_split(index, classes, protocol, seed, fraction, test_fraction)
    keys = {part: index.keys(rows[part]) for part in PARTS}
    assert_disjoint(keys)
    content = {
        "protocol": protocol,
        "classes": classes,
        "seed": seed,
        "fraction": fraction,
        **({} if test_fraction is None else {"test_fraction": test_fraction}),
        "index_digest": index.digest,
        "sizes": {part: len(rows[part]) for part in PARTS},
        **keys,
    }
    write_text_atomic(path, json.dumps(content) + "\n")
    return rows


def write_split_record(path: Path, index: Index, rows: dict[str, np.ndarray]) -> None:
    """Writes a run's record of its split: ``{"train": [...], "val": [...], "test": [...]}`` of
    sample keys (``<subset>/<id>``, the id being the image file's stem)."""
    write_text_atomic(path, json.dumps({part: index.keys(rows[part]) for part in PARTS}) + "\n")


def read_split_record(path: Path, index: Index, classes: int) -> dict[str, np.ndarray]:
    """Index rows per part of a run's split record, every recorded sample required.

    A sample that is gone from the dataset, was excluded by the check, or is of a class the run
    leaves out is a ConfigError: dropping it silently would change the run's experiment, and
    drawing a new split would put trained samples into its test part.
    """
    redo = "restore it, or start over with a new split (train: resume=false)"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read the split record {path} ({reason}): {redo}") from exc
    if not isinstance(record, dict) or not all(
        isinstance(record.get(part), list) and all(isinstance(k, str) for k in record[part])
        for part in PARTS
    ):
        raise ConfigError(
            f"{path} is not a split record (lists of sample keys under train, val, test): {redo}"
        )
    try:
        assert_disjoint(record)
    except SplitLeakError as exc:
        raise ConfigError(f"{path}: {str(exc).split(':')[0]}: {redo}") from exc
    row_of = {key: row for row, key in enumerate(index.keys(np.arange(len(index))))}
    missing = [
        key
        for part in PARTS
        for key in record[part]
        if key not in row_of or index.expression[row_of[key]] >= classes
    ]
    if missing:
        raise ConfigError(
            f"{len(missing)} sample(s) recorded in {path} are gone from {index.root} or no longer "
            f"usable (first: {missing[0]}; see data.check): restore them to continue, or start "
            "over with a new split (train: resume=false)"
        )
    return {part: np.array([row_of[k] for k in record[part]], dtype=np.int64) for part in PARTS}
