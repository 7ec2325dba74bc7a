#!/usr/bin/env python
"""Helpers of scripts/gpu_check.sh (the GPU check of tdn_ops).

    gpu_report.py versions OUT.json      device, driver, torch, CUDA, Triton, nvcc, commit, date
    gpu_report.py check-kernels          fail unless the installed tdn_ops has CUDA kernels
    gpu_report.py exercise               every operator forward + backward on the CUDA kernels,
                                         small shapes, both layouts, vector and scalar paths
                                         (the compute-sanitizer workload)
    gpu_report.py summarize DIR [--copy-to RESULTS_DIR]
                                         summary.md / summary.json from a gpu_check.sh run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

try:  # an installed tdn, else the source checkout (the "versions" step runs before the build)
    from tdn.fileio import atomic_write_text
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tdn.fileio import atomic_write_text


def _run(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


# ---------------------------------------------------------------------------------------
# versions


def collect_versions() -> dict:
    import torch

    info: dict = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": os.environ.get("TDN_COMMIT", "unknown"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    info["nvidia_smi"] = smi
    info["driver"] = smi.split(",")[1].strip() if smi and "," in smi else None
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    nvcc = _run(["nvcc", "--version"])
    info["nvcc"] = nvcc.splitlines()[-1] if nvcc else None
    return info


def cmd_versions(args) -> int:
    info = collect_versions()
    atomic_write_text(Path(args.output), json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------------------
# check-kernels


def cmd_check_kernels(_args) -> int:
    import tdn_ops
    from tdn_ops import OPERATORS
    from tdn_ops._extension import has_native_kernel

    print("tdn_ops from", os.path.dirname(tdn_ops.__file__))
    missing = [op for op in OPERATORS for suffix in ("", "_backward")
               if not has_native_kernel(op + suffix, "cuda")]
    if missing:
        print("no CUDA kernel for:", ", ".join(missing))
        return 1
    print(f"CUDA kernels registered for all {len(OPERATORS)} operators (forward and backward)")
    return 0


# ---------------------------------------------------------------------------------------
# exercise (sanitizer workload)


def _exercise_cases():
    """(op, args builder) pairs on small shapes: vectorised rows (multiples of 8) and odd
    shapes (scalar paths), so that every kernel variant runs at least once."""
    import torch

    def rnd(*shape):
        return torch.randn(*shape, device="cuda")

    for h, w, c in ((8, 16, 16), (5, 7, 3)):
        nt, t = 4, 2
        yield "bidirectional_excitation", (rnd(nt, c, h, w), rnd(nt, c, h, w), rnd(nt, c, h, w))
        yield "temporal_shift_conv", (rnd(nt, c, h, w), rnd(c, 1, 3), t)
        yield "excite_shift", (rnd(nt, c, h, w), rnd(nt, c, h, w), rnd(nt, c, h, w),
                               rnd(c, 1, 3), t)
        yield "temporal_diff_pool", (rnd(2, 5 * c, h, w), 5, 2)
        yield "temporal_diff_pool", (rnd(2, 5 * c, h + 1, w + 1), 5, 3)
        yield "cross_segment_diff", (rnd(nt, c, h, w), rnd(nt, c, h, w), t)
        yield "multiscale_sum", (rnd(2, nt, c, h, w), rnd(2, nt, c, h // 2, w // 2),
                                 rnd(2, nt, c, h, w))
        yield "lateral_fuse", (rnd(nt, c, h, w), rnd(nt, c, (h + 1) // 2, (w + 1) // 2), 0.5, 0.5)
        yield "lateral_fuse", (rnd(nt, c, h, w), rnd(nt, c, 3, 5), 0.75, 0.25)


def cmd_exercise(_args) -> int:
    import torch

    import tdn_ops

    def to_layout(a, channels_last):
        if channels_last and isinstance(a, torch.Tensor) and a.dim() == 4:
            return a.contiguous(memory_format=torch.channels_last)
        return a

    runs = 0
    for dtype in (torch.float32, torch.bfloat16):
        for channels_last in (False, True):
            for op, args in _exercise_cases():
                args = [to_layout(a, channels_last) for a in args]
                args = [a.to(dtype).requires_grad_(True) if isinstance(a, torch.Tensor) else a
                        for a in args]
                out = getattr(tdn_ops, op)(*args, backend="cuda")
                outs = out if isinstance(out, tuple) else (out,)
                torch.autograd.backward(outs, [torch.randn_like(o) for o in outs])
                runs += 1
    torch.cuda.synchronize()
    print(f"exercised {runs} operator calls forward and backward on the CUDA kernels")
    return 0


# ---------------------------------------------------------------------------------------
# summarize


def _read_steps(out: Path) -> list[dict]:
    path = out / "steps.tsv"
    if not path.exists():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [{"step": r[0], "status": r[1], "seconds": r[2] if len(r) > 2 else ""} for r in rows]


def _pytest_counts(out: Path) -> dict | None:
    path = out / "pytest.xml"
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in counts:
            counts[k] += int(s.get(k, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    skips: dict[str, int] = {}
    for case in root.iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            reason = (skip.get("message") or "").strip()[:160]
            skips[reason] = skips.get(reason, 0) + 1
    counts["skip_reasons"] = skips
    return counts


def _sanitizer_summary(out: Path) -> dict:
    result = {}
    for tool in ("memcheck", "racecheck"):
        log = out / f"sanitizer-{tool}.log"
        if not log.exists():
            continue
        text = log.read_text(errors="replace")
        m = re.findall(r"ERROR SUMMARY: (\d+) error", text)
        hazards = re.findall(r"RACECHECK SUMMARY: (\d+) hazard", text)
        result[tool] = {"errors": int(m[-1]) if m else None,
                        "hazards": int(hazards[-1]) if hazards else None}
    return result


def _bench_tails(out: Path, limit: int = 60) -> dict[str, list[str]]:
    """The last lines (tables and verdicts) of each benchmark log."""
    tails = {}
    for name in ("bench-ops", "bench-model"):
        log = out / f"{name}.log"
        if log.exists():
            tails[name] = log.read_text(errors="replace").splitlines()[-limit:]
    return tails


def cmd_summarize(args) -> int:
    out = Path(args.dir)
    versions = {}
    if (out / "versions.json").exists():
        versions = json.loads((out / "versions.json").read_text())
    summary = {
        "versions": versions,
        "steps": _read_steps(out),
        "pytest": _pytest_counts(out),
        "sanitizer": _sanitizer_summary(out),
        "bench_files": sorted(str(p.relative_to(out)) for d in ("bench", "bench-model")
                              if (out / d).exists() for p in (out / d).rglob("*")
                              if p.is_file()),
    }
    summary_json = json.dumps(summary, indent=2) + "\n"
    atomic_write_text(out / "summary.json", summary_json)

    v = versions
    md = [f"# tdn_ops GPU check: {v.get('device', 'unknown device')}", "",
          f"- date: {v.get('date')}", f"- commit: {v.get('commit')}",
          f"- device: {v.get('nvidia_smi') or v.get('device')} (capability "
          f"{v.get('capability')})",
          f"- driver: {v.get('driver')}", f"- torch: {v.get('torch')} (CUDA {v.get('torch_cuda')})",
          f"- Triton: {v.get('triton') or 'not installed'}", f"- nvcc: {v.get('nvcc')}", "",
          "## Steps", "", "| step | status | seconds |", "|---|---|---|"]
    md += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in summary["steps"]]
    p = summary["pytest"]
    if p:
        md += ["", "## Tests", "",
               f"{p['passed']} passed, {p['failures']} failed, {p['errors']} errors, "
               f"{p['skipped']} skipped (of {p['tests']})."]
        for reason, n in sorted(p["skip_reasons"].items(), key=lambda kv: -kv[1]):
            md.append(f"- skipped x{n}: {reason}")
    if summary["sanitizer"]:
        md += ["", "## compute-sanitizer", ""]
        for tool, r in summary["sanitizer"].items():
            md.append(f"- {tool}: errors={r['errors']} hazards={r['hazards']}")
    for name, lines in _bench_tails(out).items():
        md += ["", f"## Benchmark: tail of {name}.log", "", "```", *lines, "```"]
    text = "\n".join(md) + "\n"
    atomic_write_text(out / "summary.md", text)
    print(text)

    if args.copy_to:
        dest_dir = Path(args.copy_to)
        dest_dir.mkdir(parents=True, exist_ok=True)
        device = re.sub(r"[^A-Za-z0-9]+", "-", str(v.get("device", "gpu"))).strip("-").lower()
        day = str(v.get("date", ""))[:10] or _dt.date.today().isoformat()
        dest = dest_dir / f"gpu-{device}-{day}.md"
        atomic_write_text(dest, text)
        atomic_write_text(dest.with_suffix(".json"), summary_json)
        print(f"summary copied to {dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("versions")
    p.add_argument("output")
    p.set_defaults(fn=cmd_versions)
    sub.add_parser("check-kernels").set_defaults(fn=cmd_check_kernels)
    sub.add_parser("exercise").set_defaults(fn=cmd_exercise)
    p = sub.add_parser("summarize")
    p.add_argument("dir")
    p.add_argument("--copy-to", default=None)
    p.set_defaults(fn=cmd_summarize)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
