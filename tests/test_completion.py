"""Hydra's tab completion for the console scripts and for `python -m fer_lightning.<app>`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from fer_lightning import completion


@pytest.mark.parametrize(
    ("line", "app_line"),
    [
        ("python -m fer_lightning.train model=sq", "fer_lightning.train model=sq"),
        ("/usr/bin/python3.11 -m fer_lightning.eval  ", "fer_lightning.eval  "),
        ("fer-train model=sq", "fer-train model=sq"),
        ("python train.py model=sq", "python train.py model=sq"),
    ],
)
def test_a_module_form_line_is_read_as_an_apps(line, app_line):
    assert completion.app_line(line) == app_line


def test_the_module_form_gets_a_completion_function_of_its_own(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/x/fer_lightning/train.py", "-sc", "install=bash"])
    completion.after_hydra(sys.argv[1:])
    assert "complete -o nospace -o default -F _fer_lightning_completion python" in (
        capsys.readouterr().out
    )
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fer-train", "-sc", "install=bash"])
    completion.after_hydra(sys.argv[1:])  # Hydra's own script serves an installed app
    assert capsys.readouterr().out == ""


def _complete(install: list[str], line: str, tmp_path) -> list[str]:
    """What bash offers for `line` after `eval "$(<install> -sc install=bash)"`."""
    words = line.split(" ")
    script = f"""
        python() {{ {sys.executable} "$@"; }}
        eval "$({" ".join(install)} -sc install=bash)"
        COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
        COMP_WORDS=({" ".join(words)}); COMP_CWORD={len(words) - 1}
        $(complete -p {words[0]} | sed 's/.* -F \\([^ ]*\\) .*/\\1/')
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash completion needs bash")
def test_tab_completes_python_dash_m_as_hydra_does_an_app(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    line = "python -m fer_lightning.train experiment=qu"
    assert _complete(["python", "-m", "fer_lightning.train"], line, tmp_path) == [
        "experiment=quickstart"
    ]
