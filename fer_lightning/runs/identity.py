"""When a rerun is the same experiment as the run whose checkpoint it continues (docs/resuming.md).

The run's own config is the one stored in its checkpoint (`fer_config`, resolved). A rerun may
differ from it only in settings that cannot change what is trained, tested or reported; anything
else mixed with the restored weights, optimizer and split would give results of no experiment
(a new learning rate with the old optimizer state, a new seed with the old split's samples).

A key the run's config lacks because it was added to the configs after the run was made is no
change while the rerun leaves it at its default: the default of its ``_target_``'s parameter,
which is what the run was made with (``data.format`` is ``affectnet`` for runs made before the
data layer read other layouts).
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from fer_lightning.errors import ConfigError

# The settings a rerun may change: a dotted key covers itself and every key under it. They decide
# where files go, what is logged or shown, how fast batches load and how often checkpoints are
# saved; `trainer.accelerator` moves a run between CPU and GPU (the precision, which changes the
# numbers, is compared). Everything else is the experiment, `trainer.devices` included (it
# changes the global batch and each rank's shard).
FREE_KEYS = (
    "resume",
    "ckpt_path",
    "test",
    "train",
    "paths",
    "hydra",
    "logger",
    "checkpoint",
    "callbacks.fault_tolerance.every_n_steps",
    "callbacks.fault_tolerance.every_minutes",
    "callbacks.fault_tolerance.dirpath",
    "callbacks.model_checkpoint.dirpath",
    "callbacks.progress_bar",
    "callbacks.lr_monitor",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "trainer.benchmark",
    "module.channels_last",
    "module.cpu_channels_last",
    "module.compile",
    "data.num_workers",
    "data.loader",
    "data.pin_memory",
    "data.persistent_workers",
    "data.prefetch_factor",
    "data.pinned_memory_mb",
    "data.check_workers",
    "data.cache_dir",
    "data.rebuild_index",
    "data.cache",
    "data.augment_on",
)
# May be raised to train a finished run further, never lowered. Values derived from it (the
# cosine schedule's T_max) are compared as the run resolved them: the restored scheduler keeps them.
RAISABLE = "trainer.max_epochs"
_UNSET = object()
_SHOWN = 8  # changes named in the message; the rest are counted


def _free(key: str) -> bool:
    return any(key == free or key.startswith(f"{free}.") for free in FREE_KEYS)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (lists are leaves); an empty mapping is a leaf too."""
    if not isinstance(node, Mapping) or not node:
        return {prefix.rstrip("."): node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def _default(tree: Mapping[str, Any], key: str) -> Any:
    """The default of the parameter ``key`` names when its node has a ``_target_`` taking it, else
    `_UNSET`."""
    *path, name = key.split(".")
    node: Any = tree
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    if not path or not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str):
        return _UNSET
    try:
        parameter = inspect.signature(get_object(node["_target_"])).parameters.get(name)
    except (ImportError, AttributeError, ValueError, TypeError):
        return _UNSET
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return _UNSET
    return parameter.default


def _resolved(cfg: DictConfig, saved_epochs: Any) -> dict[str, Any]:
    """`cfg` as plain values; a raised `trainer.max_epochs` resolved as the run's, so that only
    the values the rerun may not change are compared."""
    wanted = OmegaConf.select(cfg, RAISABLE)
    if isinstance(saved_epochs, int) and isinstance(wanted, int) and wanted > saved_epochs:
        cfg = copy.deepcopy(cfg)
        OmegaConf.update(cfg, RAISABLE, saved_epochs)
    return OmegaConf.to_container(cfg, resolve=True)


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:57]}..."


def experiment_changes(saved: Mapping[str, Any], cfg: DictConfig) -> list[str]:
    """`key old -> new` for each difference between the run's config and `cfg` that changes the
    experiment. A node whose `_target_` changed (optimizer=sgd) is one change, not one per key."""
    old = _flat(saved)
    tree = _resolved(cfg, old.get(RAISABLE))
    new = _flat(tree)
    added = [key for key in new if key not in old and new[key] != _default(tree, key)]
    changed = [
        key
        for key in [*old, *added]
        if not _free(key) and old.get(key, _UNSET) != new.get(key, _UNSET)
    ]
    replaced = {key.removesuffix("._target_") for key in changed if key.endswith("._target_")}
    kept = [
        key
        for key in changed
        if key.endswith("._target_")
        or not any(key == node or key.startswith(f"{node}.") for node in replaced)
    ]
    return [
        f"{key} {_show(old.get(key, _UNSET))} -> {_show(new.get(key, _UNSET))}"
        + (" (may only be raised)" if key == RAISABLE else "")
        for key in kept
    ]


def require_same_experiment(
    checkpoint: Mapping[str, Any], cfg: DictConfig, path: str | Path, explicit: bool = False
) -> None:
    """Refuses, in one line naming the changes, to continue `checkpoint` with a config of another
    experiment. `explicit`: the checkpoint was given as `ckpt_path`, not found in the run
    directory."""
    changes = experiment_changes(checkpoint["fer_config"], cfg)
    if not changes:
        return
    listed = ", ".join(changes[:_SHOWN])
    if len(changes) > _SHOWN:
        listed += f" and {len(changes) - _SHOWN} more"
    if explicit:
        raise ConfigError(
            f"ckpt_path={path} is a checkpoint of another experiment ({listed}); ckpt_path "
            f"continues only the same experiment (docs/resuming.md): init_from={path} starts a "
            "new run from its weights"
        )
    run_dir = Path(path).parent.parent
    raise ConfigError(
        f"this command is another experiment than the run in {run_dir} ({listed}): rerun with "
        "the run's values to continue it (docs/resuming.md), resume=false to start over there, "
        "or another hydra.run.dir for a new run"
    )
