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


def test_every_layout_is_checked_with_its_own_parts(tmp_path, capsys):
    from tests.layout_fixtures import make_fer2013, make_folders, make_manifest, make_rafdb

    make_rafdb(tmp_path / "raf", train=7, test=7)
    manifest = make_manifest(tmp_path / "m", count=6)
    make_fer2013(tmp_path / "fer", {"Training": 7, "PublicTest": 1, "PrivateTest": 1})
    make_folders(tmp_path / "f", per_class=1, parts=("train", "valid"))
    runs = {
        "rafdb": [f"data.root={tmp_path / 'raf'}", "data.images=aligned"],
        "manifest": [f"data.root={tmp_path / 'm'}", f"data.manifest={manifest}"],
        "fer2013": [f"data.root={tmp_path / 'fer'}", "data.labels=fer2013"],
        "folders": [f"data.root={tmp_path / 'f'}"],
    }
    headers = {}
    for layout, args in runs.items():
        assert check_main([f"data.format={layout}", *args, "data.check_workers=1"]) == 0
        printed = capsys.readouterr().out
        headers[layout] = printed.splitlines()[2].split()
        assert "(none)" in printed
    assert headers == {
        "rafdb": ["train_set", "test_set"],
        "manifest": ["train_set", "val_set", "test_set"],
        "fer2013": ["train_set", "val_set", "test_set"],
        "folders": ["train_set", "val_set"],
    }
    with pytest.raises(SystemExit) as exit_:
        run_command(
            lambda: check_main([f"data.root={tmp_path}", "data.format=rafdb", "data.labels=x"])
        )
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "error: data.labels is not a setting of data.format=rafdb: remove it "
        "(rafdb takes data.images)\n"
    )
