"""Choosing predict's face detector from `detector.*` (conf/predict.yaml).

MTCNN is the default, and OpenCV's Haar cascade the fallback for an installation without MTCNN's
weights: `detector.name=auto` uses MTCNN when its weights are installed (or named with
`detector.weights=`) and otherwise says once that it falls back. The comparison behind this
choice is docs/face-detection.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box, HaarDetector
from fer_lightning.inference.mtcnn import MtcnnDetector
from fer_lightning.inference.mtcnn_nets import INSTALL_HINT, installed_weights

log = logging.getLogger("fer_lightning.predict")

DETECTORS = ("auto", "mtcnn", "haar")
HAAR_KEYS = ("scale_factor", "min_neighbors")
MTCNN_KEYS = ("weights", "thresholds")


class Detector(Protocol):
    def detect(self, bgr: np.ndarray) -> list[Box]: ...


def build_detector(settings: Mapping[str, Any], device: str = "cpu") -> Detector:
    """The detector `settings` (the `detector` node) names, with the settings that apply to it;
    MTCNN's networks run on `device` (predict's, so on a GPU when the network is)."""
    settings = dict(settings)
    name = settings.pop("name", "auto")
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector.name={name}: use one of {', '.join(DETECTORS)}")
    if name == "auto":
        name = "mtcnn" if settings.get("weights") or installed_weights() else "haar"
        if name == "haar":
            log.warning(
                "MTCNN's weights are not installed (%s): using the Haar cascade", INSTALL_HINT
            )
    common = {k: settings[k] for k in ("min_size", "max_side") if k in settings}
    if name == "haar":
        return HaarDetector(**common, **{k: settings[k] for k in HAAR_KEYS if k in settings})
    mtcnn = {k: settings[k] for k in MTCNN_KEYS if k in settings}
    return MtcnnDetector(**common, **mtcnn, device=device)
