// torchvision.models.mobilenet_v2 (width 1.0) up to `features`: names features.<i>.<...>.
#include <functional>

#include "fundus/model/backbone.h"
#include "layers.h"

namespace fundus {

namespace {

using layers::conv2d;

// torchvision Conv2dNormActivation(..., activation_layer=ReLU6): children "0" conv, "1" bn.
struct ConvBNReLU6 : torch::nn::Module {
  ConvBNReLU6(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t groups = 1)
      : conv(register_module("0", conv2d(in, out, kernel, stride, (kernel - 1) / 2, groups))),
        bn(register_module("1", SyncBatchNorm2d(out))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn(conv(x));
    return torch::hardtanh_(y, 0.0, 6.0);  // torchvision's ReLU6(inplace=True)
  }
  torch::nn::Conv2d conv;
  SyncBatchNorm2d bn;
};

struct InvertedResidual : torch::nn::Module {
  InvertedResidual(int64_t in, int64_t out, int64_t stride, int64_t expand) : residual(stride == 1 && in == out) {
    auto seq = layers::container(*this, "conv");
    int64_t hidden = in * expand;
    int index = 0;
    if (expand != 1)
      acts.push_back(seq->register_module(std::to_string(index++), std::make_shared<ConvBNReLU6>(in, hidden, 1)));
    acts.push_back(seq->register_module(std::to_string(index++),
                                        std::make_shared<ConvBNReLU6>(hidden, hidden, 3, stride, hidden)));
    project = seq->register_module(std::to_string(index++), conv2d(hidden, out, 1));
    bn = seq->register_module(std::to_string(index++), SyncBatchNorm2d(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = x;
    for (auto& a : acts) y = a->forward(y);
    y = bn(project(y));
    return residual ? y.add_(x) : y;
  }
  bool residual;
  std::vector<std::shared_ptr<ConvBNReLU6>> acts;
  torch::nn::Conv2d project{nullptr};
  SyncBatchNorm2d bn{nullptr};
};

class MobileNetV2 : public BackboneImpl {
 public:
  MobileNetV2() : BackboneImpl("mobilenet_v2") {
    auto features = layers::container(*this, "features");
    int index = 0;
    auto add = [&](auto module) {
      features->register_module(std::to_string(index++), module);
      add_stage({[module](torch::Tensor x) { return module->forward(x); }, {module}});
    };
    add(std::make_shared<ConvBNReLU6>(3, 32, 3, 2));
    // t (expansion), c (channels), n (repeats), s (first stride): torchvision's setting.
    const int64_t setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                   {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t in = 32;
    for (const auto& s : setting)
      for (int64_t i = 0; i < s[2]; ++i) {
        add(std::make_shared<InvertedResidual>(in, s[1], i == 0 ? s[3] : 1, s[0]));
        in = s[1];
      }
    add(std::make_shared<ConvBNReLU6>(in, 1280, 1));
    layers::init_convs(*this, torch::kFanOut);
  }
  int64_t out_channels() const override { return 1280; }
};

}  // namespace

Backbone make_mobilenet_v2() { return std::make_shared<MobileNetV2>(); }

}  // namespace fundus
