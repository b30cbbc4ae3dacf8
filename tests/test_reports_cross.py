"""reports.cross: the training x test dataset matrix of accuracy and macro F1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fer_lightning.errors import ConfigError
from fer_lightning.reports.cross import main


def scored_run(directory: Path, train: str, test: str, acc: float, scored: int = 8) -> Path:
    """A run directory whose results/ hold what train or eval writes for one cell."""
    results = directory / "results"
    results.mkdir(parents=True)
    row = {
        "task": "eval",
        "classes": 8,
        "train_data": train,
        "test_data": test,
        "scored_classes": scored,
        "split": "test",
        "test_size": 50,
    }
    pd.DataFrame([row]).to_csv(results / "experiment.csv", index=False)
    metrics = {"test/acc": acc, "test/f1_macro": acc / 2, "test/kappa": 0.1}
    (results / "metrics.json").write_text(json.dumps(metrics))
    return directory


def test_the_matrix_holds_every_pair_and_marks_shared_class_scores(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    scored_run(sweep / "0", "affectnet", "affectnet", 0.6)
    scored_run(sweep / "1", "affectnet", "rafdb", 0.5, scored=7)
    scored_run(sweep / "2", "rafdb", "affectnet", 0.4)
    train_run = scored_run(tmp_path / "train", "rafdb", "rafdb", 0.8)
    output = tmp_path / "cross.csv"
    assert main([f"runs=[{sweep},{train_run}]", f"output={output}"]) == 0

    table = pd.read_csv(output)
    assert list(zip(table["train_data"], table["test_data"], strict=True)) == [
        ("affectnet", "affectnet"),
        ("affectnet", "rafdb"),
        ("rafdb", "affectnet"),
        ("rafdb", "rafdb"),
    ]
    assert table["acc"].tolist() == [0.6, 0.5, 0.4, 0.8]
    assert table["f1_macro"].tolist() == [0.3, 0.25, 0.2, 0.4]
    assert table["scored_classes"].tolist() == [8, 7, 8, 8]
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "affectnet on rafdb: scored on the 7 classes shared with the 8-class network" in printed


def test_two_runs_of_one_pair_or_no_runs_are_config_errors(tmp_path):
    scored_run(tmp_path / "a", "affectnet", "rafdb", 0.5)
    scored_run(tmp_path / "b", "affectnet", "rafdb", 0.6)
    with pytest.raises(ConfigError, match="more than one run scores affectnet on rafdb"):
        main([f"runs=[{tmp_path}]", f"output={tmp_path / 'x.csv'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no results/experiment\.csv"):
        main([f"runs=[{tmp_path / 'empty'}]"])
    with pytest.raises(ConfigError, match="at least one"):
        main([])


def test_the_command_refuses_a_missing_directory_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fer_lightning.reports.cross", f"runs=[{tmp_path / 'gone'}]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {tmp_path / 'gone'} is not a directory: give run or sweep directories\n"
    )
    assert not (tmp_path / "cross_dataset.csv").exists()
