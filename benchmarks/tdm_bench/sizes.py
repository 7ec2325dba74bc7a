"""How large and how long a run is (``--size``); ``bench_tdm.py --help`` prints :func:`describe`.

Production shapes are 8 videos x 8 segments at 224x224 (docs/math.md §2-§4). On a GPU every size but
"tiny" uses them. A 2-core CPU takes seconds per TDN-ResNet50 training step, so the CPU sizes
scale the number of videos down (the per-image work, and so every ratio the targets name, is the
same; the output says which scaling applied).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .shapes import Geometry
from .timing import Budget


@dataclass(frozen=True)
class Size:
    name: str
    summary: str
    op_videos_cpu: int
    op_videos_gpu: int
    resolution: int
    op_stages: tuple[str, ...]          # L-TDM stages whose operators are timed (CPU)
    first_blocks: bool                  # also time the first (larger) block of each stage
    passes: tuple[str, ...]
    op_budget: Budget
    module_stages: tuple[str, ...]
    module_budget: Budget
    model_videos_cpu: int
    model_videos_gpu: int
    model_budget: Budget                # for inference; training uses train_budget
    train_budget: Budget
    compile_reference: bool = True     # torch.compile baseline in the ops section
    compile_modules: bool = True       # ... and in the modules section (slow to compile on CPU)
    compile_models: bool = False       # ... and of the whole models (minutes each on a CPU)
    onnx_runtime: bool = False         # onnxruntime (CPU) of the fused TDN in the model section

    def op_geometry(self, device: torch.device, segments: int) -> Geometry:
        videos = self.op_videos_gpu if device.type == "cuda" else self.op_videos_cpu
        return Geometry(videos, segments, self.resolution)

    def model_geometry(self, device: torch.device, segments: int) -> Geometry:
        videos = self.model_videos_gpu if device.type == "cuda" else self.model_videos_cpu
        return Geometry(videos, segments, self.resolution)

    def passes_on(self, device: torch.device) -> tuple[str, ...]:
        # The GPU targets name forward and backward separately; on a GPU they cost seconds.
        return ALL_PASSES if device.type == "cuda" and self.name != "tiny" else self.passes

    def stages_on(self, device: torch.device) -> tuple[str, ...]:
        # A GPU's targets name layers 2-4, and a GPU has the time for all of them.
        return ("layer2", "layer3", "layer4") if device.type == "cuda" else self.op_stages


ALL_STAGES = ("layer2", "layer3", "layer4")
ALL_PASSES = ("forward", "backward", "forward+backward")

SIZES = {
    "tiny": Size(
        "tiny", "toy shapes (1 video x 8 segments at 64x64), a few repetitions, no torch.compile: "
        "checks the machinery in seconds; its numbers mean nothing",
        op_videos_cpu=1, op_videos_gpu=1, resolution=64, op_stages=ALL_STAGES,
        first_blocks=False, passes=("forward", "forward+backward"),
        op_budget=Budget(warmup=1, min_reps=3, max_reps=3, min_time_s=0.0),
        module_stages=("layer3",),
        module_budget=Budget(warmup=1, min_reps=2, max_reps=2, min_time_s=0.0),
        model_videos_cpu=1, model_videos_gpu=1,
        model_budget=Budget(warmup=1, min_reps=2, max_reps=2, min_time_s=0.0),
        train_budget=Budget(warmup=1, min_reps=1, max_reps=1, min_time_s=0.0),
        compile_reference=False, compile_modules=False),
    "quick": Size(
        "quick", "the default on a CPU. CPU: 1 video x 8 segments at 224x224, operators at the "
        "S-TDM and layer-3 shapes (the CPU targets), the layer-3 block and the stem, whole "
        "model with 7 (inference) and 5 (training) repetitions; about 4 minutes on 2 cores. "
        "GPU: 8 videos, layers 2-4",
        op_videos_cpu=1, op_videos_gpu=8, resolution=224, op_stages=("layer3",),
        first_blocks=False, passes=("forward", "forward+backward"),
        op_budget=Budget(warmup=2, min_reps=7, max_reps=100, min_time_s=0.15),
        module_stages=("layer3",),
        module_budget=Budget(warmup=2, min_reps=5, max_reps=50, min_time_s=0.1),
        model_videos_cpu=1, model_videos_gpu=8,
        # Whole-model medians of 7 and 5 round-robin repetitions: with 3 and 2 they moved by
        # 20% between runs on a shared 2-core VM, more than the targets' margins.
        model_budget=Budget(warmup=1, min_reps=7, max_reps=7, min_time_s=0.0),
        train_budget=Budget(warmup=1, min_reps=5, max_reps=5, min_time_s=0.0),
        compile_modules=False),
    "standard": Size(
        "standard", "the default on a GPU. CPU: 2 videos x 8 segments at 224x224, every "
        "operator site of layers 2-4 and the stem, all three passes, every stage's block, "
        "whole model; GPU: 8 videos",
        op_videos_cpu=2, op_videos_gpu=8, resolution=224, op_stages=ALL_STAGES,
        first_blocks=False, passes=ALL_PASSES,
        op_budget=Budget(warmup=3, min_reps=10, max_reps=200, min_time_s=0.3),
        module_stages=ALL_STAGES,
        module_budget=Budget(warmup=3, min_reps=10, max_reps=100, min_time_s=0.5),
        model_videos_cpu=2, model_videos_gpu=8,
        model_budget=Budget(warmup=2, min_reps=5, max_reps=20, min_time_s=1.0),
        train_budget=Budget(warmup=2, min_reps=3, max_reps=10, min_time_s=1.0)),
    "full": Size(
        "full", "production shapes everywhere: 8 videos x 8 segments at 224x224, also the first "
        "(larger) block of each stage, more repetitions, and the whole models under "
        "torch.compile too; long on a CPU, where the reference training step needs about "
        "10 GB of memory",
        op_videos_cpu=8, op_videos_gpu=8, resolution=224, op_stages=ALL_STAGES,
        first_blocks=True, passes=ALL_PASSES,
        op_budget=Budget(warmup=5, min_reps=20, max_reps=500, min_time_s=1.0),
        module_stages=ALL_STAGES,
        module_budget=Budget(warmup=3, min_reps=10, max_reps=200, min_time_s=1.0),
        model_videos_cpu=8, model_videos_gpu=8,
        model_budget=Budget(warmup=2, min_reps=5, max_reps=50, min_time_s=3.0),
        train_budget=Budget(warmup=2, min_reps=5, max_reps=30, min_time_s=3.0),
        compile_models=True, onnx_runtime=True),
}


def get(name: str, *, compile_reference: bool | None = None,
        compile_models: bool | None = None, onnx_runtime: bool | None = None) -> Size:
    """The named size; ``compile_reference=False`` drops every torch.compile baseline,
    ``compile_models=True`` adds the compiled whole models, ``onnx_runtime`` turns the
    onnxruntime column on or off (None: the size's choice)."""
    if name not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {name!r}")
    size = SIZES[name]
    if compile_models:
        size = replace(size, compile_models=True)
    if onnx_runtime is not None:
        size = replace(size, onnx_runtime=onnx_runtime)
    if compile_reference is False:
        size = replace(size, compile_reference=False, compile_modules=False,
                       compile_models=False)
    return size


def describe(width: int = 78) -> str:
    """The sizes as an indented, wrapped list (for ``--help``)."""
    import textwrap

    return "\n".join(textwrap.fill(p.summary, width, initial_indent=f"  {p.name:10s}",
                                   subsequent_indent=" " * 12) for p in SIZES.values())
