// Helpers shared by the CPU and CUDA bindings: the layout rule, output allocation, the
// nearest-neighbour index of F.interpolate and (..., c, H, W) bookkeeping. The argument checks
// are in op_checks.h.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

namespace tdn {

// An operator's output takes its primary input's layout: channels_last when that input is
// channels_last-contiguous and not plainly contiguous, otherwise contiguous. Must agree with
// tdn_ops/_layout.py (fake tensors promise the same strides).
inline at::MemoryFormat layout_of(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

inline bool is_channels_last(at::MemoryFormat fmt) { return fmt == at::MemoryFormat::ChannelsLast; }

// A 4-D tensor of `sizes` in `fmt`.
inline at::Tensor empty_4d(const at::Tensor& ref, at::IntArrayRef sizes, at::MemoryFormat fmt) {
  return at::empty(sizes, ref.options().memory_format(fmt));
}

// A (2, B, C, H, W) tensor whose halves are 4-D tensors in `fmt`.
inline at::Tensor empty_stacked(const at::Tensor& ref, int64_t b, int64_t c, int64_t h, int64_t w,
                                at::MemoryFormat fmt) {
  if (is_channels_last(fmt)) {
    return at::empty({2, b, h, w, c}, ref.options()).permute({0, 1, 4, 2, 3});
  }
  return at::empty({2, b, c, h, w}, ref.options());
}

// The source index F.interpolate(mode="nearest", size=out) reads for output index `dst`
// (ATen's nearest_idx: exact shortcuts for equal and doubled sizes, else a float scale).
inline int64_t nearest_src_index(int64_t dst, int64_t in_size, int64_t out_size) {
  if (out_size == in_size) return dst;
  if (out_size == 2 * in_size) return dst >> 1;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const int64_t src = static_cast<int64_t>(std::floor(static_cast<float>(dst) * scale));
  return src < in_size - 1 ? src : in_size - 1;
}

// src index for every dst index of one axis.
inline std::vector<int64_t> nearest_map(int64_t in_size, int64_t out_size) {
  std::vector<int64_t> map(static_cast<size_t>(out_size));
  for (int64_t i = 0; i < out_size; ++i) map[i] = nearest_src_index(i, in_size, out_size);
  return map;
}

// For each src index, the range [begin[s], begin[s+1]) of dst indices that read it (the map
// is non-decreasing). Lets the upsampling backward gather instead of scatter: deterministic.
inline std::vector<int64_t> nearest_inverse(int64_t in_size, int64_t out_size) {
  std::vector<int64_t> begin(static_cast<size_t>(in_size + 1), out_size);
  for (int64_t d = out_size - 1; d >= 0; --d) begin[nearest_src_index(d, in_size, out_size)] = d;
  for (int64_t s = in_size - 1; s >= 0; --s) begin[s] = std::min(begin[s], begin[s + 1]);
  return begin;
}

// (..., c, H, W) seen as the (B, c, H, W) tensor the kernels work on (a view when possible).
inline at::Tensor flatten_leading(const at::Tensor& t) {
  return t.reshape({-1, t.size(-3), t.size(-2), t.size(-1)});
}

// `sizes` with the last two (spatial) dims replaced by h x w.
inline std::vector<int64_t> with_spatial(at::IntArrayRef sizes, int64_t h, int64_t w) {
  auto out = sizes.vec();
  out[out.size() - 2] = h;
  out[out.size() - 1] = w;
  return out;
}

// The upsampling operators' backward (multiscale_sum, lateral_fuse) before their kernel:
// grad_out as the (B, c, H, W) tensor the kernels read, dense in its own layout, and the two
// gradients allocated in that layout: the full-size one and the small map's (B, c, h, w). With
// no element to read, the small gradient is zero (the kernels then do not run).
struct UpsampleGrads {
  at::Tensor grad_out, grad_full, grad_small;
  at::MemoryFormat fmt;
};

inline UpsampleGrads upsample_grads(const at::Tensor& grad_out, int64_t h, int64_t w) {
  const auto g4 = flatten_leading(grad_out);
  const auto fmt = layout_of(g4);
  const auto g = g4.contiguous(fmt);
  UpsampleGrads r{g, empty_4d(g, g.sizes(), fmt), empty_4d(g, {g.size(0), g.size(1), h, w}, fmt),
                  fmt};
  if (g.numel() == 0 && r.grad_small.numel() > 0) r.grad_small.zero_();
  return r;
}

}  // namespace tdn
