// The CUDA kernels of the tdn_ops operators: a thin torch adapter over csrc/cuda/launchers.h.
//
// Each function checks its arguments (the same checks and messages as the CPU kernels, from
// csrc/op_checks.h), makes its inputs dense in the layout of its primary input
// (tdn::layout_of), allocates the outputs exactly as the CPU kernels and the fake kernels do,
// and enqueues the launchers on the current stream of the inputs' device. Nothing here
// synchronises with the host.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common.h"
#include "cuda/launchers.h"
#include "op_checks.h"

namespace tdn {
namespace cuda {
namespace {

// The launchers' element type. Every entry point has checked the dtype first (op_checks.h).
DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kDouble:
      return DType::kFloat64;
    default:
      break;
  }
  TORCH_INTERNAL_ASSERT(false, "unchecked dtype ", t.scalar_type());
  return DType::kFloat32;  // unreachable
}

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor for the CUDA kernels, got one on ",
              t.device());
}

void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, "tdn_ops.", op,
              ": CUDA kernel launch failed: ", cudaGetErrorString(status));
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// ---------------------------------------------------------------------------------------
// temporal_diff_pool

at::Tensor temporal_diff_pool_cuda(const at::Tensor& x_in, int64_t frames, int64_t k) {
  check_temporal_diff_pool(x_in, frames, k);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  const int64_t B = x.size(0), c = x.size(1) / frames, H = x.size(2), W = x.size(3);
  auto out = empty_4d(x, {B, c * (frames - 1), H / k, W / k}, fmt);
  if (out.numel() == 0) return out;
  check_launch(
      temporal_diff_pool_forward(x.const_data_ptr(), out.mutable_data_ptr(), dtype_of(x), B,
                                 frames, c, H, W, k, is_channels_last(fmt), current_stream()),
      "temporal_diff_pool");
  return out;
}

at::Tensor temporal_diff_pool_backward_cuda(const at::Tensor& g_in, int64_t frames, int64_t k,
                                            int64_t H, int64_t W) {
  check_temporal_diff_pool_backward(g_in, frames, k, H, W);
  check_cuda(g_in, "grad_out");
  const c10::cuda::CUDAGuard guard(g_in.device());
  const auto fmt = layout_of(g_in);
  const auto g = g_in.contiguous(fmt);
  const int64_t B = g.size(0), c = g.size(1) / (frames - 1);
  auto gx = empty_4d(g, {B, c * frames, H, W}, fmt);
  if (gx.numel() == 0) return gx;
  check_launch(temporal_diff_pool_backward(g.const_data_ptr(), gx.mutable_data_ptr(),
                                           dtype_of(g), B, frames, c, H, W, k,
                                           is_channels_last(fmt), current_stream()),
               "temporal_diff_pool_backward");
  return gx;
}

// ---------------------------------------------------------------------------------------
// cross_segment_diff

std::tuple<at::Tensor, at::Tensor> cross_segment_diff_cuda(const at::Tensor& feat_in,
                                                           const at::Tensor& aligned_in,
                                                           int64_t num_segments) {
  check_cross_segment_diff(feat_in, aligned_in, num_segments);
  check_cuda(feat_in, "feat");
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const auto fmt = layout_of(feat_in);
  const auto feat = feat_in.contiguous(fmt), aligned = aligned_in.contiguous(fmt);
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3);
  auto diff = empty_stacked(feat, B, C, H, W, fmt);
  auto pooled = empty_stacked(feat, B, C, H / 2, W / 2, fmt);
  if (feat.numel() == 0) return {diff, pooled};
  check_launch(cross_segment_diff_forward(
                   feat.const_data_ptr(), aligned.const_data_ptr(), diff[0].mutable_data_ptr(),
                   diff[1].mutable_data_ptr(), pooled[0].mutable_data_ptr(),
                   pooled[1].mutable_data_ptr(), dtype_of(feat), B, C, H, W, num_segments,
                   is_channels_last(fmt), current_stream()),
               "cross_segment_diff");
  return {diff, pooled};
}

std::tuple<at::Tensor, at::Tensor> cross_segment_diff_backward_cuda(const at::Tensor& gd_in,
                                                                    const at::Tensor& gp_in,
                                                                    int64_t num_segments) {
  check_cross_segment_diff_backward(gd_in, gp_in, num_segments);
  check_cuda(gd_in, "grad_diff");
  const c10::cuda::CUDAGuard guard(gd_in.device());
  const auto fmt = layout_of(gd_in[0]);
  const at::Tensor gd[2] = {gd_in[0].contiguous(fmt), gd_in[1].contiguous(fmt)};
  const at::Tensor gp[2] = {gp_in[0].contiguous(fmt), gp_in[1].contiguous(fmt)};
  auto g_feat = empty_4d(gd[0], gd[0].sizes(), fmt);
  auto g_aligned = empty_4d(gd[0], gd[0].sizes(), fmt);
  if (g_feat.numel() == 0) return {g_feat, g_aligned};
  check_launch(cross_segment_diff_backward(
                   gd[0].const_data_ptr(), gd[1].const_data_ptr(), gp[0].const_data_ptr(),
                   gp[1].const_data_ptr(), g_feat.mutable_data_ptr(), g_aligned.mutable_data_ptr(),
                   dtype_of(gd[0]), gd[0].size(0), gd[0].size(1), gd[0].size(2),
                   gd[0].size(3), num_segments, is_channels_last(fmt), current_stream()),
               "cross_segment_diff_backward");
  return {g_feat, g_aligned};
}

// ---------------------------------------------------------------------------------------
// multiscale_sum and lateral_fuse

at::Tensor multiscale_sum_cuda(const at::Tensor& diff_in, const at::Tensor& pooled_in,
                               const at::Tensor& full_in) {
  check_multiscale_sum(diff_in, pooled_in, full_in);
  check_cuda(diff_in, "diff");
  const int64_t C = diff_in.size(-3), H = diff_in.size(-2), W = diff_in.size(-1);
  const int64_t h = pooled_in.size(-2), w = pooled_in.size(-1);
  const c10::cuda::CUDAGuard guard(diff_in.device());
  const auto d4 = flatten_leading(diff_in);
  const auto fmt = layout_of(d4);
  const auto d = d4.contiguous(fmt);
  const auto f = flatten_leading(full_in).contiguous(fmt);
  const auto p = flatten_leading(pooled_in).contiguous(fmt);
  auto out = empty_4d(d, d.sizes(), fmt);
  if (out.numel() > 0) {
    constexpr double third = 1.0 / 3.0;
    check_launch(
        upsample_combine_forward(d.const_data_ptr(), p.const_data_ptr(), f.const_data_ptr(),
                                 out.mutable_data_ptr(), dtype_of(d), d.size(0), C, H, W, h,
                                 w, third, third, third, is_channels_last(fmt), current_stream()),
        "multiscale_sum");
  }
  return out.view(diff_in.sizes());
}

std::tuple<at::Tensor, at::Tensor> multiscale_sum_backward_cuda(const at::Tensor& g_in, int64_t h,
                                                                int64_t w) {
  check_upsample_backward(g_in, h, w, /*four_d=*/false);
  check_cuda(g_in, "grad_out");
  const c10::cuda::CUDAGuard guard(g_in.device());
  const auto b = upsample_grads(g_in, h, w);
  const auto& g = b.grad_out;
  if (g.numel() > 0) {
    constexpr double third = 1.0 / 3.0;
    check_launch(upsample_combine_backward(g.const_data_ptr(), b.grad_full.mutable_data_ptr(),
                                           b.grad_small.mutable_data_ptr(), dtype_of(g),
                                           g.size(0), g.size(1), g.size(2), g.size(3), h, w,
                                           third, third, is_channels_last(b.fmt),
                                           current_stream()),
                 "multiscale_sum_backward");
  }
  return {b.grad_full.view(g_in.sizes()), b.grad_small.view(with_spatial(g_in.sizes(), h, w))};
}

at::Tensor lateral_fuse_cuda(const at::Tensor& x_in, const at::Tensor& d_in, double alpha,
                             double beta) {
  check_lateral_fuse(x_in, d_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), d = d_in.contiguous(fmt);
  auto out = empty_4d(x, x.sizes(), fmt);
  if (out.numel() == 0) return out;
  check_launch(upsample_combine_forward(x.const_data_ptr(), d.const_data_ptr(), nullptr,
                                        out.mutable_data_ptr(), dtype_of(x), x.size(0),
                                        x.size(1), x.size(2), x.size(3), d.size(2), d.size(3),
                                        alpha, beta, 0.0, is_channels_last(fmt), current_stream()),
               "lateral_fuse");
  return out;
}

std::tuple<at::Tensor, at::Tensor> lateral_fuse_backward_cuda(const at::Tensor& g_in, int64_t h,
                                                              int64_t w, double alpha,
                                                              double beta) {
  check_upsample_backward(g_in, h, w, /*four_d=*/true);
  check_cuda(g_in, "grad_out");
  const c10::cuda::CUDAGuard guard(g_in.device());
  const auto b = upsample_grads(g_in, h, w);
  const auto& g = b.grad_out;
  if (g.numel() > 0) {
    check_launch(upsample_combine_backward(g.const_data_ptr(), b.grad_full.mutable_data_ptr(),
                                           b.grad_small.mutable_data_ptr(), dtype_of(g),
                                           g.size(0), g.size(1), g.size(2), g.size(3), h, w,
                                           alpha, beta, is_channels_last(b.fmt),
                                           current_stream()),
                 "lateral_fuse_backward");
  }
  return {b.grad_full, b.grad_small};
}

// ---------------------------------------------------------------------------------------
// bidirectional_excitation

at::Tensor bidirectional_excitation_cuda(const at::Tensor& x_in, const at::Tensor& yf_in,
                                         const at::Tensor& yb_in) {
  check_excitation(x_in, yf_in, yb_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), yf = yf_in.contiguous(fmt), yb = yb_in.contiguous(fmt);
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  check_launch(
      excitation_forward(x.const_data_ptr(), yf.const_data_ptr(), yb.const_data_ptr(),
                         out.mutable_data_ptr(), dtype_of(x), x.numel(), current_stream()),
      "bidirectional_excitation");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bidirectional_excitation_backward_cuda(
    const at::Tensor& g_in, const at::Tensor& x_in, const at::Tensor& yf_in,
    const at::Tensor& yb_in) {
  check_excitation(x_in, yf_in, yb_in, &g_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto g = g_in.contiguous(fmt), x = x_in.contiguous(fmt);
  const auto yf = yf_in.contiguous(fmt), yb = yb_in.contiguous(fmt);
  const auto opts = x.options().memory_format(fmt);
  auto dx = at::empty(x.sizes(), opts), dyf = at::empty(x.sizes(), opts),
       dyb = at::empty(x.sizes(), opts);
  if (x.numel() == 0) return {dx, dyf, dyb};
  check_launch(
      excitation_backward(g.const_data_ptr(), x.const_data_ptr(), yf.const_data_ptr(),
                          yb.const_data_ptr(), dx.mutable_data_ptr(), dyf.mutable_data_ptr(),
                          dyb.mutable_data_ptr(), dtype_of(x), x.numel(), current_stream()),
      "bidirectional_excitation_backward");
  return {dx, dyf, dyb};
}

// ---------------------------------------------------------------------------------------
// temporal_shift_conv and excite_shift

ShiftShape shift_shape(const at::Tensor& x, int64_t num_segments, at::MemoryFormat fmt) {
  return ShiftShape{x.size(0) / num_segments, num_segments, x.size(1), x.size(2) * x.size(3),
                    is_channels_last(fmt)};
}

// Forward of temporal_shift_conv (no gates) and excite_shift (gates given).
at::Tensor shift_forward_cuda(const at::Tensor& x_in, const at::Tensor* yf_in,
                              const at::Tensor* yb_in, const at::Tensor& w_in, int64_t num_segments,
                              const char* op) {
  check_shift(x_in, w_in, num_segments, yf_in, yb_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  const auto w = w_in.contiguous();
  at::Tensor yf, yb;
  if (yf_in != nullptr) {
    yf = yf_in->contiguous(fmt);
    yb = yb_in->contiguous(fmt);
  }
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  check_launch(shift_forward(x.const_data_ptr(), yf.defined() ? yf.const_data_ptr() : nullptr,
                             yb.defined() ? yb.const_data_ptr() : nullptr, w.const_data_ptr(),
                             out.mutable_data_ptr(), dtype_of(x),
                             shift_shape(x, num_segments, fmt), current_stream()),
               op);
  return out;
}

// Backward of both: {dx, dw} without gates, {dx, dy_fwd, dy_bwd, dw} with them.
std::vector<at::Tensor> shift_backward_cuda(const at::Tensor& g_in, const at::Tensor& x_in,
                                            const at::Tensor* yf_in, const at::Tensor* yb_in,
                                            const at::Tensor& w_in, int64_t num_segments,
                                            const char* op) {
  check_shift(x_in, w_in, num_segments, yf_in, yb_in, &g_in);
  check_cuda(x_in, "x");
  const bool excite = yf_in != nullptr;
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), g = g_in.contiguous(fmt);
  const auto w = w_in.contiguous();
  const auto opts = x.options().memory_format(fmt);
  at::Tensor yf, yb, dyf, dyb;
  if (excite) {
    yf = yf_in->contiguous(fmt);
    yb = yb_in->contiguous(fmt);
    dyf = at::empty(x.sizes(), opts);
    dyb = at::empty(x.sizes(), opts);
  }
  auto dx = at::empty(x.sizes(), opts);
  auto dw = at::empty(w_in.sizes(), w_in.options());  // fully written by the launcher
  const ShiftShape shape = shift_shape(x, num_segments, fmt);
  const DType dtype = dtype_of(x);
  // Scratch of the deterministic two-stage weight-gradient reduction (stream-ordered by the
  // caching allocator, so no synchronisation).
  const auto workspace =
      at::empty({shift_backward_workspace_bytes(shape, dtype)}, x.options().dtype(at::kByte));
  check_launch(
      shift_backward(g.const_data_ptr(), x.const_data_ptr(), excite ? yf.const_data_ptr() : nullptr,
                     excite ? yb.const_data_ptr() : nullptr, w.const_data_ptr(),
                     dx.mutable_data_ptr(), excite ? dyf.mutable_data_ptr() : nullptr,
                     excite ? dyb.mutable_data_ptr() : nullptr, dw.mutable_data_ptr(),
                     workspace.mutable_data_ptr(), dtype, shape, current_stream()),
      op);
  if (excite) return {dx, dyf, dyb, dw};
  return {dx, dw};
}

at::Tensor temporal_shift_conv_cuda(const at::Tensor& x, const at::Tensor& weight,
                                    int64_t num_segments) {
  return shift_forward_cuda(x, nullptr, nullptr, weight, num_segments, "temporal_shift_conv");
}

std::tuple<at::Tensor, at::Tensor> temporal_shift_conv_backward_cuda(const at::Tensor& grad,
                                                                     const at::Tensor& x,
                                                                     const at::Tensor& weight,
                                                                     int64_t num_segments) {
  auto r = shift_backward_cuda(grad, x, nullptr, nullptr, weight, num_segments,
                               "temporal_shift_conv_backward");
  return {r[0], r[1]};
}

at::Tensor excite_shift_cuda(const at::Tensor& x, const at::Tensor& y_fwd, const at::Tensor& y_bwd,
                             const at::Tensor& weight, int64_t num_segments) {
  return shift_forward_cuda(x, &y_fwd, &y_bwd, weight, num_segments, "excite_shift");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> excite_shift_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y_fwd, const at::Tensor& y_bwd,
    const at::Tensor& weight, int64_t num_segments) {
  auto r =
      shift_backward_cuda(grad, x, &y_fwd, &y_bwd, weight, num_segments, "excite_shift_backward");
  return {r[0], r[1], r[2], r[3]};
}

// ---------------------------------------------------------------------------------------
// project_excite_shift

ProjectShape project_shape(const at::Tensor& x, int64_t mid, int64_t num_segments,
                           at::MemoryFormat fmt) {
  return ProjectShape{x.size(0) / num_segments, num_segments, x.size(1), mid,
                      x.size(2) * x.size(3), is_channels_last(fmt)};
}

// `mixed` (2, B, c, H, W) as one dense buffer whose halves are in `fmt`: (2, B, c, H, W) or
// (2, B, H, W, c), as the CPU kernel reads it (no copy when it already is).
at::Tensor mixed_in_layout(const at::Tensor& mixed, at::MemoryFormat fmt) {
  if (is_channels_last(fmt)) return mixed.permute({0, 1, 3, 4, 2}).contiguous();
  return mixed.contiguous();
}

at::Tensor project_excite_shift_cuda(const at::Tensor& x_in, const at::Tensor& mixed_in,
                                     const at::Tensor& weight, const at::Tensor& scale,
                                     const at::Tensor& bias, const at::Tensor& shift_weight,
                                     int64_t num_segments) {
  check_project_excite_shift(x_in, mixed_in, weight, scale, bias, shift_weight, num_segments);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt);
  auto out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  const auto mixed = mixed_in_layout(mixed_in, fmt);
  const auto w = weight.contiguous(), s = scale.contiguous(), b = bias.contiguous();
  const auto taps = shift_weight.contiguous();
  check_launch(project_excite_shift_forward(
                   x.const_data_ptr(), mixed.const_data_ptr(), w.const_data_ptr(),
                   s.const_data_ptr(), b.const_data_ptr(), taps.const_data_ptr(),
                   out.mutable_data_ptr(), dtype_of(x),
                   project_shape(x, weight.size(1), num_segments, fmt), current_stream()),
               "project_excite_shift");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
project_excite_shift_backward_cuda(const at::Tensor& g_in, const at::Tensor& x_in,
                                   const at::Tensor& mixed_in, const at::Tensor& weight,
                                   const at::Tensor& scale, const at::Tensor& bias,
                                   const at::Tensor& shift_weight, int64_t num_segments) {
  check_project_excite_shift(x_in, mixed_in, weight, scale, bias, shift_weight, num_segments,
                             &g_in);
  check_cuda(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto fmt = layout_of(x_in);
  const auto x = x_in.contiguous(fmt), g = g_in.contiguous(fmt);
  const int64_t c = weight.size(1);
  auto dx = at::empty(x.sizes(), x.options().memory_format(fmt));
  // The kernel writes dmixed through the dense buffer behind the stacked layout.
  auto dmixed = empty_stacked(x, x.size(0), c, x.size(2), x.size(3), fmt);
  // Fully written by the launcher (zeros for an empty batch).
  auto d_weight = at::empty(weight.sizes(), x.options());
  auto d_scale = at::empty(scale.sizes(), x.options());
  auto d_bias = at::empty(bias.sizes(), x.options());
  auto d_shift = at::empty(shift_weight.sizes(), x.options());
  const ProjectShape shape = project_shape(x, c, num_segments, fmt);
  const DType dtype = dtype_of(x);
  const at::Tensor mixed = x.numel() == 0 ? mixed_in : mixed_in_layout(mixed_in, fmt);
  const auto w = weight.contiguous(), s = scale.contiguous(), b = bias.contiguous();
  const auto taps = shift_weight.contiguous();
  // Scratch of the deterministic two-stage parameter-gradient reduction (stream-ordered by
  // the caching allocator, so no synchronisation).
  const auto workspace = at::empty({project_excite_shift_backward_workspace_bytes(shape, dtype)},
                                   x.options().dtype(at::kByte));
  check_launch(project_excite_shift_backward(
                   g.const_data_ptr(), x.const_data_ptr(), mixed.const_data_ptr(),
                   w.const_data_ptr(), s.const_data_ptr(), b.const_data_ptr(),
                   taps.const_data_ptr(), dx.mutable_data_ptr(), dmixed.mutable_data_ptr(),
                   d_weight.mutable_data_ptr(), d_scale.mutable_data_ptr(),
                   d_bias.mutable_data_ptr(), d_shift.mutable_data_ptr(),
                   workspace.mutable_data_ptr(), dtype, shape, current_stream()),
               "project_excite_shift_backward");
  return {dx, dmixed, d_weight, d_scale, d_bias, d_shift};
}

}  // namespace
}  // namespace cuda
}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, CUDA, m) {
  m.impl("temporal_diff_pool", &tdn::cuda::temporal_diff_pool_cuda);
  m.impl("temporal_diff_pool_backward", &tdn::cuda::temporal_diff_pool_backward_cuda);
  m.impl("cross_segment_diff", &tdn::cuda::cross_segment_diff_cuda);
  m.impl("cross_segment_diff_backward", &tdn::cuda::cross_segment_diff_backward_cuda);
  m.impl("multiscale_sum", &tdn::cuda::multiscale_sum_cuda);
  m.impl("multiscale_sum_backward", &tdn::cuda::multiscale_sum_backward_cuda);
  m.impl("bidirectional_excitation", &tdn::cuda::bidirectional_excitation_cuda);
  m.impl("bidirectional_excitation_backward", &tdn::cuda::bidirectional_excitation_backward_cuda);
  m.impl("temporal_shift_conv", &tdn::cuda::temporal_shift_conv_cuda);
  m.impl("temporal_shift_conv_backward", &tdn::cuda::temporal_shift_conv_backward_cuda);
  m.impl("excite_shift", &tdn::cuda::excite_shift_cuda);
  m.impl("excite_shift_backward", &tdn::cuda::excite_shift_backward_cuda);
  m.impl("lateral_fuse", &tdn::cuda::lateral_fuse_cuda);
  m.impl("lateral_fuse_backward", &tdn::cuda::lateral_fuse_backward_cuda);
  m.impl("project_excite_shift", &tdn::cuda::project_excite_shift_cuda);
  m.impl("project_excite_shift_backward", &tdn::cuda::project_excite_shift_backward_cuda);
}
