"""One split's samples as a torch Dataset, and how its items are collated into a batch.

Items are dicts::

    image       uint8 [3, H, W] RGB, a CHW view of the HWC array it was decoded into
    expression  int, AffectNet code 0-7 (0-6 with data.classes=7)
    va          float32 [2], valence and arousal in [-1, 1]; NaN when the dataset has none
    index       int, the sample's position in its split (see AffectNetDataModule.sample_paths)

Landmarks are not returned: a horizontal flip would have to mirror them too, and nothing uses them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from fer_lightning.data.decode import decode_rgb
from fer_lightning.data.decoded_store import DecodedStore
from fer_lightning.data.index import Index
from fer_lightning.data.transforms import SeededAugment

log = logging.getLogger(__name__)


class AffectNetDataset(Dataset):
    """Decodes, resizes and augments one split's samples; items are ``(index, epoch)`` pairs.

    A plain ``index`` means epoch 0. An image that no longer decodes (changed since indexing) is
    replaced by the next sample that does, with a counted warning, so a run never dies on it.
    With a ``store`` (``data.cache=decoded``) the decoded samples are read from it instead, and a
    sample that did not decode when the store was built is replaced the same way.
    """

    def __init__(
        self,
        index: Index,
        rows: np.ndarray,
        image_size: int,
        augment: SeededAugment | None = None,
        store: DecodedStore | None = None,
    ) -> None:
        self.root = os.path.join(index.root, "")
        self.rows = rows
        self.files = index.files[rows]
        self.side = index.side[rows]
        self.expression = index.expression[rows].astype(np.int64)
        self.va = np.stack([index.valence[rows], index.arousal[rows]], axis=1)
        self.image_size = image_size
        self.augment = augment
        self.store = store
        self.substitutions = 0  # per process

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i])

    def _decode(self, i: int, out: np.ndarray | None) -> tuple[int, np.ndarray]:
        for attempt in range(len(self)):
            j = (i + attempt) % len(self)
            if self.store is None:
                image = decode_rgb(self.path(j), self.image_size, int(self.side[j]), out=out)
            else:
                row = int(self.rows[j])
                image = None if self.store.bad[row] else self.store.read(row, out)
            if image is not None:
                return j, image
            self.substitutions += 1
            log.warning(
                "%s no longer decodes; using the next sample instead (%d so far in this process; "
                "run python -m fer_lightning.data.check)",
                self.path(j),
                self.substitutions,
            )
        raise RuntimeError(f"no image of this split decodes any more (first: {self.path(i)})")

    def load(self, i: int, epoch: int = 0, out: np.ndarray | None = None) -> tuple[int, np.ndarray]:
        """(index used, uint8 HWC RGB image decoded and augmented, in ``out`` when given): the
        per-sample work of both loader backends. The index differs from ``i`` when the sample had
        to be substituted."""
        i, image = self._decode(i, out)
        if self.augment is not None:
            self.augment(image, epoch, i)
        return i, image

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i, image = self.load(*item) if isinstance(item, tuple) else self.load(item)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1),
            "expression": int(self.expression[i]),
            "va": torch.from_numpy(self.va[i]),
            "index": i,
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, with the images stacked NHWC: channels-last batches, as the threads
    loader makes them, and one plain copy per sample (a sample's image is a CHW view of an HWC
    array) instead of a transposing one. In a worker process the stack goes straight into shared
    memory, as default_collate's does."""
    images = default_collate([sample["image"].permute(1, 2, 0) for sample in samples])
    rest = default_collate([{k: v for k, v in s.items() if k != "image"} for s in samples])
    return {"image": images.permute(0, 3, 1, 2), **rest}
