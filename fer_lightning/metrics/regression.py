"""Valence and arousal scores from float64 moment sums, batched over resamples.

Written instead of torchmetrics' PearsonCorrCoef / ConcordanceCorrCoef because those keep their
moments in the input dtype (float32 here) and ConcordanceCorrCoef uses unbiased (n - 1)
variances where docs/metrics.md defines CCC with population moments. Plain float64 sums are exact
to well below 1e-6 for values in [-1, 1] and reduce across ranks by addition. Undefined values:
PCC is 0 when the labels or the predictions are constant; CCC and ICC follow their formulas (0
when either side is constant, since the covariance is then 0) and are 0 when their denominator is
0 (labels and predictions one identical constant). A constant side is known exactly, from its
minimum and maximum, which the rounded sums cannot tell.

A NaN label means "not annotated" (docs/data.md): the sample is left out of that dimension's
sums, by a 0/1 weight rather than by indexing, so an update never waits on the device.
"""

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from fer_lightning.metrics.common import safe_div

REGRESSION_KEYS = ("rmse", "mae", "pcc", "sagr", "ccc", "icc")
# The sums behind every score: what a resample reweights and DDP adds up.
SUMS = (
    "n",
    "sum_y",
    "sum_p",
    "sum_yy",
    "sum_pp",
    "sum_yp",
    "sum_sq_err",
    "sum_abs_err",
    "sign_agree",
)


def sample_terms(pred: Tensor, target: Tensor) -> Tensor:
    """Each sample's contribution [N, len(SUMS)] to the sums, in float64; all 0 for a sample
    without a label (NaN)."""
    y, p = target.double(), pred.double()
    labelled = torch.isfinite(y)
    y = torch.where(labelled, y, 0.0)
    terms = torch.stack(
        [
            torch.ones_like(y),
            y,
            p,
            y * y,
            p * p,
            y * p,
            (y - p) ** 2,
            (y - p).abs(),
            (torch.sign(y) == torch.sign(p)).double(),
        ],
        dim=-1,
    )
    return terms * labelled.double()[..., None]


def dimension_scores(sums: Tensor, y_constant: Tensor, p_constant: Tensor) -> dict[str, Tensor]:
    """The REGRESSION_KEYS [B] from sums [B, len(SUMS)] and whether each side is constant [B].

    ICC(3,1) with label and prediction as the two raters, `(MS_R - MS_E) / (MS_R + MS_E)` of the
    two-way ANOVA (Shrout & Fleiss 1979), is `2 cov / (var_t + var_v)`: the n - 1 of both mean
    squares cancel, so the population moments serve it as they serve CCC.
    """
    n, sum_y, sum_p, sum_yy, sum_pp, sum_yp, sum_sq_err, sum_abs_err, sign_agree = sums.unbind(-1)
    mean_y, mean_p = sum_y / n, sum_p / n
    zero = torch.zeros_like(mean_y)
    var_y = torch.where(y_constant, zero, (sum_yy / n - mean_y**2).clamp(min=0))
    var_p = torch.where(p_constant, zero, (sum_pp / n - mean_p**2).clamp(min=0))
    cov = torch.where(y_constant | p_constant, zero, sum_yp / n - mean_y * mean_p)
    return {
        "rmse": (sum_sq_err / n).sqrt(),
        "mae": sum_abs_err / n,
        "pcc": safe_div(cov, (var_y * var_p).sqrt()).clamp(-1.0, 1.0),
        "sagr": sign_agree / n,
        "ccc": safe_div(2 * cov, var_y + var_p + (mean_y - mean_p) ** 2),
        "icc": safe_div(2 * cov, var_y + var_p),
    }


class AffectDimensionMetrics(Metric):
    """RMSE, MAE, PCC, SAGR, CCC and ICC of one continuous dimension (valence or arousal).

    Sum states reduce across ranks by addition, the min/max states by min and max.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in SUMS:
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
        batch = sample_terms(pred, target).sum(dim=0)
        # Rebinding through .double() keeps float64 even after Lightning's true-half precision
        # has cast the module, states included, with .to(bfloat16): a bf16 count stops at 256.
        for name, value in zip(SUMS, batch, strict=True):
            setattr(self, name, getattr(self, name).double() + value)
        if target.numel():
            labelled = torch.isfinite(target)
            for side, values in (("y", target.double()), ("p", pred.double())):
                low, high = f"min_{side}", f"max_{side}"
                lowest = torch.where(labelled, values, math.inf).min()
                highest = torch.where(labelled, values, -math.inf).max()
                setattr(self, low, torch.minimum(getattr(self, low).double(), lowest))
                setattr(self, high, torch.maximum(getattr(self, high).double(), highest))

    def compute(self) -> dict[str, Tensor]:
        """The scores of the labelled samples seen, each a 0-dim tensor; none (an empty dict)
        without a labelled sample: there is nothing to report."""
        if self.n == 0:
            return {}
        sums = torch.stack([getattr(self, name).double() for name in SUMS])[None]
        scores = dimension_scores(
            sums, (self.min_y == self.max_y)[None], (self.min_p == self.max_p)[None]
        )
        return {key: value[0] for key, value in scores.items()}
