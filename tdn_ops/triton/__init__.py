"""Triton kernels for the tdn_ops operators (``backend="triton"``).

``tdn_ops.triton.<op>(*args)`` takes the arguments positionally exactly as the native operator
``torch.ops.tdn_ops.<op>`` does, already checked (the public functions in :mod:`tdn_ops` do
that) and differentiable with respect to every tensor input.

* On CUDA tensors each operator is a ``torch.library.triton_op`` in the ``tdn_ops_triton``
  namespace with its backward registered, so torch.compile traces through it.
* Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors through a plain
  ``torch.autograd.Function`` (see :mod:`tdn_ops.triton._wiring`).

Modules, one per operator family: ``_pooling`` (temporal_diff_pool, cross_segment_diff),
``_upsample`` (multiscale_sum, lateral_fuse), ``_temporal`` (bidirectional_excitation,
temporal_shift_conv, excite_shift), ``_project`` (project_excite_shift).

Importing this package never fails: without an importable Triton, :data:`AVAILABLE` is False
(:data:`IMPORT_ERROR` says why) and the dispatcher falls back to other backends.
"""

from .._operators import OPERATORS

# The torch.library namespace of the triton_ops (set before the kernel modules import it).
NAMESPACE = "tdn_ops_triton"

IMPORT_ERROR: str | None = None
try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401
except Exception as exc:  # ImportError, or a broken installation failing at import
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

if IMPORT_ERROR is None:
    from ._common import INTERPRET
    from ._pooling import cross_segment_diff, temporal_diff_pool
    from ._project import project_excite_shift
    from ._temporal import bidirectional_excitation, excite_shift, temporal_shift_conv
    from ._upsample import lateral_fuse, multiscale_sum

    AVAILABLE = True
else:
    AVAILABLE = False
    INTERPRET = False

    def _unavailable(name):
        def op(*args, **kwargs):
            raise RuntimeError(f"tdn_ops.triton.{name} needs Triton, which cannot be imported "
                               f"({IMPORT_ERROR})")
        op.__name__ = op.__qualname__ = name
        return op

    # One stub per operator name, so that ``tdn_ops.triton.<op>`` exists either way.
    globals().update({name: _unavailable(name) for name in OPERATORS})

__all__ = ["AVAILABLE", "IMPORT_ERROR", "INTERPRET", "NAMESPACE", "OPERATORS", *OPERATORS]
