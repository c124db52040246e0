// CNN backbones with torchvision's exact module structure and parameter names, so that a torchvision
// state_dict (torch.save(model.state_dict())) loads into them directly with load_into():
//   mobilenet_v2  "features.*"            C = 1280  (ReLU6, like torchvision)
//   resnet18/34/50 "conv1, bn1, layer1-4"  C = 512 / 512 / 2048   (output of layer4)
//   densenet121   "features.*"            C = 1024  (output of norm5: BatchNorm, no final ReLU)
// The classifier heads (torchvision "classifier.*" / "fc.*") are not built: loading a full
// torchvision file reports them as unused. Initialisation follows torchvision's constructors.
//
//   convnet4      "features.*"            C = 256   a small from-scratch network (4 stages of two
//                                                   conv3x3-BN-ReLU, the first strided): no pretrained
//                                                   weights exist; for training from random init on a CPU
//
// forward(x [B,3,H,W] float) -> feature map [B,C,H',W'] with H' = ceil(H/32) for even sizes
// (e.g. 224 -> 7, 256 -> 8, 64 -> 2; convnet4: H/16). ReLUs are in place where torchvision's are
// (inplace=True), which matters for CPU speed. Modules are not thread-safe: one forward at a time.
//
// Stages: every backbone is a sequence of stages (MobileNetV2: the 19 `features` layers; ResNet: the
// stem, then each residual block; DenseNet: the stem, each dense block and transition, norm5;
// convnet4: its 4 stages), so that a prefix can be frozen and run once (model_config.h
// frozen_stages): forward(x) == forward_stages(forward_stages(x, 0, n), n, num_stages()).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fundus/model/model_config.h"  // BackboneKind
#include "fundus/model/state_dict.h"

namespace fundus {

class BackboneImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(torch::Tensor x) { return forward_stages(std::move(x), 0, num_stages()); }
  /// Runs stages [begin, end) (0 <= begin <= end <= num_stages()).
  torch::Tensor forward_stages(torch::Tensor x, int64_t begin, int64_t end);
  int64_t num_stages() const { return int64_t(stages_.size()); }
  /// The modules of stages [begin, end), e.g. to freeze them (parameters, eval mode).
  std::vector<std::shared_ptr<torch::nn::Module>> stage_modules(int64_t begin, int64_t end) const;
  virtual int64_t out_channels() const = 0;
  const std::string& name() const { return name_; }

 protected:
  explicit BackboneImpl(std::string name) : name_(std::move(name)) {}
  struct Stage {
    std::function<torch::Tensor(torch::Tensor)> run;
    std::vector<std::shared_ptr<torch::nn::Module>> modules;  // every module whose parameters it uses
  };
  void add_stage(Stage stage) { stages_.push_back(std::move(stage)); }

 private:
  std::string name_;
  std::vector<Stage> stages_;
};
using Backbone = std::shared_ptr<BackboneImpl>;

Backbone make_backbone(BackboneKind kind);
/// By name ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121", "convnet4": the
/// spellings of backbone_choices()); throws "backbone: 'x' is not one of ...".
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
