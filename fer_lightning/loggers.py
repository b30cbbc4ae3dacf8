"""Loggers: factories that need more than a `_target_`, and what every run gives its loggers
(docs/configuration.md#logger): the resolved config as hyperparameters when it starts, the final
metrics, the results figures and the best checkpoint when it ends."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytorch_lightning as pl
from matplotlib.image import imread
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

from fer_lightning.errors import ConfigError

log = logging.getLogger(__name__)

# The local MLflow tracking store (docs/run-directory.md): a sqlite database and the artifacts
# folder beside it, in the `store_dir` of conf/logger/mlflow.yaml.
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlflow-artifacts"
# Where the best checkpoint lies among a run's MLflow artifacts.
CHECKPOINT_ARTIFACT = "checkpoints"

# How long to wait for the wandb server before logging offline instead.
REACH_TIMEOUT_S = 3.0


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def wandb_server() -> tuple[str, int]:
    """The host and port wandb would talk to (`WANDB_BASE_URL`, else wandb's cloud)."""
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def reachable(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, name lookup included
    (which a socket timeout does not bound, hence the thread)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def wandb_logger(**kwargs) -> WandbLogger:
    """A WandbLogger that is online only when credentials exist and the server answers, so it
    never prompts, hangs or crashes for want of a network.

    The original project logged to wandb interactively; on a machine without a network or login,
    wandb would ask for a key and block the run, and with a key but no network it waits 90 s and
    fails. Offline runs can be uploaded with `wandb sync`.
    """
    offline = not _wandb_logged_in() or os.environ.get("WANDB_MODE") == "offline"
    if not offline and "offline" not in kwargs and not reachable(*wandb_server()):
        host, port = wandb_server()
        log.warning(
            "wandb server %s:%d does not answer: logging offline (wandb sync later)", host, port
        )
        offline = True
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs.setdefault("offline", offline)
    return WandbLogger(**kwargs)


def mlflow_logger(store_dir: str, tracking_uri: str | None = None, **kwargs: Any) -> MLFlowLogger:
    """An MLFlowLogger that needs no server: without a `tracking_uri` (or `MLFLOW_TRACKING_URI`)
    it tracks into a sqlite database in `store_dir`, its artifacts beside it, which
    `mlflow ui --backend-store-uri sqlite:///<store_dir>/mlflow.db` shows.

    MLflow 3 refuses its plain-file store, so the local store is sqlite. Its usage telemetry is
    off unless `MLFLOW_DISABLE_TELEMETRY` says otherwise: a run sends nothing anywhere.
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs MLflow: pip install -e '.[mlflow]'")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        store = Path(store_dir).resolve()
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / MLFLOW_DB}"
        kwargs.setdefault("artifact_location", (store / MLFLOW_ARTIFACTS).as_uri())
    return MLFlowLogger(tracking_uri=uri, **kwargs)


@contextmanager
def logged_run(trainer: pl.Trainer, hyperparameters: Mapping[str, Any]) -> Iterator[None]:
    """Gives every logger of `trainer` the run's `hyperparameters` (its resolved config), and
    ends its wandb run when the block ends, failed when it raised.

    Ended here rather than at exit, so that runs in one process (a search's trials, a notebook)
    each get their own wandb run instead of sharing the first one.
    """
    for logger in trainer.loggers:
        logger.log_hyperparams(dict(hyperparameters))
    failed = True
    try:
        yield
        failed = False
    finally:
        if trainer.is_global_zero and any(isinstance(x, WandbLogger) for x in trainer.loggers):
            wandb = sys.modules.get("wandb")  # imported by the logger once it made a run
            if wandb is not None and wandb.run is not None:
                wandb.finish(exit_code=int(failed))


def log_results(trainer: pl.Trainer, metrics: Mapping[str, float], results_dir: Path) -> None:
    """Gives the loggers what a tested run leaves (global zero only): TensorBoard its HParams
    entry with the final `metrics` (named as in metrics.json), which compares runs, and the
    figures of `results_dir` as images; wandb the figures as images and the best checkpoint as a
    `model` artifact; MLflow the whole folder and the best checkpoint as artifacts.

    The checkpoint is logged here rather than by the loggers' `log_model`, which Lightning
    refuses for an offline wandb run (wandb keeps offline artifacts for `wandb sync`).
    """
    if not trainer.is_global_zero:
        return
    figures = sorted(results_dir.glob("*.png"))
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    step = trainer.global_step
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(logger.hparams, metrics=dict(metrics), step=step)
            for path in figures:
                pixels = imread(path)[..., :3]
                logger.experiment.add_image(f"results/{path.stem}", pixels, step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            for path in figures:
                logger.log_image(f"results/{path.stem}", [str(path)], step=step)
            if best:
                _wandb_checkpoint(logger, best)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifacts(logger.run_id, str(results_dir), "results")
            if best:
                logger.experiment.log_artifact(logger.run_id, best, CHECKPOINT_ARTIFACT)
        # The test before has finalized it already: this writes out (and closes) what came after.
        logger.finalize("success")


def _wandb_checkpoint(logger: WandbLogger, path: str) -> None:
    import wandb

    artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model")
    # Uploaded from where it lies (no staged copy in the user's data directory): the run
    # directory keeps it, unchanged, until `wandb sync` of an offline run.
    artifact.add_file(path, name=Path(path).name, policy="immutable")
    logger.experiment.log_artifact(artifact, aliases=["best"])
