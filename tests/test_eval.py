"""eval: scores a trained checkpoint on the test or validation split, with optional flip TTA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from fer_lightning.errors import ConfigError
from fer_lightning.eval import evaluate
from fer_lightning.runs.run_lock import run_dir_lock
from tests.conftest import (
    TINY,
    annotation,
    assert_refused_in_one_line,
    checkpoint_network,
    compose_in,
    crafted_checkpoint,
    decode_plain,
    network_outputs,
    run_module,
)


def evaluated(run: Path, out: Path, *overrides: str) -> tuple[dict[str, float], Path]:
    """eval of `run`'s last checkpoint into `out`: what it returns and its results/ folder."""
    cfg = compose_in(
        out,
        "eval",
        [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.accelerator=cpu", *overrides],
    )
    return evaluate(cfg), Path(cfg.paths.output_dir) / "results"


def ccc(y: np.ndarray, p: np.ndarray) -> float:
    return 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


def independent_scores(
    checkpoint: Path, paths: list[str], image_size: int, flip: bool
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The checkpoint's network run by the test on the images at `paths`, labels read from their
    annotation files, scored with sklearn and numpy."""
    images = np.stack([decode_plain(path, image_size) for path in paths])
    probs, va = network_outputs(checkpoint_network(checkpoint), images, flip=flip)
    true = np.array([int(annotation(path, "exp")) for path in paths])
    true_va = np.array([[annotation(path, "val"), annotation(path, "aro")] for path in paths])
    pred = probs.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "path": paths,
            "true_expression": true,
            "pred_expression": pred,
            "true_valence": true_va[:, 0],
            "pred_valence": va[:, 0],
            "true_arousal": true_va[:, 1],
            "pred_arousal": va[:, 1],
            **{f"prob_{k}": probs[:, k] for k in range(probs.shape[1])},
        }
    )
    scores = {
        "acc": accuracy_score(true, pred),
        "f1_weighted": f1_score(true, pred, average="weighted", zero_division=0),
        "kappa": cohen_kappa_score(true, pred),
    }
    for k, name in enumerate(("valence", "arousal")):
        y, p = true_va[:, k], va[:, k]
        scores[f"{name}_rmse"] = float(np.sqrt(np.mean((y - p) ** 2)))
        scores[f"{name}_pcc"] = float(np.corrcoef(y, p)[0, 1])
        scores[f"{name}_sagr"] = float(np.mean(np.sign(y) == np.sign(p)))
        scores[f"{name}_ccc"] = float(ccc(y, p))
    return frame, scores


def assert_matches_the_network(results: Path, checkpoint: Path, prefix: str, flip: bool) -> None:
    """results/'s predictions and metrics equal the test's own run of the checkpoint's network."""
    written = pd.read_csv(results / "predictions.csv")
    expected, scores = independent_scores(
        checkpoint, written["path"].tolist(), TINY["image_size"], flip
    )
    assert list(written.columns) == list(expected.columns)
    for column in ("true_expression", "pred_expression"):
        np.testing.assert_array_equal(written[column], expected[column], err_msg=column)
    for column in expected.columns[3:]:
        if column != "pred_expression":
            np.testing.assert_allclose(written[column], expected[column], atol=1e-5, err_msg=column)
    metrics = json.loads((results / "metrics.json").read_text())
    for name, value in scores.items():
        assert metrics[f"{prefix}/{name}"] == pytest.approx(value, abs=1e-5), name


def test_eval_scores_the_checkpoints_own_network_on_the_test_samples(trained_run, tmp_path):
    returned, results = evaluated(trained_run, tmp_path)
    assert_matches_the_network(results, trained_run / "checkpoints" / "last.ckpt", "test", False)
    paths = pd.read_csv(results / "predictions.csv")["path"]
    # Holdout protocol: the test split is a stratified 20% of train_set, never the val_set.
    assert len(paths) == TINY["train_size"] // 5 and paths.is_unique
    assert paths.str.contains("/train_set/").all()
    written = json.loads((results / "metrics.json").read_text())
    assert written["test/acc"] == pytest.approx(returned["acc"])


def test_eval_scores_the_validation_split_with_flip_tta(trained_run, tmp_path):
    metrics, results = evaluated(trained_run, tmp_path, "split=val", "tta=flip")
    written = json.loads((results / "metrics.json").read_text())
    assert written["val/acc"] == pytest.approx(metrics["acc"])
    assert not any(key.startswith("test/") for key in written)
    assert_matches_the_network(results, trained_run / "checkpoints" / "last.ckpt", "val", True)

    predictions = pd.read_csv(results / "predictions.csv")
    # Holdout protocol: the validation split is AffectNet's val_set, the test split is not.
    assert len(predictions) == TINY["val_size"]
    assert predictions["path"].str.contains("/val_set/").all()
    experiment = pd.read_csv(results / "experiment.csv").iloc[0]
    assert (experiment["task"], experiment["split"], experiment["tta"]) == ("eval", "val", "flip")
    # The checkpoint carries its epoch history, so eval draws the curves of its training too.
    assert (results / "accuracy_curve.png").is_file() and (results / "loss_curve.png").is_file()
    for name in ("classification_report.csv", "confusion_matrix.png", "test_examples.png"):
        assert (results / name).is_file(), name


@pytest.mark.parametrize(
    ("override", "message"), [("split=train", "split must be"), ("tta=hflip", "tta must be")]
)
def test_a_bad_split_or_tta_is_a_config_error(compose_config, override, message):
    # Checked before the checkpoint is read, so a missing file does not matter here.
    cfg = compose_config("eval", ["ckpt_path=missing.ckpt", override])
    with pytest.raises(ConfigError, match=message):
        evaluate(cfg)


@pytest.mark.parametrize("node", ["model", "loss", "data"])
def test_a_checkpoint_naming_code_in_its_config_is_refused_and_runs_nothing(
    trained_run, tmp_path, node
):
    crafted, victim = crafted_checkpoint(trained_run, tmp_path, node)
    result = run_module(
        "eval",
        f"ckpt_path={crafted}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert_refused_in_one_line(result, victim)
    assert f"fer_config.{node}._target_" in result.stderr


def test_eval_refuses_a_run_directory_in_use(trained_run, tmp_path):
    with run_dir_lock(tmp_path / "eval"):
        result = run_module(
            "eval",
            f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            "trainer.accelerator=cpu",
            f"hydra.run.dir={tmp_path / 'eval'}",
            cwd=tmp_path,
        )
    assert result.returncode == 2 and "is in use by another process" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "eval" / "results").exists()


def test_sigterm_while_evaluating_exits_with_its_status_and_writes_no_results(
    trained_run, tmp_path, monkeypatch, caplog
):
    import logging
    import os
    import signal

    from fer_lightning.module import MultiTaskModule

    test_step = MultiTaskModule.test_step

    def interrupted(self, batch, batch_idx):
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # handled after this batch
        return test_step(self, batch, batch_idx)

    monkeypatch.setattr(MultiTaskModule, "test_step", interrupted)
    with pytest.raises(SystemExit) as ended, caplog.at_level(logging.WARNING):
        evaluated(trained_run, tmp_path)
    assert ended.value.code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM while testing, before results/ was written" in caplog.text
    assert not (tmp_path / "run" / "results").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_eval_scores_another_dataset_on_the_shared_classes_and_the_matrix_gathers_it(
    trained_run, tiny_dataset, tmp_path, caplog
):
    """The 8-class network of `trained_run` on a second synthetic dataset (another seed and
    size) read as 7-class data: scored on the 7 shared classes, and saying so."""
    other = tmp_path / "other"
    data = [
        "data=synthetic",
        f"data.root={other}",
        "data.synthetic.train_size=120",
        "data.synthetic.val_size=32",
        "data.synthetic.image_size=32",
        "data.synthetic.seed=1",
        "data.classes=7",
        "data.num_workers=0",
        "data.batch_size=16",
    ]
    with caplog.at_level("INFO", logger="fer_lightning.eval"):
        _, results = evaluated(trained_run, tmp_path / "eval", *data)
    assert "scoring on the 7 shared classes (Contempt left out" in caplog.text
    experiment = pd.read_csv(results / "experiment.csv").iloc[0]
    assert (experiment["train_data"], experiment["test_data"]) == (tiny_dataset.name, "other")
    assert (experiment["classes"], experiment["scored_classes"]) == (8, 7)
    predictions = pd.read_csv(results / "predictions.csv")
    assert predictions["path"].str.startswith(str(other)).all()
    assert [c for c in predictions if c.startswith("prob_")] == [f"prob_{k}" for k in range(7)]
    assert predictions["pred_expression"].max() < 7
    metrics = json.loads((results / "metrics.json").read_text())
    assert "test/f1_6" in metrics and "test/f1_7" not in metrics

    from fer_lightning.reports.cross import main

    output = tmp_path / "cross.csv"
    main([f"runs=[{trained_run},{tmp_path / 'eval'}]", f"output={output}"])
    table = pd.read_csv(output)
    assert table["test_data"].tolist() == sorted([tiny_dataset.name, "other"])
    assert table.set_index("test_data").loc["other", "acc"] == pytest.approx(
        metrics["test/acc"], abs=1e-6
    )
