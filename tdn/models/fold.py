"""Folding batch norms into the convolutions before them, for inference.

In eval mode a batch norm is a fixed per-channel affine map of its input, ``s * v + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - s * running_mean``. When the input is
a convolution's output, the map moves into the convolution: weight ``s * W`` (per output
channel) and bias ``s * b + t``. The folded network computes the same function and skips one
pass over every normalised feature map.

:func:`fold_batch_norm` folds every batch norm of a TDN or TSN model that directly follows a
convolution (docs/math.md §2-§4):

* backbone: the stem's ``conv1 -> bn1``, each block's ``convK -> bnK``, the projection
  shortcuts (``downsample``: convolution then batch norm);
* S-TDM: the difference stem ``conv1_5`` (convolution, batch norm, ReLU) and its copy of
  ``layer1``. The lateral fusions ``alpha*x + beta*up(d)`` take ReLU/max-pool/block outputs,
  not batch-norm outputs, so nothing folds there (their weights already ride in the one pass);
* L-TDM: ``conv1 -> bn1``, the two small-scale branches ``conv3_smallscaleK ->
  bn3_smallscaleK`` and the projection ``conv3 -> bn3``. Each of these is one module called
  once per direction; in eval mode both calls apply the same affine, so one fold serves both
  directions, whether the layer runs module by module or through ``project_excite_shift``.

Any ``nn.Conv2d`` directly followed by an ``nn.BatchNorm2d`` inside an ``nn.Sequential`` is
folded too, so the same call serves networks that put TDN's layers in other backbones. A batch
norm that normalises with batch statistics even in eval mode (``track_running_stats=False``)
is not an affine map and stays.

The model is changed in place: each folded batch norm is replaced by a
:class:`FoldedBatchNorm` (an identity) and its convolution gains the bias. A folded model is
for inference only: switching it back to training mode makes its forward raise, and its state
dict (no batch-norm entries, new convolution biases) is not a checkpoint of the architecture.
Fold a copy (``fold_batch_norm(copy.deepcopy(model))``) to keep the original.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn

from tdn_ops.nn import LongTermTDM

from .blocks import BasicBlock, Bottleneck
from .tdn import TDNBackbone
from .tsn import ResNetBackbone

__all__ = ["FoldedBatchNorm", "fold_batch_norm", "fold_into_conv"]

# (convolution, batch norm) attribute pairs where the module's forward feeds the convolution's
# output straight into the batch norm. Looked up with isinstance, so the TDN blocks (subclasses
# of BasicBlock and Bottleneck) are covered by their bases.
CONV_BN_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    TDNBackbone: (("conv1", "bn1"),),
    ResNetBackbone: (("conv1", "bn1"),),
    LongTermTDM: (("conv1", "bn1"), ("conv3_smallscale2", "bn3_smallscale2"),
                  ("conv3_smallscale4", "bn3_smallscale4"), ("conv3", "bn3")),
}


class FoldedBatchNorm(nn.Identity):
    """Stands where a batch norm was folded into the convolution before it: the identity.

    Only valid for inference: the folded convolution holds the batch norm's running statistics
    as fixed numbers, so a forward in training mode (which would have normalised with batch
    statistics) raises instead of silently computing something else.
    """

    def __init__(self, num_features: int, folded_into: str) -> None:
        super().__init__()
        self.num_features = num_features
        self.folded_into = folded_into

    def extra_repr(self) -> str:
        return f"{self.num_features}, folded_into={self.folded_into!r}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError(
                f"this batch norm was folded into {self.folded_into} by tdn.fold_batch_norm: "
                "the model is for inference only. Call .eval(), or build or load the model "
                "again to train it")
        return input


def fold_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s eval-mode affine into ``conv`` (in place): ``bn(conv(v)) == conv'(v)``.

    The products are formed in float64 and rounded once to the parameters' dtype; the weight
    keeps its memory format (channels_last stays channels_last).
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"bn has no running statistics (track_running_stats=False): {bn}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn normalises {bn.num_features} channels but conv has "
                         f"{conv.out_channels} output channels")
    with torch.no_grad():
        weight = conv.weight
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        bias = shift if conv.bias is None else conv.bias.double() * scale + shift
        weight.copy_(weight.double() * scale.view((-1,) + (1,) * (weight.dim() - 1)))
        if conv.bias is None:
            conv.bias = nn.Parameter(bias.to(weight.dtype),
                                     requires_grad=weight.requires_grad)
        else:
            conv.bias.copy_(bias)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d
            and bn.running_mean is not None and bn.running_var is not None
            and bn.num_features == conv.out_channels)


def _pairs_of(module: nn.Module) -> Iterator[tuple[str, str]]:
    """Names of the (convolution, batch norm) children of ``module`` that feed one another."""
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        yield from zip(names, names[1:])
        return
    for cls, pairs in CONV_BN_PAIRS.items():
        if isinstance(module, cls):
            yield from pairs
            return


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it; returns ``model``.

    ``model`` must be in eval mode (``model.eval()``): the folded weights bake in the running
    statistics. It is changed in place (see the module docstring for what that implies);
    folding an already folded model changes nothing. Logits match the unfolded model's to
    float rounding (about 1e-6 relative in float32).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    training = [name or "model" for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            "fold_batch_norm(model) needs model in eval mode (call model.eval() first): a "
            "batch norm in training mode normalises with batch statistics, which cannot be "
            f"folded into weights; in training mode: {', '.join(training[:3])}"
            + (f" and {len(training) - 3} more" if len(training) > 3 else ""))
    for prefix, module in list(model.named_modules()):
        for conv_name, bn_name in _pairs_of(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not _foldable(conv, bn):
                continue
            fold_into_conv(conv, bn)
            folded_into = f"{prefix}.{conv_name}" if prefix else conv_name
            replacement = FoldedBatchNorm(bn.num_features, folded_into).eval()
            setattr(module, bn_name, replacement)
    return model
