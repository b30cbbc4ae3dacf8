"""One process at a time per dataset while it is generated, indexed and split."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Holds an exclusive lock named after `root` for as long as the block runs.

    Concurrent jobs of a sweep (or each node's rank 0) may prepare the same dataset at once; without
    the lock, one could delete a half-written synthetic set under another. The lock file lives in
    the machine's temporary directory, so it serialises the processes of one machine; jobs on
    several machines sharing a file system should prepare the data once beforehand.
    """
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"fer-lightning-{digest}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
