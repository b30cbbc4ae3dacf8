"""A run with a weight average, killed within an epoch and rerun, ends bit-identical to an
uninterrupted one: the average, its update count and the weights (docs/resuming.md)."""

from __future__ import annotations

import signal

import pytest
import torch

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
