"""Machinery behind ``benchmarks/bench_tdm.py``, read top-down:

    sections/        the three sections (``ops``, ``modules``, ``model``), one module each, and
                     what they share (the run's context, round-robin comparison of contenders)
    implementations  what an operator is compared across: eager, compiled, fused backends
    shapes, sizes    where each operator runs in TDN-ResNet50; how large and long a run is
    timing, peak_memory   how a step is measured
    results          result rows, the run's environment, the CSV/JSON files
    targets          the performance targets, PASS / MISS / NOT MEASURED
    tables, plots    the printed report and the PNG figures
"""
