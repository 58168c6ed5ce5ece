// CUDA implementation of MrcnnGenerateProposals behind the C ABI of proposals_cuda.h.
// No TensorFlow header: the same object serves the TF GPU kernel and the standalone
// harness (custom_ops/harness/proposals_harness.py).
//
// Per level (levels run one after the other on `stream`, all images at once):
//   1. sort every image's logits descending with a segmented radix sort of unique
//      64-bit keys (ordered float bits, then ~anchor index): ties by lower index, as
//      tf.math.top_k; the first k_l keys are the pre-NMS candidates;
//   2. decode + clip + min-size filter of the candidates (-inf logit when dropped);
//   3. NMS bitmask: bit j of row i set when IoU(i, j) > threshold, j > i (torchvision);
//   4. one block per image walks the rows greedily and appends the survivors (at most
//      m_l) to the image's merge buffer at slots [l * m_max, l * m_max + m_l).
// Then the merge buffers are sorted the same way (level-major slot order breaks ties,
// as tf.math.top_k over the concatenation) and the first post_nms_topk are written.
#include <cuda_runtime.h>

#include <cub/cub.cuh>

#include <cstdint>

#include "proposals.h"
#include "proposals_cuda.h"

namespace {

using mrcnn_proposals::DecodeClipBox;
using mrcnn_proposals::DecodeParams;
using mrcnn_proposals::MakeNmsBox;
using mrcnn_proposals::NmsBox;
using mrcnn_proposals::NmsIou;
using mrcnn_proposals::OrderedBits;

constexpr int kThreads = 256;
constexpr int kNmsBlock = 64;  // bits per mask word
constexpr size_t kAlign = 256;

// Sizes derived from the problem; shared by the workspace query and the launcher.
struct Sizes {
  int batch = 0, num_levels = 0;
  int64_t n_max = 0;  // most anchors in a level
  int64_t k_max = 0;  // most pre-NMS candidates in a level
  int64_t m_max = 0;  // most NMS survivors in a level
  int64_t col_blocks = 0;
  int64_t merged = 0;  // L * m_max merge slots per image

  Sizes(int b, int l, const int64_t* counts, int pre, int post) : batch(b), num_levels(l) {
    for (int i = 0; i < l; ++i) {
      const int64_t k = counts[i] < pre ? counts[i] : pre;
      n_max = counts[i] > n_max ? counts[i] : n_max;
      k_max = k > k_max ? k : k_max;
    }
    m_max = k_max < post ? k_max : post;
    col_blocks = (k_max + kNmsBlock - 1) / kNmsBlock;
    merged = l * m_max;
  }
};

size_t RoundUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Workspace carved into aligned buffers, in this order.
struct Workspace {
  uint64_t *keys_in, *keys_out;  // [B * n_max] (level sort), reused for the merge sort
  int* offsets;                  // [B + 1] segment starts
  float* cand_boxes;             // [B, k_max, 4]
  float* cand_logits;            // [B, k_max]
  uint64_t* mask;                // [B, k_max, col_blocks]
  float* merged_boxes;           // [B, merged, 4]
  float* merged_logits;          // [B, merged]
  void* sort_temp;
  size_t sort_temp_bytes;
  size_t total;

  Workspace(const Sizes& s, char* base) {
    const int64_t items = s.batch * (s.n_max > s.merged ? s.n_max : s.merged);
    size_t offset = 0;
    auto take = [&](size_t bytes) {
      char* p = base ? base + offset : nullptr;
      offset += RoundUp(bytes);
      return p;
    };
    keys_in = reinterpret_cast<uint64_t*>(take(items * sizeof(uint64_t)));
    keys_out = reinterpret_cast<uint64_t*>(take(items * sizeof(uint64_t)));
    offsets = reinterpret_cast<int*>(take((s.batch + 1) * sizeof(int)));
    cand_boxes = reinterpret_cast<float*>(take(s.batch * s.k_max * 4 * sizeof(float)));
    cand_logits = reinterpret_cast<float*>(take(s.batch * s.k_max * sizeof(float)));
    mask = reinterpret_cast<uint64_t*>(take(s.batch * s.k_max * s.col_blocks * sizeof(uint64_t)));
    merged_boxes = reinterpret_cast<float*>(take(s.batch * s.merged * 4 * sizeof(float)));
    merged_logits = reinterpret_cast<float*>(take(s.batch * s.merged * sizeof(float)));
    sort_temp_bytes = SortTempBytes(s);
    sort_temp = take(sort_temp_bytes);
    total = offset;
  }

  static size_t SortTempBytes(const Sizes& s) {
    size_t level = 0, merge = 0;
    cub::DeviceSegmentedRadixSort::SortKeysDescending(nullptr, level, (const uint64_t*)nullptr,
                                                      (uint64_t*)nullptr, int(s.batch * s.n_max), s.batch,
                                                      (const int*)nullptr, (const int*)nullptr);
    cub::DeviceSegmentedRadixSort::SortKeysDescending(nullptr, merge, (const uint64_t*)nullptr,
                                                      (uint64_t*)nullptr, int(s.batch * s.merged), s.batch,
                                                      (const int*)nullptr, (const int*)nullptr);
    return level > merge ? level : merge;
  }
};

__device__ __forceinline__ uint64_t SortKey(float logit, int64_t index) {
  return (uint64_t(OrderedBits(logit)) << 32) | (0xFFFFFFFFull - uint64_t(index));
}

__device__ __forceinline__ int64_t KeyIndex(uint64_t key) { return int64_t(0xFFFFFFFFull - (key & 0xFFFFFFFFull)); }

__global__ void MakeKeys(const float* logits, int64_t per_image, int64_t total, uint64_t* keys) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = SortKey(logits[i], i % per_image);
  }
}

__global__ void MakeOffsets(int batch, int64_t per_image, int* offsets) {
  for (int b = threadIdx.x; b <= batch; b += blockDim.x) offsets[b] = int(b * per_image);
}

__global__ void FillMerged(int64_t total, float* boxes, float* logits) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    logits[i] = -INFINITY;
    for (int c = 0; c < 4; ++c) boxes[4 * i + c] = 0.0f;
  }
}

// Candidates of one level: decode the k best anchors of every image.
__global__ void DecodeCandidates(const uint64_t* sorted, const float* logits, const float* deltas,
                                 const float* anchors, const float* image_info, int info_stride, int batch,
                                 int64_t n, int64_t k, int64_t k_max, DecodeParams params, float* cand_boxes,
                                 float* cand_logits) {
  const int64_t total = batch * k;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = t / k, i = t % k;
    const int64_t index = KeyIndex(sorted[b * n + i]);
    float* box = cand_boxes + 4 * (b * k_max + i);
    const bool ok = DecodeClipBox(deltas + 4 * (b * n + index), anchors + 4 * index,
                                  image_info[b * info_stride], image_info[b * info_stride + 1], params, box);
    cand_logits[b * k_max + i] = ok ? logits[b * n + index] : -INFINITY;
  }
}

// mask[b, i, cb] bit j: candidate cb * 64 + j (> i) overlaps i by IoU > threshold.
__global__ void NmsMask(const float* cand_boxes, int64_t k, int64_t k_max, int64_t col_blocks, float threshold,
                        uint64_t* mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x, b = blockIdx.z;
  if (row_block > col_block) return;
  const int64_t row_size = min(k - row_block * kNmsBlock, int64_t(kNmsBlock));
  const int64_t col_size = min(k - col_block * kNmsBlock, int64_t(kNmsBlock));
  __shared__ NmsBox cols[kNmsBlock];
  if (threadIdx.x < col_size) {
    cols[threadIdx.x] = MakeNmsBox(cand_boxes + 4 * (b * k_max + col_block * kNmsBlock + threadIdx.x));
  }
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kNmsBlock + threadIdx.x;
  const NmsBox row = MakeNmsBox(cand_boxes + 4 * (b * k_max + i));
  uint64_t bits = 0;
  for (int64_t j = (row_block == col_block ? threadIdx.x + 1 : 0); j < col_size; ++j) {
    if (NmsIou(cols[j], row) > threshold) bits |= 1ull << j;
  }
  mask[(b * k_max + i) * col_blocks + col_block] = bits;
}

// Greedy walk of one image's rows; survivors go to merge slots [slot0, slot0 + m).
__global__ void NmsReduce(const float* cand_boxes, const float* cand_logits, const uint64_t* mask, int64_t k,
                          int64_t k_max, int64_t col_blocks, int64_t m, int64_t merged, int64_t slot0,
                          float* merged_boxes, float* merged_logits) {
  extern __shared__ uint64_t removed[];
  const int64_t b = blockIdx.x;
  for (int64_t w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  int64_t kept = 0;
  for (int64_t i = 0; i < k && kept < m; ++i) {
    const float logit = cand_logits[b * k_max + i];
    if (!(logit > -INFINITY) || (removed[i / kNmsBlock] >> (i % kNmsBlock)) & 1ull) continue;
    __syncthreads();  // every thread has read removed[] before it changes
    if (threadIdx.x == 0) {
      const int64_t slot = b * merged + slot0 + kept;
      merged_logits[slot] = logit;
      for (int c = 0; c < 4; ++c) merged_boxes[4 * slot + c] = cand_boxes[4 * (b * k_max + i) + c];
    }
    const uint64_t* row = mask + (b * k_max + i) * col_blocks;
    for (int64_t w = i / kNmsBlock + threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] |= row[w];
    ++kept;
    __syncthreads();
  }
}

__global__ void MergeKeys(const float* merged_logits, int64_t merged, int64_t total, uint64_t* keys) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = SortKey(merged_logits[i], i % merged);
  }
}

__global__ void WriteOutputs(const uint64_t* sorted, const float* merged_boxes, const float* merged_logits,
                             int batch, int64_t merged, int64_t post, float* boxes, float* scores, uint8_t* valid) {
  const int64_t total = batch * post;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = t / post, p = t % post;
    const int64_t slot = p < merged ? b * merged + KeyIndex(sorted[b * merged + p]) : -1;
    const float logit = slot >= 0 ? merged_logits[slot] : -INFINITY;
    const bool ok = logit > -INFINITY;
    valid[t] = ok;
    scores[t] = ok ? 1.0f / (1.0f + expf(-logit)) : 0.0f;
    for (int c = 0; c < 4; ++c) boxes[4 * t + c] = ok ? merged_boxes[4 * slot + c] : 0.0f;
  }
}

unsigned Blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return unsigned(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

// Top-k, decode, NMS of level `l`; survivors land in the merge buffers.
cudaError_t RunLevel(const Sizes& s, const Workspace& w, int l, int64_t n, const float* scores, const float* deltas,
                     const float* anchors, const float* image_info, int info_stride, int pre, float threshold,
                     DecodeParams params, cudaStream_t stream) {
  const int64_t k = n < pre ? n : pre;
  const int64_t m = k < s.m_max ? k : s.m_max;
  const int64_t items = s.batch * n;
  MakeKeys<<<Blocks(items), kThreads, 0, stream>>>(scores, n, items, w.keys_in);
  MakeOffsets<<<1, kThreads, 0, stream>>>(s.batch, n, w.offsets);
  size_t temp_bytes = w.sort_temp_bytes;
  cudaError_t err = cub::DeviceSegmentedRadixSort::SortKeysDescending(
      w.sort_temp, temp_bytes, w.keys_in, w.keys_out, int(items), s.batch, w.offsets, w.offsets + 1, 0, 64, stream);
  if (err != cudaSuccess) return err;
  DecodeCandidates<<<Blocks(s.batch * k), kThreads, 0, stream>>>(w.keys_out, scores, deltas, anchors, image_info,
                                                                  info_stride, s.batch, n, k, s.k_max, params,
                                                                  w.cand_boxes, w.cand_logits);
  const int64_t blocks = (k + kNmsBlock - 1) / kNmsBlock;
  NmsMask<<<dim3(unsigned(blocks), unsigned(blocks), unsigned(s.batch)), kNmsBlock, 0, stream>>>(
      w.cand_boxes, k, s.k_max, s.col_blocks, threshold, w.mask);
  NmsReduce<<<s.batch, kThreads, s.col_blocks * sizeof(uint64_t), stream>>>(
      w.cand_boxes, w.cand_logits, w.mask, k, s.k_max, s.col_blocks, m, s.merged, l * s.m_max, w.merged_boxes,
      w.merged_logits);
  return cudaGetLastError();
}

}  // namespace

extern "C" size_t mrcnn_proposals_cuda_workspace_bytes(int batch, int num_levels, const int64_t* level_counts,
                                                       int pre_nms_topk, int post_nms_topk) {
  return Workspace(Sizes(batch, num_levels, level_counts, pre_nms_topk, post_nms_topk), nullptr).total;
}

extern "C" int mrcnn_proposals_cuda(int batch, int num_levels, const int64_t* level_counts,
                                    const float* const* scores, const float* const* deltas,
                                    const float* const* anchors, const float* image_info, int info_stride,
                                    int pre_nms_topk, int post_nms_topk, float nms_threshold, float min_size,
                                    const float* weights, void* workspace, size_t workspace_bytes, float* out_boxes,
                                    float* out_scores, uint8_t* out_valid, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const Sizes s(batch, num_levels, level_counts, pre_nms_topk, post_nms_topk);
  const Workspace w(s, static_cast<char*>(workspace));
  if (batch == 0) return cudaSuccess;
  if (workspace_bytes < w.total || s.col_blocks * sizeof(uint64_t) > 48 * 1024) return cudaErrorInvalidValue;
  const DecodeParams params{weights[0], weights[1], weights[2], weights[3], min_size};
  FillMerged<<<Blocks(batch * s.merged), kThreads, 0, stream>>>(batch * s.merged, w.merged_boxes, w.merged_logits);
  for (int l = 0; l < num_levels; ++l) {
    if (level_counts[l] == 0) continue;
    const cudaError_t err = RunLevel(s, w, l, level_counts[l], scores[l], deltas[l], anchors[l], image_info,
                                     info_stride, pre_nms_topk, nms_threshold, params, stream);
    if (err != cudaSuccess) return err;
  }
  const int64_t items = batch * s.merged;
  if (items > 0) {
    MergeKeys<<<Blocks(items), kThreads, 0, stream>>>(w.merged_logits, s.merged, items, w.keys_in);
    MakeOffsets<<<1, kThreads, 0, stream>>>(batch, s.merged, w.offsets);
    size_t temp_bytes = w.sort_temp_bytes;
    const cudaError_t err = cub::DeviceSegmentedRadixSort::SortKeysDescending(
        w.sort_temp, temp_bytes, w.keys_in, w.keys_out, int(items), batch, w.offsets, w.offsets + 1, 0, 64, stream);
    if (err != cudaSuccess) return err;
  }
  WriteOutputs<<<Blocks(batch * int64_t(post_nms_topk)), kThreads, 0, stream>>>(
      w.keys_out, w.merged_boxes, w.merged_logits, batch, s.merged, post_nms_topk, out_boxes, out_scores, out_valid);
  return cudaGetLastError();
}
