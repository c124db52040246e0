#include "fundus/model/model_config.h"

#include <algorithm>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

void check_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& field) {
  FUNDUS_CHECK(std::find(allowed.begin(), allowed.end(), value) != allowed.end(),
               field << ": '" << value << "' is not one of " << join(allowed, ", "));
}

}  // namespace

ModelConfig ModelConfig::from_json(const Json& j, const std::string& context) {
  FUNDUS_CHECK(j.is_object(), context << ": expected a JSON object");
  check_known_keys(j,
                   {"backbone", "pretrained", "input_size", "spatial_attention", "attention", "aggregation",
                    "reduction", "pooling", "gem_p", "combine", "head_classes", "imagenet_normalize", "frozen_stages"},
                   context);
  ModelConfig c;
  try {
    c.backbone = json_value(j, "backbone", c.backbone, context);
    c.pretrained = json_value(j, "pretrained", c.pretrained, context);
    c.input_size = json_value(j, "input_size", c.input_size, context);
    c.spatial_attention = json_value(j, "spatial_attention", c.spatial_attention, context);
    c.attention = json_value(j, "attention", c.attention, context);
    c.aggregation = json_value(j, "aggregation", c.aggregation, context);
    c.reduction = json_value(j, "reduction", c.reduction, context);
    c.pooling = json_value(j, "pooling", c.pooling, context);
    c.gem_p = json_value(j, "gem_p", c.gem_p, context);
    c.combine = json_value(j, "combine", c.combine, context);
    c.head_classes = json_value(j, "head_classes", c.head_classes, context);
    c.imagenet_normalize = json_value(j, "imagenet_normalize", c.imagenet_normalize, context);
    c.frozen_stages = json_value(j, "frozen_stages", c.frozen_stages, context);
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const Error*>(&e)) throw;
    FUNDUS_THROW(e.what());
  }
  c.validate(context);
  return c;
}

Json ModelConfig::to_json() const {
  return Json{{"backbone", backbone},     {"pretrained", pretrained},   {"input_size", input_size},
              {"spatial_attention", spatial_attention}, {"attention", attention}, {"aggregation", aggregation},
              {"reduction", reduction},   {"pooling", pooling},         {"gem_p", gem_p},
              {"combine", combine},       {"head_classes", head_classes}, {"imagenet_normalize", imagenet_normalize},
              {"frozen_stages", frozen_stages}};
}

void ModelConfig::validate(const std::string& context) const {
  check_one_of(backbone, {"mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121", "convnet4"},
               context + ".backbone");
  check_one_of(attention, {"none", "mirror", "self"}, context + ".attention");
  check_one_of(aggregation, {"literal", "standard"}, context + ".aggregation");
  check_one_of(pooling, {"gem", "avg", "max", "rmac"}, context + ".pooling");
  check_one_of(combine, {"concat", "sum"}, context + ".combine");
  FUNDUS_CHECK(input_size >= 32 && input_size <= 4096, context << ".input_size: " << input_size << " outside 32-4096");
  FUNDUS_CHECK(reduction >= 1 && reduction <= 64, context << ".reduction: " << reduction << " outside 1-64");
  FUNDUS_CHECK(gem_p > 0 && gem_p <= 100, context << ".gem_p: " << gem_p << " outside (0, 100]");
  // A bound before anything is allocated: a classification head is a Linear(descriptor, head_classes).
  FUNDUS_CHECK(head_classes >= 0 && head_classes <= kMaxHeadClasses,
               context << ".head_classes: " << head_classes << " outside 0-" << kMaxHeadClasses);
  FUNDUS_CHECK(frozen_stages >= 0 && frozen_stages <= 64,
               context << ".frozen_stages: " << frozen_stages << " outside 0-64");
  FUNDUS_CHECK(frozen_stages == 0 || !spatial_attention,
               context << ".frozen_stages: a frozen backbone prefix needs spatial_attention false (the input "
                          "attention sits before the backbone and could only learn through the frozen stages)");
}

Json model_section(const Json& config) {
  auto it = config.find("model");
  return it != config.end() && it->is_object() ? *it : config;
}

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names{"paper", "cpu", "baseline-gem", "self-attention", "scratch"};
  return names;
}

Json model_preset(const std::string& name) {
  ModelConfig c;  // defaults = the paper's network
  if (name == "paper") {
  } else if (name == "cpu") {
    // ImageNet MobileNetV2 weights are given at run time (model.pretrained / --pretrained).
    c.backbone = "mobilenet_v2";
    c.input_size = 224;
  } else if (name == "baseline-gem") {
    c.backbone = "mobilenet_v2";
    c.input_size = 224;
    c.spatial_attention = false;
    c.attention = "none";
  } else if (name == "self-attention") {
    // The authors' strongest logged model: self-attention + GeM, trained with BCE on a 5-grade head.
    c.attention = "self";
    c.combine = "sum";
    c.head_classes = 5;
  } else if (name == "scratch") {
    // No pretrained weights anywhere: a small CNN that learns from random initialisation on a CPU in
    // minutes; the grade head's cross-entropy gives the embedding its first structure.
    c.backbone = "convnet4";
    c.input_size = 128;
    c.head_classes = 5;
  } else {
    FUNDUS_THROW("unknown model preset '" << name << "' (known: " << join(model_preset_names(), ", ") << ")");
  }
  return c.to_json();
}

}  // namespace fundus
