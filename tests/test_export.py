"""export: ONNX and TorchScript reproduce the PyTorch network, with a model card beside them."""

from __future__ import annotations

import json
import logging
import sys
from copy import deepcopy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.export import export
from fer_lightning.inference.export import export_checkpoint
from fer_lightning.module import trained_net
from fer_lightning.runs.checkpoints import load_checkpoint
from tests.conftest import assert_refused_in_one_line, crafted_checkpoint, run_module
from tests.test_predict import save_checkpoint

EXPRESSIONS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


def pytorch_outputs(checkpoint: Path, x: torch.Tensor) -> list[np.ndarray]:
    net = trained_net(load_checkpoint(checkpoint))
    with torch.inference_mode():
        return [t.numpy() for t in net(x)]


@pytest.mark.parametrize("name", ["tnet", "squeezenet"])
def test_onnx_matches_pytorch_at_two_batch_sizes_and_has_its_card(compose_config, tmp_path, name):
    checkpoint = save_checkpoint(tmp_path / f"{name}.ckpt", name, image_size=48)
    cfg = compose_config("export", [f"ckpt_path={checkpoint}", "format=onnx"])
    exported = export(cfg)

    assert exported.model == Path(cfg.output) and exported.model.name == "model.onnx"
    assert exported.max_abs_diff <= 1e-4
    model = onnx.load(str(exported.model))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]  # docs/commands.md
    session = onnxruntime.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 48, 48)
        got = session.run(["expression_logits", "valence_arousal"], {"image": x.numpy()})
        for expected, actual in zip(pytorch_outputs(checkpoint, x), got, strict=True):
            assert actual.shape == expected.shape
            np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)

    assert exported.card == Path(f"{cfg.output}.json")
    assert json.loads(exported.card.read_text()) == documented_card("onnx", "model.onnx", name, 48)


def documented_card(fmt: str, file: str, model: str, size: int) -> dict:
    """The model card as docs/commands.md describes it: a file format users' code reads, so
    every key and text is part of it."""
    return {
        "format": fmt,
        "file": file,
        "model": model,
        "input": {
            "name": "image",
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "color_order": "RGB",
            "image_size": size,
            "value_range": "pixels scaled to [0, 1] (uint8 / 255), then (x - mean) / std",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "face_crop": "face box enlarged by 25% of its side on each side, made square "
            "(black padding outside the image), resized to image_size",
        },
        "outputs": {
            "expression_logits": {
                "shape": ["batch", 8],
                "meaning": "expression logits; softmax gives the probability of each code",
            },
            "valence_arousal": {
                "shape": ["batch", 2],
                "meaning": "valence, arousal (in [-1, 1] when va_activation is tanh)",
                "va_activation": "tanh",
            },
        },
        "output_names": ["expression_logits", "valence_arousal"],
        "class_names": {str(code): name for code, name in enumerate(EXPRESSIONS)},
    }


def test_torchscript_round_trips(compose_config, tmp_path, caplog):
    checkpoint = save_checkpoint(tmp_path / "tnet.ckpt")
    cfg = compose_config("export", [f"ckpt_path={checkpoint}", "format=torchscript"])
    with caplog.at_level(logging.INFO, logger="fer_lightning.export"):
        exported = export(cfg)
    # What the command says at its end: the files it wrote and how close they are.
    said = [r.getMessage() for r in caplog.records if r.name == "fer_lightning.export"]
    assert said == [
        f"wrote {exported.model} and {exported.card}; max abs difference from PyTorch "
        f"{exported.max_abs_diff:.3g}"
    ]

    assert exported.max_abs_diff <= 1e-4
    loaded = torch.jit.load(str(exported.model))
    x = torch.randn(4, 3, 48, 48)
    with torch.inference_mode():
        got = [t.numpy() for t in loaded(x)]
    for expected, actual in zip(pytorch_outputs(checkpoint, x), got, strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    card = documented_card("torchscript", "model.torchscript", "tnet", 48)
    assert json.loads(exported.card.read_text()) == card


def test_an_unknown_format_is_a_one_line_error(compose_config, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "tnet.ckpt")
    cfg = compose_config("export", [f"ckpt_path={checkpoint}", "format=tflite"])
    with pytest.raises(ConfigError) as caught:
        export(cfg)
    assert str(caught.value) == "unknown format 'tflite': choose onnx or torchscript"


def test_a_library_export_allows_1e_4_into_a_new_folder_and_indents_its_card(tmp_path, monkeypatch):
    """`export_checkpoint` called from Python: its default tolerance is the command's, a
    difference of exactly the tolerance passes, and the output's folders are made."""
    checkpoint = save_checkpoint(tmp_path / "tnet.ckpt")
    output = tmp_path / "deployed" / "v1" / "model.torchscript"
    at = "fer_lightning.inference.export.max_abs_diff"
    monkeypatch.setattr(at, lambda *args: 1.5e-4)
    with pytest.raises(ConfigError, match=r"by 0\.00015 \(> tolerance=0\.0001\)"):
        export_checkpoint(checkpoint, "torchscript", output)
    monkeypatch.setattr(at, lambda *args: 1e-4)
    exported = export_checkpoint(checkpoint, "torchscript", output)
    assert exported.max_abs_diff == 1e-4 and exported.model == output
    card = documented_card("torchscript", "model.torchscript", "tnet", 48)
    assert exported.card.read_text() == json.dumps(card, indent=2) + "\n"


def test_an_onnx_export_that_cannot_be_made_is_one_line(compose_config, tmp_path, monkeypatch):
    cfg = compose_config("export", [f"ckpt_path={save_checkpoint(tmp_path / 't.ckpt')}"])

    def failing(*args, **kwargs):
        raise torch.onnx.OnnxExporterError("Unsupported operator aten::foo. Traced graph: ...")

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(ConfigError) as caught:
        export(cfg)
    assert str(caught.value) == (
        "cannot export this model to ONNX (Unsupported operator aten::foo): use format=torchscript"
    )
    for missing in ("onnx", "onnxruntime"):
        monkeypatch.undo()
        monkeypatch.setitem(sys.modules, missing, None)  # an import of it fails
        with pytest.raises(ConfigError) as caught:
            export(cfg)
        assert str(caught.value) == (
            f"format=onnx needs the {missing} package: pip install 'fer-lightning[export]'"
        )


@pytest.fixture
def perturbed_exports(monkeypatch):
    """Makes every ONNX and TorchScript export write a copy of the network with its weights
    scaled by 1.01: a broken exporter, which the export's own check must catch."""

    def perturbed(net: torch.nn.Module) -> torch.nn.Module:
        copy = deepcopy(net)
        with torch.no_grad():
            for parameter in copy.parameters():
                parameter.mul_(1.01)
        return copy

    onnx_export, trace = torch.onnx.export, torch.jit.trace
    monkeypatch.setattr(
        torch.onnx, "export", lambda net, *args, **kw: onnx_export(perturbed(net), *args, **kw)
    )
    monkeypatch.setattr(
        torch.jit, "trace", lambda net, *args, **kw: trace(perturbed(net), *args, **kw)
    )


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_that_differs_from_pytorch_fails(
    compose_config, tmp_path, perturbed_exports, fmt
):
    checkpoint = save_checkpoint(tmp_path / "tnet.ckpt")
    cfg = compose_config("export", [f"ckpt_path={checkpoint}", f"format={fmt}"])
    with pytest.raises(ConfigError, match="differs from the PyTorch model") as caught:
        export(cfg)
    assert "\n" not in str(caught.value)
    assert not Path(f"{cfg.output}.json").exists()  # no model card for a failed export

    # The difference is measured, not assumed: a loose enough tolerance lets the same export pass.
    loose = compose_config("export", [f"ckpt_path={checkpoint}", f"format={fmt}", "tolerance=10"])
    exported = export(loose)
    x = torch.randn(3, 3, 48, 48)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(
            str(exported.model), providers=["CPUExecutionProvider"]
        )
        got = session.run(["expression_logits", "valence_arousal"], {"image": x.numpy()})
    else:
        with torch.inference_mode():
            got = [t.numpy() for t in torch.jit.load(str(exported.model))(x)]
    own = max(
        float(np.abs(e - g).max()) for e, g in zip(pytorch_outputs(checkpoint, x), got, strict=True)
    )
    assert own > 1e-3 and exported.max_abs_diff > 1e-4
    assert exported.max_abs_diff == pytest.approx(own, rel=0.5)


@pytest.mark.parametrize("node", ["model", "data"])
def test_a_checkpoint_naming_code_in_its_config_is_refused_and_runs_nothing(
    trained_run, tmp_path, node
):
    crafted, victim = crafted_checkpoint(trained_run, tmp_path, node)
    result = run_module(
        "export",
        f"ckpt_path={crafted}",
        "format=torchscript",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert_refused_in_one_line(result, victim)
    assert not list((tmp_path / "run").glob("model.*"))
