"""``python -m fer_lightning.data.check data.root=DIR [report=PATH]``: what is wrong with a dataset.

Checks every sample afresh (the cached index is not trusted, and is replaced by the new one, so
training afterwards starts without indexing again), prints a table of counts, and writes the full
report, with the ids per problem kind, to the dataset's cache (``check-report.json``; a copy at
``report`` when given). A dataset with no usable sample, or no dataset, is one line on stderr and
exit status 2.

Other keys as in the data config: ``data.format`` (the layout, ``affectnet`` by default) with its
settings ``data.labels``, ``data.images``, ``data.manifest`` and ``data.crop_margin``,
``data.cache_dir`` and ``data.check_workers``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.check_report import KEPT, REPORT_FILE, CheckReport
from fer_lightning.data.formats import DEFAULT_LAYOUT, READER_SETTINGS, reader
from fer_lightning.data.index import cache_dir_for, load_or_build_index
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import EXPRESSION_NAMES

DEFAULTS = {
    "data": {
        "root": "Dataset/",
        "format": DEFAULT_LAYOUT,
        **dict.fromkeys(READER_SETTINGS),
        "cache_dir": None,
        "check_workers": None,
    },
    "report": None,
}


def format_report(report: CheckReport) -> str:
    """The console table: usable and excluded counts, classes, ranges, and problems by kind."""
    width = max(len(n) for n in EXPRESSION_NAMES) + 2
    subsets = list(report.usable)  # the dataset's own parts
    lines = [f"dataset {report.root}", "", f"{'':<{width}}" + "".join(f"{s:>16}" for s in subsets)]

    def row(label: str, values: Sequence[object]) -> None:
        lines.append(f"{label:<{width}}" + "".join(f"{v!s:>16}" for v in values))

    row("usable", [report.usable[s] for s in subsets])
    row("excluded", [report.excluded[s] for s in subsets])
    for code, name in enumerate(EXPRESSION_NAMES):
        row(f"{code} {name}", [report.class_counts[s][code] for s in subsets])
    for axis in ("valence", "arousal"):
        ranges = [report.va_ranges[s][axis] for s in subsets]
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
    root, layout = Path(str(data["root"])), str(data["format"])
    options = {key: data[key] for key in READER_SETTINGS if data[key] is not None}
    if "manifest" in options:  # as the data module takes it, so both find the same cache
        options["manifest"] = os.path.abspath(str(options["manifest"]))
    reader(layout, **options).require(root)
    start = time.perf_counter()
    cache = cache_dir_for(root, data["cache_dir"], layout, options)
    report_path = fresh = cache / REPORT_FILE
    if cfg["report"]:
        report_path = Path(str(cfg["report"]))
    try:
        _, report = load_or_build_index(
            root, cache, True, data["check_workers"], True, layout, options
        )
    finally:
        if report_path != fresh and fresh.is_file():
            write_text_atomic(report_path, fresh.read_text())
    print(format_report(report))
    print(f"\nchecked in {time.perf_counter() - start:.1f}s; report with ids: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
