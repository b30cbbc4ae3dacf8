"""MTCNN face detection: proposals on an image pyramid, refined by two more networks.

The pyramid starts at `12 / min_size`, so the proposal network's 12-px window matches the smallest
face looked for: faces of 20 px are found by enlarging nothing, and smaller `min_size` enlarges
the image. Candidates at the image border are cut out with black padding (as MTCNN was trained),
not squeezed into the part inside the image, so faces touching the border keep their shape. The
last network also gives five landmarks, used to align crops by the eyes (fer_lightning/inference/
faces.py). Its score threshold is 0.9 rather than the paper's 0.7: every real face of the tests
(docs/face-detection.md) scored above 0.99, so the higher bar costs them nothing and leaves less
room for faces in clothing and background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box, padded_region, shrink_to
from fer_lightning.inference.mtcnn_nets import load_nets

PYRAMID_FACTOR = 0.709  # each pyramid level's side relative to the one before (the paper's)
CELL, STRIDE = 12, 2  # the proposal network's window and step, in pixels of its level


class MtcnnDetector:
    """Boxes with scores and landmarks; see the module docstring for the settings."""

    def __init__(
        self,
        weights: str | Path | None = None,
        min_size: int = 20,
        max_side: int = 1280,
        thresholds: Sequence[float] = (0.6, 0.7, 0.9),
        device: str = "cpu",
    ) -> None:
        if min_size < 8:
            raise ConfigError(f"detector.min_size must be 8 pixels or more, got {min_size}")
        if len(thresholds) != 3 or not all(0 < t < 1 for t in thresholds):
            raise ConfigError(
                f"detector.thresholds must be three scores between 0 and 1, got {list(thresholds)}"
            )
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net.to(self.device) for net in load_nets(weights))
        self.min_size = min_size
        self.max_side = max_side
        self.thresholds = tuple(float(t) for t in thresholds)

    @torch.inference_mode()
    def detect(self, bgr: np.ndarray) -> list[Box]:
        """Face boxes in a BGR image, left to right, clipped to the image."""
        rgb, scale = shrink_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.max_side)
        boxes = self._propose(rgb)
        if len(boxes):
            boxes = self._refine(rgb, boxes)
        if not len(boxes):
            return []
        boxes, points = self._output(rgb, boxes)
        height, width = bgr.shape[:2]
        found = [
            _to_box(b / scale, p / scale, width, height) for b, p in zip(boxes, points, strict=True)
        ]
        return sorted((b for b in found if b.w > 0 and b.h > 0), key=lambda b: (b.x, b.y))

    def _propose(self, rgb: np.ndarray) -> np.ndarray:
        """Candidate squares [N, 5] (x1, y1, x2, y2, score) from every pyramid level."""
        height, width = rgb.shape[:2]
        scale = CELL / self.min_size
        found = []
        while min(height, width) * scale >= CELL:
            size = (math.ceil(width * scale), math.ceil(height * scale))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            level = cv2.resize(rgb, size, interpolation=interpolation)
            offsets, probs = self._run(self.pnet, level[None])
            score = probs[0, 1]
            rows, cols = np.nonzero(score >= self.thresholds[0])
            if len(rows):
                cells = np.stack([cols, rows], axis=1).astype(np.float32)
                first = np.floor((STRIDE * cells + 1) / scale)
                last = np.floor((STRIDE * cells + CELL) / scale)
                reg = offsets[0][:, rows, cols].T
                level_boxes = np.hstack([first, last, score[rows, cols, None], reg])
                found.append(level_boxes[nms(level_boxes, 0.5)])
            scale *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes, 0.7)]
        return squared(regressed(boxes[:, :5], boxes[:, 5:9], plus_one=False))

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        offsets, probs = self._run(self.rnet, _crops(rgb, boxes, 24))
        keep = probs[:, 1] > self.thresholds[1]
        boxes = np.hstack([boxes[keep, :4], probs[keep, 1:2]])
        offsets = offsets[keep]
        pick = nms(boxes, 0.7)
        return squared(regressed(boxes[pick], offsets[pick]))

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Final boxes [N, 5] and their five landmarks [N, 5, 2] in `rgb`'s pixels."""
        offsets, marks, probs = self._run(self.onet, _crops(rgb, boxes, 48))
        keep = probs[:, 1] > self.thresholds[2]
        boxes = np.hstack([boxes[keep, :4], probs[keep, 1:2]])
        marks, offsets = marks[keep], offsets[keep]
        side = boxes[:, 2:4] - boxes[:, 0:2] + 1
        points = np.stack(
            [
                side[:, None, 0] * marks[:, :5] + boxes[:, None, 0] - 1,
                side[:, None, 1] * marks[:, 5:] + boxes[:, None, 1] - 1,
            ],
            axis=2,
        )
        boxes = regressed(boxes, offsets)
        pick = nms(boxes, 0.7, over_smaller=True)
        return boxes[pick], points[pick]

    def _run(self, net: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, ...]:
        """The network's outputs for uint8 RGB images [N, H, W, 3], on the detector's device."""
        return tuple(out.cpu().numpy() for out in net(_tensor(images).to(self.device)))


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB -> float [N, 3, H, W] in MTCNN's (x - 127.5) / 128 range."""
    return (
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() - 127.5
    ) / 128


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box's region, padded black outside the image, resized to [N, size, size, 3]."""
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.trunc(boxes[:, :4]).astype(int)):
        region = padded_region(rgb, x1 - 1, y1 - 1, max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1))
        out[i] = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return out


def regressed(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Boxes moved by the networks' offsets (fractions of the box side)."""
    side = boxes[:, 2:4] - boxes[:, 0:2] + (1 if plus_one else 0)
    out = boxes.copy()
    out[:, 0:2] += offsets[:, 0:2] * side
    out[:, 2:4] += offsets[:, 2:4] * side
    return out


def squared(boxes: np.ndarray) -> np.ndarray:
    """Each box made a square of its longer side around the same centre."""
    out = boxes.copy()
    size = boxes[:, 2:4] - boxes[:, 0:2]
    side = size.max(axis=1, keepdims=True)
    out[:, 0:2] = boxes[:, 0:2] + size / 2 - side / 2
    out[:, 2:4] = out[:, 0:2] + side
    return out


def nms(boxes: np.ndarray, limit: float, over_smaller: bool = False) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, best score first; the overlap is
    over the union, or over the smaller box (`over_smaller`, MTCNN's last step)."""
    x1, y1, x2, y2, score = boxes[:, :5].T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        base = (
            np.minimum(area[best], area[rest]) if over_smaller else area[best] + area[rest] - inter
        )
        order = rest[inter / base <= limit]
    return np.array(keep, dtype=int)


def _to_box(box: np.ndarray, points: np.ndarray, width: int, height: int) -> Box:
    x1, y1 = max(0, round(box[0])), max(0, round(box[1]))
    x2, y2 = min(width, round(box[2])), min(height, round(box[3]))
    landmarks = tuple((float(x), float(y)) for x, y in points)
    return Box(x1, y1, x2 - x1, y2 - y1, score=float(box[4]), landmarks=landmarks)
