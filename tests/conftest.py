"""Shared fixtures: the real configs composed with hydra.compose, and one tiny synthetic dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fer_lightning.cli import register_resolvers
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.models import register_model_configs
from fer_lightning.paths import CONFIG_DIR

# The metric names of results/metrics.json (docs/run-directory.md), written out: the contract the
# code is checked against, not a copy of the code's own list.
CONTRACT_METRICS = [
    "acc",
    "f1_macro",
    "f1_weighted",
    "kappa",
    "krippendorff_alpha",
    "auroc",
    "auprc",
    "valence_rmse",
    "valence_pcc",
    "valence_sagr",
    "valence_ccc",
    "arousal_rmse",
    "arousal_pcc",
    "arousal_sagr",
    "arousal_ccc",
]
TINY = {"train_size": 240, "val_size": 64, "image_size": 32, "seed": 0}

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic AffectNet-layout dataset shared by the tests that train."""
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic"), **TINY)


def tiny_overrides(root: Path) -> list[str]:
    """Overrides that make any config train in seconds on the tiny dataset."""
    return [
        "data=synthetic",
        f"data.root={root}",
        *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
        "data.image_size=32",
        "data.batch_size=16",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Composes a config of conf/ as the apps do, writing into a temporary run directory."""
    register_resolvers()
    register_model_configs()

    def _compose(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(
                config_name=name,
                overrides=[
                    f"paths.root_dir={tmp_path}",
                    f"paths.output_dir={tmp_path / 'run'}",
                    *overrides,
                ],
            )

    return _compose
