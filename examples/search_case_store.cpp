// Tutorial 2: build a case store and search it from C++ (store, embedding, vector index, search engine).
//
//   example_search_case_store CHECKPOINT DATA [WORK_DIR]
//
// CHECKPOINT is a trained model (run/checkpoints/best.ckpt of example_train_on_grade_folders or of
// `fundus train`); DATA is any dataset `fundus dataset` reads: a folder per grade, our manifest, a
// labels CSV (e.g. ../shared/data/rahim-dr-tiny, or the grades/ folder tutorial 1 wrote).
//
// The layers, bottom up:
//   CaseStore    (fundus/store/case_store.h)      one SQLite file: cases, models, descriptors
//   ModelRunner  (fundus/retrieval/model_runner.h) a checkpoint: preprocessed image -> descriptor
//   embed_store  (fundus/retrieval/embed_store.h)  fills the store with one model's descriptors
//   VectorIndex  (fundus/index/)                   exact, HNSW or IVF-PQ k-NN over descriptors
//   SearchEngine (fundus/retrieval/search_engine.h) all of the above behind query_file(): what
//                `fundus query` and `fundus serve` use
// Output in WORK_DIR (default "example-search"): cases.db and its index file.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fundus/index/index_factory.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/query_report.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/store/case_store.h"

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: example_search_case_store CHECKPOINT DATA [WORK_DIR]\n";
    return 2;
  }
  const std::string checkpoint = argv[1], data = argv[2], work = argc > 3 ? argv[3] : "example-search";
  fundus::set_compute_threads(0);
  fundus::make_dirs(work);
  const std::string store_path = fundus::join_path(work, "cases.db");
  std::filesystem::remove(store_path);  // a fresh store each run

  // 1. The gallery: every case of DATA but the last, which we keep as a new patient's photograph.
  fundus::Dataset dataset = fundus::load_dataset(data).dataset;
  if (dataset.size() < 6) {
    std::cerr << data << ": need at least 6 images\n";
    return 1;
  }
  const fundus::CaseRecord query = dataset.records.back();
  dataset.records.pop_back();
  fundus::ModelRunner model(checkpoint);
  {
    fundus::CaseStore store(store_path);
    fundus::AddCasesResult added = store.add_cases(dataset);  // validates ids, grades, text fields
    std::cout << "1. store: " << added.added << " cases -> " << store_path << "\n";

    // 2. Descriptors: embed_store registers the model in the store and embeds every case that has no
    //    vector for it yet (resumable; re-running embeds nothing), then writes the index file.
    fundus::EmbedStoreOptions embed;
    embed.progress = false;
    fundus::EmbedStoreResult embedded = fundus::embed_store(store, model, embed);
    std::cout << "2. " << embedded.summary() << "\n";

    // 3. The vector index on its own: a pure k-NN library over (id, vector) pairs. Here an HNSW graph
    //    over the store's vectors, asked for the 3 nearest cases of the first stored case.
    fundus::EmbeddingMatrix vectors = store.get_embeddings(embedded.model_id);
    std::unique_ptr<fundus::VectorIndex> index = fundus::make_index("hnsw:M=16,efc=100,ef=32", vectors.dim);
    index->add(vectors.rows(), vectors.case_ids.data(), vectors.vectors.data());
    fundus::SearchResult nearest = index->search(std::vector<float>(vectors.row(0), vectors.row(0) + vectors.dim), 3);
    std::cout << "3. " << index->describe() << ": nearest cases of case " << vectors.case_ids[0] << ":";
    for (int i = 0; i < nearest.k; ++i)
      std::cout << " " << nearest.ids_row(0)[i] << " (" << nearest.scores_row(0)[i] << ")";
    std::cout << "\n";
    if (nearest.ids_row(0)[0] != vectors.case_ids[0]) return 1;  // a vector is its own nearest neighbour
  }                                                              // the store closes; the engine below opens it again

  // 4. The search engine: model + store + index loaded once; queries from image files or bytes.
  fundus::EngineOptions engine_options;
  engine_options.store_path = store_path;
  engine_options.checkpoint_path = checkpoint;
  engine_options.progress = false;
  fundus::SearchEngine engine(engine_options);
  fundus::QueryOptions options;
  options.k = 5;
  fundus::QueryResult result = engine.query_file(query.image_path, options);
  std::cout << "4. query " << query.id << " (grade " << query.grade << ") against " << engine.size() << " cases\n"
            << fundus::format_query_result(result);

  // 5. Filters run inside the index: only cases of grades 2-4, and none of the query's patient.
  options.grades = {2, 3, 4};
  options.exclude_patient = query.patient;
  fundus::QueryResult filtered = engine.query_file(query.image_path, options);
  std::cout << "5. grades 2-4 only, patient " << query.patient << " excluded: " << filtered.hits.size() << " hits\n";
  for (const fundus::SearchHit& h : filtered.hits)
    if (h.info.grade < 2 || (!query.patient.empty() && h.info.patient == query.patient)) return 1;

  // A stored case queried with its own image finds itself first, at similarity 1.
  const fundus::CaseRecord& stored = dataset.records.front();
  options = fundus::QueryOptions{};
  options.k = 1;
  fundus::QueryResult self = engine.query_file(stored.image_path, options);
  std::cout << "6. " << stored.id << " queried with its own image: best match " << self.hits.at(0).info.external_id
            << ", similarity " << self.hits.at(0).similarity << "\n";
  return self.hits.at(0).info.external_id == stored.id && self.hits.at(0).similarity > 0.999f ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
