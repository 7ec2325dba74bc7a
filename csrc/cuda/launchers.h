// Host entry points of the tdn_ops CUDA kernels: raw device pointers, sizes, a layout flag and
// a stream. Nothing here knows about torch, so the .cu files build with plain nvcc (CI compiles
// them on machines without a GPU) and the torch binding (binding.cpp) stays a thin adapter.
//
// Conventions shared by every launcher:
// * Tensors are dense in one of two layouts of a (B, C, H, W) shape: contiguous (NCHW) or
//   channels_last (NHWC), chosen by `channels_last`. Every tensor of one call uses that layout.
// * Work is enqueued on `stream`; nothing synchronises with the host. The return value is the
//   launch status (cudaGetLastError after the launches): errors inside kernels surface later,
//   like any asynchronous CUDA error.
// * Half types compute in float; float64 computes in double.
// * Indexing is 64-bit throughout: sizes past 2**31 elements are fine.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tdn {
namespace cuda {

enum class DType { kFloat32, kFloat16, kBFloat16, kFloat64 };

// ---------------------------------------------------------------------------------------
// temporal_diff_pool. x: (B, frames*c, H, W); out: (B, (frames-1)*c, H/k, W/k), block i of the
// output = avgpool_k(x_{i+1} - x_i). The backward writes grad_x (B, frames*c, H, W) from
// grad_out; pixels outside the pooled area get zero.
cudaError_t temporal_diff_pool_forward(const void* x, void* out, DType dtype, int64_t batch,
                                       int64_t frames, int64_t channels_per_frame,
                                       int64_t height, int64_t width, int64_t kernel_size,
                                       bool channels_last, cudaStream_t stream);
cudaError_t temporal_diff_pool_backward(const void* grad_out, void* grad_x, DType dtype,
                                        int64_t batch, int64_t frames,
                                        int64_t channels_per_frame, int64_t height,
                                        int64_t width, int64_t kernel_size, bool channels_last,
                                        cudaStream_t stream);

// ---------------------------------------------------------------------------------------
// cross_segment_diff. feat, aligned: (N*T, C, H, W). diff_fwd/diff_bwd: (N*T, C, H, W),
// pooled_fwd/pooled_bwd: (N*T, C, H/2, W/2) (the halves of the stacked outputs).
cudaError_t cross_segment_diff_forward(const void* feat, const void* aligned, void* diff_fwd,
                                       void* diff_bwd, void* pooled_fwd, void* pooled_bwd,
                                       DType dtype, int64_t batch, int64_t channels,
                                       int64_t height, int64_t width, int64_t num_segments,
                                       bool channels_last, cudaStream_t stream);
cudaError_t cross_segment_diff_backward(const void* grad_diff_fwd, const void* grad_diff_bwd,
                                        const void* grad_pooled_fwd,
                                        const void* grad_pooled_bwd, void* grad_feat,
                                        void* grad_aligned, DType dtype, int64_t batch,
                                        int64_t channels, int64_t height, int64_t width,
                                        int64_t num_segments, bool channels_last,
                                        cudaStream_t stream);

// ---------------------------------------------------------------------------------------
// Nearest-upsampling combinations (multiscale_sum, lateral_fuse). `small` is (B, C, h, w) and
// is upsampled to (H, W) exactly like F.interpolate(mode="nearest").
//   forward:  out = ca*a + cu*up(small) [+ cb*b when b is not null]
//   backward: grad_direct = s_direct*g; grad_small[i,j] = sum of s_gather*g over the output
//             pixels that read (i, j) (a gather: deterministic, no atomics).
cudaError_t upsample_combine_forward(const void* a, const void* small, const void* b, void* out,
                                     DType dtype, int64_t batch, int64_t channels,
                                     int64_t height, int64_t width, int64_t small_height,
                                     int64_t small_width, double ca, double cu, double cb,
                                     bool channels_last, cudaStream_t stream);
cudaError_t upsample_combine_backward(const void* grad_out, void* grad_direct, void* grad_small,
                                      DType dtype, int64_t batch, int64_t channels,
                                      int64_t height, int64_t width, int64_t small_height,
                                      int64_t small_width, double s_direct, double s_gather,
                                      bool channels_last, cudaStream_t stream);

// ---------------------------------------------------------------------------------------
// bidirectional_excitation over `numel` elements (layout-free: all tensors share one).
cudaError_t excitation_forward(const void* x, const void* y_fwd, const void* y_bwd, void* out,
                               DType dtype, int64_t numel, cudaStream_t stream);
cudaError_t excitation_backward(const void* grad_out, const void* x, const void* y_fwd,
                                const void* y_bwd, void* grad_x, void* grad_y_fwd,
                                void* grad_y_bwd, DType dtype, int64_t numel,
                                cudaStream_t stream);

// ---------------------------------------------------------------------------------------
// temporal_shift_conv and excite_shift (the excited variant when y_fwd/y_bwd are not null).
// x: (videos*T, C, H, W); weight: (C, 1, 3) contiguous, in `dtype`.
struct ShiftShape {
  int64_t videos;
  int64_t segments;  // T
  int64_t channels;  // C
  int64_t pixels;    // H*W
  bool channels_last;
};

cudaError_t shift_forward(const void* x, const void* y_fwd, const void* y_bwd,
                          const void* weight, void* out, DType dtype, const ShiftShape& shape,
                          cudaStream_t stream);

// Bytes of device scratch shift_backward needs for its two-stage weight-gradient reduction.
int64_t shift_backward_workspace_bytes(const ShiftShape& shape, DType dtype);

// grad_y_fwd/grad_y_bwd are written only in the excited variant (else pass null). grad_weight
// is (C, 1, 3) in `dtype`; it is fully overwritten (no zero-fill needed). `workspace` holds
// shift_backward_workspace_bytes(shape, dtype) bytes of device memory.
cudaError_t shift_backward(const void* grad_out, const void* x, const void* y_fwd,
                           const void* y_bwd, const void* weight, void* grad_x,
                           void* grad_y_fwd, void* grad_y_bwd, void* grad_weight,
                           void* workspace, DType dtype, const ShiftShape& shape,
                           cudaStream_t stream);

// ---------------------------------------------------------------------------------------
// project_excite_shift: y_d = scale[d] * (weight @ mixed[d]) + bias[d] per pixel,
// out = shift(x * (0.5 + 0.5*sigmoid(y_0) + 0.5*sigmoid(y_1)), shift_weight) (docs/math.md §6).
// x, out, grad_out, grad_x: (videos*T, C, H, W) in the layout; mixed and grad_mixed: one dense
// buffer (2, videos*T, c, H, W) (contiguous) or (2, videos*T, H, W, c) (channels_last), i.e.
// each direction in the layout. weight (C, c), scale and bias (2, C), shift_weight (C, 1, 3):
// contiguous, in `dtype`.
struct ProjectShape {
  int64_t videos;
  int64_t segments;      // T
  int64_t channels;      // C
  int64_t mid_channels;  // c
  int64_t pixels;        // H*W
  bool channels_last;
};

cudaError_t project_excite_shift_forward(const void* x, const void* mixed, const void* weight,
                                         const void* scale, const void* bias,
                                         const void* shift_weight, void* out, DType dtype,
                                         const ProjectShape& shape, cudaStream_t stream);

// Bytes of device scratch project_excite_shift_backward needs: one row of float32 (float64
// for float64) partial parameter gradients per (frame, tile of 32 pixels), 7*C + C*c each.
int64_t project_excite_shift_backward_workspace_bytes(const ProjectShape& shape, DType dtype);

// The parameter gradients (weight (C, c), scale and bias (2, C), shift_weight (C, 1, 3), in
// `dtype`) are fully overwritten, zero for empty batches; deterministic (no atomics).
cudaError_t project_excite_shift_backward(const void* grad_out, const void* x, const void* mixed,
                                          const void* weight, const void* scale,
                                          const void* bias, const void* shift_weight,
                                          void* grad_x, void* grad_mixed, void* grad_weight,
                                          void* grad_scale, void* grad_bias,
                                          void* grad_shift_weight, void* workspace, DType dtype,
                                          const ProjectShape& shape, cudaStream_t stream);

}  // namespace cuda
}  // namespace tdn
