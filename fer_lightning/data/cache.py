"""``python -m fer_lightning.data.cache data.root=DIR data.image_size=224``: the decoded cache.

Decodes every indexed sample once at ``data.image_size`` into the store that ``data.cache=decoded``
reads (fer_lightning/data/decoded_store.py), indexing the dataset first if needed, and prints
where it is, its size and how long it took. A sound store is kept (``rebuild=true`` replaces it);
``verify=true`` checks every sample's checksum instead of a spread sample, and rebuilds a damaged
store. Run it once before jobs on several machines that share the cache directory.

Other keys: ``data.cache_dir``, ``data.check_workers`` (the decoding threads; null: all cores).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fer_lightning.cli import parse_key_values, run_command
from fer_lightning.data.decoded_store import build_store, open_store
from fer_lightning.data.formats import DEFAULT_LAYOUT, reader
from fer_lightning.data.index import cache_dir_for, load_or_build_index
from fer_lightning.data.locks import dataset_lock
from fer_lightning.errors import ConfigError
from fer_lightning.values import is_int

DEFAULTS = {
    "data": {"root": "Dataset/", "image_size": 224, "cache_dir": None, "check_workers": None},
    "rebuild": False,
    "verify": False,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Builds (or checks) the store; a ConfigError is the user's to fix (see `run_command`)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    cfg = parse_key_values(args, DEFAULTS, "data.root=Dataset/ data.image_size=224")
    data = cfg["data"]
    size = data["image_size"]
    if not is_int(size) or size < 1:
        raise ConfigError(f"data.image_size must be a positive integer, got {size!r}")
    root = Path(str(data["root"]))
    reader(DEFAULT_LAYOUT).require(root)
    start = time.perf_counter()
    with dataset_lock(root):
        cache = cache_dir_for(root, data["cache_dir"])
        index, _ = load_or_build_index(root, cache, False, data["check_workers"], quiet=True)
        verify = "all" if cfg["verify"] else "spot"
        store = None if cfg["rebuild"] else open_store(cache, index, size, verify)
        built = store is None
        if store is None:
            store = build_store(cache, index, size, data["check_workers"])
    action = "built" if built else "verified" if cfg["verify"] else "already built"
    print(
        f"decoded cache of {store.count} samples at {size} px: {store.pixels} "
        f"({store.count * store.sample_bytes / 1e9:.2f} GB), {action} in "
        f"{time.perf_counter() - start:.1f}s; {int(store.bad.sum())} did not decode"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
