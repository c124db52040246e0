#include "fundus/model/batchnorm.h"

#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "fundus/core/error.h"
#include "fundus/model/sync_batchnorm.h"

namespace fundus {

namespace {

// The running-statistics interface shared by BatchNorm1d, BatchNorm2d and SyncBatchNorm2d.
struct BnLayer {
  torch::nn::Module* module = nullptr;
  torch::nn::BatchNormOptions* options_ = nullptr;
  std::function<void()> reset;

  torch::nn::BatchNormOptions& options() { return *options_; }
  void reset_running_stats() { reset(); }
};

std::vector<BnLayer> batchnorm_layers(torch::nn::Module& module) {
  std::vector<BnLayer> layers;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (auto* b = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get()))
      layers.push_back({b, &b->options, [b] { b->reset_running_stats(); }});
    if (auto* b = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get()))
      layers.push_back({b, &b->options, [b] { b->reset_running_stats(); }});
    if (auto* b = dynamic_cast<SyncBatchNorm2dImpl*>(m.get()))
      layers.push_back({b, &b->options, [b] { b->reset_running_stats(); }});
  }
  return layers;
}

}  // namespace

int64_t count_batchnorm_layers(torch::nn::Module& module) { return int64_t(batchnorm_layers(module).size()); }

BatchNormRecalibration recalibrate_batchnorm(RetrievalNetImpl& net, const std::function<torch::Tensor()>& next_batch) {
  BatchNormRecalibration r;
  torch::Tensor x = next_batch();  // before touching any statistics: no data must change nothing
  net.train();                     // frozen backbone stages stay in eval mode: their (pretrained) statistics are kept
  std::vector<BnLayer> layers;
  for (auto& l : batchnorm_layers(net))
    if (l.module->is_training()) layers.push_back(l);
  r.layers = int64_t(layers.size());
  if (!x.defined()) net.eval();
  FUNDUS_CHECK(x.defined() || r.layers == 0, "BatchNorm recalibration: no images to recompute the statistics from");
  // c10::optional in 1.13, std::optional in 2.x. Assign a default-constructed one: `momentum() = {}`
  // compiles with both but makes c10's optional hold 0.0 (statistics frozen), not "none".
  using Momentum = std::decay_t<decltype(std::declval<torch::nn::BatchNormOptions&>().momentum())>;
  std::vector<Momentum> momenta;
  for (auto& l : layers) {
    if (!l.options().track_running_stats()) continue;
    momenta.push_back(l.options().momentum());
    l.options().momentum() = Momentum();  // none: cumulative average over the batches of this pass
    l.reset_running_stats();
  }
  {
    torch::NoGradGuard no_grad;
    for (; x.defined(); x = next_batch()) {
      if (x.size(0) == 0) continue;
      net.forward(x);
      ++r.batches;
      r.images += x.size(0);
    }
  }
  size_t i = 0;
  for (auto& l : layers)
    if (l.options().track_running_stats()) l.options().momentum() = momenta[i++];
  net.eval();
  return r;
}

}  // namespace fundus
