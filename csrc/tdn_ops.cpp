// Operator schemas of the tdn_ops library and the Python module that loads them.
//
// The schemas live here, once; each device folder (cpu/, cuda/) registers its kernels with
// TORCH_LIBRARY_IMPL, and autograd.cpp the autograd of the forward operators (C++ Functions
// for the Autograd key, calling the backward operators). Fake (meta) kernels are registered
// from Python (tdn_ops/ops/*.py), as is the autograd of any operator autograd.cpp lacks.
//
// Backward operators take every tensor the backward needs explicitly, so they are pure
// functions of their arguments and can be traced by torch.compile like the forwards.

#include <Python.h>
#include <torch/library.h>

// An empty module: importing tdn_ops._C runs the static registrations below. PyMODINIT_FUNC
// declares it extern "C" and exported (the library is built with -fvisibility=hidden).
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                          "tdn_ops native kernels (operators in torch.ops.tdn_ops)",
                                          -1, nullptr};
  return PyModule_Create(&module_def);
}

namespace {

// Every kernel takes either layout (contiguous or channels_last, any other strides are made
// contiguous first) and its fake kernel gives the output the layout the kernel will: so
// torch.compile may hand the operators the channels_last maps Inductor keeps convolutions in on
// a CPU, rather than converting them to the strides seen while tracing and back (the default
// for custom operators, needs_exact_strides).
void define(torch::Library& m, const char* schema) { m.def(schema, {at::Tag::flexible_layout}); }

}  // namespace

TORCH_LIBRARY(tdn_ops, m) {
  // S-TDM step 1. x: (B, frames*c, H, W) -> (B, (frames-1)*c, H//k, W//k).
  define(m, "temporal_diff_pool(Tensor x, int frames, int kernel_size) -> Tensor");
  define(m,
      "temporal_diff_pool_backward(Tensor grad_out, int frames, int kernel_size, int height, "
      "int width) -> Tensor");

  // L-TDM differences. feat, aligned: (NT, c, H, W) -> diff (2, NT, c, H, W),
  // pooled (2, NT, c, H//2, W//2); [0] is the forward difference, [1] the backward one.
  define(m,
         "cross_segment_diff(Tensor feat, Tensor aligned, int num_segments) -> (Tensor, Tensor)");
  define(m,
      "cross_segment_diff_backward(Tensor grad_diff, Tensor grad_pooled, int num_segments) -> "
      "(Tensor, Tensor)");

  // (diff + up(pooled_branch) + full_branch) / 3. The backward returns the gradient shared by
  // diff and full_branch (grad_out / 3) and the gradient of pooled_branch.
  define(m,
         "multiscale_sum(Tensor diff, Tensor pooled_branch, Tensor full_branch) -> Tensor");
  define(m,
      "multiscale_sum_backward(Tensor grad_out, int pooled_height, int pooled_width) -> "
      "(Tensor, Tensor)");

  // x * (0.5 + 0.5*sigmoid(y_fwd) + 0.5*sigmoid(y_bwd)).
  define(m, "bidirectional_excitation(Tensor x, Tensor y_fwd, Tensor y_bwd) -> Tensor");
  define(m,
      "bidirectional_excitation_backward(Tensor grad_out, Tensor x, Tensor y_fwd, Tensor y_bwd) "
      "-> (Tensor, Tensor, Tensor)");

  // Depthwise temporal convolution with kernel 3 over the segments of each video.
  define(m, "temporal_shift_conv(Tensor x, Tensor weight, int num_segments) -> Tensor");
  define(m,
      "temporal_shift_conv_backward(Tensor grad_out, Tensor x, Tensor weight, int num_segments) "
      "-> (Tensor, Tensor)");

  // temporal_shift_conv(bidirectional_excitation(x, y_fwd, y_bwd), weight) in one pass.
  define(m,
      "excite_shift(Tensor x, Tensor y_fwd, Tensor y_bwd, Tensor weight, int num_segments) -> "
      "Tensor");
  define(m,
      "excite_shift_backward(Tensor grad_out, Tensor x, Tensor y_fwd, Tensor y_bwd, Tensor "
      "weight, int num_segments) -> (Tensor, Tensor, Tensor, Tensor)");

  // S-TDM lateral connection: alpha*x + beta*up(d, like=x).
  define(m, "lateral_fuse(Tensor x, Tensor d, float alpha, float beta) -> Tensor");
  define(m,
      "lateral_fuse_backward(Tensor grad_out, int d_height, int d_width, float alpha, float "
      "beta) -> (Tensor, Tensor)");

  // The whole L-TDM tail: y_d = scale[d] * (weight @ mixed[d]) + bias[d] (weight: (C, c),
  // mixed: (2, N*T, c, H, W)), then excite_shift(x, y_0, y_1, shift_weight) without forming
  // y_d. The backward returns the gradients of x, mixed, weight, scale, bias, shift_weight.
  define(m,
      "project_excite_shift(Tensor x, Tensor mixed, Tensor weight, Tensor scale, Tensor bias, "
      "Tensor shift_weight, int num_segments) -> Tensor");
  define(m,
      "project_excite_shift_backward(Tensor grad_out, Tensor x, Tensor mixed, Tensor weight, "
      "Tensor scale, Tensor bias, Tensor shift_weight, int num_segments) -> (Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor)");

  // Inference only (no backward): the L-TDM's multiscale mixture from B = bn1(conv1(X)),
  // feat (N*T, c, H, W). A = conv2(B) (depthwise 3x3, optional bias), the differences of
  // cross_segment_diff, then per direction (diff + up(conv3x3(pool2(diff)) + pooled_bias) +
  // conv3x3(diff) + full_bias) / 3, the batch norms of the two small-scale branches folded
  // into their weights and biases. -> (2, N*T, c, H, W), [0] the forward direction.
  define(m,
      "ltdm_mixture(Tensor feat, Tensor align_weight, Tensor? align_bias, Tensor pooled_weight, "
      "Tensor pooled_bias, Tensor full_weight, Tensor full_bias, int num_segments) -> Tensor");
}
