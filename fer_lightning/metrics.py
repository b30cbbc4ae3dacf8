"""The AffectNet metric suite (docs/metrics.md) as DDP-safe torchmetrics objects.

Every metric keeps its state in torchmetrics ``add_state`` buffers, so ``compute()`` gathers all
ranks' samples exactly once before evaluating, and ``merge_state`` combines separately updated
objects.

Values that the textbook formulas leave undefined get their "no information" value instead of NaN,
so that a degenerate validation set (a tiny debug run, a collapsed model) never stops a run or
poisons a checkpoint monitor:

- precision, recall and F1 of a class with a zero denominator are 0 (sklearn's ``zero_division=0``);
  F1 macro averages over the classes that occur in the labels or the predictions (sklearn's
  default label set), F1 weighted weights by label support;
- Cohen's kappa and Krippendorff's alpha are 0 when chance agreement is total, i.e. labels and
  predictions all name one and the same class (both formulas divide 0 by 0 there);
- AUROC averages one-vs-rest over the classes with at least one positive and one negative label,
  AUPRC over the classes with at least one positive label (the others have no defined curve);
  with no such class AUROC is 0.5, chance level;
- PCC is 0 when the labels or the predictions are constant; CCC follows its formula (0 when either
  side is constant, since the covariance is then 0) and is 0 when its denominator is 0 (labels and
  predictions one identical constant);
- with no samples at all every metric is NaN: there is nothing to report.
"""

import math
from collections.abc import Sequence

import krippendorff
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

CLASSIFICATION_KEYS = (
    "acc",
    "f1_macro",
    "f1_weighted",
    "kappa",
    "krippendorff_alpha",
    "auroc",
    "auprc",
)
REGRESSION_KEYS = ("rmse", "pcc", "sagr", "ccc")


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """Divide elementwise, giving 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, 1), 0.0)


def _nan(device: torch.device) -> Tensor:
    """The value of every metric before any sample: there is nothing to report."""
    return torch.tensor(math.nan, dtype=torch.float64, device=device)


def _confusion_matrix(expression: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """Count matrix [true, predicted] in float64, exact for any realistic sample count."""
    flat = expression.long() * num_classes + pred.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).double()


def _per_class_scores(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1, support and prediction count per class, from a confusion matrix."""
    tp = cm.diag()
    support = cm.sum(dim=1)
    predicted = cm.sum(dim=0)
    return {
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        # 2 tp / (2 tp + fp + fn), as sklearn computes it: equal to 2PR / (P + R) wherever that is
        # defined, and 0 (not 0/0) for a class with no true positives.
        "f1": _safe_div(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
    }


def _averages(scores: dict[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """Macro (over classes seen in labels or predictions, sklearn's label set) and
    support-weighted averages of one per-class score."""
    seen = (scores["support"] + scores["predicted"]) > 0
    weighted = (scores[name] * scores["support"]).sum() / scores["support"].sum()
    return scores[name][seen].mean(), weighted


def _kappa(cm: Tensor) -> Tensor:
    """Cohen's unweighted kappa in integer-valued arithmetic, so total chance agreement is exact."""
    n = cm.sum()
    chance = (cm.sum(dim=1) * cm.sum(dim=0)).sum()
    return _safe_div(n * cm.diag().sum() - chance, n * n - chance)


def _krippendorff_alpha(expression: Tensor, pred: Tensor) -> float:
    """Nominal alpha with label and prediction as the two coders.

    The package refuses data with a single value (its expected disagreement is 0); that is total
    chance agreement, reported as 0 like kappa.
    """
    data = torch.stack([expression, pred]).cpu().numpy()
    if np.unique(data).size < 2:
        return 0.0
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def _binary_auroc_and_ap(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Tie-aware AUROC (Mann-Whitney) and average precision (sklearn's step sum), in float64.

    Written here because torchmetrics' curves run in float32, and its MulticlassAUROC counts a
    class without positives as 0 (with a warning) in the macro average. Both scores are sums
    over the distinct score values, so tied scores are one threshold, as in sklearn.
    """
    ascending, order = torch.sort(scores)
    _, count = torch.unique_consecutive(ascending, return_counts=True)
    group_end = count.cumsum(0) - 1
    pos_up_to_end = positive[order].double().cumsum(0)[group_end]
    pos = torch.diff(pos_up_to_end, prepend=pos_up_to_end.new_zeros(1))
    count = count.double()
    n_pos, n_neg = pos.sum(), count.sum() - pos.sum()
    mid_rank = count.cumsum(0) - (count - 1) / 2
    auroc = ((pos * mid_rank).sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    tp_from_top, all_from_top = pos.flip(0).cumsum(0), count.flip(0).cumsum(0)
    ap = (pos.flip(0) * tp_from_top / all_from_top).sum() / n_pos
    return auroc, ap


def _one_vs_rest_macro(probs: Tensor, expression: Tensor) -> tuple[Tensor, Tensor]:
    """Macro AUROC and AUPRC over the classes whose one-vs-rest curve is defined.

    sklearn raises for a class without positives (AUROC, AUPRC) or negatives (AUROC); averaging
    over the classes where the curve exists keeps one rare class from hiding the rest.
    """
    aurocs, auprcs = [], []
    for k in range(probs.shape[1]):
        positive = expression == k
        n_positive = int(positive.sum())
        if n_positive == 0:
            continue
        auroc, ap = _binary_auroc_and_ap(probs[:, k], positive)
        auprcs.append(ap)
        if n_positive < expression.numel():
            aurocs.append(auroc)
    auroc = torch.stack(aurocs).mean() if aurocs else probs.new_tensor(0.5)
    return auroc, torch.stack(auprcs).mean()


class ExpressionMetrics(Metric):
    """Classification metrics over all samples seen since the last reset.

    Keeps every sample (cat states) because AUROC, AUPRC and Krippendorff's alpha need them; at
    AffectNet's sizes (<60k samples x 8 classes) that is a few MB. All states are 1-D float64 (exact
    for the integer codes) so that the empty placeholder torchmetrics gathers from a rank that saw
    no samples has their shape and, through ``dtype`` below, their dtype.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("expression", default=[], dist_reduce_fx="cat")
        self.add_state("pred", default=[], dist_reduce_fx="cat")
        self.add_state("probs", default=[], dist_reduce_fx="cat")

    @property
    def dtype(self) -> torch.dtype:
        """Always float64, the dtype of the states.

        torchmetrics only uses it to build an idle rank's placeholder, and resets the stored one to
        float32 on every ``.to(device)``; a placeholder of another dtype than the other ranks'
        states makes the gather fail.
        """
        return torch.float64

    def update(self, logits: Tensor, expression: Tensor) -> None:
        """Store labels, argmax predictions and softmax probabilities of one batch.

        The prediction is the argmax of the logits, not of the probabilities, because softmax can
        round two distinct logits to equal probabilities.
        """
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be [N, {self.num_classes}], got {list(logits.shape)}")
        if expression.shape != logits.shape[:1]:
            raise ValueError(
                f"expression must be [{logits.shape[0]}], got {list(expression.shape)}"
            )
        if ((expression < 0) | (expression >= self.num_classes)).any():
            raise ValueError(
                f"expression codes must lie in 0..{self.num_classes - 1}; filter out AffectNet's "
                "codes 8-10 (None, Uncertain, No-Face) before evaluating"
            )
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        self.expression.append(expression.double())
        self.pred.append(logits.argmax(dim=1).double())
        self.probs.append(logits.softmax(dim=1).double().flatten())

    def compute(self) -> dict[str, Tensor]:
        """Evaluate the suite on every sample gathered from every rank."""
        if len(self.expression) == 0:
            return {key: _nan(self.device) for key in self._keys()}
        expression = dim_zero_cat(self.expression).long()
        pred = dim_zero_cat(self.pred).long()
        probs = dim_zero_cat(self.probs).view(-1, self.num_classes)
        cm = _confusion_matrix(expression, pred, self.num_classes)
        scores = _per_class_scores(cm)
        f1_macro, f1_weighted = _averages(scores, "f1")
        auroc, auprc = _one_vs_rest_macro(probs, expression)
        result = {
            "acc": cm.diag().sum() / cm.sum(),
            "f1_macro": f1_macro,
            "f1_weighted": f1_weighted,
            "kappa": _kappa(cm),
            "krippendorff_alpha": cm.new_tensor(_krippendorff_alpha(expression, pred)),
            "auroc": auroc,
            "auprc": auprc,
        }
        for name in ("precision", "recall", "f1"):
            for k in range(self.num_classes):
                result[f"{name}_{k}"] = scores[name][k]
        return result

    def _keys(self) -> list[str]:
        per_class = [
            f"{n}_{k}" for n in ("precision", "recall", "f1") for k in range(self.num_classes)
        ]
        return [*CLASSIFICATION_KEYS, *per_class]


class AffectDimensionMetrics(Metric):
    """RMSE, PCC, SAGR and CCC of one continuous dimension (valence or arousal).

    Written instead of torchmetrics' PearsonCorrCoef / ConcordanceCorrCoef because those keep
    their moments in the input dtype (float32 here) and ConcordanceCorrCoef uses unbiased (n - 1)
    variances where docs/metrics.md defines CCC with population moments. Plain float64 sums are
    exact to well below 1e-6 for values in [-1, 1] and reduce across ranks by addition; the min/max
    states detect a constant series exactly, which the rounded sums cannot.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    _SUMS = ("n", "sum_y", "sum_p", "sum_yy", "sum_pp", "sum_yp", "sum_sq_err", "sign_agree")

    def __init__(self) -> None:
        super().__init__()
        for name in self._SUMS:
            self.add_state(
                name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )
        for side in ("y", "p"):
            inf = torch.tensor(math.inf, dtype=torch.float64)
            self.add_state(f"min_{side}", default=inf, dist_reduce_fx="min")
            self.add_state(f"max_{side}", default=-inf, dist_reduce_fx="max")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate the sums of one batch of 1-D predictions and labels."""
        if pred.shape != target.shape or pred.ndim != 1:
            raise ValueError(
                f"pred and target must be 1-D of equal length, got {list(pred.shape)} and "
                f"{list(target.shape)}"
            )
        y, p = target.double(), pred.double()
        sums = {
            "n": y.numel(),
            "sum_y": y.sum(),
            "sum_p": p.sum(),
            "sum_yy": (y * y).sum(),
            "sum_pp": (p * p).sum(),
            "sum_yp": (y * p).sum(),
            "sum_sq_err": ((y - p) ** 2).sum(),
            "sign_agree": (torch.sign(y) == torch.sign(p)).sum(),
        }
        # Rebinding through .double() keeps float64 even after Lightning's true-half precision
        # has cast the module, states included, with .to(bfloat16): a bf16 count stops at 256.
        for name, value in sums.items():
            setattr(self, name, getattr(self, name).double() + value)
        if y.numel():
            for side, values in (("y", y), ("p", p)):
                low, high = f"min_{side}", f"max_{side}"
                setattr(self, low, torch.minimum(getattr(self, low).double(), values.min()))
                setattr(self, high, torch.maximum(getattr(self, high).double(), values.max()))

    def compute(self) -> dict[str, Tensor]:
        """Population moments from the sums, then the four metrics."""
        n = self.n
        if n == 0:
            return {key: _nan(self.device) for key in REGRESSION_KEYS}
        mean_y, mean_p = self.sum_y / n, self.sum_p / n
        y_constant = self.min_y == self.max_y
        p_constant = self.min_p == self.max_p
        zero = torch.zeros_like(mean_y)
        var_y = torch.where(y_constant, zero, (self.sum_yy / n - mean_y**2).clamp(min=0))
        var_p = torch.where(p_constant, zero, (self.sum_pp / n - mean_p**2).clamp(min=0))
        cov = torch.where(y_constant | p_constant, zero, self.sum_yp / n - mean_y * mean_p)
        pcc = _safe_div(cov, (var_y * var_p).sqrt()).clamp(-1.0, 1.0)
        ccc = _safe_div(2 * cov, var_y + var_p + (mean_y - mean_p) ** 2)
        return {
            "rmse": (self.sum_sq_err / n).sqrt(),
            "pcc": pcc,
            "sagr": self.sign_agree / n,
            "ccc": ccc,
        }


class MultiTaskMetrics(nn.Module):
    """The full suite for one evaluation stage (validation or test) of the multi-task model.

    An ``nn.Module`` of torchmetrics children, so ``.to(device)`` and Lightning move the states and
    each child's ``compute()`` syncs across DDP ranks. The states are not persistent: checkpoints
    never carry half an epoch of metric state.
    """

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        self.expression = ExpressionMetrics(num_classes)
        self.valence = AffectDimensionMetrics()
        self.arousal = AffectDimensionMetrics()

    def update(
        self, logits: Tensor, va_pred: Tensor, expression: Tensor, va_target: Tensor
    ) -> None:
        """Add one batch: raw logits [N, C], (valence, arousal) pairs [N, 2], class codes [N]."""
        for name, va in (("va_pred", va_pred), ("va_target", va_target)):
            if va.shape != (logits.shape[0], 2):
                raise ValueError(
                    f"{name} must be [{logits.shape[0]}, 2] (valence, arousal), "
                    f"not {list(va.shape)}"
                )
        self.expression.update(logits, expression)
        self.valence.update(va_pred[:, 0], va_target[:, 0])
        self.arousal.update(va_pred[:, 1], va_target[:, 1])

    def compute(self) -> dict[str, Tensor]:
        """Scalars named as in metrics.json (docs/run-directory.md), then ``precision_<k>``,
        ``recall_<k>``, ``f1_<k>``."""
        result = self.expression.compute()
        per_class = {k: result.pop(k) for k in list(result) if k not in CLASSIFICATION_KEYS}
        for dimension in ("valence", "arousal"):
            for key, value in getattr(self, dimension).compute().items():
                result[f"{dimension}_{key}"] = value
        return result | per_class

    def reset(self) -> None:
        """Forget all samples; call after each stage's ``compute()``."""
        self.expression.reset()
        self.valence.reset()
        self.arousal.reset()


def per_class_report(
    expression: Tensor | np.ndarray | Sequence[int],
    pred: Tensor | np.ndarray | Sequence[int],
    class_names: Sequence[str],
) -> list[dict[str, str | float | int]]:
    """Rows of a classification report (one per class, then macro and weighted averages).

    Built from the same code as ``MultiTaskMetrics``, so the report's numbers and metrics.json
    cannot disagree, even on the edge cases above. Columns: class, precision, recall, f1, support.
    """
    cm = _confusion_matrix(torch.as_tensor(expression), torch.as_tensor(pred), len(class_names))
    scores = _per_class_scores(cm)
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
    averages = {name: _averages(scores, name) for name in ("precision", "recall", "f1")}
    for i, label in enumerate(("macro avg", "weighted avg")):
        row: dict[str, str | float | int] = {"class": label}
        row.update({name: float(pair[i]) for name, pair in averages.items()})
        row["support"] = int(scores["support"].sum())
        rows.append(row)
    return rows
