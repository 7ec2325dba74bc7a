"""Drop-in TDN layers built on the fused operators.

* :class:`LongTermTDM` - L-TDM (docs/math.md §4): cross-segment differences that excite the
  features.
* :class:`TemporalShift` - the learnable temporal shift (docs/math.md §5).
* :func:`long_term_tdm_shift` - L-TDM followed by the shift, fused from the L-TDM's 1x1
  projection on (``tdn_ops.project_excite_shift``): neither the C-channel excitation logits
  nor the excited tensor are written to memory. This is what a TDN bottleneck calls.
* :class:`FrameDifferencePool` and :class:`LateralFusion` - the two parameter-free pieces of the
  S-TDM (docs/math.md §2): the frame-difference input and the lateral connection into the RGB path.

Every layer takes ``backend=``: ``None`` or ``"auto"`` lets :mod:`tdn_ops` choose per device,
a concrete name (``"cpu"``, ``"cuda"``, ``"triton"``) demands that backend, and
``"reference"`` makes the layer follow the authors' code path op by op (per-direction
convolutions and batch norms, then the plain-PyTorch :mod:`tdn_ops.reference` functions). The
reference path is the baseline that the fused path is tested and benchmarked against.

Adding TDN's long-term modelling to someone else's network, e.g. a torchvision ResNet
bottleneck (the parameter names ``mse`` and ``shift`` are the ones the authors' checkpoints use)::

    import torch.nn as nn
    from torchvision.models.resnet import Bottleneck
    from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift

    class TDNBottleneck(Bottleneck):
        def __init__(self, *args, num_segments=8, **kwargs):
            super().__init__(*args, **kwargs)
            width = self.conv1.out_channels
            self.mse = LongTermTDM(width, num_segments)
            self.shift = TemporalShift(width, num_segments)

        def forward(self, x):                      # x: (N*T, C, H, W), segments of a video
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = long_term_tdm_shift(self.mse, self.shift, out)   # == self.shift(self.mse(out))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)
"""

from __future__ import annotations

import weakref

import torch
import torch.nn as nn

from . import reference
from ._dispatch import BACKENDS
from ._extension import has_native_kernel
from ._projected_bn import projected_batch_norm_affine
from .ops.bidirectional_excitation import bidirectional_excitation
from .ops.cross_segment_diff import cross_segment_diff
from .ops.lateral_fuse import lateral_fuse
from .ops.ltdm_mixture import ltdm_mixture
from .ops.multiscale_sum import multiscale_sum
from .ops.project_excite_shift import project_excite_shift
from .ops.temporal_diff_pool import temporal_diff_pool
from .ops.temporal_shift_conv import temporal_shift_conv

__all__ = [
    "LongTermTDM",
    "TemporalShift",
    "long_term_tdm_shift",
    "FrameDifferencePool",
    "LateralFusion",
]


def _check_backend(backend: str | None) -> str:
    if backend is None:
        return "auto"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    return backend


def _check_segments(num_segments: int) -> int:
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive int, got {num_segments!r}")
    return num_segments


def _check_features(name: str, x: torch.Tensor, channels: int, num_segments: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels or x.shape[0] % num_segments:
        raise ValueError(
            f"{name} expects (N*T, C, H, W) with C={channels} and N*T a multiple of "
            f"num_segments={num_segments}, got shape {tuple(x.shape)}")


# torch.export's non-strict tracing runs the module's Python eagerly (is_compiling() is False
# there): it must see the differentiable operators too, which every device has.
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)


@torch.compiler.assume_constant_result
def _has_mixture_kernel() -> bool:
    # A dispatcher-table lookup Dynamo cannot trace; it is fixed once tdn_ops._C has loaded,
    # and costs microseconds, so it is made once.
    global _MIXTURE_KERNEL
    if _MIXTURE_KERNEL is None:
        _MIXTURE_KERNEL = has_native_kernel("ltdm_mixture", "cpu")
    return _MIXTURE_KERNEL


_MIXTURE_KERNEL: bool | None = None


def _inference_kernel_applies(feat: torch.Tensor, convs: tuple[nn.Conv2d, ...]) -> bool:
    """Whether an inference operator (no backward) may compute from ``feat`` with the weights
    of ``convs``: nothing to differentiate, CPU float32/64 with the native kernel, no autocast,
    eagerly or under torch.compile (whose graphs run where they were compiled, and which
    guards on grad mode and ``requires_grad``). torch.export, tracing and ONNX export see the
    differentiable operators, which every device has."""
    if _is_exporting():
        return False
    if not torch.compiler.is_compiling() and (
            torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        return False
    if feat.device.type != "cpu" or feat.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (feat.requires_grad or any(
            p.requires_grad for conv in convs for p in conv.parameters(recurse=False))):
        return False
    return _has_mixture_kernel() and not torch.is_autocast_enabled("cpu")


def _is_same_3x3(conv: nn.Module, groups: int) -> bool:
    """``conv`` is the L-TDM's kind of 3x3 convolution: stride 1, padding 1, ``groups``."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == groups
            and conv.padding_mode == "zeros")


def _eval_conv_affine(conv: nn.Conv2d, bn: nn.Module
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(weight, bias)`` of ``bn(conv(v))`` as one convolution, for a batch norm in eval mode
    with running statistics or an identity (a batch norm already folded into ``conv``); None
    for anything else (a batch norm normalising with batch statistics)."""
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if isinstance(bn, nn.Identity):
        return weight, bias
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.training or \
            bn.running_mean is None:
        return None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return weight * scale.view(-1, 1, 1, 1), bias * scale + shift


class LongTermTDM(nn.Module):
    """Long-term temporal difference module (L-TDM, docs/math.md §4).

    Input ``x``: (N*T, C, H, W), the T segments of each video consecutive. ``forward`` returns
    ``x * (0.5 + 0.5*sigmoid(y_fwd) + 0.5*sigmoid(y_bwd))``; :meth:`excitation_logits` returns
    ``(y_fwd, y_bwd)`` so that a caller can fuse the excitation with what follows it
    (see :func:`long_term_tdm_shift`).

    The parameter names are the authors' (``conv1, bn1, conv2, conv3, bn3, conv3_smallscale2,
    bn3_smallscale2, conv3_smallscale4, bn3_smallscale4``), so their ``mse.*`` weights load.

    Batch-norm semantics follow the authors: each shared batch norm is applied once per
    direction, so in training mode the forward and backward differences are normalised with
    their own batch statistics and the running statistics are updated twice per call (forward
    direction first). In eval mode both directions go through each batch norm in one call,
    which gives identical results. Convolutions always run on both directions at once, except
    on the reference backend which calls them per direction like the authors' code.

    The fused tail (:meth:`excitation_affine`, used by :func:`long_term_tdm_shift`) keeps the
    same semantics for ``bn3`` without forming ``conv3``'s output: see
    :mod:`tdn_ops._projected_bn`.
    """

    def __init__(self, channels: int, num_segments: int, backend: str | None = None,
                 reduction: int = 16) -> None:
        super().__init__()
        if channels < reduction or channels % reduction:
            raise ValueError(f"channels must be a positive multiple of reduction={reduction}, "
                             f"got channels={channels}")
        self.channels = channels
        self.num_segments = _check_segments(num_segments)
        self.backend = _check_backend(backend)
        mid = channels // reduction
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        # Depthwise 3x3 that aligns each segment's features before they are differenced.
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, groups=mid, bias=False)
        self.conv3 = nn.Conv2d(mid, channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3_smallscale2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False)
        self.bn3_smallscale2 = nn.BatchNorm2d(mid)
        self.conv3_smallscale4 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False)
        self.bn3_smallscale4 = nn.BatchNorm2d(mid)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_segments={self.num_segments}, "
                f"backend={self.backend!r}")

    def _per_direction_bn(self, bn: nn.BatchNorm2d, both: torch.Tensor) -> torch.Tensor:
        """``bn`` on a (2*NT, ...) batch of [forward; backward] features (docs/math.md §4)."""
        if not self.training:
            return bn(both)
        fwd, bwd = both.chunk(2)
        return torch.cat([bn(fwd), bn(bwd)])

    def mixture(self, x: torch.Tensor) -> torch.Tensor:
        """(2, N*T, c, H, W): the multiscale mixture ``m`` of each direction ([0] forward,
        [1] backward), the input of ``conv3`` (fused backends). In eval mode with nothing to
        differentiate, on CPU, one inference operator (``ltdm_mixture``) computes it; otherwise
        the six differentiable operators below."""
        _check_features("LongTermTDM", x, self.channels, self.num_segments)
        b = self.bn1(self.conv1(x))
        mixed = self._inference_mixture(b)
        if mixed is not None:
            return mixed
        cb = self.conv2(b)
        diff, pooled = cross_segment_diff(b, cb, self.num_segments, backend=self.backend)
        # (2, NT, c, ...) -> (2*NT, c, ...): one convolution call serves both directions.
        diff, pooled = diff.flatten(0, 1), pooled.flatten(0, 1)
        small2 = self._per_direction_bn(self.bn3_smallscale2, self.conv3_smallscale2(pooled))
        small4 = self._per_direction_bn(self.bn3_smallscale4, self.conv3_smallscale4(diff))
        mixed = multiscale_sum(diff, small2, small4, backend=self.backend)
        return mixed.unflatten(0, (2, -1))

    def _inference_mixture(self, b: torch.Tensor) -> torch.Tensor | None:
        """The mixture by the one inference operator ``ltdm_mixture`` where it applies (eval
        mode, nothing to differentiate, CPU float32/64, eager or compiled), else None."""
        if self.training or self.backend not in ("auto", "cpu") or not _inference_kernel_applies(
                b, (self.conv2, self.conv3_smallscale2, self.conv3_smallscale4)):
            return None
        weights = self._mixture_weights(b.shape[1])
        if weights is None:
            return None
        return ltdm_mixture(b, *weights, self.num_segments, backend=self.backend)

    def _mixture_weights(self, c: int) -> tuple | None:
        """``ltdm_mixture``'s weight arguments (conv2, and each small-scale branch with its
        batch norm folded in), or None where the layers are not of the kinds it computes."""
        if not (_is_same_3x3(self.conv2, c) and _is_same_3x3(self.conv3_smallscale2, 1)
                and _is_same_3x3(self.conv3_smallscale4, 1)):
            return None
        small2 = _eval_conv_affine(self.conv3_smallscale2, self.bn3_smallscale2)
        small4 = _eval_conv_affine(self.conv3_smallscale4, self.bn3_smallscale4)
        if small2 is None or small4 is None:
            return None
        return (self.conv2.weight, self.conv2.bias, *small2, *small4)

    def excitation_affine(self, mixed: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(weight, scale, bias)`` with ``y_d = scale[d] * (weight @ mixed[d]) + bias[d]``:
        ``conv3`` as a (C, c) matrix and ``bn3`` as one affine per direction, computed (and
        ``bn3``'s running statistics updated) exactly as ``bn3(conv3(mixed[d]))`` for d = 0
        then 1 would. ``bn3`` may also be an ``nn.Identity`` (a batch norm folded into
        ``conv3``, whose bias then sits in ``bias``)."""
        weight = self.conv3.weight.flatten(1)
        conv_bias = self.conv3.bias
        if isinstance(self.bn3, nn.modules.batchnorm._BatchNorm):
            scale, bias = projected_batch_norm_affine(self.bn3, weight, conv_bias, mixed)
        elif isinstance(self.bn3, nn.Identity):
            scale = weight.new_ones(2, self.channels)
            bias = weight.new_zeros(2, self.channels) if conv_bias is None else (
                conv_bias.expand(2, -1))
            # Called like the module path would (an identity), so that a folded batch norm
            # (tdn.fold_batch_norm) still refuses to run in training mode.
            bias = self.bn3(bias)
        else:
            raise TypeError("LongTermTDM.bn3 must be a batch norm or nn.Identity, got "
                            f"{type(self.bn3).__name__}")
        return weight, scale, bias

    def excitation_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y_fwd, y_bwd)``, each (N*T, C, H, W): the pre-sigmoid excitations (docs/math.md
        §4)."""
        _check_features("LongTermTDM", x, self.channels, self.num_segments)
        if self.backend == "reference":
            return self._reference_logits(x)
        y = self.conv3(self.mixture(x).flatten(0, 1))
        y_fwd, y_bwd = y.chunk(2)
        if self.training:
            return self.bn3(y_fwd), self.bn3(y_bwd)
        y = self.bn3(y)
        return y.chunk(2)

    def _reference_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The authors' mSEModule.forward, op for op (same calls, same order: the order of the
        # two directions matters for the running statistics of the shared batch norms).
        # The split / subtract / pad / pool of the differences is the reference operator's.
        b = self.bn1(self.conv1(x))
        (fwd, bwd), (s2_fwd, s2_bwd) = reference.cross_segment_diff(b, self.conv2(b),
                                                                    self.num_segments)
        s2_fwd = self.bn3_smallscale2(self.conv3_smallscale2(s2_fwd))
        s2_bwd = self.bn3_smallscale2(self.conv3_smallscale2(s2_bwd))
        s4_fwd = self.bn3_smallscale4(self.conv3_smallscale4(fwd))
        s4_bwd = self.bn3_smallscale4(self.conv3_smallscale4(bwd))
        y_fwd = self.bn3(self.conv3(reference.multiscale_sum(fwd, s2_fwd, s4_fwd)))
        y_bwd = self.bn3(self.conv3(reference.multiscale_sum(bwd, s2_bwd, s4_bwd)))
        return y_fwd, y_bwd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_fwd, y_bwd = self.excitation_logits(x)
        if self.backend == "reference":
            return reference.bidirectional_excitation(x, y_fwd, y_bwd)
        return bidirectional_excitation(x, y_fwd, y_bwd, backend=self.backend)


class TemporalShift(nn.Module):
    """Learnable temporal shift (docs/math.md §5): a depthwise kernel-3 convolution over segments.

    The weight lives in a ``conv`` submodule (``nn.Conv1d(C, C, 3, groups=C, bias=False)``, as
    in the authors' ShiftModule) so that its state-dict key is ``conv.weight``, shape (C, 1, 3).
    It starts as TSM's shift: the first ``C // fold_div`` channels take from segment t+1, the
    next ``C // fold_div`` from t-1, the rest stay; it is trained with the network.
    """

    def __init__(self, channels: int, num_segments: int, backend: str | None = None,
                 fold_div: int = 8) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = channels
        self.num_segments = _check_segments(num_segments)
        self.backend = _check_backend(backend)
        self.fold_div = fold_div
        self.conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1, groups=channels,
                              bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fold = self.channels // self.fold_div
        with torch.no_grad():
            w = self.conv.weight
            w.zero_()
            w[:fold, 0, 2] = 1  # take from t+1
            w[fold:2 * fold, 0, 0] = 1  # take from t-1
            w[2 * fold:, 0, 1] = 1  # unchanged

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_segments={self.num_segments}, "
                f"backend={self.backend!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features("TemporalShift", x, self.channels, self.num_segments)
        if self.backend == "reference":
            return reference.temporal_shift_conv(x, self.conv.weight, self.num_segments)
        return temporal_shift_conv(x, self.conv.weight, self.num_segments, backend=self.backend)


def long_term_tdm_shift(ltdm: LongTermTDM, shift: TemporalShift, x: torch.Tensor) -> torch.Tensor:
    """``shift(ltdm(x))`` with the L-TDM's projection, batch norm, excitation and the shift
    fused into one pass.

    ``project_excite_shift`` reads ``x`` and the c-channel mixture of both directions and
    writes the shifted result directly: ``conv3``'s C-channel output, its normalised form and
    the excited tensor (each as large as ``x``) are never materialised, in the forward or the
    backward. ``bn3`` keeps its semantics (per-direction batch statistics in training, running
    statistics updated twice, forward direction first). On the reference backend this is
    literally ``shift(ltdm(x))``.
    """
    if ltdm.num_segments != shift.num_segments:
        raise ValueError(f"ltdm.num_segments={ltdm.num_segments} differs from "
                         f"shift.num_segments={shift.num_segments}")
    if ltdm.backend == "reference" or shift.backend == "reference":
        return shift(ltdm(x))
    _check_features("TemporalShift", x, shift.channels, shift.num_segments)
    if not ltdm.training and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
        plan = _inference_plan(ltdm, shift, x)
        if plan is not None:
            _check_features("LongTermTDM", x, ltdm.channels, ltdm.num_segments)
            mixed = ltdm_mixture(ltdm.bn1(ltdm.conv1(x)), *plan.mixture_weights,
                                 ltdm.num_segments, backend=ltdm.backend)
            return project_excite_shift(x, mixed, *plan.tail_weights, shift.num_segments,
                                        backend=shift.backend)
    mixed = ltdm.mixture(x)
    weight, scale, bias = ltdm.excitation_affine(mixed)
    return project_excite_shift(x, mixed, weight, scale, bias, shift.conv.weight,
                                shift.num_segments, backend=shift.backend)


# ----------------------------------------------------------------------- eager inference plans
#
# In eval mode without autograd, the arguments the L-TDM passes to its two operators besides
# the features (conv2's weights, the small-scale branches with their batch norms folded in,
# conv3 with bn3 as a per-direction affine, the shift weight) depend on the weights alone.
# Deriving them on every call took ~160 us of Python per block on the 2-core benchmark machine
# (36 nn.Module attribute lookups, the folding arithmetic, the checks of every weight) against
# 0.8-1.4 ms of kernels; a plan keeps them, keyed on everything they were derived from.


class _InferencePlan:
    __slots__ = ("key", "mixture_weights", "tail_weights")

    def __init__(self, key: tuple, mixture_weights: tuple | None, tail_weights: tuple | None):
        self.key, self.mixture_weights, self.tail_weights = key, mixture_weights, tail_weights


_PLANS: weakref.WeakKeyDictionary[LongTermTDM, _InferencePlan] = weakref.WeakKeyDictionary()


def _state_key(module: nn.Module, key: list) -> None:
    """Append what a plan derived from ``module`` depends on: each submodule (by identity) and
    its training flag, each parameter and buffer by identity, storage and version (bumped by
    every in-place change: optimiser steps, ``load_state_dict``; ``.to()`` swaps storage)."""
    stack = [module]
    while stack:
        mod = stack.pop()
        key.append(id(mod))
        key.append(mod.training)
        for tensors in (mod._parameters, mod._buffers):
            for t in tensors.values():
                if t is None:
                    key.append(None)
                else:
                    key.append(id(t))
                    key.append(t._version)
                    key.append(t.data_ptr())
        stack.extend(mod._modules.values())


def _inference_plan(ltdm: LongTermTDM, shift: TemporalShift, x: torch.Tensor
                    ) -> _InferencePlan | None:
    """The eager inference plan of ``ltdm`` and ``shift`` for features like ``x``, or None
    where the inference operator does not apply (then the general path runs)."""
    if ltdm.backend not in ("auto", "cpu") or not _inference_kernel_applies(x, ()):
        return None
    key = [x.dtype, x.device, torch.is_inference_mode_enabled(), ltdm.num_segments,
           shift.num_segments]
    try:
        _state_key(ltdm, key)
        _state_key(shift, key)
    except RuntimeError:  # weights made in inference mode have no version counter to key on
        return None
    key = tuple(key)
    plan = _PLANS.get(ltdm)
    if plan is None or plan.key != key:
        plan = _PLANS[ltdm] = _build_plan(ltdm, shift, x, key)
    return plan if plan.mixture_weights is not None else None


def _build_plan(ltdm: LongTermTDM, shift: TemporalShift, x: torch.Tensor,
                key: tuple) -> _InferencePlan:
    # Any submodule still in training mode (a batch norm normalising with batch statistics,
    # updating its running ones) needs the data: no plan.
    if any(m.training for m in ltdm.modules()) or any(m.training for m in shift.modules()):
        return _InferencePlan(key, None, None)
    if not isinstance(ltdm.conv2, nn.Conv2d):
        return _InferencePlan(key, None, None)
    mixture = ltdm._mixture_weights(ltdm.conv2.weight.shape[0])
    if mixture is None:
        return _InferencePlan(key, None, None)
    # excitation_affine reads only the dtype of the mixture in eval mode: x's.
    weight, scale, bias = ltdm.excitation_affine(x)
    return _InferencePlan(key, mixture, (weight, scale, bias, shift.conv.weight))


class FrameDifferencePool(nn.Module):
    """S-TDM input (docs/math.md §2 step 1): differences of consecutive frames, 2x2 average-pooled.

    ``x``: (B, frames*3, H, W) snippets -> (B, (frames-1)*3, H//k, W//k). Parameter-free.
    """

    def __init__(self, frames: int = 5, kernel_size: int = 2, backend: str | None = None) -> None:
        super().__init__()
        if frames < 2:
            raise ValueError(f"frames must be at least 2, got {frames}")
        self.frames = frames
        self.kernel_size = kernel_size
        self.backend = _check_backend(backend)

    def extra_repr(self) -> str:
        return f"frames={self.frames}, kernel_size={self.kernel_size}, backend={self.backend!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "reference":
            return reference.temporal_diff_pool(x, self.frames, self.kernel_size)
        return temporal_diff_pool(x, self.frames, self.kernel_size, backend=self.backend)


class LateralFusion(nn.Module):
    """S-TDM lateral connection (docs/math.md §2 step 4): ``alpha*x + beta*up(d, like=x)``.

    ``d`` (motion features, any spatial size) is nearest-upsampled to ``x``'s size. TDN uses
    ``(alpha, beta) = (0.5, 0.5)`` with 8 segments and ``(0.75, 0.25)`` otherwise.
    """

    def __init__(self, alpha: float, beta: float, backend: str | None = None) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.backend = _check_backend(backend)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, backend={self.backend!r}"

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        if self.backend == "reference":
            return reference.lateral_fuse(x, d, self.alpha, self.beta)
        return lateral_fuse(x, d, self.alpha, self.beta, backend=self.backend)
