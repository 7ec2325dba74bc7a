"""The names of the fused operators: the one list every part of tdn_ops reads.

The references (:mod:`tdn_ops.reference`), the Triton kernels (:mod:`tdn_ops.triton`), the
dispatcher and the tests take their operator names from here; each name is also a module
``tdn_ops/ops/<name>.py`` and a native operator ``torch.ops.tdn_ops.<name>`` (with
``<name>_backward``). Adding an operator starts with this tuple (see docs/design.md).

:data:`INFERENCE_OPERATORS` are native operators without a backward, used where no gradient is
wanted (eval mode under ``torch.no_grad``); they have a reference and a CPU kernel, and the
modules fall back to the differentiable operators everywhere else.
"""

OPERATORS = (
    "temporal_diff_pool",
    "cross_segment_diff",
    "multiscale_sum",
    "bidirectional_excitation",
    "temporal_shift_conv",
    "excite_shift",
    "lateral_fuse",
    "project_excite_shift",
)

INFERENCE_OPERATORS = (
    "ltdm_mixture",
)
