#include "fundus/retrieval/embed_store.h"

#include <chrono>
#include <set>

#include "fundus/core/error.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/loader.h"
#include "fundus/index/store_index.h"
#include "fundus/retrieval/gallery_health.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/train/embed.h"

namespace fundus {

int64_t register_model(CaseStore& store, const ModelRunner& model) {
  return store.register_model(model.display_name(), model.config().to_json().dump(), model.checkpoint_sha256(),
                              model.preprocess().to_json().dump(), model.descriptor_dim());
}

std::string default_index_path(const std::string& store_path, int64_t model_id) {
  return store_path + ".model" + std::to_string(model_id) + ".index";
}

Json EmbedStoreResult::to_json() const {
  return Json{{"model_id", model_id},       {"embedded", embedded},
              {"already", already},         {"remaining", remaining},
              {"seconds", seconds},         {"images_per_second", images_per_second},
              {"index_path", index_path},   {"index", index_spec},
              {"index_size", index_size},   {"index_rebuilt", index_rebuilt},
              {"health", health.to_json()}};
}

std::string EmbedStoreResult::summary() const {
  std::string s = strprintf("model %lld: embedded %lld cases in %.1f s (%.1f img/s), %lld already had vectors",
                            static_cast<long long>(model_id), static_cast<long long>(embedded), seconds,
                            images_per_second, static_cast<long long>(already));
  if (remaining > 0) s += strprintf(", %lld still to do (run again)", static_cast<long long>(remaining));
  if (!index_path.empty())
    s += strprintf("; index %s with %lld vectors %s %s", index_spec.c_str(), static_cast<long long>(index_size),
                   index_rebuilt ? "rebuilt ->" : "up to date:", index_path.c_str());
  s += "; descriptors " + health.summary();
  if (health.flagged()) s += ". WARNING: " + health.advice();
  return s;
}

EmbedStoreResult embed_store(CaseStore& store, ModelRunner& model, const EmbedStoreOptions& o) {
  FUNDUS_CHECK(o.batch_size >= 1, "embed: batch size must be >= 1, got " << o.batch_size);
  FUNDUS_CHECK(o.commit_every >= 1, "embed: commit_every must be >= 1, got " << o.commit_every);
  FUNDUS_CHECK(o.limit >= 0, "embed: limit must be >= 0, got " << o.limit);
  EmbedStoreResult r;
  r.model_id = register_model(store, model);

  std::set<std::string> splits;
  for (const std::string& s : split(o.splits, ','))
    if (!trim(s).empty()) splits.insert(trim(s));
  const int64_t selected = int64_t(store.list_cases(o.splits).size());
  Dataset todo;
  todo.source = store.path();
  std::vector<int64_t> case_ids;
  for (const StoredCase& c : store.cases_without_embedding(r.model_id)) {
    if (!splits.empty() && !splits.count(c.split)) continue;
    todo.records.push_back(c.to_record());
    case_ids.push_back(c.id);
  }
  r.already = selected - int64_t(todo.size());
  if (o.limit > 0 && int64_t(todo.size()) > o.limit) {
    todo.records.resize(size_t(o.limit));
    case_ids.resize(size_t(o.limit));
  }

  const auto start = std::chrono::steady_clock::now();
  if (!todo.records.empty()) {
    LoaderOptions base;
    base.preprocess = model.preprocess();
    base.normalization = Normalization::none();  // the network normalises its [0,1] input itself
    base.workers = o.workers;
    base.cache_dir = o.cache_dir;
    DataLoader loader(todo, eval_loader_options(base, o.batch_size));
    loader.start_epoch(0);
    std::unique_ptr<Progress> progress;
    if (o.progress) progress = std::make_unique<Progress>("embed", int64_t(todo.size()), "img");
    const int dim = model.descriptor_dim();
    std::vector<int64_t> pending_ids;
    std::vector<float> pending;
    auto commit = [&] {
      if (pending_ids.empty()) return;
      store.put_embeddings(r.model_id, pending_ids, pending.data(), dim);
      r.embedded += int64_t(pending_ids.size());
      pending_ids.clear();
      pending.clear();
    };
    while (auto batch = loader.next()) {
      torch::Tensor d = embed_batch(model.net(), batch->images);
      const float* p = d.data_ptr<float>();
      for (size_t i = 0; i < batch->indices.size(); ++i) pending_ids.push_back(case_ids[size_t(batch->indices[i])]);
      pending.insert(pending.end(), p, p + d.numel());
      if (int64_t(pending_ids.size()) >= o.commit_every) commit();
      if (progress) progress->advance(int64_t(batch->indices.size()));
    }
    commit();
    if (progress) progress->finish();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.images_per_second = r.seconds > 0 ? double(r.embedded) / r.seconds : 0;
  r.remaining = selected - r.already - r.embedded;
  GalleryHealthOptions gho;
  gho.threads = o.threads;
  r.health = gallery_health(store, r.model_id, gho);  // recorded in the store for the engine

  if (o.build_index) {
    r.index_path = o.index_path.empty() ? default_index_path(store.path(), r.model_id) : o.index_path;
    IndexLoadReport report;
    auto index = load_or_rebuild_index(store, r.model_id, r.index_path, o.index_spec, &report, o.threads);
    r.index_spec = index->describe();
    r.index_size = index->size();
    r.index_rebuilt = report.rebuilt;
  }
  return r;
}

}  // namespace fundus
