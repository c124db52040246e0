// Issue 8, "done when": a deliberately collapsed model (every image gets the same descriptor) is
// flagged wherever its output is used - embed (and the store's health record), the engine's health,
// every query (warning, estimate withheld) and the evaluation - instead of answering with confidence.
#include "fundus/core/io.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/eval_run.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/search_engine.h"
#include "retrieval_fixture.h"

namespace fundus {
namespace {

// Every weight and buffer zero (BatchNorm variances one): every layer outputs zeros, GeM turns them
// into one constant vector, and all images share one descriptor.
std::string collapsed_checkpoint(const test::TempDir& dir) {
  const std::string path = dir.file("collapsed.ckpt");
  test::write_random_checkpoint(path, "mirror", 3);
  Checkpoint c = load_checkpoint(path);
  for (auto& item : c.model) {
    torch::NoGradGuard no_grad;
    if (item.key().size() >= 11 && item.key().compare(item.key().size() - 11, 11, "running_var") == 0)
      item.value().fill_(1);
    else item.value().zero_();
  }
  save_checkpoint(path, c);
  return path;
}

bool has_code(const std::vector<QueryWarning>& warnings, const std::string& code) {
  for (const QueryWarning& w : warnings)
    if (w.code == code) return true;
  return false;
}

TEST(CollapsedModel, IsFlaggedByEmbedTheEngineEveryQueryAndTheEvaluation) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  const std::string ckpt = collapsed_checkpoint(dir);
  {
    auto store = test::make_store(dir.file("cases.db"));
    ModelRunner model(ckpt);
    EmbedStoreOptions o;
    o.progress = false;
    EmbedStoreResult r = embed_store(*store, model, o);
    EXPECT_EQ(r.embedded, 30);
    EXPECT_EQ(r.health.status, "collapsed");
    EXPECT_NE(r.summary().find("WARNING"), std::string::npos) << r.summary();
    EXPECT_EQ(r.to_json()["health"]["status"], "collapsed");
    EXPECT_NE(store->model_health(r.model_id).find("\"collapsed\""), std::string::npos);
  }

  EngineOptions eo;
  eo.store_path = dir.file("cases.db");
  eo.checkpoint_path = ckpt;
  eo.progress = false;
  eo.threads = 2;
  SearchEngine engine(eo);
  EXPECT_EQ(engine.health()["status"], "degraded");
  EXPECT_EQ(engine.health()["descriptors"]["status"], "collapsed");
  QueryOptions q;
  q.k = 5;
  QueryResult r = engine.query_file(data.dataset.records[3].image_path, q);
  ASSERT_EQ(r.hits.size(), 5u);  // the list still exists ...
  EXPECT_TRUE(has_code(r.warnings, "model_collapsed"));
  EXPECT_TRUE(has_code(r.warnings, "tied_similarities"));
  EXPECT_TRUE(r.estimate.withheld);  // ... but no grade is claimed from it
  EXPECT_EQ(r.estimate.grade, -1);
  EXPECT_FALSE(r.estimate.withheld_reason.empty());

  ModelRunner model(ckpt);
  EvalRunOptions ev;
  ev.data = data.manifest;
  ev.queries = "test";
  ev.gallery = "train,val";
  ev.progress = false;
  ev.threads = 2;
  EvalRunResult e = run_evaluation(model, ev);
  ASSERT_FALSE(e.warnings.empty());
  EXPECT_NE(e.warnings[0].find("collapsed"), std::string::npos) << e.warnings[0];
  EXPECT_EQ(e.json["warnings"].size(), e.warnings.size());
}

}  // namespace
}  // namespace fundus
