"""`python -m fer_lightning.eval ckpt_path=...`: test a checkpoint and write the reports."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.app import entry_point, instantiate_dict
from fer_lightning.checkpoint import load_checkpoint
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports import write_reports

log = logging.getLogger("fer_lightning.eval")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Tests `cfg.ckpt_path` on `cfg.split` and writes `results/` into `cfg.paths.output_dir`."""
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
        write_reports(module.test_results, datamodule.sample_paths(cfg.split), run_dir / "results")
        log.info("results written to %s", run_dir / "results")
    return module.test_results["metrics"]


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    main()
