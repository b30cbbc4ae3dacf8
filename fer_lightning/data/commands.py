"""`fer-data SUBCOMMAND key=value ...`: the dataset commands behind one console script.

Each subcommand is a module run as `python -m <module>` would run it, so the two forms take the
same arguments and say the same errors (docs/commands.md). A new dataset command is one line of
SUBCOMMANDS.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "synthetic": "fer_lightning.data.synthetic",
    "check": "fer_lightning.data.check",
    "cache": "fer_lightning.data.cache",
}


def usage() -> str:
    return f"usage: fer-data {{{','.join(SUBCOMMANDS)}}} key=value ... (docs/commands.md)"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the subcommand named first in `argv` (default: the command line) with the rest."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not args or args[0] not in SUBCOMMANDS:
        named = f"unknown subcommand {args[0]!r}" if args else "no subcommand"
        print(f"error: {named}; {usage()}", file=sys.stderr)
        return 2
    module = SUBCOMMANDS[args[0]]
    saved, sys.argv = sys.argv, [f"fer-data {args[0]}", *args[1:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:  # the modules end in sys.exit(status)
        return int(done.code or 0)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
