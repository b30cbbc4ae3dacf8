"""data=multi: two datasets in one run, drawn by weight, scored per source."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from fer_lightning.data.multi import MultiDataModule, SourceWeightedSampler
from fer_lightning.errors import ConfigError
from fer_lightning.metrics.sources import SourceMetrics
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.stored_config import stored_datamodule, stored_input
from fer_lightning.train import train
from tests.conftest import TINY, tiny_overrides

SECOND = {"train_size": 120, "val_size": 32, "image_size": 32, "seed": 1}


def test_sources_are_drawn_by_their_weights():
    sampler = SourceWeightedSampler([100, 900], [3.0, 1.0], seed=0)
    draws = np.concatenate([sampler.epoch_order() for sampler.epoch in range(5)])
    assert (draws < 100).mean() == pytest.approx(0.75, abs=0.02)
    assert len(np.unique(draws[draws < 100])) == 100  # every sample of the small source drawn


def joint_overrides(first: Path, second: Path) -> list[str]:
    """tiny_overrides' settings with data=multi over two synthetic datasets."""
    shared = [o for o in tiny_overrides(first) if not o.startswith("data")]
    sources = []
    for name, root, sizes in (("first", first, TINY), ("second", second, SECOND)):
        sources += [
            f"+data@data.sources.{name}=synthetic",
            f"data.sources.{name}.root={root}",
            *(f"data.sources.{name}.synthetic.{k}={v}" for k, v in sizes.items()),
        ]
    return [
        "data=multi",
        *sources,
        "+data.weights.second=3",
        "data.image_size=32",
        "data.batch_size=16",
        "data.num_workers=0",
        *shared,
    ]


def test_a_joint_run_trains_on_both_and_scores_each_source(compose_config, tiny_dataset, tmp_path):
    overrides = [
        *joint_overrides(tiny_dataset, tmp_path / "second"),
        "model=tnet",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=6",  # both sources: 64 + 32 samples
    ]
    cfg = compose_config("train", overrides)
    train(cfg)
    run = Path(cfg.paths.output_dir)
    metrics = json.loads((run / "results" / "metrics.json").read_text())
    for source in ("first", "second"):
        assert 0 <= metrics[f"test/{source}/acc"] <= 1
        assert f"test/{source}/valence_ccc" in metrics
    predictions = pd.read_csv(run / "results" / "predictions.csv")
    roots = predictions["path"].map(
        lambda p: "first" if p.startswith(str(tiny_dataset)) else "second"
    )
    assert set(roots) == {"first", "second"}
    first = predictions[roots == "first"]
    assert metrics["test/first/acc"] == pytest.approx(
        (first["true_expression"] == first["pred_expression"]).mean(), abs=1e-6
    )
    experiment = pd.read_csv(run / "results" / "experiment.csv").iloc[0]
    assert experiment["train_data"] == "first+second"
    logged = pd.read_csv(run / "csv" / "metrics.csv")
    assert logged["val/second/acc"].notna().any()
    record = json.loads((run / "split.json").read_text())
    assert {key.split(":")[0] for key in record["train"]} == {"first", "second"}
    assert (run / "split-first.json").is_file() and (run / "split-second.json").is_file()

    stored = load_checkpoint(run / "checkpoints" / "last.ckpt")["fer_config"]
    assert stored_input(stored) == (32, 8)
    with pytest.raises(ConfigError, match="trained on several datasets"):
        stored_datamodule(stored)


def test_a_resumed_joint_run_keeps_its_samples_or_refuses(compose_config, tiny_dataset, tmp_path):
    cfg = compose_config("train", joint_overrides(tiny_dataset, tmp_path / "second"))
    record = tmp_path / "run" / "split.json"

    def setup() -> None:
        datamodule = instantiate(cfg.data)
        datamodule.split_file = record
        datamodule.prepare_data()
        datamodule.setup("fit")

    setup()
    first = json.loads(record.read_text())
    assert (tmp_path / "run" / "split-second.json").is_file()
    setup()  # the same samples again
    assert json.loads(record.read_text()) == first
    (tmp_path / "run" / "split-second.json").unlink()
    first["test"] = first["test"][1:]
    record.write_text(json.dumps(first))
    with pytest.raises(ConfigError, match="differ from those of"):
        setup()


@pytest.mark.parametrize(
    ("sources", "weights", "message"),
    [
        (["first"], {}, "two or more data.sources"),
        (["first", "second"], {"third": 1}, "weights only for them"),
        (["first", "second"], {"second": 0}, "positive numbers"),
    ],
)
def test_impossible_joint_configs_are_config_errors(sources, weights, message):
    node = {"_target_": "fer_lightning.data.datamodule.AffectNetDataModule"}
    with pytest.raises(ConfigError, match=message):
        MultiDataModule(dict.fromkeys(sources, node), weights)


def test_each_sources_scores_are_its_own_samples_of_the_part_scored():
    """In process, on stand-ins: samples 0-3 right and 4-7 wrong; the validation part's first
    source holds samples 0-3, the test part's 0-1 (eval's `split=val` scores the validation part
    under its own name)."""
    offsets = {"val": [0, 4, 8], "test": [0, 2, 8]}
    logged: dict[str, float] = {}
    module = SimpleNamespace(
        log_dict=lambda values: logged.update({k: float(v) for k, v in values.items()}),
        test_results={"metrics": {}},
    )
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(8, 8)
    logits[:4, 0] = logits[4:, 1] = 5.0
    batch = {
        "index": torch.arange(8),
        "expression": torch.zeros(8, dtype=torch.long),
        "va": torch.rand(8, 2, generator=generator) * 2 - 1,
    }
    outputs = {"logits": logits, "va": torch.rand(8, 2, generator=generator) * 2 - 1}
    for stage, split, second in (
        ("val", "test", 0.0),
        ("test", "test", 2 / 6),
        ("test", "val", 0.0),
    ):
        module.test_split = split
        datamodule = SimpleNamespace(
            test_split=split,
            source_of=lambda part, index: MultiDataModule.source_of(
                SimpleNamespace(offsets=offsets), part, index
            ),
        )
        trainer = SimpleNamespace(datamodule=datamodule)
        callback = SourceMetrics(["first", "second"])
        logged.clear()
        if stage == "val":
            callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
            callback.on_validation_epoch_end(trainer, module)
        else:
            callback.on_test_batch_end(trainer, module, outputs, batch, 0)
            callback.on_test_epoch_end(trainer, module)
            callback.on_test_end(trainer, module)
            assert module.test_results["metrics"]["second/acc"] == pytest.approx(second)
        prefix = "val" if stage == "val" else split
        assert logged[f"{prefix}/first/acc"] == 1.0, (stage, split)
        assert logged[f"{prefix}/second/acc"] == pytest.approx(second), (stage, split)
    # A stage without batches here (a DDP rank whose test shard is empty) scores nothing.
    logged.clear()
    SourceMetrics(["first", "second"]).on_test_epoch_end(trainer, module)
    assert logged == {}
