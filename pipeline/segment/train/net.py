"""The network: a small 2-D U-Net on sagittal slices (PyTorch; training only, inference runs the ONNX export).

Four poolings give a receptive field of about 200 pixels (400 mm at 2 mm), enough to see the lumbosacral
junction and the pelvis when deciding which body is S1. Batch normalisation is folded into the convolutions by
the ONNX export; upsampling is bilinear (no transposed convolutions, no checkerboard artefacts).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """``(N, 1, H, W)`` normalised slices -> ``(N, n_classes, H, W)`` class probabilities (softmax).

    H and W must be multiples of ``2 ** len(channels[1:])`` (the inference pads).
    """

    def __init__(self, n_classes: int = 4, channels: tuple[int, ...] = (8, 16, 32, 64, 128)) -> None:
        super().__init__()
        self.channels = channels
        self.down = nn.ModuleList()
        cin = 1
        for c in channels:
            self.down.append(_block(cin, c))
            cin = c
        self.up = nn.ModuleList()
        for c_skip in reversed(channels[:-1]):
            self.up.append(_block(cin + c_skip, c_skip))
            cin = c_skip
        self.head = nn.Conv2d(cin, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.softmax(self.logits(x), dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
