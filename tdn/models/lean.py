"""Lean training on a CPU: the same values and gradients as the plain modules, fewer activations
kept for the backward and no slow layout round trips (docs/design.md, "Lean training").

A ResNet keeps two tensors per ``conv -> batch norm -> ReLU`` for its backward: the batch norm's
input ``z`` and the ReLU's output ``relu(bn(z))`` (which the next convolution or pooling reads
again). The second is a cheap function of the first and of the batch statistics, so
:func:`bn_relu_conv` and :func:`bn_relu_max_pool` keep only ``z`` and recompute the ReLU output
in the backward, where it is needed for one kernel and then freed: one elementwise pass instead
of a whole activation held from the forward to the backward. Every kernel is the one autograd
would call (``native_batch_norm`` and its backward, ``threshold_backward``,
``convolution_backward``, ``max_pool2d_with_indices`` and its backward), so results agree with
the plain modules to rounding of the recomputed ReLU input (bitwise in practice).

:func:`strided_shortcut` is a 1x1 stride-s projection computed as a stride-1 convolution of
the subsampled input: PyTorch's CPU convolution backward copies the input of a strided
convolution to channels_last first (25 ms of a TDN-ResNet50 training step for the layer-2
shortcut alone on the 2-core benchmark machine), which a stride-1 convolution does not. The
values are the strided convolution's (bitwise at TDN's shapes; oneDNN may pick another
algorithm, and round differently, for others).

Every function takes the plain modules' path whenever its own would not be exact or not faster:
under ``torch.compile`` (Inductor plans its own recomputation), autocast, tracing and export,
without autograd, off the CPU (not measured on a GPU), and when a module has hooks (they would
not run) or is not the plain ``nn`` class (a folded or synchronised batch norm).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _module

from tdn_ops._layout import memory_format_of

__all__ = ["bn_relu_conv", "bn_relu_max_pool", "strided_shortcut", "lean_path_available",
           "set_lean_training"]


def _hooked(*modules: nn.Module) -> bool:
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks
            or _module._global_backward_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               or m._backward_pre_hooks for m in modules)


def lean_path_available(z: torch.Tensor, *modules: nn.Module) -> bool:
    """True when a lean function may replace ``modules`` applied to ``z`` (module docstring)."""
    if torch.compiler.is_compiling():  # first, so that Dynamo folds the rest away
        return False
    return (z.device.type == "cpu" and z.dim() == 4 and z.requires_grad
            and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
            and not _hooked(*modules))


# ---------------------------------------------------------------------------------- batch norm

def _plain_batch_norm(bn: nn.Module) -> bool:
    return type(bn) is nn.BatchNorm2d


def _batch_norm_forward(bn: nn.BatchNorm2d, z: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """``bn(z)`` with the batch statistics it used, updating the running statistics exactly as
    ``nn.BatchNorm2d.forward`` does. Returns (output, mean, invstd, used batch statistics)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    running_mean = bn.running_mean if not bn.training or bn.track_running_stats else None
    running_var = bn.running_var if not bn.training or bn.track_running_stats else None
    out, mean, invstd = torch.ops.aten.native_batch_norm(
        z, bn.weight, bn.bias, running_mean, running_var, batch_stats, factor, bn.eps)
    return out, mean, invstd, batch_stats


class _BatchNormReLUThen(torch.autograd.Function):
    """``after(relu(bn(z)))`` keeping ``z`` (and what ``after`` keeps) instead of the ReLU
    output. ``after`` is a :class:`_Conv` or :class:`_MaxPool` step."""

    @staticmethod
    def forward(ctx, z, bn_weight, bn_bias, after_weight, after_bias, bn, after):
        y, mean, invstd, batch_stats = _batch_norm_forward(bn, z)
        y.relu_()
        out, kept = after.forward(y, after_weight, after_bias)
        ctx.bn_eps, ctx.batch_stats, ctx.after = bn.eps, batch_stats, after
        ctx.running = (bn.running_mean, bn.running_var)
        ctx.save_for_backward(z, bn_weight, bn_bias, mean, invstd, after_weight, *kept)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        z, bn_weight, bn_bias, mean, invstd, after_weight, *kept = ctx.saved_tensors
        running_mean, running_var = ctx.running
        y = _recompute_relu_input(z, bn_weight, bn_bias, mean, invstd, running_mean,
                                  running_var, ctx.bn_eps, ctx.batch_stats).relu_()
        need = ctx.needs_input_grad
        grad_y, grad_after_w, grad_after_b = ctx.after.backward(
            grad_out, y, after_weight, kept, need[3], need[4])
        grad_y = torch.ops.aten.threshold_backward(grad_y, y, 0)
        del y
        grad_z, grad_bn_w, grad_bn_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, z, bn_weight, running_mean, running_var, mean, invstd, ctx.batch_stats,
            ctx.bn_eps, [need[0], need[1] and bn_weight is not None,
                         need[2] and bn_bias is not None])
        return grad_z, grad_bn_w, grad_bn_b, grad_after_w, grad_after_b, None, None


def _recompute_relu_input(z, weight, bias, mean, invstd, running_mean, running_var, eps,
                          batch_stats):
    """``bn(z)`` again from the statistics the forward used (no running-statistics update)."""
    if not batch_stats:
        mean, invstd = running_mean, torch.rsqrt(running_var + eps)
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    shape = (1, -1, 1, 1)
    return torch.addcmul(shift.view(shape), z, scale.view(shape))


class _Conv:
    """The convolution after the ReLU (zero padding, numeric padding)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups

    def forward(self, y, weight, bias):
        return F.conv2d(y, weight, bias, self.stride, self.padding, self.dilation,
                        self.groups), ()

    def backward(self, grad_out, y, weight, kept, need_weight, need_bias):
        return torch.ops.aten.convolution_backward(
            grad_out, y, weight, [weight.shape[0]] if need_bias else None,
            list(self.stride), list(self.padding), list(self.dilation), False, [0, 0],
            self.groups, [True, need_weight, need_bias])


class _MaxPool:
    """The stem's max pooling after the ReLU, run in channels_last on the CPU (an order of
    magnitude faster than on contiguous maps) and keeping only its indices."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        self.args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)

    def forward(self, y, weight, bias):
        fmt = torch.channels_last
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            y.contiguous(memory_format=fmt), *self._lists())
        return out.contiguous(memory_format=memory_format_of(y)), (indices,)

    def backward(self, grad_out, y, weight, kept, need_weight, need_bias):
        # The indices are positions within a plane, the same in either layout; the backward
        # (a scatter) is fast in both, so it runs in the recomputed input's layout.
        (indices,) = kept
        fmt = memory_format_of(y)
        grad = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out.contiguous(memory_format=fmt), y, *self._lists(),
            indices.contiguous(memory_format=fmt))
        return grad, None, None

    def _lists(self):
        kernel, stride, padding, dilation, ceil_mode = self.args
        pair = torch.nn.modules.utils._pair
        return (list(pair(kernel)), list(pair(stride)), list(pair(padding)),
                list(pair(dilation)), ceil_mode)


# ------------------------------------------------------------------------------------ public

def bn_relu_conv(z: torch.Tensor, bn: nn.Module, relu: nn.Module,
                 conv: nn.Module) -> torch.Tensor:
    """``conv(relu(bn(z)))``, keeping ``z`` rather than the ReLU output for the backward."""
    if (lean_path_available(z, bn, relu, conv) and _plain_batch_norm(bn) and type(relu) is nn.ReLU
            and type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)):
        return _BatchNormReLUThen.apply(z, bn.weight, bn.bias, conv.weight, conv.bias, bn,
                                        _Conv(conv))
    return conv(relu(bn(z)))


def bn_relu_max_pool(z: torch.Tensor, bn: nn.Module, relu: nn.Module,
                     pool: nn.Module) -> torch.Tensor:
    """``pool(relu(bn(z)))`` for a max pool, keeping ``z`` and the pooling indices."""
    if (lean_path_available(z, bn, relu, pool) and _plain_batch_norm(bn)
            and type(relu) is nn.ReLU and isinstance(pool, nn.MaxPool2d)
            and not pool.return_indices):
        return _BatchNormReLUThen.apply(z, bn.weight, bn.bias, None, None, bn, _MaxPool(pool))
    return pool(relu(bn(z)))


def strided_shortcut(shortcut: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``shortcut(x)`` for ResNet's projection shortcut (a 1x1 stride-s convolution then a
    batch norm), the convolution computed on ``x[..., ::s, ::s]`` with stride 1."""
    if isinstance(shortcut, nn.Sequential) and len(shortcut) == 2:
        conv, bn = shortcut[0], shortcut[1]
        if (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.padding == (0, 0)
                and conv.stride != (1, 1) and conv.dilation == (1, 1)
                and lean_path_available(x, shortcut, conv)):
            sh, sw = conv.stride
            return bn(F.conv2d(x[:, :, ::sh, ::sw], conv.weight, conv.bias, 1, 0, 1,
                               conv.groups))
    return shortcut(x)


def set_lean_training(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch lean training on or off in every block and stem of ``model`` (the modules with a
    ``lean`` attribute); returns ``model``. TDN models built with a fused backend and TSN
    models have it on; the ``reference`` TDN keeps the authors' plain modules. Switch it off to
    take a gradient of a gradient (the lean backward is once-differentiable)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    for module in model.modules():
        if hasattr(type(module), "lean"):
            module.lean = enabled
    return model
