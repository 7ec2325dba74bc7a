"""ResNet depths and stage construction shared by the TDN and TSN models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .blocks import BasicBlock, Bottleneck, TDNBasicBlock, TDNBottleneck, downsample


class StemMaxPool(nn.MaxPool2d):
    """The stem's ``MaxPool2d(3, stride=2, padding=1)``, pooling contiguous CPU maps in
    channels_last at inference.

    PyTorch's CPU max pooling is an order of magnitude slower on contiguous maps than on
    channels_last ones (20.4 ms against 1.7 ms for a (8, 64, 112, 112) map on the 2-core
    benchmark machine, 5.7 ms with both layout conversions). A maximum is exact, so values and
    gradients are the same; the output keeps the input's layout. The ``reference`` TDN model
    keeps the authors' plain ``nn.MaxPool2d``.
    """

    def __init__(self) -> None:
        super().__init__(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference only: with autograd on, the converted copy would be kept for the backward
        # and raise the training step's peak memory (in training, the lean stems pool in
        # channels_last keeping only the indices: tdn.models.lean.bn_relu_max_pool).
        if (x.device.type == "cpu" and not torch.is_grad_enabled() and x.dim() == 4
                and x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)):
            pooled = super().forward(x.contiguous(memory_format=torch.channels_last))
            return pooled.contiguous()
        return super().forward(x)


def stem_max_pool(authors: bool = False) -> nn.MaxPool2d:
    """The stem's 3x3/2 max pool: the authors' ``nn.MaxPool2d``, or :class:`StemMaxPool`."""
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if authors else StemMaxPool()


@dataclass(frozen=True)
class ResNetSpec:
    depth: int
    plain_block: type[nn.Module]
    tdn_block: type[nn.Module]
    blocks_per_stage: tuple[int, int, int, int]

    @property
    def expansion(self) -> int:
        return self.plain_block.expansion

    @property
    def feature_dim(self) -> int:
        return 512 * self.expansion


RESNETS: dict[int, ResNetSpec] = {
    18: ResNetSpec(18, BasicBlock, TDNBasicBlock, (2, 2, 2, 2)),
    34: ResNetSpec(34, BasicBlock, TDNBasicBlock, (3, 4, 6, 3)),
    50: ResNetSpec(50, Bottleneck, TDNBottleneck, (3, 4, 6, 3)),
    101: ResNetSpec(101, Bottleneck, TDNBottleneck, (3, 4, 23, 3)),
}

STAGE_PLANES = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def make_stage(block: type[nn.Module], inplanes: int, planes: int, num_blocks: int, stride: int,
               conv_bias: bool, **block_kwargs) -> nn.Sequential:
    """One ResNet stage; the first block changes resolution/width and gets the projection."""
    outplanes = planes * block.expansion
    proj = None
    if stride != 1 or inplanes != outplanes:
        proj = downsample(inplanes, outplanes, stride, conv_bias)
    blocks = [block(inplanes, planes, stride, proj, conv_bias, **block_kwargs)]
    blocks += [block(outplanes, planes, 1, None, conv_bias, **block_kwargs)
               for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (He-normal convs, unit BN); biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
