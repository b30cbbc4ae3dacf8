"""Hydra's shell completion, for the `python -m fer_lightning.<app>` form as well.

Hydra's bash completion knows two command lines: an installed app (`fer-train ARGS`, which works
as it is) and `python FILE.py ARGS`. For `python -m fer_lightning.train ARGS` it fails twice: its
installed bash function looks for a file named `-m` and gives up, and its query reads `-m` and
the module's name as overrides (an override parse error). So the query's line is rewritten to the
app form before Hydra reads it, and the install script gets a function of ours for `python` that
answers `python -m fer_lightning.<app>` lines and leaves every other line to Hydra's
(README: tab completion).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

MODULE_LINE = re.compile(r"^\s*\S*python[\d.]*\s+-m\s+(fer_lightning\.[\w.]+)(.*)$", re.DOTALL)

MODULE_FORM_SCRIPT = r"""
_fer_lightning_completion()
{
    local words=($COMP_LINE)
    if [ "${words[1]}" == "-m" ] && [[ "${words[2]}" == fer_lightning.* ]]; then
        local choices
        choices=$(COMP_LINE="$COMP_LINE" "${words[0]}" -m "${words[2]}" -sc query=bash 2>/dev/null)
        COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${COMP_WORDS[$COMP_CWORD]}"))
    else
        hydra_bash_completion
    fi
}
complete -o nospace -o default -F _fer_lightning_completion python python3"""


def shell_completion(argv: Sequence[str]) -> bool:
    return "-sc" in argv or "--shell-completion" in argv


def app_line(line: str) -> str:
    """A completion line as Hydra reads an installed app's: `python -m fer_lightning.train
    model=` becomes `fer_lightning.train model=`; other lines are left as they are."""
    match = MODULE_LINE.match(line)
    return f"{match[1]}{match[2]}" if match else line


def before_hydra(argv: Sequence[str]) -> None:
    """Rewrites the line of a completion query for Hydra (see `app_line`)."""
    if shell_completion(argv) and "COMP_LINE" in os.environ:
        os.environ["COMP_LINE"] = app_line(os.environ["COMP_LINE"])


def after_hydra(argv: Sequence[str]) -> None:
    """After Hydra's bash install script, when run as `python -m`: the function of ours that
    completes that form (Hydra's `_get_exec` says `python` for it, as for a script)."""
    if shell_completion(argv) and "install=bash" in argv and sys.argv[0].endswith(".py"):
        print(MODULE_FORM_SCRIPT)
