"""The project's training step against a plain PyTorch loop over the same batches, on the CPU.

    nice python bench/bench_overhead.py                     # tnet and squeezenet at 64 and 112 px
    python bench/bench_overhead.py models=[squeezenet] sizes=[64] rounds=3 steps=10

Both train the same network (same initial weights), loss and optimizer, from the config that
``python -m fer_lightning.train trainer=cpu model=NAME`` composes, on the same ``distinct`` uint8
batches, channels-last as the loader makes them, taken in turn:

- project: a Lightning Trainer with the default callbacks (checkpointing, early stopping,
  learning-rate monitor, progress bar, history, fault tolerance, non-finite loss guard) and the
  CSV logger, the datamodule's normalisation after transfer, `MultiTaskModule`'s step;
- plain: ``normalize`` (the same batched normalisation), forward, loss, ``zero_grad``,
  ``backward``, ``step`` in a loop, fed the normalised batches as they come (channels-last);
  and, to show what the memory layout alone does (what ``module.cpu_channels_last`` chooses per
  model), the same loop with the batch made NCHW-contiguous first, and with the network converted
  to channels-last.

Each rate is ``steps`` training steps after ``warmup`` untimed ones; the runs alternate over
``rounds`` rounds, so that load from other processes hits all alike, and every ratio is taken
within a round and shown as the median (range) over rounds. Target: project / plain >= 0.95.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from fer_lightning.cli import instantiate_dict, parse_key_values, register_resolvers, run_command
from fer_lightning.data.transforms import normalize
from fer_lightning.models import register_model_configs
from fer_lightning.module import MultiTaskModule
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.runs.fault_tolerance import fault_tolerance_plugins

DEFAULTS = {
    "models": ["tnet", "squeezenet"],
    "sizes": [64, 112],
    "batch_size": 64,
    "distinct": 4,  # different batches, taken in turn
    "warmup": 5,
    "steps": 30,
    "rounds": 5,
    "threads": 2,  # torch's intra-op threads
}
EXAMPLE = "models=[squeezenet] sizes=[64] rounds=3 steps=10"
PLAIN_LAYOUTS = ("as they come", "made NCHW", "channels-last net")


def make_batches(n: int, size: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """uint8 NHWC-backed batches, as the loader delivers them, with every class present."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        pixels = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8)
        batches.append(
            {
                "image": pixels.permute(0, 3, 1, 2),
                "expression": torch.arange(batch_size) % 8,
                "va": torch.rand(batch_size, 2, generator=generator) * 2 - 1,
                "index": torch.arange(batch_size),
            }
        )
    return batches


class FixedBatches(pl.LightningDataModule):
    """The given batches as a datamodule: the project's normalisation after transfer."""

    def __init__(self, train: list[dict], count: int) -> None:
        super().__init__()
        self.train = [train[k % len(train)] for k in range(count)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=None)  # each item is a batch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.train[:1], batch_size=None)

    def class_weights(self) -> torch.Tensor:
        return torch.ones(8)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        return {**batch, "image": normalize(batch["image"])}


class StepClock(pl.Callback):
    """Seconds from the end of batch ``warmup`` to the end of batch ``warmup + steps``."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.done = warmup, steps, 0
        self.started = self.seconds = 0.0

    def on_train_batch_end(self, *args: object) -> None:
        self.done += 1
        if self.done == self.warmup:
            self.started = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            self.seconds = time.perf_counter() - self.started


def train_config(model: str, size: int, batch_size: int, out: Path) -> DictConfig:
    overrides = [
        f"paths.output_dir={out}",
        f"model={model}",
        f"data.image_size={size}",
        f"data.batch_size={batch_size}",
        "trainer=cpu",
        "++trainer.max_epochs=1",
        "++trainer.limit_val_batches=1",
        "++trainer.num_sanity_val_steps=0",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def project_rate(cfg: DictConfig, batches: list[dict], args: SimpleNamespace) -> float:
    pl.seed_everything(0, verbose=False)
    module = MultiTaskModule.from_config(cfg)
    clock = StepClock(args.warmup, args.steps)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_dict(cfg.callbacks), clock],
        logger=instantiate_dict(cfg.logger) or False,
        plugins=fault_tolerance_plugins(),
    )
    trainer.fit(module, datamodule=FixedBatches(batches, args.warmup + args.steps))
    return clock.steps * args.batch_size / clock.seconds


def plain_rate(cfg: DictConfig, batches: list[dict], args: SimpleNamespace, layout: str) -> float:
    pl.seed_everything(0, verbose=False)
    net, loss = instantiate(cfg.model), instantiate(cfg.loss)
    if loss.class_weighted:
        loss.set_class_weights(torch.ones(8))
    optimizer = instantiate(cfg.optimizer)([*net.parameters(), *loss.parameters()])
    if layout == "channels-last net":
        net = net.to(memory_format=torch.channels_last)
    net.train()
    start = 0.0
    for k in range(args.warmup + args.steps):
        if k == args.warmup:
            start = time.perf_counter()
        batch = batches[k % len(batches)]
        images = normalize(batch["image"])
        if layout == "made NCHW":
            images = images.contiguous()
        logits, va = net(images)
        value = loss(logits, va, batch["expression"], batch["va"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    args = SimpleNamespace(**parse_key_values(sys.argv[1:], DEFAULTS, EXAMPLE))
    torch.set_num_threads(args.threads)
    register_resolvers()
    register_model_configs()
    print(
        f"{args.steps} steps of batch {args.batch_size} after {args.warmup}, {args.rounds} rounds, "
        f"{args.threads} threads; rates: median images/s; ratios: median (range) over rounds"
    )
    header = f"{'model':<12}{'px':>5}{'project':>9}" + "".join(
        f"{name:>19}" for name in PLAIN_LAYOUTS
    )
    print(header + f"{'project/plain':>20}{'project/best plain':>20}")
    for model in args.models:
        for size in args.sizes:
            batches = make_batches(args.distinct, size, args.batch_size)
            rates: dict[str, list[float]] = {}
            with tempfile.TemporaryDirectory() as out:
                cfg = train_config(model, size, args.batch_size, Path(out))
                for k in range(args.rounds):
                    rates.setdefault("project", []).append(project_rate(cfg, batches, args))
                    for layout in PLAIN_LAYOUTS:
                        rate = plain_rate(cfg, batches, args, layout)
                        rates.setdefault(layout, []).append(rate)
                    measured = ", ".join(f"{n} {r[-1]:.0f}" for n, r in rates.items())
                    print(f"  {model} {size} px round {k + 1}: {measured}", file=sys.stderr)
            project = rates["project"]
            plain = rates[PLAIN_LAYOUTS[0]]
            best = [
                max(r[k] for r in (rates[n] for n in PLAIN_LAYOUTS)) for k in range(len(project))
            ]
            row = f"{model:<12}{size:>5}{statistics.median(project):>9.0f}"
            row += "".join(f"{statistics.median(rates[n]):>19.0f}" for n in PLAIN_LAYOUTS)
            ratio = [p / q for p, q in zip(project, plain, strict=True)]
            best_ratio = [p / q for p, q in zip(project, best, strict=True)]
            print(row + f"{spread(ratio):>20}{spread(best_ratio):>20}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
