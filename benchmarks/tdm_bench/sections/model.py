"""The ``model`` section: the whole network, TDN-ResNet50 at 8 segments.

Three models on the same clips:
    "reference"  TDN-ResNet50 on the reference backend: the authors' op sequence and numerics
    "fused"      the same weights on the fused operators (backend chosen by "auto")
    "tsn"        a plain TSN ResNet-50 on the same clips, classifying each snippet's centre
                 frame: the cost floor (TDN adds 9% of its FLOPs, docs/math.md §7)
and, when the size compiles models (``--compile``; on by default in ``--full``), the same three
under ``torch.compile`` (Inductor, static shapes): "compiled_reference", "compiled_fused",
"compiled_tsn", the peer a user who simply compiles the authors' model gets. A compiled
variant wraps the module its eager variant runs (same weights, same state), and all six are
timed in one round-robin. With ``--onnx`` (on by default in ``--full``) float32 inference on a
CPU also times "onnxruntime": the fused TDN exported by ``tdn export``'s code (standard ONNX
operators, logits verified on export) on onnxruntime's CPU execution provider, the runtime a
deployment would pick instead. Compilation happens in each compiled variant's first call of a pass;
that call's time beyond a step's median is reported as ``compile_s`` and is in no step time.

For inference the fused TDN and the TSN (eager and compiled alike) run the way a user deploys
them, the same treatment for both, on a copy: on a CPU ``tdn.pack_for_cpu_inference`` (batch
norms folded, convolutions on oneDNN with reordered weights and fused ReLU / residual adds;
under torch.compile the packed modules run plain operators, so the compiled variants compile
the folded model), elsewhere ``tdn.fold_batch_norm``. For training on a CPU both keep their
parameters (and so their feature maps) in channels_last, the layout README recommends there.
The reference stays the authors' model, contiguous; torch.compile of it runs its CPU
convolutions in channels_last by itself.

Inference: ``eval()`` under ``torch.inference_mode``, time per batch, clips/s. Training step:
``train()``, forward, cross-entropy, backward, gradient-norm clipping at 20 and an SGD
(momentum 0.9) update, as in the authors' recipe; time per step and its peak memory (see
:mod:`..peak_memory`). GMACs per clip as the paper counts them (:mod:`tdn.flops`). Dtypes
other than float32 run under autocast.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch

from ..peak_memory import METHOD
from ..shapes import Geometry
from .common import add_rows, dtype_name, gmacs, measure_contenders

NUM_CLASSES = 174
MODELS = (("tdn_resnet50", "reference"), ("tdn_resnet50", "fused"), ("tsn_resnet50", "tsn"))
PASSES = ("inference", "training")
COMPILED = "compiled_"          # impl prefix of a torch.compile variant
ONNX = ("tdn_resnet50", "onnxruntime")   # the fused TDN exported to ONNX, inference only


def variants(ctx) -> list[tuple[str, str]]:
    """(model name, impl) of every variant the run times."""
    compiled = [(name, COMPILED + impl) for name, impl in MODELS] if ctx.size.compile_models \
        else []
    return list(MODELS) + compiled


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


def _with_onnx(ctx, pass_name: str, dtype: torch.dtype) -> bool:
    """onnxruntime runs float32 inference on the CPU execution provider only."""
    return (ctx.size.onnx_runtime and pass_name == "inference" and dtype == torch.float32
            and ctx.device.type == "cpu")


def planned_steps(ctx) -> int:
    with_onnx = sum(_with_onnx(ctx, "inference", dtype) for dtype in ctx.dtypes)
    return len(ctx.dtypes) * len(variants(ctx)) * len(PASSES) + with_onnx


def _onnx_step(ctx, fused: torch.nn.Module, geo: Geometry, batch):
    """Inference through onnxruntime of the fused TDN (exported with ``tdn export``'s code,
    its logits verified against PyTorch's on export), on the same clips, at a fixed batch."""
    from tdn.deploy import onnx_session_for_model, run_onnx

    started = time.perf_counter()
    session = onnx_session_for_model(copy.deepcopy(fused).eval(), geo.resolution,
                                     threads=torch.get_num_threads(), batch=geo.videos)
    ctx.log(f"[model] onnxruntime: exported and verified in {time.perf_counter() - started:.0f} s")
    clips = batch[0].contiguous().cpu().numpy()
    return lambda i=0: run_onnx(session, clips)


def _build_models(ctx, geo: Geometry) -> tuple[dict, dict]:
    """The eager models by (name, impl), with the reference's weights in the fused one, and
    the build errors of those that failed."""
    torch.manual_seed(0)
    models, errors = {}, {}
    for name, impl in MODELS:
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


_PREPARED_NOTE = {
    "fold_batch_norm": "batch norms folded into the convolutions",
    "pack_for_cpu_inference": "pack_for_cpu_inference: batch norms folded, oneDNN convolutions "
                              "with fused ReLU/add (compiled: folded only)",
    "channels_last": "parameters in channels_last, as README recommends for training on a CPU",
}


def _to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    return model.to(memory_format=torch.channels_last)


def _preparer(ctx, pass_name: str):
    """How the fused TDN and the TSN are prepared for ``pass_name`` (a callable taking a copy
    in the pass's mode, and its name), the same treatment for both; (None, None) for none.

    Inference: as deployed (:func:`_inference_preparer`). Training on a CPU: in channels_last,
    the layout README recommends there (oneDNN's convolutions and their backward ran 12-16%
    faster per TDN and TSN training step in an A/B on the 2-core machine); torch.compile picks
    channels_last for its CPU convolutions by itself, so the compiled reference has it too.
    """
    if pass_name == "inference":
        return _inference_preparer(ctx.device)
    if ctx.device.type == "cpu" and not ctx.channels_last:
        return _to_channels_last, "channels_last"
    return None, None


def _inference_preparer(device: torch.device):
    """How ``tdn`` prepares a model for inference on ``device`` (a callable and its name),
    where this version of the package can; else (None, None)."""
    import tdn

    for name in (("pack_for_cpu_inference",) if device.type == "cpu" else ()) + \
            ("fold_batch_norm",):
        prepare = getattr(tdn, name, None)
        if prepare is not None:
            return prepare, name
    return None, None


def _variants_for(ctx, models: dict, errors: dict, pass_name: str) -> tuple[dict, dict]:
    """The modules each variant runs in ``pass_name``, and the errors of those that cannot.

    The fused TDN and the TSN run prepared for the pass (:func:`_preparer`; the same
    treatment for both, on a copy); the reference stays the authors' model. A compiled
    variant compiles the module its eager variant runs in the pass.
    """
    prepare, how = _preparer(ctx, pass_name)
    chosen, failed = {}, {}
    for key, model in models.items():
        if prepare is not None and key[1] != "reference":
            try:
                model = copy.deepcopy(model)
                model = prepare(model.eval() if pass_name == "inference" else model)
            except Exception as exc:  # noqa: BLE001 - reported in the variant's rows
                failed[key] = f"{how}: {type(exc).__name__}: {exc}"
                continue
        chosen[key] = model
    for name, impl in variants(ctx)[len(MODELS):]:
        eager = (name, impl.removeprefix(COMPILED))
        if eager in chosen:
            chosen[(name, impl)] = torch.compile(chosen[eager], dynamic=False)
        else:
            failed[(name, impl)] = failed.get(eager) or errors.get(eager, "not built")
    return chosen, failed


def _gmacs_per_clip(ctx, models: dict, geo: Geometry) -> dict[str, float]:
    clip, _ = make_batch(Geometry(1, geo.segments, geo.resolution), ctx.device)
    found = {}
    for (name, impl), model in models.items():
        if impl in ("reference", "tsn"):            # the fused TDN counts the same
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
    models, build_errors = _build_models(ctx, geo)
    gmacs_of = _gmacs_per_clip(ctx, models, geo)
    batch = make_batch(geo, ctx.device)
    if ctx.channels_last:
        batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
    common = dict(section="model", videos=geo.videos, segments=geo.segments,
                  resolution=geo.resolution, throughput_unit="clips/s", layout=layout,
                  shape=f"{geo.videos}x{geo.segments * 15}x{geo.resolution}x{geo.resolution}")
    for dtype in ctx.dtypes:
        for pass_name in PASSES:
            running, failed = _variants_for(ctx, models, build_errors, pass_name)
            failed.update(build_errors)
            how = _preparer(ctx, pass_name)[1]
            steps = {}
            for key, model in running.items():
                try:
                    steps[key] = _step(model, pass_name, batch, dtype, ctx.device)
                except Exception as exc:  # noqa: BLE001 - reported in the variant's row
                    failed[key] = f"{type(exc).__name__}: {exc}"
            timed = variants(ctx)
            if _with_onnx(ctx, pass_name, dtype):
                timed = timed + [ONNX]
                try:
                    steps[ONNX] = _onnx_step(ctx, models[("tdn_resnet50", "fused")], geo, batch)
                except Exception as exc:  # noqa: BLE001 - reported in the variant's row
                    failed[ONNX] = f"onnx export: {type(exc).__name__}: {exc}"
            budget = (ctx.size.model_budget if pass_name == "inference"
                      else ctx.size.train_budget)
            found = measure_contenders(steps, ctx.device, budget, with_peak_memory=True,
                                       errors=failed, memory_unseen=(ONNX,))
            steps.clear()                  # frees the optimizers' state before the next pass
            del running
            for (name, impl), error in found.errors.items():
                ctx.log(f"[model] {impl} {pass_name}: not timed: {error[:200]}")
            compiled = {impl: found.first_call_s[(name, impl)] for name, impl in variants(ctx)
                        if impl.startswith(COMPILED) and (name, impl) in found.first_call_s}
            if compiled:
                ctx.log(f"[model] {pass_name}: first (compiling) call "
                        + ", ".join(f"{impl} {s:.0f} s" for impl, s in compiled.items()))
            for name, impl in timed:
                note = (_PREPARED_NOTE[how] if how and impl != ONNX[1]
                        and not impl.endswith("reference") else None)
                add_rows(ctx, dict(common, name=name, dtype=dtype_name(dtype), note=note,
                                   gmacs=gmacs_of.get(name), **{"pass": pass_name}),
                         {impl: (name, impl)}, found,
                         {"speedup_vs_reference": ("tdn_resnet50", "reference"),
                          "speedup_vs_compiled": ("tdn_resnet50", COMPILED + "reference")},
                         lambda key, timing: dict(throughput=geo.videos / timing.median_s,
                                                  compile_s=_compile_s(found, key, timing)))
    if ctx.size.compile_models:
        torch._dynamo.reset()


def _compile_s(found, key, timing) -> float | None:
    """A compiled variant's compilation time: its first call beyond a normal step."""
    if not key[1].startswith(COMPILED) or key not in found.first_call_s:
        return None
    return max(0.0, found.first_call_s[key] - timing.median_s)

