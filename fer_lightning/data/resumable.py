"""A DataLoader that a checkpoint can stop in the middle of an epoch and a rerun can continue.

Lightning 2.x restores the loop's position from a checkpoint, but the data order only if the
training DataLoader itself has ``state_dict``/``load_state_dict`` (its ``_Stateful`` protocol): the
fit loop stores that state in every checkpoint and, when it restarts mid-epoch, loads it before the
first batch. Without it the resumed epoch would start over from its first sample (Lightning only
warns).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from fer_lightning.data.sampler import EpochSampler


class ResumableLoader(DataLoader):
    """A DataLoader over an ``EpochSampler`` whose state is the position of its consumer.

    The state counts the batches this loader has *returned* in the current epoch, not what the
    sampler has yielded: workers draw ``num_workers x prefetch_factor`` batches ahead, so the
    sampler runs ahead of training. Lightning (with a sized loader) fetches one batch per training
    step, so at a checkpoint the count equals the batches trained. Resuming tells the sampler to
    skip those samples, which are neither decoded nor augmented again.

    Iteration starts at the first ``next()``, not at ``iter()``: when a run resumes, Lightning
    calls ``iter()`` before it sets the sampler's epoch, and worker processes would at once fetch
    indices of the wrong epoch. Starting lazily also keeps the skip of ``load_state_dict`` for the
    pass it belongs to.
    """

    sampler: EpochSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, EpochSampler):
            raise TypeError(f"ResumableLoader needs an EpochSampler, got {type(self.sampler)}")
        self._returned = 0  # batches of the current epoch returned, including skipped ones
        self._resume: dict[str, int] | None = None

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
