"""``python -m fer_lightning.data.synthetic``: writes the dataset; bad input is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fer_lightning.cli import run_command
from fer_lightning.data.synthetic.__main__ import main
from fer_lightning.data.synthetic.writer import read_manifest


@pytest.mark.parametrize(
    "args",
    [
        ["train_size=-1", "val_size=8"],
        ["train_size=ten", "val_size=8"],
        ["train_size=8", "val_size=8", "image_size=4"],
        ["train_size=8"],
        ["train_size=8", "val_size=8", "colour=red"],
        ["train_size"],
        ["train_size=8", "val_size=8", "seed=[1"],
    ],
)
def test_cli_rejects_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: main([f"root={tmp_path}", *args]))
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "train_set").exists()


def test_cli_module_entry_point(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fer_lightning.data.synthetic", f"root={tmp_path}"]
    bad = subprocess.run([*cmd, "trian_size=8"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert "trian_size" in bad.stderr
    ok = subprocess.run(
        [*cmd, "train_size=8", "val_size=8", "image_size=24", "seed=5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "images/s" in ok.stdout
    assert read_manifest(tmp_path)["seed"] == 5
