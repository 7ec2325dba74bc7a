// CPU kernels of the difference-and-pool operators: temporal_diff_pool (S-TDM) and
// cross_segment_diff (L-TDM), forward and backward.
//
// Layout. Both work on "planes": in a contiguous tensor a plane is one channel's H x W map
// (V = 1 value per pixel); in a channels_last tensor it is a whole H x W x C frame (V = C).
// Pooling then reads pixel (r, q) of a plane at (r*W + q)*V, whatever the layout.
//
// The backwards are gathers (each input element sums what it contributed to), so they need no
// atomics and write every element exactly once.

#include "cpu_kernels.h"

namespace tdn {
namespace cpu {
namespace {

// Average of the k x k window of `src` (rows of W pixels of V values) at output pixel
// (oh, ow), value v; summed in the window's row-major order like avg_pool2d, then divided.
template <typename A, typename Load>
inline A window_mean(Load load, int64_t oh, int64_t ow, int64_t v, int64_t k, int64_t W,
                     int64_t V) {
  A s = 0;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) s += load(((oh * k + i) * W + ow * k + j) * V + v);
  return s / static_cast<A>(k * k);
}

// 2x2 average of (hi - lo) over two input rows, summed in avg_pool2d's window order.
template <typename A>
TDN_VECTORIZE void diff_pool2_row(const A* __restrict__ hi0, const A* __restrict__ lo0,
                                  const A* __restrict__ hi1, const A* __restrict__ lo1,
                                  A* __restrict__ out, int64_t wo) {
  for (int64_t i = 0; i < wo; ++i) {
    A s = hi0[2 * i] - lo0[2 * i];
    s += hi0[2 * i + 1] - lo0[2 * i + 1];
    s += hi1[2 * i] - lo1[2 * i];
    s += hi1[2 * i + 1] - lo1[2 * i + 1];
    out[i] = s / A(4);
  }
}

// Gradients of feat and aligned at one segment from the four total difference gradients.
template <typename A>
TDN_VECTORIZE void segment_grads_row(const A* __restrict__ f_here, const A* __restrict__ b_here,
                                     const A* __restrict__ f_prev, const A* __restrict__ b_next,
                                     A* __restrict__ g_feat, A* __restrict__ g_aligned, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    g_feat[i] = -f_here[i] - b_here[i];
    g_aligned[i] = f_prev[i] + b_next[i];
  }
}

template <typename A>
TDN_VECTORIZE void sub_row(const A* __restrict__ a, const A* __restrict__ b, A* __restrict__ out,
                           int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
}

// One direction of a contiguous plane (one channel, H x W) in one call: d = a - f, and its
// 2x2 average pool from the rounded d (summed in avg_pool2d's window order), as the reference
// pools its stored tensor.
template <typename A>
TDN_VECTORIZE void diff_pool_plane(const A* __restrict__ a, const A* __restrict__ f,
                                   A* __restrict__ d, A* __restrict__ pooled, int64_t H,
                                   int64_t W, int64_t Ho, int64_t Wo) {
  for (int64_t i = 0; i < H * W; ++i) d[i] = a[i] - f[i];
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const A* __restrict__ r0 = d + 2 * oh * W;
    const A* __restrict__ r1 = r0 + W;
    for (int64_t ow = 0; ow < Wo; ++ow)
      pooled[oh * Wo + ow] = (r0[2 * ow] + r0[2 * ow + 1] + r1[2 * ow] + r1[2 * ow + 1]) / A(4);
  }
}

// The total gradient of one direction over full-size rows [r0, r1) of a contiguous plane
// (one channel, W elements a row), written once: its own gradient d plus, inside the 2x2
// windows of pooled rows [oh0, oh1), a quarter of the pooled gradient. (A copy and then a
// pass adding each pooled row, one call per row, cost about twice as much at 14x14.) Rows
// and the column an odd size leaves outside every window keep d.
template <typename A>
TDN_VECTORIZE void total_plane_rows(const A* __restrict__ d, const A* __restrict__ pooled,
                                    A* __restrict__ out, int64_t r0, int64_t r1, int64_t oh0,
                                    int64_t oh1, int64_t W, int64_t Wo) {
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const A* __restrict__ src = pooled + oh * Wo;
    const int64_t top = (2 * oh - r0) * W, bottom = top + W;
    for (int64_t ow = 0; ow < Wo; ++ow) {
      const A share = src[ow] / A(4);
      out[top + 2 * ow] = d[top + 2 * ow] + share;
      out[top + 2 * ow + 1] = d[top + 2 * ow + 1] + share;
      out[bottom + 2 * ow] = d[bottom + 2 * ow] + share;
      out[bottom + 2 * ow + 1] = d[bottom + 2 * ow + 1] + share;
    }
    for (int64_t w = 2 * Wo; w < W; ++w) {
      out[top + w] = d[top + w];
      out[bottom + w] = d[bottom + w];
    }
  }
  for (int64_t i = (2 * oh1 - r0) * W; i < (r1 - r0) * W; ++i) out[i] = d[i];
}

// row[ow*k + i] = plus[ow]/kk - minus[ow]/kk for i < k (divided like avg_pool2d's backward).
template <typename A>
TDN_VECTORIZE void pooled_grad_row(const A* __restrict__ plus, const A* __restrict__ minus, A kk,
                                   A* __restrict__ row, int64_t wo, int64_t k) {
  if (k == 2) {
    for (int64_t i = 0; i < wo; ++i) {
      const A v = plus[i] / kk - minus[i] / kk;
      row[2 * i] = v;
      row[2 * i + 1] = v;
    }
    return;
  }
  for (int64_t i = 0; i < wo; ++i) {
    const A v = plus[i] / kk - minus[i] / kk;
    for (int64_t q = 0; q < k; ++q) row[i * k + q] = v;
  }
}

// ---------------------------------------------------------------------------------------
// temporal_diff_pool: out block i = avgpool_k(x_{i+1} - x_i)

at::Tensor temporal_diff_pool_cpu(const at::Tensor& x_in, int64_t frames, int64_t k) {
  check_temporal_diff_pool(x_in, frames, k);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  const int64_t B = x.size(0), Cin = x.size(1), c = Cin / frames, Cout = c * (frames - 1);
  const int64_t H = x.size(2), W = x.size(3), Ho = H / k, Wo = W / k;
  auto out = empty_4d(x, {B, Cout, Ho, Wo}, fmt);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tdp_fwd", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    if (!is_channels_last(fmt)) {
      // One output row per task: plane j of the output from planes j+c and j of the input.
      const int64_t rows = B * Cout * Ho;
      at::parallel_for(
          0, rows, std::max<int64_t>(1, kGrain / (Wo * k * k)), [&](int64_t r0, int64_t r1) {
            // k == 2 (TDN's case): rows converted to acc_t and pooled by a vectorised loop.
            std::vector<A> buf(k == 2 ? static_cast<size_t>(5 * W) : 0);
            for (int64_t r = r0; r < r1; ++r) {
              const int64_t oh = r % Ho, j = (r / Ho) % Cout, b = r / (Ho * Cout);
              const scalar_t* lo = px + (b * Cin + j) * H * W;
              const scalar_t* hi = lo + c * H * W;
              scalar_t* dst = po + ((b * Cout + j) * Ho + oh) * Wo;
              if (k == 2) {
                const int64_t top = 2 * oh * W;
                A* o = out_acc(dst, buf.data() + 4 * W);
                diff_pool2_row(load_acc(hi + top, buf.data(), W),
                               load_acc(lo + top, buf.data() + W, W),
                               load_acc(hi + top + W, buf.data() + 2 * W, W),
                               load_acc(lo + top + W, buf.data() + 3 * W, W), o, Wo);
                store_acc(dst, o, Wo);
                continue;
              }
              auto diff = [&](int64_t i) { return static_cast<A>(hi[i]) - static_cast<A>(lo[i]); };
              for (int64_t ow = 0; ow < Wo; ++ow)
                dst[ow] = static_cast<scalar_t>(window_mean<A>(diff, oh, ow, 0, k, W, 1));
            }
          });
    } else {
      // One output pixel row per task; inside a pixel, out channel v reads x channels v+c, v.
      const int64_t rows = B * Ho;
      at::parallel_for(
          0, rows, std::max<int64_t>(1, kGrain / (Wo * Cin * k * k)), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
              const int64_t oh = r % Ho, b = r / Ho;
              const scalar_t* plane = px + b * H * W * Cin;
              scalar_t* dst = po + (b * Ho + oh) * Wo * Cout;
              for (int64_t ow = 0; ow < Wo; ++ow) {
                for (int64_t v = 0; v < Cout; ++v) {
                  auto diff = [&](int64_t i) {
                    return static_cast<A>(plane[i + c]) - static_cast<A>(plane[i]);
                  };
                  dst[ow * Cout + v] =
                      static_cast<scalar_t>(window_mean<A>(diff, oh, ow, v, k, W, Cin));
                }
              }
            }
          });
    }
  });
  return out;
}

at::Tensor temporal_diff_pool_backward_cpu(const at::Tensor& g_in, int64_t frames, int64_t k,
                                           int64_t H, int64_t W) {
  check_temporal_diff_pool_backward(g_in, frames, k, H, W);
  const auto fmt = layout_of(g_in);
  const auto g = g_in.contiguous(fmt);
  const int64_t B = g.size(0), Cout = g.size(1), c = Cout / (frames - 1), Cin = c * frames;
  const int64_t Ho = H / k, Wo = W / k;
  auto gx = empty_4d(g, {B, Cin, H, W}, fmt);
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "tdp_bwd", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* pg = g.const_data_ptr<scalar_t>();
    scalar_t* px = gx.mutable_data_ptr<scalar_t>();
    // Divided, not multiplied by 1/k^2: avg_pool2d's backward does the same.
    const A kk = static_cast<A>(k * k);
    const scalar_t zero = static_cast<scalar_t>(0);
    if (!is_channels_last(fmt)) {
      // The k input rows of pooled row oh are equal: (G[j-c] - G[j]) / k^2 with each value
      // repeated k times. One task per (b, j, oh) computes the first and copies it.
      const int64_t units = B * Cin * Ho;
      at::parallel_for(
          0, units, std::max<int64_t>(1, kGrain / (k * W)), [&](int64_t u0, int64_t u1) {
            std::vector<A> buf(static_cast<size_t>(3 * Wo + Wo * k));
            A *zeros = buf.data(), *lp = zeros + Wo, *lm = lp + Wo, *row = lm + Wo;
            std::fill(zeros, zeros + Wo, A(0));
            for (int64_t u = u0; u < u1; ++u) {
              const int64_t oh = u % Ho, j = (u / Ho) % Cin, b = u / (Ho * Cin);
              scalar_t* plane = px + (b * Cin + j) * H * W;
              scalar_t* dst = plane + oh * k * W;
              // grad_out rows this input row takes from with + (block j-c) and - (block j).
              const A* plus =
                  j >= c ? load_acc(pg + ((b * Cout + j - c) * Ho + oh) * Wo, lp, Wo) : zeros;
              const A* minus =
                  j < Cout ? load_acc(pg + ((b * Cout + j) * Ho + oh) * Wo, lm, Wo) : zeros;
              pooled_grad_row(plus, minus, kk, row, Wo, k);
              for (int64_t i = 0; i < Wo * k; ++i) dst[i] = static_cast<scalar_t>(row[i]);
              std::fill(dst + Wo * k, dst + W, zero);
              for (int64_t i = 1; i < k; ++i) std::copy(dst, dst + W, dst + i * W);
              if (oh == Ho - 1) std::fill(plane + Ho * k * W, plane + H * W, zero);
            }
          });
    } else {
      // Input pixel row (b, h); inside a pixel, channel j takes +G[j-c] and -G[j].
      const int64_t rows = B * H;
      at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / (W * Cin)),
                       [&](int64_t r0, int64_t r1) {
                         for (int64_t r = r0; r < r1; ++r) {
                           const int64_t h = r % H, b = r / H;
                           scalar_t* dst = px + r * W * Cin;
                           if (h >= Ho * k) {
                             std::fill(dst, dst + W * Cin, zero);
                             continue;
                           }
                           const scalar_t* grow = pg + (b * Ho + h / k) * Wo * Cout;
                           for (int64_t w = 0; w < Wo * k; ++w) {
                             const scalar_t* G = grow + (w / k) * Cout;
                             scalar_t* d = dst + w * Cin;
                             for (int64_t j = 0; j < c; ++j)
                               d[j] = static_cast<scalar_t>(-static_cast<A>(G[j]) / kk);
                             for (int64_t j = c; j < Cout; ++j)
                               d[j] = static_cast<scalar_t>(static_cast<A>(G[j - c]) / kk -
                                                            static_cast<A>(G[j]) / kk);
                             for (int64_t j = Cout; j < Cin; ++j)
                               d[j] = static_cast<scalar_t>(static_cast<A>(G[j - c]) / kk);
                           }
                           std::fill(dst + Wo * k * Cin, dst + W * Cin, zero);
                         }
                       });
    }
  });
  return gx;
}

// ---------------------------------------------------------------------------------------
// cross_segment_diff

struct PlaneGeometry {
  int64_t planes, planes_per_frame, V, H, W, Ho, Wo, T;
  PlaneGeometry(const at::Tensor& t, at::MemoryFormat fmt, int64_t num_segments)
      : H(t.size(2)), W(t.size(3)), Ho(t.size(2) / 2), Wo(t.size(3) / 2), T(num_segments) {
    if (is_channels_last(fmt)) {
      planes = t.size(0);
      planes_per_frame = 1;
      V = t.size(1);
    } else {
      planes = t.size(0) * t.size(1);
      planes_per_frame = t.size(1);
      V = 1;
    }
  }
  int64_t plane_size() const { return H * W * V; }
  int64_t pooled_size() const { return Ho * Wo * V; }
  int64_t segment(int64_t plane) const { return (plane / planes_per_frame) % T; }
  int64_t frame_stride() const { return planes_per_frame * plane_size(); }  // elements
};

std::tuple<at::Tensor, at::Tensor> cross_segment_diff_cpu(const at::Tensor& feat_in,
                                                          const at::Tensor& aligned_in,
                                                          int64_t num_segments) {
  check_cross_segment_diff(feat_in, aligned_in, num_segments);
  const auto fmt = layout_of(feat_in);
  const auto feat = feat_in.contiguous(fmt), aligned = aligned_in.contiguous(fmt);
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3);
  auto diff = empty_stacked(feat, B, C, H, W, fmt);
  auto pooled = empty_stacked(feat, B, C, H / 2, W / 2, fmt);
  if (feat.numel() == 0) return {diff, pooled};
  const PlaneGeometry geo(feat, fmt, num_segments);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "csd_fwd", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* pf = feat.const_data_ptr<scalar_t>();
    const scalar_t* pa = aligned.const_data_ptr<scalar_t>();
    scalar_t* pd[2] = {diff[0].mutable_data_ptr<scalar_t>(), diff[1].mutable_data_ptr<scalar_t>()};
    scalar_t* pp[2] = {pooled[0].mutable_data_ptr<scalar_t>(),
                       pooled[1].mutable_data_ptr<scalar_t>()};
    const int64_t ps = geo.plane_size(), pps = geo.pooled_size(), fs = geo.frame_stride();
    const int64_t V = geo.V, Wd = geo.W, Wo = geo.Wo, Ho = geo.Ho;
    at::parallel_for(
        0, geo.planes, std::max<int64_t>(1, kGrain / (4 * ps)), [&](int64_t p0, int64_t p1) {
          for (int64_t p = p0; p < p1; ++p) {
            const int64_t t = geo.segment(p);
            const scalar_t* f = pf + p * ps;
            for (int dir = 0; dir < 2; ++dir) {
              // Forward: next segment's aligned minus this one's feat; backward: previous one's.
              const bool valid = dir == 0 ? t + 1 < geo.T : t >= 1;
              const scalar_t* a = pa + p * ps + (dir == 0 ? fs : -fs);
              scalar_t* d = pd[dir] + p * ps;
              scalar_t* o = pp[dir] + p * pps;
              if (!valid) {
                std::fill(d, d + ps, static_cast<scalar_t>(0));
                std::fill(o, o + pps, static_cast<scalar_t>(0));
                continue;
              }
              if constexpr (std::is_same_v<scalar_t, A>) {
                if (V == 1) {
                  diff_pool_plane(reinterpret_cast<const A*>(a), reinterpret_cast<const A*>(f),
                                  reinterpret_cast<A*>(d), reinterpret_cast<A*>(o), geo.H, Wd,
                                  Ho, Wo);
                  continue;
                }
                sub_row(a, f, d, ps);
              } else {
                for (int64_t i = 0; i < ps; ++i)
                  d[i] = static_cast<scalar_t>(static_cast<A>(a[i]) - static_cast<A>(f[i]));
              }
              // Pool the rounded differences, as the reference pools its stored tensor.
              for (int64_t oh = 0; oh < Ho; ++oh) {
                const scalar_t* r0 = d + (2 * oh) * Wd * V;
                const scalar_t* r1 = r0 + Wd * V;
                scalar_t* orow = o + oh * Wo * V;
                for (int64_t ow = 0; ow < Wo; ++ow)
                  for (int64_t v = 0; v < V; ++v) {
                    const int64_t i = 2 * ow * V + v;
                    const A s = static_cast<A>(r0[i]) + static_cast<A>(r0[i + V]) +
                                static_cast<A>(r1[i]) + static_cast<A>(r1[i + V]);
                    orow[ow * V + v] = static_cast<scalar_t>(s / A(4));
                  }
              }
            }
          }
        });
  });
  return {diff, pooled};
}

// The backward's tasks: each walks one block of pooled-row pairs of one plane position (a
// channel of a video in contiguous maps, a video's whole frame in channels_last ones) through
// the T segments, so that each total gradient plane (a direction's own gradient plus its
// pooled gradient spread over the 2x2 windows) is formed once and used by both outputs:
//   g_feat[t] = -Tf[t] - Tb[t],   g_aligned[t] = Tf[t-1] + Tb[t+1],
// Tf[t] the total reaching diff_fwd[t] (zero padding for the last segment), Tb[t] the one
// reaching diff_bwd[t] (padding for the first). A frame is cut into row blocks only when the
// plane positions alone give the two threads too few tasks (one video in channels_last).
struct SegmentBlocks {
  int64_t blocks, pooled_rows_per_block;
  explicit SegmentBlocks(const PlaneGeometry& geo, int64_t videos) {
    constexpr int64_t kMinTasks = 8;
    const int64_t columns = videos * geo.planes_per_frame;
    const int64_t wanted = columns >= kMinTasks ? 1 : (kMinTasks + columns - 1) / columns;
    const int64_t want = std::max<int64_t>(1, std::min(wanted, geo.Ho));
    pooled_rows_per_block = geo.Ho == 0 ? 0 : (geo.Ho + want - 1) / want;
    blocks = geo.Ho == 0 ? 1 : (geo.Ho + pooled_rows_per_block - 1) / pooled_rows_per_block;
  }
  // Pooled rows [oh0, oh1) and full-resolution rows [r0, r1) of block b; the last block also
  // takes the row an odd height leaves outside every window.
  void rows(const PlaneGeometry& geo, int64_t b, int64_t& oh0, int64_t& oh1, int64_t& r0,
            int64_t& r1) const {
    oh0 = b * pooled_rows_per_block;
    oh1 = std::min(geo.Ho, oh0 + pooled_rows_per_block);
    r0 = 2 * oh0;
    r1 = b + 1 == blocks ? geo.H : 2 * oh1;
  }
};

std::tuple<at::Tensor, at::Tensor> cross_segment_diff_backward_cpu(const at::Tensor& gd_in,
                                                                   const at::Tensor& gp_in,
                                                                   int64_t num_segments) {
  check_cross_segment_diff_backward(gd_in, gp_in, num_segments);
  const auto fmt = layout_of(gd_in[0]);
  const at::Tensor gd[2] = {gd_in[0].contiguous(fmt), gd_in[1].contiguous(fmt)};
  const at::Tensor gp[2] = {gp_in[0].contiguous(fmt), gp_in[1].contiguous(fmt)};
  auto g_feat = empty_4d(gd[0], gd[0].sizes(), fmt);
  auto g_aligned = empty_4d(gd[0], gd[0].sizes(), fmt);
  if (g_feat.numel() == 0) return {g_feat, g_aligned};
  const PlaneGeometry geo(gd[0], fmt, num_segments);
  const int64_t videos = gd[0].size(0) / num_segments;
  const SegmentBlocks blk(geo, videos);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gd[0].scalar_type(), "csd_bwd", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* pd[2] = {gd[0].const_data_ptr<scalar_t>(), gd[1].const_data_ptr<scalar_t>()};
    const scalar_t* pp[2] = {gp[0].const_data_ptr<scalar_t>(), gp[1].const_data_ptr<scalar_t>()};
    scalar_t* pfe = g_feat.mutable_data_ptr<scalar_t>();
    scalar_t* pal = g_aligned.mutable_data_ptr<scalar_t>();
    const int64_t ps = geo.plane_size(), pps = geo.pooled_size();
    const int64_t V = geo.V, W = geo.W, Wo = geo.Wo, T = geo.T;
    const int64_t ppf = geo.planes_per_frame, row = W * V;
    const int64_t max_block = (2 * blk.pooled_rows_per_block + 1) * row;
    const int64_t tasks = videos * ppf * blk.blocks;
    const int64_t grain = std::max<int64_t>(1, kGrain / (4 * T * std::min(ps, max_block)));
    at::parallel_for(0, tasks, grain, [&](int64_t k0, int64_t k1) {
      // Rolling total planes Tf[t-1], Tf[t], Tb[t], Tb[t+1]; a zero block for the padding;
      // two output blocks for the half types.
      std::vector<A> storage(static_cast<size_t>(7 * max_block), A(0));
      A* zeros = storage.data();
      A* slot[4] = {zeros + max_block, zeros + 2 * max_block, zeros + 3 * max_block,
                    zeros + 4 * max_block};
      A *o_fe = zeros + 5 * max_block, *o_al = zeros + 6 * max_block;
      for (int64_t task = k0; task < k1; ++task) {
        const int64_t b = task % blk.blocks, column = task / blk.blocks;
        const int64_t video = column / ppf, k = column % ppf;
        int64_t oh0, oh1, r0, r1;
        blk.rows(geo, b, oh0, oh1, r0, r1);
        const int64_t n = (r1 - r0) * row, offset = r0 * row;
        // The total gradient of direction dir's plane q over this block, into buf.
        auto total = [&](int dir, int64_t q, A* buf) {
          const scalar_t* d = pd[dir] + q * ps + offset;
          const scalar_t* pq = pp[dir] + q * pps;
          if constexpr (std::is_same_v<scalar_t, A>) {
            if (V == 1) {
              total_plane_rows(reinterpret_cast<const A*>(d), reinterpret_cast<const A*>(pq), buf,
                               r0, r1, oh0, oh1, W, Wo);
              return;
            }
          }
          for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<A>(d[i]);
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            A* top = buf + (2 * oh - r0) * row;
            for (int64_t ow = 0; ow < Wo; ++ow) {
              A* t0 = top + 2 * ow * V;
              A* t1 = t0 + row;
              const scalar_t* src = pq + (oh * Wo + ow) * V;
              for (int64_t v = 0; v < V; ++v) {
                const A share = static_cast<A>(src[v]) / A(4);
                t0[v] += share;
                t0[V + v] += share;
                t1[v] += share;
                t1[V + v] += share;
              }
            }
          }
        };
        const A* f_prev = zeros;  // Tf[t-1]
        const A* b_here = zeros;  // Tb[t]
        int next_slot = 0;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t p = (video * T + t) * ppf + k;
          const bool has_next = t + 1 < T;
          // Two of the four slots hold f_prev and b_here; the other two take Tf[t], Tb[t+1].
          A* f_here = zeros;
          A* b_next = zeros;
          if (has_next) {
            f_here = slot[next_slot];
            b_next = slot[(next_slot + 1) % 4];
            next_slot = (next_slot + 2) % 4;
            total(0, p, f_here);        // diff_fwd[t] = a[t+1] - f[t]
            total(1, p + ppf, b_next);  // a[t] feeds diff_bwd[t+1]
          }
          A* fe = out_acc(pfe + p * ps + offset, o_fe);
          A* al = out_acc(pal + p * ps + offset, o_al);
          segment_grads_row(f_here, b_here, f_prev, b_next, fe, al, n);
          store_acc(pfe + p * ps + offset, fe, n);
          store_acc(pal + p * ps + offset, al, n);
          f_prev = f_here;
          b_here = b_next;
        }
      }
    });
  });
  return {g_feat, g_aligned};
}

}  // namespace
}  // namespace cpu
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CPU, m) {
  m.impl("temporal_diff_pool", &tdn::cpu::temporal_diff_pool_cpu);
  m.impl("temporal_diff_pool_backward", &tdn::cpu::temporal_diff_pool_backward_cpu);
  m.impl("cross_segment_diff", &tdn::cpu::cross_segment_diff_cpu);
  m.impl("cross_segment_diff_backward", &tdn::cpu::cross_segment_diff_backward_cpu);
}
