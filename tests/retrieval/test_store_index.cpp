#include <fstream>
#include "fundus/core/io.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/simd.h"
#include "fundus/index/synthetic.h"
#include "fundus/retrieval/store_index.h"
#include "test_support.h"

using namespace fundus;

namespace {

struct Fixture {
  test::TempDir dir;
  std::unique_ptr<CaseStore> store;
  int64_t model = 0;
  std::vector<int64_t> ids;
  static constexpr int kDim = 16;

  explicit Fixture(int n = 300) {
    store = std::make_unique<CaseStore>(dir.file("s.db"));
    model = store->register_model("m", "{}", "ckpt", "{}", kDim);
    add_cases(n, "c");
  }
  // Adds n cases with clustered embeddings; returns their ids.
  std::vector<int64_t> add_cases(int n, const std::string& prefix) {
    Dataset ds;
    for (int i = 0; i < n; ++i) {
      CaseRecord r;
      r.id = prefix + std::to_string(i);
      r.image_path = dir.file(r.id + ".jpg");
      std::ofstream(r.image_path) << r.id;  // no fsync: fast tests
      r.grade = i % kNumGrades;
      ds.records.push_back(r);
    }
    auto added = store->add_cases(ds, 1).ids;
    auto v = clustered_vectors(n, kDim, 10, 0.5f, uint64_t(ids.size()) + 1);
    store->put_embeddings(model, added, v.data(), kDim);
    ids.insert(ids.end(), added.begin(), added.end());
    return added;
  }
  std::string path() const { return dir.file("m.idx"); }
  std::unique_ptr<VectorIndex> open(const std::string& spec, IndexLoadReport& report) {
    return load_or_rebuild_index(*store, model, path(), spec, &report, 1);
  }
};

}  // namespace

TEST(StoreIndex, BuildsOnceThenLoadsAndRebuildsWhenDamagedOrStale) {
  Fixture f;
  IndexLoadReport report;
  auto first = f.open("hnsw:M=8,efc=40,ef=16", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("index file not found"), std::string::npos) << report.reason;
  EXPECT_EQ(first->size(), 300);
  EXPECT_EQ(first->ids(), f.ids);
  IndexFileInfo info = read_index_info(f.path());
  EXPECT_EQ(info.provenance.store_id, f.store->store_id());
  EXPECT_EQ(info.provenance.model_id, f.model);
  EXPECT_EQ(info.provenance.embeddings_version, f.store->get_model(f.model)->embeddings_version);

  // Intact and current: loaded, and search-time parameters follow the requested spec.
  auto second = f.open("hnsw:M=8,efc=40,ef=50", report);
  EXPECT_FALSE(report.rebuilt) << report.reason;
  EXPECT_EQ(second->describe(), "hnsw:M=8,ef=50,efc=40");
  auto q = f.store->get_embedding(f.model, f.ids[7]).value();
  EXPECT_EQ(second->search(q, 1).ids[0], f.ids[7]);

  // Another build parameter: rebuilt.
  f.open("hnsw:M=12,efc=40", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("asked for 'hnsw:M=12"), std::string::npos) << report.reason;
  f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  f.open("exact", report);
  EXPECT_FALSE(report.rebuilt) << report.reason;

  // Truncated and corrupt files.
  std::string bytes = read_file(f.path());
  write_file_atomic(f.path(), bytes.substr(0, bytes.size() - 100));
  f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("truncated"), std::string::npos) << report.reason;
  std::string flipped = read_file(f.path());
  flipped[flipped.size() / 3] ^= 1;
  write_file_atomic(f.path(), flipped);
  f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("checksum"), std::string::npos) << report.reason;
  f.open("exact", report);
  EXPECT_FALSE(report.rebuilt);

  // Stale: new embeddings, removed cases, a replaced vector.
  f.add_cases(20, "more");
  auto grown = f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("stale"), std::string::npos) << report.reason;
  EXPECT_EQ(grown->size(), 320);
  f.store->remove_cases({f.ids[0], f.ids[1]});
  EXPECT_EQ(f.open("exact", report)->size(), 318);
  EXPECT_TRUE(report.rebuilt);
  auto v = f.store->get_embedding(f.model, f.ids[5]).value();
  v[0] += 0.5f;
  f.store->put_embeddings(f.model, {f.ids[5]}, v.data(), Fixture::kDim);
  auto replaced = f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);  // same ids, new vector: the version counter catches it
  EXPECT_EQ(replaced->search(v, 1).ids[0], f.ids[5]);
  EXPECT_FLOAT_EQ(replaced->search(v, 1).scores[0], dot_f32(v.data(), v.data(), Fixture::kDim));
}

TEST(StoreIndex, FileFromAnotherStoreOrModelIsNotTrusted) {
  Fixture a, b;  // same ids and dimension, different stores
  IndexLoadReport report;
  a.open("exact", report);
  write_file_atomic(b.path(), read_file(a.path()));
  b.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("built from another store"), std::string::npos) << report.reason;

  int64_t other = a.store->register_model("m2", "{}", "ckpt2", "{}", Fixture::kDim);
  auto v = a.store->get_embeddings(a.model);
  a.store->put_embeddings(other, v.case_ids, v.vectors.data(), Fixture::kDim);
  load_or_rebuild_index(*a.store, other, a.path(), "exact", &report, 1);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("built for model"), std::string::npos) << report.reason;
}

TEST(StoreIndex, IndexOfOneCopyOfAStoreIsStaleForAnotherCopy) {
  // Two copies of one store share the store id, ids and version counters. The same new case id with
  // a different image in each leaves every one of those equal: only the vectors differ.
  Fixture a;
  a.store.reset();  // closes the file (checkpoints the WAL) so that it can be copied
  Fixture b(0);
  b.store.reset();
  write_file_atomic(b.dir.file("s.db"), read_file(a.dir.file("s.db")));
  a.store = std::make_unique<CaseStore>(a.dir.file("s.db"));
  b.store = std::make_unique<CaseStore>(b.dir.file("s.db"));
  b.ids = a.ids;
  ASSERT_EQ(a.store->store_id(), b.store->store_id());

  int64_t in_a = a.add_cases(1, "new")[0];
  Dataset ds;
  CaseRecord r;
  r.id = "new0";
  r.image_path = b.dir.file("new0.jpg");
  std::ofstream(r.image_path) << "another image";
  r.grade = 0;
  ds.records.push_back(r);
  int64_t in_b = b.store->add_cases(ds, 1).ids[0];
  ASSERT_EQ(in_a, in_b);
  std::vector<float> other = clustered_vectors(1, Fixture::kDim, 3, 0.5f, 99);
  b.store->put_embeddings(b.model, {in_b}, other.data(), Fixture::kDim);
  ASSERT_EQ(a.store->get_model(a.model)->embeddings_version, b.store->get_model(b.model)->embeddings_version);
  ASSERT_EQ(a.store->embedding_ids(a.model), b.store->embedding_ids(b.model));

  IndexLoadReport report;
  a.open("exact", report);
  write_file_atomic(b.path(), read_file(a.path()));
  EXPECT_NE(index_staleness(*b.store, read_index_info(b.path())).find("vectors differ"), std::string::npos);
  EXPECT_EQ(index_staleness(*a.store, read_index_info(a.path())), "");
  auto index = b.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("vectors differ"), std::string::npos) << report.reason;
  // Answers with B's vector, not A's.
  SearchResult hit = index->search(other, 1);
  EXPECT_EQ(hit.ids[0], in_b);
  EXPECT_FLOAT_EQ(hit.scores[0], dot_f32(other.data(), other.data(), Fixture::kDim));
  b.open("exact", report);
  EXPECT_FALSE(report.rebuilt) << report.reason;
}

TEST(StoreIndex, TokenChangesWithEveryWriteOfTheModelsVectorsOnly) {
  Fixture f(20);
  std::string t0 = f.store->embeddings_token(f.model);
  EXPECT_EQ(t0.size(), 32u);
  int64_t other = f.store->register_model("m2", "{}", "ckpt2", "{}", Fixture::kDim);
  EXPECT_EQ(f.store->embeddings_token(other), "");  // never written
  auto v = f.store->get_embedding(f.model, f.ids[3]).value();
  f.store->put_embeddings(f.model, {f.ids[3]}, v.data(), Fixture::kDim);  // same bytes, still a write
  std::string t1 = f.store->embeddings_token(f.model);
  EXPECT_NE(t1, t0);
  f.store->put_embeddings(other, {f.ids[3]}, v.data(), Fixture::kDim);
  EXPECT_EQ(f.store->embeddings_token(f.model), t1);  // another model's write
  std::string t_other = f.store->embeddings_token(other);
  f.store->remove_cases({f.ids[5]});  // has a vector of f.model only
  EXPECT_NE(f.store->embeddings_token(f.model), t1);
  EXPECT_EQ(f.store->embeddings_token(other), t_other);
  Dataset none;
  f.store->add_cases(none, 1);
  EXPECT_EQ(f.store->embeddings_token(other), t_other);
}

TEST(StoreIndex, IndexFileOfTheFormerFormatIsRebuilt) {
  Fixture f(20);
  write_framed_file(f.path(), "FNDINDX1", 1, std::string(64, '\0'));
  IndexLoadReport report;
  f.open("exact", report);
  EXPECT_TRUE(report.rebuilt);
  EXPECT_NE(report.reason.find("older build"), std::string::npos) << report.reason;
  f.open("exact", report);
  EXPECT_FALSE(report.rebuilt) << report.reason;
}
