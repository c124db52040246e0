// convnet4: a small CNN for training from random initialisation on a CPU, where no ImageNet weights
// are available (the demo without downloads). Four stages, each conv3x3 stride 2 + BN + ReLU then
// conv3x3 + BN + ReLU, widths 32-64-128-256: output stride 16, 256 channels, ~1.2M parameters.
// Names features.<stage>.{0,1,3,4} (conv, bn, conv, bn), like a torchvision Sequential would give.
#include "fundus/model/backbone.h"
#include "layers.h"

namespace fundus {

namespace {

using layers::conv2d;

struct ConvStage : torch::nn::Module {
  ConvStage(int64_t in, int64_t out)
      : conv1(register_module("0", conv2d(in, out, 3, 2, 1))),
        bn1(register_module("1", SyncBatchNorm2d(out))),
        conv2(register_module("3", conv2d(out, out, 3, 1, 1))),
        bn2(register_module("4", SyncBatchNorm2d(out))) {}
  torch::Tensor forward(const torch::Tensor& x) { return bn2(conv2(bn1(conv1(x)).relu_())).relu_(); }
  torch::nn::Conv2d conv1;
  SyncBatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  SyncBatchNorm2d bn2;
};

class ConvNet4 : public BackboneImpl {
 public:
  ConvNet4() : BackboneImpl("convnet4") {
    auto features = layers::container(*this, "features");
    const int64_t widths[4] = {32, 64, 128, 256};
    int64_t in = 3;
    for (int k = 0; k < 4; ++k) {
      auto stage = features->register_module(std::to_string(k), std::make_shared<ConvStage>(in, widths[k]));
      add_stage({[stage](torch::Tensor x) { return stage->forward(x); }, {stage}});
      in = widths[k];
    }
    layers::init_convs(*this, torch::kFanOut);
  }
  int64_t out_channels() const override { return 256; }
};

}  // namespace

Backbone make_convnet4() { return std::make_shared<ConvNet4>(); }

}  // namespace fundus
