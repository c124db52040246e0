#include "fundus/train/cross_validation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/core/npy.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/split.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/eval/postprocess.h"
#include "fundus/eval/retrieval_eval.h"
#include "fundus/infer/embed.h"
#include "fundus/train/trainer.h"

namespace fundus {

namespace {

bool selects_on_validation(const TrainSettings& t) { return t.select != "last" && t.select != "train_loss"; }

// The recipe as far as results depend on it (threads, workers, logging and the seed excluded).
Json recipe_identity(const CvOptions& o) {
  Json c = o.config.to_json();
  for (const char* k :
       {"seed", "threads", "workers", "prefetch_batches", "cache_dir", "feature_cache_dir", "val_batch_size"})
    c["train"].erase(k);
  c.erase("preset");
  return {{"config", c}, {"folds", o.folds}, {"fold_seed", o.fold_seed}, {"inner_val_fraction", o.inner_val_fraction}};
}

// The fold's data: the held-out fold is "test", the others "train" (and "val" for an inner split).
Dataset fold_dataset(const Dataset& all, const std::vector<int>& folds, int k, const CvOptions& o) {
  Dataset train, test;
  train.source = test.source = all.source;
  for (size_t i = 0; i < all.records.size(); ++i) (folds[i] == k ? test : train).records.push_back(all.records[i]);
  if (selects_on_validation(o.config.train)) {
    SplitOptions so;
    so.val_fraction = o.inner_val_fraction;
    so.test_fraction = 0;
    so.seed = o.fold_seed + uint64_t(k) + 1;
    train = split_dataset(train, so);
  } else {
    for (auto& r : train.records) r.split = "train";
  }
  for (auto& r : test.records) r.split = "test";
  Dataset out = train;
  out.records.insert(out.records.end(), test.records.begin(), test.records.end());
  return out;
}

struct FoldEmbeddings {
  Dataset data;
  int64_t dim = 0;
  std::vector<float> vectors;  // manifest order
  double train_seconds = 0;
};

FoldEmbeddings train_and_embed(const Dataset& data, const std::string& dir, uint64_t seed, const CvOptions& o) {
  const std::string npy = join_path(dir, "embeddings.npy"), meta_path = join_path(dir, "fold.json");
  FoldEmbeddings f;
  f.data = data;
  if (file_exists(npy) && file_exists(meta_path)) {
    Json meta = load_json_file(meta_path);
    NpyArray a = read_npy(npy);
    FUNDUS_CHECK(a.shape.size() == 2 && a.shape[0] == int64_t(data.size()) && meta.at("ids").size() == data.size(),
                 npy << ": does not match the fold's " << data.size() << " images; delete " << dir << " to redo it");
    for (size_t i = 0; i < data.size(); ++i)
      FUNDUS_CHECK(meta["ids"][i] == data.records[i].id,
                   meta_path << ": ids differ from the fold's manifest; delete " << dir << " to redo it");
    f.dim = a.shape[1];
    f.vectors = a.as_float();
    f.train_seconds = meta.value("train_seconds", 0.0);
    return f;
  }
  make_dirs(dir);
  const std::string manifest = join_path(dir, "manifest.csv"), run_dir = join_path(dir, "run");
  write_manifest(manifest, data);
  TrainRequest tr;
  tr.config = o.config;
  tr.config.train.seed = seed;
  tr.data = manifest;
  tr.out_dir = run_dir;
  tr.val_split = "val";
  const std::string summary_path = join_path(run_dir, "summary.json");
  auto start = std::chrono::steady_clock::now();
  if (!file_exists(summary_path)) {
    tr.resume = file_exists(join_path(run_dir, "checkpoints/last.ckpt"));
    TrainSummary s = train_model(tr);
    FUNDUS_CHECK(!s.interrupted, run_dir << ": training was interrupted; run `fundus cv` again to continue");
  }
  f.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Json summary = load_json_file(summary_path);
  const std::string best = summary.value("best_checkpoint", std::string());
  FUNDUS_CHECK(!best.empty() && file_exists(best), run_dir << ": no best checkpoint after training");
  TrainedModel model = load_trained_model(best);
  EmbedOptions eo;
  eo.batch_size = o.config.train.val_batch_size;
  eo.workers = o.config.train.workers;
  eo.cache_dir = o.config.train.cache_dir;
  eo.progress = o.progress;
  eo.label = "cv embed";
  Embeddings e = embed_dataset(*model.net, model.config.preprocess, data, eo);
  f.dim = e.dim;
  f.vectors = std::move(e.data);
  Json ids = Json::array();
  for (const auto& r : data.records) ids.push_back(r.id);
  write_npy(npy, f.vectors.data(), {int64_t(data.size()), f.dim});
  save_json_file(
      meta_path,
      {{"ids", ids}, {"train_seconds", f.train_seconds}, {"checkpoint_meta", model.meta.value("batchnorm", Json())}});
  if (!o.keep_checkpoints) {
    std::filesystem::remove_all(join_path(run_dir, "checkpoints"));
    std::filesystem::remove(join_path(run_dir, "best.pth"));
  }
  return f;
}

double nan_to(double v) { return std::isfinite(v) ? v : std::nan(""); }

// The numbers of a cross-validation run, one row each: its name in cv.json/cv.csv/cv.md and where the
// retrieval report holds it (group, metric); an empty metric is the report's k-NN kappa.
struct CvMetric {
  std::string name, group, metric;
};
const std::vector<CvMetric>& cv_metrics() {
  static const std::vector<CvMetric> rows = [] {
    std::vector<CvMetric> r = {{"P@10", "micro", "P@10"},     {"macro_P@10", "macro", "P@10"},
                               {"mAP@10", "micro", "mAP@10"}, {"macro_mAP@10", "macro", "mAP@10"},
                               {"MAP@R", "micro", "MAP@R"},   {"P@1", "micro", "P@1"}};
    for (int grade = 0; grade < kNumGrades; ++grade)
      r.push_back({std::string("P@10 ") + grade_name(grade), grade_name(grade), "P@10"});
    r.push_back({"kNN_acc", "micro", "kNN-acc"});  // = RetrievalReport::knn_accuracy
    r.push_back({"kNN_QWK", "", ""});
    return r;
  }();
  return rows;
}

CvRun evaluate_fold(const FoldEmbeddings& f, uint64_t seed, int fold, const std::string& post) {
  std::vector<float> q, g;
  std::vector<CaseKey> qk, gk;
  std::vector<int> qg, gg;
  for (size_t i = 0; i < f.data.size(); ++i) {
    const CaseRecord& r = f.data.records[i];
    const bool is_query = r.split == "test";
    auto& v = is_query ? q : g;
    v.insert(v.end(), f.vectors.begin() + int64_t(i) * f.dim, f.vectors.begin() + int64_t(i + 1) * f.dim);
    (is_query ? qk : gk).push_back({r.id, r.patient});
    (is_query ? qg : gg).push_back(r.grade);
  }
  int64_t dim = f.dim;
  CvRun run;
  run.seed = seed;
  run.fold = fold;
  PostprocessSpec spec = parse_postprocess(post);
  run.postprocess = spec.to_string();
  run.health = assess_descriptors(g.data(), int64_t(gk.size()), dim).to_json();
  apply_postprocess(spec, q, qk, g, gk, dim, /*exclude_same_patient=*/true);
  EvalOptions eo;
  eo.ks = {1, 5, 10, 20};
  eo.exclude_same_patient = true;
  eo.progress = false;
  RetrievalReport r = evaluate_retrieval({{q.data(), int64_t(qk.size()), dim}, qk, qg},
                                         {{g.data(), int64_t(gk.size()), dim}, gk, gg}, eo);
  for (const CvMetric& m : cv_metrics()) {
    run.values[m.name] = nan_to(m.metric.empty() ? r.knn_qwk : r.value(m.group, m.metric));
    run.chance[m.name] = nan_to(m.metric.empty() ? r.chance_knn_qwk : r.chance(m.group, m.metric));
  }
  return run;
}

struct Stats {
  double mean = std::nan(""), std = std::nan(""), min = std::nan(""), max = std::nan("");
  int64_t n = 0;
};
Stats stats_of(const std::vector<double>& values) {
  Stats s;
  std::vector<double> v;
  for (double x : values)
    if (std::isfinite(x)) v.push_back(x);
  s.n = int64_t(v.size());
  if (v.empty()) return s;
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(v.size());
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / double(v.size() - 1));
  }
  return s;
}

double number_or_nan(const Json& j) { return j.is_number() ? j.get<double>() : std::nan(""); }

Json summarise(const std::vector<CvRun>& runs, const std::vector<std::string>& posts) {
  Json summary = Json::object();
  for (const auto& post : posts) {
    Json per_metric = Json::object();
    for (const auto& m : cv_metric_names()) {
      std::vector<double> values, chances;
      std::map<uint64_t, std::vector<double>> by_seed;
      for (const auto& r : runs)
        if (r.postprocess == post) {
          values.push_back(number_or_nan(r.values[m]));
          chances.push_back(number_or_nan(r.chance[m]));
          by_seed[r.seed].push_back(values.back());
        }
      Stats s = stats_of(values), c = stats_of(chances);
      std::vector<double> seed_means;
      for (const auto& [seed, v] : by_seed) seed_means.push_back(stats_of(v).mean);
      Stats sm = stats_of(seed_means);
      auto num = [](double x) { return std::isfinite(x) ? Json(x) : Json(); };
      per_metric[m] = {{"mean", num(s.mean)},
                       {"std", num(s.std)},
                       {"min", num(s.min)},
                       {"max", num(s.max)},
                       {"runs", s.n},
                       {"chance", num(c.mean)},
                       {"seed_std", num(sm.std)},
                       {"seeds", int64_t(by_seed.size())}};
    }
    summary[post] = per_metric;
  }
  return summary;
}

std::string fmt(const Json& j, const char* f = "%.3f") { return j.is_number() ? strprintf(f, j.get<double>()) : "-"; }

std::string markdown(const Json& summary, const std::vector<CvRun>& runs, const std::vector<std::string>& posts,
                     const CvOptions& o) {
  std::ostringstream md;
  md << "Cross-validation: " << o.folds << " patient-disjoint folds (fold seed " << o.fold_seed << "), "
     << "seeds";
  std::set<uint64_t> seeds;
  for (const auto& r : runs) seeds.insert(r.seed);
  for (uint64_t s : seeds) md << " " << s;
  md << "; held-out fold queried against the other folds. Cells: mean ± std over "
     << runs.size() / std::max<size_t>(1, posts.size()) << " runs (chance floor).\n\n| metric |";
  for (const auto& p : posts) md << " " << p << " |";
  md << "\n|---|";
  for (size_t i = 0; i < posts.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& m : cv_metric_names()) {
    md << "| " << m << " |";
    for (const auto& p : posts) {
      const Json& s = summary[p][m];
      md << " " << fmt(s["mean"]) << " ± " << fmt(s["std"]) << " (" << fmt(s["chance"]) << ") |";
    }
    md << "\n";
  }
  md << "\nPer run (" << posts.front()
     << "):\n\n| seed | fold | P@10 | macro P@10 | mAP@10 | MAP@R | Mild P@10 | kNN QWK | train s |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : runs)
    if (r.postprocess == posts.front())
      md << "| " << r.seed << " | " << r.fold + 1 << " | " << fmt(r.values["P@10"]) << " | "
         << fmt(r.values["macro_P@10"]) << " | " << fmt(r.values["mAP@10"]) << " | " << fmt(r.values["MAP@R"]) << " | "
         << fmt(r.values["P@10 Mild"]) << " | " << fmt(r.values["kNN_QWK"]) << " | "
         << strprintf("%.0f", r.train_seconds) << " |\n";
  return md.str();
}

}  // namespace

const std::vector<std::string>& cv_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const CvMetric& m : cv_metrics()) n.push_back(m.name);
    return n;
  }();
  return names;
}

Json CvOptions::to_json() const {
  Json j = recipe_identity(*this);
  j["data"] = data;
  j["seeds"] = seeds;
  j["postprocess"] = postprocess;
  j["config"] = config.to_json();
  return j;
}

CvResult run_cross_validation(const CvOptions& o) {
  FUNDUS_CHECK(!o.seeds.empty(), "cv: no seeds");
  FUNDUS_CHECK(!o.postprocess.empty(), "cv: no post-processing variant (use none)");
  FUNDUS_CHECK(o.inner_val_fraction > 0 && o.inner_val_fraction < 0.5,
               "cv: inner validation fraction must be in (0, 0.5)");
  std::vector<std::string> posts;
  for (const auto& p : o.postprocess) posts.push_back(parse_postprocess(p).to_string());  // validate all first
  FUNDUS_CHECK(file_exists(o.data), o.data << ": dataset not found");
  LoadResult loaded = load_dataset(o.data);
  FUNDUS_CHECK(loaded.problems.empty(), o.data << ": " << loaded.problems.size()
                                               << " problem(s); fix them or write a clean manifest with "
                                                  "`fundus dataset validate --skip-bad`:\n"
                                               << format_problems(loaded.problems, 20));
  Dataset all = loaded.dataset;
  for (auto& r : all.records) r.split.clear();
  const std::vector<int> folds = assign_folds(all, o.folds, o.fold_seed);

  make_dirs(o.out_dir);
  const std::string config_path = join_path(o.out_dir, "cv_config.json");
  if (file_exists(config_path)) {
    Json old = load_json_file(config_path);
    Json mine = recipe_identity(o);
    FUNDUS_CHECK(old.contains("identity") && old["identity"] == mine,
                 config_path << ": this folder holds a cross-validation of another recipe or fold setting; "
                                "use another --out");
  }
  Json saved = o.to_json();
  saved["identity"] = recipe_identity(o);
  save_json_file(config_path, saved);

  CvResult result;
  for (uint64_t seed : o.seeds)
    for (int k = 0; k < o.folds; ++k) {
      const std::string dir = join_path(o.out_dir, strprintf("seed%llu/fold%d", (unsigned long long)seed, k + 1));
      FoldEmbeddings f = train_and_embed(fold_dataset(all, folds, k, o), dir, seed, o);
      for (const auto& post : posts) {
        CvRun run = evaluate_fold(f, seed, k, post);
        run.train_seconds = f.train_seconds;
        if (post == posts.front())
          FUNDUS_INFO("cv seed " << seed << " fold " << k + 1 << "/" << o.folds << ": P@10 " << fmt(run.values["P@10"])
                                 << " (chance " << fmt(run.chance["P@10"]) << "), macro P@10 "
                                 << fmt(run.values["macro_P@10"]) << ", mAP@10 " << fmt(run.values["mAP@10"])
                                 << ", Mild P@10 " << fmt(run.values["P@10 Mild"]) << ", kNN QWK "
                                 << fmt(run.values["kNN_QWK"]) << ", descriptors "
                                 << run.health.value("status", std::string())
                                 << strprintf(", trained in %.0f s", f.train_seconds));
        result.runs.push_back(std::move(run));
      }
    }
  result.summary = summarise(result.runs, posts);
  result.table = markdown(result.summary, result.runs, posts, o);

  Json runs = Json::array();
  std::vector<std::vector<std::string>> rows = {{"seed", "fold", "postprocess", "metric", "value", "chance"}};
  for (const auto& r : result.runs) {
    runs.push_back({{"seed", r.seed},
                    {"fold", r.fold + 1},
                    {"postprocess", r.postprocess},
                    {"values", r.values},
                    {"chance", r.chance},
                    {"health", r.health},
                    {"train_seconds", r.train_seconds}});
    for (const auto& m : cv_metric_names())
      rows.push_back({std::to_string(r.seed), std::to_string(r.fold + 1), r.postprocess, m, fmt(r.values[m], "%.6f"),
                      fmt(r.chance[m], "%.6f")});
  }
  save_json_file(join_path(o.out_dir, "cv.json"), {{"options", saved}, {"runs", runs}, {"summary", result.summary}});
  std::string csv;
  for (const auto& row : rows) csv += csv_line(row);
  write_file_atomic(join_path(o.out_dir, "cv.csv"), csv);
  write_file_atomic(join_path(o.out_dir, "cv.md"), result.table);
  return result;
}

}  // namespace fundus
