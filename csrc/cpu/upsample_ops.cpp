// CPU kernels of the operators that add a nearest-upsampled map: multiscale_sum (L-TDM) and
// lateral_fuse (S-TDM), forward and backward.
//
// Upsampling picks source pixels exactly as F.interpolate(mode="nearest") does
// (tdn::nearest_map). The backward gathers, for each source pixel, the gradient of the output
// pixels that read it (tdn::nearest_inverse): no atomics, each element written once, summed
// in the same order as ATen's upsample backward.
//
// Layout: planes of H x W pixels with V values each (V = 1 contiguous, V = C channels_last).

#include "cpu_kernels.h"

#include <memory>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define TDN_UPSAMPLE_AVX512 1
#endif

namespace tdn {
namespace cpu {
namespace {

struct UpsampleGeometry {
  int64_t planes, V, H, W, h, w;
  UpsampleGeometry(int64_t B, int64_t C, int64_t H_, int64_t W_, int64_t h_, int64_t w_,
                   at::MemoryFormat fmt)
      : planes(is_channels_last(fmt) ? B : B * C),
        V(is_channels_last(fmt) ? C : 1),
        H(H_),
        W(W_),
        h(h_),
        w(w_) {}
};

// The row loops below must round every product and sum as the reference's separate
// elementwise operations do; their x86-64-v3/v4 clones have FMA, and GCC would otherwise
// contract a*b + c into one (differently rounded) instruction.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

template <typename A>
TDN_VECTORIZE void third_sum_row(const A* __restrict__ a, const A* __restrict__ u,
                                 const A* __restrict__ b, A* __restrict__ out, int64_t n) {
  // The reference's order: 1/3*diff + 1/3*up + 1/3*full.
  const A third = static_cast<A>(1.0 / 3.0);
  for (int64_t i = 0; i < n; ++i) out[i] = third * a[i] + third * u[i] + third * b[i];
}

template <typename A>
TDN_VECTORIZE void axpby_row(const A* __restrict__ a, const A* __restrict__ u, A* __restrict__ out,
                             int64_t n, A alpha, A beta) {
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i] + beta * u[i];
}

template <typename A>
TDN_VECTORIZE void scale_row(const A* __restrict__ g, A* __restrict__ out, int64_t n, A s) {
  for (int64_t i = 0; i < n; ++i) out[i] = s * g[i];
}

// Plain inline (no target clones): rows are 7 to 28 values, and a call through the clones'
// dispatch would cost more than the copy.
template <typename A>
inline void duplicate_row(const A* __restrict__ src, A* __restrict__ dst, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    dst[2 * j] = src[j];
    dst[2 * j + 1] = src[j];
  }
}

// acc[j] += s*g[2j], then += s*g[2j+1]: the upsample backward's order for a doubled width.
template <typename A>
TDN_VECTORIZE void pair_accumulate_row(const A* __restrict__ g, A s, A* __restrict__ acc,
                                       int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    const A a = acc[j] + s * g[2 * j];
    acc[j] = a + s * g[2 * j + 1];
  }
}

#pragma GCC pop_options

// One source row's gradient for an exactly doubled map: dst[j] sums the 2x2 window of output
// rows r0, r1 at columns 2j, 2j+1, in ATen's order ((0 + r0[2j]) + r0[2j+1]) + r1[2j] ...
// Plain inline: rows are 7 to 28 values, too short for a call through the target clones.
template <typename A, typename T>
inline void quad_row(const A* __restrict__ r0, const A* __restrict__ r1, A s, T* __restrict__ dst,
                     int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    A a = A(0) + s * r0[2 * j];
    a = a + s * r0[2 * j + 1];
    a = a + s * r1[2 * j];
    a = a + s * r1[2 * j + 1];
    dst[j] = static_cast<T>(a);
  }
}

// Exactly doubled float maps in the contiguous layout (H = 2h, W = 2w: the L-TDM's pooled
// branch at 28, 14 and the S-TDM's 56): rows of 7 to 28 values are far too short for the
// auto-vectorised loops (a call, a remainder and a scalar tail per row cost more than the
// arithmetic), so these AVX-512 kernels handle a row in one or two masked vectors and need no
// staging buffer. With H = 2h the source row of output row R of the flattened tensor is R/2
// across planes too, so the work is a flat range of source rows.
#ifdef TDN_UPSAMPLE_AVX512
// Products and sums through the rounding builtins, which the compiler never fuses into an
// FMA: each one is rounded as in the reference's separate elementwise operations.
inline __m512 __attribute__((target("avx512f"))) mul(__m512 x, __m512 y) {
  return _mm512_maskz_mul_round_ps(__mmask16(0xFFFF), x, y, _MM_FROUND_CUR_DIRECTION);
}
inline __m512 __attribute__((target("avx512f"))) add(__m512 x, __m512 y) {
  return _mm512_maskz_add_round_ps(__mmask16(0xFFFF), x, y, _MM_FROUND_CUR_DIRECTION);
}

inline __mmask16 __attribute__((target("avx512f"))) lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// The kernels below take the source width as a template argument (kW > 0) for the widths TDN
// has (7, 14, 28, 56): with it known the compiler unrolls a row into straight-line vector code
// with constant masks, which measured twice as fast as the same loop over a runtime width
// (lateral_fuse at 56x56, 1 thread: 1.03-1.5 ms against 0.6-0.7 ms). kW = 0 reads w_rt.
template <typename F>
void with_static_width(int64_t w, F&& f) {
  switch (w) {
    case 7: return f(std::integral_constant<int, 7>{});
    case 14: return f(std::integral_constant<int, 14>{});
    case 28: return f(std::integral_constant<int, 28>{});
    case 56: return f(std::integral_constant<int, 56>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// out = (ca*a + cu*up(s)) [+ cb*b if kThree] for output rows 2K, 2K+1 of source rows K in
// [k0, k1).
template <int kW, bool kThree>
__attribute__((target("avx512f"))) void doubled_combine_avx512(
    const float* __restrict__ a, const float* __restrict__ s, const float* __restrict__ b,
    float* __restrict__ out, int64_t k0, int64_t k1, int64_t w_rt, float ca, float cu, float cb) {
  const int64_t w = kW > 0 ? kW : w_rt;
  const int64_t W = 2 * w;
  const __m512 va = _mm512_set1_ps(ca), vu = _mm512_set1_ps(cu), vb = _mm512_set1_ps(cb);
  const __m512i dup_lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t j0 = 0; j0 < w; j0 += 16) {
      const int64_t nj = std::min<int64_t>(16, w - j0);
      const __mmask16 m0 = lanes(2 * nj), m1 = lanes(2 * nj - 16);
      const __m512 sv = _mm512_maskz_loadu_ps(lanes(nj), s + k * w + j0);
      const __m512 u0 = mul(vu, _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF), dup_lo, sv));
      const __m512 u1 = mul(vu, _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF), dup_hi, sv));
      for (int64_t r = 0; r < 2; ++r) {
        const int64_t off = (2 * k + r) * W + 2 * j0;
        __m512 o0 = add(mul(va, _mm512_maskz_loadu_ps(m0, a + off)), u0);
        __m512 o1 = add(mul(va, _mm512_maskz_loadu_ps(m1, a + off + 16)), u1);
        if constexpr (kThree) {
          o0 = add(o0, mul(vb, _mm512_maskz_loadu_ps(m0, b + off)));
          o1 = add(o1, mul(vb, _mm512_maskz_loadu_ps(m1, b + off + 16)));
        }
        _mm512_mask_storeu_ps(out + off, m0, o0);
        if (m1) _mm512_mask_storeu_ps(out + off + 16, m1, o1);
      }
    }
  }
}

// scaled_g = gs*g over output rows 2K, 2K+1 and gsmall row K = the 2x2 windows of ss*g in
// ATen's order ((0 + g00) + g01) + g10) + g11, for source rows K in [k0, k1): one pass over g.
template <int kW>
__attribute__((target("avx512f"))) void doubled_backward_avx512(
    const float* __restrict__ g, float* __restrict__ scaled_g, float gs,
    float* __restrict__ gsmall, float ss, int64_t k0, int64_t k1, int64_t w_rt) {
  const int64_t w = kW > 0 ? kW : w_rt;
  const int64_t W = 2 * w;
  const __m512 vg = _mm512_set1_ps(gs), vs = _mm512_set1_ps(ss);
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t j0 = 0; j0 < w; j0 += 16) {
      const int64_t nj = std::min<int64_t>(16, w - j0);
      const __mmask16 m0 = lanes(2 * nj), m1 = lanes(2 * nj - 16);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t r = 0; r < 2; ++r) {
        const int64_t off = (2 * k + r) * W + 2 * j0;
        const __m512 lo = _mm512_maskz_loadu_ps(m0, g + off);
        const __m512 hi = _mm512_maskz_loadu_ps(m1, g + off + 16);
        _mm512_mask_storeu_ps(scaled_g + off, m0, mul(vg, lo));
        if (m1) _mm512_mask_storeu_ps(scaled_g + off + 16, m1, mul(vg, hi));
        acc = add(acc, mul(vs, _mm512_permutex2var_ps(lo, even, hi)));
        acc = add(acc, mul(vs, _mm512_permutex2var_ps(lo, odd, hi)));
      }
      _mm512_mask_storeu_ps(gsmall + k * w + j0, lanes(nj), acc);
    }
  }
}
#endif

// Whether the doubled float kernels above serve this geometry and dtype.
template <typename scalar_t>
bool use_doubled_avx512(const UpsampleGeometry& geo) {
#ifdef TDN_UPSAMPLE_AVX512
  return std::is_same_v<scalar_t, float> && geo.V == 1 && geo.W == 2 * geo.w &&
         geo.H == 2 * geo.h && cpu_has_avx512f();
#else
  return false;
#endif
}

// Source rows one task takes at least in the doubled kernels: kGrain/2 output values, so
// that from kGrain values on the work splits evenly across two threads (parallel_for gives
// each task max(grain, n / threads)) instead of kGrain and the remainder.
inline int64_t doubled_grain(const UpsampleGeometry& geo) {
  return std::max<int64_t>(1, kGrain / (4 * geo.W));
}

// The doubled float kernels over the whole tensor, split by source rows (each value is
// computed by one task, so any thread count gives the same bits). False when they do not
// apply: the caller then takes the blocked path.
template <typename scalar_t>
bool doubled_combine(const UpsampleGeometry& geo, const scalar_t* a, const scalar_t* small,
                     const scalar_t* b, scalar_t* out, double ca, double cu, double cb) {
#ifdef TDN_UPSAMPLE_AVX512
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (!use_doubled_avx512<scalar_t>(geo)) return false;
    with_static_width(geo.w, [&](auto kw) {
      at::parallel_for(0, geo.planes * geo.h, doubled_grain(geo), [&](int64_t k0, int64_t k1) {
        const float fa = static_cast<float>(ca), fu = static_cast<float>(cu);
        if (b)
          doubled_combine_avx512<kw(), true>(a, small, b, out, k0, k1, geo.w, fa, fu,
                                             static_cast<float>(cb));
        else
          doubled_combine_avx512<kw(), false>(a, small, b, out, k0, k1, geo.w, fa, fu, 0.f);
      });
    });
    return true;
  }
#endif
  return false;
}

template <typename scalar_t>
bool doubled_backward(const UpsampleGeometry& geo, const scalar_t* g, scalar_t* scaled_g,
                      double gs, scalar_t* gsmall, double ss) {
#ifdef TDN_UPSAMPLE_AVX512
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (!use_doubled_avx512<scalar_t>(geo)) return false;
    with_static_width(geo.w, [&](auto kw) {
      at::parallel_for(0, geo.planes * geo.h, doubled_grain(geo), [&](int64_t k0, int64_t k1) {
        doubled_backward_avx512<kw()>(g, scaled_g, static_cast<float>(gs), gsmall,
                                      static_cast<float>(ss), k0, k1, geo.w);
      });
    });
    return true;
  }
#endif
  return false;
}

// Work comes in blocks of consecutive rows of one plane, about kBlock elements each: with
// channels_last a row is W*C values, but a contiguous row (W values, 7 to 56 in TDN) is too
// short to amortise a call.
constexpr int64_t kBlock = 2048;

// For each block of output rows: expand the source rows they read (nearest) into `up`, then
// block_op(a, up, b_or_null, out, n) over the block in acc_t arithmetic. Planes smaller than a
// block are grouped, several whole planes to a block: they are consecutive in memory, so the
// block's streams stay long (the L-TDM's 14x14 and 7x7 planes are 196 and 49 values).
template <typename scalar_t, typename BlockOp>
void upsample_combine(const UpsampleGeometry& geo, const scalar_t* a, const scalar_t* small,
                      const scalar_t* b, scalar_t* out, BlockOp block_op) {
  using A = acc_t<scalar_t>;
  const auto rmap = nearest_map(geo.h, geo.H), cmap = nearest_map(geo.w, geo.W);
  const int64_t n = geo.W * geo.V, V = geo.V;
  const bool doubled = V == 1 && geo.W == 2 * geo.w;
  const int64_t rows_per_block = std::min(geo.H, std::max<int64_t>(1, kBlock / n));
  const int64_t blocks_per_plane = (geo.H + rows_per_block - 1) / rows_per_block;
  const int64_t planes_per_block =
      blocks_per_plane == 1 ? std::max<int64_t>(1, kBlock / (geo.H * n)) : 1;
  const int64_t units = blocks_per_plane == 1
                            ? (geo.planes + planes_per_block - 1) / planes_per_block
                            : geo.planes * blocks_per_plane;
  const int64_t cap = planes_per_block * rows_per_block * n;
  at::parallel_for(0, units, std::max<int64_t>(1, kGrain / cap), [&](int64_t u0, int64_t u1) {
    // Uninitialised: every value is written before it is read (zeroing it cost a pass).
    const std::unique_ptr<A[]> buf(new A[static_cast<size_t>(4 * cap)]);
    A *up = buf.get(), *la = up + cap, *lb = la + cap, *lo = lb + cap;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t p0 = blocks_per_plane == 1 ? u * planes_per_block : u / blocks_per_plane;
      const int64_t p1 = blocks_per_plane == 1 ? std::min(geo.planes, p0 + planes_per_block)
                                               : p0 + 1;
      const int64_t y0 = blocks_per_plane == 1 ? 0 : (u % blocks_per_plane) * rows_per_block;
      const int64_t y1 = std::min(geo.H, y0 + rows_per_block);
      A* dst = up;
      for (int64_t plane = p0; plane < p1; ++plane) {
        for (int64_t y = y0; y < y1; ++y, dst += n) {
          if (y > y0 && rmap[y] == rmap[y - 1]) {  // same source row as the one above
            std::copy(dst - n, dst, dst);
            continue;
          }
          const scalar_t* srow = small + (plane * geo.h + rmap[y]) * geo.w * V;
          if constexpr (std::is_same_v<scalar_t, A>) {
            if (doubled) {  // contiguous, exactly doubled width: each value twice
              duplicate_row(reinterpret_cast<const A*>(srow), dst, geo.w);
              continue;
            }
          }
          for (int64_t x = 0; x < geo.W; ++x)
            for (int64_t v = 0; v < V; ++v)
              dst[x * V + v] = static_cast<A>(srow[cmap[x] * V + v]);
        }
      }
      const int64_t off = (p0 * geo.H + y0) * n, len = (p1 - p0) * (y1 - y0) * n;
      A* o = out_acc(out + off, lo);
      block_op(load_acc(a + off, la, len), up, b ? load_acc(b + off, lb, len) : nullptr, o, len);
      store_acc(out + off, o, len);
    }
  });
}

// One pass over the output gradient g: scaled_g = g_scale * g (the gradient of the
// full-resolution input) and gsmall[i, j] = sum over output pixels reading (i, j) of
// small_scale * g, gathered in ATen's accumulation order. Each output row reads exactly one
// source row, so the blocks of source rows cover scaled_g entirely.
template <typename scalar_t>
void upsample_backward(const UpsampleGeometry& geo, const scalar_t* g, scalar_t* scaled_g,
                       double g_scale, scalar_t* gsmall, double small_scale) {
  if (doubled_backward(geo, g, scaled_g, g_scale, gsmall, small_scale)) return;
  using A = acc_t<scalar_t>;
  const auto rbeg = nearest_inverse(geo.h, geo.H), cmap = nearest_map(geo.w, geo.W);
  const int64_t V = geo.V, n = geo.W * V, ns = geo.w * V;
  const A gs = static_cast<A>(g_scale), ss = static_cast<A>(small_scale);
  // Contiguous layout, exactly doubled width: output columns 2j and 2j+1 read column j.
  const bool pairs = V == 1 && geo.W == 2 * geo.w;
  // ... and doubled height too (even H: the L-TDM's pooled branch at 56, 28 and 14 pixels):
  // source pixel (i, j) gathers a 2x2 window in one pass, with no accumulator row to clear.
  // The rows are 7 to 28 values long, so per-row calls would cost more than the arithmetic.
  const bool quads = pairs && geo.H == 2 * geo.h;
  const int64_t ratio = (geo.H + geo.h - 1) / geo.h;
  const int64_t small_per_block = std::max<int64_t>(1, kBlock / (n * ratio));
  const int64_t blocks_per_plane = (geo.h + small_per_block - 1) / small_per_block;
  if (quads && blocks_per_plane == 1) {
    // Whole planes, several to a block (as in upsample_combine): one long scaling pass over
    // the block, then each plane's 2x2 gathers from the block in cache.
    const int64_t plane_len = geo.H * n;
    const int64_t planes_per_block = std::max<int64_t>(1, kBlock / plane_len);
    const int64_t cap = planes_per_block * plane_len;
    const int64_t units = (geo.planes + planes_per_block - 1) / planes_per_block;
    at::parallel_for(0, units, std::max<int64_t>(1, kGrain / (2 * cap)), [&](int64_t u0,
                                                                          int64_t u1) {
      const std::unique_ptr<A[]> buf(new A[static_cast<size_t>(2 * cap)]);
      A *lg = buf.get(), *lo = lg + cap;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t p0 = u * planes_per_block;
        const int64_t p1 = std::min(geo.planes, p0 + planes_per_block);
        const int64_t off = p0 * plane_len, len = (p1 - p0) * plane_len;
        const A* gblock = load_acc(g + off, lg, len);
        A* o = out_acc(scaled_g + off, lo);
        scale_row(gblock, o, len, gs);
        store_acc(scaled_g + off, o, len);
        for (int64_t plane = p0; plane < p1; ++plane) {
          const A* gp = gblock + (plane - p0) * plane_len;
          for (int64_t i = 0; i < geo.h; ++i) {
            const A* r0 = gp + 2 * i * n;
            const A* r1 = r0 + n;
            scalar_t* dst = gsmall + (plane * geo.h + i) * ns;
            quad_row(r0, r1, ss, dst, geo.w);
          }
        }
      }
    });
    return;
  }
  int64_t cap_rows = 1;  // most output rows one block reads
  for (int64_t i0 = 0; i0 < geo.h; i0 += small_per_block)
    cap_rows = std::max(cap_rows, rbeg[std::min(geo.h, i0 + small_per_block)] - rbeg[i0]);
  const int64_t cap = cap_rows * n;
  at::parallel_for(0, geo.planes * blocks_per_plane, std::max<int64_t>(1, kGrain / (2 * cap)),
                   [&](int64_t u0, int64_t u1) {
                     const std::unique_ptr<A[]> buf(new A[static_cast<size_t>(2 * cap + ns)]);
                     A *lg = buf.get(), *lo = lg + cap, *acc = lo + cap;
                     for (int64_t u = u0; u < u1; ++u) {
                       const int64_t plane = u / blocks_per_plane;
                       const int64_t i0 = (u % blocks_per_plane) * small_per_block;
                       const int64_t i1 = std::min(geo.h, i0 + small_per_block);
                       const int64_t y0 = rbeg[i0], len = (rbeg[i1] - y0) * n;
                       const int64_t off = (plane * geo.H + y0) * n;
                       const A* gblock = load_acc(g + off, lg, len);
                       A* o = out_acc(scaled_g + off, lo);
                       scale_row(gblock, o, len, gs);
                       store_acc(scaled_g + off, o, len);
                       if (quads) {
                         for (int64_t i = i0; i < i1; ++i) {
                           const A* r0 = gblock + (2 * i - y0) * n;
                           const A* r1 = r0 + n;
                           scalar_t* dst = gsmall + (plane * geo.h + i) * ns;
                           quad_row(r0, r1, ss, dst, geo.w);
                         }
                         continue;
                       }
                       for (int64_t i = i0; i < i1; ++i) {
                         std::fill(acc, acc + ns, A(0));
                         for (int64_t y = rbeg[i]; y < rbeg[i + 1]; ++y) {
                           const A* grow = gblock + (y - y0) * n;
                           if (pairs) {
                             pair_accumulate_row(grow, ss, acc, geo.w);
                           } else {
                             for (int64_t x = 0; x < geo.W; ++x) {
                               A* dst = acc + cmap[x] * V;
                               const A* src = grow + x * V;
                               for (int64_t v = 0; v < V; ++v) dst[v] += ss * src[v];
                             }
                           }
                         }
                         scalar_t* dst = gsmall + (plane * geo.h + i) * ns;
                         for (int64_t k = 0; k < ns; ++k) dst[k] = static_cast<scalar_t>(acc[k]);
                       }
                     }
                   });
}

// ---------------------------------------------------------------------------------------
// multiscale_sum: (diff + up(pooled) + full) / 3 over (..., c, H, W)

at::Tensor multiscale_sum_cpu(const at::Tensor& diff_in, const at::Tensor& pooled_in,
                              const at::Tensor& full_in) {
  check_multiscale_sum(diff_in, pooled_in, full_in);
  const int64_t C = diff_in.size(-3), H = diff_in.size(-2), W = diff_in.size(-1);
  const int64_t h = pooled_in.size(-2), w = pooled_in.size(-1);
  const auto d4 = flatten_leading(diff_in);
  const auto fmt = layout_of(d4);
  const auto d = d4.contiguous(fmt);
  const auto f = flatten_leading(full_in).contiguous(fmt);
  const auto p = flatten_leading(pooled_in).contiguous(fmt);
  auto out = empty_4d(d, d.sizes(), fmt);
  if (out.numel() > 0) {
    const UpsampleGeometry geo(d.size(0), C, H, W, h, w, fmt);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d.scalar_type(), "mss_fwd", [&] {
      using A = acc_t<scalar_t>;
      if (doubled_combine(geo, d.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
                          f.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                          1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0))
        return;
      upsample_combine(geo, d.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
                       f.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                       [](const A* a, const A* u, const A* b, A* o, int64_t n) {
                         third_sum_row(a, u, b, o, n);
                       });
    });
  }
  return out.view(diff_in.sizes());
}

std::tuple<at::Tensor, at::Tensor> multiscale_sum_backward_cpu(const at::Tensor& g_in, int64_t h,
                                                               int64_t w) {
  check_upsample_backward(g_in, h, w, /*four_d=*/false);
  const auto b = upsample_grads(g_in, h, w);
  const auto& g = b.grad_out;
  if (g.numel() > 0) {
    const UpsampleGeometry geo(g.size(0), g.size(1), g.size(2), g.size(3), h, w, b.fmt);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mss_bwd", [&] {
      upsample_backward(geo, g.const_data_ptr<scalar_t>(),
                        b.grad_full.mutable_data_ptr<scalar_t>(), 1.0 / 3.0,
                        b.grad_small.mutable_data_ptr<scalar_t>(), 1.0 / 3.0);
    });
  }
  return {b.grad_full.view(g_in.sizes()), b.grad_small.view(with_spatial(g_in.sizes(), h, w))};
}

// ---------------------------------------------------------------------------------------
// lateral_fuse: alpha*x + beta*up(d)

at::Tensor lateral_fuse_cpu(const at::Tensor& x_in, const at::Tensor& d_in, double alpha,
                            double beta) {
  check_lateral_fuse(x_in, d_in);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), d = d_in.contiguous(fmt);
  auto out = empty_4d(x, x.sizes(), fmt);
  if (out.numel() == 0) return out;
  const UpsampleGeometry geo(x.size(0), x.size(1), x.size(2), x.size(3), d.size(2), d.size(3), fmt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lf_fwd", [&] {
    using A = acc_t<scalar_t>;
    if (doubled_combine(geo, x.const_data_ptr<scalar_t>(), d.const_data_ptr<scalar_t>(),
                        static_cast<const scalar_t*>(nullptr), out.mutable_data_ptr<scalar_t>(),
                        alpha, beta, 0.0))
      return;
    const A a = static_cast<A>(alpha), b = static_cast<A>(beta);
    upsample_combine(geo, x.const_data_ptr<scalar_t>(), d.const_data_ptr<scalar_t>(),
                     static_cast<const scalar_t*>(nullptr), out.mutable_data_ptr<scalar_t>(),
                     [a, b](const A* xr, const A* u, const A*, A* o, int64_t n) {
                       axpby_row(xr, u, o, n, a, b);
                     });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> lateral_fuse_backward_cpu(const at::Tensor& g_in, int64_t h,
                                                             int64_t w, double alpha, double beta) {
  check_upsample_backward(g_in, h, w, /*four_d=*/true);
  const auto b = upsample_grads(g_in, h, w);
  const auto& g = b.grad_out;
  if (g.numel() > 0) {
    const UpsampleGeometry geo(g.size(0), g.size(1), g.size(2), g.size(3), h, w, b.fmt);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "lf_bwd", [&] {
      upsample_backward(geo, g.const_data_ptr<scalar_t>(),
                        b.grad_full.mutable_data_ptr<scalar_t>(), alpha,
                        b.grad_small.mutable_data_ptr<scalar_t>(), beta);
    });
  }
  return {b.grad_full, b.grad_small};
}

}  // namespace
}  // namespace cpu
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CPU, m) {
  m.impl("multiscale_sum", &tdn::cpu::multiscale_sum_cpu);
  m.impl("multiscale_sum_backward", &tdn::cpu::multiscale_sum_backward_cpu);
  m.impl("lateral_fuse", &tdn::cpu::lateral_fuse_cpu);
  m.impl("lateral_fuse_backward", &tdn::cpu::lateral_fuse_backward_cpu);
}
