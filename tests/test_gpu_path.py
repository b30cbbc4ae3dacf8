"""The module's GPU-path options: harmless on the CPU; their CUDA branch exercised on the CPU."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from fer_lightning.losses import MultiTaskLoss
from fer_lightning.models import create_model
from fer_lightning.module import MultiTaskModule


def attached_module(model: str = "tnet", **options: bool) -> MultiTaskModule:
    module = MultiTaskModule(
        net=create_model(model, image_size=32),
        loss=MultiTaskLoss({"expression": 0.9, "valence": 0.05, "arousal": 0.05}, num_classes=8),
        optimizer=torch.optim.Adam,
        **options,
    )
    module.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    return module


def batch() -> dict[str, torch.Tensor]:
    return {
        "image": torch.randn(4, 3, 32, 32),
        "expression": torch.tensor([0, 1, 2, 3]),
        "va": torch.zeros(4, 2),
    }


def test_on_the_cpu_channels_last_changes_nothing_and_compile_wraps_in_place():
    module = attached_module(channels_last=True, compile=True)
    names = set(module.state_dict())
    module.setup("fit")
    conv = next(p for p in module.net.parameters() if p.ndim == 4)
    assert conv.is_contiguous()  # default layout kept on the CPU
    assert module._train_forward is not None
    # In place: checkpoints keep their keys and load into an uncompiled network.
    assert set(module.state_dict()) == names


@pytest.mark.parametrize(
    ("model", "option", "channels_last"),
    [("squeezenet", None, True), ("squeezenet", False, False), ("tnet", True, True)],
)
def test_on_the_cpu_the_layout_is_the_models_measured_one_unless_set(model, option, channels_last):
    module = attached_module(model, cpu_channels_last=option)
    module.setup("fit")
    conv = next(p for p in module.net.parameters() if p.ndim == 4)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert conv.is_contiguous(memory_format=layout)
    loader_batch = {
        **batch(),
        "image": batch()["image"].contiguous(memory_format=torch.channels_last),
    }
    images = module._images(loader_batch)
    assert images.is_contiguous(memory_format=layout)
    assert (images.data_ptr() == loader_batch["image"].data_ptr()) == channels_last  # no copy


def test_on_cuda_the_network_and_its_inputs_are_channels_last(monkeypatch):
    module = attached_module()
    strategy = type(module.trainer.strategy)
    monkeypatch.setattr(strategy, "root_device", property(lambda self: torch.device("cuda")))
    module.setup("test")
    conv = next(p for p in module.net.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    images = module._images(batch())
    assert images.is_contiguous(memory_format=torch.channels_last)
    losses, logits, _ = module._step(batch())
    assert logits.shape == (4, 8) and torch.isfinite(losses["loss"])


def test_deterministic_on_cuda_warns_where_a_layer_has_no_deterministic_kernel(monkeypatch):
    """Strictly, adaptive average pooling's first backward on a GPU would raise."""
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: calls.append(k))
    calls: list[dict] = []
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    monkeypatch.setattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    module = attached_module()
    strategy = type(module.trainer.strategy)
    monkeypatch.setattr(strategy, "root_device", property(lambda self: torch.device("cuda")))
    module.setup("fit")
    assert calls == [{"warn_only": True}]


def samples(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(count)
    return [
        {
            "image": torch.randn(3, 32, 32, generator=generator),
            "expression": torch.tensor(i % 8),
            "va": torch.zeros(2),
            "index": torch.tensor(i),
        }
        for i in range(count)
    ]


def test_compile_compiles_the_training_forward_only(monkeypatch):
    """Fit (with its sanity check and a validation split ending in a partial batch), then test:
    one graph, counted by a backend that runs it as it is."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **k: compile_(*a, **{**k, "backend": counter}))
    torch._dynamo.reset()
    module = attached_module(compile=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = torch.utils.data.DataLoader
    trainer.fit(module, loader(samples(8), batch_size=4), loader(samples(6), batch_size=4))
    trainer.test(module, loader(samples(6), batch_size=4), verbose=False)
    assert counter.frame_count == 1


@pytest.mark.slow
def test_a_compiled_network_trains_on_the_cpu():
    module = attached_module(compile=True)
    module.setup("fit")
    losses, _, _ = module._step(batch())
    losses["loss"].backward()
    assert all(p.grad is not None for p in module.net.parameters() if p.requires_grad)
