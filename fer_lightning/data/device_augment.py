"""``data.augment_on=device``: the in-place flip and noise applied to a batch on its device.

The loader then only decodes (or, with ``data.cache=decoded``, copies bytes), and the batch's
augmentation runs after the transfer, batched. The randomness is the loader's: each sample's
draws come from the same generator keyed by (seed, epoch, index) (`SeededAugment.uniforms`),
computed on the host before the transfer (`plan`, a few microseconds per sample, no device sync),
and the flip and the noise produce the same bytes as the loader's `InPlaceHorizontalFlip` and
`InPlaceGaussNoise` (the noise's integer banks are the same arrays;
tests/test_data_device_augment.py).

The albumentations stage (``data.augment``) draws from the same stream before the in-place
transforms, so it cannot be moved: ``augment_on=device`` needs ``data.augment`` empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fer_lightning.data.transforms import (
    InPlaceGaussNoise,
    InPlaceHorizontalFlip,
    InPlaceTransform,
    SeededAugment,
)
from fer_lightning.errors import ConfigError

# data.augment_on's choices: where the in-place transforms run.
AUGMENT_ON = ("loader", "device")

# A transform's share of a plan: the batch positions it applies to (moved with the batch) and its
# per-sample draws (kept on the host).
Step = tuple[Tensor, np.ndarray]


class DeviceAugment:
    """Plans a batch's in-place transforms on the host, applies them on the batch's device."""

    def __init__(self, inplace: Sequence[InPlaceTransform], seed: int) -> None:
        for transform in inplace:
            if not isinstance(transform, InPlaceHorizontalFlip | InPlaceGaussNoise):
                raise ConfigError(
                    f"data.augment_on=device applies InPlaceHorizontalFlip and InPlaceGaussNoise "
                    f"only, got {transform!r}: use data.augment_on=loader"
                )
        self.draws = SeededAugment(None, inplace, seed)
        self._banks: dict[tuple[int, int, torch.device], Tensor] = {}

    def plan(self, index: Tensor, epoch: int) -> list[Step]:
        """Per transform, which samples of the batch it applies to and with which draws."""
        rows = index.tolist()
        uniforms = np.array([self.draws.uniforms(epoch, i) for i in rows], dtype=np.float64)
        uniforms = uniforms.reshape(len(rows), -1)
        steps, k = [], 0
        for transform in self.draws.inplace:
            chosen = np.flatnonzero(uniforms[:, k] < transform.p)
            steps.append(
                (torch.from_numpy(chosen), uniforms[chosen, k + 1 : k + 1 + transform.draws])
            )
            k += 1 + transform.draws
        return steps

    def apply(self, images: Tensor, plan: list[Step]) -> Tensor:
        """Applies ``plan`` to uint8 images [N, 3, H, W] (any layout) in place; returns them."""
        hwc = images.permute(0, 2, 3, 1)
        for transform, (chosen, draws) in zip(self.draws.inplace, plan, strict=True):
            if len(chosen) == 0:
                continue
            chosen = chosen.to(images.device, non_blocking=True)
            if isinstance(transform, InPlaceHorizontalFlip):
                hwc[chosen] = hwc[chosen].flip(2)
            else:
                hwc[chosen] = self._noisy(transform, hwc[chosen], draws)
        return images

    def _noisy(self, noise: InPlaceGaussNoise, hwc: Tensor, draws: np.ndarray) -> Tensor:
        """``clip(image + noise, 0, 255)`` of the chosen samples, as the loader computes it."""
        n, size = len(hwc), hwc[0].numel()
        signed = self._signed_banks(noise, size, hwc.device)
        windows = [noise.window(d, size) for d in draws.tolist()]
        values = torch.stack([signed[level, o : o + size] for level, o in windows])
        added = values.add_(hwc.reshape(n, size))
        return added.clamp_(0, 255).to(torch.uint8).view(hwc.shape)

    def _signed_banks(self, noise: InPlaceGaussNoise, size: int, device: torch.device) -> Tensor:
        """int16 [LEVELS, bank_length]: the noise's banks as one signed value, on ``device``."""
        key = (id(noise), noise.bank_length(size), device)
        if key not in self._banks:
            banks = torch.from_numpy(noise.banks(size)).to(device)
            self._banks[key] = banks[:, 0].short() - banks[:, 1].short()
        return self._banks[key]
