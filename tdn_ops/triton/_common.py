"""Pieces shared by the Triton operator families: helpers inside kernels and on the host.

Conventions every kernel follows, so that one source runs compiled on CUDA and under
``TRITON_INTERPRET=1`` on CPU tensors:

* values are loaded, converted to the accumulation type ``ACC`` (float32, or float64 for
  float64 tensors: constexpr ``F64``) and converted back only on store: no half or bfloat16
  arithmetic (the interpreter has none, and half accumulation loses precision);
* masks are block tensors (a scalar condition is always combined with a block mask);
* index arithmetic is int64 when any tensor can reach past 2**30 elements (``INT64``): every
  product of a coordinate and a stride then has an int64 operand, so nothing overflows int32.
"""

import os
import struct

import torch
import triton
import triton.language as tl

from .._layout import memory_format_of

# Read once, when the kernels are defined: triton.jit decides at decoration time whether a
# kernel is compiled or interpreted, so this flag and the kernels always agree.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Above this reach (elements from a tensor's base pointer) kernels index in int64. Half the
# int32 range leaves room for masked-out lanes that step one row, plane or frame past the end.
_INT32_SAFE_REACH = 2**30


def elementwise_configs(*blocks_and_warps: tuple[int, int]) -> list[triton.Config]:
    """Autotuning candidates ``(BLOCK, num_warps)``; one large block under the interpreter.

    The interpreter runs each program as numpy calls, so fewer, bigger programs are faster and
    there is nothing to tune (benchmarking every candidate would only cost time).
    """
    if INTERPRET:
        return [triton.Config({"BLOCK": 8192}, num_warps=4)]
    return [triton.Config({"BLOCK": b}, num_warps=w) for b, w in blocks_and_warps]


# (BLOCK, num_warps) candidates. Kernels with few values per element take 4-8 elements per
# thread; kernels that load many (2x2 windows, three frames) take 1-2, which keeps them at
# 40-80 registers on sm_90 (ptxas -v) instead of 150-255 with spills.
ELEMENTWISE_CONFIGS = ((256, 2), (512, 4), (1024, 4), (2048, 8))
WIDE_CONFIGS = ((128, 4), (256, 4), (256, 8), (512, 8))


# ----------------------------------------------------------------------------- kernel helpers

@triton.jit
def block_offsets(BLOCK: tl.constexpr, INT64: tl.constexpr):
    """The element indices of this program's block (int64 when ``INT64``)."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    return pid * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def unravel_nchw(idx, C, H, W, CHANNELS_LAST: tl.constexpr):
    """(n, c, h, w) of linear index ``idx`` into a dense NCHW or NHWC (channels_last) tensor."""
    if CHANNELS_LAST:
        c = idx % C
        rest = idx // C
        w = rest % W
        rest = rest // W
        h = rest % H
        n = rest // H
    else:
        w = idx % W
        rest = idx // W
        h = rest % H
        rest = rest // H
        c = rest % C
        n = rest // C
    return n, c, h, w


@triton.jit
def sigmoid(y):
    # 1/(1+exp(-y)): exact limits 0 and 1 at -inf/+inf, NaN stays NaN.
    return 1.0 / (1.0 + tl.exp(-y))


# ------------------------------------------------------------------------------ host helpers

def needs_int64(*tensors: torch.Tensor) -> bool:
    """Whether any tensor reaches far enough from its base pointer to need int64 indexing."""
    for t in tensors:
        reach = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
        if max(reach + 1, t.numel()) > _INT32_SAFE_REACH:
            return True
    return False


def is_f64(t: torch.Tensor) -> bool:
    return t.dtype == torch.float64


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether ``t``'s layout (by the operators' rule, tdn_ops/_layout.py) is channels_last."""
    return memory_format_of(t) == torch.channels_last


def dense_in_layout_of(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` dense in ``ref``'s layout (no copy when it already is): for linear-index kernels."""
    return t.contiguous(memory_format=memory_format_of(ref))


def fp32(value: float) -> float:
    """``value`` rounded to float32 (a Python float holding a float32 number).

    Rounding the double quotient of two integers to float32 gives the correctly rounded
    float32 quotient (double has more than 2*24+2 bits), i.e. C's ``(float)a / b``.
    """
    return struct.unpack("f", struct.pack("f", value))[0]


def grid_1d(n: int):
    """Autotune-aware 1-D grid over ``n`` elements."""
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "INTERPRET", "ELEMENTWISE_CONFIGS", "WIDE_CONFIGS", "elementwise_configs", "block_offsets",
    "unravel_nchw", "sigmoid", "needs_int64", "is_f64", "is_channels_last", "dense_in_layout_of",
    "fp32", "grid_1d", "cdiv",
]
