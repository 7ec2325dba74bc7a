"""The ``modules`` section: the modules the fused operators live in, fused against the
reference modules with the same weights.

    ltdm_shift      L-TDM followed by the temporal shift (``tdn_ops.nn.long_term_tdm_shift``),
                    the part of every layer2-4 bottleneck the operators replace, on the block's
                    ``planes`` channels at each stage's typical block size
    tdn_bottleneck  a whole TDN bottleneck of the stage (1x1, L-TDM, shift, 3x3, 1x1, residual),
                    to show what share of a block the fusion reaches
    stdm_stem       the S-TDM stem of TDN-ResNet50 (the model's own code up to layer2): frame
                    differences, the difference stem and its layer1, the RGB stem and layer1,
                    the two lateral fusions

"reference" builds them with ``backend="reference"`` (the authors' op sequence), "fused" with
the default backend, and "compiled" is ``torch.compile`` of the reference module (when the run
compiles). Passes: "inference" (``eval()``, ``inference_mode``) and "training" (``train()``,
forward and the gradients of the input and every parameter, with the peak memory of that step).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..shapes import STAGES, Geometry, stage_sizes
from ..timing import rotation_count
from .common import add_error_rows, add_rows, dtype_name, gmacs, measure_contenders

PASSES = ("inference", "training")


@dataclass
class ModuleCase:
    name: str
    site: str
    build: Callable[[str | None], torch.nn.Module]     # backend -> module
    input_shapes: tuple[tuple[int, ...], ...]


def _stage(name: str):
    return next(s for s in STAGES if s.name == name)


def _ltdm_shift_case(geo: Geometry, stage_name: str) -> ModuleCase:
    from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift

    planes = _stage(stage_name).planes
    hw = stage_sizes(geo.resolution)[stage_name][1]

    class LTDMShift(torch.nn.Module):
        def __init__(self, backend):
            super().__init__()
            self.mse = LongTermTDM(planes, geo.segments, backend=backend)
            self.shift = TemporalShift(planes, geo.segments, backend=backend)

        def forward(self, x):
            return long_term_tdm_shift(self.mse, self.shift, x)

    return ModuleCase("ltdm_shift", stage_name, LTDMShift, ((geo.batch, planes, hw, hw),))


def _bottleneck_case(geo: Geometry, stage_name: str) -> ModuleCase:
    from tdn.models.blocks import TDNBottleneck

    planes = _stage(stage_name).planes
    hw = stage_sizes(geo.resolution)[stage_name][1]

    def build(backend):
        return TDNBottleneck(4 * planes, planes, 1, None, True, num_segments=geo.segments,
                             backend=backend)

    return ModuleCase("tdn_bottleneck", stage_name, build, ((geo.batch, 4 * planes, hw, hw),))


def build_stem(segments: int, backend: str | None) -> torch.nn.Module:
    """TDN-ResNet50's backbone cut after the S-TDM: its own forward, with layer2-4 and the head
    replaced by identities, so the stem runs exactly the model's code. Output: the fused
    (N*T, 256, H/4, W/4) features, flattened (a view)."""
    import tdn

    backbone = tdn.build_model("tdn_resnet50", num_segments=segments, backend=backend).base_model
    for name in ("layer2_bak", "layer3_bak", "layer4_bak", "avgpool", "fc"):
        setattr(backbone, name, torch.nn.Identity())
    return backbone


def _stem_case(geo: Geometry) -> ModuleCase:
    return ModuleCase("stdm_stem", "stdm", lambda backend: build_stem(geo.segments, backend),
                      ((geo.batch, 15, geo.resolution, geo.resolution),))


def cases(ctx) -> list[ModuleCase]:
    geo = ctx.size.op_geometry(ctx.device, ctx.segments)
    out = []
    for stage in ctx.size.module_stages:
        out.append(_ltdm_shift_case(geo, stage))
        out.append(_bottleneck_case(geo, stage))
    out.append(_stem_case(geo))
    return out


def _impls(ctx) -> list[str]:
    return ["reference", "fused"] + (["compiled"] if ctx.size.compile_modules else [])


def planned_steps(ctx) -> int:
    count = 2 * len(ctx.size.module_stages) + 1           # + the stem
    return count * len(ctx.dtypes) * len(PASSES) * len(_impls(ctx))


def _build_all(case: ModuleCase, impls: list[str], device, dtype) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    reference = case.build("reference").to(device=device, dtype=dtype)
    built = {"reference": reference}
    if "fused" in impls:
        fused = case.build(None).to(device=device, dtype=dtype)
        fused.load_state_dict(reference.state_dict())        # same weights
        built["fused"] = fused
    if "compiled" in impls:
        built["compiled"] = torch.compile(copy.deepcopy(reference), dynamic=False)
    return built


def _step(module, inputs, pass_name, n):
    if pass_name == "inference":
        def run(i):
            with torch.inference_mode():
                return module(*inputs[i % n])
        return run
    params = [p for p in module.parameters() if p.requires_grad]

    def run(i):
        xs = inputs[i % n]
        out = module(*xs)
        return torch.autograd.grad(out, list(xs) + params, torch.ones_like(out))
    return run


def _inputs(case: ModuleCase, pass_name: str, ctx, dtype) -> list[tuple[torch.Tensor, ...]]:
    """Rotated input copies, shared by every implementation of the case."""
    set_bytes = sum(torch.Size(s).numel() for s in case.input_shapes) * dtype.itemsize
    n = rotation_count(set_bytes, ctx.device, ctx.rotate_cap_bytes)
    gen = torch.Generator().manual_seed(1)
    return [tuple(torch.randn(s, generator=gen).to(ctx.device, dtype)
                  .requires_grad_(pass_name == "training") for s in case.input_shapes)
            for _ in range(n)]


def run(ctx) -> None:
    geo = ctx.size.op_geometry(ctx.device, ctx.segments)
    impls = _impls(ctx)
    ctx.announce("modules", geo, f"implementations: {', '.join(impls)}")
    for dtype in ctx.dtypes:
        for case in cases(ctx):
            common = dict(section="modules", name=case.name, site=case.site,
                          dtype=dtype_name(dtype), videos=geo.videos, segments=geo.segments,
                          resolution=geo.resolution,
                          shape=" ".join("x".join(map(str, s)) for s in case.input_shapes))
            try:
                built = _build_all(case, impls, ctx.device, dtype)
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                add_error_rows(ctx, common, impls, PASSES,
                               f"build: {type(exc).__name__}: {exc}")
                continue
            try:
                common["gmacs"] = gmacs(built["reference"],
                                        *_inputs(case, "inference", ctx, dtype)[0])
            except Exception as exc:  # noqa: BLE001 - FLOPs are informative only
                ctx.log(f"[modules] FLOP count of {case.name} failed: {exc}")
            for p in PASSES:
                steps, failed = {}, {}
                try:
                    inputs = _inputs(case, p, ctx, dtype)
                    for impl in impls:
                        built[impl].train(p == "training")
                        steps[impl] = _step(built[impl], inputs, p, len(inputs))
                except Exception as exc:  # noqa: BLE001
                    failed = dict.fromkeys(impls, f"inputs: {type(exc).__name__}: {exc}")
                    steps.clear()
                found = measure_contenders(steps, ctx.device, ctx.size.module_budget,
                                           with_peak_memory=p == "training", errors=failed)
                add_rows(ctx, dict(common, **{"pass": p}), {impl: impl for impl in impls},
                         found, {"speedup_vs_reference": "reference"})
                del steps
            del built
            if "compiled" in impls:
                torch._dynamo.reset()
