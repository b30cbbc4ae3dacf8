"""data.augment_on=device: the loader's flip and noise, byte for byte, applied after transfer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.device_augment import AUGMENT_ON, DeviceAugment
from fer_lightning.data.transforms import (
    InPlaceGaussNoise,
    InPlaceHorizontalFlip,
    InPlaceTransform,
    SeededAugment,
)
from fer_lightning.errors import ConfigError
from tests.data_fixtures import cached_datamodule, make_dataset, quiet_trainer
from tests.test_data_loaders import AUGMENT, _Recorder, batches

INPLACE = {"augment_inplace": AUGMENT["augment_inplace"]}


def transferred(dm: AffectNetDataModule, batch: dict) -> dict:
    """What Lightning does to a training batch: the two hooks around the transfer."""
    dm.trainer = SimpleNamespace(training=True)
    return dm.on_after_batch_transfer(dm.on_before_batch_transfer(batch, 0), 0)


@pytest.mark.parametrize("cache", [None, "decoded"])
def test_device_augmentation_gives_the_loaders_batches(tmp_path, cache):
    root = make_dataset(tmp_path / "ds", train=40, val=16)
    on_loader = cached_datamodule(root, cache=cache, **INPLACE)
    on_device = cached_datamodule(root, cache=cache, augment_on="device", **INPLACE)
    loader, device_loader = on_loader.train_dataloader(), on_device.train_dataloader()
    for epoch in (0, 2):
        theirs = [on_loader.on_after_batch_transfer(b, 0) for b in batches(loader, epoch)]
        raw = batches(device_loader, epoch)
        assert any(
            not torch.equal(r["image"], t["image"]) for r, t in zip(raw, theirs, strict=True)
        )
        mine = [transferred(on_device, b) for b in raw]
        for ours, reference in zip(mine, theirs, strict=True):
            assert ours.keys() == reference.keys()
            assert all(torch.equal(ours[k], reference[k]) for k in ours)


@pytest.mark.parametrize(
    "transforms",
    [
        [InPlaceHorizontalFlip(p=0.5), InPlaceGaussNoise(std_range=(0.01, 0.2), p=0.7)],
        # Each transform reads its own coin and draws, whatever comes before it.
        [
            InPlaceGaussNoise(std_range=(0.01, 0.2), p=0.7),
            InPlaceHorizontalFlip(p=0.5),
            InPlaceGaussNoise(std_range=(0.1, 0.3), p=0.4),
        ],
    ],
    ids=["flip-noise", "noise-flip-noise"],
)
def test_every_sample_gets_the_in_place_transforms_bytes(transforms):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 20, 20, 3), dtype=np.uint8)
    expected = images.copy()
    per_sample = SeededAugment(None, transforms, seed=5)
    for k in range(len(images)):
        per_sample(expected[k], 3, 100 + k)
    device = DeviceAugment(transforms, seed=5)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # channels-last, as the loader's
    result = device.apply(batch, device.plan(torch.arange(100, 140), 3))
    assert result.is_contiguous(memory_format=torch.channels_last)
    assert np.array_equal(result.permute(0, 2, 3, 1).numpy(), expected)


def test_what_cannot_move_to_the_device_is_one_line(tmp_path):
    class Mine(InPlaceTransform):
        def apply(self, image, uniforms):
            pass

    with pytest.raises(ConfigError, match=r"applies InPlaceHorizontalFlip and InPlaceGaussNoise"):
        DeviceAugment([Mine()], 0)
    root = make_dataset(tmp_path / "ds", train=8, val=4)
    with pytest.raises(ConfigError, match=r"set data.augment=\[\] or data.augment_on=loader"):
        AffectNetDataModule(root=str(root), augment_on="device", **AUGMENT)
    with pytest.raises(ConfigError, match=r"data.augment_on must be one of loader, device"):
        AffectNetDataModule(root=str(root), augment_on="gpu")


def test_a_trainer_sees_the_same_training_batches_either_way(tmp_path):
    root = make_dataset(tmp_path / "ds", train=40, val=16)
    seen = {}
    for where in AUGMENT_ON:
        dm = AffectNetDataModule(
            root=str(root),
            image_size=24,
            batch_size=6,
            cache="decoded",
            augment_on=where,
            **INPLACE,
        )
        recorder = _Recorder()
        trainer = quiet_trainer(
            tmp_path,
            max_epochs=2,
            limit_train_batches=2,
            limit_val_batches=1,
            num_sanity_val_steps=0,
        )
        trainer.fit(recorder, datamodule=dm)
        seen[where] = recorder.seen
    assert len(seen["loader"]) == 4
    for (epoch, indices, images), (epoch_, indices_, images_) in zip(*seen.values(), strict=True):
        assert (epoch, indices) == (epoch_, indices_) and torch.equal(images, images_)
