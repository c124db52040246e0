// CNN backbones with torchvision's exact module structure and parameter names, so that a torchvision
// state_dict (torch.save(model.state_dict())) loads into them directly with load_into():
//   mobilenet_v2  "features.*"            C = 1280  (ReLU6, like torchvision)
//   resnet18/34/50 "conv1, bn1, layer1-4"  C = 512 / 512 / 2048   (output of layer4)
//   densenet121   "features.*"            C = 1024  (output of norm5: BatchNorm, no final ReLU)
// The classifier heads (torchvision "classifier.*" / "fc.*") are not built: loading a full
// torchvision file reports them as unused. Initialisation follows torchvision's constructors.
//
// forward(x [B,3,H,W] float) -> feature map [B,C,H',W'] with H' = ceil(H/32) for even sizes
// (e.g. 224 -> 7, 256 -> 8, 64 -> 2). ReLUs are in place where torchvision's are (inplace=True),
// which matters for CPU speed. Modules are not thread-safe: one forward at a time per instance.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fundus/model/state_dict.h"

namespace fundus {

class BackboneImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  virtual int64_t out_channels() const = 0;
  const std::string& name() const { return name_; }

 protected:
  explicit BackboneImpl(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};
using Backbone = std::shared_ptr<BackboneImpl>;

/// "mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121"; throws listing the valid names.
Backbone make_backbone(const std::string& name);
const std::vector<std::string>& backbone_names();

/// Prefixes of torchvision classifier heads, unused by a backbone ({"classifier.", "fc."}).
const std::vector<std::string>& torchvision_head_prefixes();

/// What torchvision does to its older files on load, so that they load with load_into():
///  - DenseNet keys from before module names lost their dots ("...denselayer1.norm.1.weight" ->
///    "...denselayer1.norm1.weight"; torchvision's densenet._load_state_dict regex);
///  - BatchNorm layers saved before num_batches_tracked existed (PyTorch < 0.4.1) get it as 0, as
///    BatchNorm's own loader does.
/// Other keys are unchanged and keep their order.
StateDict upgrade_torchvision_state_dict(const StateDict& state);

}  // namespace fundus
