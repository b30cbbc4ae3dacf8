"""Result files a run leaves in results/: readable without Python.

`train` and `eval` both call `write_reports` after testing (on rank zero only). File names:

    metrics.json               the metric suite, one flat object, keys `<split>/<name>`
    metrics_ci.csv             a bootstrap 95% interval for every metric of the JSON
    evaluation_metrics.csv     the suite as `metric,value,ci_low,ci_high` rows, named as in the JSON
    classification_report.csv  sklearn's layout: per class, accuracy, macro avg, weighted avg
    experiment.csv             one row: model, hyperparameters, split sizes, epochs, time, device
    predictions.csv            one row per sample (columns in docs/run-directory.md)
    confusion_matrix.png       counts and row-normalised rates
    accuracy_curve.png         training and validation accuracy per epoch } only with an
    loss_curve.png             training and validation loss per epoch     } epoch history
    test_examples.png          16 samples: true and predicted expression, valence, arousal
    valence_arousal.png        predicted against true valence and arousal  } only where some
    circumplex.png             labelled and predicted (valence, arousal)   } sample has them
    reliability_diagram.png    accuracy against confidence in the bins of the ECE
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from fer_lightning.metrics.bootstrap import DEFAULT_RESAMPLES
from fer_lightning.metrics.classification import per_class_report
from fer_lightning.metrics.suite import DIMENSIONS, SUITE
from fer_lightning.reports import figures
from fer_lightning.reports.intervals import INTERVALS_CSV, intervals_frame, intervals_table
from fer_lightning.runs.history import best_epoch

log = logging.getLogger(__name__)
# 9 significant digits write float32 exactly, so metrics recomputed from the CSV match the JSON.
PREDICTIONS_FLOAT_FORMAT = "%.9g"
REPORT_FLOAT_FORMAT = "%.6g"


def reported(metrics: Mapping[str, float]) -> list[str]:
    """The suite's scalar names that `metrics` holds, in docs/metrics.md's order: valence and
    arousal are absent when no sample of the split had those labels."""
    return [name for name in SUITE if name in metrics]


def write_metrics_json(metrics: Mapping[str, float], path: Path, prefix: str = "test") -> None:
    """One flat JSON object, keys `<prefix>/<name>` (docs/run-directory.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
    path.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")


def predictions_frame(outputs: Mapping[str, np.ndarray], paths: Sequence[str]) -> pd.DataFrame:
    """One row per sample, in dataset order, with the columns of docs/run-directory.md."""
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


def classification_report_frame(frame: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """sklearn's classification report as a table, computed by `per_class_report` so its numbers
    are the ones behind metrics.json (same zero-division and macro-average rules)."""
    # Copies: pandas hands out read-only views, which torch.as_tensor warns about.
    true = frame["true_expression"].to_numpy(copy=True)
    pred = frame["pred_expression"].to_numpy(copy=True)
    rows = per_class_report(true, pred, class_names)
    accuracy = {"class": "accuracy", "f1": float(np.mean(true == pred)), "support": len(frame)}
    # sklearn puts accuracy between the classes and the averages, in the f1-score column only.
    table = pd.DataFrame([*rows[: len(class_names)], accuracy, *rows[len(class_names) :]])
    return table.rename(columns={"f1": "f1-score"})[
        ["class", "precision", "recall", "f1-score", "support"]
    ]


def evaluation_metrics_frame(
    metrics: Mapping[str, float], prefix: str = "test", intervals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The metric suite as `metric,value,ci_low,ci_high` rows, in docs/metrics.md's order; the
    interval is empty without per-sample outputs to resample."""
    present = reported(metrics)
    names = [f"{prefix}/{name}" for name in present]
    frame = pd.DataFrame({"metric": names, "value": [metrics[n] for n in present]})
    if intervals is None:
        return frame.assign(ci_low=np.nan, ci_high=np.nan)
    bounds = intervals.set_index("metric").loc[names, ["ci_low", "ci_high"]]
    return frame.assign(ci_low=bounds["ci_low"].to_numpy(), ci_high=bounds["ci_high"].to_numpy())


def device_description(trainer: pl.Trainer) -> str:
    """What the run computed on, e.g. `cpu` or `2 x NVIDIA H200`: timings mean little without."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    # num_devices counts one node's devices: the job ran on num_nodes of them (world_size in all).
    processes = trainer.num_devices * trainer.num_nodes
    return f"{processes} x {name}" if processes > 1 else name


def dataset_name(data: Mapping[str, Any]) -> str:
    """What names a data config's dataset in experiment.csv and the cross-dataset matrix: its
    `name` if it has one, else the last folder of its root (`Dataset/synthetic` -> `synthetic`);
    a joint run's, its sources' names joined by `+`."""
    if isinstance(data.get("sources"), Mapping):
        return "+".join(data["sources"])
    return str(data.get("name") or Path(str(data.get("root", ""))).name)


def _class_name(target: str | None) -> str:
    return target.rsplit(".", 1)[-1] if target else "none"


def experiment_row(
    config: Mapping[str, Any],
    split_sizes: Mapping[str, int],
    history: Sequence[Mapping[str, float]],
    *,
    task: str,
    started: datetime,
    duration_s: float,
    device: str,
    precision: str,
    split: str = "test",
    tta: str | None = None,
    checkpoint: str = "",
    test_data: Mapping[str, Any] | None = None,
    scored_classes: int | None = None,
) -> dict[str, Any]:
    """One row of experiment.csv, from a run's resolved config (plain containers).

    `epochs`, `best_val_acc`, `best_val_epoch` and `training_s` come from the epoch history, so they
    count every epoch of a resumed run; `duration_s` is this command's wall time only.
    `train_data` names the dataset the network was trained on, `test_data` the one it was scored
    on (`test_data`, another dataset's config, for cross-dataset eval; the training data by
    default), and `scored_classes` how many expression classes it was scored on.
    """
    data, loss = config.get("data", {}), config.get("loss", {})
    loss_weights = loss.get("weights", {})
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler") or {}
    best = best_epoch(history)
    return {
        "task": task,
        "model": config.get("model", {}).get("name", ""),
        "pretrained": config.get("model", {}).get("pretrained", ""),
        "optimizer": _class_name(optimizer.get("_target_")),
        "lr": optimizer.get("lr", ""),
        "weight_decay": optimizer.get("weight_decay", ""),
        "scheduler": _class_name(scheduler.get("_target_")),
        "batch_size": data.get("batch_size", ""),
        "image_size": data.get("image_size", ""),
        "classes": data.get("classes", ""),
        "train_data": dataset_name(data),
        "test_data": dataset_name(test_data if test_data is not None else data),
        "scored_classes": scored_classes or data.get("classes", ""),
        "loss": _class_name(loss.get("_target_")),
        "regression_loss": loss.get("regression", ""),
        "loss_weight_expression": loss_weights.get("expression", ""),
        "loss_weight_valence": loss_weights.get("valence", ""),
        "loss_weight_arousal": loss_weights.get("arousal", ""),
        "seed": config.get("seed", ""),
        "protocol": data.get("protocol", ""),
        "sampler": data.get("sampler", ""),
        **{f"{part}_size": size for part, size in split_sizes.items()},
        "epochs": len(history),
        "best_val_acc": best["val/acc"] if best else "",
        "best_val_epoch": best["epoch"] if best else "",
        "training_s": round(sum(row.get("seconds", 0.0) for row in history), 1),
        "split": split,
        "tta": tta or "none",
        "checkpoint": checkpoint,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "device": device,
        "precision": precision,
    }


def write_reports(
    results: Mapping[str, Any],
    paths: Sequence[str],
    results_dir: Path,
    class_names: Sequence[str],
    prefix: str = "test",
    history: Sequence[Mapping[str, float]] = (),
    experiment: Mapping[str, Any] | None = None,
    bootstrap: Mapping[str, int] | None = None,
) -> None:
    """Writes every file of the module docstring from a module's `test_results`.

    The curves need `history` (eval of a checkpoint saved without one has none) and the
    per-sample files and intervals need the outputs; each is skipped when its input is missing.
    `bootstrap` holds the intervals' `resamples` and `seed` (the `bootstrap` config key).
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    metrics = results["metrics"]
    write_metrics_json(metrics, results_dir / "metrics.json", prefix)
    frame = predictions_frame(results["outputs"], paths) if results["outputs"] else None
    intervals = None
    if frame is not None:
        settings = {"resamples": DEFAULT_RESAMPLES, "seed": 0, **(bootstrap or {})}
        # The pooled metrics: a joint run's per-source `<source>/<name>` get no interval.
        pooled = {name: value for name, value in metrics.items() if "/" not in name}
        intervals = intervals_frame(frame, pooled, prefix, **settings)
        intervals.to_csv(results_dir / INTERVALS_CSV, index=False, float_format=REPORT_FLOAT_FORMAT)
        names = [f"{prefix}/{name}" for name in reported(metrics)]
        log.info(
            "%s metrics, %d bootstrap resamples:\n%s",
            prefix,
            settings["resamples"],
            intervals_table(intervals, names),
        )
    evaluation_metrics_frame(metrics, prefix, intervals).to_csv(
        results_dir / "evaluation_metrics.csv", index=False, float_format=REPORT_FLOAT_FORMAT
    )
    if experiment is not None:
        pd.DataFrame([experiment]).to_csv(results_dir / "experiment.csv", index=False)
    if history:
        figures.plot_curves(history, "acc", results_dir / "accuracy_curve.png")
        figures.plot_curves(history, "loss", results_dir / "loss_curve.png")
    if frame is None:
        return
    frame.to_csv(
        results_dir / "predictions.csv", index=False, float_format=PREDICTIONS_FLOAT_FORMAT
    )
    classification_report_frame(frame, class_names).to_csv(
        results_dir / "classification_report.csv", index=False, float_format=REPORT_FLOAT_FORMAT
    )
    title = f"{prefix} split, {len(frame):,} samples"
    figures.plot_confusion_matrix(
        frame, class_names, results_dir / "confusion_matrix.png", f"Confusion matrix ({title})"
    )
    figures.plot_examples(
        frame, class_names, results_dir / "test_examples.png", f"Examples from the {title}"
    )
    if all(f"{dimension}_ccc" in metrics for dimension in DIMENSIONS):
        figures.plot_valence_arousal(frame, metrics, results_dir / "valence_arousal.png")
        figures.plot_circumplex(frame, class_names, results_dir / "circumplex.png")
    figures.plot_reliability(frame, metrics["ece"], results_dir / "reliability_diagram.png")
