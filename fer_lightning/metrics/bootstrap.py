"""Seeded percentile-bootstrap intervals for every metric of a scored split (docs/metrics.md).

A resample is a row of sample weights (how often each sample was drawn), and every metric is
computed for a chunk of rows at once by the same batched formulas as the metric suite itself:
no Python loop over resamples. The expression metrics resample within each true class (keeping
the class counts, so every class's curve stays defined), valence and arousal resample the split
as a whole. Several runs scored on the same samples share their resamples: that pairs them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from fer_lightning.metrics.expression import expression_scores
from fer_lightning.metrics.regression import dimension_scores, sample_terms
from fer_lightning.metrics.suite import DIMENSIONS

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95
# Weights held at once, resamples x samples: 32 MB of float64, whatever the split's size.
CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Scored:
    """A split's labels and a model's outputs, as predictions.csv holds them."""

    expression: Tensor  # int64 [N]: true codes
    pred: Tensor  # int64 [N]: predicted codes
    probs: Tensor  # float64 [N, C]
    va_target: Tensor  # float64 [N, 2]: (valence, arousal) labels
    va_pred: Tensor  # float64 [N, 2]

    @property
    def size(self) -> int:
        return self.expression.numel()

    def reordered(self, order: Tensor) -> Scored:
        """The same samples in `order`."""
        return Scored(*(getattr(self, f.name)[order] for f in fields(self)))


def resample_weights(
    generator: torch.Generator,
    strata: Sequence[int],
    count: int,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """How often each sample is drawn [N, count] in `count` resamples with replacement, within
    each stratum separately, keeping its size: `strata` are the sizes of consecutive runs of
    samples (one run, [N], for no strata). Sample-major, as every batched metric takes them."""
    n = sum(strata)
    cells = torch.empty(n, count, dtype=torch.int32)
    column = torch.arange(count, dtype=torch.int32)
    start = 0
    for size in strata:
        if size == 0:
            continue
        drawn = torch.randint(size, (size, count), generator=generator, dtype=torch.int32)
        cells[start : start + size] = (drawn + start) * count + column
        start += size
    counts = torch.bincount(cells.flatten(), minlength=n * count)
    return counts.view(n, count).to(dtype)


def _constant(values: Tensor, drawn: Tensor, distinct_drawn: int) -> Tensor:
    """Whether the samples each resample draws (`drawn` [N, B], uint8) hold a single value [B]:
    known exactly, so that the regression scores treat it as constant (regression.py).

    A resample is constant only if every sample it draws shares one value, so when no value is
    held by as many samples as the fewest distinct samples a resample draws, none is; otherwise
    the lowest and the highest drawn value are looked up in the sorted values, on bytes.
    """
    if int(torch.unique(values, return_counts=True)[1].max()) < distinct_drawn:
        return torch.zeros(drawn.shape[1], dtype=torch.bool)
    ascending, order = torch.sort(values)
    drawn = drawn.index_select(0, order)
    lowest = drawn.argmax(dim=0)
    highest = len(values) - 1 - drawn.flip(0).argmax(dim=0)
    return ascending[lowest] == ascending[highest]


def replicate_scores(scored: Scored, stratified: Tensor, plain: Tensor) -> dict[str, Tensor]:
    """Every metric of metrics.json [B] for each resample: `stratified` weights [N, B] for the
    expression metrics, `plain` ones for valence and arousal (over the samples labelled with them;
    a dimension without any is left out)."""
    result = expression_scores(scored.expression, scored.pred, scored.probs, stratified)
    for d, dimension in enumerate(DIMENSIONS):
        # A dimension's scores are those of the labelled samples a resample draws (NaN: none).
        labelled = torch.isfinite(scored.va_target[:, d])
        if not labelled.any():
            continue
        target, pred = scored.va_target[labelled, d], scored.va_pred[labelled, d]
        weights = plain[labelled]
        drawn = (weights > 0).to(torch.uint8)
        distinct = int(drawn.sum(dim=0, dtype=torch.int64).min())
        sums = weights.T @ sample_terms(pred, target)
        constant = [_constant(side, drawn, distinct) for side in (target, pred)]
        scores = dimension_scores(sums, *constant)
        result.update({f"{dimension}_{key}": value for key, value in scores.items()})
    return result


def bootstrap_replicates(
    runs: Sequence[Scored], resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> list[dict[str, Tensor]]:
    """Each run's metrics [resamples] on the same seeded resamples of their common samples
    (the runs must hold the same samples, in the same order)."""
    n = runs[0].size
    # Samples of one true class next to each other, the same order for every run: the strata
    # are then consecutive, and no metric depends on the order.
    order = torch.argsort(runs[0].expression, stable=True)
    runs = [run.reordered(order) for run in runs]
    strata = torch.bincount(runs[0].expression).tolist()
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    parts: list[defaultdict[str, list[Tensor]]] = [defaultdict(list) for _ in runs]
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        # float32 counts and their running sums are exact (below 2**24) at half the traffic.
        stratified = resample_weights(generator, strata, count, torch.float32)
        plain = resample_weights(generator, [n], count)
        for run, part in zip(runs, parts, strict=True):
            for key, value in replicate_scores(run, stratified, plain).items():
                part[key].append(value)
    return [{key: torch.cat(values).double() for key, values in part.items()} for part in parts]


def percentile_interval(replicates: Tensor, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of the replicates (linear interpolation, numpy's default)."""
    tail = (1 - level) / 2
    bounds = torch.tensor([tail, 1 - tail], dtype=replicates.dtype)
    low, high = torch.nanquantile(replicates, bounds)
    return float(low), float(high)


def interval_rows(
    scored: Scored,
    values: Mapping[str, float],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict[str, float | int | str]]:
    """`metric,value,ci_low,ci_high,n` for every metric in `values` (metrics.json's, unprefixed),
    in their order: the value as reported, the interval from the resamples."""
    (replicates,) = bootstrap_replicates([scored], resamples, seed)
    rows = []
    for name, value in values.items():
        low, high = percentile_interval(replicates[name])
        rows.append(
            {"metric": name, "value": value, "ci_low": low, "ci_high": high, "n": scored.size}
        )
    return rows
