"""The synthetic AffectNet on disk: its layout, labels, determinism, reuse and safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_lightning.data.synthetic import labels, writer
from fer_lightning.errors import ConfigError

TRAIN, VAL, SIZE = 40, 16, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return writer.generate(tmp_path_factory.mktemp("syn"), TRAIN, VAL, image_size=SIZE, seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _codes(root: Path, split: str) -> list[int]:
    return [int(np.load(p)) for p in sorted((root / split / "annotations").glob("*_exp.npy"))]


def test_layout_and_ids(dataset: Path) -> None:
    for split, ids in (("train_set", range(TRAIN)), ("val_set", range(TRAIN, TRAIN + VAL))):
        images = {p.name for p in (dataset / split / "images").iterdir()}
        assert images == {f"{i}.jpg" for i in ids}
        annotations = {p.name for p in (dataset / split / "annotations").iterdir()}
        kinds = ("exp", "val", "aro", "lnd")
        assert annotations == {f"{i}_{k}.npy" for i in ids for k in kinds}
    manifest = json.loads((dataset / writer.MANIFEST).read_text())
    assert manifest["format_version"] == writer.FORMAT_VERSION
    assert (manifest["train_size"], manifest["val_size"], manifest["image_size"]) == (
        TRAIN,
        VAL,
        SIZE,
    )
    assert not (dataset / writer.PARTIAL_MARKER).exists()


def test_annotations_parse_and_lie_in_range(dataset: Path) -> None:
    for split in ("train_set", "val_set"):
        ann = dataset / split / "annotations"
        for image in (dataset / split / "images").iterdir():
            with Image.open(image) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))
            i = image.stem
            exp, val, aro = (np.load(ann / f"{i}_{k}.npy") for k in ("exp", "val", "aro"))
            assert exp.shape == () and exp.dtype.kind == "U"  # strings, like the common release
            assert int(exp) in range(8)
            assert -1.0 <= float(val) <= 1.0 and -1.0 <= float(aro) <= 1.0
            lnd = np.load(ann / f"{i}_lnd.npy")
            assert lnd.shape == (136,)
            assert np.all(lnd >= 0) and np.all(lnd <= SIZE - 1)


def test_byte_identical_for_same_seed_and_different_for_another(tmp_path: Path) -> None:
    a = _files(writer.generate(tmp_path / "a", 12, 8, image_size=SIZE, seed=3))
    b = _files(writer.generate(tmp_path / "b", 12, 8, image_size=SIZE, seed=3))
    assert a == b
    c = _files(writer.generate(tmp_path / "c", 12, 8, image_size=SIZE, seed=4))
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in images)


def test_split_class_frequencies(dataset: Path) -> None:
    train = np.bincount(_codes(dataset, "train_set"), minlength=8).tolist()
    assert train == labels.class_counts(TRAIN)
    assert np.bincount(_codes(dataset, "val_set"), minlength=8).tolist() == [VAL // 8] * 8
    ordered = [int(np.load(dataset / "train_set/annotations" / f"{i}_exp.npy")) for i in range(12)]
    assert ordered != sorted(ordered)  # shuffled, not grouped by class


def test_ensure_reuses_then_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer.ensure_synthetic(root, 10, 8, SIZE, 0)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    writer.ensure_synthetic(root, 10, 8, SIZE, 0)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps

    writer.ensure_synthetic(root, 9, 8, SIZE, 1)
    assert writer.read_manifest(root)["seed"] == 1
    assert not (root / "train_set/images/9.jpg").exists()  # the old dataset is gone, not merged
    assert len(list((root / "val_set/images").iterdir())) == 8
    assert (root / "val_set/images/9.jpg").exists()


def test_interrupted_generation_is_recognisable_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writer.write_split

    def crash_on_val(root: Path, split: str, *args: int) -> None:
        if split == "val_set":
            raise KeyboardInterrupt
        real(root, split, *args)

    monkeypatch.setattr(writer, "write_split", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        writer.generate(tmp_path, 10, 8, SIZE, 0)
    assert writer.read_manifest(tmp_path) is None
    monkeypatch.setattr(writer, "write_split", real)
    writer.ensure_synthetic(tmp_path, 10, 8, SIZE, 0)
    assert writer.read_manifest(tmp_path)["train_size"] == 10


def test_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "train_set/images").mkdir(parents=True)
    (tmp_path / "train_set/images/real.jpg").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match="empty directory"):
        writer.generate(tmp_path, 8, 8, SIZE, 0)
    assert (tmp_path / "train_set/images/real.jpg").exists()
