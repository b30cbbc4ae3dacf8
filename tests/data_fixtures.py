"""Tiny AffectNet-layout datasets written sample by sample, with faults planted on purpose."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl

from fer_lightning.data.datamodule import AffectNetDataModule

SIZE = 32


def cached_datamodule(root: Path, **kwargs: Any) -> AffectNetDataModule:
    """A datamodule over ``root`` set up for fitting, its cache in ``root/c``: tiny images, two
    loader workers (the decoded store and device augmentation tests compare it with itself)."""
    args = {"image_size": 24, "batch_size": 6, "num_workers": 2, "cache_dir": str(root / "c")}
    dm = AffectNetDataModule(root=str(root), **{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


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


def png_header_bomb(width: int, height: int) -> bytes:
    """A complete PNG of a few hundred bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # the first 4 rows; the rest are missing
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def jpeg_header_bomb(width: int, height: int) -> bytes:
    """A small JPEG (end marker included) whose frame header claims ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(64)


# Label files that are not one finite number, each read without unpickling or allocating.
MALFORMED_LABELS = {
    "empty": b"",
    "garbage": b"\x93NUMPY garbage",
    "pickled": npy_bytes(np.array([{"code": 1}], dtype=object)),
    "2d": npy_bytes(np.zeros((2, 3))),
    "nan": npy_bytes(np.array(np.nan)),
    "inf": npy_bytes(np.array("-inf")),
    "huge_header": npy_header((10**10,)),  # 80 GB if the header were believed
}


def plant_odd_files(root: Path) -> dict[str, str]:
    """Add one annotated sample per odd file to train_set, as `plant_faults` does; returns
    {key: kind} (key ``train_set/<id>``). Each image or label is replaced by an odd entry."""
    rng = np.random.default_rng(2)
    images, annotations = root / "train_set" / "images", root / "train_set" / "annotations"

    def sample(sample_id: str) -> tuple[Path, Path]:
        write_image(images / f"{sample_id}.jpg", rng)
        write_annotations(annotations, sample_id, 2, 0.1, 0.1, as_string=True)
        (images / f"{sample_id}.jpg").unlink()
        return images / f"{sample_id}.jpg", annotations / f"{sample_id}_exp.npy"

    odd = {}
    image, _ = sample("o_dir")
    image.mkdir()
    odd["o_dir"] = "not_a_regular_file"
    image, _ = sample("o_fifo")
    os.mkfifo(image)
    odd["o_fifo"] = "not_a_regular_file"
    image, _ = sample("o_dangling")
    image.symlink_to(images / "nowhere.jpg")
    odd["o_dangling"] = "broken_link"
    image, _ = sample("o_loop")
    image.symlink_to(image)
    odd["o_loop"] = "link_loop"
    image, _ = sample("o_png_bomb")
    image.write_bytes(png_header_bomb(30000, 30000))
    odd["o_png_bomb"] = "too_many_pixels"
    image, _ = sample("o_jpeg_bomb")
    image.write_bytes(jpeg_header_bomb(30000, 30000))
    odd["o_jpeg_bomb"] = "too_many_pixels"
    for name, content in MALFORMED_LABELS.items():
        sample_id = f"o_npy_{name}"
        image, label = sample(sample_id)
        write_image(image, rng)
        label.write_bytes(content)
        odd[sample_id] = "unreadable_annotation"
    image, label = sample("o_npy_fifo")
    write_image(image, rng)
    label.unlink()
    os.mkfifo(label)
    odd["o_npy_fifo"] = "not_a_regular_file"
    image, label = sample("o_npy_dir")
    write_image(image, rng)
    label.unlink()
    label.mkdir()
    odd["o_npy_dir"] = "not_a_regular_file"
    # A link to a good image is no fault: it is kept.
    sample("o_link_ok")
    (images / "o_link_ok.jpg").symlink_to(images / "0.jpg")
    return {f"train_set/{sample_id}": kind for sample_id, kind in odd.items()}


def within(seconds: float, function: Callable[[], Any]) -> Any:
    """``function()``, failing the test instead of hanging when it takes longer (a FIFO opened)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(function())
        except BaseException as error:  # handed to the test's thread
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hung on a FIFO?)"
    if errors:
        raise errors[0]
    return result[0]


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
