"""The command-line layer: the per-job policy of sweeps, the key=value parser of plain commands."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from fer_lightning.cli import parse_key_values, run_command, run_name, run_sweep_job
from fer_lightning.errors import ConfigError

DEFAULTS = {"root": None, "size": 64, "data": {"root": "Dataset/", "workers": None}}


def test_a_search_gets_the_optimized_metrics_of_a_job():
    def task(cfg):
        return {"acc": 0.5, "valence_ccc": 0.25}

    def search(metric):
        return OmegaConf.create({"optimized_metric": metric})

    assert run_sweep_job(task, search("acc")) == 0.5
    assert run_sweep_job(task, search(["acc", "valence_ccc"])) == [0.5, 0.25]
    assert run_sweep_job(task, OmegaConf.create({})) == task(None)
    with pytest.raises(ConfigError, match="arousal_ccc"):
        run_sweep_job(task, search("arousal_ccc"))


def test_key_values_parse_as_numbers_over_the_defaults():
    parsed = parse_key_values(["size=32", "data.workers=3", "root=out/a"], DEFAULTS, "root=DIR")
    assert parsed == {"root": "out/a", "size": 32, "data": {"root": "Dataset/", "workers": 3}}
    assert parse_key_values([], DEFAULTS, "root=DIR") == DEFAULTS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["size"], "expected key=value, got 'size'; keys: root, size, data.root, data.workers"),
        (["=3"], "expected key=value, got '=3'"),
        (["colour=red"], "unknown key 'colour'; keys: root, size, data.root, data.workers"),
        (["data.colour=red"], "unknown key 'data.colour'"),
        (["data=3"], "unknown key 'data'"),
        (["size=[1,"], "could not parse the arguments"),
    ],
)
def test_a_bad_argument_is_one_line_naming_it(argv, message):
    with pytest.raises(ConfigError) as caught:
        parse_key_values(argv, DEFAULTS, "root=DIR")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_command_error_is_one_line_and_exit_status_2(capsys):
    def main() -> int:
        raise ConfigError("root is empty; pass root=DIR")

    with pytest.raises(SystemExit) as caught:
        run_command(main)
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: root is empty; pass root=DIR\n"
    assert run_command(lambda: 0) == 0


def test_run_directory_names_have_no_characters_that_need_quoting():
    assert run_name("") == "default"
    assert run_name("model=tnet,seed=1") == "model-tnet_seed-1"
    long = run_name("loss.weights.expression=0.9," * 10)
    assert len(long) == 91 and long != run_name("loss.weights.expression=0.8," * 10)
