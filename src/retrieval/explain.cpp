#include "fundus/model/device.h"
#include "fundus/retrieval/explain.h"

#include <algorithm>
#include <cstring>

#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/infer/tensor.h"
#include "fundus/model/retrieval_net.h"

namespace fundus {

cv::Mat normalize_heat(const cv::Mat& map) {
  FUNDUS_CHECK(!map.empty() && map.channels() == 1, "normalize_heat: expected a non-empty one-channel map");
  cv::Mat f;
  map.convertTo(f, CV_32F);
  double lo = 0, hi = 0;
  cv::minMaxLoc(f, &lo, &hi);
  // Relative range: an exactly uniform attention block (untrained) still shows float noise.
  if (!(hi - lo > 1e-6 * std::max(1.0, std::abs(hi)))) return cv::Mat::zeros(f.size(), CV_32F);
  f.convertTo(f, CV_32F, 1.0 / (hi - lo), -lo / (hi - lo));
  cv::min(cv::max(f, 0.0), 1.0, f);  // float rounding of the affine map
  return f;
}

cv::Mat colorize_heat(const cv::Mat& heat) {
  FUNDUS_CHECK(!heat.empty() && heat.type() == CV_32FC1, "colorize_heat: expected a CV_32FC1 map");
  cv::Mat u8, bgr, rgb;
  heat.convertTo(u8, CV_8U, 255.0);
  cv::applyColorMap(u8, bgr, cv::COLORMAP_JET);
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

cv::Mat heatmap_overlay(const cv::Mat& rgb, const cv::Mat& heat, double alpha) {
  FUNDUS_CHECK(rgb.type() == CV_8UC3 && heat.size() == rgb.size(),
               "heatmap_overlay: expected an RGB image and a heat map of the same size");
  FUNDUS_CHECK(alpha >= 0 && alpha <= 1, "heatmap_overlay: alpha must be in 0..1, got " << alpha);
  cv::Mat out;
  cv::addWeighted(rgb, 1 - alpha, colorize_heat(heat), alpha, 0, out);
  return out;
}

cv::Mat labelled_panel(const std::vector<cv::Mat>& tiles, const std::vector<std::string>& labels) {
  FUNDUS_CHECK(!tiles.empty() && tiles.size() == labels.size(), "labelled_panel: one label per tile");
  const int strip = 22, gap = 4;
  int width = gap, height = tiles.front().rows;
  for (const cv::Mat& t : tiles) {
    FUNDUS_CHECK(t.type() == CV_8UC3 && t.rows == height, "labelled_panel: tiles must be RGB of the same height");
    width += t.cols + gap;
  }
  cv::Mat panel(height + strip, width, CV_8UC3, cv::Scalar(30, 30, 30));
  int x = gap;
  for (size_t i = 0; i < tiles.size(); ++i) {
    tiles[i].copyTo(panel(cv::Rect(x, strip, tiles[i].cols, height)));
    cv::putText(panel, labels[i], cv::Point(x + 2, 15), cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(235, 235, 235), 1,
                cv::LINE_AA);
    x += tiles[i].cols + gap;
  }
  return panel;
}

namespace {

// [h,w] float tensor -> CV_32FC1 (copied).
cv::Mat to_mat(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  cv::Mat m(int(c.size(0)), int(c.size(1)), CV_32F);
  std::memcpy(m.data, c.data_ptr<float>(), size_t(c.numel()) * sizeof(float));
  return m;
}

// [n,h,w] maps on the feature grid -> [n,size,size], bilinear, each feature cell covering its patch.
torch::Tensor upsample(const torch::Tensor& maps, int size) {
  namespace F = torch::nn::functional;
  return F::interpolate(maps.unsqueeze(0).to(torch::kFloat32), F::InterpolateFuncOptions()
                                                                   .size(std::vector<int64_t>{size, size})
                                                                   .mode(torch::kBilinear)
                                                                   .align_corners(false))
      .squeeze(0);
}

}  // namespace

Explanation explain_image(RetrievalNetImpl& net, const cv::Mat& image, const ExplainOptions& options,
                          const std::vector<float>& reference) {
  const int size = net.config().input_size;
  FUNDUS_CHECK(image.type() == CV_8UC3 && image.rows == size && image.cols == size,
               "explain: expected the preprocessed RGB image of " << size << "x" << size << ", got " << image.cols
                                                                  << "x" << image.rows);
  FUNDUS_CHECK(options.method == "auto" || options.method == "attention" || options.method == "gradcam",
               "explain: method must be auto, attention or gradcam, got '" << options.method << "'");
  const bool has_attention = net.mirror || net.self_attention;
  FUNDUS_CHECK(options.method != "attention" || has_attention,
               "explain: the model has no attention block (attention = " << attention_name(net.config().attention)
                                                                         << "); use --method gradcam");
  const bool attention = options.method == "attention" || (options.method == "auto" && net.mirror);
  FUNDUS_CHECK(reference.empty() || int64_t(reference.size()) == net.descriptor_dim(),
               "explain: reference descriptor has " << reference.size() << " values, the model's descriptor "
                                                    << net.descriptor_dim());
  FUNDUS_CHECK(!net.is_training(), "explain: the model must be in eval mode");

  torch::Tensor x = image_to_tensor(image, Normalization::none()).unsqueeze(0).to(module_device(net));
  Explanation e;
  // One forward pass of the network gives the descriptor and what the map is made of.
  auto keep_descriptor = [&](const ModelOutput& out) {
    torch::Tensor d = out.descriptor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    e.descriptor.assign(d.data_ptr<float>(), d.data_ptr<float>() + d.numel());
  };
  if (attention) {
    c10::InferenceMode guard;
    ModelOutput out = net.forward_detailed(x, ForwardOptions{/*attention_maps=*/true});
    keep_descriptor(out);
    e.method = net.mirror ? "mirror-attention" : "self-attention";
    e.feature_grid = cv::Size(int(out.attention_h.size(2)), int(out.attention_h.size(1)));
    torch::Tensor up = upsample(torch::cat({out.attention_h, out.attention_v}, 0), size);
    e.heat = normalize_heat(to_mat((up[0] + up[1]) / 2));
    if (net.mirror) {
      e.heat_h = normalize_heat(to_mat(up[0]));
      e.heat_v = normalize_heat(to_mat(up[1]));
    }
  } else {
    torch::AutoGradMode grad_on(true);
    ModelOutput out = net.forward_detailed(x, ForwardOptions{});
    keep_descriptor(out);
    FUNDUS_CHECK(out.feature_map.requires_grad(),
                 "explain: grad-cam needs gradients through the model's last backbone stages (none of their "
                 "parameters requires grad)");
    const torch::Tensor& d = out.pooled;
    torch::Tensor score;
    if (reference.empty()) {
      score = (d * (d / d.norm()).detach()).sum();
    } else {
      torch::Tensor r =
          torch::from_blob(const_cast<float*>(reference.data()), {1, int64_t(reference.size())}, torch::kFloat32)
              .to(d.device(), d.scalar_type());
      score = torch::cosine_similarity(d, r, 1).sum();
    }
    torch::Tensor grad = torch::autograd::grad({score}, {out.feature_map})[0];
    torch::Tensor weights = grad.mean({2, 3}, /*keepdim=*/true);
    torch::Tensor cam = torch::relu((weights * out.feature_map).sum(1)).detach();  // [1,h,w]
    e.method = "grad-cam";
    e.feature_grid = cv::Size(int(cam.size(2)), int(cam.size(1)));
    e.heat = normalize_heat(to_mat(upsample(cam, size)[0]));
  }
  e.overlay = heatmap_overlay(image, e.heat, options.alpha);
  if (!e.heat_h.empty())
    e.panel = labelled_panel({image, e.overlay, heatmap_overlay(image, e.heat_h, options.alpha),
                              heatmap_overlay(image, e.heat_v, options.alpha)},
                             {"preprocessed", "overlay (mean)", "horizontal mirror", "vertical mirror"});
  else e.panel = labelled_panel({image, e.overlay, colorize_heat(e.heat)}, {"preprocessed", "overlay", e.method});
  return e;
}

}  // namespace fundus
