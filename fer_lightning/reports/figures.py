"""The PNG figures in `results/`, drawn from predictions.csv's frame and the epoch history.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than through
pyplot: no GUI backend is ever looked for (training nodes are headless) and no global figure
registry keeps the figures alive after saving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from sklearn.metrics import confusion_matrix

from fer_lightning.data.decode import decode_rgb
from fer_lightning.metrics.calibration import BIN_EDGES, calibration_sums
from fer_lightning.metrics.common import unit_weights
from fer_lightning.runs.history import best_epoch

DPI = 120
EXAMPLES = 16
# Fixed, not the run's seed: every model evaluated on a split shows the same faces.
SAMPLE_SEED = 0
EXAMPLE_SIDE = 160  # pixels each example image is decoded at
CIRCUMPLEX_POINTS = 4000  # more points only hide each other; the title says when subsampled
CORRECT, WRONG = "#1a7f37", "#cf222e"


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, facecolor="white")
    return path


def class_colours(count: int) -> list[tuple[float, ...]]:
    """One fixed colour per class code (tab10), the same in every figure."""
    return [colormaps["tab10"](k % 10) for k in range(count)]


def _annotate_cells(ax: Axes, values: np.ndarray, text: np.ndarray, threshold: float) -> None:
    for (row, col), value in np.ndenumerate(values):
        colour = "white" if value > threshold else "black"
        ax.text(col, row, text[row, col], ha="center", va="center", color=colour, fontsize=8)


def plot_confusion_matrix(
    frame: pd.DataFrame, class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Counts beside row-normalised rates (the recall of each class on the diagonal).

    Both panels because AffectNet is imbalanced: counts hide the rare classes' errors, rates hide
    how many samples a rate rests on.
    """
    labels = range(len(class_names))
    counts = confusion_matrix(frame["true_expression"], frame["pred_expression"], labels=labels)
    support = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    side = 4.2 + 0.45 * len(class_names)
    figure = _figure(2 * side + 1.0, side)
    panels = (
        ("Counts", counts, counts.astype(str), counts.max() or 1),
        ("Normalised by true class", rates, np.char.mod("%.2f", rates), 1.0),
    )
    for ax, (name, values, text, vmax) in zip(figure.subplots(1, 2), panels, strict=True):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
        figure.colorbar(image, ax=ax, shrink=0.8)
        _annotate_cells(ax, values, text, threshold=vmax / 2)
        ax.set_xticks(labels, class_names, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(labels, class_names)
        ax.set_xlabel("Predicted expression")
        ax.set_ylabel("True expression")
        ax.set_title(name)
    figure.suptitle(title)
    return _save(figure, path)


def plot_curves(history: Sequence[Mapping[str, float]], metric: str, path: Path) -> Path:
    """Training and validation `metric` ("loss" or "acc") per epoch, the best val epoch marked."""
    figure = _figure(7, 4.5)
    ax = figure.subplots()
    for stage, style, label in (("train", "o-", "training"), ("val", "s-", "validation")):
        rows = [row for row in history if f"{stage}/{metric}" in row]
        epochs = [row["epoch"] for row in rows]
        ax.plot(epochs, [row[f"{stage}/{metric}"] for row in rows], style, label=label)
    best = best_epoch(history)
    if best is not None:
        label = f"best validation accuracy (epoch {best['epoch']})"
        ax.axvline(best["epoch"], color="grey", linestyle=":", label=label)
    name = "Accuracy" if metric == "acc" else "Loss"
    ax.set_xlabel("Epoch")
    ax.set_ylabel(name)
    ax.set_title(f"Training and validation {name.lower()}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)


def seeded_rows(frame: pd.DataFrame, count: int) -> np.ndarray:
    """Positions of `count` rows drawn with SAMPLE_SEED, sorted: every run shows the same ones."""
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(len(frame), size=min(count, len(frame)), replace=False))


def _signed(value: float) -> str:
    """A valence or arousal label for a title; `-` where the sample has none (NaN)."""
    return f"{value:+.2f}" if np.isfinite(value) else "-"


def plot_examples(frame: pd.DataFrame, class_names: Sequence[str], path: Path, title: str) -> Path:
    """A 4x4 grid of test faces, true and predicted expression and valence/arousal under each;
    green where the expression is right, red where wrong."""
    rows = seeded_rows(frame, EXAMPLES)
    # A fixed grid: constrained layout would measure 16 titled image axes, several seconds here.
    figure = _figure(11, 12.5, layout=None)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.3)
    axes = figure.subplots(4, 4).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, row in zip(axes, rows, strict=False):
        sample = frame.iloc[row]
        image = decode_rgb(str(sample["path"]), EXAMPLE_SIDE, stored_side=0)
        if image is None:
            ax.text(0.5, 0.5, "image unreadable", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.imshow(image, interpolation="nearest")
        true, pred = int(sample["true_expression"]), int(sample["pred_expression"])
        ax.set_title(
            f"true {class_names[true]}  v {_signed(sample['true_valence'])} "
            f"a {_signed(sample['true_arousal'])}\n"
            f"pred {class_names[pred]}  v {sample['pred_valence']:+.2f} "
            f"a {sample['pred_arousal']:+.2f}",
            fontsize=8,
            color=CORRECT if true == pred else WRONG,
        )
    figure.suptitle(title)
    return _save(figure, path)


def plot_valence_arousal(frame: pd.DataFrame, metrics: Mapping[str, float], path: Path) -> Path:
    """Predicted against true valence and arousal, with the identity line and CCC/RMSE/PCC."""
    figure = _figure(11, 5.5)
    alpha = float(np.clip(300 / max(len(frame), 1), 0.05, 0.7))
    for ax, dimension in zip(figure.subplots(1, 2), ("valence", "arousal"), strict=True):
        ax.plot([-1, 1], [-1, 1], color="grey", linestyle="--", linewidth=1, label="y = x")
        ax.scatter(
            frame[f"true_{dimension}"],
            frame[f"pred_{dimension}"],
            s=8,
            alpha=alpha,
            edgecolors="none",
            rasterized=True,
        )
        ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
        ax.set_xlabel(f"True {dimension}")
        ax.set_ylabel(f"Predicted {dimension}")
        ax.set_title(
            f"{dimension.capitalize()}: CCC {metrics[f'{dimension}_ccc']:.3f}, "
            f"PCC {metrics[f'{dimension}_pcc']:.3f}, RMSE {metrics[f'{dimension}_rmse']:.3f}"
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    return _save(figure, path)


def plot_circumplex(frame: pd.DataFrame, class_names: Sequence[str], path: Path) -> Path:
    """Russell's circumplex: labelled and predicted (valence, arousal) side by side, each point
    coloured by its true (left) or predicted (right) expression."""
    shown = frame
    if len(frame) > CIRCUMPLEX_POINTS:
        shown = frame.iloc[seeded_rows(frame, CIRCUMPLEX_POINTS)]
    colours = np.array(class_colours(len(class_names)))
    figure = _figure(12, 6.2)
    panels = (("Labels", "true", "true"), ("Predictions", "pred", "predicted"))
    for ax, (name, side, adjective) in zip(figure.subplots(1, 2, sharey=True), panels, strict=True):
        # Black guides: tab10's grey is Contempt's colour.
        guides = {"color": "black", "alpha": 0.35, "linewidth": 0.8}
        ax.add_patch(Circle((0, 0), 1, fill=False, **guides))
        ax.axhline(0, **guides)
        ax.axvline(0, **guides)
        ax.scatter(
            shown[f"{side}_valence"],
            shown[f"{side}_arousal"],
            c=colours[shown[f"{side}_expression"].to_numpy()],
            s=10,
            alpha=0.7,
            edgecolors="none",
            rasterized=True,
        )
        ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), aspect="equal")
        ax.set_xlabel("Valence")
        ax.set_title(f"{name} (colour: {adjective} expression)")
    figure.axes[0].set_ylabel("Arousal")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=name)
        for name, colour in zip(class_names, colours, strict=True)
    ]
    figure.legend(handles=handles, loc="outside right center", title="Expression")
    title = "Valence-arousal circumplex"
    if len(shown) < len(frame):
        title += f" ({len(shown):,} of {len(frame):,} samples)"
    figure.suptitle(title)
    return _save(figure, path)


def plot_reliability(frame: pd.DataFrame, ece: float, path: Path) -> Path:
    """Accuracy against mean confidence in the ECE's bins (docs/metrics.md), the gap to the
    diagonal shaded, and below it how many samples each bin holds."""
    probs = torch.from_numpy(frame.filter(regex=r"^prob_\d+$").to_numpy(dtype="float64"))
    correct = torch.from_numpy(
        (frame["pred_expression"] == frame["true_expression"]).to_numpy(dtype="float64")
    )
    count, confidence, right = calibration_sums(
        probs, correct, unit_weights(len(frame), probs.device)
    )[0].numpy()
    filled = count > 0
    centres, width = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2, np.diff(BIN_EDGES)
    accuracy = np.divide(right, count, out=np.zeros_like(right), where=filled)
    mean_confidence = np.divide(confidence, count, out=centres.copy(), where=filled)
    figure = _figure(6, 7)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.bar(
        centres[filled],
        accuracy[filled],
        width=width[filled],
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    top.bar(
        centres[filled],
        mean_confidence[filled] - accuracy[filled],
        bottom=accuracy[filled],
        width=width[filled],
        color=WRONG,
        alpha=0.3,
        label="gap",
    )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy")
    top.set_title(f"Reliability ({len(BIN_EDGES) - 1} bins): ECE {ece:.3f}")
    top.legend(loc="upper left")
    bottom.bar(centres, count, width=width, color="grey", edgecolor="black")
    bottom.set(xlabel="Confidence (top probability)", ylabel="Samples")
    return _save(figure, path)


def plot_cross_dataset(table: pd.DataFrame, path: Path) -> Path:
    """Accuracy and macro F1 of each training dataset (rows) on each test dataset (columns) of
    `reports.cross`'s table; * marks a cell scored on the shared classes only, - one not run."""
    trained = sorted(table["train_data"].unique())
    tested = sorted(table["test_data"].unique())
    cells = table.set_index(["train_data", "test_data"])
    side = 2.5 + 0.9 * max(len(trained), len(tested))
    figure = _figure(2 * side + 1.5, side)
    for ax, score in zip(figure.subplots(1, 2), ("acc", "f1_macro"), strict=True):
        values = np.full((len(trained), len(tested)), np.nan)
        text = np.full(values.shape, "-", dtype=object)
        for (row, train), (col, test) in product(enumerate(trained), enumerate(tested)):
            if (train, test) in cells.index:
                cell = cells.loc[(train, test)]
                values[row, col] = cell[score]
                shared = "*" if cell["scored_classes"] < cell["classes"] else ""
                text[row, col] = f"{cell[score]:.3f}{shared}"
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=ax, shrink=0.8)
        _annotate_cells(ax, np.nan_to_num(values), text, threshold=0.5)
        ax.set_xticks(range(len(tested)), tested, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(trained)), trained)
        ax.set_xlabel("Tested on")
        ax.set_ylabel("Trained on")
        ax.set_title("Accuracy" if score == "acc" else "Macro F1")
    figure.suptitle("Cross-dataset scores (* on the classes shared with the network)")
    return _save(figure, path)
