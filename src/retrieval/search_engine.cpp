#include "fundus/retrieval/search_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/eval/metrics.h"
#include "fundus/index/case_filter.h"
#include "fundus/index/rw_lock.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/gallery_health.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/store_index.h"
#include "fundus/store/case_store.h"
#include "fundus/store/store_report.h"

namespace fundus {

namespace {

constexpr int kMaxQueryK = 1000;

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

const char* extension_for(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg:
      return ".jpg";
    case ImageFormat::png:
      return ".png";
    case ImageFormat::tiff:
      return ".tif";
    case ImageFormat::bmp:
      return ".bmp";
    default:
      return ".img";
  }
}

}  // namespace

// Every case shown to a caller passes here: a stored row that breaks an invariant the answer relies
// on (the grade indexes the vote, meta is copied and printed recursively) is the store's fault.
CaseInfo case_info(const StoredCase& c, const std::string& store_path) {
  if (c.grade < 0 || c.grade >= kNumGrades) {
    std::string why = c.grade == -1 ? "grade is not an integer" : "grade " + std::to_string(c.grade) + " outside 0-4";
    throw StoreCorruptError(store_path, c.id, why, __FILE__, __LINE__);
  }
  std::string problem;
  std::optional<Json> meta = try_parse_json(c.meta, problem);
  if (!meta) throw StoreCorruptError(store_path, c.id, "meta: " + problem, __FILE__, __LINE__);
  CaseInfo i;
  i.id = c.id;
  i.external_id = c.external_id;
  i.image_path = c.image_path;
  i.grade = c.grade;
  i.patient = c.patient;
  i.eye = c.eye;
  i.split = c.split;
  i.meta = std::move(*meta);
  i.added_at = c.added_at;
  return i;
}

struct SearchEngine::Impl {
  struct Replica {
    std::unique_ptr<ModelRunner> model;
    std::mutex mu;
  };

  EngineOptions options;
  std::unique_ptr<CaseStore> store;
  std::vector<std::unique_ptr<Replica>> replicas;
  std::atomic<size_t> next_replica{0};
  int64_t model_id = 0;
  std::string index_path, image_dir;
  std::unique_ptr<VectorIndex> index;
  CaseAttributes attributes;  // grade and patient of every indexed case (filters), beside the index
  IndexLoadReport index_report;
  // Queries hold it shared while they read the index and the store; adds/removes hold it exclusively
  // around their store + index writes, so a query never sees one without the other.
  mutable WriterPriorityMutex state_mu;
  std::atomic<bool> index_dirty{false};
  DescriptorHealth gallery_health;  // measured at start-up (query_trust.h)

  // Runs f(model) on a free replica (or waits for one, round robin).
  template <typename F>
  auto with_model(F&& f) {
    const size_t n = replicas.size(), start = next_replica++ % n;
    for (size_t i = 0; i < n; ++i) {
      Replica& r = *replicas[(start + i) % n];
      std::unique_lock<std::mutex> lock(r.mu, std::try_to_lock);
      if (lock.owns_lock()) return f(*r.model);
    }
    Replica& r = *replicas[start];
    std::lock_guard<std::mutex> lock(r.mu);
    return f(*r.model);
  }

  const PreprocessOptions& preprocess() const { return replicas.front()->model->preprocess(); }

  // The image policy (image_io.h: structure, pixel cap from the header before decoding, corrupt
  // data), then preprocessing. A refused image throws ImageError (whose problem() callers map); any
  // other failure is still the caller's image: InputError.
  PreprocessResult decode_checked(std::string_view bytes, const std::string& source) const {
    ImageLimits limits;
    limits.max_pixels = options.max_image_pixels;
    try {
      return preprocess_fundus_bytes(bytes, source, preprocess(), limits);
    } catch (const ImageError&) {
      throw;
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      FUNDUS_THROW_INPUT(e.message());
    }
  }

  // Caller holds state_mu (shared). Filters are applied inside the index from the attributes kept
  // beside it: the store is read only for the k hits.
  std::vector<SearchHit> search(const std::vector<float>& q, const QueryOptions& o) const {
    std::vector<SearchHit> hits;
    if (index->size() == 0) return hits;
    std::unique_ptr<CaseFilter> filter;
    if (!o.exclude_patient.empty() || !o.grades.empty())
      filter = std::make_unique<CaseFilter>(attributes, o.grades, o.exclude_patient);
    SearchResult sr = index->search(1, q.data(), o.k, filter.get());
    for (int j = 0; j < sr.k && sr.ids[size_t(j)] >= 0; ++j)
      if (auto c = store->get_case(sr.ids[size_t(j)]))
        hits.push_back({case_info(*c, store->path()), sr.scores[size_t(j)], 0});
    return hits;
  }

  // What the filters need of every indexed case, from the store once at start-up.
  void load_attributes() {
    for (const CaseGradePatient& c : store->grades_and_patients())
      if (index->contains(c.id)) attributes.set(c.id, c.grade, c.patient);
  }

  void save_index_locked() {
    index->save(index_path, store_provenance(*store, model_id));
    index_dirty = false;
  }
};

SearchEngine::SearchEngine(const EngineOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& e = *impl_;
  e.options = options;
  FUNDUS_CHECK(!options.store_path.empty(), "search engine: no store path");
  FUNDUS_CHECK(!options.checkpoint_path.empty(), "search engine: no model checkpoint");
  FUNDUS_CHECK(options.inference_replicas >= 1 && options.inference_replicas <= 64,
               "search engine: inference_replicas must be in 1..64, got " << options.inference_replicas);
  FUNDUS_CHECK(options.max_image_pixels > 0, "search engine: max_image_pixels must be > 0");
  set_compute_threads(options.threads);
  StoreOptions so;
  so.create = options.create_store && !options.read_only;
  so.read_only = options.read_only;
  e.store = std::make_unique<CaseStore>(options.store_path, so);
  auto first = std::make_unique<Impl::Replica>();
  first->model = std::make_unique<ModelRunner>(options.checkpoint_path, options.device);
  e.replicas.push_back(std::move(first));
  for (int i = 1; i < options.inference_replicas; ++i) {
    auto r = std::make_unique<Impl::Replica>();
    r->model = e.replicas.front()->model->clone();
    e.replicas.push_back(std::move(r));
  }
  ModelRunner& model = *e.replicas.front()->model;
  if (options.embed_missing && !options.read_only) {
    e.model_id = register_model(*e.store, model);
    EmbedStoreOptions eo;
    eo.cache_dir = options.cache_dir;
    eo.progress = options.progress;
    eo.build_index = false;
    EmbedStoreResult r = embed_store(*e.store, model, eo);
    if (r.embedded > 0) FUNDUS_INFO(r.summary());
  } else {
    // Embedding a whole store is long and writes to it: never a side effect of reading.
    std::optional<int64_t> id = e.store->find_model(model.checkpoint_sha256(), model.preprocess().to_json().dump());
    const int64_t vectors = id ? int64_t(e.store->embedding_ids(*id).size()) : 0;
    const int64_t cases = e.store->stats().cases;
    FUNDUS_CHECK(vectors > 0 || cases == 0,
                 options.store_path << ": model '" << model.display_name() << "' (" << options.checkpoint_path
                                    << ") has no vectors in this store (" << cases << " cases); embed them first with "
                                    << "`fundus embed --model " << options.checkpoint_path << " --store "
                                    << options.store_path << "` (or let `fundus query --embed-missing` do it)");
    FUNDUS_CHECK(id, options.store_path << ": the store has no cases and model '" << model.display_name()
                                        << "' is not registered in it; add cases with `fundus store add` first");
    e.model_id = *id;
    if (vectors < cases)
      FUNDUS_WARN(options.store_path << ": " << cases - vectors << " of " << cases << " cases have no vector for model "
                                     << e.model_id << " and are not searched; run `fundus embed --model "
                                     << options.checkpoint_path << " --store " << options.store_path << "`");
  }
  e.index_path = options.index_path.empty() ? default_index_path(options.store_path, e.model_id) : options.index_path;
  e.index =
      load_or_rebuild_index(*e.store, e.model_id, e.index_path, options.index_spec, &e.index_report, options.threads);
  e.load_attributes();
  std::string dir = parent_dir(options.store_path);
  e.image_dir = options.image_dir.empty() ? join_path(dir.empty() ? "." : dir, "images") : options.image_dir;
  GalleryHealthOptions gho;
  gho.threads = options.threads;
  gho.record = !options.read_only;
  e.gallery_health = gallery_health(*e.store, e.model_id, gho);
  if (e.gallery_health.flagged())
    FUNDUS_WARN("model " << e.model_id << ": gallery " << e.gallery_health.summary() << "; "
                         << e.gallery_health.advice());
}

SearchEngine::~SearchEngine() {
  if (!impl_ || !impl_->index_dirty) return;
  try {
    std::unique_lock<WriterPriorityMutex> lock(impl_->state_mu);
    impl_->save_index_locked();
  } catch (const std::exception& ex) {
    // The store is the source of truth: the next start rebuilds the index.
    FUNDUS_WARN("could not save the index " << impl_->index_path << ": " << ex.what());
  }
}

QueryResult SearchEngine::query_image_bytes(std::string_view bytes, const std::string& source, const QueryOptions& o) {
  Impl& e = *impl_;
  FUNDUS_CHECK(o.k >= 1 && o.k <= kMaxQueryK, "query: k must be in 1.." << kMaxQueryK << ", got " << o.k);
  for (int g : o.grades) FUNDUS_CHECK(g >= 0 && g < kNumGrades, "query: grade filter " << g << " outside 0-4");
  const auto t0 = std::chrono::steady_clock::now();
  QueryResult r;
  PreprocessResult p = e.decode_checked(bytes, source);
  r.preprocessed = p.image;
  const double t_decode = ms_since(t0);
  auto t = std::chrono::steady_clock::now();
  // With an attention map asked for, the explanation yields the descriptor and the map from one
  // forward pass (half the cost of embed + explain; Grad-CAM adds a backward pass).
  std::vector<float> q;
  double t_attention = 0;
  e.with_model([&](ModelRunner& m) {
    if (o.with_attention) {
      Explanation x = m.explain(p.image);
      r.attention_overlay = x.overlay;
      q = std::move(x.descriptor);
      if (!q.empty()) return;
      t_attention = ms_since(t);
    }
    q = m.embed(p.image);
  });
  const double t_embed = ms_since(t) - t_attention;
  t = std::chrono::steady_clock::now();
  {
    std::shared_lock<WriterPriorityMutex> lock(e.state_mu);
    r.hits = e.search(q, o);
  }
  const double t_search = ms_since(t);
  for (size_t i = 0; i < r.hits.size(); ++i) r.hits[i].rank = int(i) + 1;

  std::vector<int> grades;
  std::vector<float> scores;
  for (const SearchHit& h : r.hits) {
    grades.push_back(h.info.grade);
    scores.push_back(h.similarity);
  }
  GradeVote vote = knn_vote(grades, scores);
  r.estimate.grade = vote.grade;
  r.estimate.confidence = vote.confidence;
  double total = 0;
  for (const SearchHit& h : r.hits) {
    const double w = std::max(double(h.similarity), 0.0) + 1e-6;  // knn_vote's weights (metrics.h)
    r.estimate.votes[size_t(h.info.grade)] += w;
    total += w;
  }
  if (total > 0)
    for (double& v : r.estimate.votes) v /= total;
  QueryTrust trust = assess_query_trust(e.gallery_health, scores);
  r.warnings = std::move(trust.warnings);
  if (trust.withhold_estimate) {
    r.estimate = GradeEstimate{};
    r.estimate.withheld = true;
    r.estimate.withheld_reason = trust.withhold_reason;
  }

  r.timing_ms = Json{{"decode", t_decode}, {"embed", t_embed}, {"search", t_search}};
  if (o.with_attention) r.timing_ms["attention"] = t_attention;  // extra time of a separate map pass
  r.timing_ms["total"] = ms_since(t0);
  return r;
}

QueryResult SearchEngine::query_file(const std::string& path, const QueryOptions& options) {
  return query_image_bytes(read_image_file(path), path, options);
}

std::optional<CaseInfo> SearchEngine::get_case(int64_t id) const {
  auto c = impl_->store->get_case(id);
  if (!c) return std::nullopt;
  return case_info(*c, impl_->store->path());
}

CaseInfo SearchEngine::add_case(std::string_view bytes, const std::string& source, const CaseRecord& record,
                                const Json& meta) {
  Impl& e = *impl_;
  FUNDUS_CHECK_INPUT(record.grade >= 0 && record.grade < kNumGrades,
                     source << ": grade " << record.grade << " outside 0-" << kNumGrades - 1);
  FUNDUS_CHECK_INPUT(meta.is_object(), source << ": meta must be a JSON object, got " << meta.type_name());
  std::string meta_text, meta_problem;
  try {
    meta_text = meta.dump();
  } catch (const Json::exception& ex) {  // strings that are not UTF-8
    FUNDUS_THROW_INPUT(source << ": meta: " << ex.what());
  }
  // The store's readers bound the depth; refuse here what they would refuse later.
  FUNDUS_CHECK_INPUT(try_parse_json(meta_text, meta_problem), source << ": meta: " << meta_problem);
  PreprocessResult p = e.decode_checked(bytes, source);
  const std::string hash = sha256_hex(bytes);
  CaseRecord rec = record;
  rec.id = record.id.empty() ? "img-" + hash.substr(0, 16) : record.id;
  rec.split = record.split;
  rec.image_path = "-";  // set below; checked here with the other fields, before anything is written
  std::string problem = case_record_problem(rec);
  FUNDUS_CHECK_INPUT(problem.empty(), source << ": " << problem);
  // Content-addressed copy: the same bytes always land in the same file, written atomically.
  make_dirs(e.image_dir);
  rec.image_path = join_path(e.image_dir, hash + extension_for(image_info_from_bytes(bytes, source).format));
  if (!file_exists(rec.image_path)) write_file_atomic(rec.image_path, bytes);
  std::vector<float> v = e.with_model([&](ModelRunner& m) { return m.embed(p.image); });

  std::unique_lock<WriterPriorityMutex> lock(e.state_mu);
  if (auto existing = e.store->find_by_external_id(rec.id)) {
    FUNDUS_CHECK_INPUT(record.id.empty(), source << ": a case with id '" << rec.id << "' is already in the store (id "
                                                 << existing->id << ")");
    FUNDUS_CHECK_INPUT(existing->grade == rec.grade, source << ": this image is already in the store as case "
                                                            << existing->id << " with grade " << existing->grade
                                                            << ", not " << rec.grade);
    if (e.index->contains(existing->id)) return case_info(*existing, e.store->path());  // the same upload again
  }
  const int64_t id = e.store->add_case(rec, meta_text, hash);
  try {
    e.store->put_embeddings(e.model_id, {id}, v.data(), int(v.size()));
  } catch (...) {
    e.store->remove_cases({id});  // all or nothing
    throw;
  }
  if (!e.index->contains(id)) e.index->add(1, &id, v.data());
  e.attributes.set(id, rec.grade, rec.patient);
  e.index_dirty = true;
  return case_info(*e.store->get_case(id), e.store->path());
}

bool SearchEngine::remove_case(int64_t id) {
  Impl& e = *impl_;
  std::unique_lock<WriterPriorityMutex> lock(e.state_mu);
  if (e.store->remove_cases({id}) == 0) return false;
  e.index->remove({id});
  e.attributes.remove(id);
  e.index_dirty = true;
  return true;
}

cv::Mat SearchEngine::case_attention_overlay(int64_t id) {
  Impl& e = *impl_;
  auto c = e.store->get_case(id);
  FUNDUS_CHECK(c, e.options.store_path << ": no case with id " << id);
  cv::Mat image = preprocess_fundus_file(c->image_path, e.preprocess()).image;
  return e.with_model([&](ModelRunner& m) { return m.explain(image).overlay; });
}

void SearchEngine::save_index() {
  std::unique_lock<WriterPriorityMutex> lock(impl_->state_mu);
  impl_->save_index_locked();
}

const std::string& SearchEngine::index_path() const { return impl_->index_path; }
const PreprocessOptions& SearchEngine::preprocess_options() const { return impl_->preprocess(); }

Json SearchEngine::stats() const {
  const Impl& e = *impl_;
  ModelRunner& m = *e.replicas.front()->model;
  Json j = store_stats_to_json(e.store->stats(), e.store->list_models());
  j["index"] = {{"spec", e.index->describe()},
                {"size", e.index->size()},
                {"path", e.index_path},
                {"rebuilt_at_start", e.index_report.rebuilt},
                {"rebuild_reason", e.index_report.reason}};
  j["model"] = {{"id", e.model_id},
                {"name", m.display_name()},
                {"checkpoint", m.checkpoint_path()},
                {"checkpoint_sha256", m.checkpoint_sha256()},
                {"descriptor_dim", m.descriptor_dim()},
                {"input_size", m.input_size()},
                {"backbone", backbone_name(m.config().model.backbone)},
                {"attention", attention_name(m.config().model.attention)},
                {"replicas", e.replicas.size()}};
  return j;
}

Json SearchEngine::health() const {
  const DescriptorHealth& h = impl_->gallery_health;
  return Json{{"status", h.flagged() ? "degraded" : "ok"},
              {"model_id", impl_->model_id},
              {"indexed", size()},
              {"descriptors", h.to_json()}};
}

int64_t SearchEngine::model_id() const { return impl_->model_id; }
int64_t SearchEngine::size() const { return impl_->index->size(); }

}  // namespace fundus
