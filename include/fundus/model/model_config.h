// The "model" section of a run configuration (JSON), and the named presets for it. Torch-free, so
// the CLI, the server and the trainer's config code can read and validate it cheaply.
//
//   {"backbone": "densenet121", "pretrained": "", "input_size": 256, "spatial_attention": true,
//    "attention": "mirror", "aggregation": "literal", "reduction": 2, "pooling": "gem", "gem_p": 3,
//    "combine": "concat", "head_classes": 0, "imagenet_normalize": true, "frozen_stages": 0}
//
// Missing keys take the defaults below (the paper's network); unknown keys and invalid values throw
// fundus::Error naming "<context>.<key>" (a choice lists the valid spellings). The choices (backbone,
// attention, aggregation, pooling, combine) are parsed into enums here, once; the network compares
// enums. JSON and the CLI keep the spellings of the *_choices() tables.
// `imagenet_normalize`: the network itself normalises its [0,1] RGB input with ImageNet mean/std, so
// callers always feed [0,1] (data Normalization::none()).
#pragma once

#include <string>
#include <vector>

#include "fundus/core/error.h"
#include "fundus/core/json.h"

namespace fundus {

enum class BackboneKind { mobilenet_v2, resnet18, resnet34, resnet50, densenet121, convnet4 };
enum class AttentionKind { none, mirror, self };
enum class Aggregation { literal, standard };  // mirror attention's softmax (model/attention.h)
enum class PoolingKind { gem, avg, max, rmac };
enum class Combine { concat, sum };  // of the two mirror branches

/// The spellings: "mobilenet_v2", "resnet18", "resnet34", "resnet50", "densenet121", "convnet4".
const Choices<BackboneKind>& backbone_choices();
const Choices<AttentionKind>& attention_choices();  // "none", "mirror", "self"
const Choices<Aggregation>& aggregation_choices();  // "literal", "standard"
const Choices<PoolingKind>& pooling_choices();      // "gem", "avg", "max", "rmac"
const Choices<Combine>& combine_choices();          // "concat", "sum"
/// The JSON/CLI spelling of a choice (what to_json writes and messages print).
const char* backbone_name(BackboneKind kind);
const char* attention_name(AttentionKind kind);
const char* aggregation_name(Aggregation aggregation);
const char* pooling_name(PoolingKind kind);
const char* combine_name(Combine combine);

/// Upper bound of head_classes (a DR grade head has 5): configs and checkpoints beyond it are refused
/// before anything is allocated.
constexpr int kMaxHeadClasses = 1000;

struct ModelConfig {
  BackboneKind backbone = BackboneKind::densenet121;
  std::string pretrained;         // backbone weights: a .pth, "imagenet" or a weights name (weights_hub.h), or ""
  int input_size = 256;           // side of the square network input (used by the data pipeline)
  bool spatial_attention = true;  // input spatial attention (method 2.2)
  AttentionKind attention = AttentionKind::mirror;
  Aggregation aggregation = Aggregation::literal;  // mirror attention only
  int reduction = 2;                               // C' = C / reduction in the attention blocks
  PoolingKind pooling = PoolingKind::gem;
  double gem_p = 3.0;                 // initial GeM exponent (learnable)
  Combine combine = Combine::concat;  // mirror attention only
  int head_classes = 0;               // grade classifier on the descriptor; 0 = none, at most kMaxHeadClasses
  bool imagenet_normalize = true;
  // The first N backbone stages (backbone.h) are frozen: no gradients, BatchNorm in eval mode with
  // the pretrained statistics. Training is then cheaper (no backward through them; with
  // train.feature_cache their output is computed once per augmented copy) and a small dataset
  // cannot overfit them. Needs spatial_attention false.
  int frozen_stages = 0;

  /// Reads a model section over the defaults; validates.
  static ModelConfig from_json(const Json& section, const std::string& context = "model");
  Json to_json() const;
  /// Throws naming the first invalid field.
  void validate(const std::string& context = "model") const;
};

/// The model section of a JSON file: its "model" object when it is a full run configuration,
/// otherwise the whole object. Resolution: preset (or the defaults) <- file section <- overrides.
Json model_section(const Json& config);

/// "paper", "cpu", "baseline-gem", "self-attention": complete model sections.
Json model_preset(const std::string& name);
const std::vector<std::string>& model_preset_names();

}  // namespace fundus
