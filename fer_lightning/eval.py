"""`python -m fer_lightning.eval ckpt_path=...`: test a checkpoint and write the reports."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.errors import ConfigError
from fer_lightning.finish import Started, write_results
from fer_lightning.labels import EXPRESSION_NAMES
from fer_lightning.loggers import logged_run
from fer_lightning.module import TTA_MODES, MultiTaskModule
from fer_lightning.reports.results import dataset_name
from fer_lightning.runs.checkpoints import CHECKPOINT_DIR, load_checkpoint
from fer_lightning.runs.fault_tolerance import FaultTolerance
from fer_lightning.runs.history import checkpoint_history
from fer_lightning.runs.resume import split_record_of
from fer_lightning.runs.stored_config import stored_datamodule, stored_input

log = logging.getLogger("fer_lightning.eval")

SPLITS = ("test", "val")


def _validate(cfg: DictConfig) -> None:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if cfg.tta not in TTA_MODES:
        raise ConfigError(f"tta must be null or flip, got {cfg.tta!r}")


def _data_config(cfg: DictConfig, trained_size: int) -> dict:
    """The command's data at the checkpoint's image size, unless `data.image_size` was given:
    a data group's default size is not the size the network was trained at."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    if data["image_size"] != trained_size and not any(
        o.lstrip("+~").startswith("data.image_size=") for o in given
    ):
        log.info(
            "data.image_size=%d, the checkpoint's (the data group says %d; set data.image_size "
            "to choose)",
            trained_size,
            data["image_size"],
        )
        data["image_size"] = trained_size
    return data


def _score_shared_classes(module: MultiTaskModule, classes: int) -> None:
    """A network of more classes than the data (8 on a 7-class dataset) is scored on the classes
    they share, the first `classes` codes, and says so; fewer is a ConfigError."""
    module.score_shared_classes(classes)
    trained = module.net.num_classes
    if classes < trained:
        left_out = ", ".join(EXPRESSION_NAMES[classes:trained])
        log.info(
            "the checkpoint's network has %d expression classes, the data %d: scoring on the %d "
            "shared classes (%s left out; experiment.csv's scored_classes says %d)",
            trained,
            classes,
            classes,
            left_out,
            classes,
        )


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Tests `cfg.ckpt_path` on `cfg.split` and writes `results/` into `cfg.paths.output_dir`.

    With a data group (`data=...`) it scores the checkpoint on that dataset instead, in the
    canonical codes its reader maps to: cross-dataset evaluation (`reports.cross` gathers the
    matrix). A network of more classes than that data is scored on the classes they share.

    metrics.json's keys are `<split>/<name>`, so scores of the validation split are never
    mistaken for test scores.
    """
    _validate(cfg)
    started = Started()
    checkpoint = load_checkpoint(cfg.ckpt_path)
    module = MultiTaskModule.from_checkpoint(checkpoint, tta=cfg.tta)
    module.test_split = cfg.split
    # The data the checkpoint was trained on, unless the command chose other data.
    test_data = None
    if cfg.get("data"):
        trained_size, _ = stored_input(checkpoint["fer_config"])
        test_data = _data_config(cfg, trained_size)
        datamodule = instantiate(test_data)
        log.info(
            "scoring the network trained on %s on the %s split of %s",
            dataset_name(checkpoint["fer_config"].get("data", {})),
            cfg.split,
            dataset_name(test_data),
        )
    else:
        datamodule = stored_datamodule(checkpoint["fer_config"])
        record = split_record_of(cfg.ckpt_path)
        if record.is_file():
            datamodule.split_file = record  # the samples that run was trained and tested on
    datamodule.test_split = cfg.split
    _score_shared_classes(module, datamodule.num_classes)
    pl.seed_everything(cfg.seed, workers=True)  # after the checks of the checkpoint: it logs
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=instantiate_dict(cfg.get("logger")) or False,
        # Its signal handling: SIGTERM or Ctrl+C ends the test after the batch, with a message
        # and status 128 + N, before results/ is written. It saves nothing outside fit.
        callbacks=[FaultTolerance(str(Path(cfg.paths.output_dir) / CHECKPOINT_DIR))],
    )
    # What was tested beside how it was trained: evaluations of one checkpoint differ in these.
    command = {"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, "tta": cfg.tta}
    with logged_run(trainer, {**module.config, "eval": command}):
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
            test_data=test_data,
        )


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    main()
