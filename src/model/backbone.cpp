#include "fundus/model/backbone.h"

#include "fundus/core/error.h"
#include "fundus/core/strings.h"  // join

namespace fundus {

Backbone make_mobilenet_v2();                      // backbone_mobilenet_v2.cpp
Backbone make_resnet(const std::string& name);     // backbone_resnet.cpp
Backbone make_densenet121();                       // backbone_densenet.cpp
Backbone make_convnet4();                          // backbone_convnet4.cpp

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

bool backbone_has_pretrained_weights(const std::string& name) { return name != "convnet4"; }

const std::vector<std::string>& backbone_names() {
  static const std::vector<std::string> names{"mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121",
                                              "convnet4"};
  return names;
}

const std::vector<std::string>& torchvision_head_prefixes() {
  static const std::vector<std::string> prefixes{"classifier.", "fc."};
  return prefixes;
}

Backbone make_backbone(const std::string& name) {
  if (name == "mobilenet_v2") return make_mobilenet_v2();
  if (name == "resnet18" || name == "resnet34" || name == "resnet50") return make_resnet(name);
  if (name == "densenet121") return make_densenet121();
  if (name == "convnet4") return make_convnet4();
  FUNDUS_THROW("unknown backbone '" << name << "' (known: " << join(backbone_names(), ", ") << ")");
}

}  // namespace fundus
