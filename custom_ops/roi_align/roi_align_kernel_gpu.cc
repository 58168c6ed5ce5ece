// GPU kernels of MultilevelRoiAlign(Grad), float only: thin wrappers around the C ABI
// launchers of roi_align_cuda.cu. Compiled to nothing unless the loader builds with CUDA
// (-DGOOGLE_CUDA=1: nvcc on PATH, TF built with CUDA and a GPU visible).
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include "roi_align_cuda.h"
#include "roi_align_kernel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace roi_align {
namespace {

MrcnnRoiAlignProblem ToCuda(const Problem& p) {
  MrcnnRoiAlignProblem c{};
  c.num_levels = p.num_levels;
  c.min_level = p.min_level;
  c.batch = static_cast<int>(p.batch);
  c.boxes_per_image = static_cast<int>(p.boxes_per_image);
  c.channels = static_cast<int>(p.channels);
  for (int l = 0; l < p.num_levels; ++l) {
    c.heights[l] = static_cast<int>(p.height[l]);
    c.widths[l] = static_cast<int>(p.width[l]);
  }
  c.output_size = p.output_size;
  c.sampling_ratio = p.sampling_ratio;
  c.aligned = p.aligned ? 1 : 0;
  return c;
}

void* Stream(OpKernelContext* ctx) { return ctx->eigen_device<Eigen::GpuDevice>().stream(); }

struct GpuRunner {
  static void Forward(OpKernelContext* ctx, const Problem& p, const float* const* levels, const float* boxes,
                      float* crops) {
    const MrcnnRoiAlignProblem problem = ToCuda(p);
    const int code = mrcnn_roi_align_forward_cuda(&problem, levels, boxes, crops, Stream(ctx));
    OP_REQUIRES(ctx, code == 0, errors::Internal("MultilevelRoiAlign CUDA launch failed: cudaError ", code));
  }

  static void Backward(OpKernelContext* ctx, const Problem& p, const float* grad, const float* boxes,
                       float* const* level_grads) {
    const MrcnnRoiAlignProblem problem = ToCuda(p);
    const int code = mrcnn_roi_align_backward_cuda(&problem, grad, boxes, level_grads, Stream(ctx));
    OP_REQUIRES(ctx, code == 0, errors::Internal("MultilevelRoiAlignGrad CUDA launch failed: cudaError ", code));
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("MultilevelRoiAlign").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        MultilevelRoiAlignOp<float, GpuRunner>);
REGISTER_KERNEL_BUILDER(Name("MultilevelRoiAlignGrad").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        MultilevelRoiAlignGradOp<float, GpuRunner>);

}  // namespace roi_align

#endif  // GOOGLE_CUDA
