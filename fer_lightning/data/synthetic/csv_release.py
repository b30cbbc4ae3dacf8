"""A dataset of AffectNet's ``.npy`` layout rewritten as AffectNet's CSV release.

Each face image is pasted at a random place into a larger, smoothly noisy photograph
(``context`` times its size), and the two file lists get its box, landmarks (moved with it) and
labels (fer_lightning/data/formats/affectnet_csv.py has the layout). The faces are the source's
decoded pixels, so a photograph written losslessly (``suffix=".png"``) gives back exactly the
source's face when cut out at its box: the tests compare the two layouts on the same faces this
way, and bench/bench_crops.py compares their loaders.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.formats import affectnet_csv
from fer_lightning.data.formats.affectnet import READER as NPY
from fer_lightning.files import atomic_write
from fer_lightning.labels import SUBSETS


def _photograph(face: np.ndarray, context: float, rng: np.random.Generator) -> tuple:
    """(photograph, box): ``face`` pasted at a random place into a smooth noisy background."""
    height, width = face.shape[:2]
    size = (round(context * height), round(context * width))
    coarse = rng.integers(0, 256, (8, 8, face.shape[2]), dtype=np.uint8)
    photo = cv2.resize(coarse, size[::-1], interpolation=cv2.INTER_CUBIC).reshape(*size, -1)
    y, x = int(rng.integers(0, size[0] - height + 1)), int(rng.integers(0, size[1] - width + 1))
    photo[y : y + height, x : x + width] = face
    return photo, (x, y, width, height)


def _landmarks(source: Path, subset: str, sample_id: str, x: int, y: int) -> str:
    path = source / subset / "annotations" / f"{sample_id}_lnd.npy"
    if not path.is_file():
        return ""
    points = np.load(path, allow_pickle=False).astype(np.float64).reshape(-1, 2) + np.array([x, y])
    return ";".join(f"{v:.2f}" for v in points.reshape(-1))


def write_csv_release(
    source: Path,
    root: Path,
    context: float = 2.0,
    suffix: str = ".png",
    header: tuple[bool, bool] = (True, True),
    quality: int = 95,
    seed: int = 0,
) -> dict[str, tuple[str, tuple[int, int, int, int]]]:
    """Write the usable samples of the ``.npy``-layout dataset at ``source`` under ``root`` in the
    CSV release's layout; ``header`` says per file list (training, validation) whether it has the
    header row. Returns ``{"<subset>/<id>": (photograph relative to root, box)}``."""
    rng = np.random.default_rng(seed)
    written = {}
    for subset, name in affectnet_csv.LIST_FILES.items():
        buffer = io.StringIO()
        rows = csv.writer(buffer, lineterminator="\n")
        if header[subset]:
            rows.writerow(affectnet_csv.COLUMNS)
        samples = [NPY.read(source, e) for e in NPY.scan(source) if e.subset == subset]
        for k, sample in enumerate(s for s in samples if s.image and not s.problems):
            face = cv2.imread(str(source / sample.image), cv2.IMREAD_COLOR)
            photo, box = _photograph(face, context, rng)
            listed = f"{1 + k % 3}/{sample.sample_id}{suffix}"
            image = Path(affectnet_csv.IMAGES) / listed
            (root / image).parent.mkdir(parents=True, exist_ok=True)
            params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix == ".jpg" else []
            cv2.imwrite(str(root / image), photo, params)
            landmarks = _landmarks(source, SUBSETS[subset], sample.sample_id, *box[:2])
            labels = (sample.expression, repr(sample.valence), repr(sample.arousal))
            rows.writerow((listed, *box, landmarks, *labels))
            written[f"{SUBSETS[subset]}/{sample.sample_id}"] = (image.as_posix(), box)
        with atomic_write(root / affectnet_csv.LISTS / name, "w", encoding="utf-8") as file:
            file.write(buffer.getvalue())
    return written
