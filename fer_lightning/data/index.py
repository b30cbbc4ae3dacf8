"""The index of a dataset: every sample checked once, the usable ones kept, cached beside it.

Building the index reads every sample's labels and decodes every image once (in a process pool),
so a bad sample is found before training, excluded, and counted in a report instead of crashing a
worker hours into a run. Later runs load the index, a handful of numpy arrays, in well under a
second. The layout on disk is read by a reader of fer_lightning/data/formats.

Each layout other than AffectNet's (and each setting of its reader, such as FER2013's
``data.labels``) keeps its cache in its own folder of the cache directory, so two label spaces of
the same images never replace each other's index or splits.

When is the cached index stale? When the layout's fingerprint changed: for AffectNet's layout, the
modification time and entry count of each of its four data directories. Adding, removing or
renaming a file changes both, so the index is rebuilt. Overwriting a file in place under the same
name changes neither, and this is not detected (detecting it would mean a ``stat`` of all ~1.15M
files on every run): run ``python -m fer_lightning.data.check data.root=DIR`` or set
``data.rebuild_index=true`` after doing that. An image that stops decoding anyway is replaced at
load time (see fer_lightning/data/dataset.py). See docs/data.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning.data.check_report import KEPT, REPORT_FILE, CheckReport, write_report
from fer_lightning.data.crops import CROPS_DIR, Cropper
from fer_lightning.data.decode import IMAGE_PROBLEMS, inspect_image
from fer_lightning.data.formats import (
    DEFAULT_LAYOUT,
    LABEL_PROBLEMS,
    Reader,
    Sample,
    crop_margin,
    image_root,
    layout_subsets,
    reader,
    settings_of,
)
from fer_lightning.data.odd_files import FILE_PROBLEMS
from fer_lightning.errors import ConfigError
from fer_lightning.files import atomic_write
from fer_lightning.labels import EXPRESSION_NAMES, SUBSETS
from fer_lightning.paths import user_cache_dir

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # 2: image files relative to the dataset root
INDEX_FILE = "index.npz"

# Below this many samples a process pool costs more than it saves.
_POOL_MIN_SAMPLES = 512


@dataclass(frozen=True)
class Index:
    """Every usable sample of a dataset, one row each, sorted by (subset, id).

    Columns are numpy arrays (no Python objects), so loading 287k rows takes milliseconds and
    forked DataLoader workers share them without copy-on-access growth.
    """

    root: Path
    subset: np.ndarray  # uint8, position in SUBSETS
    ids: np.ndarray  # str
    files: np.ndarray  # str, relative to root (the layout's image folder), or absolute
    expression: np.ndarray  # int8, 0-7
    valence: np.ndarray  # float32, NaN where the dataset has no valence
    arousal: np.ndarray  # float32, NaN where the dataset has no arousal
    side: np.ndarray  # int32, the shorter side of the stored image, to pick a reduced decode
    digest: str  # identifies the content, so splits written for other data are not reused

    _COLUMNS = ("subset", "ids", "files", "expression", "valence", "arousal", "side")

    def __len__(self) -> int:
        return len(self.ids)

    def keys(self, rows: np.ndarray) -> list[str]:
        """``<subset>/<id>`` per row: unique across the whole dataset."""
        return [f"{SUBSETS[s]}/{i}" for s, i in zip(self.subset[rows], self.ids[rows], strict=True)]

    def paths(self, rows: np.ndarray) -> list[str]:
        """The image path per row."""
        return [os.path.join(self.root, f) for f in self.files[rows]]


def _digest(columns: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha1()
    for name in ("subset", "ids", "expression", "valence", "arousal"):
        sha.update(np.ascontiguousarray(columns[name]).tobytes())
    return sha.hexdigest()[:16]


def _check(
    source: Reader, root: Path, images: Path, entry: Any, cropper: Cropper
) -> tuple[Sample, int, int, int]:
    """(sample, height, width, channels) of one entry: its labels read, its face cut out when it
    has a box and no problem, its image (a file under ``images``) inspected."""
    sample = source.read(root, entry)
    if sample.box is not None and sample.image is not None and not sample.problems:
        sample = cropper.cut(images, sample)
    if sample.image is None:
        return sample, 0, 0, 0
    kind, height, width, channels = inspect_image(images / sample.image)
    if kind is not None:
        sample = replace(sample, problems=(*sample.problems, kind))
    return sample, height, width, channels


def _run_checks(
    source: Reader, root: Path, images: Path, entries: list, workers: int, cropper: Cropper
) -> list[tuple]:
    if workers <= 1 or len(entries) < _POOL_MIN_SAMPLES:
        return [_check(source, root, images, e, cropper) for e in entries]
    n = len(entries)
    with ProcessPoolExecutor(workers) as pool:
        chunk = max(1, min(512, n // (8 * workers)))
        args = [source] * n, [root] * n, [images] * n, entries, [cropper] * n
        return list(pool.map(_check, *args, chunksize=chunk))


def _finite_range(values: np.ndarray) -> list[float]:
    """[min, max] of the finite values (NaN marks a sample without this label); [] if none."""
    finite = values[np.isfinite(values)]
    return [float(finite.min()), float(finite.max())] if len(finite) else []


def build_index(
    root: Path,
    cropper: Cropper,
    workers: int | None = None,
    layout: str = DEFAULT_LAYOUT,
    options: Mapping[str, Any] | None = None,
    images: Path | None = None,
) -> tuple[Index, CheckReport]:
    """Check every sample of the dataset at ``root`` and index the usable ones; their images are
    files under ``images`` (``root`` unless the layout stores them, see `image_root`), faces of a
    layout with boxes cut out by ``cropper``."""
    source = reader(layout, **(options or {}))
    images = root if images is None else images
    entries = list(source.scan(root))
    workers = workers or len(os.sched_getaffinity(0))
    results = _run_checks(source, root, images, entries, workers, cropper)
    descriptions = {**source.problems, **LABEL_PROBLEMS, **FILE_PROBLEMS, **IMAGE_PROBLEMS, **KEPT}
    report = CheckReport(root=str(root))
    problems: dict[str, list[str]] = {}
    kept: list[tuple[Sample, int]] = []
    present = set(layout_subsets(source)) | {r[0].subset for r in results}
    for subset in sorted(present):
        name = SUBSETS[subset]
        checked = sorted(
            (r for r in results if r[0].subset == subset), key=lambda r: r[0].sample_id
        )
        sizes = Counter((h, w) for _, h, w, _ in checked if h)
        usual = sizes.most_common(1)[0][0] if sizes else None
        # A grayscale dataset (FER2013) is not flagged sample by sample.
        modes = Counter(c for _, h, _, c in checked if h)
        usual_mode = modes.most_common(1)[0][0] if modes else 3
        usable = []
        for sample, height, width, channels in checked:
            ok = not sample.problems  # every problem a reader or the image check finds excludes
            kinds = list(sample.problems)
            if ok and channels not in (3, usual_mode):
                kinds.append("unexpected_mode")
            if ok and (height, width) != usual:
                kinds.append("unexpected_size")
            for kind in kinds:
                problems.setdefault(kind, []).append(f"{name}/{sample.sample_id}")
            if ok:
                usable.append((sample, min(height, width)))
        kept += usable
        report.usable[name] = len(usable)
        report.excluded[name] = len(checked) - len(usable)
        codes = np.array([s.expression for s, _ in usable], dtype=np.int64)
        report.class_counts[name] = np.bincount(codes, minlength=len(EXPRESSION_NAMES)).tolist()
        va = np.array([(s.valence, s.arousal) for s, _ in usable], dtype=np.float64).reshape(-1, 2)
        report.va_ranges[name] = {
            axis: _finite_range(va[:, j]) for j, axis in enumerate(("valence", "arousal"))
        }
    report.problems = dict(sorted(problems.items()))
    report.descriptions = {kind: descriptions[kind] for kind in report.problems}
    samples = [s for s, _ in kept]
    arrays = {
        "subset": np.array([s.subset for s in samples], dtype=np.uint8),
        "ids": np.array([s.sample_id for s in samples], dtype=str),
        "files": np.array([s.image for s in samples], dtype=str),
        "expression": np.array([s.expression for s in samples], dtype=np.int8),
        "valence": np.array([s.valence for s in samples], dtype=np.float32),
        "arousal": np.array([s.arousal for s in samples], dtype=np.float32),
        "side": np.array([side for _, side in kept], dtype=np.int32),
    }
    return Index(root=images, digest=_digest(arrays), **arrays), report


def save_index(path: Path, index: Index, meta: dict) -> None:
    """Write the index atomically (concurrent runs may build it at the same time)."""
    arrays = {name: getattr(index, name) for name in Index._COLUMNS}
    meta = {**meta, "version": INDEX_VERSION, "digest": index.digest}
    with atomic_write(path) as file:  # a file object: np.savez would add .npz to a path
        np.savez(file, meta=np.array(json.dumps(meta)), **arrays)


# What reading a damaged cache file (cut short, overwritten, hand-edited) can raise.
_DAMAGED = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile)


def _warn_damaged(path: Path, error: BaseException) -> None:
    log.warning("%s is damaged (%s): rebuilding it", path, type(error).__name__)


def read_cache_json(path: Path) -> dict | None:
    """A JSON object the cache holds, or None when there is none, or (with a warning) when it is
    damaged, for the caller to rebuild it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except _DAMAGED as error:
        _warn_damaged(path, error)
        return None
    if not isinstance(data, dict):
        _warn_damaged(path, TypeError())
        return None
    return data


def read_index_meta(path: Path) -> dict | None:
    """The metadata of a saved index, or None if there is no readable one."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return json.loads(str(saved["meta"]))
    except _DAMAGED:
        return None


def load_index(path: Path, root: Path) -> Index:
    """Load a saved index whose images live under ``root``."""
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        arrays = {name: saved[name] for name in Index._COLUMNS}
    if len({len(column) for column in arrays.values()}) != 1:
        raise ValueError(f"{path}: columns of different lengths")
    return Index(root=root, digest=meta["digest"], **arrays)


def _load_cached(path: Path, report_path: Path, root: Path) -> tuple[Index, CheckReport] | None:
    """The saved index and report, or None (with a warning) when either is damaged."""
    saved = read_cache_json(report_path)
    if saved is None:
        return None
    try:
        report = CheckReport.from_json(saved)
    except _DAMAGED as error:
        _warn_damaged(report_path, error)
        return None
    try:
        return load_index(path, root), report
    except _DAMAGED as error:
        _warn_damaged(path, error)
        return None


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def _layout_folder(layout: str, options: Mapping[str, Any] | None) -> str | None:
    """The cache's subfolder of a layout read with ``options``; None for AffectNet's layout."""
    settings = settings_of(reader(layout, **(options or {})))
    if layout == DEFAULT_LAYOUT and not settings:
        return None
    if not settings:
        return layout
    key = json.dumps(settings, sort_keys=True).encode()
    return f"{layout}-{hashlib.sha1(key).hexdigest()[:8]}"


def cache_dir_for(
    root: Path,
    configured: str | Path | None = None,
    layout: str = DEFAULT_LAYOUT,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """Where the index, report and splits live: ``configured``, else ``<root>/.fer_cache``, else
    (read-only dataset) a per-dataset folder in the user cache (`fer_lightning.paths`); in a
    subfolder per layout and reader settings, except for AffectNet's layout."""
    folder = _layout_folder(layout, options)
    if configured:
        directory = Path(configured)
        if not _writable(directory):
            raise ConfigError(f"data.cache_dir={directory} is not writable: choose another one")
    else:
        directory = root / ".fer_cache"
        if not _writable(directory):
            directory = (
                user_cache_dir() / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
            )
    if folder is None:
        return directory
    directory = directory / folder
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def load_or_build_index(
    root: Path,
    cache_dir: Path,
    rebuild: bool = False,
    workers: int | None = None,
    quiet: bool = False,
    layout: str = DEFAULT_LAYOUT,
    options: Mapping[str, Any] | None = None,
    build: bool = True,
) -> tuple[Index, CheckReport]:
    """The cached index of ``root`` when it is fresh, else a new one (checked, saved, reported).

    ``cache_dir`` is `cache_dir_for`'s for the same layout and options. Faces of a layout with
    boxes are cut out into ``<cache_dir>/crops``; an index whose crops were deleted is stale.
    Without ``build`` (DDP ranks other than 0, which read what rank 0 prepared) a missing or stale
    index is a one-line error instead. Unless ``quiet``, problems are logged as one counted
    warning per kind whether the index was built or loaded, so every run shows them.
    """
    source = reader(layout, **(options or {}))
    source.require(root)
    settings = settings_of(source)
    path, report_path = cache_dir / INDEX_FILE, cache_dir / REPORT_FILE
    current = source.fingerprint(root)
    images = image_root(source, root, cache_dir)
    cropper = Cropper(cache_dir / CROPS_DIR, crop_margin(source))
    meta = None if rebuild else read_index_meta(path)
    if meta is None and not rebuild and path.exists():
        log.warning("%s is damaged: rebuilding it", path)
    fresh = (
        meta is not None
        and meta.get("version") == INDEX_VERSION
        and meta.get("layout") == layout
        and meta.get("settings", {}) == settings
        and meta.get("fingerprint") == current
        and (not meta.get("crops") or cropper.directory.is_dir())
    )
    cached = _load_cached(path, report_path, images) if fresh else None
    if cached is not None:
        index, report = cached
    elif not build:
        raise ConfigError(
            f"no up-to-date index of {root} in {cache_dir} after rank 0 prepared it: the "
            "dataset cache must be on a file system every node shares (data.cache_dir)"
        )
    else:
        log.info("indexing and checking the dataset at %s (once; cached in %s)", root, cache_dir)
        index, report = build_index(root, cropper, workers, layout, options, images)
        for target in (report_path, path):
            if os.path.lexists(target) and not target.is_file():
                raise ConfigError(f"{target} is not a file: remove it, or set data.cache_dir")
        if cropper.directory.is_dir():
            os.sync()  # the crops, written without a flush each, reach the disk before the index
        write_report(report_path, report)
        meta = {"layout": layout, "fingerprint": current, "root": str(root)}
        meta = {**meta, "settings": settings} if settings else meta
        save_index(path, index, {**meta, "crops": cropper.directory.is_dir()})
    if not quiet:
        report.warn(report_path)
    if not report.usable:
        raise ConfigError(f"no sample found at {root} (data.format={layout}; see docs/data.md)")
    for name in report.usable:
        if report.usable[name] == 0:
            raise ConfigError(
                f"no usable sample in {root / name}: all {report.excluded.get(name, 0)} were "
                f"excluded (see {report_path}, or run python -m fer_lightning.data.check)"
            )
    return index, report
