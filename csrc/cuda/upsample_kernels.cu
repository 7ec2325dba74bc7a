// CUDA kernels of the operators that add a nearest-upsampled map: multiscale_sum (L-TDM) and
// lateral_fuse (S-TDM), forward and backward.
//
// Source pixels are picked exactly as PyTorch's upsample_nearest2d picks them (on CPU and on
// CUDA): scale = float(in) / float(out), src = min(floor(float(dst) * scale), in - 1), with
// the exact shortcuts for equal and doubled sizes (ATen's nearest_idx; on CUDA the float
// formula gives the same indices there). See tdn::nearest_src_index in csrc/common.h.
//
// The backward is a gather: a thread owns one pixel of the small map, walks the block of
// output pixels that read it (a rectangle, since the index map is non-decreasing), writes the
// direct gradient of each of them and sums the upsampling gradient. Every output pixel belongs
// to exactly one small pixel, so each gradient element is read once and written once, with no
// atomics: the result is deterministic.

#include "device_utils.cuh"

namespace tdn {
namespace cuda {
namespace {

struct UpsampleShape {
  int64_t B, C, H, W, h, w;
  float scale_h, scale_w;  // float(h)/float(H), float(w)/float(W), as ATen computes them
};

// Source index of output index `dst` along an axis of `in` -> `out`.
__device__ __forceinline__ int64_t nearest_src(int64_t dst, int64_t in, int64_t out,
                                               float scale) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  // __fmul_rn: one IEEE multiply, never contracted or approximated, like the host formula.
  const auto src = static_cast<int64_t>(floorf(__fmul_rn(static_cast<float>(dst), scale)));
  return src < in - 1 ? src : in - 1;
}

// First output index whose source is >= i (out when none): the output indices reading source
// i are [nearest_begin(i), nearest_begin(i + 1)). Estimated, then corrected with the exact
// forward map (which is non-decreasing), so it agrees with nearest_src bit for bit.
__device__ __forceinline__ int64_t nearest_begin(int64_t i, int64_t in, int64_t out,
                                                 float scale) {
  if (i <= 0) return 0;
  if (i >= in || out <= 0) return out;
  if (out == in) return i;
  if (out == 2 * in) return 2 * i;
  int64_t d = static_cast<int64_t>(ceil(static_cast<double>(i) * static_cast<double>(out) /
                                        static_cast<double>(in)));
  d = d < 0 ? 0 : (d > out ? out : d);
  while (d > 0 && nearest_src(d - 1, in, out, scale) >= i) --d;
  while (d < out && nearest_src(d, in, out, scale) < i) ++d;
  return d;
}

template <typename A>
struct Coefficients {
  A a, u, b;
};

// ---------------------------------------------------------------------------------------
// Forward: out = ca*a + cu*up(small) [+ cb*b]

// Contiguous: V consecutive columns of one output row per item.
template <typename T, int V, bool kThird>
__global__ void __launch_bounds__(kThreads)
    upsample_forward_nchw_kernel(const T* __restrict__ a, const T* __restrict__ small,
                                 const T* __restrict__ b, T* __restrict__ out, UpsampleShape s,
                                 Coefficients<acc_t<T>> k) {
  using A = acc_t<T>;
  const int64_t xvs = s.W / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.C * s.H * xvs) {
    const int64_t x0 = (item % xvs) * V;
    const int64_t row = item / xvs;  // plane * H + y
    const int64_t y = row % s.H, plane = row / s.H;
    const T* srow = small + (plane * s.h + nearest_src(y, s.h, s.H, s.scale_h)) * s.w;
    const int64_t off = row * s.W + x0;
    A av[V], bv[V], o[V];
    load_pack<V>(a + off, av);
    if constexpr (kThird) load_pack<V>(b + off, bv);
#pragma unroll
    for (int l = 0; l < V; ++l) {
      const A u = to_acc(srow[nearest_src(x0 + l, s.w, s.W, s.scale_w)]);
      o[l] = k.a * av[l] + k.u * u;
      if constexpr (kThird) o[l] += k.b * bv[l];
    }
    store_pack<V>(out + off, o);
  }
}

// channels_last: V consecutive channels of one output pixel per item.
template <typename T, int V, bool kThird>
__global__ void __launch_bounds__(kThreads)
    upsample_forward_nhwc_kernel(const T* __restrict__ a, const T* __restrict__ small,
                                 const T* __restrict__ b, T* __restrict__ out, UpsampleShape s,
                                 Coefficients<acc_t<T>> k) {
  using A = acc_t<T>;
  const int64_t cvs = s.C / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.H * s.W * cvs) {
    const int64_t c0 = (item % cvs) * V;
    const int64_t pixel = item / cvs;  // (n * H + y) * W + x
    const int64_t x = pixel % s.W;
    const int64_t y = (pixel / s.W) % s.H;
    const int64_t n = pixel / (s.W * s.H);
    const int64_t sy = nearest_src(y, s.h, s.H, s.scale_h);
    const int64_t sx = nearest_src(x, s.w, s.W, s.scale_w);
    const int64_t off = pixel * s.C + c0;
    A av[V], uv[V], bv[V], o[V];
    load_pack<V>(a + off, av);
    load_pack<V>(small + ((n * s.h + sy) * s.w + sx) * s.C + c0, uv);
    if constexpr (kThird) load_pack<V>(b + off, bv);
#pragma unroll
    for (int l = 0; l < V; ++l) {
      o[l] = k.a * av[l] + k.u * uv[l];
      if constexpr (kThird) o[l] += k.b * bv[l];
    }
    store_pack<V>(out + off, o);
  }
}

// ---------------------------------------------------------------------------------------
// Backward: grad_direct = s_direct*g; grad_small = gather of s_gather*g

template <typename T>
__global__ void __launch_bounds__(kThreads)
    upsample_backward_nchw_kernel(const T* __restrict__ g, T* __restrict__ g_direct,
                                  T* __restrict__ g_small, UpsampleShape s, acc_t<T> s_direct,
                                  acc_t<T> s_gather) {
  using A = acc_t<T>;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.C * s.h * s.w) {
    const int64_t j = item % s.w;
    const int64_t i = (item / s.w) % s.h;
    const int64_t plane = item / (s.w * s.h);
    const int64_t y0 = nearest_begin(i, s.h, s.H, s.scale_h);
    const int64_t y1 = nearest_begin(i + 1, s.h, s.H, s.scale_h);
    const int64_t x0 = nearest_begin(j, s.w, s.W, s.scale_w);
    const int64_t x1 = nearest_begin(j + 1, s.w, s.W, s.scale_w);
    A acc = 0;
    for (int64_t y = y0; y < y1; ++y) {
      const int64_t row = (plane * s.H + y) * s.W;
      for (int64_t x = x0; x < x1; ++x) {
        const A gv = to_acc(g[row + x]);
        g_direct[row + x] = from_acc<T>(s_direct * gv);
        acc += s_gather * gv;
      }
    }
    g_small[item] = from_acc<T>(acc);
  }
}

// Contiguous, exactly doubled sizes (TDN's case: 28 -> 56), W % V == 0: rows 2i and 2i+1,
// V columns each (16-byte accesses), feeding V/2 small pixels. Same summation order as the
// generic gather (row by row, left to right).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    upsample_backward_nchw_x2_kernel(const T* __restrict__ g, T* __restrict__ g_direct,
                                     T* __restrict__ g_small, UpsampleShape s,
                                     acc_t<T> s_direct, acc_t<T> s_gather) {
  using A = acc_t<T>;
  constexpr int P = V / 2;
  const int64_t groups = s.W / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.C * s.h * groups) {
    const int64_t jg = item % groups;
    const int64_t row = item / groups;  // plane * h + i
    const int64_t off0 = 2 * row * s.W + jg * V;  // output row 2i of the same plane
    A r0[V], r1[V], d[V], acc[P];
    load_pack<V>(g + off0, r0);
    load_pack<V>(g + off0 + s.W, r1);
#pragma unroll
    for (int l = 0; l < V; ++l) d[l] = s_direct * r0[l];
    store_pack<V>(g_direct + off0, d);
#pragma unroll
    for (int l = 0; l < V; ++l) d[l] = s_direct * r1[l];
    store_pack<V>(g_direct + off0 + s.W, d);
#pragma unroll
    for (int q = 0; q < P; ++q) {
      A a = 0;
      a += s_gather * r0[2 * q];
      a += s_gather * r0[2 * q + 1];
      a += s_gather * r1[2 * q];
      a += s_gather * r1[2 * q + 1];
      acc[q] = a;
    }
    store_pack<P>(g_small + row * s.w + jg * P, acc);
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    upsample_backward_nhwc_kernel(const T* __restrict__ g, T* __restrict__ g_direct,
                                  T* __restrict__ g_small, UpsampleShape s, acc_t<T> s_direct,
                                  acc_t<T> s_gather) {
  using A = acc_t<T>;
  const int64_t cvs = s.C / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.h * s.w * cvs) {
    const int64_t c0 = (item % cvs) * V;
    const int64_t pixel = item / cvs;  // (n * h + i) * w + j
    const int64_t j = pixel % s.w;
    const int64_t i = (pixel / s.w) % s.h;
    const int64_t n = pixel / (s.w * s.h);
    const int64_t y0 = nearest_begin(i, s.h, s.H, s.scale_h);
    const int64_t y1 = nearest_begin(i + 1, s.h, s.H, s.scale_h);
    const int64_t x0 = nearest_begin(j, s.w, s.W, s.scale_w);
    const int64_t x1 = nearest_begin(j + 1, s.w, s.W, s.scale_w);
    A acc[V];
    fill(acc, A(0));
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = x0; x < x1; ++x) {
        const int64_t off = ((n * s.H + y) * s.W + x) * s.C + c0;
        A gv[V], dv[V];
        load_pack<V>(g + off, gv);
#pragma unroll
        for (int l = 0; l < V; ++l) {
          dv[l] = s_direct * gv[l];
          acc[l] += s_gather * gv[l];
        }
        store_pack<V>(g_direct + off, dv);
      }
    }
    store_pack<V>(g_small + pixel * s.C + c0, acc);
  }
}

template <typename T, int V, bool kThird>
void launch_forward(const T* a, const T* small, const T* b, T* out, const UpsampleShape& s,
                    Coefficients<acc_t<T>> k, bool channels_last, cudaStream_t stream) {
  if (channels_last) {
    upsample_forward_nhwc_kernel<T, V, kThird>
        <<<grid_for(s.B * s.H * s.W * (s.C / V)), kThreads, 0, stream>>>(a, small, b, out, s, k);
  } else {
    upsample_forward_nchw_kernel<T, V, kThird>
        <<<grid_for(s.B * s.C * s.H * (s.W / V)), kThreads, 0, stream>>>(a, small, b, out, s, k);
  }
}

UpsampleShape upsample_shape(int64_t B, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w) {
  UpsampleShape s{B, C, H, W, h, w, 0.0f, 0.0f};
  s.scale_h = H > 0 ? static_cast<float>(h) / static_cast<float>(H) : 0.0f;
  s.scale_w = W > 0 ? static_cast<float>(w) / static_cast<float>(W) : 0.0f;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

cudaError_t upsample_combine_forward(const void* a, const void* small, const void* b, void* out,
                                     DType dtype, int64_t batch, int64_t channels,
                                     int64_t height, int64_t width, int64_t small_height,
                                     int64_t small_width, double ca, double cu, double cb,
                                     bool channels_last, cudaStream_t stream) {
  const UpsampleShape s = upsample_shape(batch, channels, height, width, small_height,
                                         small_width);
  if (s.B * s.C * s.H * s.W <= 0) return cudaSuccess;
  if (s.h <= 0 || s.w <= 0) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    constexpr int V = kVec16<T>;
    const auto* pa = static_cast<const T*>(a);
    const auto* ps = static_cast<const T*>(small);
    const auto* pb = static_cast<const T*>(b);
    auto* po = static_cast<T*>(out);
    const Coefficients<A> k{static_cast<A>(ca), static_cast<A>(cu), static_cast<A>(cb)};
    // Vectors along W (contiguous) or C (channels_last); the small map must be aligned too in
    // channels_last, where it is read with the same vectors.
    const int64_t lane_len = channels_last ? s.C : s.W;
    const int v = pick_vec<T, V>(lane_len, a, b, out, channels_last ? small : nullptr);
    const bool third = b != nullptr;
    return with_vec<V>(v, [&](auto width) {
      constexpr int W = decltype(width)::value;
      if (third) {
        launch_forward<T, W, true>(pa, ps, pb, po, s, k, channels_last, stream);
      } else {
        launch_forward<T, W, false>(pa, ps, pb, po, s, k, channels_last, stream);
      }
      return cudaGetLastError();
    });
  });
}

cudaError_t upsample_combine_backward(const void* grad_out, void* grad_direct, void* grad_small,
                                      DType dtype, int64_t batch, int64_t channels,
                                      int64_t height, int64_t width, int64_t small_height,
                                      int64_t small_width, double s_direct, double s_gather,
                                      bool channels_last, cudaStream_t stream) {
  const UpsampleShape s = upsample_shape(batch, channels, height, width, small_height,
                                         small_width);
  // Every small pixel is written (with an empty sum when no output pixel reads it), and
  // every output pixel on the way: launch whenever the small map has elements.
  if (s.B * s.C * s.h * s.w <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    constexpr int V = kVec16<T>;
    const auto* pg = static_cast<const T*>(grad_out);
    auto* pd = static_cast<T*>(grad_direct);
    auto* ps = static_cast<T*>(grad_small);
    const A sd = static_cast<A>(s_direct), sg = static_cast<A>(s_gather);
    if (!channels_last && s.H == 2 * s.h && s.W == 2 * s.w && s.W % V == 0 &&
        aligned_to(16, grad_out, grad_direct, grad_small)) {
      upsample_backward_nchw_x2_kernel<T, V>
          <<<grid_for(s.B * s.C * s.h * (s.W / V)), kThreads, 0, stream>>>(pg, pd, ps, s, sd, sg);
    } else if (!channels_last) {
      upsample_backward_nchw_kernel<T>
          <<<grid_for(s.B * s.C * s.h * s.w), kThreads, 0, stream>>>(pg, pd, ps, s, sd, sg);
    } else if (s.C % V == 0 && aligned_to(16, grad_out, grad_direct, grad_small)) {
      upsample_backward_nhwc_kernel<T, V>
          <<<grid_for(s.B * s.h * s.w * (s.C / V)), kThreads, 0, stream>>>(pg, pd, ps, s, sd,
                                                                           sg);
    } else {
      upsample_backward_nhwc_kernel<T, 1>
          <<<grid_for(s.B * s.h * s.w * s.C), kThreads, 0, stream>>>(pg, pd, ps, s, sd, sg);
    }
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace tdn
