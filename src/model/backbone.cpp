#include "fundus/model/backbone.h"

#include <regex>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"  // ends_with

namespace fundus {

Backbone make_mobilenet_v2();                   // backbone_mobilenet_v2.cpp
Backbone make_resnet(const std::string& name);  // backbone_resnet.cpp
Backbone make_densenet121();                    // backbone_densenet.cpp
Backbone make_convnet4();                       // backbone_convnet4.cpp

torch::Tensor BackboneImpl::forward_stages(torch::Tensor x, int64_t begin, int64_t end) {
  FUNDUS_CHECK(begin >= 0 && begin <= end && end <= num_stages(),
               name_ << ": stages [" << begin << ", " << end << ") outside 0.." << num_stages());
  for (int64_t i = begin; i < end; ++i) x = stages_[size_t(i)].run(std::move(x));
  return x;
}

std::vector<std::shared_ptr<torch::nn::Module>> BackboneImpl::stage_modules(int64_t begin, int64_t end) const {
  FUNDUS_CHECK(begin >= 0 && begin <= end && end <= num_stages(),
               name_ << ": stages [" << begin << ", " << end << ") outside 0.." << num_stages());
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  for (int64_t i = begin; i < end; ++i)
    out.insert(out.end(), stages_[size_t(i)].modules.begin(), stages_[size_t(i)].modules.end());
  return out;
}

const std::vector<std::string>& backbone_names() {
  static const std::vector<std::string> names = backbone_choices().names();
  return names;
}

const std::vector<std::string>& torchvision_head_prefixes() {
  static const std::vector<std::string> prefixes{"classifier.", "fc."};
  return prefixes;
}

StateDict upgrade_torchvision_state_dict(const StateDict& state) {
  static const std::regex legacy(
      R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
  StateDict out;
  std::smatch m;
  for (const auto& item : state) {
    const std::string& key = item.key();
    std::string name = std::regex_match(key, m, legacy) ? m[1].str() + m[2].str() : key;
    FUNDUS_CHECK(!out.contains(name), "state_dict has both '" << key << "' and its current name '" << name << "'");
    out.insert(name, item.value());
  }
  const std::string suffix = ".running_mean";
  std::vector<std::string> tracked;
  for (const auto& item : out)
    if (ends_with(item.key(), suffix))
      tracked.push_back(item.key().substr(0, item.key().size() - suffix.size()) + ".num_batches_tracked");
  for (const auto& name : tracked)
    if (!out.contains(name)) out.insert(name, torch::zeros({}, torch::kLong));
  return out;
}

Backbone make_backbone(BackboneKind kind) {
  switch (kind) {
    case BackboneKind::mobilenet_v2:
      return make_mobilenet_v2();
    case BackboneKind::resnet18:
    case BackboneKind::resnet34:
    case BackboneKind::resnet50:
      return make_resnet(backbone_name(kind));
    case BackboneKind::densenet121:
      return make_densenet121();
    case BackboneKind::convnet4:
      return make_convnet4();
  }
  FUNDUS_THROW("make_backbone: invalid backbone kind " << int(kind));
}

Backbone make_backbone(const std::string& name) { return make_backbone(backbone_choices().parse(name, "backbone")); }

}  // namespace fundus
