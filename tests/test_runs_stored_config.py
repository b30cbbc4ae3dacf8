"""runs.stored_config, the border between a checkpoint's file and the builders: every value is
checked against the builder's annotated types, every key against its parameters, every
`_target_` against the one the project writes, before anything is built."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from omegaconf import OmegaConf

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss, UncertaintyWeightedLoss
from fer_lightning.runs import stored_config
from fer_lightning.runs.stored_config import (
    model_settings,
    stored_datamodule,
    stored_ema_decay,
    stored_input,
    stored_loss,
)


@pytest.fixture
def stored(compose_config) -> dict[str, Any]:
    """What a run stores in its checkpoints: its resolved config as plain containers."""
    return OmegaConf.to_container(compose_config("train", ["model=tnet"]), resolve=True)


@pytest.mark.parametrize(
    ("value", "hint", "matches"),
    [
        (1, int, True),
        (True, int, False),  # a bool is no number
        (1.5, int, False),
        (1, float, True),  # an int is a float
        (True, float, False),
        ("1", float, False),
        ("a", str, True),
        (1, str, False),
        (True, bool, True),
        (1, bool, False),
        (None, type(None), True),
        (0, type(None), False),
        (None, int | None, True),
        (3, int | None, True),
        ("3", int | None, False),
        (None, typing.Optional[str], True),  # noqa: UP045 (typing.Union, not types.UnionType)
        (2.0, typing.Optional[str], False),  # noqa: UP045
        ({"a": 1}, dict[str, int], True),
        ({"a": "x"}, dict[str, int], False),
        ({1: 1}, dict[str, int], False),
        ({"a": 1.5}, Mapping[str, float], True),
        ({"a": [1, "x"]}, typing.Dict, True),  # noqa: UP006 (no arguments: any plain value)
        ({"a": object()}, typing.Dict, False),  # noqa: UP006
        ([1, 2], list[int], True),
        ([1, "x"], list[int], False),
        ((1, 2), list[int], False),  # only what a config holds: a list
        (["a"], Sequence[str], True),
        ([{"a": None}], typing.List, True),  # noqa: UP006
        ([object()], typing.List, False),  # noqa: UP006
        ({"a": [None, 1.0]}, Any, True),
        (object(), Any, False),
        ({2}, set[int], False),  # a type the border does not know is refused
    ],
)
def test_a_value_matches_its_annotated_type_only(value, hint, matches):
    assert stored_config._matches(value, hint) is matches


class Base:
    def __init__(self, depth: int = 1, note="") -> None:
        pass


class Child(Base):
    def __init__(self, width: float = 1.0, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class Closed(Base):
    def __init__(self, size: int) -> None:
        super().__init__()


def built(count: int, scale: float = 1.0, label=None) -> None:
    pass


def test_a_builders_parameters_are_its_own_and_those_its_kwargs_pass_on():
    assert stored_config._parameters(Child) == {"width": float, "depth": int, "note": Any}
    assert stored_config._parameters(Closed) == {"size": int}
    assert stored_config._parameters(built) == {"count": int, "scale": float, "label": Any}


def test_the_type_in_a_refusal_is_named_as_it_is_written():
    hints = (int, int | None, Mapping[str, float], list[Any] | None)
    names = [stored_config._type_name(t) for t in hints]
    assert names == ["int", "int | None", "Mapping", "list[Any] | None"]


def refusal(build, config) -> str:
    with pytest.raises(ConfigError) as caught:
        build(config)
    return str(caught.value)


def test_a_stored_model_is_checked_key_by_key(stored):
    settings = model_settings(stored)
    assert settings["name"] == "tnet" and "_target_" not in settings
    del stored["model"]["_target_"]  # written by an earlier release: the project's builder
    assert model_settings(stored) == settings
    stored["model"]["num_classes"] = "8"
    assert refusal(model_settings, stored) == (
        "the checkpoint's fer_config.model.num_classes = '8' should be of type int"
    )
    stored["model"]["num_classes"] = 8
    stored["model"]["_target_"] = "os.system"
    assert refusal(model_settings, stored) == (
        "the checkpoint's fer_config.model._target_ is 'os.system', not "
        "fer_lightning.models.create_model: refusing to build it (use a checkpoint this project "
        "wrote)"
    )
    assert refusal(model_settings, {"model": ["tnet"]}) == (
        "the checkpoint's fer_config.model is missing or not a mapping"
    )


def test_a_stored_model_name_is_one_of_the_registrys_unless_it_is_timms(stored):
    stored["model"]["name"] = "os.system"
    assert refusal(model_settings, stored).startswith(
        "the checkpoint's fer_config.model: unknown model 'os.system': choose "
    )
    # timm's registry is asked when the backbone is built, and refuses an unknown name then.
    stored["model"].update(name="vit_tiny_patch16_224", library="timm")
    assert model_settings(stored)["name"] == "vit_tiny_patch16_224"


def test_the_weight_average_decay_is_none_or_a_number_in_0_1(stored):
    assert stored_ema_decay({}) is None and stored_ema_decay({"module": "x"}) is None
    assert stored_ema_decay({"module": {"ema_decay": 0.999}}) == 0.999
    for decay in (1, 0.0, True, "0.9"):
        assert refusal(stored_ema_decay, {"module": {"ema_decay": decay}}) == (
            f"the checkpoint's fer_config.module.ema_decay is {decay!r}: not in (0, 1)"
        )


def test_the_stored_loss_is_one_of_the_projects_loss_classes(stored):
    loss = stored_loss(stored)
    assert type(loss) is MultiTaskLoss
    untargeted = {**stored, "loss": {k: v for k, v in stored["loss"].items() if k != "_target_"}}
    assert type(stored_loss(untargeted)) is MultiTaskLoss  # an earlier release wrote no target
    assert dict(loss.weights) == {k: float(v) for k, v in stored["loss"]["weights"].items()}
    stored["loss"]["_target_"] = "fer_lightning.losses.UncertaintyWeightedLoss"
    stored["loss"]["init_log_var"] = 0.5
    uncertain = stored_loss(stored)
    assert type(uncertain) is UncertaintyWeightedLoss
    assert uncertain.log_vars.tolist() == [0.5] * len(uncertain.log_vars)
    stored["loss"]["_target_"] = "torch.nn.MSELoss"
    assert "_target_ is 'torch.nn.MSELoss', not fer_lightning.losses.MultiTaskLoss or" in (
        refusal(stored_loss, stored)
    )


def test_the_stored_data_is_rebuilt_without_its_augmentation(stored):
    stored["data"]["augment"] = [{"_target_": "os.system", "command": "echo"}]
    data = stored_datamodule(stored)
    assert type(data) is AffectNetDataModule
    assert data.image_size == stored["data"]["image_size"]
    assert data.augment is None and data.augment_inplace == []
    assert stored_input(stored) == (stored["data"]["image_size"], stored["data"]["classes"])
    stored["data"]["_target_"] = "fer_lightning.data.multi.MultiDataModule"
    assert refusal(stored_datamodule, stored) == (
        "the checkpoint was trained on several datasets (data=multi): choose the one to score "
        "with data=<group> data.root=DIR"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": 8}, "the checkpoint's fer_config.data lacks image_size or classes"),
        ({"image_size": 224}, "the checkpoint's fer_config.data lacks image_size or classes"),
        (
            {"image_size": 0, "classes": 8},
            "the checkpoint's fer_config.data has image_size 0 and classes 8",
        ),
        (
            {"image_size": 224, "classes": 1},
            "the checkpoint's fer_config.data has image_size 224 and classes 1",
        ),
    ],
)
def test_a_stored_input_size_or_class_count_that_cannot_be_is_one_line(stored, change, message):
    stored["data"] = change
    assert refusal(stored_input, stored) == message


def test_the_stored_input_of_a_joint_run_and_the_smallest_one_are_read():
    joint = {
        "_target_": "fer_lightning.data.multi.MultiDataModule",
        "_recursive_": False,
        "sources": {"a": {"root": "A"}},
        "weights": {"a": 2},
        "image_size": 64,
        "classes": 7,
    }
    assert stored_input({"data": joint}) == (64, 7)
    assert stored_input({"data": {"image_size": 1, "classes": 2}}) == (1, 2)
