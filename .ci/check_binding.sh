#!/usr/bin/env bash
# Type-check the CUDA binding (csrc/cuda/binding.cpp) against the installed torch's headers.
# A CPU build of torch ships the c10/cuda and ATen/cuda headers but not the generated
# c10/cuda/impl/cuda_cmake_macros.h, which is stubbed here; nothing is linked.
set -euo pipefail
cd "$(dirname "$0")/.."
stub="$(mktemp -d)"
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/c10/cuda/impl"
echo '#pragma once' > "$stub/c10/cuda/impl/cuda_cmake_macros.h"
inc="$(python -c 'from torch.utils.cpp_extension import include_paths; print(" ".join("-I" + p for p in include_paths()))')"
# shellcheck disable=SC2086
"${CXX:-g++}" -std=c++17 -fsyntax-only -I"$stub" $inc -I"${CUDA_HOME:-/usr/local/cuda}/include" \
  -Icsrc csrc/cuda/binding.cpp
echo "check_binding: csrc/cuda/binding.cpp type-checks against torch's headers"
