"""Checkpoint files: read safely (weights and plain config, never pickled code), written so that
no interruption leaves a broken one in place of a good one, and found again when a run resumes
(docs/resuming.md)."""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.errors import ConfigError
from fer_lightning.files import atomic_write, fsync_dir
from fer_lightning.runs.identity import require_same_experiment
from fer_lightning.runs.stored_config import is_plain

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint with `weights_only=True`, so an untrusted file cannot run code, and
    checks its shape: weights, and a stored config of plain values (`runs.stored_config`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"checkpoint {path} is a directory: pass ckpt_path=PATH to a .ckpt file")
    if not path.is_file():
        raise ConfigError(f"checkpoint not found at {path}: pass ckpt_path=PATH to a .ckpt file")
    try:
        with warnings.catch_warnings():
            # torch warns, over several lines, of pickle protocols it did not write.
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"cannot read checkpoint {path}: it holds more than weights and plain values, so it "
            "is not loaded (a file that would run code, or not a checkpoint)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"cannot read checkpoint {path} ({type(exc).__name__}): it is empty, cut short, "
            "corrupted or not a checkpoint"
        ) from exc
    if not _is_fer_checkpoint(checkpoint):
        raise ConfigError(
            f"{path} is not a fer-lightning checkpoint (it needs a state_dict of tensors and a "
            "fer_config of plain values)"
        )
    return checkpoint


def _is_fer_checkpoint(checkpoint: Any) -> bool:
    if not isinstance(checkpoint, dict):
        return False
    weights, config = checkpoint.get("state_dict"), checkpoint.get("fer_config")
    return (
        isinstance(weights, dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())
        and isinstance(config, dict)
        and is_plain(config)
    )


def previous_version(path: Path) -> Path:
    """Where a save keeps the version of `last.ckpt` that it replaced."""
    return path.with_name(f"{path.stem}-prev{path.suffix}")


def _keep_previous(path: Path) -> None:
    """Renames a `last.ckpt` about to be replaced to `last-prev.ckpt`; until the new one is renamed
    into place only that one exists, and `resume_checkpoint` also looks there."""
    if path.name == LAST and path.exists():
        os.replace(path, previous_version(path))


def commit_checkpoint(source: Path, path: Path) -> None:
    """Renames the complete file `source` to `path`, keeping the `last.ckpt` it replaces."""
    _keep_previous(path)
    os.replace(source, path)
    fsync_dir(path.parent)


# ModelCheckpoint's state entries that name files of its folder.
PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def reanchor(state: dict[str, Any], dirpath: str) -> None:
    """Makes a ModelCheckpoint state saved in another folder name the files of `dirpath`.

    The state names its checkpoints by absolute path, so a copied run directory would test the
    original's best checkpoint, and a moved one would not find it; and Lightning keeps only the
    path, not the best score, when the folder differs, so a resumed copy would forget which
    score to beat. The files a state names are those of the run's own `checkpoints/` folder.
    """
    saved = state.get("dirpath")
    if not saved or saved == dirpath:
        return

    def moved(path: str) -> str:
        inside = path and Path(path).parent == Path(saved)
        return str(Path(dirpath) / Path(path).name) if inside else path

    for key in PATH_KEYS:
        if isinstance(state.get(key), str):
            state[key] = moved(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    state["dirpath"] = dirpath


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint whole or not at all, and keeps the `last.ckpt` it replaces.

    Lightning's own save writes through a temporary file in the system's temp dir and moves it
    without fsync: the move is a copy when the temp dir is another filesystem, and after a power
    cut the renamed file may be empty. Here the checkpoint goes through `atomic_write`. The
    replaced `last.ckpt` stays as `last-prev.ckpt`, the fallback `resume_checkpoint` uses when the
    last one cannot be read. `substitutes` maps a path to load to the file to load instead (the
    checkpoint rank 0 chose, `FaultTolerance`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.substitutes: dict[str, str] = {}

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options")
        path = Path(path)
        with atomic_write(path) as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the good `last.ckpt` is moved aside
            _keep_previous(path)

    def load_checkpoint(self, path: str | os.PathLike, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Lightning's load, with a missing file (a best checkpoint deleted since it was saved)
        a one-line error."""
        path = self.substitutes.get(str(path), path)
        if not Path(path).is_file():
            raise ConfigError(
                f"checkpoint {path} is missing (deleted or moved since the run saved it): "
                "restore it, or pass test=false"
            )
        return super().load_checkpoint(path, *args, **kwargs)


def resume_checkpoint(cfg: Any, run_dir: Path) -> str | None:
    """The checkpoint a run continues from: `ckpt_path` if given, else the run's last readable one.

    A last checkpoint that cannot be read (cut short, corrupted) is renamed `*.unreadable`, reported
    in one line, and the one it replaced (`last-prev.ckpt`) is used instead.
    """
    if cfg.get("ckpt_path"):
        # Fails in one line if missing, unreadable or of another experiment.
        require_same_experiment(load_checkpoint(cfg.ckpt_path), cfg, cfg.ckpt_path, explicit=True)
        return str(cfg.ckpt_path)
    if not cfg.get("resume", True):
        return None
    last = run_dir / CHECKPOINT_DIR / LAST
    problems: list[str] = []
    for candidate in (last, previous_version(last)):
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        try:
            checkpoint = load_checkpoint(candidate)
        except ConfigError as exc:
            problems.append(str(exc))
            _set_aside_unreadable(candidate)
            continue
        require_same_experiment(checkpoint, cfg, candidate)
        if problems:
            log.warning(
                "%s (renamed *.unreadable); resuming from %s", "; ".join(problems), candidate
            )
        return str(candidate)
    if problems:
        raise ConfigError(
            f"{'; '.join(problems)}: no readable checkpoint left, resume=false starts over"
        )
    return None


@rank_zero_only
def _set_aside_unreadable(path: Path) -> None:
    """Renames `path` to `*.unreadable`: kept for inspection, no longer in the way of a save."""
    os.replace(path, path.with_name(f"{path.name}.unreadable"))


@rank_zero_only
def start_over(run_dir: Path, logs: Iterable[Path] = ()) -> None:
    """Moves a run's checkpoints, results and `logs` into `run_dir/old-<time>/`, for resume=false.

    Starting over in the same directory must not resume from, or be confused with, the earlier
    attempt, but that attempt may have cost hours: it is kept, not deleted.
    """
    paths = [run_dir / CHECKPOINT_DIR, run_dir / "results", *logs]
    existing = [path for path in paths if path.exists() and path.is_relative_to(run_dir)]
    if not existing:
        return
    old = run_dir / f"old-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    for path in existing:
        target = old / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    log.info("resume=false: moved the previous attempt's checkpoints, results and logs to %s", old)


@rank_zero_only
def remove_interrupted_saves(run_dir: Path) -> None:
    """Deletes what saves cut off by a kill left in the run's checkpoint folder: temporary files as
    large as a checkpoint, each named uniquely, so that no later save would replace them."""
    for leftover in (run_dir / CHECKPOINT_DIR).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
