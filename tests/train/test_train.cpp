// Trainer, run configuration, checkpoints and the embedder, on a small synthetic dataset.
#include <cmath>
#include <filesystem>
#include <set>
#include <fstream>
#include <functional>

#include <torch/torch.h>

#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/embed.h"
#include "fundus/model/runtime.h"
#include "fundus/train/cross_validation.h"
#include "fundus/train/trainer.h"
#include "test_support.h"
#include "train_fixtures.h"

using namespace fundus;

namespace {

using test::step_losses;
using test::synthetic_manifest;

TrainRequest tiny_request(const std::string& out, const std::vector<std::string>& overrides = {}) {
  TrainRequest r;
  std::vector<std::string> o = {"train.threads=2", "train.workers=2"};
  o.insert(o.end(), overrides.begin(), overrides.end());
  r.config = resolve_run_config("tiny", "", o);
  r.data = synthetic_manifest();
  r.out_dir = out;
  return r;
}

// Micro-averaged chance P@10 of `queries` against `gallery` with same-patient items excluded, from
// the grade counts alone: a random ranking of n eligible items, R of the query's grade, puts
// min(10, n) R / n of them in the top 10 (eval/chance.h, evaluated by hand here).
double chance_p10(const Dataset& queries, const Dataset& gallery) {
  double sum = 0;
  int evaluated = 0;
  for (const CaseRecord& q : queries.records) {
    double n = 0, R = 0;
    for (const CaseRecord& g : gallery.records) {
      if (g.patient_key() == q.patient_key()) continue;
      ++n;
      R += g.grade == q.grade;
    }
    if (n == 0) continue;
    sum += std::min(10.0, n) * R / n / 10;
    ++evaluated;
  }
  return sum / evaluated;
}

// cv.csv's number format: %.6f, "-" for a missing number.
std::string fmt6(const Json& j) { return j.is_number() ? strprintf("%.6f", j.get<double>()) : "-"; }

// A micro P@10 averages hits / 10 over the queries: 10 x queries x P@10 is a whole number of hits.
void expect_whole_hits(double p10, size_t queries) {
  const double hits = p10 * 10 * double(queries);
  EXPECT_NEAR(hits, std::round(hits), 1e-9) << "P@10 " << p10 << " over " << queries << " queries";
  EXPECT_GE(hits, 0.0);
  EXPECT_LE(hits, 10.0 * double(queries));
}

}  // namespace

TEST(RunConfig, PresetsResolveAndValidate) {
  for (const auto& name : run_preset_names()) {
    RunConfig c = RunConfig::from_json(run_preset(name));
    EXPECT_EQ(c.preset, name);
    EXPECT_EQ(c.preprocess.size, c.model.input_size) << name;
  }
  RunConfig paper = RunConfig::from_json(run_preset("paper"));
  EXPECT_EQ(paper.model.backbone, BackboneKind::densenet121);
  EXPECT_EQ(paper.model.input_size, 256);
  EXPECT_EQ(paper.sampler.batch_size, 32);
  EXPECT_EQ(paper.train.epochs, 20);
  EXPECT_DOUBLE_EQ(paper.optim.lr, 1e-3);
  EXPECT_EQ(paper.train.select, "train_loss");
  // cpu: the cross-validated recipe (docs/results.md); baseline-gem: the same without attention, batch-hard.
  RunConfig cpu = RunConfig::from_json(run_preset("cpu"));
  EXPECT_EQ(cpu.model.attention, AttentionKind::mirror);
  EXPECT_EQ(cpu.model.frozen_stages, 10);
  EXPECT_FALSE(cpu.model.spatial_attention);
  EXPECT_EQ(cpu.train.feature_cache, 8);
  EXPECT_EQ(cpu.train.select, "last");
  EXPECT_EQ(cpu.sampler.kind, SamplerKind::shuffled);
  EXPECT_EQ(cpu.sampler.batch_size, 16);
  EXPECT_DOUBLE_EQ(cpu.optim.lr, 1e-4);
  RunConfig base = RunConfig::from_json(run_preset("baseline-gem"));
  EXPECT_EQ(base.model.attention, AttentionKind::none);
  EXPECT_GT(base.loss["batch_hard"]["weight"].get<double>(), 0);
  EXPECT_EQ(base.model.frozen_stages, cpu.model.frozen_stages);
  EXPECT_EQ(base.sampler.to_json(), cpu.sampler.to_json());
  EXPECT_EQ(RunConfig::from_json(run_preset("cpu-finetune")).model.frozen_stages, 0);
  EXPECT_THROW(run_preset("nope"), Error);
  RunConfig o = resolve_run_config("cpu", "", {"optim.lr=0.01", "model.input_size=160"});
  EXPECT_DOUBLE_EQ(o.optim.lr, 0.01);
  EXPECT_EQ(o.preprocess.size, 160);
  EXPECT_THROW(resolve_run_config("cpu", "", {"optim.lrr=0.01"}), Error);
  EXPECT_THROW(resolve_run_config("cpu", "", {"optim.schedule=\"wavy\""}), Error);
  Json bad = run_preset("cpu");
  bad["preprocess"]["size"] = 300;
  EXPECT_THROW(RunConfig::from_json(bad), Error);
  // Round trip.
  EXPECT_EQ(RunConfig::from_json(o.to_json()).to_json(), o.to_json());
}

TEST(RunConfig, LearningRateSchedules) {
  OptimConfig c;
  c.lr = 1.0;
  EXPECT_DOUBLE_EQ(c.lr_at(3.7, 10), 1.0);
  c.schedule = "step";
  c.step_size = 2;
  c.step_gamma = 0.5;
  EXPECT_DOUBLE_EQ(c.lr_at(1.9, 10), 1.0);
  EXPECT_DOUBLE_EQ(c.lr_at(2.0, 10), 0.5);
  EXPECT_DOUBLE_EQ(c.lr_at(5.0, 10), 0.25);
  c.schedule = "cosine";
  c.warmup_epochs = 1;
  c.min_lr = 0.1;
  EXPECT_NEAR(c.lr_at(0.0, 11), 0.01, 1e-12);   // warm-up starts at lr/100
  EXPECT_NEAR(c.lr_at(0.5, 11), 0.505, 1e-12);  // halfway through the warm-up
  EXPECT_NEAR(c.lr_at(1.0, 11), 1.0, 1e-12);    // cosine starts at lr
  EXPECT_NEAR(c.lr_at(6.0, 11), 0.55, 1e-12);   // middle: (lr + min) / 2
  EXPECT_NEAR(c.lr_at(11.0, 11), 0.1, 1e-12);   // end: min_lr
}

TEST(Checkpoint, RoundTripAndRejections) {
  test::TempDir dir;
  Checkpoint c;
  c.meta = {{"config", run_preset("tiny")}, {"state", {{"epoch", 3}}}};
  c.model.insert("a.weight", torch::arange(6, torch::kFloat32).reshape({2, 3}));
  c.model.insert("a.count", torch::tensor(int64_t(7)));
  c.optimizer_state = std::string("opt\0state", 9);
  std::string p = dir.file("x.ckpt");
  save_checkpoint(p, c);
  Checkpoint r = load_checkpoint(p);
  EXPECT_EQ(r.meta["state"]["epoch"], 3);
  EXPECT_EQ(r.meta["format"], "fundus-checkpoint");
  EXPECT_TRUE(torch::equal(r.model["a.weight"], c.model["a.weight"]));
  EXPECT_EQ(r.model["a.count"].item<int64_t>(), 7);
  EXPECT_EQ(r.optimizer_state, c.optimizer_state);
  std::string bytes = read_file(p);
  write_file_atomic(p, bytes.substr(0, bytes.size() / 2));
  try {
    load_checkpoint(p);
    FAIL() << "truncated checkpoint accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  write_file_atomic(p, "PK\x03\x04 this is a zip, not a checkpoint");
  try {
    load_checkpoint(p);
    FAIL() << "foreign file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a checkpoint file"), std::string::npos) << e.what();
  }
}

// Issue 10 item 11: a checkpoint whose config holds absurd or out-of-range values is refused before
// any model is built, with the file named and the value as written (no LibTorch stack trace).
TEST(Checkpoint, AbsurdConfigValuesNameTheFileAndTheValue) {
  test::TempDir dir;
  auto message = [&](const std::function<void(Json&)>& edit) {
    Checkpoint c;
    c.meta = {{"config", run_preset("tiny")}};
    edit(c.meta["config"]);
    const std::string p = dir.file("bad.ckpt");
    save_checkpoint(p, c);
    try {
      load_trained_model(p);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string p = dir.file("bad.ckpt");
  std::string e = message([](Json& c) { c["model"]["head_classes"] = 1e9; });
  EXPECT_NE(e.find(p + ": config.model.head_classes: 1000000000 outside 0-1000"), std::string::npos) << e;
  e = message([](Json& c) { c["model"]["input_size"] = Json::parse("1e30"); });
  EXPECT_NE(e.find(p + ": config.model.input_size: 1e+30 is out of range"), std::string::npos) << e;
  e = message([](Json& c) { c["model"]["head_classes"] = -4; });
  EXPECT_NE(e.find("config.model.head_classes: -4 outside 0-1000"), std::string::npos) << e;
  e = message([](Json& c) { c["preprocess"]["mask_radius"] = 7; });
  EXPECT_NE(e.find(p + ": config.preprocess.mask_radius: must be in (0, 2], got 7"), std::string::npos) << e;
  e = message([](Json& c) { c["preprocess"]["fov_work_size"] = Json::parse("1e30"); });
  EXPECT_NE(e.find(p + ": config.preprocess.fov_work_size: 1e+30 is out of range"), std::string::npos) << e;
  e = message([](Json& c) { c["sampler"]["batch_size"] = 1000000000; });
  EXPECT_NE(e.find(p + ": config.sampler.batch_size: must be in 1..65536"), std::string::npos) << e;
  e = message([](Json& c) { c["train"]["workers"] = 1000000; });
  EXPECT_NE(e.find(p + ": config.train.workers: 1000000 outside 0-256"), std::string::npos) << e;
  for (const char* trace : {"Exception raised from", "frame #"}) EXPECT_EQ(e.find(trace), std::string::npos);
}

TEST(Trainer, ResumeReproducesUninterruptedRun) {
  test::TempDir dir;
  TrainSummary full = train_model(tiny_request(dir.file("full")));
  EXPECT_FALSE(full.interrupted);
  EXPECT_EQ(full.epochs_completed, 2);
  std::vector<double> expected = step_losses(dir.file("full"));
  ASSERT_GE(expected.size(), 4u);
  for (double l : expected) EXPECT_TRUE(std::isfinite(l));

  // Interrupt in the middle of the first epoch, then resume to the end.
  int64_t stop = int64_t(expected.size()) / 2 - 1;
  TrainSummary part =
      train_model(tiny_request(dir.file("resumed"), {"train.stop_after_steps=" + std::to_string(stop)}));
  EXPECT_TRUE(part.interrupted);
  EXPECT_EQ(part.steps, stop);
  TrainRequest again = tiny_request(dir.file("resumed"));
  again.resume = true;
  TrainSummary rest = train_model(again);
  EXPECT_FALSE(rest.interrupted);
  EXPECT_EQ(rest.steps, full.steps);
  std::vector<double> got = step_losses(dir.file("resumed"));
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_DOUBLE_EQ(got[i], expected[i]) << "step " << i + 1;
  EXPECT_DOUBLE_EQ(rest.best_value, full.best_value);

  // Outputs of a finished run.
  for (const char* f : {"config.json", "metrics.csv", "summary.json", "best.pth", "checkpoints/best.ckpt"})
    EXPECT_TRUE(file_exists(dir.file(std::string("full/") + f))) << f;
  Json summary = load_json_file(dir.file("full/summary.json"));
  EXPECT_TRUE(summary["last_validation"].contains("val_P@10"));
  double p10 = summary["last_validation"]["val_P@10"], chance = summary["last_validation"]["chance_P@10"];
  const Dataset manifest = load_dataset(synthetic_manifest()).dataset;
  expect_whole_hits(p10, manifest.subset("val").size());
  EXPECT_NEAR(chance, chance_p10(manifest.subset("val"), manifest.subset("train")), 1e-12);

  // A second run into the same folder must not overwrite it silently.
  EXPECT_THROW(train_model(tiny_request(dir.file("full"))), Error);
  // Resuming with a different configuration is refused.
  TrainRequest changed = tiny_request(dir.file("full"), {"optim.lr=0.5"});
  changed.resume = true;
  EXPECT_THROW(train_model(changed), Error);
}

// Eval-mode descriptors of a model trained from random initialisation for a few dozen steps.
DescriptorHealth health_after_training(const std::string& out, const std::vector<std::string>& overrides) {
  TrainRequest r = tiny_request(out, overrides);
  TrainSummary s = train_model(r);
  EXPECT_FALSE(s.interrupted);
  TrainedModel m = load_trained_model(s.best_checkpoint);
  EmbedOptions eo;
  eo.progress = false;
  Embeddings e = embed_dataset(*m.net, m.config.preprocess, load_dataset(synthetic_manifest()).dataset, eo);
  return assess_descriptors(e.data.data(), e.rows, e.dim);
}

TEST(Trainer, FromScratchDescriptorsAreNotCollapsedAfterBatchNormRecalibration) {
  test::TempDir dir;
  // 3 epochs of 3 batches: the running statistics still hold ~0.9^9 of their initial values.
  std::vector<std::string> o = {"train.epochs=3", "train.select=\"last\""};
  DescriptorHealth fixed = health_after_training(dir.file("recal"), o);
  EXPECT_EQ(fixed.status, "ok") << fixed.summary();
  EXPECT_LT(fixed.mean_cosine, 0.99) << fixed.summary();
  EXPECT_LT(fixed.nn_duplicate_share, 0.5) << fixed.summary();
  Json meta = load_checkpoint(dir.file("recal/checkpoints/best.ckpt")).meta;
  EXPECT_EQ(meta["batchnorm"]["recalibrated"], true);
  EXPECT_GT(meta["batchnorm"]["images"].get<int64_t>(), 0);
  // The same run without recalibration: the stale statistics collapse what the model outputs.
  o.push_back("train.bn_recalibration_images=0");
  DescriptorHealth stale = health_after_training(dir.file("stale"), o);
  EXPECT_TRUE(stale.flagged()) << stale.summary();
  // The epoch log carries the collapse guards.
  std::ifstream in(dir.file("recal/metrics.jsonl"));
  std::string line;
  bool seen = false;
  int steps = 0;
  while (std::getline(in, line)) {
    Json j = Json::parse(line);
    if (j["kind"] == "step") {  // each step says how long it waited for the loader, apart from its compute time
      ++steps;
      EXPECT_GE(j.at("data_wait_ms").get<double>(), 0.0);
      EXPECT_GT(j.at("seconds").get<double>(), 0.0);
    }
    if (j["kind"] != "epoch") continue;
    seen = true;
    EXPECT_GT(j["train_ftl_blind"].get<double>(), 0);
    EXPECT_GT(j["train_mean_cos"].get<double>(), -1);
  }
  EXPECT_TRUE(seen);
  EXPECT_GT(steps, 0);
}

TEST(Trainer, FeatureCacheTrainsTheUnfrozenStagesAndResumesExactly) {
  test::TempDir dir;
  std::vector<std::string> o = {"model.spatial_attention=false", "model.frozen_stages=12", "train.feature_cache=2",
                                "train.select=\"last\"", "train.epochs=3"};
  TrainSummary full = train_model(tiny_request(dir.file("full"), o));
  std::vector<double> expected = step_losses(dir.file("full"));
  ASSERT_GE(expected.size(), 6u);
  for (double l : expected) EXPECT_TRUE(std::isfinite(l));
  // Frozen stages keep their initial weights; the others moved.
  RunConfig cfg = resolve_run_config("tiny", "", o);
  StateDict trained = load_checkpoint(full.best_checkpoint).model;
  seed_torch(cfg.train.seed);
  RetrievalNet init(cfg.model, true);
  StateDict initial = module_state_dict(*init);
  EXPECT_TRUE(
      torch::equal(*trained.find("backbone.features.0.0.weight"), *initial.find("backbone.features.0.0.weight")));
  EXPECT_FALSE(
      torch::equal(*trained.find("backbone.features.18.0.weight"), *initial.find("backbone.features.18.0.weight")));
  // Interrupted and resumed: the same per-step losses (the cache is rebuilt identically).
  auto stop = std::vector<std::string>(o);
  stop.push_back("train.stop_after_steps=4");
  EXPECT_TRUE(train_model(tiny_request(dir.file("resumed"), stop)).interrupted);
  TrainRequest again = tiny_request(dir.file("resumed"), o);
  again.resume = true;
  train_model(again);
  std::vector<double> got = step_losses(dir.file("resumed"));
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_DOUBLE_EQ(got[i], expected[i]) << "step " << i + 1;
  // With a cache folder the second run computes nothing and trains identically.
  std::vector<std::string> on_disk = o;
  on_disk.push_back("train.feature_cache_dir=\"" + dir.file("features") + "\"");
  train_model(tiny_request(dir.file("disk1"), on_disk));
  train_model(tiny_request(dir.file("disk2"), on_disk));
  EXPECT_EQ(step_losses(dir.file("disk1")), step_losses(dir.file("disk2")));
  EXPECT_EQ(step_losses(dir.file("disk1")), expected) << "the folder changes nothing but the cost";
  EXPECT_FALSE(std::filesystem::is_empty(dir.file("features")));
  // More copies than epochs: only as many as the epochs read are built.
  std::vector<std::string> more = o;  // a later override wins
  more.push_back("train.feature_cache=5");
  more.push_back("train.feature_cache_dir=\"" + dir.file("features5") + "\"");
  train_model(tiny_request(dir.file("more"), more));
  std::set<std::string> copies_built;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.file("features5")))
    if (e.is_regular_file()) {
      const std::string stem = e.path().stem().string();  // <image hash>_<copy>
      copies_built.insert(stem.substr(stem.rfind('_')));
    }
  EXPECT_EQ(copies_built, (std::set<std::string>{"_0", "_1", "_2"})) << "3 epochs read copies 0, 1, 2";
  // A cache without frozen stages is a configuration error.
  EXPECT_THROW(resolve_run_config("tiny", "", {"train.feature_cache=2"}), Error);
}

TEST(CrossValidation, FoldsTrainEvaluateAndResume) {
  test::TempDir dir;
  CvOptions o;
  o.config = resolve_run_config("tiny", "", {"train.threads=2", "train.epochs=1", "train.select=\"last\""});
  o.data = synthetic_manifest();
  o.out_dir = dir.file("cv");
  o.folds = 2;
  o.seeds = {1, 2};
  o.postprocess = {"none", "pcaw"};
  o.progress = false;
  CvResult r = run_cross_validation(o);
  ASSERT_EQ(r.runs.size(), 8u);  // 2 seeds x 2 folds x 2 variants
  Dataset all = load_dataset(synthetic_manifest()).dataset;
  for (const auto& run : r.runs) {
    double p10 = run.values["P@10"], chance = run.chance["P@10"];
    Dataset fold =
        load_dataset(dir.file(strprintf("cv/seed%llu/fold%d/manifest.csv", (unsigned long long)run.seed, run.fold + 1)))
            .dataset;
    // The held-out fold (split "test") is queried against every other case.
    Dataset held_out, others;
    for (const auto& c : fold.records) (c.split == "test" ? held_out : others).records.push_back(c);
    expect_whole_hits(p10, held_out.size());
    EXPECT_NEAR(chance, chance_p10(held_out, others), 1e-12);
    // The held-out fold is disjoint from its gallery by patient: the manifest says so.
    std::set<std::string> test_patients, train_patients;
    for (const auto& c : fold.records) (c.split == "test" ? test_patients : train_patients).insert(c.patient_key());
    for (const auto& p : test_patients) EXPECT_EQ(train_patients.count(p), 0u) << p;
    EXPECT_EQ(fold.size(), all.size());
  }
  const Json& s = r.summary["none"]["P@10"];
  EXPECT_EQ(s["runs"], 4);
  EXPECT_EQ(s["seeds"], 2);
  EXPECT_TRUE(s["std"].is_number());
  for (const char* f : {"cv.json", "cv.csv", "cv.md", "cv_config.json", "seed1/fold1/embeddings.npy"})
    EXPECT_TRUE(file_exists(dir.file(std::string("cv/") + f))) << f;
  // Every metric of the run table reaches each output: runs, summary, cv.csv and cv.md.
  const std::string csv = read_file(dir.file("cv/cv.csv")), md = read_file(dir.file("cv/cv.md"));
  ASSERT_EQ(cv_metric_names().size(), 13u);
  for (const std::string& m : cv_metric_names()) {
    EXPECT_TRUE(r.runs[0].values.contains(m) && r.runs[0].chance.contains(m)) << m;
    EXPECT_TRUE(r.summary["none"].contains(m)) << m;
    EXPECT_NE(csv.find(strprintf("\n1,1,none,%s,%s,", m.c_str(), fmt6(r.runs[0].values[m]).c_str())), std::string::npos)
        << m << "\n"
        << csv;
    EXPECT_NE(md.find("| " + m + " | "), std::string::npos) << m;
  }
  EXPECT_FALSE(file_exists(dir.file("cv/seed1/fold1/run/checkpoints/last.ckpt"))) << "checkpoints are deleted";
  // Resume: nothing is trained again, and the numbers are the same.
  std::filesystem::remove(dir.file("cv/seed1/fold1/run/summary.json"));  // would be needed to retrain
  CvResult again = run_cross_validation(o);
  ASSERT_EQ(again.runs.size(), r.runs.size());
  for (size_t i = 0; i < r.runs.size(); ++i) EXPECT_EQ(again.runs[i].values, r.runs[i].values);
  // Another recipe in the same folder is refused.
  CvOptions other = o;
  other.config.optim.lr = 0.5;
  EXPECT_THROW(run_cross_validation(other), Error);
}

TEST(Trainer, WrongDataFailsBeforeCompute) {
  test::TempDir dir;
  TrainRequest missing = tiny_request(dir.file("a"));
  missing.data = dir.file("nope.csv");
  EXPECT_THROW(train_model(missing), Error);
  // A manifest whose validation split is empty.
  Dataset d = load_dataset(synthetic_manifest()).dataset;
  for (auto& r : d.records)
    if (r.split == "val") r.split = "train";
  write_manifest(dir.file("noval.csv"), d);
  TrainRequest noval = tiny_request(dir.file("b"));
  noval.data = dir.file("noval.csv");
  try {
    train_model(noval);
    FAIL() << "empty validation split accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no images in validation split 'val'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(file_exists(dir.file("b/checkpoints/last.ckpt")));
  TrainRequest nosplit = tiny_request(dir.file("c"));
  nosplit.train_split = "training";
  EXPECT_THROW(train_model(nosplit), Error);
  // Truncated manifest image: missing file.
  d.records[0].image_path = dir.file("gone.jpg");
  write_manifest(dir.file("gone.csv"), d);
  TrainRequest gone = tiny_request(dir.file("d"), {"train.select=\"train_loss\""});
  gone.data = dir.file("gone.csv");
  EXPECT_THROW(train_model(gone), Error);
}

TEST(Embed, DeterministicDescriptors) {
  test::TempDir dir;
  RunConfig cfg = resolve_run_config("tiny", "", {});
  torch::manual_seed(3);
  RetrievalNet net(cfg.model, false);
  Checkpoint c;
  c.meta = {{"config", cfg.to_json()}, {"state", Json::object()}};
  c.model = module_state_dict(*net);
  save_checkpoint(dir.file("m.ckpt"), c);
  TrainedModel m = load_trained_model(dir.file("m.ckpt"));
  EXPECT_EQ(m.checkpoint_sha256.size(), 64u);
  Dataset d = load_dataset(synthetic_manifest()).dataset.subset("test");
  ASSERT_GT(d.size(), 2u);
  EmbedOptions eo;
  eo.progress = false;
  eo.batch_size = 3;
  Embeddings a = embed_dataset(*m.net, m.config.preprocess, d, eo);
  eo.batch_size = 3;
  eo.workers = 1;
  Embeddings b = embed_dataset(*m.net, m.config.preprocess, d, eo);
  ASSERT_EQ(a.rows, int64_t(d.size()));
  EXPECT_EQ(a.dim, m.net->descriptor_dim());
  EXPECT_EQ(a.data, b.data);  // bit-identical for the same batches
  for (int64_t i = 0; i < a.rows; ++i) {
    double n = 0;
    for (int64_t j = 0; j < a.dim; ++j) n += double(a.row(i)[j]) * a.row(i)[j];
    EXPECT_NEAR(n, 1.0, 1e-4);
  }
  // Another batch composition: equal within float rounding.
  eo.batch_size = 8;
  Embeddings c8 = embed_dataset(*m.net, m.config.preprocess, d, eo);
  for (size_t i = 0; i < a.data.size(); ++i) EXPECT_NEAR(a.data[i], c8.data[i], 1e-4);
}
