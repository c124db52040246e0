// Shared inputs of the retrieval tests: a small synthetic dataset (images + lesion masks) and
// randomly initialised tiny checkpoints written with save_checkpoint, created once per process.
#pragma once

#include <memory>
#include <string>

#include "fundus/core/case.h"
#include "fundus/store/case_store.h"
#include "test_support.h"

namespace fundus::test {

struct RetrievalData {
  TempDir dir;
  std::string synth_dir;    // images/, masks/, labels.csv
  std::string manifest;     // the synthetic set with a patient-disjoint split column
  std::string ckpt_mirror;  // tiny MobileNetV2 + mirror attention, 64 px
  std::string ckpt_none;    // the same without attention
  Dataset dataset;          // the manifest's records
};

/// Built on first use: 30 synthetic images (128 px, 15 patients, every grade), the split manifest
/// and the two checkpoints.
const RetrievalData& retrieval_data();

/// A new store in `dir` holding every case of retrieval_data() (or the first `count`).
std::unique_ptr<CaseStore> make_store(const std::string& path, size_t count = 0);

/// Writes a checkpoint of a randomly initialised net of the "tiny" preset with model.attention set.
void write_random_checkpoint(const std::string& path, const std::string& attention, uint64_t seed);

}  // namespace fundus::test
