"""Batch-sized arrays reused once nothing refers to them any more.

A new batch-sized array (10 MB of uint8 images, 38 MB once normalised to float) is new memory to
the kernel, which zeroes every page on its first write: on the development VM that cost more than
the arithmetic that fills it (2-3 page faults and ~50 CPU us per 224x224 uint8 image, ~150 us per
float image; bench/README.md). Reusing arrays avoids it, and doing so is safe without any release
call: a tensor made by ``torch.from_numpy`` refers to its array, and so do its views, the numpy
arrays made of them, and autograd's saved copies of them, so an array that only the pool refers to
is free, whatever the consumer did with the batch.

Pinned buffers (CUDA) are not pooled here: an asynchronous copy to the GPU may still read one that
Python has dropped, and only torch's caching host allocator tracks that. It rounds every block up
to a power of two and keeps it for the process's life, so the way to bound pinned memory is to
bound the batches in flight (`pinned_depth`).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

# Batches alive besides those in flight: the one being handed over, and two its consumer may hold
# (Lightning's fetcher holds the next batch while the current one trains).
HELD = 3
# Never fewer in flight than this, whatever the pinned-memory budget: one decoding while one waits.
MIN_DEPTH = 2


def pinned_block(nbytes: int) -> int:
    """The bytes torch's caching host allocator reserves for ``nbytes``: the next power of two."""
    return 1 << max(nbytes - 1, 0).bit_length()


def pinned_depth(
    shape: tuple[int, ...],
    dtype: np.dtype | type,
    workers: int,
    prefetch: int,
    budget_mb: float | None,
) -> int:
    """The batches in flight: ``workers x prefetch``, lowered so that ``(in flight + HELD)``
    pinned blocks of one batch of ``shape`` fit in ``budget_mb`` MiB, but never below
    ``MIN_DEPTH``. ``budget_mb`` None: no bound."""
    depth = workers * prefetch
    if budget_mb is None:
        return depth
    block = pinned_block(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    fits = int(budget_mb * 2**20) // block - HELD
    return min(depth, max(MIN_DEPTH, fits))


class BufferPool:
    """Keeps up to ``keep`` arrays; ``take`` returns a free one, or a new one."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An array of ``shape`` and ``dtype``, its content undefined.

        A kept array with as many or more rows serves a smaller batch (the last of an epoch)
        with its first rows.
        """
        dtype = np.dtype(dtype)
        with self._lock:
            arrays = self._arrays
            for k in range(len(arrays)):
                # Two references when free: the pool's, and getrefcount's argument.
                if (
                    arrays[k].dtype == dtype
                    and arrays[k].shape[1:] == shape[1:]
                    and len(arrays[k]) >= shape[0]
                    and sys.getrefcount(arrays[k]) == 2
                ):
                    return arrays[k][: shape[0]]
            array = np.empty(shape, dtype=dtype)
            if len(arrays) < self._keep:
                arrays.append(array)
            return array
