"""Plain TSN baselines: an ImageNet ResNet on the centre frame of each snippet.

They take exactly TDN's input (``(N, T*15, H, W)`` or ``(N, T, 5, 3, H, W)``) and average the
segment logits the same way, so TDN-vs-TSN comparisons (benchmarks, the synthetic experiment)
change only the temporal modelling. The backbone is torchvision's ResNet (no convolution
biases), held as ``base_model`` with ``fc`` replaced by dropout, and ``new_fc`` the classifier:
the layout of the TSN/TSM code bases, so torchvision ImageNet weights load directly.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .clips import centre_frames, segment_consensus, snippets
from .head import check_head_args, new_classifier
from .lean import bn_relu_max_pool, set_lean_training
from .registry import register_model
from .resnet import (RESNETS, STAGE_PLANES, STAGE_STRIDES, ResNetSpec, init_weights, make_stage,
                     stem_max_pool)


class ResNetBackbone(nn.Module):
    """torchvision-layout ResNet trunk: (B, 3, H, W) -> (B, feature_dim) after dropout."""

    lean = False  # lean training (tdn/models/lean.py), switched on in __init__

    def __init__(self, spec: ResNetSpec, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = stem_max_pool()
        stages = []
        inplanes = 64
        for planes, stride, count in zip(STAGE_PLANES, STAGE_STRIDES, spec.blocks_per_stage):
            stages.append(make_stage(spec.plain_block, inplanes, planes, count, stride, False))
            inplanes = planes * spec.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Dropout(p=dropout)
        init_weights(self)
        set_lean_training(self)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        z = self.conv1(frames)
        if self.lean:
            x = bn_relu_max_pool(z, self.bn1, self.relu, self.maxpool)
        else:
            x = self.maxpool(self.relu(self.bn1(z)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TSN(nn.Module):
    """TSN classifier on the centre frame of each 5-frame snippet: ``(N, T*15, H, W)`` -> (N, K)."""

    def __init__(self, depth: int = 50, num_classes: int = 174, num_segments: int = 8,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"depth must be one of {sorted(RESNETS)}, got {depth}")
        check_head_args(num_classes, num_segments, dropout)
        self.arch = f"tsn_resnet{depth}"
        self.num_segments = num_segments
        self.num_classes = num_classes
        spec = RESNETS[depth]
        self.base_model = ResNetBackbone(spec, dropout)
        self.new_fc = new_classifier(spec.feature_dim, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.new_fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = centre_frames(snippets(x, self.num_segments))
        logits = self.new_fc(self.base_model(frames))
        return segment_consensus(logits, self.num_segments)


def _tsn(depth: int, num_classes: int, num_segments: int, backend: str | None, dropout: float,
         alpha: float | None, beta: float | None) -> TSN:
    if alpha is not None or beta is not None:
        raise ValueError("alpha and beta weight TDN's S-TDM fusion; TSN models have none")
    # TSN has no temporal operators, so there is nothing for `backend` to choose.
    return TSN(depth, num_classes, num_segments, dropout)


@register_model
def tsn_resnet18(**kwargs) -> TSN:
    return _tsn(18, **kwargs)


@register_model
def tsn_resnet34(**kwargs) -> TSN:
    return _tsn(34, **kwargs)


@register_model
def tsn_resnet50(**kwargs) -> TSN:
    return _tsn(50, **kwargs)


@register_model
def tsn_resnet101(**kwargs) -> TSN:
    return _tsn(101, **kwargs)
