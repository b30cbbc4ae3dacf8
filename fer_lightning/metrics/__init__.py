"""The AffectNet metric suite (docs/metrics.md): exact under DDP, and resampled for intervals.

Every formula is written once, over a leading batch dimension of sample weights, so that the
torchmetrics objects (all samples with weight 1, gathered from every rank) and the bootstrap
(resampled weights, docs/metrics.md#intervals) compute the very same numbers:

- `classification`: the scores of a confusion matrix (accuracy, F1, kappa, alpha, ...);
- `ranking`: one-vs-rest AUROC and AUPRC;
- `calibration`: the expected calibration error and its reliability bins;
- `regression`: the valence/arousal scores from float64 moment sums;
- `expression`, `suite`: the torchmetrics objects the LightningModule updates;
- `bootstrap`, `paired`: percentile intervals per run and paired differences between runs.

Values that the textbook formulas leave undefined get their "no information" value instead of NaN,
so that a degenerate validation set (a tiny debug run, a collapsed model) never stops a run or
poisons a checkpoint monitor; with no samples at all every expression metric is NaN (valence and
arousal without labelled samples are left out). The rules are listed in
docs/metrics.md, next to each definition.
"""
