"""The weight average: a frozen copy of the network, its decay checked, and a run with one,
killed within an epoch and rerun, ends bit-identical to an uninterrupted one: the average, its
update count and the weights (docs/resuming.md)."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.runs.ema import WeightAverage
from tests.test_runs_fault_tolerance import (
    BATCHES,
    assert_same_run,
    checkpoint,
    command,
    interrupt,
    run,
)

EMA = "module.ema_decay=0.9"


@pytest.fixture(scope="module")
def reference(tiny_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ema") / "reference"
    run(command(tiny_dataset, run_dir, EMA))
    return run_dir


@pytest.mark.slow
def test_killed_within_an_epoch_the_rerun_ends_with_the_same_average(
    reference, tiny_dataset, tmp_path
):
    args = command(tiny_dataset, tmp_path / "run", EMA)
    status, _ = interrupt(args, step=BATCHES + 4, signum=signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert checkpoint(tmp_path / "run")["global_step"] % BATCHES != 0
    assert "resuming from" in run(args)
    assert_same_run(tmp_path / "run", reference)
    state = checkpoint(reference)["state_dict"]
    assert int(state["ema.updates"]) == 2 * BATCHES
    assert any(not torch.equal(state[k], state[f"ema.{k}"]) for k in state if k.startswith("net."))


@pytest.mark.parametrize("decay", [0, 0.0, 1, 1.5, -0.5])
def test_a_decay_outside_0_1_is_refused_in_one_line(decay):
    with pytest.raises(ConfigError) as refused:
        WeightAverage(nn.Linear(2, 1), decay)
    assert str(refused.value) == f"module.ema_decay must be in (0, 1) or null, got {decay!r}"


def test_the_average_starts_as_a_frozen_copy_that_has_counted_no_update():
    net = nn.Linear(2, 1)
    average = WeightAverage(net, 0.9)
    assert average.net is not net and average.net.weight is not net.weight
    assert torch.equal(average.net.weight, net.weight)
    assert not any(p.requires_grad for p in average.net.parameters())
    state = average.state_dict()
    assert state["updates"].dtype == torch.long and int(state["updates"]) == 0
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not torch.equal(average.net.weight, net.weight)  # a copy, not the same tensors
