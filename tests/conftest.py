"""Shared fixtures: the real configs composed with hydra.compose, and one tiny synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from fer_lightning.cli import register_resolvers
from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.models import register_model_configs
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.presets import register_experiment_configs

# mutmut's stats pass (`make mutate`) runs the tests with MUTANT_UNDER_TEST=stats, which its
# trampolines also read from the process itself. A child process started in a temporary directory
# would look for mutmut's config there and fail, and its hits could not reach this process anyway.
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    del os.environ["MUTANT_UNDER_TEST"]

# The metric names of results/metrics.json (docs/run-directory.md), written out: the contract the
# code is checked against, not a copy of the code's own list.
CONTRACT_METRICS = [
    "acc",
    "balanced_acc",
    "f1_macro",
    "f1_weighted",
    "kappa",
    "krippendorff_alpha",
    "auroc",
    "auprc",
    "ece",
    "valence_rmse",
    "valence_mae",
    "valence_pcc",
    "valence_sagr",
    "valence_ccc",
    "valence_icc",
    "arousal_rmse",
    "arousal_mae",
    "arousal_pcc",
    "arousal_sagr",
    "arousal_ccc",
    "arousal_icc",
]
TINY = {"train_size": 240, "val_size": 64, "image_size": 32, "seed": 0}
# README: networks take RGB scaled to [0, 1], normalised with ImageNet's statistics; typed in here
# so that the tests' own computations do not borrow the code's.
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic AffectNet-layout dataset shared by the tests that train."""
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic"), **TINY)


# Overrides that make any config train in seconds on tiny images, whatever its data.
FAST = [
    "data.image_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def tiny_overrides(root: Path) -> list[str]:
    """Overrides that make any config train in seconds on the tiny dataset."""
    return [
        "data=synthetic",
        f"data.root={root}",
        *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
        *FAST,
    ]


def compose_in(directory: Path, name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """Composes a config of conf/ as the apps do, writing into `directory`/run."""
    register_resolvers()
    register_model_configs()
    register_experiment_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            config_name=name,
            overrides=[
                f"paths.output_dir={directory / 'run'}",
                *overrides,
            ],
        )


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Composes a config of conf/ as the apps do, writing into a temporary run directory."""

    def _compose(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
        return compose_in(tmp_path, name, overrides)

    return _compose


@pytest.fixture(scope="session")
def trained_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of one short, tested training run of T-Net on the tiny dataset, shared by
    the tests that check what train, eval and predict make of its checkpoints."""
    from fer_lightning.train import train

    cfg = compose_in(tmp_path_factory.mktemp("trained"), "train", trained_overrides(tiny_dataset))
    train(cfg)
    return Path(cfg.paths.output_dir)


def trained_overrides(root: Path) -> list[str]:
    """The overrides of `trained_run`: the same command resumes a copy of it."""
    return [*tiny_overrides(root), "model=tnet", "optimizer.lr=3e-3", "trainer.max_epochs=2"]


def crafted_checkpoint(run: Path, directory: Path, node: str) -> tuple[Path, Path]:
    """A copy of `run`'s last checkpoint whose stored `node` config calls Path.write_text on a
    victim file when given to Hydra's instantiate (as the tests check it would be); the copy's
    path and the victim's."""
    victim = directory / "pwned.txt"
    checkpoint = torch.load(
        run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    checkpoint["fer_config"][node] = {
        "_target_": "pathlib.Path.write_text",
        "self": {"_target_": "pathlib.Path", "_args_": [str(victim)]},
        "data": "pwned",
    }
    path = directory / f"crafted-{node}.ckpt"
    torch.save(checkpoint, path)
    return path, victim


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a test's subprocess, read when it starts: mutation testing switches
    mutants through an environment variable set after the tests were imported."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m fer_lightning.<module> ARGS` in `cwd`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", f"fer_lightning.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused_in_one_line(result: subprocess.CompletedProcess, victim: Path) -> None:
    """A refusal: non-zero status, one `error:` line on stderr, the victim file not written."""
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
    assert result.stderr.startswith("error: ")
    assert not victim.exists()


def checkpoint_network(path: Path) -> nn.Module:
    """The network a checkpoint holds, rebuilt by the test from the file's model config and
    weights (strictly: every weight must load), in eval mode."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = checkpoint["fer_config"]["model"]
    net = instantiate(
        {**model, "pretrained": False, **({"weights": None} if "weights" in model else {})}
    )
    prefix = "net."
    weights = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    net.load_state_dict(weights, strict=True)
    return net.eval()


def decode_plain(path: str | Path, size: int) -> np.ndarray:
    """An image file as uint8 RGB [size, size, 3], decoded and resized with plain OpenCV calls."""
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if image.shape[:2] != (size, size):
        shrink = image.shape[0] > size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    return image


def network_outputs(
    net: nn.Module, images: np.ndarray, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities [N, C] and valence/arousal [N, 2] of uint8 RGB images [N, H, W, 3];
    with `flip`, logits and valence/arousal averaged with those of the mirrored images."""
    x = torch.from_numpy(((images / 255.0 - MEAN) / STD).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        logits, va = net(x)
        if flip:
            flipped_logits, flipped_va = net(x.flip(-1))
            logits, va = (logits + flipped_logits) / 2, (va + flipped_va) / 2
    return logits.softmax(dim=1).numpy(), va.numpy()


def annotation(image_path: str | Path, part: str) -> float:
    """An AffectNet annotation (`exp`, `val` or `aro`) of an image, read from its .npy file."""
    image_path = Path(image_path)
    file = image_path.parent.parent / "annotations" / f"{image_path.stem}_{part}.npy"
    return float(np.load(file))
