// Tutorial 1: train a retrieval model on a folder-per-grade dataset, through the library API.
//
//   example_train_on_grade_folders [WORK_DIR] [--data ROOT] [--epochs N]
//
// The simplest way to bring your own photographs is one folder per DR grade:
//
//   ROOT/0/Patient001_L.jpg  ROOT/0/Patient001_R.jpg  ROOT/2/Patient007_L.jpg  ...  ROOT/4/...
//
// The folder name starts with the grade 0-4 ("0", "2_moderate"). Patients and eyes are read from file
// names such as Patient002_L.jpg or 10_left.jpeg, so that both eyes of a patient stay on the same
// side of every split. Without --data the example first writes such a folder of 50 synthetic
// photographs (30 s on two cores in all), so it runs anywhere.
//
// What it writes into WORK_DIR (default "example-train"): grades/ (the synthetic input),
// manifest.csv (the split), run/ (checkpoints/best.ckpt, metrics.csv, summary.json). The checkpoint
// is what example_search_case_store, `fundus serve` (examples/http_api.sh) and `fundus query` load.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/dataset_problem.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "fundus/model/runtime.h"
#include "fundus/train/trainer.h"

namespace fs = std::filesystem;

namespace {

// Synthetic fundus photographs with graded lesions, re-filed as ROOT/<grade>/<id>.jpg: the layout a
// user's own folder would have.
std::string write_grade_folders(const std::string& work) {
  fundus::SynthOptions synth;
  synth.count = 50;  // 25 patients, both eyes
  synth.size = 128;
  synth.seed = 7;
  synth.out_dir = fundus::join_path(work, "synth");
  fundus::generate_synthetic_dataset(synth);
  const std::string root = fundus::join_path(work, "grades");
  const fundus::Dataset synthetic = fundus::load_dataset(fundus::join_path(synth.out_dir, "labels.csv")).dataset;
  for (const fundus::CaseRecord& c : synthetic.records) {
    const fs::path to = fs::path(root) / std::to_string(c.grade) / fs::path(c.image_path).filename();
    fs::create_directories(to.parent_path());
    fs::copy_file(c.image_path, to, fs::copy_options::overwrite_existing);
  }
  return root;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string work = "example-train", data;
  int epochs = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--epochs" && i + 1 < argc) epochs = std::stoi(argv[++i]);
    else work = a;
  }
  fundus::set_compute_threads(0);  // Debian's LibTorch starts with one thread: use every core
  fundus::make_dirs(work);

  // 1. The dataset: a folder per grade (yours with --data, or a synthetic one).
  if (data.empty()) data = write_grade_folders(work);

  // 2. Read it. load_dataset recognises the layout (DatasetFormat::folders) and reports every
  //    problem (unreadable name, wrong folder) with the file it concerns instead of guessing.
  fundus::LoadResult loaded = fundus::load_dataset(data);
  if (!loaded.problems.empty()) {
    std::cerr << fundus::format_problems(loaded.problems, 20);
    return 1;
  }
  const fundus::Dataset& dataset = loaded.dataset;
  std::cout << "1. " << data << ": " << dataset.size() << " images read as "
            << (loaded.format == fundus::DatasetFormat::folders ? "grade folders" : "a CSV") << "\n";

  // 3. A patient-disjoint, grade-stratified split (train / val / test), saved as our manifest CSV:
  //    the trainer, `fundus store add` and `fundus eval` all read it.
  fundus::SplitOptions split_options;
  split_options.val_fraction = 0.2;
  fundus::Dataset split = fundus::split_dataset(dataset, split_options);
  const std::string manifest = fundus::join_path(work, "manifest.csv");
  fundus::write_manifest(manifest, split);
  std::cout << "2. split: " << split.subset("train").size() << " train, " << split.subset("val").size() << " val, "
            << split.subset("test").size() << " test images -> " << manifest << "\n";

  // 4. A run configuration: a preset (JSON) plus `key=value` overrides, as `fundus train --preset
  //    tiny --set train.epochs=1` takes them. "tiny" is a small random-init network at 64 px for smoke
  //    runs ("cpu" is the real recipe: ImageNet MobileNetV2 at 224 px, 10 stages frozen, 8 epochs).
  //    From scratch and for one epoch a ResNet-18 keeps its descriptors apart better than
  //    MobileNetV2, whose ReLU6 activations saturate early.
  fundus::TrainRequest request;
  request.config =
      fundus::resolve_run_config("tiny", "", {"train.epochs=" + std::to_string(epochs), "model.backbone=\"resnet18\""});
  request.data = manifest;
  request.out_dir = fundus::join_path(work, "run");
  if (fs::exists(request.out_dir)) fs::remove_all(request.out_dir);  // the trainer never overwrites a run

  // 5. Train. Checkpoints are written every epoch (Ctrl-C saves one, request.resume continues);
  //    each epoch ends with a retrieval validation: val queried against train.
  fundus::TrainSummary summary = fundus::train_model(request);

  // 6. What the run gives: the chosen checkpoint and its validation numbers beside their chance floor
  //    (what a model that learned nothing would score on this grade mix).
  const fundus::Json& v = summary.last_validation;
  std::cout << "3. trained " << summary.steps << " steps in " << summary.epochs_completed << " epoch(s), "
            << std::lround(summary.images_per_second) << " images/s\n"
            << "   validation P@10 " << v.value("val_P@10", 0.0) << " (chance " << v.value("chance_P@10", 0.0)
            << "), descriptors " << v.value("val_health", std::string("?")) << "\n"
            << "   best checkpoint: " << summary.best_checkpoint << "\n";
  const bool ok = summary.steps > 0 && fundus::file_exists(summary.best_checkpoint) &&
                  std::isfinite(v.value("val_P@10", std::nan("")));
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
