"""CPU inference on oneDNN's own terms: reordered weights, ReLU and residual adds inside the
convolutions.

PyTorch's eager ``nn.Conv2d`` hands oneDNN (mkldnn) a plain weight on every call, which oneDNN
reorders into its blocked layout each time, and every ReLU and residual add after a
convolution is one more pass over the feature map. For inference both costs go away:

* the weight is reordered once per input shape (``torch.ops.mkldnn._reorder_convolution_weight``)
  and kept beside the parameter (never in the state dict);
* a convolution followed by a ReLU, or by ``relu(conv(x) + identity)`` as at the end of every
  residual block, runs as one oneDNN primitive with that post-op
  (``torch.ops.mkldnn._convolution_pointwise``).

Measured on the 2-core benchmark machine (8 frames, float32, single layers): 1.3-2x faster
per convolution, the same values as ``relu(conv(x))`` bitwise in channels_last and to float
rounding otherwise. oneDNN writes channels_last outputs, so after the first convolution the
whole network runs in channels_last.

:func:`pack_for_cpu_inference` applies this to a TDN or TSN model after folding its batch norms
(:func:`tdn.fold_batch_norm`): every ``nn.Conv2d`` becomes a :class:`PackedConv2d`, every ResNet
block a packed version of its class, the S-TDM stem's ``conv, bn, relu`` one fused
convolution. The state dict keeps its keys and values. The packed path runs only where it can:
CPU float32 tensors without autograd, outside ``torch.compile``, tracing and ONNX export;
everywhere else the same modules compute the same function with plain PyTorch operators, so a
packed model still exports, compiles and runs on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import BasicBlock, Bottleneck
from .fold import FoldedBatchNorm, fold_batch_norm

__all__ = ["PackedConv2d", "pack_for_cpu_inference", "packed_path_available"]


def packed_path_available(x: torch.Tensor) -> bool:
    """True when a call on ``x`` can take oneDNN's fused, reordered-weight path."""
    # Under torch.compile first, as a constant: Dynamo then never traces the checks below
    # (some of which it cannot trace), so a packed model compiles to one graph.
    if torch.compiler.is_compiling():
        return False
    # Not under autocast either: the oneDNN operators are not on autocast's lists, so they
    # would silently run in float32 where the user asked for bfloat16.
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and torch.backends.mkldnn.is_available()
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export())


class PackedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state dict) whose CPU inference runs on a weight
    reordered once for oneDNN, optionally with its following ReLU (``activation="relu"``).

    :meth:`fused` also takes a residual ``add``: ``relu(conv(x) + add)`` in one primitive.
    """

    activation: str | None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: str | None = None) -> PackedConv2d:
        """A PackedConv2d sharing ``conv``'s parameters, buffers and hooks."""
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        packed = cls.__new__(cls)
        packed.__dict__.update(conv.__dict__)
        packed.activation = activation
        packed._packed = None  # (key, reordered weight)
        return packed

    def __getstate__(self):
        # The reordered weight is an opaque oneDNN tensor (no storage): copies and pickles
        # leave it behind and reorder again on first use.
        state = dict(self.__dict__)
        state["_packed"] = None
        return state

    def _packable(self) -> bool:
        return self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        # Reordered for this input shape; redone when the shape or the weight changes (an
        # in-place edit bumps the weight's version), so it never goes stale.
        key = (tuple(x.shape), self.weight._version, self.weight.data_ptr())
        if self._packed is None or self._packed[0] != key:
            reordered = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.detach(), list(self.padding), list(self.stride),
                list(self.dilation), self.groups, list(x.shape))
            self._packed = (key, reordered)
        return self._packed[1]

    def fused(self, x: torch.Tensor, relu: bool = False,
              add: torch.Tensor | None = None) -> torch.Tensor:
        """``conv(x)``, plus ``add`` when given, then ReLU when ``relu`` (or when this module's
        ``activation`` is "relu")."""
        relu = relu or self.activation == "relu"
        if packed_path_available(x) and self._packable():
            weight, bias = self._packed_weight(x), self.bias
            args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
            if add is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, weight, bias, *args, "relu" if relu else "none", [], "")
            if add.shape == (x.shape[0], self.out_channels) + add.shape[2:]:
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, add, weight, bias, *args, "add", 1.0, "relu" if relu else None, [], "")
        out = super().forward(x)
        if add is not None:
            out = out + add
        return F.relu(out) if relu else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (f", activation={self.activation!r}" if self.activation else "")


class _PackedBlock:
    """Forward of a packed ResNet block: ``conv -> relu`` pairs and the final
    ``relu(conv(out) + identity)`` as fused convolutions; the block's own forward otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not packed_path_available(x):
            return super().forward(x)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1.fused(x, relu=True)
        out = self.temporal(out)
        if isinstance(self, Bottleneck):
            out = self.conv2.fused(out, relu=True)
            return self.conv3.fused(out, relu=True, add=identity)
        return self.conv2.fused(out, relu=True, add=identity)


_PACKED_CLASSES: dict[type, type] = {}


def _packed_class(cls: type) -> type:
    """``cls`` (a BasicBlock or Bottleneck subclass, TDN blocks included) with the packed
    forward, made once per class."""
    if cls not in _PACKED_CLASSES:
        _PACKED_CLASSES[cls] = type("Packed" + cls.__name__, (_PackedBlock, cls),
                                    {"__module__": __name__})
    return _PACKED_CLASSES[cls]


def _block_is_folded(block: nn.Module) -> bool:
    names = ("bn1", "bn2", "bn3") if isinstance(block, Bottleneck) else ("bn1", "bn2")
    return all(isinstance(getattr(block, n), FoldedBatchNorm) for n in names)


def _pack_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            setattr(module, name, PackedConv2d.from_conv(child))
        elif isinstance(child, (BasicBlock, Bottleneck)) and not isinstance(child, _PackedBlock) \
                and _block_is_folded(child):
            packed = _packed_class(type(child)).__new__(_packed_class(type(child)))
            packed.__dict__.update(child.__dict__)
            setattr(module, name, packed)
    if isinstance(module, nn.Sequential):
        # conv, folded batch norm, ReLU (the S-TDM stem): the ReLU moves into the convolution.
        names = list(module._modules)
        for a, b, c in zip(names, names[1:], names[2:]):
            conv, bn, relu = module._modules[a], module._modules[b], module._modules[c]
            if isinstance(conv, PackedConv2d) and isinstance(bn, FoldedBatchNorm) \
                    and type(relu) is nn.ReLU and conv.activation is None:
                conv.activation = "relu"
                module._modules[c] = nn.Identity().train(relu.training)


def pack_for_cpu_inference(model: nn.Module) -> nn.Module:
    """Fold ``model``'s batch norms (it must be in eval mode) and pack its convolutions for
    oneDNN (module docstring); returns ``model``, changed in place. Idempotent.

    Inference only, like folding: logits match the unpacked model's to float rounding.
    """
    fold_batch_norm(model)
    for module in list(model.modules()):
        _pack_children(module)
    return model
