"""The ``ops`` section: each fused operator against the eager reference and torch.compile of it.

Passes:
    "forward"           the operator under ``torch.no_grad()`` (inference)
    "backward"          ``torch.autograd.grad`` of a recorded forward (the backward kernels alone)
    "forward+backward"  record the forward, then take the gradient of every input (training)

Achieved bandwidth counts the bytes the operator *must* move (:func:`traffic`): every input read
once and every output written once; a backward reads the upstream gradients plus the inputs its
formula needs, and writes one gradient per differentiable input. Unfused code moves more than
that, so its "GB/s" is an effective figure: the fused target expressed in the time it took.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tdn_ops import INFERENCE_OPERATORS

from .. import implementations
from ..shapes import Geometry, OpSite, operator_sites
from ..timing import Timing, gbps, rotation_count
from .common import add_error_rows, add_rows, dtype_name, measure_contenders

PASSES = ("forward", "backward", "forward+backward")

# Largest |fused - reference| on unit-normal inputs before a row is flagged: the benchmark is
# no place to test correctness, but a fast wrong kernel must not pass unnoticed.
MISMATCH_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10,
                      torch.bfloat16: 6e-2, torch.float16: 6e-3}


@dataclass(frozen=True)
class OpArgs:
    differentiable: tuple[str, ...]     # tensor arguments that receive a gradient
    backward_reads: tuple[str, ...]     # inputs the backward formula reads (besides grad_out)


OP_ARGS = {
    "temporal_diff_pool": OpArgs(("x",), ()),
    "cross_segment_diff": OpArgs(("feat", "aligned"), ()),
    "multiscale_sum": OpArgs(("diff", "pooled_branch", "full_branch"), ()),
    "bidirectional_excitation": OpArgs(("x", "y_fwd", "y_bwd"), ("x", "y_fwd", "y_bwd")),
    "temporal_shift_conv": OpArgs(("x", "weight"), ("x", "weight")),
    "excite_shift": OpArgs(("x", "y_fwd", "y_bwd", "weight"), ("x", "y_fwd", "y_bwd", "weight")),
    "lateral_fuse": OpArgs(("x", "d"), ()),
    # The backward recomputes the logits from the inputs: it reads all of them.
    "project_excite_shift": OpArgs(
        ("x", "mixed", "weight", "scale", "bias", "shift_weight"),
        ("x", "mixed", "weight", "scale", "bias", "shift_weight")),
    # An inference operator: timed forward only, on the devices with its kernel (CPU).
    "ltdm_mixture": OpArgs((), ()),
}


def _is_shift_weight(name: str, shape) -> bool:
    return name in ("weight", "shift_weight") and len(shape) == 3 and tuple(shape[1:]) == (1, 3)


def _numel(shape) -> int:
    return math.prod(shape)


def make_inputs(site: OpSite, dtype: torch.dtype, device: torch.device,
                requires_grad: bool, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs for ``site``; the temporal-shift weight starts as the TSM shift
    (docs/math.md §5), a projection weight (C, c) is scaled by 1/sqrt(c) and a 3x3 one by
    1/sqrt(fan_in) as at initialisation, so that the outputs stay of unit size."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = {}
    for name, shape in site.shapes.items():
        if _is_shift_weight(name, shape):
            t = torch.zeros(shape)
            fold = shape[0] // 8
            t[:fold, 0, 2] = 1
            t[fold:2 * fold, 0, 0] = 1
            t[2 * fold:, 0, 1] = 1
            t += 0.01 * torch.randn(shape, generator=gen)
        elif name == "weight" and len(shape) == 2:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        elif name.endswith("_weight") and len(shape) == 4:     # a 3x3 convolution's
            t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        else:
            t = torch.randn(shape, generator=gen)
        t = t.to(device=device, dtype=dtype)
        tensors[name] = t.requires_grad_(requires_grad and name in OP_ARGS[site.op].differentiable)
    return tensors


def call_args(site: OpSite, tensors: dict[str, torch.Tensor]) -> tuple:
    return tuple(tensors[n] for n in site.shapes) + tuple(site.consts.values())


def _outputs(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def output_shapes(site: OpSite) -> list[tuple[int, ...]]:
    """Output shapes, from the reference run on meta tensors (no memory, no compute)."""
    tensors = {n: torch.empty(s, device="meta") for n, s in site.shapes.items()}
    fn = implementations.operator_fn(site.op, "eager")
    return [tuple(o.shape) for o in _outputs(fn(*call_args(site, tensors)))]


def traffic(site: OpSite, dtype: torch.dtype) -> dict[str, int]:
    """The minimum bytes each pass moves (see the module docstring)."""
    size = dtype.itemsize
    args = OP_ARGS[site.op]
    inputs = sum(_numel(s) for s in site.shapes.values())
    outputs = sum(_numel(s) for s in output_shapes(site))
    reads = sum(_numel(site.shapes[n]) for n in args.backward_reads)
    grads = sum(_numel(site.shapes[n]) for n in args.differentiable)
    forward = (inputs + outputs) * size
    backward = (outputs + reads + grads) * size
    return {"forward": forward, "backward": backward, "forward+backward": forward + backward}


class OperatorBench:
    """One operator site's inputs, bytes moved and timed steps, for one dtype and device, for
    any implementation and pass.

    Input copies for rotation are built once and shared by every implementation, so all of them
    see the same data at the same addresses.
    """

    def __init__(self, site: OpSite, dtype: torch.dtype, device: torch.device,
                 rotate_cap_bytes: int):
        self.site, self.dtype, self.device = site, dtype, device
        self.traffic = traffic(site, dtype)
        set_bytes = sum(_numel(s) for s in site.shapes.values()) * dtype.itemsize
        self.copies = rotation_count(set_bytes, device, rotate_cap_bytes)
        self.sets = [make_inputs(site, dtype, device, True, seed=i) for i in range(self.copies)]
        grad_shapes = output_shapes(site)
        self.grad_outs = [tuple(torch.randn(s, dtype=dtype, device=device) for s in grad_shapes)
                          for _ in range(self.copies)]

    def _grad_inputs(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(self.sets[i][n] for n in OP_ARGS[self.site.op].differentiable)

    def reference_output(self, i: int = 0) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            fn = implementations.operator_fn(self.site.op, "eager")
            return _outputs(fn(*call_args(self.site, self.sets[i])))

    def max_abs_error(self, fn) -> float:
        """Largest forward difference from the eager reference on input copy 0."""
        with torch.no_grad():
            got = _outputs(fn(*call_args(self.site, self.sets[0])))
        want = self.reference_output(0)
        return max(float((g.float() - w.float()).abs().max()) if g.numel() else 0.0
                   for g, w in zip(got, want, strict=True))

    def step(self, fn, pass_name: str):
        """The timed callable ``step(i)`` for ``pass_name``; may precompute per-copy state."""
        site, n = self.site, self.copies
        if pass_name == "forward":
            def run(i: int):
                with torch.no_grad():
                    return fn(*call_args(site, self.sets[i % n]))
            return run
        if pass_name == "forward+backward":
            def run(i: int):
                j = i % n
                outs = _outputs(fn(*call_args(site, self.sets[j])))
                return torch.autograd.grad(outs, self._grad_inputs(j), self.grad_outs[j])
            return run
        if pass_name == "backward":
            graphs = [_outputs(fn(*call_args(site, self.sets[j]))) for j in range(n)]

            def run(i: int):
                j = i % n
                return torch.autograd.grad(graphs[j], self._grad_inputs(j), self.grad_outs[j],
                                           retain_graph=True)
            return run
        raise ValueError(f"pass must be one of {PASSES}, got {pass_name!r}")

    def gbps(self, pass_name: str, timing: Timing) -> float:
        return gbps(self.traffic[pass_name], timing.median_s)


# --------------------------------------------------------------------------- the section ---

def _implementations(ctx) -> list[str]:
    return ["eager"] + (["compiled"] if ctx.size.compile_reference else []) + \
        list(ctx.fused_backends)


def sites(ctx) -> tuple[Geometry, list[OpSite]]:
    geo = ctx.size.op_geometry(ctx.device, ctx.segments)
    found = operator_sites(geo, ctx.size.stages_on(ctx.device), ctx.size.first_blocks)
    if ctx.device.type != "cpu":   # the inference operators have CPU kernels only
        found = [s for s in found if s.op not in INFERENCE_OPERATORS]
    return geo, found


def passes_of(op: str, passes: tuple[str, ...]) -> tuple[str, ...]:
    """The passes of ``passes`` that ``op`` has: an inference operator only its forward."""
    return tuple(p for p in passes if p == "forward" or OP_ARGS[op].differentiable)


def planned_steps(ctx) -> int:
    _, site_list = sites(ctx)
    passes = ctx.size.passes_on(ctx.device)
    return (len(ctx.dtypes) * sum(len(passes_of(s.op, passes)) for s in site_list)
            * len(_implementations(ctx)))


def _mismatch_note(err, dtype) -> str | None:
    tolerance = MISMATCH_TOLERANCE.get(dtype, 1e-4)
    if isinstance(err, float) and err > tolerance:
        return (f"MISMATCH: forward differs from the eager reference by {err:.3g} "
                f"(tolerance {tolerance:g})")
    return None


def run(ctx) -> None:
    """Time every operator site x dtype x pass x implementation; one row per measurement."""
    geo, site_list = sites(ctx)
    impls = _implementations(ctx)
    passes = ctx.size.passes_on(ctx.device)
    ctx.announce("ops", geo, f"implementations: {', '.join(impls)}")
    for dtype in ctx.dtypes:
        for site in site_list:
            common = dict(section="ops", name=site.op, site=site.site, dtype=dtype_name(dtype),
                          shape=site.shape_text(), videos=geo.videos, segments=geo.segments,
                          resolution=geo.resolution)
            try:
                bench = OperatorBench(site, dtype, ctx.device, ctx.rotate_cap_bytes)
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                add_error_rows(ctx, common, impls, passes_of(site.op, passes),
                               f"inputs: {type(exc).__name__}: {exc}")
                continue
            # The correctness guard also compiles the inference graph of "compiled": its time
            # is that graph's compile time; the other passes compile on their first call.
            fns, max_errors, check_s = {}, {}, {}
            for impl in impls:
                try:
                    fns[impl] = implementations.operator_fn(site.op, impl)
                    if impl != "eager":
                        started = time.perf_counter()
                        max_errors[impl] = bench.max_abs_error(fns[impl])
                        check_s[impl] = time.perf_counter() - started
                except Exception as exc:  # noqa: BLE001
                    fns.pop(impl, None)
                    max_errors[impl] = f"{type(exc).__name__}: {exc}"
            for p in passes_of(site.op, passes):
                steps, failed = {}, {k: v for k, v in max_errors.items() if k not in fns}
                build_s = {}                    # "backward" records (compiles) its graphs here
                for impl, fn in fns.items():
                    try:
                        started = time.perf_counter()
                        steps[impl] = bench.step(fn, p)
                        build_s[impl] = time.perf_counter() - started
                    except Exception as exc:  # noqa: BLE001
                        failed[impl] = f"{type(exc).__name__}: {exc}"
                found = measure_contenders(steps, ctx.device, ctx.size.op_budget,
                                           with_peak_memory=False, errors=failed)

                def columns(impl: str, timing: Timing) -> dict:
                    rate = bench.gbps(p, timing)
                    err = max_errors.get(impl)
                    compile_s = None
                    if impl == "compiled":      # the compiling call beyond a normal one
                        first = (check_s[impl] if p == "forward"
                                 else build_s[impl] + found.first_call_s[impl])
                        compile_s = max(0.0, first - timing.median_s)
                    return dict(gbps=rate, note=_mismatch_note(err, dtype),
                                copy_bw_pct=(100 * rate * 1e9 / ctx.copy_bandwidth
                                             if ctx.copy_bandwidth else None),
                                compile_s=compile_s,
                                max_abs_err=err if isinstance(err, float) else None)

                add_rows(ctx, dict(common, bytes=bench.traffic[p], rotation_copies=bench.copies,
                                   **{"pass": p}),
                         {impl: impl for impl in impls}, found,
                         {"speedup_vs_reference": "eager", "speedup_vs_compiled": "compiled"},
                         columns)
            del bench, fns
            if "compiled" in impls:
                torch._dynamo.reset()
