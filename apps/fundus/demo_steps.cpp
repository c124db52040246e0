#include "demo_steps.h"
#include "commands.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "fundus/data/validate.h"
#include "fundus/model/weights_hub.h"
#include "fundus/train/trainer.h"

namespace fundus::cli {

namespace {

// ImageNet weights make the short demo training meaningful; the project works without them.
std::string find_pretrained(const std::string& given) {
  // A path, "imagenet" or a weights name; resolve_pretrained throws naming the fetch command when a
  // named file is not cached.
  if (!given.empty()) {
    std::string path = resolve_pretrained(given, "mobilenet_v2");
    FUNDUS_CHECK(file_exists(path), given << ": pretrained weights not found");
    return path;
  }
  const char* env = std::getenv("FUNDUS_PRETRAINED");
  if (env && *env) return find_pretrained(env);
  // torch.hub's cache (what `fundus model fetch mobilenet_v2` and torchvision write), then ../shared.
  if (const KnownWeights* w = find_cached_weights("mobilenet_v2")) return cached_weights_path(*w);
  for (const std::string& c : {std::string("../shared/models/mobilenet_v2_imagenet1k.pth"),
                               std::string(FUNDUS_SHARED_DIR) + "/models/mobilenet_v2_imagenet1k.pth"})
    if (file_exists(c)) return c;
  return "";
}
}  // namespace

void banner(int step, const std::string& title) {
  std::cout << "\n== " << step << ". " << title << " ==\n" << std::flush;
}

void run_demo(const DemoOptions& o) {
  auto start = std::chrono::steady_clock::now();
  if (o.fresh) std::filesystem::remove_all(o.out);
  make_dirs(o.out);
  const std::string synth_dir = join_path(o.out, "synth"), split_dir = join_path(o.out, "split"),
                    run_dir = join_path(o.out, "run");
  std::cout << "fundus demo: the whole pipeline on synthetic fundus images -> " << o.out << "\n"
            << "(research tool, not a diagnostic device)\n";

  banner(1, "generate synthetic fundus photographs with graded lesions");
  SynthOptions so;
  so.count = o.count;
  so.size = 256;
  so.seed = o.seed;
  so.out_dir = synth_dir;
  so.threads = o.threads;
  SynthDatasetResult synth = generate_synthetic_dataset(so);
  std::cout << format_synth_summary(synth);

  banner(2, "validate the dataset");
  ValidateOptions vo;
  vo.threads = o.threads;
  ValidationResult valid = validate_dataset(synth.labels_csv, {}, vo);
  std::cout << validation_summary(valid) << "\n";
  const Dataset& dataset = require_valid(valid, false);

  banner(3, "split by patient, stratified by grade");
  SplitOptions sp;
  sp.seed = o.seed;
  Dataset split = split_dataset(dataset, sp);
  SplitSummary summary = summarize_split(split, sp);
  write_split(split_dir, split, summary);
  std::cout << format_split_summary(summary);

  banner(4, "preprocess: field-of-view crop (before/after images)");
  std::vector<InspectionInput> inputs;
  for (size_t i = 0; i < split.records.size() && inputs.size() < 4; i += split.records.size() / 4)
    inputs.push_back({split.records[i].id, split.records[i].image_path});
  PreprocessOptions po;
  po.size = o.input_size;
  Json images = write_preprocess_inspection(inputs, po, join_path(o.out, "preprocess"), o.threads);
  std::cout << format_inspection_table(images) << "-> " << join_path(o.out, "preprocess") << "\n";

  banner(5, "train the retrieval network (mirror attention + GeM + fine triplet loss)");
  const std::string pretrained = o.pretrained == "none" ? "" : find_pretrained(o.pretrained);
  std::vector<std::string> overrides = {"model.input_size=" + std::to_string(o.input_size),
                                        "train.threads=" + std::to_string(o.threads),
                                        "train.cache_dir=\"" + join_path(o.out, "cache") + "\""};
  std::string preset;
  if (!pretrained.empty()) {
    // The cpu recipe, shortened: ImageNet features need only a few epochs on the synthetic set.
    preset = "cpu";
    overrides.push_back("model.pretrained=\"" + pretrained + "\"");
    overrides.push_back("train.epochs=" + std::to_string(o.epochs > 0 ? o.epochs : 4));
    overrides.push_back("optim.lr=0.0005");
    overrides.push_back("optim.warmup_epochs=0.5");
    std::cout << "recipe: cpu (MobileNetV2 with ImageNet weights from " << pretrained << ")\n";
  } else {
    preset = "scratch";
    overrides.push_back("train.epochs=" + std::to_string(o.epochs > 0 ? o.epochs : 12));
    std::cout << "recipe: scratch: no ImageNet weights were found (looked in " << hub_checkpoint_dir()
              << " and ../shared/models), so a small CNN (convnet4) learns from random initialisation.\n"
              << "For the cpu recipe (MobileNetV2, ImageNet weights, much better on real photographs) run\n"
              << "  fundus model fetch mobilenet_v2\n"
              << "once, or copy torchvision's mobilenet_v2-7ebf99e0.pth into that folder (docs/weights.md).\n";
  }
  TrainRequest tr;
  tr.config = resolve_run_config(preset, "", overrides);
  tr.data = join_path(split_dir, "manifest.csv");
  tr.out_dir = run_dir;
  std::filesystem::remove_all(run_dir);  // the demo always trains afresh
  TrainSummary ts = train_model(tr);
  std::cout << strprintf("trained %lld steps at %.1f img/s; ", (long long)ts.steps, ts.images_per_second)
            << describe_selection(ts) << "\n";
  if (ts.last_validation.is_object())
    std::cout << strprintf("validation P@10 %.3f (chance %.3f), macro P@10 %.3f (chance %.3f)\n",
                           ts.last_validation.value("val_P@10", 0.0), ts.last_validation.value("chance_P@10", 0.0),
                           ts.last_validation.value("val_macro_P@10", 0.0),
                           ts.last_validation.value("chance_macro_P@10", 0.0));

  run_demo_retrieval(o, split_dir, ts.best_checkpoint);

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "\ndemo finished in " << strprintf("%.0f", seconds) << " s; everything is in " << o.out << "\n";
}

}  // namespace fundus::cli
