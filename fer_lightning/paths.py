"""Where the project's own files live: its configs, and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

# The Hydra configs: `conf/` at the repository's top level.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def user_cache_dir() -> Path:
    """The project's folder in the user's cache (`$XDG_CACHE_HOME`, else `~/.cache`)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_lightning"
