"""MTCNN's three networks (Zhang et al. 2016) and where their trained weights come from.

The weights are the state dicts that facenet-pytorch's wheel ships (MIT licence,
`facenet_pytorch/data/{pnet,rnet,onet}.pt`, 2 MB). They are found through the installed
distribution's file list, never by importing the package: facenet-pytorch pins an old torch, so it
is installed with `pip install --no-deps facenet-pytorch==2.6.0` (`make install` does) and its own
code is never run. `detector.weights=DIR` names a folder holding the same three files instead.
Files are read with `torch.load(weights_only=True)`: tensors only, no pickled code.
docs/face-detection.md compares this detector with the others considered.
"""

from __future__ import annotations

import importlib.metadata
import pickle
from pathlib import Path

import torch
from torch import nn

from fer_lightning.errors import ConfigError

DISTRIBUTION = "facenet-pytorch"
WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0, or pass detector.weights=DIR"


def _conv(cin: int, cout: int, kernel: int, index: int) -> dict[str, nn.Module]:
    return {f"conv{index}": nn.Conv2d(cin, cout, kernel), f"prelu{index}": nn.PReLU(cout)}


def _pool(kernel: int, index: int) -> dict[str, nn.Module]:
    return {f"pool{index}": nn.MaxPool2d(kernel, 2, ceil_mode=True)}


class PNet(nn.Module):
    """The proposal network: fully convolutional, a face score and box offsets per 12-px cell."""

    def __init__(self) -> None:
        super().__init__()
        layers = {**_conv(3, 10, 3, 1), **_pool(2, 1), **_conv(10, 16, 3, 2), **_conv(16, 32, 3, 3)}
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in ("conv1", "prelu1", "pool1", "conv2", "prelu2", "conv3", "prelu3"):
            x = getattr(self, name)(x)
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)


class _Refiner(nn.Module):
    """RNet (24-px input) and ONet (48-px input, with five landmarks): convolutions, then dense."""

    def __init__(self, convs: dict[str, nn.Module], flat: int, hidden: int, dense: int) -> None:
        super().__init__()
        for name, layer in convs.items():
            self.add_module(name, layer)
        self._convs = tuple(convs)
        self._dense = dense
        setattr(self, f"dense{dense}", nn.Linear(flat, hidden))
        setattr(self, f"prelu{dense}", nn.PReLU(hidden))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._convs:
            x = getattr(self, name)(x)
        # The weights were converted from Caffe, which flattens in (width, height, channel) order.
        x = x.permute(0, 3, 2, 1).flatten(1)
        return getattr(self, f"prelu{self._dense}")(getattr(self, f"dense{self._dense}")(x))


class RNet(_Refiner):
    def __init__(self) -> None:
        convs = {**_conv(3, 28, 3, 1), **_pool(3, 1), **_conv(28, 48, 3, 2), **_pool(3, 2)}
        super().__init__({**convs, **_conv(48, 64, 2, 3)}, flat=576, hidden=128, dense=4)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)


class ONet(_Refiner):
    def __init__(self) -> None:
        convs = {**_conv(3, 32, 3, 1), **_pool(3, 1), **_conv(32, 64, 3, 2), **_pool(3, 2)}
        convs |= {**_conv(64, 64, 3, 3), **_pool(2, 3), **_conv(64, 128, 2, 4)}
        super().__init__(convs, flat=1152, hidden=256, dense=5)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Box offsets [N, 4], landmarks [N, 10] (five x then five y, in box fractions), scores."""
        x = self.features(x)
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)


def installed_weights() -> Path | None:
    """The folder of the weight files facenet-pytorch's wheel installed, or None without it."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("facenet_pytorch/data")))
    return folder if all((folder / name).is_file() for name in WEIGHT_FILES) else None


def load_nets(weights: str | Path | None) -> tuple[PNet, RNet, ONet]:
    """The three networks in eval mode, from `weights` (a folder) or the installed wheel."""
    folder = Path(weights) if weights is not None else installed_weights()
    if folder is None:
        raise ConfigError(f"MTCNN's weights are not installed: {INSTALL_HINT}")
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, WEIGHT_FILES, strict=True):
        path = folder / name
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (
            OSError,
            EOFError,
            RuntimeError,
            KeyError,
            TypeError,
            pickle.UnpicklingError,
        ) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"cannot load MTCNN weights {path} ({first}): detector.weights must be a folder "
                f"holding {', '.join(WEIGHT_FILES)} as facenet-pytorch ships them"
            ) from None
        net.eval().requires_grad_(False)
    return nets
