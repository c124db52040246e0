// The server with the real search engine: a tiny model trained for one step on synthetic images, a
// case store, real sockets. Also `fundus serve` as a process: graceful SIGTERM, and a hard kill
// that must not lose acknowledged adds.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>
#include <tuple>

#include "fundus/core/strings.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/serve/server.h"
#include "fundus/store/case_store.h"
#include "serve_fixtures.h"
#include "test_support.h"

extern char** environ;

namespace fundus::test {
namespace {

// Built once for the suite: DIR/data (30 synthetic images), DIR/extra (2 more, not in the store),
// DIR/run (tiny model checkpoint), DIR/base/cases.db with every case embedded and indexed.
// The tiny preset with a ResNet-18: a randomly initialised MobileNetV2 maps every image to the same
// descriptor (cosine 1.0 between all cases, BN running statistics still at their defaults), so
// "the added case comes first" would be decided by tie-breaking; ResNet-18 keeps images apart.
class EngineServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture = new TempDir();
    const std::string d = fixture->path();
    make_dirs(d + "/base");
    for (const std::string& args : {"synth --out " + d + "/data --count 30 --size 128 --seed 21",
                                    "synth --out " + d + "/extra --count 2 --size 128 --seed 977",
                                    "dataset split " + d + "/data/labels.csv --out " + d + "/split --seed 2",
                                    "train --preset tiny --data " + d + "/split/manifest.csv --out " + d +
                                        "/run --epochs 1 --set train.max_steps_per_epoch=1 --set "
                                        "train.select=train_loss --set model.backbone=resnet18",
                                    "store add --store " + d + "/base/cases.db --data " + d + "/split/manifest.csv"}) {
      CommandResult r = run_cli(args);
      ASSERT_EQ(r.exit_code, 0) << "fundus " << args << "\n" << r.output;
    }
    checkpoint = d + "/run/checkpoints/last.ckpt";
    ASSERT_TRUE(file_exists(checkpoint));
    EngineOptions o = engine_options(d + "/base");
    SearchEngine engine(o);  // embeds every case and writes the index next to the store
    ASSERT_EQ(engine.size(), 30);
    engine.save_index();
  }
  static void TearDownTestSuite() {
    delete fixture;
    fixture = nullptr;
  }

  static EngineOptions engine_options(const std::string& dir) {
    EngineOptions o;
    o.store_path = dir + "/cases.db";
    o.checkpoint_path = checkpoint;
    o.threads = 2;
    o.progress = false;
    return o;
  }
  static std::string image(const std::string& set, int i) {
    std::vector<std::string> rows = split(read_file(fixture->path() + "/" + set + "/labels.csv"), '\n');
    return fixture->path() + "/" + set + "/" + split(rows.at(size_t(i) + 1), ',').at(0);
  }

  // A private copy of the base store (tests add and delete).
  std::string copy_store() {
    std::string dir = work.path() + "/store";
    CommandResult r = run_command("cp -r " + shell_quote(fixture->path() + "/base") + " " + shell_quote(dir));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return dir;
  }

  static TempDir* fixture;
  static std::string checkpoint;
  TempDir work;
};
TempDir* EngineServerTest::fixture = nullptr;
std::string EngineServerTest::checkpoint;

TEST_F(EngineServerTest, QueryAddDeleteWithTheRealEngine) {
  std::string dir = copy_store();
  SearchEngine engine(engine_options(dir));
  auto backend = engine_backend(engine);
  ServerOptions so;
  so.port = 0;
  so.access_log_enabled = false;
  Server server(*backend, so);
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);

  // A stored image finds itself first.
  std::string stored = read_file(image("data", 4));
  auto r = c.Post("/api/query", form(stored, {{"k", "5"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = body_json(r);
  ASSERT_EQ(j["results"].size(), 5u);
  EXPECT_NEAR(j["results"][0]["similarity"].get<double>(), 1.0, 1e-4);
  for (size_t i = 1; i < 5; ++i)
    EXPECT_GE(j["results"][i - 1]["similarity"].get<double>(), j["results"][i]["similarity"].get<double>());
  double sum = 0;
  int best = 0;  // the estimate is the grade with the largest vote share (the lower grade on a tie)
  for (size_t g = 0; g < j["estimate"]["votes"].size(); ++g) {
    sum += j["estimate"]["votes"][g].get<double>();
    if (j["estimate"]["votes"][g].get<double>() > j["estimate"]["votes"][size_t(best)].get<double>()) best = int(g);
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_EQ(j["estimate"]["grade"].get<int>(), best) << j["estimate"].dump();
  auto pre = c.Get(j["preprocessed_url"].get<std::string>().c_str());
  ASSERT_TRUE(pre);
  ASSERT_EQ(pre->status, 200);
  EXPECT_EQ(decode(pre->body).cols, 64);  // the tiny preset's input size
  auto att = c.Get(j["attention_url"].get<std::string>().c_str());
  ASSERT_TRUE(att);
  ASSERT_EQ(att->status, 200);
  EXPECT_FALSE(decode(att->body).empty());

  // Case views.
  std::string first = "/api/cases/" + std::to_string(j["results"][0]["id"].get<int64_t>());
  auto thumb = c.Get((first + "/image?size=thumb").c_str());
  ASSERT_TRUE(thumb);
  ASSERT_EQ(thumb->status, 200);
  EXPECT_EQ(decode(thumb->body).cols, 128);  // smaller than the thumbnail size: not enlarged
  auto full = c.Get((first + "/image").c_str());
  ASSERT_TRUE(full);
  EXPECT_EQ(full->body, stored);
  auto case_att = c.Get((first + "/attention.png").c_str());
  ASSERT_TRUE(case_att);
  ASSERT_EQ(case_att->status, 200);
  EXPECT_FALSE(decode(case_att->body).empty());

  // Add: the next query returns the new case first; delete: it is gone.
  std::string extra = read_file(image("extra", 0));
  auto add = c.Post("/api/cases", form(extra, {{"grade", "4"}, {"id", "new-case"}, {"patient", "NP"}, {"eye", "L"}}));
  ASSERT_TRUE(add);
  ASSERT_EQ(add->status, 201) << add->body;
  int64_t id = body_json(add)["id"];
  auto q = c.Post("/api/query", form(extra, {{"k", "3"}}));
  ASSERT_TRUE(q);
  ASSERT_EQ(q->status, 200);
  EXPECT_EQ(body_json(q)["results"][0]["id"], id);
  EXPECT_EQ(body_json(q)["results"][0]["external_id"], "new-case");
  auto dup = c.Post("/api/cases", form(read_file(image("extra", 1)), {{"grade", "1"}, {"id", "new-case"}}));
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, 422);
  EXPECT_EQ(error_code(dup), "rejected");
  auto del = c.Delete(("/api/cases/" + std::to_string(id)).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204);
  auto q2 = c.Post("/api/query", form(extra, {{"k", "3"}}));
  ASSERT_TRUE(q2);
  // Keep the parsed body alive: a range-for over a member of a temporary reads freed memory (ASan).
  const Json after_delete = body_json(q2);
  for (const Json& hit : after_delete["results"]) EXPECT_NE(hit["id"], id);

  auto stats = c.Get("/api/stats");
  ASSERT_TRUE(stats);
  Json s = body_json(stats);
  EXPECT_EQ(s["cases"], 30);
  EXPECT_EQ(s["index"]["size"], 30);
  EXPECT_FALSE(s["index"].contains("path"));
  EXPECT_FALSE(s["model"].contains("checkpoint"));
}

// Issue 10 items 2, 5 and 12 with the real engine and store: a case whose meta is nested 60,000
// levels (written before the bound existed) killed the server on GET and on every query returning
// it; a missing image file gave a 500 naming the server's path.
TEST_F(EngineServerTest, PoisonedRowsAndMissingImagesNeverCrashTheServerOrRevealPaths) {
  std::string dir = copy_store();
  const std::string deep = nested_json(60000);
  run_sql(dir + "/cases.db", "UPDATE cases SET meta = '" + deep + "' WHERE id = 5");
  SearchEngine engine(engine_options(dir));
  auto backend = engine_backend(engine);
  ServerOptions so;
  so.port = 0;
  so.access_log_enabled = false;
  Server server(*backend, so);
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);

  std::vector<httplib::Result> damaged;
  damaged.push_back(c.Get("/api/cases/5"));
  damaged.push_back(c.Post("/api/query", form(read_file(image("data", 4)), {{"k", "30"}})));  // every case
  for (const httplib::Result& r : damaged) {
    ASSERT_TRUE(r) << "the server died";
    EXPECT_EQ(r->status, 500) << r->body;
    EXPECT_EQ(error_code(r), "corrupt_case");
    EXPECT_EQ(body_json(r)["error"]["case_id"], 5);
    EXPECT_EQ(r->body.find(dir), std::string::npos) << r->body;
  }
  auto bad_meta = c.Post("/api/cases", form(read_file(image("extra", 0)), {{"grade", "1"}, {"meta", deep}}));
  ASSERT_TRUE(bad_meta);
  EXPECT_EQ(bad_meta->status, 400);
  EXPECT_EQ(error_code(bad_meta), "bad_meta");
  EXPECT_EQ(engine.size(), 30);

  auto add = c.Post("/api/cases", form(read_file(image("extra", 1)), {{"grade", "2"}}));
  ASSERT_TRUE(add);
  ASSERT_EQ(add->status, 201) << add->body;
  const int64_t id = body_json(add)["id"];
  ASSERT_EQ(std::remove(engine.get_case(id)->image_path.c_str()), 0);  // the kept copy went missing
  const std::string base = "/api/cases/" + std::to_string(id);
  for (const std::string& path : {base + "/image", base + "/image?size=thumb", base + "/attention.png"}) {
    auto r = c.Get(path.c_str());
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 500) << path;
    EXPECT_EQ(error_code(r), "image_unavailable") << path;
    EXPECT_EQ(r->body.find(fixture->path()), std::string::npos) << r->body;
    EXPECT_EQ(r->body.find(work.path()), std::string::npos) << r->body;
  }
  auto h = c.Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Issue 9 item 3: no grade estimate for an upload that is not a fundus photograph; a stable code, a
// reason naming the upload, and nothing stored.
TEST_F(EngineServerTest, NonFundusUploadsAreRefusedWithNoFieldOfView) {
  std::string dir = copy_store();
  SearchEngine engine(engine_options(dir));
  auto backend = engine_backend(engine);
  ServerOptions so;
  so.port = 0;
  so.access_log_enabled = false;
  Server server(*backend, so);
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);
  auto encoded = [](const cv::Mat& bgr, const char* ext) {
    std::vector<uchar> buf;
    cv::imencode(ext, bgr, buf);
    return std::string(buf.begin(), buf.end());
  };
  cv::Mat page(600, 450, CV_8UC3, cv::Scalar::all(240));
  for (int y = 40; y < 560; y += 26)
    cv::putText(page, "The quick brown fox jumps", {12, y}, cv::FONT_HERSHEY_SIMPLEX, 0.6, cv::Scalar::all(20));
  cv::Mat disc = cv::Mat::zeros(480, 640, CV_8UC3);  // a retina's shape and colour (BGR), nothing in it
  cv::circle(disc, {320, 240}, 200, cv::Scalar(30, 90, 200), cv::FILLED, cv::LINE_AA);
  const std::vector<std::tuple<std::string, std::string, std::string>> uploads = {
      {"black.jpg", encoded(cv::Mat::zeros(480, 640, CV_8UC3), ".jpg"), "practically uniform"},
      {"white.png", encoded(cv::Mat(480, 640, CV_8UC3, cv::Scalar::all(255)), ".png"), "practically uniform"},
      {"dot.png", encoded(cv::Mat(1, 1, CV_8UC3, cv::Scalar(40, 90, 200)), ".png"), "too small"},
      {"strip.png", encoded(cv::Mat(10000, 2, CV_8UC3, cv::Scalar(40, 90, 200)), ".png"), "too small"},
      {"letter.jpg", encoded(page, ".jpg"), "not a retina's"},
      {"disc.jpg", encoded(disc, ".jpg"), "the field is featureless"},
  };
  for (const auto& [name, bytes, reason] : uploads) {
    auto r = c.Post("/api/query", form(bytes, {}, name));
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 422) << name << ": " << r->body;
    EXPECT_EQ(error_code(r), "no_field_of_view") << name;
    const std::string message = body_json(r)["error"]["message"];
    EXPECT_EQ(message.rfind("upload '" + name + "': no field of view found (", 0), 0u) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_NE(message.find("not a fundus photograph"), std::string::npos) << message;
    EXPECT_EQ(body_json(r).count("estimate"), 0u);
  }
  auto add = c.Post("/api/cases", form(std::get<1>(uploads[0]), {{"grade", "2"}}, "black.jpg"));
  ASSERT_TRUE(add);
  EXPECT_EQ(add->status, 422) << add->body;
  EXPECT_EQ(error_code(add), "no_field_of_view");
  EXPECT_EQ(engine.size(), 30);
  // A real photograph still gets its answer.
  auto ok = c.Post("/api/query", form(read_file(image("extra", 0)), {{"k", "3"}}));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(EngineServerTest, ConcurrentClientsKeepStoreAndIndexConsistent) {
  std::string dir = copy_store();
  EngineOptions eo = engine_options(dir);
  eo.inference_replicas = 2;
  SearchEngine engine(eo);
  auto backend = engine_backend(engine);
  ServerOptions so;
  so.port = 0;
  so.workers = 4;
  so.access_log_enabled = false;
  Server server(*backend, so);
  server.start();

  std::vector<std::string> images;
  for (int i = 0; i < 6; ++i) images.push_back(read_file(image("data", i)));
  std::atomic<int> server_errors{0}, failures{0}, added{0}, removed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", server.port());
      c.set_read_timeout(120, 0);
      auto tally = [&](const httplib::Result& r, int expected) {
        if (!r) ++failures;
        else if (r->status >= 500) ++server_errors;
        else if (r->status != expected) ++failures;
      };
      for (int i = 0; i < 5; ++i) {
        if (t < 2) {
          tally(c.Post("/api/query", form(images[size_t(i + t) % images.size()], {{"k", "4"}})), 200);
          continue;
        }
        auto r = c.Post("/api/cases",
                        form(images[size_t(i)], {{"grade", std::to_string(i % 5)}, {"id", strprintf("c%d-%d", t, i)}}));
        tally(r, 201);
        if (!r || r->status != 201) continue;
        ++added;
        if (i % 2 == 0) {
          auto d = c.Delete(("/api/cases/" + std::to_string(Json::parse(r->body)["id"].get<int64_t>())).c_str());
          tally(d, 204);
          if (d && d->status == 204) ++removed;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(server_errors, 0);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(added, 10);
  EXPECT_EQ(removed, 6);
  const int64_t expected = 30 + 10 - 6;
  EXPECT_EQ(engine.size(), expected);
  server.stop();
  server.wait();
  CaseStore store(dir + "/cases.db");
  EXPECT_EQ(store.stats().cases, expected);
  EXPECT_TRUE(store.check().ok());
}

// `fundus serve` as a child process; its output goes to a file from which the URL is read.
class ServeProcess {
 public:
  ServeProcess(const std::string& args, const std::string& log) {
    std::string command =
        "exec " + shell_quote(FUNDUS_CLI) + " serve --port 0 " + args + " > " + shell_quote(log) + " 2>&1";
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
    for (int i = 0; i < 1200 && port_ == 0; ++i) {  // up to 2 minutes on a busy machine
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::string out = file_exists(log) ? read_file(log) : "";
      size_t at = out.find("http://127.0.0.1:");
      if (at != std::string::npos) port_ = std::atoi(out.c_str() + at + 17);
      if (port_ == 0 && waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "fundus serve exited early:\n" << out;
        return;
      }
    }
    EXPECT_GT(port_, 0) << "fundus serve did not start";
  }
  ~ServeProcess() {
    if (pid_ > 0) stop(SIGKILL);
  }
  int port() const { return port_; }
  /// Sends `signal` and returns the exit status (128 + signal when killed by it).
  int stop(int signal) {
    kill(pid_, signal);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = 0;
};

TEST_F(EngineServerTest, CliServeSurvivesAHardKillWithoutLosingAcknowledgedAdds) {
  std::string dir = copy_store();
  std::string args = "--store " + shell_quote(dir + "/cases.db") + " --model " + shell_quote(checkpoint) +
                     " --token tok --threads 2 --access-log " + shell_quote(work.file("access.log"));
  std::vector<int64_t> ids;
  {
    ServeProcess serve(args, work.file("serve1.log"));
    ASSERT_GT(serve.port(), 0);
    httplib::Client c("127.0.0.1", serve.port());
    c.set_read_timeout(60, 0);
    httplib::Headers auth = {{"Authorization", "Bearer tok"}};
    for (int i = 0; i < 2; ++i) {
      auto r = c.Post("/api/cases", auth,
                      form(read_file(image("extra", i)), {{"grade", "2"}, {"id", strprintf("kept%d", i)}}));
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 201) << r->body;
      ids.push_back(body_json(r)["id"]);
    }
    auto unauthorised = c.Delete(("/api/cases/" + std::to_string(ids[0])).c_str());
    ASSERT_TRUE(unauthorised);
    EXPECT_EQ(unauthorised->status, 401);
    EXPECT_EQ(serve.stop(SIGKILL), 128 + SIGKILL);  // no shutdown code runs: the index file is stale
  }
  {
    ServeProcess serve(args, work.file("serve2.log"));
    ASSERT_GT(serve.port(), 0);
    httplib::Client c("127.0.0.1", serve.port());
    c.set_read_timeout(60, 0);
    for (size_t i = 0; i < ids.size(); ++i) {
      auto g = c.Get(("/api/cases/" + std::to_string(ids[i])).c_str());
      ASSERT_TRUE(g);
      ASSERT_EQ(g->status, 200);
      EXPECT_EQ(body_json(g)["external_id"], strprintf("kept%zu", i));
      auto q = c.Post("/api/query", form(read_file(image("extra", int(i))), {{"k", "1"}}));
      ASSERT_TRUE(q);
      ASSERT_EQ(q->status, 200);
      EXPECT_EQ(body_json(q)["results"][0]["id"], ids[i]);  // indexed again after the restart
    }
    auto h = c.Get("/api/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(body_json(h)["indexed"], 32);
    EXPECT_EQ(serve.stop(SIGTERM), 0);  // graceful
  }
  std::string log = read_file(work.file("access.log"));
  EXPECT_NE(log.find("\"path\":\"/api/cases\""), std::string::npos);
  EXPECT_NE(read_file(work.file("serve2.log")).find("stopped"), std::string::npos);
}

TEST(CliServe, RefusesAMissingStoreWithoutCreatingIt) {
  TempDir dir;
  CommandResult r = run_cli("serve --port 0 --store " + shell_quote(dir.file("nope.db")) + " --model " +
                            shell_quote(dir.file("model.ckpt")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error: "), std::string::npos);
  EXPECT_NE(r.output.find("nope.db"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(dir.file("nope.db")));
}

}  // namespace
}  // namespace fundus::test
