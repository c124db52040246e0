#include "fundus/train/feature_cache.h"

#include "fundus/core/error.h"
#include "fundus/core/progress.h"
#include "fundus/model/device.h"

namespace fundus {

FeatureCache::FeatureCache(RetrievalNetImpl& net, const Dataset& dataset, const LoaderOptions& loading, int copies,
                           bool progress) {
  FUNDUS_CHECK(copies >= 1, "train.feature_cache: " << copies << " copies; must be >= 1");
  FUNDUS_CHECK(net.frozen_stages() > 0, "train.feature_cache needs model.frozen_stages > 0 (nothing to cache)");
  const int64_t n = int64_t(dataset.size());
  FUNDUS_CHECK(n > 0, "feature cache: no images");
  LoaderOptions o = loading;
  o.sampler = SamplerOptions{};
  o.sampler.kind = SamplerKind::sequential;
  o.sampler.batch_size = 32;
  o.sampler.drop_last = false;
  o.shard_index = 0;  // every row, also on a rank of a distributed run
  o.shard_count = 1;
  DataLoader loader(dataset, o);
  const torch::Device device = module_device(net);
  std::unique_ptr<Progress> bar;
  if (progress) bar = std::make_unique<Progress>("feature cache", n * copies, "img");
  for (int m = 0; m < copies; ++m) {
    torch::Tensor all;
    loader.start_epoch(m);
    while (auto b = loader.next()) {
      torch::Tensor f;
      {
        c10::InferenceMode guard;
        f = net.frozen_features(b->images.to(device)).to(torch::kCPU);
      }
      const int64_t batch = b->images.size(0);
      views_ = f.size(0) / batch;
      // [views*B, C, h, w] -> [B, views, C, h, w]
      f = f.contiguous().view({views_, batch, f.size(1), f.size(2), f.size(3)}).transpose(0, 1);
      if (!all.defined()) all = torch::empty({n, views_, f.size(2), f.size(3), f.size(4)}, torch::kFloat32);
      all.index_copy_(0, torch::tensor(b->indices, torch::kInt64), f.to(torch::kFloat32));
      if (bar) bar->advance(batch);
    }
    copies_.push_back(all);
  }
  if (bar) bar->finish();
}

torch::Tensor FeatureCache::batch(const std::vector<int64_t>& indices, int copy, bool channels_last) const {
  FUNDUS_CHECK(copy >= 0 && copy < copies(), "feature cache: copy " << copy << " outside 0.." << copies() - 1);
  const torch::Tensor& all = copies_[size_t(copy)];
  torch::Tensor f = all.index_select(0, torch::tensor(indices, torch::kInt64));  // [B, views, C, h, w]
  const int64_t b = f.size(0);
  f = f.transpose(0, 1).reshape({views_ * b, f.size(2), f.size(3), f.size(4)});
  return channels_last ? f.contiguous(torch::MemoryFormat::ChannelsLast) : f.contiguous();
}

int64_t FeatureCache::bytes() const {
  int64_t total = 0;
  for (const auto& c : copies_) total += c.numel() * int64_t(sizeof(float));
  return total;
}

}  // namespace fundus
