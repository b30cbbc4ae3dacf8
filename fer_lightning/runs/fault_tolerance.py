"""Fault tolerance: rerunning an interrupted run's command continues it exactly where it stopped.

Lightning's checkpoints restore the weights, optimiser, scheduler, gradient scaler, loop position
and the callbacks' states (early stopping, best checkpoint, `MetricHistory`); the training loader
restores the data order (`fer_lightning/data/loaders.py`). `FaultTolerance` saves often enough
and on the signals that announce an end, and adds what those checkpoints lack for an exact
continuation (`fer_lightning.runs.state`). The rules are in docs/resuming.md.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment

from fer_lightning.errors import ConfigError
from fer_lightning.runs.checkpoints import (
    LAST,
    AtomicCheckpointIO,
    commit_checkpoint,
    reanchor,
)
from fer_lightning.runs.lightning_internals import (
    add_to_epoch_sums,
    restore_sigterm_broadcast,
    skip_sigterm_broadcast,
    within_epoch,
)
from fer_lightning.runs.ranks import every_rank, on_any_rank
from fer_lightning.runs.state import (
    epoch_state,
    load_epoch_metrics,
    own_rng_states,
    restore_logged_rows,
    rng_states,
    set_rng_states,
)
from fer_lightning.values import is_int, is_number

log = logging.getLogger(__name__)

STATE_KEY = "fer_resume"  # FaultTolerance's part of a checkpoint
# SIGUSR1: SLURM's `--signal` warning; SIGUSR2: submitit's (hydra/launcher=slurm).
SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")
# Under DDP the ranks vote on signals and the time since the last save every this many batches:
# one all-reduce per ten steps rather than one per step; a signal waits at most that long.
VOTE_EVERY_N_BATCHES = 10


def exit_status(signum: int) -> int:
    """The exit status after a signal's checkpoint: 128 + N, as if the signal had ended the run."""
    return 128 + signum


def fault_tolerance_plugins() -> list[Any]:
    """Trainer plugins: atomic checkpoint writes and, under SLURM, no Lightning auto-requeue.

    Lightning's SLURM requeue handler checkpoints inside the SIGUSR1 handler, in the middle of a
    step, to `hpc_ckpt_<n>.ckpt` files that it then prefers over `ckpt_path`. `FaultTolerance`
    handles SIGUSR1 instead: it saves `last.ckpt` after the current batch and exits. Requeueing is
    the launcher's job (submitit's SIGUSR2 handler, run after that save, or the batch script).
    """
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def _signals() -> list[int]:
    return [getattr(signal, name) for name in SIGNALS if hasattr(signal, name)]


class FaultTolerance(Checkpoint):
    """Saves `checkpoints/last.ckpt` often and on termination signals, so that a rerun continues
    exactly where the run stopped.

    When: at every epoch end, after early stopping and the best checkpoint have updated their
    states (as a `Checkpoint` callback it runs after the others; Lightning 2.6's `ModelCheckpoint`
    writes `last.ckpt` only in epochs that improve its monitored metric). Within epochs, every
    `every_n_steps` optimizer steps and/or once `every_minutes` have passed since the last save, so
    an interruption loses at most that much work; never at an epoch's last batch, whose epoch-end
    checkpoint follows (Lightning would resume a last-batch checkpoint past the validation).

    A checkpoint becomes `last.ckpt` at the start of the next batch or epoch, once the rows that
    Lightning logs after the hooks of the batch or epoch are flushed to disk: a run cut off in
    between resumes from the checkpoint before, whose rows are all on disk, so the CSV log loses
    no row.

    Signals (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) during training: the current batch (or at an
    epoch's last batch, the epoch) finishes, its checkpoint is saved as above, and the process exits
    with status 128 + the signal's number. A handler installed before the Trainer's (submitit's
    requeue on SIGUSR2) runs after that save. A second Ctrl+C interrupts at once. During the test
    that follows training, a signal ends the run after the current batch, with the same status
    and without `results/` (nothing is left to save: a rerun tests again).

    Under DDP every rank continues from the checkpoint rank 0 chose (`resuming_from`, set by
    `fer_lightning.runs.resume`): each rank chooses before the processes can talk, and a rank
    that saw another file (a last checkpoint set aside as unreadable in between) follows rank 0.

    What checkpoints get (key `fer_resume`): every rank's global RNG states (of its own GPU
    only), restored before the first resumed batch, so dropout draws as without the
    interruption; whether training had been told to stop (early stopping), so a finished run is
    not trained further; the logger step up to which rows precede the checkpoint, so the CSV log
    repeats no row; within an epoch, the epoch's running logged sums and metric states (see
    `epoch_state`). Under DDP, ranks vote on signals and on the time since the last save every
    `VOTE_EVERY_N_BATCHES` batches (one process checks at every batch).
    """

    def __init__(
        self, dirpath: str, every_n_steps: int | None = None, every_minutes: float | None = 10
    ) -> None:
        if every_n_steps is not None and (not is_int(every_n_steps) or every_n_steps < 1):
            raise ConfigError(
                f"checkpoint.every_n_steps must be a positive integer or null: {every_n_steps!r}"
            )
        if every_minutes is not None and not (is_number(every_minutes) and every_minutes > 0):
            raise ConfigError(
                f"checkpoint.every_minutes must be positive or null, got {every_minutes!r}"
            )
        self.path = Path(dirpath) / LAST
        self.staged = self.path.with_name(f".{self.path.name}.staged")
        self.every_n_steps = every_n_steps
        self.every_seconds = every_minutes * 60 if every_minutes is not None else None
        self._last_save = time.monotonic()
        self._signal: int | None = None
        self._flush_pending = False  # rows were logged at a checkpoint's position
        self._staged_at = ""  # where the staged checkpoint was saved, until it is committed
        self._exit_pending = False
        self._testing = False  # a signal then ends the test without results/
        self._trained = False
        self._restored: dict[str, Any] | None = None
        self._epoch_sums: dict[str, Any] | None = None
        self.resuming_from: str | None = None
        self._replaced: dict[int, Any] = {}  # the handlers ours replaced while training
        self._earlier: dict[int, Any] = {}  # the handlers installed before the Trainer's

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # the processes can talk now, and nothing has been restored yet
            self._follow_rank_zero(trainer)

    def _follow_rank_zero(self, trainer: pl.Trainer) -> None:
        chosen = every_rank(trainer, self.resuming_from)
        if len(set(chosen)) == 1:
            return
        if None in chosen:  # every rank raises: one rank would start over, another continue
            raise ConfigError(
                f"the DDP ranks disagree on whether to resume ({chosen}): the run directory "
                "must be on a file system every node shares; rerun the same command"
            )
        if chosen[0] != self.resuming_from:
            log.warning("rank %d resumes from %s, rank 0's choice", trainer.global_rank, chosen[0])
            trainer.strategy.checkpoint_io.substitutes[str(self.resuming_from)] = chosen[0]

    # What checkpoints carry

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        within = within_epoch(trainer)
        checkpoint[STATE_KEY] = {
            "rng": every_rank(trainer, rng_states(trainer.strategy.root_device)),
            "should_stop": trainer.should_stop,
            # Loggers record a batch's rows, and its epoch's, under the count of optimizer steps
            # before the batch's own (one optimizer, automatic optimization): global_step - 1
            # once the batch has stepped. `_settle` flushes them before the commit.
            "logged_through_step": trainer.global_step - 1,
            "epoch": epoch_state(trainer) if within else None,
        }
        self._last_save = time.monotonic()
        self._flush_pending = True

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored = checkpoint.get(STATE_KEY)
        # Before the callbacks load their states: a copied run uses its own best checkpoint.
        states = checkpoint.get("callbacks", {})
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.state_key in states:
                reanchor(states[callback.state_key], callback.dirpath)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._earlier = {signum: signal.getsignal(signum) for signum in _signals()}
        restored = self._restored
        through = restored["logged_through_step"] if restored else math.inf
        for logger in trainer.loggers if trainer.is_global_zero else ():
            if isinstance(logger, CSVLogger):
                restore_logged_rows(logger, through)
        if restored:
            trainer.should_stop = restored["should_stop"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restored = self._restored
        if restored:
            own = own_rng_states(restored["rng"], trainer.global_rank)
            set_rng_states(own, trainer.strategy.root_device)
            if restored["epoch"]:
                load_epoch_metrics(pl_module, restored["epoch"]["metrics"])
                self._epoch_sums = restored["epoch"]["sums"]
        self._last_save = time.monotonic()
        self._install_handlers()
        # Lightning broadcasts at every step whether its SIGTERM handler ran; while training,
        # ours replaces it, so the broadcast could only ever say no.
        if trainer.received_sigterm:
            self._signal = signal.SIGTERM
        skip_sigterm_broadcast(trainer)

    # When to save

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._settle(trainer)  # the epoch-end checkpoint's rows

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._settle(trainer)
        if self._exit_pending:
            self._exit()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._epoch_sums is not None:
            add_to_epoch_sums(trainer, self._epoch_sums)
            self._epoch_sums = None
        self._trained = True
        overdue = self.every_seconds is not None and (
            time.monotonic() - self._last_save >= self.every_seconds
        )
        signalled = self._signal is not None
        if trainer.world_size > 1:
            if (batch_idx + 1) % VOTE_EVERY_N_BATCHES:
                signalled = overdue = False
            else:
                signalled, overdue = on_any_rank(trainer, signalled, overdue)
        step_due = self.every_n_steps is not None and trainer.global_step % self.every_n_steps == 0
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        # Accumulated gradients are not checkpointed: save only after an optimizer step.
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if not last_batch and stepped and (signalled or overdue or step_due):
            self._stage(trainer, exit_after=signalled)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (signalled,) = on_any_rank(trainer, self._signal is not None)
        self._stage(trainer, exit_after=signalled)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restore_sigterm_broadcast(trainer)
        self._settle(trainer)
        self._restore_handlers()
        if self._exit_pending:  # training is over, but testing was not asked for
            self._exit()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored is not None and not self._trained:
            log.info("resumed a run that had finished training: nothing left to train")
        self._restored = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._testing = True
        self._install_handlers()

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *batch_and_outputs: Any
    ) -> None:
        # No vote across ranks: test shards are uneven, so ranks run different batch counts.
        if self._signal is not None:
            self._exit()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()
        self._testing = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def _stage(self, trainer: pl.Trainer, exit_after: bool) -> None:
        trainer.save_checkpoint(self.staged, weights_only=False)  # replaces any leftover
        self._staged_at = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        self._exit_pending = exit_after

    def _settle(self, trainer: pl.Trainer) -> None:
        """Flushes the rows logged since a save, then makes a staged checkpoint `last.ckpt`."""
        if self._flush_pending:
            for logger in trainer.loggers:
                logger.save()
            self._flush_pending = False
        if self._staged_at and trainer.is_global_zero:  # the process that wrote it
            commit_checkpoint(self.staged, self.path)
            log.info("saved %s (%s)", self.path, self._staged_at)
        self._staged_at = ""

    # Signals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C does not wait for the checkpoint
        self._signal = signum

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _signals():
            self._replaced[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._replaced.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._replaced = {}

    def _exit(self) -> None:
        signum = self._signal or signal.SIGTERM  # other DDP ranks learn of it from rank 0
        log.warning(
            "stopped by %s%s; exiting with status %d: rerun the same command to %s",
            signal.Signals(signum).name,
            " while testing, before results/ was written" if self._testing else "",
            exit_status(signum),
            "test again" if self._testing else "resume",
        )
        earlier = self._earlier.get(signum)
        if callable(earlier) and earlier is not signal.default_int_handler:
            earlier(signum, None)  # e.g. submitit: requeue the job, then exit
        raise SystemExit(exit_status(signum))
