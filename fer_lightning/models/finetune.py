"""What fine-tuning changes about a network's parameters: which train, at which learning rate.

Used by `MultiTaskModule` (docs/configuration.md, the `module.*` fine-tuning keys): the backbone
frozen for the first epochs, its learning rate scaled, or decayed layer by layer where timm
defines the backbone's layer groups (`group_matcher`), and a summary of what trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from timm.models import group_parameters
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.values import is_int, is_number

BACKBONE = "backbone"


def check_finetune_options(
    freeze_backbone_epochs: int, backbone_lr_scale: float, layer_decay: float | None
) -> None:
    if not is_int(freeze_backbone_epochs) or freeze_backbone_epochs < 0:
        raise ConfigError(
            f"module.freeze_backbone_epochs must be an integer >= 0, got {freeze_backbone_epochs!r}"
        )
    if not (
        is_number(backbone_lr_scale) and math.isfinite(backbone_lr_scale) and backbone_lr_scale >= 0
    ):
        raise ConfigError(
            f"module.backbone_lr_scale must be a finite number >= 0, got {backbone_lr_scale!r}"
        )
    if layer_decay is not None and not (is_number(layer_decay) and 0 < layer_decay <= 1):
        raise ConfigError(f"module.layer_decay must be in (0, 1] or null, got {layer_decay!r}")


def set_backbone_trainable(net: nn.Module, trainable: bool) -> bool:
    """Freezes or unfreezes the backbone's parameters; True if that changed anything.

    Frozen parameters get no gradients, so no optimizer moves them (weight decay included); the
    backbone stays in train mode, so its BatchNorm statistics still follow the data.
    """
    params = list(getattr(net, BACKBONE).parameters())
    changed = any(p.requires_grad != trainable for p in params)
    for p in params:
        p.requires_grad_(trainable)
    return changed


def parameter_summary(net: nn.Module) -> str:
    """One line: the backbone's and the heads' parameter counts, and how many of each train."""
    parts = {BACKBONE: [0, 0], "heads": [0, 0]}
    for name, p in net.named_parameters():
        counts = parts[BACKBONE if name.startswith(f"{BACKBONE}.") else "heads"]
        counts[0] += p.numel()
        counts[1] += p.numel() if p.requires_grad else 0
    return ", ".join(
        f"{part} {total:,} parameters ({trained:,} trainable)"
        for part, (total, trained) in parts.items()
    )


def param_groups(
    net: nn.Module,
    extra: Sequence[nn.Parameter],
    backbone_lr_scale: float = 1.0,
    layer_decay: float | None = None,
) -> list[Any]:
    """The optimizer's parameters: one plain list unless the backbone's learning rate differs.

    Otherwise groups with an `lr_scale` (the module multiplies each group's lr by it): the heads
    and `extra` (the loss's parameters) at 1; the backbone at `backbone_lr_scale`, and with
    `layer_decay` its layer i of L at `backbone_lr_scale * layer_decay ** (L - i)` (timm's
    layer-wise decay, the heads taking the place of timm's classifier).
    """
    backbone = getattr(net, BACKBONE)
    heads = [p for name, p in net.named_parameters() if not name.startswith(f"{BACKBONE}.")]
    if backbone_lr_scale == 1 and layer_decay is None:
        return [*net.parameters(), *extra]
    groups = [{"params": [*heads, *extra], "lr_scale": 1.0, "name": "heads"}]
    layers = {0: list(backbone.parameters())} if layer_decay is None else _layers(backbone, net)
    count = max(layers) + 1
    for layer, params in sorted(layers.items()):
        decay = 1.0 if layer_decay is None else layer_decay ** (count - layer)
        name = BACKBONE if layer_decay is None else f"{BACKBONE}.{layer}"
        groups.append({"params": params, "lr_scale": backbone_lr_scale * decay, "name": name})
    return groups


def _layers(backbone: nn.Module, net: nn.Module) -> dict[int, list[nn.Parameter]]:
    if not hasattr(backbone, "group_matcher"):
        raise ConfigError(
            f"module.layer_decay needs a backbone with layer groups (a timm model: model=timm), "
            f"and {getattr(net, 'name', 'this model')} has none: use module.backbone_lr_scale"
        )
    layer_of = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    last = max(layer_of.values())
    layers: dict[int, list[nn.Parameter]] = {}
    for name, p in backbone.named_parameters():
        layers.setdefault(layer_of.get(name, last), []).append(p)
    return layers
