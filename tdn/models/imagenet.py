"""Initialising TDN and TSN backbones from ImageNet ResNet weights in a local file.

Accepted sources: torchvision ResNet state dicts (``conv1.weight``, ``bn1.*``, ``layer1.0.*`` ...,
``fc.*``) and the fbresnet layout the authors start from (the same names plus a bias on every
convolution; its classifier is ``last_linear``), optionally wrapped in ``'state_dict'`` /
``'model'`` or prefixed with ``module.``.

For TDN (docs/math.md §2.5, and what the authors' ``TDN_Net.__init__`` does):

* ``conv1, bn1, layer1..4`` -> ``conv1, bn1, layer1_bak..layer4_bak``;
* ``layer1`` also -> ``resnext_layer1`` (the difference path's own copy);
* ``conv1_5.0.weight`` = ``conv1.weight`` averaged over its 3 input channels, repeated 12 times
  (the batch norm after it starts fresh, as in the authors' code);
* convolution biases the source lacks are set to zero (a no-op, as a batch norm follows);
* L-TDM (``mse``), shift and ``new_fc`` keep their initialisation. The source's classifier is
  not used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..checkpoint_io import CheckpointError, read_state_dict, unwrap_state_dict

_SOURCE_CLASSIFIERS = ("fc.", "last_linear.")
_SHOWN = 6


@dataclass
class ImageNetReport:
    source: str
    copied: list[str] = field(default_factory=list)  # model keys filled from the source
    inflated: list[str] = field(default_factory=list)  # conv1_5.0.weight
    zero_bias: list[str] = field(default_factory=list)  # conv biases absent from the source
    fresh: list[str] = field(default_factory=list)  # model keys left at their initialisation
    unused: list[str] = field(default_factory=list)  # source keys not used

    def __str__(self) -> str:
        groups: dict[str, int] = {}
        for key in self.fresh:
            groups[_group(key)] = groups.get(_group(key), 0) + 1
        fresh = ", ".join(f"{name} ({n} tensors)" for name, n in sorted(groups.items()))
        lines = [f"ImageNet weights from {self.source}: copied {len(self.copied)} tensors"]
        if self.inflated:
            lines.append("  inflated conv1 -> " + ", ".join(self.inflated)
                         + " (mean over RGB, repeated to 12 channels)")
        if self.zero_bias:
            lines.append(f"  zero biases for {len(self.zero_bias)} convolutions the source has "
                         "none for")
        if fresh:
            lines.append(f"  left at initialisation: {fresh}")
        if self.unused:
            more = len(self.unused) - _SHOWN
            lines.append(f"  unused source tensors ({len(self.unused)}): "
                         + ", ".join(self.unused[:_SHOWN]) + (f", ... {more} more" if more > 0
                                                              else ""))
        return "\n".join(lines)


def _group(key: str) -> str:
    if ".mse." in key:
        return "L-TDM (mse)"
    if ".shift." in key:
        return "temporal shift"
    if key.startswith("new_fc."):
        return "classifier new_fc"
    if key.startswith("base_model.conv1_5.1."):
        return "conv1_5 batch norm"
    return key


def _source_key(model_key: str) -> str | None:
    """The ImageNet name for one of our ``base_model.*`` keys (None: no counterpart)."""
    if not model_key.startswith("base_model."):
        return None
    key = model_key[len("base_model."):]
    key = re.sub(r"^layer(\d)_bak\.", r"layer\1.", key)
    key = re.sub(r"^resnext_layer1\.", "layer1.", key)
    if ".mse." in key or ".shift." in key or key.startswith("conv1_5."):
        return None
    return key


def _strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def inflate_conv1(weight: torch.Tensor, frames: int = 4) -> torch.Tensor:
    """(64, 3, k, k) RGB kernel -> (64, 3*frames, k, k): channel mean repeated
    (docs/math.md §2.5)."""
    return weight.mean(dim=1, keepdim=True).expand(-1, 3 * frames, -1, -1).contiguous()


def load_imagenet_weights(model: nn.Module, path_or_state_dict,
                          source: str | None = None) -> ImageNetReport:
    """Initialise ``model``'s backbone (TDN or TSN) from ImageNet ResNet weights.

    Raises :class:`tdn.CheckpointError` when the source does not fit (another
    depth, missing tensors, wrong shapes), before changing anything.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = source or str(path_or_state_dict)
        raw, _ = read_state_dict(path_or_state_dict)
    else:
        source = source or "state dict"
        raw, _ = unwrap_state_dict(path_or_state_dict, source)
    src = _strip_module(raw)
    target = model.state_dict()
    report = ImageNetReport(source)
    new: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing, mismatched = [], []
    for key, current in target.items():
        if key == "base_model.conv1_5.0.weight":
            if "conv1.weight" not in src:
                missing.append("conv1.weight")
                continue
            new[key] = inflate_conv1(src["conv1.weight"], current.shape[1] // 3)
            report.inflated.append(key)
            used.add("conv1.weight")
            continue
        name = _source_key(key)
        if name is None:
            report.fresh.append(key)
        elif name in src:
            if tuple(src[name].shape) != tuple(current.shape):
                mismatched.append(f"{name} {list(src[name].shape)} vs {key} {list(current.shape)}")
                continue
            new[key] = src[name]
            report.copied.append(key)
            used.add(name)
        elif key.endswith(".bias") and src.get(name[:-len("bias")] + "weight",
                                               torch.empty(0)).dim() == 4:
            new[key] = torch.zeros_like(current)  # fbresnet conv bias, torchvision has none
            report.zero_bias.append(key)
        elif key.endswith(".num_batches_tracked"):
            report.fresh.append(key)  # older torchvision files predate this counter
        else:
            missing.append(name)
    report.unused = [k for k in src if k not in used]
    stray = [k for k in report.unused if not k.startswith(_SOURCE_CLASSIFIERS)]
    if missing or mismatched or stray:
        problems = [f"{what} ({len(keys)}): {', '.join(keys[:_SHOWN])}" for what, keys in (
            ("missing from the source", missing), ("shape mismatches", mismatched),
            ("source tensors with no place in the model", stray)) if keys]
        raise CheckpointError(
            f"{source} does not fit {getattr(model, 'arch', type(model).__name__)} as ImageNet "
            "ResNet weights (another depth?):\n  " + "\n  ".join(problems))
    model.load_state_dict(new, strict=False)
    return report
