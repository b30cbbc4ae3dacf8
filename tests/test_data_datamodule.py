"""Loaders: batch format, normalisation after transfer, reproducible augmentation, the configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fer_lightning.data.datamodule import AffectNetDataModule
from tests.conftest import decode_plain
from tests.data_fixtures import SIZE, make_dataset, quiet_trainer
from tests.test_data_transforms import reference_normalize

CONF = Path(__file__).resolve().parent.parent / "conf"
# Both stages: an albumentations pipeline, then in-place transforms, on the sample's HWC slot.
AUGMENT = {
    "augment": [{"_target_": "albumentations.HorizontalFlip", "p": 0.5}],
    "augment_inplace": [
        {"_target_": "fer_lightning.data.transforms.InPlaceHorizontalFlip", "p": 0.5},
        {"_target_": "fer_lightning.data.transforms.InPlaceGaussNoise", "p": 0.5},
    ],
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("loader") / "ds", train=40, val=16)


def prepared(root, **kwargs):
    args = {"root": str(root), "image_size": 24, "batch_size": 8, "num_workers": 0}
    dm = AffectNetDataModule(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_batches_have_the_documented_format(dataset):
    dm = prepared(dataset, **AUGMENT)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert set(batch) == {"image", "expression", "va", "index"}
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, 24, 24)
        assert batch["image"].is_contiguous(memory_format=torch.channels_last)
        assert batch["expression"].dtype == torch.int64 and batch["expression"].shape == (8,)
        assert batch["va"].dtype == torch.float32 and batch["va"].shape == (8, 2)
        assert batch["index"].dtype == torch.int64
        assert batch["va"].abs().max() <= 1
        moved = dm.on_after_batch_transfer(batch, 0)
        assert moved["image"].dtype == torch.float32
        assert torch.allclose(moved["image"], reference_normalize(batch["image"]), atol=1e-5)
        assert torch.equal(moved["expression"], batch["expression"])


def test_val_and_test_samples_are_never_augmented(dataset):
    # At the stored size, so the plain decode involves no resize.
    dm = prepared(dataset, **AUGMENT, image_size=SIZE, num_workers=2)
    for part, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        paths = dm.sample_paths(part)
        expected = np.stack([decode_plain(path, SIZE) for path in paths])
        for epoch in (0, 3):
            loader.sampler.set_epoch(epoch)
            batches = list(loader)
            indices = torch.cat([b["index"] for b in batches])
            assert indices.tolist() == list(range(len(paths))), part  # every sample, in order
            images = torch.cat([b["image"] for b in batches]).permute(0, 2, 3, 1).numpy()
            np.testing.assert_array_equal(images, expected, err_msg=f"{part}, epoch {epoch}")
    assert dm.split_sizes["val"] == 16 and dm.split_sizes["test"] > 0


def images_by_index(loader, epoch: int) -> dict[int, torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    result = {}
    for batch in loader:
        for i, image in zip(batch["index"].tolist(), batch["image"], strict=True):
            result[i] = image
    return result


def test_augmentation_depends_only_on_seed_epoch_and_index(dataset):
    serial = prepared(dataset, **AUGMENT, num_workers=0).train_dataloader()
    parallel = prepared(dataset, **AUGMENT, num_workers=2).train_dataloader()
    assert parallel.persistent_workers
    for epoch in (0, 1):
        one, two = images_by_index(serial, epoch), images_by_index(parallel, epoch)
        assert one.keys() == two.keys() and len(one) >= 24
        assert all(torch.equal(one[i], two[i]) for i in one)
        if epoch == 0:
            first = one
    changed = [i for i in one if not torch.equal(one[i], first[i])]
    assert len(changed) > len(one) // 2  # flip and noise draws differ between epochs


def test_data_configs_compose_and_instantiate(tmp_path, dataset):
    primary = tmp_path / "primary"
    primary.mkdir()
    (primary / "main.yaml").write_text(
        "defaults:\n  - data: synthetic\n  - _self_\nseed: 3\n"
        f"hydra:\n  searchpath:\n    - file://{CONF}\n"
    )
    root = tmp_path / "synthetic"
    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        cfg = compose(
            "main",
            overrides=[
                f"data.root={root}",
                "data.synthetic.train_size=48",
                "data.synthetic.val_size=16",
                "data.synthetic.image_size=32",
                "data.classes=7",
                "data.num_workers=0",
            ],
        )
        real = compose("main", overrides=["data=affectnet", f"data.root={dataset}"])
    assert cfg.data.classes == 7 and cfg.data.seed == 3
    dm = instantiate(cfg.data)
    assert isinstance(dm, AffectNetDataModule) and dm.augment is None
    assert [type(t).__name__ for t in dm.augment_inplace] == [
        "InPlaceHorizontalFlip",
        "InPlaceGaussNoise",
    ]
    dm.prepare_data()  # generates the synthetic dataset
    dm.setup("fit")
    assert (root / "synthetic.json").is_file()
    assert dm.class_weights().shape == (7,)
    assert next(iter(dm.train_dataloader()))["image"].shape[1:] == (3, 48, 48)
    assert real.data.classes == 8 and real.data.image_size == 224
    assert instantiate(real.data).root == Path(str(dataset))


def test_bad_settings_are_one_line_config_errors(dataset):
    from fer_lightning.errors import ConfigError

    for bad in (
        {"protocol": "random"},
        {"classes": 6},
        {"sampler": "weighted"},
        {"test_fraction": 1.5},
        {"pinned_memory_mb": 0},
        # From the command line, a word where a number goes; and a bool is not a number.
        {"test_fraction": "a fifth"},
        {"val_fraction": True},
        {"batch_size": True},
        {"prefetch_factor": 2.5},
        {"num_workers": True},
        {"pinned_memory_mb": "lots"},
        {"seed": True},
    ):
        with pytest.raises(ConfigError, match="data\\.") as error:
            AffectNetDataModule(root=str(dataset), **bad)
        assert "\n" not in str(error.value)
    np.testing.assert_equal(prepared(dataset, test_fraction=0.25).split_sizes["test"], 10)


class _Probe(pl.LightningModule):
    """Records what a training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, torch.dtype]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch["image"].dtype))
        return (self.weight * batch["image"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_sets_the_sampler_epoch_and_normalises(dataset, tmp_path):
    dm = AffectNetDataModule(root=str(dataset), image_size=24, batch_size=8, num_workers=0)
    probe = _Probe()
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(probe, datamodule=dm)
    assert probe.seen == [(0, torch.float32), (1, torch.float32)]
    assert trainer.train_dataloader.sampler.epoch == 1


def test_one_rank_of_the_job_prepares_and_the_others_never_build(tmp_path, monkeypatch):
    """Several nodes' local ranks 0 would build into one shared cache at once; a rank other than
    0 that finds no index (a cache not shared between nodes) stops in one line."""
    from fer_lightning.data import datamodule
    from fer_lightning.errors import ConfigError

    root = make_dataset(tmp_path / "ds", train=8, val=4)
    monkeypatch.setattr(datamodule, "rank_and_world", lambda: (1, 2))
    dm = AffectNetDataModule(root=str(root), image_size=24, batch_size=4, num_workers=0)
    assert dm.prepare_data_per_node is False
    with pytest.raises(ConfigError, match="file system every node shares"):
        dm.setup("fit")
    assert not list((root / ".fer_cache").glob("index*"))


def test_the_processes_loader_needs_room_in_dev_shm(dataset, monkeypatch):
    """Workers die with a bus error mid-epoch when /dev/shm cannot hold the batches in flight."""
    from types import SimpleNamespace

    from fer_lightning.data import shared_memory
    from fer_lightning.errors import ConfigError

    monkeypatch.setattr(shared_memory, "SHM", Path(dataset))  # any folder stands in for it
    monkeypatch.setattr(shared_memory.shutil, "disk_usage", lambda path: SimpleNamespace(free=1024))
    dm = prepared(dataset, loader="processes", num_workers=2)
    with pytest.raises(ConfigError, match="/dev/shm has 0 MiB free"):
        dm.train_dataloader()
    prepared(dataset, loader="threads", num_workers=2).train_dataloader()  # needs none
