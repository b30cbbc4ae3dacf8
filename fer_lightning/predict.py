"""`python -m fer_lightning.predict ckpt_path=... input=...`: one CSV row per face found."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from fer_lightning.cli import entry_point
from fer_lightning.inference.annotate import Annotator
from fer_lightning.inference.detectors import build_detector
from fer_lightning.inference.pipeline import Summary, run_prediction
from fer_lightning.inference.predictor import Predictor
from fer_lightning.inference.sources import input_files
from fer_lightning.inference.tracks import Tracker
from fer_lightning.labels import EXPRESSION_NAMES

log = logging.getLogger("fer_lightning.predict")


def predict(cfg: DictConfig) -> Summary:
    """Predicts every face in `cfg.input` and writes `cfg.output`; returns what it did."""
    files = input_files(cfg.input, exclude=(cfg.output, cfg.annotated_dir))
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, cfg.batch_size, cfg.device)
    detector = build_detector(cfg.detector, str(predictor.device)) if cfg.detect_faces else None
    annotator = (
        Annotator(cfg.annotated_dir, cfg.input, EXPRESSION_NAMES[: predictor.num_classes])
        if cfg.annotate
        else None
    )
    summary = run_prediction(
        files,
        predictor,
        detector,
        cfg.output,
        cfg.margin,
        cfg.video_stride,
        annotator,
        Tracker(**cfg.tracking),
        cfg.align,
    )
    log.info("%s", summary.line())
    log.info(
        "%.1f images/s, %.1f faces/s (%d images, %d faces in %.2f s, %d batches of up to %d)",
        summary.frames_per_second,
        summary.faces_per_second,
        summary.frames,
        summary.faces,
        summary.seconds,
        summary.batches,
        cfg.batch_size,
    )
    return summary


main = entry_point("predict")(predict)

if __name__ == "__main__":
    main()
