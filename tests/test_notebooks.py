"""Every notebook runs from top to bottom against a tiny dataset, run and sweep."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fer_lightning.eval import evaluate
from tests.conftest import compose_in

pytest_plugins = ["tests.sweep_fixtures"]

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_stored_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == ["01_dataset", "02_run", "03_sweep"]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        code = [cell for cell in cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), path.name
        # The first cell names what the notebook reads, overridable from the environment.
        assert cells[0].cell_type == "code" and "os.environ.get(" in cells[0].source


def execute(path: Path) -> list:
    """Runs a notebook as Jupyter would (in its own directory); its code cells, each run."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    executed = client.execute()  # raises CellExecutionError, with the failing cell, if one fails
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a code cell did not run"
    return code


def figures(code: list) -> list:
    return [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, tiny_dataset, seed_sweep, monkeypatch):
    # Any job of a sweep is a run directory like a plain run's.
    run_dir = min(p.parent.parent for p in seed_sweep.glob("*/results/metrics.json"))
    monkeypatch.setenv("FER_DATA_ROOT", str(tiny_dataset))
    monkeypatch.setenv("FER_RUN_DIR", str(run_dir))
    monkeypatch.setenv("FER_SWEEP_DIR", str(seed_sweep))
    assert figures(execute(path)), f"{path.name} drew no figure"


def test_the_run_notebook_reads_an_eval_without_a_csv_log(trained_run, tmp_path, monkeypatch):
    (best,) = (trained_run / "checkpoints").glob("best-*.ckpt")
    cfg = compose_in(
        tmp_path, "eval", [f"ckpt_path={best}", "split=val", "trainer.accelerator=cpu"]
    )
    evaluate(cfg)
    monkeypatch.setenv("FER_RUN_DIR", cfg.paths.output_dir)
    code = execute(NOTEBOOKS[1])
    # The learning curves too: from the history the scored checkpoint carries.
    assert len(figures(code[:3])) == 1, "no learning curves"


@pytest.mark.parametrize("layout", ["rafdb", "fer2013", "affectnet_csv"])
def test_the_dataset_notebook_reads_every_layout(layout, tiny_dataset, tmp_path, monkeypatch):
    """A layout without valence/arousal (RAF-DB), one stored as pixel rows with FERPlus votes, and
    one of whole photographs with face boxes."""
    from fer_lightning.data.synthetic.csv_release import write_csv_release
    from tests.layout_fixtures import make_fer2013, make_rafdb

    root = tmp_path / layout
    if layout == "rafdb":
        make_rafdb(root, train=14, test=7)
        settings = "images=aligned"
    elif layout == "fer2013":
        make_fer2013(root, ferplus=True)
        settings = "labels=ferplus"
    else:
        write_csv_release(tiny_dataset, root)
        settings = "crop_margin=0.1"
    monkeypatch.setenv("FER_DATA_ROOT", str(root))
    monkeypatch.setenv("FER_DATA_FORMAT", layout)
    monkeypatch.setenv("FER_DATA_SETTINGS", settings)
    assert figures(execute(NOTEBOOKS[0])), f"no figure of {layout}"
