// C ABI of the fused proposal generation in CUDA (proposals_cuda.cu).
//
// Plain C so that the TF GPU kernel (proposals.cc under GOOGLE_CUDA) and the standalone
// harness (custom_ops/harness/proposals_harness.py, via ctypes) share it. Pointers are
// device memory except the per-level pointer arrays, `level_counts` and `weights`,
// which live on the host. Shapes: scores[l] [B, N_l], deltas[l] [B, N_l, 4], anchors[l]
// [N_l, 4], image_info [B, info_stride] (height, width first); outputs boxes [B, P, 4],
// scores [B, P] (sigmoid), valid [B, P] (0/1 bytes). `stream` is a cudaStream_t (NULL:
// default stream). The launcher returns a cudaError_t (0 on success).
#ifndef MRCNN_CUSTOM_OPS_PROPOSALS_CUDA_H_
#define MRCNN_CUSTOM_OPS_PROPOSALS_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bytes of the `workspace` that mrcnn_proposals_cuda needs for these sizes.
size_t mrcnn_proposals_cuda_workspace_bytes(int batch, int num_levels, const int64_t* level_counts,
                                            int pre_nms_topk, int post_nms_topk);

int mrcnn_proposals_cuda(int batch, int num_levels, const int64_t* level_counts,
                         const float* const* scores, const float* const* deltas,
                         const float* const* anchors, const float* image_info, int info_stride,
                         int pre_nms_topk, int post_nms_topk, float nms_threshold, float min_size,
                         const float* weights, void* workspace, size_t workspace_bytes,
                         float* out_boxes, float* out_scores, uint8_t* out_valid, void* stream);

#ifdef __cplusplus
}
#endif

#endif  // MRCNN_CUSTOM_OPS_PROPOSALS_CUDA_H_
