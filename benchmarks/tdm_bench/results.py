"""Result rows, the run's environment, and the files they are appended to.

Every measurement is one tidy row (:data:`COLUMNS`); a run also records its environment and its
target verdicts. ``bench_tdm.csv`` gets one line per row with the run's identity repeated
(run_id, date, commit, device), ``bench_tdm_targets.csv`` one line per target verdict, and
``bench_tdm.json`` one object per run (environment, verdicts, rows). They are rewritten
atomically (:mod:`tdn.fileio`), so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import torch

from tdn.fileio import atomic_write_text

COLUMNS = (
    "run_id", "date", "commit", "device", "device_name", "torch", "profile",
    "section", "name", "site", "impl", "pass", "dtype", "shape", "layout",
    "videos", "segments", "resolution",
    "median_ms", "q20_ms", "q80_ms", "min_ms", "reps",
    "bytes", "gbps", "copy_bw_pct", "gmacs",
    "throughput", "throughput_unit", "peak_mem_mb",
    "speedup_vs_reference", "speedup_vs_compiled",
    "compile_s", "max_abs_err", "rotation_copies", "status", "note",
)
RUN_COLUMNS = ("run_id", "date", "commit", "device", "device_name", "torch", "profile")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_of(repo: Path) -> str:
    """``<sha>`` or ``<sha>+dirty`` (uncommitted changes), or "unknown" outside git."""
    sha = _git(["rev-parse", "--short=12", "HEAD"], repo)
    if sha is None:
        return "unknown"
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], repo)
    return sha + ("+dirty" if dirty else "")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} threads)"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def environment(device: torch.device, profile: str, repo: Path, argv: list[str]) -> dict:
    import tdn_ops

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    now = _dt.datetime.now(_dt.timezone.utc)
    return {
        "run_id": now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
        "date": now.isoformat(timespec="seconds"),
        "commit": commit_of(repo),
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tdn_ops": getattr(tdn_ops, "__version__", "unknown"),
        "native_extension": bool(tdn_ops.NATIVE_AVAILABLE),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_average(),
        "profile": profile,
        "argv": argv,
    }


def _clean(value):
    """JSON/CSV-friendly: NaN and inf become None, floats keep 6 significant digits."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.6g}")
    return value


class Results:
    """Rows and target verdicts of one run, with its environment."""

    def __init__(self, env: dict):
        self.env = env
        self.rows: list[dict] = []
        self.targets: list[dict] = []

    def add(self, **fields) -> dict:
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown result columns: {sorted(unknown)}")
        row = {c: None for c in COLUMNS}
        row.update({c: self.env.get(c) for c in RUN_COLUMNS})
        row["status"] = "ok"
        row.update({k: _clean(v) for k, v in fields.items()})
        self.rows.append(row)
        return row

    def as_json(self) -> dict:
        return {"environment": self.env, "targets": self.targets, "rows": self.rows}


TARGET_COLUMNS = RUN_COLUMNS + ("status", "target", "scope", "measured", "threshold", "unit",
                                 "shortfall", "why")


def target_rows(res: "Results") -> list[dict]:
    """The run's target verdicts as CSV rows, with the run's identity."""
    ident = {c: res.env.get(c) for c in RUN_COLUMNS}
    return [dict(ident, **{k: v.get(k) for k in TARGET_COLUMNS if k in v}) for v in res.targets]


def append_csv(path: Path, rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> None:
    """Append ``rows``; an older file with other columns is rewritten with the union."""
    old_rows: list[dict] = []
    columns = list(columns)
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            old_rows = list(reader)
            columns += [c for c in (reader.fieldnames or []) if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(old_rows)
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_text(path, buf.getvalue())


def append_json(path: Path, run: dict) -> None:
    """Append ``run`` to the list of runs; an unreadable file is kept aside, not overwritten."""
    runs: list = []
    if path.exists():
        try:
            runs = json.loads(path.read_text())
            if not isinstance(runs, list):
                raise ValueError("top level is not a list")
        except (ValueError, OSError) as exc:
            aside = path.with_suffix(f".unreadable-{uuid.uuid4().hex[:6]}.json")
            os.replace(path, aside)
            print(f"warning: {path} was not a list of runs ({exc}); moved it to {aside}",
                  file=sys.stderr)
            runs = []
    runs.append(run)
    atomic_write_text(path, json.dumps(runs, indent=1, default=_clean) + "\n")


def write_run(res: Results, out_dir: Path) -> list[Path]:
    """Append the run to ``bench_tdm.csv``, ``bench_tdm_targets.csv`` and ``bench_tdm.json``
    in ``out_dir``; the files written."""
    paths = [out_dir / name for name in ("bench_tdm.csv", "bench_tdm_targets.csv",
                                         "bench_tdm.json")]
    append_csv(paths[0], res.rows)
    append_csv(paths[1], target_rows(res), TARGET_COLUMNS)
    append_json(paths[2], res.as_json())
    return paths
