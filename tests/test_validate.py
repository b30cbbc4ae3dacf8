"""validate: impossible values of a composed config are one-line ConfigErrors before any work."""

from __future__ import annotations

import pytest
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.validate import monitored_names, validate

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr must be a number > 0, got 0"),
        ("optimizer.lr=-1e-3", "optimizer.lr must be a number > 0"),
        ("optimizer.lr=fast", "optimizer.lr must be a number > 0, got 'fast'"),
        ("seed=-1", "seed must be a whole number from 0"),
        ("seed=1.5", "seed must be a whole number"),
        ("seed=abc", "seed must be a whole number"),
        ("data.batch_size=0", "data.batch_size must be a whole number >= 1, got 0"),
        ("data.image_size=100000", "data.image_size=100000 with data.batch_size=64 needs"),
        ("data.image_size=0", "data.image_size must be a whole number >= 1"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be"),
        ("trainer.max_epochs=0", "trainer.max_epochs must be a whole number >= 1 (or -1"),
        ("trainer.max_epochs=-2", "trainer.max_epochs must be"),
        ("callbacks.monitor.metric=val/accuracy", "callbacks.monitor.metric=val/accuracy is not"),
        ("callbacks.monitor.metric=test/acc", "callbacks.monitor.metric=test/acc is not"),
        ("callbacks.monitor.mode=up", "callbacks.monitor.mode must be min or max"),
    ],
)
def test_an_impossible_training_value_is_one_line(compose_config, override, message):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config("train", [override]), "train")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "override", ["trainer.max_epochs=-1", "callbacks.monitor.metric=val/valence_ccc", "seed=0"]
)
def test_possible_values_pass(compose_config, override):
    validate(compose_config("train", [override]), "train")


def test_the_monitor_may_name_any_logged_validation_value():
    names = monitored_names(8)
    assert {"val/acc", "val/loss", "val/loss_expression", "val/arousal_ccc", "val/f1_7"} <= names
    assert "val/f1_7" not in monitored_names(7)


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without a GPU")
def test_a_gpu_that_is_not_there_is_refused(compose_config, tmp_path):
    with pytest.raises(ConfigError, match=r"no usable GPU: use trainer\.accelerator=cpu"):
        validate(compose_config("train", ["trainer=gpu"]), "train")
    cfg = compose_config("predict", ["ckpt_path=a.ckpt", f"input={tmp_path}", "device=cuda"])
    with pytest.raises(ConfigError, match="device=cuda but this machine has no usable GPU"):
        validate(cfg, "predict")


def test_eval_checks_the_data_it_was_given(compose_config):
    cfg = compose_config("eval", ["ckpt_path=a.ckpt", "data=affectnet", "data.batch_size=0"])
    with pytest.raises(ConfigError, match=r"data\.batch_size must be"):
        validate(cfg, "eval")
    validate(compose_config("eval", ["ckpt_path=a.ckpt"]), "eval")


def test_eval_never_writes_into_the_run_directory_of_its_checkpoint(compose_config, tmp_path):
    run = tmp_path / "trained"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    with pytest.raises(ConfigError, match="is the run directory of the checkpoint") as error:
        validate(compose_config("eval", [ckpt, f"paths.output_dir={run}"]), "eval")
    assert "\n" not in str(error.value)
    validate(compose_config("eval", [ckpt, f"paths.output_dir={tmp_path / 'eval'}"]), "eval")


def test_outputs_never_replace_inputs_or_the_checkpoint(compose_config, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"x")
    ckpt = tmp_path / "run" / "last.ckpt"

    def refused(task: str, *overrides: str) -> str:
        cfg = compose_config(task, [f"ckpt_path={ckpt}", *overrides])
        with pytest.raises(ConfigError) as caught:
            validate(cfg, task)
        return str(caught.value)

    given = f"input={photos}"
    assert "is the checkpoint" in refused("predict", given, f"output={ckpt}")
    assert "is the checkpoint" in refused("export", f"output={ckpt}")
    assert "would replace an input" in refused("predict", given, f"output={photos / 'a.jpg'}")
    assert "is a folder" in refused("predict", given, f"output={photos}")
    one = f"input={photos / 'a.jpg'}"
    assert "would replace an input" in refused("predict", one, f"output={photos / 'a.jpg'}")
    for annotated in (photos, photos / "boxes"):
        message = refused("predict", given, "annotate=true", f"annotated_dir={annotated}")
        assert "inside the input folder" in message
    assert "inside the input folder" in refused(
        "predict", one, "annotate=true", f"annotated_dir={photos}"
    )
    validate(compose_config("predict", [f"ckpt_path={ckpt}", given]), "predict")


def test_an_existing_file_elsewhere_is_replaced_only_when_asked(compose_config, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("someone else's\n")
    base = ["ckpt_path=a.ckpt", f"input={tmp_path / 'photos'}", f"output={other}"]
    with pytest.raises(ConfigError, match="exists and is not this run's: add overwrite=true"):
        validate(compose_config("predict", base), "predict")
    validate(compose_config("predict", [*base, "overwrite=true"]), "predict")
    own = compose_config("export", ["ckpt_path=a.ckpt"])
    own_model = tmp_path / "run" / "model.onnx"
    own_model.parent.mkdir(parents=True)
    own_model.write_bytes(b"an earlier export of the same run")
    validate(own, "export")  # the same experiment's own file, in its own run directory


@pytest.mark.parametrize(
    "override", ["detector.min_size=0", "detector.max_side=0", "tracking.smooth_window=0"]
)
def test_predict_sizes_and_windows_below_one_are_one_line(compose_config, tmp_path, override):
    cfg = compose_config("predict", ["ckpt_path=a.ckpt", f"input={tmp_path}", override])
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key} must be a whole number >= 1, got 0"):
        validate(cfg, "predict")
