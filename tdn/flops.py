"""Counting multiply-accumulates (MACs) and parameters the way the TDN paper reports them.

Convention (it reproduces every number of docs/math.md §7 - 35.65 / 71.30 GMACs for
TDN-ResNet50 at T=8 / 16, 65.85 / 131.71 for ResNet-101, 4.09 per frame for TSN ResNet-50 -
while counting convolutions and the classifier alone gives 71.28 at T=16, and adding batch
norm, bias or ReLU terms overshoots every figure):

* convolutions (2-D, and the 1-D temporal shift): output elements x (in_channels/groups x
  kernel size); biases are not counted;
* fully connected layers: in_features x out_features per row;
* nearest upsampling (S-TDM lateral fusion, L-TDM multi-scale branch): 1 per output element;
* global average pooling: 1 per input element;
* nothing else: batch norm (it folds into the convolution for inference), activations,
  max / 2x2 average pooling, and the elementwise differences, sums and products count 0.

For the ops this network uses, this is fvcore's default accounting minus batch norm (likely
how the authors measured; their tool is not recorded). Counting happens at the
ATen level while the model runs (any device, including ``meta``, which makes it instant), and
the fused ``tdn_ops`` operators have their own formulas (:data:`FUSED_OP_MACS`) equal to what
their unfused reference would count, so a fused model counts exactly like the reference model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .models.factory import build_model

aten = torch.ops.aten

# The authors' TDN_Net also holds conv1_temp (Conv2d(3, 64, 7) with bias), never used in the
# forward; their published parameter counts include it. We do not build it.
AUTHORS_UNUSED_PARAMS = 64 * 3 * 7 * 7 + 64  # 9,472


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _conv(args, out) -> int:
    weight = args[1]
    return _numel(out) * math.prod(weight.shape[1:])


def _addmm(args, out) -> int:  # bias + a @ b
    a, b = args[1], args[2]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _mm(args, out) -> int:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(args, out) -> int:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _linear(args, out) -> int:
    weight = args[1]
    return _numel(out) * weight.shape[1]


def _spatial_mean(args, out) -> int:
    # Global average pooling (AdaptiveAvgPool2d(1) runs as mean over dims (-1, -2)). Other
    # means (the TSN consensus over segments) are not pooling and count 0.
    x = args[0]
    dims = args[1] if len(args) > 1 else None
    if dims is None or x.dim() < 3:
        return 0
    dims = {d % x.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    return _numel(x) if dims == {x.dim() - 2, x.dim() - 1} else 0


ATEN_MACS: dict[object, tuple[str, Callable]] = {
    aten.convolution: ("convolution", _conv),
    aten._convolution: ("convolution", _conv),
    aten.addmm: ("linear", _addmm),
    aten.mm: ("linear", _mm),
    aten.bmm: ("linear", _bmm),
    aten.linear: ("linear", _linear),
    aten.upsample_nearest2d: ("upsample", lambda args, out: _numel(out)),
    aten._adaptive_avg_pool2d: ("global pool", lambda args, out: _numel(args[0])),
    aten.adaptive_avg_pool2d: ("global pool", lambda args, out: _numel(args[0])),
    aten.mean: ("global pool", _spatial_mean),
}


def _mixture_macs(feat) -> dict[str, int]:
    nt, c, h, w = feat.shape
    small = 2 * nt * c * (h // 2) * (w // 2)
    return {"convolution": 9 * _numel(feat) + 9 * c * (small + 2 * _numel(feat)),
            "upsample": 2 * _numel(feat)}


# Fused operators: what their reference implementations count under the convention above.
FUSED_OP_MACS: dict[str, tuple[str, Callable]] = {
    # nearest upsampling of the pooled branch to diff's size
    "multiscale_sum": ("upsample", lambda args, out: _numel(args[0])),
    # nearest upsampling of d to x's size
    "lateral_fuse": ("upsample", lambda args, out: _numel(args[0])),
    # depthwise kernel-3 temporal convolution: 3 MACs per output element
    "temporal_shift_conv": ("convolution", lambda args, out: 3 * _numel(args[0])),
    "excite_shift": ("convolution", lambda args, out: 3 * _numel(args[0])),
    # 1x1 projection c -> C of both directions (mixed: (2, NT, c, H, W), weight: (C, c)), then
    # the kernel-3 shift
    "project_excite_shift": ("convolution", lambda args, out: (
        _numel(args[1]) * args[2].shape[0] + 3 * _numel(args[0]))),
    # the L-TDM mixture (feat: (NT, c, H, W)): conv2 (depthwise 3x3), the two 3x3 c -> c
    # branches of both directions (one at half size) and multiscale_sum's upsampling
    "ltdm_mixture": ("convolution", lambda args, out: _mixture_macs(args[0])),
    # differences, 2x2 average pools and sigmoid gates: 0 under the convention
    "temporal_diff_pool": ("other", lambda args, out: 0),
    "cross_segment_diff": ("other", lambda args, out: 0),
    "bidirectional_excitation": ("other", lambda args, out: 0),
}


def register_op_macs(op_name: str, category: str, formula: Callable) -> None:
    """Count ``torch.ops.tdn_ops.<op_name>`` with ``formula(args, output) -> MACs`` (or a dict
    of MACs by category)."""
    FUSED_OP_MACS[op_name] = (category, formula)


@dataclass
class MacCount:
    """The result of :func:`count_macs`."""

    total: int = 0
    by_category: Counter = field(default_factory=Counter)
    uncounted_custom_ops: set[str] = field(default_factory=set)

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v / 1e9:.4f}" for k, v in sorted(self.by_category.items()) if v)
        return f"{self.gmacs:.2f} GMACs ({parts})"


class _MacCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.result = MacCount()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        entry = ATEN_MACS.get(packet)
        if entry is None and func.namespace == "tdn_ops":
            name = packet.__name__
            entry = FUSED_OP_MACS.get(name)
            if entry is None and not name.endswith("_backward"):
                self.result.uncounted_custom_ops.add(name)
        if entry is not None:
            category, formula = entry
            first = out[0] if isinstance(out, (tuple, list)) else out
            macs = formula(args, first)
            # A formula may split its count over categories (an operator fusing several).
            for name, count in (macs.items() if isinstance(macs, dict) else [(category, macs)]):
                self.result.total += int(count)
                self.result.by_category[name] += int(count)
        return out


def count_macs(model: nn.Module, x: torch.Tensor) -> MacCount:
    """MACs of one forward of ``model`` on ``x`` (eval mode, no grad), per the convention above.

    ``x`` may live on the ``meta`` device (with the model) to count without computing.
    """
    was_training = model.training
    model.eval()
    counter = _MacCounter()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    if counter.result.uncounted_custom_ops:
        raise RuntimeError("no MAC formula for tdn_ops operator(s) "
                           f"{sorted(counter.result.uncounted_custom_ops)}: add one with "
                           "tdn.flops.register_op_macs")
    return counter.result


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class ModelCost:
    arch: str
    num_segments: int
    size: int
    num_classes: int
    macs: MacCount
    params: int
    authors_params: int | None  # what the authors' implementation reports (with conv1_temp)

    @property
    def macs_per_segment(self) -> float:
        return self.macs.total / self.num_segments


def measure(arch: str, num_segments: int = 8, size: int = 224, num_classes: int = 174,
            batch: int = 1) -> ModelCost:
    """Cost of one clip (``batch`` clips) of ``arch`` at ``size`` x ``size``, on the meta device."""
    with torch.device("meta"):
        model = build_model(arch, num_classes=num_classes, num_segments=num_segments)
        clip = torch.empty(batch, num_segments * 15, size, size)
    macs = count_macs(model, clip)
    params = count_params(model)
    authors = params + AUTHORS_UNUSED_PARAMS if arch.startswith("tdn_") else None
    return ModelCost(arch, num_segments, size, num_classes, macs, params, authors)


def baseline_arch(arch: str) -> str | None:
    """The TSN baseline with the same backbone (``tdn_resnet50`` -> ``tsn_resnet50``)."""
    return "tsn_" + arch[len("tdn_"):] if arch.startswith("tdn_") else None
