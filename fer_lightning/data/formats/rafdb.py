"""RAF-DB (basic): one label list over a folder of face images, the part in each name.

::

    <root>/EmoLabel/list_patition_label.txt      lines "train_00001.jpg 5", labels 1-7
    <root>/Image/aligned/train_00001_aligned.jpg  (data.images=aligned, the default)
    <root>/Image/original/train_00001.jpg         (data.images=original)

Names starting ``train_`` are the training part, ``test_`` the test part. RAF-DB has no valence
or arousal labels (NaN). See docs/data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fer_lightning.data.formats import Sample, ScannedLayout
from fer_lightning.data.listing import file_stamp, folder_stamp, listable, read_label_file
from fer_lightning.errors import ConfigError
from fer_lightning.labels import TEST_SET, TRAIN_SET, class_codes

# RAF-DB's labels 1-7, in order.
CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
CODES = class_codes(CLASSES)
LABEL_FILE = "EmoLabel/list_patition_label.txt"
IMAGE_FOLDERS = {"aligned": "Image/aligned", "original": "Image/original"}
PARTS = {"train_": TRAIN_SET, "test_": TEST_SET}


@dataclass(frozen=True)
class RafDb(ScannedLayout):
    """The reader of RAF-DB's layout (see the module docstring)."""

    images: str = "aligned"

    subsets: ClassVar[tuple[int, ...]] = (TRAIN_SET, TEST_SET)
    problems: ClassVar[dict[str, str]] = {
        "malformed_line": "line of the label list that is not '<name> <label>'",
        "unknown_label": "label other than 1-7",
        "unknown_part": "name starting with neither train_ nor test_",
        "duplicate_sample": "name listed again (its first line is used)",
        "missing_image": "listed name without its image in the image folder",
    }

    def _folder(self, root: Path) -> Path:
        if self.images not in IMAGE_FOLDERS:
            raise ConfigError(
                f"data.images must be {' or '.join(IMAGE_FOLDERS)} for RAF-DB, got {self.images!r}"
            )
        return root / IMAGE_FOLDERS[self.images]

    def _image_name(self, name: str) -> str:
        stem, suffix = os.path.splitext(name)
        return f"{stem}_aligned{suffix}" if self.images == "aligned" else name

    def require(self, root: Path) -> None:
        listable(self._folder(root), "RAF-DB's image folder")
        if not (root / LABEL_FILE).is_file():
            raise ConfigError(
                f"RAF-DB's label list not found at {root / LABEL_FILE} (expected RAF-DB's "
                "layout, see docs/data.md)"
            )

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        return {
            LABEL_FILE: file_stamp(root / LABEL_FILE),
            IMAGE_FOLDERS[self.images]: folder_stamp(self._folder(root)),
        }

    def scan(self, root: Path) -> list[Sample]:
        """Every sample, finished: the labels are all in the one list."""
        present = set(listable(self._folder(root), "RAF-DB's image folder"))
        text = read_label_file(root / LABEL_FILE, "RAF-DB's label list")
        samples, seen = [], set()
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                samples.append(
                    Sample(TRAIN_SET, f"line_{number}", None, problems=("malformed_line",))
                )
                continue
            name, label = fields
            stem = os.path.splitext(name)[0]
            subset = next((s for prefix, s in PARTS.items() if name.startswith(prefix)), None)
            problems = []
            if subset is None:
                subset = TRAIN_SET
                problems.append("unknown_part")
            if stem in seen:
                samples.append(
                    Sample(subset, f"{stem}@line_{number}", None, problems=("duplicate_sample",))
                )
                continue
            seen.add(stem)
            code = CODES[int(label) - 1] if label in {str(k) for k in range(1, 8)} else -1
            if code < 0:
                problems.append("unknown_label")
            image_name = self._image_name(name)
            image = f"{IMAGE_FOLDERS[self.images]}/{image_name}"
            if image_name not in present:
                image = None
                problems.append("missing_image")
            samples.append(Sample(subset, stem, image, code, problems=tuple(problems)))
        return samples


PROTOCOL = "predefined"
READER = RafDb()
