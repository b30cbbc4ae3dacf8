"""``python -m fer_lightning.data.cache``: builds the store training reads, once; checks it."""

from __future__ import annotations

import pytest

from fer_lightning.cli import run_command
from fer_lightning.data.cache import main as cache_main
from fer_lightning.data.datamodule import AffectNetDataModule
from tests.data_fixtures import make_dataset


def test_the_command_builds_the_store_that_training_reads(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", train=24, val=8)
    args = [f"data.root={root}", "data.image_size=16", "data.check_workers=1"]
    assert cache_main(args) == 0
    printed = capsys.readouterr().out
    assert "decoded cache of 32 samples at 16 px" in printed and ", built in" in printed
    dm = AffectNetDataModule(root=str(root), image_size=16, cache="decoded")
    dm.setup("fit")
    store = dm.datasets["train"].store
    assert str(store.pixels) in printed
    built = store.pixels.stat().st_mtime_ns
    assert cache_main([*args, "verify=true"]) == 0
    assert "verified" in capsys.readouterr().out
    assert store.pixels.stat().st_mtime_ns == built
    assert cache_main([*args, "rebuild=true"]) == 0
    assert store.pixels.stat().st_mtime_ns != built


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.image_size=0"], "data.image_size must be a positive integer"),
        (["size=3"], "unknown key 'size'"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    root = make_dataset(tmp_path / "ds", train=8, val=4)
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: cache_main([f"data.root={root}", *args]))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1
