// The retrieval network of the method (method.md section 2): [0,1] RGB images -> L2-normalised
// descriptors, built from a ModelConfig.
//
//   x [B,3,H,W] float32 (or float64), RGB in [0,1]
//   -> ImageNet normalisation (config.imagenet_normalize; core/imagenet.h)
//   -> views x_a, x_h = flip(W), x_v = flip(H)       (attention = mirror only)
//   -> input spatial attention (shared by the views)  (config.spatial_attention)
//   -> backbone -> X [.,C,H',W']
//   -> mirror: Y_h, Y_v = MirrorAttention(X_a, X_h, X_v); d_h = pool(Y_h), d_v = pool(Y_v)
//      self  : d = pool(SelfAttention(X)); none: d = pool(X); d_h = d_v = d
//   -> d = concat[d_h; d_v] or d_h + d_v (mirror); d otherwise
//   -> logits = head(d), before normalisation                  (config.head_classes > 0)
//   -> descriptor = l2normalize(d)
//
// The three views go through the backbone as ONE batch of 3B images (about 10-20% faster than three
// calls on CPU). In training mode this means every BatchNorm layer of the backbone normalises with
// statistics over all 3B images (originals and both flips together) and updates its running
// statistics once per step from them, instead of per view as three separate calls would; in eval
// mode (running statistics) the result is identical to three separate calls.
//
// Frozen stages (config.frozen_stages = N): backbone stages [0, N) run without gradients and always in
// eval mode; the rest trains. frozen_features()/forward_from_frozen() split forward() there.
//
// Submodule names: "spatial_attention", "backbone" (torchvision names beneath, so a torchvision
// file maps with the prefix "backbone."), "attention" (mirror or self), "pool" (GeM: "pool.p"),
// "head" (Linear). Not thread-safe: one forward at a time per instance (build one net per thread).
#pragma once

#include <string>

#include <torch/torch.h>

#include "fundus/model/attention.h"
#include "fundus/model/backbone.h"
#include "fundus/model/model_config.h"
#include "fundus/model/pooling.h"
#include "fundus/model/state_dict.h"

namespace fundus {

struct ModelOutput {
  torch::Tensor descriptor;                // [B,D], unit L2 norm
  torch::Tensor pooled;                    // [B,D] the descriptor before L2 normalisation (what the head reads)
  torch::Tensor branch_h, branch_v;        // [B,C] pooled branch descriptors d_h, d_v (not normalised)
  torch::Tensor logits;                    // [B,classes], undefined without a head
  torch::Tensor attention_h, attention_v;  // [B,H',W'] with attention_maps and attention mirror/self
  // [B,C,H',W'] the backbone's output for the original view (not the mirrored ones), the very tensor
  // the attention block and pooling read: gradients of any output with respect to it can be taken
  // (Grad-CAM, retrieval/explain.h).
  torch::Tensor feature_map;
};

/// What forward_detailed() returns beyond the descriptor, branches and logits.
struct ForwardOptions {
  bool attention_maps = false;  // ModelOutput::attention_h / attention_v (attention mirror or self)
};

class RetrievalNetImpl : public torch::nn::Module {
 public:
  /// Builds the network (torchvision init for the backbone); with load_weights and a non-empty
  /// config.pretrained, loads it via load_pretrained() (throws when it does not fit).
  explicit RetrievalNetImpl(const ModelConfig& config, bool load_weights = true);

  /// The network's one forward pass (the diagram above), used for training, descriptors,
  /// explanations and Grad-CAM alike.
  ModelOutput forward_detailed(const torch::Tensor& x, const ForwardOptions& options);
  /// forward_detailed() with or without the attention maps.
  ModelOutput forward(const torch::Tensor& x, bool with_attention = false) {
    return forward_detailed(x, ForwardOptions{with_attention});
  }

  /// The first half of forward(): ImageNet normalisation, the views (mirror: [x; flip_W x; flip_H x],
  /// views-major: [3B,...]), input spatial attention and the frozen backbone stages (without
  /// gradients): [V*B, C, h, w], V = 3 for mirror attention, else 1. With no frozen stages this is
  /// the backbone's input. forward(x) == forward_from_frozen(frozen_features(x), B).
  torch::Tensor frozen_features(const torch::Tensor& x);
  /// The second half: the remaining backbone stages, attention, pooling, descriptor (and head) for
  /// frozen_features() of `batch` images (e.g. cached ones: train.feature_cache).
  ModelOutput forward_from_frozen(const torch::Tensor& features, int64_t batch, const ForwardOptions& options = {});

  /// Training mode for everything but the frozen backbone stages, which stay in eval mode
  /// (model_config.h frozen_stages).
  void train(bool on = true) override;
  /// Marks the frozen stages' parameters as not requiring gradients (again, after a caller changed
  /// requires_grad on the whole backbone).
  void freeze_stages();
  int64_t frozen_stages() const { return config_.frozen_stages; }
  /// Loads weights: a torchvision backbone file (keys without "backbone.": mapped into the backbone,
  /// its classifier/fc reported as unused, every backbone entry required, torchvision's legacy
  /// DenseNet names upgraded) or a full RetrievalNet state_dict (keys with "backbone.": every entry
  /// required). `spec` is a path or a weights name found in torch.hub's cache ("imagenet",
  /// "mobilenet_v2:IMAGENET1K_V2", ...; see resolve_pretrained in weights_hub.h). Throws on a mismatch.
  LoadReport load_pretrained(const std::string& spec);

  /// Stores conv weights and runs the network in channels-last (NHWC) memory format: inputs are
  /// converted in forward(). Numerically equivalent (float rounding aside); often faster with oneDNN
  /// on CPU (docs/bench-model.md). Call before creating an optimizer or after: parameters keep their
  /// identity. Saved state_dicts are contiguous NCHW either way.
  void use_channels_last(bool on = true);
  bool channels_last() const { return channels_last_; }

  int64_t descriptor_dim() const;
  int64_t feature_channels() const { return backbone->out_channels(); }
  const ModelConfig& config() const { return config_; }

  /// Architecture summary: parameters per part and in total, descriptor dim, feature map size at
  /// config.input_size (found by a no-grad eval forward of one zero image; the mode is restored).
  Json summary();

  Backbone backbone;
  SpatialAttention spatial_attention{nullptr};
  MirrorAttention mirror{nullptr};
  SelfAttention self_attention{nullptr};
  Pooling pool{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  ModelConfig config_;
  bool channels_last_ = false;
};
TORCH_MODULE(RetrievalNet);

/// A readable multi-line rendering of RetrievalNetImpl::summary().
std::string format_model_summary(const Json& summary);

}  // namespace fundus
