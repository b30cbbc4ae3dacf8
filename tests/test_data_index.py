"""Indexing and checking: planted faults and odd files counted and excluded; the cache reused,
rebuilt when stale or damaged."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from fer_lightning.data import decode
from fer_lightning.data import index as index_module
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.errors import ConfigError
from tests.data_fixtures import (
    jpeg_header_bomb,
    make_dataset,
    plant_faults,
    plant_odd_files,
    png_header_bomb,
    within,
    write_annotations,
    write_image,
)


@pytest.fixture
def faulty(tmp_path):
    root = make_dataset(tmp_path / "ds")
    return root, plant_faults(root)


def datamodule(root, **kwargs):
    args = {"root": str(root), "image_size": 32, "batch_size": 8, "num_workers": 0, **kwargs}
    return AffectNetDataModule(**args)


def test_planted_faults_are_counted_and_excluded(faulty, caplog):
    root, faults = faulty
    dm = datamodule(root)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    report = json.loads((root / ".fer_cache" / "check-report.json").read_text())
    assert report["counts"] == {kind: 1 for kind in faults}
    assert {kind: ids for kind, ids in report["ids"].items()} == {k: [v] for k, v in faults.items()}
    # One counted line per kind, not one per file, and only once although indexing ran twice.
    assert len([r for r in caplog.records if "[va_out_of_range]" in r.message]) == 1

    index, _ = index_module.load_or_build_index(root, root / ".fer_cache", quiet=True)
    kept = set(index.keys(np.arange(len(index))))
    expected = {f"train_set/{i}" for i in range(48)} | {f"val_set/{i}" for i in range(48, 64)}
    assert kept == expected | {"train_set/f_gray"}  # grayscale is reported but usable
    in_splits = {p for part in ("train", "val", "test") for p in dm.sample_paths(part)}
    assert {os.path.basename(p).removesuffix(".jpg") for p in in_splits} == {
        k.split("/")[1] for k in kept
    }
    assert sum(dm.split_sizes.values()) == len(kept)


def test_missing_dataset_is_a_config_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"dataset not found at {missing}.*data=synthetic"):
        datamodule(missing).prepare_data()
    assert not missing.exists()


def test_no_usable_sample_is_a_config_error(tmp_path):
    root = make_dataset(tmp_path / "ds", train=3, val=2)
    for path in (root / "train_set" / "images").iterdir():
        path.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no usable sample in .*train_set"):
        datamodule(root).prepare_data()


def test_index_is_reused_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "ds", train=16, val=8, as_string=False)
    cache = tmp_path / "cache"
    first, _ = index_module.load_or_build_index(root, cache)
    builds = []
    real_build = index_module.build_index
    monkeypatch.setattr(
        index_module, "build_index", lambda *a, **k: builds.append(1) or real_build(*a, **k)
    )
    again, _ = index_module.load_or_build_index(root, cache)
    assert builds == [] and again.digest == first.digest
    assert np.array_equal(again.valence, first.valence)

    # A new file: the folder's entry count changes even where its mtime cannot (coarse clocks).
    write_image(root / "train_set" / "images" / "new.jpg", np.random.default_rng(5))
    write_annotations(root / "train_set" / "annotations", "new", 3, 0.1, 0.2, as_string=True)
    changed, _ = index_module.load_or_build_index(root, cache)
    assert builds == [1] and len(changed) == len(first) + 1

    index_module.load_or_build_index(root, cache, rebuild=True)
    assert builds == [1, 1]


def test_an_image_that_stops_decoding_is_replaced_not_fatal(tmp_path, caplog):
    root = make_dataset(tmp_path / "ds", train=16, val=8)
    dm = datamodule(root)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    broken = train.path(2)
    with open(broken, "wb") as f:  # in place: the directory listing does not change
        f.write(b"garbage")
    with caplog.at_level(logging.WARNING):
        sample = train[(2, 0)]
        again = train[(2, 0)]
    assert sample["index"] == again["index"] == 3
    assert torch_equal(sample["image"], again["image"])
    assert train.substitutions == 2 and broken in caplog.text


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_a_read_only_dataset_keeps_its_cache_in_the_user_cache(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    real_writable = index_module._writable
    monkeypatch.setattr(index_module, "_writable", lambda d: d.parent != root and real_writable(d))
    cache = index_module.cache_dir_for(root)
    assert cache.parent == tmp_path / "user" / "fer_lightning"
    assert index_module.cache_dir_for(root, tmp_path / "mine") == tmp_path / "mine"


def test_odd_files_are_counted_and_excluded_without_hanging_or_decoding_bombs(
    tmp_path, monkeypatch
):
    root = make_dataset(tmp_path / "ds", train=16, val=8)
    odd = plant_odd_files(root)
    decoded_sizes = []
    real_decode = decode.decode_bytes
    monkeypatch.setattr(
        decode,
        "decode_bytes",
        lambda data, flag: decoded_sizes.append(len(data)) or real_decode(data, flag),
    )
    _, report = within(
        60, lambda: index_module.load_or_build_index(root, tmp_path / "c", workers=1)
    )
    found = {key: kind for kind, keys in report.problems.items() for key in keys}
    assert found == odd
    assert report.usable["train_set"] == 16 + 1  # the link to a good image is kept
    assert report.excluded["train_set"] == len(odd)
    bombs = {len(png_header_bomb(30000, 30000)), len(jpeg_header_bomb(30000, 30000))}
    assert not bombs & set(decoded_sizes)  # refused by their headers, never decoded


@pytest.mark.parametrize(
    ("damaged", "content"),
    [
        ("index.npz", b""),
        ("index.npz", b"PK\x03\x04 cut short"),
        ("check-report.json", b'{"root": "cut sh'),
        ("check-report.json", b"[1, 2]"),
        ("check-report.json", b'{"root": "x"}'),
        ("split-holdout-8classes-seed0-fraction0.2.json", b'{"train": ['),
    ],
)
def test_a_damaged_cache_file_is_rebuilt_with_one_warning(tmp_path, caplog, damaged, content):
    root = make_dataset(tmp_path / "ds", train=16, val=8)
    dm = datamodule(root)
    dm.prepare_data()
    cache = root / ".fer_cache"
    expected = dm._prepared[1]
    (cache / damaged).write_bytes(content)
    dm = datamodule(root)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    damage = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damage) == 1 and damaged in damage[0]
    assert all(np.array_equal(dm._prepared[1][p], expected[p]) for p in expected)
    assert index_module.read_index_meta(cache / "index.npz") is not None
    json.loads((cache / "check-report.json").read_text())["counts"]
