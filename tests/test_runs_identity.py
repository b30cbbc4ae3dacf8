"""A rerun is the same experiment as its run, or names what it changed (docs/resuming.md)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.runs import identity
from fer_lightning.runs.identity import experiment_changes, require_same_experiment

RUN = ["model=tnet", "data=synthetic", "trainer.max_epochs=4"]


@pytest.fixture
def saved(compose_config):
    """The resolved config a checkpoint of the run stores (`fer_config`)."""
    return OmegaConf.to_container(compose_config("train", RUN), resolve=True)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["seed=7"], ["seed 42 -> 7", "data.seed 42 -> 7"]),
        (["optimizer.lr=0.01"], ["optimizer.lr 0.0001 -> 0.01"]),
        (["data.batch_size=8"], ["data.batch_size 64 -> 8"]),
        (["loss.weights.valence=0.5"], ["loss.weights.valence 0.05 -> 0.5"]),
        (["optimizer=sgd"], ["optimizer._target_ torch.optim.Adam -> torch.optim.SGD"]),
        (
            ["optimizer=sgd", "seed=7"],
            [
                "seed 42 -> 7",
                "data.seed 42 -> 7",
                "optimizer._target_ torch.optim.Adam -> torch.optim.SGD",
            ],
        ),
        (
            ["loss=uncertainty"],
            [
                "loss._target_ fer_lightning.losses.MultiTaskLoss -> "
                "fer_lightning.losses.UncertaintyWeightedLoss"
            ],
        ),
        (
            ["trainer.max_epochs=3"],
            ["trainer.max_epochs 4 -> 3 (may only be raised)", "scheduler.T_max 4 -> 3"],
        ),
        (
            ["init_from=/runs/a/checkpoints/last.ckpt"],
            ["init_from null -> /runs/a/checkpoints/last.ckpt"],
        ),
    ],
)
def test_a_change_of_the_experiment_is_named_old_to_new(compose_config, saved, overrides, expected):
    changes = experiment_changes(saved, compose_config("train", [*RUN, *overrides]))
    assert sorted(changes) == sorted(expected)


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.max_epochs=9"],  # raised: the cosine T_max derived from it stays the run's
        ["data.num_workers=7", "data.loader=processes", "data.pin_memory=false"],
        ["data.persistent_workers=false", "data.prefetch_factor=2", "data.check_workers=1"],
        ["data.pinned_memory_mb=64"],
        ["logger=tensorboard", "~callbacks.progress_bar", "trainer.enable_progress_bar=false"],
        ["trainer.enable_model_summary=false", "checkpoint.every_n_steps=5", "test=false"],
        ["resume=false", "ckpt_path=/elsewhere.ckpt", "trainer.accelerator=cpu"],
    ],
)
def test_settings_that_cannot_change_the_result_may_differ(compose_config, saved, overrides):
    assert experiment_changes(saved, compose_config("train", [*RUN, *overrides])) == []


def test_the_refusal_is_one_line_with_the_ways_out(compose_config, saved, tmp_path):
    cfg = compose_config("train", [*RUN, "seed=1", "optimizer.lr=0.5"])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    listed = "seed 42 -> 1, data.seed 42 -> 1, optimizer.lr 0.0001 -> 0.5"
    with pytest.raises(ConfigError) as own:
        require_same_experiment({"fer_config": saved}, cfg, last)
    assert str(own.value) == (
        f"this command is another experiment than the run in {tmp_path / 'run'} ({listed}): "
        "rerun with the run's values to continue it (docs/resuming.md), resume=false to start "
        "over there, or another hydra.run.dir for a new run"
    )
    with pytest.raises(ConfigError) as given:
        require_same_experiment({"fer_config": saved}, cfg, last, explicit=True)
    assert str(given.value) == (
        f"ckpt_path={last} is a checkpoint of another experiment ({listed}); ckpt_path continues "
        f"only the same experiment (docs/resuming.md): init_from={last} starts a new run from "
        "its weights"
    )


# Ten changes: the message names eight of them and counts the rest; eight are all named.
MANY = ["seed=1", "optimizer.lr=0.5", "data.batch_size=8", "trainer.max_epochs=3"]
MANY += ["loss.weights.valence=0.5", "loss.weights.arousal=0.5", "data.image_size=64"]


@pytest.mark.parametrize(
    ("overrides", "count", "more"), [(MANY, 10, " and 2 more"), (MANY[1:], 8, "")]
)
def test_a_long_list_of_changes_names_eight(compose_config, saved, overrides, count, more):
    cfg = compose_config("train", [*RUN, *overrides])
    changes = experiment_changes(saved, cfg)
    assert len(changes) == count
    with pytest.raises(ConfigError) as caught:
        require_same_experiment({"fer_config": saved}, cfg, "run/checkpoints/last.ckpt")
    assert f"({', '.join(changes[:8])}{more}): rerun" in str(caught.value)


def test_a_key_added_to_the_configs_after_the_run_is_no_change_at_its_default(
    compose_config, saved
):
    """A run made before ``data.format`` and the reader settings existed resumes as it was."""
    for key in ("format", "labels", "images", "manifest", "crop_margin", "pinned_memory_mb"):
        del saved["data"][key]
    assert experiment_changes(saved, compose_config("train", RUN)) == []
    changes = experiment_changes(
        saved, compose_config("train", [*RUN, "data.format=affectnet_csv"])
    )
    assert changes == ["data.format (unset) -> affectnet_csv"]
    # Another layout brings its own defaults (docs/configuration.md): RAF-DB's 7 classes.
    changes = experiment_changes(saved, compose_config("train", [*RUN, "data.format=rafdb"]))
    assert changes == [
        "data.classes 8 -> 7",
        "data.protocol holdout -> predefined",
        "model.num_classes 8 -> 7",
        "loss.num_classes 8 -> 7",
        "data.format (unset) -> rafdb",
    ]
    saved["data"]["retired"] = 1  # a key the configs no longer have
    assert experiment_changes(saved, compose_config("train", RUN)) == ["data.retired 1 -> (unset)"]
    del saved["data"]["retired"]
    del saved["loss"]["weights"]["valence"]  # in a node without a _target_: no default
    assert experiment_changes(saved, compose_config("train", RUN)) == [
        "loss.weights.valence (unset) -> 0.05"
    ]
    saved["loss"]["weights"]["valence"] = 0.05
    del saved["optimizer"]["lr"]  # a required value, or one not at its default, is a change
    assert experiment_changes(saved, compose_config("train", RUN)) == [
        "optimizer.lr (unset) -> 0.0001"
    ]


def test_a_config_is_compared_leaf_by_leaf_and_shown_in_short():
    assert identity._flat({}) == {}
    nested = {"aX": {"bX": 1, "list": [1, {"c": 2}], "empty": {}}}
    assert identity._flat(nested) == {"aX.bX": 1, "aX.list": [1, {"c": 2}], "aX.empty": {}}
    assert identity._show(identity._UNSET) == "(unset)"
    assert identity._show([1, "a"]) == '[1, "a"]' and identity._show("a b") == "a b"
    assert identity._show("x" * 60) == "x" * 60
    assert identity._show("x" * 61) == "x" * 57 + "..."


def test_comparing_a_raised_max_epochs_leaves_the_reruns_config_as_it_is(compose_config, saved):
    cfg = compose_config("train", [*RUN, "trainer.max_epochs=9"])
    assert experiment_changes(saved, cfg) == []
    assert cfg.trainer.max_epochs == 9 and cfg.scheduler.T_max == 9
