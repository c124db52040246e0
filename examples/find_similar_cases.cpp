// Tutorial: the whole library in one page, from raw images to a similar-case search.
//
//   example_find_similar_cases [WORK_DIR] [--pretrained mobilenet_v2.pth]
//
// It makes a small synthetic dataset, splits it by patient, trains a tiny model for a few seconds,
// puts the training cases into a case store, and asks for the cases most similar to a test image.
// Each step is one call into the library; the `fundus` CLI is a thin layer over the same calls.
// With ImageNet weights (--pretrained) and more epochs the grades of the hits become meaningful;
// the point here is the API.
#include <iostream>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/query_report.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/store/case_store.h"
#include "fundus/train/trainer.h"

int main(int argc, char** argv) try {
  std::string work = "example-work", pretrained;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pretrained" && i + 1 < argc) pretrained = argv[++i];
    else work = a;
  }
  fundus::set_compute_threads(0);  // Debian's LibTorch starts with one thread: use every core
  fundus::make_dirs(work);

  // 1. Data: 60 synthetic fundus photographs (30 patients, two eyes each) with graded lesions.
  fundus::SynthOptions synth;
  synth.count = 60;
  synth.size = 128;
  synth.seed = 3;
  synth.out_dir = fundus::join_path(work, "synth");
  fundus::SynthDatasetResult images = fundus::generate_synthetic_dataset(synth);

  // 2. A patient-disjoint, grade-stratified split, saved as a manifest with a `split` column.
  fundus::Dataset dataset = fundus::load_dataset(images.labels_csv).dataset;
  fundus::Dataset split = fundus::split_dataset(dataset, fundus::SplitOptions{});
  const std::string manifest = fundus::join_path(work, "manifest.csv");
  fundus::write_manifest(manifest, split);

  // 3. Train: presets are JSON run configs; overrides use the same `key=value` as `fundus train --set`.
  fundus::TrainRequest train;
  // Without ImageNet weights a ResNet-18 trains from scratch more gracefully than MobileNetV2, whose
  // ReLU6 activations saturate after one short epoch and make every descriptor alike.
  std::vector<std::string> overrides = {"train.epochs=1"};
  if (pretrained.empty()) overrides.push_back("model.backbone=\"resnet18\"");
  else overrides.push_back("model.pretrained=\"" + pretrained + "\"");
  train.config = fundus::resolve_run_config("tiny", "", overrides);
  train.data = manifest;
  train.out_dir = fundus::join_path(work, "run");
  fundus::TrainSummary trained = fundus::train_model(train);
  std::cout << "trained " << trained.steps << " steps -> " << trained.best_checkpoint << "\n";

  // 4. A case store (one SQLite file) holding the gallery: the train and val cases.
  const std::string store_path = fundus::join_path(work, "cases.db");
  {
    fundus::CaseStore store(store_path, fundus::StoreOptions{});
    store.add_cases(split.subset("train,val"));
  }

  // 5. The search engine embeds cases without a vector, builds the index and answers queries.
  fundus::EngineOptions engine_options;
  engine_options.store_path = store_path;
  engine_options.checkpoint_path = trained.best_checkpoint;
  fundus::SearchEngine engine(engine_options);
  const fundus::CaseRecord query = split.subset("test").records.front();
  fundus::QueryOptions options;
  options.k = 5;
  fundus::QueryResult result = engine.query_file(query.image_path, options);
  std::cout << "query " << query.id << " (grade " << query.grade << ")\n" << fundus::format_query_result(result);
  // Even a model trained for one epoch tells images apart: equal similarities mean a broken model.
  bool distinct = result.hits.size() == 5 && result.hits.front().similarity > result.hits.back().similarity;
  return distinct ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
