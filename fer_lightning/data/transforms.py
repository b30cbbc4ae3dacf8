"""Image transforms: the config-built augmentation, its per-sample seeding, and normalisation.

Per sample, workers do only what must be per sample, on uint8 HWC RGB arrays (decode, resize,
augment). Conversion to float and ImageNet normalisation happen once per batch, after the batch
reached its device (``normalize``), where they are cheap.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from hydra.utils import instantiate

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# uint8 -> normalised float per channel, for the CPU path of `normalize`.
_LUTS = [
    ((np.arange(256) / 255.0 - m) / s).astype(np.float32)
    for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)
]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB images [..., 3, H, W] -> float32 normalised with ImageNet's mean and std.

    On a GPU this is plain tensor arithmetic. On the CPU a per-channel lookup table does it in one
    pass, about 4x faster than float arithmetic (which matters when a CPU run or CPU prediction
    normalises in the main process while workers decode).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    if images.device.type != "cpu":
        mean = images.new_tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1) * 255
        inv_std = 1 / (images.new_tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1) * 255)
        return images.float().sub_(mean).mul_(inv_std)
    source = images.contiguous().numpy().reshape(-1, 3, images.shape[-2] * images.shape[-1])
    out = np.empty(source.shape, dtype=np.float32)
    if source.size:
        for channel, table in enumerate(_LUTS):
            cv2.LUT(source[:, channel], table, dst=out[:, channel])
    return torch.from_numpy(out).view(images.shape)


def to_chw(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """HWC -> contiguous CHW, in a new array or in ``out`` (a sample's slot in a batch buffer).

    OpenCV's split is faster than a numpy transpose copy. Given planes of the wrong shape it would
    silently write new arrays instead, so ``out`` is checked.
    """
    shape = (image.shape[2], *image.shape[:2])
    if out is None:
        out = np.empty(shape, dtype=image.dtype)
    elif out.shape != shape or out.dtype != image.dtype:
        raise ValueError(f"a {image.dtype} {shape} CHW image does not fit {out.dtype} {out.shape}")
    cv2.split(image, list(out))
    return out


class BankGaussNoise(A.ImageOnlyTransform):
    """Additive Gaussian noise like ``A.GaussNoise`` (per pixel and channel), ~50x cheaper.

    ``A.GaussNoise`` draws 150k normal numbers per 224x224 image (about 5 ms, more than decoding
    it). This transform draws them once per process into a fixed bank and takes a window at a
    random offset per call, then adds ``sigma`` times it in one saturating uint8 pass. The bank
    stores z as ``128 + 16 z`` in uint8 so that pass runs OpenCV's uint8 fast path: z is quantised
    to 1/16 (|z| < 8), an error of at most sigma/32 (0.22 grey levels) before the result is
    rounded to whole grey levels anyway. Windows of different samples are shifted copies of one
    bank, which a network cannot exploit. ``std_range`` is a fraction of 255, as in
    ``A.GaussNoise``.
    """

    _BANK_SIZE = 1 << 22
    _STEPS = 16  # bank values per standard deviation
    _bank: np.ndarray | None = None  # per process, the same in every process

    def __init__(self, std_range: Sequence[float] = (0.0124, 0.0277), p: float = 0.5) -> None:
        super().__init__(p=p)
        low, high = float(std_range[0]), float(std_range[1])
        if not 0 <= low <= high <= 1:
            raise ValueError(f"std_range must satisfy 0 <= low <= high <= 1, got {std_range}")
        self.std_range = (low, high)

    @classmethod
    def bank(cls, size: int) -> np.ndarray:
        if cls._bank is None or len(cls._bank) < 2 * size:
            z = np.random.default_rng(0).standard_normal(max(cls._BANK_SIZE, 2 * size))
            cls._bank = np.clip(np.rint(128 + cls._STEPS * z), 0, 255).astype(np.uint8)
        return cls._bank

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        size = data["image"].size
        offset = int(self.random_generator.integers(0, len(self.bank(size)) - size + 1))
        return {"sigma": self.py_random.uniform(*self.std_range) * 255.0, "offset": offset}

    def apply(self, img: np.ndarray, sigma: float, offset: int, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8:
            raise TypeError(f"BankGaussNoise works on uint8 images, got {img.dtype}")
        noise = self.bank(img.size)[offset : offset + img.size].reshape(img.shape)
        scale = sigma / self._STEPS
        return cv2.addWeighted(img, 1.0, noise, scale, -128 * scale, dtype=cv2.CV_8U)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std_range",)


def build_augment(specs: Sequence[Any] | None) -> A.Compose | None:
    """An albumentations pipeline from config specs (``{_target_: ..., ...}``) or transforms.

    Hydra usually instantiates the specs before they arrive here; plain dicts (from code) are
    instantiated the same way. No specs means no augmentation.
    """
    if not specs:
        return None
    transforms = [instantiate(s) if isinstance(s, Mapping) else s for s in specs]
    for transform in transforms:
        if not isinstance(transform, (A.BasicTransform, A.BaseCompose)):
            raise TypeError(f"data.augment items must be albumentations transforms: {transform!r}")
    # One image per call: there are no other targets whose shapes could disagree with it.
    return A.Compose(transforms, p=1.0, is_check_shapes=False)


class SeededAugment:
    """An albumentations pipeline whose randomness depends only on (seed, epoch, index).

    albumentations 2.0 keeps one random state per Compose and reseeds nothing in DataLoader
    workers, so results would depend on worker count and order. Here the pipeline shares one
    numpy and one Python generator (``Compose(seed=...)`` would instead seed every transform
    identically and correlate their coin flips), and both are re-keyed before every call:
    Philox with key (seed, epoch << 32 | index), so distinct samples get independent streams.
    Re-keying an existing Philox costs a fifth of constructing a seeded generator, which matters
    at thousands of images per second. Each worker process holds its own copy.
    """

    def __init__(self, augment: A.Compose, seed: int) -> None:
        self.augment = augment
        self.seed = seed
        self._numpy = np.random.Generator(np.random.Philox(key=0))
        self._python = random.Random(0)
        augment.set_random_state(self._numpy, self._python)

    def __call__(self, image: np.ndarray, epoch: int, index: int) -> np.ndarray:
        key = (epoch << 32) | index
        self._numpy.bit_generator.state = {
            "bit_generator": "Philox",
            "state": {
                "counter": np.zeros(4, dtype=np.uint64),
                "key": np.array([key, self.seed], dtype=np.uint64),
            },
            "buffer": np.zeros(4, dtype=np.uint64),
            "buffer_pos": 4,
            "has_uint32": 0,
            "uinteger": 0,
        }
        self._python.seed((self.seed << 64) | key)
        return self.augment(image=image)["image"]
