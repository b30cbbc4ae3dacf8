"""The augmentation: in-place flip and noise, and its keying by (seed, epoch, index)."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from fer_lightning.data.transforms import (
    InPlaceGaussNoise,
    InPlaceHorizontalFlip,
    SeededAugment,
    build_augment,
    build_inplace,
)
from fer_lightning.errors import ConfigError

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)  # HWC, not square: W is the last axis


def augmented(augment: SeededAugment, image: np.ndarray, epoch: int, index: int) -> np.ndarray:
    augment(image, epoch, index)
    return image


def test_inplace_flip_mirrors_the_image_left_right():
    image = IMAGE.copy()
    InPlaceHorizontalFlip().apply(image, [])
    assert np.array_equal(image, IMAGE[:, ::-1])
    never = SeededAugment(None, [InPlaceHorizontalFlip(p=0.0)], 0)
    assert all(np.array_equal(augmented(never, IMAGE.copy(), 0, i), IMAGE) for i in range(20))


@pytest.mark.parametrize("std", [0.0124, 0.0277, 0.1])
def test_inplace_noise_has_the_configured_spread(std):
    grey = np.full((112, 112, 3), 128, dtype=np.uint8)
    InPlaceGaussNoise(std_range=(std, std)).apply(grey, [0.5, 0.3])
    noise = grey.astype(np.float64) - 128
    assert abs(noise.mean()) < 0.05 * std * 255 + 0.05
    # Rounding to whole grey levels adds a variance of 1/12.
    assert np.sqrt(noise.var() - 1 / 12) == pytest.approx(std * 255, rel=0.03)
    assert len(np.unique(noise)) > 10  # per pixel, not one offset per image


def test_inplace_noise_saturates_and_draws_its_std_per_image():
    black = np.zeros((64, 64, 3), dtype=np.uint8)
    InPlaceGaussNoise(std_range=(0.05, 0.05)).apply(black, [0.5, 0.7])
    assert black.min() == 0 and black.max() > 0  # clipped at 0, not wrapped to 255
    noise = SeededAugment(None, [InPlaceGaussNoise(std_range=(0.01, 0.03), p=1.0)], 0)
    stds = [
        augmented(noise, np.full((64, 64, 3), 128, np.uint8), 0, i).std() / 255 for i in range(40)
    ]
    assert 0.008 < min(stds) < 0.014 and 0.026 < max(stds) < 0.032


def test_seeded_augment_depends_only_on_seed_epoch_and_index():
    def run(seed: int, epoch: int, index: int) -> np.ndarray:
        augment = SeededAugment(
            build_augment([A.RandomBrightnessContrast(p=1.0)]),
            build_inplace([InPlaceHorizontalFlip(p=0.5), InPlaceGaussNoise(p=1.0)]),
            seed,
        )
        return augmented(augment, IMAGE.copy(), epoch, index)

    reference = run(0, 1, 5)
    assert np.array_equal(run(0, 1, 5), reference)
    for other in ((1, 1, 5), (0, 2, 5), (0, 1, 6)):
        assert not np.array_equal(run(*other), reference)
    flips = [SeededAugment(None, [InPlaceHorizontalFlip(p=0.5)], 0) for _ in range(2)]
    mirrored = [
        np.array_equal(augmented(flips[i % 2], IMAGE.copy(), 0, i), IMAGE[:, ::-1])
        for i in range(400)
    ]
    assert 0.4 < np.mean(mirrored) < 0.6


def test_an_albumentations_pipeline_must_keep_the_image_size():
    crop = SeededAugment(build_augment([A.Crop(x_min=0, y_min=0, x_max=12, y_max=10)]), [], 0)
    with pytest.raises(ConfigError, match=r"changed an image's shape from \(20, 24, 3\)"):
        crop(IMAGE.copy(), 0, 0)


def mirrored_view(image: np.ndarray, **_: object) -> np.ndarray:
    return image[:, ::-1]


def test_an_albumentations_view_of_the_slot_is_copied_back_before_the_inplace_stage():
    mirror_view = A.Lambda(image=mirrored_view, p=1.0)
    augment = SeededAugment(build_augment([mirror_view]), [], 0)
    assert np.array_equal(augmented(augment, IMAGE.copy(), 0, 0), IMAGE[:, ::-1])
    twice = SeededAugment(build_augment([mirror_view]), [InPlaceHorizontalFlip(p=1.0)], 0)
    assert np.array_equal(augmented(twice, IMAGE.copy(), 0, 0), IMAGE)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: InPlaceHorizontalFlip(p=1.5), "p must be in"),
        (lambda: InPlaceGaussNoise(std_range=(0.3, 0.1)), "std_range must satisfy"),
        (lambda: build_inplace([A.HorizontalFlip()]), "augment_inplace items must be"),
        (lambda: build_augment([InPlaceHorizontalFlip()]), "augment items must be"),
    ],
)
def test_bad_transform_settings_are_one_line_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_off_the_cpu_normalize_copies_its_constants_to_the_device_once(monkeypatch):
    """A copy to the GPU per batch would be two host-to-device transfers per step; the meta
    device stands in for a GPU."""
    import torch

    from fer_lightning.data import transforms

    made: list[object] = []
    tensor, new_tensor = torch.tensor, torch.Tensor.new_tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or tensor(*a, **k))
    monkeypatch.setattr(
        torch.Tensor, "new_tensor", lambda *a, **k: made.append(a) or new_tensor(*a, **k)
    )
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8, device="meta")
    for _ in range(3):
        out = transforms.normalize(images)
    assert out.dtype == torch.float32 and out.device.type == "meta"
    assert len(made) <= 2  # mean and std, once
