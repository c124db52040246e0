// Image <-> tensor conversion for the network input: RGB CV_8UC3 (H x W) -> float32 [3,H,W] or
// [B,3,H,W] in [0,1], optionally normalised per channel at tensor time: (v / 255 - mean[c]) / std[c].
// Conversion goes through a 256-entry lookup table per channel, so every pixel value maps to exactly
// one float: results are bit-identical whatever the thread count or batch layout.
// Thread-safe (pure functions). Throws fundus::Error for a wrong image type or mismatched sizes.
#pragma once

#include <array>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

namespace fundus {

struct Normalization {
  std::array<float, 3> mean{0.f, 0.f, 0.f};
  std::array<float, 3> std{1.f, 1.f, 1.f};
  /// torchvision's ImageNet statistics (core/imagenet.h).
  static Normalization imagenet();
  static Normalization none() { return {}; }
  /// "imagenet" or "none"; throws naming the valid values.
  static Normalization parse(const std::string& name);
};

/// Writes 3*H*W floats, channel-major (R plane, G plane, B plane), to `out`.
void image_to_chw(const cv::Mat& rgb, float* out, const Normalization& norm = {});
/// [3,H,W] float32, contiguous, CPU.
torch::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& norm = {});
/// [B,3,H,W] float32; all images must have the same size; B >= 1.
torch::Tensor images_to_tensor(const std::vector<cv::Mat>& rgbs, const Normalization& norm = {});
/// Inverse of image_to_tensor for [3,H,W] (values rounded and clamped to 0..255): RGB CV_8UC3.
cv::Mat tensor_to_image(const torch::Tensor& chw, const Normalization& norm = {});

}  // namespace fundus
