"""Arithmetic every metric module shares."""

import math

import torch
from torch import Tensor


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """Divide elementwise, giving 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, 1), 0.0)


def nan(device: torch.device) -> Tensor:
    """The value of every metric before any sample: there is nothing to report."""
    return torch.tensor(math.nan, dtype=torch.float64, device=device)


def unit_weights(n: int, device: torch.device) -> Tensor:
    """The weights [n, 1] of the samples themselves: one "resample", the unresampled set.

    Weights are sample-major, [N, B] for B resamples: selecting and sorting samples then moves
    whole rows, and sums over samples run down contiguous columns.
    """
    return torch.ones(n, 1, dtype=torch.float64, device=device)


def weighted_counts(
    codes: Tensor, size: int, weights: Tensor, values: Tensor | None = None
) -> Tensor:
    """Per resample [B, size]: the sum of `weights` [N, B] (times `values` [N]) over the samples
    of each code 0..size-1 (`codes` [N])."""
    if values is not None:
        weights = weights * values.to(weights.dtype)[:, None]
    counts = weights.new_zeros(size, weights.shape[1]).index_add_(0, codes.long(), weights)
    return counts.T
