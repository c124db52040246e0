// A million-case archive end to end through the real case store: bulk import (cases, then vectors),
// store size, index build and load, resident memory, query latency p50/p99 unfiltered and filtered
// (grade filters and patient exclusion applied inside the index), recall@10 against the exact index
// (the oracle), the search engine's memory and query timings, and the compressed index alone at 10M.
// Each phase runs in its own process (bench/run_bench_archive.sh) so that memory figures are clean.
// Results: docs/bench-index.md, docs/scaling.md.
//
//   bench_archive --dir D --n 1000000 --phase store [--checkpoint CKPT]   import into D/archive.db
//   bench_archive --dir D --phase truth                                     exact index = oracle
//   bench_archive --dir D --phase build --spec SPEC --name NAME             build + save NAME.index
//   bench_archive --dir D --phase query --spec SPEC --name NAME [--sweep "ef=32;ef=64"]
//   bench_archive --dir D --phase engine --spec SPEC --name NAME --checkpoint CKPT --image IMG
//   bench_archive --dir D --phase compressed --n 10000000 --spec ivfpq:...,vectors=0   (index alone)
// Common: --data manifold|clustered --seed S --queries Q --threads T --k K. Each measurement is
// appended as one JSON object per line to D/results.jsonl.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/log.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/index/case_filter.h"
#include "fundus/index/exact_index.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/ivfpq_index.h"
#include "fundus/index/simd.h"
#include "fundus/index/synthetic.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/retrieval/store_index.h"
#include "fundus/store/case_store.h"

using namespace fundus;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// VmRSS, RssAnon, RssFile, VmHWM in MB from /proc/self/status.
Json memory() {
  std::ifstream in("/proc/self/status");
  std::string line;
  Json j = Json::object();
  while (std::getline(in, line))
    for (const char* key : {"VmRSS", "RssAnon", "RssFile", "VmHWM"})
      if (line.rfind(std::string(key) + ":", 0) == 0) j[key] = std::stod(line.substr(line.find(':') + 1)) / 1024.0;
  return j;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Args {
  std::string dir = "/tmp/fundus-archive", phase, spec = "exact", name, sweep, checkpoint, image, data = "manifold";
  int64_t n = 1000000, queries = 500, chunk = 65536;
  int dim = 1024, threads = 2, k = 10;
  uint64_t seed = 2024;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    FUNDUS_CHECK(i + 1 < argc, key << " needs a value");
    std::string v = argv[++i];
    if (key == "--dir") a.dir = v;
    else if (key == "--phase") a.phase = v;
    else if (key == "--spec") a.spec = v;
    else if (key == "--name") a.name = v;
    else if (key == "--sweep") a.sweep = v;
    else if (key == "--checkpoint") a.checkpoint = v;
    else if (key == "--image") a.image = v;
    else if (key == "--data") a.data = v;
    else if (key == "--n") a.n = parse_int(v, key);
    else if (key == "--queries") a.queries = parse_int(v, key);
    else if (key == "--chunk") a.chunk = parse_int(v, key);
    else if (key == "--dim") a.dim = int(parse_int(v, key));
    else if (key == "--threads") a.threads = int(parse_int(v, key));
    else if (key == "--k") a.k = int(parse_int(v, key));
    else if (key == "--seed") a.seed = uint64_t(parse_int(v, key));
    else FUNDUS_THROW("unknown option " << key);
  }
  FUNDUS_CHECK(a.data == "manifold" || a.data == "clustered", "--data must be manifold or clustered");
  return a;
}

// ---- the synthetic archive ---------------------------------------------------------------------

// Rows [first, first + n) of the data set; rows >= the archive size are the queries.
std::vector<float> vectors(const Args& a, int64_t archive_size, int64_t first, int64_t n) {
  if (a.data == "clustered")  // docs/bench-index.md's hard data: ~100 nearly equidistant points per cluster
    return clustered_vectors(n, a.dim, int(std::max<int64_t>(200, archive_size / 100)), 1.0f, a.seed, a.threads, first);
  ManifoldParams p;
  p.centres = int(std::max<int64_t>(3, archive_size / 1000));
  return manifold_vectors(n, a.dim, p, a.seed, a.threads, first);
}

// Grades like EyePACS but with 1% proliferative cases (the 1% filter): 74 / 7 / 15 / 3 / 1 %,
// independent of the vectors (the hard case for a filtered traversal). Two eyes per patient.
int grade_of(int64_t row) {
  uint64_t x = uint64_t(row) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  const uint64_t u = x % 1000;
  return u < 740 ? 0 : u < 810 ? 1 : u < 960 ? 2 : u < 990 ? 3 : 4;
}
std::string patient_of(int64_t row) { return strprintf("P%07lld", (long long)(row / 2)); }

std::string store_path(const Args& a) { return join_path(a.dir, "archive.db"); }
std::string index_path(const Args& a) { return join_path(a.dir, a.name + ".index"); }

void record(const Args& a, Json j) {
  j["phase"] = a.phase;
  j["n"] = a.n;
  j["data"] = a.data;
  j["threads"] = a.threads;
  j["loadavg"] = loadavg();
  j["time"] = std::time(nullptr);
  std::ofstream(join_path(a.dir, "results.jsonl"), std::ios::app) << j.dump() << "\n";
  std::cout << j.dump() << std::endl;
}

int64_t model_of(const CaseStore& store) {
  auto models = store.list_models();
  FUNDUS_CHECK(models.size() == 1, store.path() << ": expected one model, found " << models.size());
  return models[0].id;
}

uint64_t file_bytes(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : uint64_t(size);
}

// ---- store: bulk import through the real store ---------------------------------------------------

void phase_store(const Args& a) {
  make_dirs(a.dir);
  FUNDUS_CHECK(!file_exists(store_path(a)), store_path(a) << " exists: use a new --dir");
  // Image files are only hashed at import (never decoded here): 64 small distinct files.
  const std::string img = join_path(a.dir, "img");
  make_dirs(img);
  Dataset ds;
  ds.source = "synthetic archive";
  for (int64_t i = 0; i < a.n; ++i) {
    CaseRecord r;
    r.id = strprintf("case%08lld", (long long)i);
    r.image_path = join_path(img, strprintf("%02lld.jpg", (long long)(i % 64)));
    r.grade = grade_of(i);
    r.patient = patient_of(i);
    r.eye = i % 2 ? "right" : "left";
    ds.records.push_back(std::move(r));
  }
  for (int i = 0; i < 64; ++i) write_file_atomic(join_path(img, strprintf("%02d.jpg", i)), strprintf("image %d", i));
  auto owned = std::make_unique<CaseStore>(store_path(a));
  CaseStore& store = *owned;
  double t = now();
  AddCasesResult added = store.add_cases(ds, a.threads);
  const double t_cases = now() - t;
  ds.records.clear();
  ds.records.shrink_to_fit();
  int64_t model = 0;
  if (!a.checkpoint.empty()) {
    ModelRunner runner(a.checkpoint);
    FUNDUS_CHECK(runner.descriptor_dim() == a.dim,
                 a.checkpoint << ": descriptor dim " << runner.descriptor_dim() << " != --dim " << a.dim);
    model = register_model(store, runner);
  } else {
    model = store.register_model("synthetic", "{}", "synthetic-" + std::to_string(a.seed), "{}", a.dim);
  }
  double t_generate = 0, t_put = 0;
  Progress progress("importing vectors", a.n, "vec");
  for (int64_t first = 0; first < a.n; first += a.chunk) {
    const int64_t rows = std::min(a.chunk, a.n - first);
    t = now();
    std::vector<float> v = vectors(a, a.n, first, rows);
    t_generate += now() - t;
    std::vector<int64_t> ids(added.ids.begin() + first, added.ids.begin() + first + rows);
    t = now();
    store.put_embeddings(model, ids, v.data(), a.dim);  // one transaction per chunk
    t_put += now() - t;
    progress.advance(rows);
  }
  progress.finish();
  Json mem = memory();
  const uint64_t before_checkpoint = file_bytes(store_path(a)) + file_bytes(store_path(a) + "-wal");
  owned.reset();  // closes: the WAL is checkpointed into the database file
  record(a, {{"cases_s", t_cases},
             {"cases_per_s", double(a.n) / t_cases},
             {"vectors_s", t_put},
             {"vectors_per_s", double(a.n) / t_put},
             {"vectors_mb_per_s", double(a.n) * a.dim * 4 / 1e6 / t_put},
             {"generate_s", t_generate},
             {"store_bytes", file_bytes(store_path(a))},
             {"store_bytes_with_wal_before_checkpoint", before_checkpoint},
             {"model", model},
             {"memory_mb", mem}});
}

// ---- queries, filters and the oracle -------------------------------------------------------------

struct FilterCase {
  std::string name;
  std::vector<int> grades;
  bool exclude_nearest_patient = false;  // the patient of the unfiltered top hit (fellow-eye leakage)
  bool opaque = false;                   // hide count and list: forces the filtered traversal
};

const std::vector<FilterCase>& filter_cases() {
  static const std::vector<FilterCase> f = {{"none", {}, false, false},
                                            {"grade4 (1%)", {4}, false, false},
                                            {"grades3-4 (4%)", {3, 4}, false, false},
                                            {"grade0 (74%)", {0}, false, false},
                                            {"exclude-patient", {}, true, false},
                                            {"grade4 (1%) traversal", {4}, false, true},
                                            {"grades3-4 (4%) traversal", {3, 4}, false, true}};
  return f;
}

// Hides the count and the list of another filter (no index can then choose a scan of the listed ids).
class OpaqueFilter : public IdFilter {
 public:
  OpaqueFilter(const CaseAttributes& attrs, const std::vector<int>& grades) : inner_(attrs, grades, "") {}
  bool keep(int64_t id) const override { return inner_.keep(id); }

 private:
  CaseFilter inner_;
};

std::string truth_path(const Args& a) { return join_path(a.dir, "truth.bin"); }

struct Oracle {
  std::vector<SearchResult> per_filter;  // [filter] -> [queries x k]
  std::vector<std::string> excluded;     // per query: the patient the exclusion filter drops
};

std::unique_ptr<IdFilter> make_filter(const FilterCase& f, const CaseAttributes& attrs, const std::string& excluded) {
  if (f.name == "none") return nullptr;
  if (f.opaque) return std::make_unique<OpaqueFilter>(attrs, f.grades);
  return std::make_unique<CaseFilter>(attrs, f.grades, f.exclude_nearest_patient ? excluded : "");
}

CaseAttributes load_attributes(const CaseStore& store, const VectorIndex& index, double* seconds) {
  double t = now();
  CaseAttributes attrs;
  for (const CaseGradePatient& c : store.grades_and_patients())
    if (index.contains(c.id)) attrs.set(c.id, c.grade, c.patient);
  *seconds = now() - t;
  return attrs;
}

void save_oracle(const Args& a, const Oracle& o) {
  BinaryWriter w;
  w.put<int64_t>(a.n);
  w.put<int64_t>(a.queries);
  w.put<int32_t>(a.k);
  w.put_string(a.data);
  for (const SearchResult& r : o.per_filter) {
    w.put_array(r.ids.data(), r.ids.size());
    w.put_array(r.scores.data(), r.scores.size());
  }
  for (auto& p : o.excluded) w.put_string(p);
  write_framed_file(truth_path(a), "FNDTRUTH", 1, w.take());
}

Oracle load_oracle(const Args& a) {
  std::string bytes = read_framed_file(truth_path(a), "FNDTRUTH", 1, "oracle");
  BinaryReader r(bytes, truth_path(a));
  FUNDUS_CHECK(
      r.get<int64_t>() == a.n && r.get<int64_t>() == a.queries && r.get<int32_t>() == a.k && r.get_string() == a.data,
      truth_path(a) << ": computed for other --n/--queries/--k/--data");
  Oracle o;
  for (size_t f = 0; f < filter_cases().size(); ++f) {
    SearchResult s;
    s.nq = a.queries;
    s.k = a.k;
    s.ids = r.get_array<int64_t>();
    s.scores = r.get_array<float>();
    o.per_filter.push_back(std::move(s));
  }
  for (int64_t q = 0; q < a.queries; ++q) o.excluded.push_back(r.get_string());
  return o;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// One query per call, each filter, for the first `measured` queries: p50/p99 latency and recall@k
// against the oracle.
Json measure_queries(const Args& a, const VectorIndex& index, const CaseAttributes& attrs, const Oracle& oracle,
                     const std::vector<float>& queries, int64_t measured) {
  Json out = Json::array();
  for (size_t f = 0; f < filter_cases().size(); ++f) {
    const FilterCase& fc = filter_cases()[f];
    SearchResult got, truth = oracle.per_filter[f];
    got.nq = truth.nq = measured;
    got.k = a.k;
    got.ids.assign(size_t(measured) * size_t(a.k), -1);
    got.scores.assign(got.ids.size(), kMissingScore);
    truth.ids.resize(got.ids.size());
    truth.scores.resize(got.ids.size());
    std::vector<double> ms;
    int64_t short_rows = 0;
    for (int64_t q = 0; q < measured; ++q) {
      auto filter = make_filter(fc, attrs, oracle.excluded[size_t(q)]);
      const double t = now();
      SearchResult r = index.search(1, queries.data() + q * a.dim, a.k, filter.get());
      ms.push_back((now() - t) * 1e3);
      std::copy(r.ids.begin(), r.ids.end(), got.ids.begin() + q * a.k);
      short_rows += r.ids[size_t(a.k - 1)] < 0;
    }
    out.push_back({{"filter", fc.name},
                   {"p50_ms", percentile(ms, 0.5)},
                   {"p99_ms", percentile(ms, 0.99)},
                   {"timed", int64_t(ms.size())},
                   {"recall", recall_at_k(truth, got)},
                   {"rows_short_of_k", short_rows}});
    std::cout << "  " << index.describe() << " " << fc.name << ": " << out.back().dump() << std::endl;
  }
  return out;
}

std::vector<float> query_vectors(const Args& a) { return vectors(a, a.n, a.n, a.queries); }

// ---- truth: the exact index over the store is the oracle ------------------------------------------

void phase_truth(const Args& a) {
  StoreOptions so;
  so.create = false;
  CaseStore store(store_path(a), so);
  const int64_t model = model_of(store);
  Args b = a;
  b.name = "exact";
  double t = now();
  IndexLoadReport report;
  auto index = load_or_rebuild_index(store, model, index_path(b), "exact", &report, a.threads);
  const double t_index = now() - t;
  double t_attrs = 0;
  CaseAttributes attrs = load_attributes(store, *index, &t_attrs);
  std::vector<float> queries = query_vectors(a);
  Oracle o;
  t = now();
  SearchResult nearest = index->search(queries, a.k);
  for (int64_t q = 0; q < a.queries; ++q) {
    auto c = store.get_case(nearest.ids_row(q)[0]);
    o.excluded.push_back(c ? c->patient : "");
  }
  for (const FilterCase& fc : filter_cases()) {
    if (!fc.exclude_nearest_patient) {
      auto filter = make_filter(fc, attrs, "");
      o.per_filter.push_back(index->search(queries, a.k, filter.get()));  // batched: sgemm
      continue;
    }
    // A patient has two cases: the unfiltered top k+2 without that patient's cases is exact.
    SearchResult deep = index->search(queries, a.k + 2), all;
    all.nq = a.queries;
    all.k = a.k;
    for (int64_t q = 0; q < a.queries; ++q) {
      CaseFilter filter(attrs, {}, o.excluded[size_t(q)]);
      int taken = 0;
      for (int i = 0; i < deep.k && taken < a.k; ++i)
        if (filter.keep(deep.ids_row(q)[i])) {
          all.ids.push_back(deep.ids_row(q)[i]);
          all.scores.push_back(deep.scores_row(q)[i]);
          ++taken;
        }
      FUNDUS_CHECK(taken == a.k, "oracle: fewer than k cases outside the excluded patient");
    }
    o.per_filter.push_back(std::move(all));
  }
  const double t_truth = now() - t;
  save_oracle(a, o);
  // Local intrinsic dimension at the 10-NN scale (MLE), the figure that makes data hard or easy.
  std::vector<double> lids;
  for (int64_t q = 0; q < a.queries; ++q) {
    const float* s = o.per_filter[0].scores_row(q);
    const double dk = std::sqrt(std::max(1e-12, 2.0 - 2.0 * s[a.k - 1]));
    double sum = 0;
    for (int i = 0; i < a.k - 1; ++i) sum += std::log(std::sqrt(std::max(1e-12, 2.0 - 2.0 * s[i])) / dk);
    lids.push_back(-double(a.k - 1) / sum);
  }
  Json mem = memory();
  Json q = measure_queries(a, *index, attrs, o, queries, std::min<int64_t>(a.queries, 20));  // a scan each
  record(a, {{"spec", "exact"},
             {"load_or_build_s", t_index},
             {"rebuilt", report.rebuilt},
             {"attributes_s", t_attrs},
             {"attributes_mb", double(attrs.memory_bytes()) / 1e6},
             {"truth_s", t_truth},
             {"lid_median", percentile(lids, 0.5)},
             {"index_file_bytes", file_bytes(index_path(b))},
             {"memory_mb", mem},
             {"queries", q}});
}

// ---- build / query one index type ----------------------------------------------------------------

void phase_build(const Args& a) {
  StoreOptions so;
  so.create = false;
  CaseStore store(store_path(a), so);
  const int64_t model = model_of(store);
  std::remove(index_path(a).c_str());
  const double t = now();
  IndexLoadReport report;
  auto index = load_or_rebuild_index(store, model, index_path(a), a.spec, &report, a.threads);
  const double seconds = now() - t;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  Json j = {{"spec", index->describe()},
            {"build_and_save_s", seconds},
            {"cpu_s", double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) * 1e-6},
            {"index_file_bytes", file_bytes(index_path(a))},
            {"vectors_file_bytes", file_bytes(index_path(a) + ".vectors")},
            {"memory_mb", memory()}};
  if (auto* ivf = dynamic_cast<IvfPqIndex*>(index.get())) j["code_bytes"] = ivf->code_bytes();
  record(a, j);
}

void phase_query(const Args& a) {
  StoreOptions so;
  so.create = false;
  CaseStore store(store_path(a), so);
  const int64_t model = model_of(store);
  Json before = memory();
  double t = now();
  IndexLoadReport report;
  auto index = load_or_rebuild_index(store, model, index_path(a), a.spec, &report, a.threads);
  const double t_load = now() - t;
  FUNDUS_CHECK(!report.rebuilt, index_path(a) << " was rebuilt (" << report.reason << "): run --phase build first");
  Json loaded = memory();
  double t_attrs = 0;
  CaseAttributes attrs = load_attributes(store, *index, &t_attrs);
  Oracle oracle = load_oracle(a);
  std::vector<float> queries = query_vectors(a);
  std::vector<std::string> settings = {""};
  if (!a.sweep.empty()) settings = split(a.sweep, ';');
  for (const std::string& s : settings) {
    if (!s.empty()) index->set_search_params(parse_index_spec(index->type() + ":" + s));
    Json q = measure_queries(a, *index, attrs, oracle, queries, a.queries);
    // Throughput with every query in one call (spread over the threads), unfiltered.
    const double t_batch = now();
    index->search(queries, a.k);
    const double batch_qps = double(a.queries) / (now() - t_batch);
    record(a, {{"spec", index->describe()},
               {"batch_qps", batch_qps},
               {"load_s", t_load},
               {"attributes_s", t_attrs},
               {"attributes_mb", double(attrs.memory_bytes()) / 1e6},
               {"memory_before_mb", before},
               {"memory_loaded_mb", loaded},
               {"memory_mb", memory()},
               {"queries", q}});
  }
}

// ---- the search engine (what `fundus serve` holds) ---------------------------------------------

void phase_engine(const Args& a) {
  FUNDUS_CHECK(!a.checkpoint.empty() && !a.image.empty(), "--phase engine needs --checkpoint and --image");
  EngineOptions eo;
  eo.store_path = store_path(a);
  eo.checkpoint_path = a.checkpoint;
  eo.index_spec = a.spec;
  eo.index_path = index_path(a);
  eo.threads = a.threads;
  eo.create_store = false;
  eo.progress = false;
  const double t = now();
  SearchEngine engine(eo);
  const double t_start = now() - t;
  Json after_start = memory();
  Json rows = Json::array();
  for (const FilterCase& fc : filter_cases()) {
    QueryOptions o;
    o.k = a.k;
    o.grades = fc.grades;
    if (fc.exclude_nearest_patient) o.exclude_patient = patient_of(0);
    std::vector<double> search, total;
    int64_t short_rows = 0;
    for (int64_t i = 0; i < a.queries; ++i) {
      QueryResult r = engine.query_file(a.image, o);
      search.push_back(r.timing_ms["search"].get<double>());
      total.push_back(r.timing_ms["total"].get<double>());
      short_rows += int64_t(r.hits.size()) < a.k;
    }
    rows.push_back({{"filter", fc.name},
                    {"search_p50_ms", percentile(search, 0.5)},
                    {"search_p99_ms", percentile(search, 0.99)},
                    {"total_p50_ms", percentile(total, 0.5)},
                    {"rows_short_of_k", short_rows}});
    std::cout << "  engine " << fc.name << ": " << rows.back().dump() << std::endl;
  }
  record(a, {{"spec", a.spec},
             {"start_s", t_start},
             {"indexed", engine.size()},
             {"memory_after_start_mb", after_start},
             {"memory_mb", memory()},
             {"queries", rows}});
}

// ---- the compressed index alone (no store): 10M vectors ------------------------------------------

void phase_compressed(const Args& a) {
  auto index = make_index(a.spec, a.dim);
  auto* ivf = dynamic_cast<IvfPqIndex*>(index.get());
  // vectors=1 here keeps the exact vectors in memory (never saved): re-ranking without a store.
  FUNDUS_CHECK(ivf, "--phase compressed needs an ivfpq spec");
  index->set_threads(a.threads);
  std::vector<float> queries = query_vectors(a);
  // The oracle by brute force over the same chunks: sgemm per chunk, merged top-k per query.
  ExactIndex chunk_exact(a.dim);
  std::vector<std::vector<std::pair<float, int64_t>>> best(size_t(a.queries));
  Json before = memory();
  double t_generate = 0, t_train = 0, t_add = 0, t_truth = 0;
  Progress progress("compressed index", a.n, "vec");
  for (int64_t first = 0; first < a.n; first += a.chunk) {
    const int64_t rows = std::min(a.chunk, a.n - first);
    double t = now();
    std::vector<float> v = vectors(a, a.n, first, rows);
    t_generate += now() - t;
    std::vector<int64_t> ids(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) ids[size_t(i)] = first + i;
    if (first == 0) {  // rows are independent draws: the first chunk is a random sample
      t = now();
      ivf->train(rows, v.data());
      t_train = now() - t;
    }
    t = now();
    index->add(ids, v);
    t_add += now() - t;
    t = now();
    ExactIndex exact(a.dim);
    exact.set_threads(a.threads);
    exact.add(ids, v);
    SearchResult r = exact.search(queries, a.k);
    for (int64_t q = 0; q < a.queries; ++q) {
      auto& b = best[size_t(q)];
      for (int i = 0; i < a.k; ++i) b.push_back({r.scores_row(q)[i], r.ids_row(q)[i]});
      std::sort(b.begin(), b.end(),
                [](auto& x, auto& y) { return x.first > y.first || (x.first == y.first && x.second < y.second); });
      b.resize(size_t(a.k));
    }
    t_truth += now() - t;
    progress.advance(rows);
  }
  progress.finish();
  SearchResult truth;
  truth.nq = a.queries;
  truth.k = a.k;
  for (auto& b : best)
    for (auto& [s, id] : b) {
      truth.ids.push_back(id);
      truth.scores.push_back(s);
    }
  Json built = memory();
  Json rows = Json::array();
  std::vector<std::string> settings = {""};
  if (!a.sweep.empty()) settings = split(a.sweep, ';');
  for (const std::string& s : settings) {
    if (!s.empty()) index->set_search_params(parse_index_spec("ivfpq:" + s));
    SearchResult got;
    got.nq = a.queries;
    got.k = a.k;
    std::vector<double> ms;
    for (int64_t q = 0; q < a.queries; ++q) {
      const double t = now();
      SearchResult r = index->search(1, queries.data() + q * a.dim, a.k);
      ms.push_back((now() - t) * 1e3);
      got.ids.insert(got.ids.end(), r.ids.begin(), r.ids.end());
    }
    rows.push_back({{"spec", index->describe()},
                    {"p50_ms", percentile(ms, 0.5)},
                    {"p99_ms", percentile(ms, 0.99)},
                    {"recall", recall_at_k(truth, got)}});
    std::cout << "  " << rows.back().dump() << std::endl;
  }
  record(a, {{"spec", index->describe()},
             {"generate_s", t_generate},
             {"train_s", t_train},
             {"add_s", t_add},
             {"truth_s", t_truth},
             {"code_bytes", ivf->code_bytes()},
             {"memory_before_mb", before},
             {"memory_mb", built},
             {"queries", rows}});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a = parse_args(argc, argv);
    std::cout << "bench_archive " << a.phase << " n=" << a.n << " data=" << a.data << " simd=" << simd_level()
              << " load " << loadavg() << std::endl;
    if (a.phase == "store") phase_store(a);
    else if (a.phase == "truth") phase_truth(a);
    else if (a.phase == "build") phase_build(a);
    else if (a.phase == "query") phase_query(a);
    else if (a.phase == "engine") phase_engine(a);
    else if (a.phase == "compressed") phase_compressed(a);
    else FUNDUS_THROW("--phase must be store, truth, build, query, engine or compressed");
  } catch (const std::exception& e) {
    std::cerr << "bench_archive: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
