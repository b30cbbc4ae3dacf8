"""Class folders, as many redistributions ship a dataset: ``<root>/<split>/<class name>/<image>``.

::

    <root>/train/happy/0001.jpg
    <root>/train/Angry/0002.png
    <root>/test/neutral/...
    <root>/val/...            (optional, also "valid", "validation")

A split folder is ``train`` (or ``training``), ``val`` (``valid``, ``validation``) or ``test``
(``testing``), any case; other folders are not read. A class folder is named by a class name
(``Happy``, ``happiness``, ``angry``: see fer_lightning/labels.py). With
``data.protocol=predefined`` a layout without a val (or test) folder has it drawn from train.
No valence or arousal labels (NaN). See docs/data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fer_lightning.data.decode import IMAGE_SUFFIXES
from fer_lightning.data.formats import Sample, ScannedLayout
from fer_lightning.data.formats.manifest import SPLIT_NAMES
from fer_lightning.data.listing import folder_stamp, listable
from fer_lightning.errors import ConfigError
from fer_lightning.labels import code_of


def _split_folders(root: Path) -> dict[str, int]:
    """{folder name: subset} of the split folders under ``root``."""
    return {
        name: SPLIT_NAMES[name.lower()]
        for name in listable(root, "dataset folder")
        if name.lower() in SPLIT_NAMES and (root / name).is_dir()
    }


@dataclass(frozen=True)
class Folders(ScannedLayout):
    """The reader of class folders (see the module docstring)."""

    subsets: ClassVar[tuple[int, ...]] = ()
    problems: ClassVar[dict[str, str]] = {
        "unknown_class": "image in a folder that names no expression",
        "outside_class_folder": "file in a split folder, not in a class folder",
        "not_an_image": "file in a class folder without an image suffix",
    }

    def require(self, root: Path) -> None:
        if not _split_folders(root):
            raise ConfigError(
                f"no train/, val/ or test/ folder in {root} (expected class folders "
                "<root>/<split>/<class name>/<image>, see docs/data.md)"
            )

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        """Each split and class folder's: a file added, removed or renamed changes one."""
        stamps = {}
        for split in _split_folders(root):
            stamps[split] = folder_stamp(root / split)
            for name in os.listdir(root / split):
                if (root / split / name).is_dir():
                    stamps[f"{split}/{name}"] = folder_stamp(root / split / name)
        return stamps

    def scan(self, root: Path) -> list[Sample]:
        """Every sample, finished: a sample's folders are its labels."""
        samples = []
        for split, subset in _split_folders(root).items():
            for name in listable(root / split, "split folder"):
                if not (root / split / name).is_dir():
                    samples.append(
                        Sample(subset, f"{split}/{name}", None, problems=("outside_class_folder",))
                    )
                    continue
                code = code_of(name)
                for file in listable(root / split / name, "class folder"):
                    path = f"{split}/{name}/{file}"
                    problems = []
                    if code is None:
                        problems.append("unknown_class")
                    if os.path.splitext(file)[1].lower() not in IMAGE_SUFFIXES:
                        problems.append("not_an_image")
                    image = None if problems else path
                    samples.append(
                        Sample(
                            subset,
                            path,
                            image,
                            -1 if code is None else code,
                            problems=tuple(problems),
                        )
                    )
        return samples


PROTOCOL = "predefined"
READER = Folders()
