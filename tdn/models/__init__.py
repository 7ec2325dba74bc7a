"""TDN and TSN models on ResNet backbones; build them with :func:`build_model`."""

from .blocks import BasicBlock, Bottleneck, TDNBasicBlock, TDNBottleneck
from .inputs import expected_shapes
from .registry import build_model, list_models, register_model
from .tdn import TDN, TDNBackbone, default_fusion_weights
from .tsn import TSN, ResNetBackbone

__all__ = [
    "build_model", "list_models", "register_model", "TDN", "TDNBackbone", "TSN",
    "ResNetBackbone", "BasicBlock", "Bottleneck", "TDNBasicBlock", "TDNBottleneck",
    "default_fusion_weights", "expected_shapes",
]
