"""The seven fused operators written with standard ONNX operators (opset 18).

``torch.onnx.export`` keeps each ``torch.ops.tdn_ops.*`` call as one node of the exported
program; :data:`TRANSLATIONS` tells the exporter which ONNX subgraph stands for it. Each
translation computes the operator's math (docs/math.md §2, §4, §5) with a few whole-tensor ops
instead of the reference's chain of chunks, concatenations and permutes:

* the frame differences are one channel-shifted subtraction (consecutive chunks of the stack
  differ by a slice offset of one chunk), taken after the 2x2 average pooling, which is linear
  and so commutes with the difference, on a quarter of the pixels;
* the temporal shift is three weighted slices of the segment axis instead of the authors'
  permute / depthwise ``Conv1d`` / permute (two transposes of the whole feature map);
* the excitation ``x + x*(s(a)-0.5)*0.5 + x*(s(b)-0.5)*0.5`` is ``0.5*x*(1 + s(a) + s(b))``.

Every translation takes the shapes of the tensors it is given as traced: the batch axis (N*T)
may be dynamic, the channel and spatial sizes are fixed when the model is exported.
"""

from __future__ import annotations

import torch
from onnxscript import opset18 as op

OPSET = 18


def _fixed_dims(name: str, value, dims: slice) -> list[int]:
    """The sizes ``value.shape[dims]``, which must be known when the graph is built."""
    shape = list(value.shape)[dims]
    sizes = [d if isinstance(d, int) else getattr(d, "value", None) for d in shape]
    if not all(isinstance(d, int) for d in sizes):
        raise ValueError(f"{name}: export needs fixed channel and spatial sizes, got shape "
                         f"{value.shape} (only the batch axis may be dynamic)")
    return sizes


def _slice(x, start: int, end: int, axis: int):
    return op.Slice(x, [start], [end], [axis])


def _nearest_resize(small, like_spatial):
    """PyTorch's ``F.interpolate(mode="nearest")`` of ``small`` to the spatial size of
    ``like_spatial`` (source index ``floor(i * in / out)``)."""
    sizes = op.Concat(op.Shape(small, end=-2), op.Shape(like_spatial, start=-2), axis=0)
    return op.Resize(small, None, None, sizes, mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def temporal_diff_pool(x, frames: int, kernel_size: int):
    channels = _fixed_dims("temporal_diff_pool", x, slice(1, 2))[0]
    chunk = channels // frames
    pooled = op.AveragePool(x, kernel_shape=[kernel_size, kernel_size],
                            strides=[kernel_size, kernel_size])
    return op.Sub(_slice(pooled, chunk, channels, 1), _slice(pooled, 0, channels - chunk, 1))


def cross_segment_diff(feat, aligned, num_segments: int):
    c, h, w = _fixed_dims("cross_segment_diff", feat, slice(1, 4))
    t = num_segments
    videos = [-1, t, c, h, w]
    feat5, aligned5 = op.Reshape(feat, videos), op.Reshape(aligned, videos)
    # forward: aligned[t+1] - feat[t], zero for the last segment; backward: aligned[t-1] -
    # feat[t], zero for the first.
    fwd = op.Sub(_slice(aligned5, 1, t, 1), _slice(feat5, 0, t - 1, 1))
    bwd = op.Sub(_slice(aligned5, 0, t - 1, 1), _slice(feat5, 1, t, 1))
    fwd = op.Pad(fwd, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    bwd = op.Pad(bwd, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    both = op.Concat(op.Unsqueeze(fwd, [0]), op.Unsqueeze(bwd, [0]), axis=0)
    diff = op.Reshape(both, [2, -1, c, h, w])
    pooled = op.AveragePool(op.Reshape(both, [-1, c, h, w]), kernel_shape=[2, 2], strides=[2, 2])
    return diff, op.Reshape(pooled, [2, -1, c, h // 2, w // 2])


def multiscale_sum(diff, pooled_branch, full_branch):
    total = op.Add(op.Add(diff, _nearest_resize(pooled_branch, diff)), full_branch)
    return op.Mul(total, op.CastLike(1.0 / 3.0, diff))


def bidirectional_excitation(x, y_fwd, y_bwd):
    gate = op.Add(op.Add(op.Sigmoid(y_fwd), op.Sigmoid(y_bwd)), op.CastLike(1.0, x))
    return op.Mul(op.Mul(x, gate), op.CastLike(0.5, x))


def temporal_shift_conv(x, weight, num_segments: int):
    return _shift(x, weight, num_segments, _fixed_dims("temporal_shift_conv", x, slice(1, 4)))


def _shift(x, weight, t: int, dims: list[int]):
    c, h, w = dims
    # (N*T, C, H, W) -> (N, T, C, H*W), one zero segment either side: padded[s] = x[s-1].
    padded = op.Pad(op.Reshape(x, [-1, t, c, h * w]), [0, 1, 0, 0, 0, 1, 0, 0])
    # The depthwise kernel-3 convolution with padding 1: y[s] = sum_k weight[:, 0, k] x[s+k-1].
    out = None
    for k in range(3):
        tap = op.Reshape(_slice(weight, k, k + 1, 2), [1, 1, c, 1])
        term = op.Mul(_slice(padded, k, k + t, 1), tap)
        out = term if out is None else op.Add(out, term)
    return op.Reshape(out, [-1, c, h, w])


def excite_shift(x, y_fwd, y_bwd, weight, num_segments: int):
    # Intermediate values carry no shape while the graph is built: take the sizes from x.
    dims = _fixed_dims("excite_shift", x, slice(1, 4))
    return _shift(bidirectional_excitation(x, y_fwd, y_bwd), weight, num_segments, dims)


def lateral_fuse(x, d, alpha: float, beta: float):
    scaled_x = op.Mul(x, op.CastLike(alpha, x))
    return op.Add(scaled_x, op.Mul(_nearest_resize(d, x), op.CastLike(beta, x)))


def project_excite_shift(x, mixed, weight, scale, bias, shift_weight, num_segments: int):
    """The L-TDM's projection ``y_d = scale[d] * (weight @ mixed[d]) + bias[d]`` (a 1x1
    convolution of both directions at once), then :func:`excite_shift`."""
    dims = _fixed_dims("project_excite_shift", x, slice(1, 4))
    channels, mid = _fixed_dims("project_excite_shift", weight, slice(0, 2))
    c, h, w = _fixed_dims("project_excite_shift", mixed, slice(2, 5))
    both = op.Conv(op.Reshape(mixed, [-1, c, h, w]), op.Reshape(weight, [channels, mid, 1, 1]))
    both = op.Reshape(both, [2, -1, channels, h, w])
    y = op.Add(op.Mul(both, op.Reshape(scale, [2, 1, channels, 1, 1])),
               op.Reshape(bias, [2, 1, channels, 1, 1]))
    y_fwd = op.Squeeze(_slice(y, 0, 1, 0), [0])
    y_bwd = op.Squeeze(_slice(y, 1, 2, 0), [0])
    return _shift(bidirectional_excitation(x, y_fwd, y_bwd), shift_weight, num_segments, dims)


_FUNCTIONS = (temporal_diff_pool, cross_segment_diff, multiscale_sum, bidirectional_excitation,
              temporal_shift_conv, excite_shift, lateral_fuse, project_excite_shift)


def translation_table() -> dict:
    """``{torch.ops.tdn_ops.<name>.default: translation}`` for ``torch.onnx.export``, for
    every operator this build of ``tdn_ops`` registers."""
    import tdn_ops  # noqa: F401  (registers the operators)

    return {getattr(torch.ops.tdn_ops, f.__name__).default: f for f in _FUNCTIONS
            if hasattr(torch.ops.tdn_ops, f.__name__)}
