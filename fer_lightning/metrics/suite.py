"""The full metric suite of one evaluation stage of the multi-task model, and its names."""

from torch import Tensor, nn

from fer_lightning.metrics.classification import CLASSIFICATION_KEYS
from fer_lightning.metrics.expression import ExpressionMetrics
from fer_lightning.metrics.regression import REGRESSION_KEYS, AffectDimensionMetrics

DIMENSIONS = ("valence", "arousal")
# The scalar metrics of metrics.json in docs/metrics.md's order (the per-class scores follow).
SUITE = (
    *CLASSIFICATION_KEYS,
    *(f"{dimension}_{key}" for dimension in DIMENSIONS for key in REGRESSION_KEYS),
)


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
        ``recall_<k>``, ``f1_<k>``.

        A dimension no sample had a label for (valence and arousal are NaN where they were not
        annotated) is left out, not reported as NaN or 0.
        """
        result = self.expression.compute()
        per_class = {k: result.pop(k) for k in list(result) if k not in CLASSIFICATION_KEYS}
        for dimension in DIMENSIONS:
            for key, value in getattr(self, dimension).compute().items():
                result[f"{dimension}_{key}"] = value
        return result | per_class

    def reset(self) -> None:
        """Forget all samples; call after each stage's ``compute()``."""
        self.expression.reset()
        self.valence.reset()
        self.arousal.reset()
