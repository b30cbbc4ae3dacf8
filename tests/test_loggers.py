"""loggers: wandb never waits for a network that is not there; TensorBoard, wandb and MLflow
get the run's resolved config, final metrics, figures and best checkpoint, read back here through
each tool's own reader."""

from __future__ import annotations

import importlib.util
import json
import logging
import struct
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fer_lightning import loggers
from fer_lightning.errors import ConfigError
from fer_lightning.train import train
from tests.conftest import compose_in, tiny_overrides

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_mlflow = pytest.mark.skipif(
    not HAS_MLFLOW, reason="MLflow is not installed (pip install -e '.[mlflow]')"
)
# The figures every tested run leaves in results/ (docs/run-directory.md).
FIGURES = {"confusion_matrix", "test_examples", "valence_arousal", "reliability_diagram"}


def test_wandb_with_credentials_but_no_network_logs_offline(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(loggers, "reachable", lambda host, port: False)
    with caplog.at_level(logging.WARNING):
        logger = loggers.wandb_logger(save_dir=str(tmp_path), project="p")
    assert logger._offline
    assert [r.message for r in caplog.records if "logging offline" in r.message]


def test_an_unanswering_server_is_not_reachable():
    assert loggers.reachable("192.0.2.1", 9, timeout=0.2) is False  # TEST-NET-1, never routed


@pytest.fixture(scope="module")
def logged(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of one short run that logged to TensorBoard, offline wandb and (when
    installed) MLflow's default local store."""
    names = ["tensorboard", "wandb", *(["mlflow"] if HAS_MLFLOW else [])]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DATA_DIR", str(tmp_path_factory.mktemp("wandb_data")))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = compose_in(
            tmp_path_factory.mktemp("logged"),
            "train",
            [
                *tiny_overrides(tiny_dataset),
                "model=tnet",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1",
                "trainer.limit_test_batches=2",
                "bootstrap.resamples=10",
                f"logger=[{','.join(names)}]",
                # The run name otherwise comes from Hydra's runtime, which compose does not set.
                "logger.wandb.name=logged",
                *(["logger.mlflow.run_name=logged"] if HAS_MLFLOW else []),
            ],
        )
        train(cfg)
    return Path(cfg.paths.output_dir)


def test_tensorboard_has_the_config_the_final_metrics_and_the_figures(logged):
    hparams = yaml.safe_load((logged / "tensorboard" / "hparams.yaml").read_text())
    assert hparams["model"]["name"] == "tnet"
    assert hparams["loss"]["weights"]["expression"] == pytest.approx(0.9)

    events = EventAccumulator(str(logged / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert session.hparams["model/name"].string_value == "tnet"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    metric_names = {info.name.tag for info in experiment.metric_infos}
    assert {"test/acc", "test/valence_ccc", "test/arousal_ccc"} <= metric_names
    assert {f"results/{name}" for name in FIGURES} <= set(events.Tags()["images"])


def wandb_records(run_dir: Path) -> list:
    """The records of an offline wandb run's `.wandb` file, read without wandb's own code: a
    7-byte file header, then LevelDB's log format (32 KiB blocks of chunks, each a 7-byte
    header: checksum, length, type 1 full / 2 first / 3 middle / 4 last), each record a
    protobuf `Record`."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("*.wandb")
    data, block, position = path.read_bytes(), 32 * 1024, 7
    records, pending = [], b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def test_the_offline_wandb_run_has_the_config_figures_and_best_checkpoint(logged):
    (run,) = (logged / "wandb").glob("offline-run-*")
    records = wandb_records(run)
    config = {
        item.key: json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") == "config"
        for item in record.config.update
    }
    assert config["model"]["name"] == "tnet"
    assert config["loss"]["weights"]["expression"] == pytest.approx(0.9)
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model" and "best" in artifact.aliases
    (checkpoint,) = (logged / "checkpoints").glob("best-*.ckpt")
    assert [entry.path for entry in artifact.manifest.contents] == [checkpoint.name]
    images = {p.name.rsplit("_", 2)[0] for p in (run / "files" / "media" / "images").rglob("*.png")}
    assert images >= FIGURES
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0  # finished by the run itself, not at the process's exit


@needs_mlflow
def test_mlflow_s_local_store_has_the_params_metrics_and_artifacts(logged):
    from mlflow import MlflowClient

    store = logged.parent
    client = MlflowClient(f"sqlite:///{store / loggers.MLFLOW_DB}")
    experiment = client.get_experiment_by_name("fer-lightning")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "logged" and run.info.status == "FINISHED"
    assert run.data.params["model/name"] == "tnet"
    assert float(run.data.params["loss/weights/expression"]) == pytest.approx(0.9)
    metrics = json.loads((logged / "results" / "metrics.json").read_text())
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert "val/acc" in run.data.metrics

    def artifacts(path: str) -> set[str]:
        return {Path(a.path).name for a in client.list_artifacts(run.info.run_id, path)}

    assert {f"{name}.png" for name in FIGURES} | {"metrics.json"} <= artifacts("results")
    (checkpoint,) = (logged / "checkpoints").glob("best-*.ckpt")
    assert artifacts(loggers.CHECKPOINT_ARTIFACT) == {checkpoint.name}
    assert (store / loggers.MLFLOW_ARTIFACTS).is_dir()  # beside the store, not in the cwd


def test_mlflow_without_mlflow_installed_is_a_config_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name)
    )
    with pytest.raises(ConfigError, match=r"^logger=mlflow needs MLflow: pip install"):
        loggers.mlflow_logger(store_dir=str(tmp_path))
