"""Impossible values of a composed config, refused in one line before any work is done.

Every entry point calls `validate` right after Hydra composed its config (fer_lightning/cli.py),
so a value that could only fail later (after indexing a dataset, after an epoch, after a model is
exported) fails at once, naming the key and what to do. The checks here need no data and no
checkpoint contents; each input's own checks stay where the input is read. The rules and their
messages are listed in docs/bad-inputs.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.losses import TASKS
from fer_lightning.values import is_int, is_number

# Lightning's `max_epochs=-1`: train until stopped (early stopping, max_steps or a signal).
UNLIMITED_EPOCHS = -1
# Lightning seeds numpy, whose seeds are 32-bit.
MAX_SEED = 2**32 - 1
# A batch lives on the host as uint8 and again as float32 once normalised.
BYTES_PER_PIXEL = 1 + 4


def validate(cfg: DictConfig, task: str) -> None:
    """Raises a ConfigError for the first impossible value of `cfg`, a config of `task`
    (train, eval, predict or export)."""
    for check in CHECKS[task]:
        check(cfg)


def required(key: str) -> str:
    """The complaint about a required key (`???` in conf/) left out of the command line."""
    return f"{key} is required: add {key}=... to the command line"


def _check_required(*keys: str) -> Callable[[DictConfig], None]:
    def check(cfg: DictConfig) -> None:
        for key in keys:
            if OmegaConf.is_missing(cfg, key):
                raise ConfigError(required(key))

    return check


def _positive_int(cfg: DictConfig, key: str, example: str) -> None:
    value = _get(cfg, key)
    if not is_int(value) or value < 1:
        raise ConfigError(f"{key} must be a whole number >= 1, got {value!r}: e.g. {key}={example}")


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def check_seed(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")


def check_optimizer(cfg: DictConfig) -> None:
    lr = _get(cfg, "optimizer.lr")
    if not is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"optimizer.lr must be a number > 0, got {lr!r}: e.g. optimizer.lr=1e-4")


def check_data(cfg: DictConfig) -> None:
    """Batch size and image size; the model's own minimum size is its builder's to check."""
    if not cfg.get("data"):
        return
    _positive_int(cfg, "data.batch_size", "64")
    _positive_int(cfg, "data.image_size", "224")
    batch, size = cfg.data.batch_size, cfg.data.image_size
    needed = batch * 3 * size * size * BYTES_PER_PIXEL
    available = available_memory()
    if needed > available:
        raise ConfigError(
            f"data.image_size={size} with data.batch_size={batch} needs {_gb(needed)} per batch "
            f"and this machine has {_gb(available)} free: lower data.image_size or data.batch_size"
        )


def available_memory() -> int:
    """Bytes of memory free for new allocations (page cache included, as the kernel counts)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gb(size: float) -> str:
    return f"{size / 1e9:.3g} GB"


def check_trainer(cfg: DictConfig) -> None:
    _positive_int(cfg, "trainer.accumulate_grad_batches", "1")
    epochs = _get(cfg, "trainer.max_epochs")
    if epochs is not None and (not is_int(epochs) or (epochs < 1 and epochs != UNLIMITED_EPOCHS)):
        raise ConfigError(
            f"trainer.max_epochs must be a whole number >= 1 (or -1: until stopped), got {epochs!r}"
        )
    accelerator = str(_get(cfg, "trainer.accelerator"))
    if accelerator in ("gpu", "cuda") and not _gpu_count():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no usable GPU: "
            "use trainer.accelerator=cpu (or auto)"
        )


def _gpu_count() -> int:
    import torch  # here: `--help` and the config errors come without importing torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_monitor(cfg: DictConfig) -> None:
    """The monitored metric must be one the module logs, or the first epoch's end fails."""
    metric = _get(cfg, "callbacks.monitor.metric")
    if metric is None:
        return
    names = monitored_names(int(cfg.data.classes))
    if metric not in names and not str(metric).startswith("val/loss_"):
        raise ConfigError(
            f"callbacks.monitor.metric={metric} is not a logged metric: use val/acc, val/loss, "
            "val/f1_macro, val/valence_ccc, ... (any val/<name> of docs/metrics.md)"
        )
    mode = _get(cfg, "callbacks.monitor.mode")
    if mode not in ("min", "max"):
        raise ConfigError(f"callbacks.monitor.mode must be min or max, got {mode!r}")


def monitored_names(num_classes: int) -> set[str]:
    """Every validation value the module logs: its losses and the metric suite's names (the
    valence/arousal ones only where the validation split has those labels)."""
    from fer_lightning.metrics.classification import per_class_keys
    from fer_lightning.metrics.suite import SUITE

    metrics = [*SUITE, *per_class_keys(num_classes)]
    return {"val/loss", *(f"val/loss_{task}" for task in TASKS), *(f"val/{k}" for k in metrics)}


def check_device(cfg: DictConfig) -> None:
    """predict's `device`: auto, or a torch device this machine has."""
    device = str(cfg.device)
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={device} is not a torch device: use auto, cpu or cuda") from None
    if parsed.type == "cuda" and (parsed.index or 0) >= _gpu_count():
        raise ConfigError(
            f"device={device} but this machine has {_gpu_count() or 'no'} usable GPU(s): "
            "use device=cpu (or auto)"
        )


def check_predict_values(cfg: DictConfig) -> None:
    _positive_int(cfg, "batch_size", "64")
    _positive_int(cfg, "video_stride", "1")
    _positive_int(cfg, "detector.min_size", "20")
    _positive_int(cfg, "detector.max_side", "1280")
    _positive_int(cfg, "tracking.smooth_window", "5")


def check_outputs(cfg: DictConfig) -> None:
    """predict's and export's files go neither over their inputs nor over another run's files.

    The run directory is the command's own (named after the checkpoint and the overrides,
    docs/run-directory.md): a file there is this same experiment's and is replaced. An existing
    file anywhere else is replaced only with `overwrite=true`.
    """
    checkpoint = _resolved(cfg.ckpt_path)
    outputs = {"output": _resolved(cfg.output)}
    if cfg.get("format"):  # export's model card goes beside the model
        outputs["output (its model card)"] = Path(f"{outputs['output']}.json")
    inputs = [_resolved(cfg.input)] if cfg.get("input") else []
    for key, path in outputs.items():
        if path == checkpoint:
            raise ConfigError(f"{key}={path} is the checkpoint: choose another path")
        if path.is_dir():
            raise ConfigError(f"{key}={path} is a folder: name a file in it")
        for source in inputs:
            if path == source or (source.is_dir() and source in path.parents and path.exists()):
                raise ConfigError(f"{key}={path} would replace an input file: choose another path")
        _refuse_replacing(cfg, key, path)
    if cfg.get("annotate") and inputs:
        _check_annotated_dir(_resolved(cfg.annotated_dir), inputs[0])


def check_eval_output(cfg: DictConfig) -> None:
    """eval writes its own results/: not into the run directory of the checkpoint it tests, whose
    results/ (the training run's test) it would replace."""
    trained_in = _resolved(cfg.ckpt_path).parent.parent  # <run dir>/checkpoints/<file>
    if _resolved(cfg.paths.output_dir) == trained_in and (trained_in / "checkpoints").is_dir():
        raise ConfigError(
            f"hydra.run.dir={trained_in} is the run directory of the checkpoint: eval would "
            "replace that run's results/; leave hydra.run.dir out, or choose another directory"
        )


def _refuse_replacing(cfg: DictConfig, key: str, path: Path) -> None:
    own_dir = _resolved(cfg.paths.output_dir)
    if path.exists() and own_dir not in path.parents and not cfg.get("overwrite"):
        raise ConfigError(
            f"{key}={path} exists and is not this run's: add overwrite=true to replace it, "
            "or choose another path"
        )


def _check_annotated_dir(annotated: Path, source: Path) -> None:
    """Annotated copies mirror the input's paths below the input folder: that folder itself (or
    one inside it) would overwrite the originals or be read as input next time."""
    root = source if source.is_dir() else source.parent
    if annotated == root or root in annotated.parents:
        raise ConfigError(
            f"annotated_dir={annotated} is inside the input folder {root}: "
            "choose a folder outside it"
        )


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


CHECKS: dict[str, tuple[Callable[[DictConfig], None], ...]] = {
    "train": (check_seed, check_optimizer, check_data, check_trainer, check_monitor),
    "eval": (
        _check_required("ckpt_path"),
        check_seed,
        check_data,
        check_trainer,
        check_eval_output,
    ),
    "predict": (
        _check_required("ckpt_path", "input"),
        check_predict_values,
        check_device,
        check_outputs,
    ),
    "export": (_check_required("ckpt_path"), check_outputs),
}
