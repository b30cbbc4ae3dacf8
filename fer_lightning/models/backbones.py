"""Any torchvision ImageNet classifier as a feature extractor, built by its torchvision name.

Weights are never downloaded: `pretrained` reads the file torchvision would have cached in
`torch.hub.get_dir()/checkpoints`, because training machines are often offline and a silent download
of hundreds of megabytes is a surprise either way.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import interpolate_embeddings

from fer_lightning.errors import ConfigError

# Their weights' meta["min_size"] is the resolution the weights were trained at, not a limit of the
# architecture (ViT needs a multiple of its patch size, MaxViT reports its own constraint).
_TRANSFORMER_PREFIXES = ("vit_", "swin_", "maxvit_")
# Their auxiliary classifiers only help ImageNet training from scratch, and their default init draws
# from scipy's truncated normal, which takes seconds.
_AUX_NETS = ("googlenet", "inception_v3")
_AUX_KEYS = ("aux1.", "aux2.", "AuxLogits.")
# torchvision's DenseNet checkpoints use old 'norm.1'-style keys, which torchvision renames on load.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def torchvision_names() -> list[str]:
    """Every torchvision classification model name, e.g. 'resnet18', 'convnext_tiny'."""
    return torchvision.models.list_models(module=torchvision.models)


def torchvision_backbone(name: str, image_size: int, pretrained: bool) -> tuple[nn.Module, int]:
    """Builds torchvision model `name` without its ImageNet classifier: images -> [N, F].

    Returns the backbone and F. With `pretrained`, loads the local ImageNet weights before the
    classifier is stripped, so the checkpoint's keys match the model torchvision defines.
    """
    _check_image_size(name, image_size)
    model = _construct(name, image_size, pretrained)
    if pretrained:
        _load_local_imagenet_weights(model, name, image_size)
    return model, _strip_classifier(model)


def _check_image_size(name: str, image_size: int) -> None:
    if name.startswith("vit_"):
        patch = _vit_patch_size(name)
        if image_size % patch:
            raise ConfigError(
                f"{name} needs data.image_size divisible by its patch size {patch}, "
                f"got {image_size}"
            )
    elif not name.startswith(_TRANSFORMER_PREFIXES):
        min_size = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"][0]
        if image_size < min_size:
            raise ConfigError(f"{name} needs data.image_size >= {min_size}, got {image_size}")


def _vit_patch_size(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _construct(name: str, image_size: int, pretrained: bool) -> nn.Module:
    kwargs: dict[str, object] = {}
    if name in _AUX_NETS:
        # Their ImageNet weights expect inputs normalised to [-1, 1]; transform_input converts ours.
        kwargs = {"aux_logits": False, "init_weights": False, "transform_input": pretrained}
    elif name.startswith("vit_"):
        kwargs = {"image_size": image_size}
    elif name.startswith("maxvit_"):
        kwargs = {"input_size": (image_size, image_size)}
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as err:  # MaxViT: the grid at some stage does not split into its partitions
        raise ConfigError(
            f"{name} cannot take data.image_size={image_size} (torchvision: {brief(err)}); "
            "try data.image_size=224"
        ) from err


def _load_local_imagenet_weights(model: nn.Module, name: str, image_size: int) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    file = Path(urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / file
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained=true needs {name}'s ImageNet weights at {path}, which is missing "
            f"(weights are never downloaded): copy {file} there (from {weights.url}) or set "
            "TORCH_HOME to a folder whose hub/checkpoints holds it; or use model.pretrained=false"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_adapt_state(state, name, image_size))
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as err:
        raise ConfigError(
            f"{path} is not torchvision's {name} ImageNet checkpoint ({brief(err)}): "
            f"replace it with {weights.url} or use model.pretrained=false"
        ) from err


def brief(err: BaseException) -> str:
    """The start of an error message, on one line: load_state_dict lists every mismatched key."""
    return " ".join(str(err).split())[:200]


def _adapt_state(
    state: dict[str, torch.Tensor], name: str, image_size: int
) -> dict[str, torch.Tensor]:
    """Fits a torchvision checkpoint to the model built here.

    Drops the auxiliary classifiers we do not build, renames DenseNet's old keys as torchvision
    does, and resizes ViT's position embeddings to data.image_size (torchvision would refuse).
    """
    if name in _AUX_NETS:
        state = {k: v for k, v in state.items() if not k.startswith(_AUX_KEYS)}
    elif name.startswith("densenet"):
        state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    elif name.startswith("vit_"):
        state = interpolate_embeddings(image_size, _vit_patch_size(name), state)
    return state


def _strip_classifier(model: nn.Module) -> int:
    """Replaces the ImageNet classifier with Identity in place and returns its input width F.

    The classifier is the last Linear, or for SqueezeNet, which has none, the last Conv2d (after
    it come only ReLU, global pooling and flatten). A Dropout registered just before it goes too,
    so the heads' own `dropout` is the only one applied to the features.
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    kind = nn.Linear if any(isinstance(m, nn.Linear) for _, m in leaves) else nn.Conv2d
    index = max(i for i, (_, m) in enumerate(leaves) if isinstance(m, kind))
    layer_name, layer = leaves[index]
    model.set_submodule(layer_name, nn.Identity())
    before_name, before = leaves[index - 1]
    if isinstance(before, nn.Dropout):
        model.set_submodule(before_name, nn.Identity())
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
