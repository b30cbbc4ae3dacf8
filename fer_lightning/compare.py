"""`python -m fer_lightning.compare runs=[RUN_A,RUN_B]`: is run B better than run A?

For two runs scored on the same samples (their results/predictions.csv list the same paths), per
metric of the suite: both values, the difference B - A, its paired-bootstrap 95% interval and
p-value, and for accuracy McNemar's exact test (docs/metrics.md#comparing-runs). Writes
`comparison.csv` (or `output=`) and prints the table.

A `key=value` command like data.check, not a Hydra app: it reads two finished runs and composes
no config, so a run directory, `.hydra/` and a log of its own would only be clutter.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.errors import ConfigError
from fer_lightning.metrics.bootstrap import DEFAULT_RESAMPLES
from fer_lightning.metrics.paired import paired_rows
from fer_lightning.metrics.suite import SUITE
from fer_lightning.reports.intervals import scored_from_frame

DEFAULTS = {"runs": [], "output": "comparison.csv", "resamples": DEFAULT_RESAMPLES, "seed": 0}
EXAMPLE = "runs=[outputs/train/runs/A,outputs/train/runs/B]"


def load_run(run_dir: str) -> tuple[pd.DataFrame, dict[str, float], str]:
    """A run's predictions.csv, metrics.json and the split prefix of its metric names."""
    results = Path(run_dir) / "results"
    predictions, metrics = results / "predictions.csv", results / "metrics.json"
    if not (predictions.is_file() and metrics.is_file()):
        raise ConfigError(
            f"{run_dir} has no results/predictions.csv and metrics.json: give run directories "
            "that train or eval tested"
        )
    values = json.loads(metrics.read_text())
    prefix = next(key.split("/")[0] for key in values if key.endswith("/acc"))
    return pd.read_csv(predictions), values, prefix


def aligned(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> pd.DataFrame:
    """B's predictions in A's sample order; a ConfigError unless both hold the same samples."""
    paths_a, paths_b = set(frame_a["path"]), set(frame_b["path"])
    if paths_a != paths_b or len(paths_a) != len(frame_a) or len(frame_a) != len(frame_b):
        raise ConfigError(
            f"the runs were scored on different samples ({len(paths_a - paths_b)} of A's "
            f"{len(frame_a)} paths in results/predictions.csv are not B's): compare runs tested "
            "on the same split"
        )
    frame_b = frame_b.set_index("path").loc[frame_a["path"]].reset_index()
    if not frame_a["true_expression"].equals(frame_b["true_expression"]):
        raise ConfigError(
            "the runs' labels differ for the same images: compare runs of one dataset"
        )
    return frame_b


def comparison_table(argv: Sequence[str]) -> tuple[pd.DataFrame, dict, int]:
    """The comparison rows (metric names with the split prefix), the parsed arguments and the
    number of samples compared."""
    cfg = parse_key_values(argv, DEFAULTS, EXAMPLE)
    if len(cfg["runs"]) != 2:
        raise ConfigError(f"runs must name two run directories, e.g. {EXAMPLE}")
    (frame_a, metrics_a, prefix_a), (frame_b, metrics_b, prefix_b) = map(load_run, cfg["runs"])
    if prefix_a != prefix_b:
        raise ConfigError(f"run A scored the {prefix_a} split and run B the {prefix_b} split")
    frame_b = aligned(frame_a, frame_b)
    # Valence and arousal only where both runs' samples had those labels (metrics.json has them).
    names = [
        name for name in SUITE if all(f"{prefix_a}/{name}" in m for m in (metrics_a, metrics_b))
    ]
    values = [{name: m[f"{prefix_a}/{name}"] for name in names} for m in (metrics_a, metrics_b)]
    rows = paired_rows(
        scored_from_frame(frame_a), scored_from_frame(frame_b), *values,
        resamples=cfg["resamples"], seed=cfg["seed"],
    )  # fmt: skip
    table = pd.DataFrame(rows)
    table["metric"] = [f"{prefix_a}/{name}" for name in table["metric"]]
    return table, cfg, len(frame_a)


def format_table(table: pd.DataFrame, n: int) -> str:
    """The console table: a line per metric, then McNemar's test."""
    width = max(len(name) for name in table["metric"])
    head = f"{'metric':<{width}}  {'A':>8}  {'B':>8}  {'B - A':>8}  {'95% interval':<19}  p"
    lines = [head, "-" * (len(head) + 6)]
    for _, r in table.iterrows():
        lines.append(
            f"{r['metric']:<{width}}  {r['a']:8.4f}  {r['b']:8.4f}  {r['difference']:+8.4f}  "
            f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  {r['p_value']:.3g}"
        )
    acc = table.iloc[0]
    lines.append(
        f"McNemar exact test on accuracy: {int(acc['only_a_correct'])} samples only A gets right, "
        f"{int(acc['only_b_correct'])} only B, p = {acc['mcnemar_p']:.3g} ({n} samples)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    table, cfg, n = comparison_table(sys.argv[1:] if argv is None else argv)
    table.to_csv(cfg["output"], index=False, float_format="%.6g")
    print(f"A = {cfg['runs'][0]}\nB = {cfg['runs'][1]}")
    print(format_table(table, n))
    print(f"written to {cfg['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
