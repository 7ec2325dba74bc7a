"""Writing an exported program as an ONNX file, and running one with onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write
from .onnx_ops import OPSET, translation_table

INPUT_NAME = "clips"
OUTPUT_NAME = "logits"


def _missing(package: str) -> ImportError:
    return ImportError(f"ONNX export needs {package}: pip install 'tdn[export]'")


def write_onnx(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    """``program`` as a self-contained ONNX file (weights inside), checked by ``onnx.checker``.

    The fused operators become the standard-operator subgraphs of :mod:`tdn.deploy.onnx_ops`,
    so the file runs wherever onnxruntime does, without this package.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter builds the graph with it)
    except ImportError as e:
        raise _missing(e.name or "onnx and onnxscript") from e

    onnx_program = torch.onnx.export(
        program, (), dynamo=True, opset_version=OPSET, custom_translation_table=translation_table(),
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True, verbose=False)

    def write(temporary: str) -> None:
        onnx_program.save(temporary, external_data=False)
        onnx.checker.check_model(temporary, full_check=True)

    return atomic_write(path, write)


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime ``InferenceSession`` on the CPU execution provider.

    ``threads``: intra-op threads (default: onnxruntime's choice, one per core).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise _missing("onnxruntime") from e
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, clips) -> np.ndarray:
    """Logits (N, K) for ``clips`` (N, T*15, H, W), a tensor or an array."""
    if isinstance(clips, torch.Tensor):
        clips = clips.detach().cpu().numpy()
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(clips, dtype=np.float32)})[0]
