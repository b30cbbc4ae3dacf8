"""AffectNet's CSV release: rows parsed with or without a header, faces cut out once by their
boxes, planted faults and odd files counted and excluded, the index stale when lists, folders,
margin or crops change, and data.check on the layout."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from fer_lightning.data import index as index_module
from fer_lightning.data.check import main as check_main
from fer_lightning.data.formats import reader
from fer_lightning.data.formats.affectnet_csv import COLUMNS, IMAGES, LISTS
from fer_lightning.data.synthetic.csv_release import write_csv_release
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.errors import ConfigError
from fer_lightning.module import MultiTaskModule
from tests.conftest import FAST, compose_in
from tests.data_fixtures import (
    jpeg_header_bomb,
    make_dataset,
    png_header_bomb,
    quiet_trainer,
    within,
)

CSV = "affectnet_csv"


@pytest.fixture
def release(tmp_path):
    """The fixture's .npy dataset and the same faces in the CSV release (training.csv without
    its header row), with the photographs' boxes by sample key."""
    source = make_dataset(tmp_path / "npy", train=16, val=8)
    root = tmp_path / "csv"
    return source, root, write_csv_release(source, root, header=(False, True))


def build(root: Path, cache: Path, crop_margin: float | None = None, **kwargs):
    options = {} if crop_margin is None else {"crop_margin": crop_margin}
    return within(
        60,
        lambda: index_module.load_or_build_index(
            root, cache, layout=CSV, options=options, **kwargs
        ),
    )


def append_row(root: Path, *fields: object, name: str = "training.csv") -> None:
    with open(root / LISTS / name, "a", encoding="utf-8") as file:
        file.write(",".join(str(f) for f in fields) + "\n")


def photo(root: Path, listed: str, size: int = 64, gray: bool = False) -> Path:
    path = root / IMAGES / listed
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(listed))
    image = rng.integers(0, 256, (size, size) if gray else (size, size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def test_both_files_are_read_with_or_without_a_header_into_crops_of_the_faces(release, tmp_path):
    source, root, written = release
    index, report = build(root, tmp_path / "cache")
    assert report.usable == {"train_set": 16, "val_set": 8} and not report.problems
    npy, _ = index_module.load_or_build_index(source, tmp_path / "npy-cache")
    rows = np.arange(len(index))
    # ids are the listed paths without suffix (<subfolder>/<source id>); labels are the source's
    by_key = {f"{k.split('/')[0]}/{k.split('/')[2]}": r for r, k in enumerate(index.keys(rows))}
    npy_keys = npy.keys(np.arange(len(npy)))
    assert by_key.keys() == set(npy_keys) == written.keys()
    order = [by_key[k] for k in npy_keys]
    for column in ("subset", "expression", "valence", "arousal", "side"):
        assert np.array_equal(getattr(index, column)[order], getattr(npy, column)), column
    # the crops, in the cache, hold the source's decoded pixels exactly (PNG photographs)
    crops = index.paths(np.array(order))
    for crop, face in zip(crops, npy.paths(np.arange(len(npy))), strict=True):
        assert crop.startswith(str(tmp_path / "cache" / "crops"))
        assert np.array_equal(cv2.imread(crop), cv2.imread(face))


def test_planted_faults_are_counted_and_excluded(release, tmp_path):
    _, root, _ = release
    append_row(root, "1/short_row", 0, 0, 8)
    append_row(root, "1/not_a_number.png", "x", 0, 8, 8, "", 1, 0.1, 0.1)
    append_row(root, "1/half_pixel.png", 0.5, 0, 8, 8, "", 1, 0.1, 0.1)
    append_row(root, "../outside.png", 0, 0, 8, 8, "", 1, 0.1, 0.1)
    append_row(root, "1/0.png", 0, 0, 8, 8, "", 1, 0.1, 0.1)  # listed already
    append_row(root, "1/nowhere.png", 0, 0, 8, 8, "", 1, 0.1, 0.1)
    faults = {"train_set/training.csv:17": "unparsable_row"}
    faults |= {
        f"train_set/training.csv:{n}": k
        for n, k in (
            (18, "unparsable_row"),
            (19, "unparsable_row"),
            (20, "path_outside_root"),
            (21, "duplicate_row"),
        )
    }
    faults["train_set/1/nowhere"] = "missing_image"
    planted = {
        "empty_box": (10, 10, 0, 8),
        "box_outside_image": (60, 10, 8, 8),
        "corrupt": (0, 0, 8, 8),
        "truncated": (0, 0, 8, 8),
        "empty": (0, 0, 8, 8),
    }
    for name, box in planted.items():
        photo(root, f"2/{name}.png")
        append_row(root, f"2/{name}.png", *box, "", 1, 0.1, 0.1)
    (root / IMAGES / "2/corrupt.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(300) + b"IEND\xaeB`\x82"
    )
    truncated = root / IMAGES / "2/truncated.png"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    (root / IMAGES / "2/empty.png").write_bytes(b"")
    faults |= {f"train_set/2/{name}": name for name in ("empty_box", "box_outside_image")}
    faults |= {
        "train_set/2/corrupt": "unreadable_image",
        "train_set/2/truncated": "truncated_image",
        "train_set/2/empty": "empty_file",
    }
    photo(root, "3/code9.png")
    append_row(root, "3/code9.png", 0, 0, 8, 8, "", 9, -2, -2)
    photo(root, "3/gray.png", gray=True)
    append_row(root, "3/gray.png", 4, 4, 16, 16, "", 3, 0.2, -0.3)
    _, report = build(root, tmp_path / "cache")
    found = {(key, kind) for kind, keys in report.problems.items() for key in keys}
    labels = {("train_set/3/code9", k) for k in ("code_9_uncertain", "va_not_annotated")}
    # grayscale is reported but usable (and its 16 px crop is of another size than the rest)
    kept = {("train_set/3/gray", k) for k in ("unexpected_mode", "unexpected_size")}
    assert found == set(faults.items()) | labels | kept
    assert report.usable["train_set"] == 16 + 1
    assert all(report.descriptions[kind] for kind in report.problems)


def test_odd_files_are_counted_and_excluded_without_hanging_or_decoding_bombs(release, tmp_path):
    _, root, _ = release
    folder = root / IMAGES / "4"
    folder.mkdir()
    (folder / "dir.png").mkdir()
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "png_bomb.png").write_bytes(png_header_bomb(30000, 30000))
    (folder / "jpeg_bomb.jpg").write_bytes(jpeg_header_bomb(30000, 30000))
    odd = {
        "dir.png": "not_a_regular_file",
        "fifo.png": "not_a_regular_file",
        "dangling.png": "broken_link",
        "loop.png": "link_loop",
        "png_bomb.png": "too_many_pixels",
        "jpeg_bomb.jpg": "too_many_pixels",
    }
    for name in odd:
        append_row(root, f"4/{name}", 0, 0, 8, 8, "", 2, 0.1, 0.1)
    _, report = build(root, tmp_path / "cache", workers=1)
    found = {key: kind for kind, keys in report.problems.items() for key in keys}
    assert found == {f"train_set/4/{Path(n).stem}": kind for n, kind in odd.items()}
    assert report.usable["train_set"] == 16


def test_the_index_is_stale_when_lists_folders_margin_or_crops_change(
    release, tmp_path, monkeypatch
):
    _, root, _ = release
    cache = tmp_path / "cache"
    first, _ = build(root, cache)
    builds = []
    real_build = index_module.build_index
    monkeypatch.setattr(
        index_module, "build_index", lambda *a, **k: builds.append(1) or real_build(*a, **k)
    )
    assert build(root, cache)[0].digest == first.digest and builds == []
    photo(root, "1/new.png")
    assert builds == [] and build(root, cache) and builds == [1]  # a new file in a subfolder
    append_row(root, "1/new.png", 0, 0, 32, 32, "", 3, 0.1, 0.2, name="validation.csv")
    assert len(build(root, cache)[0]) == len(first) + 1 and builds == [1, 1]
    wider, _ = build(root, cache, crop_margin=0.25)
    assert builds == [1, 1, 1] and wider.side.max() > first.side.max()
    (cache / "crops").rename(tmp_path / "gone")
    build(root, cache, crop_margin=0.25)
    assert builds == [1, 1, 1, 1] and (cache / "crops").is_dir()


def test_a_margin_widens_the_box_and_stops_at_the_photograph(tmp_path):
    root = tmp_path / "csv"
    (root / LISTS).mkdir(parents=True)
    for name in ("training.csv", "validation.csv"):
        (root / LISTS / name).write_text("")
    photo(root, "1/a.png", size=100)
    append_row(root, "1/a.png", 10, 20, 40, 20, "", 1, 0.1, 0.1)
    append_row(root, "1/a.png", 10, 20, 40, 20, "", 1, 0.1, 0.1, name="validation.csv")
    index, _ = build(root, tmp_path / "cache", crop_margin=0.5)
    crop = cv2.imread(index.paths(np.array([0]))[0])
    full = cv2.imread(str(root / IMAGES / "1/a.png"))
    # 20 px more left (clipped at 10) and right, 10 px more above and below
    assert np.array_equal(crop, full[10:50, 0:70])


def test_a_missing_incomplete_or_undecodable_release_is_a_config_error(tmp_path, release):
    _, root, _ = release
    with pytest.raises(ConfigError, match=f"dataset not found at {tmp_path}.*{LISTS}"):
        index_module.load_or_build_index(tmp_path, tmp_path / "c", layout=CSV)
    with pytest.raises(ConfigError, match=r"data\.crop_margin must be between 0 and 1"):
        build(root, tmp_path / "c", crop_margin=-0.1)
    (root / LISTS / "validation.csv").write_bytes(b"1/a.png,\xff\n")
    with pytest.raises(ConfigError, match=r"validation\.csv is not UTF-8 text \(byte 8\)$"):
        build(root, tmp_path / "c")
    (root / LISTS / "validation.csv").unlink()
    with pytest.raises(ConfigError, match=r"validation\.csv is missing or not a readable file"):
        index_module.load_or_build_index(root, tmp_path / "c", layout=CSV)
    os.mkfifo(root / LISTS / "validation.csv")  # never opened: it would wait for a writer
    with pytest.raises(ConfigError, match=r"validation\.csv is missing or not a readable file"):
        within(10, lambda: index_module.load_or_build_index(root, tmp_path / "c", layout=CSV))


def test_data_check_reports_the_layout(release, tmp_path, capsys):
    _, root, _ = release
    append_row(root, "1/nowhere.png", 0, 0, 8, 8, "", 1, 0.1, 0.1)
    arguments = [f"data.root={root}", f"data.format={CSV}", "data.check_workers=1"]
    assert check_main([*arguments, "data.crop_margin=0.1"]) == 0
    printed = capsys.readouterr().out
    assert "missing_image" in printed and "excluded" in printed
    cache = index_module.cache_dir_for(root, None, CSV, {"crop_margin": 0.1})
    assert cache.parent == root / ".fer_cache" and cache.name.startswith(f"{CSV}-")
    report = json.loads((cache / "check-report.json").read_text())
    # the margin is clipped at a photograph's edge, so some crops come out smaller (kept)
    assert set(report["counts"]) <= {"missing_image", "unexpected_size"}
    assert report["counts"]["missing_image"] == 1 and report["usable"]["train_set"] == 16
    assert Counter(p.suffix for p in (cache / "crops").rglob("*.*")) == {".png": 24}


def listed_labels(root: Path) -> pd.DataFrame:
    """expression, valence, arousal of every row of both file lists, by the image's file stem."""
    frames = [
        pd.read_csv(root / LISTS / name, header=None, names=COLUMNS, skiprows=int(header))
        for name, header in (("training.csv", False), ("validation.csv", True))
    ]
    listed = pd.concat(frames)
    listed.index = [Path(p).stem for p in listed["subDirectory_filePath"]]
    return listed[["expression", "valence", "arousal"]]


def outputs_by_stem(module: MultiTaskModule, dm, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the network's outputs, the batches' labels) per sample of ``split``, by image file stem."""
    paths, outputs, labels = dm.sample_paths(split), [], []
    with torch.no_grad():
        for batch in getattr(dm, f"{split}_dataloader")():
            batch = dm.on_after_batch_transfer(batch, 0)
            logits, va = module(batch["image"])
            stems = [Path(paths[i]).stem for i in batch["index"]]
            outputs.append(pd.DataFrame(torch.cat([logits.softmax(1), va], 1).numpy(), stems))
            labels.append(pd.DataFrame(np.column_stack([batch["expression"], batch["va"]]), stems))
    return pd.concat(outputs).sort_index(), pd.concat(labels).sort_index()


def test_a_model_trains_on_the_release_and_scores_the_same_faces_the_same_on_both_layouts(
    tmp_path,
):
    source = ensure_synthetic(tmp_path / "npy", train_size=48, val_size=16, image_size=32)
    root = tmp_path / "csv"
    write_csv_release(source, root, header=(False, True))
    sizes = ["data.image_size=32", "data.batch_size=16", "data.num_workers=0"]
    cfg = compose_in(
        tmp_path, "train", ["data=affectnet_csv", f"data.root={root}", *sizes, "model=tnet"]
    )
    npy_cfg = compose_in(tmp_path, "train", ["data=affectnet", f"data.root={source}", *sizes])
    csv_dm, npy_dm = instantiate(cfg.data), instantiate(npy_cfg.data)
    module = MultiTaskModule.from_config(cfg)
    quiet_trainer(tmp_path, fast_dev_run=True).fit(module, datamodule=csv_dm)
    module.eval()
    # labels end to end: every batch's labels are its file list's row (train and val splits)
    listed = listed_labels(root)
    for split in ("train", "val"):
        _, labels = outputs_by_stem(module, csv_dm, split)
        expected = listed.loc[labels.index].to_numpy()
        np.testing.assert_allclose(labels.to_numpy(), expected, atol=1e-6, err_msg=split)
    # one checkpoint, the same faces (val_set in both) in either layout: the same outputs
    npy_dm.prepare_data()
    npy_dm.setup("fit")
    on_csv, _ = outputs_by_stem(module, csv_dm, "val")
    on_npy, _ = outputs_by_stem(module, npy_dm, "val")
    assert len(on_csv) == 16 and list(on_csv.index) == list(on_npy.index)
    np.testing.assert_array_equal(on_csv.to_numpy(), on_npy.to_numpy())


@pytest.mark.slow
def test_a_run_on_the_release_keeps_its_labels_and_scores_as_on_the_npy_layout(tmp_path):
    from fer_lightning.eval import evaluate
    from fer_lightning.train import train

    source = ensure_synthetic(tmp_path / "npy", train_size=48, val_size=16, image_size=32)
    root = tmp_path / "csv"
    write_csv_release(source, root, header=(False, True))
    common = ["model=tnet", *FAST]
    csv_data = ["data=affectnet_csv", f"data.root={root}"]
    cfg = compose_in(tmp_path / "train", "train", [*csv_data, *common, "trainer.fast_dev_run=true"])
    train(cfg)
    run = Path(cfg.paths.output_dir)
    # every tested sample's labels are its file list's row, whatever the crop's path
    listed = pd.read_csv(root / LISTS / "validation.csv", index_col=0)
    listed = pd.concat(
        [
            listed,
            pd.read_csv(root / LISTS / "training.csv", header=None, index_col=0).set_axis(
                listed.columns, axis=1
            ),
        ]
    )
    listed.index = [Path(p).stem for p in listed.index]
    tested = pd.read_csv(run / "results" / "predictions.csv")
    tested.index = [Path(p).stem for p in tested["path"]]
    assert (
        tested["path"].str.contains(rf"/\.fer_cache/{CSV}-\w+/crops/train_set/").all()
        and len(tested) > 0
    )
    np.testing.assert_array_equal(tested["true_expression"], listed.loc[tested.index, "expression"])
    np.testing.assert_allclose(
        tested["true_valence"], listed.loc[tested.index, "valence"], atol=1e-6
    )

    scored = {}
    for name, data in (("csv", csv_data), ("npy", ["data=affectnet", f"data.root={source}"])):
        ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
        eval_cfg = compose_in(tmp_path / name, "eval", [ckpt, *data, *common[1:5], "split=val"])
        metrics = evaluate(eval_cfg)
        frame = pd.read_csv(Path(eval_cfg.paths.output_dir) / "results" / "predictions.csv")
        frame.index = [Path(p).stem for p in frame["path"]]
        scored[name] = metrics, frame.drop(columns="path").sort_index()
    (csv_metrics, on_csv), (npy_metrics, on_npy) = scored["csv"], scored["npy"]
    assert len(on_csv) == 16 and list(on_csv.index) == list(on_npy.index)
    pd.testing.assert_frame_equal(on_csv, on_npy, atol=1e-6)
    assert csv_metrics == pytest.approx(npy_metrics, abs=1e-6)


def test_the_margin_is_a_setting_of_this_reader_alone(tmp_path):
    """0 and 0.0 are one setting and share one cache folder; another layout refuses the key."""
    folders = {
        index_module.cache_dir_for(tmp_path, None, CSV, options)
        for options in ({}, {"crop_margin": 0}, {"crop_margin": 0.0})
    }
    assert len(folders) == 1
    assert index_module.cache_dir_for(tmp_path, None, CSV, {"crop_margin": 0.1}) not in folders
    with pytest.raises(
        ConfigError, match=r"^data\.crop_margin is not a setting of data\.format=rafdb"
    ):
        reader("rafdb", crop_margin=0.1)
