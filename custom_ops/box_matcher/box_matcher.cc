// MrcnnMatchBoxes: registration, CPU kernel and (GOOGLE_CUDA builds) GPU kernel.
//
// Fuses mrcnn_tf2/ops/matcher.py::match(box_ops.iou(boxes, gt_boxes), ...): the
// [B, N, M] IoU matrix (279k anchors x 100 GT at 832x1344 is 112 MB per image, plus
// its broadcast temporaries) is never materialised. Per prediction: best valid GT
// (first on ties, as tf.argmax; 0 and IoU 0 without a valid GT), label by the
// thresholds; with allow_low_quality a second pass makes foreground every prediction
// whose IoU equals some valid GT's best positive IoU (ties included).
//
// CPU: predictions are split into chunks; (image, chunk) units run on TensorFlow's
// intra-op pool. Each chunk also records, per GT, its best IoU, the first prediction
// reaching it and whether another ties it, so the low-quality pass only rescans the
// chunks of tied maxima instead of recomputing every IoU.
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include "box_matcher.h"
#include "box_matcher_cuda.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"

namespace tensorflow {
namespace {

using mrcnn_matcher::GtBox;
using mrcnn_matcher::Iou;
using mrcnn_matcher::kForeground;
using mrcnn_matcher::Label;
using mrcnn_matcher::MakeGtBox;
using shape_inference::InferenceContext;

constexpr int64_t kChunk = 2048;  // predictions per parallel unit
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Status MatchShape(InferenceContext* c) {
  shape_inference::ShapeHandle boxes, gt;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &boxes));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &gt));
  auto out = c->MakeShape({c->Dim(gt, 0), c->Dim(boxes, 1)});
  for (int i = 0; i < 3; ++i) c->set_output(i, out);
  return OkStatus();
}

REGISTER_OP("MrcnnMatchBoxes")
    .Input("boxes: float")
    .Input("gt_boxes: float")
    .Input("gt_valid: bool")
    .Output("matched_idx: int32")
    .Output("labels: int32")
    .Output("max_iou: float")
    .Attr("high: float")
    .Attr("low: float")
    .Attr("allow_low_quality: bool = true")
    .SetShapeFn(MatchShape)
    .Doc(R"doc(
IoU matching of predictions to GT boxes (see mrcnn_tf2/ops/matcher.py).

boxes: [1 or B, N, 4] (ymin, xmin, ymax, xmax) pixels; a leading 1 is shared by all images.
gt_boxes: [B, M, 4] pixels.
gt_valid: [B, M]; invalid GT columns are ignored.
matched_idx: [B, N] best valid GT, 0 without one.
labels: [B, N] 1 foreground, 0 background, -1 ignore.
max_iou: [B, N] IoU with that GT, 0 without a valid GT.
)doc");

struct MatchAttrs {
  float high, low;
  bool allow_low_quality;

  explicit MatchAttrs(OpKernelConstruction* c) {
    OP_REQUIRES_OK(c, c->GetAttr("high", &high));
    OP_REQUIRES_OK(c, c->GetAttr("low", &low));
    OP_REQUIRES_OK(c, c->GetAttr("allow_low_quality", &allow_low_quality));
    OP_REQUIRES(c, low <= high, errors::InvalidArgument("Need low <= high. Received: low=", low, ", high=", high));
  }
};

Status CheckInputs(const Tensor& boxes, const Tensor& gt, const Tensor& valid) {
  if (gt.dims() != 3 || gt.dim_size(2) != 4) {
    return errors::InvalidArgument("gt_boxes must be [B, M, 4]. Received: ", gt.shape().DebugString());
  }
  const int64_t batch = gt.dim_size(0);
  if (boxes.dims() != 3 || boxes.dim_size(2) != 4 || (boxes.dim_size(0) != 1 && boxes.dim_size(0) != batch)) {
    return errors::InvalidArgument("boxes must be [1 or B, N, 4] with B = ", batch,
                                   " (gt_boxes). Received: ", boxes.shape().DebugString());
  }
  if (valid.dims() != 2 || valid.dim_size(0) != batch || valid.dim_size(1) != gt.dim_size(1)) {
    return errors::InvalidArgument("gt_valid must be [B, M] = [", batch, ", ", gt.dim_size(1),
                                   "]. Received: ", valid.shape().DebugString());
  }
  if (gt.dim_size(1) >= (int64_t{1} << 31)) return errors::InvalidArgument("too many GT boxes");
  return OkStatus();
}

// The valid GT boxes of one image and their column indices.
struct ImageGt {
  std::vector<GtBox> boxes;
  std::vector<int32_t> columns;
};

// Per (image, chunk, GT column): the chunk's best IoU, the first prediction reaching it
// and whether another one ties it (then pass 2 rescans the chunk for that GT).
struct ChunkBest {
  std::vector<float> iou;
  std::vector<int64_t> first;
  std::vector<uint8_t> tied;

  explicit ChunkBest(int64_t size) : iou(size, 0.0f), first(size, -1), tied(size, 0) {}

  void Update(int64_t slot, float value, int64_t i) {
    if (value > iou[slot]) {
      iou[slot] = value, first[slot] = i, tied[slot] = 0;
    } else if (value == iou[slot] && value > 0.0f) {
      tied[slot] = 1;
    }
  }
};

// A range of predictions of one image.
struct Span {
  int64_t image, chunk, start, stop;
};

class MatchBoxesCpuOp : public OpKernel {
 public:
  explicit MatchBoxesCpuOp(OpKernelConstruction* c) : OpKernel(c), attrs_(c) {}

  void Compute(OpKernelContext* context) override {
    const Tensor &boxes = context->input(0), &gt = context->input(1), &valid = context->input(2);
    OP_REQUIRES_OK(context, CheckInputs(boxes, gt, valid));
    const int64_t batch = gt.dim_size(0), n = boxes.dim_size(1), m = gt.dim_size(1);
    Tensor *matched, *labels, *max_iou;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, n}), &matched));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({batch, n}), &labels));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({batch, n}), &max_iou));
    if (batch == 0 || n == 0) return;
    std::vector<ImageGt> images(batch);
    for (int64_t b = 0; b < batch; ++b) images[b] = ValidGt(gt.flat<float>().data() + b * m * 4,
                                                          valid.flat<bool>().data() + b * m, m);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    ChunkBest chunk_best(batch * chunks * m);
    const float* box_data = boxes.flat<float>().data();
    const int64_t box_stride = boxes.dim_size(0) == 1 ? 0 : n * 4;
    auto span = [&](int64_t u) {
      const int64_t start = (u % chunks) * kChunk;
      return Span{u / chunks, u % chunks, start, std::min(n, start + kChunk)};
    };
    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    pool->ParallelFor(batch * chunks, kChunk * std::max<int64_t>(m, 1) * 20, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const Span s = span(u);
        BestMatches(images[s.image], box_data + s.image * box_stride, s, s.image * n, u * m, &chunk_best,
                    matched, labels, max_iou);
      }
    });
    if (!attrs_.allow_low_quality || m == 0) return;
    pool->ParallelFor(batch, chunks * m * 10, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        LowQuality(images[b], chunk_best, b, chunks, m, box_data + b * box_stride, n, span,
                   labels->flat<int32>().data() + b * n);
      }
    });
  }

 private:
  static ImageGt ValidGt(const float* gt, const bool* valid, int64_t m) {
    ImageGt image;
    for (int64_t j = 0; j < m; ++j) {
      if (!valid[j]) continue;
      image.boxes.push_back(MakeGtBox(gt + 4 * j));
      image.columns.push_back(static_cast<int32_t>(j));
    }
    return image;
  }

  // Pass 1 over one span of predictions (outputs at `out_offset`, GT stats at `slot0`).
  void BestMatches(const ImageGt& image, const float* boxes, const Span& s, int64_t out_offset, int64_t slot0,
                   ChunkBest* chunk_best, Tensor* matched, Tensor* labels, Tensor* max_iou) const {
    int32* idx_out = matched->flat<int32>().data() + out_offset;
    int32* label_out = labels->flat<int32>().data() + out_offset;
    float* iou_out = max_iou->flat<float>().data() + out_offset;
    const int64_t count = image.boxes.size();
    for (int64_t i = s.start; i < s.stop; ++i) {
      const float* a = boxes + 4 * i;
      const float area = mrcnn_matcher::BoxArea(a[0], a[1], a[2], a[3]);
      float best = kNegInf;
      int32_t best_j = 0;
      for (int64_t j = 0; j < count; ++j) {
        const float iou = Iou(a, area, image.boxes[j]);
        if (iou > best) best = iou, best_j = image.columns[j];
        if (iou > 0.0f) chunk_best->Update(slot0 + image.columns[j], iou, i);
      }
      // No valid GT: the zero sentinel column of matcher._best_gt wins (index 0, IoU 0).
      idx_out[i] = count ? best_j : 0;
      iou_out[i] = count ? best : 0.0f;
      label_out[i] = Label(iou_out[i], attrs_.high, attrs_.low);
    }
  }

  // Pass 2 of image `b`: foreground for every prediction reaching a GT's best positive
  // IoU. Untied chunk maxima are marked directly; tied ones rescan their chunk.
  template <typename SpanFn>
  static void LowQuality(const ImageGt& image, const ChunkBest& chunk_best, int64_t b, int64_t chunks, int64_t m,
                         const float* boxes, int64_t n, const SpanFn& span, int32* labels) {
    for (size_t k = 0; k < image.boxes.size(); ++k) {
      const int64_t column = image.columns[k];
      float best = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) best = std::max(best, chunk_best.iou[(b * chunks + c) * m + column]);
      if (!(best > 0.0f)) continue;
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t slot = (b * chunks + c) * m + column;
        if (chunk_best.iou[slot] != best) continue;
        labels[chunk_best.first[slot]] = kForeground;
        if (!chunk_best.tied[slot]) continue;
        const Span s = span(b * chunks + c);
        for (int64_t i = s.start; i < s.stop; ++i) {
          const float* a = boxes + 4 * i;
          if (Iou(a, mrcnn_matcher::BoxArea(a[0], a[1], a[2], a[3]), image.boxes[k]) == best) labels[i] = kForeground;
        }
      }
    }
  }

  MatchAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("MrcnnMatchBoxes").Device(DEVICE_CPU), MatchBoxesCpuOp);

#if GOOGLE_CUDA
// GPU kernel: the same checks, then the CUDA launcher of box_matcher_cuda.cu.
class MatchBoxesGpuOp : public OpKernel {
 public:
  explicit MatchBoxesGpuOp(OpKernelConstruction* c) : OpKernel(c), attrs_(c) {}

  void Compute(OpKernelContext* context) override {
    const Tensor &boxes = context->input(0), &gt = context->input(1), &valid = context->input(2);
    OP_REQUIRES_OK(context, CheckInputs(boxes, gt, valid));
    const int64_t batch = gt.dim_size(0), n = boxes.dim_size(1), m = gt.dim_size(1);
    Tensor *matched, *labels, *max_iou, workspace;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, n}), &matched));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({batch, n}), &labels));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({batch, n}), &max_iou));
    if (batch == 0 || n == 0) return;
    const size_t bytes = mrcnn_match_boxes_cuda_workspace_bytes(batch, m);
    OP_REQUIRES_OK(context, context->allocate_temp(DT_UINT8, TensorShape({static_cast<int64_t>(bytes)}), &workspace));
    const int err = mrcnn_match_boxes_cuda(
        batch, boxes.dim_size(0), n, m, boxes.flat<float>().data(), gt.flat<float>().data(),
        reinterpret_cast<const uint8_t*>(valid.flat<bool>().data()), attrs_.high, attrs_.low,
        attrs_.allow_low_quality, workspace.flat<uint8>().data(), bytes, matched->flat<int32>().data(),
        labels->flat<int32>().data(), max_iou->flat<float>().data(),
        context->eigen_device<Eigen::GpuDevice>().stream());
    OP_REQUIRES(context, err == 0, errors::Internal("mrcnn_match_boxes_cuda failed: CUDA error ", err));
  }

 private:
  MatchAttrs attrs_;
};

REGISTER_KERNEL_BUILDER(Name("MrcnnMatchBoxes").Device(DEVICE_GPU), MatchBoxesGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace tensorflow
