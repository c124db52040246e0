// torchvision.models.resnet18/34/50 up to layer4: names conv1, bn1, layer<k>.<i>.{conv1,bn1,...,downsample.0/1}.
#include "fundus/model/backbone.h"
#include "fundus/core/error.h"
#include "layers.h"

namespace fundus {

namespace {

using layers::conv2d;

// Optional projection of the identity: children "downsample.0" (1x1 conv) and "downsample.1" (bn).
struct Downsample {
  Downsample(torch::nn::Module& block, int64_t in, int64_t out, int64_t stride) {
    if (stride == 1 && in == out) return;
    auto seq = layers::container(block, "downsample");
    conv = seq->register_module("0", conv2d(in, out, 1, stride));
    bn = seq->register_module("1", SyncBatchNorm2d(out));
  }
  torch::Tensor operator()(const torch::Tensor& x) { return conv ? bn(conv(x)) : x; }
  torch::nn::Conv2d conv{nullptr};
  SyncBatchNorm2d bn{nullptr};
};

struct BasicBlock : torch::nn::Module {
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in, int64_t planes, int64_t stride)
      : conv1(register_module("conv1", conv2d(in, planes, 3, stride, 1))),
        bn1(register_module("bn1", SyncBatchNorm2d(planes))),
        conv2(register_module("conv2", conv2d(planes, planes, 3, 1, 1))),
        bn2(register_module("bn2", SyncBatchNorm2d(planes))),
        downsample(*this, in, planes, stride) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn1(conv1(x)).relu_();
    y = bn2(conv2(y));
    return y.add_(downsample(x)).relu_();
  }
  torch::nn::Conv2d conv1;
  SyncBatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  SyncBatchNorm2d bn2;
  Downsample downsample;
};

// torchvision's ResNet v1.5: the stride sits on the 3x3 conv.
struct Bottleneck : torch::nn::Module {
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride)
      : conv1(register_module("conv1", conv2d(in, planes, 1))),
        bn1(register_module("bn1", SyncBatchNorm2d(planes))),
        conv2(register_module("conv2", conv2d(planes, planes, 3, stride, 1))),
        bn2(register_module("bn2", SyncBatchNorm2d(planes))),
        conv3(register_module("conv3", conv2d(planes, planes * kExpansion, 1))),
        bn3(register_module("bn3", SyncBatchNorm2d(planes * kExpansion))),
        downsample(*this, in, planes * kExpansion, stride) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn1(conv1(x)).relu_();
    y = bn2(conv2(y)).relu_();
    y = bn3(conv3(y));
    return y.add_(downsample(x)).relu_();
  }
  torch::nn::Conv2d conv1;
  SyncBatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  SyncBatchNorm2d bn2;
  torch::nn::Conv2d conv3;
  SyncBatchNorm2d bn3;
  Downsample downsample;
};

template <typename Block>
class ResNet : public BackboneImpl {
 public:
  ResNet(const std::string& name, const std::array<int, 4>& repeats)
      : BackboneImpl(name),
        conv1(register_module("conv1", conv2d(3, 64, 7, 2, 3))),
        bn1(register_module("bn1", SyncBatchNorm2d(64))) {
    std::vector<std::shared_ptr<Block>> blocks;
    int64_t in = 64;
    for (int k = 0; k < 4; ++k) {
      auto layer = layers::container(*this, "layer" + std::to_string(k + 1));
      int64_t planes = int64_t{64} << k;
      for (int i = 0; i < repeats[k]; ++i) {
        auto block =
            layer->register_module(std::to_string(i), std::make_shared<Block>(in, planes, i == 0 && k > 0 ? 2 : 1));
        blocks.push_back(block);
        in = planes * Block::kExpansion;
      }
    }
    layers::init_convs(*this, torch::kFanOut);
    add_stage(
        {[conv = conv1, bn = bn1](torch::Tensor x) mutable { return torch::max_pool2d(bn(conv(x)).relu_(), 3, 2, 1); },
         {conv1.ptr(), bn1.ptr()}});
    for (auto& b : blocks) add_stage({[b](torch::Tensor x) { return b->forward(x); }, {b}});
  }
  int64_t out_channels() const override { return 512 * Block::kExpansion; }

 private:
  torch::nn::Conv2d conv1;
  SyncBatchNorm2d bn1;
};

}  // namespace

Backbone make_resnet(const std::string& name) {
  if (name == "resnet18") return std::make_shared<ResNet<BasicBlock>>(name, std::array<int, 4>{2, 2, 2, 2});
  if (name == "resnet34") return std::make_shared<ResNet<BasicBlock>>(name, std::array<int, 4>{3, 4, 6, 3});
  if (name == "resnet50") return std::make_shared<ResNet<Bottleneck>>(name, std::array<int, 4>{3, 4, 6, 3});
  FUNDUS_THROW("unknown ResNet '" << name << "'");
}

}  // namespace fundus
