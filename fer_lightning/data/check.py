"""``python -m fer_lightning.data.check data.root=DIR [report=PATH]``: what is wrong with a dataset.

Checks every sample afresh (the cached index is not trusted, and is replaced by the new one, so
training afterwards starts without indexing again), prints a table of counts, and writes the full
report, with the ids per problem kind, to the dataset's cache (``check-report.json``; a copy at
``report`` when given). A dataset with no usable sample, or no dataset, is one line on stderr and
exit status 2.

Other keys: ``data.format`` (the layout, as ``data=affectnet_csv`` sets it), ``data.crop_margin``,
``data.cache_dir`` and ``data.check_workers`` as in the data config.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.formats import DEFAULT_LAYOUT, reader
from fer_lightning.data.index import (
    KEPT,
    REPORT_FILE,
    CheckReport,
    cache_dir_for,
    load_or_build_index,
)
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import EXPRESSION_NAMES, SUBSETS

DEFAULTS = {
    "data": {
        "root": "Dataset/",
        "format": DEFAULT_LAYOUT,
        "crop_margin": 0.0,
        "cache_dir": None,
        "check_workers": None,
    },
    "report": None,
}


def format_report(report: CheckReport) -> str:
    """The console table: usable and excluded counts, classes, ranges, and problems by kind."""
    width = max(len(n) for n in EXPRESSION_NAMES) + 2
    lines = [f"dataset {report.root}", "", f"{'':<{width}}" + "".join(f"{s:>16}" for s in SUBSETS)]

    def row(label: str, values: Sequence[object]) -> None:
        lines.append(f"{label:<{width}}" + "".join(f"{v!s:>16}" for v in values))

    row("usable", [report.usable[s] for s in SUBSETS])
    row("excluded", [report.excluded[s] for s in SUBSETS])
    for code, name in enumerate(EXPRESSION_NAMES):
        row(f"{code} {name}", [report.class_counts[s][code] for s in SUBSETS])
    for axis in ("valence", "arousal"):
        ranges = [report.va_ranges[s][axis] for s in SUBSETS]
        row(axis, ["{:+.2f}..{:+.2f}".format(*r) if r else "-" for r in ranges])
    lines += ["", "problem kind            count  action    meaning"]
    for kind, ids in report.problems.items():
        action = "kept" if kind in KEPT else "excluded"
        lines.append(f"{kind:<22}{len(ids):>7}  {action:<9} {report.descriptions[kind]}")
    if not report.problems:
        lines.append("(none)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Checks the dataset; a ConfigError is the user's to fix (see `run_command`)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    cfg = parse_key_values(args, DEFAULTS, "data.root=Dataset/")
    data = cfg["data"]
    root = Path(str(data["root"]))
    reader(str(data["format"])).require(root)
    start = time.perf_counter()
    cache = cache_dir_for(root, data["cache_dir"])
    report_path = fresh = cache / REPORT_FILE
    if cfg["report"]:
        report_path = Path(str(cfg["report"]))
    try:
        _, report = load_or_build_index(
            root, cache, True, data["check_workers"], True, str(data["format"]), data["crop_margin"]
        )
    finally:
        if report_path != fresh and fresh.is_file():
            write_text_atomic(report_path, fresh.read_text())
    print(format_report(report))
    print(f"\nchecked in {time.perf_counter() - start:.1f}s; report with ids: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
