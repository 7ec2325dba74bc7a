"""tdn: Temporal Difference Networks (CVPR 2021) on fused operators.

>>> import tdn
>>> model = tdn.build_model("tdn_resnet50", num_classes=174, num_segments=8)
>>> logits = model(clips)                  # clips: (N, 8*15, 224, 224) -> (N, 174)

Attributes are imported on first use, so ``import tdn`` (and the ``tdn`` command's ``--help``)
does not pay for torch until a model or tool is actually needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_model": "tdn.models.factory",
    "load_checkpoint": "tdn.models.factory",
    "load_model": "tdn.models.factory",
    "fold_batch_norm": "tdn.models.fold",
    "pack_for_cpu_inference": "tdn.models.cpu_inference",
    "set_lean_training": "tdn.models.lean",
    "list_models": "tdn.models.registry",
    "register_model": "tdn.models.registry",
    "TDN": "tdn.models.tdn",
    "TSN": "tdn.models.tsn",
    "save_checkpoint": "tdn.checkpoint_io",
    "CheckpointError": "tdn.checkpoint_io",
    "load_imagenet_weights": "tdn.models.imagenet",
    "count_macs": "tdn.flops",
    "count_params": "tdn.flops",
    "keep_freed_cpu_memory": "tdn.cpu_memory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tdn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
