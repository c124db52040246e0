// Internal building blocks shared by the backbone and attention sources (not a public header).
#pragma once

#include <string>

#include <torch/torch.h>

#include "fundus/model/sync_batchnorm.h"  // every BatchNorm2d of our networks

namespace fundus::layers {

/// Conv2d with torchvision's defaults (no bias unless asked).
inline torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
                                int64_t groups = 1, bool bias = false) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).groups(groups).bias(bias));
}

/// An empty module used only to give children torchvision's dotted names ("features.3.conv.1").
inline std::shared_ptr<torch::nn::Module> container(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

/// torchvision's conv initialisation: Kaiming-normal weights (gain sqrt(2)), zero biases.
/// BatchNorm keeps LibTorch's default (weight 1, bias 0), as in torchvision.
inline void init_convs(torch::nn::Module& root, torch::nn::init::FanModeType mode) {
  torch::NoGradGuard no_grad;
  for (auto& m : root.modules(/*include_self=*/false)) {  // the root is no conv, and may not be in a shared_ptr yet
    if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(m.get())) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, mode, torch::kReLU);
      if (conv->bias.defined()) conv->bias.zero_();
    }
  }
}

}  // namespace fundus::layers
