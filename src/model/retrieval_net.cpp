#include "fundus/model/retrieval_net.h"

#include <sstream>

#include "fundus/core/error.h"
#include "fundus/core/imagenet.h"
#include "fundus/core/strings.h"
#include "fundus/model/weights_hub.h"

namespace fundus {

RetrievalNetImpl::RetrievalNetImpl(const ModelConfig& config, bool load_weights) : config_(config) {
  config_.validate();
  if (config_.spatial_attention) spatial_attention = register_module("spatial_attention", SpatialAttention());
  backbone = register_module("backbone", make_backbone(config_.backbone));
  const int64_t c = backbone->out_channels();
  if (config_.attention == AttentionKind::mirror)
    mirror = register_module("attention", MirrorAttention(c, config_.reduction, config_.aggregation));
  else if (config_.attention == AttentionKind::self)
    self_attention = register_module("attention", SelfAttention(c, config_.reduction));
  pool = register_module("pool", Pooling(config_.pooling, config_.gem_p));
  if (config_.head_classes > 0)
    head = register_module("head", torch::nn::Linear(descriptor_dim(), config_.head_classes));
  if (load_weights && !config_.pretrained.empty()) load_pretrained(config_.pretrained);
  FUNDUS_CHECK(config_.frozen_stages < backbone->num_stages(),
               "model.frozen_stages: " << config_.frozen_stages << " would freeze all " << backbone->num_stages()
                                       << " stages of " << backbone_name(config_.backbone) << " (at most "
                                       << backbone->num_stages() - 1 << ")");
  freeze_stages();
}

void RetrievalNetImpl::freeze_stages() {
  for (auto& m : backbone->stage_modules(0, config_.frozen_stages))
    for (auto& p : m->parameters()) p.set_requires_grad(false);
}

void RetrievalNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (on && backbone)
    for (auto& m : backbone->stage_modules(0, config_.frozen_stages)) m->eval();
}

int64_t RetrievalNetImpl::descriptor_dim() const {
  const int64_t c = backbone->out_channels();
  return config_.attention == AttentionKind::mirror && config_.combine == Combine::concat ? 2 * c : c;
}

void RetrievalNetImpl::use_channels_last(bool on) {
  auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  torch::NoGradGuard no_grad;
  for (auto& p : parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  channels_last_ = on;
}

ModelOutput RetrievalNetImpl::forward_detailed(const torch::Tensor& input, const ForwardOptions& options) {
  return forward_from_frozen(frozen_features(input), input.size(0), options);
}

torch::Tensor RetrievalNetImpl::frozen_features(const torch::Tensor& input) {
  FUNDUS_CHECK(input.dim() == 4 && input.size(1) == 3 && input.size(2) >= 32 && input.size(3) >= 32,
               "model input must be [B,3,H,W] with H,W >= 32, got " << input.sizes());
  FUNDUS_CHECK(input.is_floating_point(), "model input must be a float tensor, got " << input.scalar_type());
  torch::Tensor x = channels_last_ ? input.contiguous(torch::MemoryFormat::ChannelsLast) : input;
  if (config_.imagenet_normalize) {
    auto opts = x.options();
    x = (x - torch::tensor(at::ArrayRef<double>(kImageNetMean.data(), 3), opts).view({1, 3, 1, 1})) /
        torch::tensor(at::ArrayRef<double>(kImageNetStd.data(), 3), opts).view({1, 3, 1, 1});
  }
  if (mirror) x = torch::cat({x, x.flip({3}), x.flip({2})}, 0);
  if (spatial_attention) x = spatial_attention(x);
  if (config_.frozen_stages > 0) {
    torch::NoGradGuard no_grad;
    x = backbone->forward_stages(x, 0, config_.frozen_stages);
  }
  return x;
}

ModelOutput RetrievalNetImpl::forward_from_frozen(const torch::Tensor& features, int64_t b,
                                                  const ForwardOptions& options) {
  const int64_t views = mirror ? 3 : 1;
  FUNDUS_CHECK(features.dim() == 4 && features.size(0) == views * b, "forward_from_frozen: expected ["
                                                                         << views * b << ",C,h,w] features of " << b
                                                                         << " images, got " << features.sizes());
  torch::Tensor f = backbone->forward_stages(features, config_.frozen_stages, backbone->num_stages());
  ModelOutput out;
  out.feature_map = mirror ? f.narrow(0, 0, b) : f;
  torch::Tensor d_h, d_v;
  if (mirror) {
    auto m = mirror(out.feature_map, f.narrow(0, b, b), f.narrow(0, 2 * b, b), options.attention_maps);
    d_h = pool(m.y_h);
    d_v = pool(m.y_v);
    out.attention_h = m.attention_h;
    out.attention_v = m.attention_v;
    out.pooled = config_.combine == Combine::concat ? torch::cat({d_h, d_v}, 1) : d_h + d_v;
  } else {
    torch::Tensor y = out.feature_map;
    if (self_attention) {
      auto s = self_attention(y, options.attention_maps);
      y = s.y;
      out.attention_h = out.attention_v = s.attention;
    }
    d_h = d_v = pool(y);
    out.pooled = d_h;
  }
  out.branch_h = d_h;
  out.branch_v = d_v;
  // The grade head sees the pooled descriptor before L2 normalisation: on unit vectors a linear
  // head's logits stay within +-|W|, and from random initialisation its cross-entropy sat at ln 5
  // for dozens of steps (measured on the demo's synthetic set).
  if (head) out.logits = head(out.pooled);
  out.descriptor =
      torch::nn::functional::normalize(out.pooled, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
  return out;
}

LoadReport RetrievalNetImpl::load_pretrained(const std::string& spec) {
  const std::string path = resolve_pretrained(spec, backbone_name(config_.backbone));
  StateDict state = read_state_dict(path);
  LoadOptions options;
  bool full = false;
  for (const auto& item : state)
    if (starts_with(item.key(), "backbone.")) full = true;
  if (!full) {
    state = upgrade_torchvision_state_dict(state);
    options.add_prefix = "backbone.";
    options.allow_missing_prefixes = {"spatial_attention.", "attention.", "pool.", "head."};
    options.ignore_unexpected_prefixes = torchvision_head_prefixes();
  }
  try {
    return load_into(*this, state, options);
  } catch (const Error& e) {
    FUNDUS_THROW(path << ": cannot load into the " << backbone_name(config_.backbone) << " model: " << e.message());
  }
}

Json RetrievalNetImpl::summary() {
  auto count = [](const std::shared_ptr<torch::nn::Module>& m) {
    int64_t n = 0;
    if (m)
      for (const auto& p : m->parameters()) n += p.numel();
    return n;
  };
  Json parts = Json::object();
  int64_t total = 0;
  for (const auto& child : named_children()) {
    int64_t n = count(child.value());
    parts[child.key()] = n;
    total += n;
  }
  int64_t trainable = 0;
  for (const auto& p : parameters())
    if (p.requires_grad()) trainable += p.numel();
  bool was_training = is_training();
  eval();
  torch::Tensor f;
  {
    torch::NoGradGuard no_grad;
    auto p = parameters().front();
    f = backbone->forward(torch::zeros({1, 3, config_.input_size, config_.input_size}, p.options()));
  }
  train(was_training);
  return Json{{"config", config_.to_json()},
              {"parameters", parts},
              {"parameters_total", total},
              {"parameters_trainable", trainable},
              {"feature_channels", feature_channels()},
              {"feature_map", {f.size(2), f.size(3)}},
              {"descriptor_dim", descriptor_dim()}};
}

std::string format_model_summary(const Json& s) {
  const Json& c = s.at("config");
  std::ostringstream os;
  std::string attention = c.at("attention").get<std::string>();
  if (attention == "mirror")
    attention += " attention (" + c.at("aggregation").get<std::string>() + ", reduction " +
                 std::to_string(c.at("reduction").get<int>()) + ", branches " + c.at("combine").get<std::string>() +
                 ")";
  else
    attention += attention == "none"
                     ? " (no attention block)"
                     : " attention (non-local, reduction " + std::to_string(c.at("reduction").get<int>()) + ")";
  int size = c.at("input_size").get<int>();
  os << "backbone:      " << c.at("backbone").get<std::string>() << " ("
     << (c.at("pretrained").get<std::string>().empty() ? "no pretrained weights"
                                                       : c.at("pretrained").get<std::string>())
     << ")\n"
     << "input:         " << size << "x" << size << " RGB in [0,1]"
     << (c.at("imagenet_normalize").get<bool>() ? ", ImageNet-normalised inside the model" : "")
     << "; spatial attention " << (c.at("spatial_attention").get<bool>() ? "on" : "off") << "\n"
     << "attention:     " << attention << "\n"
     << "pooling:       " << c.at("pooling").get<std::string>()
     << (c.at("pooling") == "gem" ? strprintf(" (p init %g, learnable)", c.at("gem_p").get<double>()) : "") << "\n"
     << "feature map:   " << s.at("feature_channels").get<int64_t>() << " x " << s.at("feature_map")[0].get<int64_t>()
     << " x " << s.at("feature_map")[1].get<int64_t>() << "\n"
     << "descriptor:    " << s.at("descriptor_dim").get<int64_t>() << "-d, L2-normalised\n"
     << "head:          "
     << (c.at("head_classes").get<int>() > 0 ? std::to_string(c.at("head_classes").get<int>()) + " classes" : "none")
     << "\n"
     << "parameters:\n";
  for (const auto& [part, n] : s.at("parameters").items())
    os << strprintf("  %-20s %12lld\n", part.c_str(), static_cast<long long>(n.get<int64_t>()));
  os << strprintf("  %-20s %12lld\n", "total", static_cast<long long>(s.at("parameters_total").get<int64_t>()));
  return os.str();
}

}  // namespace fundus
