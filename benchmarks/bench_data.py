#!/usr/bin/env python
"""Does video decoding keep up with training? Loader throughput beside the model's.

    python benchmarks/bench_data.py                     # every installed decoder, workers 0,1,2
    python benchmarks/bench_data.py --workers 0,2,4,8 --decoders av,torchcodec

Two measurements on the same machine:
  loader  clips/s of the training loader (tdn.data's VideoDataset + build_loader, as `tdn train`
          builds it): TSN sampling of --segments x 5 frames, the training augmentation
          (multi-scale crop to --input-size, flip), per decoder, container (mp4 = H.264,
          webm = VP9) and worker count. The videos (--videos per container, --seconds long,
          --short-side px high, 4:3) are generated once with PyAV into --cache-dir.
  model   clips/s of one training step of --arch (TDN-ResNet50 by default) on one clip of
          --segments x 5 frames at --input-size on the CPU: forward, cross-entropy, backward,
          SGD update (the step of bench_tdm.py's model section).

If the loader's clips/s with W workers is below the model's, the accelerator would wait for
data; the summary says how many workers the measured model rate needs. On a GPU the model is
many times faster than the CPU step timed here: divide its clips/s by the per-worker rate.

Loader clips/s is clips over the whole pass, worker start-up included (first_clip_s says how
long the first clip took; raise --clips to make start-up a smaller share). Rows are
appended to <output-dir>/bench_data.csv and the run to bench_data.json; the plot is
bench_data.png.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:  # an installed tdn, else the source checkout this script belongs to
    import tdn  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tdm_bench import results, tables  # noqa: E402
from tdm_bench.shapes import Geometry  # noqa: E402
from tdm_bench.timing import Budget, time_calls  # noqa: E402

CONTAINERS = {  # container -> (codec, encoder options): what public datasets ship
    "mp4": ("libx264", {"crf": "23", "preset": "veryfast"}),           # Kinetics, UCF101 re-encodes
    "webm": ("libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}),  # SSv2
}
DECODERS = ("av", "torchcodec", "decord")
COLUMNS = results.RUN_COLUMNS + (
    "section", "decoder", "container", "workers", "arch", "segments", "resolution",
    "clips", "clips_per_s", "first_clip_s", "median_step_s", "status", "note")


# ----------------------------------------------------------------------------- arguments
def _int_list(text: str, option: str, low: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option}: expected comma-separated integers, "
                                         f"got {text!r}") from None
    if not values or min(values) < low:
        raise argparse.ArgumentTypeError(f"{option}: expected integers >= {low}, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_data.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoders", default=None,
                        help=f"comma-separated subset of {','.join(DECODERS)} "
                        "(default: every one installed)")
    parser.add_argument("--workers", default="0,1,2",
                        type=lambda t: _int_list(t, "--workers", 0),
                        help="loader worker counts (default 0,1,2)")
    parser.add_argument("--containers", default="mp4,webm",
                        help="comma-separated subset of mp4,webm (default both)")
    parser.add_argument("--videos", type=int, default=4, help="videos per container (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="video length (default 10)")
    parser.add_argument("--fps", type=int, default=25, help="video frame rate (default 25)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="video height in px, width 4/3 of it (default 256)")
    parser.add_argument("--clips", type=int, default=12,
                        help="clips loaded per measurement (default 12)")
    parser.add_argument("--segments", type=int, default=8, help="segments per clip (default 8)")
    parser.add_argument("--input-size", type=int, default=224, help="crop size (default 224)")
    parser.add_argument("--arch", default="tdn_resnet50", help="model of the training step")
    parser.add_argument("--model-steps", type=int, default=3,
                        help="timed training steps after one warm-up (default 3)")
    parser.add_argument("--no-model", action="store_true", help="skip the training step")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the training step (default: torch's)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "tdn" / "bench_data",
                        help="where the generated videos are kept (default %(default)s)")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results",
                        help="where results and the plot go (default benchmarks/results)")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plot")
    parser.add_argument("--note", default="", help="free text stored with the run")
    args = parser.parse_args(argv)

    from tdn.data.decoding import decoder_available

    installed = [name for name in DECODERS if decoder_available(name)]
    if args.decoders is None:
        args.decoders = installed
    else:
        args.decoders = [n.strip() for n in args.decoders.split(",") if n.strip()]
        unknown = [n for n in args.decoders if n not in DECODERS]
        if unknown or not args.decoders:
            parser.error(f"--decoders must name some of {DECODERS}, got {unknown or 'nothing'}")
        absent = [n for n in args.decoders if n not in installed]
        if absent:
            parser.error(f"--decoders: {', '.join(absent)} not installed here "
                         f"(installed: {', '.join(installed)})")
    args.containers = [n.strip() for n in args.containers.split(",") if n.strip()]
    if not args.containers or any(n not in CONTAINERS for n in args.containers):
        parser.error(f"--containers must name some of {tuple(CONTAINERS)}, got "
                     f"{args.containers}")
    for name in ("videos", "fps", "clips", "segments", "input_size", "model_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    if args.short_side < 16 or args.short_side % 2:
        parser.error(f"--short-side must be even and >= 16, got {args.short_side}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


# ----------------------------------------------------------------------------- videos
def _frames(height: int, width: int, count: int, seed: int) -> np.ndarray:
    """A smooth texture panning right 3 px per frame with a square crossing it: content that
    compresses like camera footage, unlike noise (which would make decoding look slower)."""
    from tdn.data.synthetic import periodic_texture

    rng = np.random.default_rng(seed)
    texture = periodic_texture(width, rng, smoothness=3.0)[:height]
    frames = np.empty((count, height, width, 3), np.uint8)
    side = height // 4
    for t in range(count):
        frames[t] = np.roll(texture, 3 * t, axis=1)
        top = (t * 2) % (height - side)
        frames[t, top:top + side, width // 3:width // 3 + side] = (240, 60, 30)
    return frames


def _encode(path: Path, container: str, frames: np.ndarray, fps: int) -> None:
    import av

    from tdn.fileio import atomic_write

    codec, options = CONTAINERS[container]

    def write(temporary: str) -> None:
        with av.open(temporary, mode="w", format=container) as output:
            stream = output.add_stream(codec, rate=Fraction(fps))
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = options
            for image in frames:
                output.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            output.mux(stream.encode())

    atomic_write(path, write)


def video_set(args) -> dict[str, list[Path]]:
    """The benchmark's videos per container, generated on first use; the file names carry the
    parameters, so changing one generates a new set beside the old."""
    height = args.short_side
    width = 2 * round(height * 4 / 3 / 2)
    count = max(1, round(args.seconds * args.fps))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    sets = {}
    for container in args.containers:
        paths = []
        for i in range(args.videos):
            path = args.cache_dir / f"clip{i}_{width}x{height}_{args.fps}fps_{count}f.{container}"
            if not path.exists():
                print(f"generating {path}", file=sys.stderr)
                _encode(path, container, _frames(height, width, count, seed=i), args.fps)
            paths.append(path)
        sets[container] = paths
    return sets


# ----------------------------------------------------------------------------- measurements
def loader_rate(paths: list[Path], decoder: str, workers: int, args) -> dict:
    """Clips/s of the training loader over ``args.clips`` clips of ``paths``, for the whole
    pass: a rate after the first clip would count the clips the workers prefetched while
    starting as free."""
    from tdn.data import TrainTransform, VideoDataset, build_loader
    from tdn.data.annotations import VideoRecord

    repeats = math.ceil(args.clips / len(paths))
    records = [VideoRecord(str(p), label=0) for p in paths] * repeats
    dataset = VideoDataset(records[:args.clips], num_segments=args.segments,
                           transform=TrainTransform(args.input_size), mode="train",
                           decoder=decoder)
    loader = build_loader(dataset, batch_size=1, train=True, workers=workers, seed=0)
    start = time.perf_counter()
    arrivals = []
    for batch in loader:
        if batch.skipped:
            raise RuntimeError(f"the loader skipped {batch.skipped[0].path}: "
                               f"{batch.skipped[0].reason}")
        arrivals.append(time.perf_counter())
    return {"clips": len(arrivals), "clips_per_s": len(arrivals) / (arrivals[-1] - start),
            "first_clip_s": arrivals[0] - start}


def model_rate(args) -> dict:
    """Clips/s of one training step on one clip (bench_tdm.py's model-section step)."""
    from tdm_bench.sections.model import TrainStep, build, make_batch

    device = torch.device("cpu")
    model = build(args.arch, "fused", args.segments, device).train()
    batch = make_batch(Geometry(videos=1, segments=args.segments, resolution=args.input_size),
                       device)
    timing = time_calls(TrainStep(model, batch, torch.float32, device), device,
                        Budget(warmup=1, min_reps=args.model_steps, max_reps=args.model_steps,
                               min_time_s=0.0))
    return {"clips": 1, "clips_per_s": 1.0 / timing.median_s, "median_step_s": timing.median_s}


def workers_needed(rows: list[dict], model_clips_per_s: float) -> dict[tuple[str, str], str]:
    """Per (decoder, container): the fewest measured workers that keep up with the model, or
    an estimate from the best per-worker rate when none does."""
    verdicts = {}
    keys = sorted({(r["decoder"], r["container"]) for r in rows})
    for key in keys:
        measured = sorted((r["workers"], r["clips_per_s"]) for r in rows
                          if (r["decoder"], r["container"]) == key and r["clips_per_s"])
        enough = [w for w, rate in measured if rate >= model_clips_per_s]
        if enough:
            verdicts[key] = f"{min(enough)} worker(s) keep up"
            continue
        per_worker = max((rate / max(w, 1) for w, rate in measured), default=0)
        estimate = math.ceil(model_clips_per_s / per_worker) if per_worker else "?"
        verdicts[key] = f"starves at {max(w for w, _ in measured)} workers; ~{estimate} needed"
    return verdicts


# ----------------------------------------------------------------------------- output
def plot(rows: list[dict], env: dict, path: Path) -> Path | None:
    try:
        from tdm_bench import plots
    except ImportError:  # matplotlib is optional
        return None
    plt = plots.plt
    loader_rows = [r for r in rows if r["section"] == "loader" and r["clips_per_s"]]
    model_row = next((r for r in rows if r["section"] == "model"), None)
    fig, ax = plt.subplots(figsize=(7, 4))
    for decoder, container in sorted({(r["decoder"], r["container"]) for r in loader_rows}):
        mine = sorted((r["workers"], r["clips_per_s"]) for r in loader_rows
                      if (r["decoder"], r["container"]) == (decoder, container))
        ax.plot([w for w, _ in mine], [c for _, c in mine], marker="o",
                label=f"loader: {decoder}, {container}")
    if model_row is not None:
        ax.axhline(model_row["clips_per_s"], color="black", linestyle="--",
                   label=f"training step: {model_row['arch']} (CPU)")
    ax.set_xlabel("loader workers")
    ax.set_ylabel("clips / s")
    ax.set_xticks(sorted({r["workers"] for r in loader_rows}))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    first = (loader_rows or [model_row])[0]
    ax.set_title(f"{first['segments']} segments x 5 frames, {first['resolution']}px crops; "
                 f"{env['videos']}\n" + plots._title(env), fontsize=8)
    return plots._save(fig, path)


def _table(rows: list[dict], verdicts: dict) -> str:
    lines = [[r["section"], r["decoder"] or r["arch"], r["container"] or "",
              "" if r["workers"] is None else r["workers"], r["clips_per_s"], r["first_clip_s"],
              verdicts.get((r["decoder"], r["container"]), "") if r["workers"] == 0 else ""]
             for r in rows]
    return tables.format_table(["section", "decoder/model", "container", "workers", "clips/s",
                                "first clip s", "vs the model"], lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = results.environment(torch.device("cpu"), "data", REPO,
                              sys.argv[:1] + list(argv if argv is not None else sys.argv[1:]))
    import av

    env.update(note=args.note, av=av.__version__, decoders=args.decoders,
               videos=f"{args.videos} x {args.seconds:g} s at {args.fps} fps, "
                      f"{args.short_side}p per container")
    identity = {c: env.get(c) for c in results.RUN_COLUMNS}

    def row(**fields) -> dict:
        full = dict.fromkeys(COLUMNS)
        full.update(identity, status="ok", segments=args.segments, resolution=args.input_size)
        full.update({k: results._clean(v) for k, v in fields.items()})
        return full

    print(f"bench_data: {env['device_name']} | torch {env['torch']} | PyAV {env['av']} | "
          f"commit {env['commit']} | decoders {','.join(args.decoders)} | load average "
          f"{env['load_average_start']}")
    sets = video_set(args)
    rows = []
    for decoder in args.decoders:
        for container, paths in sets.items():
            for workers in args.workers:
                measured = loader_rate(paths, decoder, workers, args)
                rows.append(row(section="loader", decoder=decoder, container=container,
                                workers=workers, **measured))
                print(f"  loader {decoder:10s} {container:4s} workers {workers}: "
                      f"{measured['clips_per_s'] or float('nan'):.2f} clips/s", file=sys.stderr)
    verdicts = {}
    if not args.no_model:
        measured = model_rate(args)
        rows.append(row(section="model", arch=args.arch, **measured))
        verdicts = workers_needed([r for r in rows if r["section"] == "loader"],
                                  measured["clips_per_s"])
    env["load_average_end"] = results.load_average()
    print(_table(rows, verdicts))

    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = [args.output_dir / "bench_data.csv", args.output_dir / "bench_data.json"]
    results.append_csv(written[0], rows, COLUMNS)
    results.append_json(written[1], {"environment": env, "verdicts": {
        f"{d},{c}": v for (d, c), v in verdicts.items()}, "rows": rows})
    if not args.no_plots:
        made = plot(rows, env, args.output_dir / "bench_data.png")
        written += [made] if made else []
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
