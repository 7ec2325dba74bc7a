"""Section 1: each fused operator against the eager reference and torch.compile of it.

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
from dataclasses import dataclass

import torch

from . import implementations
from .shapes import OpSite
from .timing import Budget, Timing, gbps, rotation_count, time_calls, time_interleaved

PASSES = ("forward", "backward", "forward+backward")

# Largest |fused - reference| on unit-normal inputs before a row is flagged: the benchmark is
# no place to test correctness, but a fast wrong kernel must not pass unnoticed.
MISMATCH_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10,
                      torch.bfloat16: 6e-2, torch.float16: 6e-3}


@dataclass(frozen=True)
class OpSpec:
    differentiable: tuple[str, ...]     # tensor arguments that receive a gradient
    backward_reads: tuple[str, ...]     # inputs the backward formula reads (besides grad_out)


OP_SPECS = {
    "temporal_diff_pool": OpSpec(("x",), ()),
    "cross_segment_diff": OpSpec(("feat", "aligned"), ()),
    "multiscale_sum": OpSpec(("diff", "pooled_branch", "full_branch"), ()),
    "bidirectional_excitation": OpSpec(("x", "y_fwd", "y_bwd"), ("x", "y_fwd", "y_bwd")),
    "temporal_shift_conv": OpSpec(("x", "weight"), ("x", "weight")),
    "excite_shift": OpSpec(("x", "y_fwd", "y_bwd", "weight"), ("x", "y_fwd", "y_bwd", "weight")),
    "lateral_fuse": OpSpec(("x", "d"), ()),
}


def _numel(shape) -> int:
    return math.prod(shape)


def make_inputs(site: OpSite, dtype: torch.dtype, device: torch.device,
                requires_grad: bool, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs for ``site``; the temporal-shift weight starts as the TSM shift (SPEC §5)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = {}
    for name, shape in site.shapes.items():
        if name == "weight":
            t = torch.zeros(shape)
            fold = shape[0] // 8
            t[:fold, 0, 2] = 1
            t[fold:2 * fold, 0, 0] = 1
            t[2 * fold:, 0, 1] = 1
            t += 0.01 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen)
        t = t.to(device=device, dtype=dtype)
        tensors[name] = t.requires_grad_(requires_grad and name in OP_SPECS[site.op].differentiable)
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
    size = torch.empty((), dtype=dtype).element_size()
    spec = OP_SPECS[site.op]
    inputs = sum(_numel(s) for s in site.shapes.values())
    outputs = sum(_numel(s) for s in output_shapes(site))
    reads = sum(_numel(site.shapes[n]) for n in spec.backward_reads)
    grads = sum(_numel(site.shapes[n]) for n in spec.differentiable)
    forward = (inputs + outputs) * size
    backward = (outputs + reads + grads) * size
    return {"forward": forward, "backward": backward, "forward+backward": forward + backward}


class OperatorBench:
    """Timing of one operator site, one dtype, on one device, for any implementation and pass.

    Input copies for rotation are built once and shared by every implementation, so all of them
    see the same data at the same addresses.
    """

    def __init__(self, site: OpSite, dtype: torch.dtype, device: torch.device,
                 rotate_cap_bytes: int):
        self.site, self.dtype, self.device = site, dtype, device
        self.traffic = traffic(site, dtype)
        size = torch.empty((), dtype=dtype).element_size()
        set_bytes = sum(_numel(s) for s in site.shapes.values()) * size
        self.copies = rotation_count(set_bytes, device, rotate_cap_bytes)
        self.footprint_bytes = self.copies * set_bytes
        self.sets = [make_inputs(site, dtype, device, True, seed=i) for i in range(self.copies)]
        grad_shapes = output_shapes(site)
        self.grad_outs = [tuple(torch.randn(s, dtype=dtype, device=device) for s in grad_shapes)
                          for _ in range(self.copies)]

    def _grad_inputs(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(self.sets[i][n] for n in OP_SPECS[self.site.op].differentiable)

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
                   for g, w in zip(got, want))

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

    def time(self, fn, pass_name: str, budget: Budget) -> Timing:
        return time_calls(self.step(fn, pass_name), self.device, budget)

    def gbps(self, pass_name: str, timing: Timing) -> float:
        return gbps(self.traffic[pass_name], timing.median_s)


# --------------------------------------------------------------------------- the section ---

def _implementations(ctx) -> list[str]:
    return ["eager"] + (["compiled"] if ctx.profile.compile_reference else []) + \
        list(ctx.fused_backends)


def sites(ctx):
    from .shapes import operator_sites

    geo = ctx.profile.op_geometry(ctx.device, ctx.segments)
    return geo, operator_sites(geo, ctx.profile.stages_on(ctx.device), ctx.profile.first_blocks)


def planned_steps(ctx) -> int:
    _, site_list = sites(ctx)
    return (len(ctx.dtypes) * len(site_list) * len(ctx.profile.passes_on(ctx.device))
            * len(_implementations(ctx)))


def run(ctx) -> None:
    """Time every operator site x dtype x pass x implementation; one row per measurement."""
    import time

    from .context import dtype_name
    from .timing import synchronize

    geo, site_list = sites(ctx)
    impls = _implementations(ctx)
    passes = ctx.profile.passes_on(ctx.device)
    ctx.log(f"[ops] {geo.describe()}"
            + ("" if geo.videos == 8 else " (scaled down from 8 videos for this device)")
            + f"; implementations: {', '.join(impls)}")
    for dtype in ctx.dtypes:
        for site in site_list:
            common = dict(section="ops", name=site.op, site=site.site, dtype=dtype_name(dtype),
                          shape=site.shape_text(), videos=geo.videos, segments=geo.segments,
                          resolution=geo.resolution)
            try:
                bench = OperatorBench(site, dtype, ctx.device, ctx.rotate_cap_bytes)
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                for p in passes:
                    for impl in impls:
                        ctx.results.add(**common, impl=impl, **{"pass": p}, status="error",
                                        note=f"inputs: {type(exc).__name__}: {exc}")
                ctx.advance(site.label, len(passes) * len(impls))
                continue
            fns, errors, check_s = {}, {}, {}
            for impl in impls:
                try:
                    fns[impl] = implementations.operator_fn(site.op, impl)
                    if impl != "eager":           # also compiles the inference graph
                        started = time.perf_counter()
                        errors[impl] = bench.max_abs_error(fns[impl])
                        check_s[impl] = time.perf_counter() - started
                except Exception as exc:  # noqa: BLE001
                    fns.pop(impl, None)
                    errors[impl] = f"{type(exc).__name__}: {exc}"
            for p in passes:
                self_errors = dict(errors)
                steps, first_call = {}, {}
                for impl in fns:
                    try:
                        started = time.perf_counter()
                        steps[impl] = bench.step(fns[impl], p)
                        steps[impl](0)                   # compiles, for "compiled"
                        synchronize(ctx.device)
                        first_call[impl] = time.perf_counter() - started
                    except Exception as exc:  # noqa: BLE001
                        steps.pop(impl, None)
                        self_errors[impl] = f"{type(exc).__name__}: {exc}"
                timings, failed = time_interleaved(steps, ctx.device, ctx.profile.op_budget)
                self_errors.update(failed)
                medians = {impl: t.median_s for impl, t in timings.items()}
                for impl in impls:
                    ctx.advance(f"{site.label} {p} {impl}")
                    row = dict(common, impl=impl, **{"pass": p}, bytes=bench.traffic[p],
                               rotation_copies=bench.copies)
                    if impl not in timings:
                        ctx.results.add(**row, status="error",
                                        note=str(self_errors.get(impl, "not timed"))[:300])
                        continue
                    timing = timings[impl]
                    rate = bench.gbps(p, timing)
                    err = errors.get(impl) if isinstance(errors.get(impl), float) else None
                    if err is not None and err > MISMATCH_TOLERANCE.get(dtype, 1e-4):
                        row["note"] = (f"MISMATCH: forward differs from the eager reference by "
                                       f"{err:.3g} (tolerance "
                                       f"{MISMATCH_TOLERANCE.get(dtype, 1e-4):g})")
                    ctx.results.add(
                        **row, median_ms=timing.median_ms, q20_ms=timing.q20_s * 1e3,
                        q80_ms=timing.q80_s * 1e3,
                        min_ms=timing.min_s * 1e3, reps=timing.reps, gbps=rate,
                        copy_bw_pct=(100 * rate * 1e9 / ctx.copy_bandwidth
                                     if ctx.copy_bandwidth else None),
                        speedup_vs_reference=(medians["eager"] / timing.median_s
                                              if "eager" in medians else None),
                        speedup_vs_compiled=(medians["compiled"] / timing.median_s
                                             if "compiled" in medians else None),
                        compile_s=(None if impl != "compiled" else
                                   check_s["compiled"] if p == "forward"
                                   else first_call["compiled"]),
                        max_abs_err=err)
            del bench, fns
            if "compiled" in impls:
                torch._dynamo.reset()
