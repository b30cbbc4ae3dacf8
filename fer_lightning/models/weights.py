"""`model.weights=FILE`: a state dict a researcher already has, loaded into this project's network.

A file is read as tensors only (`torch.load(weights_only=True)` or safetensors), so no file can run
code. Its keys are matched to the network's (`backbone.*`, `expression_head.*`, `va_head.*`): a
project checkpoint's `net.` (or, when it has one, its weight average's `ema.net.`) prefix is
dropped, `model.weights_rename` maps prefixes (`{module.:''}`, `{classifier.:expression_head.1.}`),
and a key that names a backbone tensor without the `backbone.` prefix (a bare timm or torchvision
state dict) matches that tensor. docs/configuration.md has examples.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

from fer_lightning.errors import ConfigError
from fer_lightning.models.backbones import brief

log = logging.getLogger(__name__)

BACKBONE = "backbone."
# Where a project checkpoint keeps its weights: the weight average first (what was validated).
CHECKPOINT_PREFIXES = ("ema.net.", "net.")
# Containers other trainers wrap a state dict in (Lightning, timm's train.py, common scripts).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Below this share of the backbone's tensors, the file is of another architecture.
MIN_BACKBONE_SHARE = 0.5


@dataclass(frozen=True)
class WeightsReport:
    """How a file's tensors met the network's: names of each kind, for the log line and tests."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def line(self, path: Path) -> str:
        return (
            f"model.weights {path}: {len(self.loaded)} tensors loaded, {len(self.missing)} missing "
            f"(kept as initialised), {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} shape-mismatched"
        )


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of `path`, by key, without unpickling code."""
    if not path.is_file():
        raise ConfigError(f"model.weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(path, device="cpu")
        except (safetensors.SafetensorError, OSError) as err:
            raise ConfigError(
                f"model.weights {path} is not a safetensors file ({brief(err)})"
            ) from err
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # no object it refused: not a torch file at all
            raise ConfigError(f"model.weights {path} is not a PyTorch file ({brief(err)})") from err
        raise ConfigError(
            f"model.weights {path} holds pickled objects, not only tensors (a whole saved model?), "
            "which are never unpickled: on a machine that trusts it, save its state_dict() with "
            "torch.save or safetensors and pass that file"
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise ConfigError(f"model.weights {path} is not a PyTorch file ({brief(err)})") from err
    for key in WRAPPER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping):
        raise ConfigError(f"model.weights {path} holds no state dict (a {type(content).__name__})")
    return {k: v for k, v in content.items() if isinstance(v, Tensor)}


def rename_keys(state: Mapping[str, Tensor], rename: Mapping[str, str]) -> dict[str, Tensor]:
    """Drops a project checkpoint's prefix, then maps the first matching prefix of `rename`."""
    for prefix in CHECKPOINT_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            break
    renamed = {}
    for key, value in state.items():
        old = next((old for old in rename if key.startswith(old)), None)
        renamed[key if old is None else rename[old] + key[len(old) :]] = value
    return renamed


def match(state: Mapping[str, Tensor], net: nn.Module) -> tuple[dict[str, Tensor], WeightsReport]:
    """The tensors of `state` that fit `net`, under `net`'s names, and how the rest fared."""
    own = net.state_dict()
    selected, mismatched, unexpected = {}, [], []
    for key, value in state.items():
        name = key if key in own else BACKBONE + key
        if name not in own:
            unexpected.append(key)
        elif own[name].shape != value.shape:
            mismatched.append(name)
        else:
            selected[name] = value
    missing = [k for k in own if k not in selected]
    return selected, WeightsReport(list(selected), missing, unexpected, mismatched)


def load_weights(net: nn.Module, path: str | Path, rename: Mapping[str, str]) -> WeightsReport:
    """Loads `path` into `net` where names and shapes match, logging one line of counts.

    A file that fits less than half of the backbone's tensors is of another architecture (or needs
    `model.weights_rename`): a ConfigError, never a silent random start.
    """
    path = Path(path)
    selected, report = match(rename_keys(read_state_dict(path), dict(rename)), net)
    backbone = [k for k in net.state_dict() if k.startswith(BACKBONE)]
    share = sum(k.startswith(BACKBONE) for k in selected) / max(len(backbone), 1)
    if share < MIN_BACKBONE_SHARE:
        example = (report.unexpected + report.mismatched)[:2]
        raise ConfigError(
            f"model.weights {path} fits only {len(selected)} of the backbone's {len(backbone)} "
            f"tensors (its keys e.g. {example}, the model's e.g. {backbone[:2]}): pass a file of "
            "this architecture, or map its key prefix with model.weights_rename={OLD:NEW}"
        )
    with torch.no_grad():
        net.load_state_dict(selected, strict=False)
    log.info(report.line(path))
    return report
