// Pretrained weights the way PyTorch users get them: downloads from a real HTTP server on 127.0.0.1
// (cpp-httplib, Range requests included) — success, resume, a cut-off transfer, a server that
// ignores ranges, wrong hash, 404, connection refused; torch.hub's cache folder rules; resolving
// "imagenet" and weights names; the table checked against torchvision itself; and torchvision's
// legacy DenseNet files (old key names, legacy torch.save format, no num_batches_tracked) loading
// into our densenet121 with torchvision's output.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/model/backbone.h"
#include "fundus/model/download.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "fundus/model/state_dict.h"
#include "fundus/model/weights_hub.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::get;
using test::max_abs_diff;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng.below(256));
  return s;
}

// Sets environment variables for one test and restores them afterwards.
class EnvGuard {
 public:
  void set(const char* name, const std::string& value) {
    remember(name);
    ::setenv(name, value.c_str(), 1);
  }
  void unset(const char* name) {
    remember(name);
    ::unsetenv(name);
  }
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second.first) ::setenv(it->first.c_str(), it->second.second.c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  void remember(const char* name) {
    const char* v = std::getenv(name);
    saved_.push_back({name, {v != nullptr, v ? v : ""}});
  }
  std::vector<std::pair<std::string, std::pair<bool, std::string>>> saved_;
};

// Serves files under /models/ like download.pytorch.org does (Range requests answered with 206).
class WeightsServer {
 public:
  enum class Mode { normal, cut_off_halfway, ignore_range };

  WeightsServer() {
    server_.Get(R"(/models/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~WeightsServer() {
    server_.stop();
    thread_.join();
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/models"; }
  std::string url(const std::string& name) const { return base_url() + "/" + name; }
  void serve(const std::string& name, const std::string& bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    files_[name] = bytes;
  }
  void set_mode(Mode mode) {
    std::lock_guard<std::mutex> lock(mu_);
    mode_ = mode;
  }
  std::vector<std::string> ranges() const {  // the Range header of every request ("" = none)
    std::lock_guard<std::mutex> lock(mu_);
    return ranges_;
  }

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_.push_back(req.get_header_value("Range"));
    auto it = files_.find(req.matches[1].str());
    if (it == files_.end()) {
      res.status = 404;
      res.set_content("not found", "text/plain");
      return;
    }
    auto body = std::make_shared<std::string>(it->second);
    if (mode_ == Mode::normal) {
      res.set_content(*body, "application/octet-stream");
    } else if (mode_ == Mode::cut_off_halfway) {
      // Announces the whole length, sends half, then drops the connection.
      res.set_content_provider(body->size(), "application/octet-stream",
                               [body](size_t offset, size_t length, httplib::DataSink& sink) {
                                 size_t half = body->size() / 2;
                                 if (offset >= half) return false;
                                 sink.write(body->data() + offset, std::min(length, half - offset));
                                 return true;
                               });
    } else {
      // Chunked, so that httplib cannot apply the range: a 200 with the whole file.
      res.status = 200;
      res.set_chunked_content_provider("application/octet-stream", [body](size_t offset, httplib::DataSink& sink) {
        if (offset == 0) sink.write(body->data(), body->size());
        sink.done();
        return true;
      });
    }
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::map<std::string, std::string> files_;
  std::vector<std::string> ranges_;
  Mode mode_ = Mode::normal;
};

class Download : public ::testing::Test {
 protected:
  void SetUp() override {
    body_ = random_bytes(300 * 1000 + 7, 11);
    sha_ = sha256_hex(body_);
    server_.serve("w.pth", body_);
    dest_ = dir_.file("cache/w.pth");
    options_.sha256_prefix = sha_.substr(0, 8);
    options_.progress = false;
  }
  std::string partial() const { return partial_download_path(dest_); }
  test::TempDir dir_;
  WeightsServer server_;
  std::string body_, sha_, dest_;
  DownloadOptions options_;
};

TEST_F(Download, FetchesVerifiesAndLeavesOnlyTheFile) {
  DownloadResult r = download_file(server_.url("w.pth"), dest_, options_);
  EXPECT_EQ(r.path, dest_);
  EXPECT_EQ(r.bytes, int64_t(body_.size()));
  EXPECT_EQ(r.resumed_from, 0);
  EXPECT_EQ(r.sha256, sha_);
  EXPECT_EQ(read_file(dest_), body_);
  EXPECT_EQ(list_dir(dir_.file("cache")), std::vector<std::string>{"w.pth"});
  EXPECT_EQ(server_.ranges(), std::vector<std::string>{""}) << "a fresh download asks for the whole file";
}

TEST_F(Download, ReadsFileUrlsToo) {
  // A folder of weight files on a USB stick or a network share: FUNDUS_WEIGHTS_URL=file:///...
  write_file_atomic(dir_.file("w.pth"), body_);
  DownloadResult r = download_file("file://" + dir_.file("w.pth"), dest_, options_);
  EXPECT_EQ(r.sha256, sha_);
  EXPECT_EQ(read_file(dest_), body_);
}

TEST_F(Download, ResumesAPartialFileWithARangeRequest) {
  make_dirs(dir_.file("cache"));
  write_file_atomic(partial(), body_.substr(0, 123457));
  DownloadResult r = download_file(server_.url("w.pth"), dest_, options_);
  EXPECT_EQ(server_.ranges(), std::vector<std::string>{"bytes=123457-"});
  EXPECT_EQ(r.resumed_from, 123457);
  EXPECT_EQ(read_file(dest_), body_);
  EXPECT_FALSE(file_exists(partial()));
}

TEST_F(Download, KeepsACutOffTransferAndTheNextCallResumesIt) {
  server_.set_mode(WeightsServer::Mode::cut_off_halfway);
  std::string e = error_of([&] { download_file(server_.url("w.pth"), dest_, options_); });
  EXPECT_NE(e.find("download of " + server_.url("w.pth") + " failed"), std::string::npos) << e;
  EXPECT_NE(e.find("run again to resume"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  EXPECT_FALSE(file_exists(dest_));
  ASSERT_TRUE(file_exists(partial()));
  const std::string kept = read_file(partial());
  EXPECT_EQ(kept.size(), body_.size() / 2);
  EXPECT_EQ(kept, body_.substr(0, kept.size()));

  server_.set_mode(WeightsServer::Mode::normal);
  DownloadResult r = download_file(server_.url("w.pth"), dest_, options_);
  EXPECT_EQ(r.resumed_from, int64_t(kept.size()));
  EXPECT_EQ(server_.ranges().back(), "bytes=" + std::to_string(kept.size()) + "-");
  EXPECT_EQ(read_file(dest_), body_);
  EXPECT_EQ(list_dir(dir_.file("cache")), std::vector<std::string>{"w.pth"});
}

TEST_F(Download, StartsOverWhenTheServerIgnoresTheRange) {
  make_dirs(dir_.file("cache"));
  write_file_atomic(partial(), std::string(5000, 'z'));  // not even the right bytes
  server_.set_mode(WeightsServer::Mode::ignore_range);
  DownloadResult r = download_file(server_.url("w.pth"), dest_, options_);
  EXPECT_EQ(server_.ranges(), std::vector<std::string>{"bytes=5000-"});
  EXPECT_EQ(r.resumed_from, 0);
  EXPECT_EQ(read_file(dest_), body_);
}

TEST_F(Download, AFinishedPartialFileIsVerifiedAndKeptOn416) {
  make_dirs(dir_.file("cache"));
  write_file_atomic(partial(), body_);  // a run that stopped between the last byte and the rename
  DownloadResult r = download_file(server_.url("w.pth"), dest_, options_);
  EXPECT_EQ(r.resumed_from, int64_t(body_.size()));
  EXPECT_EQ(read_file(dest_), body_);
  EXPECT_EQ(list_dir(dir_.file("cache")), std::vector<std::string>{"w.pth"});
}

TEST_F(Download, AWrongHashLeavesNothingBehind) {
  options_.sha256_prefix = sha_[0] == '0' ? "11111111" : "00000000";
  std::string e = error_of([&] { download_file(server_.url("w.pth"), dest_, options_); });
  EXPECT_NE(e.find("failed its checksum: SHA-256 " + sha_.substr(0, 16) + "... does not start with " +
                   options_.sha256_prefix),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("nothing was kept"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_TRUE(list_dir(dir_.file("cache")).empty());

  // A damaged partial file resumed into a wrong whole is not kept either.
  options_.sha256_prefix = sha_.substr(0, 8);
  write_file_atomic(partial(), std::string(1000, 'z'));
  e = error_of([&] { download_file(server_.url("w.pth"), dest_, options_); });
  EXPECT_NE(e.find("failed its checksum"), std::string::npos) << e;
  EXPECT_TRUE(list_dir(dir_.file("cache")).empty());
}

TEST_F(Download, NotFoundIsOneLineAndLeavesNothing) {
  make_dirs(dir_.file("cache"));
  write_file_atomic(dir_.file("cache/missing.pth.partial"), "old bytes");  // not resumable from a 404
  std::string e =
      error_of([&] { download_file(server_.url("missing.pth"), dir_.file("cache/missing.pth"), options_); });
  EXPECT_NE(e.find("download of " + server_.url("missing.pth") + " failed: HTTP 404 (not found)"), std::string::npos)
      << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_TRUE(list_dir(dir_.file("cache")).empty());
}

TEST_F(Download, ConnectionRefusedIsOneLineAndLeavesNothing) {
  const std::string url = "http://127.0.0.1:" + std::to_string(test::closed_local_port()) + "/models/w.pth";
  std::string e = error_of([&] { download_file(url, dest_, options_); });
  EXPECT_NE(e.find("download of " + url + " failed: cannot connect (connection refused or network unreachable)"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_TRUE(list_dir(dir_.file("cache")).empty());
}

TEST_F(Download, AConcurrentDownloadOfTheSameFileIsRefused) {
  make_dirs(dir_.file("cache"));
  // A second process holding the lock is simulated by a second descriptor in this one (flock locks
  // belong to open file descriptions, so this conflicts like another process would).
  int fd = ::open(partial().c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  std::string e = error_of([&] { download_file(server_.url("w.pth"), dest_, options_); });
  ::close(fd);
  EXPECT_NE(e.find("another download of this file is running"), std::string::npos) << e;
  EXPECT_FALSE(file_exists(dest_));
}

// ---- the hub: names, cache folder, resolving --------------------------------------------------

TEST(WeightsHub, CacheFolderFollowsTorchHubRules) {
  EnvGuard env;
  env.set("HOME", "/home/u");
  env.unset("TORCH_HOME");
  env.unset("XDG_CACHE_HOME");
  EXPECT_EQ(hub_checkpoint_dir(), "/home/u/.cache/torch/hub/checkpoints");
  env.set("XDG_CACHE_HOME", "/var/cache/u");
  EXPECT_EQ(hub_checkpoint_dir(), "/var/cache/u/torch/hub/checkpoints");
  env.set("TORCH_HOME", "/data/torch");
  EXPECT_EQ(hub_checkpoint_dir(), "/data/torch/hub/checkpoints");
  env.set("TORCH_HOME", "~/t");
  EXPECT_EQ(hub_checkpoint_dir(), "/home/u/t/hub/checkpoints");

  env.unset("FUNDUS_WEIGHTS_URL");
  EXPECT_EQ(weights_base_url(), "https://download.pytorch.org/models");
  EXPECT_EQ(weights_url(known_weights_named("resnet18")), "https://download.pytorch.org/models/resnet18-f37072fd.pth");
  env.set("FUNDUS_WEIGHTS_URL", "http://mirror.local/m/");
  EXPECT_EQ(weights_url(known_weights_named("resnet18")), "http://mirror.local/m/resnet18-f37072fd.pth");
}

TEST(WeightsHub, NamesVersionsAndHashPrefixes) {
  EXPECT_EQ(known_weights().size(), 7u);
  EXPECT_EQ(known_weights_named("mobilenet_v2").file, "mobilenet_v2-7ebf99e0.pth");
  EXPECT_EQ(known_weights_named("mobilenet_v2:DEFAULT").version, "IMAGENET1K_V2");
  EXPECT_EQ(known_weights_named("mobilenet_v2:IMAGENET1K_V1").file, "mobilenet_v2-b0353104.pth");
  EXPECT_EQ(known_weights_named("resnet50-0676ba61.pth").name(), "resnet50:IMAGENET1K_V1");
  EXPECT_EQ(known_weights_named("resnet50").version, "IMAGENET1K_V2");
  EXPECT_EQ(known_weights_named("densenet121").sha256_prefix(), "a639ec97");
  EXPECT_EQ(find_known_weights("resnet101"), nullptr);
  EXPECT_EQ(find_known_weights("resnet18:IMAGENET1K_V2"), nullptr);
  std::string e = error_of([] { known_weights_named("resnet101"); });
  EXPECT_NE(e.find("unknown weights 'resnet101' (known: mobilenet_v2, mobilenet_v2:IMAGENET1K_V1, "
                   "mobilenet_v2:IMAGENET1K_V2, resnet18, "),
            std::string::npos)
      << e;
  for (const auto& w : known_weights()) {
    EXPECT_EQ(w.sha256_prefix().size(), 8u) << w.file;
    EXPECT_NE(std::find(backbone_names().begin(), backbone_names().end(), w.backbone), backbone_names().end());
  }
}

TEST(WeightsHub, TableMatchesTorchvision) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  auto r = test::run_python(R"PY(
import torchvision.models as m
for name, enum in [("mobilenet_v2", m.MobileNet_V2_Weights), ("resnet18", m.ResNet18_Weights),
                   ("resnet34", m.ResNet34_Weights), ("resnet50", m.ResNet50_Weights),
                   ("densenet121", m.DenseNet121_Weights)]:
    for w in enum:
        print(name, w.name, w.url.rsplit("/", 1)[1], int(w == enum.DEFAULT), w.meta["_metrics"]["ImageNet-1K"]["acc@1"])
)PY");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string ours;
  for (const auto& w : known_weights())
    ours += w.backbone + " " + w.version + " " + w.file + " " + (w.is_default ? "1 " : "0 ") +
            strprintf("%.3f", w.imagenet_top1) + "\n";
  std::string theirs;
  for (const auto& line : split(trim(r.output), '\n')) {
    auto f = split(line, ' ');
    ASSERT_EQ(f.size(), 5u) << line;
    theirs += f[0] + " " + f[1] + " " + f[2] + " " + f[3] + " " + strprintf("%.3f", std::stod(f[4])) + "\n";
  }
  EXPECT_EQ(ours, theirs);
}

class WeightsCache : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.set("TORCH_HOME", dir_.file("torch"));
    cache_ = dir_.file("torch/hub/checkpoints");
    make_dirs(cache_);
  }
  void put(const std::string& file, const std::string& bytes = "x") {
    write_file_atomic(join_path(cache_, file), bytes);
  }
  EnvGuard env_;
  test::TempDir dir_;
  std::string cache_;
};

TEST_F(WeightsCache, ResolvesImagenetAndNamesInTheHubCache) {
  EXPECT_EQ(resolve_pretrained("", "mobilenet_v2"), "");
  std::string e = error_of([] { resolve_pretrained("imagenet", "mobilenet_v2"); });
  EXPECT_NE(e.find("pretrained 'imagenet': no mobilenet_v2 ImageNet weights in " + cache_ +
                   "; run `fundus model fetch mobilenet_v2`, or copy mobilenet_v2-7ebf99e0.pth into " + cache_),
            std::string::npos)
      << e;
  e = error_of([] { resolve_pretrained("mobilenet_v2:IMAGENET1K_V1", "mobilenet_v2"); });
  EXPECT_NE(e.find("run `fundus model fetch mobilenet_v2:IMAGENET1K_V1`"), std::string::npos) << e;

  put("mobilenet_v2-b0353104.pth");  // only the non-default version: "imagenet" takes it
  EXPECT_EQ(resolve_pretrained("imagenet", "mobilenet_v2"), join_path(cache_, "mobilenet_v2-b0353104.pth"));
  put("mobilenet_v2-7ebf99e0.pth");  // the default wins once it is there
  EXPECT_EQ(resolve_pretrained("imagenet", "mobilenet_v2"), join_path(cache_, "mobilenet_v2-7ebf99e0.pth"));
  EXPECT_EQ(resolve_pretrained("mobilenet_v2", "mobilenet_v2"), join_path(cache_, "mobilenet_v2-7ebf99e0.pth"));
  EXPECT_EQ(resolve_pretrained("mobilenet_v2:IMAGENET1K_V1", "mobilenet_v2"),
            join_path(cache_, "mobilenet_v2-b0353104.pth"));
  EXPECT_EQ(resolve_pretrained("mobilenet_v2-b0353104.pth", "mobilenet_v2"),
            join_path(cache_, "mobilenet_v2-b0353104.pth"));

  put("resnet18-f37072fd.pth");
  e = error_of([] { resolve_pretrained("resnet18", "mobilenet_v2"); });
  EXPECT_NE(e.find("these are resnet18 weights, the model's backbone is mobilenet_v2"), std::string::npos) << e;
  e = error_of([] { resolve_pretrained("imagenet1k", "mobilenet_v2"); });
  EXPECT_NE(e.find("pretrained 'imagenet1k': neither a file nor known weights (imagenet, "), std::string::npos) << e;
  // Paths are returned as they are (reading reports a missing file), existing files too.
  EXPECT_EQ(resolve_pretrained("runs/a/best.pth", "mobilenet_v2"), "runs/a/best.pth");
  EXPECT_EQ(resolve_pretrained(join_path(cache_, "resnet18-f37072fd.pth"), "mobilenet_v2"),
            join_path(cache_, "resnet18-f37072fd.pth"));
}

TEST_F(WeightsCache, FetchDownloadsOnceAndReplacesADamagedFile) {
  WeightsServer server;
  const std::string body = random_bytes(70000, 3);
  KnownWeights w{"mobilenet_v2", "TEST", "tiny-" + sha256_hex(body).substr(0, 8) + ".pth", false, 0, 0};
  server.serve(w.file, body);
  FetchOptions options;
  options.base_url = server.base_url();
  options.progress = false;
  FetchResult r = fetch_weights(w, options);
  EXPECT_TRUE(r.downloaded);
  EXPECT_EQ(r.path, join_path(cache_, w.file));
  EXPECT_EQ(read_file(r.path), body);

  r = fetch_weights(w, options);
  EXPECT_FALSE(r.downloaded) << "a verified cached file is kept";
  EXPECT_EQ(server.ranges().size(), 1u);

  write_file_atomic(r.path, "damaged");
  r = fetch_weights(w, options);
  EXPECT_TRUE(r.downloaded);
  EXPECT_EQ(read_file(r.path), body);

  Json status = weights_status("", server.base_url());
  ASSERT_EQ(status.size(), 7u);
  EXPECT_EQ(status[1]["name"], "mobilenet_v2:IMAGENET1K_V2");
  EXPECT_EQ(status[1]["cached"], false);
  EXPECT_EQ(status[1]["url"], server.base_url() + "/mobilenet_v2-7ebf99e0.pth");

  // A failure says how to get the file without this command, on one line.
  KnownWeights missing{"resnet18", "TEST", "gone-12345678.pth", false, 0, 0};
  std::string e = error_of([&] { fetch_weights(missing, options); });
  EXPECT_NE(e.find("HTTP 404 (not found). To install it by hand, copy gone-12345678.pth (from "
                   "https://download.pytorch.org/models/gone-12345678.pth) into " +
                   cache_),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_EQ(list_dir(cache_), std::vector<std::string>{w.file});

  // A cached file that fails its check is named when it cannot be replaced.
  write_file_atomic(join_path(cache_, missing.file), "stale");
  e = error_of([&] { fetch_weights(missing, options); });
  EXPECT_NE(e.find("HTTP 404 (not found) (the cached gone-12345678.pth fails its SHA-256 check). To install"),
            std::string::npos)
      << e;
}

TEST_F(WeightsCache, RetrievalNetLoadsImagenetFromTheHubCache) {
  // A mobilenet_v2 file under torchvision's name, as torchvision would have cached it.
  seed_torch(3);
  Backbone source = make_backbone("mobilenet_v2");
  write_state_dict(join_path(cache_, "mobilenet_v2-7ebf99e0.pth"), module_state_dict(*source));
  ModelConfig config;
  config.backbone = BackboneKind::mobilenet_v2;
  config.pretrained = "imagenet";
  RetrievalNet net(config);
  EXPECT_EQ(max_abs_diff(get(module_state_dict(*net), "backbone.features.0.0.weight"),
                         get(module_state_dict(*source), "features.0.0.weight")),
            0.0);
  config.backbone = BackboneKind::resnet18;
  std::string e = error_of([&] { RetrievalNet other(config); });
  EXPECT_NE(e.find("no resnet18 ImageNet weights in " + cache_), std::string::npos) << e;
}

// ---- torchvision's legacy DenseNet files -------------------------------------------------------

TEST(TorchvisionLegacy, UpgradesDenseNetKeysAndAddsBatchNormCounters) {
  StateDict old;
  old.insert("features.norm0.running_mean", torch::zeros({2}));
  old.insert("features.denseblock1.denselayer1.norm.1.weight", torch::ones({2}));
  old.insert("features.denseblock1.denselayer1.norm.1.running_mean", torch::zeros({2}));
  old.insert("features.denseblock1.denselayer12.conv.2.weight", torch::ones({1}));
  old.insert("features.transition1.norm.weight", torch::ones({2}));  // never had a dot-number
  old.insert("features.denseblock1.denselayer1.norm.1.num_batches_tracked", torch::zeros({}, torch::kLong));
  StateDict now = upgrade_torchvision_state_dict(old);
  EXPECT_EQ(now.keys(),
            (std::vector<std::string>{
                "features.norm0.running_mean", "features.denseblock1.denselayer1.norm1.weight",
                "features.denseblock1.denselayer1.norm1.running_mean", "features.denseblock1.denselayer12.conv2.weight",
                "features.transition1.norm.weight", "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
                "features.norm0.num_batches_tracked", "features.denseblock1.denselayer1.norm1.num_batches_tracked"}));
  EXPECT_EQ(get(now, "features.norm0.num_batches_tracked").item<int64_t>(), 0);
}

// torchvision's densenet121 with random non-default BatchNorm statistics, saved the way the 2017 file
// on download.pytorch.org is: legacy names ("norm.1"), legacy torch.save format, an OrderedDict,
// without num_batches_tracked; plus its features for a fixed input.
const char* kLegacyDenseNet = R"PY(
import collections, re, sys, torch, torchvision
d = sys.argv[1]
torch.manual_seed(1)
m = torchvision.models.densenet121()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5); mod.running_var.uniform_(0.5, 2.0)
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
m.eval()
# torchvision's load regex, inverted: norm1 -> norm.1
inverse = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
sd = collections.OrderedDict()
renamed = 0
for k, v in m.state_dict().items():
    if k.endswith("num_batches_tracked"):
        continue
    g = inverse.match(k)
    if g:
        k = g.group(1) + "." + g.group(2)
        renamed += 1
    sd[k] = v
assert renamed == 58 * 10, renamed  # 58 layers: norm1/norm2 (4 tensors each), conv1/conv2
torch.save(sd, d + "/densenet121-legacy.pth", _use_new_zipfile_serialization=False)
# what torchvision itself does with such a file
check = torchvision.models.densenet121()
pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
loaded = torch.load(d + "/densenet121-legacy.pth")
for k in list(loaded):
    r = pattern.match(k)
    if r:
        loaded[r.group(1) + r.group(2)] = loaded.pop(k)
check.load_state_dict(loaded)
check.eval()
x = torch.rand(2, 3, 64, 64)
with torch.no_grad():
    f = check.features(x)
    assert torch.equal(f, m.features(x))
torch.save({"x": x, "features": f}, d + "/io.pth")
)PY";

TEST(TorchvisionLegacy, LegacyDenseNetFileLoadsAndGivesTorchvisionsOutput) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  test::TempDir dir;
  auto r = test::run_python(kLegacyDenseNet, test::shell_quote(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string file = dir.file("densenet121-legacy.pth");
  ASSERT_EQ(static_cast<uint8_t>(read_file(file)[0]), 0x80) << "the fixture is in the legacy (non-zip) format";

  ModelConfig config;
  config.backbone = BackboneKind::densenet121;
  config.attention = AttentionKind::none;
  config.spatial_attention = false;
  RetrievalNet net(config, /*load_weights=*/false);
  LoadReport report = net->load_pretrained(file);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(report.ignored, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_TRUE(report.missing.empty());

  StateDict io = read_state_dict(dir.file("io.pth"));
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor f = net->backbone->forward(get(io, "x"));
  torch::Tensor ref = get(io, "features");
  EXPECT_LE(max_abs_diff(f, ref), 1e-4 * std::max(1.0, ref.abs().max().item<double>()));
}

}  // namespace
}  // namespace fundus
