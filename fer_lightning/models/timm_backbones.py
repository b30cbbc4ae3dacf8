"""Any timm model as a feature extractor (`model=timm model.name=NAME`), without its classifier.

Weights are never downloaded: `pretrained` reads the file timm would have fetched from the local
Hugging Face cache, for the same reason as torchvision's (`backbones.py`): training machines are
often offline, and a silent download is a surprise either way.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from huggingface_hub import constants, try_to_load_from_cache
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.models.backbones import brief

# What timm stores on the Hugging Face Hub, safetensors first (timm's own order).
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
EXAMPLES = (
    "resnet18, tf_efficientnet_b0, mobilenetv3_large_100, convnext_tiny, vit_small_patch16_224"
)


def unknown_timm_model(name: str) -> str:
    """The one-line complaint about a name that timm does not know."""
    return (
        f"unknown timm model '{name}': choose any timm.list_models() name "
        f"(e.g. {EXAMPLES}), optionally with a pretrained tag such as resnet18.a1_in1k"
    )


def timm_backbone(name: str, image_size: int, pretrained: bool) -> tuple[nn.Module, int]:
    """Builds timm model `name` with `num_classes=0` (pooled features): images -> [N, F].

    Returns the backbone and F. Architectures with a fixed input size (ViTs, Swin, ...) are built
    for `image_size`; every model is probed with one image of that size, so a size it cannot take
    is a one-line error here, not a shape error deep in the first training step.
    """
    if not timm.is_model(name):
        raise ConfigError(unknown_timm_model(name))
    kwargs: dict[str, object] = {"num_classes": 0}
    if _fixed_input_size(name):
        kwargs["img_size"] = image_size
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": str(_cached_weights(name))}
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:  # the architecture has no img_size argument
        raise ConfigError(
            f"timm {name} takes only its own input size, not data.image_size={image_size}: "
            f"{brief(err)}"
        ) from err
    except (AssertionError, ValueError, RuntimeError) as err:
        raise ConfigError(
            f"timm {name} cannot be built for data.image_size={image_size} ({brief(err)}); "
            "try data.image_size=224"
        ) from err
    return model, _probe(model, name, image_size)


def _fixed_input_size(name: str) -> bool:
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return bool(cfg is not None and cfg.fixed_input_size)


def _probe(model: nn.Module, name: str, image_size: int) -> int:
    """The width of the features of one image of `image_size`: `num_features` is the width before
    a pre-logits layer (MobileNetV3's `conv_head`), not always what the model returns."""
    was_training = model.training
    try:
        with torch.no_grad():
            return model.eval()(torch.zeros(1, 3, image_size, image_size)).shape[-1]
    except (AssertionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"timm {name} cannot take data.image_size={image_size} ({brief(err)}); "
            "try a larger data.image_size, e.g. 224"
        ) from err
    finally:
        model.train(was_training)


def _cached_weights(name: str) -> Path:
    """The cached file of `name`'s default (or tagged) pretrained weights, or a ConfigError."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    if not hub_id:
        raise ConfigError(
            f"timm {name} has no pretrained weights on the Hugging Face Hub: "
            "use model.pretrained=false, or model.weights=FILE"
        )
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILES
    for file in files:
        found = try_to_load_from_cache(hub_id, file)
        if isinstance(found, str):
            return Path(found)
    raise ConfigError(
        f"model.pretrained=true needs timm {name}'s weights ({hub_id}) in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE}, which lacks them (weights are never downloaded): on a "
        f"connected machine run `hf download {hub_id}` and copy its cache here (or point HF_HOME "
        "at a copy); or use model.pretrained=false"
    )
