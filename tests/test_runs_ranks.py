"""Votes and agreements of DDP ranks: every rank resumes from the checkpoint rank 0 chose (on a
mocked gather, and on 2 CPU processes with gloo, slow: the processes' imports take a minute on
two loaded cores; the DDP training test of test_ddp.py goes through the same votes)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fer_lightning.errors import ConfigError
from fer_lightning.runs import fault_tolerance
from fer_lightning.runs.checkpoints import AtomicCheckpointIO
from fer_lightning.runs.fault_tolerance import FaultTolerance
from fer_lightning.runs.ranks import every_rank, on_any_rank

WORLD = 2


def trainer_of(rank: int) -> SimpleNamespace:
    strategy = SimpleNamespace(root_device=torch.device("cpu"), checkpoint_io=AtomicCheckpointIO())
    return SimpleNamespace(world_size=WORLD, global_rank=rank, strategy=strategy)


def _ranks(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        trainer = trainer_of(rank)
        results = {
            "any": on_any_rank(trainer, rank == 1, False),
            "every": every_rank(trainer, f"rank{rank}"),
        }
        # Rank 1 saw last.ckpt unreadable (set aside by rank 0) and chose the previous one.
        callback = FaultTolerance(dirpath=out)
        callback.resuming_from = f"{out}/last-prev.ckpt" if rank else f"{out}/last.ckpt"
        callback.setup(trainer, None, "fit")
        results["substitutes"] = trainer.strategy.checkpoint_io.substitutes
        # One rank starts over where the other continues: both refuse.
        callback.resuming_from = None if rank else f"{out}/last.ckpt"
        try:
            callback.setup(trainer, None, "fit")
            results["refused"] = False
        except ConfigError:
            results["refused"] = True
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_rank_that_chose_another_checkpoint_follows_rank_zero(monkeypatch):
    chosen = ["run/last.ckpt", "run/last-prev.ckpt"]
    monkeypatch.setattr(fault_tolerance, "every_rank", lambda trainer, value: chosen)
    trainer = trainer_of(1)
    callback = FaultTolerance(dirpath="run")
    callback.resuming_from = chosen[1]
    callback.setup(trainer, None, "fit")
    assert trainer.strategy.checkpoint_io.substitutes == {chosen[1]: chosen[0]}
    chosen[1] = None
    with pytest.raises(ConfigError, match="disagree on whether to resume"):
        callback.setup(trainer, None, "fit")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    port = 29500 + os.getpid() % 1000
    mp.spawn(_ranks, args=(port, str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
def test_a_flag_of_any_rank_is_every_ranks(results):
    assert [r["any"] for r in results] == [(True, False)] * WORLD
    assert [r["every"] for r in results] == [["rank0", "rank1"]] * WORLD


@pytest.mark.slow
def test_every_rank_resumes_from_rank_zeros_checkpoint(results):
    assert results[0]["substitutes"] == {}
    ((chosen, followed),) = results[1]["substitutes"].items()
    assert chosen.endswith("last-prev.ckpt") and followed.endswith("/last.ckpt")
    assert [r["refused"] for r in results] == [True] * WORLD
