"""Tiny AffectNet-layout datasets written sample by sample, with faults planted on purpose."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl

SIZE = 32


def write_image(path: Path, rng: np.random.Generator, size: int = SIZE, gray: bool = False) -> None:
    shape = (size, size) if gray else (size, size, 3)
    image = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 2)
    path.write_bytes(cv2.imencode(path.suffix, image)[1].tobytes())


def write_annotations(
    ann_dir: Path, sample_id: str, code: float, valence: float, arousal: float, as_string: bool
) -> None:
    """The three annotation files, as strings (one AffectNet release) or numbers (another)."""
    for part, value in (("exp", code), ("val", valence), ("aro", arousal)):
        stored = np.array(f"{value:g}") if as_string else np.array(value, dtype=np.float64)
        np.save(ann_dir / f"{sample_id}_{part}.npy", stored)


def make_dataset(
    root: Path, train: int = 48, val: int = 16, seed: int = 0, as_string: bool = True
) -> Path:
    """Valid samples only; codes cycle 0-7, ids are unique across the two sets."""
    rng = np.random.default_rng(seed)
    first_id = {"train_set": 0, "val_set": train}
    for subset, count in (("train_set", train), ("val_set", val)):
        images, annotations = root / subset / "images", root / subset / "annotations"
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            sample_id = str(first_id[subset] + k)
            write_image(images / f"{sample_id}.jpg", rng)
            valence, arousal = rng.uniform(-1, 1, 2).round(6)
            write_annotations(annotations, sample_id, k % 8, valence, arousal, as_string)
    return root


def plant_faults(root: Path) -> dict[str, str]:
    """Add one sample per fault to train_set; returns {kind: key} with key ``train_set/<id>``."""
    rng = np.random.default_rng(1)
    images, annotations = root / "train_set" / "images", root / "train_set" / "annotations"

    def sample(sample_id: str, code: float = 1, valence: float = 0.5, arousal: float = 0.5) -> Path:
        write_image(images / f"{sample_id}.jpg", rng)
        write_annotations(annotations, sample_id, code, valence, arousal, as_string=True)
        return images / f"{sample_id}.jpg"

    corrupt = sample("f_corrupt")
    corrupt.write_bytes(b"\xff\xd8" + rng.bytes(600) + b"\xff\xd9")
    truncated = sample("f_truncated")
    truncated.write_bytes(truncated.read_bytes()[:-200])
    sample("f_empty").write_bytes(b"")
    sample("f_missing_val")
    (annotations / "f_missing_val_val.npy").unlink()
    sample("f_code9", code=9, valence=-2, arousal=-2)
    sample("f_valence3", valence=3.0)
    (images / "notes.txt").write_text("not an image\n")
    sample("f_gray").unlink()
    write_image(images / "f_gray.jpg", rng, gray=True)
    return {
        "unreadable_image": "train_set/f_corrupt",
        "truncated_image": "train_set/f_truncated",
        "empty_file": "train_set/f_empty",
        "missing_annotation": "train_set/f_missing_val",
        "code_9_uncertain": "train_set/f_code9",
        "va_not_annotated": "train_set/f_code9",
        "va_out_of_range": "train_set/f_valence3",
        "not_an_image": "train_set/notes.txt",
        "unexpected_mode": "train_set/f_gray",
    }


def quiet_trainer(root: Path, **limits: int) -> pl.Trainer:
    """A CPU Trainer with nothing but the loops: no logger, checkpoints, bar or summary."""
    return pl.Trainer(
        use_distributed_sampler=False,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **limits,
    )
