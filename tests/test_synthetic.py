"""The synthetic AffectNet: its layout, labels, determinism, reuse and command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_lightning.data import synthetic
from fer_lightning.errors import ConfigError

TRAIN, VAL, SIZE = 40, 16, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("syn"), TRAIN, VAL, image_size=SIZE, seed=0)


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
    manifest = json.loads((dataset / synthetic.MANIFEST).read_text())
    assert manifest["format_version"] == synthetic.FORMAT_VERSION
    assert (manifest["train_size"], manifest["val_size"], manifest["image_size"]) == (
        TRAIN,
        VAL,
        SIZE,
    )
    assert not (dataset / synthetic.PARTIAL_MARKER).exists()


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
    a = _files(synthetic.generate(tmp_path / "a", 12, 8, image_size=SIZE, seed=3))
    b = _files(synthetic.generate(tmp_path / "b", 12, 8, image_size=SIZE, seed=3))
    assert a == b
    c = _files(synthetic.generate(tmp_path / "c", 12, 8, image_size=SIZE, seed=4))
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in images)


def test_class_counts_follow_affectnet() -> None:
    assert synthetic.class_counts(sum(synthetic.AFFECTNET_TRAIN_COUNTS)) == list(
        synthetic.AFFECTNET_TRAIN_COUNTS
    )
    # 40 * share = 10.41 18.69 3.54 1.96 0.89 0.53 3.46 0.52: floors, the five largest remainders
    # get one each (10 19 4 2 1 1 3 0), then Contempt, still empty, takes one from Sad, the class
    # furthest above its quota (4 - 3.54).
    assert synthetic.class_counts(40) == [10, 19, 3, 2, 1, 1, 3, 1]
    for n in range(8, 300):
        counts = synthetic.class_counts(n)
        assert sum(counts) == n and min(counts) >= 1 and max(counts) == counts[1]
    assert synthetic.balanced_counts(10) == [2, 2, 1, 1, 1, 1, 1, 1]


def test_split_class_frequencies(dataset: Path) -> None:
    train = np.bincount(_codes(dataset, "train_set"), minlength=8).tolist()
    assert train == synthetic.class_counts(TRAIN)
    assert np.bincount(_codes(dataset, "val_set"), minlength=8).tolist() == [VAL // 8] * 8
    ordered = [int(np.load(dataset / "train_set/annotations" / f"{i}_exp.npy")) for i in range(12)]
    assert ordered != sorted(ordered)  # shuffled, not grouped by class


def test_geometry_follows_valence_and_arousal() -> None:
    """Mouth corners rise with valence and the eyes open with arousal, so both are visible."""
    rng = np.random.default_rng(0)

    def shape(code: int, v: float, a: float) -> np.ndarray:
        knobs = synthetic.expression_knobs(code, v, a, np.random.default_rng(1))
        return synthetic.face_shape(knobs, rng).landmarks

    def corner_lift(lm: np.ndarray) -> float:
        return float((lm[51, 1] + lm[57, 1]) / 2 - (lm[48, 1] + lm[54, 1]) / 2)

    def eye_open(lm: np.ndarray) -> float:
        return float(lm[40, 1] + lm[41, 1] - lm[37, 1] - lm[38, 1])

    for code in (0, 2, 5, 6):
        lifts = [corner_lift(shape(code, v, 0.0)) for v in (-0.8, 0.0, 0.8)]
        assert lifts[0] < lifts[1] < lifts[2]
        openings = [eye_open(shape(code, 0.0, a)) for a in (-0.8, 0.0, 0.8)]
        assert openings[0] < openings[1] < openings[2]
    assert corner_lift(shape(1, 0.7, 0.3)) > 0 > corner_lift(shape(2, -0.6, -0.3))


def test_ensure_reuses_then_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    synthetic.ensure_synthetic(root, 10, 8, SIZE, 0)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    synthetic.ensure_synthetic(root, 10, 8, SIZE, 0)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps

    synthetic.ensure_synthetic(root, 9, 8, SIZE, 1)
    assert synthetic.read_manifest(root)["seed"] == 1
    assert not (root / "train_set/images/9.jpg").exists()  # the old dataset is gone, not merged
    assert len(list((root / "val_set/images").iterdir())) == 8
    assert (root / "val_set/images/9.jpg").exists()


def test_interrupted_generation_is_recognisable_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic.write_split

    def crash_on_val(root: Path, split: str, *args: int) -> None:
        if split == "val_set":
            raise KeyboardInterrupt
        real(root, split, *args)

    monkeypatch.setattr(synthetic, "write_split", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tmp_path, 10, 8, SIZE, 0)
    assert synthetic.read_manifest(tmp_path) is None
    monkeypatch.setattr(synthetic, "write_split", real)
    synthetic.ensure_synthetic(tmp_path, 10, 8, SIZE, 0)
    assert synthetic.read_manifest(tmp_path)["train_size"] == 10


def test_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "train_set/images").mkdir(parents=True)
    (tmp_path / "train_set/images/real.jpg").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match="empty directory"):
        synthetic.generate(tmp_path, 8, 8, SIZE, 0)
    assert (tmp_path / "train_set/images/real.jpg").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["train_size=-1", "val_size=8"],
        ["train_size=ten", "val_size=8"],
        ["train_size=8", "val_size=8", "image_size=4"],
        ["train_size=8"],
        ["train_size=8", "val_size=8", "colour=red"],
        ["train_size"],
        ["train_size=8", "val_size=8", "seed=[1"],
    ],
)
def test_cli_rejects_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert synthetic.main([f"root={tmp_path}", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "train_set").exists()


def test_cli_module_entry_point(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fer_lightning.data.synthetic", f"root={tmp_path}"]
    bad = subprocess.run([*cmd, "trian_size=8"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert "trian_size" in bad.stderr
    ok = subprocess.run(
        [*cmd, "train_size=8", "val_size=8", "image_size=24", "seed=5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "images/s" in ok.stdout
    assert synthetic.read_manifest(tmp_path)["seed"] == 5
