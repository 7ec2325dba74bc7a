"""Readable tables of a run: operators per (dtype, pass), modules, whole model, targets."""

from __future__ import annotations

from collections import OrderedDict


def format_table(headers: list[str], rows: list[list], title: str = "") -> str:
    """Left-aligned first column(s) of text, right-aligned numbers, one space-padded grid."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows if row[i] not in (None, ""))
               for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def _x(v):
    return None if v is None else f"{v:.2f}x"


def operator_tables(rows: list[dict]) -> str:
    ops = [r for r in rows if r["section"] == "ops"]
    groups: OrderedDict = OrderedDict()
    for r in ops:
        groups.setdefault((r["dtype"], r["pass"]), []).append(r)
    blocks = []
    for (dtype, pass_name), group in groups.items():
        impls = list(OrderedDict.fromkeys(r["impl"] for r in group))
        fused = [i for i in impls if i not in ("eager", "compiled")]
        headers = ["operator@site", "MiB"] + [f"{i} ms" for i in impls]
        for b in fused:
            headers += [f"{b} vs eager", f"{b} vs comp", f"{b} GB/s", f"{b} %copy"]
        headers.append("eager GB/s")
        by_case: OrderedDict = OrderedDict()
        for r in group:
            by_case.setdefault((r["name"], r["site"]), {})[r["impl"]] = r
        table = []
        for (name, site), cells in by_case.items():
            first = next(iter(cells.values()))
            line = [f"{name}@{site}", (first.get("bytes") or 0) / 2**20]
            line += [cells[i]["median_ms"] if i in cells and cells[i]["status"] == "ok"
                     else "error" for i in impls]
            for b in fused:
                r = cells.get(b, {})
                line += [_x(r.get("speedup_vs_reference")), _x(r.get("speedup_vs_compiled")),
                         r.get("gbps"), r.get("copy_bw_pct")]
            line.append(cells.get("eager", {}).get("gbps"))
            table.append(line)
        blocks.append(format_table(headers, table, f"operators, {dtype}, {pass_name}"))
    return "\n\n".join(blocks)


def module_table(rows: list[dict]) -> str:
    mods = [r for r in rows if r["section"] == "modules"]
    if not mods:
        return ""
    table = [[f"{r['name']}@{r['site']}", r["dtype"], r["pass"], r["impl"],
              r["median_ms"] if r["status"] == "ok" else "error",
              _x(r.get("speedup_vs_reference")), r.get("peak_mem_mb"), r.get("gmacs")]
             for r in mods]
    return format_table(["module", "dtype", "pass", "impl", "ms", "vs reference",
                         "training peak MiB", "GMACs/call"], table, "modules (same weights)")


def model_table(rows: list[dict]) -> str:
    models = [r for r in rows if r["section"] == "model"]
    if not models:
        return ""
    tsn = {(r["impl"], r["pass"], r["dtype"]): r for r in models
           if r["name"] == "tsn_resnet50" and r["status"] == "ok"}
    table = []
    for r in models:
        # TDN over TSN with the same treatment: eager over eager, compiled over compiled.
        floor = tsn.get(("compiled_tsn" if r["impl"].startswith("compiled_") else "tsn",
                         r["pass"], r["dtype"]))
        ok = r["status"] == "ok"
        ratio = r["median_ms"] / floor["median_ms"] if floor and ok and r["median_ms"] else None
        table.append([r["name"], r["impl"], r["pass"], r["dtype"],
                      r["median_ms"] if ok else "error", r.get("throughput"),
                      r.get("peak_mem_mb"), _x(r.get("speedup_vs_reference")),
                      _x(r.get("speedup_vs_compiled")), _x(ratio), r.get("compile_s"),
                      r.get("gmacs")])
    return format_table(["model", "impl", "pass", "dtype", "median ms", "clips/s", "peak MiB",
                         "vs reference", "vs compiled ref", "vs TSN", "compile s",
                         "GMACs/clip"], table, "whole model")


SHORT_METRIC = {"speedup_vs_reference": "vs eager", "speedup_vs_compiled": "vs compiled",
                "copy_bw_pct": "% copy BW"}


def _overall(statuses) -> str:
    statuses = set(statuses)
    for s in ("MISS", "NOT MEASURED"):
        if s in statuses:
            return s
    return "PASS"


def target_table(verdicts: list[dict]) -> str:
    """Per-operator verdicts as one line per case (a column per metric), then the others."""
    if not verdicts:
        return ""
    counts = OrderedDict()
    for v in verdicts:
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    title = "targets: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    blocks = []
    per_op = [v for v in verdicts if v.get("metric")]
    if per_op:
        metrics = list(OrderedDict.fromkeys(v["metric"] for v in per_op))
        thresholds = {v["metric"]: v["threshold"] for v in per_op}
        by_scope: OrderedDict = OrderedDict()
        for v in per_op:
            by_scope.setdefault(v["scope"], {})[v["metric"]] = v
        table = []
        for scope, cells in by_scope.items():
            line = [_overall(c["status"] for c in cells.values()), scope]
            for m in metrics:
                c = cells.get(m)
                if c is None or c["measured"] is None:
                    line.append("-")
                elif c["status"] == "PASS":
                    line.append(f"{c['measured']:.2f} ok")
                else:
                    line.append(f"{c['measured']:.2f} MISS by {100 * c['shortfall']:.0f}%")
            whys = OrderedDict.fromkeys(c["why"] for c in cells.values()
                                        if c["status"] != "PASS" and c.get("why"))
            line.append("; ".join(whys))
            table.append(line)
        headers = ["status", "operator"] + [f"{SHORT_METRIC.get(m, m)} (>= {thresholds[m]:g})"
                                            for m in metrics] + ["why"]
        blocks.append(format_table(headers, table, title + "\noperators"))
        title = ""
    others = [v for v in verdicts if not v.get("metric")]
    if others:
        table = [[v["status"], v["target"], v["scope"], v.get("measured"), v["threshold"],
                  f"{100 * v['shortfall']:.0f}% short" if v.get("shortfall") else "",
                  v.get("why", "") if v["status"] != "PASS" else ""] for v in others]
        blocks.append(format_table(["status", "target", "scope", "measured", "threshold", "by",
                                    "why"], table, title + ("\n" if title else "") + "model"))
    return "\n\n".join(blocks)


def errors_table(rows: list[dict]) -> str:
    bad = [r for r in rows if r["status"] != "ok"]
    if not bad:
        return ""
    table = [[r["section"], f"{r['name']}@{r['site'] or ''}", r["impl"], r["pass"], r["dtype"],
              (r.get("note") or "")[:120]] for r in bad]
    return format_table(["section", "case", "impl", "pass", "dtype", "error"], table,
                        f"{len(bad)} measurement(s) failed")


def warnings_table(rows: list[dict]) -> str:
    flagged = [r for r in rows if r["status"] == "ok" and (r.get("note") or "").startswith(
        "MISMATCH")]
    if not flagged:
        return ""
    table = [[f"{r['name']}@{r['site']}", r["impl"], r["pass"], r["dtype"], r["note"]]
             for r in flagged]
    return format_table(["case", "impl", "pass", "dtype", "warning"], table,
                        f"{len(flagged)} result(s) flagged")


def full_report(rows: list[dict], verdicts: list[dict]) -> str:
    parts = [operator_tables(rows), module_table(rows), model_table(rows),
             errors_table(rows), warnings_table(rows), target_table(verdicts)]
    return "\n\n".join(p for p in parts if p)
