"""The shape every model shares: a backbone, an expression head and a valence/arousal head."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fer_lightning.errors import ConfigError

# No ReLU here: the original SqueezeNet head ended in one and could never predict negative valence.
VA_ACTIVATIONS = {"tanh": nn.Tanh, "linear": nn.Identity}


def make_head(in_features: int, out_features: int, hidden: int, dropout: float) -> nn.Sequential:
    """Dropout + Linear, or with `hidden` > 0 the MLP Linear-BN-ReLU-Dropout-Linear."""
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_features),
    )


class MultiTaskNet(nn.Module):
    """Images -> (expression logits [N, num_classes], valence and arousal [N, 2]).

    Inputs are RGB float images normalised with ImageNet's mean and std. With `va_activation="tanh"`
    valence and arousal are bounded to [-1, 1], the range of the labels.
    """

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        va_activation: str,
        head_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        _check_heads(num_classes, va_activation, head_hidden, dropout)
        self.name = name
        self.num_classes = num_classes
        self.backbone = backbone
        self.expression_head = make_head(feature_dim, num_classes, head_hidden, dropout)
        self.va_head = make_head(feature_dim, 2, head_hidden, dropout)
        self.va_activation = VA_ACTIVATIONS[va_activation]()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        # The heads in float32 even under mixed precision: bf16 logits change about 0.4% of the
        # predicted classes (ties go to the first class) against an fp32 evaluation.
        with full_precision(features.device.type):
            features = features.float()
            return self.expression_head(features), self.va_activation(self.va_head(features))


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off on `device_type`, where it is on (and nothing where it is not)."""
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _check_heads(num_classes: int, va_activation: str, head_hidden: int, dropout: float) -> None:
    if va_activation not in VA_ACTIVATIONS:
        raise ConfigError(
            f"unknown model.va_activation '{va_activation}': choose {' or '.join(VA_ACTIVATIONS)}"
        )
    if num_classes < 2:
        raise ConfigError(f"data.classes must be at least 2, got {num_classes}")
    if head_hidden < 0:
        raise ConfigError(f"model.head_hidden must be >= 0 (0: no hidden layer), got {head_hidden}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
