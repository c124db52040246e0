// The search engine and store embedding on real SQLite files, real synthetic JPEGs and real
// (randomly initialised) checkpoints.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/index/simd.h"
#include "fundus/index/synthetic.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/query_report.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/retrieval/store_index.h"
#include "retrieval_fixture.h"

using namespace fundus;

namespace {

EngineOptions engine_options(const std::string& store, const std::string& ckpt) {
  EngineOptions o;
  o.store_path = store;
  o.checkpoint_path = ckpt;
  o.progress = false;
  o.threads = 2;
  return o;
}

const CaseRecord& record(size_t i) { return test::retrieval_data().dataset.records.at(i); }

}  // namespace

TEST(EmbedStore, ResumableAndDeterministic) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  auto store = test::make_store(dir.file("a.db"));
  ModelRunner model(data.ckpt_mirror);
  EmbedStoreOptions o;
  o.progress = false;
  o.batch_size = 4;
  o.commit_every = 4;
  o.limit = 10;  // an "interrupted" run: 10 of 30
  EmbedStoreResult first = embed_store(*store, model, o);
  EXPECT_EQ(first.embedded, 10);
  EXPECT_EQ(first.already, 0);
  EXPECT_EQ(first.remaining, 20);
  EXPECT_EQ(int64_t(store->embedding_ids(first.model_id).size()), 10);
  o.limit = 0;
  EmbedStoreResult second = embed_store(*store, model, o);
  EXPECT_EQ(second.model_id, first.model_id);
  EXPECT_EQ(second.embedded, 20);
  EXPECT_EQ(second.already, 10);
  EXPECT_EQ(second.remaining, 0);
  EXPECT_EQ(second.index_size, 30);
  EXPECT_TRUE(file_exists(default_index_path(dir.file("a.db"), first.model_id)));
  EmbedStoreResult third = embed_store(*store, model, o);
  EXPECT_EQ(third.embedded, 0);
  EXPECT_EQ(third.already, 30);
  EXPECT_FALSE(third.index_rebuilt);  // nothing changed: the saved index is current

  // The same images in a second store, embedded in one go with the same batches: identical bits.
  auto other = test::make_store(dir.file("b.db"));
  o.commit_every = 1000;
  EmbedStoreResult again = embed_store(*other, model, o);
  EXPECT_EQ(again.embedded, 30);
  EmbeddingMatrix a = store->get_embeddings(first.model_id), b = other->get_embeddings(again.model_id);
  ASSERT_EQ(a.vectors.size(), b.vectors.size());
  EXPECT_EQ(a.vectors, b.vectors);
  // Unit norm descriptors of the model's dimension.
  ASSERT_EQ(a.dim, model.descriptor_dim());
  double norm = 0;
  for (int j = 0; j < a.dim; ++j) norm += double(a.row(0)[j]) * a.row(0)[j];
  EXPECT_NEAR(norm, 1.0, 1e-5);
  // The single-image path (queries) agrees with the loader path to float rounding.
  auto c = store->get_case(a.case_ids[3]);
  std::vector<float> v = model.embed(preprocess_fundus_file(c->image_path, model.preprocess()).image);
  double dot = 0;
  for (int j = 0; j < a.dim; ++j) dot += double(v[size_t(j)]) * a.row(3)[j];
  EXPECT_NEAR(dot, 1.0, 1e-5);
}

TEST(EmbedStore, SplitFilterAndModelRegistrationIsIdempotent) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  auto store = test::make_store(dir.file("a.db"));
  ModelRunner model(data.ckpt_mirror);
  EmbedStoreOptions o;
  o.progress = false;
  o.splits = "test";
  o.build_index = false;
  EmbedStoreResult r = embed_store(*store, model, o);
  EXPECT_EQ(r.embedded, int64_t(store->list_cases("test").size()));
  EXPECT_EQ(register_model(*store, model), r.model_id);
  auto info = store->get_model(r.model_id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->checkpoint_hash, sha256_file(data.ckpt_mirror));
  EXPECT_EQ(info->descriptor_dim, model.descriptor_dim());
  EXPECT_EQ(parse_json(info->preprocessing, "p")["size"], 64);
}

TEST(SearchEngine, FindsTheQueryImageItselfFirst) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"));
  SearchEngine engine(engine_options(dir.file("s.db"), data.ckpt_mirror));
  EXPECT_EQ(engine.size(), 30);
  for (size_t i : {0, 7, 19}) {
    QueryOptions q;
    q.k = 5;
    QueryResult r = engine.query_file(record(i).image_path, q);
    ASSERT_EQ(r.hits.size(), 5u);
    EXPECT_EQ(r.hits[0].info.external_id, record(i).id);
    EXPECT_NEAR(r.hits[0].similarity, 1.0, 1e-4);
    EXPECT_EQ(r.hits[0].rank, 1);
    for (size_t j = 1; j < r.hits.size(); ++j) EXPECT_LE(r.hits[j].similarity, r.hits[j - 1].similarity);
    EXPECT_EQ(r.preprocessed.rows, 64);
    // The vote: shares sum to 1, the winning share is the confidence.
    double sum = 0;
    for (double v : r.estimate.votes) sum += v;
    EXPECT_NEAR(sum, 1.0, 1e-9);
    EXPECT_NEAR(r.estimate.votes[size_t(r.estimate.grade)], r.estimate.confidence, 1e-9);
    for (const char* key : {"decode", "embed", "search", "total"}) EXPECT_TRUE(r.timing_ms.contains(key)) << key;
  }
}

TEST(SearchEngine, PatientExclusionAndGradeFilter) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"));
  EngineOptions eo = engine_options(dir.file("s.db"), data.ckpt_mirror);
  eo.index_spec = "hnsw:M=8,efc=40,ef=16";
  SearchEngine engine(eo);
  const CaseRecord& rec = record(4);
  QueryOptions q;
  q.k = 30;
  q.exclude_patient = rec.patient;
  QueryResult r = engine.query_file(rec.image_path, q);
  size_t same_patient = 0;
  for (const CaseRecord& c : data.dataset.records) same_patient += c.patient == rec.patient;
  EXPECT_EQ(r.hits.size(), 30 - same_patient);
  for (const SearchHit& h : r.hits) EXPECT_NE(h.info.patient, rec.patient);

  q = QueryOptions();
  q.k = 3;
  q.grades = {4};
  r = engine.query_file(rec.image_path, q);
  ASSERT_EQ(r.hits.size(), 3u);
  for (const SearchHit& h : r.hits) EXPECT_EQ(h.info.grade, 4);
  EXPECT_EQ(r.estimate.grade, 4);
  EXPECT_NEAR(r.estimate.confidence, 1.0, 1e-12);

  // Asking for more than the filter allows returns every matching case (exact fallback).
  size_t grade4 = 0;
  for (const CaseRecord& c : data.dataset.records) grade4 += c.grade == 4;
  q.k = 20;
  r = engine.query_file(rec.image_path, q);
  EXPECT_EQ(r.hits.size(), grade4);
}

TEST(SearchEngine, FilteredQueriesAreAnsweredFromTheIndexWithoutReadingTheStore) {
  // 2000 cases, 1% of them grade 4, with synthetic vectors of the model's dimension: a filter that
  // keeps 1% must still give k hits, computed inside the index from the attributes kept beside it.
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  const std::string db = dir.file("big.db");
  ModelRunner model(data.ckpt_mirror);
  const int dim = model.descriptor_dim();
  const int64_t n = 2000;
  std::vector<int64_t> ids;
  int64_t model_id = 0;
  std::vector<float> vectors = clustered_vectors(n, dim, 40, 0.8f, 3);
  {
    CaseStore store(db);
    Dataset ds;
    for (int64_t i = 0; i < n; ++i) {
      CaseRecord r;
      r.id = "c" + std::to_string(i);
      r.image_path = dir.file(r.id + ".jpg");
      std::ofstream(r.image_path) << r.id;  // only hashed: these cases are never decoded
      r.grade = i % 100 == 17 ? 4 : int(i % 4);
      r.patient = "p" + std::to_string(i / 2);
      ds.records.push_back(r);
    }
    ids = store.add_cases(ds, 1).ids;
    model_id = register_model(store, model);
  }
  const CaseRecord& query = record(4);
  std::vector<float> q = model.embed(preprocess_fundus_file(query.image_path, model.preprocess()).image);
  // The exact answer over the vectors as they were when the engine started.
  auto expected = [&](int grade, const std::string& exclude_patient, int k) {
    std::vector<std::pair<float, int64_t>> scored;
    for (int64_t i = 0; i < n; ++i)
      if ((i % 100 == 17 ? 4 : int(i % 4)) == grade && "p" + std::to_string(i / 2) != exclude_patient)
        scored.push_back({-dot_f32(q.data(), vectors.data() + i * dim, dim), ids[size_t(i)]});
    std::sort(scored.begin(), scored.end());
    scored.resize(std::min(scored.size(), size_t(k)));
    return scored;
  };
  for (std::string spec : {"exact", "hnsw:M=8,efc=40,ef=16"}) {
    SCOPED_TRACE(spec);
    CaseStore(db).put_embeddings(model_id, ids, vectors.data(), dim);
    EngineOptions eo = engine_options(db, data.ckpt_mirror);
    eo.index_spec = spec;
    SearchEngine engine(eo);
    // Behind the engine's back, every stored vector changes. Filtering must not read them: an engine
    // that did (for the candidates it could not use) would rank by the new vectors.
    {
      CaseStore other(db);
      std::vector<float> negated(vectors);
      for (float& x : negated) x = -x;
      other.put_embeddings(model_id, ids, negated.data(), dim);
    }
    for (auto [k, patient] : {std::pair<int, std::string>{10, ""}, {5, "p1217"}, {30, "p8"}}) {
      QueryOptions o;
      o.k = k;
      o.grades = {4};
      o.exclude_patient = patient;
      QueryResult r = engine.query_file(query.image_path, o);
      auto want = expected(4, patient, k);
      ASSERT_EQ(r.hits.size(), std::min<size_t>(size_t(k), want.size()));  // 20 grade-4 cases (19 without p1217)
      for (size_t i = 0; i < r.hits.size(); ++i) {
        EXPECT_EQ(r.hits[i].info.id, want[i].second) << "rank " << i;
        EXPECT_NEAR(r.hits[i].similarity, -want[i].first, 1e-5);
        EXPECT_EQ(r.hits[i].info.grade, 4);
        EXPECT_NE(r.hits[i].info.patient, patient);
      }
    }
    // Cases added and removed through the engine are filtered too (their attributes follow).
    CaseRecord added;
    added.grade = 4;
    added.patient = "new-patient";
    CaseInfo info = engine.add_case(read_file(query.image_path), query.image_path, added);
    QueryOptions o;
    o.k = 3;
    o.grades = {4};
    EXPECT_EQ(engine.query_file(query.image_path, o).hits.at(0).info.id, info.id);
    o.exclude_patient = "new-patient";
    EXPECT_NE(engine.query_file(query.image_path, o).hits.at(0).info.id, info.id);
    o.exclude_patient = "";
    o.grades = {0};
    EXPECT_NE(engine.query_file(query.image_path, o).hits.at(0).info.id, info.id);
    ASSERT_TRUE(engine.remove_case(info.id));
    o.grades = {4};
    QueryResult after = engine.query_file(query.image_path, o);
    ASSERT_EQ(after.hits.size(), 3u);
    EXPECT_NE(after.hits[0].info.id, info.id);
  }
}

TEST(SearchEngine, AddThenQueryRemoveThenQueryAndRestart) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"), 20);  // the last 10 images are new to the store
  const CaseRecord& fresh = record(25);
  std::string bytes = read_file(fresh.image_path);
  int64_t added_id = 0;
  {
    SearchEngine engine(engine_options(dir.file("s.db"), data.ckpt_mirror));
    EXPECT_EQ(engine.size(), 20);
    QueryOptions q;
    q.k = 1;
    EXPECT_NE(engine.query_image_bytes(bytes, "fresh", q).hits[0].info.external_id, "new-case");
    CaseRecord rec;
    rec.id = "new-case";
    rec.grade = fresh.grade;
    rec.patient = "P-new";
    CaseInfo info = engine.add_case(bytes, "upload.jpg", rec, Json{{"note", "x"}});
    added_id = info.id;
    EXPECT_EQ(engine.size(), 21);
    EXPECT_EQ(info.meta["note"], "x");
    EXPECT_EQ(info.image_path, join_path(dir.file("images"), sha256_hex(bytes) + ".jpg"));
    EXPECT_EQ(read_file(info.image_path), bytes);
    QueryResult r = engine.query_image_bytes(bytes, "fresh", q);
    EXPECT_EQ(r.hits[0].info.id, added_id);
    EXPECT_NEAR(r.hits[0].similarity, 1.0, 1e-4);
    // A duplicate explicit id is refused; the same upload without an id derives one and is idempotent.
    EXPECT_THROW(engine.add_case(bytes, "again.jpg", rec), Error);
    CaseRecord anon;
    anon.grade = fresh.grade;
    CaseInfo a1 = engine.add_case(read_file(record(26).image_path), "a.jpg", anon);
    CaseInfo a2 = engine.add_case(read_file(record(26).image_path), "a.jpg", anon);
    EXPECT_EQ(a1.id, a2.id);
    EXPECT_EQ(a1.external_id.rfind("img-", 0), 0u);
    EXPECT_EQ(engine.size(), 22);
    // Remove: gone from queries and the store.
    EXPECT_TRUE(engine.remove_case(a1.id));
    EXPECT_FALSE(engine.remove_case(a1.id));
    EXPECT_FALSE(engine.get_case(a1.id));
    q.k = 22;
    for (const SearchHit& h : engine.query_image_bytes(bytes, "fresh", q).hits) EXPECT_NE(h.info.id, a1.id);
    EXPECT_EQ(engine.size(), 21);
  }
  // A new engine on the same files keeps every acknowledged add and remove.
  SearchEngine again(engine_options(dir.file("s.db"), data.ckpt_mirror));
  EXPECT_EQ(again.size(), 21);
  QueryOptions q;
  q.k = 1;
  EXPECT_EQ(again.query_image_bytes(bytes, "fresh", q).hits[0].info.id, added_id);
  // And one whose index file is gone rebuilds it from the store.
  std::string index = again.index_path();
  EXPECT_TRUE(file_exists(index));
}

TEST(SearchEngine, RejectsBadImagesWithClearErrors) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"), 5);
  EngineOptions eo = engine_options(dir.file("s.db"), data.ckpt_mirror);
  eo.max_image_pixels = 100 * 100;  // the synthetic images are 128 x 128
  SearchEngine engine(eo);
  std::string bytes = read_file(record(0).image_path);
  QueryOptions q;
  auto message = [&](const std::string& b) {
    try {
      engine.query_image_bytes(b, "upload.jpg", q);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(bytes).find("exceeds the limit"), std::string::npos) << message(bytes);
  EXPECT_NE(message(bytes.substr(0, bytes.size() / 2)).find("truncated JPEG"), std::string::npos);
  EXPECT_NE(message("not an image at all").find("upload.jpg"), std::string::npos);
  EXPECT_NE(message("").find("upload.jpg"), std::string::npos);
  CaseRecord rec;
  rec.grade = 7;
  EXPECT_THROW(engine.add_case(bytes, "x.jpg", rec), Error);
  rec.grade = 1;
  EXPECT_THROW(engine.add_case(bytes.substr(0, 100), "x.jpg", rec), Error);
  EXPECT_THROW(engine.add_case(bytes, "x.jpg", rec, Json::array()), Error);
  q.k = 0;
  EXPECT_THROW(engine.query_file(record(0).image_path, q), Error);
  EXPECT_EQ(engine.size(), 5);  // nothing was added by the failures
  EXPECT_THROW(engine.query_file(dir.file("missing.jpg"), QueryOptions()), Error);

  // A damaged middle behind an intact end-of-image marker is refused too (not embedded as grey blocks).
  engine.save_index();
  eo.max_image_pixels = 40000000;
  SearchEngine lenient(eo);
  const std::string damaged = bytes.substr(0, bytes.size() / 2) + bytes.substr(bytes.size() / 2 + bytes.size() / 8);
  try {
    lenient.query_image_bytes(damaged, "upload.jpg", QueryOptions());
    ADD_FAILURE() << "a damaged JPEG was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("upload.jpg: corrupt JPEG data"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lenient.add_case(damaged, "x.jpg", rec), Error);
  EXPECT_EQ(lenient.size(), 5);
}

TEST(SearchEngine, ConcurrentQueriesAddsAndRemovesStayConsistent) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"), 10);
  EngineOptions eo = engine_options(dir.file("s.db"), data.ckpt_mirror);
  eo.inference_replicas = 2;
  eo.threads = 1;
  auto engine = std::make_unique<SearchEngine>(eo);
  std::atomic<bool> stop{false};
  std::atomic<int> queries{0}, failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&, t] {
      size_t i = size_t(t);
      while (!stop) {
        try {
          QueryOptions q;
          q.k = 8;
          QueryResult r = engine->query_file(record(i++ % 30).image_path, q);
          for (const SearchHit& h : r.hits)
            if (h.info.external_id.empty() || h.info.grade < 0) ++failures;  // a hit without its case
          ++queries;
        } catch (const std::exception& e) {
          ADD_FAILURE() << e.what();
          ++failures;
        }
      }
    });
  // Writer: add the other 20 images, removing every third one again.
  std::vector<int64_t> kept;
  for (size_t i = 10; i < 30; ++i) {
    CaseRecord rec = record(i);
    rec.image_path.clear();
    CaseInfo info = engine->add_case(read_file(record(i).image_path), record(i).image_path, rec);
    if (i % 3 == 0) EXPECT_TRUE(engine->remove_case(info.id));
    else kept.push_back(info.id);
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(queries, 0);
  EXPECT_EQ(engine->size(), int64_t(10 + kept.size()));
  engine.reset();  // saves the index

  // Afterwards the store, its embeddings and the saved index agree, nothing lost.
  CaseStore store(dir.file("s.db"));
  auto models = store.list_models();
  ASSERT_EQ(models.size(), 1u);
  std::vector<int64_t> case_ids;
  for (const StoredCase& c : store.list_cases()) case_ids.push_back(c.id);
  EXPECT_EQ(case_ids.size(), 10 + kept.size());
  EXPECT_EQ(store.embedding_ids(models[0].id), case_ids);
  for (int64_t id : kept) EXPECT_TRUE(std::find(case_ids.begin(), case_ids.end(), id) != case_ids.end());
  IndexLoadReport report;
  auto index = load_or_rebuild_index(store, models[0].id, default_index_path(dir.file("s.db"), models[0].id), "exact",
                                     &report, 1);
  EXPECT_FALSE(report.rebuilt) << report.reason;  // the saved file matches the store exactly
  EXPECT_EQ(index->ids(), case_ids);
}

TEST(SearchEngine, StatsHealthAndSheet) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  test::make_store(dir.file("s.db"), 8);
  SearchEngine engine(engine_options(dir.file("s.db"), data.ckpt_mirror));
  Json s = engine.stats();
  EXPECT_EQ(s["index"]["size"], 8);
  EXPECT_EQ(s["model"]["id"], engine.model_id());
  EXPECT_EQ(engine.health()["status"], "ok");
  QueryOptions q;
  q.k = 4;
  q.with_attention = true;
  QueryResult r = engine.query_file(record(2).image_path, q);
  EXPECT_EQ(r.attention_overlay.size(), cv::Size(64, 64));
  Json j = query_result_to_json(r);
  EXPECT_EQ(j["hits"].size(), 4u);
  EXPECT_EQ(j["hits"][0]["external_id"], record(2).id);
  EXPECT_NE(format_query_result(r).find(record(2).id), std::string::npos);
  ContactSheetOptions so;
  so.thumb = 64;
  so.columns = 3;
  cv::Mat sheet = render_query_sheet(r, engine.preprocess_options(), so);
  EXPECT_EQ(sheet.size(), contact_sheet_size(5, so));
  EXPECT_EQ(engine.case_attention_overlay(r.hits[0].info.id).size(), cv::Size(64, 64));
  EXPECT_THROW(engine.case_attention_overlay(99999), Error);
}

TEST(SearchEngine, MissingStoreIsAnErrorWhenCreationIsOff) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  EngineOptions eo = engine_options(dir.file("none.db"), data.ckpt_mirror);
  eo.create_store = false;
  EXPECT_THROW(SearchEngine{eo}, Error);
  eo.create_store = true;
  SearchEngine empty(eo);
  EXPECT_EQ(empty.size(), 0);
  EXPECT_TRUE(empty.query_file(record(0).image_path, QueryOptions()).hits.empty());
  eo.checkpoint_path = dir.file("missing.ckpt");
  EXPECT_THROW(SearchEngine{eo}, Error);
}
