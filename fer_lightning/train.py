"""`python -m fer_lightning.train` (`fer-train`): fit, test the best checkpoint, write the reports;
with `train=false` only test (a given `ckpt_path`, else the run's best checkpoint)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli import entry_point, instantiate_dict
from fer_lightning.data.split import RECORD_FILE
from fer_lightning.errors import ConfigError
from fer_lightning.finish import Started, checkpoint_to_test, test_and_report
from fer_lightning.loggers import logged_run
from fer_lightning.module import MultiTaskModule
from fer_lightning.runs.checkpoints import LAST, load_checkpoint
from fer_lightning.runs.fault_tolerance import fault_tolerance_plugins
from fer_lightning.runs.history import checkpoint_history, recorded_history
from fer_lightning.runs.identity import require_same_experiment
from fer_lightning.runs.init_from import load_initial_weights
from fer_lightning.runs.resume import checkpoint_to_resume, split_record_of

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
    fitting = cfg.get("train", True)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_dict(cfg.get("callbacks")),
        # Testing alone logs nowhere: a logger would start over the training run's logs.
        logger=(instantiate_dict(cfg.get("logger")) or False) if fitting else False,
        plugins=fault_tolerance_plugins(),
    )

    if not fitting:
        return _test_only(cfg, trainer, module, datamodule, run_dir, started)
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
        metrics = test_and_report(
            trainer, module, datamodule, run_dir, started=started, history=history, checkpoint=best
        )
    return {**metrics, **module.val_results}


def _test_only(
    cfg: DictConfig,
    trainer: pl.Trainer,
    module: MultiTaskModule,
    datamodule: pl.LightningDataModule,
    run_dir: Path,
    started: Started,
) -> dict[str, float]:
    """`train=false`: tests a checkpoint of this experiment on the samples its run was trained
    on (that run's split.json) and writes `results/`."""
    if not cfg.test:
        raise ConfigError("train=false test=false does nothing: leave test=true to test")
    path = checkpoint_to_test(cfg.get("ckpt_path"), run_dir)
    checkpoint = load_checkpoint(path)
    require_same_experiment(checkpoint, cfg, path, explicit=True)
    if split_record_of(path).is_file():
        datamodule.split_file = split_record_of(path)
    # The curves of the whole run, as its own test drew them: its last checkpoint's history.
    last = Path(path).with_name(LAST)
    history = checkpoint_history(load_checkpoint(last) if last.is_file() else checkpoint)
    return test_and_report(
        trainer, module, datamodule, run_dir, started=started, history=history, checkpoint=path
    )


main = entry_point("train")(train)

if __name__ == "__main__":
    main()
