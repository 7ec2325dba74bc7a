"""PNG plots of a run: speed-up per operator and backend, and the end-to-end bars.

Files (the latest run per device type overwrites them; the CSV/JSON keep every run):
    ops_speedup_<device>.png   speed-up over the eager reference, one panel per (dtype, pass)
    modules_<device>.png       module speed-up over the reference module (same weights)
    model_<device>.png         whole-model time per clip (inference, training) and peak memory
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from tdn.fileio import atomic_write  # noqa: E402

COLORS = {"compiled": "#999999", "cpu": "#1f77b4", "cuda": "#2ca02c", "triton": "#d62728",
          "reference": "#999999", "fused": "#1f77b4", "tsn": "#ff7f0e", "eager": "#cccccc",
          "compiled_reference": "#555555", "compiled_fused": "#0b3d66",
          "compiled_tsn": "#a34f00", "onnxruntime": "#9467bd"}
UNKNOWN_COLOR = "#dddddd"  # an implementation without a colour of its own still plots


def _save(fig, path: Path) -> Path:
    try:
        # The temporary file has no .png ending, so the format is named.
        return atomic_write(path, lambda temporary: fig.savefig(
            temporary, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _speedup_axis(ax, cases: list[str], ylabel: str, rotation: int) -> None:
    """Log-scale speed-ups around a line at 1x, one labelled tick per case."""
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, fontsize=7, rotation=rotation, ha="right")
    ax.set_ylabel(ylabel)


def _title(env: dict) -> str:
    return f"{env.get('device_name', '')}\ntorch {env.get('torch')}, commit {env.get('commit')}"


def _target_lines(device: str, pass_name: str) -> list[tuple[float, str]]:
    """The issue's speed-up targets that apply to a panel, drawn as dashed lines."""
    if device == "cuda" and pass_name in ("forward", "backward"):
        return [(2.0, "target 2x eager (GPU)")]
    if device == "cpu" and pass_name == "forward+backward":
        return [(3.0, "target 3x eager (CPU, layer 3)")]
    return []


def ops_speedup(rows: list[dict], env: dict, path: Path) -> Path | None:
    ops = [r for r in rows if r["section"] == "ops" and r["status"] == "ok"
           and r["impl"] != "eager" and r.get("speedup_vs_reference")]
    if not ops:
        return None
    panels: OrderedDict = OrderedDict()
    for r in ops:
        panels.setdefault((r["dtype"], r["pass"]), []).append(r)
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 4.6 * len(panels)), squeeze=False,
                             layout="constrained")
    for ax, ((dtype, pass_name), group) in zip(axes[:, 0], panels.items()):
        cases = list(OrderedDict.fromkeys(f"{r['name']}@{r['site']}" for r in group))
        impls = list(OrderedDict.fromkeys(r["impl"] for r in group))
        width = 0.8 / max(len(impls), 1)
        for k, impl in enumerate(impls):
            values = {f"{r['name']}@{r['site']}": r["speedup_vs_reference"]
                      for r in group if r["impl"] == impl}
            xs = [i + (k - (len(impls) - 1) / 2) * width for i in range(len(cases))]
            ax.bar(xs, [values.get(c, 0) for c in cases], width, label=impl,
                   color=COLORS.get(impl, UNKNOWN_COLOR))
        _speedup_axis(ax, cases, "speed-up vs eager", rotation=35)
        for level, label in _target_lines(env.get("device", ""), pass_name):
            ax.axhline(level, color="black", linestyle="--", linewidth=0.8)
            ax.text(len(cases) - 0.5, level, label, ha="right", va="bottom", fontsize=7)
        ax.set_title(f"{dtype}, {pass_name}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("fused operators vs the eager reference\n" + _title(env), fontsize=10)
    return _save(fig, path)


def modules_bars(rows: list[dict], env: dict, path: Path) -> Path | None:
    """Speed-up of each module over its reference build (same weights), per pass and dtype."""
    mods = [r for r in rows if r["section"] == "modules" and r["status"] == "ok"
            and r["impl"] != "reference" and r.get("speedup_vs_reference")]
    if not mods:
        return None

    def case(r):
        return f"{r['name']}@{r['site']}\n{r['pass']} {r['dtype']}"

    cases = list(OrderedDict.fromkeys(case(r) for r in mods))
    impls = list(OrderedDict.fromkeys(r["impl"] for r in mods))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cases)), 4), layout="constrained")
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        values = {case(r): r["speedup_vs_reference"] for r in mods if r["impl"] == impl}
        xs = [i + (k - (len(impls) - 1) / 2) * width for i in range(len(cases))]
        heights = [values.get(c, 0) for c in cases]
        ax.bar(xs, heights, width, label=impl, color=COLORS.get(impl, UNKNOWN_COLOR))
        for x, h in zip(xs, heights):
            if h:
                ax.text(x, h, f"{h:.2f}x", ha="center", va="bottom", fontsize=7)
    _speedup_axis(ax, cases, "speed-up vs reference module", rotation=25)
    ax.legend(fontsize=8)
    ax.set_title("modules, same weights\n" + _title(env), fontsize=10)
    return _save(fig, path)


def model_bars(rows: list[dict], env: dict, path: Path) -> Path | None:
    models = [r for r in rows if r["section"] == "model" and r["status"] == "ok"]
    if not models:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
    for ax, (pass_name, key, label) in zip(axes, (
            ("inference", "median_ms", "inference ms per batch"),
            ("training", "median_ms", "training step ms"),
            ("training", "peak_mem_mb", "training peak MiB (above step start)"))):
        group = [r for r in models if r["pass"] == pass_name and r.get(key)]
        labels = [("TDN " if r["name"].startswith("tdn") else "TSN ")
                  + r["impl"].replace("compiled_", "compiled\n").replace("tsn", "").strip()
                  + f"\n{r['dtype']}" for r in group]
        ax.bar(range(len(group)), [r[key] for r in group],
               color=[COLORS.get(r["impl"], UNKNOWN_COLOR) for r in group])
        for i, r in enumerate(group):
            ax.text(i, r[key], f"{r[key]:.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(label, fontsize=9)
    first = models[0]
    fig.suptitle(f"TDN-ResNet50 vs TSN ResNet-50, {first.get('videos')} video(s) x "
                 f"{first.get('segments')} segments at {first.get('resolution')}px\n"
                 + _title(env), fontsize=10)
    return _save(fig, path)


def write_all(res, out_dir: Path) -> list[Path]:
    device = res.env.get("device", "cpu")
    made = [ops_speedup(res.rows, res.env, out_dir / f"ops_speedup_{device}.png"),
            modules_bars(res.rows, res.env, out_dir / f"modules_{device}.png"),
            model_bars(res.rows, res.env, out_dir / f"model_{device}.png")]
    return [p for p in made if p is not None]
