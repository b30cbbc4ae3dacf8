"""End to end: the real configs compose, train, test and leave their files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from fer_lightning.eval import evaluate
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.presets import PAPER_ROWS
from fer_lightning.train import train
from tests.conftest import annotation, tiny_overrides
from tests.test_eval import assert_matches_the_network

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted({*(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")), *PAPER_ROWS})


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(compose_config, experiment):
    cfg = compose_config("train", [f"experiment={experiment}"])
    assert cfg.model.name
    assert 0 < cfg.loss.weights.expression <= 1
    assert cfg.trainer.max_epochs >= 1


@pytest.mark.parametrize(
    ("experiment", "model", "batch_size", "max_epochs"),
    [
        ("paper_squeezenet", "squeezenet", 128, 30),
        ("paper_tnet", "tnet", 512, 30),
        ("paper_efficientnet", "efficientnet_b0", 32, 12),
        ("paper_mobilenet", "mobilenet_v3_large", 512, 12),
    ],
)
def test_paper_experiments_are_the_original_rows(
    compose_config, experiment, model, batch_size, max_epochs
):
    cfg = compose_config("train", [f"experiment={experiment}"])
    assert (cfg.model.name, cfg.data.batch_size, cfg.trainer.max_epochs) == (
        model,
        batch_size,
        max_epochs,
    )
    assert (cfg.optimizer.lr, cfg.scheduler.eta_min, cfg.loss.weights.expression) == (
        1e-4,
        1e-7,
        0.9,
    )
    assert (cfg.data.protocol, cfg.model.pretrained, cfg.callbacks.early_stopping) == (
        "holdout",
        False,
        None,
    )


def test_training_lowers_the_loss_and_leaves_its_files(compose_config, tiny_dataset):
    cfg = compose_config(
        "train",
        [*tiny_overrides(tiny_dataset), "model=tnet", "optimizer.lr=3e-3", "trainer.max_epochs=4"],
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    history = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = history[0].split(",")
    column = header.index("train/loss_epoch")
    losses = [float(r.split(",")[column]) for r in history[1:] if r.split(",")[column]]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    written = json.loads((run / "results" / "metrics.json").read_text())
    assert written["test/acc"] == pytest.approx(metrics["acc"])
    assert {"test/f1_macro", "test/valence_rmse", "test/valence_ccc", "test/arousal_ccc"} <= set(
        written
    )

    eval_cfg = compose_config(
        "eval",
        [
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "trainer.accelerator=cpu",
            f"paths.output_dir={run / 'eval'}",
        ],
    )
    evaluated = evaluate(eval_cfg)
    # train also returns the best checkpoint's val/ metrics, for a search to optimise.
    assert set(evaluated) == {name for name in metrics if not name.startswith("val/")}
    assert f"val/{next(iter(evaluated))}" in metrics


def test_results_are_the_best_checkpoints_network_on_the_test_samples(trained_run):
    (best,) = (trained_run / "checkpoints").glob("best-*.ckpt")
    assert_matches_the_network(trained_run / "results", best, "test", flip=False)


def loss_class_weights(checkpoint: Path) -> np.ndarray:
    """The class weights the checkpoint's loss applies to cross-entropy."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    (key,) = [k for k in state if k.startswith("loss.") and k.endswith("class_weights")]
    return state[key].numpy()


def test_the_loss_uses_sklearns_balanced_weights_of_the_training_split(trained_run, tiny_dataset):
    # Holdout protocol: the training split is train_set less the test split (predictions.csv).
    tested = set(pd.read_csv(trained_run / "results" / "predictions.csv")["path"])
    training = [
        p for p in (tiny_dataset / "train_set" / "images").iterdir() if str(p) not in tested
    ]
    assert len(tested) > 0 and len(training) == len(list(training[0].parent.iterdir())) - len(
        tested
    )
    labels = np.array([int(annotation(path, "exp")) for path in training])
    expected = compute_class_weight("balanced", classes=np.arange(8), y=labels)
    assert expected.max() > 2 * expected.min()  # imbalanced enough for the check to mean something
    for checkpoint in (trained_run / "checkpoints").glob("*.ckpt"):
        np.testing.assert_allclose(loss_class_weights(checkpoint), expected, rtol=1e-6)


def test_a_balanced_sampler_leaves_the_loss_unweighted(compose_config, tiny_dataset):
    short = [
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=1",
        "++trainer.limit_val_batches=1",
    ]
    cfg = compose_config(
        "train",
        [
            *tiny_overrides(tiny_dataset),
            "model=tnet",
            "data.sampler=balanced",
            "test=false",
            *short,
        ],
    )
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    np.testing.assert_array_equal(loss_class_weights(last), np.ones(8))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_missing_dataset_is_one_line(tmp_path):
    result = _run(
        "fer_lightning.train", "data=affectnet", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "Dataset" in last and "data=synthetic" in last
    assert "Traceback" not in result.stderr


def test_unknown_model_is_one_line(tmp_path, tiny_dataset):
    result = _run(
        "fer_lightning.train",
        *tiny_overrides(tiny_dataset),
        "model=squeezenet",
        "model.name=no_such_net",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no_such_net" in result.stderr.strip().splitlines()[-1]


CORE_MODELS = [
    "squeezenet",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "resnet18",
    "tnet",
]
OTHER_MODELS = [
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "vgg16",
    "vit_b_16",
    "regnet_y_400mf",
]


def _fast_dev_run(compose_config, tiny_dataset, name: str) -> dict[str, float]:
    # The smallest input each network accepts (torchvision's metadata), rounded up.
    size = {"inception_v3": 80, "efficientnet_v2_s": 48, "efficientnet_v2_m": 48}.get(name, 32)
    cfg = compose_config(
        "train",
        [
            *tiny_overrides(tiny_dataset),
            f"model={name}",
            f"data.image_size={size}",
            "data.batch_size=4",
            "trainer.fast_dev_run=true",
        ],
    )
    return train(cfg)


@pytest.mark.parametrize("name", CORE_MODELS)
def test_fast_dev_run_for_each_original_model(compose_config, tiny_dataset, name):
    metrics = _fast_dev_run(compose_config, tiny_dataset, name)
    assert 0.0 <= metrics["acc"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHER_MODELS)
def test_fast_dev_run_for_other_models(compose_config, tiny_dataset, name):
    metrics = _fast_dev_run(compose_config, tiny_dataset, name)
    assert 0.0 <= metrics["acc"] <= 1.0


@pytest.mark.parametrize("sampler", ["shuffle", "balanced"])
def test_seven_classes_train_with_either_sampler(compose_config, tiny_dataset, sampler):
    # data.classes is the one class count: the heads, the loss's class weights and the metrics.
    cfg = compose_config(
        "train",
        [
            *tiny_overrides(tiny_dataset),
            "model=tnet",
            "data.classes=7",
            f"data.sampler={sampler}",
            "trainer.fast_dev_run=true",
        ],
    )
    assert cfg.model.num_classes == cfg.loss.num_classes == 7
    metrics = train(cfg)
    assert 0.0 <= metrics["acc"] <= 1.0
    assert "f1_6" in metrics and "f1_7" not in metrics


def test_an_unknown_group_option_is_named_in_one_line():
    from fer_lightning.cli import unknown_choice

    assert unknown_choice(["model=tnet", "data=synthetic", "seed=3"]) is None
    assert unknown_choice(["model=convnext_tiny", "logger=[csv,wandb]"]) is None
    problem = unknown_choice(["trainer=cpu", "model=tnet,resnet5"])
    assert problem.startswith("unknown model 'resnet5': choose ") and "tnet" in problem
    assert (
        unknown_choice(["data=imagenet"])
        == "unknown data 'imagenet': choose affectnet, affectnet_csv, fer2013, folders, manifest, "
        "multi, rafdb, synthetic"
    )


def test_resuming_a_checkpoint_of_another_network_is_refused(compose_config, tiny_dataset):
    from fer_lightning.errors import ConfigError
    from fer_lightning.runs.checkpoints import resume_checkpoint

    cfg = compose_config(
        "train", [*tiny_overrides(tiny_dataset), "model=tnet", "trainer.fast_dev_run=true"]
    )
    train(cfg)
    run = Path(cfg.paths.output_dir)
    other = compose_config("train", [*tiny_overrides(tiny_dataset), "model=squeezenet"])
    with pytest.raises(ConfigError, match="resume=false"):
        resume_checkpoint(other, run)
    assert resume_checkpoint(cfg, run) == str(run / "checkpoints" / "last.ckpt")


def _run_of(trained_run: Path, *overrides: str):
    """The config of the `trained_run` fixture's command, with `overrides` added."""
    from tests.conftest import compose_in

    run = ["model=tnet", "optimizer.lr=3e-3", "trainer.max_epochs=2"]
    return compose_in(
        trained_run.parent, "train", [*tiny_overrides_of(trained_run), *run, *overrides]
    )


def tiny_overrides_of(trained_run: Path) -> list[str]:
    saved = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    return tiny_overrides(Path(saved["fer_config"]["data"]["root"]))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("seed=1", "seed 42 -> 1"),
        ("optimizer.lr=0.1", "optimizer.lr 0.003 -> 0.1"),
        ("data.batch_size=8", "data.batch_size 16 -> 8"),
        ("optimizer=sgd", "optimizer._target_ torch.optim.Adam -> torch.optim.SGD"),
        ("loss=uncertainty", "loss._target_"),
        ("trainer.max_epochs=1", "trainer.max_epochs 2 -> 1"),
    ],
)
def test_a_rerun_of_another_experiment_is_refused_naming_the_keys(trained_run, override, named):
    from fer_lightning.errors import ConfigError

    record = (trained_run / "split.json").read_bytes()
    with pytest.raises(ConfigError, match="resume=false") as error:
        train(_run_of(trained_run, override))
    assert named in str(error.value) and "\n" not in str(error.value)
    assert (trained_run / "split.json").read_bytes() == record


def test_a_changed_dataset_keeps_the_runs_split_and_a_raised_max_epochs_continues(
    tiny_dataset, tmp_path, monkeypatch
):
    from fer_lightning.data.datamodule import AffectNetDataModule
    from fer_lightning.errors import ConfigError
    from tests.conftest import compose_in

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    short = ["model=tnet", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1"]
    run = [*tiny_overrides(root), "data.synthetic=null", *short]
    train(compose_in(tmp_path, "train", [*run, "trainer.max_epochs=1", "test=false"]))
    record_file = tmp_path / "run" / "split.json"
    record = json.loads(record_file.read_text())
    images, annotations = root / "train_set" / "images", root / "train_set" / "annotations"
    for k in range(8):  # added while the run was stopped: a fresh draw would move samples
        shutil.copy(images / "0.jpg", images / f"added{k}.jpg")
        for part in ("exp", "val", "aro"):
            shutil.copy(annotations / f"0_{part}.npy", annotations / f"added{k}_{part}.npy")
    trained = []
    setup = AffectNetDataModule.setup

    def record_setup(self, stage=None):
        setup(self, stage)
        trained.append({Path(p).stem for p in self.sample_paths("train")})

    monkeypatch.setattr(AffectNetDataModule, "setup", record_setup)
    train(compose_in(tmp_path, "train", [*run, "trainer.max_epochs=2"]))
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4  # two epochs of two batches: the second one trained
    assert json.loads(record_file.read_text()) == record
    assert trained[0] == {key.split("/")[1] for key in record["train"]}
    tested = {
        Path(p).stem for p in pd.read_csv(tmp_path / "run" / "results" / "predictions.csv")["path"]
    }
    assert tested == {key.split("/")[1] for key in record["test"]} and not tested & trained[0]

    (images / f"{record['test'][0].split('/')[1]}.jpg").unlink()
    with pytest.raises(ConfigError, match="gone from") as error:
        train(compose_in(tmp_path, "train", [*run, "trainer.max_epochs=3"]))
    assert "\n" not in str(error.value)
    assert json.loads(record_file.read_text()) == record


def test_eval_of_a_runs_checkpoint_scores_the_runs_test_samples(trained_run, tmp_path):
    record = json.loads((trained_run / "split.json").read_text())
    (best,) = (trained_run / "checkpoints").glob("best-*.ckpt")
    cfg = compose_in_eval(tmp_path, best)
    evaluate(cfg)
    tested = pd.read_csv(tmp_path / "eval" / "results" / "predictions.csv")["path"]
    assert sorted(f"train_set/{Path(p).stem}" for p in tested) == sorted(record["test"])


def compose_in_eval(tmp_path: Path, checkpoint: Path):
    from tests.conftest import compose_in

    return compose_in(
        tmp_path,
        "eval",
        [
            f"ckpt_path={checkpoint}",
            "trainer.accelerator=cpu",
            f"paths.output_dir={tmp_path / 'eval'}",
        ],
    )


def test_ckpt_path_continues_only_the_same_experiment(trained_run, tmp_path):
    from fer_lightning.errors import ConfigError
    from tests.conftest import compose_in

    last = trained_run / "checkpoints" / "last.ckpt"
    run = [*tiny_overrides_of(trained_run), "model=tnet", "trainer.max_epochs=2"]
    with pytest.raises(ConfigError, match=f"init_from={last}"):
        train(compose_in(tmp_path, "train", [*run, "optimizer.lr=0.5", f"ckpt_path={last}"]))
    with pytest.raises(ConfigError, match="exclude each other"):
        train(compose_in(tmp_path, "train", [*run, f"ckpt_path={last}", f"init_from={last}"]))


def test_init_from_starts_a_new_run_from_the_weights_only(trained_run, tmp_path):
    from fer_lightning.errors import ConfigError
    from fer_lightning.module import MultiTaskModule
    from fer_lightning.runs.init_from import load_initial_weights
    from tests.conftest import compose_in

    last = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_in(tmp_path, "train", [*tiny_overrides_of(trained_run), "model=tnet", "seed=3"])
    module = MultiTaskModule.from_config(cfg)
    load_initial_weights(module.net, "tnet", last)
    weights = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.equal(v, weights[f"net.{k}"]) for k, v in module.net.state_dict().items())
    other = compose_in(tmp_path, "train", [*tiny_overrides_of(trained_run), "model=squeezenet"])
    with pytest.raises(ConfigError, match="does not fit this run's squeezenet"):
        load_initial_weights(MultiTaskModule.from_config(other).net, "squeezenet", last)

    short = ["trainer.max_epochs=1", "++trainer.limit_train_batches=1", "test=false"]
    train(
        compose_in(
            tmp_path,
            "train",
            [*tiny_overrides_of(trained_run), "model=tnet", "seed=3", f"init_from={last}", *short],
        )
    )
    started = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert started["epoch"] == 0 and started["global_step"] == 1
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    assert record != json.loads((trained_run / "split.json").read_text())  # its own split (seed 3)


def test_a_rerun_with_another_optimizer_is_one_line_on_the_command_line(trained_run, tmp_path):
    result = _run(
        "fer_lightning.train",
        *tiny_overrides_of(trained_run),
        "model=tnet",
        "optimizer.lr=3e-3",
        "trainer.max_epochs=2",
        "optimizer=sgd",
        f"hydra.run.dir={trained_run}",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: ")
        and "optimizer._target_ torch.optim.Adam -> torch.optim.SGD" in line
    )


def test_the_hsemotion_preset_is_their_protocol(compose_config):
    cfg = compose_config("train", ["experiment=hsemotion_b0", "model.weights=faces.pt"])
    assert (cfg.model.library, cfg.model.name, cfg.model.weights) == (
        "timm",
        "tf_efficientnet_b0",
        "faces.pt",
    )
    assert (cfg.data.protocol, cfg.data.image_size, cfg.data.batch_size) == ("official", 224, 64)
    assert (cfg.module.freeze_backbone_epochs, cfg.trainer.max_epochs) == (3, 9)
    assert (cfg.optimizer.lr, cfg.scheduler.milestones, cfg.scheduler.gamma) == (1e-3, [3], 0.1)
    assert (cfg.loss.label_smoothing, cfg.loss.regression, cfg.data.augment_inplace) == (
        0.1,
        "ccc",
        [],
    )


def test_the_hsemotion_preset_without_its_weights_file_is_a_config_error(compose_config, tmp_path):
    from hydra.utils import instantiate

    overrides = ["experiment=hsemotion_b0", f"model.weights={tmp_path / 'faces.pt'}"]
    with pytest.raises(Exception, match=r"model.weights file .*faces.pt does not exist"):
        instantiate(compose_config("train", overrides).model)


def test_train_false_tests_the_runs_best_checkpoint_and_fits_nothing(
    trained_run, tiny_dataset, tmp_path
):
    from tests.conftest import compose_in, trained_overrides

    run_dir = tmp_path / "run"  # compose_in's run directory, holding a copy of the trained run
    shutil.copytree(trained_run, run_dir)
    shutil.rmtree(run_dir / "results")
    saved = {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    cfg = compose_in(tmp_path, "train", [*trained_overrides(tiny_dataset), "train=false"])
    metrics = train(cfg)
    written = json.loads((run_dir / "results" / "metrics.json").read_text())
    assert written == json.loads((trained_run / "results" / "metrics.json").read_text())
    assert metrics["acc"] == written["test/acc"]
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()} == saved


def test_train_false_tests_ckpt_path_or_says_there_is_nothing_to_test(
    trained_run, tiny_dataset, tmp_path
):
    from fer_lightning.errors import ConfigError
    from tests.conftest import compose_in, trained_overrides

    overrides = [*trained_overrides(tiny_dataset), "train=false"]
    with pytest.raises(ConfigError, match=r"train=false tests the run's best checkpoint, but "):
        train(compose_in(tmp_path, "train", overrides))
    (best,) = (trained_run / "checkpoints").glob("best-*.ckpt")
    train(compose_in(tmp_path, "train", [*overrides, f"ckpt_path={best}"]))
    written = json.loads((tmp_path / "run" / "results" / "metrics.json").read_text())
    assert written == json.loads((trained_run / "results" / "metrics.json").read_text())
    assert not (tmp_path / "run" / "checkpoints").exists()
