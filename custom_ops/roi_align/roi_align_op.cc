// Registration and shape functions of MultilevelRoiAlign and MultilevelRoiAlignGrad.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// crops: [B, N, R, R, C] from boxes [B, N, 4] and features[0] [B, H, W, C].
absl::Status ForwardShape(InferenceContext* c) {
  int num_levels = 0, output_size = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("num_levels", &num_levels));
  TF_RETURN_IF_ERROR(c->GetAttr("output_size", &output_size));
  ShapeHandle level, boxes;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &level));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(num_levels), 3, &boxes));
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(boxes, 2), 4, &unused));
  c->set_output(0, c->MakeShape({c->Dim(boxes, 0), c->Dim(boxes, 1), output_size, output_size,
                                 c->Dim(level, 3)}));
  return absl::OkStatus();
}

// grad_features[l] has the shape of features[l].
absl::Status GradShape(InferenceContext* c) {
  int num_levels = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("num_levels", &num_levels));
  for (int i = 0; i < num_levels; ++i) c->set_output(i, c->input(2 + i));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("MultilevelRoiAlign")
    .Input("features: num_levels * T")
    .Input("boxes: float")
    .Output("crops: T")
    .Attr("T: {float, double}")
    .Attr("num_levels: int >= 1")
    .Attr("min_level: int >= 0 = 2")
    .Attr("output_size: int >= 1 = 7")
    .Attr("sampling_ratio: int >= 1 = 2")
    .Attr("aligned: bool = false")
    .SetShapeFn(ForwardShape)
    .Doc(R"doc(
Fused multilevel ROIAlign (see mrcnn_tf2/ops/roi_align.py for the exact geometry).

features: levels min_level..min_level+num_levels-1, each [B, H_l, W_l, C], stride 2**l.
boxes: [B, N, 4] (ymin, xmin, ymax, xmax) in image pixels; each box is pooled on its FPN level.
crops: [B, N, output_size, output_size, C].
)doc");

REGISTER_OP("MultilevelRoiAlignGrad")
    .Input("grad: T")
    .Input("boxes: float")
    .Input("features: num_levels * T")
    .Output("grad_features: num_levels * T")
    .Attr("T: {float, double}")
    .Attr("num_levels: int >= 1")
    .Attr("min_level: int >= 0 = 2")
    .Attr("output_size: int >= 1 = 7")
    .Attr("sampling_ratio: int >= 1 = 2")
    .Attr("aligned: bool = false")
    .SetShapeFn(GradShape)
    .Doc(R"doc(
Gradient of MultilevelRoiAlign with respect to its features (features only give the shapes).

grad: [B, N, output_size, output_size, C].
grad_features: one [B, H_l, W_l, C] tensor per level.
)doc");
