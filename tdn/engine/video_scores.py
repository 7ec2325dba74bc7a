"""Per-video scores: what ``tdn evaluate --save-scores`` writes and ``tdn ensemble`` fuses.

A scores file holds, for every video that was read, its id (the annotation list's path,
relative to ``--data-root``), its label and one row of class scores averaged over the
video's views. ``kind`` says whether the rows are raw logits or softmax probabilities.
Files are written atomically and read with ``weights_only=True`` (plain tensors, strings
and numbers: loading one never runs code).

Fusing several models (an 8- and a 16-segment TDN, say) averages their rows video by video:

- ``softmax`` (the default): the mean of each model's probabilities. Models trained with
  different segment counts do not share a logit scale, and probabilities put them on one,
  so that neither dominates the vote; it is also what the authors' ``pkl_to_results.py``
  does to each view of one model before averaging.
- ``logits``: the mean of the raw logits. The authors' script fuses its 8F+16F pair this way,
  except that it also clips every view's logits at 0 before summing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..fileio import atomic_torch_save

FORMAT = "tdn-video-scores/1"
KINDS = ("logits", "probabilities")
FUSIONS = ("softmax", "logits")


@dataclass
class VideoScores:
    """``scores[i]`` (one row of ``K`` class scores) and ``labels[i]`` belong to ``videos[i]``."""

    videos: list[str]
    labels: torch.Tensor  # (N,) int64
    scores: torch.Tensor  # (N, K) float32
    kind: str = "logits"
    checkpoints: list[str] = field(default_factory=list)
    num_segments: list[int] = field(default_factory=list)
    views: list[int] = field(default_factory=list)  # per model: clips x crops

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.scores.dim() != 2 or len(self.videos) != self.scores.shape[0] \
                or self.labels.shape != (len(self.videos),):
            raise ValueError(f"{len(self.videos)} videos, labels {tuple(self.labels.shape)} and "
                             f"scores {tuple(self.scores.shape)} do not match")

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1])

    def probabilities(self) -> torch.Tensor:
        return self.scores if self.kind == "probabilities" else self.scores.float().softmax(-1)

    def as_dict(self) -> dict:
        return {"format": FORMAT, "videos": list(self.videos), "labels": self.labels,
                "scores": self.scores, "kind": self.kind, "checkpoints": list(self.checkpoints),
                "num_segments": list(self.num_segments), "views": list(self.views)}

    def save(self, path: str, **extra) -> None:
        """Write atomically (``extra``: more tensors or plain values stored beside)."""
        atomic_torch_save({**self.as_dict(), **extra}, path)

    @classmethod
    def load(cls, path: str) -> "VideoScores":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"scores file not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{path}: not a scores file ({type(error).__name__}: {error})") \
                from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a scores file of 'tdn evaluate --save-scores' "
                             f"(format {FORMAT!r} expected)")
        try:
            return cls(list(payload["videos"]), payload["labels"].long(),
                       payload["scores"].float(), payload["kind"],
                       list(payload.get("checkpoints", [])),
                       [int(t) for t in payload.get("num_segments", [])],
                       [int(v) for v in payload.get("views", [])])
        except (KeyError, AttributeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: malformed scores file ({type(error).__name__}: {error})") \
                from None


def fuse(parts: Sequence[VideoScores], how: str = "softmax",
         names: Sequence[str] | None = None) -> tuple[VideoScores, list[str]]:
    """The video-by-video mean of ``parts`` (``how``: ``softmax`` or ``logits``, see the module
    docstring), over the videos that every part holds, in the first part's order.

    Returns the fused scores and the ids of the videos left out because some part lacks them
    (a video one evaluation could not read). ``names`` label the parts in errors.
    """
    if how not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {how!r}")
    if not parts:
        raise ValueError("nothing to fuse")
    names = list(names) if names is not None else [f"scores #{i + 1}" for i in range(len(parts))]
    for name, part in zip(names, parts):
        if part.num_classes != parts[0].num_classes:
            raise ValueError(f"{name} has {part.num_classes} classes, {names[0]} has "
                             f"{parts[0].num_classes}")
        if how == "logits" and part.kind != "logits":
            raise ValueError(f"{name} holds probabilities: fuse it with softmax, not logits")
    rows = [{video: row for row, video in enumerate(part.videos)} for part in parts]
    common = [video for video in parts[0].videos if all(video in r for r in rows[1:])]
    if not common:
        raise ValueError(f"{', '.join(names)} have no video in common")
    left_out = [video for video in dict.fromkeys(v for p in parts for v in p.videos)
                if video not in set(common)]
    labels = parts[0].labels[[rows[0][v] for v in common]]
    fused = torch.zeros(len(common), parts[0].num_classes)
    for name, part, row_of in zip(names, parts, rows):
        take = [row_of[v] for v in common]
        mismatch = (part.labels[take] != labels).nonzero()
        if mismatch.numel():
            video = common[int(mismatch[0])]
            raise ValueError(f"{video} has label {int(part.labels[row_of[video]])} in {name} "
                             f"but {int(labels[int(mismatch[0])])} in {names[0]}")
        values = part.probabilities() if how == "softmax" else part.scores.float()
        fused += values[take]
    fused /= len(parts)
    return VideoScores(common, labels, fused, "probabilities" if how == "softmax" else "logits",
                       [c for p in parts for c in p.checkpoints],
                       [t for p in parts for t in p.num_segments],
                       [v for p in parts for v in p.views]), left_out
