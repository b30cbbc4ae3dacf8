"""results/ after training: every file, metrics equal to references recomputed from the CSV.

The references use sklearn, numpy and krippendorff on predictions.csv's columns, never our code,
so a disagreement between metrics.json and the per-sample file cannot hide.
"""

from __future__ import annotations

import json
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    roc_auc_score,
)

from fer_lightning.labels import EXPRESSION_NAMES
from fer_lightning.reports.results import write_reports
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.history import checkpoint_history
from fer_lightning.train import train
from tests.conftest import CONTRACT_METRICS, tiny_overrides
from tests.test_metrics_calibration import ece_reference
from tests.test_metrics_regression import icc_3_1_anova

PREDICTION_COLUMNS = [
    "path",
    "true_expression",
    "pred_expression",
    "true_valence",
    "pred_valence",
    "true_arousal",
    "pred_arousal",
    *(f"prob_{k}" for k in range(8)),
]
CURVES = ["accuracy_curve.png", "loss_curve.png"]
PER_SAMPLE_FIGURES = [
    "confusion_matrix.png",
    "test_examples.png",
    "valence_arousal.png",
    "circumplex.png",
    "reliability_diagram.png",
]
EXPERIMENT_COLUMNS = {
    "model",
    "optimizer",
    "lr",
    "scheduler",
    "batch_size",
    "image_size",
    "loss_weight_expression",
    "loss_weight_valence",
    "loss_weight_arousal",
    "seed",
    "protocol",
    "train_size",
    "val_size",
    "test_size",
    "epochs",
    "best_val_acc",
    "duration_s",
    "device",
}


def recompute(frame: pd.DataFrame) -> dict[str, float]:
    """The suite from predictions.csv with the reference libraries (docs/metrics.md)."""
    y, p = frame["true_expression"].to_numpy(), frame["pred_expression"].to_numpy()
    probs = frame[[f"prob_{k}" for k in range(8)]].to_numpy()
    present = [k for k in range(8) if (y == k).any()]
    result = {
        "acc": accuracy_score(y, p),
        "balanced_acc": balanced_accuracy_score(y, p),
        "f1_macro": f1_score(y, p, average="macro"),
        "f1_weighted": f1_score(y, p, average="weighted"),
        "kappa": cohen_kappa_score(y, p),
        "krippendorff_alpha": krippendorff.alpha(
            reliability_data=np.stack([y, p]), level_of_measurement="nominal"
        ),
        # One-vs-rest macro over the classes whose curve exists (metrics.py's rule).
        "auroc": np.mean([roc_auc_score(y == k, probs[:, k]) for k in present]),
        "auprc": np.mean([average_precision_score(y == k, probs[:, k]) for k in present]),
        "ece": ece_reference(probs, y, p),
    }
    for dimension in ("valence", "arousal"):
        t, q = frame[f"true_{dimension}"].to_numpy(), frame[f"pred_{dimension}"].to_numpy()
        cov = np.cov(t, q, bias=True)[0, 1]
        result[f"{dimension}_rmse"] = np.sqrt(np.mean((t - q) ** 2))
        result[f"{dimension}_pcc"] = np.corrcoef(t, q)[0, 1]
        result[f"{dimension}_sagr"] = np.mean(np.sign(t) == np.sign(q))
        result[f"{dimension}_ccc"] = 2 * cov / (t.var() + q.var() + (t.mean() - q.mean()) ** 2)
        result[f"{dimension}_mae"] = mean_absolute_error(t, q)
        result[f"{dimension}_icc"] = icc_3_1_anova(np.stack([t, q], axis=1))
    return result


def assert_png(path: Path) -> None:
    """A real, non-blank PNG of a size one can read."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path.name
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        low, high = image.convert("L").getextrema()
    assert 400 <= width <= 3000 and 300 <= height <= 3000, (path.name, image.size)
    assert high - low > 100, f"{path.name} is blank"


def test_training_leaves_every_result_and_they_agree(compose_config, tiny_dataset):
    overrides = [*tiny_overrides(tiny_dataset), "model=tnet", "optimizer.lr=3e-3"]
    # One epoch, stopped; then the same command resumed to two: the history must span both.
    train(compose_config("train", [*overrides, "trainer.max_epochs=1", "test=false"]))
    cfg = compose_config("train", [*overrides, "trainer.max_epochs=2"])
    returned = train(cfg)
    results = Path(cfg.paths.output_dir) / "results"

    metrics = json.loads((results / "metrics.json").read_text())
    assert {f"test/{name}" for name in CONTRACT_METRICS} <= set(metrics)
    assert metrics["test/acc"] == pytest.approx(returned["acc"])
    # ... and the best checkpoint's validation metrics, what a search may optimise.
    assert {f"val/{name}" for name in CONTRACT_METRICS} <= set(returned)

    frame = pd.read_csv(results / "predictions.csv")
    assert list(frame.columns) == PREDICTION_COLUMNS
    reference = recompute(frame)
    for name in CONTRACT_METRICS:
        assert metrics[f"test/{name}"] == pytest.approx(reference[name], abs=1e-6), name

    evaluation = pd.read_csv(results / "evaluation_metrics.csv")
    assert list(evaluation.columns) == ["metric", "value", "ci_low", "ci_high"]
    assert list(evaluation["metric"]) == [f"test/{name}" for name in CONTRACT_METRICS]
    for name, value in zip(evaluation["metric"], evaluation["value"], strict=True):
        assert value == pytest.approx(metrics[name], rel=1e-5, abs=1e-6)

    # A bootstrap interval for every metric of metrics.json, around its value.
    intervals = pd.read_csv(results / "metrics_ci.csv")
    assert list(intervals.columns) == ["metric", "value", "ci_low", "ci_high", "n"]
    assert sorted(intervals["metric"]) == sorted(metrics)
    assert (intervals["n"] == len(frame)).all()
    assert (intervals["ci_low"] <= intervals["ci_high"]).all()
    shown = intervals.set_index("metric").loc[evaluation["metric"]]
    assert np.allclose(shown["ci_low"], evaluation["ci_low"], rtol=1e-5, atol=1e-6)
    by_name = intervals.set_index("metric")
    acc = by_name.loc["test/acc"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    rmse = by_name.loc["test/valence_rmse"]
    assert rmse["ci_low"] < rmse["value"] < rmse["ci_high"]

    report = pd.read_csv(results / "classification_report.csv", index_col="class")
    assert list(report.columns) == ["precision", "recall", "f1-score", "support"]
    assert list(report.index) == [*EXPRESSION_NAMES, "accuracy", "macro avg", "weighted avg"]
    assert report.loc["accuracy", "f1-score"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert report.loc["macro avg", "f1-score"] == pytest.approx(metrics["test/f1_macro"], abs=1e-6)
    assert report.loc["weighted avg", "support"] == len(frame)

    experiment = pd.read_csv(results / "experiment.csv").iloc[0]
    assert set(experiment.index) >= EXPERIMENT_COLUMNS
    assert (experiment["model"], experiment["epochs"], experiment["test_size"]) == (
        "tnet",
        2,
        len(frame),
    )
    assert experiment["optimizer"] == "Adam" and experiment["lr"] == pytest.approx(3e-3)
    # The best checkpoint, named by its 0-based epoch, is the epoch of the best val/acc.
    assert f"best-epoch{experiment['best_val_epoch'] - 1:03d}" in experiment["checkpoint"]

    for name in [*CURVES, *PER_SAMPLE_FIGURES]:
        assert_png(results / name)

    last = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    history = checkpoint_history(last)
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(history[0])
    assert max(row["val/acc"] for row in history) == pytest.approx(experiment["best_val_acc"])
    assert returned["val/acc"] == pytest.approx(experiment["best_val_acc"])


def test_without_history_the_curves_are_skipped(tiny_dataset, tmp_path):
    paths = sorted(str(p) for p in (tiny_dataset / "val_set" / "images").iterdir())[:20]
    rng = np.random.default_rng(0)
    va = rng.uniform(-1, 1, (20, 2)).astype(np.float32)
    outputs = {
        "index": np.arange(20),
        "expression": rng.integers(0, 8, 20),
        "va": va,
        "probs": rng.dirichlet(np.ones(8), 20).astype(np.float32),
        "va_pred": (va * 0.5).astype(np.float32),
    }
    metrics = {name: 0.5 for name in CONTRACT_METRICS}
    write_reports({"metrics": metrics, "outputs": outputs}, paths, tmp_path, EXPRESSION_NAMES)

    for name in PER_SAMPLE_FIGURES:
        assert_png(tmp_path / name)
    assert not any((tmp_path / name).exists() for name in CURVES)
    assert not (tmp_path / "experiment.csv").exists()
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 20


def test_the_device_count_covers_every_node():
    from types import SimpleNamespace

    import torch

    from fer_lightning.reports.results import device_description

    def trainer(devices: int, nodes: int) -> SimpleNamespace:
        strategy = SimpleNamespace(root_device=torch.device("cpu"))
        return SimpleNamespace(strategy=strategy, num_devices=devices, num_nodes=nodes)

    assert device_description(trainer(4, 2)) == "8 x cpu"
    assert device_description(trainer(1, 1)) == "cpu"
