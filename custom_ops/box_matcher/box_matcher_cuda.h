// C ABI of the fused IoU matcher in CUDA (box_matcher_cuda.cu).
//
// Plain C so that the TF GPU kernel (box_matcher.cc under GOOGLE_CUDA) and the
// standalone harness (custom_ops/harness/box_matcher_harness.py, via ctypes) share it.
// All pointers are device memory. Shapes: boxes [box_batch, N, 4] with box_batch 1
// (shared anchors) or B; gt_boxes [B, M, 4]; gt_valid [B, M] (0/1 bytes); outputs
// matched_idx, labels [B, N] int32 and max_iou [B, N] float32. `stream` is a
// cudaStream_t (NULL: default stream). Returns a cudaError_t (0 on success).
#ifndef MRCNN_CUSTOM_OPS_BOX_MATCHER_CUDA_H_
#define MRCNN_CUSTOM_OPS_BOX_MATCHER_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bytes of the `workspace` that mrcnn_match_boxes_cuda needs (per-GT best IoUs).
size_t mrcnn_match_boxes_cuda_workspace_bytes(int batch, int num_gt);

int mrcnn_match_boxes_cuda(int batch, int box_batch, int64_t num_boxes, int num_gt, const float* boxes,
                           const float* gt_boxes, const uint8_t* gt_valid, float high, float low,
                           int allow_low_quality, void* workspace, size_t workspace_bytes,
                           int32_t* matched_idx, int32_t* labels, float* max_iou, void* stream);

#ifdef __cplusplus
}
#endif

#endif  // MRCNN_CUSTOM_OPS_BOX_MATCHER_CUDA_H_
