// Multilevel ROIAlign geometry shared by the CPU kernel (g++) and the CUDA kernel (nvcc).
//
// Matches mrcnn_tf2/ops/roi_align.py exactly:
//   * boxes are (ymin, xmin, ymax, xmax) in image pixels; level l has stride 2**l;
//   * FPN level = min_level + #{k in (min_level, max_level] : area >= (224 * 2**(k-4))**2},
//     area = max(h, 0) * max(w, 0) in float32 (== floor(4 + log2(sqrt(area) / 224)) clamped);
//   * bin (ph, pw) averages s x s bilinear samples at sub-cell centres
//     y = start + (ph * s + iy + 0.5) * length / (R * s), start = ymin * scale - (aligned ? 0.5 : 0),
//     length = (ymax - ymin) * scale, stretched to >= 1 cell when !aligned (legacy mode);
//   * detectron2 borders: a sample with -1 <= y <= H is clamped into [0, H - 1], a sample
//     further out (or NaN) contributes 0; the average always divides by s * s.
#ifndef CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_GEOMETRY_H_
#define CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_GEOMETRY_H_

#ifdef __CUDACC__
#define ROI_ALIGN_HD __host__ __device__ __forceinline__
#else
#define ROI_ALIGN_HD inline
#endif

namespace roi_align {

constexpr int kMaxLevels = 8;
constexpr float kCanonicalSize = 224.0f;
constexpr int kCanonicalLevel = 4;

// FPN level of a (ymin, xmin, ymax, xmax) box, in [min_level, max_level].
ROI_ALIGN_HD int AssignLevel(const float* box, int min_level, int max_level) {
  const float h = box[2] - box[0];
  const float w = box[3] - box[1];
  const float area = (h > 0.0f ? h : 0.0f) * (w > 0.0f ? w : 0.0f);
  int level = min_level;
  for (int k = min_level + 1; k <= max_level; ++k) {
    int shift = k - kCanonicalLevel;
    float side = shift >= 0 ? kCanonicalSize * static_cast<float>(1 << shift)
                            : kCanonicalSize / static_cast<float>(1 << -shift);
    level += (area >= side * side) ? 1 : 0;
  }
  return level;
}

// One axis of one bilinear sample: the two cells it reads and their weights.
struct AxisSample {
  int low;
  int high;
  float w_low;
  float w_high;
  bool valid;
};

// detectron2's bilinear_interpolate, one axis: coordinate -> (low, high, weights).
ROI_ALIGN_HD AxisSample MakeAxisSample(float coord, int size) {
  AxisSample s{0, 0, 0.0f, 0.0f, false};
  if (size <= 0 || !(coord >= -1.0f && coord <= static_cast<float>(size))) return s;
  if (coord <= 0.0f) coord = 0.0f;
  s.low = static_cast<int>(coord);
  if (s.low >= size - 1) {
    s.low = s.high = size - 1;
    coord = static_cast<float>(s.low);
  } else {
    s.high = s.low + 1;
  }
  s.w_high = coord - static_cast<float>(s.low);
  s.w_low = 1.0f - s.w_high;
  s.valid = true;
  return s;
}

// Sampling grid of one box along one axis (y: lo = ymin, hi = ymax; x: xmin, xmax).
struct AxisGrid {
  float start;  // feature coordinate of the box edge
  float bin;    // bin length in cells
};

ROI_ALIGN_HD AxisGrid MakeAxisGrid(float lo, float hi, float scale, int output_size, bool aligned) {
  float length = (hi - lo) * scale;
  if (!aligned && length < 1.0f) length = 1.0f;
  return AxisGrid{lo * scale - (aligned ? 0.5f : 0.0f), length / static_cast<float>(output_size)};
}

// Coordinate of sample `sub` (0..s-1) of bin `bin_index`.
ROI_ALIGN_HD float SampleCoord(const AxisGrid& grid, int bin_index, int sub, int sampling_ratio) {
  return grid.start + static_cast<float>(bin_index) * grid.bin +
         (static_cast<float>(sub) + 0.5f) * grid.bin / static_cast<float>(sampling_ratio);
}

// 2**-level as a float.
ROI_ALIGN_HD float LevelScale(int level) { return 1.0f / static_cast<float>(1 << level); }

}  // namespace roi_align

#endif  // CUSTOM_OPS_ROI_ALIGN_ROI_ALIGN_GEOMETRY_H_
