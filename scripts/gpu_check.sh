#!/usr/bin/env bash
# The GPU check of tdn_ops, for a GPU machine without network access (under 10 minutes on an
# H100): versions -> build the extension with the CUDA kernels -> GPU operator tests ->
# benchmark of the operators -> compute-sanitizer memcheck and racecheck on every operator ->
# benchmark of the modules and the model (with the time left) -> summary.
#
#   scripts/gpu_check.sh [OUTPUT_DIR]
#
# OUTPUT_DIR defaults to $OUT when set (the device tool's result folder), else
# benchmarks/results/gpu-run. Everything goes there: one log per step, steps.tsv (step, exit
# status, seconds), versions.json, pytest.xml, sanitizer logs, bench/ and bench-model/ (the
# benchmark's CSV, JSON and plots) and summary.md / summary.json. The summary is also copied to
# benchmarks/results/gpu-<device>-<date>.md in the checkout, ready to commit.
#
# Environment: TDN_GPU_STEPS (comma-separated subset of versions,build,kernels,pytest,bench,
# sanitizer; default all: split a run over two calls when one call's time limit is short,
# e.g. "versions,build,kernels,pytest" then "kernels,bench,sanitizer" with the same OUTPUT_DIR),
# TDN_COMMIT (the commit being checked, recorded when there is no .git),
# TDN_GPU_BUDGET_S (total seconds, default 570: later steps shrink to fit),
# TORCH_CUDA_ARCH_LIST (default: the device's own architecture), PYTHON (default: python).
# Needs torch with CUDA and nvcc; Triton and compute-sanitizer are optional (recorded as
# missing). The script always runs every step it can and exits non-zero if any step failed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$root/benchmarks/results/gpu-run}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-python}"
budget="${TDN_GPU_BUDGET_S:-570}"
start=$(date +%s)
steps="$out/steps.tsv"
[[ -f "$steps" ]] || printf 'step\tstatus\tseconds\n' >"$steps"
failed=0
selected=",${TDN_GPU_STEPS:-versions,build,kernels,pytest,bench,sanitizer},"
want() { [[ "$selected" == *",$1,"* ]]; }

elapsed() { echo $(( $(date +%s) - start )); }
remaining() { echo $(( budget - $(elapsed) )); }

# run_step NAME TIMEOUT_S CMD...: runs CMD with its output in $out/NAME.log, records status.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local left
  left=$(remaining)
  if (( left < 20 )); then
    printf '%s\tskipped (time budget)\t0\n' "$name" >>"$steps"
    echo "== $name: skipped, time budget spent"
    return 0
  fi
  (( limit > left - 10 )) && limit=$(( left - 10 ))
  echo "== $name (limit ${limit}s)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" $(( $(date +%s) - t0 )) >>"$steps"
  tail -n 5 "$out/$name.log"
  if (( rc != 0 )); then
    echo "!! $name failed with status $rc (log: $out/$name.log)"
    failed=1
  fi
  return $rc
}

# --- versions ------------------------------------------------------------------------------
export TDN_COMMIT="${TDN_COMMIT:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}"
want versions && run_step versions 60 "$py" "$root/scripts/gpu_report.py" versions "$out/versions.json"

# --- build ---------------------------------------------------------------------------------
if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST="$("$py" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo "8.0;9.0")"
  export TORCH_CUDA_ARCH_LIST
fi
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if want build; then
  (
    cd "$root" &&
      run_step build 300 env TDN_OPS_CUDA=1 "$py" -m pip install --no-build-isolation \
        --no-deps --no-input -v .
  ) || failed=1
fi

# Everything below imports the *installed* package: run from $out, where no tdn_ops/ shadows it.
cd "$out"
want kernels && run_step kernels 60 "$py" "$root/scripts/gpu_report.py" check-kernels

# --- tests ---------------------------------------------------------------------------------
# The operator tests of the GPU targets (cuda, triton-cuda; -m gpu), then the Triton backend's
# own tests (compiled mode, fake tensors).
tests=("$root/tests/test_ops_values.py" "$root/tests/test_ops_api.py")
# The CUDA kernels must be there (a missing backend fails instead of skipping); Triton too
# when it is installed.
required=cuda
"$py" -c "import triton" >/dev/null 2>&1 && required=cuda,triton
want pytest && run_step pytest 240 env TDN_OPS_REQUIRE_BACKENDS="$required" "$py" -m pytest "${tests[@]}" -m gpu -q -rs --maxfail=50 --rootdir "$root" \
  -p no:cacheprovider --junitxml="$out/pytest.xml"
want pytest && run_step pytest-triton 90 "$py" -m pytest "$root/tests/test_triton.py" -q -rs \
  --rootdir "$root" -p no:cacheprovider --junitxml="$out/pytest-triton.xml"

# --- benchmark ------------------------------------------------------------------------------
# The per-operator section first (the acceptance numbers at production shapes); the module
# and model sections run at the end with whatever time is left.
bench="$root/benchmarks/bench_tdm.py"
bench_args=()
if [[ -f "$bench" ]]; then
  help="$("$py" "$bench" --help 2>&1 || true)"
  for flag in --device:cuda --dtype:float32,bfloat16; do
    grep -q -- "${flag%%:*}" <<<"$help" && bench_args+=("${flag%%:*}" "${flag#*:}")
  done
  grep -q -- "--full" <<<"$help" && bench_args+=(--full)
  grep -q -- "--no-progress" <<<"$help" && bench_args+=(--no-progress)
  has_sections=0
  grep -q -- "--sections" <<<"$help" && has_sections=1
  has_outdir=0
  grep -q -- "--output-dir" <<<"$help" && has_outdir=1
  ops_args=("${bench_args[@]}")
  (( has_sections )) && ops_args+=(--sections ops)
  (( has_outdir )) && ops_args+=(--output-dir "$out/bench")
  want bench && run_step bench-ops 180 "$py" "$bench" "${ops_args[@]}"
else
  printf 'bench\tskipped (benchmarks/bench_tdm.py missing)\t0\n' >>"$steps"
fi

# --- compute-sanitizer ---------------------------------------------------------------------
sanitizer="$(command -v compute-sanitizer || true)"
for dir in "${CUDA_HOME:-}" /usr/local/cuda; do
  [[ -z "$sanitizer" && -n "$dir" && -x "$dir/bin/compute-sanitizer" ]] && sanitizer="$dir/bin/compute-sanitizer"
done
if ! want sanitizer; then
  :
elif [[ -n "$sanitizer" ]]; then
  for tool in memcheck racecheck; do
    run_step "sanitizer-$tool" 120 "$sanitizer" --tool "$tool" --error-exitcode 1 \
      --print-limit 50 "$py" "$root/scripts/gpu_report.py" exercise
  done
else
  printf 'sanitizer\tskipped (compute-sanitizer not found)\t0\n' >>"$steps"
  echo "== sanitizer: compute-sanitizer not found, skipped"
fi

# --- benchmark: modules and model, if time is left ------------------------------------------
if want bench && [[ -f "$bench" ]] && (( has_sections )) && (( $(remaining) > 90 )); then
  rest_args=("${bench_args[@]}" --sections modules,model)
  (( has_outdir )) && rest_args+=(--output-dir "$out/bench-model")
  run_step bench-model $(( $(remaining) - 30 )) "$py" "$bench" "${rest_args[@]}"
fi

# --- summary -------------------------------------------------------------------------------
"$py" "$root/scripts/gpu_report.py" summarize "$out" --copy-to "$root/benchmarks/results" ||
  failed=1
echo "== done in $(elapsed)s; results in $out"
exit $failed
