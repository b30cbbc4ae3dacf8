"""The GPU machine's check, one row per training variant: `bash bench/gpu_check.sh` (docs in
bench/README.md). `--tiny` runs the same rows on the CPU in a couple of minutes, so the script
stays runnable where no GPU is.

Every row is the real training command (`bench/training_rate.py`: callbacks, CSV logger, timed
past the prefetch queue and within one epoch) with the row's overrides. A row whose override
names a key the composed config lacks (an option another branch adds, such as `data.cache`) is
skipped with a note. The environment, then a markdown table, go to stdout and to `--out`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from bench_gpu import make_dataset
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_rate import REPO, queue_depth, run_training

from fer_lightning.cli import register_resolvers
from fer_lightning.models import register_model_configs
from fer_lightning.paths import CONFIG_DIR, user_cache_dir

PAPER_MODELS = ("squeezenet", "mobilenet_v3_large", "efficientnet_b0", "tnet")
# (row, model, overrides): the variants, each one line. `{threads}` is the machine's cores less one.
ROWS = [
    *((model, model, []) for model in PAPER_MODELS),
    ("threads x 4", "squeezenet", ["data.loader=threads", "data.num_workers=4"]),
    ("threads x all", "squeezenet", ["data.loader=threads", "data.num_workers={threads}"]),
    ("processes x all", "squeezenet", ["data.loader=processes", "data.num_workers={threads}"]),
    ("decoded cache", "squeezenet", ["data.cache=decoded"]),
    ("device augmentation", "squeezenet", ["data.augment_on=device"]),
    ("deterministic", "squeezenet", ["trainer.deterministic=true"]),
    ("compiled", "squeezenet", ["module.compile=true"]),
]
# What a mode changes: the dataset, the models, the trainer and the window.
MODES = {
    "gpu": {"images": 20_000, "unique": 2_000, "size": 224, "steps": 100, "warmup": 5},
    "tiny": {"images": 160, "unique": 40, "size": 32, "steps": 2, "warmup": 1},
}
# --tiny: the rows that exercise an option, all on T-Net (the smallest network).
TINY_ROWS = ("tnet", "decoded cache", "device augmentation", "deterministic", "compiled")
COLUMNS = (
    ("row", "row", "{}"),
    ("model", "model", "{}"),
    ("images/s", "images_per_s", "{:.0f}"),
    ("batch", "batch", "{}"),
    ("loader", "loader", "{}"),
    ("precision", "precision", "{}"),
    ("host syncs/step", "host_syncs_per_step", "{:.2f}"),
    ("peak GPU MiB", "peak_gpu_mib", "{:.0f}"),
    ("pinned MiB", "pinned_mib", "{:.0f}"),
    ("graphs", "graphs", "{}"),
    ("recompiles", "recompiles", "{}"),
    ("batch on", "batch_on", "{}"),
)


def environment() -> list[str]:
    """What the numbers depend on, one `- key: value` line each."""
    facts: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "CUDA": torch.version.cuda,
        "cuDNN": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "CPU cores usable": len(os.sched_getaffinity(0)),
        "/dev/shm MiB": shutil.disk_usage("/dev/shm").total // 2**20
        if Path("/dev/shm").is_dir()
        else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts["GPU"] = (
            f"{torch.cuda.device_count()} x {props.name}, {props.total_memory // 2**20} MiB"
        )
        facts["driver"] = _output(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        )
    return [f"- {key}: {value}" for key, value in facts.items()]


def _output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def base_overrides(mode: str, root: Path) -> list[str]:
    size = MODES[mode]["size"]
    common = [
        "data=affectnet",
        f"data.root={root}",
        f"data.image_size={size}",
        "model.pretrained=false",
    ]
    if mode == "tiny":
        return [*common, "trainer=cpu", "data.batch_size=8", "data.num_workers=1"]
    return [*common, "trainer=gpu"]


def missing_key(overrides: list[str]) -> str | None:
    """The first `key=value` whose key the composed config lacks (Hydra would refuse it)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        groups = [o for o in overrides if "." not in o.split("=", 1)[0]]
        cfg = compose(config_name="train", overrides=groups)
    for override in overrides:
        key = override.split("=", 1)[0]
        if "." in key and not key.startswith(("+", "~")):
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent)
            if node is None or leaf not in node:
                return key
    return None


def run_row(name: str, model: str, extra: list[str], mode: str, root: Path) -> dict[str, Any]:
    threads = str(max(1, len(os.sched_getaffinity(0)) - 1))
    model = "tnet" if mode == "tiny" else model
    overrides = [*base_overrides(mode, root), f"model={model}"]
    overrides += [o.replace("{threads}", threads) for o in extra]
    row: dict[str, Any] = {"row": name, "model": model}
    missing = missing_key(overrides)
    if missing:
        print(f"note: {name}: skipped, the config has no {missing}", flush=True)
        return {**row, "note": f"skipped: no {missing} in the config"}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    warmup = queue_depth(cfg.data) + MODES[mode]["warmup"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        try:
            rate = run_training(overrides, Path(out), warmup, MODES[mode]["steps"], timeout=600)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"note: {name}: failed: {error}", flush=True)
            return {**row, "note": f"failed: {error}"[:200]}
    loader = f"{cfg.data.loader} x {cfg.data.num_workers}"
    print(
        f"{name}: {rate['images_per_s']:.0f} images/s ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return {**row, **rate, "loader": loader}


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        if "note" in row:
            cells = [row["row"], row["model"], row["note"], *[""] * (len(COLUMNS) - 3)]
        else:
            cells = [
                "" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in COLUMNS
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a CPU run of minutes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"), help="the report")
    parser.add_argument("--rows", nargs="*", help="only these rows (names as in the table)")
    args = parser.parse_args()
    mode = "tiny" if args.tiny else "gpu"
    if mode == "gpu" and not torch.cuda.is_available():
        print("error: no GPU visible: run with --tiny for the CPU check", file=sys.stderr)
        return 2
    register_resolvers()
    register_model_configs()
    sizes = MODES[mode]
    name = f"gpu-check-{sizes['images']}-{sizes['unique']}-{sizes['size']}"
    started = time.perf_counter()
    root = make_dataset(
        user_cache_dir() / name,
        sizes["images"],
        sizes["unique"],
        sizes["size"],
        len(os.sched_getaffinity(0)),
    )
    print(f"dataset: {root} ({time.perf_counter() - started:.0f} s)", flush=True)
    chosen = args.rows or [r for r, _, _ in ROWS if mode == "gpu" or r in TINY_ROWS]
    rows = [run_row(r, m, extra, mode, root) for r, m, extra in ROWS if r in chosen]
    lines = [
        f"## bench/gpu_check.sh{' --tiny' if args.tiny else ''}",
        "",
        *environment(),
        "",
        f"Training at {sizes['size']} px, {sizes['steps']} timed steps past the prefetch queue.",
        "",
        *table(rows),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
