"""What indexing found in a dataset (`CheckReport`), and the file it is kept in.

Written by the index (fer_lightning/data/index.py) into the dataset's cache and printed by
``python -m fer_lightning.data.check``; docs/data.md describes its fields.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from fer_lightning.files import write_text_atomic
from fer_lightning.labels import EXPRESSION_NAMES

log = logging.getLogger(__name__)

REPORT_FILE = "check-report.json"

# Worth knowing but harmless: the sample is decoded to 3-channel RGB and resized like any other.
# Every other problem kind keeps the sample out of all splits.
KEPT = {
    "unexpected_mode": "not 3-channel (grayscale or alpha), kept as RGB",
    "unexpected_size": "size differs from the most common one in its set, kept and resized",
}


@dataclass
class CheckReport:
    """What indexing found: problem kinds with the affected samples, and what was kept.

    Samples are named ``<subset>/<id>`` (``<subset>/<file name>`` for stray files).
    """

    root: str
    problems: dict[str, list[str]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)  # of the kinds in problems
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    va_ranges: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    usable: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "root": self.root,
            "usable": self.usable,
            "excluded": self.excluded,
            "class_counts": {
                subset: dict(zip(EXPRESSION_NAMES, counts, strict=True))
                for subset, counts in self.class_counts.items()
            },
            "va_ranges": self.va_ranges,
            "counts": {kind: len(ids) for kind, ids in self.problems.items()},
            "descriptions": self.descriptions,
            "ids": self.problems,
        }

    @classmethod
    def from_json(cls, data: dict) -> CheckReport:
        return cls(
            root=data["root"],
            problems=data["ids"],
            descriptions=data["descriptions"],
            class_counts={s: list(c.values()) for s, c in data["class_counts"].items()},
            va_ranges=data["va_ranges"],
            usable=data["usable"],
            excluded=data["excluded"],
        )

    def warn(self, where: Path) -> None:
        """One counted warning line per problem kind (never one per file)."""
        for kind, ids in self.problems.items():
            action = "kept" if kind in KEPT else "excluded"
            log.warning(
                "%d sample(s) %s: %s [%s] (ids in %s)",
                len(ids),
                action,
                self.descriptions[kind],
                kind,
                where,
            )


def write_report(path: Path, report: CheckReport) -> None:
    write_text_atomic(path, json.dumps(report.to_json(), indent=1) + "\n")
