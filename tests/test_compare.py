"""`python -m fer_lightning.compare`: paired differences of two runs on the same samples, and a
one-line refusal for runs on different samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from fer_lightning.cli import run_command
from fer_lightning.compare import main
from fer_lightning.metrics.bootstrap import Scored, replicate_scores
from fer_lightning.metrics.suite import SUITE


def make_run(run_dir: Path, paths: list[str], labels: np.ndarray, seed: int) -> pd.DataFrame:
    """A run directory with the results/ files compare reads, for a model of some skill."""
    rng = np.random.default_rng(seed)
    n = len(paths)
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), labels] += 1.0 + seed / 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    va = rng.uniform(-1, 1, (n, 2))
    va_pred = np.clip(0.5 * va + rng.normal(0, 0.3, (n, 2)), -1, 1)
    frame = pd.DataFrame(
        {
            "path": paths,
            "true_expression": labels,
            "pred_expression": probs.argmax(axis=1),
            "true_valence": va[:, 0],
            "pred_valence": va_pred[:, 0],
            "true_arousal": va[:, 1],
            "pred_arousal": va_pred[:, 1],
            **{f"prob_{k}": probs[:, k] for k in range(8)},
        }
    )
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    scored = Scored(t(labels), t(probs.argmax(axis=1)), t(probs), t(va), t(va_pred))
    ones = torch.ones(n, 1, dtype=torch.float64)
    metrics = {f"test/{k}": float(v[0]) for k, v in replicate_scores(scored, ones, ones).items()}
    (run_dir / "results").mkdir(parents=True)
    frame.to_csv(run_dir / "results" / "predictions.csv", index=False, float_format="%.9g")
    (run_dir / "results" / "metrics.json").write_text(json.dumps(metrics))
    return frame


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 8, 300)


def test_two_runs_on_the_same_samples_are_compared(tmp_path, labels, capsys):
    paths = [f"/data/{i}.jpg" for i in range(300)]
    frame_a = make_run(tmp_path / "a", paths, labels, seed=0)
    # B lists the same samples in another order: compare pairs them by path.
    order = np.random.default_rng(1).permutation(300)
    frame_b = make_run(tmp_path / "b", [paths[i] for i in order], labels[order], seed=3)
    output = tmp_path / "comparison.csv"
    assert (
        main([f"runs=[{tmp_path / 'a'},{tmp_path / 'b'}]", f"output={output}", "resamples=300"])
        == 0
    )

    table = pd.read_csv(output).set_index("metric")
    assert list(table.index) == [f"test/{name}" for name in SUITE]
    metrics_a = json.loads((tmp_path / "a" / "results" / "metrics.json").read_text())
    metrics_b = json.loads((tmp_path / "b" / "results" / "metrics.json").read_text())
    acc = table.loc["test/acc"]
    assert acc["difference"] == pytest.approx(
        metrics_b["test/acc"] - metrics_a["test/acc"], abs=1e-6
    )
    assert acc["ci_low"] <= acc["difference"] <= acc["ci_high"]
    assert 0 < acc["p_value"] <= 1
    right_a = (frame_a["pred_expression"] == frame_a["true_expression"]).to_numpy()
    by_path = frame_b.set_index("path").loc[frame_a["path"]]
    right_b = (by_path["pred_expression"] == by_path["true_expression"]).to_numpy()
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    assert (acc["only_a_correct"], acc["only_b_correct"]) == (only_a, only_b)
    expected = scipy.stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert acc["mcnemar_p"] == pytest.approx(expected, rel=1e-5)
    printed = capsys.readouterr().out
    assert "test/valence_icc" in printed and "McNemar" in printed


def test_runs_on_different_samples_are_refused_in_one_line(tmp_path, labels):
    make_run(tmp_path / "a", [f"/data/{i}.jpg" for i in range(300)], labels, seed=0)
    make_run(tmp_path / "b", [f"/other/{i}.jpg" for i in range(300)], labels, seed=1)
    runs = f"runs=[{tmp_path / 'a'},{tmp_path / 'b'}]"
    result = subprocess.run(
        [sys.executable, "-m", "fer_lightning.compare", runs],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the runs were scored on different samples")
    assert not (tmp_path / "comparison.csv").exists()


@pytest.mark.parametrize("runs", ["runs=[only_one]", "runs=[]"])
def test_anything_but_two_runs_is_a_user_error(runs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda: main([runs]))
    assert exit_info.value.code == 2
    assert "runs must name two run directories" in capsys.readouterr().err
