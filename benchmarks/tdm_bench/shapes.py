"""Where each fused operator runs inside TDN-ResNet50, and at which tensor shapes.

Geometry of TDN-ResNet50 on (N*T, 15, R, R) clips (docs/math.md §2-§4), worked out for R = 224:

S-TDM (the stem, once per clip)
    temporal_diff_pool   x (NT, 15, 224, 224) -> D (NT, 12, 112, 112)
    conv1_5 (7x7/2) + maxpool(3/2): d1 (NT, 64, 28, 28); the RGB stem gives x (NT, 64, 56, 56)
    lateral_fuse #1      x (NT, 64, 56, 56)  with d1 (NT, 64, 28, 28)
    layer1 on both:      x (NT, 256, 56, 56), d2 (NT, 256, 28, 28)
    lateral_fuse #2      x (NT, 256, 56, 56) with d2 (NT, 256, 28, 28)

L-TDM + temporal shift (every bottleneck of layer2..layer4). The L-TDM sits after the block's
1x1 conv1 and *before* conv2, which carries the stride, so it sees the block's input resolution:
the first block of a stage runs at the previous stage's size, the others at the stage's own.

    stage   planes  c=planes/16  blocks  first block  other blocks
    layer2   128       8           4      56x56        28x28 (x3)
    layer3   256      16           6      28x28        14x14 (x5)
    layer4   512      32           3      14x14         7x7  (x2)

    cross_segment_diff        feat, aligned (NT, c, H, W)
    multiscale_sum            diff, full (2, NT, c, H, W), pooled_branch (2, NT, c, H//2, W//2)
    bidirectional_excitation  x, y_fwd, y_bwd (NT, planes, H, W)
    temporal_shift_conv       x (NT, planes, H, W), weight (planes, 1, 3)
    excite_shift              x, y_fwd, y_bwd (NT, planes, H, W), weight (planes, 1, 3)
    project_excite_shift      x (NT, planes, H, W), mixed (2, NT, c, H, W), weight (planes, c),
                              scale, bias (2, planes), shift_weight (planes, 1, 3)
    ltdm_mixture (inference)  feat (NT, c, H, W), align_weight (c, 1, 3, 3), align_bias,
                              pooled_bias, full_bias (c,), pooled_weight, full_weight (c, c, 3, 3)

A *site* names one of these places: "stdm.input", "stdm.fuse1", "stdm.fuse2", and "layerK"
(the typical block of stage K, which is most of the stage's blocks) or "layerK.0" (its first).
Spatial sizes are computed from R with the convolution formulas, so other resolutions work too.
"""

from __future__ import annotations

from dataclasses import dataclass

REDUCTION = 16          # L-TDM channel reduction r (docs/math.md §4)
SNIPPET_FRAMES = 5      # frames per segment (docs/math.md §1)


@dataclass(frozen=True)
class Stage:
    name: str
    planes: int
    blocks: int


STAGES = (Stage("layer2", 128, 4), Stage("layer3", 256, 6), Stage("layer4", 512, 3))


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def stem_size(resolution: int) -> int:
    """Spatial size after conv1 (7x7/2, pad 3) and maxpool (3/2, pad 1): 56 for 224."""
    return _conv_out(_conv_out(resolution, 7, 2, 3), 3, 2, 1)


def diff_stem_size(resolution: int) -> int:
    """Spatial size of d1/d2: avgpool2, then conv1_5 (7x7/2) and maxpool: 28 for 224."""
    return stem_size(resolution // 2)


def stage_sizes(resolution: int) -> dict[str, tuple[int, int]]:
    """(first block, other blocks) L-TDM spatial size of each stage."""
    sizes = {}
    size = stem_size(resolution)                     # layer1 keeps the stem's size
    for stage in STAGES:
        out = _conv_out(size, 3, 2, 1)               # conv2 (3x3/2) of the stage's first block
        sizes[stage.name] = (size, out)
        size = out
    return sizes


@dataclass(frozen=True)
class Geometry:
    """A batch of ``videos`` clips of ``segments`` snippets at ``resolution`` x ``resolution``."""

    videos: int
    segments: int = 8
    resolution: int = 224

    def __post_init__(self) -> None:
        for name in ("videos", "segments", "resolution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Geometry.{name} must be a positive int, got {value!r}")
        if stage_sizes(self.resolution)["layer4"][1] < 2:
            raise ValueError(f"Geometry.resolution={self.resolution} is too small: layer4 must "
                             "keep at least 2x2 pixels for the L-TDM's 2x2 pooling (use >= 64)")

    @property
    def batch(self) -> int:
        """N*T, the batch the 2-D layers see."""
        return self.videos * self.segments

    def describe(self) -> str:
        return (f"{self.videos} video(s) x {self.segments} segments = {self.batch} images "
                f"at {self.resolution}x{self.resolution}")


@dataclass(frozen=True)
class OpSite:
    """One operator at one place in the network: its tensor shapes and constant arguments."""

    op: str
    site: str
    shapes: dict            # argument name -> shape tuple, in call order
    consts: dict            # argument name -> value, in call order after the tensors

    @property
    def label(self) -> str:
        return f"{self.op}@{self.site}"

    def shape_text(self) -> str:
        return " ".join(f"{k}={'x'.join(map(str, v))}" for k, v in self.shapes.items())


def stdm_sites(geo: Geometry) -> list[OpSite]:
    nt, res = geo.batch, geo.resolution
    x_hw, d_hw = stem_size(res), diff_stem_size(res)
    return [
        OpSite("temporal_diff_pool", "stdm.input",
               {"x": (nt, 3 * SNIPPET_FRAMES, res, res)},
               {"frames": SNIPPET_FRAMES, "kernel_size": 2}),
        OpSite("lateral_fuse", "stdm.fuse1",
               {"x": (nt, 64, x_hw, x_hw), "d": (nt, 64, d_hw, d_hw)},
               {"alpha": 0.5, "beta": 0.5}),
        OpSite("lateral_fuse", "stdm.fuse2",
               {"x": (nt, 256, x_hw, x_hw), "d": (nt, 256, d_hw, d_hw)},
               {"alpha": 0.5, "beta": 0.5}),
    ]


def ltdm_sites(geo: Geometry, stage: Stage, first_block: bool) -> list[OpSite]:
    nt, t = geo.batch, geo.segments
    first, other = stage_sizes(geo.resolution)[stage.name]
    hw = first if first_block else other
    site = stage.name + (".0" if first_block else "")
    c, planes = stage.planes // REDUCTION, stage.planes
    small = (nt, c, hw, hw)
    big = (nt, planes, hw, hw)
    return [
        OpSite("cross_segment_diff", site, {"feat": small, "aligned": small},
               {"num_segments": t}),
        OpSite("multiscale_sum", site,
               {"diff": (2,) + small, "pooled_branch": (2, nt, c, hw // 2, hw // 2),
                "full_branch": (2,) + small}, {}),
        OpSite("bidirectional_excitation", site, {"x": big, "y_fwd": big, "y_bwd": big}, {}),
        OpSite("temporal_shift_conv", site, {"x": big, "weight": (planes, 1, 3)},
               {"num_segments": t}),
        OpSite("excite_shift", site,
               {"x": big, "y_fwd": big, "y_bwd": big, "weight": (planes, 1, 3)},
               {"num_segments": t}),
        # The whole L-TDM tail (conv3 + bn3 + excitation + shift) from the c-channel mixture.
        OpSite("project_excite_shift", site,
               {"x": big, "mixed": (2,) + small, "weight": (planes, c), "scale": (2, planes),
                "bias": (2, planes), "shift_weight": (planes, 1, 3)},
               {"num_segments": t}),
        # Inference only (no backward): the whole mixture from bn1(conv1(x)).
        OpSite("ltdm_mixture", site,
               {"feat": small, "align_weight": (c, 1, 3, 3), "align_bias": (c,),
                "pooled_weight": (c, c, 3, 3), "pooled_bias": (c,),
                "full_weight": (c, c, 3, 3), "full_bias": (c,)},
               {"num_segments": t}),
    ]


def operator_sites(geo: Geometry, stages: tuple[str, ...] = ("layer2", "layer3", "layer4"),
                   first_blocks: bool = False, stdm: bool = True) -> list[OpSite]:
    """Every operator site for ``geo``: the S-TDM ones, then each requested stage's."""
    sites = stdm_sites(geo) if stdm else []
    for stage in STAGES:
        if stage.name not in stages:
            continue
        if first_blocks:
            sites += ltdm_sites(geo, stage, first_block=True)
        sites += ltdm_sites(geo, stage, first_block=False)
    return sites


# The sites the issue's targets name: CPU "layer-3 shapes" (plus the S-TDM operators' own
# shapes, which have no layer-3 form); GPU "S-TDM input and L-TDM inputs of layers 2-4".
CPU_TARGET_SITES = frozenset({"stdm.input", "stdm.fuse1", "stdm.fuse2", "layer3"})
GPU_TARGET_SITES = frozenset({"stdm.input", "stdm.fuse1", "stdm.fuse2",
                              "layer2", "layer3", "layer4"})
