"""The expression metrics as a DDP-safe torchmetrics object (docs/metrics.md)."""

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fer_lightning.metrics.calibration import calibration_sums, expected_calibration_error
from fer_lightning.metrics.classification import (
    CLASSIFICATION_KEYS,
    classification_scores,
    confusion_matrices,
    per_class_keys,
)
from fer_lightning.metrics.common import nan, unit_weights
from fer_lightning.metrics.ranking import one_vs_rest_macro


def probabilities(logits: Tensor) -> Tensor:
    """The softmax over the classes [N, C], each row's a function of its logits' values only.

    torch's softmax sums a row's exponentials in an order set by their positions (its vector
    lanes), so samples whose logits are permutations of each other, as quantised or saturated
    outputs are, get probabilities that differ in the last bit, and AUROC and AUPRC would rank
    such ties by rounding. Summed in sorted order, equal scores stay equal.
    """
    exps = (logits - logits.amax(dim=1, keepdim=True)).exp()
    return exps / exps.sort(dim=1).values.sum(dim=1, keepdim=True)


def expression_scores(
    expression: Tensor, pred: Tensor, probs: Tensor, weights: Tensor
) -> dict[str, Tensor]:
    """Every expression metric [B] of labels, predictions and probabilities [N, C], for each row
    of sample weights [B, N] (a resample, or `unit_weights` for the samples themselves)."""
    num_classes = probs.shape[1]
    result = classification_scores(confusion_matrices(expression, pred, num_classes, weights))
    result["auroc"], result["auprc"] = one_vs_rest_macro(probs, expression, weights)
    correct = (pred == expression).double()
    result["ece"] = expected_calibration_error(calibration_sums(probs, correct, weights))
    return result


class ExpressionMetrics(Metric):
    """Classification metrics over all samples seen since the last reset.

    Keeps every sample (cat states) because AUROC and AUPRC need them; at AffectNet's sizes
    (<60k samples x 8 classes) that is a few MB. All states are 1-D float64 (exact for the integer
    codes) so that the empty placeholder torchmetrics gathers from a rank that saw no samples has
    their shape and, through ``dtype`` below, their dtype.
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
        self.probs.append(probabilities(logits).double().flatten())

    def compute(self) -> dict[str, Tensor]:
        """Evaluate the suite on every sample gathered from every rank: the scalar metrics, then
        ``precision_<k>``, ``recall_<k>``, ``f1_<k>``."""
        keys = [*CLASSIFICATION_KEYS, *per_class_keys(self.num_classes)]
        if len(self.expression) == 0:
            return {key: nan(self.device) for key in keys}
        expression = dim_zero_cat(self.expression).long()
        pred = dim_zero_cat(self.pred).long()
        probs = dim_zero_cat(self.probs).view(-1, self.num_classes)
        scores = expression_scores(
            expression, pred, probs, unit_weights(expression.numel(), probs.device)
        )
        return {key: scores[key][0] for key in keys}
