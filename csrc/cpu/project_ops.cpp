// CPU kernels of project_excite_shift: the whole tail of an L-TDM (docs/math.md §4-§6) in one
// operator, forward and backward.
//
//   y_d = scale[d] * (weight @ mixed[d]) + bias[d]        (1x1 projection c -> C, affine)
//   out = temporal_shift_conv(x * (0.5 + 0.5*sigmoid(y_0) + 0.5*sigmoid(y_1)), shift_weight)
//
// Neither y_d nor the excited tensor is ever written to memory: both are recomputed tile by
// tile from `mixed`, which has C/16 channels. A tile is a run of pixels of one frame with all
// C channels (the backward needs every channel of a pixel to form the gradient of `mixed`
// there). Contiguous tiles hold [channel][pixel], channels_last tiles [pixel][channel]; the
// elementwise steps see a tile as one flat vector either way, with the per-channel
// parameters expanded to the same shape. A task walks one tile position of one video through
// its T frames with a rolling window, like excite_shift.
//
// The tile products (z_d = W m_d; in the backward dW += u_d m_d^T and dm_d = W^T u_d with
// u_d = scale_d * dy_d) go to MKL's gemm when torch carries MKL (mkl_gemm.h): at layer-3 shapes
// that makes the backward 3-4x faster than the fallback, vectorised loops that write every
// product as an axpy along the contiguous dimension (no reassociated sums).
//
// Reductions (weight, scale, bias and shift_weight gradients). Each task accumulates its own
// per-element sums over all frames, folds them into one partial per parameter element, and a
// second pass adds the partials of every element in task order. Tasks depend only on the
// shape, so the gradients are bitwise the same for any number of threads.

#include "cpu_kernels.h"
#include "mkl_gemm.h"

namespace tdn {
namespace cpu {
namespace {

// Tile elements a task works on (all C channels of pixels_per_tile pixels): about 32 rows of
// tile buffers stay within a core's L2.
constexpr int64_t kTileElements = 4096;
// ... but at least this many pixels: with C = 512 (layer 4) 4096 elements would be 8-pixel
// tiles, whose row copies and tile products are too short to run at speed.
constexpr int64_t kMinTilePixels = 32;

// ---------------------------------------------------------------------------------------
// Vectorised rows and tile products (acc_t arithmetic)

// z[k][p] = sum_j w[k][j] * m[j][p] for a contiguous tile of `np` pixels.
template <typename A>
TDN_VECTORIZE void project_channel_rows(const A* __restrict__ w, const A* __restrict__ m,
                                        A* __restrict__ z, int64_t C, int64_t c, int64_t np) {
  for (int64_t k = 0; k < C; ++k) {
    A* __restrict__ row = z + k * np;
    const A* __restrict__ wk = w + k * c;
    for (int64_t p = 0; p < np; ++p) row[p] = wk[0] * m[p];
    for (int64_t j = 1; j < c; ++j) {
      const A wkj = wk[j];
      const A* __restrict__ mj = m + j * np;
      for (int64_t p = 0; p < np; ++p) row[p] += wkj * mj[p];
    }
  }
}

// z[p][k] = sum_j m[p][j] * wt[j][k] for a channels_last tile (wt = weight transposed, c x C).
template <typename A>
TDN_VECTORIZE void project_pixel_rows(const A* __restrict__ wt, const A* __restrict__ m,
                                      A* __restrict__ z, int64_t C, int64_t c, int64_t np) {
  for (int64_t p = 0; p < np; ++p) {
    A* __restrict__ row = z + p * C;
    const A* __restrict__ mp = m + p * c;
    const A m0 = mp[0];
    for (int64_t k = 0; k < C; ++k) row[k] = m0 * wt[k];
    for (int64_t j = 1; j < c; ++j) {
      const A mpj = mp[j];
      const A* __restrict__ wj = wt + j * C;
      for (int64_t k = 0; k < C; ++k) row[k] += mpj * wj[k];
    }
  }
}

// Gradients through the projection of one tile: dw[k][:] += u(k,p) * m[p][:] and
// dm[p][:] += u(k,p) * w[k][:], with m and dm pixel-major (np x c). `u_stride_k`,
// `u_stride_p` locate u(k,p) in the tile (contiguous: np, 1; channels_last: 1, C).
template <typename A>
TDN_VECTORIZE void project_backward_tile(const A* __restrict__ u, int64_t u_stride_k,
                                         int64_t u_stride_p, const A* __restrict__ w,
                                         const A* __restrict__ m, A* __restrict__ dw,
                                         A* __restrict__ dm, int64_t C, int64_t c, int64_t np) {
  for (int64_t p = 0; p < np; ++p) {
    A* __restrict__ dmp = dm + p * c;
    const A* __restrict__ mp = m + p * c;
    for (int64_t j = 0; j < c; ++j) dmp[j] = A(0);
    for (int64_t k = 0; k < C; ++k) {
      const A v = u[k * u_stride_k + p * u_stride_p];
      A* __restrict__ dwk = dw + k * c;
      const A* __restrict__ wk = w + k * c;
      for (int64_t j = 0; j < c; ++j) {
        dwk[j] += v * mp[j];
        dmp[j] += v * wk[j];
      }
    }
  }
}

// e = x * gate with y_d = s_d*z_d + b_d; kKeep also stores the two sigmoids.
template <typename A, bool kKeep>
TDN_VECTORIZE void excite_tile(const A* __restrict__ x, const A* __restrict__ z0,
                               const A* __restrict__ z1, const A* __restrict__ s0,
                               const A* __restrict__ b0, const A* __restrict__ s1,
                               const A* __restrict__ b1, A* __restrict__ e, A* __restrict__ sig0,
                               A* __restrict__ sig1, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A f = sigmoid_acc(s0[i] * z0[i] + b0[i]);
    const A b = sigmoid_acc(s1[i] * z1[i] + b1[i]);
    if constexpr (kKeep) {
      sig0[i] = f;
      sig1[i] = b;
    }
    e[i] = x[i] * (A(0.5) + A(0.5) * f + A(0.5) * b);
  }
}

template <typename A>
TDN_VECTORIZE void shift_tile(const A* __restrict__ w0, const A* __restrict__ w1,
                              const A* __restrict__ w2, const A* __restrict__ prev,
                              const A* __restrict__ cur, const A* __restrict__ next,
                              A* __restrict__ out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = w0[i] * prev[i] + w1[i] * cur[i] + w2[i] * next[i];
}

// One frame of the backward through the shift: the gradient ge of the shift's input and the
// shift weight's accumulators. out_t = w0 e_{t-1} + w1 e_t + w2 e_{t+1}, so frame t's input
// gathers g_{t+1}, g_t, g_{t-1}, and the taps pair g_t with e_{t-1}, e_t and g_{t-1} with e_t.
// A tap whose frame lies outside the video is left out of ge rather than multiplied by the zero
// padding: the reference never forms that product, and an infinite tap would turn it into NaN
// (docs/math.md §6, non-finite values).
template <typename A>
TDN_VECTORIZE void shift_backward_tile(const A* __restrict__ w0, const A* __restrict__ w1,
                                       const A* __restrict__ w2, const A* __restrict__ g_prev,
                                       const A* __restrict__ g_cur, const A* __restrict__ g_next,
                                       const A* __restrict__ e_prev, const A* __restrict__ e_cur,
                                       A* __restrict__ ge, A* __restrict__ acc0,
                                       A* __restrict__ acc1, A* __restrict__ acc2, int64_t n,
                                       bool has_prev, bool has_next) {
  for (int64_t i = 0; i < n; ++i) {
    ge[i] = (has_next ? w0[i] * g_next[i] : A(0)) + w1[i] * g_cur[i] +
            (has_prev ? w2[i] * g_prev[i] : A(0));
    acc0[i] += g_cur[i] * e_prev[i];
    acc1[i] += g_cur[i] * e_cur[i];
    acc2[i] += g_prev[i] * e_cur[i];
  }
}

// The rest of the frame: dx = ge * gate and, per direction, dy = 0.5*ge*x*s*(1-s) into the
// bias and scale accumulators, and u = scale * dy (the projection's upstream gradient). `ge`
// becomes dx in place.
template <typename A>
TDN_VECTORIZE void excite_backward_tile(A* __restrict__ ge, const A* __restrict__ x,
                                        const A* __restrict__ sig0, const A* __restrict__ sig1,
                                        A* __restrict__ dy0, A* __restrict__ dy1, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A a = sig0[i], b = sig1[i];
    const A gx = A(0.5) * ge[i] * x[i];
    dy0[i] = gx * a * (A(1) - a);
    dy1[i] = gx * b * (A(1) - b);
    ge[i] = ge[i] * (A(0.5) + A(0.5) * a + A(0.5) * b);
  }
}

template <typename A>
TDN_VECTORIZE void affine_backward_tile(A* __restrict__ dy, const A* __restrict__ z,
                                        const A* __restrict__ scale, A* __restrict__ acc_scale,
                                        A* __restrict__ acc_bias, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    acc_bias[i] += dy[i];
    acc_scale[i] += dy[i] * z[i];
    dy[i] = scale[i] * dy[i];
  }
}

// ---------------------------------------------------------------------------------------
// Geometry and tile movement

struct ProjectGeometry {
  int64_t videos, T, C, c, HW;
  int64_t frame, mixed_frame;  // elements per frame of x (C*HW) and of one direction of mixed
  int64_t mixed_direction;     // elements of one direction of mixed (NT*c*HW)
  bool channels_last;
  int64_t pixels_per_tile, tiles_per_frame;

  ProjectGeometry(const at::Tensor& x, int64_t c_in, int64_t num_segments, at::MemoryFormat fmt)
      : videos(x.size(0) / num_segments),
        T(num_segments),
        C(x.size(1)),
        c(c_in),
        HW(x.size(2) * x.size(3)),
        frame(x.size(1) * x.size(2) * x.size(3)),
        mixed_frame(c_in * x.size(2) * x.size(3)),
        mixed_direction(x.size(0) * c_in * x.size(2) * x.size(3)),
        channels_last(is_channels_last(fmt)) {
    pixels_per_tile = std::min<int64_t>(HW, std::max<int64_t>(kMinTilePixels, kTileElements / C));
    tiles_per_frame = (HW + pixels_per_tile - 1) / pixels_per_tile;
  }

  int64_t tasks() const { return videos * tiles_per_frame; }
  // Every tile buffer holds a tile of x (C channels) or of mixed (c channels): c > C is
  // unusual (TDN has c = C/16) but valid, and must not overflow the mixed tiles.
  int64_t capacity() const { return std::max(C, c) * pixels_per_tile; }

  // Pixels [p0, p0 + np) of tile `k`.
  void tile(int64_t k, int64_t& p0, int64_t& np) const {
    p0 = k * pixels_per_tile;
    np = std::min(pixels_per_tile, HW - p0);
  }
};

// Copies between a frame of a (.., ch, H, W) tensor and a packed tile of its pixels
// [p0, p0+np): contiguous frames give `ch` rows of np ([channel][pixel]); channels_last frames
// one run of np*ch ([pixel][channel]).
template <typename T, typename A>
void gather_tile(const T* frame, int64_t ch, int64_t HW, bool channels_last, int64_t p0,
                 int64_t np, A* tile) {
  if (channels_last) {
    const T* src = frame + p0 * ch;
    for (int64_t i = 0; i < np * ch; ++i) tile[i] = static_cast<A>(src[i]);
  } else {
    for (int64_t k = 0; k < ch; ++k) {
      const T* src = frame + k * HW + p0;
      A* dst = tile + k * np;
      for (int64_t p = 0; p < np; ++p) dst[p] = static_cast<A>(src[p]);
    }
  }
}

template <typename T, typename A>
void scatter_tile(const A* tile, int64_t ch, int64_t HW, bool channels_last, int64_t p0,
                  int64_t np, T* frame) {
  if (channels_last) {
    T* dst = frame + p0 * ch;
    for (int64_t i = 0; i < np * ch; ++i) dst[i] = static_cast<T>(tile[i]);
  } else {
    for (int64_t k = 0; k < ch; ++k) {
      const A* src = tile + k * np;
      T* dst = frame + k * HW + p0;
      for (int64_t p = 0; p < np; ++p) dst[p] = static_cast<T>(src[p]);
    }
  }
}

// A packed [channel][pixel] tile of `mixed` (ch x np) as [pixel][channel], and back.
template <typename A>
void transpose_tile(const A* src, int64_t rows, int64_t cols, A* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; ++q) dst[q * rows + r] = src[r * cols + q];
}

// Per-channel values v[k] laid out like a tile of np pixels.
template <typename A>
void expand_channels(const A* v, int64_t C, int64_t np, bool channels_last, A* tile) {
  if (channels_last) {
    for (int64_t p = 0; p < np; ++p) std::memcpy(tile + p * C, v, sizeof(A) * C);
  } else {
    for (int64_t k = 0; k < C; ++k) std::fill(tile + k * np, tile + (k + 1) * np, v[k]);
  }
}

// Adds the tile's per-element values of channel k into out[k * stride].
template <typename A>
void fold_channels(const A* tile, int64_t C, int64_t np, bool channels_last, A* out,
                   int64_t stride) {
  for (int64_t k = 0; k < C; ++k) {
    A s = 0;
    if (channels_last) {
      for (int64_t p = 0; p < np; ++p) s += tile[p * C + k];
    } else {
      for (int64_t p = 0; p < np; ++p) s += tile[k * np + p];
    }
    out[k * stride] += s;
  }
}

// Every buffer the BLAS calls see starts on a 64-byte boundary: an optimised gemm may take a
// different (differently rounded) path for other alignments, and the results must not depend
// on where the allocator put a buffer.
constexpr int64_t kAlign = 64;

template <typename A>
int64_t aligned_count(int64_t n) {
  const int64_t per_line = kAlign / static_cast<int64_t>(sizeof(A));
  return (n + per_line - 1) / per_line * per_line;
}

// `count` zeroed buffers of `capacity` elements each, every one 64-byte aligned.
template <typename A>
struct AlignedBuffers {
  std::vector<A> storage;
  A* base;
  int64_t cap;
  AlignedBuffers(int64_t count, int64_t capacity) : cap(aligned_count<A>(capacity)) {
    storage.assign(static_cast<size_t>(count * cap + kAlign / sizeof(A)), A(0));
    const auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
    base = storage.data() + ((kAlign - addr % kAlign) % kAlign) / sizeof(A);
  }
  A* operator[](int64_t i) { return base + i * cap; }
};

// The parameters in acc_t, with the per-channel ones ready to expand into tiles.
template <typename A>
struct Params {
  at::Tensor w, wt, scale, bias, taps;  // (C, c), (c, C), (2, C), (2, C), (3, C)
  Params(const at::Tensor& weight, const at::Tensor& scale_in, const at::Tensor& bias_in,
         const at::Tensor& shift_weight) {
    const auto type = c10::CppTypeToScalarType<A>::value;
    w = weight.to(type).contiguous();
    wt = w.t().contiguous();
    scale = scale_in.to(type).contiguous();
    bias = bias_in.to(type).contiguous();
    taps = shift_weight.reshape({-1, 3}).t().to(type).contiguous();
  }
};

// Expanded per-channel parameters of a tile of np pixels: shift taps 0-2, then scale and bias
// of each direction (s0, b0, s1, b1) in slots first..first+6 of `buf`.
template <typename A>
void expand_params(const Params<A>& prm, const ProjectGeometry& geo, int64_t np,
                   AlignedBuffers<A>& buf, int64_t first) {
  const A* taps = prm.taps.template const_data_ptr<A>();
  const A* scale = prm.scale.template const_data_ptr<A>();
  const A* bias = prm.bias.template const_data_ptr<A>();
  const int64_t C = geo.C;
  for (int j = 0; j < 3; ++j) {
    expand_channels(taps + j * C, C, np, geo.channels_last, buf[first + j]);
  }
  for (int d = 0; d < 2; ++d) {
    expand_channels(scale + d * C, C, np, geo.channels_last, buf[first + 3 + 2 * d]);
    expand_channels(bias + d * C, C, np, geo.channels_last, buf[first + 4 + 2 * d]);
  }
}

// Tasks per parallel chunk: enough work to amortise a chunk.
inline int64_t task_grain(const ProjectGeometry& geo) {
  return std::max<int64_t>(1, kGrain / (geo.capacity() * geo.T));
}

// The projection z_d of direction d for one tile; `m` holds the tile of mixed[d] as gathered
// (contiguous: [j][p], channels_last: [p][j]).
template <typename A>
void project_tile(const Params<A>& prm, const ProjectGeometry& geo, const A* m, int64_t np,
                  A* z) {
  if (const FortranGemm gemm = mkl_gemm<A>()) {
    // Row-major z = w m is column-major z^T = m^T w^T (contiguous), z^T = w m^T (channels_last).
    const A* w = prm.w.template const_data_ptr<A>();
    if (geo.channels_last) {
      blas_gemm(gemm, 'T', 'N', geo.C, np, geo.c, A(1), w, geo.c, m, geo.c, A(0), z, geo.C);
    } else {
      blas_gemm(gemm, 'N', 'N', np, geo.C, geo.c, A(1), m, np, w, geo.c, A(0), z, np);
    }
    return;
  }
  if (geo.channels_last) {
    project_pixel_rows(prm.wt.template const_data_ptr<A>(), m, z, geo.C, geo.c, np);
  } else {
    project_channel_rows(prm.w.template const_data_ptr<A>(), m, z, geo.C, geo.c, np);
  }
}

// `mixed` (2, B, c, H, W) with each half in `fmt`, as one dense buffer.
at::Tensor mixed_in_layout(const at::Tensor& mixed, at::MemoryFormat fmt) {
  if (is_channels_last(fmt)) return mixed.permute({0, 1, 3, 4, 2}).contiguous();
  return mixed.contiguous();
}

// ---------------------------------------------------------------------------------------
// Forward

at::Tensor project_excite_shift_cpu(const at::Tensor& x_in, const at::Tensor& mixed_in,
                                    const at::Tensor& weight, const at::Tensor& scale,
                                    const at::Tensor& bias, const at::Tensor& shift_weight,
                                    int64_t num_segments) {
  check_project_excite_shift(x_in, mixed_in, weight, scale, bias, shift_weight, num_segments);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  const auto mixed = mixed_in_layout(mixed_in, fmt);
  const ProjectGeometry geo(x, weight.size(1), num_segments, fmt);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pes_fwd", [&] {
    using A = acc_t<scalar_t>;
    const Params<A> prm(weight, scale, bias, shift_weight);
    const auto* px = x.const_data_ptr<scalar_t>();
    const auto* pm = mixed.const_data_ptr<scalar_t>();
    auto* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, geo.tasks(), task_grain(geo), [&](int64_t t0, int64_t t1) {
      // 0-6 parameters, 7 zeros, 8-10 excited frames, 11 x, 12-13 z_d, 14 output,
      // 15-16 tiles of mixed (small).
      const SequentialMkl sequential;
      AlignedBuffers<A> buf(17, geo.capacity());
      A* zeros = buf[7];
      A* frames[3] = {buf[8], buf[9], buf[10]};
      A *xt = buf[11], *z0 = buf[12], *z1 = buf[13], *ot = buf[14], *m0 = buf[15], *m1 = buf[16];
      for (int64_t task = t0; task < t1; ++task) {
        const int64_t video = task / geo.tiles_per_frame;
        int64_t p0, np;
        geo.tile(task % geo.tiles_per_frame, p0, np);
        const int64_t n = np * geo.C;
        expand_params(prm, geo, np, buf, 0);
        auto excite = [&](int64_t t, A* e) -> const A* {
          const int64_t f = video * geo.T + t;
          gather_tile(px + f * geo.frame, geo.C, geo.HW, geo.channels_last, p0, np, xt);
          gather_tile(pm + f * geo.mixed_frame, geo.c, geo.HW, geo.channels_last, p0, np, m0);
          gather_tile(pm + geo.mixed_direction + f * geo.mixed_frame, geo.c, geo.HW,
                      geo.channels_last, p0, np, m1);
          project_tile(prm, geo, m0, np, z0);
          project_tile(prm, geo, m1, np, z1);
          excite_tile<A, false>(xt, z0, z1, buf[3], buf[4], buf[5], buf[6], e, nullptr, nullptr,
                                n);
          return e;
        };
        const A* prev = zeros;
        const A* cur = excite(0, frames[0]);
        for (int64_t t = 0; t < geo.T; ++t) {
          const A* next = t + 1 < geo.T ? excite(t + 1, frames[(t + 1) % 3]) : zeros;
          shift_tile(buf[0], buf[1], buf[2], prev, cur, next, ot, n);
          scatter_tile(ot, geo.C, geo.HW, geo.channels_last, p0, np,
                       po + (video * geo.T + t) * geo.frame);
          prev = cur;
          cur = next;
        }
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// Backward

// Partial sums of one task, each task's block and its weight part 64-byte aligned (written by
// gemm): shift_weight (3, C) tap-major, scale (2, C), bias (2, C), weight (C, c).
struct PartialLayout {
  int64_t C, c, per_line;  // per_line: elements in 64 bytes
  int64_t aligned(int64_t n) const { return (n + per_line - 1) / per_line * per_line; }
  int64_t shift() const { return 0; }
  int64_t scale() const { return 3 * C; }
  int64_t bias() const { return 5 * C; }
  int64_t weight() const { return aligned(7 * C); }
  int64_t size() const { return aligned(weight() + C * c); }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
project_excite_shift_backward_cpu(const at::Tensor& g_in, const at::Tensor& x_in,
                                  const at::Tensor& mixed_in, const at::Tensor& weight,
                                  const at::Tensor& scale, const at::Tensor& bias,
                                  const at::Tensor& shift_weight, int64_t num_segments) {
  check_project_excite_shift(x_in, mixed_in, weight, scale, bias, shift_weight, num_segments, &g_in);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), g = g_in.contiguous(fmt);
  const auto mixed = mixed_in_layout(mixed_in, fmt);
  const int64_t C = x.size(1), c = weight.size(1);
  auto dx = at::empty(x.sizes(), x.options().memory_format(fmt));
  auto dmixed = empty_stacked(x, x.size(0), c, x.size(2), x.size(3), fmt);
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const PartialLayout lay{C, c, kAlign / (acc_type == at::kDouble ? 8 : 4)};
  at::Tensor total = at::zeros({lay.size()}, x.options().dtype(acc_type));
  if (x.numel() != 0) {
    // dmixed is written through a dense (2, B, c, H, W) or (2, B, H, W, c) buffer.
    auto dm_dense = is_channels_last(fmt) ? dmixed.permute({0, 1, 3, 4, 2}) : dmixed;
    const ProjectGeometry geo(x, c, num_segments, fmt);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pes_bwd", [&] {
      using A = acc_t<scalar_t>;
      const Params<A> prm(weight, scale, bias, shift_weight);
      const A* pw = prm.w.template const_data_ptr<A>();
      const auto* px = x.const_data_ptr<scalar_t>();
      const auto* pg = g.const_data_ptr<scalar_t>();
      const auto* pm = mixed.const_data_ptr<scalar_t>();
      auto* pdx = dx.mutable_data_ptr<scalar_t>();
      auto* pdm = dm_dense.mutable_data_ptr<scalar_t>();
      const int64_t tasks = geo.tasks();
      AlignedBuffers<A> partials(tasks, lay.size());
      A* partial = partials.base;
      at::parallel_for(0, tasks, task_grain(geo), [&](int64_t t0, int64_t t1) {
        // 0-6 parameters, 7 zeros, 8-10 gradient frames, 11-12 excited frames, 13 x,
        // 14-15 z_d, 16-17 sigmoids, 18-24 accumulators, 25 dx, 26-27 u_d,
        // 28-31 small tiles of mixed and their gradients (pixel-major), 32 gather scratch.
        const SequentialMkl sequential;
        AlignedBuffers<A> buf(33, geo.capacity());
        A* zeros = buf[7];
        A* g_slot[3] = {buf[8], buf[9], buf[10]};
        A* e_slot[2] = {buf[11], buf[12]};
        A *xt = buf[13], *z[2] = {buf[14], buf[15]}, *sig[2] = {buf[16], buf[17]};
        A *dxt = buf[25], *u[2] = {buf[26], buf[27]};
        A *mt[2] = {buf[28], buf[29]}, *dmt[2] = {buf[30], buf[31]}, *scratch = buf[32];
        const FortranGemm gemm = mkl_gemm<A>();
        // u_d(k, p) sits at k*stride_k + p*stride_p of a tile (stride_k is np when contiguous).
        const int64_t u_stride_p = geo.channels_last ? C : 1;
        for (int64_t task = t0; task < t1; ++task) {
          const int64_t video = task / geo.tiles_per_frame;
          int64_t p0, np;
          geo.tile(task % geo.tiles_per_frame, p0, np);
          const int64_t n = np * C;
          expand_params(prm, geo, np, buf, 0);
          for (int64_t j = 18; j <= 24; ++j) std::fill(buf[j], buf[j] + n, A(0));
          A* part = partial + task * lay.size();
          auto load_grad = [&](int64_t t) -> const A* {
            if (t < 0 || t >= geo.T) return zeros;
            A* slot = g_slot[t % 3];
            gather_tile(pg + (video * geo.T + t) * geo.frame, C, geo.HW, geo.channels_last, p0,
                        np, slot);
            return slot;
          };
          // Frame t's x, z_d, sigmoids, mixed tiles (pixel-major) and excited values.
          auto load_frame = [&](int64_t t) -> const A* {
            const int64_t f = video * geo.T + t;
            gather_tile(px + f * geo.frame, C, geo.HW, geo.channels_last, p0, np, xt);
            for (int d = 0; d < 2; ++d) {
              const scalar_t* src = pm + d * geo.mixed_direction + f * geo.mixed_frame;
              if (geo.channels_last) {
                gather_tile(src, c, geo.HW, true, p0, np, mt[d]);
              } else {
                gather_tile(src, c, geo.HW, false, p0, np, scratch);
                transpose_tile(scratch, c, np, mt[d]);
              }
              project_tile(prm, geo, geo.channels_last ? mt[d] : scratch, np, z[d]);
            }
            A* e = e_slot[t % 2];
            excite_tile<A, true>(xt, z[0], z[1], buf[3], buf[4], buf[5], buf[6], e, sig[0],
                                 sig[1], n);
            return e;
          };
          const A* e_prev = zeros;
          const A* g_prev = zeros;
          const A* g_cur = load_grad(0);
          for (int64_t t = 0; t < geo.T; ++t) {
            const A* e_cur = load_frame(t);
            const A* g_next = load_grad(t + 1);
            shift_backward_tile(buf[0], buf[1], buf[2], g_prev, g_cur, g_next, e_prev, e_cur, dxt,
                                buf[18], buf[19], buf[20], n, t > 0, t + 1 < geo.T);
            excite_backward_tile(dxt, xt, sig[0], sig[1], u[0], u[1], n);
            for (int d = 0; d < 2; ++d)
              affine_backward_tile(u[d], z[d], buf[3 + 2 * d], buf[21 + d], buf[23 + d], n);
            const int64_t f = video * geo.T + t;
            scatter_tile(dxt, C, geo.HW, geo.channels_last, p0, np, pdx + f * geo.frame);
            for (int d = 0; d < 2; ++d) {
              const int64_t u_stride_k = geo.channels_last ? 1 : np;
              if (gemm) {
                // Column-major: dw^T += m^T u^T and dm^T = w^T u, with u [k][p] (contiguous,
                // leading dimension np) or [p][k] (channels_last, leading dimension C).
                const bool cl = geo.channels_last;
                const int64_t ldu = cl ? C : np;
                blas_gemm(gemm, 'N', cl ? 'T' : 'N', c, C, np, A(1), mt[d], c, u[d], ldu, A(1),
                          part + lay.weight(), c);
                blas_gemm(gemm, 'N', cl ? 'N' : 'T', c, np, C, A(1), pw, c, u[d], ldu, A(0), dmt[d],
                          c);
              } else {
                project_backward_tile(u[d], u_stride_k, u_stride_p, pw, mt[d], part + lay.weight(),
                                      dmt[d], C, c, np);
              }
              scalar_t* dst = pdm + d * geo.mixed_direction + f * geo.mixed_frame;
              if (geo.channels_last) {
                scatter_tile(dmt[d], c, geo.HW, true, p0, np, dst);
              } else {
                transpose_tile(dmt[d], np, c, scratch);
                scatter_tile(scratch, c, geo.HW, false, p0, np, dst);
              }
            }
            e_prev = e_cur;
            g_prev = g_cur;
            g_cur = g_next;
          }
          // Fold the per-element accumulators into this task's per-parameter partials.
          for (int j = 0; j < 3; ++j)
            fold_channels(buf[18 + j], C, np, geo.channels_last, part + lay.shift() + j * C, 1);
          for (int d = 0; d < 2; ++d) {
            fold_channels(buf[21 + d], C, np, geo.channels_last, part + lay.scale() + d * C, 1);
            fold_channels(buf[23 + d], C, np, geo.channels_last, part + lay.bias() + d * C, 1);
          }
        }
      });
      // Second stage: every parameter element adds its partials in task order.
      A* out = total.mutable_data_ptr<A>();
      at::parallel_for(0, lay.size(), 256, [&](int64_t e0, int64_t e1) {
        for (int64_t e = e0; e < e1; ++e) {
          A s = 0;
          for (int64_t task = 0; task < tasks; ++task) s += partial[task * lay.size() + e];
          out[e] = s;
        }
      });
    });
  }
  const auto type = x.scalar_type();
  auto d_shift = total.narrow(0, lay.shift(), 3 * C).view({3, C}).t().reshape({C, 1, 3}).to(type);
  auto d_scale = total.narrow(0, lay.scale(), 2 * C).view({2, C}).to(type);
  auto d_bias = total.narrow(0, lay.bias(), 2 * C).view({2, C}).to(type);
  auto d_weight = total.narrow(0, lay.weight(), C * c).view({C, c}).to(type);
  return {dx, dmixed, d_weight.clone(), d_scale.clone(), d_bias.clone(), d_shift.contiguous()};
}

}  // namespace
}  // namespace cpu
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CPU, m) {
  m.impl("project_excite_shift", &tdn::cpu::project_excite_shift_cpu);
  m.impl("project_excite_shift_backward", &tdn::cpu::project_excite_shift_backward_cpu);
}
