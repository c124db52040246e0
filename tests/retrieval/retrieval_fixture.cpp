#include "retrieval_fixture.h"

#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/run_config.h"
#include "fundus/infer/tensor.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "fundus/model/sync_batchnorm.h"

namespace fundus::test {

namespace {

// Every synthetic image of the fixture's first 20, preprocessed: [n,3,s,s] in [0,1].
torch::Tensor calibration_images(const PreprocessOptions& pre) {
  std::vector<cv::Mat> images;
  for (size_t i = 0; i < 20; ++i) {
    SynthCaseSpec spec;
    spec.size = 128;
    spec.grade = int(i % 5);
    spec.right_eye = i % 2;
    spec.layout_seed = 100 + i;
    spec.eye_seed = 200 + i;
    images.push_back(preprocess_fundus(render_synthetic_fundus(spec).image, pre).image);
  }
  return images_to_tensor(images, Normalization::none());
}

// A randomly initialised net in eval mode with the default BatchNorm statistics (mean 0, variance 1)
// saturates: every image gets practically the same descriptor and a flat attention map. One
// train-mode pass with momentum 1 sets each BatchNorm's running statistics to those of real images
// (layer by layer, as eval mode will see them), which makes the random features informative.
void calibrate_batchnorm(RetrievalNetImpl& net, const torch::Tensor& images) {
  std::vector<fundus::SyncBatchNorm2dImpl*> bns;
  for (const auto& m : net.modules())
    if (auto* bn = dynamic_cast<fundus::SyncBatchNorm2dImpl*>(m.get())) bns.push_back(bn);
  for (auto* bn : bns) bn->options.momentum(1.0);
  {
    torch::NoGradGuard no_grad;
    net.train();
    net.forward(images);
  }
  for (auto* bn : bns) bn->options.momentum(0.1);
  net.eval();
}

}  // namespace

void write_random_checkpoint(const std::string& path, const std::string& attention, uint64_t seed) {
  Json config = run_preset("tiny");
  config["model"]["attention"] = attention;
  RunConfig rc = RunConfig::from_json(config, "test config");
  seed_torch(seed);
  RetrievalNet net(rc.model, /*load_weights=*/false);
  calibrate_batchnorm(*net, calibration_images(rc.preprocess));
  Checkpoint c;
  c.meta = {{"config", rc.to_json()}, {"state", Json::object()}};
  c.model = module_state_dict(*net);
  save_checkpoint(path, c);
}

const RetrievalData& retrieval_data() {
  static std::unique_ptr<RetrievalData> data = [] {
    set_progress_quiet(true);
    set_compute_threads(2);
    auto d = std::make_unique<RetrievalData>();
    d->synth_dir = d->dir.file("synth");
    SynthOptions so;
    so.count = 30;
    so.size = 128;
    so.seed = 5;
    so.out_dir = d->synth_dir;
    generate_synthetic_dataset(so);
    Dataset ds = load_dataset(join_path(d->synth_dir, "labels.csv")).dataset;
    // Image-level split: fellow eyes land on both sides, so the leakage effect is measurable.
    SplitOptions sp;
    sp.mode = SplitMode::image;
    sp.test_fraction = 0.3;
    Dataset split = split_dataset(ds, sp);
    write_split(d->dir.file("split"), split, summarize_split(split, sp));
    d->manifest = d->dir.file("split/manifest.csv");
    d->dataset = load_dataset(d->manifest).dataset;
    d->ckpt_mirror = d->dir.file("mirror.ckpt");
    d->ckpt_none = d->dir.file("none.ckpt");
    write_random_checkpoint(d->ckpt_mirror, "mirror", 3);
    write_random_checkpoint(d->ckpt_none, "none", 3);
    return d;
  }();
  return *data;
}

std::unique_ptr<CaseStore> make_store(const std::string& path, size_t count) {
  auto store = std::make_unique<CaseStore>(path);
  Dataset ds = retrieval_data().dataset;
  if (count > 0 && count < ds.records.size()) ds.records.resize(count);
  store->add_cases(ds, 1);
  return store;
}

}  // namespace fundus::test
