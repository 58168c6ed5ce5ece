// MrcnnGenerateProposals: registration, CPU kernel and (GOOGLE_CUDA builds) GPU kernel.
//
// Fuses mrcnn_tf2/ops/proposals.py::generate_proposals: per image and level the
// pre_nms_topk best logits (ties: lower anchor index first, as tf.math.top_k), decode
// against the anchors, clip to (image_info[b, 0], image_info[b, 1]), drop boxes with a
// side <= min_size, greedy NMS (suppress IoU > nms_threshold, TensorFlow's IoU, visit
// order = score then index as tf.image.non_max_suppression) keeping
// min(post_nms_topk, k_l); then the post_nms_topk best over the levels (stable:
// lower level, then NMS order first) with sigmoid scores, zero padding.
//
// CPU: the (image, level) units run in parallel on TensorFlow's intra-op pool, then one
// merge per image (also parallel).
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include "proposals.h"
#include "proposals_cuda.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"

namespace tensorflow {
namespace {

using mrcnn_proposals::DecodeClipBox;
using mrcnn_proposals::DecodeParams;
using mrcnn_proposals::MakeNmsBox;
using mrcnn_proposals::NmsBox;
using mrcnn_proposals::OrderedBits;
using shape_inference::InferenceContext;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Status ProposalsShape(InferenceContext* c) {
  int num_levels;
  TF_RETURN_IF_ERROR(c->GetAttr("num_levels", &num_levels));
  int post;
  TF_RETURN_IF_ERROR(c->GetAttr("post_nms_topk", &post));
  shape_inference::ShapeHandle info;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3 * num_levels), 2, &info));
  auto batch = c->Dim(info, 0);
  c->set_output(0, c->MakeShape({batch, post, 4}));
  c->set_output(1, c->MakeShape({batch, post}));
  c->set_output(2, c->MakeShape({batch, post}));
  return OkStatus();
}

REGISTER_OP("MrcnnGenerateProposals")
    .Input("rpn_scores: num_levels * float")
    .Input("rpn_deltas: num_levels * float")
    .Input("anchors: num_levels * float")
    .Input("image_info: float")
    .Output("boxes: float")
    .Output("scores: float")
    .Output("valid: bool")
    .Attr("num_levels: int >= 1")
    .Attr("pre_nms_topk: int >= 1")
    .Attr("post_nms_topk: int >= 1")
    .Attr("nms_threshold: float")
    .Attr("min_size: float = 0.0")
    .Attr("weights: list(float) = [1.0, 1.0, 1.0, 1.0]")
    .SetShapeFn(ProposalsShape)
    .Doc(R"doc(
Multilevel RPN proposals (see mrcnn_tf2/ops/proposals.py).

rpn_scores: per level [B, H_l, W_l, A] objectness logits.
rpn_deltas: per level [B, H_l, W_l, 4 * A] (dy, dx, dh, dw).
anchors: per level [H_l * W_l * A, 4] (ymin, xmin, ymax, xmax) pixels, (y, x, a) order.
image_info: [B, >= 2]; boxes are clipped to (image_info[:, 0], image_info[:, 1]).
boxes: [B, post_nms_topk, 4] pixels, zeros in padding slots.
scores: [B, post_nms_topk] sigmoid of the logits, descending, 0 in padding.
valid: [B, post_nms_topk], False in padding slots.
)doc");

// Attributes shared by the CPU and GPU kernels.
struct ProposalAttrs {
  int pre_nms_topk, post_nms_topk;
  float nms_threshold;
  DecodeParams decode;

  explicit ProposalAttrs(OpKernelConstruction* c) {
    std::vector<float> w;
    OP_REQUIRES_OK(c, c->GetAttr("pre_nms_topk", &pre_nms_topk));
    OP_REQUIRES_OK(c, c->GetAttr("post_nms_topk", &post_nms_topk));
    OP_REQUIRES_OK(c, c->GetAttr("nms_threshold", &nms_threshold));
    OP_REQUIRES_OK(c, c->GetAttr("min_size", &decode.min_size));
    OP_REQUIRES_OK(c, c->GetAttr("weights", &w));
    OP_REQUIRES(c, nms_threshold >= 0.0f && nms_threshold <= 1.0f,
                errors::InvalidArgument("nms_threshold must be in [0, 1]. Received: ", nms_threshold));
    OP_REQUIRES(c, w.size() == 4,
                errors::InvalidArgument("weights must have 4 values (wy, wx, wh, ww). Received: ",
                                        w.size(), " values"));
    decode.wy = w[0], decode.wx = w[1], decode.wh = w[2], decode.ww = w[3];
  }
};

// Checks the inputs; returns the anchors per level (N_l) in `counts`.
Status CheckInputs(const OpInputList& scores, const OpInputList& deltas, const OpInputList& anchors,
                   const Tensor& info, std::vector<int64_t>* counts) {
  if (info.dims() != 2 || info.dim_size(1) < 2) {
    return errors::InvalidArgument("image_info must be [B, >= 2] (height, width, ...). Received: ",
                                   info.shape().DebugString());
  }
  const int64_t batch = info.dim_size(0);
  for (int l = 0; l < scores.size(); ++l) {
    const TensorShape& s = scores[l].shape();
    if (s.dims() != 4 || s.dim_size(0) != batch) {
      return errors::InvalidArgument("rpn_scores[", l, "] must be [B, H, W, A] with B = ", batch,
                                     " (image_info). Received: ", s.DebugString());
    }
    const TensorShape& d = deltas[l].shape();
    if (d.dims() != 4 || d.dim_size(0) != batch || d.dim_size(1) != s.dim_size(1) ||
        d.dim_size(2) != s.dim_size(2) || d.dim_size(3) != 4 * s.dim_size(3)) {
      return errors::InvalidArgument("rpn_deltas[", l, "] must be [B, H, W, 4 * A] = ", batch, ", ",
                                     s.dim_size(1), ", ", s.dim_size(2), ", ", 4 * s.dim_size(3),
                                     ". Received: ", d.DebugString());
    }
    const int64_t n = s.dim_size(1) * s.dim_size(2) * s.dim_size(3);
    const TensorShape& a = anchors[l].shape();
    if (a.dims() != 2 || a.dim_size(0) != n || a.dim_size(1) != 4) {
      return errors::InvalidArgument("anchors[", l, "] must be [H * W * A, 4] = [", n,
                                     ", 4]. Received: ", a.DebugString());
    }
    if (n >= (int64_t{1} << 31)) return errors::InvalidArgument("too many anchors at level ", l);
    counts->push_back(n);
  }
  return OkStatus();
}

// Indices of the `k` largest of `logits[0:n]`, descending, ties by lower index.
void TopK(const float* logits, int64_t n, int64_t k, std::vector<uint64_t>* keys) {
  keys->resize(n);
  for (int64_t i = 0; i < n; ++i) {
    (*keys)[i] = (uint64_t{OrderedBits(logits[i])} << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(i));
  }
  auto desc = std::greater<uint64_t>();
  if (k < n) std::nth_element(keys->begin(), keys->begin() + k, keys->end(), desc);
  std::sort(keys->begin(), keys->begin() + k, desc);
  keys->resize(k);
}

// Kept boxes of a greedy NMS, structure-of-arrays so the overlap scan vectorises.
// Boxes with area <= 0 have IoU 0 with everything (TensorFlow's rule): not stored.
class KeptBoxes {
 public:
  explicit KeptBoxes(int64_t capacity) : y0_(capacity), x0_(capacity), y1_(capacity), x1_(capacity),
                                         area_(capacity), inter_(capacity) {}

  void Add(const NmsBox& b) {
    if (b.area <= 0.0f) return;
    y0_[n_] = b.ymin, x0_[n_] = b.xmin, y1_[n_] = b.ymax, x1_[n_] = b.xmax, area_[n_] = b.area;
    ++n_;
  }

  // Whether some kept box has TensorFlow IoU > threshold with `c`. Intersections are
  // computed for all kept boxes first (vectorised); the exact IoU division only runs
  // where the intersection is positive (else IoU is 0, never > threshold >= 0).
  bool Suppresses(const NmsBox& c, float threshold) {
    if (c.area <= 0.0f) return false;
    float* inter = inter_.data();
    for (int64_t j = 0; j < n_; ++j) {
      const float ih = std::min(c.ymax, y1_[j]) - std::max(c.ymin, y0_[j]);
      const float iw = std::min(c.xmax, x1_[j]) - std::max(c.xmin, x0_[j]);
      inter[j] = std::max(ih, 0.0f) * std::max(iw, 0.0f);
    }
    for (int64_t j = n_ - 1; j >= 0; --j) {
      if (inter[j] > 0.0f && inter[j] / (c.area + area_[j] - inter[j]) > threshold) return true;
    }
    return false;
  }

 private:
  std::vector<float> y0_, x0_, y1_, x1_, area_, inter_;
  int64_t n_ = 0;
};

// Greedy NMS over candidates already in visiting order; -inf logits are skipped.
// Writes at most `max_out` boxes/logits; returns how many.
int64_t GreedyNms(const std::vector<float>& boxes, const std::vector<float>& logits, float threshold,
                  int64_t max_out, float* out_boxes, float* out_logits) {
  KeptBoxes kept(max_out);
  int64_t count = 0;
  for (size_t i = 0; i < logits.size() && count < max_out; ++i) {
    if (!(logits[i] > kNegInf)) continue;
    const NmsBox candidate = MakeNmsBox(&boxes[4 * i]);
    if (kept.Suppresses(candidate, threshold)) continue;
    std::copy_n(&boxes[4 * i], 4, out_boxes + 4 * count);
    out_logits[count++] = logits[i];
    kept.Add(candidate);
  }
  return count;
}

// Per-(image, level) NMS survivors, m_max slots each (m_l used).
struct LevelResults {
  int64_t slots;
  std::vector<float> boxes, logits;
  std::vector<int64_t> counts;

  LevelResults(int64_t units, int64_t m_max)
      : slots(m_max), boxes(units * m_max * 4), logits(units * m_max), counts(units, 0) {}
};

class GenerateProposalsCpuOp : public OpKernel {
 public:
  explicit GenerateProposalsCpuOp(OpKernelConstruction* c) : OpKernel(c), attrs_(c) {}

  void Compute(OpKernelContext* context) override {
    OpInputList scores, deltas, anchors;
    OP_REQUIRES_OK(context, context->input_list("rpn_scores", &scores));
    OP_REQUIRES_OK(context, context->input_list("rpn_deltas", &deltas));
    OP_REQUIRES_OK(context, context->input_list("anchors", &anchors));
    const Tensor& info = context->input(3 * scores.size());
    std::vector<int64_t> counts;
    OP_REQUIRES_OK(context, CheckInputs(scores, deltas, anchors, info, &counts));
    const int64_t batch = info.dim_size(0), post = attrs_.post_nms_topk;
    Tensor *boxes, *probs, *valid;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, post, 4}), &boxes));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({batch, post}), &probs));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({batch, post}), &valid));
    if (batch == 0) return;
    const int num_levels = scores.size();
    int64_t m_max = 0;
    for (int64_t n : counts) m_max = std::max(m_max, std::min<int64_t>(post, std::min<int64_t>(attrs_.pre_nms_topk, n)));
    LevelResults results(batch * num_levels, m_max);
    auto unit = [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / num_levels, l = u % num_levels;
        RunLevel(counts[l], scores[l].flat<float>().data() + b * counts[l],
                 deltas[l].flat<float>().data() + b * counts[l] * 4, anchors[l].flat<float>().data(),
                 info.matrix<float>()(b, 0), info.matrix<float>()(b, 1), u, &results);
      }
    };
    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    pool->ParallelFor(batch * num_levels, /*cost_per_unit=*/int64_t{1} << 24, unit);
    auto merge = [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        Merge(results, b, num_levels, post, boxes->flat<float>().data() + b * post * 4,
              probs->flat<float>().data() + b * post, valid->flat<bool>().data() + b * post);
      }
    };
    pool->ParallelFor(batch, /*cost_per_unit=*/int64_t{1} << 20, merge);
  }

 private:
  // Top-k, decode/clip/filter and NMS of one image and level into results slot `u`.
  void RunLevel(int64_t n, const float* logits, const float* deltas, const float* anchors, float image_h,
                float image_w, int64_t u, LevelResults* results) const {
    const int64_t k = std::min<int64_t>(attrs_.pre_nms_topk, n);
    const int64_t m = std::min<int64_t>(attrs_.post_nms_topk, k);
    std::vector<uint64_t> keys;
    TopK(logits, n, k, &keys);
    std::vector<float> boxes(4 * k), top_logits(k);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t index = 0xFFFFFFFFu - static_cast<uint32_t>(keys[i]);
      const bool ok = DecodeClipBox(deltas + 4 * index, anchors + 4 * index, image_h, image_w,
                                    attrs_.decode, &boxes[4 * i]);
      top_logits[i] = ok ? logits[index] : kNegInf;
    }
    results->counts[u] = GreedyNms(boxes, top_logits, attrs_.nms_threshold, m,
                                   &results->boxes[4 * u * results->slots], &results->logits[u * results->slots]);
  }

  // Best `post` survivors of image `b` over the levels (stable), sigmoid, zero padding.
  static void Merge(const LevelResults& r, int64_t b, int num_levels, int64_t post, float* boxes,
                    float* probs, bool* valid) {
    std::vector<int64_t> order;
    for (int l = 0; l < num_levels; ++l) {
      const int64_t u = b * num_levels + l;
      for (int64_t i = 0; i < r.counts[u]; ++i) order.push_back(u * r.slots + i);
    }
    const auto desc = [&r](int64_t i, int64_t j) { return r.logits[i] > r.logits[j]; };
    const int64_t n = std::min<int64_t>(post, order.size());
    std::stable_sort(order.begin(), order.end(), desc);
    for (int64_t i = 0; i < post; ++i) {
      valid[i] = i < n;
      probs[i] = i < n ? 1.0f / (1.0f + std::exp(-r.logits[order[i]])) : 0.0f;
      for (int c = 0; c < 4; ++c) boxes[4 * i + c] = i < n ? r.boxes[4 * order[i] + c] : 0.0f;
    }
  }

  ProposalAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("MrcnnGenerateProposals").Device(DEVICE_CPU), GenerateProposalsCpuOp);

#if GOOGLE_CUDA
// GPU kernel: the same checks, then the CUDA launcher of proposals_cuda.cu.
class GenerateProposalsGpuOp : public OpKernel {
 public:
  explicit GenerateProposalsGpuOp(OpKernelConstruction* c) : OpKernel(c), attrs_(c) {}

  void Compute(OpKernelContext* context) override {
    OpInputList scores, deltas, anchors;
    OP_REQUIRES_OK(context, context->input_list("rpn_scores", &scores));
    OP_REQUIRES_OK(context, context->input_list("rpn_deltas", &deltas));
    OP_REQUIRES_OK(context, context->input_list("anchors", &anchors));
    const Tensor& info = context->input(3 * scores.size());
    std::vector<int64_t> counts;
    OP_REQUIRES_OK(context, CheckInputs(scores, deltas, anchors, info, &counts));
    const int64_t batch = info.dim_size(0), post = attrs_.post_nms_topk;
    Tensor *boxes, *probs, *valid, workspace;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, post, 4}), &boxes));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({batch, post}), &probs));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({batch, post}), &valid));
    if (batch == 0) return;
    const int num_levels = scores.size();
    std::vector<const float*> s(num_levels), d(num_levels), a(num_levels);
    for (int l = 0; l < num_levels; ++l) {
      s[l] = scores[l].flat<float>().data();
      d[l] = deltas[l].flat<float>().data();
      a[l] = anchors[l].flat<float>().data();
    }
    const size_t bytes = mrcnn_proposals_cuda_workspace_bytes(batch, num_levels, counts.data(),
                                                          attrs_.pre_nms_topk, post);
    OP_REQUIRES_OK(context, context->allocate_temp(DT_UINT8, TensorShape({static_cast<int64_t>(bytes)}),
                                                   &workspace));
    const float w[4] = {attrs_.decode.wy, attrs_.decode.wx, attrs_.decode.wh, attrs_.decode.ww};
    const int err = mrcnn_proposals_cuda(
        batch, num_levels, counts.data(), s.data(), d.data(), a.data(), info.flat<float>().data(),
        info.dim_size(1), attrs_.pre_nms_topk, post, attrs_.nms_threshold, attrs_.decode.min_size, w,
        workspace.flat<uint8>().data(), bytes, boxes->flat<float>().data(), probs->flat<float>().data(),
        reinterpret_cast<uint8_t*>(valid->flat<bool>().data()),
        context->eigen_device<Eigen::GpuDevice>().stream());
    OP_REQUIRES(context, err == 0, errors::Internal("mrcnn_proposals_cuda failed: CUDA error ", err));
  }

 private:
  ProposalAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("MrcnnGenerateProposals").Device(DEVICE_GPU), GenerateProposalsGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace tensorflow
