// Autograd of the tdn_ops operators, registered in C++ for the Autograd dispatch key.
//
// Each forward operator gets a torch::autograd::Function: its forward saves what the backward
// needs and runs the device kernel (dispatching below autograd); its backward calls the
// operator's registered *_backward operator. Nothing of a training step's call then runs in
// Python: torch.library's Python autograd (register_autograd) cost 0.06-0.1 ms per forward +
// backward on the 2-core benchmark machine, as much as the kernels of the small L-TDM
// operators themselves. tdn_ops/_registry.py registers the Python autograd only for operators
// this file does not cover.
//
// The fake kernels stay in Python (torch.library.register_fake). The backward operators are
// ordinary operators with fake kernels, so torch.compile and opcheck's AOT-dispatch tests trace
// through these Functions exactly as they traced the Python ones. What each backward saves
// and computes is described in docs/math.md §6; the formulas live in the kernels.

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace tdn {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

namespace {

// The typed handle of tdn_ops::<name>, looked up once.
template <class Signature>
c10::TypedOperatorHandle<Signature> tdn_op(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow((std::string("tdn_ops::") + name).c_str(), "")
      .typed<Signature>();
}

// Sizes are saved as SymInts: under torch.compile with dynamic shapes the inputs' sizes are
// symbolic. The backward operators' schemas take ints, so the size is made concrete there
// (a guard under tracing, a plain read in eager mode).
int64_t concrete(const c10::IValue& size) {
  return size.toSymInt().guard_int(__FILE__, __LINE__);
}

}  // namespace

using TensorPair = std::tuple<Tensor, Tensor>;
using TensorTriple = std::tuple<Tensor, Tensor, Tensor>;

// ---------------------------------------------------------------- temporal_diff_pool
class TemporalDiffPool : public Function<TemporalDiffPool> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t frames,
                        int64_t kernel_size) {
    static auto op = tdn_op<Tensor(const Tensor&, int64_t, int64_t)>("temporal_diff_pool");
    ctx->saved_data["frames"] = frames;
    ctx->saved_data["kernel_size"] = kernel_size;
    ctx->saved_data["height"] = x.sym_size(-2);
    ctx->saved_data["width"] = x.sym_size(-1);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, frames, kernel_size);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = tdn_op<Tensor(const Tensor&, int64_t, int64_t, int64_t, int64_t)>(
        "temporal_diff_pool_backward");
    auto& saved = ctx->saved_data;
    Tensor grad_x = op.call(grads[0], saved["frames"].toInt(), saved["kernel_size"].toInt(),
                            concrete(saved["height"]), concrete(saved["width"]));
    return {grad_x, Tensor(), Tensor()};
  }
};

// ---------------------------------------------------------------- cross_segment_diff
class CrossSegmentDiff : public Function<CrossSegmentDiff> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& feat, const Tensor& aligned,
                               int64_t num_segments) {
    static auto op =
        tdn_op<TensorPair(const Tensor&, const Tensor&, int64_t)>("cross_segment_diff");
    ctx->saved_data["num_segments"] = num_segments;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [diff, pooled] = op.call(feat, aligned, num_segments);
    return {diff, pooled};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = tdn_op<TensorPair(const Tensor&, const Tensor&, int64_t)>(
        "cross_segment_diff_backward");
    auto [grad_feat, grad_aligned] =
        op.call(grads[0], grads[1], ctx->saved_data["num_segments"].toInt());
    return {grad_feat, grad_aligned, Tensor()};
  }
};

// ---------------------------------------------------------------- multiscale_sum
class MultiscaleSum : public Function<MultiscaleSum> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& diff, const Tensor& pooled_branch,
                        const Tensor& full_branch) {
    static auto op =
        tdn_op<Tensor(const Tensor&, const Tensor&, const Tensor&)>("multiscale_sum");
    ctx->saved_data["pooled_height"] = pooled_branch.sym_size(-2);
    ctx->saved_data["pooled_width"] = pooled_branch.sym_size(-1);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(diff, pooled_branch, full_branch);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op =
        tdn_op<TensorPair(const Tensor&, int64_t, int64_t)>("multiscale_sum_backward");
    auto& saved = ctx->saved_data;
    auto [grad_third, grad_pooled] = op.call(grads[0], concrete(saved["pooled_height"]),
                                             concrete(saved["pooled_width"]));
    // diff and full_branch both enter the sum with weight 1/3: one gradient serves both.
    return {grad_third, grad_pooled, grad_third};
  }
};

// ---------------------------------------------------------------- bidirectional_excitation
class BidirectionalExcitation : public Function<BidirectionalExcitation> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y_fwd,
                        const Tensor& y_bwd) {
    static auto op = tdn_op<Tensor(const Tensor&, const Tensor&, const Tensor&)>(
        "bidirectional_excitation");
    ctx->save_for_backward({x, y_fwd, y_bwd});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, y_fwd, y_bwd);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op =
        tdn_op<TensorTriple(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(
            "bidirectional_excitation_backward");
    auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_fwd, grad_bwd] = op.call(grads[0], saved[0], saved[1], saved[2]);
    return {grad_x, grad_fwd, grad_bwd};
  }
};

// ---------------------------------------------------------------- temporal_shift_conv
class TemporalShiftConv : public Function<TemporalShiftConv> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight,
                        int64_t num_segments) {
    static auto op =
        tdn_op<Tensor(const Tensor&, const Tensor&, int64_t)>("temporal_shift_conv");
    ctx->save_for_backward({x, weight});
    ctx->saved_data["num_segments"] = num_segments;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, weight, num_segments);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = tdn_op<TensorPair(const Tensor&, const Tensor&, const Tensor&, int64_t)>(
        "temporal_shift_conv_backward");
    auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_weight] =
        op.call(grads[0], saved[0], saved[1], ctx->saved_data["num_segments"].toInt());
    return {grad_x, grad_weight, Tensor()};
  }
};

// ---------------------------------------------------------------- excite_shift
class ExciteShift : public Function<ExciteShift> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y_fwd,
                        const Tensor& y_bwd, const Tensor& weight, int64_t num_segments) {
    static auto op = tdn_op<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   int64_t)>("excite_shift");
    ctx->save_for_backward({x, y_fwd, y_bwd, weight});
    ctx->saved_data["num_segments"] = num_segments;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, y_fwd, y_bwd, weight, num_segments);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor>;
    static auto op = tdn_op<Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, int64_t)>("excite_shift_backward");
    auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_fwd, grad_bwd, grad_weight] =
        op.call(grads[0], saved[0], saved[1], saved[2], saved[3],
                ctx->saved_data["num_segments"].toInt());
    return {grad_x, grad_fwd, grad_bwd, grad_weight, Tensor()};
  }
};

// ---------------------------------------------------------------- lateral_fuse
class LateralFuse : public Function<LateralFuse> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& d, double alpha,
                        double beta) {
    static auto op =
        tdn_op<Tensor(const Tensor&, const Tensor&, double, double)>("lateral_fuse");
    ctx->saved_data["d_height"] = d.sym_size(-2);
    ctx->saved_data["d_width"] = d.sym_size(-1);
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["beta"] = beta;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, d, alpha, beta);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = tdn_op<TensorPair(const Tensor&, int64_t, int64_t, double, double)>(
        "lateral_fuse_backward");
    auto& saved = ctx->saved_data;
    auto [grad_x, grad_d] =
        op.call(grads[0], concrete(saved["d_height"]), concrete(saved["d_width"]),
                saved["alpha"].toDouble(), saved["beta"].toDouble());
    return {grad_x, grad_d, Tensor(), Tensor()};
  }
};

// ---------------------------------------------------------------- project_excite_shift
// Saves only the inputs: the backward recomputes the C-channel logits and the excited tensor
// from `mixed` tile by tile (docs/math.md §6).
class ProjectExciteShift : public Function<ProjectExciteShift> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& mixed,
                        const Tensor& weight, const Tensor& scale, const Tensor& bias,
                        const Tensor& shift_weight, int64_t num_segments) {
    static auto op = tdn_op<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const Tensor&, const Tensor&, int64_t)>("project_excite_shift");
    ctx->save_for_backward({x, mixed, weight, scale, bias, shift_weight});
    ctx->saved_data["num_segments"] = num_segments;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, mixed, weight, scale, bias, shift_weight, num_segments);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
    static auto op =
        tdn_op<Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, int64_t)>("project_excite_shift_backward");
    auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_mixed, grad_weight, grad_scale, grad_bias, grad_shift] =
        op.call(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5],
                ctx->saved_data["num_segments"].toInt());
    return {grad_x, grad_mixed, grad_weight, grad_scale, grad_bias, grad_shift, Tensor()};
  }
};

// ---------------------------------------------------------------- the Autograd kernels
Tensor temporal_diff_pool_autograd(const Tensor& x, int64_t frames, int64_t kernel_size) {
  return TemporalDiffPool::apply(x, frames, kernel_size);
}

TensorPair cross_segment_diff_autograd(const Tensor& feat, const Tensor& aligned,
                                       int64_t num_segments) {
  auto out = CrossSegmentDiff::apply(feat, aligned, num_segments);
  return {out[0], out[1]};
}

Tensor multiscale_sum_autograd(const Tensor& diff, const Tensor& pooled_branch,
                               const Tensor& full_branch) {
  return MultiscaleSum::apply(diff, pooled_branch, full_branch);
}

Tensor bidirectional_excitation_autograd(const Tensor& x, const Tensor& y_fwd,
                                         const Tensor& y_bwd) {
  return BidirectionalExcitation::apply(x, y_fwd, y_bwd);
}

Tensor temporal_shift_conv_autograd(const Tensor& x, const Tensor& weight, int64_t num_segments) {
  return TemporalShiftConv::apply(x, weight, num_segments);
}

Tensor excite_shift_autograd(const Tensor& x, const Tensor& y_fwd, const Tensor& y_bwd,
                             const Tensor& weight, int64_t num_segments) {
  return ExciteShift::apply(x, y_fwd, y_bwd, weight, num_segments);
}

Tensor lateral_fuse_autograd(const Tensor& x, const Tensor& d, double alpha, double beta) {
  return LateralFuse::apply(x, d, alpha, beta);
}

Tensor project_excite_shift_autograd(const Tensor& x, const Tensor& mixed, const Tensor& weight,
                                     const Tensor& scale, const Tensor& bias,
                                     const Tensor& shift_weight, int64_t num_segments) {
  return ProjectExciteShift::apply(x, mixed, weight, scale, bias, shift_weight, num_segments);
}

}  // namespace tdn

TORCH_LIBRARY_IMPL(tdn_ops, Autograd, m) {
  m.impl("temporal_diff_pool", &tdn::temporal_diff_pool_autograd);
  m.impl("cross_segment_diff", &tdn::cross_segment_diff_autograd);
  m.impl("multiscale_sum", &tdn::multiscale_sum_autograd);
  m.impl("bidirectional_excitation", &tdn::bidirectional_excitation_autograd);
  m.impl("temporal_shift_conv", &tdn::temporal_shift_conv_autograd);
  m.impl("excite_shift", &tdn::excite_shift_autograd);
  m.impl("lateral_fuse", &tdn::lateral_fuse_autograd);
  m.impl("project_excite_shift", &tdn::project_excite_shift_autograd);
}
