// Host emulation of the small CUDA subset the tdn_ops kernels use, so that their index
// arithmetic, tilings and reductions can be checked on a machine without a GPU (see
// run.sh). Verification only: never part of the extension.
//
// Threads of a block run as cooperative fibers (ucontext) on one OS thread: __syncthreads
// switches to the next fiber, so block-level barriers and shared memory behave as on a GPU
// (blocks run one after another, which makes `static` a faithful __shared__). Intrinsics map
// to their IEEE host equivalents.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#undef __global__
#define __global__
#undef __shared__
#define __shared__ static
#ifndef __device__
#define __device__
#endif
#ifndef __host__
#define __host__
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif
#define __launch_bounds__(...)

struct EmuDim {
  unsigned x = 1, y = 1, z = 1;
};
extern EmuDim threadIdx, blockIdx, blockDim, gridDim;

inline float __expf(float x) { return std::exp(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;  // no contraction
  return r;
}
inline float __fdiv_rn(float a, float b) { return a / b; }

void __syncthreads();
// Runs `body` for every thread of every block (1-D grids and blocks).
void emu_launch(unsigned grid, unsigned block, std::function<void()> body);
