"""`python -m fer_lightning.eval ckpt_path=...`: test a checkpoint and write the reports."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.errors import ConfigError
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports import device_description, experiment_row, write_reports
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.history import checkpoint_history

log = logging.getLogger("fer_lightning.eval")

SPLITS = ("test", "val")
TTA_MODES = (None, "flip")


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
    started, clock = datetime.now().astimezone(), time.monotonic()
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    stored = checkpoint["fer_config"]

    # The data the checkpoint was trained on, unless the command chose other data.
    datamodule = instantiate(cfg.data if cfg.get("data") else stored["data"])
    datamodule.test_split = cfg.split
    model_config = dict(stored["model"], pretrained=False)
    module = MultiTaskModule(
        net=instantiate(model_config),
        loss=instantiate(stored["loss"]),
        optimizer=None,
        config=stored,
    )
    module.load_state_dict(checkpoint["state_dict"])
    module.tta = cfg.tta
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=instantiate_dict(cfg.get("logger")) or False
    )
    trainer.test(module, datamodule=datamodule)
    if trainer.is_global_zero:
        # The curves of the epochs that led to this checkpoint, if it was saved with them.
        history = checkpoint_history(checkpoint)
        experiment = experiment_row(
            stored,
            datamodule.split_sizes,
            history,
            task="eval",
            started=started,
            duration_s=time.monotonic() - clock,
            device=device_description(trainer),
            precision=str(trainer.precision),
            split=cfg.split,
            tta=cfg.tta,
            checkpoint=str(cfg.ckpt_path),
        )
        write_reports(
            module.test_results,
            datamodule.sample_paths(cfg.split),
            run_dir / "results",
            datamodule.class_names,
            prefix=cfg.split,
            history=history,
            experiment=experiment,
        )
        log.info("results written to %s", run_dir / "results")
    return module.test_results["metrics"]


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    main()
