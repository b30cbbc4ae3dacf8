"""runs.init_from: a new run starts from a checkpoint's network weights, all of them or none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.models import create_model
from fer_lightning.runs.init_from import load_initial_weights


def network(seed: int, num_classes: int = 8) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model("tnet", num_classes=num_classes, image_size=48)


def saved(path: Path, net: nn.Module, name: str = "tnet") -> Path:
    """A checkpoint of `net` as training writes it: its weights under `net.`, beside others."""
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["loss.class_weights"] = torch.ones(8)
    torch.save({"state_dict": state, "fer_config": {"model": {"name": name}}}, path)
    return path


def refusal(net: nn.Module, path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_initial_weights(net, "tnet", path)
    return str(caught.value)


def test_the_weights_of_a_checkpoint_of_the_same_network_are_loaded(tmp_path):
    source, net = network(1), network(2)
    load_initial_weights(net, "tnet", saved(tmp_path / "a.ckpt", source))
    theirs = source.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in net.state_dict().items())


def test_another_network_or_no_file_is_refused_in_one_line(tmp_path):
    net = network(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = saved(tmp_path / "a.ckpt", network(1), name="squeezenet")
    assert refusal(net, path) == (
        f"init_from={path} holds a squeezenet network that does not fit this run's tnet: "
        "init_from takes a checkpoint of the same model and data.classes"
    )
    seven = saved(tmp_path / "b.ckpt", network(1, num_classes=7))
    differ = sorted(
        k for k, v in network(1, num_classes=7).state_dict().items() if v.shape != before[k].shape
    )
    assert refusal(net, seven) == (
        f"init_from={seven} holds a tnet network that does not fit this run's tnet; "
        f"{len(differ)} weight(s) differ, first {differ[0]}: init_from takes a checkpoint of the "
        "same model and data.classes"
    )
    short = torch.load(saved(tmp_path / "d.ckpt", network(1)), weights_only=True)
    dropped = sorted(before)[-1]
    del short["state_dict"][f"net.{dropped}"]
    torch.save(short, tmp_path / "d.ckpt")
    assert f"; 1 weight(s) differ, first {dropped}: " in refusal(net, tmp_path / "d.ckpt")
    for model in ({}, {"model": "tnet"}, {"model": {"name": "nonet"}}):
        torch.save({"state_dict": {}, "fer_config": model}, tmp_path / "e.ckpt")
        said = refusal(net, tmp_path / "e.ckpt")
        assert said.startswith(
            f"init_from={tmp_path / 'e.ckpt'}: the checkpoint's fer_config.model"
        )
        assert ("unknown model 'nonet'" in said) == ("name" in str(model))
    assert refusal(net, tmp_path / "c.ckpt") == (
        f"init_from={tmp_path / 'c.ckpt'}: no such file; pass a checkpoint of this project"
    )
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
