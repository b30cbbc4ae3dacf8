"""The expression scores of a confusion matrix, batched over resamples (docs/metrics.md).

A confusion matrix [..., C, C] of (weighted) counts holds everything accuracy, balanced
accuracy, precision, recall, F1, Cohen's kappa and Krippendorff's alpha need, so the bootstrap
resamples counts rather than samples for them. Undefined values:

- precision, recall and F1 of a class with a zero denominator are 0 (sklearn's ``zero_division=0``);
  F1 macro averages over the classes that occur in the labels or the predictions (sklearn's
  default label set), F1 weighted weights by label support; balanced accuracy averages recall
  over the classes that occur in the labels (sklearn's ``balanced_accuracy_score``);
- Cohen's kappa and Krippendorff's alpha are 0 when chance agreement is total, i.e. labels and
  predictions all name one and the same class (both formulas divide 0 by 0 there).
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fer_lightning.metrics.common import safe_div, unit_weights, weighted_counts

# The scalar expression metrics of metrics.json, in docs/metrics.md's order; `ranking` and
# `calibration` compute the last three.
CLASSIFICATION_KEYS = (
    "acc",
    "balanced_acc",
    "f1_macro",
    "f1_weighted",
    "kappa",
    "krippendorff_alpha",
    "auroc",
    "auprc",
    "ece",
)
PER_CLASS_SCORES = ("precision", "recall", "f1")


def per_class_keys(num_classes: int) -> list[str]:
    """`precision_<k>`, `recall_<k>`, `f1_<k>`: the per-class entries of metrics.json."""
    return [f"{name}_{k}" for name in PER_CLASS_SCORES for k in range(num_classes)]


def confusion_matrices(
    expression: Tensor, pred: Tensor, num_classes: int, weights: Tensor
) -> Tensor:
    """Weighted count matrices [B, true, predicted] in float64, one per row of `weights` [B, N]."""
    cells = expression.long() * num_classes + pred.long()
    counts = weighted_counts(cells, num_classes * num_classes, weights)
    return counts.view(-1, num_classes, num_classes)


def per_class_scores(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1, support and prediction count per class [..., C]."""
    tp = cm.diagonal(dim1=-2, dim2=-1)
    support = cm.sum(dim=-1)
    predicted = cm.sum(dim=-2)
    return {
        "precision": safe_div(tp, predicted),
        "recall": safe_div(tp, support),
        # 2 tp / (2 tp + fp + fn), as sklearn computes it: equal to 2PR / (P + R) wherever that is
        # defined, and 0 (not 0/0) for a class with no true positives.
        "f1": safe_div(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
    }


def averages(scores: dict[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """Macro (over classes seen in labels or predictions, sklearn's label set) and
    support-weighted averages of one per-class score."""
    seen = ((scores["support"] + scores["predicted"]) > 0).double()
    macro = (scores[name] * seen).sum(dim=-1) / seen.sum(dim=-1)
    weighted = (scores[name] * scores["support"]).sum(dim=-1) / scores["support"].sum(dim=-1)
    return macro, weighted


def _kappa(n: Tensor, correct: Tensor, scores: dict[str, Tensor]) -> Tensor:
    """Cohen's unweighted kappa in integer-valued arithmetic, so total chance agreement is exact."""
    chance = (scores["support"] * scores["predicted"]).sum(dim=-1)
    return safe_div(n * correct - chance, n * n - chance)


def _krippendorff_alpha(n: Tensor, correct: Tensor, scores: dict[str, Tensor]) -> Tensor:
    """Nominal alpha with label and prediction as the two coders, from the coincidence matrix
    `cm + cm.T` (every sample is a unit of two values): `1 - (2N - 1) * disagreements /
    (4N^2 - sum_c n_c^2)`, where `n_c` counts the values c among labels and predictions."""
    coded = scores["support"] + scores["predicted"]
    expected = (2 * n) ** 2 - (coded**2).sum(dim=-1)
    return torch.where(
        expected > 0, 1 - safe_div((2 * n - 1) * (2 * n - 2 * correct), expected), 0.0
    )


def classification_scores(cm: Tensor) -> dict[str, Tensor]:
    """The confusion-matrix metrics of metrics.json, each [B] (per class: `precision_<k>` ...)."""
    scores = per_class_scores(cm)
    n = scores["support"].sum(dim=-1)
    correct = cm.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    present = (scores["support"] > 0).double()
    f1_macro, f1_weighted = averages(scores, "f1")
    result = {
        "acc": correct / n,
        "balanced_acc": (scores["recall"] * present).sum(dim=-1) / present.sum(dim=-1),
        "f1_macro": f1_macro,
        "f1_weighted": f1_weighted,
        "kappa": _kappa(n, correct, scores),
        "krippendorff_alpha": _krippendorff_alpha(n, correct, scores),
    }
    for name in PER_CLASS_SCORES:
        for k in range(cm.shape[-1]):
            result[f"{name}_{k}"] = scores[name][..., k]
    return result


def per_class_report(
    expression: Tensor | np.ndarray | Sequence[int],
    pred: Tensor | np.ndarray | Sequence[int],
    class_names: Sequence[str],
) -> list[dict[str, str | float | int]]:
    """Rows of a classification report (one per class, then macro and weighted averages).

    Built from the same code as ``MultiTaskMetrics``, so the report's numbers and metrics.json
    cannot disagree, even on the edge cases above. Columns: class, precision, recall, f1, support.
    """
    expression, pred = torch.as_tensor(expression), torch.as_tensor(pred)
    weights = unit_weights(expression.numel(), expression.device)
    cm = confusion_matrices(expression, pred, len(class_names), weights)[0]
    scores = per_class_scores(cm)
    rows: list[dict[str, str | float | int]] = [
        {
            "class": name,
            "precision": float(scores["precision"][k]),
            "recall": float(scores["recall"][k]),
            "f1": float(scores["f1"][k]),
            "support": int(scores["support"][k]),
        }
        for k, name in enumerate(class_names)
    ]
    pairs = {name: averages(scores, name) for name in PER_CLASS_SCORES}
    for i, label in enumerate(("macro avg", "weighted avg")):
        row: dict[str, str | float | int] = {"class": label}
        row.update({name: float(pair[i]) for name, pair in pairs.items()})
        row["support"] = int(scores["support"].sum())
        rows.append(row)
    return rows
