"""Machinery behind ``benchmarks/bench_tdm.py``: shapes, timing, the three sections (operators,
modules, whole model), targets, and the report (table, CSV/JSON, plots)."""
