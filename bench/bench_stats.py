"""Time of the percentile-bootstrap intervals of the whole metric suite on one core.

    python bench/bench_stats.py samples=60000 resamples=1000

Scores a simulated test split (8 classes, valence and arousal) and times `interval_rows`, the
intervals results/metrics_ci.csv holds. Target: under 10 s for 60,000 samples and 1,000
resamples on one core (bench/README.md).
"""

from __future__ import annotations

import sys
import time

import torch

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.metrics.bootstrap import Scored, interval_rows
from fer_lightning.metrics.common import unit_weights
from fer_lightning.metrics.expression import expression_scores

DEFAULTS = {"samples": 60_000, "resamples": 1000, "classes": 8, "threads": 1, "seed": 0}
TARGET_S = 10.0


def simulated(samples: int, classes: int, seed: int) -> Scored:
    """Logits that favour the true class, and correlated valence/arousal."""
    g = torch.Generator().manual_seed(seed)
    expression = torch.randint(0, classes, (samples,), generator=g)
    logits = torch.randn(samples, classes, generator=g, dtype=torch.float64)
    logits[torch.arange(samples), expression] += 1.5
    va_target = torch.rand(samples, 2, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(samples, 2, generator=g, dtype=torch.float64)
    va_pred = (0.6 * va_target + 0.3 * noise).clamp(-1, 1)
    probs = logits.softmax(dim=1).float().double()  # predictions.csv's float32 probabilities
    return Scored(expression, probs.argmax(dim=1), probs, va_target, va_pred)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_key_values(sys.argv[1:] if argv is None else argv, DEFAULTS, "samples=60000")
    torch.set_num_threads(cfg["threads"])
    scored = simulated(cfg["samples"], cfg["classes"], cfg["seed"])
    weights = unit_weights(scored.size, scored.probs.device)
    values = {
        k: float(v[0])
        for k, v in expression_scores(scored.expression, scored.pred, scored.probs, weights).items()
    }
    started = time.perf_counter()
    rows = interval_rows(scored, values, cfg["resamples"], cfg["seed"])
    seconds = time.perf_counter() - started
    acc = next(row for row in rows if row["metric"] == "acc")
    print(
        f"{cfg['resamples']} resamples of {scored.size:,} samples, {len(rows)} expression metrics"
        f" + valence/arousal, {cfg['threads']} thread(s): {seconds:.2f} s"
        f" (target < {TARGET_S:.0f} s for 60,000 x 1,000 on one core)"
    )
    print(f"acc {acc['value']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
