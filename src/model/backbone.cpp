#include "fundus/model/backbone.h"

#include "fundus/core/error.h"
#include "fundus/core/strings.h"  // join

namespace fundus {

Backbone make_mobilenet_v2();                      // backbone_mobilenet_v2.cpp
Backbone make_resnet(const std::string& name);     // backbone_resnet.cpp
Backbone make_densenet121();                       // backbone_densenet.cpp

const std::vector<std::string>& backbone_names() {
  static const std::vector<std::string> names{"mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121"};
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
  FUNDUS_THROW("unknown backbone '" << name << "' (known: " << join(backbone_names(), ", ") << ")");
}

}  // namespace fundus
