"""Whether /dev/shm can hold what the `processes` loader keeps in flight.

Worker processes hand their batches to the training process through shared memory; a
container's default /dev/shm (64 MB) cannot hold `num_workers x prefetch_factor` batches of
224-pixel images (about 2.3 GB at batch 64 with 15 workers), and the workers would then die with
a bus error deep inside the first epoch. Loader threads write into the batch directly and need
none of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fer_lightning.errors import ConfigError

SHM = Path("/dev/shm")


def require_shared_memory(batch_size: int, image_size: int, workers: int, prefetch: int) -> None:
    """A one-line error when /dev/shm has less room than the batches in flight need."""
    if workers == 0 or not SHM.is_dir():
        return
    need = workers * prefetch * batch_size * 3 * image_size**2  # uint8 images; labels are small
    free = shutil.disk_usage(SHM).free
    if free < need:
        raise ConfigError(
            f"/dev/shm has {free / 2**20:.0f} MiB free, but data.loader=processes keeps up to "
            f"{need / 2**20:.0f} MiB of batches in flight there: use data.loader=threads, lower "
            "data.num_workers, data.prefetch_factor or data.batch_size, or give the container "
            "more shared memory (docker run --shm-size)"
        )
