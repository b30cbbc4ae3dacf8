"""Reading checkpoints safely: weights and plain config only, never pickled code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import hydra
import torch
from torch import nn

from fer_lightning.errors import ConfigError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint with `weights_only=True`, so an untrusted file cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found at {path}: pass ckpt_path=PATH to a .ckpt file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    if "fer_config" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"{path} is not a fer-lightning checkpoint (no fer_config/state_dict)")
    return checkpoint


def build_net(checkpoint: dict[str, Any]) -> nn.Module:
    """Rebuilds the trained network from a checkpoint's stored config and weights."""
    model_config = dict(checkpoint["fer_config"]["model"])
    model_config["pretrained"] = False
    net = hydra.utils.instantiate(model_config)
    prefix = "net."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    net.load_state_dict(state)
    return net.eval()


def resume_checkpoint(cfg: Any, run_dir: Path) -> str | None:
    """The checkpoint a run continues from: `ckpt_path` if given, else the run's last one."""
    if cfg.get("ckpt_path"):
        load_checkpoint(cfg.ckpt_path)  # fails in one line if missing or unreadable
        return str(cfg.ckpt_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.get("resume", True) and last.is_file():
        return str(last)
    return None
