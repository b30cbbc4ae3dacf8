"""`init_from=PATH`: a new run that starts from another run's trained network (docs/resuming.md).

Unlike resuming, only the network's weights are taken: the optimizer, the scheduler, the epoch,
the history and the split are the new run's own, from the beginning.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.module import NET_PREFIX
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.stored_config import model_settings


def load_initial_weights(net: nn.Module, name: str, path: str | Path) -> None:
    """Loads the network weights of the checkpoint at `path` into `net` (a `name` network).

    A checkpoint of another architecture (another model, class count or head) is refused in one
    line rather than loaded in part: a partly pretrained network is not what was asked for.
    """
    if not Path(path).is_file():
        raise ConfigError(f"init_from={path}: no such file; pass a checkpoint of this project")
    checkpoint = load_checkpoint(path)
    try:
        saved = model_settings(checkpoint["fer_config"])["name"]
    except ConfigError as exc:
        raise ConfigError(f"init_from={path}: {exc}") from exc
    weights = {
        key.removeprefix(NET_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(NET_PREFIX)
    }
    own = net.state_dict()
    differ = sorted(
        key
        for key in own.keys() | weights.keys()
        if key not in own or key not in weights or own[key].shape != weights[key].shape
    )
    if saved != name or differ:
        detail = f"; {len(differ)} weight(s) differ, first {differ[0]}" if saved == name else ""
        raise ConfigError(
            f"init_from={path} holds a {saved} network that does not fit this run's {name}"
            f"{detail}: init_from takes a checkpoint of the same model and data.classes"
        )
    net.load_state_dict(weights)
