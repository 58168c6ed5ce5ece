// Input validation and the OpKernel classes of MultilevelRoiAlign(Grad), shared by devices.
//
// A device supplies a Runner with
//   static void Forward(OpKernelContext*, const Problem&, const T* const* levels,
//                       const float* boxes, T* crops);
//   static void Backward(OpKernelContext*, const Problem&, const T* grad,
//                        const float* boxes, T* const* level_grads);
// where every pointer addresses that device's memory.
#ifndef CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_KERNEL_H_
#define CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_KERNEL_H_

#include <cstdint>

#include "roi_align_geometry.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace roi_align {

using tensorflow::OpInputList;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
namespace errors = tensorflow::errors;

// Attributes and validated sizes of one call.
struct Problem {
  int output_size = 7;     // R
  int sampling_ratio = 2;  // s
  int min_level = 2;
  int num_levels = 0;      // L
  bool aligned = false;
  int64_t batch = 0;            // B
  int64_t boxes_per_image = 0;  // N
  int64_t channels = 0;         // C
  int64_t height[kMaxLevels] = {};
  int64_t width[kMaxLevels] = {};

  int max_level() const { return min_level + num_levels - 1; }
  int64_t num_boxes() const { return batch * boxes_per_image; }
  int64_t crop_elements() const { return int64_t{output_size} * output_size * channels; }
};

// Reads the attributes shared by both ops.
inline void ReadAttrs(OpKernelConstruction* ctx, Problem* p) {
  OP_REQUIRES_OK(ctx, ctx->GetAttr("output_size", &p->output_size));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("sampling_ratio", &p->sampling_ratio));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("min_level", &p->min_level));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("aligned", &p->aligned));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("num_levels", &p->num_levels));
  OP_REQUIRES(ctx, p->num_levels >= 1 && p->num_levels <= kMaxLevels,
              errors::InvalidArgument("MultilevelRoiAlign supports 1..", kMaxLevels,
                                      " feature levels. Received: num_levels=", p->num_levels));
  OP_REQUIRES(ctx, p->max_level() <= 24,
              errors::InvalidArgument("MultilevelRoiAlign needs min_level + num_levels - 1 <= 24. Received: ",
                                      "min_level=", p->min_level, ", num_levels=", p->num_levels));
}

// Checks features [B, H_l, W_l, C] (same B and C) and boxes [B, N, 4]; fills the sizes.
inline absl::Status ValidateInputs(const OpInputList& features, const Tensor& boxes, Problem* p) {
  const TensorShape& first = features[0].shape();
  for (int l = 0; l < p->num_levels; ++l) {
    const TensorShape& shape = features[l].shape();
    if (shape.dims() != 4) {
      return errors::InvalidArgument("features[", l, "] must be [B, H, W, C]. Received shape ",
                                     shape.DebugString());
    }
    if (shape.dim_size(0) != first.dim_size(0) || shape.dim_size(3) != first.dim_size(3)) {
      return errors::InvalidArgument("All feature levels need the same batch size and channels. Received ",
                                     "features[0] ", first.DebugString(), " and features[", l, "] ",
                                     shape.DebugString());
    }
    p->height[l] = shape.dim_size(1);
    p->width[l] = shape.dim_size(2);
  }
  if (boxes.dims() != 3 || boxes.dim_size(2) != 4) {
    return errors::InvalidArgument("boxes must be [B, N, 4]. Received shape ", boxes.shape().DebugString());
  }
  if (boxes.dim_size(0) != first.dim_size(0)) {
    return errors::InvalidArgument("boxes and features disagree on the batch size. Received boxes ",
                                   boxes.shape().DebugString(), ", features[0] ", first.DebugString());
  }
  p->batch = first.dim_size(0);
  p->boxes_per_image = boxes.dim_size(1);
  p->channels = first.dim_size(3);
  return absl::OkStatus();
}

// Host array of the level base pointers of an input list.
template <typename T>
struct LevelPointers {
  const T* data[kMaxLevels] = {};
};

template <typename T>
LevelPointers<T> InputLevels(const OpInputList& features) {
  LevelPointers<T> levels;
  for (int l = 0; l < features.size(); ++l) levels.data[l] = features[l].flat<T>().data();
  return levels;
}

template <typename T, typename Runner>
class MultilevelRoiAlignOp : public tensorflow::OpKernel {
 public:
  explicit MultilevelRoiAlignOp(OpKernelConstruction* ctx) : OpKernel(ctx) { ReadAttrs(ctx, &attrs_); }

  void Compute(OpKernelContext* ctx) override {
    Problem p = attrs_;
    OpInputList features;
    const Tensor* boxes = nullptr;
    OP_REQUIRES_OK(ctx, ctx->input_list("features", &features));
    OP_REQUIRES_OK(ctx, ctx->input("boxes", &boxes));
    OP_REQUIRES_OK(ctx, ValidateInputs(features, *boxes, &p));
    Tensor* crops = nullptr;
    TensorShape shape({p.batch, p.boxes_per_image, p.output_size, p.output_size, p.channels});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &crops));
    if (crops->NumElements() == 0) return;
    Runner::Forward(ctx, p, InputLevels<T>(features).data, boxes->flat<float>().data(), crops->flat<T>().data());
  }

 private:
  Problem attrs_;
};

template <typename T, typename Runner>
class MultilevelRoiAlignGradOp : public tensorflow::OpKernel {
 public:
  explicit MultilevelRoiAlignGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) { ReadAttrs(ctx, &attrs_); }

  void Compute(OpKernelContext* ctx) override {
    Problem p = attrs_;
    OpInputList features;
    const Tensor *grad = nullptr, *boxes = nullptr;
    OP_REQUIRES_OK(ctx, ctx->input_list("features", &features));
    OP_REQUIRES_OK(ctx, ctx->input("grad", &grad));
    OP_REQUIRES_OK(ctx, ctx->input("boxes", &boxes));
    OP_REQUIRES_OK(ctx, ValidateInputs(features, *boxes, &p));
    TensorShape expected({p.batch, p.boxes_per_image, p.output_size, p.output_size, p.channels});
    OP_REQUIRES(ctx, grad->shape() == expected,
                errors::InvalidArgument("grad must be [B, N, R, R, C] = ", expected.DebugString(),
                                        ". Received shape ", grad->shape().DebugString()));
    tensorflow::OpOutputList outputs;
    OP_REQUIRES_OK(ctx, ctx->output_list("grad_features", &outputs));
    T* level_grads[kMaxLevels] = {};
    for (int l = 0; l < p.num_levels; ++l) {
      Tensor* out = nullptr;
      OP_REQUIRES_OK(ctx, outputs.allocate(l, features[l].shape(), &out));
      level_grads[l] = out->flat<T>().data();
    }
    Runner::Backward(ctx, p, grad->flat<T>().data(), boxes->flat<float>().data(), level_grads);
  }

 private:
  Problem attrs_;
};

}  // namespace roi_align

#endif  // CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_KERNEL_H_
