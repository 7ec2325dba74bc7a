"""Data pipeline for TDN: annotation lists, TSN snippet sampling, decoding, augmentation.

Names are imported on first use: ``tdn.data.recipe`` (the recipe's numbers) can be read
without paying for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "tdn.data.annotations": ["VideoRecord", "read_annotation_list", "read_class_names"],
    "tdn.data.dataset": ["Batch", "Sample", "SkippedItem", "VideoDataset", "collate_samples"],
    "tdn.data.decoding": ["FrameReadError", "read_folder_frames", "read_video_frames",
                          "video_frame_count"],
    "tdn.data.frame_sampling": ["SNIPPET_LENGTH", "sample_frame_indices", "snippet_starts"],
    "tdn.data.loader": ["build_loader"],
    "tdn.data.recipe": ["IMAGENET_MEAN", "IMAGENET_STD", "MULTI_SCALE_CROP_SCALES",
                        "SOMETHING_FLIP_LABEL_SWAPS"],
    "tdn.data.sharded_sampler": ["ShardedSampler", "sample_seed"],
    "tdn.data.synthetic": ["write_motion_dataset"],
    "tdn.data.transforms": ["EvalTransform", "MultiScaleCrop", "TrainTransform",
                            "default_scale_size", "normalize_frames", "parse_label_swaps"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tdn.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
