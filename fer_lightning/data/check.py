"""``python -m fer_lightning.data.check data.root=DIR [report=PATH]``: what is wrong with a dataset.

Checks every sample afresh (the cached index is not trusted, and is replaced by the new one, so
training afterwards starts without indexing again), prints a table of counts, and writes the full
report, with the ids per problem kind, to ``report`` (default ``data_check.json``). A dataset with
no usable sample, or no dataset, is one line on stderr and exit status 2.

Other keys: ``data.cache_dir`` and ``data.check_workers`` as in the data config.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from fer_lightning.data.affectnet import (
    EXCLUDED,
    EXPRESSION_NAMES,
    KEPT,
    REPORT_FILE,
    SUBSETS,
    CheckReport,
    cache_dir_for,
    load_or_build_index,
    require_layout,
)
from fer_lightning.errors import ConfigError

DEFAULTS = {"data": {"root": "Dataset/", "cache_dir": None, "check_workers": None}}
DEFAULT_REPORT = "data_check.json"


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
        action = "excluded" if kind in EXCLUDED else "kept"
        lines.append(f"{kind:<22}{len(ids):>7}  {action:<9} {({**EXCLUDED, **KEPT})[kind]}")
    if not report.problems:
        lines.append("(none)")
    return "\n".join(lines)


def _parse(argv: Sequence[str]) -> tuple[Path, Path, str | None, int | None]:
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r}; e.g. data.root=Dataset/")
    cfg = OmegaConf.merge(
        {**DEFAULTS, "report": DEFAULT_REPORT}, OmegaConf.from_dotlist(list(argv))
    )
    unknown = (set(cfg) - {"data", "report"}) | {
        f"data.{key}" for key in set(cfg.data) - set(DEFAULTS["data"])
    }
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r}; keys: data.root, data.cache_dir, "
            "data.check_workers, report"
        )
    data = cfg.data
    return Path(str(data.root)), Path(str(cfg.report)), data.cache_dir, data.check_workers


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        root, report_path, cache_dir, workers = _parse(sys.argv[1:] if argv is None else argv)
        require_layout(root)
        start = time.perf_counter()
        cache = cache_dir_for(root, cache_dir)
        try:
            _, report = load_or_build_index(root, cache, True, workers, quiet=True)
        finally:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            fresh = cache / REPORT_FILE
            if fresh.is_file():
                report_path.write_bytes(fresh.read_bytes())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(f"\nchecked in {time.perf_counter() - start:.1f}s; report with ids: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
