"""The memory-format rule shared by the kernels (C++ ``tdn::layout_of``) and fake tensors.

An operator's output takes the layout of its primary input: channels_last when that input is
channels_last-contiguous and not plainly contiguous, otherwise contiguous. The rule must agree
exactly with the C++ one, or fake tensors would promise strides the kernels do not produce.
"""

from __future__ import annotations

import torch


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def as_4d(t: torch.Tensor) -> torch.Tensor:
    """(…, c, H, W) viewed as (B, c, H, W), as the kernels see tensors with leading dims."""
    return t.reshape((-1,) + tuple(t.shape[-3:]))


def empty_like_layout(ref: torch.Tensor, shape) -> torch.Tensor:
    """A new 4-D tensor of ``shape`` in ``ref``'s layout."""
    return torch.empty(shape, dtype=ref.dtype, device=ref.device,
                       memory_format=memory_format_of(ref))


def empty_stacked_like_layout(ref: torch.Tensor, shape) -> torch.Tensor:
    """A (2, B, c, H, W) tensor whose two halves each have ``ref``'s 4-D layout."""
    if memory_format_of(ref) == torch.channels_last:
        s0, b, c, h, w = shape
        return ref.new_empty((s0, b, h, w, c)).permute(0, 1, 4, 2, 3)
    return ref.new_empty(shape)
