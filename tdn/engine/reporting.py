"""Files a run leaves behind: CSV/JSON logs, loss/accuracy curves, confusion matrices.

Each file is rewritten whole and atomically at every epoch from the history kept in the
checkpoint, so a resumed run's logs hold exactly the epochs of the state it resumed from.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Sequence

import torch

from ..fileio import atomic_write_bytes, atomic_write_text


def write_history(history: Sequence[dict], output: str) -> None:
    """``log.csv`` and ``log.json`` with one row per epoch."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(os.path.join(output, "log.csv"), buffer.getvalue())
    atomic_write_text(os.path.join(output, "log.json"), json.dumps(list(history), indent=1) + "\n")


def curves_available() -> bool:
    """Whether matplotlib (an optional dependency) can draw the curves; the trainer asks
    before any work, so that a missing package costs a warning, not a run."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_curves(history: Sequence[dict], path: str, show_top5: bool = True) -> None:
    """Loss (left) and accuracy (right) per epoch, training and validation. ``show_top5=False``
    leaves out top-5, which says nothing with 5 classes or fewer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            loss_axis.plot(*zip(*points), marker="o", label=label)
    accuracies = [("train_top1", "train top-1"), ("val_top1", "validation top-1")]
    if show_top5:
        accuracies.append(("val_top5", "validation top-5"))
    for key, label in accuracies:
        points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            accuracy_axis.plot(*zip(*points), marker="o", label=label)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    atomic_write_bytes(path, _figure_bytes(figure))
    plt.close(figure)


def plot_confusion(confusion: torch.Tensor, path: str, class_names: Sequence[str] | None = None,
                   max_labelled: int = 40) -> None:
    """Row-normalised confusion matrix (true class per row); class names on the axes when there
    are few enough classes to read them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    num_classes = counts.shape[0]
    side = min(4 + 0.3 * num_classes, 30)
    figure, axis = plt.subplots(figsize=(side, side))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    axis.set(xlabel="predicted class", ylabel="true class", title="confusion matrix")
    if num_classes <= max_labelled:
        names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
        axis.set_xticks(range(num_classes), names, rotation=90)
        axis.set_yticks(range(num_classes), names)
        if num_classes <= 12:
            for row in range(num_classes):
                for column in range(num_classes):
                    axis.text(column, row, int(counts[row, column]), ha="center", va="center",
                              color="white" if rates[row, column] > 0.5 else "black")
    atomic_write_bytes(path, _figure_bytes(figure))
    plt.close(figure)
