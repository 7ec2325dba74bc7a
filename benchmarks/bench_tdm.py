#!/usr/bin/env python
"""The measured case for fused TDN: operators, modules and the whole model, in one run.

    python benchmarks/bench_tdm.py                 # GPU if there is one; quick on a CPU
    python benchmarks/bench_tdm.py --size standard # every operator site, on a CPU too
    python benchmarks/bench_tdm.py --device cuda --full --dtype float32,bfloat16

Sections (``--sections``):
  ops      every fused operator (forward, backward, forward+backward) against the eager
           reference and torch.compile of it, at the shapes it has inside TDN-ResNet50
  modules  the L-TDM + temporal-shift block of each stage and the S-TDM stem, fused against the
           reference modules with the same weights
  model    TDN-ResNet50 (8 segments, 224x224) inference throughput, training-step time and peak
           memory: fused, reference, and a plain TSN ResNet-50 on the same frames; with
           --compile (default in --full) torch.compile of each of the three as well, compile
           time reported apart from the step times

A readable table and the target verdicts are printed; every figure is appended to
<output-dir>/bench_tdm.csv (one row per measurement), bench_tdm_targets.csv (one row per target
verdict) and bench_tdm.json (one object per run), with the device, versions, commit and date;
PNG plots are written beside them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

# torch.profiler (the CPU peak-memory measurement) logs every start/stop through Kineto.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:  # an installed tdn_ops, else the source checkout this script belongs to
    import tdn_ops  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from tdm_bench import results, sections, sizes, tables, targets  # noqa: E402
from tdm_bench.implementations import FUSED_BACKENDS, fused_backends  # noqa: E402
from tdm_bench.sections import SECTIONS  # noqa: E402
from tdm_bench.sections.common import DTYPES, RunContext  # noqa: E402
from tdm_bench.timing import Budget, cache_bytes, copy_bandwidth  # noqa: E402


def _names(parser: argparse.ArgumentParser, option: str, text: str, allowed) -> list[str]:
    """A comma-separated option value as a list of names, each one of ``allowed``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        parser.error(f"{option} must name some of {tuple(allowed)}, got {bad or 'nothing'}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_tdm.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sizes (--size, or the --quick / --full shortcuts):\n" + sizes.describe())
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size", choices=tuple(sizes.SIZES), default=None,
                      help="how large and how long (default: quick on a CPU, standard on a "
                      "GPU)")
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="same as --size quick")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="same as --size full")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--dtype", default=None,
                        help="comma-separated dtypes of " + ",".join(DTYPES) +
                        " (default: float32 on a CPU, float32,bfloat16 on a GPU)")
    parser.add_argument("--segments", type=int, default=8, help="segments per video (T)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated fused backends to time, of "
                        + ",".join(FUSED_BACKENDS) + " (default: every one available)")
    compiling = parser.add_mutually_exclusive_group()
    compiling.add_argument("--compile", action="store_true",
                           help="add torch.compile of the three whole models (reference, fused, "
                           "TSN) to the model section, timed in the same round-robin (on by "
                           "default with --full; on a small CPU each model compiles for "
                           "minutes, its training step for tens of minutes, so the other sizes "
                           "leave them out)")
    compiling.add_argument("--no-compile", action="store_true",
                           help="skip every torch.compile baseline (operators, modules and "
                           "whole models)")
    onnx = parser.add_mutually_exclusive_group()
    onnx.add_argument("--onnx", dest="onnx", action="store_true", default=None,
                      help="add onnxruntime (CPU execution provider) of the fused TDN to the "
                      "model section's float32 inference, the runtime a deployment would pick "
                      "(exported with `tdn export`'s code and verified first; needs the "
                      "[export] extra; on by default with --full)")
    onnx.add_argument("--no-onnx", dest="onnx", action="store_false",
                      help="leave onnxruntime out, also with --full")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for a CPU run (default: torch's choice)")
    parser.add_argument("--rotate-mb", type=float, default=None,
                        help="cap on the rotated input footprint in MiB (default: 256 on a "
                        "CPU, 1024 on a GPU); inputs rotate through 2x the last-level cache "
                        "up to this cap")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results",
                        help="where results and plots go (default: benchmarks/results)")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--channels-last", action="store_true",
                        help="run the whole-model section (all three models and the input) in "
                             "channels_last instead of the contiguous layout")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="on a CPU, 'keep' (default) makes glibc keep freed memory for "
                        "reuse (tdn.keep_freed_cpu_memory), as `tdn predict` does, so that no "
                        "contender pays page faults for fresh feature maps on every call; "
                        "'default' leaves the allocator as it is")
    parser.add_argument("--note", default="", help="free text stored with the run")
    args = parser.parse_args(argv)

    args.sections = tuple(_names(parser, "--sections", args.sections, SECTIONS))
    if args.segments < 1:
        parser.error(f"--segments must be >= 1, got {args.segments}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        args.device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device: {exc}")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {args.device}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this PyTorch build or machine has no CUDA device")
    if args.device.type == "cuda" and args.device.index is None:
        args.device = torch.device("cuda", torch.cuda.current_device())
    if args.size is None:
        args.size = "standard" if args.device.type == "cuda" else "quick"
    default_dtypes = "float32,bfloat16" if args.device.type == "cuda" else "float32"
    args.dtypes = [DTYPES[d] for d in _names(parser, "--dtype", args.dtype or default_dtypes,
                                             DTYPES)]
    if args.backends is not None:
        args.backends = _names(parser, "--backends", args.backends, FUSED_BACKENDS)
    if args.rotate_mb is None:
        args.rotate_mb = 1024 if args.device.type == "cuda" else 256
    if args.rotate_mb <= 0:
        parser.error(f"--rotate-mb must be > 0, got {args.rotate_mb}")
    return args


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="timing", dynamic_ncols=True, file=sys.stderr)


def _set_up_malloc(choice: str, device: torch.device) -> str:
    """Apply ``--malloc`` before anything is allocated; how the run allocates, in words."""
    from tdn.cpu_memory import keep_freed_cpu_memory, preloaded_allocator

    other = preloaded_allocator()
    if other:
        return f"{other} (preloaded)"
    if device.type != "cpu" or choice == "default":
        return "default"
    if keep_freed_cpu_memory():
        return "keep (glibc keeps freed blocks up to 32 MiB: tdn.keep_freed_cpu_memory)"
    return "default (keep_freed_cpu_memory could not apply: not glibc)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    malloc = _set_up_malloc(args.malloc, args.device)
    if args.device.type == "cuda":
        torch.cuda.set_device(args.device)
        # As in the authors' training code: cuDNN picks the fastest convolution algorithms
        # during the warm-up calls (the modules and model sections warm up before timing).
        torch.backends.cudnn.benchmark = True
    size = sizes.get(args.size, compile_reference=False if args.no_compile else None,
                     compile_models=args.compile or None, onnx_runtime=args.onnx)
    if size.onnx_runtime and importlib.util.find_spec("onnxruntime") is None:
        if args.onnx:
            sys.exit("bench_tdm: --onnx needs onnxruntime: pip install -e '.[export]'")
        print("bench_tdm: onnxruntime is not installed: the model section runs without its "
              "column (pip install -e '.[export]')", file=sys.stderr)
        size = sizes.get(args.size, compile_reference=False if args.no_compile else None,
                         compile_models=args.compile or None, onnx_runtime=False)
    env = results.environment(args.device, size.name, REPO,
                              sys.argv[:1] + list(argv if argv is not None else sys.argv[1:]))
    env["note"] = args.note
    env["malloc"] = malloc
    if args.device.type == "cuda":
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        env["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        env["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    env["sections"] = list(args.sections)
    env["compile_models"] = size.compile_models
    env["onnx_runtime"] = size.onnx_runtime
    available = fused_backends(args.device)
    chosen = available if args.backends is None else [b for b in args.backends if b in available]
    env["fused_backends_available"] = available
    env["fused_backends"] = chosen
    env["rotate_cap_mib"] = args.rotate_mb
    env["cache_bytes"] = cache_bytes(args.device)
    res = results.Results(env)
    ctx = RunContext(device=args.device, size=size, dtypes=args.dtypes,
                     segments=args.segments, results=res, fused_backends=chosen,
                     rotate_cap_bytes=int(args.rotate_mb * 2**20),
                     channels_last=args.channels_last)

    print(f"bench_tdm: {env['device_name']} | torch {env['torch']} | commit {env['commit']} | "
          f"size {size.name} | sections {','.join(args.sections)} | dtypes "
          f"{','.join(map(str, args.dtypes))}".replace("torch.", ""))
    if args.device.type == "cpu":
        print(f"malloc: {malloc}")
    print(f"fused backends: {', '.join(chosen) or 'none'}"
          + ("" if chosen else " (only the reference runs: build tdn_ops._C for 'cpu'/'cuda')")
          + ("" if args.backends is None or set(args.backends) <= set(available)
             else f"; requested but unavailable: "
                  f"{', '.join(sorted(set(args.backends) - set(available)))}"))

    if "ops" in args.sections:
        # The copy streams through the same working set the operators rotate through (src and
        # dst together), so "% of copy" compares like with like; a GPU copies at least 1 GiB
        # so that launch overhead does not hide its peak.
        copy_bytes = min(2 * env["cache_bytes"], ctx.rotate_cap_bytes)
        copy_bytes = max(copy_bytes, (1 << 30) if args.device.type == "cuda" else 32 << 20)
        ctx.copy_bandwidth = copy_bandwidth(
            args.device, copy_bytes // 2,
            Budget(warmup=2, min_reps=5, max_reps=50, min_time_s=0.3))
        env["copy_bandwidth_gbps"] = round(ctx.copy_bandwidth / 1e9, 2)
        print(f"device copy bandwidth: {env['copy_bandwidth_gbps']} GB/s "
              f"(copy_ through a {copy_bytes / 2**20:.0f} MiB working set, the operators' "
              "rotation footprint)")

    chosen_sections = {}
    planned = 0
    for name in args.sections:
        try:
            chosen_sections[name] = sections.load(name)
            planned += chosen_sections[name].planned_steps(ctx)
        except Exception as exc:  # noqa: BLE001 - report it and run the other sections
            ctx.log(f"[{name}] cannot run: {type(exc).__name__}: {exc}")
            res.add(section=name, name=name, status="error",
                    note=f"{type(exc).__name__}: {exc}"[:300])
    ctx.progress = _progress(planned, not args.no_progress)
    started = time.perf_counter()
    env["section_seconds"] = {}
    for name, module in chosen_sections.items():
        section_start = time.perf_counter()
        try:
            module.run(ctx)
        except Exception as exc:  # noqa: BLE001
            ctx.log(f"[{name}] failed: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            res.add(section=name, name=name, status="error",
                    note=f"{type(exc).__name__}: {exc}"[:300])
        env["section_seconds"][name] = round(time.perf_counter() - section_start, 1)
    if ctx.progress is not None:
        ctx.progress.close()
    env["elapsed_s"] = round(time.perf_counter() - started, 1)
    env["load_average_end"] = results.load_average()

    res.targets = targets.evaluate(res.rows, env, args.sections)
    print()
    print(tables.full_report(res.rows, res.targets))
    written = results.write_run(res, args.output_dir)
    if not args.no_plots:
        try:
            from tdm_bench import plots
            written += plots.write_all(res, args.output_dir)
        except Exception as exc:  # noqa: BLE001 - plots are a convenience
            print(f"plots not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    per_section = ", ".join(f"{k} {v} s" for k, v in env["section_seconds"].items())
    print(f"\n{len(res.rows)} rows in {env['elapsed_s']} s ({per_section}); wrote "
          + ", ".join(os.path.relpath(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
