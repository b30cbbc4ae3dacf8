"""model=timm: timm families train, odd names and sizes fail in one line, weights come from the
local Hugging Face cache only, and a trained timm run evaluates, predicts and exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import constants

from fer_lightning.errors import ConfigError
from fer_lightning.eval import evaluate
from fer_lightning.export import export
from fer_lightning.models import create_model
from fer_lightning.module import trained_net
from fer_lightning.predict import predict
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.train import train
from tests.conftest import compose_in, subprocess_env, tiny_overrides

# The smallest real member of each family (a second or two each to build and step on the CPU).
FAMILIES = ["resnet10t", "efficientnet_b0", "mobilenetv3_small_050", "convnext_atto"]


def fast_dev_run(root: Path, out: Path, name: str, *extra: str) -> None:
    overrides = ["model=timm", f"model.name={name}", "trainer.fast_dev_run=true", "test=false"]
    train(compose_in(out, "train", [*tiny_overrides(root), *overrides, *extra]))


@pytest.mark.parametrize("name", [*FAMILIES, "vit_tiny_patch16_224"])
def test_fast_dev_run_trains_each_timm_family(tiny_dataset, tmp_path, name):
    fast_dev_run(tiny_dataset, tmp_path, name)


def test_a_vit_is_built_for_the_data_image_size():
    net = create_model("test_vit", library="timm", image_size=32)
    logits, va = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 8) and va.shape == (2, 2)
    assert net.backbone.patch_embed.img_size == (32, 32)


def test_an_input_size_the_architecture_refuses_is_one_line():
    with pytest.raises(ConfigError, match=r"cannot take data\.image_size=8") as error:
        create_model("vit_tiny_patch16_224", library="timm", image_size=8)
    assert "\n" not in str(error.value)


def cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fer_lightning.train", *overrides],
        env=subprocess_env(HYDRA_FULL_ERROR="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_an_unknown_timm_name_is_one_line_and_model_timm_is_a_choice(tmp_path):
    result = cli("model=timm", "model.name=resnet_nope", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: unknown timm model 'resnet_nope'")
    result = cli("model=timmm", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "or timm with model.name" in result.stderr


def fake_hub_cache(cache: Path, hub_id: str, state: dict[str, torch.Tensor]) -> None:
    """The layout huggingface_hub leaves after downloading `hub_id`'s model.safetensors."""
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    safetensors.torch.save_file(state, snapshot / "model.safetensors")


def test_pretrained_reads_the_local_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        create_model("test_vit", library="timm", image_size=160, pretrained=True)
    message = str(error.value)
    hub_id = timm.models.get_pretrained_cfg("test_vit").hf_hub_id
    assert "\n" not in message and str(tmp_path) in message and f"hf download {hub_id}" in message

    source = timm.create_model("test_vit", num_classes=1000)
    fake_hub_cache(tmp_path, hub_id, source.state_dict())
    net = create_model("test_vit", library="timm", image_size=160, pretrained=True)
    loaded = net.backbone.state_dict()
    assert loaded.keys() <= source.state_dict().keys()
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in loaded.items())


@pytest.fixture(scope="module")
def timm_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tested run of a timm ViT with a weight average."""
    out = tmp_path_factory.mktemp("timm")
    overrides = ["model=timm", "model.name=test_vit", "trainer.max_epochs=1"]
    cfg = compose_in(
        out, "train", [*tiny_overrides(tiny_dataset), *overrides, "module.ema_decay=0.9"]
    )
    train(cfg)
    return Path(cfg.paths.output_dir)


def test_a_timm_run_evaluates_and_exports_its_weight_average(timm_run, tmp_path):
    checkpoint = timm_run / "checkpoints" / "last.ckpt"
    metrics = evaluate(
        compose_in(
            tmp_path / "eval", "eval", [f"ckpt_path={checkpoint}", "trainer.accelerator=cpu"]
        )
    )
    assert 0 <= metrics["acc"] <= 1
    state = load_checkpoint(checkpoint)["state_dict"]
    net = trained_net(load_checkpoint(checkpoint))
    assert all(torch.equal(v, state[f"ema.net.{k}"]) for k, v in net.state_dict().items())

    exported = export(compose_in(tmp_path / "x", "export", [f"ckpt_path={checkpoint}"]))
    session = onnxruntime.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        expected = [t.numpy() for t in net(x)]
    got = session.run(["expression_logits", "valence_arousal"], {"image": x.numpy()})
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-4, rtol=0)


def test_a_timm_run_predicts(timm_run, tiny_dataset, tmp_path):
    images = sorted((tiny_dataset / "val_set" / "images").glob("*"))[:4]
    folder = tmp_path / "images"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    cfg = compose_in(
        tmp_path,
        "predict",
        [
            f"ckpt_path={timm_run / 'checkpoints' / 'last.ckpt'}",
            f"input={folder}",
            "detect_faces=false",
            "device=cpu",
        ],
    )
    predict(cfg)
    rows = Path(cfg.output).read_text().splitlines()
    assert len(rows) == 1 + len(images)
