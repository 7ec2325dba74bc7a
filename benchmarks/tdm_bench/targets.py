"""The issue's performance targets, checked against this run's rows.

Each verdict says PASS or MISS with the measured value beside the threshold and, for a MISS,
how far short it fell and the likely reasons this run can see (a busy machine, a scaled-down
geometry, an operator whose reference already runs near copy bandwidth). A target whose
measurement is absent (section not run, backend not built) is "NOT MEASURED", never a PASS.

CPU (2-core machines), float32, forward+backward, at layer-3 shapes (the S-TDM operators at their
own): every fused "cpu" operator >= 3x the eager reference and >= 1.2x torch.compile of it.
GPU, float32 and bfloat16, forward and backward, 8 videos x 8 segments, S-TDM input and L-TDM
inputs of layers 2-4: every fused operator >= 2x eager, >= 1.3x compiled, >= 70% of the measured
device-to-device copy bandwidth.
Whole model, both devices: TDN-ResNet50 inference >= 1.4x the reference model; TDN/TSN time
ratio <= 1.2 (the FLOP ratio 1.09 is the floor); training step >= 1.2x faster with peak memory
<= 0.8x the reference.
"""

from __future__ import annotations

from .shapes import CPU_TARGET_SITES, GPU_TARGET_SITES

CPU_OP_TARGETS = (("speedup_vs_reference", 3.0, "x eager reference"),
                  ("speedup_vs_compiled", 1.2, "x torch.compile(reference)"))
GPU_OP_TARGETS = (("speedup_vs_reference", 2.0, "x eager reference"),
                  ("speedup_vs_compiled", 1.3, "x torch.compile(reference)"),
                  ("copy_bw_pct", 70.0, "% of copy bandwidth"))


def verdict(target: str, scope: str, measured, threshold: float, higher_is_better: bool,
            unit: str, hints: list[str] | None = None, metric: str | None = None) -> dict:
    """A target's outcome. ``metric`` (a result column) marks a per-operator verdict."""
    if measured is None:
        return {"target": target, "scope": scope, "metric": metric, "measured": None,
                "threshold": threshold, "unit": unit, "status": "NOT MEASURED",
                "shortfall": None, "why": "; ".join(hints or []) or "not measured in this run"}
    ok = measured >= threshold if higher_is_better else measured <= threshold
    # Relative shortfall: how much better the measured value must get to meet the threshold.
    shortfall = None if ok else (
        1 - measured / threshold if higher_is_better else measured / threshold - 1)
    why = "" if ok else "; ".join(hints or [])
    return {"target": target, "scope": scope, "metric": metric,
            "measured": round(float(measured), 4),
            "threshold": threshold, "unit": unit, "status": "PASS" if ok else "MISS",
            "shortfall": None if shortfall is None else round(shortfall, 4), "why": why}


def _machine_hints(env: dict) -> list[str]:
    hints = []
    cores = env.get("cpu_count") or 1
    loads = [env.get("load_average_start"), env.get("load_average_end")]
    busiest = max((x for x in loads if x is not None), default=None)
    if env.get("device") == "cpu" and busiest is not None and busiest > 0.75 * cores:
        hints.append(f"machine busy during the run (load average up to {busiest:.1f} on "
                     f"{cores} CPUs): timings are noisy")
    return hints


def _op_hints(rows: list[dict], row: dict, metric: str, env: dict) -> list[str]:
    hints = _machine_hints(env)
    if env.get("device") == "cuda" and row.get("videos") != 8:
        hints.append(f"measured at {row.get('videos')} video(s), the target names 8")
    ref = [r for r in rows if r["section"] == "ops" and r["impl"] == "eager"
           and r["site"] == row["site"] and r["name"] == row["name"]
           and r["pass"] == row["pass"] and r["dtype"] == row["dtype"]]
    if metric == "speedup_vs_reference" and ref and (ref[0].get("copy_bw_pct") or 0) > 35:
        hints.append(f"the eager reference already reaches {ref[0]['copy_bw_pct']:.0f}% of "
                     "copy bandwidth, which bounds the possible speed-up")
    pct = row.get("copy_bw_pct")
    if metric in ("speedup_vs_reference", "speedup_vs_compiled") and pct is not None:
        hints.append(f"the fused kernel runs at {pct:.0f}% of copy bandwidth"
                     + (": close to the memory bound, little left to gain in it" if pct >= 60
                        else ": room is left in the kernel itself"))
    if metric == "speedup_vs_compiled":
        hints.append("torch.compile fuses this elementwise chain too; the fused kernel gains "
                     "only what Inductor's generated loop leaves")
    if metric == "copy_bw_pct" and (row.get("bytes") or 0) < 64 << 20:
        hints.append(f"only {row['bytes'] / 2**20:.1f} MiB moved per call: launch and tail "
                     "effects weigh on a small transfer")
    return hints


def operator_verdicts(rows: list[dict], env: dict) -> list[dict]:
    """One verdict per target x fused backend x operator site x pass x dtype the target names.

    The operator sites come from the run's eager-reference rows (what was planned); a named
    combination without a measurement is NOT MEASURED, with the reason.
    """
    if env.get("device") == "cuda":
        sites, passes, dtypes, table = GPU_TARGET_SITES, ("forward", "backward"), \
            ("float32", "bfloat16"), GPU_OP_TARGETS
        candidates = ("cuda", "triton")
    else:
        sites, passes, dtypes, table = CPU_TARGET_SITES, ("forward+backward",), ("float32",), \
            CPU_OP_TARGETS
        candidates = ("cpu",)
    ops_rows = [r for r in rows if r["section"] == "ops"]
    backends = [b for b in candidates if b in (env.get("fused_backends") or [])]
    cases = list(dict.fromkeys((r["name"], r["site"]) for r in ops_rows
                               if r["impl"] == "eager" and r["site"] in sites))
    out = []
    if not backends or not cases:
        why = (f"no fused backend among {', '.join(candidates)} is available (not built?)"
               if not backends else "the ops section did not run at the target shapes")
        for metric, threshold, unit in table:
            out.append(verdict(f"{metric} >= {threshold:g}", "all fused operators", None,
                               threshold, True, unit, [why], metric))
        return out
    index = {(r["impl"], r["name"], r["site"], r["pass"], r["dtype"]): r for r in ops_rows}
    for backend in backends:
        for name, site in cases:
            for pass_name in passes:
                for dtype in dtypes:
                    scope = f"{backend} {name}@{site} {pass_name} {dtype}"
                    row = index.get((backend, name, site, pass_name, dtype))
                    for metric, threshold, unit in table:
                        target = f"{metric} >= {threshold:g}"
                        if row is None:
                            out.append(verdict(target, scope, None, threshold, True, unit, [
                                f"not run (pass {pass_name} / dtype {dtype} not in this run's "
                                "size or --dtype)"], metric))
                            continue
                        value = row.get(metric) if row.get("status") == "ok" else None
                        if value is None:
                            hints = [f"measurement failed: {row.get('note')}"
                                     if row.get("status") != "ok"
                                     else f"{metric} needs a baseline this run did not time"]
                        else:
                            hints = _op_hints(rows, row, metric, env)
                        out.append(verdict(target, scope, value, threshold, True, unit, hints,
                                           metric))
    return out


def _model_row(rows, name, impl, pass_name):
    for r in rows:
        if (r["section"] == "model" and r["name"] == name and r["impl"] == impl
                and r["pass"] == pass_name and r["dtype"] == "float32" and r["status"] == "ok"):
            return r
    return None


def model_verdicts(rows: list[dict], env: dict) -> list[dict]:
    hints = _machine_hints(env)
    fused = _model_row(rows, "tdn_resnet50", "fused", "inference")
    ref = _model_row(rows, "tdn_resnet50", "reference", "inference")
    tsn = _model_row(rows, "tsn_resnet50", "tsn", "inference")
    fused_train = _model_row(rows, "tdn_resnet50", "fused", "training")
    ref_train = _model_row(rows, "tdn_resnet50", "reference", "training")
    scale = []
    for r in (fused, fused_train):
        if env.get("device") == "cuda" and r is not None and r.get("videos") != 8:
            scale = [f"measured at {r['videos']} video(s) per batch, the target names 8"]
    out = []

    def ratio(a, b, key):
        if a is None or b is None or not a.get(key) or not b.get(key):
            return None
        return a[key] / b[key]

    speed = ratio(ref, fused, "median_ms")
    out.append(verdict("TDN-ResNet50 inference speed-up vs reference >= 1.4",
                       "model inference float32", speed, 1.4, True, "x",
                       hints + scale + ([] if speed is None or speed >= 1.4 else
                                        ["likely: the fused operators replace a small share "
                                         "of the model's time (see the modules table)"])))
    tdn_tsn = ratio(fused, tsn, "median_ms")
    out.append(verdict("TDN/TSN inference time ratio <= 1.2 (FLOP floor 1.09)",
                       "model inference float32", tdn_tsn, 1.2, False, "x",
                       hints + scale + ["likely: the L-TDM's small convolutions and batch "
                                        "norms (not fused) run far below the big convolutions' "
                                        "FLOP rate"]))
    train_speed = ratio(ref_train, fused_train, "median_ms")
    out.append(verdict("training step speed-up vs reference >= 1.2", "model training float32",
                       train_speed, 1.2, True, "x", hints + scale))
    mem = ratio(fused_train, ref_train, "peak_mem_mb")
    out.append(verdict("training step peak memory vs reference <= 0.8",
                       "model training float32", mem, 0.8, False, "x",
                       ["likely: activations saved for the backward of the (unfused) "
                                "convolutions and batch norms dominate the peak"]))
    return out


def evaluate(rows: list[dict], env: dict, sections: tuple[str, ...]) -> list[dict]:
    out = []
    if "ops" in sections:
        out += operator_verdicts(rows, env)
    if "model" in sections:
        out += model_verdicts(rows, env)
    return out
