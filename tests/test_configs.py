"""Every config group README.md documents holds the values README says it does.

The expected values are typed in from README.md (and, for the paper experiments, from the header
of each experiment's file, which states the original project's settings), or read from the
`| key | default |` tables of docs/configuration.md and docs/commands.md; a config that drifts
from its documentation fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fer_lightning.data.datamodule import AffectNetDataModule

ROOT = Path(__file__).resolve().parents[1]


def _batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 8, generator=generator)
    va_pred = torch.rand(64, 2, generator=generator) * 2 - 1
    expression = torch.arange(64) % 8
    va_target = (va_pred + 0.5 * torch.randn(64, 2, generator=generator)).clamp(-1, 1)
    return logits, va_pred, expression, va_target


def _mse(p: torch.Tensor, y: torch.Tensor) -> float:
    return float(((p - y) ** 2).mean())


def _ccc_term(p: torch.Tensor, y: torch.Tensor) -> float:
    p, y = p.double().numpy(), y.double().numpy()
    ccc = 2 * np.cov(p, y, bias=True)[0, 1] / (p.var() + y.var() + (p.mean() - y.mean()) ** 2)
    return (1 - ccc) / 2


# README "Loss functions": group -> (w_expression, w_valence, w_arousal, regression term).
LOSS_GROUPS = {
    "paper": (0.9, 0.05, 0.05, _mse),
    "equal": (1.0, 1.0, 1.0, _mse),
    "ccc": (1.0, 1.0, 1.0, _ccc_term),
    # Kendall et al. with s = 0 at the start: CE + MSE_v / 2 + MSE_a / 2.
    "uncertainty": (1.0, 0.5, 0.5, _mse),
}


@pytest.mark.parametrize("group", LOSS_GROUPS)
def test_each_loss_group_computes_what_readme_says(compose_config, group):
    cfg = compose_config("train", [f"loss={group}"])
    loss = instantiate(cfg.loss)
    class_weights = torch.linspace(0.5, 3.0, 8)
    loss.set_class_weights(class_weights)  # every group's CE is class-weighted (README)
    logits, va_pred, expression, va_target = _batch()
    total = float(loss(logits, va_pred, expression, va_target)["loss"])

    w_e, w_v, w_a, regression = LOSS_GROUPS[group]
    ce = float(F.cross_entropy(logits, expression, weight=class_weights))
    valence = regression(va_pred[:, 0], va_target[:, 0])
    arousal = regression(va_pred[:, 1], va_target[:, 1])
    assert total == pytest.approx(w_e * ce + w_v * valence + w_a * arousal, rel=1e-5)


def test_the_default_groups_are_readmes(compose_config):
    cfg = compose_config("train")
    choices = {
        "data": cfg.data._target_.endswith("AffectNetDataModule") and cfg.data.root == "Dataset/",
        "loss": list(cfg.loss.weights.values()) == [0.9, 0.05, 0.05],
        "optimizer": cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4,
        "scheduler": cfg.scheduler._target_.endswith("CosineAnnealingLR"),
        "logger": list(cfg.logger) == ["csv"],
    }
    assert all(choices.values()), choices
    # README "Common keys" and "Runs and resuming".
    assert cfg.callbacks.monitor.metric == "val/acc"
    assert cfg.checkpoint.every_minutes == 10
    assert cfg.on_nonfinite_loss == "stop"
    assert cfg.resume is True


@pytest.mark.parametrize(
    ("group", "optimizer", "lr"),
    [
        ("adam", torch.optim.Adam, 1e-4),
        ("adamw", torch.optim.AdamW, None),
        ("sgd", torch.optim.SGD, None),
    ],
)
def test_each_optimizer_group_builds_its_optimizer(compose_config, group, optimizer, lr):
    cfg = compose_config("train", [f"optimizer={group}"])
    built = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert type(built) is optimizer
    if lr is not None:
        assert built.defaults["lr"] == lr


def test_the_cosine_schedule_ends_at_1e_7_after_the_last_epoch(compose_config):
    cfg = compose_config("train", ["scheduler=cosine", "trainer.max_epochs=7"])
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = instantiate(cfg.scheduler)(optimizer)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-7, rel=1e-6)
    assert not compose_config("train", ["scheduler=none"]).get("scheduler")


def test_the_trainer_presets(compose_config):
    def trainer(name: str):
        return compose_config("train", [f"trainer={name}"]).trainer

    assert trainer("cpu").accelerator == "cpu"
    gpu = trainer("gpu")
    # Mixed precision where there is a GPU; none asked for, none given on the CPU.
    mixed = ("bf16-mixed", "16-mixed") if torch.cuda.is_available() else ("32-true",)
    assert gpu.accelerator == "gpu" and gpu.precision in mixed
    assert gpu.benchmark is True  # cuDNN autotuning
    for deterministic in ("true", "warn"):  # cuDNN's choices would differ between runs
        overrides = ["trainer=gpu", f"trainer.deterministic={deterministic}"]
        assert compose_config("train", overrides).trainer.benchmark is False, deterministic
    ddp = trainer("ddp")
    assert ddp.strategy == "ddp" and ddp.devices == "auto"  # every GPU of this machine
    assert ddp.accelerator == "gpu" and ddp.precision == gpu.precision
    cpu_ddp = compose_config("train", ["trainer=ddp", "trainer.accelerator=cpu"]).trainer
    assert cpu_ddp.precision == "32-true"
    for name in ("default", "cpu", "gpu", "ddp"):
        # The project's sampler shards every split itself (README "Multiple GPUs").
        assert trainer(name).use_distributed_sampler is False, name


# The header of each paper experiment: model, batch size, epochs (Adam 1e-4, cosine to 1e-7,
# no pretraining, the 80/20 holdout protocol, the paper's loss ratio).
PAPER_EXPERIMENTS = {
    "paper_squeezenet": ("squeezenet", 128, 30),
    "paper_tnet": ("tnet", 512, 30),
    "paper_efficientnet": ("efficientnet_b0", 32, 12),
    "paper_mobilenet": ("mobilenet_v3_large", 512, 12),
}


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_the_paper_experiments_hold_the_original_settings(compose_config, experiment):
    cfg = compose_config("train", [f"experiment={experiment}"])
    model, batch_size, epochs = PAPER_EXPERIMENTS[experiment]
    assert (cfg.model.name, cfg.data.batch_size, cfg.trainer.max_epochs) == (
        model,
        batch_size,
        epochs,
    )
    assert cfg.model.pretrained is False
    assert cfg.data._target_.endswith("AffectNetDataModule") and cfg.data.synthetic is None
    assert (cfg.data.protocol, cfg.data.test_fraction) == ("holdout", 0.2)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4
    assert cfg.scheduler.eta_min == 1e-7 and cfg.scheduler.T_max == epochs
    assert dict(cfg.loss.weights) == {"expression": 0.9, "valence": 0.05, "arousal": 0.05}
    assert cfg.callbacks.early_stopping is None  # every epoch runs, the best one is kept


def test_the_quickstart_experiment(compose_config):
    # README "Quick start": synthetic faces (4,000 training, 800 validation), T-Net, 10 epochs,
    # on the CPU, under Dataset/synthetic/.
    cfg = compose_config("train", ["experiment=quickstart"])
    assert cfg.data.root == "Dataset/synthetic"
    assert (cfg.data.synthetic.train_size, cfg.data.synthetic.val_size) == (4000, 800)
    assert (cfg.model.name, cfg.trainer.max_epochs, cfg.trainer.accelerator) == ("tnet", 10, "cpu")


def test_the_data_defaults(compose_config):
    cfg = compose_config("train", ["seed=5"])
    data = cfg.data
    # README "Real data": holdout 80/20 by default, official validates on 5%; 8 classes.
    assert (data.protocol, data.test_fraction, data.val_fraction) == ("holdout", 0.2, 0.05)
    assert (data.classes, data.seed) == (8, 5)
    # The class count's one home: the model and the loss read it from data.classes.
    assert (cfg.model.num_classes, cfg.loss.num_classes) == (8, 8)
    # Class-weighted CE, not balanced sampling; the threads loader.
    assert (data.sampler, data.loader) == ("shuffle", "threads")
    # Augmentation: horizontal flip p=0.5 and Gaussian noise p=0.5, nothing from albumentations.
    assert list(data.augment) == []
    module = instantiate(data)
    assert isinstance(module, AffectNetDataModule)
    flip, noise = module.augment_inplace
    assert (type(flip).__name__, flip.p) == ("InPlaceHorizontalFlip", 0.5)
    assert (type(noise).__name__, noise.p) == ("InPlaceGaussNoise", 0.5)


# docs/data.md: each layout's classes and protocol, as its reader declares them.
LAYOUT_DEFAULTS = [
    ("affectnet", 8, "holdout"),
    ("affectnet_csv", 8, "holdout"),
    ("rafdb", 7, "predefined"),
    ("fer2013", 7, "predefined"),
    ("folders", 8, "predefined"),
    ("manifest", 8, "predefined"),
    ("synthetic", 8, "holdout"),
]


@pytest.mark.parametrize(("group", "classes", "protocol"), LAYOUT_DEFAULTS)
def test_each_data_group_takes_its_layouts_classes_and_protocol(
    compose_config, group, classes, protocol
):
    cfg = compose_config("train", [f"data={group}"])
    assert (cfg.data.classes, cfg.data.protocol) == (classes, protocol)
    assert (cfg.model.num_classes, cfg.loss.num_classes) == (classes, classes)
    # What the command line sets wins, and the layout alone decides the defaults.
    assert compose_config("train", [f"data={group}", "data.classes=7"]).data.classes == 7
    relaid = compose_config("train", ["data=affectnet", f"data.format={cfg.data.format}"]).data
    assert (relaid.classes, relaid.protocol) == (classes, protocol)
    assert compose_config("train", ["data=multi"]).data.classes == 8


def test_eval_and_predict_defaults(compose_config):
    # README "Results": eval scores the test split, without test-time augmentation, by default.
    cfg = compose_config("eval", ["ckpt_path=x.ckpt"])
    assert (cfg.split, cfg.tta) == ("test", None)
    cfg = compose_config("predict", ["ckpt_path=x.ckpt", "input=x.jpg"])
    assert cfg.detect_faces is True  # "detect_faces=false takes each image as one face"
    # docs/face-detection.md: MTCNN (Haar without its weights), unaligned crops as AffectNet's.
    assert (cfg.detector.name, cfg.detector.min_size, cfg.align) == ("auto", 20, False)
    assert cfg.tracking.smooth_window == 5


# docs/configuration.md#debugging: each debug= preset and the trainer settings it makes.
DEBUG_PRESETS = {
    "fdr": {"fast_dev_run": True},
    "limit": {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 2},
    "overfit": {"overfit_batches": 2, "max_epochs": 30},
    "profiler": {"profiler": "simple", "max_epochs": 1},
    "anomaly": {"detect_anomaly": True, "max_epochs": 1},
}


@pytest.mark.parametrize("preset", DEBUG_PRESETS)
def test_each_debug_preset_sets_what_the_docs_say_over_an_experiment(compose_config, preset):
    cfg = compose_config("train", [f"debug={preset}", "experiment=quickstart"])
    trainer = instantiate(cfg.trainer, _partial_=True).keywords
    assert {key: trainer[key] for key in DEBUG_PRESETS[preset]} == DEBUG_PRESETS[preset]
    assert cfg.resume is False  # a debugging run starts over, never continues an earlier one
    assert cfg.model.name == "tnet"  # the experiment's choices stay
    assert (cfg.callbacks.early_stopping is None) == (preset == "overfit")


DEFAULT_ROW = re.compile(
    r"\| (`[\w.]+`(?:, `[\w.]+`)*) \| (`[^`|]*`(?:, `[^`|]*`)*)(?: \(.*\)|: .*)? \|"
)


def documented_defaults(page: str) -> dict[str, str]:
    """`key: default` of every row of `page`'s `| key | default |` tables whose default cell is
    literal values: `a`, `b` | `1`, `2`, or one value for all the keys (a key without a dot, or
    starting with one, is under the first key's parent), optionally with a remark in parentheses
    or after a colon."""
    documented = {}
    in_table = False
    for line in page.splitlines():
        in_table = line.startswith("| key | default |") or (in_table and line.startswith("|"))
        row = DEFAULT_ROW.match(line) if in_table else None
        if row is None:
            continue
        keys, values = (re.findall(r"`([^`]*)`", cell) for cell in row.groups())
        parent = keys[0].rpartition(".")[0]
        for key, value in zip(
            keys, values * len(keys) if len(values) == 1 else values, strict=True
        ):
            under = parent and (key.startswith(".") or "." not in key)
            documented[f"{parent}.{key.lstrip('.')}" if under else key] = value
    return documented


def section(page: str, title: str) -> str:
    """The text of `page` under `## title`, up to the next such heading."""
    return page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def composed_defaults(cfg, documented: dict[str, str]) -> dict:
    """The composed value of each documented key the config has; an interpolation such as
    `${seed}` as written; a config group (documented by its option's name) left out."""
    written = OmegaConf.to_container(cfg, resolve=False)
    found = {}
    for key in documented:
        node = written
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError or (isinstance(node, dict) and documented[key] != "{}"):
            continue  # a key of another option than the default one (a logger's, a model's)
        found[key] = node if isinstance(node, str) and "${" in node else OmegaConf.select(cfg, key)
    return found


def as_written(documented: str):
    """A documented default as the config writes it: `<run dir>/x.<format>` is
    `${paths.output_dir}/x.${format}`."""
    names = {"run dir": "paths.output_dir"}
    interpolated = re.sub(r"<([\w ]+)>", lambda m: f"${{{names.get(m[1], m[1])}}}", documented)
    return yaml.safe_load(interpolated)


def test_every_default_docs_configuration_md_states_is_the_composed_configs(compose_config):
    """The composed defaults: `data=affectnet`, `model=squeezenet`, `trainer=default`, ..."""
    documented = documented_defaults((ROOT / "docs" / "configuration.md").read_text())
    found = composed_defaults(compose_config("train"), documented)
    assert len(found) > 40  # the tables were read
    assert found == {key: as_written(documented[key]) for key in found}


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_every_default_docs_commands_md_states_is_the_commands_config(compose_config, command):
    page = (ROOT / "docs" / "commands.md").read_text()
    documented = documented_defaults(section(page, command))
    found = composed_defaults(compose_config(command), documented)
    assert len(found) >= 3
    assert found == {key: as_written(documented[key]) for key in found}
