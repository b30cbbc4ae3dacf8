"""Result files a run leaves in results/: readable without Python."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def write_metrics_json(metrics: Mapping[str, float], path: Path, prefix: str = "test") -> None:
    """One flat JSON object, keys `<prefix>/<name>` (DESIGN.md section 4)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
    path.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")


def predictions_frame(outputs: Mapping[str, np.ndarray], paths: Sequence[str]) -> pd.DataFrame:
    """One row per sample, in dataset order, with DESIGN.md's columns."""
    order = np.argsort(outputs["index"], kind="stable")
    probs = outputs["probs"][order]
    frame = pd.DataFrame(
        {
            "path": [paths[i] for i in outputs["index"][order]],
            "true_expression": outputs["expression"][order].astype(int),
            "pred_expression": probs.argmax(axis=1),
            "true_valence": outputs["va"][order, 0],
            "pred_valence": outputs["va_pred"][order, 0],
            "true_arousal": outputs["va"][order, 1],
            "pred_arousal": outputs["va_pred"][order, 1],
        }
    )
    for k in range(probs.shape[1]):
        frame[f"prob_{k}"] = probs[:, k]
    return frame


def write_reports(
    results: Mapping[str, object], paths: Sequence[str], results_dir: Path, prefix: str = "test"
) -> None:
    """Writes metrics.json and predictions.csv from a module's `test_results`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    write_metrics_json(results["metrics"], results_dir / "metrics.json", prefix)
    if results["outputs"]:
        predictions_frame(results["outputs"], paths).to_csv(
            results_dir / "predictions.csv", index=False, float_format="%.6g"
        )
