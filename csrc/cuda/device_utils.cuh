// Device building blocks shared by the tdn_ops CUDA kernels: accumulation types, conversions,
// 16-byte vector packs, dtype dispatch and launch geometry. Plain CUDA, no torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "launchers.h"

namespace tdn {
namespace cuda {

// ---------------------------------------------------------------------------------------
// Types

// Half types accumulate in float, float64 in double.
template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// sigmoid with explicit intrinsics, so that the result does not depend on --use_fast_math:
// __expf overflows to inf for very negative y (giving 0), NaN stays NaN.
__device__ __forceinline__ float sigmoid_acc(float y) {
  return __frcp_rn(__fadd_rn(1.0f, __expf(-y)));
}
__device__ __forceinline__ double sigmoid_acc(double y) { return 1.0 / (1.0 + exp(-y)); }

// The bidirectional excitation's gate 0.5 + 0.5*sigmoid(y_f) + 0.5*sigmoid(y_b), from the two
// sigmoids (docs/math.md §4), in the C++ kernels' order.
template <typename A>
__device__ __forceinline__ A gate_of(A sf, A sb) {
  return A(0.5) + A(0.5) * sf + A(0.5) * sb;
}

// IEEE division (not the approximate one --use_fast_math substitutes): pooling divides by the
// window size exactly like avg_pool2d.
__device__ __forceinline__ float div_exact(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_exact(double a, double b) { return a / b; }

// ---------------------------------------------------------------------------------------
// Vector packs: N elements of T moved as one aligned load/store (16 bytes at most).

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Elements of T in 16 bytes.
template <typename T>
constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

template <int N, typename T>
__device__ __forceinline__ void load_pack(const T* __restrict__ p, acc_t<T> (&out)[N]) {
  const Pack<T, N> pk = *reinterpret_cast<const Pack<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_acc(pk.v[i]);
}

template <int N, typename T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const acc_t<T> (&in)[N]) {
  Pack<T, N> pk;
#pragma unroll
  for (int i = 0; i < N; ++i) pk.v[i] = from_acc<T>(in[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = pk;
}

template <int N, typename A>
__device__ __forceinline__ void fill(A (&a)[N], A value) {
#pragma unroll
  for (int i = 0; i < N; ++i) a[i] = value;
}

template <int N, typename A>
__device__ __forceinline__ void copy(A (&dst)[N], const A (&src)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = src[i];
}

// True when every pointer is aligned to `bytes` (null pointers count as aligned).
inline bool aligned_to(int64_t bytes, const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}
template <typename... P>
inline bool aligned_to(int64_t bytes, const void* p, P... rest) {
  return aligned_to(bytes, p) && aligned_to(bytes, rest...);
}

// The widest vector of at most VMax elements (a power of two) that fits: rows of `row_len`
// elements hold whole vectors and every pointer is aligned to one. 1 means scalar.
template <typename T, int VMax, typename... P>
int pick_vec(int64_t row_len, P... pointers) {
  for (int v = VMax; v >= 2; v /= 2) {
    if (row_len % v == 0 && aligned_to(static_cast<int64_t>(v * sizeof(T)), pointers...)) {
      return v;
    }
  }
  return 1;
}

// Calls f(std::integral_constant<int, V>{}) for the runtime width v (1, 2, 4 or 8, at most
// VMax): one instantiation per width a kernel may need.
template <int VMax, typename F>
cudaError_t with_vec(int v, F&& f) {
  if constexpr (VMax >= 8) {
    if (v == 8) return f(std::integral_constant<int, 8>{});
  }
  if constexpr (VMax >= 4) {
    if (v == 4) return f(std::integral_constant<int, 4>{});
  }
  if constexpr (VMax >= 2) {
    if (v == 2) return f(std::integral_constant<int, 2>{});
  }
  return f(std::integral_constant<int, 1>{});
}

// ---------------------------------------------------------------------------------------
// dtype dispatch: calls f(T{}) with the element type of `dtype`.

template <typename F>
cudaError_t dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(float{});
    case DType::kFloat16:
      return f(__half{});
    case DType::kBFloat16:
      return f(__nv_bfloat16{});
    case DType::kFloat64:
      return f(double{});
  }
  return cudaErrorInvalidValue;
}

// ---------------------------------------------------------------------------------------
// Launch geometry

constexpr int kThreads = 256;

// Streaming multiprocessors of the current device, cached per device (the attribute query
// does not synchronise, but it is not free either).
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return 132;
  int count = cache[device].load(std::memory_order_relaxed);
  if (count == 0) {
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        count <= 0) {
      count = 132;
    }
    cache[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

// Blocks for a grid-stride loop over `work` items: enough to fill the device a few times
// over, never more than the items need.
inline unsigned int grid_for(int64_t work, int threads = kThreads) {
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 32;
  const int64_t blocks = needed < cap ? needed : cap;
  return static_cast<unsigned int>(blocks > 0 ? blocks : 1);
}

// Smallest power of two >= n (n >= 1), for fixed-shape tree reductions.
__device__ __forceinline__ int pow2_at_least_dev(int n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

// Grid-stride loop with a 64-bit counter.
#define TDN_GRID_STRIDE_LOOP(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace cuda
}  // namespace tdn
