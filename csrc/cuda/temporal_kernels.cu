// CUDA kernels of the per-element temporal operators: bidirectional_excitation,
// temporal_shift_conv and excite_shift, forward and backward.
//
// Layout. A (N*T, C, H, W) tensor, contiguous or channels_last, is a sequence of frames of
// C*H*W elements, frame t+1 of a video C*H*W elements after frame t. A thread owns one vector
// of positions inside a frame and walks it through the T frames of its video with a rolling
// window (previous, current, next frame in registers), so every element is read and written
// once. Only the channel of a position depends on the layout: in a contiguous frame channel c
// is row c of C rows of H*W values; in a channels_last frame it is column c of H*W rows of C.
// Vector loads (16 bytes) are used when a row length (H*W, or C) is a multiple of the vector
// and every pointer is aligned, so that a vector never straddles a channel or a frame.
//
// excite_shift never materialises the excited tensor e = x * gate: forward and backward
// recompute e for frames t-1, t, t+1 from x and the two gate inputs as the window slides.
//
// Weight gradient: dw[c, k] = sum over n, t, pixels of g[t] * e[t-1+k] (channel c). Stage 1:
// every block reduces its own tile (fixed per-thread order over rows and frames, then a fixed
// shared-memory tree) into one partial per (channel, tap); stage 2: one block per (channel,
// tap) adds that entry's partials in a fixed order. No atomics: bitwise deterministic.

#include "device_utils.cuh"

namespace tdn {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// bidirectional_excitation

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    excitation_forward_kernel(const T* __restrict__ x, const T* __restrict__ yf,
                              const T* __restrict__ yb, T* __restrict__ out, int64_t numel) {
  using A = acc_t<T>;
  const int64_t vectors = numel / V;
  TDN_GRID_STRIDE_LOOP(i, vectors) {
    A xv[V], fv[V], bv[V], ov[V];
    load_pack<V>(x + i * V, xv);
    load_pack<V>(yf + i * V, fv);
    load_pack<V>(yb + i * V, bv);
#pragma unroll
    for (int l = 0; l < V; ++l) ov[l] = xv[l] * gate_of(sigmoid_acc(fv[l]), sigmoid_acc(bv[l]));
    store_pack<V>(out + i * V, ov);
  }
  const int64_t tail = numel - vectors * V;
  TDN_GRID_STRIDE_LOOP(j, tail) {
    const int64_t i = vectors * V + j;
    const A g = gate_of(sigmoid_acc(to_acc(yf[i])), sigmoid_acc(to_acc(yb[i])));
    out[i] = from_acc<T>(to_acc(x[i]) * g);
  }
}

// dx = g*gate, dy_d = 0.5*g*x*s_d*(1-s_d): the chain shared by both excitation backwards.
template <typename A>
__device__ __forceinline__ void excitation_chain(A g, A x, A sf, A sb, A& dx, A& dyf, A& dyb) {
  const A gx = A(0.5) * g * x;
  dx = g * gate_of(sf, sb);
  dyf = gx * sf * (A(1) - sf);
  dyb = gx * sb * (A(1) - sb);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    excitation_backward_kernel(const T* __restrict__ g, const T* __restrict__ x,
                               const T* __restrict__ yf, const T* __restrict__ yb,
                               T* __restrict__ dx, T* __restrict__ dyf, T* __restrict__ dyb,
                               int64_t numel) {
  using A = acc_t<T>;
  const int64_t vectors = numel / V;
  TDN_GRID_STRIDE_LOOP(i, vectors) {
    A gv[V], xv[V], fv[V], bv[V], o1[V], o2[V], o3[V];
    load_pack<V>(g + i * V, gv);
    load_pack<V>(x + i * V, xv);
    load_pack<V>(yf + i * V, fv);
    load_pack<V>(yb + i * V, bv);
#pragma unroll
    for (int l = 0; l < V; ++l) {
      excitation_chain(gv[l], xv[l], sigmoid_acc(fv[l]), sigmoid_acc(bv[l]), o1[l], o2[l],
                       o3[l]);
    }
    store_pack<V>(dx + i * V, o1);
    store_pack<V>(dyf + i * V, o2);
    store_pack<V>(dyb + i * V, o3);
  }
  const int64_t tail = numel - vectors * V;
  TDN_GRID_STRIDE_LOOP(j, tail) {
    const int64_t i = vectors * V + j;
    A a, b, c;
    excitation_chain(to_acc(g[i]), to_acc(x[i]), sigmoid_acc(to_acc(yf[i])),
                     sigmoid_acc(to_acc(yb[i])), a, b, c);
    dx[i] = from_acc<T>(a);
    dyf[i] = from_acc<T>(b);
    dyb[i] = from_acc<T>(c);
  }
}

// ---------------------------------------------------------------------------------------
// Temporal shift: shared geometry

// A frame seen as rows x cols: contiguous = C rows of H*W (channel = row), channels_last =
// H*W rows of C (channel = column). The offset of (row, col) in a frame is row*cols + col.
struct FrameGrid {
  int64_t rows, cols, frame, T, videos;
  bool channels_last;
};

inline FrameGrid frame_grid(const ShiftShape& s) {
  FrameGrid g;
  g.channels_last = s.channels_last;
  g.rows = s.channels_last ? s.pixels : s.channels;
  g.cols = s.channels_last ? s.channels : s.pixels;
  g.frame = s.channels * s.pixels;
  g.T = s.segments;
  g.videos = s.videos;
  return g;
}

// Input of the shift at one frame, for V positions: x itself, or x excited by its gates (the
// sigmoids are kept for the backward's chain rule).
template <typename T, int V, bool kExcite>
struct ShiftInput {
  using A = acc_t<T>;
  A e[V];
  A x[V];   // kExcite only
  A sf[V];  // kExcite only
  A sb[V];  // kExcite only

  __device__ __forceinline__ void load(const T* __restrict__ px, const T* __restrict__ pf,
                                       const T* __restrict__ pb, int64_t off) {
    if constexpr (kExcite) {
      A fv[V], bv[V];
      load_pack<V>(px + off, x);
      load_pack<V>(pf + off, fv);
      load_pack<V>(pb + off, bv);
#pragma unroll
      for (int l = 0; l < V; ++l) {
        sf[l] = sigmoid_acc(fv[l]);
        sb[l] = sigmoid_acc(bv[l]);
        e[l] = x[l] * gate_of(sf[l], sb[l]);
      }
    } else {
      load_pack<V>(px + off, e);
    }
  }
  __device__ __forceinline__ void zero() {
    fill(e, A(0));
    if constexpr (kExcite) {
      fill(x, A(0));
      fill(sf, A(0));
      fill(sb, A(0));
    }
  }
};

// Taps of V lanes that start at channel c0 (channels_last: lanes are channels c0..c0+V-1;
// contiguous: every lane is channel c0).
template <typename T, int V>
__device__ __forceinline__ void load_taps(const T* __restrict__ w, int64_t c0, bool per_lane,
                                          acc_t<T> (&w0)[V], acc_t<T> (&w1)[V],
                                          acc_t<T> (&w2)[V]) {
#pragma unroll
  for (int l = 0; l < V; ++l) {
    const int64_t c = per_lane ? c0 + l : c0;
    w0[l] = to_acc(w[3 * c]);
    w1[l] = to_acc(w[3 * c + 1]);
    w2[l] = to_acc(w[3 * c + 2]);
  }
}

// ---------------------------------------------------------------------------------------
// Temporal shift: forward

template <typename T, int V, bool kExcite>
__global__ void __launch_bounds__(kThreads)
    shift_forward_kernel(const T* __restrict__ x, const T* __restrict__ yf,
                         const T* __restrict__ yb, const T* __restrict__ w, T* __restrict__ out,
                         FrameGrid fg) {
  using A = acc_t<T>;
  const int64_t vecs_per_frame = fg.frame / V;
  TDN_GRID_STRIDE_LOOP(i, fg.videos * vecs_per_frame) {
    const int64_t video = i / vecs_per_frame;
    const int64_t p = (i - video * vecs_per_frame) * V;  // position in the frame
    const int64_t c0 = fg.channels_last ? p % fg.cols : p / fg.cols;
    A w0[V], w1[V], w2[V];
    load_taps<T, V>(w, c0, fg.channels_last, w0, w1, w2);
    const int64_t base = video * fg.T * fg.frame + p;

    ShiftInput<T, V, kExcite> prev, cur, next;
    prev.zero();
    cur.load(x, yf, yb, base);
    for (int64_t t = 0; t < fg.T; ++t) {
      if (t + 1 < fg.T) {
        next.load(x, yf, yb, base + (t + 1) * fg.frame);
      } else {
        next.zero();
      }
      A o[V];
#pragma unroll
      for (int l = 0; l < V; ++l) o[l] = w0[l] * prev.e[l] + w1[l] * cur.e[l] + w2[l] * next.e[l];
      store_pack<V>(out + base + t * fg.frame, o);
      copy(prev.e, cur.e);
      cur = next;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Temporal shift: backward, stage 1 (input gradients and per-block weight-gradient partials)

// Block tiling of the backward. Threads of a block form a by x bx grid (bx*by <= kThreads):
// tx runs along columns (vectors of V positions), ty along rows. Contiguous: each thread owns
// one row (a channel); the partials reduce over tx. channels_last: each thread owns V fixed
// channels and loops over row_iters rows; the partials reduce over ty.
struct BackwardTiling {
  int bx, by, row_iters;
  int64_t col_vectors, col_chunks, row_chunks, rows_per_block;
  int64_t groups;  // partials per (channel, tap)
  int64_t blocks;
};

inline BackwardTiling backward_tiling(const FrameGrid& fg, int V) {
  BackwardTiling t;
  t.col_vectors = fg.cols / V;
  if (!fg.channels_last) {
    // Power-of-two tile width with the least idle threads (ties: the wider tile).
    int best = 32;
    int64_t best_waste = -1;
    for (int bx = 32; bx <= kThreads; bx *= 2) {
      const int64_t waste = (t.col_vectors + bx - 1) / bx * bx - t.col_vectors;
      if (best_waste < 0 || waste <= best_waste) {
        best = bx;
        best_waste = waste;
      }
    }
    t.bx = best;
    t.by = kThreads / best;
    t.row_iters = 1;
  } else {
    t.bx = static_cast<int>(t.col_vectors < kThreads ? t.col_vectors : kThreads);
    t.by = kThreads / t.bx;
    // Enough blocks to fill the device about four times, each thread looping over a few rows.
    const int64_t target_blocks = static_cast<int64_t>(sm_count()) * 4;
    const int64_t col_chunks = (t.col_vectors + t.bx - 1) / t.bx;
    const int64_t row_steps = (fg.rows + t.by - 1) / t.by;
    int64_t iters = fg.videos * col_chunks * row_steps / (target_blocks > 0 ? target_blocks : 1);
    iters = iters < 1 ? 1 : (iters > 16 ? 16 : iters);
    t.row_iters = static_cast<int>(iters);
  }
  t.col_chunks = (t.col_vectors + t.bx - 1) / t.bx;
  t.rows_per_block = static_cast<int64_t>(t.by) * t.row_iters;
  t.row_chunks = (fg.rows + t.rows_per_block - 1) / t.rows_per_block;
  t.groups = fg.videos * (fg.channels_last ? t.row_chunks : t.col_chunks);
  t.blocks = fg.videos * t.row_chunks * t.col_chunks;
  return t;
}

// Fixed pairwise tree over s[0..n) with elements `stride_elems` apart, run by the threads
// whose `index` < n. Every thread of the block must call it (it synchronises).
template <typename A>
__device__ __forceinline__ void tree_reduce(A* s, int index, int n, int64_t stride_elems,
                                            int count) {
  for (int step = pow2_at_least_dev(n) / 2; step > 0; step /= 2) {
    if (index < step && index + step < n) {
      for (int j = 0; j < count; ++j) s[j * stride_elems + index] += s[j * stride_elems + index + step];
    }
    __syncthreads();
  }
}

template <typename T, int V, bool kExcite, bool kChannelsLast>
// At most 128 registers (two blocks per SM): the half-precision excited variant would
// otherwise take ~180 and run one block per SM, starving the memory system.
__global__ void __launch_bounds__(kThreads, 2)
    shift_backward_kernel(const T* __restrict__ g, const T* __restrict__ x,
                          const T* __restrict__ yf, const T* __restrict__ yb,
                          const T* __restrict__ w, T* __restrict__ dx, T* __restrict__ dyf,
                          T* __restrict__ dyb, acc_t<T>* __restrict__ partial, FrameGrid fg,
                          BackwardTiling tl) {
  using A = acc_t<T>;
  // Per-thread accumulators staged for the block reduction: [tap][lane][thread].
  __shared__ A stage[3 * (kChannelsLast ? V : 1) * kThreads];

  int64_t b = blockIdx.x;
  const int64_t col_chunk = b % tl.col_chunks;
  b /= tl.col_chunks;
  const int64_t row_chunk = b % tl.row_chunks;
  const int64_t video = b / tl.row_chunks;

  const int tx = static_cast<int>(threadIdx.x) % tl.bx;
  const int ty = static_cast<int>(threadIdx.x) / tl.bx;
  const int64_t col_vec = col_chunk * tl.bx + tx;
  const bool active_col = ty < tl.by && col_vec < tl.col_vectors;
  const int64_t col = col_vec * V;

  A acc0[V], acc1[V], acc2[V];
  fill(acc0, A(0));
  fill(acc1, A(0));
  fill(acc2, A(0));
  A w0[V], w1[V], w2[V];

  for (int it = 0; it < tl.row_iters; ++it) {
    const int64_t row = row_chunk * tl.rows_per_block + static_cast<int64_t>(it) * tl.by + ty;
    if (!active_col || row >= fg.rows) break;
    load_taps<T, V>(w, kChannelsLast ? col : row, kChannelsLast, w0, w1, w2);
    const int64_t base = video * fg.T * fg.frame + row * fg.cols + col;

    ShiftInput<T, V, kExcite> e_prev, e_cur, e_next;
    A g_prev[V], g_cur[V], g_next[V];
    e_prev.zero();
    fill(g_prev, A(0));
    e_cur.load(x, yf, yb, base);
    load_pack<V>(g + base, g_cur);
    for (int64_t t = 0; t < fg.T; ++t) {
      const int64_t off = base + t * fg.frame;
      if (t + 1 < fg.T) {
        e_next.load(x, yf, yb, off + fg.frame);
        load_pack<V>(g + off + fg.frame, g_next);
      } else {
        e_next.zero();
        fill(g_next, A(0));
      }
      // Gradient of the shift's input at frame t (the transposed taps), then the weight terms.
      // Outside the video a tap's term is left out, not multiplied by a zero gradient, as in
      // the reference: an infinite tap must not make NaN there (docs/math.md §6).
      const bool has_prev = t > 0, has_next = t + 1 < fg.T;
      A ge[V];
#pragma unroll
      for (int l = 0; l < V; ++l) {
        ge[l] = (has_next ? w0[l] * g_next[l] : A(0)) + w1[l] * g_cur[l] +
                (has_prev ? w2[l] * g_prev[l] : A(0));
        acc0[l] += g_cur[l] * e_prev.e[l];
        acc1[l] += g_cur[l] * e_cur.e[l];
        acc2[l] += g_cur[l] * e_next.e[l];
      }
      if constexpr (kExcite) {
        A o1[V], o2[V], o3[V];
#pragma unroll
        for (int l = 0; l < V; ++l) {
          excitation_chain(ge[l], e_cur.x[l], e_cur.sf[l], e_cur.sb[l], o1[l], o2[l], o3[l]);
        }
        store_pack<V>(dx + off, o1);
        store_pack<V>(dyf + off, o2);
        store_pack<V>(dyb + off, o3);
      } else {
        store_pack<V>(dx + off, ge);
      }
      copy(e_prev.e, e_cur.e);
      e_cur = e_next;
      copy(g_prev, g_cur);
      copy(g_cur, g_next);
    }
  }

  // Block reduction of the weight-gradient terms (inactive threads hold zeros).
  const int tid = static_cast<int>(threadIdx.x);
  if constexpr (!kChannelsLast) {
    // One channel per row: fold the lanes, then reduce over tx within each row ty.
    A s0 = 0, s1 = 0, s2 = 0;
#pragma unroll
    for (int l = 0; l < V; ++l) {
      s0 += acc0[l];
      s1 += acc1[l];
      s2 += acc2[l];
    }
    stage[0 * kThreads + tid] = s0;
    stage[1 * kThreads + tid] = s1;
    stage[2 * kThreads + tid] = s2;
    __syncthreads();
    A* row_stage = stage + (ty < tl.by ? ty * tl.bx : 0);
    const int index = ty < tl.by ? tx : tl.bx;  // threads outside the grid only synchronise
    tree_reduce(row_stage, index, tl.bx, kThreads, 3);
    const int64_t row = row_chunk * tl.rows_per_block + ty;
    if (ty < tl.by && tx == 0 && row < fg.rows) {
      const int64_t group = video * tl.col_chunks + col_chunk;
      for (int k = 0; k < 3; ++k) partial[(row * 3 + k) * tl.groups + group] = row_stage[k * kThreads];
    }
  } else {
    // V channels per thread: reduce each (tap, lane) over ty within each column tx.
#pragma unroll
    for (int l = 0; l < V; ++l) {
      stage[(0 * V + l) * kThreads + tid] = acc0[l];
      stage[(1 * V + l) * kThreads + tid] = acc1[l];
      stage[(2 * V + l) * kThreads + tid] = acc2[l];
    }
    __syncthreads();
    // Element (j, ty, tx) lives at j*kThreads + ty*bx + tx: a tree over ty with stride bx.
    for (int step = pow2_at_least_dev(tl.by) / 2; step > 0; step /= 2) {
      if (ty < step && ty + step < tl.by) {
        for (int j = 0; j < 3 * V; ++j) {
          stage[j * kThreads + ty * tl.bx + tx] += stage[j * kThreads + (ty + step) * tl.bx + tx];
        }
      }
      __syncthreads();
    }
    if (ty == 0 && col_vec < tl.col_vectors) {
      const int64_t group = video * tl.row_chunks + row_chunk;
      for (int k = 0; k < 3; ++k) {
        for (int l = 0; l < V; ++l) {
          partial[((col + l) * 3 + k) * tl.groups + group] = stage[(k * V + l) * kThreads + tx];
        }
      }
    }
  }
}

// Stage 2: one block per (channel, tap) entry of the weight gradient, adding its `groups`
// partials in a fixed order (strided per thread, then a fixed tree).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_grad_finish_kernel(const acc_t<T>* __restrict__ partial, int64_t groups,
                              T* __restrict__ dw) {
  using A = acc_t<T>;
  __shared__ A s[kThreads];
  const int64_t entry = blockIdx.x;
  const A* p = partial + entry * groups;
  A sum = 0;
  for (int64_t i = threadIdx.x; i < groups; i += kThreads) sum += p[i];
  s[threadIdx.x] = sum;
  __syncthreads();
  tree_reduce(s, static_cast<int>(threadIdx.x), kThreads, 0, 1);
  if (threadIdx.x == 0) dw[entry] = from_acc<T>(s[0]);
}

// ---------------------------------------------------------------------------------------
// Launch helpers

// Vector width of the shift backward. The excited half-precision variant keeps 15 vectors of
// V floats alive; with 16-byte vectors (V = 8) it needs ~180 registers (or spills ~200 bytes
// at the 128 the launch bounds allow), so it moves 8 bytes per access instead.
template <typename T, bool kExcite>
constexpr int backward_vec() {
  return kExcite && sizeof(T) == 2 ? 4 : kVec16<T>;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

cudaError_t excitation_forward(const void* x, const void* y_fwd, const void* y_bwd, void* out,
                               DType dtype, int64_t numel, cudaStream_t stream) {
  if (numel <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec16<T>;
    const auto* px = static_cast<const T*>(x);
    const auto* pf = static_cast<const T*>(y_fwd);
    const auto* pb = static_cast<const T*>(y_bwd);
    auto* po = static_cast<T*>(out);
    if (aligned_to(16, x, y_fwd, y_bwd, out)) {
      excitation_forward_kernel<T, V><<<grid_for(numel / V + 1), kThreads, 0, stream>>>(
          px, pf, pb, po, numel);
    } else {
      excitation_forward_kernel<T, 1><<<grid_for(numel), kThreads, 0, stream>>>(px, pf, pb, po,
                                                                                 numel);
    }
    return cudaGetLastError();
  });
}

cudaError_t excitation_backward(const void* grad_out, const void* x, const void* y_fwd,
                                const void* y_bwd, void* grad_x, void* grad_y_fwd,
                                void* grad_y_bwd, DType dtype, int64_t numel,
                                cudaStream_t stream) {
  if (numel <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec16<T>;
    const auto* pg = static_cast<const T*>(grad_out);
    const auto* px = static_cast<const T*>(x);
    const auto* pf = static_cast<const T*>(y_fwd);
    const auto* pb = static_cast<const T*>(y_bwd);
    auto* dx = static_cast<T*>(grad_x);
    auto* df = static_cast<T*>(grad_y_fwd);
    auto* db = static_cast<T*>(grad_y_bwd);
    if (aligned_to(16, grad_out, x, y_fwd, y_bwd, grad_x, grad_y_fwd, grad_y_bwd)) {
      excitation_backward_kernel<T, V><<<grid_for(numel / V + 1), kThreads, 0, stream>>>(
          pg, px, pf, pb, dx, df, db, numel);
    } else {
      excitation_backward_kernel<T, 1><<<grid_for(numel), kThreads, 0, stream>>>(
          pg, px, pf, pb, dx, df, db, numel);
    }
    return cudaGetLastError();
  });
}

cudaError_t shift_forward(const void* x, const void* y_fwd, const void* y_bwd,
                          const void* weight, void* out, DType dtype, const ShiftShape& shape,
                          cudaStream_t stream) {
  const FrameGrid fg = frame_grid(shape);
  if (fg.videos <= 0 || fg.frame <= 0 || fg.T <= 0) return cudaSuccess;
  const bool excite = y_fwd != nullptr;
  if (excite != (y_bwd != nullptr)) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* px = static_cast<const T*>(x);
    const auto* pf = static_cast<const T*>(y_fwd);
    const auto* pb = static_cast<const T*>(y_bwd);
    const auto* pw = static_cast<const T*>(weight);
    auto* po = static_cast<T*>(out);
    const int v = pick_vec<T, kVec16<T>>(fg.cols, x, y_fwd, y_bwd, out);
    const unsigned int grid = grid_for(fg.videos * (fg.frame / v));
    return with_vec<kVec16<T>>(v, [&](auto width) {
      constexpr int V = decltype(width)::value;
      if (excite) {
        shift_forward_kernel<T, V, true><<<grid, kThreads, 0, stream>>>(px, pf, pb, pw, po, fg);
      } else {
        shift_forward_kernel<T, V, false><<<grid, kThreads, 0, stream>>>(px, pf, pb, pw, po, fg);
      }
      return cudaGetLastError();
    });
  });
}

namespace {

int64_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat64:
      return 8;
  }
  return 4;
}

template <typename T, int V, bool kExcite>
cudaError_t launch_shift_backward(const T* g, const T* x, const T* yf, const T* yb, const T* w,
                                  T* dx, T* dyf, T* dyb, T* dw, acc_t<T>* partial,
                                  const FrameGrid& fg, cudaStream_t stream) {
  const BackwardTiling tl = backward_tiling(fg, V);
  if (tl.blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  const auto blocks = static_cast<unsigned int>(tl.blocks);
  if (fg.channels_last) {
    shift_backward_kernel<T, V, kExcite, true>
        <<<blocks, kThreads, 0, stream>>>(g, x, yf, yb, w, dx, dyf, dyb, partial, fg, tl);
  } else {
    shift_backward_kernel<T, V, kExcite, false>
        <<<blocks, kThreads, 0, stream>>>(g, x, yf, yb, w, dx, dyf, dyb, partial, fg, tl);
  }
  const int64_t entries = 3 * (fg.channels_last ? fg.cols : fg.rows);
  weight_grad_finish_kernel<T><<<static_cast<unsigned int>(entries), kThreads, 0, stream>>>(
      partial, tl.groups, dw);
  return cudaGetLastError();
}

}  // namespace

int64_t shift_backward_workspace_bytes(const ShiftShape& shape, DType dtype) {
  const FrameGrid fg = frame_grid(shape);
  if (fg.videos <= 0 || fg.frame <= 0 || fg.T <= 0) return 0;
  // The tiling depends on the vector width (chosen at launch from the pointers' alignment):
  // size for the largest tiling any width gives.
  const int64_t acc_bytes = dtype == DType::kFloat64 ? 8 : 4;
  const int64_t channels = shape.channels;
  int64_t groups = 0;
  for (int v = 1; v <= 16 / element_size(dtype); v *= 2) {
    if (fg.cols % v != 0) continue;
    const BackwardTiling tl = backward_tiling(fg, v);
    groups = tl.groups > groups ? tl.groups : groups;
  }
  return 3 * channels * groups * acc_bytes;
}

cudaError_t shift_backward(const void* grad_out, const void* x, const void* y_fwd,
                           const void* y_bwd, const void* weight, void* grad_x,
                           void* grad_y_fwd, void* grad_y_bwd, void* grad_weight,
                           void* workspace, DType dtype, const ShiftShape& shape,
                           cudaStream_t stream) {
  const FrameGrid fg = frame_grid(shape);
  if (fg.T <= 0 || shape.channels <= 0) return cudaSuccess;
  if (fg.videos <= 0 || fg.frame <= 0) {
    // No elements: the weight gradient is an empty sum.
    return cudaMemsetAsync(grad_weight, 0, 3 * shape.channels * element_size(dtype), stream);
  }
  const bool excite = y_fwd != nullptr;
  if (excite != (y_bwd != nullptr) || excite != (grad_y_fwd != nullptr) ||
      excite != (grad_y_bwd != nullptr)) {
    return cudaErrorInvalidValue;
  }
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* pg = static_cast<const T*>(grad_out);
    const auto* px = static_cast<const T*>(x);
    const auto* pf = static_cast<const T*>(y_fwd);
    const auto* pb = static_cast<const T*>(y_bwd);
    const auto* pw = static_cast<const T*>(weight);
    auto* dx = static_cast<T*>(grad_x);
    auto* df = static_cast<T*>(grad_y_fwd);
    auto* db = static_cast<T*>(grad_y_bwd);
    auto* dw = static_cast<T*>(grad_weight);
    auto* partial = static_cast<acc_t<T>*>(workspace);
    if (excite) {
      constexpr int VMax = backward_vec<T, true>();
      const int v = pick_vec<T, VMax>(fg.cols, grad_out, x, y_fwd, y_bwd, grad_x, grad_y_fwd,
                                      grad_y_bwd);
      return with_vec<VMax>(v, [&](auto width) {
        return launch_shift_backward<T, decltype(width)::value, true>(
            pg, px, pf, pb, pw, dx, df, db, dw, partial, fg, stream);
      });
    }
    constexpr int VMax = backward_vec<T, false>();
    const int v = pick_vec<T, VMax>(fg.cols, grad_out, x, grad_x);
    return with_vec<VMax>(v, [&](auto width) {
      return launch_shift_backward<T, decltype(width)::value, false>(
          pg, px, pf, pb, pw, dx, df, db, dw, partial, fg, stream);
    });
  });
}

}  // namespace cuda
}  // namespace tdn
