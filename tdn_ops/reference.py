"""Plain-PyTorch references for every fused operator.

Each function follows the code path of the authors' TDN modules (docs/math.md §2, §4, §5):
the same sequence of small ops, in the same order, so that it reproduces their numerics. They
are the ground truth for tests and the baseline for benchmarks, and the ``"reference"`` backend
of the public operators. Autograd comes from PyTorch itself, so they also provide double backward.

No argument checking happens here: the public operators in :mod:`tdn_ops` validate first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._operators import INFERENCE_OPERATORS, OPERATORS

__all__ = list(OPERATORS) + list(INFERENCE_OPERATORS)


def temporal_diff_pool(x: torch.Tensor, frames: int = 5, kernel_size: int = 2) -> torch.Tensor:
    """S-TDM step 1: ``avgpool_k(cat([x2-x1, x3-x2, ...]))`` on a (B, frames*c, H, W) stack."""
    chunks = torch.chunk(x, frames, dim=1)
    diffs = torch.cat([chunks[i + 1] - chunks[i] for i in range(frames - 1)], dim=1)
    return F.avg_pool2d(diffs, kernel_size=kernel_size, stride=kernel_size)


def cross_segment_diff(
    feat: torch.Tensor, aligned: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """L-TDM differences: split / subtract / zero-pad / avgpool as in the authors' mSEModule."""
    t = num_segments
    feat5 = feat.reshape((-1, t) + feat.shape[1:])
    aligned5 = aligned.reshape((-1, t) + aligned.shape[1:])
    feat_fwd, _ = feat5.split([t - 1, 1], dim=1)
    _, feat_bwd = feat5.split([1, t - 1], dim=1)
    _, next_fwd = aligned5.split([1, t - 1], dim=1)
    prev_bwd, _ = aligned5.split([t - 1, 1], dim=1)
    fwd = F.pad(next_fwd - feat_fwd, (0, 0, 0, 0, 0, 0, 0, 1), mode="constant", value=0)
    bwd = F.pad(prev_bwd - feat_bwd, (0, 0, 0, 0, 0, 0, 1, 0), mode="constant", value=0)
    fwd = fwd.reshape((-1,) + fwd.shape[2:])
    bwd = bwd.reshape((-1,) + bwd.shape[2:])
    diff = torch.stack([fwd, bwd], dim=0)
    pooled = torch.stack([F.avg_pool2d(fwd, 2, 2), F.avg_pool2d(bwd, 2, 2)], dim=0)
    return diff, pooled


def _upsample_like(small: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(mode="nearest")`` to ``like``'s spatial size, for any leading dims."""
    lead = small.shape[:-3]
    small4 = small.reshape((-1,) + small.shape[-3:])
    up = F.interpolate(small4, size=like.shape[-2:], mode="nearest")
    return up.reshape(lead + up.shape[1:])


def multiscale_sum(
    diff: torch.Tensor, pooled_branch: torch.Tensor, full_branch: torch.Tensor
) -> torch.Tensor:
    """``1/3*diff + 1/3*up(pooled_branch) + 1/3*full_branch``, the authors' weighted sum."""
    up = _upsample_like(pooled_branch, diff)
    return 1.0 / 3.0 * diff + 1.0 / 3.0 * up + 1.0 / 3.0 * full_branch


def bidirectional_excitation(
    x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor
) -> torch.Tensor:
    """``x + x*(sigmoid(y_fwd)-0.5)*0.5 + x*(sigmoid(y_bwd)-0.5)*0.5`` (L-TDM output)."""
    g_fwd = torch.sigmoid(y_fwd) - 0.5
    g_bwd = torch.sigmoid(y_bwd) - 0.5
    return x + x * g_fwd * 0.5 + x * g_bwd * 0.5


def temporal_shift_conv(x: torch.Tensor, weight: torch.Tensor, num_segments: int) -> torch.Tensor:
    """The authors' ShiftModule: permute to (N*H*W, C, T), depthwise Conv1d(k=3, pad=1), back."""
    nt, c, h, w = x.shape
    n = nt // num_segments
    x5 = x.reshape(n, num_segments, c, h, w).permute(0, 3, 4, 2, 1)
    x3 = x5.contiguous().view(n * h * w, c, num_segments)
    y3 = F.conv1d(x3, weight, bias=None, stride=1, padding=1, groups=c)
    y5 = y3.view(n, h, w, c, num_segments).permute(0, 4, 3, 1, 2)
    return y5.contiguous().view(nt, c, h, w)


def excite_shift(
    x: torch.Tensor,
    y_fwd: torch.Tensor,
    y_bwd: torch.Tensor,
    weight: torch.Tensor,
    num_segments: int,
) -> torch.Tensor:
    """End of a TDN bottleneck's L-TDM followed by its temporal shift."""
    return temporal_shift_conv(bidirectional_excitation(x, y_fwd, y_bwd), weight, num_segments)


def project_excite_shift(
    x: torch.Tensor,
    mixed: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    shift_weight: torch.Tensor,
    num_segments: int,
) -> torch.Tensor:
    """The end of an L-TDM as the authors compute it: ``conv3`` (1x1) of each direction's
    mixture, ``bn3`` as the affine ``scale[d]*v + bias[d]``, the excitation and the shift."""
    kernel = weight[:, :, None, None]
    y_fwd = F.conv2d(mixed[0], kernel) * scale[0, :, None, None] + bias[0, :, None, None]
    y_bwd = F.conv2d(mixed[1], kernel) * scale[1, :, None, None] + bias[1, :, None, None]
    return excite_shift(x, y_fwd, y_bwd, shift_weight, num_segments)


def lateral_fuse(x: torch.Tensor, d: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """S-TDM lateral connection: ``alpha*x + beta*interpolate(d, x.size()[2:])``."""
    return alpha * x + beta * F.interpolate(d, size=x.shape[2:], mode="nearest")


def ltdm_mixture(
    feat: torch.Tensor,
    align_weight: torch.Tensor,
    align_bias: torch.Tensor | None,
    pooled_weight: torch.Tensor,
    pooled_bias: torch.Tensor,
    full_weight: torch.Tensor,
    full_bias: torch.Tensor,
    num_segments: int,
) -> torch.Tensor:
    """The L-TDM's multiscale mixture of both directions, (2, N*T, c, H, W), from
    ``feat = bn1(conv1(x))``: ``conv2``, the differences, the two small-scale branches (their
    batch norms folded into ``*_weight`` and ``*_bias``) and their sum, as the module computes
    them in eval mode."""
    aligned = F.conv2d(feat, align_weight, align_bias, padding=1, groups=feat.shape[1])
    diff, pooled = cross_segment_diff(feat, aligned, num_segments)
    diff, pooled = diff.flatten(0, 1), pooled.flatten(0, 1)
    small2 = F.conv2d(pooled, pooled_weight, pooled_bias, padding=1)
    small4 = F.conv2d(diff, full_weight, full_bias, padding=1)
    return multiscale_sum(diff, small2, small4).unflatten(0, (2, -1))
