#!/usr/bin/env bash
# Compile every CUDA kernel file (csrc/cuda/*.cu) with plain nvcc for sm_80 and sm_90.
#
# The .cu files include no torch headers, so this runs on machines without a GPU or a CUDA
# build of torch: it catches compile errors (and, with TDN_PTXAS_VERBOSE=1, prints register
# use and spills) before the kernels ever reach a GPU. Exits non-zero on the first failure.
#
# Environment: NVCC (default: nvcc on PATH, else $CUDA_HOME/bin/nvcc), TDN_CUDA_ARCHS
# (default "80 90"), TDN_PTXAS_VERBOSE=1 for -Xptxas -v, TDN_NVCC_JOBS (parallel files,
# default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nvcc="${NVCC:-$(command -v nvcc || true)}"
if [[ -z "$nvcc" && -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]]; then
  nvcc="$CUDA_HOME/bin/nvcc"
fi
if [[ -z "$nvcc" ]]; then
  echo "compile_cuda: nvcc not found (set NVCC or CUDA_HOME)" >&2
  exit 2
fi

shopt -s nullglob
sources=("$root"/csrc/cuda/*.cu)
if (( ${#sources[@]} == 0 )); then
  echo "compile_cuda: no .cu files under csrc/cuda" >&2
  exit 2
fi

archs=(${TDN_CUDA_ARCHS:-80 90})
gencode=()
for a in "${archs[@]}"; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
extra=()
[[ "${TDN_PTXAS_VERBOSE:-0}" == "1" ]] && extra+=("-Xptxas" "-v")

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "compile_cuda: $("$nvcc" --version | tail -n 1); archs: ${archs[*]}"
# The flags setup.py gives nvcc, the half-type restrictions torch's CUDAExtension adds to
# every build (no implicit half/bfloat16 conversions or operators), and warnings as errors.
flags=(-std=c++17 -O3 --use_fast_math -lineinfo -I"$root/csrc" "${gencode[@]}"
       -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
       -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__
       -Werror=all-warnings "${extra[@]}")

pids=()
names=()
jobs_max="${TDN_NVCC_JOBS:-2}"
status=0
wait_one() {
  local pid="${pids[0]}" name="${names[0]}"
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  if wait "$pid"; then
    echo "  ok    $name"
  else
    echo "  FAIL  $name (log above)" >&2
    status=1
  fi
}
for src in "${sources[@]}"; do
  name="$(basename "$src")"
  "$nvcc" "${flags[@]}" -c "$src" -o "$out/${name%.cu}.o" &
  pids+=("$!")
  names+=("$name")
  if (( ${#pids[@]} >= jobs_max )); then wait_one; fi
done
while (( ${#pids[@]} > 0 )); do wait_one; done

if (( status != 0 )); then
  echo "compile_cuda: FAILED" >&2
  exit 1
fi
echo "compile_cuda: all ${#sources[@]} files compiled for: ${gencode[*]}"
