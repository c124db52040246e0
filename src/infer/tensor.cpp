#include "fundus/infer/tensor.h"

#include <algorithm>
#include <cmath>

#include "fundus/core/error.h"
#include "fundus/core/imagenet.h"

namespace fundus {

Normalization Normalization::imagenet() {
  Normalization n;
  for (size_t c = 0; c < 3; ++c) {
    n.mean[c] = float(kImageNetMean[c]);
    n.std[c] = float(kImageNetStd[c]);
  }
  return n;
}

Normalization Normalization::parse(const std::string& name) {
  if (name == "imagenet") return imagenet();
  if (name == "none") return none();
  FUNDUS_THROW("normalization: unknown value '" << name << "' (known: imagenet, none)");
}

void image_to_chw(const cv::Mat& rgb, float* out, const Normalization& n) {
  FUNDUS_CHECK(!rgb.empty() && rgb.type() == CV_8UC3,
               "image_to_chw: expected an RGB CV_8UC3 image, got type " << rgb.type());
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (float(v) / 255.f - n.mean[size_t(c)]) / n.std[size_t(c)];
  const int64_t plane = int64_t(rgb.rows) * rgb.cols;
  float* r = out;
  float* g = out + plane;
  float* b = out + 2 * plane;
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* p = rgb.ptr<uint8_t>(y);
    const int64_t row = int64_t(y) * rgb.cols;
    for (int x = 0; x < rgb.cols; ++x) {
      r[row + x] = lut[0][p[3 * x]];
      g[row + x] = lut[1][p[3 * x + 1]];
      b[row + x] = lut[2][p[3 * x + 2]];
    }
  }
}

torch::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& n) {
  FUNDUS_CHECK(!rgb.empty(), "image_to_tensor: empty image");
  torch::Tensor t = torch::empty({3, rgb.rows, rgb.cols}, torch::kFloat32);
  image_to_chw(rgb, t.data_ptr<float>(), n);
  return t;
}

torch::Tensor images_to_tensor(const std::vector<cv::Mat>& rgbs, const Normalization& n) {
  FUNDUS_CHECK(!rgbs.empty(), "images_to_tensor: no images");
  const cv::Size size = rgbs[0].size();
  torch::Tensor t = torch::empty({int64_t(rgbs.size()), 3, size.height, size.width}, torch::kFloat32);
  const int64_t stride = 3 * int64_t(size.area());
  for (size_t i = 0; i < rgbs.size(); ++i) {
    FUNDUS_CHECK(rgbs[i].size() == size, "images_to_tensor: image " << i << " is " << rgbs[i].cols << "x"
                                                                    << rgbs[i].rows << ", image 0 is " << size.width
                                                                    << "x" << size.height);
    image_to_chw(rgbs[i], t.data_ptr<float>() + int64_t(i) * stride, n);
  }
  return t;
}

cv::Mat tensor_to_image(const torch::Tensor& chw, const Normalization& n) {
  FUNDUS_CHECK(chw.dim() == 3 && chw.size(0) == 3, "tensor_to_image: expected a [3,H,W] tensor, got " << chw.sizes());
  torch::Tensor t = chw.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  const int h = int(t.size(1)), w = int(t.size(2));
  const float* p = t.data_ptr<float>();
  cv::Mat out(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    uint8_t* q = out.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        float v = (p[int64_t(c) * h * w + int64_t(y) * w + x] * n.std[size_t(c)] + n.mean[size_t(c)]) * 255.f;
        q[3 * x + c] = uint8_t(std::lround(std::clamp(v, 0.f, 255.f)));
      }
  }
  return out;
}

}  // namespace fundus
