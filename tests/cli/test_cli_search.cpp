// `fundus embed | query | eval | explain` end to end through the real binary, on a synthetic set and
// a checkpoint from a (very short) real training run.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/npy.h"
#include "fundus/core/strings.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::shell_quote;

struct CliSetup {
  test::TempDir dir;
  std::string synth, manifest, ckpt, store;
};

// Runs the CLI with logging limited to errors, so --json output parses.
test::CommandResult cli(const std::string& args) {
  return test::run_command("FUNDUS_QUIET=1 FUNDUS_LOG=error " + shell_quote(FUNDUS_CLI) + " " + args);
}

const CliSetup& setup() {
  static std::unique_ptr<CliSetup> s = [] {
    auto s = std::make_unique<CliSetup>();
    s->synth = s->dir.file("syn");
    auto r = cli("synth --out " + shell_quote(s->synth) + " --count 24 --size 128 --seed 3");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = cli("dataset split " + shell_quote(s->synth + "/labels.csv") + " --out " + shell_quote(s->dir.file("sp")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    s->manifest = s->dir.file("sp/manifest.csv");
    r = cli("train --preset tiny --data " + shell_quote(s->manifest) + " --out " + shell_quote(s->dir.file("run")) +
            " --epochs 1 --set train.max_steps_per_epoch=2 --set train.select=train_loss --threads 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    s->ckpt = s->dir.file("run/checkpoints/best.ckpt");
    s->store = s->dir.file("cases.db");
    r = cli("store add --store " + shell_quote(s->store) + " --data " + shell_quote(s->manifest));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return s;
  }();
  return *s;
}

std::string model_store() { return " --model " + shell_quote(setup().ckpt) + " --store " + shell_quote(setup().store); }

}  // namespace

TEST(CliSearch, EmbedIsResumable) {
  const CliSetup& s = setup();
  ASSERT_TRUE(file_exists(s.ckpt));
  auto r = cli("embed" + model_store() + " --limit 10 --batch 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("embedded 10 cases"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("14 still to do"), std::string::npos) << r.output;
  r = cli("embed" + model_store() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "embed --json");
  EXPECT_EQ(j["embedded"], 14);
  EXPECT_EQ(j["already"], 10);
  EXPECT_EQ(j["index_size"], 24);
  EXPECT_TRUE(file_exists(j["index_path"].get<std::string>()));
  r = cli("embed" + model_store());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("embedded 0 cases"), std::string::npos) << r.output;
  r = cli("embed --model " + shell_quote(s.ckpt) + " --store " + shell_quote(s.dir.file("missing.db")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
}

// `fundus embed --nproc 2`: two worker processes (c10d over loopback) split the cases, rank 0 writes
// every vector into the one store; the vectors equal those of one process (same model, same
// images, same batches: eval mode, so only float rounding between thread counts may differ).
TEST(CliSearch, EmbedWithTwoProcessesWritesTheVectorsOfOne) {
  const CliSetup& s = setup();
  ASSERT_TRUE(file_exists(s.ckpt));
  auto embed_into = [&](const std::string& name, const std::string& extra) {
    const std::string db = s.dir.file(name + ".db");
    auto r = cli("store add --store " + shell_quote(db) + " --data " + shell_quote(s.manifest));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = cli("embed --model " + shell_quote(s.ckpt) + " --store " + shell_quote(db) + " --batch 4 --threads 1 --json" +
            extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    Json j = parse_json(r.output, "embed --json" + extra);
    EXPECT_EQ(j["embedded"], 24) << r.output;
    EXPECT_EQ(j["index_size"], 24) << r.output;
    r = cli("store export --store " + shell_quote(db) + " --out " + shell_quote(s.dir.file(name + "_export")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::string npy;
    for (const std::string& line : split(r.output, '\n'))
      if (ends_with(line, ".npy")) npy = line.substr(std::string("wrote ").size());
    EXPECT_FALSE(npy.empty()) << r.output;
    return std::make_pair(read_npy(npy), read_file(npy.substr(0, npy.size() - 4) + "_ids.csv"));
  };
  auto [one, one_ids] = embed_into("one", "");
  auto [two, two_ids] = embed_into("two", " --nproc 2");
  ASSERT_EQ(one.shape, two.shape);
  ASSERT_EQ(one.shape[0], 24);
  EXPECT_EQ(one_ids, two_ids);  // the same cases in the same rows
  const std::vector<float> a = one.as_float(), b = two.as_float();
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  std::cout << "[embed --nproc 2] largest difference to 1 process: " << worst << "\n";
  EXPECT_LT(worst, 1e-4f);
}

TEST(CliSearch, QueryTableJsonSheetAndErrors) {
  const CliSetup& s = setup();
  std::string image = s.synth + "/images/synth0002_L.jpg";
  // (Run alone, as ctest does, the store has no vectors yet: this first query embeds them.)
  auto r = cli("query " + shell_quote(image) + model_store() + " -k 3 --json --embed-missing --sheet " +
               shell_quote(s.dir.file("sheet.jpg")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "query --json");
  ASSERT_EQ(j.size(), 1u);
  // (Which case ranks first is the engine tests' business: a 2-step model barely separates images.)
  ASSERT_EQ(j[0]["hits"].size(), 3u);
  EXPECT_EQ(j[0]["hits"][0]["rank"], 1);
  EXPECT_GE(j[0]["hits"][0]["similarity"].get<double>(), j[0]["hits"][2]["similarity"].get<double>());
  EXPECT_TRUE(j[0]["estimate"]["grade"].get<int>() >= 0);
  EXPECT_EQ(j[0]["sheet"], s.dir.file("sheet.jpg"));
  EXPECT_TRUE(file_exists(s.dir.file("sheet.jpg")));

  r = cli("query " + shell_quote(image) + model_store() + " -k 4 --exclude-patient synth0002 --grades 1,2,3,4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = parse_json(r.output, "query --json");
  ASSERT_EQ(j[0]["hits"].size(), 4u);
  for (const Json& h : j[0]["hits"]) {
    EXPECT_NE(h["patient"], "synth0002");
    EXPECT_NE(h["grade"], 0);
  }
  r = cli("query " + shell_quote(image) + model_store() + " -k 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank  id"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("grade estimate:"), std::string::npos) << r.output;

  r = cli("query " + shell_quote(image) + model_store() + " --grades 7");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("grade filter 7"), std::string::npos) << r.output;
  r = cli("query " + shell_quote(s.dir.file("nope.jpg")) + model_store());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nope.jpg: image file not found"), std::string::npos) << r.output;
}

// Item 6: a checkpoint whose model was not in the store made `query` embed the whole store and
// write a new model into it without a word. Item 4: queries on a write-protected store failed.
TEST(CliSearch, QueryNeverWritesTheStoreUnlessAskedTo) {
  const CliSetup& s = setup();
  test::TempDir dir;
  const std::string db = dir.file("fresh.db");
  auto r = cli("store add --store " + shell_quote(db) + " --data " + shell_quote(s.manifest));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string image = s.synth + "/images/synth0002_L.jpg";
  const std::string ms = " --model " + shell_quote(s.ckpt) + " --store " + shell_quote(db);
  const std::string before = sha256_file(db);
  r = cli("query " + shell_quote(image) + ms + " -k 3");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(db + ": model '"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("has no vectors in this store (24 cases); embed them first with `fundus embed --model"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(sha256_file(db), before);
  EXPECT_EQ(parse_json(cli("store stats --json --store " + shell_quote(db)).output, "stats")["models"].size(), 0u);

  r = cli("query " + shell_quote(image) + ms + " -k 3 --json --embed-missing");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(parse_json(r.output, "query --json")[0]["hits"].size(), 3u);
  Json stats = parse_json(cli("store stats --json --store " + shell_quote(db)).output, "stats");
  ASSERT_EQ(stats["models"].size(), 1u);
  EXPECT_EQ(stats["models"][0]["embeddings"], 24);

  // Cases added later are left out with a warning, not embedded behind the user's back.
  make_dirs(dir.file("more"));
  write_file_atomic(dir.file("more/new1.jpg"), read_file(image));
  write_file_atomic(dir.file("more/new2.jpg"), read_file(image));
  write_file_atomic(dir.file("more/labels.csv"), "image,grade\nnew1.jpg,1\nnew2.jpg,2\n");
  r = cli("store add --store " + shell_quote(db) + " --data " + shell_quote(dir.file("more/labels.csv")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command("FUNDUS_QUIET=1 " + shell_quote(FUNDUS_CLI) + " query " + shell_quote(image) + ms + " -k 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 of 26 cases have no vector for model 1 and are not searched; run `fundus embed"),
            std::string::npos)
      << r.output;
  stats = parse_json(cli("store stats --json --store " + shell_quote(db)).output, "stats");
  EXPECT_EQ(stats["models"][0]["embeddings"], 24);

  // Write-protected: queries still answer (root ignores permissions, so run as nobody there).
  std::string as = "";
  if (geteuid() == 0) {
    if (test::run_command("setpriv --reuid=65534 --regid=65534 --clear-groups true").exit_code != 0)
      GTEST_SKIP() << "running as root without setpriv: cannot make a file read-only";
    as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  ASSERT_EQ(::chmod(s.dir.path().c_str(), 0755), 0);  // the checkpoint and the images must be readable
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);    // the store's folder is read-only too
  ASSERT_EQ(::chmod(db.c_str(), 0444), 0);
  const std::string protected_bytes = sha256_file(db);
  r = test::run_command(as + "env FUNDUS_QUIET=1 FUNDUS_LOG=error " + shell_quote(FUNDUS_CLI) + " query " +
                        shell_quote(image) + ms + " -k 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(parse_json(r.output, "query --json")[0]["hits"].size(), 2u);
  r = test::run_command(as + shell_quote(FUNDUS_CLI) + " query " + shell_quote(image) + ms + " --embed-missing");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(db + ": cannot write to the case store"), std::string::npos) << r.output;
  EXPECT_EQ(sha256_file(db), protected_bytes);
}

namespace {
// An all-black RGB PNG written by hand (this suite links no image library): zlib stored blocks.
std::string black_png(uint32_t w, uint32_t h) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  auto chunk = [&](const std::string& type, const std::string& data) {
    return be32(uint32_t(data.size())) + type + data + be32(crc32(type + data));
  };
  const std::string raw(size_t(h) * (1 + 3 * w), '\0');  // filter byte 0 + black pixels per row
  std::string z = "\x78\x01";
  for (size_t at = 0; at < raw.size(); at += 65535) {
    const uint16_t n = uint16_t(std::min<size_t>(65535, raw.size() - at));
    z += char(at + n == raw.size());
    z += {char(n & 255), char(n >> 8), char(~n & 255), char((~n >> 8) & 255)};
    z += raw.substr(at, n);
  }
  uint32_t a = 1, b = 0;  // adler32
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  z += be32((b << 16) | a);
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", be32(w) + be32(h) + std::string("\x08\x02\0\0\0", 5)) +
         chunk("IDAT", z) + chunk("IEND", "");
}
}  // namespace

// Issue 9 item 3 and issue 10 item 9: no answer for what is not a fundus photograph, and a directory is
// called a directory; `query` and `explain` exit non-zero naming the file.
TEST(CliSearch, QueryAndExplainRefuseImagesWithoutFieldOfView) {
  const CliSetup& s = setup();
  const std::string black = s.dir.file("black.png"), dir = s.dir.file("folder.jpg");
  write_file_atomic(black, black_png(320, 240));
  make_dirs(dir);
  for (const std::string& cmd : {"query " + shell_quote(black) + model_store() + " --embed-missing",
                                 "explain " + shell_quote(black) + " --model " + shell_quote(s.ckpt) + " -o " +
                                     shell_quote(s.dir.file("black_panel.png"))}) {
    auto r = cli(cmd);
    EXPECT_EQ(r.exit_code, 1) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(black + ": no field of view found (the image is practically uniform"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("not a fundus photograph"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("grade estimate"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(file_exists(s.dir.file("black_panel.png")));
  auto r = cli("query " + shell_quote(dir) + model_store() + " --embed-missing");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(dir + ": is a directory, not an image file"), std::string::npos) << r.output;
}

TEST(CliSearch, EvalWritesReports) {
  const CliSetup& s = setup();
  std::string out = s.dir.file("eval");
  auto r = cli("eval --model " + shell_quote(s.ckpt) + " --data " + shell_quote(s.manifest) + " --out " +
               shell_quote(out) + " --k 1,5,10 --exclude-same-patient");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| metric |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Leakage effect"), std::string::npos) << r.output;
  for (const char* f : {"eval.json", "eval.csv", "eval.md", "per_query.csv", "report.html", "config.json"})
    EXPECT_TRUE(file_exists(out + "/" + f)) << f;
  Json j = load_json_file(out + "/eval.json");
  EXPECT_TRUE(j["options"]["exclude_same_patient"].get<bool>());
  EXPECT_FALSE(j["other_setting"]["options"]["exclude_same_patient"].get<bool>());
  r = cli("eval --model " + shell_quote(s.ckpt) + " --data " + shell_quote(s.manifest) + " --relevance nonsense");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
}

TEST(CliSearch, ExplainPanelAndLocalisation) {
  const CliSetup& s = setup();
  std::string image = s.synth + "/images/synth0005_R.jpg";
  auto r = cli("explain " + shell_quote(image) + " --model " + shell_quote(s.ckpt) + " -o " +
               shell_quote(s.dir.file("panel.png")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mirror-attention"), std::string::npos) << r.output;
  EXPECT_TRUE(file_exists(s.dir.file("panel.png")));
  r = cli("explain " + shell_quote(image) + model_store() + " --case synth0002_L --method gradcam --json -o " +
          shell_quote(s.dir.file("gc.png")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "explain --json");
  EXPECT_EQ(j["method"], "grad-cam");
  EXPECT_EQ(j["reference"], "synth0002_L");
  r = cli("explain --localisation --model " + shell_quote(s.ckpt) + " --data " + shell_quote(s.manifest) +
          " --split train --masks " + shell_quote(s.synth + "/masks") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = parse_json(r.output, "explain --localisation --json");
  EXPECT_GT(j["evaluated"].get<int>(), 0);
  ASSERT_EQ(j["per_image"].size(), j["evaluated"].get<size_t>());
  double hits = 0;  // the reported rate is the share of per-image hits
  for (const Json& i : j["per_image"]) hits += i["pointing_hit"].get<bool>() ? 1 : 0;
  EXPECT_NEAR(j["pointing_hit_rate"].get<double>(), hits / j["evaluated"].get<double>(), 1e-12);
  r = cli("explain " + shell_quote(image) + " --model " + shell_quote(s.ckpt));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("-o OUT.png"), std::string::npos) << r.output;
}

}  // namespace fundus
