"""Following faces from frame to frame of a video, and smoothing each face's answers over time.

A face is matched to the track whose last box overlaps it most (intersection over union at
least `min_iou`, each track and face matched once, best overlaps first); a face matching none
starts a new track, and a track not seen for more than `max_gap` sampled frames ends. Track
numbers count from 0 in each source, so in a photo every face is its own track. The network
answers each frame on its own, and its answers for a face flicker from frame to frame; the
probabilities and valence/arousal written are therefore the mean over the track's last
`smooth_window` frames (1: each frame's own), and the expression the most probable code of that
mean.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box
from fer_lightning.inference.predictor import Face
from fer_lightning.inference.sources import Frame


def box_iou(a: Box, b: Box) -> float:
    w = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    union = a.w * a.h + b.w * b.h - w * h
    return w * h / union if union > 0 else 0.0


@dataclass
class _Track:
    number: int
    box: Box
    seen: int  # the sampled frame it was last matched in
    answers: deque = field(default_factory=deque)  # (probs, valence, arousal) of recent frames


class Tracker:
    """Track numbers and smoothed answers for the faces of each frame, one source at a time."""

    def __init__(self, min_iou: float = 0.3, max_gap: int = 10, smooth_window: int = 5) -> None:
        if not 0 < min_iou <= 1:
            raise ConfigError(f"tracking.min_iou must be in (0, 1], got {min_iou}")
        if max_gap < 0:
            raise ConfigError(f"tracking.max_gap must be 0 frames or more, got {max_gap}")
        if smooth_window < 1:
            raise ConfigError(
                f"tracking.smooth_window must be 1 frame or more, got {smooth_window}"
            )
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.smooth_window = smooth_window
        self._source: str | None = None
        self._tracks: list[_Track] = []
        self._count = 0  # tracks started in this source
        self._step = 0  # frames of this source seen

    def update(self, frame: Frame, faces: list[Face]) -> list[Face]:
        """`faces` of `frame` with their track numbers and smoothed answers, in the same order."""
        if frame.source != self._source:
            self._source, self._tracks, self._count, self._step = frame.source, [], 0, 0
        self._step += 1
        self._tracks = [t for t in self._tracks if self._step - t.seen <= self.max_gap + 1]
        matched = self._match(faces)
        out = []
        for i, face in enumerate(faces):
            track = matched.get(i)
            if track is None:
                track = _Track(self._count, face.box, self._step)
                self._count += 1
                self._tracks.append(track)
            track.box, track.seen = face.box, self._step
            track.answers.append((face.probs, face.valence, face.arousal))
            while len(track.answers) > self.smooth_window:
                track.answers.popleft()
            out.append(_smoothed(face, track))
        return out

    def _match(self, faces: list[Face]) -> dict[int, _Track]:
        pairs = [
            (box_iou(track.box, face.box), i, j)
            for j, track in enumerate(self._tracks)
            for i, face in enumerate(faces)
        ]
        matched: dict[int, _Track] = {}
        used: set[int] = set()
        for overlap, i, j in sorted(pairs, key=lambda p: -p[0]):
            if overlap < self.min_iou:
                break
            if i not in matched and j not in used:
                matched[i] = self._tracks[j]
                used.add(j)
        return matched


def _smoothed(face: Face, track: _Track) -> Face:
    probs, valence, arousal = zip(*track.answers, strict=True)
    return replace(
        face,
        probs=np.mean(probs, axis=0),
        valence=float(np.mean(valence)),
        arousal=float(np.mean(arousal)),
        track=track.number,
    )
