// Issue 8 item 2: the per-model descriptor-health record in the case store. Measured on a sample,
// stored against the vectors it was measured on, voided by every write of them, shown by stats.
#include <gtest/gtest.h>

#include <fstream>

#include "fundus/retrieval/gallery_health.h"
#include "fundus/store/case_store.h"
#include "fundus/store/store_report.h"
#include "test_support.h"

namespace fundus {
namespace {

struct HealthStore {
  test::TempDir dir;
  std::unique_ptr<CaseStore> store;
  std::vector<int64_t> ids;
  int64_t model = 0;
  static constexpr int kDim = 8;

  explicit HealthStore(int n) {
    store = std::make_unique<CaseStore>(dir.file("s.db"));
    Dataset ds;
    ds.source = dir.file("labels.csv");
    for (int i = 0; i < n; ++i) {
      CaseRecord r;
      r.id = "c" + std::to_string(i);
      r.image_path = dir.file(r.id + ".jpg");
      std::ofstream(r.image_path) << "bytes of " << r.id;  // the store only hashes them
      r.grade = i % kNumGrades;
      ds.records.push_back(r);
    }
    ids = store->add_cases(ds).ids;
    model = store->register_model("m", "{}", "hash", "{}", kDim);
  }
  // Every vector the same (a collapsed model) or each one a different basis direction plus a bias.
  void put(bool collapsed, const std::vector<int64_t>& which) {
    std::vector<float> v;
    for (int64_t id : which)
      for (int j = 0; j < kDim; ++j) v.push_back(collapsed ? 1.0f : float(j == id % kDim) + 0.1f);
    store->put_embeddings(model, which, v.data(), kDim);
  }
};

TEST(GalleryHealth, MeasuresASampleRecordsItAndTheRecordDiesWithTheVectors) {
  HealthStore s(50);
  s.put(true, s.ids);
  EXPECT_EQ(s.store->model_health(s.model), "");

  GalleryHealthOptions o;
  o.max_rows = 10;
  DescriptorHealth h = gallery_health(*s.store, s.model, o);
  EXPECT_EQ(h.rows, 10);  // an evenly spaced sample, not all 50
  EXPECT_EQ(h.dim, HealthStore::kDim);
  EXPECT_EQ(h.status, "collapsed");
  const std::string record = s.store->model_health(s.model);
  ASSERT_FALSE(record.empty());
  EXPECT_EQ(parse_json(record, "record")["status"], "collapsed");

  // The next reader takes the record as it is (a planted "ok" record proves no re-measuring) ...
  DescriptorHealth planted = h;
  planted.status = "ok";
  s.store->put_model_health(s.model, s.store->embeddings_token(s.model), planted.to_json().dump());
  EXPECT_EQ(gallery_health(*s.store, s.model, o).status, "ok");
  StoreStats stats = s.store->stats();
  ASSERT_EQ(stats.health_per_model.count(s.model), 1u);
  Json j = store_stats_to_json(stats, s.store->list_models());
  EXPECT_EQ(j["models"][0]["health"]["status"], "ok");
  EXPECT_NE(format_store_stats(stats, s.store->list_models()).find("ok (mean cosine 1.00)"), std::string::npos);

  // ... until the vectors change: any write voids it, and the next reader measures again.
  s.put(false, s.ids);
  EXPECT_EQ(s.store->model_health(s.model), "");
  EXPECT_TRUE(store_stats_to_json(s.store->stats(), s.store->list_models())["models"][0]["health"].is_null());
  o.max_rows = 1000;
  h = gallery_health(*s.store, s.model, o);
  EXPECT_EQ(h.rows, 50);
  EXPECT_EQ(h.status, "ok");
  EXPECT_LT(h.mean_cosine, 0.5);

  // A record written for other vectors than the current ones is never current.
  s.store->put_model_health(s.model, "some-older-token", planted.to_json().dump());
  EXPECT_EQ(s.store->model_health(s.model), "");
  // record = false measures and leaves the store as it was.
  o.record = false;
  EXPECT_EQ(gallery_health(*s.store, s.model, o).status, "ok");
  EXPECT_EQ(s.store->model_health(s.model), "");
}

TEST(GalleryHealth, NoVectorsIsTooFewAndAnUnknownModelIsAnError) {
  HealthStore s(5);
  EXPECT_EQ(gallery_health(*s.store, s.model).status, "too_few");
  EXPECT_THROW(gallery_health(*s.store, 99), Error);
}

}  // namespace
}  // namespace fundus
