"""Residual blocks: plain ResNet blocks and their TDN versions (docs/math.md §3).

Attribute names follow torchvision / the authors' fbresnet (``conv1, bn1, conv2, bn2, conv3,
bn3, downsample`` and, in TDN blocks, ``mse`` and ``shift``) so checkpoints map 1:1.
``conv_bias=True`` gives the fbresnet variant (a bias on every convolution) that TDN uses;
plain torchvision ResNets (the TSN baselines) have none.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift


def downsample(inplanes: int, outplanes: int, stride: int, conv_bias: bool) -> nn.Sequential:
    """The projection shortcut: 1x1 convolution (stride ``stride``) then batch norm."""
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=conv_bias),
        nn.BatchNorm2d(outplanes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34); the stride lives in ``conv1``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, conv_bias: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def temporal(self, out: torch.Tensor) -> torch.Tensor:
        """Hook for temporal modelling after the first convolution; identity here."""
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.temporal(out)
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck (ResNet-50/101); the stride lives in ``conv2``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, conv_bias: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=conv_bias)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def temporal(self, out: torch.Tensor) -> torch.Tensor:
        """Hook for temporal modelling after the first convolution; identity here."""
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.temporal(out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _TemporalDifferenceMixin:
    """Adds L-TDM (``mse``) and the temporal shift (``shift``) after ``conv1 -> bn1 -> relu``."""

    def _add_tdm(self, planes: int, num_segments: int, backend: str | None) -> None:
        self.mse = LongTermTDM(planes, num_segments, backend=backend)
        self.shift = TemporalShift(planes, num_segments, backend=backend)

    def temporal(self, out: torch.Tensor) -> torch.Tensor:
        return long_term_tdm_shift(self.mse, self.shift, out)


class TDNBottleneck(_TemporalDifferenceMixin, Bottleneck):
    """``relu(bn1(conv1))`` -> L-TDM -> shift -> ``relu(bn2(conv2))`` -> ``bn3(conv3)``
    (docs/math.md §3)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, conv_bias: bool = True, *,
                 num_segments: int = 8, backend: str | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample, conv_bias)
        self._add_tdm(planes, num_segments, backend)


class TDNBasicBlock(_TemporalDifferenceMixin, BasicBlock):
    """ResNet-18/34 TDN block: L-TDM and shift after ``relu(bn1(conv1(x)))``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, conv_bias: bool = True, *,
                 num_segments: int = 8, backend: str | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample, conv_bias)
        self._add_tdm(planes, num_segments, backend)
