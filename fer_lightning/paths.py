"""Where the project's own files live: its configs, and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _config_dir() -> Path:
    """The Hydra configs: `conf/` at the repository's top level in a source tree (or an editable
    install), shipped as `fer_lightning/conf/` inside a wheel (setup.py)."""
    installed = _PACKAGE / "conf"
    return installed if installed.is_dir() else _PACKAGE.parent / "conf"


CONFIG_DIR = _config_dir()


def user_cache_dir() -> Path:
    """The project's folder in the user's cache (`$XDG_CACHE_HOME`, else `~/.cache`)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_lightning"
