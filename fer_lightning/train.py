"""`python -m fer_lightning.train`: fit, test the best checkpoint, write the reports."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.data.split import RECORD_FILE
from fer_lightning.finish import Started, write_results
from fer_lightning.loggers import logged_run
from fer_lightning.module import MultiTaskModule
from fer_lightning.runs.fault_tolerance import fault_tolerance_plugins
from fer_lightning.runs.history import recorded_history
from fer_lightning.runs.init_from import load_initial_weights
from fer_lightning.runs.resume import checkpoint_to_resume

log = logging.getLogger("fer_lightning.train")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits, tests the best checkpoint and writes `results/` into `cfg.paths.output_dir`.

    Returns the test metrics (names without `test/`) and the best checkpoint's validation
    metrics (`val/<name>`): a search optimises the latter (docs/metrics.md#validation-only).
    """
    started = Started()
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data)
    # The run's own record of its samples: written when it first draws them, read when it resumes.
    datamodule.split_file = run_dir / RECORD_FILE
    module = MultiTaskModule.from_config(cfg)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_dict(cfg.get("callbacks")),
        logger=instantiate_dict(cfg.get("logger")) or False,
        plugins=fault_tolerance_plugins(),
    )

    ckpt_path = checkpoint_to_resume(cfg, run_dir, trainer)
    if ckpt_path is None and cfg.get("init_from"):
        load_initial_weights(module.net, cfg.model.name, cfg.init_from)
    # After the resume check, which may move an earlier attempt's logs aside.
    with logged_run(trainer, module.config):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if not cfg.test:
            return {}
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        # Before testing: test() restores the callbacks' states, the history's too, from `best`.
        history = recorded_history(trainer)
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics = write_results(
            trainer,
            module,
            datamodule,
            run_dir,
            task="train",
            started=started,
            history=history,
            checkpoint=best,
        )
    return {**metrics, **module.val_results}


main = entry_point("train")(train)

if __name__ == "__main__":
    main()
