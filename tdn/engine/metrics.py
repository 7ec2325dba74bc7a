"""Classification metrics: running sums for training, full reports for evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .distributed import DistributedContext, all_reduce_sum


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many rows have their label among the top-k scores, for each k (k capped at the
    number of classes, so top-5 of a 4-class problem is top-4)."""
    if logits.numel() == 0:
        return [0 for _ in ks]
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices
    hits = top == labels.view(-1, 1)
    return [int(hits[:, :min(k, largest)].any(dim=1).sum()) for k in ks]


@dataclass
class RunningMetrics:
    """Sums of loss, top-1/top-5 hits and item count; :meth:`reduced` sums them over ranks."""

    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    count: int = 0
    skipped: int = 0

    def update(self, loss: float, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = int(labels.numel())
        one, five = topk_correct(logits.detach().float(), labels)
        self.loss_sum += float(loss) * n
        self.top1 += one
        self.top5 += five
        self.count += n

    def reduced(self, context: DistributedContext) -> "RunningMetrics":
        totals = all_reduce_sum(torch.tensor(
            [self.loss_sum, self.top1, self.top5, self.count, self.skipped], dtype=torch.float64),
            context).tolist()
        return RunningMetrics(totals[0], int(totals[1]), int(totals[2]), int(totals[3]),
                              int(totals[4]))

    def summary(self) -> dict[str, float]:
        count = max(self.count, 1)
        return {"loss": self.loss_sum / count, "top1": 100.0 * self.top1 / count,
                "top5": 100.0 * self.top5 / count, "count": self.count, "skipped": self.skipped}


@dataclass
class ClassificationReport:
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: list[float | None]
    confusion: torch.Tensor = field(repr=False)
    count: int = 0

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5,
                "mean_class_accuracy": self.mean_class_accuracy,
                "per_class_accuracy": self.per_class_accuracy, "count": self.count}


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_report(scores: torch.Tensor, labels: torch.Tensor) -> ClassificationReport:
    """Top-1/top-5 (percent), per-class accuracy (None for classes without samples), their
    mean over classes present, and the confusion matrix, from (N, K) scores."""
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be (N, K) and labels (N,), got {tuple(scores.shape)} "
                         f"and {tuple(labels.shape)}")
    num_classes = scores.shape[1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}] (wrong --num-classes?)")
    count = int(labels.numel())
    one, five = topk_correct(scores, labels)
    confusion = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
    support = confusion.sum(dim=1)
    per_class = [None if support[k] == 0 else 100.0 * float(confusion[k, k]) / float(support[k])
                 for k in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return ClassificationReport(
        top1=100.0 * one / max(count, 1), top5=100.0 * five / max(count, 1),
        mean_class_accuracy=sum(present) / len(present) if present else 0.0,
        per_class_accuracy=per_class, confusion=confusion, count=count)
