"""Expected calibration error over equal-width bins of the top probability (docs/metrics.md).

A sample's confidence is its largest class probability, and it is correct when the predicted
class is the true one. Bin b holds the confidences in `(edge_b, edge_b+1]` (the first one also
holds 0), as Guo et al. 2017 bin them; ECE is `sum_b n_b / N * |acc_b - conf_b|`.
"""

import numpy as np
import torch
from torch import Tensor

from fer_lightning.metrics.common import weighted_counts

ECE_BINS = 15
BIN_EDGES = np.linspace(0.0, 1.0, ECE_BINS + 1)


def confidence_bins(probs: Tensor) -> tuple[Tensor, Tensor]:
    """Each sample's confidence (top probability) [N] and its bin 0..ECE_BINS-1 [N]."""
    confidence = probs.double().max(dim=-1).values
    edges = torch.from_numpy(BIN_EDGES).to(confidence.device)
    return confidence, (torch.bucketize(confidence, edges, right=False) - 1).clamp(min=0)


def calibration_sums(probs: Tensor, correct: Tensor, weights: Tensor) -> Tensor:
    """Per resample and bin, [B, 3, ECE_BINS]: sample count, sum of confidences, correct count."""
    confidence, bins = confidence_bins(probs)
    return torch.stack(
        [
            weighted_counts(bins, ECE_BINS, weights),
            weighted_counts(bins, ECE_BINS, weights, confidence),
            weighted_counts(bins, ECE_BINS, weights, correct),
        ],
        dim=1,
    )


def expected_calibration_error(sums: Tensor) -> Tensor:
    """ECE [B] from `calibration_sums`: per bin `|correct_b - conf_b| / N`."""
    count, confidence, correct = sums.unbind(dim=1)
    return (correct - confidence).abs().sum(dim=-1) / count.sum(dim=-1)
