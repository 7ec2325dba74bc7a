#!/usr/bin/env bash
# Build torchcodec from source against the installed CPU-only torch, CPU decoding only, on the
# system's FFmpeg (found with pkg-config), and install it into the active Python environment.
# torchcodec's PyPI wheels are CUDA builds (they link libtorch_cuda.so, libcudart.so.13, ...)
# and do not load beside a CPU torch; there is no sdist. Verified with torchcodec v0.7.0 on
# Debian 12 (FFmpeg 5.1), torch 2.13.0+cpu, Python 3.11: 3 to 5 minutes on 2 cores.
#
#   scripts/build_torchcodec_cpu.sh SOURCE_DIR
#
# SOURCE_DIR is a checkout of https://github.com/pytorch/torchcodec at a release tag (e.g.
# `git clone --branch v0.7.0 https://github.com/pytorch/torchcodec`): this script does not
# download it. Pick the release that supports your torch (torchcodec's README has the table).
#
# Environment: PYTHON (default: python), SKIP_APT=1 (FFmpeg's -dev packages, pkg-config and
# cmake already installed; otherwise they are installed with apt-get, as root), JOBS (parallel
# compile jobs, default: the number of cores).
set -euo pipefail

SRC=${1:?usage: scripts/build_torchcodec_cpu.sh SOURCE_DIR (a torchcodec checkout)}
PYTHON=${PYTHON:-python}
[ -f "$SRC/setup.py" ] && [ -d "$SRC/src/torchcodec" ] || {
    echo "$SRC is not a torchcodec source tree (no setup.py / src/torchcodec)" >&2; exit 2; }

if [ "${SKIP_APT:-0}" != 1 ]; then
    apt-get update
    apt-get install -y libavcodec-dev libavformat-dev libavutil-dev libavdevice-dev \
        libavfilter-dev libswscale-dev libswresample-dev pkg-config cmake
fi
pkg-config --modversion libavcodec libavformat libavutil libswscale >/dev/null || {
    echo "FFmpeg's development files are not found by pkg-config" >&2; exit 2; }

"$PYTHON" - <<'EOF'
import torch
print(f"building against torch {torch.__version__} (CUDA: {torch.version.cuda})")
EOF

# Build-time only: CMake's find_package(pybind11) config. --no-deps everywhere: pip must never
# pull another torch.
"$PYTHON" -m pip install --no-deps pybind11
PYBIND11_CMAKE_DIR=$("$PYTHON" -m pybind11 --cmakedir)

export ENABLE_CUDA=0
# Link the system FFmpeg found by pkg-config instead of downloading torchcodec's own builds
# (setup.py refuses to guess which one is meant: this says the local one is).
export I_CONFIRM_THIS_IS_NOT_A_LICENSE_VIOLATION=1
# Newer torch headers than the release was tested with may warn; warnings are not errors.
export TORCHCODEC_DISABLE_COMPILE_WARNING_AS_ERROR=ON
export CMAKE_PREFIX_PATH="$PYBIND11_CMAKE_DIR${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)}

(cd "$SRC" && "$PYTHON" -m pip install --no-build-isolation --no-deps -v .)

# Run from outside the source tree, so that the installed package is the one imported.
cd /
"$PYTHON" - <<'EOF'
import torch, torchcodec
from torchcodec.decoders import VideoDecoder
print(f"torchcodec {torchcodec.__version__} loads beside torch {torch.__version__}")
EOF
