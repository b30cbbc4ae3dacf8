"""RNG states in checkpoints, on a mocked list of GPUs: a rank saves and restores its own GPU's
stream only, so a run resumed with fewer visible GPUs continues, and under DDP each rank gets its
own stream back (not rank 0's record of that GPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from fer_lightning.runs import fault_tolerance
from fer_lightning.runs.fault_tolerance import STATE_KEY, FaultTolerance
from fer_lightning.runs.state import LOG_ASIDE, csv_log, restore_logged_rows, set_rng_states


class FakeGpus:
    """`count` visible GPUs whose RNG streams are one-byte tensors, indexed as torch's
    `default_generators` are: an index past the visible ones is an IndexError."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, process: int) -> None:
        self.count = count
        # Each process has advanced its own GPU's stream: process p, GPU g holds 10 * p + g + 1
        # on the GPU it trains on, the untouched seed (0) on the others.
        self.streams = {
            g: torch.tensor([10 * process + g + 1 if g == process else 0]) for g in range(count)
        }
        self.restored: dict[int, int] = {}
        for name in ("get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "default_generators", tuple(range(count)))

    def _index(self, device) -> int:
        index = torch.device(device).index or 0
        torch.cuda.default_generators[index]  # an IndexError past the visible GPUs
        return index

    def get_rng_state(self, device="cuda"):
        return self.streams[self._index(device)].clone()

    def set_rng_state(self, state, device="cuda"):
        self.restored[self._index(device)] = int(state[0])

    def get_rng_state_all(self):
        return [self.get_rng_state(g) for g in range(self.count)]

    def set_rng_state_all(self, states):
        for g, state in enumerate(states):
            self.set_rng_state(state, g)


def fake_trainer(rank: int, world: int) -> SimpleNamespace:
    """What FaultTolerance reads of a Trainer at a save between epochs and at the train start."""
    progress = SimpleNamespace(processed=1, started=1)
    return SimpleNamespace(
        global_rank=rank,
        world_size=world,
        is_global_zero=rank == 0,
        strategy=SimpleNamespace(root_device=torch.device(f"cuda:{rank}")),
        fit_loop=SimpleNamespace(
            epoch_progress=SimpleNamespace(current=progress),
            epoch_loop=SimpleNamespace(_broadcast_sigterm_tensor=lambda: None),
        ),
        should_stop=False,
        global_step=5,
        received_sigterm=False,
        callbacks=[],
    )


def saved_states(monkeypatch, visible: int, world: int) -> dict:
    """The `fer_resume` entry of the checkpoint that `world` ranks on `visible` GPUs save (rank 0
    writes it, after the others; a gather returns the values of the ranks that gave one)."""
    given: dict[int, object] = {}

    def gather(trainer, value):
        given[trainer.global_rank] = value
        return [given[rank] for rank in sorted(given)]

    monkeypatch.setattr(fault_tolerance, "every_rank", gather, raising=False)
    checkpoint: dict = {}
    for rank in reversed(range(world)):
        FakeGpus(monkeypatch, visible, process=rank)
        checkpoint = {}
        FaultTolerance(dirpath="unused").on_save_checkpoint(
            fake_trainer(rank, world), None, checkpoint
        )
    return checkpoint[STATE_KEY]


def restore(monkeypatch, state: dict, rank: int, world: int, visible: int) -> FakeGpus:
    gpus = FakeGpus(monkeypatch, visible, process=rank)
    callback = FaultTolerance(dirpath="unused")
    callback._restored = state
    trainer = fake_trainer(rank, world)
    try:
        callback.on_train_start(trainer, None)
    finally:
        callback.teardown(trainer, None, "fit")
    return gpus


def test_a_run_saved_with_two_visible_gpus_resumes_with_one(monkeypatch):
    state = saved_states(monkeypatch, visible=2, world=1)
    gpus = restore(monkeypatch, state, rank=0, world=1, visible=1)
    assert gpus.restored == {0: 1}


def test_each_ddp_rank_gets_its_own_gpu_stream_back(monkeypatch):
    state = saved_states(monkeypatch, visible=2, world=2)
    assert restore(monkeypatch, state, rank=0, world=2, visible=2).restored == {0: 1}
    assert restore(monkeypatch, state, rank=1, world=2, visible=2).restored == {1: 12}


def test_a_run_resumed_on_more_ranks_gives_the_extra_ones_the_last_saved_stream(monkeypatch):
    state = saved_states(monkeypatch, visible=3, world=2)
    assert restore(monkeypatch, state, rank=2, world=3, visible=3).restored == {2: 12}


def earlier_release_state(gpu_streams: list[int]) -> dict:
    """A checkpoint of an earlier release: one entry for every rank, with every visible GPU's
    stream by device index."""
    checkpoint: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        FakeGpus(patch, 1, process=0)
        FaultTolerance(dirpath="unused").on_save_checkpoint(fake_trainer(0, 1), None, checkpoint)
    (entry,) = checkpoint[STATE_KEY]["rng"]
    entry["cuda"] = [torch.tensor([s]) for s in gpu_streams]
    return {**checkpoint[STATE_KEY], "rng": entry}


@pytest.mark.parametrize(
    ("streams", "rank", "expected"),
    [([7, 8], 0, {0: 7}), ([7, 8], 1, {1: 8}), ([7, 8], 2, {}), ([7], 0, {0: 7})],
)
def test_an_earlier_releases_list_of_gpu_streams_restores_this_devices_own(
    monkeypatch, streams, rank, expected
):
    state = earlier_release_state(streams)
    assert restore(monkeypatch, state, rank=rank, world=3, visible=3).restored == expected


def test_a_saved_gpu_stream_is_not_restored_on_the_cpu(monkeypatch):
    (entry,) = saved_states(monkeypatch, visible=1, world=1)["rng"]
    gpus = FakeGpus(monkeypatch, 1, process=0)
    set_rng_states(entry, torch.device("cpu"))
    assert gpus.restored == {}
    set_rng_states(entry, torch.device("cuda"))
    assert gpus.restored == {0: 1}


def test_the_rows_up_to_the_checkpoints_step_are_put_back_and_later_ones_logged_again(tmp_path):
    logger = CSVLogger(tmp_path, name="csv", version="")
    target = csv_log(logger)
    target.parent.mkdir(parents=True)
    aside = target.with_name(target.name + LOG_ASIDE)
    aside.write_text("epoch,step,train/loss\n0,0,2.5\n0,1,2.25\n0,2,2.0\n1,3,1.75\n")
    restore_logged_rows(logger, 2)
    assert not aside.exists()
    assert target.read_text().splitlines() == [
        "epoch,step,train/loss",
        "0,0,2.5",
        "0,1,2.25",
        "0,2,2.0",
    ]
    # The resumed run's rows go on under the same header, widened by a new column.
    logger.log_metrics({"val/acc": 0.5, "epoch": 1}, step=3)
    logger.save()
    assert target.read_text().splitlines() == [
        "epoch,step,train/loss,val/acc",
        "0,0,2.5,",
        "0,1,2.25,",
        "0,2,2.0,",
        "1,3,,0.5",
    ]

    target.write_text("kept\n")  # nothing set aside: a run from the beginning
    restore_logged_rows(logger, 2)
    assert target.read_text() == "kept\n"
