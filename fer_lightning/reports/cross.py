"""`python -m fer_lightning.reports.cross runs=[DIR,...]`: the cross-dataset matrix.

Every training dataset (rows) scored on every test dataset (columns): accuracy and macro F1,
from the `results/` of train runs (a network on its own dataset's test split) and of eval runs
(`eval ckpt_path=... data=<other> data.root=...`), found at any depth under the given
directories, so an eval multirun's sweep directory can be given as it is. Writes
`cross_dataset.csv` (or `output=`), one row per (train_data, test_data) cell, and the figure
beside it (same name, `.png`). Datasets are named as experiment.csv names them
(`reports.results.dataset_name`).

A cell scored on fewer classes than the network knows (an 8-class network on a 7-class dataset
scores on the classes they share) says so: `scored_classes` in the CSV, a * in the figure.

A `key=value` command like compare: it reads finished runs and composes no config.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.errors import ConfigError
from fer_lightning.files import atomic_write

DEFAULTS = {"runs": [], "output": "cross_dataset.csv"}
EXAMPLE = "runs=[outputs/eval/multirun/2026-01-01_12-00-00,outputs/train/runs/default]"
COLUMNS = [
    "train_data",
    "test_data",
    "split",
    "acc",
    "f1_macro",
    "classes",
    "scored_classes",
    "samples",
    "run",
]
SCORES = ("acc", "f1_macro")


def result_row(results: Path) -> dict[str, Any]:
    """One scored run's cell: what it was trained on, what it was tested on, and its scores."""
    experiment = pd.read_csv(results / "experiment.csv").iloc[0]
    if "train_data" not in experiment or "test_data" not in experiment:
        raise ConfigError(
            f"{results / 'experiment.csv'} does not name its train and test data (a run of an "
            "older version): eval its checkpoint again"
        )
    metrics = json.loads((results / "metrics.json").read_text())
    split = str(experiment["split"])
    return {
        "train_data": str(experiment["train_data"]),
        "test_data": str(experiment["test_data"]),
        "split": split,
        **{score: metrics[f"{split}/{score}"] for score in SCORES},
        "classes": int(experiment["classes"]),
        "scored_classes": int(experiment["scored_classes"]),
        "samples": int(experiment[f"{split}_size"]),
        "run": str(results.parent),
    }


def cross_rows(directories: Sequence[str]) -> pd.DataFrame:
    """Every run with results/experiment.csv and metrics.json under `directories`, one row each,
    sorted by train and test data; two runs of one cell are a ConfigError."""
    found = []
    for directory in directories:
        if not Path(directory).is_dir():
            raise ConfigError(f"{directory} is not a directory: give run or sweep directories")
        found += [
            result_row(experiment.parent)
            for experiment in sorted(Path(directory).rglob("results/experiment.csv"))
            if (experiment.parent / "metrics.json").is_file()
        ]
    if not found:
        raise ConfigError(
            f"no results/experiment.csv with metrics.json under {', '.join(directories)}: give "
            "the directories of train or eval runs"
        )
    table = pd.DataFrame(found, columns=COLUMNS)
    twice = table[table.duplicated(["train_data", "test_data"], keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        runs = ", ".join(twice[twice["train_data"] == first["train_data"]]["run"])
        raise ConfigError(
            f"more than one run scores {first['train_data']} on {first['test_data']} ({runs}): "
            "give one run per pair of datasets"
        )
    return table.sort_values(["train_data", "test_data"], ignore_index=True)


def format_matrix(table: pd.DataFrame) -> str:
    """The console view: one matrix per score, rows trained on, columns tested on."""
    parts = []
    for score in SCORES:
        matrix = table.pivot(index="train_data", columns="test_data", values=score)
        parts.append(f"{score} (rows: trained on, columns: tested on)\n{matrix.round(4)}")
    shared = table[table["scored_classes"] < table["classes"]]
    for _, row in shared.iterrows():
        parts.append(
            f"{row['train_data']} on {row['test_data']}: scored on the {row['scored_classes']} "
            f"classes shared with the {row['classes']}-class network"
        )
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_key_values(sys.argv[1:] if argv is None else argv, DEFAULTS, EXAMPLE)
    if not cfg["runs"]:
        raise ConfigError(f"runs must name at least one run or sweep directory, e.g. {EXAMPLE}")
    table = cross_rows(cfg["runs"])
    output = Path(cfg["output"])
    with atomic_write(output, "w", newline="") as handle:
        table.to_csv(handle, index=False, float_format="%.6g")
    # Imported here: figures import torch, which a mistyped argument's error needs not.
    from fer_lightning.reports.figures import plot_cross_dataset

    figure = plot_cross_dataset(table, output.with_suffix(".png"))
    print(format_matrix(table))
    print(f"written to {output} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
