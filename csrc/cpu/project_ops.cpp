// CPU kernels of project_excite_shift: the whole tail of an L-TDM (docs/math.md §4-§6) in one
// operator, forward and backward.
//
//   y_d = scale[d] * (weight @ mixed[d]) + bias[d]        (1x1 projection c -> C, affine)
//   out = temporal_shift_conv(x * (0.5 + 0.5*sigmoid(y_0) + 0.5*sigmoid(y_1)), shift_weight)
//
// Neither y_d nor the excited tensor is ever written to memory: both are recomputed tile by
// tile from `mixed`, which has C/16 channels. A tile is a run of pixels of one frame with all
// C channels (the backward needs every channel of a pixel to form the gradient of `mixed`
// there; the forward may also split the channels into blocks, to give small frames enough
// tasks). Contiguous tiles are rows of pixels, one per channel, channels_last tiles rows of
// channels, one per pixel; float and double tiles of x, g, out and dx are used in place in
// the frames, half types convert through buffers. All elementwise work of a frame is one
// pass over the tile. A task walks one tile position of one video through its T frames with
// a rolling window, like excite_shift.
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
#include "simd_x86.h"

#include <memory>


namespace tdn {
namespace cpu {
namespace {

// Tile elements a task works on (all C channels of pixels_per_tile pixels): about 32 rows of
// tile buffers stay within a core's L2.
constexpr int64_t kTileElements = 4096;
// ... but at least this many pixels: with C = 512 (layer 4) 4096 elements would be 8-pixel
// tiles, whose rows and tile products are too short to run at speed.
constexpr int64_t kMinTilePixels = 32;
// Tasks a call should offer at least. With one or two videos (inference on a clip) the tiles
// of a small frame are few and unequal (7 tiles of 32 pixels and a rest at 14x14), and the
// threads wait on the largest share; so small frames are cut into more, equal tiles: the
// backward into pixel runs of at least kMinSplitPixels, the forward also into channel blocks.
constexpr int64_t kMinTasks = 8;
constexpr int64_t kMinSplitPixels = 16;
// The contiguous backward's tiles (all C channels of a pixel run: the mixture's gradient
// needs every channel) hold this many elements: each of their rows lies in a page of its own,
// and 4096-element tiles (32 pixels at C = 128) missed the TLB at 56x56, where 256-pixel ones
// took 15 ms against 27 (28x28: 4.2 against 5.4 ms; the other TDN shapes unchanged; measured
// interleaved on the 2-core machine). Their buffers then outgrow L2, which costs less.
constexpr int64_t kContiguousBackwardTileElements = 32768;
// The forward's contiguous tiles: pixel runs up to this long, channel blocks of about
// kForwardTileElements / pixels channels (see ProjectGeometry::contiguous_forward_tiles).
constexpr int64_t kForwardPixels = 1024;
constexpr int64_t kForwardTileElements = 8192;
// Channel blocks of the forward are multiples of this (whole vectors of the channels_last
// rows, and weight rows that start on a 64-byte boundary for the gemm).
constexpr int64_t kChannelQuantum = 16;

// ---------------------------------------------------------------------------------------
// Vectorised rows and tile products (acc_t arithmetic)
//
// A tile is `rows` rows of `len` elements: contiguous frames give one row per channel (len =
// pixels, the per-channel parameters constant along a row: kRowParams), channels_last frames
// one row per pixel (len = channels, the parameters a vector indexed along the row). Rows of
// a frame tensor are `ld` apart (HW or C), so float and double tiles are read and written in
// the frames themselves; tile buffers are dense (ld = len).

// z[k][p] = sum_j w[k][j] * m[j][p] for a contiguous tile of `np` pixels and C rows.
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

// z[p][k] = sum_j m[p][j] * wt[j][k] for a channels_last tile of C channels (wt = weight
// transposed, c rows `ldw` apart).
template <typename A>
TDN_VECTORIZE void project_pixel_rows(const A* __restrict__ wt, int64_t ldw,
                                      const A* __restrict__ m, A* __restrict__ z, int64_t C,
                                      int64_t c, int64_t np) {
  for (int64_t p = 0; p < np; ++p) {
    A* __restrict__ row = z + p * C;
    const A* __restrict__ mp = m + p * c;
    const A m0 = mp[0];
    for (int64_t k = 0; k < C; ++k) row[k] = m0 * wt[k];
    for (int64_t j = 1; j < c; ++j) {
      const A mpj = mp[j];
      const A* __restrict__ wj = wt + j * ldw;
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

// Rows whose length is not a multiple of the vector width end in scalar iterations (a
// 28-pixel row of a 14x14 frame's tile: 16 + 8 lanes, then 4 scalar sigmoids), so the forward
// walks a row as whole vectors and then, once, its last kVector elements again: the overlap
// recomputes and rewrites the same values. (The backward's accumulators cannot take an
// overlap; a masked variant of it kept GCC's loop scalar.) Segment s of a row runs [lo, hi).
template <typename A>
struct RowSegments {
  static constexpr int64_t kVector = 64 / static_cast<int64_t>(sizeof(A));
  int64_t count, lo[2], hi[2];
  explicit RowSegments(int64_t len) {
    const int64_t whole = len >= kVector ? len - len % kVector : len;
    count = whole < len ? 2 : 1;
    lo[0] = 0, hi[0] = whole;
    lo[1] = len - kVector, hi[1] = len;
  }
};

// Per-channel parameters of a tile, each pointing at its first channel: shift taps w0-w2,
// then scale and bias of each direction.
template <typename A>
struct TileParams {
  const A *w0, *w1, *w2, *s0, *b0, *s1, *b1;
};

// One frame of the forward: e = x * gate with y_d = s_d*z_d + b_d into the rolling window
// and, with kShift, the output of the frame before it, out = w0 e_pp + w1 e_p + w2 e, while
// e is still in registers.
template <typename A, bool kRowParams, bool kShift>
TDN_VECTORIZE void excite_rows(int64_t rows, int64_t len, const A* __restrict__ x, int64_t ldx,
                               const A* __restrict__ z0, const A* __restrict__ z1,
                               const A* __restrict__ s0, const A* __restrict__ b0,
                               const A* __restrict__ s1, const A* __restrict__ b1,
                               const A* __restrict__ w0, const A* __restrict__ w1,
                               const A* __restrict__ w2, const A* __restrict__ e_pp,
                               const A* __restrict__ e_p, A* __restrict__ e,
                               A* __restrict__ out, int64_t ldo) {
  const RowSegments<A> seg(len);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t sg = 0; sg < seg.count; ++sg) {
      for (int64_t i = seg.lo[sg]; i < seg.hi[sg]; ++i) {
        const int64_t q = kRowParams ? r : i;  // the element's channel
        const int64_t at = r * len + i;
        const A f = sigmoid_acc(s0[q] * z0[at] + b0[q]);
        const A b = sigmoid_acc(s1[q] * z1[at] + b1[q]);
        const A v = x[r * ldx + i] * (A(0.5) + A(0.5) * f + A(0.5) * b);
        e[at] = v;
        if constexpr (kShift) out[r * ldo + i] = w0[q] * e_pp[at] + w1[q] * e_p[at] + w2[q] * v;
      }
    }
  }
}

// The output of the last frame, whose next frame is the zero padding.
template <typename A, bool kRowParams>
TDN_VECTORIZE void shift_rows(int64_t rows, int64_t len, const A* __restrict__ w0,
                              const A* __restrict__ w1, const A* __restrict__ w2,
                              const A* __restrict__ prev, const A* __restrict__ cur,
                              const A* __restrict__ next, A* __restrict__ out, int64_t ldo) {
  const RowSegments<A> seg(len);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t sg = 0; sg < seg.count; ++sg) {
      for (int64_t i = seg.lo[sg]; i < seg.hi[sg]; ++i) {
        const int64_t q = kRowParams ? r : i;
        const int64_t at = r * len + i;
        out[r * ldo + i] = w0[q] * prev[at] + w1[q] * cur[at] + w2[q] * next[at];
      }
    }
  }
}

// One frame of the backward, every elementwise step in one pass:
//  - the excited values e (kept for the next frame) and the gate, recomputed from z_d;
//  - through the shift, the gradient ge of its input and the taps' accumulators.
//    out_t = w0 e_{t-1} + w1 e_t + w2 e_{t+1}, so frame t's input gathers g_{t+1}, g_t,
//    g_{t-1}, and the taps pair g_t with e_{t-1}, e_t and g_{t-1} with e_t. A tap whose frame
//    lies outside the video is left out of ge rather than multiplied by the zero padding: the
//    reference never forms that product, and an infinite tap would turn it into NaN
//    (docs/math.md §6, non-finite values). The caller passes zero taps for it (w0 in the last
//    frame, w2 in the first) with the zero padding as g: a select in the loop would keep it
//    scalar;
//  - dx = ge * gate and, per direction, dy = 0.5*ge*x*s*(1-s) into the bias and scale
//    accumulators, and u = scale * dy (the projection's upstream gradient).
template <typename A, bool kRowParams>
TDN_VECTORIZE void backward_rows(
    int64_t rows, int64_t len, const A* __restrict__ x, int64_t ldx, const A* __restrict__ g_prev,
    int64_t ldgp, const A* __restrict__ g_cur, int64_t ldgc, const A* __restrict__ g_next,
    int64_t ldgn, const A* __restrict__ z0, const A* __restrict__ z1,
    const A* __restrict__ e_prev, A* __restrict__ e_cur, A* __restrict__ dx, int64_t lddx,
    A* __restrict__ u0, A* __restrict__ u1, A* __restrict__ acc_w0, A* __restrict__ acc_w1,
    A* __restrict__ acc_w2, A* __restrict__ acc_s0, A* __restrict__ acc_s1,
    A* __restrict__ acc_b0, A* __restrict__ acc_b1, const A* __restrict__ w0,
    const A* __restrict__ w1, const A* __restrict__ w2, const A* __restrict__ s0,
    const A* __restrict__ b0, const A* __restrict__ s1, const A* __restrict__ b1) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < len; ++i) {
      const int64_t q = kRowParams ? r : i;
      const int64_t at = r * len + i;
      const A za = z0[at], zb = z1[at];
      const A a = sigmoid_acc(s0[q] * za + b0[q]);
      const A b = sigmoid_acc(s1[q] * zb + b1[q]);
      const A gate = A(0.5) + A(0.5) * a + A(0.5) * b;
      const A xv = x[r * ldx + i];
      const A e = xv * gate;
      e_cur[at] = e;
      const A gp = g_prev[r * ldgp + i], gc = g_cur[r * ldgc + i], gn = g_next[r * ldgn + i];
      const A ge = w0[q] * gn + w1[q] * gc + w2[q] * gp;
      const A gx = A(0.5) * ge * xv;
      const A dya = gx * a * (A(1) - a);
      const A dyb = gx * b * (A(1) - b);
      dx[r * lddx + i] = ge * gate;
      u0[at] = s0[q] * dya;
      u1[at] = s1[q] * dyb;
      acc_w0[at] += gc * e_prev[at];
      acc_w1[at] += gc * e;
      acc_w2[at] += gp * e;
      acc_b0[at] += dya;
      acc_s0[at] += dya * za;
      acc_b1[at] += dyb;
      acc_s1[at] += dyb * zb;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Geometry and tile movement

// A block of a tile's rows inside a frame: `rows` rows of `len` elements, `ld` apart,
// starting `offset` elements into the frame.
struct Rows {
  int64_t rows, len, ld, offset;
};

// Channels [k0, k0 + kc) of pixels [p0, p0 + np).
struct TileSpan {
  int64_t k0, kc, p0, np;
};

struct ProjectGeometry {
  int64_t videos, T, C, c, HW;
  int64_t frame, mixed_frame;  // elements per frame of x (C*HW) and of one direction of mixed
  int64_t mixed_direction;     // elements of one direction of mixed (NT*c*HW)
  bool channels_last;
  int64_t pixels_per_tile, tiles_per_frame;      // pixel runs
  int64_t channels_per_block, channel_blocks;    // the forward's channel blocks (backward: 1)

  // `split_channels`: tiles may hold a block of the channels (the forward; the backward needs
  // every channel of a pixel). Everything here depends on the shape alone.
  ProjectGeometry(const at::Tensor& x, int64_t c_in, int64_t num_segments, at::MemoryFormat fmt,
                  bool split_channels)
      : videos(x.size(0) / num_segments),
        T(num_segments),
        C(x.size(1)),
        c(c_in),
        HW(x.size(2) * x.size(3)),
        frame(x.size(1) * x.size(2) * x.size(3)),
        mixed_frame(c_in * x.size(2) * x.size(3)),
        mixed_direction(x.size(0) * c_in * x.size(2) * x.size(3)),
        channels_last(is_channels_last(fmt)) {
    if (split_channels && !channels_last) {
      contiguous_forward_tiles();
      return;
    }
    const int64_t elements = channels_last ? kTileElements : kContiguousBackwardTileElements;
    const int64_t target = std::max<int64_t>(kMinTilePixels, elements / C);
    int64_t tiles = (HW + target - 1) / target;
    if (!split_channels && videos * tiles < kMinTasks) {
      const int64_t wanted = (kMinTasks + videos - 1) / videos;
      // Contiguous tiles are rows of pixels: longer ones, as the fused pass walks them in
      // whole vectors and a scalar rest.
      const int64_t min_pixels = channels_last ? kMinSplitPixels : 2 * kMinSplitPixels;
      tiles = std::max(tiles, std::min(wanted, HW / min_pixels));
      // An even count of tasks, so that two threads get equal shares (3 tiles of 7x7 would
      // leave one thread two of them).
      if (tiles > 1 && (videos * tiles) % 2 == 1) --tiles;
    }
    // Equal tiles (to one pixel), so that no task is much longer than the others.
    pixels_per_tile = (HW + tiles - 1) / tiles;
    tiles_per_frame = (HW + pixels_per_tile - 1) / pixels_per_tile;
    channels_per_block = C;
    channel_blocks = 1;
    if (split_channels && videos * tiles_per_frame < kMinTasks) {
      const int64_t wanted = (kMinTasks + videos * tiles_per_frame - 1) / (videos * tiles_per_frame);
      const int64_t per_block = (C + wanted - 1) / wanted;
      channels_per_block =
          std::min(C, (per_block + kChannelQuantum - 1) / kChannelQuantum * kChannelQuantum);
      channel_blocks = (C + channels_per_block - 1) / channels_per_block;
    }
  }

  // The forward's tiles of a contiguous frame: long runs of pixels (whole frames up to
  // kForwardPixels) in blocks of few channels. Each row of a tile lies HW elements from the
  // next, so 32-pixel tiles of all C channels made every tile row a page of its own: at 56x56
  // (C = 128) a tile of one frame spanned 1.6 MB, and one walked through the T frames more
  // pages than the TLB holds (7.4 ms there against 4.1 ms with these tiles; 1.3-1.5x at the
  // other TDN shapes, measured interleaved on the 2-core machine).
  void contiguous_forward_tiles() {
    const int64_t tiles = (HW + kForwardPixels - 1) / kForwardPixels;
    pixels_per_tile = (HW + tiles - 1) / tiles;
    tiles_per_frame = (HW + pixels_per_tile - 1) / pixels_per_tile;
    const int64_t block_target =
        std::max<int64_t>(kChannelQuantum, kForwardTileElements / pixels_per_tile);
    const int64_t most_blocks = (C + kChannelQuantum - 1) / kChannelQuantum;
    int64_t blocks = (C + block_target - 1) / block_target;
    blocks = std::max(blocks, (kMinTasks + videos * tiles_per_frame - 1) / (videos * tiles_per_frame));
    blocks = std::min(blocks, most_blocks);
    // Equal blocks, each a whole number of quanta.
    const int64_t per_block = (C + blocks - 1) / blocks;
    channels_per_block =
        std::min(C, (per_block + kChannelQuantum - 1) / kChannelQuantum * kChannelQuantum);
    channel_blocks = (C + channels_per_block - 1) / channels_per_block;
  }

  int64_t tiles_per_video() const { return tiles_per_frame * channel_blocks; }
  int64_t tasks() const { return videos * tiles_per_video(); }
  // Every tile buffer holds a tile of x (a block of channels) or of mixed (c channels): c > C
  // is unusual (TDN has c = C/16) but valid, and must not overflow the mixed tiles.
  int64_t capacity() const { return std::max(channels_per_block, c) * pixels_per_tile; }

  // The video of task `task` and its tile.
  TileSpan tile(int64_t task, int64_t& video) const {
    video = task / tiles_per_video();
    const int64_t rest = task % tiles_per_video();
    TileSpan s;
    s.p0 = (rest / channel_blocks) * pixels_per_tile;
    s.np = std::min(pixels_per_tile, HW - s.p0);
    s.k0 = (rest % channel_blocks) * channels_per_block;
    s.kc = std::min(channels_per_block, C - s.k0);
    return s;
  }

  // The tile's rows in a frame of x (also g, out, dx)...
  Rows x_rows(const TileSpan& s) const {
    if (channels_last) return {s.np, s.kc, C, s.p0 * C + s.k0};
    return {s.kc, s.np, HW, s.k0 * HW + s.p0};
  }
  // ... and in a frame of one direction of mixed (all c channels of its pixels).
  Rows m_rows(const TileSpan& s) const {
    if (channels_last) return {1, s.np * c, s.np * c, s.p0 * c};
    return {c, s.np, HW, s.p0};
  }
};

// Copies `rows` rows of `len` elements between strided and dense storage, converting the type.
template <typename T, typename A>
TDN_VECTORIZE void copy_rows(const T* __restrict__ src, int64_t lds, A* __restrict__ dst,
                             int64_t ldd, int64_t rows, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (std::is_same_v<T, A>) {
      std::memcpy(dst + r * ldd, src + r * lds, sizeof(A) * len);
    } else {
      for (int64_t i = 0; i < len; ++i) dst[r * ldd + i] = static_cast<A>(src[r * lds + i]);
    }
  }
}

// A frame's rows of x for the elementwise passes: read in place when scalar_t is the
// accumulation type (kInPlace), else converted into `scratch` (dense, leading dimension len).
// Returns the rows and sets `ld` to their leading dimension.
template <bool kInPlace, typename scalar_t, typename A>
const A* frame_rows(const scalar_t* frame, int64_t ld_frame, A* scratch, int64_t rows,
                    int64_t len, int64_t& ld) {
  if constexpr (kInPlace) {
    ld = ld_frame;
    return frame;
  } else {
    copy_rows(frame, ld_frame, scratch, len, rows, len);
    ld = len;
    return scratch;
  }
}

// A packed [row][col] tile as [col][row].
template <typename A>
void transpose_tile(const A* src, int64_t rows, int64_t cols, A* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; ++q) dst[q * rows + r] = src[r * cols + q];
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
// on where the allocator put a buffer. (So the small tiles of `mixed` and its gradient keep
// going through buffers, while x, g, out and dx are used in place.)
constexpr int64_t kAlign = 64;

template <typename A>
int64_t aligned_count(int64_t n) {
  const int64_t per_line = kAlign / static_cast<int64_t>(sizeof(A));
  return (n + per_line - 1) / per_line * per_line;
}

// `count` buffers of `capacity` elements each, every one 64-byte aligned; zeroed unless
// `zeroed` is false (buffers written before they are read: the forward's stacked tiles are
// 512 KB per task chunk at 56x56, and clearing them cost a pass).
template <typename A>
struct AlignedBuffers {
  std::unique_ptr<A[]> storage;
  A* base;
  int64_t cap;
  AlignedBuffers(int64_t count, int64_t capacity, bool zeroed = true)
      : cap(aligned_count<A>(capacity)) {
    const auto n = static_cast<size_t>(count * cap + kAlign / sizeof(A));
    storage.reset(new A[n]);
    if (zeroed) std::fill(storage.get(), storage.get() + n, A(0));
    const auto addr = reinterpret_cast<std::uintptr_t>(storage.get());
    base = storage.get() + ((kAlign - addr % kAlign) % kAlign) / sizeof(A);
  }
  A* operator[](int64_t i) { return base + i * cap; }
};

// The parameters in acc_t.
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

  // The per-channel parameters from channel k0 on.
  TileParams<A> from(int64_t k0) const {
    const int64_t C = w.size(0);
    const A* t = taps.template const_data_ptr<A>() + k0;
    const A* s = scale.template const_data_ptr<A>() + k0;
    const A* b = bias.template const_data_ptr<A>() + k0;
    return {t, t + C, t + 2 * C, s, b, s + C, b + C};
  }
};

// Tasks per parallel chunk: enough work to amortise a chunk.
inline int64_t task_grain(const ProjectGeometry& geo) {
  return std::max<int64_t>(1, kGrain / (geo.capacity() * geo.T));
}

// The projection z_d of direction d for channels [k0, k0 + kc) of a tile; `m` holds the tile
// of mixed[d] as gathered (contiguous: [j][p], channels_last: [p][j]).
template <typename A>
void project_tile(const Params<A>& prm, const ProjectGeometry& geo, const A* m, int64_t k0,
                  int64_t kc, int64_t np, A* z) {
  if (const FortranGemm gemm = mkl_gemm<A>()) {
    // Row-major z = w m is column-major z^T = m^T w^T (contiguous), z^T = w m^T (channels_last).
    const A* w = prm.w.template const_data_ptr<A>() + k0 * geo.c;
    if (geo.channels_last) {
      blas_gemm(gemm, 'T', 'N', kc, np, geo.c, A(1), w, geo.c, m, geo.c, A(0), z, kc);
    } else {
      blas_gemm(gemm, 'N', 'N', np, kc, geo.c, A(1), m, np, w, geo.c, A(0), z, np);
    }
    return;
  }
  if (geo.channels_last) {
    project_pixel_rows(prm.wt.template const_data_ptr<A>() + k0, geo.C, m, z, kc, geo.c, np);
  } else {
    project_channel_rows(prm.w.template const_data_ptr<A>() + k0 * geo.c, m, z, kc, geo.c, np);
  }
}

// `mixed` (2, B, c, H, W) with each half in `fmt`, as one dense buffer.
at::Tensor mixed_in_layout(const at::Tensor& mixed, at::MemoryFormat fmt) {
  if (is_channels_last(fmt)) return mixed.permute({0, 1, 3, 4, 2}).contiguous();
  return mixed.contiguous();
}

// ---------------------------------------------------------------------------------------
// Forward

}  // namespace

// The forward with the projection in registers, per instruction set (project_register.inc).
#if TDN_HAVE_ISA_TARGETS
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace avx2 {
#include "project_register.inc"
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace avx512 {
#include "project_register.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

namespace {

// project_excite_frame for this CPU's instruction set (called where simd_channel_quantum() > 0).
template <bool kShift>
void project_excite_frame_simd(int64_t np, int64_t kc, int64_t c, const float* x, int64_t ldx,
                               const float* m0, const float* m1, const float* wt, int64_t ldw,
                               const TileParams<float>& q, const float* e_pp, const float* e_p,
                               float* e, float* out, int64_t ldo, float* z0, float* z1) {
#if TDN_HAVE_ISA_TARGETS
  if (cpu_isa_level() >= 4) {
    avx512::project_excite_frame<kShift>(np, kc, c, x, ldx, m0, m1, wt, ldw, q, e_pp, e_p, e,
                                         out, ldo, z0, z1);
  } else {
    avx2::project_excite_frame<kShift>(np, kc, c, x, ldx, m0, m1, wt, ldw, q, e_pp, e_p, e, out,
                                       ldo, z0, z1);
  }
#endif
}

// The channel multiple project_excite_frame_simd needs: its vector width (0: no such path).
inline int64_t simd_channel_quantum() {
#if TDN_HAVE_ISA_TARGETS
  return cpu_isa_level() >= 4 ? 16 : cpu_isa_level() == 3 ? 8 : 0;
#else
  return 0;
#endif
}

// Tasks [t0, t1): each walks one tile through the T frames of its video. Float and double
// read x and write out in the frames; half types convert through tile buffers.
template <typename scalar_t, bool kRowParams>
void forward_tasks(const ProjectGeometry& geo, const Params<acc_t<scalar_t>>& prm,
                   const scalar_t* px, const scalar_t* pm, scalar_t* po, int64_t t0, int64_t t1) {
  using A = acc_t<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<scalar_t, A>;
  // Channels_last tiles project all T frames of the video at once: a frame's pixels are rows
  // of the tile of `mixed` and of z_d, so the frames stack into one (T * np)-row product, one
  // gemm per direction and task instead of one per frame (at 56x56, C = 128: 98 tasks of
  // 32-pixel tiles, 1,568 calls of 32k multiply-adds, each paying MKL's call overhead).
  // Measured on TDN-ResNet50's 13 calls of a clip, interleaved in one process on the 2-core
  // machine: 11.7-13.0 -> 11.2-12.5 ms, the same bits. Contiguous tiles keep one frame at a
  // time: their rows are channels.
  // Float channels_last tiles of whole vectors on an AVX2 or AVX-512 CPU project in
  // registers, frame by frame (project_register.inc). On TDN-ResNet50's 13 calls of a clip,
  // interleaved in one process on the 2-core machines: AVX-512 (Xeon), 12.5-14.8 -> 10.8-12.2 ms
  // against the stacked gemm below, the same bits (MKL sums these c-deep products in the same
  // order); AVX2 (Zen 1 EPYC, where the gemm runs MKL's Zen kernel), 44.6-45.8 -> 36.2-37.4 ms.
  const int64_t quantum = std::is_same_v<scalar_t, float> && geo.channels_last
                              ? simd_channel_quantum() : 0;
  const bool fused_projection = quantum > 0;
  const int64_t stacked = geo.channels_last && !fused_projection ? geo.T : 1;
  // 0 zeros, 1-3 excited frames, 4 x, 5 output; then z_d and the tiles of mixed (small) for
  // `stacked` frames.
  const SequentialMkl sequential;
  AlignedBuffers<A> buf(6, geo.capacity());
  AlignedBuffers<A> stack(4, stacked * geo.capacity(), /*zeroed=*/false);
  const A* zeros = buf[0];
  A* frames[3] = {buf[1], buf[2], buf[3]};
  A *xt = buf[4], *ot = buf[5];
  A *z0 = stack[0], *z1 = stack[1], *m0 = stack[2], *m1 = stack[3];
  for (int64_t task = t0; task < t1; ++task) {
    int64_t video;
    const TileSpan s = geo.tile(task, video);
    const Rows xr = geo.x_rows(s), mr = geo.m_rows(s);
    const int64_t rows = xr.rows, len = xr.len;
    const TileParams<A> q = prm.from(s.k0);
    // Frames [f0, f0 + n) of the video into the tiles of mixed, then their projections.
    auto project = [&](int64_t f0, int64_t n) {
      const int64_t m_len = mr.rows * mr.len;  // channels_last: one run of np * c values
      for (int64_t i = 0; i < n; ++i) {
        const int64_t f = f0 + i;
        copy_rows(pm + f * geo.mixed_frame + mr.offset, mr.ld, m0 + i * m_len, mr.len, mr.rows,
                  mr.len);
        copy_rows(pm + geo.mixed_direction + f * geo.mixed_frame + mr.offset, mr.ld,
                  m1 + i * m_len, mr.len, mr.rows, mr.len);
      }
      project_tile(prm, geo, m0, s.k0, s.kc, n * s.np, z0);
      project_tile(prm, geo, m1, s.k0, s.kc, n * s.np, z1);
    };
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (fused_projection && s.kc % quantum == 0) {
        const float* wt = prm.wt.template const_data_ptr<float>() + s.k0;
        for (int64_t t = 0; t < geo.T; ++t) {
          const int64_t f = video * geo.T + t;
          const float* x = px + f * geo.frame + xr.offset;
          const float* m0f = pm + f * geo.mixed_frame + mr.offset;
          const float* m1f = m0f + geo.mixed_direction;
          float* e = frames[t % 3];
          if (t == 0) {
            project_excite_frame_simd<false>(rows, len, geo.c, x, xr.ld, m0f, m1f, wt, geo.C, q,
                                             nullptr, nullptr, e, nullptr, 0, z0, z1);
          } else {
            const float* e_pp = t >= 2 ? frames[(t - 2) % 3] : zeros;
            project_excite_frame_simd<true>(rows, len, geo.c, x, xr.ld, m0f, m1f, wt, geo.C, q, e_pp,
                                            frames[(t - 1) % 3], e,
                                            po + (f - 1) * geo.frame + xr.offset, xr.ld, z0,
                                            z1);
          }
        }
        const int64_t last = video * geo.T + geo.T - 1;
        shift_rows<A, kRowParams>(rows, len, q.w0, q.w1, q.w2,
                                  geo.T >= 2 ? frames[(geo.T - 2) % 3] : zeros,
                                  frames[(geo.T - 1) % 3], zeros,
                                  po + last * geo.frame + xr.offset, xr.ld);
        continue;
      }
    }
    if (stacked > 1) project(video * geo.T, geo.T);
    // Where frame f's output goes (its tile in `out`, or the buffer to convert from).
    auto out_of = [&](int64_t f, int64_t& ld) -> A* {
      ld = kInPlace ? xr.ld : len;
      if constexpr (kInPlace) return po + f * geo.frame + xr.offset;
      return ot;
    };
    auto flush = [&](int64_t f) {
      if constexpr (!kInPlace) copy_rows(ot, len, po + f * geo.frame + xr.offset, xr.ld, rows, len);
    };
    for (int64_t t = 0; t < geo.T; ++t) {
      const int64_t f = video * geo.T + t;
      int64_t ldx = 0;
      const A* x = frame_rows<kInPlace>(px + f * geo.frame + xr.offset, xr.ld, xt, rows, len, ldx);
      if (stacked == 1) project(f, 1);
      const int64_t at = stacked > 1 ? t * rows * len : 0;  // frame t's rows of z_d
      const A *y0 = z0 + at, *y1 = z1 + at;
      A* e = frames[t % 3];
      if (t == 0) {
        excite_rows<A, kRowParams, false>(rows, len, x, ldx, y0, y1, q.s0, q.b0, q.s1, q.b1,
                                          q.w0, q.w1, q.w2, nullptr, nullptr, e, nullptr, 0);
      } else {
        const A* e_pp = t >= 2 ? frames[(t - 2) % 3] : zeros;
        int64_t ldo;
        A* o = out_of(f - 1, ldo);
        excite_rows<A, kRowParams, true>(rows, len, x, ldx, y0, y1, q.s0, q.b0, q.s1, q.b1, q.w0,
                                         q.w1, q.w2, e_pp, frames[(t - 1) % 3], e, o, ldo);
        flush(f - 1);
      }
    }
    const int64_t last = video * geo.T + geo.T - 1;
    int64_t ldo;
    A* o = out_of(last, ldo);
    shift_rows<A, kRowParams>(rows, len, q.w0, q.w1, q.w2,
                              geo.T >= 2 ? frames[(geo.T - 2) % 3] : zeros,
                              frames[(geo.T - 1) % 3], zeros, o, ldo);
    flush(last);
  }
}

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
  const ProjectGeometry geo(x, weight.size(1), num_segments, fmt, /*split_channels=*/true);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pes_fwd", [&] {
    using A = acc_t<scalar_t>;
    const Params<A> prm(weight, scale, bias, shift_weight);
    const auto* px = x.const_data_ptr<scalar_t>();
    const auto* pm = mixed.const_data_ptr<scalar_t>();
    auto* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, geo.tasks(), task_grain(geo), [&](int64_t t0, int64_t t1) {
      if (geo.channels_last) {
        forward_tasks<scalar_t, false>(geo, prm, px, pm, po, t0, t1);
      } else {
        forward_tasks<scalar_t, true>(geo, prm, px, pm, po, t0, t1);
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

// Tasks [t0, t1) of the backward; each one's parameter sums go to its block of `partial`.
template <typename scalar_t, bool kRowParams>
void backward_tasks(const ProjectGeometry& geo, const Params<acc_t<scalar_t>>& prm,
                    const PartialLayout& lay, const scalar_t* pg, const scalar_t* px,
                    const scalar_t* pm, scalar_t* pdx, scalar_t* pdm, acc_t<scalar_t>* partial,
                    int64_t t0, int64_t t1) {
  using A = acc_t<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<scalar_t, A>;
  const int64_t C = geo.C, c = geo.c;
  // 0 zeros, 1-3 gradient frames (half types), 4-5 excited frames, 6 x (half types),
  // 7-8 z_d, 9-15 accumulators (taps 0-2, scale 0-1, bias 0-1), 16 dx (half types),
  // 17-18 u_d, 19-22 small tiles of mixed and their gradients, 23-24 pixel-major copies of
  // those for the loops without MKL.
  const SequentialMkl sequential;
  AlignedBuffers<A> buf(25, geo.capacity());
  const A* zeros = buf[0];
  A* g_slot[3] = {buf[1], buf[2], buf[3]};
  A* e_slot[2] = {buf[4], buf[5]};
  A *xt = buf[6], *z[2] = {buf[7], buf[8]}, *acc = buf[9], *dxt = buf[16];
  A* u[2] = {buf[17], buf[18]};
  A *mt[2] = {buf[19], buf[20]}, *dmt[2] = {buf[21], buf[22]}, *mp = buf[23], *dmp = buf[24];
  const int64_t cap = buf.cap;
  const A* pw = prm.w.template const_data_ptr<A>();
  const FortranGemm gemm = mkl_gemm<A>();
  const TileParams<A> q = prm.from(0);
  for (int64_t task = t0; task < t1; ++task) {
    int64_t video;
    const TileSpan s = geo.tile(task, video);
    const Rows xr = geo.x_rows(s), mr = geo.m_rows(s);
    const int64_t rows = xr.rows, len = xr.len, np = s.np, n = rows * len;
    for (int64_t j = 0; j < 7; ++j) std::fill(acc + j * cap, acc + j * cap + n, A(0));
    A* part = partial + task * lay.size();
    // Frame t's tile of g, and how far apart its rows are.
    auto grad = [&](int64_t t, int64_t& ld) -> const A* {
      ld = len;
      if (t < 0 || t >= geo.T) return zeros;
      const scalar_t* src = pg + (video * geo.T + t) * geo.frame + xr.offset;
      if constexpr (kInPlace) {
        ld = xr.ld;
        return src;
      } else {
        copy_rows(src, xr.ld, g_slot[t % 3], len, rows, len);
        return g_slot[t % 3];
      }
    };
    int64_t ldgp = len, ldgc = len, ldgn = len;
    const A* g_prev = zeros;
    const A* g_cur = grad(0, ldgc);
    for (int64_t t = 0; t < geo.T; ++t) {
      const int64_t f = video * geo.T + t;
      const A* g_next = grad(t + 1, ldgn);
      int64_t ldx = 0;
      const A* x = frame_rows<kInPlace>(px + f * geo.frame + xr.offset, xr.ld, xt, rows, len, ldx);
      for (int d = 0; d < 2; ++d) {
        copy_rows(pm + d * geo.mixed_direction + f * geo.mixed_frame + mr.offset, mr.ld, mt[d],
                  mr.len, mr.rows, mr.len);
        project_tile(prm, geo, mt[d], 0, C, np, z[d]);
      }
      A* dx = dxt;
      int64_t lddx = len;
      if constexpr (kInPlace) {
        dx = pdx + f * geo.frame + xr.offset;
        lddx = xr.ld;
      }
      backward_rows<A, kRowParams>(
          rows, len, x, ldx, g_prev, ldgp, g_cur, ldgc, g_next, ldgn, z[0], z[1],
          t > 0 ? e_slot[(t - 1) % 2] : zeros, e_slot[t % 2], dx, lddx, u[0], u[1], acc,
          acc + cap, acc + 2 * cap, acc + 3 * cap, acc + 4 * cap, acc + 5 * cap, acc + 6 * cap,
          t + 1 < geo.T ? q.w0 : zeros, q.w1, t > 0 ? q.w2 : zeros, q.s0, q.b0, q.s1, q.b1);
      if constexpr (!kInPlace) copy_rows(dxt, len, pdx + f * geo.frame + xr.offset, xr.ld, rows, len);
      for (int d = 0; d < 2; ++d) {
        // dw += u m^T and dm = w^T u. Column-major, contiguous tiles ([k][p] and [j][p], leading
        // dimension np): dw^T += m^T u^T, dm^T = u^T w; channels_last tiles ([p][k] and [p][j]):
        // dw^T += m u^T, dm = w^T u.
        if (gemm) {
          if (geo.channels_last) {
            blas_gemm(gemm, 'N', 'T', c, C, np, A(1), mt[d], c, u[d], C, A(1),
                      part + lay.weight(), c);
            blas_gemm(gemm, 'N', 'N', c, np, C, A(1), pw, c, u[d], C, A(0), dmt[d], c);
          } else {
            blas_gemm(gemm, 'T', 'N', c, C, np, A(1), mt[d], np, u[d], np, A(1),
                      part + lay.weight(), c);
            blas_gemm(gemm, 'N', 'T', np, c, C, A(1), u[d], np, pw, c, A(0), dmt[d], np);
          }
        } else if (geo.channels_last) {
          project_backward_tile(u[d], 1, C, pw, mt[d], part + lay.weight(), dmt[d], C, c, np);
        } else {
          transpose_tile(mt[d], c, np, mp);
          project_backward_tile(u[d], np, 1, pw, mp, part + lay.weight(), dmp, C, c, np);
          transpose_tile(dmp, np, c, dmt[d]);
        }
        copy_rows(dmt[d], mr.len, pdm + d * geo.mixed_direction + f * geo.mixed_frame + mr.offset,
                  mr.ld, mr.rows, mr.len);
      }
      g_prev = g_cur;
      ldgp = ldgc;
      g_cur = g_next;
      ldgc = ldgn;
    }
    // Fold the per-element accumulators into this task's per-parameter partials.
    for (int j = 0; j < 3; ++j)
      fold_channels(acc + j * cap, C, np, geo.channels_last, part + lay.shift() + j * C, 1);
    for (int d = 0; d < 2; ++d) {
      fold_channels(acc + (3 + d) * cap, C, np, geo.channels_last, part + lay.scale() + d * C, 1);
      fold_channels(acc + (5 + d) * cap, C, np, geo.channels_last, part + lay.bias() + d * C, 1);
    }
  }
}

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
    const ProjectGeometry geo(x, c, num_segments, fmt, /*split_channels=*/false);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pes_bwd", [&] {
      using A = acc_t<scalar_t>;
      const Params<A> prm(weight, scale, bias, shift_weight);
      const auto* px = x.const_data_ptr<scalar_t>();
      const auto* pg = g.const_data_ptr<scalar_t>();
      const auto* pm = mixed.const_data_ptr<scalar_t>();
      auto* pdx = dx.mutable_data_ptr<scalar_t>();
      auto* pdm = dm_dense.mutable_data_ptr<scalar_t>();
      const int64_t tasks = geo.tasks();
      AlignedBuffers<A> partials(tasks, lay.size());
      A* partial = partials.base;
      at::parallel_for(0, tasks, task_grain(geo), [&](int64_t t0, int64_t t1) {
        if (geo.channels_last) {
          backward_tasks<scalar_t, false>(geo, prm, lay, pg, px, pm, pdx, pdm, partial, t0, t1);
        } else {
          backward_tasks<scalar_t, true>(geo, prm, lay, pg, px, pm, pdx, pdm, partial, t0, t1);
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
