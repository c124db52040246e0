// `fundus model fetch|list-weights` and `--pretrained imagenet` through the real binary, with the
// cache in a temporary TORCH_HOME and the server unreachable; plus the fresh-machine fixes:
// `fundus train --print-config` without --out, `fundus dataset stats` reporting rows it leaves out.
#include <algorithm>

#include <gtest/gtest.h>

#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::shell_quote;

// The CLI with its own torch.hub cache and weights server.
test::CommandResult cli(const test::TempDir& home, const std::string& args, const std::string& base_url = "") {
  std::string env = "TORCH_HOME=" + shell_quote(home.file("torch")) + " FUNDUS_QUIET=1 ";
  if (!base_url.empty()) env += "FUNDUS_WEIGHTS_URL=" + shell_quote(base_url) + " ";
  return test::run_command(env + shell_quote(FUNDUS_CLI) + " " + args);
}

TEST(CliWeights, FetchWithoutANetworkFailsWithOneClearLine) {
  test::TempDir home;
  const std::string base = "http://127.0.0.1:" + std::to_string(test::closed_local_port()) + "/models";
  auto r = cli(home, "model fetch mobilenet_v2", base);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "exactly one line:\n" << r.output;
  EXPECT_TRUE(starts_with(r.output, "error: download of " + base + "/mobilenet_v2-7ebf99e0.pth failed: cannot connect"))
      << r.output;
  EXPECT_NE(r.output.find("To install it by hand, copy mobilenet_v2-7ebf99e0.pth (from "
                          "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth) into " +
                          home.file("torch/hub/checkpoints")),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(file_exists(home.file("torch/hub/checkpoints/mobilenet_v2-7ebf99e0.pth")));
  EXPECT_FALSE(file_exists(home.file("torch/hub/checkpoints/mobilenet_v2-7ebf99e0.pth.partial")));

  r = cli(home, "model fetch resnet101");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown weights 'resnet101' (known: mobilenet_v2, "), std::string::npos) << r.output;
  r = cli(home, "model fetch");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("name the weights to fetch, e.g. `fundus model fetch mobilenet_v2`"), std::string::npos)
      << r.output;
}

TEST(CliWeights, ListShowsWhatIsCachedAndPretrainedFindsIt) {
  test::TempDir home;
  auto r = cli(home, "model list-weights --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "list-weights");
  ASSERT_EQ(j.size(), 7u);
  for (const auto& w : j) EXPECT_FALSE(w["cached"].get<bool>()) << w.dump();

  // Without the file, --pretrained imagenet names the fix.
  r = cli(home, "model info --preset cpu --pretrained imagenet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("pretrained 'imagenet': no mobilenet_v2 ImageNet weights in " +
                          home.file("torch/hub/checkpoints") + "; run `fundus model fetch mobilenet_v2`"),
            std::string::npos)
      << r.output;

  // A file under torchvision's name (here: not a real weight file) is listed as cached and found.
  make_dirs(home.file("torch/hub/checkpoints"));
  write_file_atomic(home.file("torch/hub/checkpoints/mobilenet_v2-b0353104.pth"), "not weights");
  r = cli(home, "model list-weights");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mobilenet_v2:IMAGENET1K_V1   mobilenet_v2-b0353104.pth    14  71.88%  cached"),
            std::string::npos)
      << r.output;
  r = cli(home, "model info --preset cpu --pretrained imagenet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(home.file("torch/hub/checkpoints/mobilenet_v2-b0353104.pth") + ": not a PyTorch weight file"),
            std::string::npos)
      << "the cached file was the one read:\n"
      << r.output;
}

TEST(CliTrain, PrintConfigNeedsNoOutFolder) {
  test::TempDir home;
  auto r = cli(home, "train --preset tiny --pretrained imagenet --print-config");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "train --print-config");
  EXPECT_EQ(j["model"]["pretrained"], "imagenet");
  r = cli(home, "train --preset tiny --data x.csv");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--out is required"), std::string::npos) << r.output;

  // Weights that are not cached stop training before any data work, and no run folder is made.
  r = cli(home, "train --preset tiny --pretrained imagenet --data x.csv --out " + shell_quote(home.file("run")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("run `fundus model fetch mobilenet_v2`"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(home.file("run")));
}

TEST(CliDatasetStats, ReportsRowsWithAnUnknownSplit) {
  test::TempDir dir;
  write_file_atomic(dir.file("m.csv"), "image,grade,patient,eye,split\na.jpg,0,P1,L,train\nb.jpg,1,P2,R,holdout\n");
  for (const char* f : {"a.jpg", "b.jpg"}) write_file_atomic(dir.file(f), "sizes are not read");
  auto r = test::run_cli("dataset stats --no-sizes " + shell_quote(dir.file("m.csv")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("splits: train 1\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 row left out of these counts"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(dir.file("m.csv") + ":3: split 'holdout' is not train, val or test"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace fundus
