"""predict from end to end: files -> frames -> faces -> one CSV row per face, with a summary.

Faces are followed from frame to frame and their answers smoothed (fer_lightning/inference/
tracks.py) before they are written. Rows are written as frames are answered, so a long video's
results reach the disk as they come and memory stays flat. Problem files are counted rather than
raised, and logged at the end as one line per kind with the count and an example, never one line
per file.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fer_lightning.inference.annotate import Annotator
from fer_lightning.inference.detectors import Detector
from fer_lightning.inference.predictor import Face, Predictor, predict_frames
from fer_lightning.inference.sources import SKIP_KINDS, Frame, Skipped, read_frames
from fer_lightning.inference.tracks import Tracker

log = logging.getLogger("fer_lightning.predict")


@dataclass
class Summary:
    """What a predict run did, for the final log lines and for callers that check it."""

    output: Path
    files: int = 0  # files that gave at least one frame
    frames: int = 0
    faces: int = 0
    without_face: int = 0  # frames in which no face was found
    batches: int = 0  # forward passes
    seconds: float = 0.0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # {kind: sources}, kinds seen

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.seconds if self.seconds else 0.0

    @property
    def frames_per_second(self) -> float:
        """Images (photos and sampled video frames) per second, reading and detecting included."""
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        skipped = sum(map(len, self.skipped.values()))
        return (
            f"{self.faces} faces in {self.frames} frames of {self.files} files "
            f"({self.without_face} frames without a face, {skipped} files skipped) -> {self.output}"
        )

    def skip_lines(self) -> list[str]:
        """One line per kind of skipped file: the count, the kind's meaning and an example."""
        return [
            f"skipped {len(sources)} file(s): {SKIP_KINDS[kind]} [{kind}], e.g. {sources[0]}"
            for kind, sources in sorted(self.skipped.items())
        ]


def csv_header(num_classes: int) -> list[str]:
    """The predict columns of docs/commands.md; `prob_k` is the probability of expression code k.
    `track` came last, so that the columns before it kept their places."""
    fixed = ["source", "frame", "x", "y", "w", "h", "expression", "valence", "arousal"]
    return [*fixed, *(f"prob_{k}" for k in range(num_classes)), "track"]


def csv_row(frame: Frame, face: Face) -> list[object]:
    b = face.box
    values = [face.valence, face.arousal, *face.probs.tolist()]
    answers = [f"{v:.7g}" for v in values]
    return [frame.source, frame.index, b.x, b.y, b.w, b.h, face.expression, *answers, face.track]


def run_prediction(
    files: Sequence[Path | Skipped],
    predictor: Predictor,
    detector: Detector | None,
    output: str | Path,
    margin: float,
    video_stride: int = 1,
    annotator: Annotator | None = None,
    tracker: Tracker | None = None,
    align: bool = False,
) -> Summary:
    """Predicts every face in `files` and writes them to the CSV `output`."""
    start = time.perf_counter()
    summary = Summary(Path(output))
    summary.output.parent.mkdir(parents=True, exist_ok=True)
    last_source = None
    frames = read_frames(files, video_stride)
    tracker = tracker or Tracker()
    answered = predict_frames(frames, predictor, detector, margin, bool(annotator), align)
    try:
        with summary.output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(csv_header(predictor.num_classes))
            for item in answered:
                if isinstance(item, Skipped):
                    log.debug("skipped %s: %s", item.source, item.reason)
                    summary.skipped.setdefault(item.reason, []).append(item.source)
                    continue
                frame, faces = item
                faces = tracker.update(frame, faces)
                _count(summary, frame, faces, new_file=frame.source != last_source)
                last_source = frame.source
                writer.writerows(csv_row(frame, face) for face in faces)
                if annotator:
                    annotator.add(frame, faces)
    finally:
        if annotator:
            annotator.close()
    summary.batches = predictor.batches
    summary.seconds = time.perf_counter() - start
    for line in summary.skip_lines():
        log.warning("%s", line)
    return summary


def _count(summary: Summary, frame: Frame, faces: list[Face], new_file: bool) -> None:
    summary.files += new_file
    summary.frames += 1
    summary.faces += len(faces)
    if not faces:
        summary.without_face += 1
        # A photo without a face is worth a line; a video's empty frames would flood the log.
        level = logging.INFO if frame.fps is None else logging.DEBUG
        log.log(level, "no face found in %s (frame %d)", frame.source, frame.index)
