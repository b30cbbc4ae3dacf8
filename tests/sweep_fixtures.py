"""One tiny loss-ratio sweep through the real CLI, shared by the sweep and the notebook tests.

A pytest plugin (`pytest_plugins = ["tests.sweep_fixtures"]` in the modules that use it), not an
import, so its session fixture is built once per session however many modules request it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

# Jobs of a few optimisation steps each: the sweep machinery is under test, not the training.
SHORT_JOB = [
    "model=tnet",
    "optimizer.lr=3e-3",
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=3",
    "++trainer.limit_val_batches=2",
]
LOSS_RATIOS = ["loss.weights.expression=0.9,0.6", "loss.weights.valence=0.05,0.2"]
# Three seeds of two settings: what the seed aggregate is for.
SEEDS_BY_SETTING = ["seed=1,2,3", "loss.weights.valence=0.05,0.2"]


def run_sweep(root: Path, sweep_dir: Path, *sweep: str) -> subprocess.CompletedProcess:
    """`python -m fer_lightning.train -m` on the tiny dataset, from a scratch directory."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "fer_lightning.train", "-m", *tiny_overrides(root), *SHORT_JOB,
        *sweep, f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        command, cwd=sweep_dir, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def tiny_sweep(tiny_dataset: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`tiny_sweep(sweep_dir, *overrides)`: runs a sweep of short jobs on the tiny dataset."""
    return functools.partial(run_sweep, tiny_dataset)


def finished_sweep(dataset: Path, sweep_dir: Path, overrides: Sequence[str]) -> Path:
    result = run_sweep(dataset, sweep_dir, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


@pytest.fixture(scope="session")
def loss_sweep(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep directory of a finished 2x2 loss-ratio sweep (4 jobs)."""
    return finished_sweep(tiny_dataset, tmp_path_factory.mktemp("loss_sweep"), LOSS_RATIOS)


@pytest.fixture(scope="session")
def seed_sweep(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep directory of a finished sweep of 3 seeds x 2 valence weights (6 jobs)."""
    return finished_sweep(tiny_dataset, tmp_path_factory.mktemp("seed_sweep"), SEEDS_BY_SETTING)
