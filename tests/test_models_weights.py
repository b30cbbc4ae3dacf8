"""model.weights=FILE: a state dict loads exactly, through key renames, and never from the wrong
architecture or by running code."""

from __future__ import annotations

import logging

import pytest
import safetensors.torch
import timm
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.models import create_model

NAME = "test_resnet"


def build(**kwargs):
    return create_model(NAME, library="timm", image_size=32, **kwargs)


def backbone_file(tmp_path, suffix=".pt", prefix=""):
    """A timm classifier's whole state dict (with its 1000-class `fc`), keys under `prefix`."""
    torch.manual_seed(1)
    state = {f"{prefix}{k}": v for k, v in timm.create_model(NAME).state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(state, path)
    else:
        torch.save(state, path)
    return path, state


def assert_backbone_is(net, state, prefix=""):
    loaded = net.backbone.state_dict()
    assert loaded and all(torch.equal(v, state[f"{prefix}{k}"]) for k, v in loaded.items())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_weights_file_loads_exactly_and_reports_one_line(tmp_path, caplog, suffix):
    path, state = backbone_file(tmp_path, suffix)
    with caplog.at_level(logging.INFO, logger="fer_lightning.models.weights"):
        net = build(weights=str(path))
    assert_backbone_is(net, state)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    loaded = len(net.backbone.state_dict())
    assert f"{loaded} tensors loaded, 4 missing" in lines[0]  # the two heads' weights and biases
    assert "2 unexpected, 0 shape-mismatched" in lines[0]  # the 1000-class fc


def test_another_prefix_loads_through_the_rename_option(tmp_path):
    path, state = backbone_file(tmp_path, prefix="module.encoder.")
    with pytest.raises(ConfigError, match=r"model\.weights_rename"):
        build(weights=str(path))
    net = build(weights=str(path), weights_rename={"module.encoder.": "backbone."})
    assert_backbone_is(net, state, prefix="module.encoder.")


def test_a_file_of_another_architecture_is_refused_in_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ConfigError, match="fits only") as error:
        build(weights=str(path))
    assert "\n" not in str(error.value)


def test_a_project_checkpoint_loads_heads_too_and_prefers_its_weight_average(tmp_path):
    source, average = build(), build(dropout=0.5)
    state = {f"net.{k}": v for k, v in source.state_dict().items()}
    state |= {f"ema.net.{k}": v for k, v in average.state_dict().items()}
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": state, "fer_config": {}}, path)
    net = build(weights=str(path))
    assert all(torch.equal(v, average.state_dict()[k]) for k, v in net.state_dict().items())


def test_a_pickled_model_is_never_unpickled(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(timm.create_model(NAME), path)
    with pytest.raises(ConfigError, match="pickled objects") as error:
        build(weights=str(path))
    assert "\n" not in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build(weights=str(tmp_path / "none.pt"))


@pytest.mark.parametrize("name", ["w.safetensors", "w.pt"])
@pytest.mark.parametrize("content", [b"", b"not a weights file at all"])
def test_a_damaged_weights_file_is_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not a") as error:
        build(weights=str(path))
    assert "\n" not in str(error.value)
