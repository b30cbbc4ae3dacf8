"""`python -m fer_lightning.export ckpt_path=... format=onnx`: a deployable, self-checked model."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from fer_lightning.cli import entry_point
from fer_lightning.inference.export import Exported, export_checkpoint

log = logging.getLogger("fer_lightning.export")


def export(cfg: DictConfig) -> Exported:
    """Writes `cfg.ckpt_path`'s network as `cfg.format` to `cfg.output`, with its model card."""
    exported = export_checkpoint(cfg.ckpt_path, cfg.format, cfg.output, cfg.tolerance)
    log.info("%s", exported.line())
    return exported


main = entry_point("export")(export)

if __name__ == "__main__":
    main()
