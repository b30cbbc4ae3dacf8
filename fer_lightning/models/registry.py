"""Models by name, timm-style: `create_model("resnet18")`, and Hydra `model/<name>` nodes."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from fer_lightning.errors import ConfigError
from fer_lightning.models import tnet
from fer_lightning.models.backbones import torchvision_backbone, torchvision_names
from fer_lightning.models.multitask import MultiTaskNet

# Our short names for torchvision models; every torchvision name works as well.
ALIASES = {"squeezenet": "squeezenet1_1"}
# The original project's models and our quick-start choices, named first in error messages.
FEATURED = ("squeezenet", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18")
# Head defaults for torchvision backbones; T-Net has its own (tnet.HEAD_HIDDEN, tnet.HEAD_DROPOUT).
HEAD_HIDDEN = 0
HEAD_DROPOUT = 0.2
MODEL_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


def create_model(
    name: str,
    num_classes: int = 8,
    pretrained: bool = False,
    image_size: int = 224,
    va_activation: str = "tanh",
    head_hidden: int | None = None,
    dropout: float | None = None,
) -> MultiTaskNet:
    """Builds the multi-task network `name`: 'tnet', an alias in ALIASES or a torchvision name.

    `head_hidden` and `dropout` default (None) to the architecture's own: T-Net's original MLP heads
    (256 hidden, dropout 0.5), and Dropout(0.2) + Linear for torchvision backbones.
    """
    if name == "tnet":
        if pretrained:
            raise ConfigError(
                "tnet has no pretrained weights (it is this project's own network): "
                "use model.pretrained=false"
            )
        backbone = tnet.TNetFeatures(image_size)
        feature_dim = tnet.TNetFeatures.out_features
        default_hidden, default_dropout = tnet.HEAD_HIDDEN, tnet.HEAD_DROPOUT
    elif name in ALIASES or name in torchvision_names():
        torchvision_name = ALIASES.get(name, name)
        backbone, feature_dim = torchvision_backbone(torchvision_name, image_size, pretrained)
        default_hidden, default_dropout = HEAD_HIDDEN, HEAD_DROPOUT
    else:
        raise ConfigError(
            f"unknown model '{name}': choose {', '.join(FEATURED)}, tnet, or any torchvision "
            "classification model name (torchvision.models.list_models())"
        )
    return MultiTaskNet(
        name,
        backbone,
        feature_dim,
        num_classes,
        va_activation,
        default_hidden if head_hidden is None else head_hidden,
        default_dropout if dropout is None else dropout,
    )


def _model_node(name: str) -> dict[str, object]:
    """The `model` config for `name`, the same keys as the files in conf/model."""
    return {
        "_target_": "fer_lightning.models.create_model",
        "name": name,
        "num_classes": "${data.num_classes}",
        "pretrained": False,
        "image_size": "${data.image_size}",
        "va_activation": "tanh",
        "head_hidden": HEAD_HIDDEN,
        "dropout": HEAD_DROPOUT,
    }


def register_model_configs() -> None:
    """Stores `model/<name>` in Hydra's ConfigStore for each torchvision name without a yaml file.

    Call before composing, so that `model=convnext_tiny` works without a file per model. Names that
    have conf/model/<name>.yaml are skipped: that file is the one to read and edit.
    """
    with_yaml = {path.stem for path in MODEL_CONF_DIR.glob("*.yaml")}
    store = ConfigStore.instance()
    for name in torchvision_names():
        if name not in with_yaml:
            store.store(group="model", name=name, node=_model_node(name))
