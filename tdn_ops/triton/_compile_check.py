"""Compile every Triton kernel for a CUDA target without a GPU: ``python -m
tdn_ops.triton._compile_check [--arch 90]``.

The interpreter runs the kernels' Python, not Triton's compiler, so it cannot catch what only
compiled mode rejects (constexpr misuse, type errors in lowering). Triton's compiler needs no
device to go from source to PTX and cubin, so this checks every kernel, in the layouts, index
widths and element types it is launched with, on any machine with Triton (run with
``TRITON_INTERPRET`` unset: interpreted kernels cannot be compiled).
"""

import argparse
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.autotuner import Autotuner

from . import _pooling, _temporal, _upsample

# Kernel arguments that are Python floats (float32 in Triton); other non-pointer ones are ints.
_FLOAT_ARGS = {"scale_h", "scale_w", "inv_h", "inv_w", "factor", "x_weight", "small_weight",
               "extra_weight"}


def _variants():
    """(kernel, constexprs, element type, int type, pointer type overrides) to compile."""
    for channels_last, int64, elem in ((True, False, "fp16"), (False, True, "bf16")):
        ity = "i64" if int64 else "i32"
        layout = dict(CHANNELS_LAST=channels_last, INT64=int64, F64=False)
        flags = dict(INT64=int64, F64=False)
        tile = _temporal._TILE_NHWC if channels_last else _temporal._TILE_NCHW
        yield _pooling._diff_pool_fwd_kernel, dict(layout, K=2, BLOCK=256), elem, ity, {}
        yield _pooling._diff_pool_bwd_kernel, dict(layout, K=3, BLOCK=1024), elem, ity, {}
        yield _pooling._cross_diff_fwd_kernel, dict(layout, BLOCK=256), elem, ity, {}
        yield _pooling._cross_diff_bwd_kernel, dict(layout, BLOCK=256), elem, ity, {}
        modes = (2, 1) if channels_last else (0, 2)
        yield (_upsample._upsample_add_kernel,
               dict(layout, MODE_H=modes[0], MODE_W=modes[1], HAS_EXTRA=channels_last,
                    BLOCK=1024), elem, ity, {})
        yield _upsample._scale_kernel, dict(layout, BLOCK=1024), elem, ity, {}
        yield (_upsample._upsample_grad_kernel,
               dict(layout, MODE_H=modes[0], MODE_W=modes[1], LEAD_H=1, LEAD_W=0, WIN_H=5,
                    WIN_W=2, BLOCK=1024), elem, ity, {})
        yield _temporal._excitation_fwd_kernel, dict(flags, BLOCK=1024), elem, ity, {}
        yield _temporal._excitation_bwd_kernel, dict(flags, BLOCK=1024), elem, ity, {}
        yield (_temporal._shift_fwd_kernel, dict(layout, EXCITE=channels_last, BLOCK=256),
               elem, ity, {})
        yield (_temporal._shift_bwd_kernel,
               dict(layout, EXCITE=channels_last, BLOCK_P=tile[0], BLOCK_C=tile[1]), elem, ity,
               {"partial_ptr": "*fp32"})
        yield (_temporal._sum_rows_kernel,
               dict(INT64=int64, BLOCK_R=_temporal._SUM_ROWS_TILE[0],
                    BLOCK_COLS=_temporal._SUM_ROWS_TILE[1]), "fp32", ity, {"out_ptr": "*" + elem})


def compile_all(arch: int = 90, verbose: bool = False) -> int:
    """Compile every variant for ``sm_<arch>``; returns how many compiled (raises on error)."""
    target = GPUTarget("cuda", arch, 32)
    count = 0
    for kernel, constexprs, elem, int_type, pointer_types in _variants():
        fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
        missing = [p.name for p in fn.params if p.is_constexpr and p.name not in constexprs]
        if missing:
            raise ValueError(f"{fn.__name__}: constexprs {missing} not given")
        signature = {}
        for name in fn.arg_names:
            if name in constexprs:
                signature[name] = "constexpr"
            elif name.endswith("_ptr"):
                signature[name] = pointer_types.get(name, "*" + elem)
            else:
                signature[name] = "fp32" if name in _FLOAT_ARGS else int_type
        start = time.perf_counter()
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                                  target=target)
        if "cubin" not in compiled.asm:
            raise RuntimeError(f"{fn.__name__}: no cubin produced")
        count += 1
        if verbose:
            print(f"{fn.__name__:26s} {elem:5s} {int_type} "
                  f"{time.perf_counter() - start:5.2f}s", flush=True)
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80, 90")
    args = parser.parse_args(argv)
    from ._common import INTERPRET
    if INTERPRET:
        print("unset TRITON_INTERPRET: interpreted kernels cannot be compiled", file=sys.stderr)
        return 2
    print(f"compiled {compile_all(args.arch, verbose=True)} kernel variants for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
