"""Image transforms: the config-built augmentation, its per-sample seeding, and normalisation.

Per sample, loader workers do only what must be per sample, on uint8 HWC RGB arrays, in the
sample's slot of the batch: decode (and resize), the optional albumentations pipeline, the
in-place flip and noise. A batch is therefore channels-last, ``[N, 3, H, W]`` with the channel
innermost. Conversion to float and ImageNet normalisation happen once per batch, after the batch
reached its device (``normalize``), where they are cheap.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from hydra.utils import instantiate

from fer_lightning.data.buffers import BufferPool
from fer_lightning.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# uint8 -> normalised float, one table column per channel, for the CPU path of `normalize`.
_LUT = np.stack(
    [(np.arange(256) / 255.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
    axis=-1,
).astype(np.float32)[None]
# The CPU path's outputs: one in the step being computed, one normalised ahead.
_OUTPUTS = BufferPool(keep=2)


# The GPU path's mean and 1 / std (of 0-255 pixels) by device: copied there once, not per batch.
_CONSTANTS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _device_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device not in _CONSTANTS:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1) * 255
        inv_std = 1 / (torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1) * 255)
        _CONSTANTS[device] = (mean.to(device), inv_std.to(device))
    return _CONSTANTS[device]


def normalize_arithmetic(images: torch.Tensor) -> torch.Tensor:
    """`normalize`'s GPU path, on any device: the CPU's table must give the same values."""
    mean, inv_std = _device_constants(images.device)
    return images.float().sub_(mean).mul_(inv_std)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB images [..., 3, H, W] -> float32 normalised with ImageNet's mean and std.

    On a GPU this is plain tensor arithmetic, which keeps the memory layout. On the CPU one
    3-channel lookup table does it in one pass over the channels-last pixels, about 4x faster than
    float arithmetic (which matters when a CPU run or CPU prediction normalises in the main process
    while workers decode); the result is channels-last.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    if images.device.type != "cpu":
        return normalize_arithmetic(images)
    pixels = images.movedim(-3, -1).contiguous()  # no copy when already channels-last
    source = pixels.numpy().reshape(-1, images.shape[-1], 3)
    out = _OUTPUTS.take(source.shape, np.float32)
    if source.size:
        cv2.LUT(source, _LUT, dst=out)
    return torch.from_numpy(out).view(pixels.shape).movedim(-1, -3)


class InPlaceTransform(ABC):
    """A training transform that changes a sample's decoded uint8 HWC image in place.

    The loader owns the freshly decoded array, so a flip or per-pixel noise can overwrite it
    instead of going through albumentations, whose call machinery and new output array cost more
    than the arithmetic (bench/README.md); the semantics are albumentations'. It is applied with
    probability ``p``; ``apply`` gets ``draws`` uniform numbers in [0, 1), which ``SeededAugment``
    draws for all transforms in one call, keyed by (seed, epoch, index).
    """

    draws = 0

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ConfigError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    @abstractmethod
    def apply(self, image: np.ndarray, uniforms: list[float]) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)})"


class InPlaceHorizontalFlip(InPlaceTransform):
    """Mirrors the image left-right, as ``A.HorizontalFlip``."""

    def apply(self, image: np.ndarray, uniforms: list[float]) -> None:
        cv2.flip(image, 1, dst=image)


class InPlaceGaussNoise(InPlaceTransform):
    """Additive Gaussian noise per pixel and channel, as ``A.GaussNoise(std_range)``, ~100x cheaper.

    ``A.GaussNoise`` draws 150k normal numbers per 224x224 image (about 5 ms, more than decoding
    it). This transform draws them once per process into a fixed bank of z quantised to 1/16
    (|z| < 8) and takes a window at a random offset per call. The standard deviation is drawn
    from ``LEVELS`` evenly spaced values of ``std_range`` (steps of 0.24 grey levels at the
    default range), so the noise in whole grey levels, ``rint(sigma z)``, can be tabulated per
    level: its positive and its negative part, as two uint8 banks. Adding the noise is then two
    saturating uint8 passes of OpenCV (``clip(image + noise, 0, 255)`` exactly), and the device
    path (fer_lightning/data/device_augment.py) computes the same integers from the same banks.
    Windows of different samples are shifted copies of one bank, which a network cannot exploit.
    ``std_range`` is a fraction of 255, as in ``A.GaussNoise``.
    """

    draws = 2  # the standard deviation and the bank offset
    LEVELS = 16
    _BANK_SIZE = 1 << 20
    _STEPS = 16  # bank values per standard deviation
    _z: np.ndarray | None = None  # 127 + 16 z, per process, the same in every process
    _banks: dict[tuple, np.ndarray] = {}  # noqa: RUF012  (per process, by std_range and length)

    def __init__(self, std_range: Sequence[float] = (0.0124, 0.0277), p: float = 0.5) -> None:
        super().__init__(p)
        low, high = float(std_range[0]), float(std_range[1])
        if not 0 <= low <= high <= 1:
            raise ConfigError(
                f"{type(self).__name__}: std_range must satisfy 0 <= low <= high <= 1 (fractions "
                f"of 255), got {list(std_range)}"
            )
        self.std_range = (low, high)

    @classmethod
    def bank_length(cls, size: int) -> int:
        """The bank's length for images of ``size`` values: a function of the size alone."""
        return max(cls._BANK_SIZE, 2 * size)

    def banks(self, size: int) -> np.ndarray:
        """uint8 [LEVELS, 2, bank_length]: per level the noise's positive and negative part.

        Built once per process and std_range, shared by every copy (threads hold copies).
        """
        cls = type(self)
        length = self.bank_length(size)
        key = (self.std_range, length)
        banks = cls._banks.get(key)
        if banks is None:
            if cls._z is None or len(cls._z) < length:
                z = np.random.default_rng(0).standard_normal(length)
                cls._z = (np.clip(np.rint(cls._STEPS * z), -127, 127) + 127).astype(np.uint8)
            low, high = self.std_range
            banks = np.empty((self.LEVELS, 2, length), dtype=np.uint8)
            for level in range(self.LEVELS):
                sigma = low + (level + 0.5) / self.LEVELS * (high - low)
                # The noise of each bank value at this level, in whole grey levels.
                noise = np.rint(np.arange(-127, 128) * (sigma * 255 / cls._STEPS))
                for part, sign in enumerate((1, -1)):
                    table = np.clip(sign * noise, 0, 255).astype(np.uint8)
                    np.take(table, cls._z[:length], out=banks[level, part])
            cls._banks[key] = banks
        return banks

    def window(self, uniforms: Sequence[float], size: int) -> tuple[int, int]:
        """(level, offset) of the bank window that a sample's two draws select."""
        std, position = uniforms
        level = min(int(std * self.LEVELS), self.LEVELS - 1)
        return level, int(position * (self.bank_length(size) - size + 1))

    def apply(self, image: np.ndarray, uniforms: list[float]) -> None:
        level, offset = self.window(uniforms, image.size)
        positive, negative = self.banks(image.size)[level, :, offset : offset + image.size]
        cv2.add(image, positive.reshape(image.shape), dst=image)
        cv2.subtract(image, negative.reshape(image.shape), dst=image)


def build_augment(specs: Sequence[Any] | None) -> A.Compose | None:
    """An albumentations pipeline from config specs (``{_target_: ..., ...}``) or transforms.

    Hydra usually instantiates the specs before they arrive here; plain dicts (from code) are
    instantiated the same way. No specs means no augmentation.
    """
    transforms = _instantiate(specs, (A.BasicTransform, A.BaseCompose), "data.augment")
    if not transforms:
        return None
    # One image per call: there are no other targets whose shapes could disagree with it.
    return A.Compose(transforms, p=1.0, is_check_shapes=False)


def build_inplace(specs: Sequence[Any] | None) -> list[InPlaceTransform]:
    """The in-place transforms of ``data.augment_inplace``, from config specs or instances."""
    return _instantiate(specs, InPlaceTransform, "data.augment_inplace")


def _instantiate(specs: Sequence[Any] | None, kind: type | tuple[type, ...], key: str) -> list:
    transforms = [instantiate(s) if isinstance(s, Mapping) else s for s in specs or ()]
    for transform in transforms:
        if not isinstance(transform, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{key} items must be {names} transforms, got {transform!r}")
    return transforms


class SeededAugment:
    """A sample's training augmentation, its randomness a function of (seed, epoch, index) only.

    Two stages on the decoded HWC image, in place (it is the sample's slot in the batch): an
    optional albumentations pipeline (anything geometric or photometric, as long as it keeps the
    image's size), its output copied back; then the in-place transforms.

    albumentations 2.0 keeps one random state per Compose and reseeds nothing in DataLoader
    workers, so results would depend on worker count and order. Here both stages share one numpy
    generator (and albumentations one Python generator: ``Compose(seed=...)`` would instead seed
    every transform identically and correlate their coin flips), re-keyed before every sample:
    Philox with key (seed, epoch << 32 | index), so distinct samples get independent streams.
    Re-keying an existing Philox costs a fifth of constructing a seeded generator, which matters
    at thousands of images per second. Each worker process or loader thread holds its own copy.
    """

    def __init__(
        self, augment: A.Compose | None, inplace: Sequence[InPlaceTransform], seed: int
    ) -> None:
        self.augment = augment
        self.inplace = list(inplace)
        # Per transform: its coin, then its draws. One call for all, as each costs microseconds.
        self._draws = sum(1 + t.draws for t in self.inplace)
        self.seed = seed
        self._numpy = np.random.Generator(np.random.Philox(key=0))
        self._state = {
            "bit_generator": "Philox",
            "state": {
                "counter": np.zeros(4, dtype=np.uint64),
                "key": np.array([0, seed], dtype=np.uint64),
            },
            "buffer": np.zeros(4, dtype=np.uint64),
            "buffer_pos": 4,
            "has_uint32": 0,
            "uinteger": 0,
        }
        self._python = random.Random(0)
        if augment is not None:
            augment.set_random_state(self._numpy, self._python)

    def _rekey(self, epoch: int, index: int) -> int:
        key = (epoch << 32) | index
        self._state["state"]["key"][0] = key
        self._numpy.bit_generator.state = self._state  # copied in, so reusing the dict is safe
        return key

    def uniforms(self, epoch: int, index: int) -> list[float]:
        """The in-place transforms' draws of a sample (per transform its coin, then its draws),
        as ``__call__`` draws them when there is no albumentations stage before them."""
        if self.augment is not None:
            raise ValueError("the in-place draws follow the albumentations stage's in the stream")
        self._rekey(epoch, index)
        return self._numpy.random(self._draws).tolist()

    def __call__(self, image: np.ndarray, epoch: int, index: int) -> None:
        """Augments ``image`` (uint8 HWC, contiguous) in place."""
        key = self._rekey(epoch, index)
        if self.augment is not None:
            self._python.seed((self.seed << 64) | key)
            result = self.augment(image=image)["image"]
            if result.shape != image.shape:
                raise ConfigError(
                    f"data.augment changed an image's shape from {image.shape} to "
                    f"{result.shape}: its transforms must keep data.image_size (crop with "
                    "RandomResizedCrop(size=...), for example)"
                )
            if result is not image:
                image[...] = result
        if self.inplace:
            uniforms = self._numpy.random(self._draws).tolist()
            k = 0
            for transform in self.inplace:
                if uniforms[k] < transform.p:
                    transform.apply(image, uniforms[k + 1 : k + 1 + transform.draws])
                k += 1 + transform.draws
