"""AffectNet on disk: reading its files, checking every sample, and the index cached from them.

The layout is section 2 of the design notes (``<root>/{train_set,val_set}/{images,annotations}``).
Building the index reads every annotation and decodes every image once (in a process pool), so a
bad sample is found before training, excluded, and counted in a report instead of crashing a worker
hours into a run. Later runs load the index, a handful of numpy arrays, in well under a second.

When is the cached index stale? Its fingerprint is, for each of the four data directories, the
directory's modification time and its number of entries. Adding, removing or renaming a file
changes both, so the index is rebuilt. Overwriting a file in place under the same name changes
neither, and this is not detected (detecting it would mean a ``stat`` of all ~1.15M files on every
run): run ``python -m fer_lightning.data.check data.root=DIR`` or set ``data.rebuild_index=true``
after doing that. An image that stops decoding anyway is replaced at load time (see the dataset).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.errors import ConfigError

log = logging.getLogger(__name__)

EXPRESSION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
SUBSETS = ("train_set", "val_set")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
ANNOTATIONS = ("exp", "val", "aro")  # landmarks (_lnd) are not used, so not required
INDEX_VERSION = 1
INDEX_FILE = "index.npz"
REPORT_FILE = "check-report.json"

# What can be wrong with a sample. Every kind in EXCLUDED keeps the sample out of all splits.
EXCLUDED = {
    "missing_image": "annotations without an image",
    "missing_annotation": "image without all of <id>_exp/_val/_aro.npy",
    "unreadable_annotation": "annotation .npy that is not one number",
    "code_8_none": "expression 8 (None)",
    "code_9_uncertain": "expression 9 (Uncertain)",
    "code_10_no_face": "expression 10 (No-Face)",
    "unknown_code": "expression code outside 0-10",
    "va_not_annotated": "valence or arousal -2 (not annotated)",
    "va_out_of_range": "valence or arousal outside [-1, 1]",
    "empty_file": "image file of 0 bytes",
    "not_an_image": "file in images/ without an image suffix",
    "unreadable_image": "image that does not decode",
    "truncated_image": "image whose data ends early",
}
# Worth knowing but harmless: the sample is decoded to 3-channel RGB and resized like any other.
KEPT = {
    "unexpected_mode": "not 3-channel (grayscale or alpha), kept as RGB",
    "unexpected_size": "size differs from the most common one in its set, kept and resized",
}
_CODE_KINDS = {8: "code_8_none", 9: "code_9_uncertain", 10: "code_10_no_face"}
_NOT_ANNOTATED = -2.0
# Below this many samples a process pool costs more than it saves.
_POOL_MIN_SAMPLES = 512


def read_scalar(path: str | Path) -> float:
    """The number in a 0-d .npy file, stored as a string ('0.785714') or as a number by release."""
    value = np.load(path, allow_pickle=False)
    if value.size != 1:
        raise ValueError(f"{path} holds {value.size} values, expected 1")
    return float(value.reshape(()).item())


def _jpeg_or_png_truncated(data: bytes) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so the
    check has to look at the bytes themselves.
    """
    if data.startswith(b"\xff\xd8"):
        return not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return not data.endswith(b"IEND\xaeB`\x82")
    return False


def inspect_image(path: str | Path) -> tuple[str | None, int, int, int]:
    """(problem kind or None, height, width, channels) of one image file, by a full decode."""
    data = Path(path).read_bytes()
    if not data:
        return "empty_file", 0, 0, 0
    if _jpeg_or_png_truncated(data):
        return "truncated_image", 0, 0, 0
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return "unreadable_image", 0, 0, 0
    channels = 1 if image.ndim == 2 else image.shape[2]
    return None, image.shape[0], image.shape[1], channels


# The scale bits of OpenCV's IMREAD_REDUCED_* flags (the GRAYSCALE variants carry no colour bit),
# to combine with IMREAD_COLOR_RGB.
_REDUCE_2, _REDUCE_4 = cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_GRAYSCALE_4


def decode_rgb(
    path: str, size: int, stored_side: int, out: np.ndarray | None = None
) -> np.ndarray | None:
    """An image as uint8 RGB (size, size, 3), written into ``out`` when given (a sample's slot in a
    batch), or None when it no longer decodes.

    libjpeg writes RGB directly (no BGR->RGB pass), and when the stored image is at least twice
    (four times) the training size it decodes at half (a quarter) resolution, about 30% faster.
    An image that decodes at the training size goes straight into ``out``: no new array, no copy.
    """
    flag, scale = cv2.IMREAD_COLOR_RGB, 1
    if stored_side >= 4 * size:
        flag, scale = flag | _REDUCE_4, 4
    elif stored_side >= 2 * size:
        flag, scale = flag | _REDUCE_2, 2
    if out is not None and -(-stored_side // scale) == size and _decode_into(path, flag, out):
        return out
    image = cv2.imread(path, flag)
    if image is None:
        return None
    if image.shape[0] != size or image.shape[1] != size:
        shrink = image.shape[0] > size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(image, (size, size), dst=out, interpolation=interpolation)
    if out is None:
        return image
    out[...] = image
    return out


# Not a colour a decode is likely to leave in an image's last pixel (see _decode_into).
_MARK = (1, 254, 3)


def _decode_into(path: str, flag: int, out: np.ndarray) -> bool:
    """Decodes into ``out``; False when that did not happen, for the caller to decode anew.

    ``cv2.imread(path, dst)`` says nothing when it cannot open or parse a file: it leaves ``dst``
    as it was. Marking the last pixel first tells, since a decode writes every pixel. An image
    whose last pixel is the mark costs one more decode, not a wrong answer. An image of another
    size than the index says (not square, or changed since) raises instead.
    """
    last = out[-1, -1]
    last[:] = _MARK
    try:
        cv2.imread(path, out, flag)
    except cv2.error:
        return False
    return last.tobytes() != bytes(_MARK)


def _annotation_problems(ann_dir: str, sample_id: str) -> tuple[list[str], int, float, float]:
    """(problems, expression, valence, arousal) from a sample's three annotation files."""
    try:
        code, valence, arousal = (
            read_scalar(os.path.join(ann_dir, f"{sample_id}_{part}.npy")) for part in ANNOTATIONS
        )
    except (OSError, ValueError, TypeError):
        return ["unreadable_annotation"], -1, 0.0, 0.0
    problems = []
    expression = int(code) if float(code).is_integer() else -1
    if expression in _CODE_KINDS:
        problems.append(_CODE_KINDS[expression])
    elif not 0 <= expression < len(EXPRESSION_NAMES):
        problems.append("unknown_code")
    if _NOT_ANNOTATED in (valence, arousal):
        problems.append("va_not_annotated")
    elif not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):  # also catches NaN
        problems.append("va_out_of_range")
    return problems, expression, valence, arousal


@dataclass(frozen=True)
class _Task:
    """One sample to check; plain data so it pickles cheaply into the pool."""

    subset: int
    sample_id: str
    image_file: str | None
    annotated: bool  # all of _exp, _val and _aro exist


def _check_sample(root: str, task: _Task) -> tuple[list[str], int, float, float, int, int, int]:
    """(problems, expression, valence, arousal, height, width, channels) of one sample."""
    subset_dir = os.path.join(root, SUBSETS[task.subset])
    problems: list[str] = []
    expression, valence, arousal = -1, 0.0, 0.0
    if task.annotated:
        problems, expression, valence, arousal = _annotation_problems(
            os.path.join(subset_dir, "annotations"), task.sample_id
        )
    else:
        problems.append("missing_annotation")
    height = width = channels = 0
    if task.image_file is None:
        problems.append("missing_image")
    else:
        kind, height, width, channels = inspect_image(
            os.path.join(subset_dir, "images", task.image_file)
        )
        if kind is not None:
            problems.append(kind)
    return problems, expression, valence, arousal, height, width, channels


def _scan_subset(root: Path, subset: int) -> tuple[list[_Task], list[str]]:
    """Tasks for every sample id seen in one subset, and the names of non-image files."""
    subset_dir = root / SUBSETS[subset]
    images: dict[str, str] = {}
    not_images = []
    for name in sorted(os.listdir(subset_dir / "images")):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES:
            images.setdefault(stem, name)
        else:
            not_images.append(name)
    parts: dict[str, set[str]] = {}
    for name in os.listdir(subset_dir / "annotations"):
        stem, _, part = name.removesuffix(".npy").rpartition("_")
        if name.endswith(".npy") and part in ANNOTATIONS:
            parts.setdefault(stem, set()).add(part)
    tasks = [
        _Task(subset, sid, images.get(sid), len(parts.get(sid, ())) == len(ANNOTATIONS))
        for sid in sorted(images.keys() | parts.keys())
    ]
    return tasks, not_images


@dataclass
class CheckReport:
    """What indexing found: problem kinds with the affected samples, and what was kept.

    Samples are named ``<subset>/<id>`` (``<subset>/<file name>`` for non-image files).
    """

    root: str
    problems: dict[str, list[str]] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    va_ranges: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    usable: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "root": self.root,
            "usable": self.usable,
            "excluded": self.excluded,
            "class_counts": {
                subset: dict(zip(EXPRESSION_NAMES, counts, strict=True))
                for subset, counts in self.class_counts.items()
            },
            "va_ranges": self.va_ranges,
            "counts": {kind: len(ids) for kind, ids in self.problems.items()},
            "descriptions": {kind: {**EXCLUDED, **KEPT}[kind] for kind in self.problems},
            "ids": self.problems,
        }

    @classmethod
    def from_json(cls, data: dict) -> CheckReport:
        return cls(
            root=data["root"],
            problems=data["ids"],
            class_counts={s: list(c.values()) for s, c in data["class_counts"].items()},
            va_ranges=data["va_ranges"],
            usable=data["usable"],
            excluded=data["excluded"],
        )

    def warn(self, where: Path) -> None:
        """One counted warning line per problem kind (never one per file)."""
        for kind, ids in self.problems.items():
            action = "excluded" if kind in EXCLUDED else "kept"
            description = {**EXCLUDED, **KEPT}[kind]
            log.warning(
                "%d sample(s) %s: %s [%s] (ids in %s)", len(ids), action, description, kind, where
            )


@dataclass(frozen=True)
class Index:
    """Every usable sample of a dataset, one row each, sorted by (subset, id).

    Columns are numpy arrays (no Python objects), so loading 287k rows takes milliseconds and
    forked DataLoader workers share them without copy-on-access growth.
    """

    root: Path
    subset: np.ndarray  # uint8, position in SUBSETS
    ids: np.ndarray  # str
    files: np.ndarray  # str, image file name inside <subset>/images
    expression: np.ndarray  # int8, 0-7
    valence: np.ndarray  # float32
    arousal: np.ndarray  # float32
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
        dirs = [str(self.root / s / "images") for s in SUBSETS]
        pairs = zip(self.subset[rows], self.files[rows], strict=True)
        return [os.path.join(dirs[s], f) for s, f in pairs]


def _digest(columns: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha1()
    for name in ("subset", "ids", "expression", "valence", "arousal"):
        sha.update(np.ascontiguousarray(columns[name]).tobytes())
    return sha.hexdigest()[:16]


def fingerprint(root: Path) -> dict[str, list[int]]:
    """Modification time (ns) and entry count of the four data directories; see the module doc."""
    result = {}
    for subset in SUBSETS:
        for part in ("images", "annotations"):
            directory = root / subset / part
            result[f"{subset}/{part}"] = [directory.stat().st_mtime_ns, len(os.listdir(directory))]
    return result


def require_layout(root: Path) -> None:
    """Raise a one-line ConfigError unless root has AffectNet's four data directories."""
    if not (root / "train_set").is_dir() or not (root / "val_set").is_dir():
        raise ConfigError(
            f"dataset not found at {root}: expected train_set/ and val_set/ (see README), "
            "or run with data=synthetic"
        )
    for subset in SUBSETS:
        for part in ("images", "annotations"):
            if not (root / subset / part).is_dir():
                raise ConfigError(
                    f"dataset at {root} is incomplete: {subset}/{part}/ is missing "
                    "(expected AffectNet's layout, see README)"
                )


def _run_checks(root: Path, tasks: list[_Task], workers: int) -> list[tuple]:
    if workers <= 1 or len(tasks) < _POOL_MIN_SAMPLES:
        return [_check_sample(str(root), t) for t in tasks]
    with ProcessPoolExecutor(workers) as pool:
        chunk = max(1, min(512, len(tasks) // (8 * workers)))
        return list(pool.map(_check_sample, [str(root)] * len(tasks), tasks, chunksize=chunk))


def build_index(root: Path, workers: int | None = None) -> tuple[Index, CheckReport]:
    """Check every sample of the dataset at ``root`` and index the usable ones."""
    workers = workers or len(os.sched_getaffinity(0))
    report = CheckReport(root=str(root))
    problems: dict[str, list[str]] = {}
    rows: list[tuple] = []  # (subset, id, file, expression, valence, arousal, side)
    for subset, name in enumerate(SUBSETS):
        tasks, not_images = _scan_subset(root, subset)
        problems.setdefault("not_an_image", []).extend(f"{name}/{f}" for f in not_images)
        results = _run_checks(root, tasks, workers)
        sizes = Counter((r[4], r[5]) for r in results if r[4])
        usual = sizes.most_common(1)[0][0] if sizes else None
        kept = []
        for task, (kinds, code, valence, arousal, height, width, channels) in zip(
            tasks, results, strict=True
        ):
            usable = not any(kind in EXCLUDED for kind in kinds)
            if usable and channels != 3:
                kinds.append("unexpected_mode")
            if usable and (height, width) != usual:
                kinds.append("unexpected_size")
            for kind in kinds:
                problems.setdefault(kind, []).append(f"{name}/{task.sample_id}")
            if usable:
                side = min(height, width)
                kept.append((subset, task.sample_id, task.image_file, code, valence, arousal, side))
        rows.extend(kept)
        report.usable[name] = len(kept)
        report.excluded[name] = len(tasks) + len(not_images) - len(kept)
        codes = np.array([k[3] for k in kept], dtype=np.int64)
        report.class_counts[name] = np.bincount(codes, minlength=len(EXPRESSION_NAMES)).tolist()
        va = np.array([k[4:6] for k in kept], dtype=np.float64).reshape(-1, 2)
        report.va_ranges[name] = {
            axis: [float(va[:, j].min()), float(va[:, j].max())] if len(va) else []
            for j, axis in enumerate(("valence", "arousal"))
        }
    report.problems = {kind: ids for kind, ids in sorted(problems.items()) if ids}
    subset, ids, files, code, valence, arousal, side = zip(*rows, strict=True) if rows else [()] * 7
    arrays = {
        "subset": np.array(subset, dtype=np.uint8),
        "ids": np.array(ids, dtype=str),
        "files": np.array(files, dtype=str),
        "expression": np.array(code, dtype=np.int8),
        "valence": np.array(valence, dtype=np.float32),
        "arousal": np.array(arousal, dtype=np.float32),
        "side": np.array(side, dtype=np.int32),
    }
    return Index(root=root, digest=_digest(arrays), **arrays), report


def save_index(path: Path, index: Index, meta: dict) -> None:
    """Write the index atomically (concurrent runs may build it at the same time)."""
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npz")
    arrays = {name: getattr(index, name) for name in Index._COLUMNS}
    meta = {**meta, "version": INDEX_VERSION, "digest": index.digest}
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def read_index_meta(path: Path) -> dict | None:
    """The metadata of a saved index, or None if there is no readable one."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return json.loads(str(saved["meta"]))
    except (OSError, ValueError, KeyError):
        return None


def load_index(path: Path, root: Path) -> Index:
    """Load a saved index whose images live under ``root``."""
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        arrays = {name: saved[name] for name in Index._COLUMNS}
    return Index(root=root, digest=meta["digest"], **arrays)


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def cache_dir_for(root: Path, configured: str | Path | None = None) -> Path:
    """Where the index, report and splits live: ``configured``, else ``<root>/.fer_cache``, else
    (read-only dataset) a per-dataset folder in the user cache (``$XDG_CACHE_HOME``)."""
    if configured:
        directory = Path(configured)
        if not _writable(directory):
            raise ConfigError(f"data.cache_dir={directory} is not writable: choose another one")
        return directory
    beside = root / ".fer_cache"
    if _writable(beside):
        return beside
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return user_cache / "fer_lightning" / key


def write_report(path: Path, report: CheckReport) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    os.replace(tmp, path)


def load_or_build_index(
    root: Path,
    cache_dir: Path,
    rebuild: bool = False,
    workers: int | None = None,
    quiet: bool = False,
) -> tuple[Index, CheckReport]:
    """The cached index of ``root`` when it is fresh, else a new one (checked, saved, reported).

    Unless ``quiet``, problems are logged as one counted warning per kind whether the index was
    built or loaded, so every run shows them.
    """
    require_layout(root)
    path, report_path = cache_dir / INDEX_FILE, cache_dir / REPORT_FILE
    current = fingerprint(root)
    meta = None if rebuild else read_index_meta(path)
    fresh = (
        meta is not None
        and meta.get("version") == INDEX_VERSION
        and meta.get("fingerprint") == current
        and report_path.is_file()
    )
    if fresh:
        index = load_index(path, root)
        report = CheckReport.from_json(json.loads(report_path.read_text()))
    else:
        log.info("indexing and checking the dataset at %s (once; cached in %s)", root, cache_dir)
        index, report = build_index(root, workers)
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_report(report_path, report)
        save_index(path, index, {"fingerprint": current, "root": str(root)})
    if not quiet:
        report.warn(report_path)
    for name in SUBSETS:
        if report.usable.get(name, 0) == 0:
            raise ConfigError(
                f"no usable sample in {root / name}: all {report.excluded.get(name, 0)} were "
                f"excluded (see {report_path}, or run python -m fer_lightning.data.check)"
            )
    return index, report
