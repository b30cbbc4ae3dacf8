"""One process at a time in a run directory: the lock a command holds while it writes there.

Two processes in one run directory (the same command started twice, or a copy resumed while the
original runs) would save over each other's checkpoints and interleave their logs. The first
holds `<run_dir>/.lock` (an OS file lock, released however the process ends, so no stale lock is
left by a kill) from before it touches anything until it exits; a second refuses in one line.
That includes the record of what ran (`.hydra/`): Hydra would write it before any code of the
project runs (so `hydra.output_subdir` is null in conf/hydra/default.yaml), and `record_run`
writes it here once the lock is held.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.errors import ConfigError
from fer_lightning.file_locks import OPEN_FLAGS, try_lock
from fer_lightning.files import write_text_atomic

LOCK_FILE = ".lock"


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Holds `run_dir`'s lock, or refuses naming the process that holds it.

    Only global rank zero locks: the other ranks of a DDP run are the same run. The file is opened
    without following a symbolic link (a planted link cannot make this truncate another file)
    and must be a regular file.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, OPEN_FLAGS, 0o644)
    except OSError as exc:
        reason = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened ({exc})"
        raise ConfigError(f"the run directory's lock {path} {reason}: remove it") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"the run directory's lock {path} is not a regular file: remove it")
        if not try_lock(fd):
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"run directory {run_dir} is in use by another process (pid {holder}): wait for "
                "it to end, or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


RECORD_DIR = ".hydra"


def record_run(run_dir: Path, cfg: DictConfig) -> None:
    """Writes the job's composed config, Hydra's config and the command's overrides into
    `<run_dir>/.hydra/`, as Hydra itself would (the sweep summary reads them back)."""
    if rank_zero_only.rank != 0:
        return
    hydra = HydraConfig.get()
    record = run_dir / RECORD_DIR
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", OmegaConf.create({"hydra": hydra})),
        ("overrides.yaml", hydra.overrides.task),
    ):
        write_text_atomic(record / name, OmegaConf.to_yaml(node))
