"""results/metrics_ci.csv: a percentile-bootstrap 95% interval for every metric of metrics.json,
computed from the run's predictions.csv frame (docs/metrics.md#intervals)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch

from fer_lightning.metrics.bootstrap import DEFAULT_RESAMPLES, Scored, interval_rows

INTERVALS_CSV = "metrics_ci.csv"
INTERVAL_COLUMNS = ["metric", "value", "ci_low", "ci_high", "n"]


def scored_from_frame(frame: pd.DataFrame) -> Scored:
    """predictions.csv's columns (docs/run-directory.md) as the tensors the bootstrap takes."""
    probs = frame.filter(regex=r"^prob_\d+$").to_numpy(dtype="float64", copy=True)
    va = {
        side: frame[[f"{side}_valence", f"{side}_arousal"]].to_numpy(dtype="float64", copy=True)
        for side in ("true", "pred")
    }
    return Scored(
        torch.as_tensor(frame["true_expression"].to_numpy(dtype="int64", copy=True)),
        torch.as_tensor(frame["pred_expression"].to_numpy(dtype="int64", copy=True)),
        torch.from_numpy(probs),
        torch.from_numpy(va["true"]),
        torch.from_numpy(va["pred"]),
    )


def intervals_frame(
    frame: pd.DataFrame,
    metrics: Mapping[str, float],
    prefix: str = "test",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """`metric,value,ci_low,ci_high,n` for every metric of metrics.json, named as there."""
    rows = interval_rows(scored_from_frame(frame), metrics, resamples, seed)
    table = pd.DataFrame(rows, columns=INTERVAL_COLUMNS)
    table["metric"] = [f"{prefix}/{name}" for name in table["metric"]]
    return table


def intervals_table(intervals: pd.DataFrame, names: list[str]) -> str:
    """The console table: one line per metric, its value and 95% interval."""
    shown = intervals.set_index("metric").loc[names]
    width = max(len(name) for name in names)
    lines = [f"{'metric':<{width}}  {'value':>8}  95% interval", "-" * (width + 34)]
    for name, row in shown.iterrows():
        lines.append(
            f"{name:<{width}}  {row['value']:8.4f}  [{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
        )
    return "\n".join(lines)
