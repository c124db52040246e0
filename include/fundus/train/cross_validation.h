// Cross-validation of a training recipe on one labelled set: `fundus cv`. How recipes are chosen
// (never on a test split): patient-disjoint, grade-stratified K folds (data/split.h assign_folds);
// for every seed and fold the recipe is trained on the other folds and the held-out fold is queried
// against them (retrieval metrics with chance floors, eval/retrieval_eval.h), optionally after
// retrieval post-processing (eval/postprocess.h), all evaluated on the same trained model.
//
// Output folder (resumable: a fold whose embeddings exist is not trained again; a fold interrupted
// mid-training continues from its checkpoint; post-processing variants are re-evaluated from the
// saved embeddings, so adding one later costs no training):
//   cv_config.json                 the recipe and the CV options (a different recipe in the same
//                                  folder is an error)
//   seed<S>/fold<k>/manifest.csv   the fold's data (split train / val (inner, when the recipe
//                                  selects on validation) / test = the held-out fold)
//   seed<S>/fold<k>/run/           the training run (metrics.jsonl, config.json; checkpoints are
//                                  deleted after embedding unless keep_checkpoints)
//   seed<S>/fold<k>/embeddings.npy every image's descriptor (manifest order) + fold.json (ids, wall
//                                  time, descriptor health)
//   cv.json, cv.csv, cv.md         every run's metrics and the summary (mean +- std over folds and
//                                  seeds, the spread of per-seed means, chance floors)
// Torch-free header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/infer/run_config.h"

namespace fundus {

struct CvOptions {
  RunConfig config;  // the recipe; train.seed is replaced by each seed
  std::string data;  // labelled dataset (its split column, if any, is ignored)
  std::string out_dir;
  int folds = 5;
  uint64_t fold_seed = 11;  // the fold assignment: keep it fixed when comparing recipes
  std::vector<uint64_t> seeds = {1};
  std::vector<std::string> postprocess = {"none"};  // eval/postprocess.h specs, each evaluated
  double inner_val_fraction = 0.15;                 // when the recipe selects on validation: a patient-disjoint
                                                    // share of the training folds becomes its validation split
  bool keep_checkpoints = false;
  bool progress = true;

  Json to_json() const;
};

/// The numbers reported for every run and in the summary, in this order.
const std::vector<std::string>& cv_metric_names();

struct CvRun {
  uint64_t seed = 0;
  int fold = 0;
  std::string postprocess;
  Json values;  // metric name -> value
  Json chance;  // metric name -> chance floor
  Json health;  // descriptor health of the fold's gallery (eval/descriptor_health.h)
  double train_seconds = 0;
};

struct CvResult {
  std::vector<CvRun> runs;
  Json summary;       // per post-processing: metric -> {mean, std, min, max, chance, seed_std}
  std::string table;  // the Markdown summary (also cv.md)
};

/// Runs (or resumes) the cross-validation. Throws fundus::Error for bad data (listed), too few
/// patients for the folds, a recipe that differs from the one already in out_dir, or a failed run.
CvResult run_cross_validation(const CvOptions& options);

}  // namespace fundus
