"""``python -m fer_lightning.data.check``: the table, the report with ids, one-line errors."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from fer_lightning.cli import run_command
from fer_lightning.data import index as index_module
from fer_lightning.data.check import main as check_main
from tests.data_fixtures import make_dataset, plant_faults, plant_odd_files, within


def test_check_cli_prints_and_writes_the_report(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    plant_faults(root)
    out = tmp_path / "reports" / "check.json"
    assert check_main([f"data.root={root}", f"report={out}", "data.check_workers=1"]) == 0
    printed = capsys.readouterr().out
    assert "truncated_image" in printed and "excluded" in printed
    assert json.loads(out.read_text())["counts"]["truncated_image"] == 1


def test_check_cli_full_check_runs_in_a_process_pool(tmp_path, monkeypatch, capsys):
    root = make_dataset(tmp_path / "ds", train=24, val=8)
    monkeypatch.setattr(index_module, "_POOL_MIN_SAMPLES", 1)
    assert check_main([f"data.root={root}", f"report={tmp_path / 'r.json'}"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["usable"] == {
        "train_set": 24,
        "val_set": 8,
    }


def test_missing_dataset_is_one_line_and_exit_status_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: check_main([f"data.root={missing}"]))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(missing) in err and err.count("\n") == 1
    assert not missing.exists()


def test_the_report_goes_to_the_cache_by_default_and_odd_files_are_in_the_table(
    tmp_path, monkeypatch, capsys
):
    root = make_dataset(tmp_path / "ds", train=16, val=8)
    odd = plant_odd_files(root)
    monkeypatch.chdir(tmp_path)
    assert within(60, lambda: check_main([f"data.root={root}", "data.check_workers=1"])) == 0
    printed = capsys.readouterr().out
    report = root / ".fer_cache" / "check-report.json"
    assert printed.rstrip().endswith(f"report with ids: {report}")
    assert not (tmp_path / "data_check.json").exists()
    counts = json.loads(report.read_text())["counts"]
    assert counts == dict(Counter(odd.values()))
    for kind in counts:
        assert re.search(rf"^{kind} +{counts[kind]}  excluded ", printed, re.MULTILINE), kind
