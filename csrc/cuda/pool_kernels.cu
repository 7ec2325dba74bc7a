// CUDA kernels of the difference-and-pool operators: temporal_diff_pool (S-TDM) and
// cross_segment_diff (L-TDM), forward and backward.
//
// Every kernel reads each input element once and writes each output element once: a thread
// owns a spatial tile and walks it through the frames (temporal_diff_pool) or segments
// (cross_segment_diff) of its clip, keeping the previous/next frame in registers. The
// backwards are gathers (each input gradient element adds up what it fed), so no atomics.
//
// Two tile shapes per operator:
// * "rows" (contiguous layout, kernel 2, row length a multiple of the 16-byte vector): two
//   image rows x V columns per thread, moved with 16-byte loads; V/2 pooling windows.
// * "generic": any layout and kernel size. In channels_last the V lanes of a thread are V
//   consecutive channels of one pixel (16-byte loads when the channel count allows).
//
// Numerics follow the references: differences are formed first, rounded to the tensor's
// dtype (the reference stores them), then pooled in acc_t, summed in window row-major order
// and divided (IEEE) by the window size, as avg_pool2d does.

#include "device_utils.cuh"

namespace tdn {
namespace cuda {
namespace {

// Offsets of a (B, C, H, W) tensor element, in either layout.
struct Strides {
  int64_t batch, channel, pixel;  // pixel = stride of one step along W (rows are W pixels)
};

__host__ __device__ inline Strides strides_of(int64_t C, int64_t H, int64_t W, bool channels_last) {
  if (channels_last) return {H * W * C, 1, C};
  return {C * H * W, H * W, 1};
}

// The value a reference computes for `a - b` in dtype T, back in acc_t.
template <typename T>
__device__ __forceinline__ acc_t<T> rounded_diff(acc_t<T> a, acc_t<T> b) {
  return to_acc(from_acc<T>(a - b));
}

// ---------------------------------------------------------------------------------------
// temporal_diff_pool forward

struct TdpShape {
  int64_t B, F, c, H, W, k, Ho, Wo;
  __host__ __device__ int64_t cin() const { return F * c; }
  __host__ __device__ int64_t cout() const { return (F - 1) * c; }
};

// Contiguous, k = 2, W % V == 0: rows 2*oh and 2*oh+1, columns [V*wv, V*wv + V) of one
// channel, through all frames; writes V/2 outputs of every output frame.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    tdp_forward_rows_kernel(const T* __restrict__ x, T* __restrict__ out, TdpShape s) {
  using A = acc_t<T>;
  constexpr int P = V / 2;
  const int64_t wvs = s.W / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.c * s.Ho * wvs) {
    const int64_t wv = item % wvs;
    int64_t r = item / wvs;
    const int64_t oh = r % s.Ho;
    r /= s.Ho;
    const int64_t ci = r % s.c;
    const int64_t b = r / s.c;
    const int64_t plane = s.H * s.W, oplane = s.Ho * s.Wo;
    const T* src = x + (b * s.F * s.c + ci) * plane + 2 * oh * s.W + wv * V;
    T* dst = out + (b * (s.F - 1) * s.c + ci) * oplane + oh * s.Wo + wv * P;
    A prev0[V], prev1[V];
    load_pack<V>(src, prev0);
    load_pack<V>(src + s.W, prev1);
    for (int64_t f = 1; f < s.F; ++f) {
      A cur0[V], cur1[V], o[P];
      load_pack<V>(src + f * s.c * plane, cur0);
      load_pack<V>(src + f * s.c * plane + s.W, cur1);
#pragma unroll
      for (int i = 0; i < P; ++i) {
        A sum = rounded_diff<T>(cur0[2 * i], prev0[2 * i]);
        sum += rounded_diff<T>(cur0[2 * i + 1], prev0[2 * i + 1]);
        sum += rounded_diff<T>(cur1[2 * i], prev1[2 * i]);
        sum += rounded_diff<T>(cur1[2 * i + 1], prev1[2 * i + 1]);
        o[i] = div_exact(sum, A(4));
      }
      store_pack<P>(dst + (f - 1) * s.c * oplane, o);
      copy(prev0, cur0);
      copy(prev1, cur1);
    }
  }
}

// Any layout and kernel: one output element (V consecutive channels in channels_last) per
// item; output channel j reads input channels j + c and j.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    tdp_forward_generic_kernel(const T* __restrict__ x, T* __restrict__ out, TdpShape s,
                               bool channels_last) {
  using A = acc_t<T>;
  const Strides in = strides_of(s.cin(), s.H, s.W, channels_last);
  const Strides os = strides_of(s.cout(), s.Ho, s.Wo, channels_last);
  const int64_t jvs = s.cout() / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * jvs * s.Ho * s.Wo) {
    int64_t b, jv, oh, ow;
    if (channels_last) {  // channel fastest: consecutive threads read consecutive channels
      jv = item % jvs;
      int64_t r = item / jvs;
      ow = r % s.Wo;
      r /= s.Wo;
      oh = r % s.Ho;
      b = r / s.Ho;
    } else {  // column fastest
      ow = item % s.Wo;
      int64_t r = item / s.Wo;
      oh = r % s.Ho;
      r /= s.Ho;
      jv = r % jvs;
      b = r / jvs;
    }
    const int64_t j = jv * V;
    const T* lo = x + b * in.batch + j * in.channel;
    const T* hi = lo + s.c * in.channel;
    A sum[V];
    fill(sum, A(0));
    for (int64_t i = 0; i < s.k; ++i) {
      for (int64_t jj = 0; jj < s.k; ++jj) {
        const int64_t pix = ((oh * s.k + i) * s.W + ow * s.k + jj) * in.pixel;
        A h[V], l[V];
        load_pack<V>(hi + pix, h);
        load_pack<V>(lo + pix, l);
#pragma unroll
        for (int v = 0; v < V; ++v) sum[v] += rounded_diff<T>(h[v], l[v]);
      }
    }
    A o[V];
    const A kk = static_cast<A>(s.k * s.k);
#pragma unroll
    for (int v = 0; v < V; ++v) o[v] = div_exact(sum[v], kk);
    store_pack<V>(out + b * os.batch + j * os.channel + (oh * s.Wo + ow) * os.pixel, o);
  }
}

// ---------------------------------------------------------------------------------------
// temporal_diff_pool backward: grad_x[f] = G[f-1] - G[f] inside the pooled area, G[f] =
// grad_out[f] / k^2 for output frames 0 <= f < F-1, and zero outside the pooled area.

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    tdp_backward_rows_kernel(const T* __restrict__ g, T* __restrict__ gx, TdpShape s) {
  using A = acc_t<T>;
  constexpr int P = V / 2;
  const int64_t wvs = s.W / V;
  TDN_GRID_STRIDE_LOOP(item, s.B * s.c * s.H * wvs) {
    const int64_t wv = item % wvs;
    int64_t r = item / wvs;
    const int64_t h = r % s.H;
    r /= s.H;
    const int64_t ci = r % s.c;
    const int64_t b = r / s.c;
    const int64_t plane = s.H * s.W, oplane = s.Ho * s.Wo;
    T* dst = gx + (b * s.F * s.c + ci) * plane + h * s.W + wv * V;
    const bool pooled_row = h < 2 * s.Ho;
    const T* src = g + (b * (s.F - 1) * s.c + ci) * oplane + (h / 2) * s.Wo + wv * P;
    A prev[P];
    fill(prev, A(0));
    for (int64_t f = 0; f < s.F; ++f) {
      A cur[P], o[V];
      if (pooled_row && f + 1 < s.F) {
        load_pack<P>(src + f * s.c * oplane, cur);
#pragma unroll
        for (int i = 0; i < P; ++i) cur[i] = div_exact(cur[i], A(4));
      } else {
        fill(cur, A(0));
      }
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = prev[i / 2] - cur[i / 2];
      store_pack<V>(dst + f * s.c * plane, o);
      copy(prev, cur);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    tdp_backward_generic_kernel(const T* __restrict__ g, T* __restrict__ gx, TdpShape s,
                                bool channels_last) {
  using A = acc_t<T>;
  const Strides in = strides_of(s.cin(), s.H, s.W, channels_last);
  const Strides os = strides_of(s.cout(), s.Ho, s.Wo, channels_last);
  const int64_t jvs = s.cin() / V;
  const A kk = static_cast<A>(s.k * s.k);
  TDN_GRID_STRIDE_LOOP(item, s.B * jvs * s.H * s.W) {
    int64_t b, jv, h, w;
    if (channels_last) {
      jv = item % jvs;
      int64_t r = item / jvs;
      w = r % s.W;
      r /= s.W;
      h = r % s.H;
      b = r / s.H;
    } else {
      w = item % s.W;
      int64_t r = item / s.W;
      h = r % s.H;
      r /= s.H;
      jv = r % jvs;
      b = r / jvs;
    }
    const int64_t j = jv * V;  // lanes j..j+V-1 share validity: c % V == 0
    A o[V];
    fill(o, A(0));
    if (h < s.Ho * s.k && w < s.Wo * s.k) {
      const T* src = g + b * os.batch + ((h / s.k) * s.Wo + w / s.k) * os.pixel;
      if (j >= s.c) {  // fed output channel j - c with a plus sign
        A v[V];
        load_pack<V>(src + (j - s.c) * os.channel, v);
#pragma unroll
        for (int l = 0; l < V; ++l) o[l] = div_exact(v[l], kk);
      }
      if (j < s.cout()) {  // fed output channel j with a minus sign
        A v[V];
        load_pack<V>(src + j * os.channel, v);
#pragma unroll
        for (int l = 0; l < V; ++l) o[l] -= div_exact(v[l], kk);
      }
    }
    store_pack<V>(gx + b * in.batch + j * in.channel + (h * s.W + w) * in.pixel, o);
  }
}

// ---------------------------------------------------------------------------------------
// cross_segment_diff: tiles

struct CsdShape {
  int64_t videos, T, C, H, W, Ho, Wo;
  bool channels_last;
  __host__ __device__ int64_t frame() const { return C * H * W; }
  __host__ __device__ int64_t pooled_frame() const { return C * Ho * Wo; }
  __host__ __device__ int64_t half_rows() const { return (H + 1) / 2; }
  __host__ __device__ int64_t half_cols() const { return (W + 1) / 2; }
};

// Rows tile (contiguous, W % V == 0): rows 2*oh2 and 2*oh2+1 (when it exists) x V columns of
// one channel. Slot s = row*V + col; pooled window i covers columns 2i, 2i+1 of both rows.
template <int V>
struct RowsTile {
  static constexpr int kSlots = 2 * V;
  static constexpr int kPooled = V / 2;
  int64_t base, pooled_base, W;
  bool row1, pooled;

  __device__ __forceinline__ RowsTile(int64_t item, const CsdShape& s) : W(s.W) {
    const int64_t wvs = s.W / V;
    const int64_t wv = item % wvs;
    int64_t r = item / wvs;
    const int64_t oh2 = r % s.half_rows();
    const int64_t ci = r / s.half_rows();
    base = ci * s.H * s.W + 2 * oh2 * s.W + wv * V;
    pooled_base = ci * s.Ho * s.Wo + oh2 * s.Wo + wv * kPooled;
    row1 = 2 * oh2 + 1 < s.H;
    pooled = oh2 < s.Ho;
  }
  static __host__ __device__ int64_t items_per_frame(const CsdShape& s) {
    return s.C * s.half_rows() * (s.W / V);
  }
  template <typename T>
  __device__ __forceinline__ void load(const T* p, acc_t<T> (&v)[kSlots]) const {
    acc_t<T> r0[V], r1[V];
    load_pack<V>(p + base, r0);
    if (row1) {
      load_pack<V>(p + base + W, r1);
    } else {
      fill(r1, acc_t<T>(0));
    }
#pragma unroll
    for (int l = 0; l < V; ++l) {
      v[l] = r0[l];
      v[V + l] = r1[l];
    }
  }
  template <typename T>
  __device__ __forceinline__ void store(T* p, const acc_t<T> (&v)[kSlots]) const {
    acc_t<T> r[V];
#pragma unroll
    for (int l = 0; l < V; ++l) r[l] = v[l];
    store_pack<V>(p + base, r);
    if (row1) {
#pragma unroll
      for (int l = 0; l < V; ++l) r[l] = v[V + l];
      store_pack<V>(p + base + W, r);
    }
  }
  // Slots of pooled window i, in the window's row-major order.
  static __device__ __forceinline__ int window_slot(int i, int n) {
    return (n / 2) * V + 2 * i + (n % 2);
  }
  static __device__ __forceinline__ int window_of(int slot) { return (slot % V) / 2; }
  template <typename T>
  __device__ __forceinline__ void load_pooled(const T* p, acc_t<T> (&v)[kPooled]) const {
    load_pack<kPooled>(p + pooled_base, v);
  }
  template <typename T>
  __device__ __forceinline__ void store_pooled(T* p, const acc_t<T> (&v)[kPooled]) const {
    store_pack<kPooled>(p + pooled_base, v);
  }
};

// Window tile (any layout): the 2x2 pixels (2*oh2 + a, 2*ow2 + b) that exist, V lanes each
// (V consecutive channels; V > 1 only in channels_last). Slot s = pixel*V + lane, pixels in
// row-major order; one pooled window per lane.
template <int V>
struct WindowTile {
  static constexpr int kSlots = 4 * V;
  static constexpr int kPooled = V;
  int64_t base, pooled_base, pixel_stride, row_stride;
  bool has[4];
  bool pooled;

  __device__ __forceinline__ WindowTile(int64_t item, const CsdShape& s) {
    const int64_t hr = s.half_rows(), hc = s.half_cols();
    int64_t ci, oh2, ow2;
    if (s.channels_last) {
      const int64_t cvs = s.C / V;
      ci = (item % cvs) * V;
      const int64_t r = item / cvs;
      ow2 = r % hc;
      oh2 = r / hc;
      pixel_stride = s.C;
      base = (2 * oh2 * s.W + 2 * ow2) * s.C + ci;
      pooled_base = (oh2 * s.Wo + ow2) * s.C + ci;
    } else {
      ow2 = item % hc;
      const int64_t r = item / hc;
      oh2 = r % hr;
      ci = r / hr;
      pixel_stride = 1;
      base = ci * s.H * s.W + 2 * oh2 * s.W + 2 * ow2;
      pooled_base = ci * s.Ho * s.Wo + oh2 * s.Wo + ow2;
    }
    row_stride = s.W * pixel_stride;
    const bool r1 = 2 * oh2 + 1 < s.H, c1 = 2 * ow2 + 1 < s.W;
    has[0] = true;
    has[1] = c1;
    has[2] = r1;
    has[3] = r1 && c1;
    pooled = oh2 < s.Ho && ow2 < s.Wo;
  }
  static __host__ __device__ int64_t items_per_frame(const CsdShape& s) {
    return s.half_rows() * s.half_cols() * s.C / V;
  }
  __device__ __forceinline__ int64_t pixel_offset(int q) const {
    return base + (q / 2) * row_stride + (q % 2) * pixel_stride;
  }
  template <typename T>
  __device__ __forceinline__ void load(const T* p, acc_t<T> (&v)[kSlots]) const {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      acc_t<T> px[V];
      if (has[q]) {
        load_pack<V>(p + pixel_offset(q), px);
      } else {
        fill(px, acc_t<T>(0));
      }
#pragma unroll
      for (int l = 0; l < V; ++l) v[q * V + l] = px[l];
    }
  }
  template <typename T>
  __device__ __forceinline__ void store(T* p, const acc_t<T> (&v)[kSlots]) const {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (!has[q]) continue;
      acc_t<T> px[V];
#pragma unroll
      for (int l = 0; l < V; ++l) px[l] = v[q * V + l];
      store_pack<V>(p + pixel_offset(q), px);
    }
  }
  static __device__ __forceinline__ int window_slot(int i, int n) { return n * V + i; }
  static __device__ __forceinline__ int window_of(int slot) { return slot % V; }
  template <typename T>
  __device__ __forceinline__ void load_pooled(const T* p, acc_t<T> (&v)[kPooled]) const {
    load_pack<V>(p + pooled_base, v);
  }
  template <typename T>
  __device__ __forceinline__ void store_pooled(T* p, const acc_t<T> (&v)[kPooled]) const {
    store_pack<V>(p + pooled_base, v);
  }
};

// ---------------------------------------------------------------------------------------
// cross_segment_diff forward: diff_fwd[t] = aligned[t+1] - feat[t] (0 at t = T-1),
// diff_bwd[t] = aligned[t-1] - feat[t] (0 at t = 0), pooled = avgpool2 of each.

template <typename T, typename Tile>
__device__ __forceinline__ void store_diff_and_pool(const Tile& tile, const acc_t<T> (&d)[Tile::kSlots],
                                                    T* diff, T* pooled) {
  using A = acc_t<T>;
  tile.store(diff, d);
  if (!tile.pooled) return;
  A o[Tile::kPooled];
#pragma unroll
  for (int i = 0; i < Tile::kPooled; ++i) {
    // Pool the differences as stored (rounded to T), like the reference pools its tensor.
    A sum = to_acc(from_acc<T>(d[Tile::window_slot(i, 0)]));
#pragma unroll
    for (int n = 1; n < 4; ++n) sum += to_acc(from_acc<T>(d[Tile::window_slot(i, n)]));
    o[i] = div_exact(sum, A(4));
  }
  tile.store_pooled(pooled, o);
}

template <typename T, typename Tile>
__global__ void __launch_bounds__(kThreads, 2)
    csd_forward_kernel(const T* __restrict__ feat, const T* __restrict__ aligned,
                       T* __restrict__ diff_fwd, T* __restrict__ diff_bwd,
                       T* __restrict__ pooled_fwd, T* __restrict__ pooled_bwd, CsdShape s) {
  using A = acc_t<T>;
  constexpr int S = Tile::kSlots;
  const int64_t per_frame = Tile::items_per_frame(s);
  TDN_GRID_STRIDE_LOOP(item, s.videos * per_frame) {
    const int64_t video = item / per_frame;
    const Tile tile(item - video * per_frame, s);
    const int64_t frame0 = video * s.T;
    A a_prev[S], a_cur[S], a_next[S];
    fill(a_prev, A(0));
    tile.load(aligned + frame0 * s.frame(), a_cur);
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t fo = (frame0 + t) * s.frame(), po = (frame0 + t) * s.pooled_frame();
      A f[S], d[S];
      tile.load(feat + fo, f);
      const bool has_next = t + 1 < s.T;
      if (has_next) {
        tile.load(aligned + fo + s.frame(), a_next);
      } else {
        fill(a_next, A(0));
      }
#pragma unroll
      for (int i = 0; i < S; ++i) d[i] = has_next ? a_next[i] - f[i] : A(0);
      store_diff_and_pool<T>(tile, d, diff_fwd + fo, pooled_fwd + po);
#pragma unroll
      for (int i = 0; i < S; ++i) d[i] = t >= 1 ? a_prev[i] - f[i] : A(0);
      store_diff_and_pool<T>(tile, d, diff_bwd + fo, pooled_bwd + po);
      copy(a_prev, a_cur);
      copy(a_cur, a_next);
    }
  }
}

// ---------------------------------------------------------------------------------------
// cross_segment_diff backward. With G_d = grad_diff[d] + grad_pooled[d]/4 (inside the pooled
// area): grad_feat[t] = -G_fwd[t] (t < T-1) - G_bwd[t] (t >= 1);
// grad_aligned[t] = G_fwd[t-1] (t >= 1) + G_bwd[t+1] (t < T-1).

template <typename T, typename Tile>
__device__ __forceinline__ void load_total_grad(const Tile& tile, const T* gd, const T* gp,
                                                acc_t<T> (&G)[Tile::kSlots]) {
  using A = acc_t<T>;
  tile.load(gd, G);
  if (!tile.pooled) return;
  A p[Tile::kPooled];
  tile.load_pooled(gp, p);
#pragma unroll
  for (int i = 0; i < Tile::kSlots; ++i) G[i] += p[Tile::window_of(i)] / A(4);
}

template <typename T, typename Tile>
__global__ void __launch_bounds__(kThreads, 2)
    csd_backward_kernel(const T* __restrict__ gd_fwd, const T* __restrict__ gd_bwd,
                        const T* __restrict__ gp_fwd, const T* __restrict__ gp_bwd,
                        T* __restrict__ g_feat, T* __restrict__ g_aligned, CsdShape s) {
  using A = acc_t<T>;
  constexpr int S = Tile::kSlots;
  const int64_t per_frame = Tile::items_per_frame(s);
  TDN_GRID_STRIDE_LOOP(item, s.videos * per_frame) {
    const int64_t video = item / per_frame;
    const Tile tile(item - video * per_frame, s);
    const int64_t frame0 = video * s.T;
    // Rolling: G_fwd[t-1] and G_bwd[t] come from the previous step.
    A gf_prev[S], gb_cur[S];
    fill(gf_prev, A(0));
    fill(gb_cur, A(0));  // G_bwd[0] feeds nothing (diff_bwd[0] is the zero pad)
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t fo = (frame0 + t) * s.frame(), po = (frame0 + t) * s.pooled_frame();
      const bool has_next = t + 1 < s.T;
      A gf_cur[S], gb_next[S], feat[S], alig[S];
      if (has_next) {
        load_total_grad<T>(tile, gd_fwd + fo, gp_fwd + po, gf_cur);
        load_total_grad<T>(tile, gd_bwd + fo + s.frame(), gp_bwd + po + s.pooled_frame(),
                           gb_next);
      } else {
        fill(gf_cur, A(0));
        fill(gb_next, A(0));
      }
#pragma unroll
      for (int i = 0; i < S; ++i) {
        A gfe = A(0), gal = A(0);
        if (has_next) gfe -= gf_cur[i];
        if (t >= 1) gfe -= gb_cur[i];
        if (t >= 1) gal += gf_prev[i];
        if (has_next) gal += gb_next[i];
        feat[i] = gfe;
        alig[i] = gal;
      }
      tile.store(g_feat + fo, feat);
      tile.store(g_aligned + fo, alig);
      copy(gf_prev, gf_cur);
      copy(gb_cur, gb_next);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

cudaError_t temporal_diff_pool_forward(const void* x, void* out, DType dtype, int64_t batch,
                                       int64_t frames, int64_t channels_per_frame,
                                       int64_t height, int64_t width, int64_t kernel_size,
                                       bool channels_last, cudaStream_t stream) {
  if (frames < 2 || kernel_size < 1) return cudaErrorInvalidValue;
  const TdpShape s{batch, frames, channels_per_frame, height, width, kernel_size,
                   height / kernel_size, width / kernel_size};
  if (s.B * s.cout() * s.Ho * s.Wo <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec16<T>;
    const auto* px = static_cast<const T*>(x);
    auto* po = static_cast<T*>(out);
    if (!channels_last && s.k == 2 && s.W % V == 0 && aligned_to(16, x, out)) {
      tdp_forward_rows_kernel<T, V>
          <<<grid_for(s.B * s.c * s.Ho * (s.W / V)), kThreads, 0, stream>>>(px, po, s);
    } else if (channels_last && s.c % V == 0 && aligned_to(16, x, out)) {
      tdp_forward_generic_kernel<T, V>
          <<<grid_for(s.B * s.cout() / V * s.Ho * s.Wo), kThreads, 0, stream>>>(px, po, s, true);
    } else {
      tdp_forward_generic_kernel<T, 1><<<grid_for(s.B * s.cout() * s.Ho * s.Wo), kThreads, 0,
                                         stream>>>(px, po, s, channels_last);
    }
    return cudaGetLastError();
  });
}

cudaError_t temporal_diff_pool_backward(const void* grad_out, void* grad_x, DType dtype,
                                        int64_t batch, int64_t frames,
                                        int64_t channels_per_frame, int64_t height,
                                        int64_t width, int64_t kernel_size, bool channels_last,
                                        cudaStream_t stream) {
  if (frames < 2 || kernel_size < 1) return cudaErrorInvalidValue;
  const TdpShape s{batch, frames, channels_per_frame, height, width, kernel_size,
                   height / kernel_size, width / kernel_size};
  if (s.B * s.cin() * s.H * s.W <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec16<T>;
    const auto* pg = static_cast<const T*>(grad_out);
    auto* px = static_cast<T*>(grad_x);
    if (!channels_last && s.k == 2 && s.W % V == 0 && aligned_to(16, grad_out, grad_x)) {
      tdp_backward_rows_kernel<T, V>
          <<<grid_for(s.B * s.c * s.H * (s.W / V)), kThreads, 0, stream>>>(pg, px, s);
    } else if (channels_last && s.c % V == 0 && aligned_to(16, grad_out, grad_x)) {
      tdp_backward_generic_kernel<T, V>
          <<<grid_for(s.B * s.cin() / V * s.H * s.W), kThreads, 0, stream>>>(pg, px, s, true);
    } else {
      tdp_backward_generic_kernel<T, 1><<<grid_for(s.B * s.cin() * s.H * s.W), kThreads, 0,
                                          stream>>>(pg, px, s, channels_last);
    }
    return cudaGetLastError();
  });
}

namespace {

// Lanes of a cross_segment_diff thread: 16 bytes, but at most 4 elements. A thread keeps four
// tiles of 4*V values alive (aligned t-1, t, t+1 and feat); with V = 8 half-precision lanes
// that is ~180 registers and one block per SM, so halves move 8 bytes per access instead.
template <typename T>
constexpr int csd_vec() {
  return kVec16<T> < 4 ? kVec16<T> : 4;
}

// Runs launch(TileTag<Tile>) with the tile a cross_segment_diff call uses: rows of V >= 2 columns
// (contiguous, W % V == 0), windows of V channels (channels_last), else scalar windows; V is
// the widest vector the row length and the pointers allow.
template <typename Tile>
struct TileTag {
  using type = Tile;
};

template <typename T, typename Launch, typename... P>
cudaError_t with_csd_tile(const CsdShape& s, Launch&& launch, P... pointers) {
  constexpr int VMax = csd_vec<T>();
  const int v = pick_vec<T, VMax>(s.channels_last ? s.C : s.W, pointers...);
  return with_vec<VMax>(v, [&](auto width) {
    constexpr int V = decltype(width)::value;
    if constexpr (V >= 2) {
      if (!s.channels_last) return launch(TileTag<RowsTile<V>>{});
    }
    return launch(TileTag<WindowTile<V>>{});
  });
}

}  // namespace

cudaError_t cross_segment_diff_forward(const void* feat, const void* aligned, void* diff_fwd,
                                       void* diff_bwd, void* pooled_fwd, void* pooled_bwd,
                                       DType dtype, int64_t batch, int64_t channels,
                                       int64_t height, int64_t width, int64_t num_segments,
                                       bool channels_last, cudaStream_t stream) {
  if (num_segments < 1 || batch % num_segments != 0) return cudaErrorInvalidValue;
  const CsdShape s{batch / num_segments, num_segments, channels, height, width,
                   height / 2, width / 2, channels_last};
  if (batch * s.frame() <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* pf = static_cast<const T*>(feat);
    const auto* pa = static_cast<const T*>(aligned);
    auto* d0 = static_cast<T*>(diff_fwd);
    auto* d1 = static_cast<T*>(diff_bwd);
    auto* p0 = static_cast<T*>(pooled_fwd);
    auto* p1 = static_cast<T*>(pooled_bwd);
    return with_csd_tile<T>(
        s,
        [&](auto tag) {
          using Tile = typename decltype(tag)::type;
          csd_forward_kernel<T, Tile>
              <<<grid_for(s.videos * Tile::items_per_frame(s)), kThreads, 0, stream>>>(
                  pf, pa, d0, d1, p0, p1, s);
          return cudaGetLastError();
        },
        feat, aligned, diff_fwd, diff_bwd, pooled_fwd, pooled_bwd);
  });
}

cudaError_t cross_segment_diff_backward(const void* grad_diff_fwd, const void* grad_diff_bwd,
                                        const void* grad_pooled_fwd,
                                        const void* grad_pooled_bwd, void* grad_feat,
                                        void* grad_aligned, DType dtype, int64_t batch,
                                        int64_t channels, int64_t height, int64_t width,
                                        int64_t num_segments, bool channels_last,
                                        cudaStream_t stream) {
  if (num_segments < 1 || batch % num_segments != 0) return cudaErrorInvalidValue;
  const CsdShape s{batch / num_segments, num_segments, channels, height, width,
                   height / 2, width / 2, channels_last};
  if (batch * s.frame() <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* g0 = static_cast<const T*>(grad_diff_fwd);
    const auto* g1 = static_cast<const T*>(grad_diff_bwd);
    const auto* q0 = static_cast<const T*>(grad_pooled_fwd);
    const auto* q1 = static_cast<const T*>(grad_pooled_bwd);
    auto* fe = static_cast<T*>(grad_feat);
    auto* al = static_cast<T*>(grad_aligned);
    return with_csd_tile<T>(
        s,
        [&](auto tag) {
          using Tile = typename decltype(tag)::type;
          csd_backward_kernel<T, Tile>
              <<<grid_for(s.videos * Tile::items_per_frame(s)), kThreads, 0, stream>>>(
                  g0, g1, q0, q1, fe, al, s);
          return cudaGetLastError();
        },
        grad_diff_fwd, grad_diff_bwd, grad_pooled_fwd, grad_pooled_bwd, grad_feat, grad_aligned);
  });
}

}  // namespace cuda
}  // namespace tdn
