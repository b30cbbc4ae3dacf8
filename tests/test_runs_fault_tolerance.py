"""Resuming: an interrupted run, rerun with the same command, ends exactly as an uninterrupted one.

The runs go through the real CLI in subprocesses, which are killed (SIGKILL, as a power cut would)
or signalled (SIGTERM, as SLURM does) once a checkpoint within an epoch exists. Two epochs of 12
batches, a checkpoint every 2 optimizer steps; "exactly" means every tensor of the final weights
and every byte of the CSV log (one row per step, flushed at once) equal the uninterrupted run's.
A signal at an epoch's very end, which no kill can aim at, is driven in process.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.runs import fault_tolerance
from fer_lightning.runs.fault_tolerance import FaultTolerance, exit_status
from fer_lightning.runs.state import rng_states
from tests.conftest import subprocess_env, tiny_overrides

EVERY = 2  # checkpoint.every_n_steps
BATCHES = 12  # per epoch: 192 training samples in batches of 16


def command(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fer_lightning.train",
        *tiny_overrides(root),
        "model=tnet",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "test=false",
        f"checkpoint.every_n_steps={EVERY}",
        "trainer.log_every_n_steps=1",
        "+logger.csv.flush_logs_every_n_steps=1",
        *extra,
        f"hydra.run.dir={run_dir}",
    ]


def run(args: list[str]) -> str:
    result = subprocess.run(
        args,
        env=subprocess_env(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def interrupt(args: list[str], step: int, signum: int, delay: float = 0.0) -> tuple[int, str]:
    """Starts the command and sends `signum` `delay` seconds after it reports `last.ckpt` saved at
    `step` or later."""
    process = subprocess.Popen(
        args,
        env=subprocess_env(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen = []
    for line in iter(process.stdout.readline, b""):
        seen.append(line.decode())
        saved = re.search(r"saved .*last\.ckpt \(epoch \d+, step (\d+)\)", seen[-1])
        if saved and int(saved.group(1)) >= step:
            time.sleep(delay)
            process.send_signal(signum)
            break
    else:
        pytest.fail(f"the run ended before step {step}:\n{''.join(seen)[-3000:]}")
    seen.append(process.stdout.read().decode())
    return process.wait(timeout=120), "".join(seen)


def checkpoint(run_dir: Path, name: str = "last.ckpt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)


def assert_same_run(run_dir: Path, reference: Path) -> None:
    weights, expected = checkpoint(run_dir)["state_dict"], checkpoint(reference)["state_dict"]
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    log, expected_log = (d / "csv" / "metrics.csv" for d in (run_dir, reference))
    assert log.read_text() == expected_log.read_text()


@pytest.fixture(scope="module")
def reference(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    run(command(tiny_dataset, run_dir))
    return run_dir


def test_killed_within_an_epoch_the_rerun_ends_bit_identical(reference, tiny_dataset, tmp_path):
    args = command(tiny_dataset, tmp_path / "run")
    status, _ = interrupt(args, step=BATCHES + 4, signum=signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert checkpoint(tmp_path / "run")["global_step"] % BATCHES != 0  # within epoch 2
    assert "resuming from" in run(args)
    assert_same_run(tmp_path / "run", reference)


def test_sigterm_saves_and_exits_then_the_rerun_ends_bit_identical(
    reference, tiny_dataset, tmp_path
):
    # With 2 persistent worker processes, which fetch ahead of training: the same data all the same.
    args = command(tiny_dataset, tmp_path / "run", "data.loader=processes", "data.num_workers=2")
    status, output = interrupt(args, step=BATCHES + 2, signum=signal.SIGTERM)
    assert status == exit_status(signal.SIGTERM) == 143
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert checkpoint(tmp_path / "run")["global_step"] % BATCHES != 0
    run(args)
    assert_same_run(tmp_path / "run", reference)


def test_an_unreadable_last_checkpoint_falls_back_to_the_previous_one(
    reference, tiny_dataset, tmp_path
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100_000])  # cut short, as by a full disk
    # Resumed with 2 loader threads (data.loader's default backend) this time.
    output = run(command(tiny_dataset, run_dir, "data.num_workers=2"))
    warnings = [line for line in output.splitlines() if "last.ckpt" in line and "WARNING" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "cannot read checkpoint" in warnings[0] and "last-prev.ckpt" in warnings[0]
    assert (run_dir / "checkpoints" / "last.ckpt.unreadable").is_file()
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_killed_three_times_at_random_the_run_ends_bit_identical(reference, tiny_dataset, tmp_path):
    args = command(tiny_dataset, tmp_path / "run")
    rng = random.Random(0)
    steps = sorted(rng.sample(range(EVERY, 2 * BATCHES - 3 * EVERY), 3))
    for step in steps:
        status, _ = interrupt(args, step, signal.SIGKILL, delay=rng.uniform(0, 0.2))
        assert status == -signal.SIGKILL
        rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",").index("step")
        trained = 1 + max(int(row.split(",")[header]) for row in rows[1:])
        resumed_at = checkpoint(tmp_path / "run")["global_step"]
        assert 0 <= trained - resumed_at <= EVERY  # the rerun repeats at most one interval
    run(args)
    assert_same_run(tmp_path / "run", reference)


def test_a_signal_while_testing_exits_with_its_status_and_a_message(tmp_path, caplog):
    callback = FaultTolerance(str(tmp_path))
    callback.on_test_start(None, None)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as ended, caplog.at_level(logging.WARNING):
            callback.on_test_batch_end(None, None, None, None, 0)
    finally:
        callback.on_test_end(None, None)
    assert ended.value.code == 143
    assert "stopped by SIGTERM while testing" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("signalled", [True, False])
def test_a_signal_at_an_epochs_end_saves_it_and_exits_before_the_next_batch(tmp_path, signalled):
    """Between an epoch's last batch and its end (in process, on a stand-in Trainer)."""
    saved: list[bool] = []

    def save_checkpoint(path: Path, weights_only: bool) -> None:
        saved.append(weights_only)
        Path(path).write_bytes(b"epoch 1")

    trainer = SimpleNamespace(
        world_size=1,
        current_epoch=0,
        global_step=12,
        is_global_zero=True,
        loggers=[],
        save_checkpoint=save_checkpoint,
    )
    callback = FaultTolerance(dirpath=str(tmp_path))
    callback._signal = signal.SIGTERM if signalled else None
    callback.on_train_epoch_end(trainer, None)
    assert saved == [False]  # the whole state, optimizer included
    if signalled:
        with pytest.raises(SystemExit) as exited:
            callback.on_train_batch_start(trainer, None, None, 0)
        assert exited.value.code == exit_status(signal.SIGTERM)
    else:
        callback.on_train_batch_start(trainer, None, None, 0)
    assert (tmp_path / "last.ckpt").read_bytes() == b"epoch 1"


class EpochOfBatches:
    """A stand-in Trainer that runs one epoch's batch hooks and records at which optimizer steps
    the callback saved (each save a file naming its step)."""

    def __init__(self, world_size: int = 1, accumulate: int = 1, batches: int = BATCHES) -> None:
        self.world_size, self.accumulate_grad_batches = world_size, accumulate
        self.num_training_batches, self.current_epoch, self.global_step = batches, 0, 0
        self.is_global_zero, self.loggers = True, []
        self.saved: list[int] = []

    def save_checkpoint(self, path: Path, weights_only: bool) -> None:
        assert not weights_only  # the whole state, optimizer included
        self.saved.append(self.global_step)
        Path(path).write_text(f"step {self.global_step}")

    def run(self, callback: FaultTolerance, before_batch=lambda batch: None) -> list[int]:
        for batch in range(self.num_training_batches):
            before_batch(batch)
            callback.on_train_batch_start(self, None, None, batch)
            self.global_step = (batch + 1) // self.accumulate_grad_batches
            callback.on_train_batch_end(self, None, None, None, batch)
        return self.saved


@pytest.fixture
def clock(monkeypatch) -> SimpleNamespace:
    """`time.monotonic` at `clock.now` seconds."""
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(time, "monotonic", lambda: clock.now)
    return clock


@pytest.mark.parametrize(
    ("every", "accumulate", "saved"),
    [
        (1, 1, list(range(1, BATCHES))),
        (2, 1, [2, 4, 6, 8, 10]),
        (5, 1, [5, 10]),
        (1, 2, [1, 2, 3, 4, 5]),
        (2, 3, [2]),
    ],
)
def test_within_an_epoch_a_checkpoint_follows_every_nth_optimizer_step(
    tmp_path, every, accumulate, saved
):
    """Never at the epoch's last batch (its end saves), never between accumulated batches."""
    callback = FaultTolerance(str(tmp_path), every_n_steps=every, every_minutes=None)
    assert EpochOfBatches(accumulate=accumulate).run(callback) == saved
    assert not callback._exit_pending


def test_a_checkpoint_is_due_when_every_minutes_have_passed_since_the_last_save(tmp_path, clock):
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=1)
    since = {3: 60.0, 7: 59.9, 9: 120.0}  # seconds since the last save, before these batches

    def set_clock(batch: int) -> None:
        callback._last_save, clock.now = 1000.0, 1000.0 + since.get(batch, 0.0)

    assert EpochOfBatches().run(callback, set_clock) == [4, 10]


def test_a_signal_saves_at_the_next_step_and_exits_before_the_next_batch(tmp_path, caplog):
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=None)

    def signal_at(batch: int) -> None:
        if batch == 5:
            callback._signal = signal.SIGTERM

    trainer = EpochOfBatches()
    with pytest.raises(SystemExit) as exited, caplog.at_level(logging.INFO):
        trainer.run(callback, signal_at)
    assert exited.value.code == exit_status(signal.SIGTERM)
    assert trainer.saved == [6]
    assert (tmp_path / "last.ckpt").read_text() == "step 6"
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"saved {tmp_path / 'last.ckpt'} (epoch 0, step 6)"]


def test_ddp_ranks_vote_on_a_signal_and_the_clock_every_ten_batches(tmp_path, monkeypatch, clock):
    votes: list[tuple[bool, ...]] = []

    def on_any_rank(voting, *flags: bool) -> tuple[bool, ...]:
        assert voting is trainer
        votes.append(flags)
        return (False, True)  # no rank was signalled; one is overdue

    monkeypatch.setattr("fer_lightning.runs.fault_tolerance.on_any_rank", on_any_rank)
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=10)
    callback._signal = signal.SIGUSR1
    clock.now += 700  # this rank is overdue too, at every batch
    # 24 batches: votes after the 10th and 20th, and nothing staged between them.
    trainer = EpochOfBatches(world_size=2, batches=24)
    assert trainer.run(callback) == [10, 20]
    assert votes == [(True, True), (True, True)]
    assert not callback._exit_pending  # the vote said no rank was signalled


def test_only_rank_zero_commits_the_checkpoint_it_wrote(tmp_path):
    """On the other ranks Lightning's save writes no file: there is nothing of theirs to commit."""
    trainer = EpochOfBatches()
    trainer.is_global_zero = False
    trainer.save_checkpoint = lambda path, weights_only: trainer.saved.append(trainer.global_step)
    callback = FaultTolerance(str(tmp_path), every_n_steps=5, every_minutes=None)
    assert trainer.run(callback) == [5, 10]
    assert list(tmp_path.iterdir()) == []


class CountingLogger:
    """A logger stand-in that records, at each flush, what `last.ckpt` held then."""

    def __init__(self, last: Path) -> None:
        self.last, self.flushes = last, []

    def save(self) -> None:
        self.flushes.append(self.last.read_text() if self.last.exists() else None)


def test_the_rows_of_a_checkpoints_step_are_flushed_once_before_it_becomes_last_ckpt(tmp_path):
    """The CSV log then has every row up to the step of the `last.ckpt` a rerun resumes from."""
    logger = CountingLogger(tmp_path / "last.ckpt")
    trainer = EpochOfBatches()
    trainer.loggers = [logger]
    callback = FaultTolerance(str(tmp_path), every_n_steps=5, every_minutes=None)

    def save_checkpoint(path: Path, weights_only: bool) -> None:
        EpochOfBatches.save_checkpoint(trainer, path, weights_only)
        callback._flush_pending = True  # as Lightning's save calls on_save_checkpoint

    trainer.save_checkpoint = save_checkpoint
    assert trainer.run(callback) == [5, 10]
    assert logger.flushes == [None, "step 5"]  # each before its checkpoint's commit, once


def started(
    callback: FaultTolerance, received_sigterm: bool = False, rank: int = 0, module=None
) -> EpochOfBatches:
    """A stand-in Trainer (of process `rank`) on which `callback`'s training of `module` has
    started; the signal handlers it installed are put back at once."""
    trainer = EpochOfBatches()
    loop = SimpleNamespace(_broadcast_sigterm_tensor=object())
    trainer.received_sigterm, trainer.fit_loop = received_sigterm, SimpleNamespace(epoch_loop=loop)
    trainer.global_rank, trainer.strategy = rank, SimpleNamespace(root_device=torch.device("cpu"))
    try:
        callback.on_train_start(trainer, module)
    finally:
        callback._restore_handlers()
    return trainer


def test_a_sigterm_lightning_received_before_training_stops_the_run_at_its_first_step(tmp_path):
    """Lightning's own flag, which it broadcasts at every step; while ours handles SIGTERM that
    broadcast (a collective per step under DDP) is dropped."""
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=None)
    trainer = started(callback, received_sigterm=True)
    assert trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor.__name__ == "_no_broadcast"
    with pytest.raises(SystemExit) as exited:
        trainer.run(callback)
    assert exited.value.code == exit_status(signal.SIGTERM)
    assert trainer.saved == [1]
    with pytest.raises(SystemExit) as exited:
        trainer.run(callback)
    assert exited.value.code == exit_status(signal.SIGTERM)
    assert trainer.saved == [1]


@pytest.mark.parametrize("batches", [0, 3])
def test_a_resumed_run_with_nothing_left_to_train_says_so(tmp_path, caplog, batches):
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=None)
    callback._restored = {"should_stop": False}  # as on_load_checkpoint leaves it
    EpochOfBatches(batches=batches).run(callback)
    with caplog.at_level(logging.INFO):
        callback.on_fit_end(None, None)
    said = "resumed a run that had finished training: nothing left to train"
    assert caplog.messages == ([said] if batches == 0 else [])
    assert callback._restored is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every_n_steps": 0}, "checkpoint.every_n_steps must be a positive integer or null: 0"),
        (
            {"every_n_steps": 2.5},
            "checkpoint.every_n_steps must be a positive integer or null: 2.5",
        ),
        (
            {"every_n_steps": True},
            "checkpoint.every_n_steps must be a positive integer or null: True",
        ),
        ({"every_minutes": 0}, "checkpoint.every_minutes must be positive or null, got 0"),
        ({"every_minutes": math.nan}, "checkpoint.every_minutes must be positive or null, got nan"),
        ({"every_minutes": "ten"}, "checkpoint.every_minutes must be positive or null, got 'ten'"),
        ({"every_minutes": True}, "checkpoint.every_minutes must be positive or null, got True"),
    ],
)
def test_an_impossible_checkpoint_cadence_is_refused_in_one_line(tmp_path, options, message):
    with pytest.raises(ConfigError) as refused:
        FaultTolerance(str(tmp_path), **options)
    assert str(refused.value) == message


def test_the_checkpoint_cadences_smallest_values_are_allowed(tmp_path):
    callback = FaultTolerance(str(tmp_path), every_n_steps=1, every_minutes=0.01)
    assert (callback.every_n_steps, callback.every_seconds) == (1, 0.6)
    assert (
        FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=None).every_seconds is None
    )


def test_the_clock_of_every_minutes_starts_when_training_starts(tmp_path, clock):
    """Not when the callback is made: indexing a dataset before training may take an hour."""
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=10)
    clock.now += 3600
    trainer = started(callback)

    def ten_minutes_at_batch_4(batch: int) -> None:
        if batch == 4:
            clock.now += 600

    # The first save (the stand-in's saves do not restart the clock, as on_save_checkpoint does).
    assert trainer.run(callback, ten_minutes_at_batch_4)[0] == 5


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def test_a_resumed_run_draws_from_its_ranks_saved_states_and_continues_its_epochs_values(
    tmp_path, monkeypatch
):
    """What on_load_checkpoint restored: each rank's random states (here rank 1 of two), and
    within an epoch the epoch's metric states and running sums, added at the first batch."""
    saved = []
    for seed in (0, 1):
        seed_all(seed)
        saved.append(rng_states(torch.device("cpu")))
    expected = draws()
    loaded, added = [], []
    module = object()
    monkeypatch.setattr(fault_tolerance, "load_epoch_metrics", lambda *args: loaded.append(args))
    monkeypatch.setattr(fault_tolerance, "add_to_epoch_sums", lambda *args: added.append(args))
    callback = FaultTolerance(str(tmp_path), every_n_steps=None, every_minutes=None)
    callback._restored = {"rng": saved, "epoch": {"metrics": "metrics", "sums": "sums"}}
    seed_all(7)
    trainer = started(callback, rank=1, module=module)
    assert draws() == expected
    assert loaded == [(module, "metrics")]
    trainer.run(callback)
    assert added == [(trainer, "sums")]
