"""The decoded cache: the JPEG path's batches, built once, rebuilt when stale or damaged."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.decoded_store import open_store, store_paths
from fer_lightning.errors import ConfigError
from tests.data_fixtures import cached_datamodule, make_dataset
from tests.test_data_loaders import AUGMENT, assert_same_batches, batches

INPLACE = {"augment_inplace": AUGMENT["augment_inplace"]}


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", train=40, val=16)


def the_store(dm: AffectNetDataModule):
    return dm.datasets["train"].store


@pytest.mark.parametrize("loader", ["threads", "processes"])
def test_batches_from_the_store_equal_those_decoded_from_the_images(dataset, loader):
    decoded = cached_datamodule(dataset, loader=loader, **AUGMENT)
    cached = cached_datamodule(dataset, loader=loader, cache="decoded", **AUGMENT)
    assert the_store(decoded) is None and the_store(cached) is not None
    for epoch in (0, 1):
        assert_same_batches(
            batches(cached.train_dataloader(), epoch), batches(decoded.train_dataloader(), epoch)
        )
    assert_same_batches(list(cached.val_dataloader()), list(decoded.val_dataloader()))


def test_the_store_is_built_once_and_rebuilt_when_the_index_changes(dataset, caplog):
    first = the_store(cached_datamodule(dataset, cache="decoded"))
    built = first.pixels.stat().st_mtime_ns
    again = the_store(cached_datamodule(dataset, cache="decoded"))
    assert again.pixels == first.pixels and again.pixels.stat().st_mtime_ns == built
    other_size = the_store(cached_datamodule(dataset, cache="decoded", image_size=16))
    assert other_size.pixels != first.pixels and first.pixels.exists()
    make_dataset(dataset, train=44, val=16, seed=3)  # new files: a new index, a new store
    changed = the_store(cached_datamodule(dataset, cache="decoded"))
    assert changed.pixels != first.pixels
    assert not first.pixels.exists()  # the stale store of that size is gone
    assert other_size.pixels.exists()


def test_a_damaged_store_is_rebuilt_with_a_warning(dataset, caplog):
    dm = cached_datamodule(dataset, cache="decoded")
    store = the_store(dm)
    good = store.read(0).copy()
    with open(store.pixels, "r+b") as file:  # a zeroed first sample (spot-checked)
        file.write(bytes(store.sample_bytes))
    with caplog.at_level(logging.WARNING):
        rebuilt = the_store(cached_datamodule(dataset, cache="decoded"))
    assert "differ from their checksums" in caplog.text
    assert np.array_equal(rebuilt.read(0), good)
    with open(rebuilt.pixels, "r+b") as file:
        file.truncate(10)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cached_datamodule(dataset, cache="decoded")
    assert "wrong length" in caplog.text
    _, meta = store_paths(dataset / "c", index_of(dm), 24)
    meta.write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cached_datamodule(dataset, cache="decoded")
    assert "damaged" in caplog.text
    assert open_store(dataset / "c", index_of(dm), 24, verify="all") is not None


def index_of(dm: AffectNetDataModule):
    from fer_lightning.data.index import load_index

    return load_index(dm.root / "c" / "index.npz", dm.root)


def test_a_sample_that_did_not_decode_is_replaced_as_when_decoding(dataset, caplog):
    decoded = cached_datamodule(dataset)
    path = decoded.sample_paths("train")[3]
    with open(path, "r+b") as file:  # overwritten in place: the index does not notice
        file.write(b"not a jpeg any more")
    decoded = cached_datamodule(dataset)
    with caplog.at_level(logging.WARNING):
        cached = cached_datamodule(dataset, cache="decoded")
    assert "did not decode while building the decoded cache" in caplog.text
    mine, theirs = cached.datasets["train"][3], decoded.datasets["train"][3]
    assert mine["index"] == theirs["index"] == 4
    assert torch.equal(mine["image"], theirs["image"])


def test_a_rank_other_than_zero_only_reads_the_store(dataset, monkeypatch):
    cached_datamodule(dataset, cache_dir=None)  # rank 0 indexed the dataset, without the store
    for module in ("datamodule", "decoded_store"):
        monkeypatch.setattr(f"fer_lightning.data.{module}.rank_and_world", lambda: (1, 2))
    dm = AffectNetDataModule(root=str(dataset), image_size=24, cache="decoded")
    with pytest.raises(ConfigError, match=r"decoded cache .* is missing"):
        dm.setup("fit")
    monkeypatch.undo()
    cached_datamodule(dataset, cache="decoded", cache_dir=None)
    for module in ("datamodule", "decoded_store"):
        monkeypatch.setattr(f"fer_lightning.data.{module}.rank_and_world", lambda: (1, 2))
    reader = AffectNetDataModule(root=str(dataset), image_size=24, cache="decoded")
    reader.setup("fit")
    assert the_store(reader) is not None


def test_a_full_disk_is_one_line(dataset, monkeypatch):
    monkeypatch.setattr(
        "fer_lightning.data.decoded_store.shutil.disk_usage", lambda _: type("U", (), {"free": 10})
    )
    with pytest.raises(ConfigError, match=r"needs .* GB in .* set data.cache_dir"):
        cached_datamodule(dataset, cache="decoded")


def test_bad_values_are_one_line(dataset):
    with pytest.raises(ConfigError, match=r"data.cache must be null or decoded"):
        AffectNetDataModule(root=str(dataset), cache="jpeg")
