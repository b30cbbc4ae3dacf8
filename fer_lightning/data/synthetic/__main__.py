"""``python -m fer_lightning.data.synthetic root=DIR train_size=N val_size=M [image_size=S]
[seed=K]``: write a synthetic AffectNet; a configuration mistake is one line on stderr and exit
status 2 (see docs/commands.md)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.synthetic.writer import generate
from fer_lightning.errors import ConfigError

DEFAULTS = {"root": None, "train_size": None, "val_size": None, "image_size": 64, "seed": 0}
EXAMPLE = "root=data/synthetic train_size=4000 val_size=800"


def main(argv: Sequence[str] | None = None) -> int:
    """Generates the dataset; a ConfigError is the user's to fix (see `run_command`)."""
    cfg = parse_key_values(sys.argv[1:] if argv is None else argv, DEFAULTS, EXAMPLE)
    if cfg["root"] == "":
        raise ConfigError("root is empty; pass root=DIR, the directory to write the dataset to")
    for key, value in cfg.items():
        if value is None:
            raise ConfigError(f"missing {key}=...; e.g. {EXAMPLE}")
    start = time.perf_counter()
    root = generate(
        str(cfg["root"]), cfg["train_size"], cfg["val_size"], cfg["image_size"], cfg["seed"]
    )
    seconds = time.perf_counter() - start
    total = cfg["train_size"] + cfg["val_size"]
    print(
        f"wrote {cfg['train_size']} train + {cfg['val_size']} val images "
        f"({cfg['image_size']}x{cfg['image_size']}) to {root} in {seconds:.1f} s "
        f"({total / seconds:.0f} images/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
