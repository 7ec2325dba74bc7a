// Hand-vectorised float building blocks for the kernels that GCC's auto-vectorisation serves
// badly, once per x86 instruction set: namespace avx2 (8 lanes, compiled for x86-64-v3) and
// namespace avx512 (16 lanes, x86-64-v4), each with the same names, so that one kernel source
// (an .inc file included inside both namespaces, under the same target pragma) serves both.
//
// Why not templates over the lane width: a function inlines intrinsics only when it is
// compiled for their instruction set, and a template's target is that of its definition, so
// one template cannot be instantiated for two instruction sets.
//
// exp_core_v and sigmoid_v are expf_core and sigmoid_acc (cpu_kernels.h) step for step, with
// the multiply-adds fused as GCC fuses the scalar source in the FMA clones, so the vector body
// and a scalar remainder agree. Written with intrinsics because the auto-vectorised clamps
// become compare-and-blend pairs: on a Zen 1 EPYC the excitation's two sigmoids took 7.8
// cycles per element that way, 6.6 with these.
#pragma once

#include "cpu_kernels.h"

#if TDN_HAVE_ISA_TARGETS
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace tdn {
namespace cpu {
namespace avx2 {

struct Vec {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }     // a*b + c
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }   // c - a*b
  // min/max return their second operand when either is NaN.
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  // 2^n for lanes holding integers n in the normal exponent range.
  static V pow2(V n) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
};

#include "simd_math.inc"

}  // namespace avx2
}  // namespace cpu
}  // namespace tdn
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace tdn {
namespace cpu {
namespace avx512 {

struct Vec {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V pow2(V n) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
};

#include "simd_math.inc"

}  // namespace avx512
}  // namespace cpu
}  // namespace tdn
#pragma GCC pop_options

#endif  // TDN_HAVE_ISA_TARGETS
