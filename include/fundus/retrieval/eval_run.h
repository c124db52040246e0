// `fundus eval`: embed a dataset's query and gallery splits with a trained model, evaluate retrieval
// (eval/retrieval_eval.h) and write the reports.
//
// The evaluation runs twice: with the requested same-patient setting and with the other one, so
// every report states how much fellow-eye / repeat-visit leakage changes the numbers (the "leakage
// effect": P@10, mAP@10, MAP@R, micro and macro, with and without same-patient gallery items).
//
// Files written to out_dir (atomically):
//   eval.json       RetrievalReport::to_json() of the requested setting, plus "leakage",
//                   "other_setting" (the other run's to_json()), "model", "data", "queries", "gallery",
//                   "descriptor_health" (eval/descriptor_health.h of both sides), "warnings"
//   eval.csv        RetrievalReport::to_csv()
//   eval.md         the Markdown tables (per grade, micro, macro, chance floors) + the leakage table
//   per_query.csv   RetrievalReport::per_query_csv()
//   report.html     self-contained HTML (eval/report.h) with example-query contact sheets
//   config.json     the resolved options and the model's run configuration
// Torch-free header. Errors (fundus::Error): bad manifest rows (listed), empty splits, unreadable images.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/core/json.h"
#include "fundus/eval/report.h"
#include "fundus/eval/retrieval_eval.h"
#include "fundus/infer/run_config.h"

namespace fundus {

class ModelRunner;

struct EvalRunOptions {
  std::string data;              // manifest (or any dataset load_dataset reads) with a split column
  std::string queries = "test";  // comma-separated splits
  std::string gallery = "train,val";
  std::string out_dir;    // "" = compute only, write nothing
  std::string cache_dir;  // preprocessed-image cache, "" = none
  bool exclude_same_patient = false;
  std::string relevance = "grade";  // grade | referable
  std::vector<int> ks = {1, 5, 10, 20, 50};
  int knn_k = 10;
  int64_t batch_size = kInferenceBatch;
  int workers = 2;  // decode/preprocess threads
  int threads = 0;  // evaluation threads (0 = all cores)
  bool progress = true;
  int example_queries = 5;           // contact sheets in report.html (one per grade first)
  int example_k = 8;                 // hits per contact sheet
  std::string postprocess = "none";  // eval/postprocess.h spec applied before evaluating (pcaw, aqe, ...)

  Json to_json() const;
};

struct EvalRunResult {
  RetrievalReport report;  // the requested same-patient setting
  RetrievalReport other;   // the other setting
  std::vector<LeakageRow> leakage;
  std::string markdown;            // eval.md
  Json json;                       // eval.json
  Json config;                     // config.json
  std::vector<std::string> files;  // written paths
  Dataset queries, gallery;
  int64_t dim = 0;
  std::vector<float> query_vectors, gallery_vectors;  // row-major, in the order of queries / gallery
                                                      // (after post-processing; dim likewise)
  Json health;                        // descriptor health of "gallery" and "queries" (also in eval.json)
  std::vector<std::string> warnings;  // flagged descriptors (also in eval.md, report.html, the log)
};

EvalRunResult run_evaluation(ModelRunner& model, const EvalRunOptions& options);

}  // namespace fundus
