#include "fundus/retrieval/embed_store.h"

#include <chrono>
#include <optional>
#include <set>

#include "fundus/core/error.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/sampler.h"
#include "fundus/infer/communicator.h"
#include "fundus/infer/embed.h"
#include "fundus/infer/loader.h"
#include "fundus/model/device.h"
#include "fundus/retrieval/gallery_health.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/store_index.h"

namespace fundus {

int64_t register_model(CaseStore& store, const ModelRunner& model) {
  return store.register_model(model.display_name(), model.config().to_json().dump(), model.checkpoint_sha256(),
                              model.preprocess().to_json().dump(), model.descriptor_dim());
}

std::string default_index_path(const std::string& store_path, int64_t model_id) {
  return store_path + ".model" + std::to_string(model_id) + ".index";
}

Json EmbedStoreResult::to_json() const {
  return Json{{"model_id", model_id},           {"embedded", embedded},      {"already", already},
              {"remaining", remaining},         {"seconds", seconds},        {"images_per_second", images_per_second},
              {"index_path", index_path},       {"index", index_spec},       {"index_size", index_size},
              {"index_rebuilt", index_rebuilt}, {"health", health.to_json()}};
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

namespace {

void check_options(const EmbedStoreOptions& o) {
  FUNDUS_CHECK(o.batch_size >= 1, "embed: batch size must be >= 1, got " << o.batch_size);
  FUNDUS_CHECK(o.commit_every >= 1, "embed: commit_every must be >= 1, got " << o.commit_every);
  FUNDUS_CHECK(o.limit >= 0, "embed: limit must be >= 0, got " << o.limit);
}

// The selected cases that have no vector for the model yet (at most o.limit of them).
struct Todo {
  Dataset cases;
  std::vector<int64_t> case_ids;  // store id of each record
  int64_t selected = 0;           // cases of the selected splits, with or without a vector
};

Todo select_todo(CaseStore& store, int64_t model_id, const EmbedStoreOptions& o) {
  std::set<std::string> splits;
  for (const std::string& s : split(o.splits, ','))
    if (!trim(s).empty()) splits.insert(trim(s));
  Todo t;
  t.selected = int64_t(store.list_cases(o.splits).size());
  t.cases.source = store.path();
  for (const StoredCase& c : store.cases_without_embedding(model_id)) {
    if (!splits.empty() && !splits.count(c.split)) continue;
    t.cases.records.push_back(c.to_record());
    t.case_ids.push_back(c.id);
  }
  return t;
}

LoaderOptions embed_loader_options(const ModelRunner& model, const EmbedStoreOptions& o) {
  LoaderOptions base;
  base.preprocess = model.preprocess();
  base.normalization = Normalization::none();  // the network normalises its [0,1] input itself
  base.workers = o.workers;
  base.cache_dir = o.cache_dir;
  return eval_loader_options(base, o.batch_size);
}

// Vectors written in transactions of at least commit_every rows.
class Committer {
 public:
  Committer(CaseStore& store, int64_t model_id, int dim, int64_t every)
      : store_(store), model_id_(model_id), dim_(dim), every_(every) {}
  void add(int64_t case_id, const float* vector) {
    ids_.push_back(case_id);
    data_.insert(data_.end(), vector, vector + dim_);
    if (int64_t(ids_.size()) >= every_) commit();
  }
  void commit() {
    if (ids_.empty()) return;
    store_.put_embeddings(model_id_, ids_, data_.data(), dim_);
    written += int64_t(ids_.size());
    ids_.clear();
    data_.clear();
  }
  int64_t written = 0;

 private:
  CaseStore& store_;
  int64_t model_id_;
  int dim_;
  int64_t every_;
  std::vector<int64_t> ids_;
  std::vector<float> data_;
};

void finish(CaseStore& store, const EmbedStoreOptions& o, std::chrono::steady_clock::time_point start, int64_t selected,
            EmbedStoreResult& r) {
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
}

}  // namespace

EmbedStoreResult embed_store(CaseStore& store, ModelRunner& model, const EmbedStoreOptions& o) {
  check_options(o);
  const torch::Device device = module_device(model.net());
  const Precision precision = parse_precision(o.precision);
  check_precision(precision, device, /*training=*/false);
  EmbedStoreResult r;
  r.model_id = register_model(store, model);
  Todo todo = select_todo(store, r.model_id, o);
  r.already = todo.selected - int64_t(todo.cases.size());
  if (o.limit > 0 && int64_t(todo.cases.size()) > o.limit) {
    todo.cases.records.resize(size_t(o.limit));
    todo.case_ids.resize(size_t(o.limit));
  }

  const auto start = std::chrono::steady_clock::now();
  if (!todo.cases.records.empty()) {
    DataLoader loader(todo.cases, embed_loader_options(model, o));
    loader.start_epoch(0);
    std::unique_ptr<Progress> progress;
    if (o.progress) progress = std::make_unique<Progress>("embed", int64_t(todo.cases.size()), "img");
    const int dim = model.descriptor_dim();
    Committer committer(store, r.model_id, dim, o.commit_every);
    while (auto batch = loader.next()) {
      torch::Tensor d;
      {
        AutocastGuard autocast(precision, device);
        d = embed_batch(model.net(), batch->images);
      }
      for (size_t i = 0; i < batch->indices.size(); ++i)
        committer.add(todo.case_ids[size_t(batch->indices[i])], d.data_ptr<float>() + int64_t(i) * dim);
      if (progress) progress->advance(int64_t(batch->indices.size()));
    }
    committer.commit();
    r.embedded = committer.written;
    if (progress) progress->finish();
  }
  finish(store, o, start, todo.selected, r);
  return r;
}

EmbedStoreResult embed_store_distributed(const std::string& store_path, ModelRunner& model,
                                         const DistributedOptions& world, const EmbedStoreOptions& o) {
  check_options(o);
  const torch::Device device = module_device(model.net());
  const Precision precision = parse_precision(o.precision);
  check_precision(precision, device, /*training=*/false);
  // What shapes the result must agree on every rank (the store path is rank 0's alone).
  const std::string agreement = "model_sha256=" + model.checkpoint_sha256() +
                                "\nbatch_size=" + std::to_string(o.batch_size) + "\nprecision=" + o.precision + "\n";
  Communicator comm(world, device, agreement);
  QuietUnlessMain quiet(comm.is_main());
  EmbedStoreResult r;
  std::unique_ptr<CaseStore> store;
  Todo todo;
  // Rank 0 opens the store and decides what to embed; the others learn it from rank 0.
  Json list = Json::array();
  if (comm.is_main()) {
    StoreOptions so;
    so.create = false;
    store = std::make_unique<CaseStore>(store_path, so);
    r.model_id = register_model(*store, model);
    todo = select_todo(*store, r.model_id, o);
    r.already = todo.selected - int64_t(todo.cases.size());
    const size_t n = o.limit > 0 ? std::min<size_t>(size_t(o.limit), todo.cases.size()) : todo.cases.size();
    for (size_t i = 0; i < n; ++i)
      list.push_back({todo.case_ids[i], todo.cases.records[i].id, todo.cases.records[i].image_path});
  }
  list = Json::parse(comm.broadcast_bytes(list.dump()));
  const int64_t total = int64_t(list.size());
  auto [first, last] = shard_range(total, comm.rank(), comm.world_size());
  Dataset mine;
  mine.source = store_path;
  std::vector<int64_t> my_ids;
  for (int64_t i = first; i < last; ++i) {
    CaseRecord c;
    c.id = list[size_t(i)][1].get<std::string>();
    c.image_path = list[size_t(i)][2].get<std::string>();
    mine.records.push_back(c);
    my_ids.push_back(list[size_t(i)][0].get<int64_t>());
  }

  const auto start = std::chrono::steady_clock::now();
  const int dim = model.descriptor_dim();
  // Rounds of one batch per rank (every rank runs the same number: ceil of the largest share);
  // rank 0 receives every round's vectors with their store ids and writes them.
  const int64_t largest = shard_range(total, 0, comm.world_size()).second;
  const int64_t rounds = (largest + o.batch_size - 1) / o.batch_size;
  std::unique_ptr<DataLoader> loader;
  if (!mine.records.empty()) {
    loader = std::make_unique<DataLoader>(mine, embed_loader_options(model, o));
    loader->start_epoch(0);
  }
  std::unique_ptr<Committer> committer;
  std::unique_ptr<Progress> progress;
  if (comm.is_main()) {
    committer = std::make_unique<Committer>(*store, r.model_id, dim, o.commit_every);
    if (o.progress && total > 0) progress = std::make_unique<Progress>("embed", total, "img");
  }
  for (int64_t round = 0; round < rounds; ++round) {
    torch::Tensor rows = torch::zeros({0, 1 + dim}, torch::kFloat64);  // [store id, vector...]
    if (std::optional<Batch> batch = loader ? loader->next() : std::optional<Batch>()) {
      torch::Tensor d;
      {
        AutocastGuard autocast(precision, device);
        d = embed_batch(model.net(), batch->images);
      }
      std::vector<int64_t> ids;
      for (int64_t i : batch->indices) ids.push_back(my_ids[size_t(i)]);
      rows = torch::cat({torch::tensor(ids, torch::kInt64).to(torch::kFloat64).unsqueeze(1), d.to(torch::kFloat64)}, 1);
      r.embedded += int64_t(ids.size());
    }
    torch::Tensor all = comm.all_gather_rows(rows.to(comm.device())).to(torch::kCPU).contiguous();
    if (!committer) continue;
    std::vector<float> values(static_cast<size_t>(dim));
    for (int64_t i = 0; i < all.size(0); ++i) {
      const double* p = all[i].data_ptr<double>();
      for (int k = 0; k < dim; ++k) values[size_t(k)] = float(p[1 + k]);  // exact: floats travelled as doubles
      committer->add(int64_t(p[0]), values.data());
    }
    if (progress) progress->advance(all.size(0));
  }
  if (!committer) {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.images_per_second = r.seconds > 0 ? double(r.embedded) / r.seconds : 0;
    return r;  // this rank's share; rank 0 holds the run's result
  }
  committer->commit();
  r.embedded = committer->written;
  if (progress) progress->finish();
  finish(*store, o, start, todo.selected, r);
  return r;
}

}  // namespace fundus
