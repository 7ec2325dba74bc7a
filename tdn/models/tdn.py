"""The Temporal Difference Network (docs/math.md §2-3) on ResNet-18/34/50/101.

Module names reproduce the authors' ``TSN(TDN_Net)`` wrapper so their checkpoints map 1:1:
``TDN.base_model`` is their ``TDN_Net`` (``conv1, bn1, conv1_5, resnext_layer1, layer1_bak ..
layer4_bak``, ``fc`` = dropout) and ``TDN.new_fc`` the classifier. The authors' ``conv1_temp``
(a copy of ``conv1`` that is never used in the forward) is not built; checkpoint loading skips it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from tdn_ops.nn import FrameDifferencePool, LateralFusion

from .clips import SNIPPET_CHANNELS, centre_frames, segment_consensus, snippets
from .head import check_head_args, new_classifier
from .lean import bn_relu_max_pool, set_lean_training
from .registry import register_model
from .resnet import (RESNETS, STAGE_PLANES, STAGE_STRIDES, ResNetSpec, init_weights, make_stage,
                     stem_max_pool)

# Smallest frame size at which every L-TDM still sees at least 2x2 features (layer4 is H/32,
# rounded up) so its 2x2 pooling branch is defined.
MIN_FRAME_SIZE = 33


def default_fusion_weights(num_segments: int) -> tuple[float, float]:
    """(alpha, beta) of the S-TDM lateral connections, as the authors chose them
    (docs/math.md §2.4)."""
    return (0.5, 0.5) if num_segments == 8 else (0.75, 0.25)


class TDNBackbone(nn.Module):
    """The authors' ``TDN_Net``: S-TDM stem + fbresnet with TDN blocks in layers 2-4.

    Input (N*T, 15, H, W) snippets; output (N*T, feature_dim) pooled features after dropout.
    """

    lean = False  # lean training (tdn/models/lean.py): on unless the backend is "reference"

    def __init__(self, spec: ResNetSpec, num_segments: int, alpha: float, beta: float,
                 dropout: float, backend: str | None) -> None:
        super().__init__()
        self.num_segments = num_segments
        # RGB stem on the centre frame (fbresnet: conv1 has a bias).
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # The authors' max pool on the reference path; the faster, exact one otherwise.
        self.maxpool = stem_max_pool(authors=backend == "reference")
        # S-TDM: frame differences -> conv1_5 stem -> its own copy of layer1.
        self.frame_diff = FrameDifferencePool(frames=5, kernel_size=2, backend=backend)
        self.conv1_5 = nn.Sequential(
            nn.Conv2d(12, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.maxpool_diff = stem_max_pool(authors=backend == "reference")
        self.fuse = LateralFusion(alpha, beta, backend=backend)

        stages = []
        inplanes = 64
        for index, (planes, stride, count) in enumerate(
                zip(STAGE_PLANES, STAGE_STRIDES, spec.blocks_per_stage)):
            if index == 0:  # layer1 keeps plain blocks
                stage = make_stage(spec.plain_block, inplanes, planes, count, stride, True)
            else:
                stage = make_stage(spec.tdn_block, inplanes, planes, count, stride, True,
                                   num_segments=num_segments, backend=backend)
            stages.append(stage)
            inplanes = planes * spec.expansion
        self.layer1_bak, self.layer2_bak, self.layer3_bak, self.layer4_bak = stages
        self.resnext_layer1 = copy.deepcopy(self.layer1_bak)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Dropout(p=dropout)  # the authors replace ResNet's fc with dropout
        init_weights(self)
        set_lean_training(self, backend != "reference")

    # Readable aliases (not registered twice, so the state dict keeps the authors' names).
    @property
    def layer1(self) -> nn.Sequential:
        return self.layer1_bak

    @property
    def layer2(self) -> nn.Sequential:
        return self.layer2_bak

    @property
    def layer3(self) -> nn.Sequential:
        return self.layer3_bak

    @property
    def layer4(self) -> nn.Sequential:
        return self.layer4_bak

    def forward(self, snips: torch.Tensor) -> torch.Tensor:
        # Short-term motion: (NT, 15, H, W) -> (NT, 12, H/2, W/2) -> d1 (H/8) -> d2.
        diff = self.frame_diff(snips)
        if self.lean:
            conv, bn, relu = self.conv1_5
            d1 = bn_relu_max_pool(conv(diff), bn, relu, self.maxpool_diff)
        else:
            d1 = self.maxpool_diff(self.conv1_5(diff))
        d2 = self.resnext_layer1(d1)
        # Appearance on the centre frame, fused with the motion features twice.
        z = self.conv1(centre_frames(snips))
        if self.lean:
            x = bn_relu_max_pool(z, self.bn1, self.relu, self.maxpool)
        else:
            x = self.maxpool(self.relu(self.bn1(z)))
        x = self.fuse(x, d1)
        x = self.layer1_bak(x)
        x = self.fuse(x, d2)
        x = self.layer4_bak(self.layer3_bak(self.layer2_bak(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TDN(nn.Module):
    """TDN video classifier: ``(N, T*15, H, W)`` or ``(N, T, 5, 3, H, W)`` -> ``(N, K)`` logits.

    Each segment is classified by ``new_fc`` on the backbone's features and the T segment
    logits are averaged (TSN consensus). Build it with :func:`tdn.build_model`.
    """

    def __init__(self, depth: int = 50, num_classes: int = 174, num_segments: int = 8,
                 backend: str | None = None, dropout: float = 0.5,
                 alpha: float | None = None, beta: float | None = None) -> None:
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"depth must be one of {sorted(RESNETS)}, got {depth}")
        check_head_args(num_classes, num_segments, dropout)
        default_alpha, default_beta = default_fusion_weights(num_segments)
        self.arch = f"tdn_resnet{depth}"
        self.num_segments = num_segments
        self.num_classes = num_classes
        self.alpha = default_alpha if alpha is None else float(alpha)
        self.beta = default_beta if beta is None else float(beta)
        spec = RESNETS[depth]
        self.base_model = TDNBackbone(spec, num_segments, self.alpha, self.beta, dropout, backend)
        self.new_fc = new_classifier(spec.feature_dim, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.new_fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        snips = snippets(x, self.num_segments)
        check_frame_size(snips, MIN_FRAME_SIZE)
        logits = self.new_fc(self.base_model(snips))
        return segment_consensus(logits, self.num_segments)


def check_frame_size(snips: torch.Tensor, minimum: int) -> None:
    h, w = snips.shape[-2:]
    if h < minimum or w < minimum:
        raise ValueError(f"frames of {h}x{w} are too small: this model needs at least "
                         f"{minimum}x{minimum} (224x224 is standard)")


def _tdn(depth: int, num_classes: int, num_segments: int, backend: str | None, dropout: float,
         alpha: float | None, beta: float | None) -> TDN:
    return TDN(depth, num_classes, num_segments, backend, dropout, alpha, beta)


@register_model
def tdn_resnet18(**kwargs) -> TDN:
    return _tdn(18, **kwargs)


@register_model
def tdn_resnet34(**kwargs) -> TDN:
    return _tdn(34, **kwargs)


@register_model
def tdn_resnet50(**kwargs) -> TDN:
    return _tdn(50, **kwargs)


@register_model
def tdn_resnet101(**kwargs) -> TDN:
    return _tdn(101, **kwargs)


__all__ = ["TDN", "TDNBackbone", "default_fusion_weights", "SNIPPET_CHANNELS"]
