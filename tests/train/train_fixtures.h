// Fixtures shared by the trainer tests: a small synthetic dataset and the per-step loss log.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/split.h"
#include "fundus/data/synth.h"
#include "test_support.h"

namespace fundus::test {

// One synthetic dataset (40 images, 128 px, split 60/20/20) per test program (generated once, ~2 s).
inline const std::string& synthetic_manifest() {
  static TempDir* dir = new TempDir();  // lives for the whole test program
  static std::string manifest = [] {
    SynthOptions o;
    o.count = 40;
    o.size = 128;
    o.seed = 5;
    o.out_dir = dir->file("synth");
    generate_synthetic_dataset(o);
    Dataset d = load_dataset(dir->file("synth/labels.csv")).dataset;
    SplitOptions so;
    so.val_fraction = 0.2;
    so.test_fraction = 0.2;
    Dataset s = split_dataset(d, so);
    write_split(dir->file("split"), s, summarize_split(s, so));
    return dir->file("split/manifest.csv");
  }();
  return manifest;
}

// The "step" rows of RUN/metrics.jsonl, in order.
inline std::vector<Json> step_rows(const std::string& run) {
  std::vector<Json> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    Json j = Json::parse(line);
    if (j["kind"] == "step") out.push_back(j);
  }
  return out;
}

inline std::vector<double> step_losses(const std::string& run) {
  std::vector<double> out;
  for (const Json& j : step_rows(run)) out.push_back(j["loss"].get<double>());
  return out;
}

}  // namespace fundus::test
