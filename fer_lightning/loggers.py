"""Logger factories that need more than a `_target_`."""

from __future__ import annotations

import os

from pytorch_lightning.loggers import WandbLogger


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def wandb_logger(**kwargs) -> WandbLogger:
    """A WandbLogger that is online only when credentials exist, so it never prompts or hangs.

    The original project logged to wandb interactively; on a machine without a network or login,
    wandb would ask for a key and block the run. Offline runs can be uploaded with `wandb sync`.
    """
    offline = not _wandb_logged_in() or os.environ.get("WANDB_MODE") == "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs.setdefault("offline", offline)
    return WandbLogger(**kwargs)
