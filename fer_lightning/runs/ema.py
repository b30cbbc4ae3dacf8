"""An exponential moving average of a network's weights, kept beside it (`module.ema_decay`).

The average is a module of the LightningModule, so every checkpoint holds it (`ema.net.*`, with
its update count `ema.updates`) and a resumed run continues it exactly; validation and testing
score it, so the best checkpoint is the best average, and predict and export use it
(`fer_lightning.module.trained_net`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fer_lightning.errors import ConfigError


class WeightAverage(nn.Module):
    """`average = d * average + (1 - d) * weights` after every optimizer step.

    The decay warms up as in TensorFlow's ExponentialMovingAverage with `num_updates`:
    `d = min(decay, (1 + t) / (10 + t))` at the t-th update, so the average forgets the random
    heads' first values within a few steps instead of ~1 / (1 - decay). Floating-point buffers
    (BatchNorm statistics) are averaged the same way; integer ones are copied.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ConfigError(f"module.ema_decay must be in (0, 1) or null, got {decay!r}")
        self.decay = decay
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        t = self.updates.to(torch.float32)
        keep = torch.clamp((1 + t) / (10 + t), max=self.decay)
        averaged = self.net.state_dict(keep_vars=True)
        for name, value in net.state_dict(keep_vars=True).items():
            target = averaged[name]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), (1 - keep).to(target.dtype))
            else:
                target.copy_(value)
