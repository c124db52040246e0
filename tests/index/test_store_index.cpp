#include <fstream>
#include "fundus/core/io.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/simd.h"
#include "fundus/index/store_index.h"
#include "fundus/index/synthetic.h"
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
