"""Tracing a video model into a ``torch.export`` program, with a dynamic batch axis if asked."""

from __future__ import annotations

import torch
import torch.nn as nn


class DynamicBatchError(RuntimeError):
    """``torch.export`` could not keep the batch axis dynamic: the model specialises it."""


def capture_program(model: nn.Module, example: torch.Tensor,
                    dynamic_batch: bool) -> torch.export.ExportedProgram:
    """``model`` traced on ``example`` (N, T*15, H, W); every other size is fixed.

    With ``dynamic_batch`` the program accepts any N >= 1, whatever N the example has. Raises
    :class:`DynamicBatchError` when some operation in the model fixes N instead.
    """
    from torch.fx.experimental.symbolic_shapes import ConstraintViolationError

    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        # Sizes of 1 are otherwise fixed as constants (an example clip of N=1 would freeze the
        # batch axis); torch.onnx traces with the same setting.
        with torch.fx.experimental._config.patch(backed_size_oblivious=True):
            return torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes,
                                       strict=False)
    except (ConstraintViolationError, torch._dynamo.exc.UserError) as e:
        if not dynamic_batch:
            raise
        # The message lists the violated constraints as "  - ..." lines; the first says why.
        reasons = [line.strip(" -") for line in str(e).splitlines() if line.startswith("  - ")]
        raise DynamicBatchError(reasons[0] if reasons else str(e).splitlines()[0]) from e
