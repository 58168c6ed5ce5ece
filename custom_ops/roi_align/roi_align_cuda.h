// C ABI of the multilevel ROIAlign CUDA kernels (roi_align_cuda.cu).
//
// Plain C so that the TF GPU kernel (roi_align_kernel_gpu.cc), the standalone harness
// (custom_ops/harness, via ctypes) and any CUDA toolkit version can share it: the .cu
// file includes no TensorFlow header. Pointers named *_device are device memory; the
// level pointer arrays themselves live in host memory. `stream` is a cudaStream_t
// (NULL: the default stream). Both return a cudaError_t (0 on success).
#ifndef CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_CUDA_H_
#define CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_CUDA_H_

#ifdef __cplusplus
extern "C" {
#endif

#define MRCNN_ROI_ALIGN_MAX_LEVELS 8

typedef struct MrcnnRoiAlignProblem {
  int num_levels;       // L <= MRCNN_ROI_ALIGN_MAX_LEVELS, levels min_level .. min_level + L - 1
  int min_level;
  int batch;            // B
  int boxes_per_image;  // N
  int channels;         // C
  int heights[MRCNN_ROI_ALIGN_MAX_LEVELS];  // H_l
  int widths[MRCNN_ROI_ALIGN_MAX_LEVELS];   // W_l
  int output_size;      // R
  int sampling_ratio;   // s >= 1
  int aligned;          // 0: legacy geometry, 1: half-pixel offset
} MrcnnRoiAlignProblem;

// crops_device [B, N, R, R, C] <- levels_device[l] [B, H_l, W_l, C], boxes_device [B, N, 4].
int mrcnn_roi_align_forward_cuda(const MrcnnRoiAlignProblem* problem, const float* const* levels_device,
                                 const float* boxes_device, float* crops_device, void* stream);

// level_grads_device[l] [B, H_l, W_l, C] <- grad_device [B, N, R, R, C] (zeroed, then scatter-added).
int mrcnn_roi_align_backward_cuda(const MrcnnRoiAlignProblem* problem, const float* grad_device,
                                  const float* boxes_device, float* const* level_grads_device, void* stream);

#ifdef __cplusplus
}
#endif

#endif  // CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_CUDA_H_
