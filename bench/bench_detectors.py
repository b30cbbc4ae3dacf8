"""CPU images/s of each face detector on 512-px photographs.

    python bench/bench_detectors.py                       # 40 images a detector, 1 thread
    python bench/bench_detectors.py images=10 threads=2 detectors=[mtcnn]

Arguments are `key=value` (DEFAULTS below); a mistake is one line on stderr and exit status 2.
The photographs are the real ones installed packages ship, with their longer side resized to 512
pixels: two portraits (skimage's astronaut, matplotlib's grace_hopper, one face each) and two
without a face (skimage's coffee and rocket), used in turn. Each detector is built as predict
builds it from conf/predict.yaml's `detector` settings (`haar-30` is the cascade with
`min_size=30`, the old default, which skips the enlarging a 20-px minimum needs), warmed on one
image, then timed on `images` of them with `threads` torch and OpenCV threads; the line gives
images/s and the faces found per portrait and per face-free photo, which should be 1 and 0.
Results are in bench/README.md.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
import torch
from omegaconf import OmegaConf

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.errors import ConfigError
from fer_lightning.inference.detectors import build_detector
from fer_lightning.paths import CONFIG_DIR

DEFAULTS = {"images": 40, "threads": 1, "detectors": ["mtcnn", "haar", "haar-30"], "side": 512}
VARIANTS = {
    "mtcnn": {"name": "mtcnn"},
    "haar": {"name": "haar"},
    "haar-30": {"name": "haar", "min_size": 30},
}


def photographs(side: int) -> list[tuple[np.ndarray, int]]:
    """(BGR image, faces in it) with the longer side `side`."""
    grace = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    rgb = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    astronaut, coffee, rocket = (cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in rgb)
    out = []
    for image, faces in ((astronaut, 1), (grace, 1), (coffee, 0), (rocket, 0)):
        scale = side / max(image.shape[:2])
        out.append(
            (cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), faces)
        )
    return out


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, "images=40 threads=1"))
    unknown = sorted(set(args.detectors) - set(VARIANTS))
    if unknown or args.images < 1 or args.threads < 1:
        raise ConfigError(
            f"detectors must be among {', '.join(VARIANTS)} (got {', '.join(unknown) or 'those'}), "
            "images and threads at least 1"
        )
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    settings = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "predict.yaml").detector)
    photos = photographs(args.side)
    print(f"{args.images} images of {args.side} px, {args.threads} thread(s)")
    print(f"{'detector':10s} {'images/s':>9s}  faces per portrait / per face-free photo")
    for name in args.detectors:
        detector = build_detector({**settings, **VARIANTS[name]})
        detector.detect(photos[0][0])
        found = {1: [], 0: []}
        start = time.perf_counter()
        for i in range(args.images):
            image, faces = photos[i % len(photos)]
            found[faces].append(len(detector.detect(image)))
        rate = args.images / (time.perf_counter() - start)
        faces = " / ".join(f"{np.mean(found[k]):.2f}" if found[k] else "-" for k in (1, 0))
        print(f"{name:10s} {rate:9.1f}  {faces}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
