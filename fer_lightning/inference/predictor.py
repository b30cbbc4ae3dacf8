"""Batched prediction: face crops from many frames go through the network together.

One forward pass per face would leave most of the network's throughput unused, so crops are
collected across frames (and files) until a batch is full, and each frame is handed back with its
faces' predictions once its batch has run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_lightning.data.transforms import normalize
from fer_lightning.errors import ConfigError
from fer_lightning.inference.detectors import Detector
from fer_lightning.inference.faces import Box, crop_face, whole_image_box
from fer_lightning.inference.sources import Frame, Skipped
from fer_lightning.metrics.expression import probabilities
from fer_lightning.module import trained_net
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.stored_config import stored_input


@dataclass(frozen=True)
class Face:
    """One face's box and the network's answers for it."""

    box: Box
    probs: np.ndarray  # softmax over the expression codes
    valence: float
    arousal: float
    track: int = 0  # the face's track in its source (fer_lightning/inference/tracks.py)

    @property
    def expression(self) -> int:
        return int(self.probs.argmax())


class Predictor:
    """A trained network and the input size it was trained at: RGB crops -> probabilities, VA."""

    def __init__(
        self, net: nn.Module, image_size: int, num_classes: int, batch_size: int, device: str
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be 1 or more, got {batch_size}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.image_size = image_size
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.batches = 0  # forward passes run, reported with the throughput

    @classmethod
    def from_checkpoint(cls, path: str | Path, batch_size: int, device: str) -> Predictor:
        """Reads weights only (no pickled code) and the training input size from the checkpoint."""
        checkpoint = load_checkpoint(path)
        image_size, classes = stored_input(checkpoint["fer_config"])
        net = trained_net(checkpoint)
        return cls(net, image_size, classes, batch_size, resolve_device(device))

    @torch.inference_mode()
    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops [N, S, S, 3] uint8 RGB -> probabilities [N, C] and valence/arousal [N, 2]."""
        probs, va = [], []
        for start in range(0, len(crops), self.batch_size):
            chunk = torch.from_numpy(crops[start : start + self.batch_size]).to(self.device)
            logits, va_chunk = self.net(normalize(chunk.permute(0, 3, 1, 2)))
            self.batches += 1
            probs.append(probabilities(logits.float()).cpu().numpy())
            va.append(va_chunk.float().cpu().numpy())
        return np.concatenate(probs), np.concatenate(va)


def resolve_device(device: str) -> str:
    """`auto` is the GPU when there is one; anything else is passed to torch as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def predict_frames(
    items: Iterable[Frame | Skipped],
    predictor: Predictor,
    detector: Detector | None,
    margin: float,
    keep_images: bool = False,
    align: bool = False,
) -> Iterator[Skipped | tuple[Frame, list[Face]]]:
    """Each frame with its faces' predictions, in input order; skipped files pass straight through.

    Without a detector every frame is one face filling the whole image (already-cropped inputs,
    so no margin is added); `align` turns each crop to level eyes (fer_lightning/inference/
    faces.py). Frames wait, with their images dropped unless `keep_images` (to draw on), until a
    batch fills; at most `batch_size` frames wait, so a long video without faces does not pile up
    in memory.
    """
    if margin < 0:
        raise ConfigError(f"margin must be 0 or more (a fraction of the face box), got {margin}")
    pending: list[tuple[Frame, list[Box]]] = []
    crops: list[np.ndarray] = []
    for item in items:
        if isinstance(item, Skipped):
            yield item
            continue
        if detector is None:
            boxes, crop_margin = [whole_image_box(item.image)], 0.0
        else:
            boxes, crop_margin = detector.detect(item.image), margin
        size = predictor.image_size
        crops.extend(crop_face(item.image, b, size, crop_margin, align) for b in boxes)
        pending.append((item if keep_images else replace(item, image=None), boxes))
        if len(crops) >= predictor.batch_size or len(pending) >= predictor.batch_size:
            yield from _answer(pending, crops, predictor)
            pending, crops = [], []
    yield from _answer(pending, crops, predictor)


def _answer(
    pending: list[tuple[Frame, list[Box]]], crops: list[np.ndarray], predictor: Predictor
) -> Iterator[tuple[Frame, list[Face]]]:
    if crops:
        probs, va = predictor.predict(np.stack(crops))
    position = 0
    for frame, boxes in pending:
        faces = [
            Face(box, probs[i], float(va[i, 0]), float(va[i, 1]))
            for i, box in enumerate(boxes, start=position)
        ]
        position += len(boxes)
        yield frame, faces
