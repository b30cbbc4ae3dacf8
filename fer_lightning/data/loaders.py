"""The two loader backends of ``data.loader``: where samples are decoded and augmented.

Both are the same resumable DataLoader, so sampler, batch sampler, ``drop_last``, ``len`` and the
resume state are shared; each sample goes through the same ``AffectNetDataset.load`` (decode with
bad-sample substitution, then augmentation keyed by (seed, epoch, index)); and ``num_workers x
prefetch_factor`` batches are in flight (fewer when pinned memory is bounded: `pinned_depth`),
so the sampler runs as far ahead of training with either. How far ahead it runs decides only
when a batch is decoded, never which batches come or in what order, and the resume state counts
the batches returned, not those drawn, so a lowered depth resumes exactly. The batches are equal:
same dict, dtypes, shapes, values and channels-last images.

With CUDA both pin their batches, in blocks of torch's caching host allocator that it rounds up to
a power of two and never returns (``fer_lightning/data/buffers.py``); ``pinned_memory_mb``
(``data.pinned_memory_mb``) bounds them by lowering the batches in flight: the threads backend to
any depth of 2 or more, the processes backend by its ``prefetch_factor``, at least one batch per
worker (whose pin-memory thread pins each batch as it leaves the workers).

``processes`` (`ProcessLoader`): torch's worker processes. Resumable because Lightning 2.x
restores the data order from a checkpoint only if the training DataLoader itself has
``state_dict``/``load_state_dict`` (its ``_Stateful`` protocol): the fit loop stores that state in
every checkpoint and, when it restarts mid-epoch, loads it before the first batch. Without it the
resumed epoch would start over from its first sample (Lightning only warns). See docs/resuming.md.

``threads`` (`ThreadLoader`): threads of the training process. On a VM where a page fault costs
~8 us per 4 KiB, moving every batch out of a worker process through a fresh shared-memory segment
costs about three quarters of decoding it (bench/README.md). OpenCV's decode, resize, flip and
arithmetic release the GIL, so threads decode in parallel, and each decodes its samples straight
into their slots of the batch's buffer (pinned when CUDA is present), where the in-place flip and
noise follow: no copy between processes, no collation copy, no copy at all. The buffer is NHWC, so
the batch's image is channels-last, and buffers are reused once a batch is dropped
(``BufferPool``). Pinned buffers (CUDA) come from torch's caching host allocator instead, which
reuses them too, and only after the asynchronous copies from them to the GPU have finished.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler

from fer_lightning.data.buffers import HELD, BufferPool, pinned_block, pinned_depth
from fer_lightning.data.dataset import AffectNetDataset
from fer_lightning.data.sampler import EpochSampler

log = logging.getLogger(__name__)


class ProcessLoader(DataLoader):
    """The ``processes`` backend: a torch DataLoader (its workers are processes) over an
    ``EpochSampler``, whose state is the position of its consumer.

    The state counts the batches this loader has *returned* in the current epoch, not what the
    sampler has yielded: workers draw ``num_workers x prefetch_factor`` batches ahead, so the
    sampler runs ahead of training. Lightning (with a sized loader) fetches one batch per training
    step, so at a checkpoint the count equals the batches trained. Resuming tells the sampler to
    skip those samples, which are neither decoded nor augmented again.

    Iteration starts at the first ``next()``, not at ``iter()``: when a run resumes, Lightning
    calls ``iter()`` before it sets the sampler's epoch, and worker processes would at once fetch
    indices of the wrong epoch. Starting lazily also keeps the skip of ``load_state_dict`` for the
    pass it belongs to.

    ``pinned_memory_mb``: the MiB of pinned batch blocks allowed in flight (None: no bound).
    """

    sampler: EpochSampler
    dataset: AffectNetDataset

    def __init__(self, *args: Any, pinned_memory_mb: float | None = None, **kwargs: Any) -> None:
        if isinstance(kwargs.get("sampler"), SequentialSampler):
            # Lightning's overfit_batches (debug=overfit) rebuilds the loader to read in order.
            kwargs["sampler"] = EpochSampler(len(kwargs["sampler"]), "sequential")
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, EpochSampler):
            raise TypeError(
                f"{type(self).__name__} needs an EpochSampler, got {type(self.sampler)}"
            )
        self._returned = 0  # batches of the current epoch returned, including skipped ones
        self._resume: dict[str, int] | None = None
        self.pinned_memory_mb = pinned_memory_mb
        self.depth = self._bounded_depth()

    def _bounded_depth(self) -> int:
        """The batches in flight, lowered (and logged, once) to fit ``pinned_memory_mb``."""
        workers, prefetch = self.num_workers, self.prefetch_factor or 0
        if not (workers and self.pin_memory and torch.cuda.is_available()):
            return workers * prefetch
        assert self.batch_size is not None  # the datamodule always batches
        shape = (self.batch_size, self.dataset.image_size, self.dataset.image_size, 3)
        wanted = pinned_depth(shape, np.uint8, workers, prefetch, self.pinned_memory_mb)
        depth = self._limit(wanted)
        if depth < workers * prefetch:
            block = pinned_block(int(np.prod(shape))) / 2**20
            _log_once(
                f"data.pinned_memory_mb={self.pinned_memory_mb}: {depth} batches in flight "
                f"instead of {workers} x {prefetch} (each pins {block:g} MiB, {HELD} more are "
                "held by training)"
            )
        return depth

    def _limit(self, depth: int) -> int:
        """At most ``depth`` in flight as worker processes can: ``prefetch_factor`` each."""
        self.prefetch_factor = max(1, depth // self.num_workers)
        return self.num_workers * self.prefetch_factor

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        # The sampler keeps a loaded skip only for the epoch it was saved in (see set_epoch).
        same_epoch = resume is not None and resume["epoch"] == self.sampler.epoch
        self._returned = resume["batches"] if same_epoch else 0
        for batch in super().__iter__():
            self._returned += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._returned}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        assert self.batch_size is not None  # the datamodule always batches
        self.sampler.load_state_dict({"epoch": epoch, "yielded": batches * self.batch_size})
        self._resume = {"epoch": epoch, "batches": batches}


class ThreadLoader(ProcessLoader):
    """The ``threads`` backend: the ProcessLoader with ``num_workers`` threads as its workers; 0
    loads in the caller.

    With ``persistent_workers`` the threads serve every pass until the loader is dropped (Lightning
    drops its iterator at teardown); without, a pass's threads stop when it ends or its iterator
    is dropped (breaking out of a loop). Threads left at interpreter exit are stopped.
    """

    def _limit(self, depth: int) -> int:
        return depth

    def _get_iterator(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.num_workers == 0:
            return super()._get_iterator()
        return ThreadIterator(self)


class ThreadIterator:
    """Passes over a ThreadLoader; it issues batches from the caller's thread, as DataLoader."""

    def __init__(self, loader: ThreadLoader) -> None:
        self._dataset = loader.dataset
        self._depth = loader.depth
        self._pin = loader.pin_memory and torch.cuda.is_available()
        self._buffers = BufferPool(keep=self._depth + HELD)
        self._persistent = loader.persistent_workers
        self._pending: deque[_Batch] = deque()
        self._tasks: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        threads = [
            threading.Thread(
                target=_work,
                args=(self._tasks, _own_copy(self._dataset)),
                name=f"fer-loader-{k}",
                daemon=True,
            )
            for k in range(loader.num_workers)
        ]
        for thread in threads:
            thread.start()
        # Holds no reference to self, so dropping the iterator stops the threads.
        self._stop = weakref.finalize(self, _stop, self._tasks, self._pending, threads)
        self._reset(loader)

    def _reset(self, loader: ThreadLoader) -> None:
        """Start a pass; DataLoader calls this again for every pass with ``persistent_workers``."""
        if not self._stop.alive:
            raise RuntimeError("this loader's threads were closed: make a new loader")
        _cancel(self._pending)
        assert loader.batch_sampler is not None  # the datamodule always batches
        self._batches = iter(loader.batch_sampler)
        self._issue()

    def __iter__(self) -> ThreadIterator:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if not self._pending:
            if not self._persistent:
                self.close()
            raise StopIteration
        batch = self._pending.popleft()
        self._issue()
        result = batch.result(self._dataset)  # a sample's error is raised here, as DataLoader does
        if self._pin:  # the labels too, as DataLoader's pin_memory does: copied asynchronously
            result = {
                key: value if key == "image" else value.pin_memory()
                for key, value in result.items()
            }
        return result

    def close(self) -> None:
        """Stop the threads now, for good; the next ``next`` raises StopIteration."""
        self._batches = iter(())
        self._stop()

    def _issue(self) -> None:
        """Queue further batches until ``depth`` batches are in flight."""
        while len(self._pending) < self._depth:
            items = next(self._batches, None)
            if items is None:
                return
            batch = _Batch(items, self._pixels(len(items)))
            self._pending.append(batch)
            self._tasks.put(batch)

    def _pixels(self, n: int) -> torch.Tensor:
        """An uninitialised uint8 NHWC buffer for a batch of ``n`` images."""
        shape = (n, self._dataset.image_size, self._dataset.image_size, 3)
        if self._pin:
            return _pinned(shape)
        return torch.from_numpy(self._buffers.take(shape, np.uint8))


class _Batch:
    """A batch that one thread fills, sample k into slot k of one preallocated buffer.

    A whole batch per thread, as a worker process does it: spreading one batch's samples over the
    threads measured no faster here and needs a lock to count what is left.
    """

    def __init__(self, items: list[tuple[int, int]], pixels: torch.Tensor) -> None:
        self.items = items
        self.slots = pixels.numpy()
        self.image = pixels.permute(0, 3, 1, 2)
        self.index = np.empty(len(items), dtype=np.int64)
        self.error: BaseException | None = None
        self.cancelled = False  # its pass ended early: its thread stops filling it
        self._done = threading.Event()

    def fill(self, dataset: AffectNetDataset) -> None:
        try:
            for k, item in enumerate(self.items):
                if self.cancelled:
                    return
                self.index[k], _ = dataset.load(*item, out=self.slots[k])
        except BaseException as error:  # raised again in the consuming thread
            self.error = error
        self._done.set()

    def result(self, dataset: AffectNetDataset) -> dict[str, torch.Tensor]:
        """The batch dict, as default_collate makes it of ``AffectNetDataset.__getitem__`` items."""
        self._done.wait()
        if self.error is not None:
            error, self.error = self.error, None
            try:
                raise error
            finally:
                # Else this frame would hold its own traceback, a reference cycle that keeps the
                # iterator and its threads alive until the garbage collector runs.
                del error
        return {
            "image": self.image,
            "expression": torch.from_numpy(dataset.expression[self.index]),
            "va": torch.from_numpy(dataset.va[self.index]),
            "index": torch.from_numpy(self.index),
        }


def _pinned(shape: tuple[int, ...]) -> torch.Tensor:
    """A pinned buffer from torch's caching host allocator, which reuses it once the asynchronous
    copies from it have finished."""
    return torch.empty(shape, dtype=torch.uint8, pin_memory=True)


@functools.cache
def _log_once(message: str) -> None:
    """Each loader (train, val, test, every fit) would say the same."""
    log.info(message)


def _own_copy(dataset: AffectNetDataset) -> AffectNetDataset:
    """The dataset as one thread uses it: the read-only arrays shared, the augmentation its own.

    The augmentation pipeline keeps its random generators in itself and re-keys them per sample,
    so threads must not share it (each worker process has its own copy for the same reason).
    """
    own = copy.copy(dataset)
    own.augment = copy.deepcopy(dataset.augment)
    return own


def _work(tasks: queue.SimpleQueue[_Batch | None], dataset: AffectNetDataset) -> None:
    while (batch := tasks.get()) is not None:
        batch.fill(dataset)


def _cancel(pending: deque[_Batch]) -> None:
    """Forget the batches in flight; their threads stop filling them at the next sample."""
    for batch in pending:
        batch.cancelled = True
    pending.clear()


def _stop(
    tasks: queue.SimpleQueue[_Batch | None],
    pending: deque[_Batch],
    threads: list[threading.Thread],
) -> None:
    """Cancel what is in flight and wait for each thread to finish the sample it is on.

    The garbage collector may run this in one of the threads, which then just ends after it.
    """
    _cancel(pending)
    for _ in threads:
        tasks.put(None)
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join()


# data.loader's choices.
# `data.num_workers: null`: one worker per core this process may use, less one for the training
# loop, at most this many (decoding 224-pixel JPEGs faster than one GPU trains rarely needs more).
MAX_DEFAULT_WORKERS = 8
# `data.pinned_memory_mb`'s default, per process: 29 batches of 64 at 224 pixels (16 MiB blocks)
# in flight, enough to keep 8 workers busy; unbounded, 15 workers x 4 would pin about 1 GiB.
PINNED_MEMORY_MB = 512


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0)) - 1))


LOADERS = {"threads": ThreadLoader, "processes": ProcessLoader}
