"""A batch norm after a 1x1 convolution, as the per-direction affine ``project_excite_shift`` takes.

The L-TDM ends in ``y_d = bn3(conv3(m_d))`` for its two directions d (docs/math.md §4), each a
separate call of the shared ``bn3``. The fused operator never forms the C-channel ``y_d``; it
takes ``bn3`` as ``scale[d] * (W @ m_d) + bias[d]``. This module computes those two affines
with exactly ``nn.BatchNorm2d``'s semantics:

* normalising with running statistics (eval mode): the same affine for both directions;
* normalising with batch statistics (training mode, or no running statistics): the batch mean
  and biased variance of each channel of ``y_d = W m_d + b`` follow from the mean and
  covariance of the ``c`` channels of ``m_d`` (``mean_y = W mean_m + b``, ``var_y[k] =
  w_k^T Cov(m_d) w_k``), computed with differentiable torch ops so that autograd carries the
  statistics' gradients as ``F.batch_norm`` does;
* running statistics updated as ``nn.BatchNorm2d.forward`` would for two calls, forward
  direction first: momentum or cumulative average (``momentum=None``), unbiased variance,
  ``num_batches_tracked``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["projected_batch_norm_affine"]


def _moments(weight: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel batch mean and biased variance of ``W m`` for ``m`` (B, c, H, W), and the
    number of values each was taken over."""
    c = m.shape[1]
    # (B*H*W, c): a view for channels_last input, a copy of c channels otherwise. Half types
    # are promoted: the statistics of the C-channel output hang on these c x c sums.
    stats_dtype = torch.float64 if m.dtype == torch.float64 else torch.float32
    samples = m.movedim(1, -1).reshape(-1, c).to(stats_dtype)
    count = samples.shape[0]
    mean_m = samples.mean(dim=0)
    centred = samples - mean_m
    cov = centred.t() @ centred / count
    w = weight.to(stats_dtype)
    mean_y = w @ mean_m
    var_y = ((w @ cov) * w).sum(dim=1)
    return mean_y, var_y, count


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor,
                          count: int) -> None:
    """One ``bn`` call's update of its running statistics from a batch's mean and biased
    variance (``num_batches_tracked`` is advanced by the caller, as nn.BatchNorm2d does)."""
    if bn.momentum is None:
        factor = 1.0 / float(bn.num_batches_tracked)
    else:
        factor = bn.momentum
    with torch.no_grad():
        unbiased = var.detach() * (count / (count - 1))
        bn.running_mean.mul_(1 - factor).add_(mean.detach().to(bn.running_mean.dtype),
                                              alpha=factor)
        bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)


def projected_batch_norm_affine(bn: nn.BatchNorm2d, weight: torch.Tensor,
                                conv_bias: torch.Tensor | None, mixed: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, bias)``, each (2, C), with ``scale[d] * (weight @ mixed[d]) + bias[d] ==
    bn(conv(mixed[d]))`` for d = 0, 1, where ``conv`` is the 1x1 convolution of ``weight``
    (C, c) and ``conv_bias`` (C,) or None; ``mixed`` is (2, B, c, H, W).

    Has ``bn``'s side effects of ``bn(conv(mixed[0]))`` followed by ``bn(conv(mixed[1]))``.
    """
    channels = weight.shape[0]
    gamma = bn.weight if bn.weight is not None else weight.new_ones(channels)
    beta = bn.bias if bn.bias is not None else weight.new_zeros(channels)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if not use_batch_stats:
        scale = gamma * torch.rsqrt(bn.running_var + bn.eps)
        # The convolution's bias is normalised with W m: it lands in the shift.
        centre = bn.running_mean if conv_bias is None else bn.running_mean - conv_bias
        shift = beta - centre * scale
        return _as(torch.stack([scale, scale]), mixed), _as(torch.stack([shift, shift]), mixed)

    updates_stats = bn.training and bn.track_running_stats
    scales, shifts = [], []
    for d in range(2):
        mean_y, var_y, count = _moments(weight, mixed[d])
        if count <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"input of shape {tuple(mixed[d].shape)}")
        if updates_stats:
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
            if bn.running_mean is not None:
                # The batch mean of bn's input W m + b; a bias does not change the variance.
                batch_mean = mean_y if conv_bias is None else mean_y + conv_bias.detach()
                _update_running_stats(bn, batch_mean, var_y, count)
        # (W m + b - mean(W m + b)) * scale + beta: the bias cancels.
        scale = gamma * torch.rsqrt(var_y + bn.eps)
        scales.append(scale)
        shifts.append(beta - mean_y * scale)
    return _as(torch.stack(scales), mixed), _as(torch.stack(shifts), mixed)


def _as(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype)
