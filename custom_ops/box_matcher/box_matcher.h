// IoU and match rules of mrcnn_tf2/ops/box_ops.py::iou and mrcnn_tf2/ops/matcher.py::match,
// shared by the CPU kernel (box_matcher.cc) and the CUDA kernels (box_matcher_cuda.cu).
// The float32 operations are those of the TF graph, in the same order, so IoUs are
// bit-identical and the equality test of low-quality matches behaves the same.
// Plain C++ (no TensorFlow header).
#ifndef MRCNN_CUSTOM_OPS_BOX_MATCHER_H_
#define MRCNN_CUSTOM_OPS_BOX_MATCHER_H_

#include <cstdint>

#ifdef __CUDACC__
#define MRCNN_HD __host__ __device__ __forceinline__
#else
#define MRCNN_HD inline
#endif

namespace mrcnn_matcher {

constexpr int32_t kForeground = 1, kBackground = 0, kIgnore = -1;

// A GT box with its area, ``max(h, 0) * max(w, 0)`` as box_ops.box_areas.
struct GtBox {
  float ymin, xmin, ymax, xmax, area;
};

MRCNN_HD float BoxArea(float ymin, float xmin, float ymax, float xmax) {
  const float h = ymax - ymin, w = xmax - xmin;
  return (h > 0.0f ? h : 0.0f) * (w > 0.0f ? w : 0.0f);
}

MRCNN_HD GtBox MakeGtBox(const float* b) { return GtBox{b[0], b[1], b[2], b[3], BoxArea(b[0], b[1], b[2], b[3])}; }

// box_ops.iou of box `a` (area `area_a`) with `g`: divide_no_nan(inter, union).
MRCNN_HD float Iou(const float* a, float area_a, const GtBox& g) {
  const float top = a[0] > g.ymin ? a[0] : g.ymin;
  const float left = a[1] > g.xmin ? a[1] : g.xmin;
  const float bottom = a[2] < g.ymax ? a[2] : g.ymax;
  const float right = a[3] < g.xmax ? a[3] : g.xmax;
  const float ih = bottom - top > 0.0f ? bottom - top : 0.0f;
  const float iw = right - left > 0.0f ? right - left : 0.0f;
  const float inter = ih * iw;
  const float uni = area_a + g.area - inter;
  return uni == 0.0f ? 0.0f : inter / uni;
}

// matcher.match's labels from the best IoU.
MRCNN_HD int32_t Label(float max_iou, float high, float low) {
  return max_iou >= high ? kForeground : (max_iou < low ? kBackground : kIgnore);
}

}  // namespace mrcnn_matcher

#endif  // MRCNN_CUSTOM_OPS_BOX_MATCHER_H_
