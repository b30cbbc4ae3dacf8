"""`python -m fer_lightning.train`: fit, test the best checkpoint, write the reports."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports import device_description, experiment_row, write_reports
from fer_lightning.runs.fault_tolerance import fault_tolerance_plugins
from fer_lightning.runs.history import recorded_history
from fer_lightning.runs.resume import checkpoint_to_resume

log = logging.getLogger("fer_lightning.train")


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
