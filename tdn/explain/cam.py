"""Grad-CAM and Grad-CAM++ for video models that see a clip as N*T images.

TDN and TSN run their 2-D backbone on all N*T segments of a batch at once, so a layer's
activations are (N*T, C, h, w) while the logits are (N, K): the T segment-level maps of video
n are rows n*T .. n*T+T-1. One backward pass of the chosen class scores (summed over the
videos, whose scores do not depend on each other in eval mode) gives every segment's gradient;
the maps are then folded back into (N, T, h, w).

The ``grad-cam`` package computes the same maps for 4-D activations, but it assumes one map
per input image and min-max normalises each map on its own, which would hide how much
more one segment matters than another; it also pulls in torchvision, OpenCV and scikit-learn.
The two methods are a few tensor operations, written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ("gradcam", "gradcam++")


@dataclass
class CamResult:
    """Heat maps of a batch of clips for one class per clip."""

    cams: torch.Tensor  # (N, T, H, W) in [0, 1], normalised per clip, at the input's size
    logits: torch.Tensor  # (N, K)
    classes: torch.Tensor  # (N,) the class each clip's maps explain
    layer: str
    method: str


def default_layer(model: nn.Module) -> str:
    """The name of the last block of the backbone's fourth stage."""
    backbone = getattr(model, "base_model", None)
    stage = getattr(backbone, "layer4", None)
    if not isinstance(stage, nn.Sequential) or len(stage) == 0:
        raise ValueError("cannot find the last block of layer 4 in this model; pass layer=NAME "
                         "(a name from model.named_modules())")
    block = stage[-1]
    for name, module in model.named_modules():
        if module is block:
            return name
    raise AssertionError("the last layer-4 block is not a submodule of the model")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        stages = [n for n in modules if n.count(".") <= 2 and "layer" in n][:12]
        raise ValueError(f"layer {name!r} is not a submodule of the model; names look like "
                         f"{', '.join(stages)} (see model.named_modules())")
    return modules[name]


class _Recorder:
    """Keeps a layer's output and the gradient that reaches it."""

    def __init__(self, layer: nn.Module, name: str) -> None:
        self.name = name
        self.activation: torch.Tensor | None = None
        self.gradient: torch.Tensor | None = None
        self._handle = layer.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ValueError(f"layer {self.name!r} must output (N*T, C, h, w) feature maps, "
                             f"got {shape}")
        # A copy: a later in-place op (a ReLU, a residual add) may overwrite the output.
        self.activation = output.detach().clone()
        output.register_hook(self._backward)

    def _backward(self, gradient: torch.Tensor) -> None:
        self.gradient = gradient

    def remove(self) -> None:
        self._handle.remove()


def channel_weights(activation: torch.Tensor, gradient: torch.Tensor, method: str) -> torch.Tensor:
    """(B, C) weights of the activation channels for (B, C, h, w) activations and gradients.

    Grad-CAM: the spatial mean of the gradient. Grad-CAM++: the positive gradients weighted per
    pixel by ``g^2 / (2 g^2 + sum(A) g^3)``, the closed form for a class score passed through
    an exponential (Chattopadhay et al., 2018).
    """
    if method == "gradcam":
        return gradient.mean(dim=(2, 3))
    squared = gradient.pow(2)
    denominator = 2 * squared + activation.sum(dim=(2, 3), keepdim=True) * gradient.pow(3)
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(gradient != 0, squared / safe, torch.zeros_like(gradient))
    return (alpha * gradient.clamp(min=0)).sum(dim=(2, 3))


def _fold(maps: torch.Tensor, num_segments: int) -> torch.Tensor:
    return maps.reshape((-1, num_segments) + maps.shape[1:])


def class_activation_maps(model: nn.Module, clips: torch.Tensor,
                          classes: Sequence[int] | int | None = None, layer: str | None = None,
                          method: str = "gradcam") -> CamResult:
    """Heat maps of where ``model`` looks in ``clips`` (N, T*15, H, W) for a class per clip.

    ``classes``: one index for all clips, one per clip, or None for each clip's top class.
    ``layer``: a name from ``model.named_modules()`` (default :func:`default_layer`).
    Each clip's T maps share one scale (divided by the clip's largest value), so a segment's
    map shows how much it matters next to the others.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if clips.dim() != 4:
        raise ValueError(f"clips must be (N, T*15, H, W), got shape {tuple(clips.shape)}")
    layer = layer or default_layer(model)
    recorder = _Recorder(find_layer(model, layer), layer)
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(clips)
            chosen = _choose_classes(classes, logits)
            model.zero_grad(set_to_none=True)
            logits.gather(1, chosen[:, None]).sum().backward()
    finally:
        recorder.remove()
    if recorder.activation is None or recorder.gradient is None:
        raise ValueError(f"layer {layer!r} did not take part in computing the logits")
    activation, gradient = recorder.activation, recorder.gradient.detach()
    weights = channel_weights(activation, gradient, method)
    maps = F.relu((weights[:, :, None, None] * activation).sum(dim=1))  # (N*T, h, w)
    maps = F.interpolate(maps[:, None], size=clips.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]
    cams = _fold(maps, model.num_segments)
    peak = cams.amax(dim=(1, 2, 3), keepdim=True)
    cams = cams / torch.where(peak > 0, peak, torch.ones_like(peak))
    return CamResult(cams, logits.detach(), chosen, layer, method)


def _choose_classes(classes, logits: torch.Tensor) -> torch.Tensor:
    n, k = logits.shape
    if classes is None:
        return logits.argmax(dim=1)
    chosen = torch.as_tensor([classes] * n if isinstance(classes, int) else list(classes),
                             dtype=torch.long)
    if chosen.shape != (n,):
        raise ValueError(f"classes must be one index or {n} indices (one per clip), got "
                         f"{list(chosen.tolist())}")
    if bool(((chosen < 0) | (chosen >= k)).any()):
        raise ValueError(f"class indices must be in [0, {k}), got {chosen.tolist()}")
    return chosen
