"""`python -m fer_lightning.train`: fit, test the best checkpoint, write the reports."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fer_lightning.callbacks import fault_tolerance_plugins
from fer_lightning.checkpoint import CHECKPOINT_DIR, resume_checkpoint, start_over
from fer_lightning.cli import entry_point, in_multirun, instantiate_dict
from fer_lightning.history import recorded_history
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports.results import device_description, experiment_row, write_reports
from fer_lightning.resume import csv_logs, set_aside_logs

log = logging.getLogger("fer_lightning.train")


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, trainer: pl.Trainer) -> str | None:
    """Starts over (resume=false) or finds the checkpoint to continue from (see DESIGN.md 4).

    A resumed run keeps its CSV logs out of CSVLogger's reach, which deletes them when it starts;
    FaultTolerance puts back the rows logged up to the checkpoint.
    """
    logs = csv_logs(trainer.loggers)
    if not cfg.get("resume", True):
        start_over(run_dir, logs)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    if ckpt_path:
        set_aside_logs(logs)
        log.info("resuming from %s", ckpt_path)
    elif in_multirun():
        log.info(
            "checkpoints go to %s; after an interruption, rerun the same command with "
            "hydra.sweep.dir=%s to resume every job",
            run_dir / CHECKPOINT_DIR,
            HydraConfig.get().sweep.dir,
        )
    else:
        log.info(
            "checkpoints go to %s; after an interruption, rerun the same command to resume",
            run_dir / CHECKPOINT_DIR,
        )
    return ckpt_path


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits, tests the best checkpoint and writes `results/` into `cfg.paths.output_dir`."""
    started, clock = datetime.now().astimezone(), time.monotonic()
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data)
    module = MultiTaskModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        config=OmegaConf.to_container(cfg, resolve=True),
        **cfg.get("module", {}),
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_dict(cfg.get("callbacks")),
        logger=instantiate_dict(cfg.get("logger")) or False,
        plugins=fault_tolerance_plugins(),
    )

    ckpt_path = checkpoint_to_resume(cfg, run_dir, trainer)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if not cfg.test:
        return {}
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    # Before testing: test() restores the callbacks' states, the history's too, from `best`.
    history = recorded_history(trainer)
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    if trainer.is_global_zero:
        experiment = experiment_row(
            module.config,
            datamodule.split_sizes,
            history,
            task="train",
            started=started,
            duration_s=time.monotonic() - clock,
            device=device_description(trainer),
            precision=str(trainer.precision),
            checkpoint=best,
        )
        write_reports(
            module.test_results,
            datamodule.sample_paths("test"),
            run_dir / "results",
            datamodule.class_names,
            history=history,
            experiment=experiment,
        )
        log.info("results written to %s", run_dir / "results")
    return module.test_results["metrics"]


main = entry_point("train")(train)

if __name__ == "__main__":
    main()
