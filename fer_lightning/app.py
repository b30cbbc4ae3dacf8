"""Plumbing shared by the Hydra entry points: resolvers, one-line errors, callback/logger lists."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.sweep import in_multirun, run_sweep_job

log = logging.getLogger("fer_lightning")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run_name(override_dirname: str) -> str:
    """A directory name for a run, stable for the same overrides so a rerun finds its checkpoints.

    `model=tnet,seed=1` becomes `model-tnet_seed-1`: `=` and `,` in a path would have to be quoted
    in every later override that names it (`ckpt_path=...`).
    """
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", override_dirname.replace("=", "-"))
    if len(name) > 100:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:80]}-{digest}"
    return name


def gpu_precision() -> str:
    """bf16 where the GPU computes it natively (no loss scaling), fp16 with a scaler otherwise."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed"
    return "16-mixed"


def register_resolvers() -> None:
    for name, fn in {"fer_run_name": run_name, "fer_gpu_precision": gpu_precision}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _user_error(exc: BaseException) -> ConfigError | None:
    """Finds a ConfigError behind Hydra's instantiation wrapper, if there is one."""
    while exc is not None:
        if isinstance(exc, ConfigError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def unknown_choice(overrides: list[str]) -> str | None:
    """A one-line complaint about the first `group=option` naming no option of a conf/ group.

    Hydra reports these itself, but across many lines (for `model`, a list of 80 names).
    """
    from fer_lightning.models.backbones import torchvision_names

    for override in overrides:
        group, sep, value = override.partition("=")
        folder = Path(CONFIG_DIR) / group
        if not sep or "/" in group or not folder.is_dir() or value[:1] in "[({":
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        accepted = {*options, "null", *(torchvision_names() if group == "model" else ())}
        for choice in value.split(","):
            if choice not in accepted:
                extra = ", or any torchvision classification model name" if group == "model" else ""
                return f"unknown {group} '{choice}': choose {', '.join(options)}{extra}"
    return None


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Wraps a task as a Hydra app whose user errors end in one line and exit code 2."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            if in_multirun():  # one job's error is recorded and must not end the sweep
                return run_sweep_job(task, cfg)
            try:
                return task(cfg)
            except (ConfigError, InstantiationException) as exc:
                error = _user_error(exc)
                if error is None:
                    raise
                print(f"error: {error}", file=sys.stderr)
                sys.exit(2)

        register_resolvers()
        from fer_lightning.models import register_model_configs

        register_model_configs()
        app = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            guarded
        )

        @functools.wraps(app)
        def checked() -> Any:
            problem = unknown_choice(sys.argv[1:])
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                sys.exit(2)
            return app()

        return checked

    return decorate


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiates every entry with a `_target_` (callbacks, loggers); other keys are settings."""
    if not node:
        return []
    return [
        hydra.utils.instantiate(value)
        for value in node.values()
        if isinstance(value, DictConfig) and "_target_" in value
    ]
