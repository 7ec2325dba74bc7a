// Fiber scheduler behind emu.h, and stubs of the CUDA runtime calls the launchers make.
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "emu.h"

EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace {
ucontext_t g_scheduler;
std::vector<ucontext_t> g_fibers;
std::vector<std::vector<char>> g_stacks;
std::vector<int> g_finished;
int g_current = -1;
std::function<void()>* g_body = nullptr;

void fiber_main() {
  (*g_body)();
  g_finished[g_current] = 1;  // uc_link returns to the scheduler
}
}  // namespace

void __syncthreads() { swapcontext(&g_fibers[g_current], &g_scheduler); }

void emu_launch(unsigned grid, unsigned block, std::function<void()> body) {
  g_body = &body;
  gridDim.x = grid;
  blockDim.x = block;
  if (g_stacks.size() < block) {
    g_stacks.resize(block);
    for (auto& s : g_stacks) s.resize(256 * 1024);
  }
  g_fibers.resize(block);
  g_finished.assign(block, 0);
  for (unsigned b = 0; b < grid; ++b) {
    blockIdx.x = b;
    for (unsigned t = 0; t < block; ++t) {
      g_finished[t] = 0;
      getcontext(&g_fibers[t]);
      g_fibers[t].uc_stack.ss_sp = g_stacks[t].data();
      g_fibers[t].uc_stack.ss_size = g_stacks[t].size();
      g_fibers[t].uc_link = &g_scheduler;
      makecontext(&g_fibers[t], fiber_main, 0);
    }
    // Each round runs every live thread up to its next barrier (or its end). A round where
    // some threads end while others wait at a barrier is a divergent __syncthreads: on a GPU
    // that is undefined behaviour, here it aborts.
    for (;;) {
      int waiting = 0, ended = 0;
      for (unsigned t = 0; t < block; ++t) {
        if (g_finished[t]) continue;
        g_current = static_cast<int>(t);
        threadIdx.x = t;
        swapcontext(&g_scheduler, &g_fibers[t]);
        if (g_finished[t]) {
          ++ended;
        } else {
          ++waiting;
        }
      }
      if (waiting == 0) break;
      if (ended != 0) {
        std::fprintf(stderr, "emu: divergent __syncthreads in block %u\n", b);
        std::abort();
      }
    }
  }
}

extern "C" {
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
// Two "SMs": small grids, so grid-stride loops take several turns.
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = 2;
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) {
  std::memset(p, value, n);
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t) { return "emulated"; }
}
