"""Loader threads: the process backend's batches, Lightning's epochs, no leaked threads."""

from __future__ import annotations

import threading
import weakref

import pytest
import pytorch_lightning as pl
import torch

from fer_lightning.data import loaders
from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.loaders import ThreadLoader
from fer_lightning.data.sampler import EpochSampler
from tests.data_fixtures import make_dataset, quiet_trainer

# Both stages: an albumentations pipeline, then in-place transforms, on the sample's HWC slot.
AUGMENT = {
    "augment": [{"_target_": "albumentations.HorizontalFlip", "p": 0.5}],
    "augment_inplace": [
        {"_target_": "fer_lightning.data.transforms.InPlaceHorizontalFlip", "p": 0.5},
        {"_target_": "fer_lightning.data.transforms.InPlaceGaussNoise", "p": 0.5},
    ],
}


@pytest.fixture
def dataset(tmp_path):
    # holdout: 32 training samples (batches of 6: five, the last 2 dropped), 16 validation
    # samples (batches of 6, 6 and 4).
    return make_dataset(tmp_path / "ds", train=40, val=16)


def prepared(root, loader: str, **kwargs) -> AffectNetDataModule:
    args = {"image_size": 24, "batch_size": 6, "num_workers": 2, "loader": loader}
    dm = AffectNetDataModule(root=str(root), **{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def batches(loader, epoch: int) -> list[dict[str, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same_batches(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.keys() == reference.keys()
        for key, value in mine.items():
            assert value.dtype == reference[key].dtype, key
            assert value.stride() == reference[key].stride(), key  # channels-last images
            assert torch.equal(value, reference[key]), key


def loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fer-loader")]


def test_threads_deliver_the_process_backends_batches(dataset):
    threads = prepared(dataset, "threads", **AUGMENT)
    processes = prepared(dataset, "processes", **AUGMENT)
    train = threads.train_dataloader()
    assert isinstance(train, ThreadLoader) and len(train) == 5
    reference = processes.train_dataloader()
    for epoch in (0, 1):
        assert_same_batches(batches(train, epoch), batches(reference, epoch))
    flips = [batches(train, epoch)[0]["image"] for epoch in (0, 1)]
    assert not torch.equal(*flips)  # the epoch reached the augmentation
    val = batches(threads.val_dataloader(), 0)
    assert [len(batch["index"]) for batch in val] == [6, 6, 4]
    assert_same_batches(val, batches(processes.val_dataloader(), 0))


def test_a_bad_sample_is_replaced_and_a_failing_split_raises(dataset, caplog):
    threads = prepared(dataset, "threads")
    processes = prepared(dataset, "processes")
    val = threads.datasets["val"]
    with open(val.path(2), "wb") as f:  # in place, as after indexing
        f.write(b"garbage")
    ours = batches(threads.val_dataloader(), 0)
    assert ours[0]["index"].tolist() == [0, 1, 3, 3, 4, 5]
    assert torch.equal(ours[0]["image"][2], ours[0]["image"][3])
    assert_same_batches(ours, batches(processes.val_dataloader(), 0))
    assert val.path(2) in caplog.text

    for i in range(len(val)):
        with open(val.path(i), "wb") as f:
            f.write(b"garbage")
    loader = threads.val_dataloader()
    with pytest.raises(RuntimeError, match="no image of this split decodes"):
        batches(loader, 0)
    del loader
    assert loader_threads() == []


def test_threads_stop_when_a_pass_is_abandoned_or_the_loader_dropped(dataset):
    baseline = threading.active_count()
    one_pass = prepared(dataset, "threads", persistent_workers=False).train_dataloader()
    for _ in one_pass:
        assert len(loader_threads()) == 2
        break
    assert threading.active_count() == baseline

    persistent = prepared(dataset, "threads").train_dataloader()
    for _ in persistent:
        break
    assert len(loader_threads()) == 2  # kept for the next pass, as persistent workers are
    assert len(batches(persistent, 1)) == 5  # the abandoned pass's batches are not served
    del persistent
    assert loader_threads() == [] and threading.active_count() == baseline


class _Recorder(pl.LightningModule):
    """Records the sample indices and images each training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, list[int], torch.Tensor]] = []

    def on_train_batch_start(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch["index"].tolist(), batch["image"].clone()))

    def training_step(self, batch, batch_idx):
        return (self.weight * batch["image"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_sets_the_epoch_of_the_threads_loader(dataset, tmp_path):
    dm = AffectNetDataModule(
        root=str(dataset), image_size=24, batch_size=6, num_workers=2, **AUGMENT
    )
    recorder = _Recorder()
    trainer = quiet_trainer(
        tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0
    )
    trainer.fit(recorder, datamodule=dm)
    assert isinstance(trainer.train_dataloader, ThreadLoader)
    assert loader_threads() == []  # Lightning's teardown dropped the persistent iterators
    train = dm.datasets["train"]
    for epoch in (0, 1):
        sampler = EpochSampler(len(train), "shuffle", dm.seed)
        sampler.set_epoch(epoch)
        order = sampler.epoch_order()[:12].tolist()
        steps = [(indices, images) for e, indices, images in recorder.seen if e == epoch]
        assert [i for indices, _ in steps for i in indices] == order
        indices, images = steps[0]
        expected = {"image": torch.stack([train[(i, epoch)]["image"] for i in indices])}
        assert torch.equal(images, dm.on_after_batch_transfer(expected, 0)["image"])


def test_a_pinned_memory_budget_lowers_the_depth_and_keeps_the_batches(
    dataset, monkeypatch, caplog
):
    """With CUDA mocked (pinned buffers are plain ones), the budget bounds the buffers alive, and
    the batches, their order and a resume from the lowered depth are those of the full one."""
    live: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()
    peak = [0]

    def pinned(shape):
        buffer = torch.empty(shape, dtype=torch.uint8)
        live.add(buffer)
        peak[0] = max(peak[0], len(live))
        return buffer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(loaders, "_pinned", pinned)
    block = 16384  # a batch of 6 x 24 x 24 x 3 = 10368 bytes
    budget = (3 + 3) * block / 2**20  # room for 3 in flight and the 3 held
    caplog.set_level("INFO", logger=loaders.__name__)
    bounded = prepared(dataset, "threads", pinned_memory_mb=budget).train_dataloader()
    full = prepared(dataset, "threads", pinned_memory_mb=None).train_dataloader()
    assert (bounded.depth, full.depth) == (3, 8)
    assert "3 batches in flight instead of 2 x 4" in caplog.text
    for epoch in (0, 1):
        bounded.sampler.set_epoch(epoch)
        live.clear()
        peak[0], ours = 0, []
        for batch in bounded:  # the loop holds one batch while the next is taken
            ours.append({key: value.clone() for key, value in batch.items()})
        assert peak[0] == 3 + 2  # in flight, the one handed over, the one the loop holds
        assert_same_batches(ours, batches(full, epoch))

    bounded.sampler.set_epoch(2)
    taken = iter(bounded)
    next(taken), next(taken)
    state = bounded.state_dict()
    del taken
    resumed = prepared(dataset, "threads", pinned_memory_mb=None).train_dataloader()
    resumed.load_state_dict(state)
    assert_same_batches(batches(resumed, 2), batches(full, 2)[2:])
    processes = prepared(dataset, "processes", pinned_memory_mb=budget).train_dataloader()
    assert (processes.prefetch_factor, processes.depth) == (1, 2)  # one batch per worker at least
