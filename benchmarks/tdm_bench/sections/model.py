"""The ``model`` section: the whole network, TDN-ResNet50 at 8 segments.

Three variants on the same clips:
    "reference"  TDN-ResNet50 on the reference backend: the authors' op sequence and numerics
    "fused"      the same weights on the fused operators (backend chosen by "auto")
    "tsn"        a plain TSN ResNet-50 on the same clips, classifying each snippet's centre
                 frame: the cost floor (TDN adds 9% of its FLOPs, docs/math.md §7)

Inference: ``eval()`` under ``torch.inference_mode``, time per batch, clips/s. Training step:
``train()``, forward, cross-entropy, backward, gradient-norm clipping at 20 and an SGD
(momentum 0.9) update, as in the authors' recipe; time per step and its peak memory (see
:mod:`..peak_memory`). GMACs per clip as the paper counts them (:mod:`tdn.flops`). Dtypes
other than float32 run under autocast.
"""

from __future__ import annotations

import contextlib

import torch

from ..peak_memory import METHOD
from ..shapes import Geometry
from .common import add_rows, dtype_name, gmacs, measure_contenders

NUM_CLASSES = 174
VARIANTS = (("tdn_resnet50", "reference"), ("tdn_resnet50", "fused"), ("tsn_resnet50", "tsn"))
PASSES = ("inference", "training")


def build(name: str, impl: str, segments: int, device: torch.device) -> torch.nn.Module:
    import tdn

    kwargs = {"num_classes": NUM_CLASSES, "num_segments": segments}
    if name.startswith("tdn"):
        kwargs["backend"] = "reference" if impl == "reference" else None
    return tdn.build_model(name, **kwargs).to(device)


def make_batch(geo: Geometry, device: torch.device, seed: int = 0):
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


def _step(model: torch.nn.Module, pass_name: str, batch, dtype: torch.dtype,
          device: torch.device):
    model.train(pass_name == "training")
    if pass_name == "training":
        return TrainStep(model, batch, dtype, device)

    def infer(i: int = 0):
        with torch.inference_mode(), _autocast(device, dtype):
            return model(batch[0])
    return infer


def planned_steps(ctx) -> int:
    return len(ctx.dtypes) * len(VARIANTS) * len(PASSES)


def _build_variants(ctx, geo: Geometry) -> tuple[dict, dict]:
    """The models by variant, with the reference's weights in the fused one, and the build
    errors of those that failed."""
    torch.manual_seed(0)
    models, errors = {}, {}
    for name, impl in VARIANTS:
        try:
            models[(name, impl)] = build(name, impl, geo.segments, ctx.device)
        except Exception as exc:  # noqa: BLE001 - reported in the variant's rows
            errors[(name, impl)] = f"build: {type(exc).__name__}: {exc}"
    if ctx.channels_last:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    ref, fused = models.get(("tdn_resnet50", "reference")), models.get(("tdn_resnet50", "fused"))
    if ref is not None and fused is not None:
        fused.load_state_dict(ref.state_dict())          # same weights, two backends
    return models, errors


def _gmacs_per_clip(ctx, models: dict, geo: Geometry) -> dict[str, float]:
    clip, _ = make_batch(Geometry(1, geo.segments, geo.resolution), ctx.device)
    found = {}
    for (name, impl), model in models.items():
        if impl in ("reference", "tsn"):
            try:
                found[name] = gmacs(model, clip)
            except Exception as exc:  # noqa: BLE001 - FLOPs are informative only
                ctx.log(f"[model] FLOP count of {name} failed: {type(exc).__name__}: {exc}")
    if "tdn_resnet50" in found and "tsn_resnet50" in found:
        ctx.log(f"[model] GMACs per clip: TDN {found['tdn_resnet50']:.2f}, TSN "
                f"{found['tsn_resnet50']:.2f}, FLOP ratio "
                f"{found['tdn_resnet50'] / found['tsn_resnet50']:.3f}")
    return found


def run(ctx) -> None:
    geo = ctx.size.model_geometry(ctx.device, ctx.segments)
    layout = "channels_last" if ctx.channels_last else "contiguous"
    ctx.announce("model", geo, f"layout {layout}; peak memory: {METHOD[ctx.device.type]}")
    models, build_errors = _build_variants(ctx, geo)
    gmacs_of = _gmacs_per_clip(ctx, models, geo)
    batch = make_batch(geo, ctx.device)
    if ctx.channels_last:
        batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
    common = dict(section="model", videos=geo.videos, segments=geo.segments,
                  resolution=geo.resolution, throughput_unit="clips/s", layout=layout,
                  shape=f"{geo.videos}x{geo.segments * 15}x{geo.resolution}x{geo.resolution}")
    for dtype in ctx.dtypes:
        for pass_name in PASSES:
            steps, failed = {}, dict(build_errors)
            for key, model in models.items():
                try:
                    steps[key] = _step(model, pass_name, batch, dtype, ctx.device)
                except Exception as exc:  # noqa: BLE001 - reported in the variant's row
                    failed[key] = f"{type(exc).__name__}: {exc}"
            budget = (ctx.size.model_budget if pass_name == "inference"
                      else ctx.size.train_budget)
            found = measure_contenders(steps, ctx.device, budget, with_peak_memory=True,
                                       errors=failed)
            steps.clear()                  # frees the optimizers' state before the next pass
            for name, impl in VARIANTS:
                add_rows(ctx, dict(common, name=name, dtype=dtype_name(dtype),
                                   gmacs=gmacs_of.get(name), **{"pass": pass_name}),
                         {impl: (name, impl)}, found,
                         {"speedup_vs_reference": ("tdn_resnet50", "reference")},
                         lambda _, timing: {"throughput": geo.videos / timing.median_s})

