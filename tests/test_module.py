"""MultiTaskModule end to end on samples whose valence and arousal were not annotated (NaN, as
the dataset readers leave them): it trains, and the reports leave those labels out."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from fer_lightning.data.dataset import AffectNetDataset
from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss
from fer_lightning.models import create_model
from fer_lightning.module import MultiTaskModule
from fer_lightning.schedulers import WarmupCosine
from fer_lightning.train import train
from tests.conftest import TINY, tiny_overrides

SHORT = [
    "model=tnet",
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=2",
]


@pytest.fixture
def unannotated(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[int], np.ndarray]], None]:
    """Makes every dataset built afterwards lack valence and arousal (NaN) where `rows(n)` is
    True: a stand-in for a reader of a dataset without them."""

    def patch(rows: Callable[[int], np.ndarray]) -> None:
        original = AffectNetDataset.__init__

        def init(self: AffectNetDataset, *args, **kwargs) -> None:
            original(self, *args, **kwargs)
            self.va[rows(len(self.va))] = np.nan

        monkeypatch.setattr(AffectNetDataset, "__init__", init)

    return patch


def _run(compose_config, tiny_dataset: Path, *extra: str) -> Path:
    cfg = compose_config("train", [*tiny_overrides(tiny_dataset), *SHORT, *extra])
    train(cfg)
    return Path(cfg.paths.output_dir)


def test_masked_va_trains_the_expression_and_reports_va_only_where_labelled(
    compose_config, tiny_dataset, unannotated
):
    """Training and validation samples partly labelled, the test split not at all."""
    test_size = TINY["train_size"] // 5  # the holdout protocol's test split
    unannotated(lambda n: np.ones(n, dtype=bool) if n == test_size else np.arange(n) % 3 == 0)
    run = _run(compose_config, tiny_dataset)
    metrics = json.loads((run / "results" / "metrics.json").read_text())
    assert "test/acc" in metrics and all(np.isfinite(list(metrics.values())))
    assert not [key for key in metrics if "valence" in key or "arousal" in key]
    predictions = pd.read_csv(run / "results" / "predictions.csv")
    assert len(predictions) == 32  # two test batches of 16
    assert predictions[["true_valence", "true_arousal"]].isna().all().all()
    assert predictions[["pred_valence", "pred_arousal"]].notna().all().all()
    intervals = pd.read_csv(run / "results" / "metrics_ci.csv")
    assert not intervals["metric"].str.contains("valence|arousal").any()
    assert not (run / "results" / "valence_arousal.png").exists()
    assert (run / "results" / "test_examples.png").is_file()

    logged = pd.read_csv(run / "csv" / "metrics.csv")
    train = logged[["train/n_expression", "train/n_valence", "train/n_arousal"]].dropna()
    n_expression, n_valence, n_arousal = train.iloc[-1].tolist()
    assert n_expression == 32 and 0 < n_valence == n_arousal < 32  # two shuffled batches of 16
    assert np.isfinite(logged[["train/loss_epoch", "train/loss_valence"]].dropna()).all().all()
    validation = logged[["val/valence_ccc", "val/loss_valence"]].dropna()
    assert len(validation) == 1 and np.isfinite(validation.to_numpy()).all()
    assert logged["test/n_valence"].dropna().tolist() == [0]
    assert logged["test/loss_valence"].dropna().empty  # NaN: no labelled test sample


def test_monitoring_a_va_metric_without_va_labels_is_a_config_error(
    compose_config, tiny_dataset, unannotated
):
    unannotated(lambda n: np.ones(n, dtype=bool))
    with pytest.raises(ConfigError, match="no validation sample has valence/arousal labels"):
        _run(compose_config, tiny_dataset, "callbacks.monitor.metric=val/valence_ccc")


def test_the_sanity_check_does_not_judge_a_va_monitor_on_its_few_batches(
    compose_config, tiny_dataset, unannotated
):
    """The sanity check's batch may lack valence/arousal labels that the whole split has."""
    val_size = TINY["val_size"]
    unannotated(lambda n: np.arange(n) < 16 if n == val_size else np.zeros(n, dtype=bool))
    run = _run(
        compose_config,
        tiny_dataset,
        "callbacks.monitor.metric=val/valence_ccc",
        "++trainer.num_sanity_val_steps=1",
        "++trainer.limit_val_batches=4",
    )
    validation = pd.read_csv(run / "csv" / "metrics.csv")["val/n_valence"].dropna()
    assert validation.tolist() == [val_size - 16]


def test_a_network_of_fewer_classes_than_the_data_is_refused(compose_config):
    module = MultiTaskModule.from_config(compose_config("train", ["model=tnet", "data.classes=7"]))
    module.score_shared_classes(7)
    assert module.scored_classes is None
    with pytest.raises(ConfigError, match="knows 7 expression classes, the data has 8"):
        module.score_shared_classes(8)


def test_a_network_of_more_classes_is_tested_on_the_datas_classes(compose_config):
    module = MultiTaskModule.from_config(compose_config("train", ["model=tnet"]))
    module.score_shared_classes(7)
    assert module.scored_classes == 7
    assert module.test_metrics.expression.num_classes == 7


def test_each_epoch_logs_the_mean_and_count_of_its_own_batches(compose_config, tiny_dataset):
    """The epoch values are logged once per epoch and accumulated at every step: each epoch's
    `train/loss_epoch` is the mean of that epoch's step losses only."""
    steps_per_epoch = 3
    overrides = [
        "model=tnet",
        "test=false",
        "trainer.max_epochs=2",
        f"++trainer.limit_train_batches={steps_per_epoch}",
        "++trainer.limit_val_batches=1",
        "++trainer.log_every_n_steps=1",
    ]
    cfg = compose_config("train", [*tiny_overrides(tiny_dataset), *overrides])
    train(cfg)
    logged = pd.read_csv(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")
    steps = logged.dropna(subset=["train/loss_step"])
    epochs = logged.dropna(subset=["train/loss_epoch"])
    assert epochs["epoch"].tolist() == [0, 1]
    for _, row in epochs.iterrows():
        own = steps.loc[steps["epoch"] == row["epoch"], "train/loss_step"]
        assert len(own) == steps_per_epoch
        assert row["train/loss_epoch"] == pytest.approx(own.mean(), rel=1e-6)
        assert row["train/n_expression"] == steps_per_epoch * cfg.data.batch_size


def test_train_acc_is_the_share_of_the_epochs_training_samples_classified_right():
    """Micro accuracy (docs/run-directory.md), not the mean of the classes' accuracies."""
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    module = MultiTaskModule(net, MultiTaskLoss({"expression": 1.0}, num_classes=8), None)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 7]), 8).float()
    module.train_acc.update(logits, torch.tensor([0, 0, 0, 0]))
    module.train_acc.update(logits[:1], torch.tensor([1]))
    assert float(module.train_acc.compute()) == pytest.approx(3 / 5)


def test_a_checkpoint_saved_before_any_validation_has_no_validation_scores():
    """A checkpoint within the first epoch: its `fer_val_results` (what a search optimises) is
    empty, and loading it gives a module without scores, as a checkpoint of an older release."""
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    module = MultiTaskModule(net, MultiTaskLoss({"expression": 1.0}, num_classes=8), None)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["fer_val_results"] == {}
    module.val_results = {"val/acc": 0.5}
    module.on_load_checkpoint({})
    assert module.val_results == {}


def test_a_stages_epoch_values_are_logged_at_its_first_batch_only():
    """Lightning computes a logged metric object at the epoch's end: logging it again at every
    batch would only cost time. The progress bar shows the loss and the training accuracy."""
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    loss = MultiTaskLoss({"expression": 1.0, "valence": 1.0, "arousal": 1.0}, num_classes=8)
    module = MultiTaskModule(net, loss, None)
    logged = []
    module.log = lambda key, value, **options: logged.append((key, value, options))
    generator = torch.Generator().manual_seed(0)
    logits, va = torch.randn(4, 8, generator=generator), torch.rand(4, 2, generator=generator)
    losses = loss(logits, va, torch.tensor([0, 1, 2, 3]), va.flip(0))
    for stage in ("train", "val", "train", "val"):
        module._log_losses(stage, losses, 4)

    def epoch_values(stage: str, shown: str) -> list:
        return [
            (key, metric, {"on_step": False, "on_epoch": True, "prog_bar": key == shown})
            for key, metric in module.epoch_losses.logged(stage).items()
        ]

    accuracy = (
        "train/acc",
        module.train_acc,
        {"on_step": False, "on_epoch": True, "prog_bar": True},
    )
    assert logged == [
        *epoch_values("train", "train/loss_epoch"),
        accuracy,
        *epoch_values("val", "val/loss"),
    ]
    assert float(module.epoch_losses.logged("val")["val/loss"].count) == 8  # both batches counted


@pytest.mark.parametrize("as_partial", [False, True], ids=["the-class", "a-partial"])
def test_a_step_schedule_is_given_the_runs_steps_however_it_is_passed(as_partial):
    """Hydra passes a partial (`_partial_: true`); Python callers may pass the class itself."""
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    loss = MultiTaskLoss({"expression": 1.0, "valence": 1.0, "arousal": 1.0}, num_classes=8)
    schedule = partial(WarmupCosine, warmup_epochs=1.0) if as_partial else WarmupCosine
    module = MultiTaskModule(net, loss, partial(torch.optim.SGD, lr=1.0), scheduler=schedule)
    # -1 or None (no epoch limit, max_steps ends the run) count as one epoch of all the steps.
    for max_epochs, warmup in ((2, 5), (-1, 10), (None, 10)):
        module._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=max_epochs)
        configured = module.configure_optimizers()["lr_scheduler"]
        assert configured["interval"] == "step"
        assert configured["scheduler"].total_steps == 10
        assert configured["scheduler"].warmup_steps == warmup
    module.scheduler_factory = partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"


def test_a_config_without_a_module_node_takes_the_modules_defaults(compose_config):
    """Which are those conf/train.yaml writes out (docs/configuration.md's table)."""
    cfg = compose_config("train", ["model=tnet"])
    written = MultiTaskModule.from_config(cfg)
    with open_dict(cfg):
        del cfg.module
    module = MultiTaskModule.from_config(cfg)
    options = (
        "channels_last",
        "cpu_channels_last",
        "compile_net",
        "freeze_backbone_epochs",
        "backbone_lr_scale",
        "layer_decay",
        "ema",
        "tta",
    )
    assert [getattr(module, name) for name in options] == [
        getattr(written, name) for name in options
    ]
    assert (module.tta, module.ema, module.freeze_backbone_epochs) == (None, None, 0)


def test_a_test_epoch_without_samples_gives_no_outputs(compose_config):
    """A DDP rank whose shard of a small test split is empty gathers nothing of its own."""
    module = MultiTaskModule.from_config(compose_config("train", ["model=tnet"]))
    module.on_test_epoch_start()
    with pytest.warns(UserWarning, match="self.trainer"):  # no Trainer: nothing is logged
        module.on_test_epoch_end()
    assert module.test_results["outputs"] == {}
