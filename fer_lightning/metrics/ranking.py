"""One-vs-rest AUROC and AUPRC in float64, batched over resamples.

Written here because torchmetrics' curves run in float32, and its MulticlassAUROC counts a class
without positives as 0 (with a warning) in the macro average. A class's curve is averaged where it
is defined: AUROC over the classes with at least one positive and one negative label, AUPRC over
the classes with at least one positive label; with no such class AUROC is 0.5, chance level.
"""

import torch
from torch import Tensor

from fer_lightning.metrics.common import safe_div


def _exclusive_cumsum(rows: Tensor) -> Tensor:
    """Running sums [G, B] of the rows before each row."""
    return rows.cumsum(dim=0) - rows


def _binary_auroc_and_ap(
    scores: Tensor, positive: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Tie-aware AUROC (Mann-Whitney) and average precision (sklearn's step sum) for each column
    of `weights` [N, B], with the weighted counts of positives and negatives, each [B].

    Each positive ranks above the negatives scored below it and half of those tied with it; its
    precision is that of the threshold at its score, all samples scored at least as high counted
    (tied scores are one threshold, as in sklearn). Both only need the negatives' weight between
    consecutive distinct positive scores, so one pass sums every sample's weight into a row of
    its own kind (a negative's gap, or ties, or a positive's score) and the running sums run over
    the positives' distinct scores only. The searches are shared by every resample.
    """
    thresholds, pos_row = torch.unique(scores[positive], sorted=True, return_inverse=True)
    m = len(thresholds)
    # Gap g holds the negatives scored in (thresholds[g-1], thresholds[g]]: rows 0..m of the
    # strict ones, m+1..2m of those tied with thresholds[g], then one row per positive score.
    gap = torch.searchsorted(thresholds, scores, side="left")
    tied = thresholds[gap.clamp(max=m - 1)] == scores
    rows = torch.where(tied, gap + m + 1, gap)
    rows[positive] = pos_row + 2 * m + 1
    sums = weights.new_zeros(3 * m + 1, weights.shape[1]).index_add_(0, rows, weights)
    strict, neg_tied, pos_at = sums[:m], sums[m + 1 : 2 * m + 1], sums[2 * m + 1 :]
    n_pos = pos_at.sum(dim=0)
    n_neg = sums[: 2 * m + 1].sum(dim=0)
    neg_below = strict.cumsum(dim=0) + _exclusive_cumsum(neg_tied)
    auroc = (pos_at * (neg_below + neg_tied / 2)).sum(dim=0) / (n_pos * n_neg)
    tp_at_or_above = n_pos - _exclusive_cumsum(pos_at)
    all_at_or_above = tp_at_or_above + n_neg - neg_below
    ap = (pos_at * safe_div(tp_at_or_above, all_at_or_above)).sum(dim=0) / n_pos
    return auroc, ap, n_pos, n_neg


def one_vs_rest_macro(probs: Tensor, expression: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Macro AUROC and AUPRC [B] over the classes whose one-vs-rest curve is defined.

    sklearn raises for a class without positives (AUROC, AUPRC) or negatives (AUROC); averaging
    over the classes where the curve exists keeps one rare class from hiding the rest.
    """
    batch = weights.shape[1]
    auroc_sum, auroc_count = weights.new_zeros(batch), weights.new_zeros(batch)
    ap_sum, ap_count = weights.new_zeros(batch), weights.new_zeros(batch)
    for k in range(probs.shape[1]):
        positive = expression == k
        if not positive.any():
            continue
        auroc, ap, n_pos, n_neg = _binary_auroc_and_ap(probs[:, k].contiguous(), positive, weights)
        has_pos, has_both = n_pos > 0, (n_pos > 0) & (n_neg > 0)
        auroc_sum += torch.where(has_both, auroc, 0.0)
        auroc_count += has_both
        ap_sum += torch.where(has_pos, ap, 0.0)
        ap_count += has_pos
    auroc = torch.where(auroc_count > 0, auroc_sum / auroc_count.clamp(min=1), 0.5)
    return auroc, ap_sum / ap_count
