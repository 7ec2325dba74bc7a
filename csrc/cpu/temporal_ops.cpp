// CPU kernels of the per-element temporal operators: bidirectional_excitation,
// temporal_shift_conv and excite_shift (forward and backward).
//
// Layout. A (N*T, C, H, W) tensor, contiguous or channels_last, is a sequence of frames of
// P = C*H*W elements, and frame t+1 of a video is always P elements after frame t. Only the
// channel of a position within a frame depends on the layout (p / HW or p % C), so the kernels
// walk contiguous position chunks of a frame through all T frames and look channels up in
// per-chunk weight rows.
//
// excite_shift never materialises the excited tensor e = x * gate: a chunk keeps e for frames
// t-1, t, t+1 in three rolling buffers, so each element is excited once per pass.
//
// Weight gradient. Each (video, chunk) task accumulates g[t] * e[t-1+k] per element over all
// t, folds that into per-channel partial sums, and a second pass adds the partials of each
// channel in a fixed order. Chunks depend only on the shape, so the result does not depend on
// the number of threads: it is deterministic.

#include "cpu_kernels.h"

namespace tdn {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------
// Vectorised rows (acc_t arithmetic)

template <typename A>
TDN_VECTORIZE void excitation_row(const A* __restrict__ x, const A* __restrict__ yf,
                                  const A* __restrict__ yb, A* __restrict__ out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A sf = sigmoid_acc(yf[i]);
    const A sb = sigmoid_acc(yb[i]);
    out[i] = x[i] * (A(0.5) + A(0.5) * sf + A(0.5) * sb);
  }
}

template <typename A>
TDN_VECTORIZE void excitation_backward_row(const A* __restrict__ g, const A* __restrict__ x,
                                           const A* __restrict__ yf, const A* __restrict__ yb,
                                           A* __restrict__ dx, A* __restrict__ dyf,
                                           A* __restrict__ dyb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A sf = sigmoid_acc(yf[i]);
    const A sb = sigmoid_acc(yb[i]);
    const A gx = A(0.5) * g[i] * x[i];
    dx[i] = g[i] * (A(0.5) + A(0.5) * sf + A(0.5) * sb);
    dyf[i] = gx * sf * (A(1) - sf);
    dyb[i] = gx * sb * (A(1) - sb);
  }
}

// e = x * gate, keeping the sigmoids for the backward.
template <typename A>
TDN_VECTORIZE void excite_keep_row(const A* __restrict__ x, const A* __restrict__ yf,
                                   const A* __restrict__ yb, A* __restrict__ e, A* __restrict__ sf,
                                   A* __restrict__ sb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A f = sigmoid_acc(yf[i]);
    const A b = sigmoid_acc(yb[i]);
    sf[i] = f;
    sb[i] = b;
    e[i] = x[i] * (A(0.5) + A(0.5) * f + A(0.5) * b);
  }
}

template <typename A>
TDN_VECTORIZE void shift_row(const A* __restrict__ w0, const A* __restrict__ w1,
                             const A* __restrict__ w2, const A* __restrict__ prev,
                             const A* __restrict__ cur, const A* __restrict__ next,
                             A* __restrict__ out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = w0[i] * prev[i] + w1[i] * cur[i] + w2[i] * next[i];
}

// Gradient of the shift's input (transposed taps), accumulating the weight gradient.
// `has_prev` / `has_next`: frame t-1 / t+1 exists. Outside the video the tap's term is left
// out rather than multiplied by a zero gradient, as the reference's transposed convolution
// does: an infinite tap must not turn 0 into NaN there (docs/math.md §6, non-finite values).
template <typename A>
TDN_VECTORIZE void shift_backward_row(const A* __restrict__ w0, const A* __restrict__ w1,
                                      const A* __restrict__ w2, const A* __restrict__ g_prev,
                                      const A* __restrict__ g_cur, const A* __restrict__ g_next,
                                      const A* __restrict__ e_prev, const A* __restrict__ e_cur,
                                      const A* __restrict__ e_next, A* __restrict__ ge,
                                      A* __restrict__ acc0, A* __restrict__ acc1,
                                      A* __restrict__ acc2, int64_t n, bool has_prev,
                                      bool has_next) {
  for (int64_t i = 0; i < n; ++i) {
    ge[i] = (has_next ? w0[i] * g_next[i] : A(0)) + w1[i] * g_cur[i] +
            (has_prev ? w2[i] * g_prev[i] : A(0));
    acc0[i] += g_cur[i] * e_prev[i];
    acc1[i] += g_cur[i] * e_cur[i];
    acc2[i] += g_cur[i] * e_next[i];
  }
}

// Chain the shift input's gradient `ge` through the excitation.
template <typename A>
TDN_VECTORIZE void excite_backward_row(const A* __restrict__ ge, const A* __restrict__ x,
                                       const A* __restrict__ sf, const A* __restrict__ sb,
                                       A* __restrict__ dx, A* __restrict__ dyf, A* __restrict__ dyb,
                                       int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const A f = sf[i];
    const A b = sb[i];
    const A gx = A(0.5) * ge[i] * x[i];
    dx[i] = ge[i] * (A(0.5) + A(0.5) * f + A(0.5) * b);
    dyf[i] = gx * f * (A(1) - f);
    dyb[i] = gx * b * (A(1) - b);
  }
}

// ---------------------------------------------------------------------------------------
// bidirectional_excitation

at::Tensor bidirectional_excitation_cpu(const at::Tensor& x_in, const at::Tensor& yf_in,
                                        const at::Tensor& yb_in) {
  check_excitation(x_in, yf_in, yb_in);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), yf = yf_in.contiguous(fmt), yb = yb_in.contiguous(fmt);
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "excitation", [&] {
    using A = acc_t<scalar_t>;
    const auto* px = x.const_data_ptr<scalar_t>();
    const auto* pf = yf.const_data_ptr<scalar_t>();
    const auto* pb = yb.const_data_ptr<scalar_t>();
    auto* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, (n + kChunk - 1) / kChunk, kGrain / kChunk, [&](int64_t b0, int64_t b1) {
      A bx[kChunk], bf[kChunk], bb[kChunk], bo[kChunk];
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t i0 = blk * kChunk, len = std::min(kChunk, n - i0);
        A* o = out_acc(po + i0, bo);
        excitation_row(load_acc(px + i0, bx, len), load_acc(pf + i0, bf, len),
                       load_acc(pb + i0, bb, len), o, len);
        store_acc(po + i0, o, len);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bidirectional_excitation_backward_cpu(
    const at::Tensor& g_in, const at::Tensor& x_in, const at::Tensor& yf_in,
    const at::Tensor& yb_in) {
  check_excitation(x_in, yf_in, yb_in, &g_in);
  const auto fmt = layout_of(x_in);
  const auto g = g_in.contiguous(fmt), x = x_in.contiguous(fmt);
  const auto yf = yf_in.contiguous(fmt), yb = yb_in.contiguous(fmt);
  const auto opts = x.options().memory_format(fmt);
  auto dx = at::empty(x.sizes(), opts), dyf = at::empty(x.sizes(), opts),
       dyb = at::empty(x.sizes(), opts);
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "excitation_bwd", [&] {
    using A = acc_t<scalar_t>;
    const auto* pg = g.const_data_ptr<scalar_t>();
    const auto* px = x.const_data_ptr<scalar_t>();
    const auto* pf = yf.const_data_ptr<scalar_t>();
    const auto* pb = yb.const_data_ptr<scalar_t>();
    auto *pdx = dx.mutable_data_ptr<scalar_t>(), *pdf = dyf.mutable_data_ptr<scalar_t>(),
         *pdb = dyb.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, (n + kChunk - 1) / kChunk, kGrain / kChunk, [&](int64_t b0, int64_t b1) {
      A bg[kChunk], bx[kChunk], bf[kChunk], bb[kChunk], o1[kChunk], o2[kChunk], o3[kChunk];
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t i0 = blk * kChunk, len = std::min(kChunk, n - i0);
        A *a = out_acc(pdx + i0, o1), *b = out_acc(pdf + i0, o2), *c = out_acc(pdb + i0, o3);
        excitation_backward_row(load_acc(pg + i0, bg, len), load_acc(px + i0, bx, len),
                                load_acc(pf + i0, bf, len), load_acc(pb + i0, bb, len), a, b, c,
                                len);
        store_acc(pdx + i0, a, len);
        store_acc(pdf + i0, b, len);
        store_acc(pdb + i0, c, len);
      }
    });
  });
  return {dx, dyf, dyb};
}

// ---------------------------------------------------------------------------------------
// Temporal shift (with or without excitation): chunk geometry shared by forward and backward

struct ShiftGeometry {
  int64_t videos, T, C, HW, frame;  // frame = C*HW elements
  bool channels_last;
  int64_t chunks_per_frame, pixels_per_chunk, blocks_per_channel;

  ShiftGeometry(const at::Tensor& x, int64_t num_segments, at::MemoryFormat fmt)
      : videos(x.size(0) / num_segments),
        T(num_segments),
        C(x.size(1)),
        HW(x.size(2) * x.size(3)),
        frame(x.size(1) * x.size(2) * x.size(3)),
        channels_last(is_channels_last(fmt)) {
    if (channels_last) {
      // A chunk is a run of whole pixels (all C channels each).
      pixels_per_chunk = std::max<int64_t>(1, kChunk / std::max<int64_t>(C, 1));
      blocks_per_channel = 0;
      chunks_per_frame = (HW + pixels_per_chunk - 1) / pixels_per_chunk;
    } else {
      // A chunk is a run of one channel's plane.
      pixels_per_chunk = 0;
      blocks_per_channel = (HW + kChunk - 1) / kChunk;
      chunks_per_frame = C * blocks_per_channel;
    }
  }

  // Element range [begin, begin+len) of chunk `k` within a frame; `channel0` is its channel
  // (contiguous layout) or 0 (channels_last: channel = offset % C).
  void chunk(int64_t k, int64_t& begin, int64_t& len, int64_t& channel0) const {
    if (channels_last) {
      const int64_t pix0 = k * pixels_per_chunk;
      begin = pix0 * C;
      len = (std::min(HW, pix0 + pixels_per_chunk) - pix0) * C;
      channel0 = 0;
    } else {
      channel0 = k / blocks_per_channel;
      const int64_t hw0 = (k % blocks_per_channel) * kChunk;
      begin = channel0 * HW + hw0;
      len = std::min(kChunk, HW - hw0);
    }
  }

  // Partial weight-gradient slots per task: 3 (one channel) or 3*C (every channel).
  int64_t partial_size() const { return channels_last ? 3 * C : 3; }

  // Buffer capacity a chunk needs.
  int64_t max_len() const { return channels_last ? pixels_per_chunk * C : kChunk; }
};

// Taps of each element of a chunk: w_k[i] = weight[channel(i), 0, k].
template <typename A>
void fill_taps(const ShiftGeometry& geo, const A* w, int64_t len, int64_t channel0, A* w0, A* w1,
               A* w2) {
  for (int64_t i = 0; i < len; ++i) {
    const int64_t c = geo.channels_last ? i % geo.C : channel0;
    w0[i] = w[3 * c];
    w1[i] = w[3 * c + 1];
    w2[i] = w[3 * c + 2];
  }
}

template <typename A>
struct Buffers {
  std::vector<A> storage;
  int64_t cap;
  Buffers(int64_t count, int64_t capacity)
      : storage(static_cast<size_t>(count * capacity), A(0)), cap(capacity) {}
  A* operator[](int64_t i) { return storage.data() + i * cap; }
};

// Forward of temporal_shift_conv (kExcite = false) and excite_shift (kExcite = true).
template <bool kExcite>
at::Tensor shift_forward(const at::Tensor& x_in, const at::Tensor* yf_in, const at::Tensor* yb_in,
                         const at::Tensor& w_in, int64_t num_segments) {
  check_shift(x_in, w_in, num_segments, yf_in, yb_in);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  at::Tensor yf, yb;
  if constexpr (kExcite) {
    yf = yf_in->contiguous(fmt);
    yb = yb_in->contiguous(fmt);
  }
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  const ShiftGeometry geo(x, num_segments, fmt);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_fwd", [&] {
    using A = acc_t<scalar_t>;
    const auto w = w_in.contiguous().to(c10::CppTypeToScalarType<A>::value);
    const A* pw = w.const_data_ptr<A>();
    const auto* px = x.const_data_ptr<scalar_t>();
    const scalar_t* pf = kExcite ? yf.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = kExcite ? yb.const_data_ptr<scalar_t>() : nullptr;
    auto* po = out.mutable_data_ptr<scalar_t>();
    const int64_t tasks = geo.videos * geo.chunks_per_frame;
    const int64_t grain = std::max<int64_t>(1, kGrain / (geo.max_len() * geo.T));
    at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) {
      // taps (3), zeros, excited/loaded frames (3 rolling), conversion scratch (3), output.
      Buffers<A> buf(11, geo.max_len());
      A *w0 = buf[0], *w1 = buf[1], *w2 = buf[2], *zeros = buf[3], *out_buf = buf[10];
      A* frames[3] = {buf[4], buf[5], buf[6]};
      A *sx = buf[7], *sf = buf[8], *sb = buf[9];
      for (int64_t task = t0; task < t1; ++task) {
        const int64_t video = task / geo.chunks_per_frame;
        int64_t begin, len, channel0;
        geo.chunk(task % geo.chunks_per_frame, begin, len, channel0);
        fill_taps(geo, pw, len, channel0, w0, w1, w2);
        const int64_t base = video * geo.T * geo.frame + begin;
        // Input of the shift at frame t, as acc_t: excited into a rolling buffer, or the
        // input itself when no conversion is needed.
        auto frame_input = [&](int64_t t, A* slot) -> const A* {
          const int64_t off = base + t * geo.frame;
          if constexpr (kExcite) {
            excitation_row(load_acc(px + off, sx, len), load_acc(pf + off, sf, len),
                           load_acc(pb + off, sb, len), slot, len);
            return slot;
          } else {
            return load_acc(px + off, slot, len);
          }
        };
        const A* prev = zeros;
        const A* cur = frame_input(0, frames[0]);
        for (int64_t t = 0; t < geo.T; ++t) {
          const A* next = t + 1 < geo.T ? frame_input(t + 1, frames[(t + 1) % 3]) : zeros;
          scalar_t* dst = po + base + t * geo.frame;
          A* o = out_acc(dst, out_buf);
          shift_row(w0, w1, w2, prev, cur, next, o, len);
          store_acc(dst, o, len);
          prev = cur;
          cur = next;
        }
      }
    });
  });
  return out;
}

// Backward of temporal_shift_conv (kExcite = false) and excite_shift (kExcite = true).
// Returns grad_x, grad_weight and, with kExcite, grad_y_fwd and grad_y_bwd.
template <bool kExcite>
std::vector<at::Tensor> shift_backward(const at::Tensor& g_in, const at::Tensor& x_in,
                                       const at::Tensor* yf_in, const at::Tensor* yb_in,
                                       const at::Tensor& w_in, int64_t num_segments) {
  check_shift(x_in, w_in, num_segments, yf_in, yb_in, &g_in);
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), g = g_in.contiguous(fmt);
  const auto opts = x.options().memory_format(fmt);
  at::Tensor yf, yb, dyf, dyb;
  if constexpr (kExcite) {
    yf = yf_in->contiguous(fmt);
    yb = yb_in->contiguous(fmt);
    dyf = at::empty(x.sizes(), opts);
    dyb = at::empty(x.sizes(), opts);
  }
  auto dx = at::empty(x.sizes(), opts);
  auto dw = at::zeros(w_in.sizes(), w_in.options());
  if (x.numel() == 0) {
    if constexpr (kExcite) return {dx, dyf, dyb, dw};
    return {dx, dw};
  }
  const ShiftGeometry geo(x, num_segments, fmt);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_bwd", [&] {
    using A = acc_t<scalar_t>;
    const auto w = w_in.contiguous().to(c10::CppTypeToScalarType<A>::value);
    const A* pw = w.const_data_ptr<A>();
    const auto* px = x.const_data_ptr<scalar_t>();
    const auto* pg = g.const_data_ptr<scalar_t>();
    const scalar_t* pf = kExcite ? yf.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = kExcite ? yb.const_data_ptr<scalar_t>() : nullptr;
    auto* pdx = dx.mutable_data_ptr<scalar_t>();
    scalar_t* pdf = kExcite ? dyf.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* pdb = kExcite ? dyb.mutable_data_ptr<scalar_t>() : nullptr;

    const int64_t tasks = geo.videos * geo.chunks_per_frame;
    const int64_t psize = geo.partial_size();
    std::vector<A> partial(static_cast<size_t>(tasks * psize));
    const int64_t grain = std::max<int64_t>(1, kGrain / (geo.max_len() * geo.T));
    at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) {
      // Rolling per-frame slots (by t % 3 or t % 2), the weight-gradient accumulators, the
      // shift input's gradient `ge`, and conversion scratch for half types.
      Buffers<A> buf(26, geo.max_len());
      A *w0 = buf[0], *w1 = buf[1], *w2 = buf[2], *zeros = buf[3];
      A* e_slot[3] = {buf[4], buf[5], buf[6]};
      A* g_slot[3] = {buf[7], buf[8], buf[9]};
      A* sf_slot[2] = {buf[10], buf[11]};
      A* sb_slot[2] = {buf[12], buf[13]};
      A* x_slot[3] = {buf[14], buf[15], buf[25]};
      A *acc0 = buf[16], *acc1 = buf[17], *acc2 = buf[18], *ge = buf[19];
      A *o1 = buf[20], *o2 = buf[21], *o3 = buf[22], *lf = buf[23], *lb = buf[24];
      for (int64_t task = t0; task < t1; ++task) {
        const int64_t video = task / geo.chunks_per_frame;
        int64_t begin, len, channel0;
        geo.chunk(task % geo.chunks_per_frame, begin, len, channel0);
        fill_taps(geo, pw, len, channel0, w0, w1, w2);
        std::fill(acc0, acc0 + len, A(0));
        std::fill(acc1, acc1 + len, A(0));
        std::fill(acc2, acc2 + len, A(0));
        const int64_t base = video * geo.T * geo.frame + begin;
        // Frame t's x (acc_t; three alive: without excitation it is the shift input), its
        // excited value and its sigmoids (needed for frame t only).
        const A* x_t[3] = {nullptr, nullptr, nullptr};
        auto load_frame = [&](int64_t t) -> const A* {
          const int64_t off = base + t * geo.frame;
          x_t[t % 3] = load_acc(px + off, x_slot[t % 3], len);
          if constexpr (kExcite) {
            excite_keep_row(x_t[t % 3], load_acc(pf + off, lf, len), load_acc(pb + off, lb, len),
                            e_slot[t % 3], sf_slot[t % 2], sb_slot[t % 2], len);
            return e_slot[t % 3];
          } else {
            return x_t[t % 3];
          }
        };
        auto load_grad = [&](int64_t t, int64_t slot3) -> const A* {
          return load_acc(pg + base + t * geo.frame, g_slot[slot3], len);
        };
        const A *e_prev = zeros, *g_prev = zeros;
        const A* e_cur = load_frame(0);
        const A* g_cur = load_grad(0, 0);
        for (int64_t t = 0; t < geo.T; ++t) {
          const bool last = t + 1 == geo.T;
          const A* e_next = last ? zeros : load_frame(t + 1);
          const A* g_next = last ? zeros : load_grad(t + 1, (t + 1) % 3);
          const int64_t off = base + t * geo.frame;
          A* dx_acc = out_acc(pdx + off, kExcite ? o1 : ge);
          // Without excitation the shift input's gradient is dx itself.
          A* ge_dst = kExcite ? ge : dx_acc;
          shift_backward_row(w0, w1, w2, g_prev, g_cur, g_next, e_prev, e_cur, e_next, ge_dst, acc0,
                             acc1, acc2, len, t > 0, !last);
          if constexpr (kExcite) {
            A *df = out_acc(pdf + off, o2), *db = out_acc(pdb + off, o3);
            excite_backward_row(ge, x_t[t % 3], sf_slot[t % 2], sb_slot[t % 2], dx_acc, df, db,
                                len);
            store_acc(pdf + off, df, len);
            store_acc(pdb + off, db, len);
          }
          store_acc(pdx + off, dx_acc, len);
          e_prev = e_cur;
          e_cur = e_next;
          g_prev = g_cur;
          g_cur = g_next;
        }
        // Fold the per-element accumulators into this task's per-channel partial sums.
        A* part = partial.data() + task * psize;
        if (geo.channels_last) {
          std::fill(part, part + psize, A(0));
          for (int64_t i = 0; i < len; ++i) {
            const int64_t c = i % geo.C;
            part[3 * c] += acc0[i];
            part[3 * c + 1] += acc1[i];
            part[3 * c + 2] += acc2[i];
          }
        } else {
          A s0 = 0, s1 = 0, s2 = 0;
          for (int64_t i = 0; i < len; ++i) {
            s0 += acc0[i];
            s1 += acc1[i];
            s2 += acc2[i];
          }
          part[0] = s0;
          part[1] = s1;
          part[2] = s2;
        }
      }
    });

    // Second stage: each channel adds its partials in a fixed order.
    std::vector<A> dw_acc(static_cast<size_t>(3 * geo.C), A(0));
    at::parallel_for(0, geo.C, 16, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        A s[3] = {0, 0, 0};
        for (int64_t video = 0; video < geo.videos; ++video) {
          const A* vpart = partial.data() + video * geo.chunks_per_frame * psize;
          if (geo.channels_last) {
            for (int64_t k = 0; k < geo.chunks_per_frame; ++k)
              for (int j = 0; j < 3; ++j) s[j] += vpart[k * psize + 3 * c + j];
          } else {
            for (int64_t b = 0; b < geo.blocks_per_channel; ++b)
              for (int j = 0; j < 3; ++j)
                s[j] += vpart[(c * geo.blocks_per_channel + b) * psize + j];
          }
        }
        for (int j = 0; j < 3; ++j) dw_acc[3 * c + j] = s[j];
      }
    });
    auto dw_full = at::from_blob(dw_acc.data(), {geo.C, 1, 3},
                                 at::TensorOptions().dtype(c10::CppTypeToScalarType<A>::value));
    dw.copy_(dw_full);
  });
  if constexpr (kExcite) return {dx, dyf, dyb, dw};
  return {dx, dw};
}

at::Tensor temporal_shift_conv_cpu(const at::Tensor& x, const at::Tensor& weight,
                                   int64_t num_segments) {
  return shift_forward<false>(x, nullptr, nullptr, weight, num_segments);
}

std::tuple<at::Tensor, at::Tensor> temporal_shift_conv_backward_cpu(const at::Tensor& grad,
                                                                    const at::Tensor& x,
                                                                    const at::Tensor& weight,
                                                                    int64_t num_segments) {
  auto r = shift_backward<false>(grad, x, nullptr, nullptr, weight, num_segments);
  return {r[0], r[1]};
}

at::Tensor excite_shift_cpu(const at::Tensor& x, const at::Tensor& y_fwd, const at::Tensor& y_bwd,
                            const at::Tensor& weight, int64_t num_segments) {
  return shift_forward<true>(x, &y_fwd, &y_bwd, weight, num_segments);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> excite_shift_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y_fwd, const at::Tensor& y_bwd,
    const at::Tensor& weight, int64_t num_segments) {
  auto r = shift_backward<true>(grad, x, &y_fwd, &y_bwd, weight, num_segments);
  return {r[0], r[1], r[2], r[3]};
}

}  // namespace
}  // namespace cpu
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CPU, m) {
  m.impl("bidirectional_excitation", &tdn::cpu::bidirectional_excitation_cpu);
  m.impl("bidirectional_excitation_backward", &tdn::cpu::bidirectional_excitation_backward_cpu);
  m.impl("temporal_shift_conv", &tdn::cpu::temporal_shift_conv_cpu);
  m.impl("temporal_shift_conv_backward", &tdn::cpu::temporal_shift_conv_backward_cpu);
  m.impl("excite_shift", &tdn::cpu::excite_shift_cpu);
  m.impl("excite_shift_backward", &tdn::cpu::excite_shift_backward_cpu);
}
