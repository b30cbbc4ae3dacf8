"""`python -m fer_lightning.eval ckpt_path=...`: test a checkpoint and write the reports."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.errors import ConfigError
from fer_lightning.finish import Started, write_results
from fer_lightning.module import TTA_MODES, MultiTaskModule
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.history import checkpoint_history
from fer_lightning.runs.resume import split_record_of

SPLITS = ("test", "val")


def _validate(cfg: DictConfig) -> None:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if cfg.tta not in TTA_MODES:
        raise ConfigError(f"tta must be null or flip, got {cfg.tta!r}")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Tests `cfg.ckpt_path` on `cfg.split` and writes `results/` into `cfg.paths.output_dir`.

    metrics.json's keys are `<split>/<name>`, so scores of the validation split are never
    mistaken for test scores.
    """
    _validate(cfg)
    started = Started()
    pl.seed_everything(cfg.seed, workers=True)
    checkpoint = load_checkpoint(cfg.ckpt_path)

    # The data the checkpoint was trained on, unless the command chose other data.
    datamodule = instantiate(cfg.data if cfg.get("data") else checkpoint["fer_config"]["data"])
    datamodule.test_split = cfg.split
    record = split_record_of(cfg.ckpt_path)
    if not cfg.get("data") and record.is_file():
        datamodule.split_file = record  # the samples that run was trained and tested on
    module = MultiTaskModule.from_checkpoint(checkpoint, tta=cfg.tta)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=instantiate_dict(cfg.get("logger")) or False
    )
    trainer.test(module, datamodule=datamodule)
    return write_results(
        trainer,
        module,
        datamodule,
        Path(cfg.paths.output_dir),
        task="eval",
        started=started,
        # The curves of the epochs that led to this checkpoint, if it was saved with them.
        history=checkpoint_history(checkpoint),
        checkpoint=str(cfg.ckpt_path),
        split=cfg.split,
        tta=cfg.tta,
    )


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    main()
