// CPU kernel of ltdm_mixture: the L-TDM's multiscale mixture in one operator, for inference.
//
// From B = bn1(conv1(X)) (N*T, c, H, W) it forms, as the module path does with six operators
// (docs/math.md §4 and §6): A = conv2(B), the two differences of cross_segment_diff, and per
// direction (diff + up(conv3x3(pool2(diff))) + conv3x3(diff)) / 3 with the small-scale batch
// norms folded into the 3x3 convolutions. All of it is on c = C/16 channels, so the module path
// spends its time in per-call costs (six dispatches, six outputs, oneDNN's setup of tiny
// convolutions), not in arithmetic; here every intermediate stays in per-task buffers.
//
// Work. Stage 1 computes A for every frame (tasks over frames). Stage 2 takes one
// (direction, frame) per task: the difference frame into a zero-bordered buffer (the 3x3
// convolutions' padding), its 2x2 pool into another, the two convolutions, and their sum into
// the output. Each output value is computed by one task, so the result does not depend on the
// number of threads.
//
// Layout. Internally every map is channels_last (a pixel's c values consecutive): the 3x3
// convolutions then run as broadcast-FMAs into accumulators of c lanes, c in {8, 16, 32, 64}
// (TDN's c) with compile-time sizes, any other c through a generic loop. A contiguous output is
// transposed from the task's buffer.

#include "cpu_kernels.h"

#include <algorithm>

namespace tdn {
namespace cpu {
namespace {

// ------------------------------------------------------------------------------ 3x3 conv
//
// The 3x3 convolutions (and the depthwise one) read zero-bordered maps: (H+2) x (W+2) pixels of
// c values, a few zero pixels of slack after them. Output pixel (y, x) is computed at the
// "wide" index q = y*(W+2) + x, whose window then starts at input pixel q: every output of a
// map is one flat run of q (the two q per row that fall on the border are computed and never
// read), so the PX-pixel strips below need no per-row tail, whose single accumulator chain
// ran at an eighth of the speed on 7- and 14-pixel rows.

constexpr int64_t kMaxStrip = 8;  // the largest PX; every PX divides it
constexpr int64_t kSlack = 16;    // zero pixels after a bordered map: a strip's overrun

// Wide pixels a map of H x W outputs is computed over: a whole number of strips.
inline int64_t wide_count(int64_t H, int64_t W) {
  return (H * (W + 2) + kMaxStrip - 1) / kMaxStrip * kMaxStrip;
}

// Vectors of L lanes of T (GCC vector extensions), VB bytes at most: the register width of the
// instruction set the kernel is compiled for (16 baseline SSE2, 32 AVX2, 64 AVX-512; see
// conv3x3 below). A generic vector wider than the registers is lowered through the stack: the
// AVX2 clone of a single 64-byte build spent its time in spills (layer 4's call, c = 32 at 7x7,
// took 7.3 ms on a Zen 1 EPYC). PX pixels at a time give PX * NV <= 8 independent accumulators,
// enough to hide the FMA latency, and with the NV weight vectors they fit in the 16 registers
// of SSE2 and AVX2 up to NV = 4 (beyond, the weights are read as FMA memory operands).
template <typename T, int C, int VB>
struct Lanes {
  static constexpr int L = std::min<int>(C, VB / static_cast<int>(sizeof(T)));
  static constexpr int NV = C / L;  // vectors per pixel
  static constexpr int PX = NV >= 8 ? 1 : 8 / NV;
  typedef T vec __attribute__((vector_size(sizeof(T) * L)));
  typedef T uvec __attribute__((vector_size(sizeof(T) * L), aligned(alignof(T)), may_alias));
};

// The strip loop both fixed-size convolutions share: for q0 = 0, PX, 2 PX, ... < count, PX
// pixels' accumulators start at the bias, `accumulate(q0, acc)` adds the window sums, and they
// are stored at out[q0 .. q0+PX). Inlined into each instruction set's instantiation.
template <typename T, int C, int VB, typename Accumulate>
__attribute__((always_inline)) inline void for_each_strip(const T* __restrict__ bias,
                                                          T* __restrict__ out, int64_t count,
                                                          Accumulate accumulate) {
  using LN = Lanes<T, C, VB>;
  using V = typename LN::vec;
  using U = typename LN::uvec;
  constexpr int NV = LN::NV, L = LN::L, PX = LN::PX;
  V b[NV];
  for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const U*>(bias + v * L);
  for (int64_t q0 = 0; q0 < count; q0 += PX) {
    V acc[PX][NV];
    _Pragma("GCC unroll 8") for (int p = 0; p < PX; ++p)
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) acc[p][v] = b[v];
    accumulate(q0, acc);
    _Pragma("GCC unroll 8") for (int p = 0; p < PX; ++p)
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v)
            *reinterpret_cast<U*>(out + (q0 + p) * C + v * L) = acc[p][v];
  }
}

// out[q][:] = bias + sum over the 3x3 window at q and the C input channels (w is
// [k][ci][co]), for q in [0, count); `row` is the bordered map's width in pixels.
template <typename T, int C, int VB>
__attribute__((always_inline)) inline void conv3x3_fixed(const T* __restrict__ in,
                                                         const T* __restrict__ w,
                                                         const T* __restrict__ bias,
                                                         T* __restrict__ out, int64_t count,
                                                         int64_t row) {
  using LN = Lanes<T, C, VB>;
  using U = typename LN::uvec;
  for_each_strip<T, C, VB>(bias, out, count, [&](int64_t q0, auto& acc)
                                              __attribute__((always_inline)) {
    constexpr int NV = LN::NV, L = LN::L, PX = LN::PX;
    for (int k = 0; k < 9; ++k) {
      const T* src = in + (q0 + (k / 3) * row + k % 3) * C;
      const T* wk = w + k * C * C;
      for (int ci = 0; ci < C; ++ci) {
        typename LN::vec wv[NV];
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v)
            wv[v] = *reinterpret_cast<const U*>(wk + ci * C + v * L);
        _Pragma("GCC unroll 8") for (int p = 0; p < PX; ++p) {
          const T s = src[p * C + ci];
          _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) acc[p][v] += wv[v] * s;
        }
      }
    }
  });
}

// The same for any c, one pixel at a time.
template <typename T>
TDN_VECTORIZE void conv3x3_generic(const T* __restrict__ in, const T* __restrict__ w,
                                   const T* __restrict__ bias, T* __restrict__ out, int64_t count,
                                   int64_t row, int64_t c) {
  for (int64_t q = 0; q < count; ++q) {
    T* acc = out + q * c;
    for (int64_t co = 0; co < c; ++co) acc[co] = bias[co];
    for (int k = 0; k < 9; ++k) {
      const T* src = in + (q + (k / 3) * row + k % 3) * c;
      const T* wk = w + k * c * c;
      for (int64_t ci = 0; ci < c; ++ci) {
        const T s = src[ci];
        const T* wrow = wk + ci * c;
        for (int64_t co = 0; co < c; ++co) acc[co] += wrow[co] * s;
      }
    }
  }
}

// Depthwise: out[q][ch] = bias[ch] + sum_k w[k][ch] * in[window k of q][ch].
template <typename T, int C, int VB>
__attribute__((always_inline)) inline void depthwise3x3_fixed(const T* __restrict__ in,
                                                              const T* __restrict__ w,
                                                              const T* __restrict__ bias,
                                                              T* __restrict__ out, int64_t count,
                                                              int64_t row) {
  using LN = Lanes<T, C, VB>;
  using U = typename LN::uvec;
  for_each_strip<T, C, VB>(bias, out, count, [&](int64_t q0, auto& acc)
                                              __attribute__((always_inline)) {
    constexpr int NV = LN::NV, L = LN::L, PX = LN::PX;
    _Pragma("GCC unroll 9") for (int k = 0; k < 9; ++k) {
      const T* src = in + (q0 + (k / 3) * row + k % 3) * C;
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {
        const typename LN::vec wv = *reinterpret_cast<const U*>(w + k * C + v * L);
        _Pragma("GCC unroll 8") for (int p = 0; p < PX; ++p)
            acc[p][v] += wv * *reinterpret_cast<const U*>(src + p * C + v * L);
      }
    }
  });
}

template <typename T>
TDN_VECTORIZE void depthwise3x3_generic(const T* __restrict__ in, const T* __restrict__ w,
                                        const T* __restrict__ bias, T* __restrict__ out,
                                        int64_t count, int64_t row, int64_t c) {
  for (int64_t q = 0; q < count; ++q) {
    T* o = out + q * c;
    for (int64_t ch = 0; ch < c; ++ch) o[ch] = bias[ch];
    for (int k = 0; k < 9; ++k) {
      const T* src = in + (q + (k / 3) * row + k % 3) * c;
      const T* wk = w + k * c;
      for (int64_t ch = 0; ch < c; ++ch) o[ch] += wk[ch] * src[ch];
    }
  }
}

// The fixed-size convolutions once per instruction set, each compiled for it with vectors of
// its register width (target_clones would compile one source, hence one vector width, for all).
template <typename T, int C, bool kDepthwise, int VB>
__attribute__((always_inline)) inline void conv3x3_fixed_any(const T* in, const T* w,
                                                             const T* bias, T* out,
                                                             int64_t count, int64_t row) {
  if constexpr (kDepthwise) {
    depthwise3x3_fixed<T, C, VB>(in, w, bias, out, count, row);
  } else {
    conv3x3_fixed<T, C, VB>(in, w, bias, out, count, row);
  }
}

#if TDN_HAVE_ISA_TARGETS
template <typename T, int C, bool kDepthwise>
__attribute__((target("arch=x86-64-v4"))) void conv3x3_avx512(const T* in, const T* w,
                                                              const T* bias, T* out,
                                                              int64_t count, int64_t row) {
  conv3x3_fixed_any<T, C, kDepthwise, 64>(in, w, bias, out, count, row);
}

template <typename T, int C, bool kDepthwise>
__attribute__((target("arch=x86-64-v3"))) void conv3x3_avx2(const T* in, const T* w,
                                                            const T* bias, T* out, int64_t count,
                                                            int64_t row) {
  conv3x3_fixed_any<T, C, kDepthwise, 32>(in, w, bias, out, count, row);
}
#endif

template <typename T, int C, bool kDepthwise>
void conv3x3_baseline(const T* in, const T* w, const T* bias, T* out, int64_t count,
                      int64_t row) {
  conv3x3_fixed_any<T, C, kDepthwise, 16>(in, w, bias, out, count, row);
}

// A 3x3 convolution (kDepthwise: the depthwise one) on the fixed-size path when C > 0 (C == c),
// for this CPU's instruction set; the generic one for C = 0 (any run-time channel count c).
template <typename T, int C, bool kDepthwise>
void conv3x3(const T* in, const T* w, const T* bias, T* out, int64_t count, int64_t row,
             int64_t c) {
  if constexpr (C > 0) {
#if TDN_HAVE_ISA_TARGETS
    switch (cpu_isa_level()) {
      case 4: return conv3x3_avx512<T, C, kDepthwise>(in, w, bias, out, count, row);
      case 3: return conv3x3_avx2<T, C, kDepthwise>(in, w, bias, out, count, row);
      default: break;
    }
#endif
    conv3x3_baseline<T, C, kDepthwise>(in, w, bias, out, count, row);
  } else if constexpr (kDepthwise) {
    depthwise3x3_generic<T>(in, w, bias, out, count, row, c);
  } else {
    conv3x3_generic<T>(in, w, bias, out, count, row, c);
  }
}

// ------------------------------------------------------------------------- the other steps
// Each takes the channel count as a template constant C as above, so that for TDN's c the
// per-pixel loops have fixed trip counts and vectorise without remainders.

template <int C>
inline int64_t channels(int64_t c) {
  return C > 0 ? C : c;
}

// The interior of a bordered (H+2) x (W+2) map from rows of a (or of a - b); a's and b's rows
// are a_row and b_row pixels apart.
template <typename T>
TDN_VECTORIZE void fill_interior(const T* __restrict__ a, int64_t a_row, const T* __restrict__ b,
                                 int64_t b_row, T* __restrict__ padded, int64_t H, int64_t W,
                                 int64_t c) {
  const int64_t n = W * c;
  for (int64_t y = 0; y < H; ++y) {
    T* dst = padded + ((y + 1) * (W + 2) + 1) * c;
    const T* ra = a + y * a_row * c;
    if (b) {
      const T* rb = b + y * b_row * c;
      for (int64_t i = 0; i < n; ++i) dst[i] = ra[i] - rb[i];
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = ra[i];
    }
  }
}

// 2x2 average pool (floor mode) of the bordered difference into the bordered pooled map.
template <typename T, int C>
TDN_VECTORIZE void pool2x2(const T* __restrict__ dp, T* __restrict__ pp, int64_t W, int64_t h,
                           int64_t w, int64_t c_rt) {
  const int64_t c = channels<C>(c_rt);
  const T quarter = T(0.25);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      const T* r0 = dp + ((2 * i + 1) * (W + 2) + 2 * j + 1) * c;
      const T* r1 = r0 + (W + 2) * c;
      T* o = pp + ((i + 1) * (w + 2) + j + 1) * c;
      for (int64_t ch = 0; ch < c; ++ch)
        o[ch] = (((r0[ch] + r0[c + ch]) + r1[ch]) + r1[c + ch]) * quarter;
    }
  }
}

// One output row: (diff + up(small2) + small4) / 3, in multiscale_sum's order.
template <typename T, int C>
TDN_VECTORIZE void third_sum_pixels(const T* __restrict__ diff, const T* __restrict__ small2,
                                    const int64_t* __restrict__ cmap,
                                    const T* __restrict__ small4, T* __restrict__ out, int64_t W,
                                    int64_t c_rt) {
  const int64_t c = channels<C>(c_rt);
  const T third = static_cast<T>(1.0 / 3.0);
  for (int64_t x = 0; x < W; ++x) {
    const T* d = diff + x * c;
    const T* u = small2 + cmap[x] * c;
    const T* f = small4 + x * c;
    T* o = out + x * c;
    for (int64_t ch = 0; ch < c; ++ch) o[ch] = third * d[ch] + third * u[ch] + third * f[ch];
  }
}

// -------------------------------------------------------------------------------- the op

// The weights in the kernels' order: [k][ch] (depthwise), [k][ci][co] (3x3), and the biases.
template <typename T>
struct MixtureWeights {
  std::vector<T> align, align_bias, pooled, pooled_bias, full, full_bias;

  MixtureWeights(const at::Tensor& aw, const c10::optional<at::Tensor>& ab, const at::Tensor& pw,
                 const at::Tensor& pb, const at::Tensor& fw, const at::Tensor& fb, int64_t c)
      : align(9 * c), align_bias(c, T(0)), pooled(9 * c * c), full(9 * c * c) {
    const auto a = aw.contiguous();
    for (int64_t ch = 0; ch < c; ++ch)
      for (int k = 0; k < 9; ++k) align[k * c + ch] = a.const_data_ptr<T>()[ch * 9 + k];
    if (ab.has_value() && ab->defined()) align_bias = copy_of(*ab);
    reorder_3x3(pw, pooled, c);
    reorder_3x3(fw, full, c);
    pooled_bias = copy_of(pb);
    full_bias = copy_of(fb);
    for (const auto* v : {&pooled, &full})
      for (const T x : *v) finite = finite && std::isfinite(x);
  }

  // Whether every 3x3 weight is finite: then a convolution of a zero map is exactly its bias.
  bool finite = true;

  static std::vector<T> copy_of(const at::Tensor& t) {
    const auto d = t.contiguous();
    return std::vector<T>(d.const_data_ptr<T>(), d.const_data_ptr<T>() + d.numel());
  }

  static void reorder_3x3(const at::Tensor& weight, std::vector<T>& dst, int64_t c) {
    const auto wt = weight.contiguous();  // [co][ci][k]
    const T* src = wt.const_data_ptr<T>();
    for (int64_t co = 0; co < c; ++co)
      for (int64_t ci = 0; ci < c; ++ci)
        for (int k = 0; k < 9; ++k) dst[(k * c + ci) * c + co] = src[(co * c + ci) * 9 + k];
  }
};

template <typename T, int C>
void mixture_kernel(const at::Tensor& feat_cl, const MixtureWeights<T>& wts, int64_t T_,
                    at::Tensor& out) {
  const int64_t NT = feat_cl.size(0), c = feat_cl.size(1), H = feat_cl.size(2),
                W = feat_cl.size(3);
  const int64_t h = H / 2, w = W / 2, frame = H * W * c;
  const int64_t count = wide_count(H, W), count_small = wide_count(h, w);
  const int64_t bordered = ((H + 2) * (W + 2) + kSlack) * c;
  const int64_t bordered_small = ((h + 2) * (w + 2) + kSlack) * c;
  const T* B = feat_cl.const_data_ptr<T>();

  // Stage 1: A = conv2(B) for every frame, in the wide layout (rows W+2 pixels apart).
  std::vector<T> aligned(static_cast<size_t>(NT * count * c));
  at::parallel_for(0, NT, 1, [&](int64_t f0, int64_t f1) {
    std::vector<T> bp(static_cast<size_t>(bordered), T(0));
    for (int64_t f = f0; f < f1; ++f) {
      fill_interior<T>(B + f * frame, W, nullptr, 0, bp.data(), H, W, c);
      conv3x3<T, C, true>(bp.data(), wts.align.data(), wts.align_bias.data(),
                         aligned.data() + f * count * c, count, W + 2, c);
    }
  });

  // Stage 2: one (direction, frame) per task.
  const auto rmap = nearest_map(h, H), cmap = nearest_map(w, W);
  const bool cl_out = out.stride(2) == 1;
  T* O = out.mutable_data_ptr<T>();
  const int64_t sd = out.stride(0), sf = out.stride(1), sc = out.stride(2);
  at::parallel_for(0, 2 * NT, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> dp(static_cast<size_t>(bordered), T(0));
    std::vector<T> pp(static_cast<size_t>(bordered_small), T(0));
    std::vector<T> small2(static_cast<size_t>(count_small * c));
    std::vector<T> small4(static_cast<size_t>(count * c));
    std::vector<T> staged(cl_out ? 0 : static_cast<size_t>(frame));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t d = u / NT, f = u % NT, t = f % T_;
      const bool zero = d == 0 ? t == T_ - 1 : t == 0;  // the zero-padded end of a video
      if (zero) {
        for (int64_t y = 0; y < H; ++y)
          std::fill_n(dp.data() + ((y + 1) * (W + 2) + 1) * c, W * c, T(0));
      } else {
        const int64_t src = d == 0 ? f + 1 : f - 1;
        fill_interior<T>(aligned.data() + src * count * c, W + 2, B + f * frame, W, dp.data(),
                         H, W, c);
      }
      if (zero && wts.finite) {  // both branches are their biases: 1/8 of the work at T = 8
        for (int64_t q = 0; q < count_small; ++q)
          std::copy_n(wts.pooled_bias.data(), c, small2.data() + q * c);
        for (int64_t q = 0; q < count; ++q)
          std::copy_n(wts.full_bias.data(), c, small4.data() + q * c);
      } else {
        pool2x2<T, C>(dp.data(), pp.data(), W, h, w, c);
        conv3x3<T, C, false>(pp.data(), wts.pooled.data(), wts.pooled_bias.data(),
                             small2.data(), count_small, w + 2, c);
        conv3x3<T, C, false>(dp.data(), wts.full.data(), wts.full_bias.data(), small4.data(),
                             count, W + 2, c);
      }
      T* dst = cl_out ? O + d * sd + f * sf : staged.data();
      for (int64_t y = 0; y < H; ++y)
        third_sum_pixels<T, C>(dp.data() + ((y + 1) * (W + 2) + 1) * c,
                               small2.data() + rmap[y] * (w + 2) * c, cmap.data(),
                               small4.data() + y * (W + 2) * c, dst + y * W * c, W, c);
      if (!cl_out) {  // (H, W, c) -> (c, H, W)
        T* plane = O + d * sd + f * sf;
        for (int64_t p = 0; p < H * W; ++p)
          for (int64_t ch = 0; ch < c; ++ch) plane[ch * sc + p] = staged[p * c + ch];
      }
    }
  });
}

template <typename T>
void run_mixture(const at::Tensor& feat_cl, const MixtureWeights<T>& wts, int64_t T_,
                 at::Tensor& out) {
  switch (feat_cl.size(1)) {
    case 8: return mixture_kernel<T, 8>(feat_cl, wts, T_, out);
    case 16: return mixture_kernel<T, 16>(feat_cl, wts, T_, out);
    case 32: return mixture_kernel<T, 32>(feat_cl, wts, T_, out);
    case 64: return mixture_kernel<T, 64>(feat_cl, wts, T_, out);
    default: return mixture_kernel<T, 0>(feat_cl, wts, T_, out);
  }
}

at::Tensor ltdm_mixture_cpu(const at::Tensor& feat, const at::Tensor& align_weight,
                            const c10::optional<at::Tensor>& align_bias,
                            const at::Tensor& pooled_weight, const at::Tensor& pooled_bias,
                            const at::Tensor& full_weight, const at::Tensor& full_bias,
                            int64_t num_segments) {
  check_ltdm_mixture(feat, align_weight, align_bias, pooled_weight, pooled_bias, full_weight,
                     full_bias, num_segments);
  TORCH_CHECK(feat.device().is_cpu(), "feat must be a CPU tensor for the CPU kernel");
  const int64_t NT = feat.size(0), c = feat.size(1), H = feat.size(2), W = feat.size(3);
  const auto fmt = layout_of(feat);
  auto out = empty_stacked(feat, NT, c, H, W, fmt);
  if (out.numel() == 0) return out;
  const auto feat_cl = feat.contiguous(at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "ltdm_mixture", [&] {
    const MixtureWeights<scalar_t> wts(align_weight, align_bias, pooled_weight, pooled_bias,
                                       full_weight, full_bias, c);
    run_mixture<scalar_t>(feat_cl, wts, num_segments, out);
  });
  return out;
}

}  // namespace
}  // namespace cpu
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CPU, m) { m.impl("ltdm_mixture", &tdn::cpu::ltdm_mixture_cpu); }
