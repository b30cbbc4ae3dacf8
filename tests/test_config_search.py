"""A user's own config folders (--config-dir, hydra.searchpath): every check accepts their groups
and options, and a run trains with a model and an experiment of theirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from fer_lightning.cli import unknown_choice
from fer_lightning.config_search import ConfigOptions
from fer_lightning.presets import register_experiment_configs
from tests.conftest import compose_in, run_module, tiny_overrides

# docs/configuration.md#your-own-configs: a model over a registry name, an experiment choosing it.
USER_MODEL = "defaults:\n  - tnet\n  - _self_\ndropout: 0.3\nhead_hidden: 32\n"
USER_EXPERIMENT = """# @package _global_
defaults:
  - override /model: my_tnet
trainer:
  max_epochs: 1
"""
USER_TARGET_MODEL = """_target_: fer_lightning.models.create_model
name: tnet
num_classes: ${data.classes}
image_size: ${data.image_size}
head_hidden: 16
"""


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "my_project" / "conf"
    for path, text in {
        "model/my_tnet.yaml": USER_MODEL,
        "model/my_target.yaml": USER_TARGET_MODEL,
        "experiment/my_experiment.yaml": USER_EXPERIMENT,
    }.items():
        (conf / path).parent.mkdir(parents=True, exist_ok=True)
        (conf / path).write_text(text)
    return conf


def _given(conf: Path) -> list[list[str]]:
    return [
        ["--config-dir", str(conf)],
        [f"--config-dir={conf}"],
        ["-cd", str(conf)],
        [f"hydra.searchpath=[file://{conf}]"],
        [f"hydra.searchpath=[{conf}]"],
    ]


def test_the_pre_check_sees_the_folders_hydra_will_search(user_conf):
    register_experiment_configs()  # as the apps do before composing
    choices = ["model=my_tnet", "experiment=my_experiment,quickstart", "data=synthetic"]
    assert unknown_choice(choices).startswith("unknown model 'my_tnet'")
    for given in _given(user_conf):
        assert unknown_choice([*given, *choices]) is None, given
        problem = unknown_choice([*given, "experiment=my_experimnt"])
        assert problem.startswith("unknown experiment 'my_experimnt': choose ")
        assert "my_experiment" in problem and "quickstart" in problem and "paper_tnet" in problem
        assert "my_target" in ConfigOptions(given, "train").options("model")


def test_a_config_dir_that_is_not_a_folder_is_one_line(tmp_path):
    problem = unknown_choice(["--config-dir", str(tmp_path / "nowhere"), "model=tnet"])
    assert problem == f"--config-dir {tmp_path / 'nowhere'} is not a folder: give an existing one"


def test_a_replaced_primary_folder_is_left_to_hydra(tmp_path):
    assert unknown_choice(["--config-path", str(tmp_path), "model=anything"]) is None


def test_a_users_model_over_a_registry_name_or_with_its_target_builds(user_conf, tmp_path):
    searchpath = f"hydra.searchpath=[file://{user_conf}]"
    cfg = compose_in(tmp_path, "train", [searchpath, "experiment=my_experiment"])
    assert (cfg.model.name, cfg.model.dropout, cfg.model.head_hidden) == ("tnet", 0.3, 32)
    assert cfg.model._target_ == "fer_lightning.models.create_model"
    assert cfg.trainer.max_epochs == 1 and cfg.model.image_size == cfg.data.image_size
    cfg = compose_in(tmp_path, "train", [searchpath, "model=my_target", "data.image_size=32"])
    net = instantiate(cfg.model)
    assert net.expression_head[0].out_features == 16  # its own setting, over tnet's 256


def test_training_with_a_users_model_and_experiment_from_the_command_line(
    user_conf, tiny_dataset, tmp_path
):
    """The experiment comes from --config-dir and chooses a model found through hydra.searchpath."""
    other = tmp_path / "other_conf"
    (other / "experiment").mkdir(parents=True)
    (other / "experiment" / "theirs.yaml").write_text(USER_EXPERIMENT)
    run_dir = tmp_path / "run"
    result = run_module(
        "train",
        "--config-dir",
        str(other),
        f"hydra.searchpath=[file://{user_conf}]",
        "experiment=theirs",
        *tiny_overrides(tiny_dataset),
        "debug=fdr",
        "test=false",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in result.stderr + result.stdout
    stored = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "dropout: 0.3" in stored and "head_hidden: 32" in stored


def test_a_local_default_of_a_searched_folder_is_merged_and_debug_still_wins(user_conf, tmp_path):
    (user_conf / "local").mkdir()
    (user_conf / "local" / "default.yaml").write_text(
        "# @package _global_\ndata:\n  num_workers: 3\ntrainer:\n  max_epochs: 7\n"
    )
    searchpath = f"hydra.searchpath=[file://{user_conf}]"
    cfg = compose_in(tmp_path, "train", [searchpath, "experiment=quickstart"])
    assert (cfg.data.num_workers, cfg.trainer.max_epochs) == (3, 7)  # after the experiment
    cfg = compose_in(tmp_path, "train", [searchpath, "debug=limit"])
    assert cfg.trainer.max_epochs == 2
    assert compose_in(tmp_path, "train").trainer.max_epochs == 30  # optional: none, no error
