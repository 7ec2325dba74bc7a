"""From a model or a checkpoint to a verified deployment file: ONNX, ``torch.export``, AOTI.

Every export goes the same way:

1. the model is traced by ``torch.export`` on a random clip, with a dynamic batch axis unless a
   fixed batch is asked for (clip length T, frame size and classes are fixed);
2. the program is written in the asked format;
3. the written file is loaded back and run on a new random clip (batch 2 when the axis is
   dynamic, so that it is exercised), and its logits are compared with PyTorch's; above
   :data:`tdn.deploy.verify.TOLERANCE` the file is removed and :class:`ExportError` raised.

Which graph: ``"fused"`` traces the model with the fused operators, which ONNX files spell out
with the standard-operator translations of :mod:`tdn.deploy.onnx_ops` (fewer nodes and faster
in onnxruntime than the reference decomposition; see README, "Deploy") and ``torch.export``
files keep as custom operators. ``"reference"`` traces the authors' unfused code path (plain
ATen operators only). ``"auto"`` takes the fused graph, and the reference one where the fused
model cannot be traced with a dynamic batch axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .capture import DynamicBatchError, capture_program
from .onnx_ops import OPSET
from .verify import Agreement, compare

FORMATS = ("onnx", "pt2", "aoti")
GRAPHS = ("auto", "fused", "reference")
SNIPPET_CHANNELS = 15  # 5 RGB frames per segment
# The batch a dynamic-batch file is verified at: not the traced example's 1.
VERIFY_BATCH = 2


class ExportError(RuntimeError):
    """The exported file does not reproduce PyTorch's logits."""


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how it was checked; ``str()`` is the summary."""

    path: Path
    format: str
    graph: str  # "fused" or "reference"
    batch: str  # "dynamic" or the fixed N
    input_shape: tuple[str | int, ...]
    agreement: Agreement
    notes: list[str] = field(default_factory=list)

    @property
    def opset(self) -> int | None:
        return OPSET if self.format == "onnx" else None

    def __str__(self) -> str:
        shape = "x".join(str(d) for d in self.input_shape)
        opset = f", ONNX opset {self.opset}" if self.opset else ""
        lines = [f"wrote {self.path} ({self.format}, {self.graph} graph{opset}, input "
                 f"{shape}, batch {self.batch})", str(self.agreement)]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# ------------------------------------------------------------------------- argument checking
def parse_batch(batch: str | int) -> int | None:
    """``"dynamic"`` -> None; a positive int, or its decimal string -> that int."""
    if batch == "dynamic":
        return None
    if isinstance(batch, str) and batch.isdigit():
        batch = int(batch)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return batch


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# ------------------------------------------------------------------------------ model graphs
def _has_fused_operators(model: nn.Module) -> bool:
    return model.arch.startswith("tdn")


def _on_reference_path(model: nn.Module) -> bool:
    """Whether the model's TDN layers were built with ``backend="reference"``."""
    return any(getattr(m, "backend", None) == "reference" for m in model.modules())


def model_for_graph(model: nn.Module, graph: str) -> nn.Module:
    """``model`` itself if it already runs ``graph``, else a copy built for it (a TDN or TSN
    from :func:`tdn.build_model`, same weights)."""
    import tdn

    if not _has_fused_operators(model) or _on_reference_path(model) == (graph == "reference"):
        return model
    extra = {"alpha": model.alpha, "beta": model.beta}
    copy = tdn.build_model(model.arch, num_classes=model.num_classes,
                           num_segments=model.num_segments,
                           backend="reference" if graph == "reference" else None, **extra)
    try:
        copy.load_state_dict(model.state_dict())
    except RuntimeError as e:
        raise ValueError(f"cannot rebuild this {model.arch} for the {graph} graph (were its "
                         f"batch norms folded?): export it with graph='fused'") from e
    return copy.eval()


def _graph_candidates(model: nn.Module, graph: str) -> list[str]:
    import tdn_ops

    if not _has_fused_operators(model):
        return ["reference"]  # TSN: plain ATen operators whichever way it is built
    if graph == "auto":
        return ["fused", "reference"] if tdn_ops.NATIVE_AVAILABLE else ["reference"]
    if graph == "fused" and not tdn_ops.NATIVE_AVAILABLE:
        raise ValueError("graph='fused' needs the tdn_ops C++ extension, which is not built here "
                         f"({tdn_ops._extension.NATIVE_IMPORT_ERROR}); use graph='reference'")
    return [graph]


def _capture(model: nn.Module, example: torch.Tensor, dynamic: bool, graph: str,
             notes: list[str]) -> tuple[torch.export.ExportedProgram, str]:
    candidates = _graph_candidates(model, graph)
    for index, candidate in enumerate(candidates):
        traced = model_for_graph(model, candidate)
        try:
            return capture_program(traced, example, dynamic), candidate
        except DynamicBatchError as e:
            if index + 1 == len(candidates):
                raise ValueError(f"cannot export the {candidate} graph with a dynamic batch "
                                 f"axis ({e}); pass a fixed batch (--batch N)") from e
            notes.append(f"the {candidate} graph could not keep the batch dynamic ({e}); "
                         f"exported the {candidates[index + 1]} graph instead")
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------- formats
def _writer_and_loader(fmt: str) -> tuple[Callable, Callable[[Path], Callable]]:
    if fmt == "onnx":
        from .onnx_format import onnxruntime_session, run_onnx, write_onnx

        def load(path: Path) -> Callable:
            session = onnxruntime_session(path)
            return lambda clips: run_onnx(session, clips)

        return write_onnx, load
    from .pt2_format import load_aoti, load_pt2, write_aoti, write_pt2

    def wrap(loader: Callable) -> Callable[[Path], Callable]:
        def load(path: Path) -> Callable:
            module = loader(path)
            return lambda clips: module(clips).detach().numpy()
        return load

    if fmt == "pt2":
        return write_pt2, wrap(load_pt2)
    return write_aoti, wrap(load_aoti)


RUNTIME_NAMES = {"onnx": "onnxruntime (CPU)", "pt2": "torch.export.load", "aoti": "AOTInductor"}


# ------------------------------------------------------------------------------ the exports
def export_model(model: nn.Module, fmt: str, output: str | os.PathLike, *, input_size: int = 224,
                 batch: str | int = "dynamic", graph: str = "auto", seed: int = 0) -> ExportReport:
    """Export ``model`` (a TDN or TSN from :func:`tdn.build_model`) and verify the file.

    Args:
        fmt: ``"onnx"`` (opset 18, standard operators only), ``"pt2"`` (``torch.export``
            archive) or ``"aoti"`` (AOTInductor package, compiled for this machine's CPU).
        input_size: frame side H = W the file takes.
        batch: ``"dynamic"`` (any N) or a fixed N.
        graph: ``"auto"``, ``"fused"`` or ``"reference"`` (see the module docstring).
        seed: of the random clips the export traces and verifies on.

    Returns the :class:`ExportReport`; raises :class:`ExportError` (and writes nothing) if the
    file's logits differ from PyTorch's by more than the tolerance.
    """
    _check_choice("format", fmt, FORMATS)
    _check_choice("graph", graph, GRAPHS)
    fixed_batch = parse_batch(batch)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    if not hasattr(model, "arch"):
        raise ValueError("model must be a TDN or TSN built by tdn.build_model / tdn.load_model")
    model = model.eval()
    channels = model.num_segments * SNIPPET_CHANNELS
    generator = torch.Generator().manual_seed(seed)

    def clip(n: int) -> torch.Tensor:
        return torch.randn(n, channels, input_size, input_size, generator=generator)

    with torch.no_grad():
        model(clip(1))  # a wrong frame size fails here, with the model's own message
    notes: list[str] = []
    program, used_graph = _capture(model, clip(fixed_batch or 1), fixed_batch is None, graph,
                                   notes)
    write, load = _writer_and_loader(fmt)
    path = Path(write(program, output))
    check_clip = clip(fixed_batch or VERIFY_BATCH)
    with torch.no_grad():
        expected = model(check_clip).numpy()
    try:
        actual = load(path)(check_clip)
        agreement = compare(RUNTIME_NAMES[fmt], actual, expected)
        if not agreement.ok:
            raise ExportError(f"{path}: {agreement}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    shape = ("N" if fixed_batch is None else fixed_batch, channels, input_size, input_size)
    return ExportReport(path, fmt, used_graph, "dynamic" if fixed_batch is None else
                        str(fixed_batch), shape, agreement, notes)


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, output: str | os.PathLike, *,
                      segments: int | None = None, input_size: int | None = None,
                      batch: str | int = "dynamic", graph: str = "auto") -> ExportReport:
    """:func:`export_model` of the model a checkpoint (this project's or the authors') holds.

    ``segments`` defaults to the checkpoint's (8 for the authors' files, which do not record
    it) and must match it when the checkpoint records one; ``input_size`` defaults to the
    training size the checkpoint records, else 224.
    """
    _check_choice("format", fmt, FORMATS)  # before the checkpoint is read
    _check_choice("graph", graph, GRAPHS)
    parse_batch(batch)
    from ..models.factory import load_model_and_metadata

    model, metadata = load_model_and_metadata(checkpoint, num_segments=segments)
    recorded = metadata.get("num_segments")
    if segments is not None and recorded is not None and int(recorded) != segments:
        raise ValueError(f"segments={segments} does not match the checkpoint {checkpoint}, "
                         f"which records num_segments={recorded}")
    size = input_size or int(metadata.get("input_size", 224))
    return export_model(model, fmt, output, input_size=size, batch=batch, graph=graph)


def logits_of(path: str | os.PathLike, fmt: str, clips: torch.Tensor) -> np.ndarray:
    """Run an exported file on ``clips`` with the runtime its format loads in."""
    _check_choice("format", fmt, FORMATS)
    return _writer_and_loader(fmt)[1](Path(path))(clips)
