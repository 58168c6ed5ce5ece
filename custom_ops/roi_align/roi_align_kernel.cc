// CPU kernels of MultilevelRoiAlign and MultilevelRoiAlignGrad (float, double).
//
// Forward: ParallelFor over boxes; per box the y and x samples are precomputed once
// (bilinear sampling is separable), then every bin accumulates its s*s samples with
// the channel loop innermost (contiguous in NHWC, vectorised by the compiler).
// Backward: the level gradients are zeroed in parallel, then ParallelFor over channel
// blocks: each thread scatter-adds every box into its own channels only, so no two
// threads write the same element and no atomics or per-thread buffers are needed.
#include <algorithm>
#include <vector>

#include "roi_align_kernel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace roi_align {
namespace {

using tensorflow::thread::ThreadPool;

constexpr int64_t kChannelBlock = 16;

ThreadPool* Workers(OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->workers;
}

// One box resolved to its level: base of its image's feature map and its sample grids.
template <typename T>
struct BoxSamples {
  int64_t height = 0, width = 0, level_index = 0;
  int64_t map_offset = 0;       // element offset of the box's image in its level
  std::vector<AxisSample> ys;   // R * s samples along y
  std::vector<AxisSample> xs;   // R * s samples along x
};

template <typename T>
void ResolveBox(const Problem& p, const float* boxes, int64_t box_index, BoxSamples<T>* out) {
  const float* box = boxes + 4 * box_index;
  const int level = AssignLevel(box, p.min_level, p.max_level());
  const int64_t l = level - p.min_level;
  const float scale = LevelScale(level);
  out->level_index = l;
  out->height = p.height[l];
  out->width = p.width[l];
  out->map_offset = (box_index / p.boxes_per_image) * p.height[l] * p.width[l] * p.channels;
  const AxisGrid gy = MakeAxisGrid(box[0], box[2], scale, p.output_size, p.aligned);
  const AxisGrid gx = MakeAxisGrid(box[1], box[3], scale, p.output_size, p.aligned);
  const int s = p.sampling_ratio;
  out->ys.resize(p.output_size * s);
  out->xs.resize(p.output_size * s);
  for (int bin = 0; bin < p.output_size; ++bin) {
    for (int sub = 0; sub < s; ++sub) {
      out->ys[bin * s + sub] = MakeAxisSample(SampleCoord(gy, bin, sub, s), static_cast<int>(out->height));
      out->xs[bin * s + sub] = MakeAxisSample(SampleCoord(gx, bin, sub, s), static_cast<int>(out->width));
    }
  }
}

// out[c] += sum_i w[i] * in[i][c] over the four bilinear neighbours, c in [0, n).
template <typename T>
inline void Gather4(T* __restrict out, const T* __restrict a, const T* __restrict b, const T* __restrict c,
                    const T* __restrict d, T wa, T wb, T wc, T wd, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += wa * a[i] + wb * b[i] + wc * c[i] + wd * d[i];
}

// Four neighbour offsets (elements, relative to the map) and weights of sample (y, x).
struct Corners {
  int64_t offset[4];
  float weight[4];
};

inline Corners MakeCorners(const AxisSample& y, const AxisSample& x, int64_t width, int64_t channels) {
  const int64_t row_low = y.low * width, row_high = y.high * width;
  return Corners{{(row_low + x.low) * channels, (row_low + x.high) * channels,
                  (row_high + x.low) * channels, (row_high + x.high) * channels},
                 {y.w_low * x.w_low, y.w_low * x.w_high, y.w_high * x.w_low, y.w_high * x.w_high}};
}

// crops[k] [R, R, C] of one box.
template <typename T>
void ForwardBox(const Problem& p, const BoxSamples<T>& box, const T* map, T* crop) {
  const int s = p.sampling_ratio;
  const int64_t C = p.channels;
  const T inv_count = T(1) / static_cast<T>(s * s);
  for (int ph = 0; ph < p.output_size; ++ph) {
    for (int pw = 0; pw < p.output_size; ++pw) {
      T* out = crop + (int64_t{ph} * p.output_size + pw) * C;
      std::fill(out, out + C, T(0));
      for (int iy = 0; iy < s; ++iy) {
        const AxisSample& y = box.ys[ph * s + iy];
        if (!y.valid) continue;
        for (int ix = 0; ix < s; ++ix) {
          const AxisSample& x = box.xs[pw * s + ix];
          if (!x.valid) continue;
          const Corners k = MakeCorners(y, x, box.width, C);
          Gather4<T>(out, map + k.offset[0], map + k.offset[1], map + k.offset[2], map + k.offset[3],
                     k.weight[0], k.weight[1], k.weight[2], k.weight[3], C);
        }
      }
      for (int64_t c = 0; c < C; ++c) out[c] *= inv_count;
    }
  }
}

// Scatter-adds grad[k] [R, R, C] of one box into channels [c0, c1) of its level gradient.
template <typename T>
void BackwardBox(const Problem& p, const BoxSamples<T>& box, const T* grad, T* map_grad, int64_t c0,
                 int64_t c1) {
  const int s = p.sampling_ratio;
  const int64_t C = p.channels;
  const T inv_count = T(1) / static_cast<T>(s * s);
  for (int ph = 0; ph < p.output_size; ++ph) {
    for (int pw = 0; pw < p.output_size; ++pw) {
      const T* g = grad + (int64_t{ph} * p.output_size + pw) * C;
      for (int iy = 0; iy < s; ++iy) {
        const AxisSample& y = box.ys[ph * s + iy];
        if (!y.valid) continue;
        for (int ix = 0; ix < s; ++ix) {
          const AxisSample& x = box.xs[pw * s + ix];
          if (!x.valid) continue;
          const Corners k = MakeCorners(y, x, box.width, C);
          for (int corner = 0; corner < 4; ++corner) {
            T* __restrict dst = map_grad + k.offset[corner];
            const T w = static_cast<T>(k.weight[corner]) * inv_count;
            for (int64_t c = c0; c < c1; ++c) dst[c] += w * g[c];
          }
        }
      }
    }
  }
}

// Zeroes `size` elements with the worker pool.
template <typename T>
void ParallelZero(ThreadPool* workers, T* data, int64_t size) {
  if (size == 0) return;
  workers->ParallelFor(size, /*cost_per_unit=*/1, [data](int64_t begin, int64_t end) {
    std::fill(data + begin, data + end, T(0));
  });
}

template <typename T>
struct CpuRunner {
  static void Forward(OpKernelContext* ctx, const Problem& p, const T* const* levels, const float* boxes,
                      T* crops) {
    const int64_t samples = int64_t{p.output_size} * p.output_size * p.sampling_ratio * p.sampling_ratio;
    const int64_t cost = samples * p.channels * 10 + 200;
    Workers(ctx)->ParallelFor(p.num_boxes(), cost, [&](int64_t begin, int64_t end) {
      BoxSamples<T> box;
      for (int64_t k = begin; k < end; ++k) {
        ResolveBox(p, boxes, k, &box);
        ForwardBox(p, box, levels[box.level_index] + box.map_offset, crops + k * p.crop_elements());
      }
    });
  }

  static void Backward(OpKernelContext* ctx, const Problem& p, const T* grad, const float* boxes,
                       T* const* level_grads) {
    ThreadPool* workers = Workers(ctx);
    for (int l = 0; l < p.num_levels; ++l) {
      ParallelZero(workers, level_grads[l], p.batch * p.height[l] * p.width[l] * p.channels);
    }
    if (p.num_boxes() == 0 || p.channels == 0) return;
    const int64_t blocks = std::min<int64_t>(workers->NumThreads(), (p.channels + kChannelBlock - 1) / kChannelBlock);
    const int64_t width = ((p.channels + blocks - 1) / blocks + kChannelBlock - 1) / kChannelBlock * kChannelBlock;
    // Cost per block is huge: ParallelFor then gives each block its own thread.
    workers->ParallelFor(blocks, int64_t{1} << 40, [&](int64_t begin, int64_t end) {
      BoxSamples<T> box;
      for (int64_t k = 0; k < p.num_boxes(); ++k) {
        ResolveBox(p, boxes, k, &box);
        for (int64_t b = begin; b < end; ++b) {
          const int64_t c0 = b * width, c1 = std::min(p.channels, c0 + width);
          BackwardBox(p, box, grad + k * p.crop_elements(), level_grads[box.level_index] + box.map_offset, c0, c1);
        }
      }
    });
  }
};

}  // namespace

#define REGISTER_CPU(T)                                                                              \
  REGISTER_KERNEL_BUILDER(                                                                           \
      Name("MultilevelRoiAlign").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),              \
      MultilevelRoiAlignOp<T, CpuRunner<T>>);                                                        \
  REGISTER_KERNEL_BUILDER(                                                                           \
      Name("MultilevelRoiAlignGrad").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),          \
      MultilevelRoiAlignGradOp<T, CpuRunner<T>>);

REGISTER_CPU(float)
REGISTER_CPU(double)
#undef REGISTER_CPU

}  // namespace roi_align
