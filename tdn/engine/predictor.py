"""``tdn predict``: top-k classes of video files, no annotation list needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ..data import EvalTransform, SkippedItem, VideoDataset, VideoRecord
from ..data.dataset import collate_samples
from .batches import batch_to_input


@dataclass
class Prediction:
    video: str
    top: list[tuple[int, str, float]]  # (class index, class name, probability)
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {"video": self.video,
                "top": [{"index": i, "label": name, "score": score} for i, name, score in self.top]}


@torch.no_grad()
def predict_videos(network: nn.Module, videos: Sequence[str], *, num_segments: int,
                   input_size: int = 224, scale_size: int | None = None, clips: int = 1,
                   crops: int = 1, topk: int = 5, class_names: Sequence[str] | None = None,
                   device: torch.device | str = "cpu", decoder: str = "auto") -> list[Prediction]:
    """Softmax probabilities averaged over ``clips x crops`` views, best ``topk`` per video.
    Videos that cannot be read get a :class:`Prediction` with ``error`` set."""
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    device = torch.device(device)
    records = [VideoRecord(path, 0) for path in videos]
    dataset = VideoDataset(records, num_segments, EvalTransform(input_size, scale_size, crops),
                           mode="test" if clips > 1 else "val", num_clips=clips, decoder=decoder)
    network.eval()
    results = []
    for index, path in enumerate(videos):
        item = dataset[index]
        if isinstance(item, SkippedItem):
            results.append(Prediction(path, [], error=item.reason))
            continue
        batch = collate_samples([item])
        logits = network(batch_to_input(batch.frames, device))
        probabilities = logits.float().softmax(dim=-1).mean(dim=0)
        k = min(topk, probabilities.numel())
        values, classes = probabilities.topk(k)
        top = []
        for score, cls in zip(values.tolist(), classes.tolist()):
            name = class_names[cls] if class_names and cls < len(class_names) else str(cls)
            top.append((cls, name, score))
        results.append(Prediction(path, top))
    return results
