"""Models by name: shapes, T-Net's size, unbounded-below valence, local-only weights, configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.errors import ConfigError
from fer_lightning.models import MultiTaskNet, create_model, register_model_configs
from fer_lightning.models.registry import model_names
from fer_lightning.paths import CONFIG_DIR

BATCH = 2
# The models the project names (README, error messages): each must work as `model=<name>`.
NAMED_MODELS = [
    "efficientnet_b0",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "squeezenet",
    "tnet",
    "vgg16",
    "vit_b_16",
]
# Large enough for every named model: inception_v3 needs 75 px, vit_b_16 a multiple of 16.
NAMED_IMAGE_SIZE = 96
BIG_NAMED_MODELS = {"efficientnet_v2_m", "vgg16", "vit_b_16"}


def _outputs(net: MultiTaskNet, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return net.eval()(torch.randn(BATCH, 3, image_size, image_size))


def _compose_model(name: str, image_size: int, classes: int = 8) -> DictConfig:
    register_model_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            overrides=[
                f"+model={name}",
                f"+data.classes={classes}",
                f"+data.image_size={image_size}",
            ]
        )


def _weights_file(name: str) -> str:
    return Path(torchvision.models.get_model_weights(name).DEFAULT.url).name


def test_tnet_has_the_original_projects_parameter_count() -> None:
    net = create_model("tnet")
    assert sum(p.numel() for p in net.parameters()) == 423_498


@pytest.mark.parametrize(
    ("name", "image_size"),
    [("tnet", 32), ("tnet", 64), ("squeezenet", 64), ("mobilenet_v3_small", 64), ("resnet18", 64)],
)
def test_outputs_logits_and_valence_arousal(name: str, image_size: int) -> None:
    net = create_model(name, num_classes=8, image_size=image_size)
    logits, va = _outputs(net, image_size)
    assert logits.shape == (BATCH, 8)
    assert va.shape == (BATCH, 2)
    assert (net.name, net.num_classes) == (name, 8)


@pytest.mark.parametrize("name", ["tnet", "squeezenet"])
@pytest.mark.parametrize("va_activation", ["tanh", "linear"])
def test_valence_arousal_can_be_negative(name: str, va_activation: str) -> None:
    # The original SqueezeNet head ended in ReLU, which made every prediction >= 0.
    net = create_model(name, image_size=32, va_activation=va_activation)
    last = net.va_head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, -0.5)
    _, va = _outputs(net, 32)
    expected = torch.tanh(torch.tensor(-0.5)) if va_activation == "tanh" else torch.tensor(-0.5)
    assert torch.allclose(va, expected.expand_as(va))


@pytest.mark.parametrize("bias", [-100.0, 100.0])
def test_tanh_keeps_valence_arousal_in_range(bias: float) -> None:
    net = create_model("tnet", image_size=32)
    torch.nn.init.constant_(net.va_head[-1].bias, bias)
    _, va = _outputs(net, 32)
    assert va.abs().max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "foo"}, "unknown model 'foo': choose squeezenet, "),
        (
            {"name": "inception_v3", "image_size": 32},
            "inception_v3 needs data.image_size >= 75, got 32",
        ),
        ({"name": "vit_b_16", "image_size": 100}, "divisible by its patch size 16, got 100"),
        ({"name": "tnet", "image_size": 8}, "tnet needs data.image_size >= 16, got 8"),
        ({"name": "tnet", "pretrained": True}, "tnet has no pretrained weights"),
        ({"name": "tnet", "va_activation": "relu"}, "unknown model.va_activation 'relu'"),
    ],
)
def test_bad_settings_raise_one_line_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as error:
        create_model(**kwargs)
    assert message in str(error.value)


def test_pretrained_without_a_local_file_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / _weights_file("squeezenet1_1")
    with pytest.raises(ConfigError) as error:
        create_model("squeezenet", pretrained=True, image_size=32)
    assert str(expected) in str(error.value)
    assert "model.pretrained=false" in str(error.value)


@pytest.mark.parametrize(
    ("name", "torchvision_name", "kwargs"),
    [
        ("squeezenet", "squeezenet1_1", {}),
        # Its checkpoint holds auxiliary classifiers that our backbone does not have.
        ("googlenet", "googlenet", {"aux_logits": True, "init_weights": False}),
    ],
)
def test_pretrained_loads_the_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, torchvision_name: str, kwargs: dict
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    saved = torchvision.models.get_model(torchvision_name, weights=None, **kwargs).state_dict()
    torch.save(saved, checkpoints / _weights_file(torchvision_name))

    net = create_model(name, pretrained=True, image_size=32)

    loaded = net.backbone.state_dict()
    first = next(key for key in loaded if key.endswith("weight"))
    assert torch.equal(loaded[first], saved[first])
    assert _outputs(net, 32)[0].shape == (BATCH, 8)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name in BIG_NAMED_MODELS else [])
        for name in NAMED_MODELS
    ],
)
def test_model_config_instantiates_a_working_net(name: str) -> None:
    cfg = _compose_model(name, NAMED_IMAGE_SIZE)
    net = instantiate(cfg.model)
    assert net.name == name
    assert _outputs(net, NAMED_IMAGE_SIZE)[1].shape == (BATCH, 2)


@pytest.mark.parametrize("name", [*NAMED_MODELS, "squeezenet1_1", "convnext_tiny"])
def test_model_configs_hold_the_registry_defaults_and_the_data_class_count(name: str) -> None:
    tnet = name == "tnet"
    assert dict(_compose_model(name, 64, classes=7).model) == {
        "_target_": "fer_lightning.models.create_model",
        "name": name,
        "num_classes": 7,
        "pretrained": False,
        "image_size": 64,
        "va_activation": "tanh",
        "head_hidden": 256 if tnet else 0,
        "dropout": 0.5 if tnet else 0.2,
        "weights": None,
        "weights_rename": {},
    }


def test_model_timm_is_a_config_of_a_timm_backbone() -> None:
    node = _compose_model("timm", 32).model
    assert (node.library, node.name, node.pretrained, node.weights) == (
        "timm",
        "resnet18",
        False,
        None,
    )
    from fer_lightning.cli import unknown_choice

    assert unknown_choice(["model=timm", "model.name=anything"]) is None


def test_create_model_defaults_to_the_same_heads() -> None:
    tnet = create_model("tnet", image_size=32)
    assert tnet.expression_head[0].out_features == 256 and tnet.expression_head[3].p == 0.5
    assert create_model("squeezenet", image_size=32).expression_head[0].p == 0.2


def test_every_model_name_is_accepted_and_no_other() -> None:
    from fer_lightning.cli import unknown_choice

    names = model_names()
    assert {"tnet", "squeezenet", "resnet18", "convnext_tiny"} <= set(names)
    assert unknown_choice([f"model={name}" for name in NAMED_MODELS]) is None
    problem = unknown_choice(["model=resnet5"])
    assert (
        problem.startswith("unknown model 'resnet5': choose squeezenet, ") and "\n" not in problem
    )


def test_registered_configs_cover_torchvision_names_without_yaml() -> None:
    register_model_configs()
    net = instantiate(_compose_model("regnet_y_400mf", 32).model)
    assert net.name == "regnet_y_400mf"
    assert _outputs(net, 32)[0].shape == (BATCH, 8)
    # A stored node beside a yaml file of the same name would trigger Hydra's schema matching.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _compose_model("squeezenet", 32).model.name == "squeezenet"


def test_under_bf16_autocast_the_heads_compute_in_float32():
    """bf16 logits would change some predicted classes against an fp32 evaluation."""
    net = create_model("tnet", image_size=32).eval()
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = net.backbone(images)
        logits, va = net(images)
    assert logits.dtype == va.dtype == torch.float32
    with torch.no_grad():
        expected = net.expression_head(features.float())
    torch.testing.assert_close(logits, expected)
