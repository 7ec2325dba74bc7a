"""Argument checks shared by the public operators.

Every message names the argument and says what was expected, so that a wrong call fails at the
call site with a sentence a user can act on, whichever backend would have run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def tensor(name: str, t: object, ndim: int | None = None, min_ndim: int | None = None,
           layout: str = "") -> torch.Tensor:
    """``t`` is a floating-point tensor of the expected rank; ``layout`` names its dims."""
    # Operators sit on hot paths: the happy path reads each property once and formats nothing.
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")
    if ndim is not None or min_ndim is not None:
        dims = t.dim()
        if ndim is not None and dims != ndim:
            raise ValueError(f"{name} must be a {ndim}-D tensor{_hint(layout)}, got shape "
                             f"{tuple(t.shape)}")
        if min_ndim is not None and dims < min_ndim:
            raise ValueError(f"{name} must have at least {min_ndim} dims{_hint(layout)}, got "
                             f"shape {tuple(t.shape)}")
    return t


def tensor_like(name: str, t: object, ref_name: str, ref: torch.Tensor, ndim: int | None = None,
                layout: str = "", same_shape: bool = False) -> torch.Tensor:
    """``t`` is a tensor on ``ref``'s device with its dtype (and, with ``same_shape``, its
    shape); ``ndim`` and ``layout`` as in :func:`tensor`.

    One call for the commonest sequence of checks (type, dtype, rank, device, shape): each Python
    frame on an operator's path costs microseconds once the model's other work has evicted the
    interpreter's state (tdn_ops/_dispatch.py, call).
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype is not ref.dtype:
        tensor(name, t)   # a non-floating dtype gets that message first
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; "
                        "they must match (or call the operator under torch.autocast)")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor{_hint(layout)}, got shape "
                         f"{tuple(t.shape)}")
    # is_cpu first: reading .device builds a torch.device (~1 us each, against 0.2 us).
    if not (t.is_cpu and ref.is_cpu) and t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; "
                         "move them to one device")
    if same_shape and t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, "
                         f"got {tuple(t.shape)}")
    return t


def _hint(layout: str) -> str:
    return f" {layout}" if layout else ""


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def real_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def segments_divide(name: str, t: torch.Tensor, num_segments: int) -> None:
    """The batch dim of ``t`` holds whole videos of ``num_segments`` frames."""
    if t.shape[0] % num_segments != 0:
        raise ValueError(
            f"{name}.shape[0] ({t.shape[0]}) must be N*T, a multiple of num_segments "
            f"({num_segments}); got shape {tuple(t.shape)}")


def spatial_at_least(name: str, t: torch.Tensor, size: int, why: str) -> None:
    h, w = t.shape[-2], t.shape[-1]
    if h < size or w < size:
        raise ValueError(f"{name} has spatial size {h}x{w}, below the {why} ({size}x{size}); "
                         f"shape {tuple(t.shape)}")


def temporal_weight(name: str, weight: torch.Tensor, channels: int) -> None:
    expected: Sequence[int] = (channels, 1, 3)
    if tuple(weight.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape (C, 1, 3) = {tuple(expected)} for C={channels}"
                         f" channels, got {tuple(weight.shape)}")
