// CUDA kernels of multilevel ROIAlign, forward and backward, behind the C ABI of
// roi_align_cuda.h. No TensorFlow header: the same object serves the TF GPU kernel and
// the standalone harness (custom_ops/harness/roi_align_harness.py).
//
// One thread per output element (box k, bin ph, bin pw, channel c), channel fastest so
// that neighbouring threads read neighbouring floats of NHWC maps. The backward pass
// zeroes the level gradients and scatter-adds with atomicAdd.
#include <cuda_runtime.h>

#include <cstdint>

#include "roi_align_cuda.h"
#include "roi_align_geometry.h"

namespace {

using roi_align::AssignLevel;
using roi_align::AxisGrid;
using roi_align::AxisSample;
using roi_align::LevelScale;
using roi_align::MakeAxisGrid;
using roi_align::MakeAxisSample;
using roi_align::SampleCoord;

constexpr int kThreads = 256;

struct DeviceLevels {
  const float* data[MRCNN_ROI_ALIGN_MAX_LEVELS];
  float* grad[MRCNN_ROI_ALIGN_MAX_LEVELS];
};

// Output element `index` -> box, bins and channel; level, map offset and grids of the box.
struct Element {
  int64_t box, channel, map_offset;
  int ph, pw, level_index, height, width;
  AxisGrid gy, gx;
};

__device__ Element Decompose(const MrcnnRoiAlignProblem& p, const float* boxes, int64_t index) {
  Element e;
  e.channel = index % p.channels;
  int64_t rest = index / p.channels;
  e.pw = static_cast<int>(rest % p.output_size);
  rest /= p.output_size;
  e.ph = static_cast<int>(rest % p.output_size);
  e.box = rest / p.output_size;
  const float* box = boxes + 4 * e.box;
  const int level = AssignLevel(box, p.min_level, p.min_level + p.num_levels - 1);
  const float scale = LevelScale(level);
  e.level_index = level - p.min_level;
  e.height = p.heights[e.level_index];
  e.width = p.widths[e.level_index];
  e.map_offset = (e.box / p.boxes_per_image) * e.height * static_cast<int64_t>(e.width) * p.channels;
  e.gy = MakeAxisGrid(box[0], box[2], scale, p.output_size, p.aligned != 0);
  e.gx = MakeAxisGrid(box[1], box[3], scale, p.output_size, p.aligned != 0);
  return e;
}

__global__ void ForwardKernel(MrcnnRoiAlignProblem p, DeviceLevels levels, const float* boxes, float* crops,
                              int64_t total) {
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < total;
       index += int64_t{blockDim.x} * gridDim.x) {
    const Element e = Decompose(p, boxes, index);
    const float* map = levels.data[e.level_index] + e.map_offset + e.channel;
    const int s = p.sampling_ratio;
    float sum = 0.0f;
    for (int iy = 0; iy < s; ++iy) {
      const AxisSample y = MakeAxisSample(SampleCoord(e.gy, e.ph, iy, s), e.height);
      for (int ix = 0; ix < s && y.valid; ++ix) {
        const AxisSample x = MakeAxisSample(SampleCoord(e.gx, e.pw, ix, s), e.width);
        if (!x.valid) continue;
        const int64_t lo = int64_t{y.low} * e.width, hi = int64_t{y.high} * e.width;
        sum += y.w_low * (x.w_low * map[(lo + x.low) * p.channels] + x.w_high * map[(lo + x.high) * p.channels]) +
               y.w_high * (x.w_low * map[(hi + x.low) * p.channels] + x.w_high * map[(hi + x.high) * p.channels]);
      }
    }
    crops[index] = sum / static_cast<float>(s * s);
  }
}

__global__ void BackwardKernel(MrcnnRoiAlignProblem p, DeviceLevels levels, const float* boxes, const float* grad,
                               int64_t total) {
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < total;
       index += int64_t{blockDim.x} * gridDim.x) {
    const Element e = Decompose(p, boxes, index);
    float* map = levels.grad[e.level_index] + e.map_offset + e.channel;
    const int s = p.sampling_ratio;
    const float g = grad[index] / static_cast<float>(s * s);
    for (int iy = 0; iy < s; ++iy) {
      const AxisSample y = MakeAxisSample(SampleCoord(e.gy, e.ph, iy, s), e.height);
      for (int ix = 0; ix < s && y.valid; ++ix) {
        const AxisSample x = MakeAxisSample(SampleCoord(e.gx, e.pw, ix, s), e.width);
        if (!x.valid) continue;
        const int64_t lo = int64_t{y.low} * e.width, hi = int64_t{y.high} * e.width;
        atomicAdd(map + (lo + x.low) * p.channels, g * y.w_low * x.w_low);
        atomicAdd(map + (lo + x.high) * p.channels, g * y.w_low * x.w_high);
        atomicAdd(map + (hi + x.low) * p.channels, g * y.w_high * x.w_low);
        atomicAdd(map + (hi + x.high) * p.channels, g * y.w_high * x.w_high);
      }
    }
  }
}

int64_t NumCrops(const MrcnnRoiAlignProblem& p) {
  return int64_t{p.batch} * p.boxes_per_image * p.output_size * p.output_size * p.channels;
}

int Blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}

}  // namespace

extern "C" int mrcnn_roi_align_forward_cuda(const MrcnnRoiAlignProblem* problem, const float* const* levels_device,
                                            const float* boxes_device, float* crops_device, void* stream) {
  DeviceLevels levels{};
  for (int l = 0; l < problem->num_levels; ++l) levels.data[l] = levels_device[l];
  const int64_t total = NumCrops(*problem);
  if (total == 0) return 0;
  ForwardKernel<<<Blocks(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(*problem, levels, boxes_device,
                                                                                   crops_device, total);
  return static_cast<int>(cudaGetLastError());
}

extern "C" int mrcnn_roi_align_backward_cuda(const MrcnnRoiAlignProblem* problem, const float* grad_device,
                                             const float* boxes_device, float* const* level_grads_device,
                                             void* stream) {
  DeviceLevels levels{};
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  for (int l = 0; l < problem->num_levels; ++l) {
    levels.grad[l] = level_grads_device[l];
    const size_t bytes = sizeof(float) * problem->batch * problem->heights[l] * problem->widths[l] * problem->channels;
    const cudaError_t status = cudaMemsetAsync(level_grads_device[l], 0, bytes, cuda_stream);
    if (bytes > 0 && status != cudaSuccess) return static_cast<int>(status);
  }
  const int64_t total = NumCrops(*problem);
  if (total == 0) return 0;
  BackwardKernel<<<Blocks(total), kThreads, 0, cuda_stream>>>(*problem, levels, boxes_device, grad_device, total);
  return static_cast<int>(cudaGetLastError());
}
