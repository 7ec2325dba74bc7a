"""Data pipeline for TDN: annotation lists, TSN snippet sampling, decoding, augmentation."""

from .annotations import VideoRecord, read_annotation_list, read_class_names
from .dataset import Batch, Sample, SkippedItem, VideoDataset, collate_samples
from .decoding import FrameReadError, read_folder_frames, read_video_frames, video_frame_count
from .frame_sampling import SNIPPET_LENGTH, sample_frame_indices, snippet_starts
from .loader import build_loader
from .sharded_sampler import ShardedSampler, sample_seed
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, MULTI_SCALE_CROP_SCALES,
                         SOMETHING_FLIP_LABEL_SWAPS, EvalTransform, MultiScaleCrop,
                         TrainTransform, default_scale_size, normalize_frames, parse_label_swaps)
from .synthetic import write_motion_dataset

__all__ = [
    "VideoRecord", "read_annotation_list", "read_class_names",
    "Batch", "Sample", "SkippedItem", "VideoDataset", "collate_samples",
    "FrameReadError", "read_folder_frames", "read_video_frames", "video_frame_count",
    "build_loader", "ShardedSampler", "sample_seed",
    "SNIPPET_LENGTH", "sample_frame_indices", "snippet_starts",
    "IMAGENET_MEAN", "IMAGENET_STD", "MULTI_SCALE_CROP_SCALES", "SOMETHING_FLIP_LABEL_SWAPS",
    "EvalTransform", "MultiScaleCrop", "TrainTransform", "default_scale_size",
    "normalize_frames", "parse_label_swaps", "write_motion_dataset",
]
