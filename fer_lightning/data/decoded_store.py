"""``data.cache=decoded``: every sample of the index decoded once, at ``data.image_size``, on disk.

Decoding the same JPEGs every epoch is what limits a loader once its own overhead is gone; a
sweep over one dataset at one resolution decodes them again in every run. The store holds each
indexed sample as it comes out of `decode_rgb` (uint8 RGB, size x size x 3), so an epoch read
from it gives the batches an epoch decoded from the JPEGs gives, byte for byte (same order,
same augmentation).

Format, in the dataset's cache directory beside the index (see docs/data.md):

- ``decoded-<size>px-<key>.u8``: the pixels, a raw C-order uint8 array [samples, size, size, 3]
  in index order, readable as ``np.memmap(path, np.uint8, "r", shape=...)``; the loader reads a
  sample with one ``pread`` into its batch slot (no page faults in the reader, measured faster
  than copying from a mapping: bench/README.md), and every process and DDP rank of the machine
  shares the page cache's one copy;
- ``decoded-<size>px-<key>.npz``: what the pixels are (format version, key, shape), the samples
  that did not decode when it was built, and a CRC-32 per sample.

``key`` is a digest of the index (its content digest, image files and stored sizes), the image
size and the format version, so a changed index or size gets a new store and the old one of that
size is removed once the new one is complete. Both files are written atomically
(`fer_lightning.files`), the pixels first: a store without its metadata, or whose pixel file has
the wrong length, is rebuilt; a store whose sampled checksums (`SPOT_CHECKS` samples spread over
it, on every open; all with ``python -m fer_lightning.data.cache verify=true``) disagree is damaged,
and is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_lightning.data.decode import decode_rgb
from fer_lightning.data.index import Index
from fer_lightning.data.locks import dataset_lock
from fer_lightning.data.sampler import rank_and_world
from fer_lightning.errors import ConfigError
from fer_lightning.files import atomic_write

log = logging.getLogger(__name__)

STORE_VERSION = 1
# data.cache's choices: null (decode the images every epoch) or decoded (this store).
CACHES = (None, "decoded")
SPOT_CHECKS = 64
# Samples one build task decodes: large enough to amortise the task, small enough to balance.
_CHUNK = 256


class DecodedStore:
    """An opened store: ``read`` copies sample ``row`` of the index into a batch slot.

    The file is opened lazily in each process (a pickled store, sent to a worker process, carries
    its path, not a descriptor).
    """

    def __init__(self, pixels: Path, count: int, size: int, bad: np.ndarray) -> None:
        self.pixels = pixels
        self.count = count
        self.size = size
        self.bad = bad  # bool per index row: did not decode when the store was built
        self._fd: int | None = None
        self._pid = 0

    @property
    def sample_bytes(self) -> int:
        return self.size * self.size * 3

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.pixels, os.O_RDONLY | os.O_CLOEXEC), os.getpid()
        return self._fd

    def read(self, row: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``row`` as uint8 (size, size, 3), into ``out`` (C-contiguous) when given."""
        if out is None:
            out = np.empty((self.size, self.size, 3), dtype=np.uint8)
        got = os.preadv(self._descriptor(), [out], row * self.sample_bytes)
        if got != self.sample_bytes:
            raise ConfigError(
                f"the decoded cache {self.pixels} was cut short (sample {row}): delete it"
            )
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


def store_key(index: Index, size: int) -> str:
    sha = hashlib.sha1(f"{STORE_VERSION}:{index.digest}:{size}:".encode())
    sha.update(np.ascontiguousarray(index.files).tobytes())
    sha.update(np.ascontiguousarray(index.side).tobytes())
    return sha.hexdigest()[:16]


def store_paths(cache_dir: Path, index: Index, size: int) -> tuple[Path, Path]:
    """(pixels, metadata) of the store of ``index`` at ``size``."""
    stem = f"decoded-{size}px-{store_key(index, size)}"
    return cache_dir / f"{stem}.u8", cache_dir / f"{stem}.npz"


def _read_meta(path: Path) -> tuple[dict, np.ndarray, np.ndarray] | None:
    """(metadata, bad, checksums), or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return json.loads(str(saved["meta"])), saved["bad"], saved["crc"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        log.warning("%s is damaged (%s): rebuilding the decoded cache", path, type(error).__name__)
        return None


def open_store(
    cache_dir: Path, index: Index, size: int, verify: str = "spot"
) -> DecodedStore | None:
    """The store of ``index`` at ``size`` when it is complete and sound, else None (with a warning
    when it exists but is damaged). ``verify``: ``spot`` checks `SPOT_CHECKS` samples, ``all``
    every sample."""
    pixels, meta_path = store_paths(cache_dir, index, size)
    read = _read_meta(meta_path)
    if read is None:
        return None
    meta, bad, crc = read
    count = len(index)
    expected = {"version": STORE_VERSION, "key": store_key(index, size), "shape": [count, size]}
    if {k: meta.get(k) for k in expected} != expected or len(bad) != count or len(crc) != count:
        log.warning("%s does not describe this index: rebuilding the decoded cache", meta_path)
        return None
    store = DecodedStore(pixels, count, size, bad.astype(bool))
    try:
        length = pixels.stat().st_size
    except FileNotFoundError:
        log.warning("%s is missing: rebuilding the decoded cache", pixels)
        return None
    if length != count * store.sample_bytes:
        log.warning("%s has the wrong length: rebuilding the decoded cache", pixels)
        return None
    rows = range(count) if verify == "all" else np.linspace(0, count - 1, SPOT_CHECKS).astype(int)
    damaged = sum(zlib.crc32(store.read(int(r))) != crc[r] for r in sorted(set(rows)))
    if damaged:
        log.warning(
            "%s is damaged (%d checked samples differ from their checksums): rebuilding it",
            pixels,
            damaged,
        )
        return None
    return store


def _fill(fd: int, index: Index, size: int, rows: range, bad: np.ndarray, crc: np.ndarray) -> None:
    """Decodes ``rows`` into one reused slot each and writes them to their place in the file
    (``pwrite`` rather than through a mapping: no page fault per page of the store)."""
    slot = np.empty((size, size, 3), dtype=np.uint8)
    for row in rows:
        path = os.path.join(index.root, index.files[row])
        if decode_rgb(path, size, int(index.side[row]), slot) is None:
            bad[row] = True
            slot[...] = 0
        crc[row] = zlib.crc32(slot)
        os.pwrite(fd, slot, row * slot.nbytes)


def build_store(
    cache_dir: Path, index: Index, size: int, workers: int | None = None
) -> DecodedStore:
    """Decodes every sample of ``index`` into a new store (threads: OpenCV releases the GIL), then
    removes the other stores of ``size`` in ``cache_dir`` (stale: built for another index)."""
    pixels_path, meta_path = store_paths(cache_dir, index, size)
    count = len(index)
    needed = count * size * size * 3
    free = shutil.disk_usage(cache_dir).free
    if needed > free:
        raise ConfigError(
            f"the decoded cache of {count} samples at {size} px needs {needed / 1e9:.1f} GB in "
            f"{cache_dir}, which has {free / 1e9:.1f} GB free: set data.cache_dir to a larger disk"
        )
    log.info("decoding %d samples at %d px into %s (once)", count, size, pixels_path)
    bad = np.zeros(count, dtype=bool)
    crc = np.zeros(count, dtype=np.uint32)
    workers = workers or len(os.sched_getaffinity(0))
    with atomic_write(pixels_path) as file:
        file.truncate(needed)
        chunks = [range(s, min(s + _CHUNK, count)) for s in range(0, count, _CHUNK)]
        with ThreadPoolExecutor(workers) as pool:
            fd = file.fileno()
            list(pool.map(lambda rows: _fill(fd, index, size, rows, bad, crc), chunks))
    meta = {"version": STORE_VERSION, "key": store_key(index, size), "shape": [count, size]}
    with atomic_write(meta_path) as file:
        np.savez(file, meta=np.array(json.dumps(meta)), bad=bad, crc=crc)
    for stale in cache_dir.glob(f"decoded-{size}px-*"):
        if stale not in (pixels_path, meta_path) and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    if bad.any():
        log.warning(
            "%d images did not decode while building the decoded cache: they are replaced by "
            "the next sample as when decoding (run python -m fer_lightning.data.check)",
            int(bad.sum()),
        )
    return DecodedStore(pixels_path, count, size, bad)


def open_or_build_store(
    cache_dir: Path, index: Index, size: int, rebuild: bool = False, workers: int | None = None
) -> DecodedStore:
    """The sound store of ``index`` at ``size``, built when missing, stale or damaged; the caller
    holds the dataset's lock (fer_lightning/data/locks.py)."""
    store = None if rebuild else open_store(cache_dir, index, size)
    return store or build_store(cache_dir, index, size, workers)


def shared_store(
    root: Path,
    cache_dir: Path,
    index: Index,
    size: int,
    build: bool,
    rebuild: bool = False,
    workers: int | None = None,
) -> DecodedStore:
    """The store a process reads: built (under the dataset lock) by the process that prepares the
    data (``build``), or by rank 0 when none did; other ranks only read it."""
    if build:
        return open_or_build_store(cache_dir, index, size, rebuild, workers)
    store = open_store(cache_dir, index, size)
    if store is None and rank_and_world()[0] == 0:
        with dataset_lock(root):
            return open_or_build_store(cache_dir, index, size, False, workers)
    if store is None:
        raise ConfigError(
            f"the decoded cache of {root} at {size} px is missing in {cache_dir}: "
            "build it first (python -m fer_lightning.data.cache), or let prepare_data run"
        )
    return store
