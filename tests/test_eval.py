"""eval: scores a trained checkpoint on the test or validation split, with optional flip TTA."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fer_lightning.errors import ConfigError
from fer_lightning.eval import evaluate
from fer_lightning.train import train
from tests.conftest import TINY, tiny_overrides


def test_eval_scores_the_validation_split_with_flip_tta(compose_config, tiny_dataset, tmp_path):
    cfg = compose_config(
        "train", [*tiny_overrides(tiny_dataset), "model=tnet", "trainer.max_epochs=1", "test=false"]
    )
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"

    def scored(name: str, *overrides: str) -> tuple[dict[str, float], Path]:
        out = tmp_path / name
        eval_cfg = compose_config(
            "eval",
            [f"ckpt_path={last}", "trainer.accelerator=cpu", f"paths.output_dir={out}", *overrides],
        )
        return evaluate(eval_cfg), out / "results"

    metrics, results = scored("val_flip", "split=val", "tta=flip")
    written = json.loads((results / "metrics.json").read_text())
    assert written["val/acc"] == pytest.approx(metrics["acc"])
    assert not any(key.startswith("test/") for key in written)

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

    # Flip averaging changes the predictions (the synthetic faces are not mirror-symmetric).
    _, plain = scored("val_plain", "split=val")
    without_tta = pd.read_csv(plain / "predictions.csv")["pred_valence"].to_numpy()
    assert (without_tta != predictions["pred_valence"].to_numpy()).any()


@pytest.mark.parametrize(
    ("override", "message"), [("split=train", "split must be"), ("tta=hflip", "tta must be")]
)
def test_a_bad_split_or_tta_is_a_config_error(compose_config, override, message):
    # Checked before the checkpoint is read, so a missing file does not matter here.
    cfg = compose_config("eval", ["ckpt_path=missing.ckpt", override])
    with pytest.raises(ConfigError, match=message):
        evaluate(cfg)
