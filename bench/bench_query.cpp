// End-to-end latency of one similar-case query (decode + preprocess + embed + search) with the `cpu`
// preset model (MobileNetV2 + mirror attention + GeM, 224 px) against a store of real photographs.
//
//   bench_query [--data ../shared/data/rahim-dr] [--ckpt CKPT] [--queries 50] [--threads 2]
//               [--index-spec exact] [--pretrained ../shared/models/mobilenet_v2_imagenet1k.pth]
//               [--json out.json]
// (run from the repository root, or set FUNDUS_SHARED_DIR).
// Without --ckpt a checkpoint of the cpu preset is written (ImageNet backbone when --pretrained exists,
// otherwise random init: the timing is the same). The store is built in a temporary folder and
// embedded through the SearchEngine (its start-up path); then --queries images of the data set are
// queried one at a time after 3 warm-up queries. Prints p50/p99/mean per stage; results go to
// docs/bench-query.md.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/run_config.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/store/case_store.h"

using namespace fundus;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

struct Stats {
  double p50, p99, mean;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {  // nearest rank
    size_t i = size_t(std::ceil(p * double(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  double sum = 0;
  for (double x : v) sum += x;
  return {pct(0.5), pct(0.99), sum / double(v.size())};
}

}  // namespace

int main(int argc, char** argv) {
  // Shared data: $FUNDUS_SHARED_DIR, else ../shared relative to the working directory (the repository root).
  const char* env = std::getenv("FUNDUS_SHARED_DIR");
  const std::string shared = env && *env ? env : "../shared";
  std::string data = shared + "/data/rahim-dr", ckpt, index_spec = "exact", json_out;
  std::string pretrained = shared + "/models/mobilenet_v2_imagenet1k.pth";
  int queries = 50, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--data") data = v;
    else if (k == "--ckpt") ckpt = v;
    else if (k == "--queries") queries = int(parse_int(v, k));
    else if (k == "--threads") threads = int(parse_int(v, k));
    else if (k == "--index-spec") index_spec = v;
    else if (k == "--pretrained") pretrained = v;
    else if (k == "--json") json_out = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    set_compute_threads(threads);
    char tmpl[] = "/tmp/bench_query_XXXXXX";
    std::string work = ::mkdtemp(tmpl);
    Dataset ds = load_dataset(data).dataset;
    FUNDUS_CHECK(!ds.records.empty(), data << ": no images");
    if (ckpt.empty()) {
      Json config = run_preset("cpu");
      config["model"]["pretrained"] = file_exists(pretrained) ? pretrained : "";
      RunConfig rc = RunConfig::from_json(config, "bench");
      seed_torch(1);
      RetrievalNet net(rc.model);
      Checkpoint c;
      c.meta = {{"config", rc.to_json()}, {"state", Json::object()}};
      c.model = module_state_dict(*net);
      ckpt = work + "/cpu.ckpt";
      save_checkpoint(ckpt, c);
    }
    {
      CaseStore store(work + "/cases.db");
      store.add_cases(ds, threads);
    }
    EngineOptions eo;
    eo.store_path = work + "/cases.db";
    eo.checkpoint_path = ckpt;
    eo.index_spec = index_spec;
    eo.threads = threads;
    auto t0 = Clock::now();
    SearchEngine engine(eo);
    const double startup_s = ms(t0, Clock::now()) / 1000;
    std::cerr << "store of " << engine.size() << " images embedded and indexed in " << strprintf("%.1f s", startup_s)
              << "\n";

    std::vector<std::string> paths;
    for (size_t i = 0; int(paths.size()) < queries + 3; i = (i + 7) % ds.records.size())
      paths.push_back(ds.records[i].image_path);  // every 7th image, wrapping: distinct for 356 images
    std::vector<double> read, decode, preprocess, embed, search, total;
    QueryOptions q;
    q.k = 10;
    for (size_t i = 0; i < paths.size(); ++i) {
      auto a = Clock::now();
      std::string bytes = read_file(paths[i]);
      auto b = Clock::now();
      QueryResult r = engine.query_image_bytes(bytes, paths[i], q);
      auto c = Clock::now();
      // Decode alone, with the reduction factor the preprocessing chose (for the breakdown).
      PreprocessResult p = preprocess_fundus_bytes(bytes, paths[i], engine.preprocess_options());
      auto d = Clock::now();
      decode_image_rgb_bytes(bytes, paths[i], p.reduce);
      auto e = Clock::now();
      if (i < 3) continue;  // warm-up
      const double dec = ms(d, e), pre = r.timing_ms["decode"].get<double>();
      read.push_back(ms(a, b));
      decode.push_back(dec);
      preprocess.push_back(std::max(0.0, pre - dec));
      embed.push_back(r.timing_ms["embed"].get<double>());
      search.push_back(r.timing_ms["search"].get<double>());
      total.push_back(ms(a, c));
    }
    Json j = {
        {"images_in_store", engine.size()}, {"queries", total.size()}, {"threads", threads}, {"index", index_spec},
        {"startup_embed_s", startup_s},     {"checkpoint", ckpt}};
    std::printf("%-26s %9s %9s %9s\n", "stage (ms)", "p50", "p99", "mean");
    for (auto& [name, v] :
         std::vector<std::pair<std::string, std::vector<double>*>>{{"read file", &read},
                                                                   {"decode (JPEG, reduced)", &decode},
                                                                   {"preprocess (FOV, resize)", &preprocess},
                                                                   {"embed (3 views)", &embed},
                                                                   {"search + case lookup", &search},
                                                                   {"total", &total}}) {
      Stats s = stats(*v);
      std::printf("%-26s %9.2f %9.2f %9.2f\n", name.c_str(), s.p50, s.p99, s.mean);
      j["ms"][name] = {{"p50", s.p50}, {"p99", s.p99}, {"mean", s.mean}};
    }
    if (!json_out.empty()) save_json_file(json_out, j);
    std::system(("rm -rf " + work).c_str());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
