"""The epoch values the module logs: weighted means and sums over an epoch's batches, under the
names docs/run-directory.md gives."""

import math

import pytest
import torch

from fer_lightning.losses import MultiTaskLoss, UncertaintyWeightedLoss
from fer_lightning.metrics.epoch import EpochLosses, EpochMean, EpochSum, epoch_key

WEIGHTS = {"expression": 0.9, "valence": 0.05, "arousal": 0.05}


def test_a_masked_mean_is_over_the_labelled_samples_and_nan_without_any():
    mean = EpochMean()
    mean.update(torch.tensor(0.0), torch.tensor(0.0))  # a batch without labels
    assert torch.isnan(mean.compute())
    mean.update(torch.tensor(2.0), torch.tensor(1.0))
    assert mean.compute().item() == 2.0  # one labelled sample is a mean
    mean.update(torch.tensor(1.0), torch.tensor(3.0))
    assert mean.compute().item() == pytest.approx((2.0 + 1.0 * 3) / 4)


def test_a_sum_adds_the_batches():
    total = EpochSum()
    for count in (3.0, 0.0, 5.0):
        total.update(torch.tensor(count))
    assert total.compute().item() == 8.0


def test_the_logged_names_are_the_documented_ones():
    assert epoch_key("train", "loss") == "train/loss_epoch"
    assert epoch_key("val", "loss") == "val/loss"
    assert epoch_key("test", "loss") == "test/loss"
    assert epoch_key("train", "valence") == "train/loss_valence"
    assert epoch_key("test", "weight_arousal") == "test/loss_weight_arousal"
    assert epoch_key("val", "n_expression") == "val/n_expression"


@pytest.mark.parametrize("loss_class", [MultiTaskLoss, UncertaintyWeightedLoss])
def test_epoch_losses_weigh_by_batch_size_and_masked_tasks_by_their_labels(loss_class):
    loss = loss_class(WEIGHTS, num_classes=8)
    epoch = EpochLosses(loss.outputs, ("train", "test"), masked=("valence", "arousal"))
    generator = torch.Generator().manual_seed(0)
    batches = []
    for size, labelled in ((6, 6), (2, 0), (4, 1)):
        logits = torch.randn(size, 8, generator=generator)
        va = torch.rand(size, 2, generator=generator) * 2 - 1
        target = torch.rand(size, 2, generator=generator) * 2 - 1
        target[labelled:] = math.nan
        batches.append((size, loss(logits, va, torch.arange(size) % 8, target)))
    for size, losses in batches:
        epoch.update("train", losses, size)
    logged = {key: float(metric.compute()) for key, metric in epoch.logged("train").items()}
    assert set(logged) == {epoch_key("train", name) for name in loss.outputs}
    samples = sum(size for size, _ in batches)
    for name in ("loss", "expression"):
        mean = sum(float(losses[name]) * size for size, losses in batches) / samples
        assert logged[epoch_key("train", name)] == pytest.approx(mean, rel=1e-6)
    labelled = sum(float(losses["n_valence"]) for _, losses in batches)
    assert logged["train/n_valence"] == labelled == 7
    assert logged["train/n_expression"] == samples
    valence = sum(float(losses["valence"] * losses["n_valence"]) for _, losses in batches)
    assert logged["train/loss_valence"] == pytest.approx(valence / labelled, rel=1e-6)
    assert set(epoch.logged("test")) == {epoch_key("test", name) for name in loss.outputs}
