#!/usr/bin/env bash
# Check the CUDA kernels on the CPU: translate every csrc/cuda/*.cu for the host emulation
# (emu.h), build them with g++ into a shared library, and compare every launcher against
# tdn_ops.reference (float64) on the operator test shapes (tests/op_cases.py: CASES and the
# vector-path GPU_CASES, plus check.py's EXTRA_CASES), in float32/bfloat16/float16 (and float64
# for check.py's FLOAT64_OPS), contiguous, channels_last, strided and misaligned inputs, forward
# and backward; then check_nonfinite.py on inputs holding infinities and NaN.
#
# This checks index arithmetic, tilings, vector/scalar path selection, the two-stage weight
# gradient and the numerics of the kernels' C++; it cannot check what only a GPU shows
# (warp scheduling, memory-model races, performance). Needs g++ and the CUDA headers
# (cuda_fp16.h etc.), no GPU and no CUDA build of torch.
#
#   csrc/cuda/host_emulation/run.sh [OP ...]      (default: every operator; ~2 min)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
py="${PYTHON:-python}"
cuda_inc="${CUDA_HOME:-/usr/local/cuda}/include"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
flags=(-std=c++17 -O1 -fPIC -w -I"$cuda_inc" -I"$root/csrc" -I"$root/csrc/cuda" -I"$here")
pids=()
for src in "$root"/csrc/cuda/*.cu; do
  name="$(basename "${src%.cu}")"
  "$py" "$here/translate.py" "$src" "$build/$name.cpp"
  g++ "${flags[@]}" -include emu.h -c "$build/$name.cpp" -o "$build/$name.o" &
  pids+=("$!")
done
g++ "${flags[@]}" -include emu.h -c "$here/capi.cpp" -o "$build/capi.o" &
pids+=("$!")
g++ "${flags[@]}" -c "$here/emu_runtime.cpp" -o "$build/emu_runtime.o" &
pids+=("$!")
for pid in "${pids[@]}"; do wait "$pid"; done
g++ -shared -o "$build/libtdn_emu.so" "$build"/*.o
status=0
TDN_EMU_LIB="$build/libtdn_emu.so" "$py" "$here/check.py" "$@" || status=1
# The same launchers on inputs holding infinities and NaN (docs/math.md §6).
TDN_EMU_LIB="$build/libtdn_emu.so" "$py" "$here/check_nonfinite.py" "$@" || status=1
exit "$status"
