"""tdn_ops: fused operators for Temporal Difference Networks (TDN, CVPR 2021).

Eight operators replace the chains of small PyTorch ops in TDN's short- and long-term temporal
difference modules, and one inference operator (``ltdm_mixture``, no backward) fuses the
L-TDM's multiscale mixture where no gradient is wanted (see docs/math.md §6, docs/design.md
and README):

>>> import torch, tdn_ops
>>> x = torch.randn(16, 64, 14, 14)                       # N*T = 2 videos x 8 segments
>>> w = torch.zeros(64, 1, 3); w[:, 0, 1] = 1             # identity temporal shift
>>> y = tdn_ops.excite_shift(x, torch.randn_like(x), torch.randn_like(x), w, num_segments=8)

Each takes ``backend=`` ("auto", "reference", "cpu", "cuda", "triton"); see
:mod:`tdn_ops._dispatch` for how "auto" chooses.
"""

from . import reference
from ._dispatch import BACKENDS, available_backends
from ._extension import NATIVE_AVAILABLE
from ._operators import INFERENCE_OPERATORS, OPERATORS
from .ops.bidirectional_excitation import (BidirectionalExcitationFunction,
                                           bidirectional_excitation)
from .ops.cross_segment_diff import CrossSegmentDiffFunction, cross_segment_diff
from .ops.excite_shift import ExciteShiftFunction, excite_shift
from .ops.lateral_fuse import LateralFuseFunction, lateral_fuse
from .ops.ltdm_mixture import ltdm_mixture
from .ops.multiscale_sum import MultiscaleSumFunction, multiscale_sum
from .ops.project_excite_shift import ProjectExciteShiftFunction, project_excite_shift
from .ops.temporal_diff_pool import TemporalDiffPoolFunction, temporal_diff_pool
from .ops.temporal_shift_conv import TemporalShiftConvFunction, temporal_shift_conv

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "OPERATORS",
    "INFERENCE_OPERATORS",
    "NATIVE_AVAILABLE",
    "available_backends",
    "reference",
    *OPERATORS,
    *INFERENCE_OPERATORS,
    "TemporalDiffPoolFunction",
    "CrossSegmentDiffFunction",
    "MultiscaleSumFunction",
    "BidirectionalExcitationFunction",
    "TemporalShiftConvFunction",
    "ExciteShiftFunction",
    "LateralFuseFunction",
    "ProjectExciteShiftFunction",
]

# Drop-in layers (imported last: they use the operators above).
from . import nn  # noqa: E402
