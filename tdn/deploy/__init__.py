"""Deployment files for TDN and TSN models: ONNX (onnxruntime), ``torch.export``, AOTInductor.

>>> from tdn.deploy import export_checkpoint
>>> report = export_checkpoint("best.safetensors", "onnx", "tdn.onnx")   # verified on export
>>> print(report)

:func:`onnxruntime_session` builds a session on any exported ONNX file, and
:func:`onnx_session_for_model` exports a model in memory first (what a benchmark of
onnxruntime against PyTorch calls). ONNX needs the ``export`` extra: ``pip install
'tdn[export]'``.
"""

from __future__ import annotations

import os
import tempfile

from .export import (FORMATS, GRAPHS, ExportError, ExportReport, export_checkpoint,
                     export_model, logits_of)
from .onnx_format import onnxruntime_session, run_onnx
from .onnx_ops import OPSET
from .verify import TOLERANCE

__all__ = ["FORMATS", "GRAPHS", "OPSET", "TOLERANCE", "ExportError", "ExportReport",
           "export_checkpoint", "export_model", "logits_of", "onnx_session_for_model",
           "onnxruntime_session", "run_onnx"]


def onnx_session_for_model(model, input_size: int, *, threads: int | None = None,
                           batch: str | int = "dynamic", graph: str = "auto"):
    """An onnxruntime CPU session running ``model`` (exported and verified in a temporary
    folder, which is removed); feed it with :func:`run_onnx`."""
    with tempfile.TemporaryDirectory(prefix="tdn-onnx-") as folder:
        path = os.path.join(folder, "model.onnx")
        export_model(model, "onnx", path, input_size=input_size, batch=batch, graph=graph)
        return onnxruntime_session(path, threads=threads)
