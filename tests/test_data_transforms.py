"""The augmentation: in-place flip and noise, and its keying by (seed, epoch, index)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import albumentations as A
import numpy as np
import pytest
import torch

from fer_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InPlaceGaussNoise,
    InPlaceHorizontalFlip,
    SeededAugment,
    build_augment,
    build_inplace,
    normalize,
    normalize_arithmetic,
)
from fer_lightning.errors import ConfigError
from tests.conftest import subprocess_env

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)  # HWC, not square: W is the last axis


def reference_normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (images.float() / 255 - mean) / std


def test_normalize_on_cpu_matches_the_formula_for_any_layout():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    assert torch.allclose(normalize(images), reference_normalize(images), atol=1e-5)
    # One pass over the channels-last pixels: its result is channels-last, whatever came in.
    assert normalize(images).is_contiguous(memory_format=torch.channels_last)
    channels_last = images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.allclose(normalize(channels_last), reference_normalize(images), atol=1e-5)
    assert torch.allclose(normalize(images[0]), reference_normalize(images[0]), atol=1e-5)
    with pytest.raises(TypeError, match=r"^normalize expects uint8 images, got torch.float32$"):
        normalize(images.float())


def test_the_gpu_paths_arithmetic_gives_the_cpu_tables_values():
    """`normalize` off the CPU is `normalize_arithmetic`, which runs here on the CPU too."""
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    assert torch.allclose(normalize_arithmetic(images), reference_normalize(images), atol=1e-5)
    assert torch.allclose(normalize_arithmetic(images), normalize(images), atol=1e-5)


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


@pytest.mark.parametrize(
    "stage",
    [
        pytest.param(
            lambda seed: SeededAugment(None, [InPlaceGaussNoise(p=1.0)], seed), id="inplace"
        ),
        # albumentations draws its coins from the Python generator, its noise from numpy's.
        pytest.param(
            lambda seed: SeededAugment(build_augment([A.HorizontalFlip(p=0.5)]), [], seed),
            id="albumentations-python",
        ),
        pytest.param(
            lambda seed: SeededAugment(build_augment([A.GaussNoise(p=1.0)]), [], seed),
            id="albumentations-numpy",
        ),
    ],
)
def test_each_random_stream_is_keyed_by_the_seed(stage):
    def images(seed: int) -> list[bytes]:
        augment = stage(seed)
        return [augmented(augment, IMAGE.copy(), 0, index).tobytes() for index in range(16)]

    assert images(0) == images(0)
    assert images(0) != images(1)


def test_the_noise_banks_are_the_same_in_every_process():
    """Loader workers and DDP ranks build their own banks: the same noise needs the same ones."""
    code = (
        "import sys; from fer_lightning.data.transforms import InPlaceGaussNoise; "
        "sys.stdout.buffer.write(InPlaceGaussNoise().banks(300).tobytes())"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=subprocess_env(), timeout=300
    )
    assert child.returncode == 0, child.stderr[-2000:]
    here = InPlaceGaussNoise().banks(300).tobytes()
    assert hashlib.sha256(child.stdout).digest() == hashlib.sha256(here).digest()


def test_an_albumentations_pipeline_must_keep_the_image_size():
    crop = SeededAugment(build_augment([A.Crop(x_min=0, y_min=0, x_max=12, y_max=10)]), [], 0)
    with pytest.raises(ConfigError) as raised:
        crop(IMAGE.copy(), 0, 0)
    assert str(raised.value) == (
        "data.augment changed an image's shape from (20, 24, 3) to (10, 12, 3): its transforms "
        "must keep data.image_size (crop with RandomResizedCrop(size=...), for example)"
    )
    with pytest.raises(
        ValueError, match=r"^the in-place draws follow the albumentations stage's in the stream$"
    ):
        crop.uniforms(0, 0)


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
        (
            lambda: InPlaceHorizontalFlip(p=1.5),
            "InPlaceHorizontalFlip: p must be in [0, 1], got 1.5",
        ),
        (
            lambda: InPlaceGaussNoise(std_range=(0.3, 0.1)),
            "InPlaceGaussNoise: std_range must satisfy 0 <= low <= high <= 1 (fractions of 255), "
            "got [0.3, 0.1]",
        ),
        (
            lambda: build_inplace([A.HorizontalFlip()]),
            "data.augment_inplace items must be InPlaceTransform transforms, got HorizontalFlip(",
        ),
        (
            lambda: build_augment([InPlaceHorizontalFlip()]),
            "data.augment items must be BasicTransform or BaseCompose transforms, got "
            "InPlaceHorizontalFlip({'p': 0.5})",
        ),
    ],
)
def test_bad_transform_settings_are_one_line_config_errors(make, message):
    with pytest.raises(ConfigError) as raised:
        make()
    assert str(raised.value).startswith(message)


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


def test_a_noise_window_is_chosen_by_its_two_draws_within_the_bank():
    noise, size = InPlaceGaussNoise(), 300
    last = noise.bank_length(size) - size
    assert noise.window([0.0, 0.0], size) == (0, 0)
    assert noise.window([0.5, 0.5], size) == (noise.LEVELS // 2, (last + 1) // 2)
    assert noise.window([1 - 1e-12, 1 - 1e-12], size) == (noise.LEVELS - 1, last)


def test_the_noise_std_range_may_span_zero_to_one_and_no_more():
    assert InPlaceGaussNoise(std_range=(0.0, 1.0)).std_range == (0.0, 1.0)
    with pytest.raises(ConfigError, match="std_range must satisfy"):
        InPlaceGaussNoise(std_range=(0.1, 1.5))
