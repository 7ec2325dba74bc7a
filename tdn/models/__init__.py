"""TDN and TSN models on ResNet backbones; build them with :func:`build_model`.

Importing this package registers every architecture (each module registers its own with
``@register_model``); :mod:`tdn.models.factory` builds them and loads weights into them.
"""

from .blocks import BasicBlock, Bottleneck, TDNBasicBlock, TDNBottleneck
from .clips import expected_shapes
from .cpu_inference import PackedConv2d, pack_for_cpu_inference
from .factory import build_model, load_checkpoint, load_model
from .fold import FoldedBatchNorm, fold_batch_norm
from .lean import set_lean_training
from .registry import list_models, register_model
from .tdn import TDN, TDNBackbone, default_fusion_weights
from .tsn import TSN, ResNetBackbone

__all__ = [
    "build_model", "load_checkpoint", "load_model", "list_models", "register_model", "TDN",
    "TDNBackbone", "TSN", "ResNetBackbone", "BasicBlock", "Bottleneck", "TDNBasicBlock",
    "TDNBottleneck", "default_fusion_weights", "expected_shapes", "fold_batch_norm",
    "FoldedBatchNorm", "PackedConv2d", "pack_for_cpu_inference", "set_lean_training",
]
