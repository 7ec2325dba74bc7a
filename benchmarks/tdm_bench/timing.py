"""Timing: medians over repetitions, inputs rotated through a footprint larger than the cache.

On a CPU each repetition is timed with ``time.perf_counter`` around one call (the call returns
when the work is done), and implementations compared with each other are timed round-robin
(:func:`time_interleaved`) so that load from other processes hits them alike. On a GPU each
repetition is bracketed by CUDA events and the device is synchronised once per batch of calls,
so launch overhead counts only where it stalls the GPU.

Rotation: a benchmark owns ``k`` independent copies of its inputs and call ``i`` uses copy
``i % k`` (calls numbered across all the implementations of a round-robin), with ``k`` chosen so
the copies together exceed the cache (see :func:`rotation_count`), so each call reads its inputs
from memory, as a layer deep inside a network does.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Budget:
    """How hard to try: warm-up calls, then repetitions until both minimums are met."""

    warmup: int = 3
    min_reps: int = 10
    max_reps: int = 200
    min_time_s: float = 0.3


@dataclass(frozen=True)
class Timing:
    median_s: float
    q20_s: float            # 20th and 80th percentiles: the spread a reader should expect
    q80_s: float
    reps: int
    min_s: float            # the best case, steadier than the median on a shared machine

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarise(samples: Sequence[float]) -> Timing:
    if not samples:
        raise ValueError("summarise needs at least one sample")
    s = sorted(samples)
    return Timing(statistics.median(s), _quantile(s, 0.2), _quantile(s, 0.8), len(s), s[0])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], object], device: torch.device, budget: Budget) -> Timing:
    """Median time of ``fn(i)`` over repetitions ``i = 0, 1, ...`` (``i`` picks the inputs).

    Warm-up calls run first (they trigger compilation, allocator growth, lazy init); then
    repetitions continue until ``min_reps`` and ``min_time_s`` are both reached, or ``max_reps``.
    """
    timings, errors = time_interleaved({"call": fn}, device, budget)
    if errors:
        raise RuntimeError(errors["call"])
    return timings["call"]


def _time_cuda(fn: Callable[[int], object], device: torch.device, budget: Budget) -> Timing:
    for i in range(budget.warmup):
        fn(i)
    synchronize(device)
    # A first timed batch of min_reps calls estimates the per-call time, which sets how many
    # more repetitions reach min_time_s without synchronising after every call.
    def batch(count: int, offset: int) -> list[float]:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(count)]
        for j, (start, end) in enumerate(events):
            start.record()
            fn(offset + j)
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) * 1e-3 for start, end in events]

    samples = batch(budget.min_reps, 0)
    per_call = max(statistics.median(samples), 1e-6)
    extra = min(budget.max_reps - len(samples),
                max(0, math.ceil((budget.min_time_s - sum(samples)) / per_call)))
    if extra > 0:
        samples += batch(extra, len(samples))
    return summarise(samples)


def time_interleaved(steps: dict[str, Callable[[int], object]], device: torch.device,
                     budget: Budget) -> tuple[dict[str, Timing], dict[str, str]]:
    """Median times of several implementations of one computation, timed round-robin.

    Repetition ``i`` calls every implementation once, in turn (the order rotating by one per
    round and reversing every k rounds), so a machine whose load drifts (a shared CI box, other
    jobs) slows them all alike instead of whichever ran last. Rounds
    continue until ``min_reps`` rounds are done and each implementation has run ``min_time_s``
    in total, or ``max_reps`` rounds. An implementation that raises is dropped and its error
    returned beside the timings of the others.

    On a GPU the implementations are timed one after the other instead: a dedicated device has
    no load drift, and batches of calls that the CPU enqueues ahead of the GPU keep launch
    latency out of the per-call times.
    """
    errors: dict[str, str] = {}
    if device.type == "cuda":
        timings = {}
        for name, fn in steps.items():
            try:
                timings[name] = _time_cuda(fn, device, budget)
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                errors[name] = f"{type(exc).__name__}: {exc}"
        return timings, errors
    live = dict(steps)
    for name, fn in list(live.items()):
        try:
            for i in range(budget.warmup):
                fn(i)
            synchronize(device)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors[name] = f"{type(exc).__name__}: {exc}"
            del live[name]
    samples: dict[str, list[float]] = {name: [] for name in live}
    totals = dict.fromkeys(live, 0.0)
    # Call index: every call of the run gets the next one, so consecutive calls take
    # consecutive input copies (``i % k``) and each reads a copy no one touched for k calls,
    # instead of the copy the implementation before it in the round has just brought into the
    # cache.
    slot = {name: s for s, name in enumerate(steps)}
    rounds = 0
    while live and rounds < budget.max_reps and (
            rounds < budget.min_reps or min(totals[n] for n in live) < budget.min_time_s):
        # Each round starts one implementation later, and every k rounds the order reverses:
        # over 2k rounds every implementation runs in every place equally often and follows
        # each of its two neighbours in the order equally often (for k = 3, eager / compiled /
        # fused, each of the others). On the 2-core VM a call that follows ~1 ms without native
        # work (torch.compile's guards, Python) ran 40-100 us slower than one that follows a
        # heavy call, which a fixed order charged to whichever came next.
        order = list(live.items())
        if (rounds // len(order)) % 2:
            order.reverse()
        shift = rounds % len(order)
        for name, fn in order[shift:] + order[:shift]:
            try:
                elapsed = timed_call(fn, rounds * len(steps) + slot[name], device)
            except Exception as exc:  # noqa: BLE001
                errors[name] = f"{type(exc).__name__}: {exc}"
                del live[name]
                continue
            samples[name].append(elapsed)
            totals[name] += elapsed
        rounds += 1
    return {n: summarise(samples[n]) for n in live}, errors


def timed_call(fn: Callable[[int], object], i: int, device: torch.device) -> float:
    """Wall time of ``fn(i)``, to the end of the work it queued on ``device``."""
    t0 = time.perf_counter()
    fn(i)
    synchronize(device)
    return time.perf_counter() - t0


def cache_bytes(device: torch.device) -> int:
    """The last-level cache the inputs must overflow: GPU L2, or the CPU's largest cache."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size)
    largest = 0
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(root):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(root, entry, "size")) as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            largest = max(largest, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return largest or 32 << 20


def rotation_count(set_bytes: int, device: torch.device, cap_bytes: int) -> int:
    """How many input copies make the rotation footprint at least twice the cache.

    The footprint is capped at ``cap_bytes`` (virtual machines can report a host-wide last-level
    cache, e.g. 480 MiB, far beyond a 2-core slice's share); the cap is reported with results.
    """
    target = min(2 * cache_bytes(device), cap_bytes)
    return max(1, min(64, math.ceil(target / max(set_bytes, 1))))


def copy_bandwidth(device: torch.device, nbytes: int, budget: Budget) -> float:
    """Measured device copy bandwidth in bytes/s: ``dst.copy_(src)`` moves 2 x ``nbytes``."""
    n = max(nbytes // 4, 1)
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    timing = time_calls(lambda i: dst.copy_(src), device, budget)
    return 2 * n * 4 / timing.median_s


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else float("nan")
