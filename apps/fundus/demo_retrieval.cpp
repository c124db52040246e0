// `fundus demo`, steps 6-8: case store + embeddings + index, a few queries with contact sheets, and
// the honest evaluation of the test split against the train+val gallery.
#include <filesystem>
#include <iostream>

#include "demo_steps.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/image_io.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/eval_run.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/query_report.h"
#include "fundus/retrieval/search_engine.h"

namespace fundus::cli {

namespace {

// One test query per grade present (lowest, middle, highest), so the sheets show the grades apart.
std::vector<CaseRecord> pick_queries(const Dataset& test, size_t count) {
  std::vector<CaseRecord> picked;
  for (int grade : {0, 2, 4, 1, 3}) {
    for (const CaseRecord& r : test.records)
      if (r.grade == grade) {
        picked.push_back(r);
        break;
      }
    if (picked.size() == count) break;
  }
  return picked;
}

}  // namespace

void run_demo_retrieval(const DemoOptions& o, const std::string& split_dir, const std::string& checkpoint) {
  const std::string manifest = join_path(split_dir, "manifest.csv"), store_path = join_path(o.out, "cases.db"),
                    cache_dir = join_path(o.out, "cache");
  Dataset all = load_dataset(manifest).dataset;
  ModelRunner model(checkpoint);  // embeds the gallery (step 6) and evaluates (step 8)

  banner(6, "case store (SQLite) + embeddings + vector index: the train and val cases");
  // A fresh collection: the database, its SQLite journal files and its index files.
  for (const auto& entry : std::filesystem::directory_iterator(o.out))
    if (starts_with(entry.path().filename().string(), "cases.db")) std::filesystem::remove(entry.path());
  {
    CaseStore store(store_path, {});
    AddCasesResult added = store.add_cases(all.subset("train,val"), o.threads);
    std::cout << "added " << added.added << " cases to " << store_path << "\n";
    EmbedStoreOptions eo;
    eo.cache_dir = cache_dir;
    eo.threads = o.threads;
    std::cout << embed_store(store, model, eo).summary() << "\n";
  }

  banner(7, "query: the most similar graded cases for a few test images");
  EngineOptions engine_options;
  engine_options.store_path = store_path;
  engine_options.checkpoint_path = checkpoint;
  engine_options.threads = o.threads;
  engine_options.create_store = false;
  SearchEngine engine(engine_options);
  const std::string sheets = join_path(o.out, "queries");
  make_dirs(sheets);
  QueryOptions qo;
  qo.k = 8;
  for (const CaseRecord& r : pick_queries(all.subset("test"), 3)) {
    QueryResult result = engine.query_file(r.image_path, qo);
    std::string sheet = join_path(sheets, r.id + ".jpg");
    write_image_rgb(sheet, render_query_sheet(result, engine.preprocess_options()), 90);
    std::cout << "query " << r.id << " (true grade " << r.grade << ")"
              << strprintf(", %.0f ms:\n", result.timing_ms.value("total", 0.0)) << format_query_result(result)
              << "contact sheet -> " << sheet << "\n\n";
  }

  banner(8, "evaluate: test queries against the train+val gallery, with chance floors");
  EvalRunOptions eval;
  eval.data = manifest;
  eval.out_dir = join_path(o.out, "eval");
  eval.cache_dir = cache_dir;
  eval.threads = o.threads;
  eval.exclude_same_patient = true;
  EvalRunResult r = run_evaluation(model, eval);
  std::cout << strprintf("%-12s %8s %8s\n", "metric", "value", "chance");
  for (const char* metric : {"P@1", "P@10", "mAP@10", "MAP@R", "NDCG@10", "kNN-acc"})
    std::cout << strprintf("%-12s %8.3f %8.3f\n", metric, r.report.value("micro", metric),
                           r.report.chance("micro", metric));
  std::cout << strprintf("%-12s %8.3f %8.3f\n", "macro P@10", r.report.value("macro", "P@10"),
                         r.report.chance("macro", "P@10"))
            << strprintf("%-12s %8.3f %8.3f\n", "kNN QWK", r.report.knn_qwk, r.report.chance_knn_qwk) << "("
            << r.report.queries << " test queries, " << r.report.gallery
            << " gallery cases, same-patient cases excluded)\n";
  for (const std::string& f : r.files)
    if (ends_with(f, ".html") || ends_with(f, ".md")) std::cout << "wrote " << f << "\n";
  std::cout << "\nnext: fundus serve --store " << store_path << " --model " << checkpoint
            << "   (then open http://127.0.0.1:8080)\n";
}

}  // namespace fundus::cli
