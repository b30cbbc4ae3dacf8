"""`fer-data SUBCOMMAND`: the dataset commands behind one console script."""

from __future__ import annotations

import pytest

from fer_lightning.data import commands


def test_a_subcommand_runs_its_module_with_the_rest_of_the_line(tmp_path, capsys):
    root = tmp_path / "synthetic"
    argv = ["synthetic", f"root={root}", "train_size=8", "val_size=8", "image_size=32"]
    assert commands.main(argv) == 0
    assert "wrote 8 train + 8 val images" in capsys.readouterr().out
    assert len(list((root / "train_set" / "images").iterdir())) == 8


def test_its_errors_are_the_modules_one_line_and_status_2(capsys):
    assert commands.main(["synthetic", "root=x"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: missing train_size=...; e.g. root=data/synthetic train_size=4000 val_size=800"
    ]


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--bogus"]])
def test_no_or_an_unknown_subcommand_is_one_line_naming_them(argv, capsys):
    assert commands.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fer-data {synthetic,check,cache}" in err


def test_help_lists_every_subcommand(capsys):
    assert commands.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in commands.SUBCOMMANDS)
