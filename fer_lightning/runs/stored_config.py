"""The config a checkpoint stores, checked before anything is built from it.

A checkpoint is read with `weights_only` (docs/resuming.md), but its `fer_config` could still name
any callable in a `_target_`. So nothing read from a checkpoint reaches Hydra's `instantiate` or
an import: the network, the loss and the datamodule are rebuilt by the project's own builders,
from plain values checked against each builder's signature (known keys, values of the annotated
types), and a `_target_`, where one is stored, must be the one the project writes for that node.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.multi import MultiDataModule
from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss, UncertaintyWeightedLoss
from fer_lightning.models import MultiTaskNet, create_model
from fer_lightning.models.registry import model_names, unknown_model
from fer_lightning.values import is_int, is_number

PLAIN = (bool, int, float, str, type(None))
# Training augmentation: stored for the record, never rebuilt (testing does not augment).
NOT_REBUILT = {"data": ("augment", "augment_inplace")}
# Instructions to Hydra's instantiate, not settings (conf/data/multi.yaml has `_recursive_`).
HYDRA_KEYS = ("_target_", "_recursive_")


def _target(builder: Callable[..., Any]) -> str:
    """The `_target_` the project's configs give `builder`."""
    module = builder.__module__
    if builder is create_model:
        module = "fer_lightning.models"  # registry.model_node writes the package's name
    return f"{module}.{builder.__qualname__}"


LOSSES = {_target(cls): cls for cls in (MultiTaskLoss, UncertaintyWeightedLoss)}


def _parameters(builder: Callable[..., Any]) -> dict[str, Any]:
    """A builder's keyword parameters and their types, its base classes' included."""
    functions = (
        [cls.__init__ for cls in inspect.getmro(builder) if "__init__" in vars(cls)]
        if isinstance(builder, type)
        else [builder]
    )
    found: dict[str, Any] = {}
    for function in functions:
        hints = typing.get_type_hints(function)
        for name, parameter in inspect.signature(function).parameters.items():
            if name != "self" and parameter.kind not in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                found.setdefault(name, hints.get(name, Any))
        if not any(
            p.kind == p.VAR_KEYWORD for p in inspect.signature(function).parameters.values()
        ):
            break
    return found


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain value has the annotated type (bool is no number; an int is a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return is_plain(value)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (dict, Mapping):
        return isinstance(value, dict) and all(
            isinstance(k, str) and _matches(v, args[1] if args else Any) for k, v in value.items()
        )
    if origin in (list, Sequence):
        return isinstance(value, list) and all(_matches(v, args[0] if args else Any) for v in value)
    return False


def is_plain(value: Any) -> bool:
    """Plain values: numbers, strings, booleans, None, and lists and string-keyed dicts of them."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    return isinstance(value, PLAIN)


def _node(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    node = config.get(key)
    if not isinstance(node, dict):
        raise ConfigError(f"the checkpoint's fer_config.{key} is missing or not a mapping")
    return node


def _settings(
    config: Mapping[str, Any], key: str, builder: Callable[..., Any], targets: Sequence[str]
) -> dict[str, Any]:
    """The node `key`'s values for `builder`, checked; its `_target_` and unrebuilt keys dropped."""
    node = _node(config, key)
    target = node.get("_target_", targets[0])
    if target not in targets:
        raise ConfigError(
            f"the checkpoint's fer_config.{key}._target_ is {target!r}, not "
            f"{' or '.join(targets)}: refusing to build it (use a checkpoint this project wrote)"
        )
    parameters = _parameters(builder)
    settings = {}
    for name, value in node.items():
        if name in HYDRA_KEYS or name in NOT_REBUILT.get(key, ()):
            continue
        if name not in parameters:
            raise ConfigError(
                f"the checkpoint's fer_config.{key}.{name} is not a setting of {target}: "
                "a checkpoint of another project or version?"
            )
        if not _matches(value, parameters[name]):
            raise ConfigError(
                f"the checkpoint's fer_config.{key}.{name} = {value!r:.60} should be of type "
                f"{_type_name(parameters[name])}"
            )
        settings[name] = value
    return settings


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def model_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The stored `model` node as `create_model` arguments, its name one of the registry's."""
    settings = _settings(config, "model", create_model, [_target(create_model)])
    # A timm name is looked up in timm's registry when the backbone is built (one line if absent).
    if settings.get("library") is None and settings.get("name") not in model_names():
        raise ConfigError(
            f"the checkpoint's fer_config.model: {unknown_model(settings.get('name'))}"
        )
    return settings


def stored_net(config: Mapping[str, Any]) -> MultiTaskNet:
    """The network a stored config describes, without ImageNet weights or the `model.weights`
    file the run started from (the checkpoint's own replace them, so it loads on a machine
    without either)."""
    return create_model(**{**model_settings(config), "pretrained": False, "weights": None})


def stored_ema_decay(config: Mapping[str, Any]) -> float | None:
    """The weight-average decay the run trained with (`module.ema_decay`), or None."""
    module = config.get("module", {})
    decay = module.get("ema_decay") if isinstance(module, dict) else None
    if decay is not None and not (_matches(decay, float) and 0 < decay < 1):
        raise ConfigError(
            f"the checkpoint's fer_config.module.ema_decay is {decay!r}: not in (0, 1)"
        )
    return decay


def stored_loss(config: Mapping[str, Any]) -> MultiTaskLoss:
    """The loss a stored config describes: one of the project's loss classes."""
    target = _node(config, "loss").get("_target_", _target(MultiTaskLoss))
    builder = LOSSES.get(target, MultiTaskLoss)
    return builder(**_settings(config, "loss", builder, list(LOSSES)))


def _joint(config: Mapping[str, Any]) -> bool:
    """Whether the stored data is a joint run's (`data=multi`)."""
    return _node(config, "data").get("_target_") == _target(MultiDataModule)


def stored_datamodule(config: Mapping[str, Any]) -> AffectNetDataModule:
    """The data a stored config describes, without its training augmentation."""
    if _joint(config):
        raise ConfigError(
            "the checkpoint was trained on several datasets (data=multi): choose the one to score "
            "with data=<group> data.root=DIR"
        )
    return AffectNetDataModule(
        **_settings(config, "data", AffectNetDataModule, [_target(AffectNetDataModule)])
    )


def stored_input(config: Mapping[str, Any]) -> tuple[int, int]:
    """The input size and class count the network was trained with (predict, export)."""
    builder = MultiDataModule if _joint(config) else AffectNetDataModule
    settings = _settings(config, "data", builder, [_target(builder)])
    size, classes = settings.get("image_size"), settings.get("classes")
    if size is None or classes is None:
        raise ConfigError("the checkpoint's fer_config.data lacks image_size or classes")
    if size < 1 or classes < 2:
        raise ConfigError(
            f"the checkpoint's fer_config.data has image_size {size} and classes {classes}"
        )
    return size, classes
