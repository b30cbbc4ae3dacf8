"""T-Net, the original project's own small network, rebuilt layer for layer.

It fuses three scales: the outputs of the first two conv stages are average-pooled down to the third
stage's grid and concatenated with it, so the classifier sees edges and parts side by side. With its
two MLP heads (`registry.HEADS`: hidden 256, dropout 0.5) it has 423,498 parameters for 8 classes,
the figure in the original README.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_lightning.errors import ConfigError

# Four 2x max-pools: smaller inputs leave a 0x0 grid before the last pool.
MIN_IMAGE_SIZE = 16


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _pool_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """Adaptive average pooling along one axis as an [out, in] averaging matrix."""
    matrix = torch.zeros(out_size, in_size)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class AdaptiveAvgPoolAsMatmul(nn.Module):
    """Adaptive average pooling to `out_size` for inputs of `in_size`, computed as two matmuls.

    Equal to `nn.AdaptiveAvgPool2d`, but exportable to ONNX, whose exporter rejects adaptive pools
    whose output does not divide the input (T-Net's 14x14 -> 5x5 at 224 px). Other input sizes fall
    back to the adaptive pool.
    """

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        self.in_size, self.out_size = in_size, out_size
        self.register_buffer("matrix", _pool_matrix(in_size, out_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        traced = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not traced and (x.shape[-1] != self.in_size or x.shape[-2] != self.in_size):
            return F.adaptive_avg_pool2d(x, self.out_size)
        return self.matrix @ x @ self.matrix.T


class TNetFeatures(nn.Module):
    """T-Net without its heads: images [N,3,H,W] -> features [N,800]."""

    out_features = 32 * 5 * 5

    def __init__(self, image_size: int = 224) -> None:
        super().__init__()
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"tnet needs data.image_size >= {MIN_IMAGE_SIZE}, got {image_size}")
        self.stage1 = _stage(3, 4)
        self.stage2 = _stage(4, 8)
        self.stage3 = _stage(8, 16)
        self.fuse = _stage(4 + 8 + 16, 32)
        grid = image_size // 8  # the third stage's grid: 28x28 at 224 px
        self.to_grid = nn.ModuleList(
            [
                AdaptiveAvgPoolAsMatmul(image_size // 2, grid),
                AdaptiveAvgPoolAsMatmul(image_size // 4, grid),
            ]
        )
        # A fixed 5x5 grid keeps the head's 800 inputs at any image size (14x14 -> 5x5 at 224 px).
        self.pool = AdaptiveAvgPoolAsMatmul(grid // 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        fused = torch.cat([self.to_grid[0](s1), self.to_grid[1](s2), s3], dim=1)
        return torch.flatten(self.pool(self.fuse(fused)), 1)
