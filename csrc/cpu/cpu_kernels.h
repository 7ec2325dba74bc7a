// Building blocks of the CPU kernels: accumulation types, chunk conversion, a vectorisable
// float exp, and the attribute that compiles hot loops for several x86 instruction sets.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common.h"
#include "op_checks.h"

namespace tdn {
namespace cpu {

// Half types (and float) compute in float, double in double.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Positions a parallel task handles at least: large enough to amortise the task, small
// enough that a frame chunk's working buffers stay in L1/L2.
constexpr int64_t kGrain = 32768;
constexpr int64_t kChunk = 512;

// Hot loops are plain scalar C++ that GCC auto-vectorises (checked with -fopt-info-vec); the
// clones compile each for AVX2+FMA and AVX-512 besides the baseline, picked at load time.
// Kernels whose vector width is part of the source (GCC vector types) are instead instantiated
// once per level under target("arch=...") and picked with cpu_isa_level().
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TDN_HAVE_ISA_TARGETS 1
#define TDN_VECTORIZE __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define TDN_HAVE_ISA_TARGETS 0
#define TDN_VECTORIZE
#endif

// The x86-64 micro-architecture level this CPU runs: 4 (AVX-512 F/BW/CD/DQ/VL), 3 (AVX2, FMA,
// BMI2...) or 1 (the baseline), as target_clones' resolver decides; checked once.
inline int cpu_isa_level() {
#if TDN_HAVE_ISA_TARGETS
  static const int level = __builtin_cpu_supports("x86-64-v4")   ? 4
                           : __builtin_cpu_supports("x86-64-v3") ? 3
                                                                 : 1;
  return level;
#else
  return 1;
#endif
}

// Whether this CPU runs AVX-512F, for the kernels written with its intrinsics (checked once,
// at their first call; the other kernels pick their clone when the library loads).
inline bool cpu_has_avx512f() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

// `n` elements of `src` as acc_t<T>: no copy when T already is acc_t<T>, else converted into
// `buf`. Lets every kernel keep a single arithmetic path for all four dtypes.
template <typename T, typename A = acc_t<T>>
inline const A* load_acc(const T* src, A* buf, int64_t n) {
  if constexpr (std::is_same_v<T, A>) {
    return src;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<A>(src[i]);
    return buf;
  }
}

// Where a kernel writes its acc_t<T> results: straight into `dst` when types agree.
template <typename T, typename A = acc_t<T>>
inline A* out_acc(T* dst, A* buf) {
  if constexpr (std::is_same_v<T, A>) {
    return dst;
  } else {
    return buf;
  }
}

template <typename T, typename A = acc_t<T>>
inline void store_acc(T* dst, const A* buf, int64_t n) {
  if constexpr (!std::is_same_v<T, A>) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(buf[i]);
  }
}

// exp(x) for float without a libm call, so loops that use it vectorise: Cody-Waite range
// reduction to r in [-ln2/2, ln2/2], a degree-6 polynomial (Cephes expf coefficients, about
// 1 ulp), and 2^n built in the exponent bits, for x in [-87, 88] (NaN stays NaN): the caller
// clamps.
static inline float expf_core(float x) {
  const float t = x * 1.44269504088896341f;
  const float fn = (t + 12582912.0f) - 12582912.0f;  // round to nearest via 1.5 * 2^23
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// sigmoid(y) = 1 / (1 + exp(-y)), with exp's argument capped at kSigmoidExpCap: below
// y = -87.3 the true value is subnormal, and on Intel cores every subnormal operand or result
// takes a microcode assist of ~100 cycles. Large negative logits are common in deep layers
// (layer4 of a randomly initialised TDN-ResNet50: 10-15% of project_excite_shift's logits),
// where the assists made the kernel 3-6x slower. Capped, sigmoid never goes below 1.8e-35:
// an absolute error under 2e-35, and the excitation gate 0.5 + 0.5 s_f + 0.5 s_b keeps its
// bits. NaN stays NaN. The cap stands in for exp's upper clamp (x <= 88), and each clamp
// vectorises as a compare and a blend (GCC keeps NaN semantics, so no min/max): with two
// instead of three the excitation's two sigmoids took 7.8 instead of 9.5 cycles per element
// on a Zen 1 EPYC (AVX2), the same bits.
constexpr float kSigmoidExpCap = 80.0f;
static inline float sigmoid_acc(float y) {
  float t = -y;
  t = t > kSigmoidExpCap ? kSigmoidExpCap : t;
  t = t < -87.0f ? -87.0f : t;
  return 1.0f / (1.0f + expf_core(t));
}
static inline double sigmoid_acc(double y) { return 1.0 / (1.0 + std::exp(-y)); }

}  // namespace cpu
}  // namespace tdn
