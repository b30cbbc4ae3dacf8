"""Batch-sized arrays reused once nothing refers to them any more.

A new batch-sized array (10 MB of uint8 images, 38 MB once normalised to float) is new memory to
the kernel, which zeroes every page on its first write: on the development VM that cost more than
the arithmetic that fills it (2-3 page faults and ~50 CPU us per 224x224 uint8 image, ~150 us per
float image; bench/README.md). Reusing arrays avoids it, and doing so is safe without any release
call: a tensor made by ``torch.from_numpy`` refers to its array, and so do its views, the numpy
arrays made of them, and autograd's saved copies of them, so an array that only the pool refers to
is free, whatever the consumer did with the batch.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


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
