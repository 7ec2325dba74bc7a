"""What the three sections share: the run's context, and one way to compare contenders.

Every section answers the same question for its own pieces: given several implementations of
one computation (the "contenders"), how long does a step of each take, on the same inputs,
timed round-robin so that load from other processes hits them alike, and what peak memory does
a step need? :func:`measure_contenders` does that once for all of them; :func:`add_rows`
turns its result into one result row per contender.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field, replace

import torch

from ..peak_memory import peak_bytes
from ..results import Results
from ..shapes import Geometry
from ..sizes import Size
from ..timing import Budget, Timing, synchronize, time_interleaved, timed_call

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class RunContext:
    device: torch.device
    size: Size
    dtypes: list[torch.dtype]
    segments: int
    results: Results
    fused_backends: list[str]
    rotate_cap_bytes: int
    channels_last: bool = False             # whole-model section in channels_last
    copy_bandwidth: float | None = None     # bytes/s, measured once per run
    progress: object = None                 # a tqdm bar (or None)

    def log(self, message: str) -> None:
        """A line above the progress bar."""
        if self.progress is not None:
            self.progress.write(message)
        else:
            print(message)

    def announce(self, section: str, geo: Geometry, details: str) -> None:
        """The section's first line: the batch it runs on (and whether it is scaled down)."""
        scaled = "" if geo.videos == 8 else " (scaled down from 8 videos for this device)"
        self.log(f"[{section}] {geo.describe()}{scaled}; {details}")

    def advance(self, label: str, steps: int = 1) -> None:
        if self.progress is not None:
            self.progress.set_postfix_str(label[:60], refresh=False)
            self.progress.update(steps)


@dataclass
class Measured:
    """What :func:`measure_contenders` found, by contender."""

    timings: dict[Hashable, Timing] = field(default_factory=dict)
    peaks: dict[Hashable, int] = field(default_factory=dict)          # bytes
    first_call_s: dict[Hashable, float] = field(default_factory=dict)  # includes compilation
    errors: dict[Hashable, str] = field(default_factory=dict)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def measure_contenders(steps: dict[Hashable, Callable[[int], object]], device: torch.device,
                       budget: Budget, with_peak_memory: bool,
                       errors: dict[Hashable, str] | None = None,
                       memory_unseen: Collection[Hashable] = ()) -> Measured:
    """Time ``steps`` (contender -> ``step(i)``) round-robin, after a first call of each.

    The first call builds whatever is lazy (torch.compile's graphs, the optimizer's momentum
    buffers, cuDNN plans); its wall time is kept in ``first_call_s`` (for a compiled contender,
    its compile time) and it must not count in a step's peak memory, which, when
    ``with_peak_memory``, is measured on a second call. Every contender is prepared before any
    is timed, so the timing can interleave them; the calls made here count as warm-up. A
    contender that raises is dropped with its error; ``errors`` are earlier failures to keep.
    ``memory_unseen`` are contenders whose memory torch cannot see (another runtime's
    allocations): they are timed without a peak.
    """
    found = Measured(errors=dict(errors or {}))
    ready = {}
    for key, step in steps.items():
        try:
            found.first_call_s[key] = timed_call(step, 0, device)
            if with_peak_memory and key not in memory_unseen:
                found.peaks[key] = peak_bytes(lambda: step(0), device)
            ready[key] = step
        except Exception as exc:  # noqa: BLE001 - reported in the contender's row
            found.errors[key] = _error_text(exc)
    synchronize(device)
    done = 2 if with_peak_memory else 1
    timings, failed = time_interleaved(ready, device,
                                       replace(budget, warmup=max(0, budget.warmup - done)))
    found.timings.update(timings)
    found.errors.update(failed)
    return found


def timing_columns(timing: Timing) -> dict:
    """The result columns every timed row carries."""
    return dict(median_ms=timing.median_ms, q20_ms=timing.q20_s * 1e3, q80_ms=timing.q80_s * 1e3,
                min_ms=timing.min_s * 1e3, reps=timing.reps)


def add_rows(ctx: RunContext, row: dict, contenders: dict[str, Hashable], found: Measured,
             baselines: dict[str, Hashable],
             extra: Callable[[Hashable, Timing], dict] | None = None) -> None:
    """One result row per contender: its timing and peak memory, its speed-up over each
    baseline (``{"speedup_vs_reference": key}``), and ``extra(key, timing)`` columns.

    ``contenders`` maps the row's ``impl`` label to the contender's key in ``found``; one that
    was not timed gets an error row with the reason.
    """
    for impl, key in contenders.items():
        ctx.advance(f"{row.get('name')}@{row.get('site') or ''} {row.get('pass')} {impl}")
        timing = found.timings.get(key)
        if timing is None:
            ctx.results.add(**{**row, "impl": impl, "status": "error",
                               "note": found.errors.get(key, "not timed")[:300]})
            continue
        peak = found.peaks.get(key)
        speedups = {column: found.timings[base].median_s / timing.median_s
                    for column, base in baselines.items() if base in found.timings}
        ctx.results.add(**{**row, "impl": impl, **timing_columns(timing), **speedups,
                           "peak_mem_mb": None if peak is None else peak / 2**20,
                           **(extra(key, timing) if extra else {})})


def add_error_rows(ctx: RunContext, row: dict, impls: list[str], passes: tuple[str, ...],
                   note: str) -> None:
    """Rows for measurements that could not start (inputs or modules failed to build)."""
    for pass_name in passes:
        for impl in impls:
            ctx.advance(f"{row.get('name')}@{row.get('site') or ''} {pass_name} {impl}")
            ctx.results.add(**row, impl=impl, **{"pass": pass_name}, status="error",
                            note=note[:300])


def gmacs(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward, in billions, as the paper counts them
    (:mod:`tdn.flops`: convolutions, the classifier, upsampling and the average pool)."""
    import tdn

    return tdn.count_macs(module, x).gmacs
