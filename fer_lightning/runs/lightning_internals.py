"""The one adapter to what Lightning keeps to itself and an exact resume needs.

Lightning has no public API for three facts behind an exact continuation (docs/resuming.md):
whether the fit loop is inside an epoch, the running sums and metric states behind the epoch's
logged values, and the header its CSV writer appends under; nor for two of a DDP step's costs:
whether the loggers record this step's values, and the per-step broadcast of its SIGTERM flag.
Each is one small function here, and each reaches Lightning's objects through `_attribute`, which
fails naming the attribute and this module when a release no longer has it; no other module of
fer_lightning touches a private or undocumented Lightning attribute.

Tested range: `pytorch-lightning>=2.6,<2.7` in pyproject.toml (2.6 added `weights_only` to
`Trainer.test`, which training uses). To extend it, install the new release and run
`tests/test_runs_lightning_internals.py`, which names every attribute that is gone, then the
resume tests, which prove the continuation still bit-identical:
`python -m pytest -m "slow or not slow" tests/test_runs_*.py`. Adapt the functions here where they
fail, then raise the upper bound.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

States = dict[str, dict[str, Any]]  # name -> state name -> tensor (or list of tensors)


class LightningChanged(RuntimeError):
    """An attribute this adapter relies on is missing from the installed Lightning."""


def _attribute(owner: Any, path: str) -> Any:
    for name in path.split("."):
        if not hasattr(owner, name):
            raise LightningChanged(
                f"pytorch-lightning {pl.__version__} has no {type(owner).__name__}.{name}, which "
                "fer_lightning/runs/lightning_internals.py relies on: install a release in the "
                "range pyproject.toml gives, or adapt that module"
            )
        owner = getattr(owner, name)
    return owner


def within_epoch(trainer: pl.Trainer) -> bool:
    """Whether the fit loop is inside an epoch; false from the epoch-end hooks on (Lightning counts
    the epoch as processed just before `on_train_epoch_end`)."""
    progress = _attribute(trainer, "fit_loop.epoch_progress.current")
    return _attribute(progress, "processed") < _attribute(progress, "started")


def _epoch_results(trainer: pl.Trainer) -> list[tuple[str, Any]]:
    """The values logged with `on_epoch=True` this epoch, by key."""
    results = _attribute(trainer, "fit_loop.epoch_loop._results")
    return [(key, r) for key, r in results.items() if _attribute(r, "meta.on_epoch")]


def epoch_sums(trainer: pl.Trainer) -> States:
    """The running states (sum, count) behind each tensor logged for the epoch, by key."""
    return {
        key: dict(_attribute(result, "metric_state"))
        for key, result in _epoch_results(trainer)
        if _attribute(result, "is_tensor")
    }


def epoch_metric_states(trainer: pl.Trainer) -> States:
    """The states of the torchmetrics objects logged for the epoch, by their attribute path in the
    LightningModule (Lightning logs the object and computes it at the epoch's end)."""
    return {
        _attribute(result, "meta.metric_attribute"): dict(_attribute(result, "value.metric_state"))
        for _, result in _epoch_results(trainer)
        if not _attribute(result, "is_tensor") and _attribute(result, "meta.metric_attribute")
    }


def add_to_epoch_sums(trainer: pl.Trainer, sums: States) -> None:
    """Combines `sums` (saved by `epoch_sums`) with the running states of the first batch after a
    resume, as the reduction does: added (exactly the floating-point additions without the
    interruption, as the fresh sum of one batch is 0 + x = x), or the max or min kept."""
    results = dict(_epoch_results(trainer))
    for key, saved in sums.items():
        if key not in results:
            continue
        result = results[key]
        extreme = _attribute(result, "meta.is_max_reduction") or _attribute(
            result, "meta.is_min_reduction"
        )
        reduce = _attribute(result, "meta.reduce_fx")
        for name, before in saved.items():
            now: torch.Tensor = _attribute(result, name)
            before = before.to(now.device)
            setattr(result, name, reduce(before, now) if extreme else before + now)


def skip_sigterm_broadcast(trainer: pl.Trainer) -> None:
    """Drops the broadcast of Lightning's SIGTERM flag before every training batch (a collective
    per step under DDP), for as long as another handler owns SIGTERM."""
    loop = _attribute(trainer, "fit_loop.epoch_loop")
    _attribute(loop, "_broadcast_sigterm_tensor")
    loop._broadcast_sigterm_tensor = _no_broadcast


def restore_sigterm_broadcast(trainer: pl.Trainer) -> None:
    loop = _attribute(trainer, "fit_loop.epoch_loop")
    if loop.__dict__.get("_broadcast_sigterm_tensor") is _no_broadcast:
        del loop._broadcast_sigterm_tensor


def _no_broadcast() -> None:
    pass


def step_logs_shown(trainer: pl.Trainer) -> bool:
    """Whether the loggers record this training step's `on_step` values (every
    `trainer.log_every_n_steps` steps, and at the last)."""
    return bool(_attribute(trainer, "_logger_connector.should_update_logs"))


def adopt_csv_header(logger: CSVLogger, header: list[str]) -> None:
    """Makes the CSV writer append under `header` (adding columns it has not seen).

    Creates the writer if it does not exist yet, which deletes the metrics file: call this before
    putting rows back into it.
    """
    writer = logger.experiment
    _attribute(writer, "metrics_keys")
    writer.metrics_keys = list(header)
