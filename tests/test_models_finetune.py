"""The fine-tuning controls do what they say: a frozen backbone stays put while the heads train,
the backbone's learning rate is scaled (layer by layer for timm), the weight average is the
running average, warmup+cosine steps per batch, gradient clipping bounds the step, and an
impossible option is refused when the module is built."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss
from fer_lightning.models import create_model
from fer_lightning.models.finetune import parameter_summary, set_backbone_trainable
from fer_lightning.module import MultiTaskModule
from fer_lightning.schedulers import WarmupCosine
from tests.conftest import tiny_overrides

BATCHES = 3


class Recorder(pl.Callback):
    """The network's weights after every optimizer step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def fit(cfg, max_epochs=1, callbacks=(), **trainer_options):
    pl.seed_everything(0)
    module = MultiTaskModule.from_config(cfg)
    initial = {k: v.detach().clone() for k, v in module.net.named_parameters()}
    options = {"limit_train_batches": BATCHES, **trainer_options}
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **options,
    )
    trainer.fit(module, datamodule=instantiate(cfg.data))
    return module, initial, trainer


def config(compose_config, tiny_dataset, *overrides):
    return compose_config(
        "train",
        [*tiny_overrides(tiny_dataset), "model=timm", "model.name=test_resnet", *overrides],
    )


def changed(module, initial, part):
    return [
        n
        for n, p in module.net.named_parameters()
        if n.startswith(part) and not torch.equal(p, initial[n])
    ]


def test_a_frozen_backbone_is_unchanged_while_the_heads_train_then_it_trains(
    compose_config, tiny_dataset
):
    cfg = config(compose_config, tiny_dataset, "module.freeze_backbone_epochs=1", "optimizer=adamw")
    module, initial, _ = fit(cfg)
    assert changed(module, initial, "backbone.") == []
    assert changed(module, initial, "expression_head.") and changed(module, initial, "va_head.")
    module, initial, _ = fit(cfg, max_epochs=2)
    assert changed(module, initial, "backbone.")


def test_the_summary_counts_backbone_and_head_parameters_and_what_trains():
    net = create_model("test_resnet", library="timm", image_size=32)
    backbone = sum(p.numel() for p in net.backbone.parameters())
    heads = sum(p.numel() for p in net.parameters()) - backbone
    set_backbone_trainable(net, False)
    assert parameter_summary(net) == (
        f"backbone {backbone:,} parameters (0 trainable), "
        f"heads {heads:,} parameters ({heads:,} trainable)"
    )


def optimizer_of(cfg):
    return MultiTaskModule.from_config(cfg).configure_optimizers()


def test_the_backbone_lr_is_scaled_and_decays_layer_by_layer(compose_config, tiny_dataset):
    base = ["scheduler=none", "optimizer.lr=1.0"]
    plain = optimizer_of(config(compose_config, tiny_dataset, *base))
    assert len(plain.param_groups) == 1
    scaled = optimizer_of(
        config(compose_config, tiny_dataset, *base, "module.backbone_lr_scale=0.1")
    )
    assert {g["name"]: g["lr"] for g in scaled.param_groups} == {"heads": 1.0, "backbone": 0.1}
    decayed = optimizer_of(
        config(
            compose_config,
            tiny_dataset,
            *base,
            "module.backbone_lr_scale=0.1",
            "module.layer_decay=0.5",
        )
    )
    lrs = {g["name"]: g["lr"] for g in decayed.param_groups}
    layers = len(lrs) - 1
    assert layers > 2 and lrs["heads"] == 1.0
    for i in range(layers):
        assert lrs[f"backbone.{i}"] == pytest.approx(0.1 * 0.5 ** (layers - i))
    with pytest.raises(ConfigError, match="layer groups"):
        optimizer_of(compose_config("train", ["model=tnet", "module.layer_decay=0.5"]))


def test_the_weight_average_is_the_running_average(compose_config, tiny_dataset):
    decay = 0.9
    recorder = Recorder()
    cfg = config(compose_config, tiny_dataset, f"module.ema_decay={decay}")
    pl.seed_everything(0)
    start = {k: v.double() for k, v in MultiTaskModule.from_config(cfg).net.state_dict().items()}
    module, _, _ = fit(cfg, callbacks=[recorder])
    expected = dict(start)
    for t, weights in enumerate(recorder.states, start=1):
        keep = min(decay, (1 + t) / (10 + t))
        for k, v in weights.items():
            if v.is_floating_point():
                expected[k] = keep * expected[k] + (1 - keep) * v.double()
    average = module.ema.net.state_dict()
    assert int(module.ema.updates) == BATCHES
    for k, v in average.items():
        if v.is_floating_point():
            torch.testing.assert_close(v.double(), expected[k], atol=1e-6, rtol=0)


def test_warmup_then_cosine_per_step():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosine(optimizer, total_steps=10, max_epochs=2, warmup_epochs=1, eta_min=0.0)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warmup = [0.2, 0.4, 0.6, 0.8, 1.0]
    cosine = [0.5 * (1 + math.cos(math.pi * i / 5)) for i in range(1, 5)]
    assert lrs == pytest.approx([*warmup, 1.0, *cosine][:10])


def test_the_module_steps_warmup_cosine_after_every_batch(compose_config, tiny_dataset):
    cfg = config(compose_config, tiny_dataset, "scheduler=warmup_cosine", "optimizer.lr=1.0")
    _, _, trainer = fit(cfg, max_epochs=2)
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "step"
    assert scheduler.scheduler.last_epoch == 2 * BATCHES
    assert scheduler.scheduler.warmup_steps == BATCHES


def step_norm(compose_config, tiny_dataset, *clip):
    cfg = config(
        compose_config,
        tiny_dataset,
        "optimizer=sgd",
        "optimizer.lr=1.0",
        "optimizer.momentum=0.0",
        "optimizer.nesterov=false",
        "optimizer.weight_decay=0.0",
        "scheduler=none",
    )
    module, initial, _ = fit(cfg, limit_train_batches=1, **dict(clip))
    deltas = [(p.detach() - initial[n]).flatten() for n, p in module.net.named_parameters()]
    return float(torch.cat(deltas).norm())


def test_gradient_clipping_bounds_the_update(compose_config, tiny_dataset):
    clipped = step_norm(compose_config, tiny_dataset, ("gradient_clip_val", 1e-3))
    assert clipped == pytest.approx(1e-3, rel=1e-3)
    assert step_norm(compose_config, tiny_dataset) > 1e-2


FINETUNE_REFUSALS = [
    (
        {"freeze_backbone_epochs": -1},
        "module.freeze_backbone_epochs must be an integer >= 0, got -1",
    ),
    (
        {"freeze_backbone_epochs": 1.5},
        "module.freeze_backbone_epochs must be an integer >= 0, got 1.5",
    ),
    (
        {"freeze_backbone_epochs": True},
        "module.freeze_backbone_epochs must be an integer >= 0, got True",
    ),
    (
        {"backbone_lr_scale": -0.1},
        "module.backbone_lr_scale must be a finite number >= 0, got -0.1",
    ),
    (
        {"backbone_lr_scale": math.nan},
        "module.backbone_lr_scale must be a finite number >= 0, got nan",
    ),
    (
        {"backbone_lr_scale": math.inf},
        "module.backbone_lr_scale must be a finite number >= 0, got inf",
    ),
    (
        {"backbone_lr_scale": "a tenth"},
        "module.backbone_lr_scale must be a finite number >= 0, got 'a tenth'",
    ),
    ({"layer_decay": 0.0}, "module.layer_decay must be in (0, 1] or null, got 0.0"),
    ({"layer_decay": 1.5}, "module.layer_decay must be in (0, 1] or null, got 1.5"),
    ({"layer_decay": "0.75x"}, "module.layer_decay must be in (0, 1] or null, got '0.75x'"),
]


@pytest.mark.parametrize(("options", "message"), FINETUNE_REFUSALS)
def test_an_impossible_finetuning_option_is_refused_when_the_module_is_built(options, message):
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    loss = MultiTaskLoss({"expression": 1.0}, num_classes=8)
    with pytest.raises(ConfigError) as refused:
        MultiTaskModule(net, loss, None, **options)
    assert str(refused.value) == message


def test_the_finetuning_options_bounds_are_allowed():
    net = create_model("tnet", image_size=16, head_hidden=0, dropout=0.0)
    loss = MultiTaskLoss({"expression": 1.0}, num_classes=8)
    module = MultiTaskModule(net, loss, None, backbone_lr_scale=0.0, layer_decay=1.0)
    assert (module.freeze_backbone_epochs, module.backbone_lr_scale, module.layer_decay) == (
        0,
        0,
        1,
    )
