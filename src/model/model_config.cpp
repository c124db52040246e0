#include "fundus/model/model_config.h"

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

const Choices<BackboneKind>& backbone_choices() {
  static const Choices<BackboneKind> c{
      {BackboneKind::mobilenet_v2, "mobilenet_v2"}, {BackboneKind::resnet18, "resnet18"},
      {BackboneKind::resnet34, "resnet34"},         {BackboneKind::resnet50, "resnet50"},
      {BackboneKind::densenet121, "densenet121"},   {BackboneKind::convnet4, "convnet4"}};
  return c;
}
const Choices<AttentionKind>& attention_choices() {
  static const Choices<AttentionKind> c{
      {AttentionKind::none, "none"}, {AttentionKind::mirror, "mirror"}, {AttentionKind::self, "self"}};
  return c;
}
const Choices<Aggregation>& aggregation_choices() {
  static const Choices<Aggregation> c{{Aggregation::literal, "literal"}, {Aggregation::standard, "standard"}};
  return c;
}
const Choices<PoolingKind>& pooling_choices() {
  static const Choices<PoolingKind> c{
      {PoolingKind::gem, "gem"}, {PoolingKind::avg, "avg"}, {PoolingKind::max, "max"}, {PoolingKind::rmac, "rmac"}};
  return c;
}
const Choices<Combine>& combine_choices() {
  static const Choices<Combine> c{{Combine::concat, "concat"}, {Combine::sum, "sum"}};
  return c;
}
const char* backbone_name(BackboneKind kind) { return backbone_choices().name(kind); }
const char* attention_name(AttentionKind kind) { return attention_choices().name(kind); }
const char* aggregation_name(Aggregation aggregation) { return aggregation_choices().name(aggregation); }
const char* pooling_name(PoolingKind kind) { return pooling_choices().name(kind); }
const char* combine_name(Combine combine) { return combine_choices().name(combine); }

ModelConfig ModelConfig::from_json(const Json& j, const std::string& context) {
  JsonFields f(j, context,
               {"backbone", "pretrained", "input_size", "spatial_attention", "attention", "aggregation", "reduction",
                "pooling", "gem_p", "combine", "head_classes", "imagenet_normalize", "frozen_stages"});
  ModelConfig c;
  f.read("backbone", c.backbone, backbone_choices());
  f.read("pretrained", c.pretrained);
  f.read("input_size", c.input_size);
  f.read("spatial_attention", c.spatial_attention);
  f.read("attention", c.attention, attention_choices());
  f.read("aggregation", c.aggregation, aggregation_choices());
  f.read("reduction", c.reduction);
  f.read("pooling", c.pooling, pooling_choices());
  f.read("gem_p", c.gem_p);
  f.read("combine", c.combine, combine_choices());
  f.read("head_classes", c.head_classes);
  f.read("imagenet_normalize", c.imagenet_normalize);
  f.read("frozen_stages", c.frozen_stages);
  c.validate(context);
  return c;
}

Json ModelConfig::to_json() const {
  return Json{{"backbone", backbone_name(backbone)},
              {"pretrained", pretrained},
              {"input_size", input_size},
              {"spatial_attention", spatial_attention},
              {"attention", attention_name(attention)},
              {"aggregation", aggregation_name(aggregation)},
              {"reduction", reduction},
              {"pooling", pooling_name(pooling)},
              {"gem_p", gem_p},
              {"combine", combine_name(combine)},
              {"head_classes", head_classes},
              {"imagenet_normalize", imagenet_normalize},
              {"frozen_stages", frozen_stages}};
}

void ModelConfig::validate(const std::string& context) const {
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
    c.backbone = BackboneKind::mobilenet_v2;
    c.input_size = 224;
  } else if (name == "baseline-gem") {
    c.backbone = BackboneKind::mobilenet_v2;
    c.input_size = 224;
    c.spatial_attention = false;
    c.attention = AttentionKind::none;
  } else if (name == "self-attention") {
    // The authors' strongest logged model: self-attention + GeM, trained with BCE on a 5-grade head.
    c.attention = AttentionKind::self;
    c.combine = Combine::sum;
    c.head_classes = 5;
  } else if (name == "scratch") {
    // No pretrained weights anywhere: a small CNN that learns from random initialisation on a CPU in
    // minutes; the grade head's cross-entropy gives the embedding its first structure.
    c.backbone = BackboneKind::convnet4;
    c.input_size = 128;
    c.head_classes = 5;
  } else {
    FUNDUS_THROW("unknown model preset '" << name << "' (known: " << join(model_preset_names(), ", ") << ")");
  }
  return c.to_json();
}

}  // namespace fundus
