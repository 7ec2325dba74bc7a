// Argument checks of every operator, forward and backward, shared by the CPU kernels and the
// CUDA binding so that a direct torch.ops.tdn_ops call is refused by the same rule, with the
// same message, on either device. (The Python wrappers in tdn_ops/_checks.py check first, with
// the same wording; these guard the native entry points.) The device-specific part, that the
// primary input lives on the kernels' device, stays with each binding.
#pragma once

#include <ATen/ATen.h>

namespace tdn {

// ------------------------------------------------------------------------- building blocks

// The dtypes every kernel is instantiated for (and the Python checks accept).
inline bool is_kernel_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK(is_kernel_dtype(t.scalar_type()), name,
              " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref,
                       const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name, " is on ",
              ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " has dtype ", t.scalar_type(), " but ",
              ref_name, " has dtype ", ref.scalar_type());
}

inline void check_same_shape(const at::Tensor& t, const char* name, const at::Tensor& ref,
                             const char* ref_name) {
  check_like(t, name, ref, ref_name);
  TORCH_CHECK(t.sizes() == ref.sizes(), name, " must have the shape of ", ref_name, " ",
              ref.sizes(), ", got ", t.sizes());
}

inline void check_segments(const at::Tensor& t, const char* name, int64_t num_segments) {
  TORCH_CHECK(num_segments >= 1, "num_segments must be >= 1, got ", num_segments);
  TORCH_CHECK(t.size(0) % num_segments == 0, name, ".shape[0] (", t.size(0),
              ") must be N*T, a multiple of num_segments (", num_segments, ")");
}

inline void check_weight(const at::Tensor& weight, const at::Tensor& x) {
  check_like(weight, "weight", x, "x");
  TORCH_CHECK(weight.dim() == 3 && weight.size(0) == x.size(1) && weight.size(1) == 1 &&
                  weight.size(2) == 3,
              "weight must have shape (C, 1, 3) = (", x.size(1), ", 1, 3), got ", weight.sizes());
}

// ------------------------------------------------------------------------- per operator

inline void check_temporal_diff_pool(const at::Tensor& x, int64_t frames, int64_t k) {
  TORCH_CHECK(x.dim() == 4, "x must be a 4-D tensor (B, frames*c, H, W), got ", x.sizes());
  check_dtype(x, "x");
  TORCH_CHECK(frames >= 2, "frames must be >= 2, got ", frames);
  TORCH_CHECK(k >= 1, "kernel_size must be >= 1, got ", k);
  TORCH_CHECK(x.size(1) % frames == 0, "x has ", x.size(1),
              " channels, not divisible by frames=", frames);
  TORCH_CHECK(x.size(2) >= k && x.size(3) >= k, "x has spatial size ", x.size(2), "x", x.size(3),
              ", below the pooling kernel ", k);
}

inline void check_temporal_diff_pool_backward(const at::Tensor& g, int64_t frames, int64_t k,
                                              int64_t H, int64_t W) {
  TORCH_CHECK(g.dim() == 4, "grad_out must be 4-D, got ", g.sizes());
  check_dtype(g, "grad_out");
  TORCH_CHECK(frames >= 2 && k >= 1, "frames must be >= 2 and kernel_size >= 1");
  TORCH_CHECK(g.size(1) % (frames - 1) == 0, "grad_out channels must be (frames-1)*c");
  TORCH_CHECK(g.size(2) == H / k && g.size(3) == W / k, "grad_out spatial size ", g.sizes(),
              " does not match an input of ", H, "x", W, " pooled by ", k);
}

inline void check_cross_segment_diff(const at::Tensor& feat, const at::Tensor& aligned,
                                     int64_t num_segments) {
  TORCH_CHECK(feat.dim() == 4, "feat must be a 4-D tensor (N*T, c, H, W), got ", feat.sizes());
  check_dtype(feat, "feat");
  check_same_shape(aligned, "aligned", feat, "feat");
  check_segments(feat, "feat", num_segments);
  TORCH_CHECK(feat.size(2) >= 2 && feat.size(3) >= 2, "feat has spatial size ", feat.size(2), "x",
              feat.size(3), ", below the 2x2 pooling window");
}

inline void check_cross_segment_diff_backward(const at::Tensor& gd, const at::Tensor& gp,
                                              int64_t num_segments) {
  TORCH_CHECK(gd.dim() == 5 && gd.size(0) == 2, "grad_diff must be (2, N*T, c, H, W), got ",
              gd.sizes());
  check_dtype(gd, "grad_diff");
  TORCH_CHECK(gp.dim() == 5 && gp.size(0) == 2 && gp.size(1) == gd.size(1) &&
                  gp.size(2) == gd.size(2) && gp.size(3) == gd.size(3) / 2 &&
                  gp.size(4) == gd.size(4) / 2,
              "grad_pooled must be (2, N*T, c, H//2, W//2) for grad_diff ", gd.sizes(), ", got ",
              gp.sizes());
  check_like(gp, "grad_pooled", gd, "grad_diff");
  check_segments(gd[0], "grad_diff[0]", num_segments);
}

inline void check_multiscale_sum(const at::Tensor& diff, const at::Tensor& pooled,
                                 const at::Tensor& full) {
  TORCH_CHECK(diff.dim() >= 3, "diff must be (..., c, H, W), got ", diff.sizes());
  check_dtype(diff, "diff");
  check_same_shape(full, "full_branch", diff, "diff");
  check_like(pooled, "pooled_branch", diff, "diff");
  TORCH_CHECK(pooled.dim() == diff.dim() &&
                  pooled.sizes().slice(0, diff.dim() - 2) == diff.sizes().slice(0, diff.dim() - 2),
              "pooled_branch must match diff in every dim but the last two, got ", pooled.sizes(),
              " for diff ", diff.sizes());
  TORCH_CHECK(pooled.size(-2) >= 1 && pooled.size(-1) >= 1,
              "pooled_branch has an empty spatial size");
}

// Backward of an upsampling operator: grad_out (..., c, H, W), exactly 4-D when `four_d`
// (lateral_fuse), and the small map's size h x w.
inline void check_upsample_backward(const at::Tensor& g, int64_t h, int64_t w, bool four_d) {
  TORCH_CHECK(four_d ? g.dim() == 4 : g.dim() >= 3, "grad_out must be ",
              four_d ? "(N*T, C, H, W)" : "(..., c, H, W)", ", got ", g.sizes());
  check_dtype(g, "grad_out");
  TORCH_CHECK(h >= 1 && w >= 1, "the upsampled map's size must be positive, got ", h, "x", w);
}

inline void check_lateral_fuse(const at::Tensor& x, const at::Tensor& d) {
  TORCH_CHECK(x.dim() == 4, "x must be a 4-D tensor (N*T, C, H, W), got ", x.sizes());
  check_dtype(x, "x");
  check_like(d, "d", x, "x");
  TORCH_CHECK(d.dim() == 4 && d.size(0) == x.size(0) && d.size(1) == x.size(1) && d.size(2) >= 1 &&
                  d.size(3) >= 1,
              "d must be (N*T, C, h, w) with x's N*T and C ", x.sizes(), ", got ", d.sizes());
}

// Excitation inputs; `grad` (backward) may be null.
inline void check_excitation(const at::Tensor& x, const at::Tensor& y_fwd, const at::Tensor& y_bwd,
                             const at::Tensor* grad = nullptr) {
  check_dtype(x, "x");
  if (grad) check_same_shape(*grad, "grad_out", x, "x");
  check_same_shape(y_fwd, "y_fwd", x, "x");
  check_same_shape(y_bwd, "y_bwd", x, "x");
}

// Temporal shift inputs; y_fwd/y_bwd (excite_shift) and grad (backward) may be null.
inline void check_shift(const at::Tensor& x, const at::Tensor& weight, int64_t num_segments,
                        const at::Tensor* y_fwd, const at::Tensor* y_bwd,
                        const at::Tensor* grad = nullptr) {
  TORCH_CHECK(x.dim() == 4, "x must be a 4-D tensor (N*T, C, H, W), got ", x.sizes());
  check_dtype(x, "x");
  check_segments(x, "x", num_segments);
  check_weight(weight, x);
  if (grad) check_same_shape(*grad, "grad_out", x, "x");
  if (y_fwd) check_same_shape(*y_fwd, "y_fwd", x, "x");
  if (y_bwd) check_same_shape(*y_bwd, "y_bwd", x, "x");
}

// project_excite_shift inputs; `grad` (backward) may be null.
inline void check_project_excite_shift(const at::Tensor& x, const at::Tensor& mixed,
                                       const at::Tensor& weight, const at::Tensor& scale,
                                       const at::Tensor& bias, const at::Tensor& shift_weight,
                                       int64_t num_segments, const at::Tensor* grad = nullptr) {
  TORCH_CHECK(x.dim() == 4, "x must be a 4-D tensor (N*T, C, H, W), got ", x.sizes());
  check_dtype(x, "x");
  check_segments(x, "x", num_segments);
  const int64_t C = x.size(1);
  check_like(weight, "weight", x, "x");
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == C && weight.size(1) >= 1,
              "weight must have shape (C, c) with C=", C, ", got ", weight.sizes());
  const int64_t c = weight.size(1);
  check_like(mixed, "mixed", x, "x");
  TORCH_CHECK(mixed.dim() == 5 && mixed.size(0) == 2 && mixed.size(1) == x.size(0) &&
                  mixed.size(2) == c && mixed.size(3) == x.size(2) && mixed.size(4) == x.size(3),
              "mixed must have shape (2, N*T, c, H, W) = (2, ", x.size(0), ", ", c, ", ",
              x.size(2), ", ", x.size(3), "), got ", mixed.sizes());
  check_like(scale, "scale", x, "x");
  TORCH_CHECK(scale.dim() == 2 && scale.size(0) == 2 && scale.size(1) == C,
              "scale must have shape (2, C) = (2, ", C, "), got ", scale.sizes());
  check_like(bias, "bias", x, "x");
  TORCH_CHECK(bias.dim() == 2 && bias.size(0) == 2 && bias.size(1) == C,
              "bias must have shape (2, C) = (2, ", C, "), got ", bias.sizes());
  check_like(shift_weight, "shift_weight", x, "x");
  TORCH_CHECK(shift_weight.dim() == 3 && shift_weight.size(0) == C && shift_weight.size(1) == 1 &&
                  shift_weight.size(2) == 3,
              "shift_weight must have shape (C, 1, 3) = (", C, ", 1, 3), got ",
              shift_weight.sizes());
  if (grad) check_same_shape(*grad, "grad_out", x, "x");
}

// ltdm_mixture inputs (inference operator: float32 and float64 only).
inline void check_ltdm_mixture(const at::Tensor& feat, const at::Tensor& align_weight,
                               const c10::optional<at::Tensor>& align_bias,
                               const at::Tensor& pooled_weight, const at::Tensor& pooled_bias,
                               const at::Tensor& full_weight, const at::Tensor& full_bias,
                               int64_t num_segments) {
  TORCH_CHECK(feat.dim() == 4, "feat must be a 4-D tensor (N*T, c, H, W), got ", feat.sizes());
  TORCH_CHECK(feat.scalar_type() == at::kFloat || feat.scalar_type() == at::kDouble,
              "feat must be float32 or float64 (ltdm_mixture is an inference operator), got ",
              feat.scalar_type());
  check_segments(feat, "feat", num_segments);
  TORCH_CHECK(feat.size(2) >= 2 && feat.size(3) >= 2, "feat has spatial size ", feat.size(2),
              "x", feat.size(3), ", below the 2x2 pooling window");
  const int64_t c = feat.size(1);
  check_like(align_weight, "align_weight", feat, "feat");
  TORCH_CHECK(align_weight.dim() == 4 && align_weight.size(0) == c && align_weight.size(1) == 1 &&
                  align_weight.size(2) == 3 && align_weight.size(3) == 3,
              "align_weight must have shape (c, 1, 3, 3) = (", c, ", 1, 3, 3), got ",
              align_weight.sizes());
  if (align_bias.has_value() && align_bias->defined()) {
    check_like(*align_bias, "align_bias", feat, "feat");
    TORCH_CHECK(align_bias->dim() == 1 && align_bias->size(0) == c,
                "align_bias must have shape (c,) = (", c, ",), got ", align_bias->sizes());
  }
  const std::pair<const at::Tensor*, const char*> weights[] = {{&pooled_weight, "pooled_weight"},
                                                               {&full_weight, "full_weight"}};
  for (const auto& [w, name] : weights) {
    check_like(*w, name, feat, "feat");
    TORCH_CHECK(w->dim() == 4 && w->size(0) == c && w->size(1) == c && w->size(2) == 3 &&
                    w->size(3) == 3,
                name, " must have shape (c, c, 3, 3) = (", c, ", ", c, ", 3, 3), got ",
                w->sizes());
  }
  const std::pair<const at::Tensor*, const char*> biases[] = {{&pooled_bias, "pooled_bias"},
                                                              {&full_bias, "full_bias"}};
  for (const auto& [b, name] : biases) {
    check_like(*b, name, feat, "feat");
    TORCH_CHECK(b->dim() == 1 && b->size(0) == c, name, " must have shape (c,) = (", c,
                ",), got ", b->sizes());
  }
}

}  // namespace tdn
