"""The wheel as a user installs it: the configs inside, console scripts, runs from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent
# What a wheel is built from; a copy, so the build leaves nothing in the checkout.
SOURCES = ("fer_lightning", "conf", "setup.py", "pyproject.toml", "README.md")


# Without the PYTHONPATH of a checkout, whose fer_lightning would be found instead of the wheel's.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            skipped = shutil.ignore_patterns("__pycache__", "local")
            shutil.copytree(REPO / name, source / name, ignore=skipped)
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        source,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("fer_lightning-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new environment holding only the wheel, which then sees this one's packages (the
    dependencies) through a .pth file: installed before that, pip finds nothing to replace."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        wheel,
        cwd=tmp_path,
    )
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    ).strip()
    (Path(purelib) / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


@pytest.mark.slow
def test_the_wheel_trains_and_evaluates_from_another_directory(tmp_path):
    bin_dir = _fresh_venv(tmp_path, _build_wheel(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        bin_dir / "python",
        "-c",
        "import fer_lightning.paths as p; print(p.__file__); print(p.CONFIG_DIR)",
        cwd=elsewhere,
    ).split()
    assert all(Path(line).is_relative_to(tmp_path / "venv") for line in where), where
    _run(
        bin_dir / "fer-data",
        "synthetic",
        "root=faces",
        "train_size=8",
        "val_size=8",
        "image_size=32",
        cwd=elsewhere,
    )
    shrink = [
        *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
        "data.root=data/synthetic",
        "data.image_size=32",
        "data.num_workers=0",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
    ]
    _run(
        bin_dir / "fer-train",
        "experiment=quickstart",
        "trainer.max_epochs=1",
        *shrink,
        cwd=elsewhere,
    )
    (best,) = (elsewhere / "outputs" / "train" / "runs").glob("*/checkpoints/best-*.ckpt")
    _run(
        bin_dir / "fer-eval",
        f"ckpt_path={best}",
        "trainer.enable_progress_bar=false",
        cwd=elsewhere,
    )
    (metrics,) = (elsewhere / "outputs" / "eval" / "runs").glob("*/*/results/metrics.json")
    assert "test/acc" in json.loads(metrics.read_text())
    assert "fer-train" in _run(bin_dir / "fer-train", "--hydra-help", cwd=elsewhere)
