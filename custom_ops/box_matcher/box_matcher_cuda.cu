// CUDA implementation of MrcnnMatchBoxes behind the C ABI of box_matcher_cuda.h.
// No TensorFlow header: the same object serves the TF GPU kernel and the standalone
// harness (custom_ops/harness/box_matcher_harness.py).
//
// One thread per (image, prediction); the image's GT boxes are staged in shared memory.
// Pass 1 writes best GT, IoU and label and raises the per-GT best IoU (atomicMax on the
// bits of non-negative floats, block-reduced in shared memory first). Pass 2
// (allow_low_quality) turns a prediction foreground when its IoU equals a GT's best
// positive IoU; the IoUs are recomputed bit-identically.
#include <cuda_runtime.h>

#include <cstdint>

#include "box_matcher.h"
#include "box_matcher_cuda.h"

namespace {

using mrcnn_matcher::GtBox;
using mrcnn_matcher::Iou;
using mrcnn_matcher::kForeground;
using mrcnn_matcher::Label;
using mrcnn_matcher::MakeGtBox;

constexpr int kThreads = 256;
constexpr int kMaxSharedGt = 1024;  // 1024 * (20 + 4) bytes of shared memory

// Stages the GT boxes of image `b`; invalid ones get area -1 (marker, never used in IoU).
__device__ void StageGt(const float* gt_boxes, const uint8_t* gt_valid, int b, int m, GtBox* gt) {
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    gt[j] = MakeGtBox(gt_boxes + 4 * (int64_t(b) * m + j));
    if (!gt_valid[int64_t(b) * m + j]) gt[j].area = -1.0f;
  }
}

__global__ void BestMatches(const float* boxes, int64_t box_stride, const float* gt_boxes, const uint8_t* gt_valid,
                            int64_t n, int m, float high, float low, int32_t* matched_idx, int32_t* labels,
                            float* max_iou, unsigned* gt_best) {
  extern __shared__ unsigned char shared[];
  GtBox* gt = reinterpret_cast<GtBox*>(shared);
  unsigned* block_best = reinterpret_cast<unsigned*>(gt + m);
  const int b = blockIdx.y;
  StageGt(gt_boxes, gt_valid, b, m, gt);
  for (int j = threadIdx.x; j < m; j += blockDim.x) block_best[j] = 0u;
  __syncthreads();
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) {
    const float* a = boxes + b * box_stride + 4 * i;
    const float area = mrcnn_matcher::BoxArea(a[0], a[1], a[2], a[3]);
    float best = -INFINITY;
    int32_t best_j = 0;
    for (int j = 0; j < m; ++j) {
      if (gt[j].area < 0.0f) continue;
      const float iou = Iou(a, area, gt[j]);
      if (iou > best) best = iou, best_j = j;
      if (iou > 0.0f) atomicMax(&block_best[j], __float_as_uint(iou));
    }
    const bool any = best > -INFINITY;
    const int64_t out = int64_t(b) * n + i;
    matched_idx[out] = any ? best_j : 0;
    max_iou[out] = any ? best : 0.0f;
    labels[out] = Label(any ? best : 0.0f, high, low);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    if (block_best[j]) atomicMax(&gt_best[int64_t(b) * m + j], block_best[j]);
  }
}

__global__ void LowQuality(const float* boxes, int64_t box_stride, const float* gt_boxes, const uint8_t* gt_valid,
                           int64_t n, int m, const unsigned* gt_best, int32_t* labels) {
  extern __shared__ unsigned char shared[];
  GtBox* gt = reinterpret_cast<GtBox*>(shared);
  const int b = blockIdx.y;
  StageGt(gt_boxes, gt_valid, b, m, gt);
  __syncthreads();
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n || labels[int64_t(b) * n + i] == kForeground) return;
  const float* a = boxes + b * box_stride + 4 * i;
  const float area = mrcnn_matcher::BoxArea(a[0], a[1], a[2], a[3]);
  for (int j = 0; j < m; ++j) {
    const unsigned target = gt_best[int64_t(b) * m + j];  // 0: no positive IoU
    if (gt[j].area < 0.0f || target == 0u) continue;
    if (Iou(a, area, gt[j]) == __uint_as_float(target)) {
      labels[int64_t(b) * n + i] = kForeground;
      return;
    }
  }
}

}  // namespace

extern "C" size_t mrcnn_match_boxes_cuda_workspace_bytes(int batch, int num_gt) {
  return sizeof(unsigned) * size_t(batch) * size_t(num_gt > 0 ? num_gt : 1);
}

extern "C" int mrcnn_match_boxes_cuda(int batch, int box_batch, int64_t num_boxes, int num_gt, const float* boxes,
                                      const float* gt_boxes, const uint8_t* gt_valid, float high, float low,
                                      int allow_low_quality, void* workspace, size_t workspace_bytes,
                                      int32_t* matched_idx, int32_t* labels, float* max_iou, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  if (batch == 0 || num_boxes == 0) return cudaSuccess;
  if (num_gt > kMaxSharedGt || workspace_bytes < mrcnn_match_boxes_cuda_workspace_bytes(batch, num_gt)) {
    return cudaErrorInvalidValue;
  }
  unsigned* gt_best = static_cast<unsigned*>(workspace);
  cudaError_t err = cudaMemsetAsync(gt_best, 0, sizeof(unsigned) * size_t(batch) * num_gt, stream);
  if (err != cudaSuccess) return err;
  const int64_t box_stride = box_batch == 1 ? 0 : 4 * num_boxes;
  const dim3 grid(unsigned((num_boxes + kThreads - 1) / kThreads), unsigned(batch));
  const size_t shared = size_t(num_gt) * (sizeof(GtBox) + sizeof(unsigned));
  BestMatches<<<grid, kThreads, shared, stream>>>(boxes, box_stride, gt_boxes, gt_valid, num_boxes, num_gt, high, low,
                                                  matched_idx, labels, max_iou, gt_best);
  if (allow_low_quality && num_gt > 0) {
    LowQuality<<<grid, kThreads, size_t(num_gt) * sizeof(GtBox), stream>>>(boxes, box_stride, gt_boxes, gt_valid,
                                                                          num_boxes, num_gt, gt_best, labels);
  }
  return cudaGetLastError();
}
