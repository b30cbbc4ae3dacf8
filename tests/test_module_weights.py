"""module.trained_net: the network predict and export run is the checkpoint's own, its weight
average where the run kept one, and weights that do not fit are one line naming the network."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.models import create_model
from fer_lightning.module import MultiTaskModule, load_checkpoint_weights, trained_net

SETTINGS = {"name": "tnet", "image_size": 48, "head_hidden": 0, "dropout": 0.2}
PREFIX = "the checkpoint's weights do not fit the tnet network its config describes: "


def network(seed: int, num_classes: int = 8) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model(num_classes=num_classes, **SETTINGS)


def checkpoint(**prefixed: nn.Module) -> dict[str, Any]:
    """A checkpoint whose state_dict holds each network's weights under its prefix (`net`,
    `ema_net` for `ema.net`), with the stored config of an 8-class T-Net."""
    model = {
        "_target_": "fer_lightning.models.create_model",
        "num_classes": 8,
        "pretrained": False,
        "va_activation": "tanh",
        **SETTINGS,
    }
    state = {
        f"{prefix.replace('_', '.')}.{key}": value
        for prefix, net in prefixed.items()
        for key, value in net.state_dict().items()
    }
    return {"state_dict": state, "fer_config": {"model": model, "data": {"image_size": 48}}}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    other = b.state_dict()
    return all(torch.equal(value, other[key]) for key, value in a.state_dict().items())


def test_the_network_is_the_weight_average_where_the_run_kept_one():
    trained, average = network(1), network(2)
    assert not same_weights(trained, average)
    assert same_weights(trained_net(checkpoint(net=trained)), trained)
    chosen = trained_net(checkpoint(net=trained, ema_net=average))
    assert same_weights(chosen, average)
    assert not chosen.training


def test_weights_of_another_shape_are_one_line_naming_the_network():
    seven = checkpoint(net=network(1, num_classes=7))
    with pytest.raises(RuntimeError) as torch_error:
        network(0).load_state_dict(
            {k.removeprefix("net."): v for k, v in seven["state_dict"].items()}
        )
    problem = str(torch_error.value).splitlines()[-1].strip()
    assert len(problem) > 120  # so that the cut at 120 characters is seen
    with pytest.raises(ConfigError) as caught:
        trained_net(seven)
    assert str(caught.value) == PREFIX + problem[:120]


def test_a_load_error_without_a_message_is_named_by_its_type():
    class Refusing(nn.Module):
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError()

    with pytest.raises(ConfigError) as caught:
        load_checkpoint_weights(Refusing(), {}, "tnet")
    assert str(caught.value) == PREFIX + "RuntimeError"


@pytest.mark.parametrize("ema", [True, False])
def test_a_module_from_a_checkpoint_is_the_trained_one(compose_config, ema):
    """What eval tests: the stored network, loss and weight average with their weights, and the
    test-time augmentation asked for."""
    overrides = ["model=tnet", "loss=uncertainty", *(["module.ema_decay=0.9"] if ema else [])]
    trained = MultiTaskModule.from_config(compose_config("train", overrides))
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.normal_()
    checkpoint = {"state_dict": trained.state_dict(), "fer_config": trained.config}
    loaded = MultiTaskModule.from_checkpoint(checkpoint, tta="flip")
    assert type(loaded.loss) is type(trained.loss) and loaded.tta == "flip"
    assert loaded.optimizer_factory is None and loaded.config == trained.config
    assert (loaded.ema is not None) is ema and (loaded.ema is None or loaded.ema.decay == 0.9)
    assert same_weights(loaded, trained) and same_weights(trained, loaded)
    del checkpoint["state_dict"]["net.va_head.1.bias"]
    with pytest.raises(ConfigError, match="^" + PREFIX + 'Missing key.*"net.va_head.1.bias"'):
        MultiTaskModule.from_checkpoint(checkpoint)
