// Shared by the CPU kernel (proposals.cc) and the CUDA kernels (proposals_cuda.cu):
// box arithmetic written exactly as mrcnn_tf2/ops/box_ops.py and TensorFlow's NMS
// compute it (same float32 operations in the same order). Plain C++ (no TensorFlow
// header) so that nvcc and the standalone harness can use it.
#ifndef MRCNN_CUSTOM_OPS_PROPOSALS_H_
#define MRCNN_CUSTOM_OPS_PROPOSALS_H_

#include <math.h>

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define MRCNN_HD __host__ __device__ __forceinline__
#else
#define MRCNN_HD inline
#endif

namespace mrcnn_proposals {

// log(1000 / 16) rounded to float32, as tf.minimum(dh / wh, BBOX_XFORM_CLIP) sees it.
constexpr float kBoxXformClip = 4.135166556742356f;

struct DecodeParams {
  float wy, wx, wh, ww;  // delta weights (1, 1, 1, 1 for the RPN)
  float min_size;        // boxes need height and width > min_size
};

// box_ops.decode_boxes + clip_boxes + valid_box_mask for one anchor.
// Writes (ymin, xmin, ymax, xmax) to `box`; returns whether the box is kept.
MRCNN_HD bool DecodeClipBox(const float* delta, const float* anchor, float image_h, float image_w,
                            const DecodeParams& p, float* box) {
  const float yc_a = (anchor[0] + anchor[2]) * 0.5f;
  const float xc_a = (anchor[1] + anchor[3]) * 0.5f;
  const float h_a = anchor[2] - anchor[0];
  const float w_a = anchor[3] - anchor[1];
  const float yc = delta[0] / p.wy * h_a + yc_a;
  const float xc = delta[1] / p.wx * w_a + xc_a;
  const float dh = delta[2] / p.wh, dw = delta[3] / p.ww;
  const float half_h = 0.5f * expf(dh < kBoxXformClip ? dh : kBoxXformClip) * h_a;
  const float half_w = 0.5f * expf(dw < kBoxXformClip ? dw : kBoxXformClip) * w_a;
  const float raw[4] = {yc - half_h, xc - half_w, yc + half_h, xc + half_w};
  const float limit[4] = {image_h, image_w, image_h, image_w};
  for (int i = 0; i < 4; ++i) {
    const float lo = raw[i] > 0.0f ? raw[i] : 0.0f;  // tf.maximum(x, 0) (NaN -> 0 differs; none here)
    box[i] = lo < limit[i] ? lo : limit[i];
  }
  return (box[2] - box[0] > p.min_size) && (box[3] - box[1] > p.min_size);
}

// A box as TensorFlow's NMS sees it: corners ordered, area precomputed.
struct NmsBox {
  float ymin, xmin, ymax, xmax, area;
};

MRCNN_HD NmsBox MakeNmsBox(const float* b) {
  NmsBox r;
  r.ymin = b[0] < b[2] ? b[0] : b[2];
  r.xmin = b[1] < b[3] ? b[1] : b[3];
  r.ymax = b[0] < b[2] ? b[2] : b[0];
  r.xmax = b[1] < b[3] ? b[3] : b[1];
  r.area = (r.ymax - r.ymin) * (r.xmax - r.xmin);
  return r;
}

// IOU() of tensorflow/core/kernels/image/non_max_suppression_op.cc; `i` is the candidate.
MRCNN_HD float NmsIou(const NmsBox& i, const NmsBox& j) {
  if (i.area <= 0.0f || j.area <= 0.0f) return 0.0f;
  const float ymin = i.ymin > j.ymin ? i.ymin : j.ymin;
  const float xmin = i.xmin > j.xmin ? i.xmin : j.xmin;
  const float ymax = i.ymax < j.ymax ? i.ymax : j.ymax;
  const float xmax = i.xmax < j.xmax ? i.xmax : j.xmax;
  const float ih = ymax - ymin > 0.0f ? ymax - ymin : 0.0f;
  const float iw = xmax - xmin > 0.0f ? xmax - xmin : 0.0f;
  const float inter = ih * iw;
  return inter / (i.area + j.area - inter);
}

// Float -> unsigned key with the same order (-0 == +0); NaN is not supported.
MRCNN_HD uint32_t OrderedBits(float f) {
  union {
    float f;
    uint32_t u;
  } v;
  v.f = (f == 0.0f) ? 0.0f : f;
  return (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u);
}

}  // namespace mrcnn_proposals

#endif  // MRCNN_CUSTOM_OPS_PROPOSALS_H_
