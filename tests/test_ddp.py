"""DDP through the real CLI on 2 CPU processes (gloo): one set of reports, at most 1.5 Python-level
collectives per training step (DDP's gradient all-reduce aside), the step loss shown as the ranks'
mean, and a checkpoint scored by 2 processes exactly as by 1, on a test split of odd size (the
ranks hold 25 and 24 samples).

The exact comparison evaluates with batches of one sample: float32 kernels may round differently
for different batch sizes, and sharding changes which batch sizes occur (49 = 3 x 16 + 1 in one
process, 16 + 9 and 16 + 8 on two ranks), which moves the metrics by ~1e-8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fer_lightning.data.synthetic.writer import ensure_synthetic
from fer_lightning.eval import evaluate
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.runs.ranks import gather_outputs
from tests.conftest import subprocess_env, tiny_overrides

REPO = Path(__file__).resolve().parent.parent

# The holdout test split is round(0.2 * 245) = 49 samples; the validation split 63.
ODD = {"train_size": 245, "val_size": 63, "image_size": 32, "seed": 0}
TEST_SIZE = 49
DDP_CPU = (
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("odd"), **ODD)


def odd_data(root: Path) -> list[str]:
    tiny = [o for o in tiny_overrides(root) if not o.startswith("data.synthetic.")]
    return [*tiny, *(f"data.synthetic.{k}={v}" for k, v in ODD.items())]


def run_cli(app: str, run_dir: Path, *overrides: str) -> None:
    """`python -m app ... hydra.run.dir=run_dir`; Lightning starts rank 1 with the same command.
    The repository is on the path: the commands load a test callback (tests/collectives.py)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = subprocess_env(HYDRA_FULL_ERROR="1", PYTHONPATH=path)
    result = subprocess.run(
        [sys.executable, "-m", app, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def collective_counts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("collectives")


@pytest.fixture(scope="module")
def step_losses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("step_losses")


@pytest.fixture(scope="module")
def ddp_run(
    odd_dataset: Path,
    collective_counts: Path,
    step_losses: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A 2-process training run (one epoch of T-Net, 31 batches of 4 per rank), tested and
    reported as train does, its collectives counted per step (`tests/collectives.py`) and each
    rank's step losses recorded (`tests/step_losses.py`)."""
    run = tmp_path_factory.mktemp("ddp") / "train"
    run_cli(
        "fer_lightning.train",
        run,
        *odd_data(odd_dataset),
        "data.batch_size=4",
        "model=tnet",
        "trainer.max_epochs=1",
        *DDP_CPU,
        "+callbacks.count._target_=tests.collectives.CountCollectives",
        f"+callbacks.count.dirpath={collective_counts}",
        "+callbacks.losses._target_=tests.step_losses.RecordStepLosses",
        f"+callbacks.losses.dirpath={step_losses}",
    )
    return run


def test_a_training_step_costs_at_most_one_and_a_half_collectives(ddp_run, collective_counts):
    for rank in range(2):
        steps = json.loads((collective_counts / f"rank{rank}.json").read_text())
        assert len(steps) > 20
        per_step = sum(sum(step.values()) for step in steps) / len(steps)
        assert per_step <= 1.5, (rank, per_step, steps[:3])


def test_the_step_loss_the_loggers_show_is_the_mean_over_the_ranks(ddp_run, step_losses):
    ranks = [json.loads((step_losses / f"rank{rank}.json").read_text()) for rank in range(2)]
    log = pd.read_csv(ddp_run / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])
    assert len(log) >= 2
    for step, shown in zip(log["step"], log["train/loss_step"], strict=True):
        # The logger's step counts the optimiser steps before this one.
        losses = [losses_of[str(step + 1)] for losses_of in ranks]
        assert losses[0] != pytest.approx(losses[1])
        assert shown == pytest.approx(sum(losses) / 2, rel=1e-6), (step, losses)


def test_two_process_training_writes_one_set_of_reports(ddp_run):
    # Nothing beside the run directory (no lightning_logs/ or outputs/ from rank 1).
    assert [p.name for p in ddp_run.parent.iterdir()] == [ddp_run.name]
    assert [p.relative_to(ddp_run) for p in ddp_run.rglob("metrics.json")] == [
        Path("results/metrics.json")
    ]
    assert [p.relative_to(ddp_run) for p in ddp_run.rglob("results")] == [Path("results")]
    checkpoints = sorted(p.name for p in (ddp_run / "checkpoints").iterdir())
    assert checkpoints[-1] == "last.ckpt" and checkpoints[0].startswith("best-")
    assert pd.read_csv(ddp_run / "results" / "experiment.csv")["device"][0] == "2 x cpu"
    paths = pd.read_csv(ddp_run / "results" / "predictions.csv")["path"]
    assert len(paths) == TEST_SIZE and paths.is_unique


def test_two_processes_score_a_checkpoint_exactly_as_one(
    ddp_run, odd_dataset, compose_config, tmp_path
):
    best = next((ddp_run / "checkpoints").glob("best-*.ckpt"))
    data = [o for o in odd_data(odd_dataset) if o.startswith("data")] + ["data.batch_size=1"]
    two = tmp_path / "two"
    run_cli("fer_lightning.eval", two, f"ckpt_path={best}", *data, *DDP_CPU)
    one = tmp_path / "one"
    overrides = [f"ckpt_path={best}", *data, "trainer.accelerator=cpu", f"paths.output_dir={one}"]
    evaluate(compose_config("eval", overrides))

    expected = json.loads((one / "results" / "metrics.json").read_text())
    scored = json.loads((two / "results" / "metrics.json").read_text())
    assert scored.keys() == expected.keys()
    for key, value in expected.items():
        assert scored[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    predictions = pd.read_csv(two / "results" / "predictions.csv")
    assert len(predictions) == TEST_SIZE and predictions["path"].is_unique
    pd.testing.assert_frame_equal(predictions, pd.read_csv(one / "results" / "predictions.csv"))


def test_gathered_outputs_are_in_sample_order():
    outputs = {"index": np.array([4, 0, 2]), "probs": np.array([[0.4], [0.0], [0.2]])}
    gathered = gather_outputs(outputs)
    assert gathered["index"].tolist() == [0, 2, 4]
    assert gathered["probs"][:, 0].tolist() == [0.0, 0.2, 0.4]
    assert gather_outputs({}) == {}


def test_the_slurm_launcher_starts_one_task_per_gpu_on_every_node(compose_config):
    compose_config()  # registers the project's resolvers and model configs
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    params = instantiate(cfg.hydra.launcher).params
    assert (params["nodes"], params["gpus_per_node"], params["tasks_per_node"]) == (2, 4, 4)
    # Requeued on its time limit; the rerun resumes in the same run directory.
    assert params["max_num_timeout"] > 0
