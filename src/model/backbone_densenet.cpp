// torchvision.models.densenet121 `features` (growth 32, bn_size 4, blocks 6-12-24-16), ending at
// norm5 without the ReLU torchvision applies in forward(): names features.{conv0,norm0,denseblock<k>.
// denselayer<i>.{norm1,conv1,norm2,conv2},transition<k>.{norm,conv},norm5}.
#include "fundus/model/backbone.h"
#include "layers.h"

namespace fundus {

namespace {

using layers::conv2d;

struct DenseLayer : torch::nn::Module {
  DenseLayer(int64_t in, int64_t growth, int64_t bn_size)
      : norm1(register_module("norm1", SyncBatchNorm2d(in))),
        conv1(register_module("conv1", conv2d(in, bn_size * growth, 1))),
        norm2(register_module("norm2", SyncBatchNorm2d(bn_size * growth))),
        conv2(register_module("conv2", conv2d(bn_size * growth, growth, 3, 1, 1))) {}
  torch::Tensor forward(const std::vector<torch::Tensor>& inputs) {
    torch::Tensor y = conv1(norm1(torch::cat(inputs, 1)).relu_());
    return conv2(norm2(y).relu_());
  }
  SyncBatchNorm2d norm1;
  torch::nn::Conv2d conv1;
  SyncBatchNorm2d norm2;
  torch::nn::Conv2d conv2;
};

struct Transition : torch::nn::Module {
  Transition(int64_t in, int64_t out)
      : norm(register_module("norm", SyncBatchNorm2d(in))), conv(register_module("conv", conv2d(in, out, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::avg_pool2d(conv(norm(x).relu_()), 2, 2); }
  SyncBatchNorm2d norm;
  torch::nn::Conv2d conv;
};

class DenseNet121 : public BackboneImpl {
 public:
  DenseNet121() : BackboneImpl("densenet121") {
    const int64_t growth = 32, bn_size = 4, blocks[4] = {6, 12, 24, 16};
    auto features = layers::container(*this, "features");
    conv0 = features->register_module("conv0", conv2d(3, 64, 7, 2, 3));
    norm0 = features->register_module("norm0", SyncBatchNorm2d(64));
    int64_t channels = 64;
    for (int k = 0; k < 4; ++k) {
      auto block = layers::container(*features, "denseblock" + std::to_string(k + 1));
      std::vector<std::shared_ptr<DenseLayer>> layers;
      for (int64_t i = 0; i < blocks[k]; ++i)
        layers.push_back(block->register_module("denselayer" + std::to_string(i + 1),
                                                std::make_shared<DenseLayer>(channels + i * growth, growth, bn_size)));
      blocks_.push_back(layers);
      channels += blocks[k] * growth;
      if (k < 3) {
        transitions_.push_back(features->register_module("transition" + std::to_string(k + 1),
                                                         std::make_shared<Transition>(channels, channels / 2)));
        channels /= 2;
      }
    }
    norm5 = features->register_module("norm5", SyncBatchNorm2d(channels));
    layers::init_convs(*this, torch::kFanIn);
    add_stage({[conv = conv0, norm = norm0](torch::Tensor x) mutable {
                 return torch::max_pool2d(norm(conv(x)).relu_(), 3, 2, 1);
               },
               {conv0.ptr(), norm0.ptr()}});
    for (size_t k = 0; k < blocks_.size(); ++k) {
      const auto& block = blocks_[k];
      add_stage({[block](torch::Tensor x) {
                   std::vector<torch::Tensor> features{x};
                   for (auto& layer : block) features.push_back(layer->forward(features));
                   return torch::cat(features, 1);
                 },
                 std::vector<std::shared_ptr<torch::nn::Module>>(block.begin(), block.end())});
      if (k < transitions_.size()) {
        auto t = transitions_[k];
        add_stage({[t](torch::Tensor x) { return t->forward(x); }, {t}});
      }
    }
    add_stage({[norm = norm5](torch::Tensor x) mutable { return norm(x); }, {norm5.ptr()}});
  }
  int64_t out_channels() const override { return 1024; }

 private:
  torch::nn::Conv2d conv0{nullptr};
  SyncBatchNorm2d norm0{nullptr}, norm5{nullptr};
  std::vector<std::vector<std::shared_ptr<DenseLayer>>> blocks_;
  std::vector<std::shared_ptr<Transition>> transitions_;
};

}  // namespace

Backbone make_densenet121() { return std::make_shared<DenseNet121>(); }

}  // namespace fundus
