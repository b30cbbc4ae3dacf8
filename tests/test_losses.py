"""The multi-task objective: weights, class weighting, the regression choices, the loss groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from fer_lightning.errors import ConfigError
from fer_lightning.losses import (
    LIKELIHOOD_SCALES,
    TASKS,
    MultiTaskLoss,
    UncertaintyWeightedLoss,
    ccc_loss,
)
from fer_lightning.module import MultiTaskModule
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.train import train
from tests.conftest import tiny_overrides

LOSS_GROUPS = sorted(p.stem for p in (CONFIG_DIR / "loss").glob("*.yaml"))


def _batch(n: int = 32, classes: int = 8):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n, classes, generator=generator)
    va_pred = torch.rand(n, 2, generator=generator) * 2 - 1
    expression = torch.randint(0, classes, (n,), generator=generator)
    va_target = torch.rand(n, 2, generator=generator) * 2 - 1
    return logits, va_pred, expression, va_target


def test_total_is_the_weighted_sum_with_class_weighted_ce():
    logits, va_pred, expression, va_target = _batch()
    loss = MultiTaskLoss({"expression": 0.9, "valence": 0.05, "arousal": 0.05}, num_classes=8)
    class_weights = torch.linspace(0.5, 4.0, 8)
    loss.set_class_weights(class_weights)
    parts = loss(logits, va_pred, expression, va_target)
    ce = F.cross_entropy(logits, expression, weight=class_weights)
    mse_v = F.mse_loss(va_pred[:, 0], va_target[:, 0])
    mse_a = F.mse_loss(va_pred[:, 1], va_target[:, 1])
    assert parts["expression"] == pytest.approx(ce.item(), rel=1e-6)
    assert parts["loss"] == pytest.approx((0.9 * ce + 0.05 * mse_v + 0.05 * mse_a).item(), rel=1e-6)
    unweighted = F.cross_entropy(logits, expression)
    assert abs(parts["expression"].item() - unweighted.item()) > 1e-3


def test_class_weights_travel_in_the_state_dict():
    loss = MultiTaskLoss({"expression": 1.0}, num_classes=7)
    loss.set_class_weights(torch.arange(1.0, 8.0))
    restored = MultiTaskLoss({"expression": 1.0}, num_classes=7)
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(restored.class_weights, torch.arange(1.0, 8.0))


@pytest.mark.parametrize(
    "weights", [{"expression": -0.1, "valence": 1.0}, {"expression": 0.0}, {"expresion": 1.0}]
)
def test_impossible_weights_are_config_errors(weights):
    with pytest.raises(ConfigError, match=r"loss\.weights"):
        MultiTaskLoss(weights, num_classes=8)


def test_unknown_regression_is_a_config_error():
    with pytest.raises(ConfigError, match="huber2"):
        MultiTaskLoss({"expression": 1.0}, num_classes=8, regression="huber2")


def test_config_errors_say_what_was_wrong_and_what_is_allowed():
    with pytest.raises(ConfigError) as negative:
        MultiTaskLoss({"expression": -0.1}, num_classes=8)
    assert str(negative.value) == (
        "loss.weights must hold non-negative expression/valence/arousal weights, got "
        "{'expression': -0.1}"
    )
    with pytest.raises(ConfigError) as typo:
        MultiTaskLoss({"expression": 1.0, "valance": 0.5}, num_classes=8)
    assert str(typo.value).startswith("loss.weights must hold non-negative")
    with pytest.raises(ConfigError) as zero:
        MultiTaskLoss({"expression": 0.0}, num_classes=8)
    assert str(zero.value) == "loss.weights are all zero: at least one task must have a weight > 0"
    with pytest.raises(ConfigError) as unknown:
        MultiTaskLoss({"expression": 1.0}, num_classes=8, regression="huber2")
    assert str(unknown.value) == (
        "unknown loss.regression 'huber2': choose one of mse, l1, smooth_l1, ccc"
    )


@pytest.mark.parametrize(
    ("name", "reference"),
    [("mse", F.mse_loss), ("l1", F.l1_loss), ("smooth_l1", F.smooth_l1_loss), ("ccc", ccc_loss)],
)
def test_each_regression_is_the_named_loss_and_missing_tasks_weigh_zero(name, reference):
    logits, va_pred, expression, va_target = _batch()
    parts = MultiTaskLoss({"valence": 1.0}, num_classes=8, regression=name)(
        logits, va_pred, expression, va_target
    )
    for column, task in enumerate(("valence", "arousal")):
        expected = reference(va_pred[:, column], va_target[:, column]).item()
        assert parts[task].item() == pytest.approx(expected, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(parts["valence"].item(), rel=1e-6)


def test_class_weighted_false_ignores_the_class_weights():
    logits, va_pred, expression, va_target = _batch()
    loss = MultiTaskLoss({"expression": 1.0}, num_classes=8, class_weighted=False)
    loss.set_class_weights(torch.linspace(0.5, 4.0, 8))
    parts = loss(logits, va_pred, expression, va_target)
    expected = F.cross_entropy(logits, expression).item()
    assert parts["expression"].item() == pytest.approx(expected, rel=1e-6)


def test_ccc_loss_matches_the_formula():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, 200)
    p = 0.5 * y + rng.normal(0, 0.2, 200) + 0.1
    covariance = np.mean((y - y.mean()) * (p - p.mean()))
    ccc = 2 * covariance / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)
    got = ccc_loss(torch.tensor(p), torch.tensor(y)).item()
    assert got == pytest.approx((1 - ccc) / 2, abs=1e-6)
    assert ccc_loss(torch.tensor(y), torch.tensor(y)).item() == pytest.approx(0.0, abs=1e-6)


def test_uncertainty_weighting_follows_kendall_et_al():
    logits, va_pred, expression, va_target = _batch()
    loss = UncertaintyWeightedLoss(dict.fromkeys(TASKS, 1.0), num_classes=8, class_weighted=False)
    parts = loss(logits, va_pred, expression, va_target)
    # s = 0: CE + MSE_v / 2 + MSE_a / 2.
    expected = parts["expression"] + (parts["valence"] + parts["arousal"]) / 2
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)

    log_vars = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        loss.log_vars.copy_(log_vars)
    parts = loss(logits, va_pred, expression, va_target)
    scales = torch.tensor([1.0, 0.5, 0.5])
    task_losses = torch.stack([parts[t] for t in TASKS])
    expected = (scales * torch.exp(-log_vars) * task_losses + log_vars / 2).sum()
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    weights = torch.stack([parts[f"weight_{t}"] for t in TASKS])
    assert torch.allclose(weights, scales * torch.exp(-log_vars))

    parts["loss"].backward()
    assert loss.log_vars.grad is not None and loss.log_vars.grad.abs().min() > 0


def test_a_zero_weight_drops_a_task_from_the_uncertainty_loss():
    logits, va_pred, expression, va_target = _batch()
    loss = UncertaintyWeightedLoss(
        {"expression": 1.0, "valence": 0.0, "arousal": 1.0}, num_classes=8
    )
    parts = loss(logits, va_pred, expression, va_target)
    parts["loss"].backward()
    assert loss.log_vars.grad[1] == 0 and parts["weight_valence"] == 0


def _module(compose_config, group: str) -> MultiTaskModule:
    cfg = compose_config(
        "train",
        [
            f"loss={group}",
            "model=tnet",
            "model.dropout=0",
            "data.image_size=32",
            "optimizer.lr=3e-3",
        ],
    )
    return MultiTaskModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
    )


@pytest.mark.parametrize("group", LOSS_GROUPS)
def test_every_loss_group_trains_with_a_finite_falling_loss(compose_config, group):
    torch.manual_seed(0)
    module = _module(compose_config, group)
    optimizer = module.configure_optimizers()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(32, 3, 32, 32, generator=generator)
    expression = torch.arange(32) % 8
    va = torch.rand(32, 2, generator=generator) * 2 - 1
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        logits, va_pred = module(images)
        total = module.loss(logits, va_pred, expression, va)["loss"]
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_the_optimizer_trains_the_learned_task_weights(compose_config):
    module = _module(compose_config, "uncertainty")
    optimized = {
        id(p) for group in module.configure_optimizers().param_groups for p in group["params"]
    }
    assert id(module.loss.log_vars) in optimized
    assert "loss.log_vars" in module.state_dict()


def test_training_logs_the_learned_task_weights(compose_config, tiny_dataset):
    overrides = ["loss=uncertainty", "model=tnet", "optimizer.lr=3e-3", "test=false"]
    short = [
        "trainer.max_epochs=2",
        "++trainer.limit_train_batches=3",
        "++trainer.limit_val_batches=1",
    ]
    cfg = compose_config("train", [*tiny_overrides(tiny_dataset), *overrides, *short])
    train(cfg)
    history = pd.read_csv(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")
    for task, start in zip(TASKS, LIKELIHOOD_SCALES.values(), strict=True):
        weights = history[f"train/loss_weight_{task}"].dropna()
        assert len(weights) == 2 and weights.iloc[-1] != pytest.approx(start, abs=1e-4)


def test_label_smoothing_mixes_the_one_hot_target_with_the_uniform_one():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 8), torch.randint(0, 8, (6,))
    va = torch.zeros(6, 2)
    smoothing = 0.1
    loss = MultiTaskLoss(
        {"expression": 1.0}, num_classes=8, class_weighted=False, label_smoothing=smoothing
    )
    soft = torch.full((6, 8), smoothing / 8).scatter_add_(
        1, target[:, None], torch.full((6, 1), 1 - smoothing)
    )
    expected = -(soft * logits.log_softmax(dim=1)).sum(dim=1).mean()
    got = loss(logits, va, target, va)["expression"]
    torch.testing.assert_close(got, expected)
    with pytest.raises(ConfigError, match="label_smoothing"):
        MultiTaskLoss({"expression": 1.0}, num_classes=8, label_smoothing=1.0)


def _unlabelled(va: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    """`va` with the valence and arousal of `rows` not annotated (NaN), as readers leave them."""
    va = va.clone()
    va[rows] = float("nan")
    return va


@pytest.mark.parametrize("group", LOSS_GROUPS)
def test_a_batch_without_va_labels_gives_the_va_head_no_gradient(compose_config, group):
    torch.manual_seed(0)
    module = _module(compose_config, group)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expression = torch.arange(8) % 8
    va = torch.full((8, 2), float("nan"))
    logits, va_pred = module(images)
    parts = module.loss(logits, va_pred, expression, va)
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"])
    assert parts["valence"] == 0 and parts["arousal"] == 0
    assert [parts[f"n_{task}"].item() for task in TASKS] == [8, 0, 0]
    va_grads = [p.grad for p in module.net.va_head.parameters()]
    assert all(g is None or torch.equal(g, torch.zeros_like(g)) for g in va_grads)
    expression_grads = [p.grad for p in module.net.expression_head.parameters()]
    assert any(g.abs().sum() > 0 for g in expression_grads)
    if group == "uncertainty":  # nor do the learned weights of the absent tasks move
        assert module.loss.log_vars.grad[0] != 0
        assert torch.equal(module.loss.log_vars.grad[1:], torch.zeros(2))


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1", "ccc"])
def test_a_mixed_batch_averages_the_va_loss_over_its_labelled_samples(name):
    logits, va_pred, expression, va_target = _batch()
    va_pred.requires_grad_(True)
    unlabelled = torch.arange(32) % 3 == 0
    loss = MultiTaskLoss(dict.fromkeys(TASKS, 1.0), num_classes=8, regression=name)
    parts = loss(logits, va_pred, expression, _unlabelled(va_target, unlabelled))
    labelled = ~unlabelled
    subset = MultiTaskLoss(dict.fromkeys(TASKS, 1.0), num_classes=8, regression=name)(
        logits[labelled], va_pred[labelled], expression[labelled], va_target[labelled]
    )
    for task in ("valence", "arousal"):
        torch.testing.assert_close(parts[task], subset[task])
        assert parts[f"n_{task}"].item() == int(labelled.sum())
    parts["valence"].backward()
    assert torch.equal(va_pred.grad[unlabelled], torch.zeros(int(unlabelled.sum()), 2))
    assert va_pred.grad[labelled, 0].abs().min() > 0


def test_under_bf16_autocast_the_losses_compute_in_float32():
    loss = MultiTaskLoss({"expression": 0.9, "valence": 0.05, "arousal": 0.05}, num_classes=8)
    generator = torch.Generator().manual_seed(0)
    logits, va = torch.randn(6, 8, generator=generator), torch.rand(6, 2, generator=generator)
    expression, target = torch.arange(6) % 8, torch.rand(6, 2, generator=generator)
    expected = loss(logits, va, expression, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(logits.bfloat16(), va.bfloat16(), expression, target)
    for name, value in expected.items():
        assert mixed[name].dtype == torch.float32, name
        torch.testing.assert_close(mixed[name], value, atol=2e-2, rtol=2e-2)
