"""Section 3: the whole network, TDN-ResNet50 at 8 segments.

Three variants on the same clips:
    "reference"  TDN-ResNet50 on the reference backend: the authors' op sequence and numerics
    "fused"      the same weights on the fused operators (backend chosen by "auto")
    "tsn"        a plain TSN ResNet-50 on the same clips, classifying each snippet's centre
                 frame: the cost floor (TDN adds 9% of its FLOPs, SPEC §7)

Inference: ``eval()`` under ``torch.inference_mode``, time per batch, clips/s. Training step:
``train()``, forward, cross-entropy, backward, gradient-norm clipping at 20 and an SGD
(momentum 0.9) update, as in the authors' recipe; time per step and its peak memory (see
:mod:`.memory`). GMACs per clip come from ``torch.utils.flop_counter`` (convolutions and
matrix products, the FLOPs the paper counts). Dtypes other than float32 run under autocast.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from . import memory
from .context import dtype_name
from .timing import time_interleaved

NUM_CLASSES = 174
VARIANTS = (("tdn_resnet50", "reference"), ("tdn_resnet50", "fused"), ("tsn_resnet50", "tsn"))
PASSES = ("inference", "training")


def build(name: str, impl: str, segments: int, device: torch.device) -> torch.nn.Module:
    import tdn

    kwargs = {"num_classes": NUM_CLASSES, "num_segments": segments}
    if name.startswith("tdn"):
        kwargs["backend"] = "reference" if impl == "reference" else None
    return tdn.build_model(name, **kwargs).to(device)


def make_batch(geo, device: torch.device, seed: int = 0):
    """Clips of 5-frame snippets, (N, T*15, H, W), and labels. TSN takes the same tensor and
    classifies each snippet's centre frame."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(geo.videos, geo.segments * 15, geo.resolution, geo.resolution,
                         generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (geo.videos,), generator=gen)
    return frames.to(device), labels.to(device)


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def gmacs_per_clip(model: torch.nn.Module, name: str, geo, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from .shapes import Geometry

    one = Geometry(1, geo.segments, geo.resolution)
    x, _ = make_batch(one, device)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9


class TrainStep:
    """One optimisation step of the authors' recipe on a fixed batch."""

    def __init__(self, model: torch.nn.Module, batch, dtype: torch.dtype,
                 device: torch.device):
        self.model, (self.x, self.y), self.dtype, self.device = model, batch, dtype, device
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        self.loss = torch.nn.CrossEntropyLoss()

    def __call__(self, i: int = 0):
        self.opt.zero_grad(set_to_none=True)
        with _autocast(self.device, self.dtype):
            loss = self.loss(self.model(self.x), self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 20.0)
        self.opt.step()
        return loss


def planned_steps(ctx) -> int:
    return len(ctx.dtypes) * len(VARIANTS) * len(PASSES)


def run(ctx) -> None:
    geo = ctx.profile.model_geometry(ctx.device, ctx.segments)
    layout = "channels_last" if ctx.channels_last else "contiguous"
    ctx.log(f"[model] {geo.describe()}"
            + ("" if geo.videos == 8 else " (scaled down from 8 videos for this device)")
            + f"; layout {layout}"
            + f"; peak memory: {memory.METHOD[ctx.device.type]}")
    torch.manual_seed(0)
    models: dict[tuple[str, str], torch.nn.Module] = {}
    gmacs: dict[str, float] = {}
    build_errors: dict[tuple[str, str], str] = {}
    for name, impl in VARIANTS:
        try:
            models[(name, impl)] = build(name, impl, geo.segments, ctx.device)
        except Exception as exc:  # noqa: BLE001 - reported in the variant's rows
            build_errors[(name, impl)] = f"build: {type(exc).__name__}: {exc}"
    if ctx.channels_last:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    ref, fused = models.get(("tdn_resnet50", "reference")), models.get(("tdn_resnet50", "fused"))
    if ref is not None and fused is not None:
        fused.load_state_dict(ref.state_dict())          # same weights, two backends
    for name in ("tdn_resnet50", "tsn_resnet50"):
        model = models.get((name, "reference" if name.startswith("tdn") else "tsn"))
        if model is not None:
            try:
                gmacs[name] = gmacs_per_clip(model, name, geo, ctx.device)
            except Exception as exc:  # noqa: BLE001 - FLOPs are informative only
                ctx.log(f"[model] FLOP count of {name} failed: {type(exc).__name__}: {exc}")
    if "tdn_resnet50" in gmacs and "tsn_resnet50" in gmacs:
        ctx.log(f"[model] GMACs per clip: TDN {gmacs['tdn_resnet50']:.2f}, TSN "
                f"{gmacs['tsn_resnet50']:.2f}, FLOP ratio "
                f"{gmacs['tdn_resnet50'] / gmacs['tsn_resnet50']:.3f}")

    batch = make_batch(geo, ctx.device)
    if ctx.channels_last:
        batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
    for dtype in ctx.dtypes:
        for pass_name in PASSES:
            errors = dict(build_errors)
            steps, peaks = {}, {}
            for key, model in models.items():
                try:
                    steps[key], peaks[key] = _prepare(model, pass_name, batch, dtype, ctx.device)
                except Exception as exc:  # noqa: BLE001 - reported in the variant's row
                    errors[key] = f"{type(exc).__name__}: {exc}"
            budget = ctx.profile.model_budget if pass_name == "inference" else \
                ctx.profile.train_budget
            # _prepare made two calls of each step: the warm-up is done.
            budget = replace(budget, warmup=max(0, budget.warmup - 2))
            timings, failed = time_interleaved(steps, ctx.device, budget)
            errors.update(failed)
            steps.clear()                  # frees the optimizers' state before the next pass
            reference = timings.get(("tdn_resnet50", "reference"))
            for name, impl in VARIANTS:
                ctx.advance(f"model {name} {impl} {pass_name}")
                row = dict(section="model", name=name, impl=impl, dtype=dtype_name(dtype),
                           videos=geo.videos, segments=geo.segments, resolution=geo.resolution,
                           shape=f"{geo.videos}x{geo.segments * 15}x{geo.resolution}x"
                                 f"{geo.resolution}",
                           gmacs=gmacs.get(name), throughput_unit="clips/s", layout=layout,
                           **{"pass": pass_name})
                timing, peak = timings.get((name, impl)), peaks.get((name, impl))
                if timing is None:
                    ctx.results.add(**row, status="error",
                                    note=errors.get((name, impl), "not timed")[:300])
                    continue
                ctx.results.add(**row, median_ms=timing.median_ms, q20_ms=timing.q20_s * 1e3,
                                q80_ms=timing.q80_s * 1e3,
                                min_ms=timing.min_s * 1e3, reps=timing.reps,
                                throughput=geo.videos / timing.median_s,
                                peak_mem_mb=None if peak is None else peak / 2**20,
                                speedup_vs_reference=(reference.median_s / timing.median_s
                                                      if reference else None))


def _prepare(model, pass_name, batch, dtype, device):
    """The timed step of one variant and its peak memory.

    The step runs twice here: once to build lazy state (cuDNN plans, the optimizer's momentum
    buffers, which must not count in a step's peak), then under the memory measurement. All
    variants are prepared before any is timed, so the timing can interleave them."""
    if pass_name == "inference":
        model.eval()

        def step(i: int = 0):
            with torch.inference_mode(), _autocast(device, dtype):
                return model(batch[0])
    else:
        model.train()
        step = TrainStep(model, batch, dtype, device)
    step(0)
    peak = memory.peak_bytes(step, device)
    return step, peak
