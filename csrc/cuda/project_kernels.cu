// CUDA kernels of project_excite_shift, forward and backward: the whole tail of an L-TDM and
// its temporal shift (docs/math.md §4-§6) in one operator.
//
//   y_d = scale[d] * (weight @ mixed[d]) + bias[d]          (1x1 projection c -> C, affine)
//   out = temporal_shift_conv(x * (0.5 + 0.5*sigmoid(y_0) + 0.5*sigmoid(y_1)), shift_weight)
//
// Neither y_d nor the excited tensor e is ever written to global memory: every block
// recomputes them for its tile from `mixed`, which has only c = C/16 channels. A tile is
// kTileP pixels of one frame by kTileK channels. The small c x C products are plain
// per-thread FMA loops over a shared-memory stage of W (kTileK x kJ) and of the tile's
// mixture (2 x kJ x kTileP), kJ mid channels at a time.
//
// Layout. Tensors are dense in x's layout (contiguous NCHW or channels_last NHWC), `mixed`
// and its gradient as one (2, NT, c, H, W) or (2, NT, H, W, c) buffer, so frame f of either
// sits f*C*H*W (f*c*H*W) elements into it. The threads of a block take the tile's elements in
// the order of memory (pixel-fastest when contiguous, channel-fastest in channels_last), so
// that a warp's loads and stores of x, the gradients and the output are coalesced.
//
// Forward: one block per (video, pixel tile, channel block) walks the video's T frames with a
// rolling window of e (previous, current, next frame in registers): e of each frame is
// computed once.
//
// Backward: one block per (frame, pixel tile, group of mid channels) loops over all channel
// blocks, like the Triton backward, so that it owns the gradient of `mixed` at its pixels (a
// sum over every channel) and writes it once, from registers. The weight gradient of the shift
// is re-indexed to need e of the block's own frame only: dw_0 = sum_s g[s+1] e[s],
// dw_1 = sum_s g[s] e[s], dw_2 = sum_s g[s-1] e[s].
//
// Parameter gradients (shift weight, scale, bias, W): each backward block writes its share to
// its own row of an acc_t buffer (fixed order: pixels ascending within the tile), and a second
// kernel adds the rows of every column in a fixed order. No atomics: bitwise deterministic.
//
// Non-finite values (docs/math.md §6): the excitation is x*(0.5 + 0.5σ + 0.5σ), like the C++
// kernels; the forward multiplies the zero padding by the taps as the reference does, but the
// backward leaves out the terms whose frame falls outside the video (an infinite tap or an
// infinite e at the last frame must not give 0*inf = NaN where the reference is finite), and
// elements outside the tile never enter a sum.

#include "device_utils.cuh"

namespace tdn {
namespace cuda {
namespace {

constexpr int kTileP = 32;  // pixels per tile
constexpr int kTileK = 32;  // channels per channel block
constexpr int kPerThread = kTileP * kTileK / kThreads;
static_assert(kTileP * kTileK % kThreads == 0, "a tile must split evenly over the threads");
static_assert(kTileK <= kThreads, "one thread per channel of a block in the reductions");

// Mid channels staged at a time (kJ) and per backward block (kJ * kGroup): float keeps 32
// gradient accumulators of `mixed` per thread, double 16, and both stay within 48 KiB of
// static shared memory.
template <typename A>
struct ChunkOf {
  static constexpr int kJ = 64;
  static constexpr int kGroup = 2;
};
template <>
struct ChunkOf<double> {
  static constexpr int kJ = 16;
  static constexpr int kGroup = 4;
};

struct ProjectGrid {
  int64_t videos, T, C, c, HW;
  int64_t frames;      // videos * T
  int64_t frame;       // C * HW, elements per frame of x
  int64_t mid_frame;   // c * HW, elements per frame of one direction of mixed
  int64_t mixed_dir;   // frames * c * HW, elements of one direction of mixed
  int64_t p_tiles, k_blocks, j_groups;
  int64_t n_cols;      // partial row: shift (3, C) tap-major, scale (2, C), bias (2, C), W (C, c)
  bool channels_last;
};

// The stage of W (rows k0.., columns j0..) and of the tile's mixture. Rows are padded by one
// element, so that column-wise walks by a warp hit distinct banks.
template <typename A>
struct Stage {
  static constexpr int kJ = ChunkOf<A>::kJ;
  A w[kTileK][kJ + 1];
  A m[2][kJ][kTileP + 1];
};

// Element i of thread `tid` in a tile: channel kk and pixel pp, in memory order.
template <bool kCL>
__device__ __forceinline__ void element_of(int tid, int i, int& kk, int& pp) {
  const int e = tid + i * kThreads;
  if (kCL) {
    kk = e % kTileK;
    pp = e / kTileK;
  } else {
    pp = e % kTileP;
    kk = e / kTileP;
  }
}

// Entry e of a staged chunk of `mixed` holding jn mid channels of both directions: direction
// d, mid channel jj, pixel pp, numbered in memory order (channel-fastest in channels_last).
template <bool kCL>
__device__ __forceinline__ void mixed_entry_of(int e, int jn, int& d, int& jj, int& pp) {
  if (kCL) {
    jj = e % jn;
    const int rest = e / jn;
    pp = rest % kTileP;
    d = rest / kTileP;
  } else {
    pp = e % kTileP;
    const int rest = e / kTileP;
    jj = rest % jn;
    d = rest / jn;
  }
}

__device__ __forceinline__ int min_int(int64_t a, int64_t b) {
  return static_cast<int>(a < b ? a : b);
}

// W[k0 + kk][j0 + jj] into the stage (rows beyond C are zero and never read for a result).
template <typename T, typename A>
__device__ __forceinline__ void stage_weight(Stage<A>& st, const T* __restrict__ w,
                                             const ProjectGrid& g, int64_t k0, int64_t j0,
                                             int jn) {
  for (int idx = static_cast<int>(threadIdx.x); idx < kTileK * jn; idx += kThreads) {
    const int kk = idx / jn, jj = idx % jn;
    const int64_t k = k0 + kk;
    st.w[kk][jj] = k < g.C ? to_acc(w[k * g.c + j0 + jj]) : A(0);
  }
}

// mixed[d][f][j0 + jj] at pixels p0 + pp of both directions into the stage, read in memory
// order (pixels outside the frame are zero and never read for a result).
template <typename T, typename A, bool kCL>
__device__ __forceinline__ void stage_mixed(Stage<A>& st, const T* __restrict__ m,
                                            const ProjectGrid& g, int64_t f, int64_t p0, int np,
                                            int64_t j0, int jn) {
  const int n = 2 * jn * kTileP;
  for (int idx = static_cast<int>(threadIdx.x); idx < n; idx += kThreads) {
    int d, jj, pp;
    mixed_entry_of<kCL>(idx, jn, d, jj, pp);
    A v = A(0);
    if (pp < np) {
      const int64_t j = j0 + jj, p = p0 + pp;
      v = to_acc(m[d * g.mixed_dir + f * g.mid_frame + (kCL ? p * g.c + j : j * g.HW + p)]);
    }
    st.m[d][jj][pp] = v;
  }
}

// z_d = (W m_d) at the thread's elements of frame f, channel block k0, both directions.
// Called by every thread of the block (it synchronises). The stage is refilled per chunk of
// kJ mid channels unless the caller says that part is already staged (c <= kJ).
template <typename T, bool kCL>
__device__ __forceinline__ void project(Stage<acc_t<T>>& st, const T* __restrict__ w,
                                        const T* __restrict__ m, const ProjectGrid& g, int64_t f,
                                        int64_t k0, int64_t p0, int np, bool refill_weight,
                                        bool refill_mixed, const int (&kk)[kPerThread],
                                        const int (&pp)[kPerThread], acc_t<T> (&z0)[kPerThread],
                                        acc_t<T> (&z1)[kPerThread]) {
  using A = acc_t<T>;
  constexpr int kJ = ChunkOf<A>::kJ;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) z0[i] = z1[i] = A(0);
  for (int64_t j0 = 0; j0 < g.c; j0 += kJ) {
    const int jn = min_int(kJ, g.c - j0);
    if (refill_weight || refill_mixed) {
      __syncthreads();  // every reader of the previous stage is done
      if (refill_weight) stage_weight<T, A>(st, w, g, k0, j0, jn);
      if (refill_mixed) stage_mixed<T, A, kCL>(st, m, g, f, p0, np, j0, jn);
      __syncthreads();
    }
    for (int jj = 0; jj < jn; ++jj) {
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) {
        const A wk = st.w[kk[i]][jj];
        z0[i] += wk * st.m[0][jj][pp[i]];
        z1[i] += wk * st.m[1][jj][pp[i]];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Forward

template <typename T, bool kCL>
__global__ void __launch_bounds__(kThreads)
    project_forward_kernel(const T* __restrict__ x, const T* __restrict__ m,
                           const T* __restrict__ w, const T* __restrict__ scale,
                           const T* __restrict__ bias, const T* __restrict__ taps,
                           T* __restrict__ out, ProjectGrid g) {
  using A = acc_t<T>;
  constexpr int kJ = ChunkOf<A>::kJ;
  __shared__ Stage<A> st;

  int64_t b = blockIdx.x;
  const int64_t kb = b % g.k_blocks;
  b /= g.k_blocks;
  const int64_t pt = b % g.p_tiles;
  const int64_t video = b / g.p_tiles;
  const int64_t k0 = kb * kTileK, p0 = pt * kTileP;
  const int nk = min_int(kTileK, g.C - k0), np = min_int(kTileP, g.HW - p0);
  const int tid = static_cast<int>(threadIdx.x);

  int kk[kPerThread], pp[kPerThread];
  bool active[kPerThread];
  int64_t off[kPerThread];  // offset in a frame
  A s0[kPerThread], b0[kPerThread], s1[kPerThread], b1[kPerThread];
  A w0[kPerThread], w1[kPerThread], w2[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    element_of<kCL>(tid, i, kk[i], pp[i]);
    active[i] = kk[i] < nk && pp[i] < np;
    const int64_t k = k0 + kk[i], p = p0 + pp[i];
    off[i] = kCL ? p * g.C + k : k * g.HW + p;
    s0[i] = b0[i] = s1[i] = b1[i] = w0[i] = w1[i] = w2[i] = A(0);
    if (active[i]) {
      s0[i] = to_acc(scale[k]);
      s1[i] = to_acc(scale[g.C + k]);
      b0[i] = to_acc(bias[k]);
      b1[i] = to_acc(bias[g.C + k]);
      w0[i] = to_acc(taps[3 * k]);
      w1[i] = to_acc(taps[3 * k + 1]);
      w2[i] = to_acc(taps[3 * k + 2]);
    }
  }

  // With c <= kJ the W block stays staged for all frames (the first projection's barrier
  // publishes it); otherwise every chunk of every frame restages it.
  const bool single = g.c <= kJ;
  if (single) stage_weight<T, A>(st, w, g, k0, 0, static_cast<int>(g.c));

  // e of frame t of the video at the thread's elements (zero where inactive).
  auto excite = [&](int64_t t, A (&e)[kPerThread]) {
    const int64_t f = video * g.T + t;
    A z0[kPerThread], z1[kPerThread];
    project<T, kCL>(st, w, m, g, f, k0, p0, np, !single, true, kk, pp, z0, z1);
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      e[i] = A(0);
      if (active[i]) {
        const A fa = sigmoid_acc(s0[i] * z0[i] + b0[i]);
        const A fb = sigmoid_acc(s1[i] * z1[i] + b1[i]);
        e[i] = to_acc(x[f * g.frame + off[i]]) * gate_of(fa, fb);
      }
    }
  };

  A e_prev[kPerThread], e_cur[kPerThread], e_next[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) e_prev[i] = A(0);
  excite(0, e_cur);
  for (int64_t t = 0; t < g.T; ++t) {
    if (t + 1 < g.T) {
      excite(t + 1, e_next);
    } else {
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) e_next[i] = A(0);
    }
    // The zero padding is multiplied by the taps, as in the reference (docs/math.md §6).
    const int64_t base = (video * g.T + t) * g.frame;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      if (active[i]) {
        out[base + off[i]] =
            from_acc<T>(w0[i] * e_prev[i] + w1[i] * e_cur[i] + w2[i] * e_next[i]);
      }
      e_prev[i] = e_cur[i];
      e_cur[i] = e_next[i];
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward, stage 1: input gradients and per-block partial rows of the parameter gradients

template <typename T, bool kCL>
__global__ void __launch_bounds__(kThreads)
    project_backward_kernel(const T* __restrict__ gout, const T* __restrict__ x,
                            const T* __restrict__ m, const T* __restrict__ w,
                            const T* __restrict__ scale, const T* __restrict__ bias,
                            const T* __restrict__ taps, T* __restrict__ dx, T* __restrict__ dm,
                            acc_t<T>* __restrict__ partial, ProjectGrid g) {
  using A = acc_t<T>;
  constexpr int kJ = ChunkOf<A>::kJ;
  constexpr int kGroup = ChunkOf<A>::kGroup;
  // Gradient entries of `mixed` (direction, mid channel, pixel) per thread and staged chunk.
  constexpr int kEntries = 2 * kJ * kTileP / kThreads;
  static_assert(2 * kJ * kTileP % kThreads == 0, "entries must split evenly");
  __shared__ Stage<A> st;
  __shared__ A us[2][kTileK][kTileP];      // u_d = scale_d * dy_d of the channel block
  __shared__ A red[kTileK][kTileP + 1];    // one per-element quantity, for the channel sums

  int64_t b = blockIdx.x;
  const int64_t jg = b % g.j_groups;
  b /= g.j_groups;
  const int64_t pt = b % g.p_tiles;
  const int64_t f = b / g.p_tiles;  // frame
  const int64_t t = f % g.T;
  const bool has_prev = t > 0, has_next = t + 1 < g.T;
  const int64_t p0 = pt * kTileP;
  const int np = min_int(kTileP, g.HW - p0);
  const int tid = static_cast<int>(threadIdx.x);
  // The first group also owns dx and the per-channel partials; every group its columns of W.
  const bool lead = jg == 0;
  const int64_t jg0 = jg * kJ * kGroup;
  A* __restrict__ part = partial + (f * g.p_tiles + pt) * g.n_cols;

  // With c <= kJ the tile's mixture is staged once for all channel blocks, and the W block of
  // the projection serves the gradient products too.
  const bool single = g.c <= kJ;
  if (single) stage_mixed<T, A, kCL>(st, m, g, f, p0, np, 0, static_cast<int>(g.c));

  A dmacc[kGroup][kEntries];
#pragma unroll
  for (int q = 0; q < kGroup; ++q) {
#pragma unroll
    for (int r = 0; r < kEntries; ++r) dmacc[q][r] = A(0);
  }
  // Entry r of a staged chunk: direction d, mid channel jj, pixel pp, in memory order.
  auto entry_of = [&](int r, int& d, int& jj, int& pp) {
    mixed_entry_of<kCL>(tid + r * kThreads, kJ, d, jj, pp);
  };

  int kk[kPerThread], pp[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) element_of<kCL>(tid, i, kk[i], pp[i]);

  for (int64_t kb = 0; kb < g.k_blocks; ++kb) {
    const int64_t k0 = kb * kTileK;
    const int nk = min_int(kTileK, g.C - k0);

    // Phase A: z_d of the channel block (the barrier at its start also ends the previous
    // block's reads of `us`).
    A z0[kPerThread], z1[kPerThread];
    project<T, kCL>(st, w, m, g, f, k0, p0, np, true, !single, kk, pp, z0, z1);

    // Phase B: per element, dx, the gradient u_d reaching the projection and the terms of
    // the per-channel parameter gradients (7 per element: taps 0-2, scale, bias per direction).
    A terms[kPerThread][7];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      A u0 = A(0), u1 = A(0);
#pragma unroll
      for (int q = 0; q < 7; ++q) terms[i][q] = A(0);
      if (kk[i] < nk && pp[i] < np) {
        const int64_t k = k0 + kk[i], p = p0 + pp[i];
        const int64_t off = f * g.frame + (kCL ? p * g.C + k : k * g.HW + p);
        const A s0 = to_acc(scale[k]), s1 = to_acc(scale[g.C + k]);
        const A fa = sigmoid_acc(s0 * z0[i] + to_acc(bias[k]));
        const A fb = sigmoid_acc(s1 * z1[i] + to_acc(bias[g.C + k]));
        const A gate = gate_of(fa, fb);
        const A xv = to_acc(x[off]);
        const A e = xv * gate;
        const A gh = to_acc(gout[off]);
        const A gp = has_prev ? to_acc(gout[off - g.frame]) : A(0);
        const A gn = has_next ? to_acc(gout[off + g.frame]) : A(0);
        // The shift's input gradient: the taps whose frame lies outside the video are left
        // out, not multiplied by a zero gradient (docs/math.md §6).
        const A ge = (has_next ? to_acc(taps[3 * k]) * gn : A(0)) + to_acc(taps[3 * k + 1]) * gh +
                     (has_prev ? to_acc(taps[3 * k + 2]) * gp : A(0));
        if (lead) dx[off] = from_acc<T>(ge * gate);
        const A gx = A(0.5) * ge * xv;
        const A dy0 = gx * fa * (A(1) - fa);
        const A dy1 = gx * fb * (A(1) - fb);
        terms[i][0] = has_next ? gn * e : A(0);
        terms[i][1] = gh * e;
        terms[i][2] = has_prev ? gp * e : A(0);
        terms[i][3] = dy0 * z0[i];
        terms[i][4] = dy1 * z1[i];
        terms[i][5] = dy0;
        terms[i][6] = dy1;
        u0 = s0 * dy0;
        u1 = s1 * dy1;
      }
      us[0][kk[i]][pp[i]] = u0;
      us[1][kk[i]][pp[i]] = u1;
    }
    __syncthreads();

    // Per-channel sums over the tile's pixels, in pixel order, into this block's row.
    if (lead) {
#pragma unroll
      for (int q = 0; q < 7; ++q) {
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) red[kk[i]][pp[i]] = terms[i][q];
        __syncthreads();
        if (tid < nk) {
          A s = A(0);
          for (int p = 0; p < np; ++p) s += red[tid][p];
          part[q * g.C + k0 + tid] = s;
        }
        __syncthreads();
      }
    }

    // Phase C, per staged chunk of this group's mid channels: the block's share of dW
    // (sum over the tile's pixels and both directions of u_d m_d^T) and dm_d += W^T u_d.
#pragma unroll
    for (int q = 0; q < kGroup; ++q) {
      const int64_t j0 = jg0 + static_cast<int64_t>(q) * kJ;
      if (j0 < g.c) {
        const int jn = min_int(kJ, g.c - j0);
        if (!single) {
          __syncthreads();
          stage_weight<T, A>(st, w, g, k0, j0, jn);
          stage_mixed<T, A, kCL>(st, m, g, f, p0, np, j0, jn);
          __syncthreads();
        }
        for (int idx = tid; idx < kTileK * jn; idx += kThreads) {
          const int ck = idx / jn, cj = idx % jn;
          if (ck < nk) {
            A s = A(0);
            for (int p = 0; p < np; ++p) {
              s += us[0][ck][p] * st.m[0][cj][p] + us[1][ck][p] * st.m[1][cj][p];
            }
            part[7 * g.C + (k0 + ck) * g.c + j0 + cj] = s;
          }
        }
#pragma unroll
        for (int r = 0; r < kEntries; ++r) {
          int d, jj, ep;
          entry_of(r, d, jj, ep);
          if (jj < jn && ep < np) {
            A s = dmacc[q][r];
            for (int c2 = 0; c2 < nk; ++c2) s += st.w[c2][jj] * us[d][c2][ep];
            dmacc[q][r] = s;
          }
        }
      }
    }
  }

  // The gradient of `mixed` at the tile's pixels, complete: written once.
#pragma unroll
  for (int q = 0; q < kGroup; ++q) {
    const int64_t j0 = jg0 + static_cast<int64_t>(q) * kJ;
    if (j0 < g.c) {
      const int jn = min_int(kJ, g.c - j0);
#pragma unroll
      for (int r = 0; r < kEntries; ++r) {
        int d, jj, ep;
        entry_of(r, d, jj, ep);
        if (jj < jn && ep < np) {
          const int64_t j = j0 + jj, p = p0 + ep;
          dm[d * g.mixed_dir + f * g.mid_frame + (kCL ? p * g.c + j : j * g.HW + p)] =
              from_acc<T>(dmacc[q][r]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward, stage 2: every column of the partial rows summed in a fixed order (8 strands of
// rows per column, each ascending, then the strands in order), written to the parameter
// gradients in T.

constexpr int kSumCols = 32;
constexpr int kSumStrands = kThreads / kSumCols;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    project_sum_rows_kernel(const acc_t<T>* __restrict__ partial, int64_t rows, int64_t C,
                            int64_t c, T* __restrict__ d_weight, T* __restrict__ d_scale,
                            T* __restrict__ d_bias, T* __restrict__ d_shift) {
  using A = acc_t<T>;
  __shared__ A s[kSumStrands][kSumCols];
  const int lane = static_cast<int>(threadIdx.x) % kSumCols;
  const int strand = static_cast<int>(threadIdx.x) / kSumCols;
  const int64_t n_cols = 7 * C + C * c;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kSumCols + lane;
  A acc = A(0);
  if (col < n_cols) {
    for (int64_t r = strand; r < rows; r += kSumStrands) acc += partial[r * n_cols + col];
  }
  s[strand][lane] = acc;
  __syncthreads();
  if (strand == 0 && col < n_cols) {
    A total = A(0);
    for (int k = 0; k < kSumStrands; ++k) total += s[k][lane];
    if (col < 3 * C) {
      d_shift[(col % C) * 3 + col / C] = from_acc<T>(total);  // (C, 1, 3)
    } else if (col < 5 * C) {
      d_scale[col - 3 * C] = from_acc<T>(total);
    } else if (col < 7 * C) {
      d_bias[col - 5 * C] = from_acc<T>(total);
    } else {
      d_weight[col - 7 * C] = from_acc<T>(total);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Launch helpers

int64_t element_bytes(DType dtype) {
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

ProjectGrid project_grid(const ProjectShape& s, DType dtype) {
  ProjectGrid g;
  g.videos = s.videos;
  g.T = s.segments;
  g.C = s.channels;
  g.c = s.mid_channels;
  g.HW = s.pixels;
  g.channels_last = s.channels_last;
  g.frames = s.videos * s.segments;
  g.frame = s.channels * s.pixels;
  g.mid_frame = s.mid_channels * s.pixels;
  g.mixed_dir = g.frames * g.mid_frame;
  g.p_tiles = (s.pixels + kTileP - 1) / kTileP;
  g.k_blocks = (s.channels + kTileK - 1) / kTileK;
  const int64_t per_group = dtype == DType::kFloat64
                                ? ChunkOf<double>::kJ * ChunkOf<double>::kGroup
                                : ChunkOf<float>::kJ * ChunkOf<float>::kGroup;
  g.j_groups = (s.mid_channels + per_group - 1) / per_group;
  g.n_cols = 7 * s.channels + s.channels * s.mid_channels;
  return g;
}

bool empty_shape(const ProjectShape& s) {
  return s.videos <= 0 || s.segments <= 0 || s.channels <= 0 || s.mid_channels <= 0 ||
         s.pixels <= 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

cudaError_t project_excite_shift_forward(const void* x, const void* mixed, const void* weight,
                                         const void* scale, const void* bias,
                                         const void* shift_weight, void* out, DType dtype,
                                         const ProjectShape& shape, cudaStream_t stream) {
  if (empty_shape(shape)) return cudaSuccess;
  const ProjectGrid g = project_grid(shape, dtype);
  const int64_t blocks = g.videos * g.p_tiles * g.k_blocks;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* px = static_cast<const T*>(x);
    const auto* pm = static_cast<const T*>(mixed);
    const auto* pw = static_cast<const T*>(weight);
    const auto* ps = static_cast<const T*>(scale);
    const auto* pb = static_cast<const T*>(bias);
    const auto* pt = static_cast<const T*>(shift_weight);
    auto* po = static_cast<T*>(out);
    const auto grid = static_cast<unsigned int>(blocks);
    if (g.channels_last) {
      project_forward_kernel<T, true>
          <<<grid, kThreads, 0, stream>>>(px, pm, pw, ps, pb, pt, po, g);
    } else {
      project_forward_kernel<T, false>
          <<<grid, kThreads, 0, stream>>>(px, pm, pw, ps, pb, pt, po, g);
    }
    return cudaGetLastError();
  });
}

int64_t project_excite_shift_backward_workspace_bytes(const ProjectShape& shape, DType dtype) {
  if (empty_shape(shape)) return 0;
  const ProjectGrid g = project_grid(shape, dtype);
  const int64_t acc_bytes = dtype == DType::kFloat64 ? 8 : 4;
  return g.frames * g.p_tiles * g.n_cols * acc_bytes;
}

cudaError_t project_excite_shift_backward(const void* grad_out, const void* x, const void* mixed,
                                          const void* weight, const void* scale,
                                          const void* bias, const void* shift_weight,
                                          void* grad_x, void* grad_mixed, void* grad_weight,
                                          void* grad_scale, void* grad_bias,
                                          void* grad_shift_weight, void* workspace, DType dtype,
                                          const ProjectShape& shape, cudaStream_t stream) {
  const int64_t C = shape.channels > 0 ? shape.channels : 0;
  const int64_t c = shape.mid_channels > 0 ? shape.mid_channels : 0;
  if (empty_shape(shape)) {
    // No elements: every parameter gradient is an empty sum (all-zero bits are zero in every
    // dtype); grad_x and grad_mixed have no elements.
    const int64_t bytes = element_bytes(dtype);
    cudaError_t status = cudaSuccess;
    if (C * c > 0) status = cudaMemsetAsync(grad_weight, 0, C * c * bytes, stream);
    if (status == cudaSuccess && C > 0) {
      status = cudaMemsetAsync(grad_scale, 0, 2 * C * bytes, stream);
    }
    if (status == cudaSuccess && C > 0) {
      status = cudaMemsetAsync(grad_bias, 0, 2 * C * bytes, stream);
    }
    if (status == cudaSuccess && C > 0) {
      status = cudaMemsetAsync(grad_shift_weight, 0, 3 * C * bytes, stream);
    }
    return status;
  }
  const ProjectGrid g = project_grid(shape, dtype);
  const int64_t blocks = g.frames * g.p_tiles * g.j_groups;
  const int64_t rows = g.frames * g.p_tiles;
  const int64_t sum_blocks = (g.n_cols + kSumCols - 1) / kSumCols;
  if (blocks > 0x7fffffffLL || sum_blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* pg = static_cast<const T*>(grad_out);
    const auto* px = static_cast<const T*>(x);
    const auto* pm = static_cast<const T*>(mixed);
    const auto* pw = static_cast<const T*>(weight);
    const auto* ps = static_cast<const T*>(scale);
    const auto* pb = static_cast<const T*>(bias);
    const auto* pt = static_cast<const T*>(shift_weight);
    auto* dx = static_cast<T*>(grad_x);
    auto* dm = static_cast<T*>(grad_mixed);
    auto* partial = static_cast<acc_t<T>*>(workspace);
    const auto grid = static_cast<unsigned int>(blocks);
    if (g.channels_last) {
      project_backward_kernel<T, true><<<grid, kThreads, 0, stream>>>(
          pg, px, pm, pw, ps, pb, pt, dx, dm, partial, g);
    } else {
      project_backward_kernel<T, false><<<grid, kThreads, 0, stream>>>(
          pg, px, pm, pw, ps, pb, pt, dx, dm, partial, g);
    }
    project_sum_rows_kernel<T><<<static_cast<unsigned int>(sum_blocks), kThreads, 0, stream>>>(
        partial, rows, g.C, g.c, static_cast<T*>(grad_weight), static_cast<T*>(grad_scale),
        static_cast<T*>(grad_bias), static_cast<T*>(grad_shift_weight));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace tdn
