"""Residual blocks: plain ResNet blocks and their TDN versions (docs/math.md §3).

Attribute names follow torchvision / the authors' fbresnet (``conv1, bn1, conv2, bn2, conv3,
bn3, downsample`` and, in TDN blocks, ``mse`` and ``shift``) so checkpoints map 1:1.
``conv_bias=True`` gives the fbresnet variant (a bias on every convolution) that TDN uses;
plain torchvision ResNets (the TSN baselines) have none.

A block with ``lean = True`` (set by :func:`tdn.models.lean.set_lean_training`) trains with the
same values but keeps fewer activations for the backward (tdn/models/lean.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift

from .lean import bn_relu_conv, strided_shortcut


def downsample(inplanes: int, outplanes: int, stride: int, conv_bias: bool) -> nn.Sequential:
    """The projection shortcut: 1x1 convolution (stride ``stride``) then batch norm."""
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=conv_bias),
        nn.BatchNorm2d(outplanes),
    )


class _ResidualBlock(nn.Module):
    """What BasicBlock and Bottleneck share: the shortcut, the temporal hook and the
    ``conv -> bn -> relu -> conv`` steps, lean or plain."""

    lean = False  # tdn.models.lean.set_lean_training switches it per block
    has_temporal = False  # True where temporal() is not the identity (TDN blocks)

    def temporal(self, out: torch.Tensor) -> torch.Tensor:
        """Hook for temporal modelling after the first convolution; identity here."""
        return out

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            return x
        return strided_shortcut(self.downsample, x) if self.lean else self.downsample(x)

    def _first_pair(self, x: torch.Tensor) -> torch.Tensor:
        """``conv2(temporal(relu(bn1(conv1(x)))))``."""
        z = self.conv1(x)
        if self.lean and not self.has_temporal:
            return bn_relu_conv(z, self.bn1, self.relu, self.conv2)
        return self.conv2(self.temporal(self.relu(self.bn1(z))))


class BasicBlock(_ResidualBlock):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self._shortcut(x)
        out = self.bn2(self._first_pair(x))
        return self.relu(out + identity)


class Bottleneck(_ResidualBlock):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self._shortcut(x)
        out = self._first_pair(x)
        if self.lean:
            out = bn_relu_conv(out, self.bn2, self.relu, self.conv3)
        else:
            out = self.conv3(self.relu(self.bn2(out)))
        return self.relu(self.bn3(out) + identity)


class _TemporalDifferenceMixin:
    """Adds L-TDM (``mse``) and the temporal shift (``shift``) after ``conv1 -> bn1 -> relu``."""

    has_temporal = True

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
