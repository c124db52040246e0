#include "fundus/infer/embed.h"

#include <cstring>

#include "fundus/core/hash.h"
#include "fundus/core/progress.h"
#include "fundus/data/sampler.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/loader.h"
#include "fundus/model/device.h"

namespace fundus {

TrainedModel load_trained_model(const std::string& path) {
  Checkpoint ckpt = load_checkpoint(path);
  TrainedModel m;
  m.config = RunConfig::from_json(ckpt.meta["config"], path + ": config");
  m.net = RetrievalNet(m.config.model, /*load_weights=*/false);
  LoadOptions options;  // strict: every entry must fit
  try {
    load_into(*m.net, ckpt.model, options);
  } catch (const Error& e) {
    FUNDUS_THROW(path << ": checkpoint weights do not fit its own model config: " << e.message());
  }
  if (m.config.train.channels_last) m.net->use_channels_last(true);
  m.net->eval();
  m.checkpoint_path = path;
  m.checkpoint_sha256 = sha256_file(path);
  m.meta = std::move(ckpt.meta);
  return m;
}

torch::Tensor embed_batch(RetrievalNetImpl& net, const torch::Tensor& images) {
  c10::InferenceMode guard;
  return net.forward(images.to(module_device(net), /*non_blocking=*/true))
      .descriptor.to(torch::kCPU, torch::kFloat32)
      .contiguous();
}

Embeddings embed_dataset(RetrievalNetImpl& net, const PreprocessOptions& preprocess, const Dataset& dataset,
                         const EmbedOptions& options) {
  FUNDUS_CHECK(net.is_training() == false, "embed_dataset: the model must be in eval mode");
  Embeddings out;
  out.rows = int64_t(dataset.size());
  out.dim = net.descriptor_dim();
  out.data.assign(size_t(out.rows * out.dim), 0.f);
  if (out.rows == 0) return out;
  LoaderOptions base;
  base.preprocess = preprocess;
  base.normalization = Normalization::none();  // the network normalises its [0,1] input itself
  base.workers = options.workers;
  base.cache_dir = options.cache_dir;
  DataLoader loader(dataset, eval_loader_options(base, options.batch_size));
  loader.start_epoch(0);
  std::unique_ptr<Progress> progress;
  if (options.progress) progress = std::make_unique<Progress>(options.label, out.rows, "img");
  while (auto batch = loader.next()) {
    torch::Tensor d = embed_batch(net, batch->images);
    for (size_t i = 0; i < batch->indices.size(); ++i)
      std::memcpy(out.data.data() + batch->indices[i] * out.dim, d[int64_t(i)].data_ptr<float>(),
                  size_t(out.dim) * sizeof(float));
    if (progress) progress->advance(int64_t(batch->indices.size()));
  }
  if (progress) progress->finish();
  return out;
}

Embeddings embed_dataset_sharded(Communicator& comm, RetrievalNetImpl& net, const PreprocessOptions& preprocess,
                                 const Dataset& dataset, const EmbedOptions& options) {
  if (comm.world_size() == 1) return embed_dataset(net, preprocess, dataset, options);
  auto [first, last] = shard_range(int64_t(dataset.size()), comm.rank(), comm.world_size());
  Dataset part;
  part.source = dataset.source;
  part.records.assign(dataset.records.begin() + first, dataset.records.begin() + last);
  Embeddings mine = embed_dataset(net, preprocess, part, options);
  torch::Tensor local = torch::from_blob(mine.data.data(), {mine.rows, net.descriptor_dim()}, torch::kFloat32);
  torch::Tensor all = comm.all_gather_rows(local.to(comm.device())).to(torch::kCPU).contiguous();
  Embeddings out;
  out.rows = all.size(0);
  out.dim = net.descriptor_dim();
  out.data.assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  FUNDUS_CHECK(out.rows == int64_t(dataset.size()),
               "embed_dataset_sharded: gathered " << out.rows << " rows for " << dataset.size() << " records");
  return out;
}

}  // namespace fundus
