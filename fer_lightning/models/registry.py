"""Models by name, timm-style: `create_model("resnet18")`, and Hydra `model/<name>` nodes.

This module is the only home of the models' defaults: `create_model` applies them and
`register_model_configs` writes them into the `model=<name>` configs, so conf/model/ needs a file
only for a model with settings of its own (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from fer_lightning.errors import ConfigError
from fer_lightning.models.backbones import torchvision_backbone, torchvision_names
from fer_lightning.models.multitask import MultiTaskNet
from fer_lightning.models.timm_backbones import timm_backbone
from fer_lightning.models.tnet import TNetFeatures
from fer_lightning.models.weights import load_weights
from fer_lightning.paths import CONFIG_DIR

# Our short names for torchvision models; every torchvision name works as well.
ALIASES = {"squeezenet": "squeezenet1_1"}
# The original project's models and our quick-start choices, named first in error messages.
FEATURED = ("squeezenet", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18")
# `model=timm model.name=NAME`: any timm model, named by `name` (its default below).
TIMM = "timm"
TIMM_DEFAULT = "resnet18"


@dataclass(frozen=True)
class Heads:
    """The expression and valence/arousal heads' shape (see `multitask.make_head`)."""

    hidden: int = 0
    dropout: float = 0.2


# Torchvision backbones get Dropout(0.2) + Linear; T-Net keeps the original project's MLP heads.
HEADS = {"tnet": Heads(hidden=256, dropout=0.5)}


# Networks that train faster on the CPU with their weights and batches channels-last (the layout
# the loader's batches have) than NCHW, measured by bench/bench_overhead.py (bench/README.md);
# every other network keeps NCHW there. `module.cpu_channels_last` overrides it.
CPU_CHANNELS_LAST = frozenset({"squeezenet"})


def cpu_channels_last(name: str) -> bool:
    """Whether model `name` trains channels-last on the CPU by default."""
    return name in CPU_CHANNELS_LAST


def uses_channels_last(net: object, device: str, cuda: bool, cpu: bool | None) -> bool:
    """The layout `net` trains in on `device`: `module.channels_last` on CUDA, on the CPU
    `module.cpu_channels_last` or, when None, the model's measured default."""
    if device == "cuda":
        return cuda
    if device == "cpu":
        return cpu_channels_last(getattr(net, "name", "")) if cpu is None else cpu
    return False


def heads(name: str) -> Heads:
    """The default heads of model `name`."""
    return HEADS.get(name, Heads())


def model_names() -> list[str]:
    """Every name `create_model` accepts without `library`."""
    return ["tnet", *ALIASES, *torchvision_names()]


def model_choices() -> list[str]:
    """Every option of `model=<option>`: the names of `model_names` and `timm`."""
    return [*model_names(), TIMM]


def unknown_model(name: str) -> str:
    """The one-line complaint about a model name that `model_choices` does not hold."""
    return (
        f"unknown model '{name}': choose {', '.join(FEATURED)}, tnet, any torchvision "
        "classification model name (torchvision.models.list_models()), or timm with "
        "model.name=<any timm.list_models() name>"
    )


def create_model(
    name: str,
    num_classes: int = 8,
    pretrained: bool = False,
    image_size: int = 224,
    va_activation: str = "tanh",
    head_hidden: int | None = None,
    dropout: float | None = None,
    library: str | None = None,
    weights: str | None = None,
    weights_rename: Mapping[str, str] | None = None,
) -> MultiTaskNet:
    """Builds the multi-task network `name`: 'tnet', an alias in ALIASES or a torchvision name,
    or with `library="timm"` any timm model name.

    `head_hidden` and `dropout` default (None) to the architecture's own, `heads(name)`.
    `weights` is a file loaded over the built network (`weights.load_weights`, after `pretrained`
    weights), its key prefixes mapped by `weights_rename`.
    """
    if library not in (None, TIMM):
        raise ConfigError(f"unknown model.library '{library}': choose timm or null")
    if library == TIMM:
        backbone, feature_dim = timm_backbone(name, image_size, pretrained)
    elif name == "tnet":
        if pretrained:
            raise ConfigError(
                "tnet has no pretrained weights (it is this project's own network): "
                "use model.pretrained=false"
            )
        backbone, feature_dim = TNetFeatures(image_size), TNetFeatures.out_features
    elif name in ALIASES or name in torchvision_names():
        backbone, feature_dim = torchvision_backbone(
            ALIASES.get(name, name), image_size, pretrained
        )
    else:
        raise ConfigError(unknown_model(name))
    default = heads(name)
    net = MultiTaskNet(
        name,
        backbone,
        feature_dim,
        num_classes,
        va_activation,
        default.hidden if head_hidden is None else head_hidden,
        default.dropout if dropout is None else dropout,
    )
    if weights:
        load_weights(net, weights, weights_rename or {})
    return net


def model_node(name: str) -> dict[str, object]:
    """The `model` config of `name`: its defaults, the class count and input size from `data`.

    `timm`'s node builds `TIMM_DEFAULT` until `model.name` says otherwise.
    """
    default = heads(name)
    library = {"library": TIMM} if name == TIMM else {}
    return {
        "_target_": "fer_lightning.models.create_model",
        "name": TIMM_DEFAULT if name == TIMM else name,
        **library,
        "num_classes": "${data.classes}",
        "pretrained": False,
        "image_size": "${data.image_size}",
        "va_activation": "tanh",
        "head_hidden": default.hidden,
        "dropout": default.dropout,
        "weights": None,
        "weights_rename": {},
    }


def register_model_configs() -> None:
    """Stores `model/<name>` in Hydra's ConfigStore for every name in `model_names()`.

    Call before composing. A name with a conf/model/<name>.yaml is skipped: that file is the one
    to read and edit (a stored node beside it would make Hydra merge the two as a schema).
    """
    with_yaml = {path.stem for path in (CONFIG_DIR / "model").glob("*.yaml")}
    store = ConfigStore.instance()
    for name in model_choices():
        if name not in with_yaml:
            store.store(group="model", name=name, node=model_node(name))
