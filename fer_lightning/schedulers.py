"""Learning-rate schedules of the project's own, beside torch's (conf/scheduler/).

A schedule class with `interval = "step"` is stepped after every optimizer step, and
`MultiTaskModule` builds it with the run's `total_steps` and `max_epochs` (so warmup can be given
in epochs); torch's schedules step once per epoch.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fer_lightning.errors import ConfigError


class WarmupCosine(LRScheduler):
    """Linear warmup from lr / W to lr over the first W steps, then cosine down to `eta_min`.

    W is `warmup_epochs` worth of optimizer steps. A closed form of the step count, so a resumed
    run (which restores the count) continues on exactly the same curve.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        max_epochs: int,
        warmup_epochs: float = 1.0,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_epochs < 0 or eta_min < 0:
            raise ConfigError(
                f"scheduler.warmup_epochs and scheduler.eta_min must be >= 0, got "
                f"{warmup_epochs} and {eta_min}"
            )
        self.total_steps = max(int(total_steps), 1)
        per_epoch = self.total_steps / max(int(max_epochs), 1)
        self.warmup_steps = min(round(warmup_epochs * per_epoch), self.total_steps)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The fraction of the full cosine span at optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            return [base * self.factor(step) for base in self.base_lrs]
        return [self.eta_min + (base - self.eta_min) * self.factor(step) for base in self.base_lrs]
