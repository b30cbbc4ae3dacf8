"""The synthetic dataset on disk: generated once, recognised and reused afterwards, and never
written over data it did not write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.synthetic.labels import (
    balanced_counts,
    class_counts,
    sample_valence_arousal,
    split_labels,
)
from fer_lightning.data.synthetic.render import render_face
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import AFFECTNET_SUBSETS, EXPRESSION_NAMES, SUBSETS

FORMAT_VERSION = 1
MANIFEST = "synthetic.json"
# Present while a generation is in progress; lets a rerun recognise and replace its own leftovers
# without ever deleting a directory it did not write (a real AffectNet copy, say).
PARTIAL_MARKER = "synthetic.partial.json"


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    # cv2 expects BGR: convert here so the file on disk is a correct RGB JPEG.
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _save_npy(path: Path, value: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, value, allow_pickle=False)


def _check_params(train_size: object, val_size: object, image_size: object, seed: object) -> None:
    def integer(name: str, value: object, low: int, high: int, hint: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}; {hint}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}; {hint}")

    integer("train_size", train_size, 1, 10_000_000, "pass e.g. train_size=4000")
    integer("val_size", val_size, 1, 10_000_000, "pass e.g. val_size=800")
    integer("image_size", image_size, 16, 1024, "pass e.g. image_size=64")
    integer("seed", seed, 0, 2**63 - 1, "pass a non-negative integer, e.g. seed=0")


def _params(train_size: int, val_size: int, image_size: int, seed: int) -> dict[str, int]:
    return {
        "format_version": FORMAT_VERSION,
        "train_size": int(train_size),
        "val_size": int(val_size),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def _write_json(path: Path, content: dict) -> None:
    write_text_atomic(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def _clear(root: Path) -> None:
    """Remove a previous synthetic dataset, refusing to touch data this module did not write."""
    ours = (root / MANIFEST).exists() or (root / PARTIAL_MARKER).exists()
    present = [root / s for s in AFFECTNET_SUBSETS if (root / s).exists()]
    if present and not ours:
        raise ConfigError(
            f"{root} already holds {present[0].name}/ not written by the synthetic generator; "
            "choose an empty directory for root"
        )
    (root / MANIFEST).unlink(missing_ok=True)
    for path in present:
        shutil.rmtree(path)


def write_split(root: Path, split: str, n: int, first_id: int, image_size: int, seed: int) -> None:
    """Write one split's images and annotations (see the module docstring for the layout)."""
    images, annotations = root / split / "images", root / split / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    split_index = SUBSETS.index(split)
    for i, code in enumerate(split_labels(split, n, seed)):
        rng = np.random.default_rng([seed, split_index, 1, i])
        valence, arousal = sample_valence_arousal(int(code), rng)
        img, landmarks = render_face(int(code), valence, arousal, image_size, rng)
        quality = int(rng.integers(60, 96))
        sample_id = str(first_id + i)
        (images / f"{sample_id}.jpg").write_bytes(_encode_jpeg(img, quality))
        _save_npy(annotations / f"{sample_id}_exp.npy", np.array(str(int(code))))
        _save_npy(annotations / f"{sample_id}_val.npy", np.array(f"{valence:.6f}"))
        _save_npy(annotations / f"{sample_id}_aro.npy", np.array(f"{arousal:.6f}"))
        _save_npy(annotations / f"{sample_id}_lnd.npy", landmarks.reshape(-1).astype(np.float32))


def generate(
    root: str | Path, train_size: int, val_size: int, image_size: int = 64, seed: int = 0
) -> Path:
    """Write a synthetic AffectNet under ``root`` and return ``root``.

    A previous synthetic dataset there is replaced; the manifest ``synthetic.json`` is written
    last, so a dataset without it is known to be incomplete.
    """
    _check_params(train_size, val_size, image_size, seed)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        message = f"cannot create root {root}: {err.strerror}; choose a writable directory"
        raise ConfigError(message) from err
    _clear(root)
    params = _params(train_size, val_size, image_size, seed)
    _write_json(root / PARTIAL_MARKER, params)
    write_split(root, "train_set", train_size, 0, image_size, seed)
    write_split(root, "val_set", val_size, train_size, image_size, seed)
    manifest = {
        **params,
        "generator": "fer_lightning.data.synthetic",
        "classes": list(EXPRESSION_NAMES),
        "train_counts": class_counts(train_size),
        "val_counts": balanced_counts(val_size),
        "val_first_id": train_size,
    }
    _write_json(root / MANIFEST, manifest)
    (root / PARTIAL_MARKER).unlink()
    return root


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset under ``root``, or None."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def ensure_synthetic(
    root: str | Path, train_size: int, val_size: int, image_size: int = 64, seed: int = 0
) -> Path:
    """Generate on first use, reuse afterwards: regenerate only if the manifest disagrees."""
    _check_params(train_size, val_size, image_size, seed)
    manifest = read_manifest(root)
    wanted = _params(train_size, val_size, image_size, seed)
    if manifest is not None and all(manifest.get(k) == v for k, v in wanted.items()):
        return Path(root)
    return generate(root, train_size, val_size, image_size, seed)
