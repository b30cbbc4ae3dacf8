"""Deployable copies of a trained network (ONNX, TorchScript) that check themselves once written.

Each export is run on two random batches of different sizes (proving the dynamic batch axis) and
compared with the PyTorch network; a model that does not reproduce it within `tolerance` fails
the command instead of passing as a success. Beside the model goes `<output>.json`, the model
card: all a user needs to prepare inputs and read outputs without this project's code.

ONNX uses torch's TorchScript-based exporter (`dynamo=False`): the torch.export-based default needs
the `onnxscript` package, which this project does not depend on.
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import DEFAULT_MARGIN
from fer_lightning.labels import EXPRESSION_NAMES
from fer_lightning.module import trained_net
from fer_lightning.runs.checkpoints import load_checkpoint
from fer_lightning.runs.stored_config import model_settings, stored_input

INPUT_NAME = "image"
OUTPUT_NAMES = ("expression_logits", "valence_arousal")
CHECK_BATCH_SIZES = (2, 3)
ONNX_OPSET = 17

Runner = Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class Exported:
    """Where an export went and how far its outputs are from PyTorch's."""

    model: Path
    card: Path
    max_abs_diff: float

    def line(self) -> str:
        return (
            f"wrote {self.model} and {self.card}; max abs difference from PyTorch "
            f"{self.max_abs_diff:.3g}"
        )


def export_checkpoint(
    ckpt_path: str | Path, fmt: str, output: str | Path, tolerance: float = 1e-4
) -> Exported:
    """Writes the checkpoint's network as `fmt` to `output`, checks it and writes its model card."""
    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown format '{fmt}': choose {' or '.join(EXPORTERS)}")
    checkpoint = load_checkpoint(ckpt_path)
    image_size, _ = stored_input(checkpoint["fer_config"])
    net = trained_net(checkpoint)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write, load = EXPORTERS[fmt]
    write(net, torch.zeros(CHECK_BATCH_SIZES[0], 3, image_size, image_size), output)
    diff = max_abs_diff(net, load(output), image_size)
    if not diff <= tolerance:
        raise ConfigError(
            f"the {fmt} export {output} differs from the PyTorch model by {diff:.3g} "
            f"(> tolerance={tolerance:g}): the exporter changed what the model computes"
        )
    card = Path(f"{output}.json")
    card.write_text(json.dumps(model_card(checkpoint, fmt, output), indent=2) + "\n")
    return Exported(output, card, diff)


def max_abs_diff(net: nn.Module, run: Runner, image_size: int) -> float:
    """The largest |exported - PyTorch| over both outputs of random batches of two sizes."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in CHECK_BATCH_SIZES:
        # Normalised images are roughly standard normal per channel.
        x = torch.randn(batch, 3, image_size, image_size, generator=generator)
        with torch.inference_mode():
            expected = [t.numpy() for t in net(x)]
        for e, g in zip(expected, run(x.numpy()), strict=True):
            worst = max(worst, float(np.abs(e - g).max()))
    return worst


def model_card(checkpoint: dict[str, Any], fmt: str, output: Path) -> dict[str, Any]:
    """What feeding the exported model takes: input size, channel order, value range, statistics."""
    config = checkpoint["fer_config"]
    size, num_classes = stored_input(config)
    model = model_settings(config)
    return {
        "format": fmt,
        "file": output.name,
        "model": model["name"],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "color_order": "RGB",
            "image_size": size,
            "value_range": "pixels scaled to [0, 1] (uint8 / 255), then (x - mean) / std",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "face_crop": (
                f"face box enlarged by {DEFAULT_MARGIN:.0%} of its side on each side, made square "
                "(black padding outside the image), resized to image_size"
            ),
        },
        "outputs": {
            OUTPUT_NAMES[0]: {
                "shape": ["batch", num_classes],
                "meaning": "expression logits; softmax gives the probability of each code",
            },
            OUTPUT_NAMES[1]: {
                "shape": ["batch", 2],
                "meaning": "valence, arousal (in [-1, 1] when va_activation is tanh)",
                "va_activation": model.get("va_activation", "tanh"),
            },
        },
        "output_names": list(OUTPUT_NAMES),
        "class_names": {str(code): EXPRESSION_NAMES[code] for code in range(num_classes)},
    }


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    onnx = _optional("onnx")
    batch_axis = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    try:
        with warnings.catch_warnings():
            # The warning says the TorchScript-based exporter is legacy; it is chosen on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=batch_axis,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    except torch.onnx.OnnxExporterError as exc:
        # Its first sentence says what failed; the rest is a dump of the traced graph.
        reason = str(exc).split(".")[0]
        raise ConfigError(
            f"cannot export this model to ONNX ({reason}): use format=torchscript"
        ) from exc
    onnx.checker.check_model(str(path))


def _load_onnx(path: Path) -> Runner:
    session = _optional("onnxruntime").InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})


def _write_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    # Tracing records the operations run; the networks have no data-dependent branches.
    torch.jit.trace(net, example).save(str(path))


def _load_torchscript(path: Path) -> Runner:
    module = torch.jit.load(str(path), map_location="cpu")

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [t.numpy() for t in module(torch.from_numpy(x))]

    return run


def _optional(module: str) -> Any:
    """ONNX support is an extra, so its absence is a one-line fix, not a traceback."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"format=onnx needs the {module} package: pip install 'fer-lightning[export]'"
        ) from exc


# format -> (write the network to a file, load that file as a numpy-in, numpy-out runner)
EXPORTERS = {
    "onnx": (_write_onnx, _load_onnx),
    "torchscript": (_write_torchscript, _load_torchscript),
}
