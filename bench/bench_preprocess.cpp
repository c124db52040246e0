// Preprocessing throughput: real JPEG -> size x size float tensor [3,H,W] (decode, reduced when the rule
// allows, FOV, crop, pad, INTER_AREA resize, mask, ImageNet normalisation), cold (no cache: every image
// decoded; also with decode_oversample 1.25) and warm (preprocessed-image cache hit), with 1 and 2 threads. The Python
// peer is bench/bench_preprocess.py; bench/run_bench_preprocess.sh runs both and prints the table. Results:
// docs/bench-preprocess.md.
//
//   build/bench/bench_preprocess [--data DIR] [--size 256] [--limit 0] [--reps 3]
// Prints one JSON object per line: {"impl":"cpp","mode":"cold","threads":1,"images":356,...}.
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "fundus/core/concurrency.h"
#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/preprocess_cache.h"
#include "fundus/infer/tensor.h"
#include "fundus/model/runtime.h"

using namespace fundus;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double cpu_now() {  // CPU seconds of the whole process: meaningful on a busy shared machine
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

struct Timing {
  double wall = 1e30, cpu = 1e30;  // best of the repetitions, each
};

// `reps` passes over all images with `threads` threads; each thread fills its own [3,H,W] buffer, as a
// loader worker does.
template <typename Load>
Timing best_of(const std::vector<std::string>& paths, int threads, int reps, int size, Load load) {
  Timing best;
  for (int r = 0; r < reps; ++r) {
    double t0 = now(), c0 = cpu_now();
    parallel_for(int64_t(paths.size()), threads, [&](int64_t b, int64_t e) {
      torch::Tensor out = torch::empty({3, size, size}, torch::kFloat32);
      for (int64_t i = b; i < e; ++i)
        image_to_chw(load(paths[size_t(i)]), out.data_ptr<float>(), Normalization::imagenet());
    });
    best.wall = std::min(best.wall, now() - t0);
    best.cpu = std::min(best.cpu, cpu_now() - c0);
  }
  return best;
}

void report(const char* mode, int threads, size_t n, Timing t, int reduce) {
  std::printf(
      "{\"impl\":\"cpp\",\"mode\":\"%s\",\"threads\":%d,\"images\":%zu,\"seconds\":%.4f,\"images_per_s\":%.1f,"
      "\"cpu_ms_per_image\":%.3f,\"reduce\":%d}\n",
      mode, threads, n, t.wall, double(n) / t.wall, 1e3 * t.cpu / double(n), reduce);
  std::fflush(stdout);
}
}  // namespace

int main(int argc, char** argv) {
  std::string data = "../shared/data/rahim-dr";
  int size = 256, limit = 0, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--data") data = argv[i + 1];
    else if (a == "--size") size = std::stoi(argv[i + 1]);
    else if (a == "--limit") limit = std::stoi(argv[i + 1]);
    else if (a == "--reps") reps = std::stoi(argv[i + 1]);
  }
  set_compute_threads(1);
  cv::setNumThreads(1);  // "threads" below are ours only, as in the Python peer
  std::vector<std::string> paths;
  for (const CaseRecord& r : load_dataset(data).dataset.records) {
    if (limit > 0 && int(paths.size()) >= limit) break;
    paths.push_back(r.image_path);
  }
  if (paths.empty()) {
    std::fprintf(stderr, "bench_preprocess: no images under %s\n", data.c_str());
    return 1;
  }
  PreprocessOptions o;
  o.size = size;
  const int reduce = preprocess_fundus_file(paths[0], o).reduce;
  for (const auto& p : paths) read_file(p);  // page cache warm: we time decoding, not the disk

  for (int threads : {1, 2}) {
    Timing s =
        best_of(paths, threads, reps, size, [&](const std::string& p) { return preprocess_fundus_file(p, o).image; });
    report("cold", threads, paths.size(), s, reduce);
  }
  // The same with a 1.25x decode margin (decode_oversample): DCT-reduced decoding kicks in at 256 px.
  PreprocessOptions fast = o;
  fast.decode_oversample = 1.25;
  const int fast_reduce = preprocess_fundus_file(paths[0], fast).reduce;
  for (int threads : {1, 2}) {
    Timing s = best_of(paths, threads, reps, size,
                       [&](const std::string& p) { return preprocess_fundus_file(p, fast).image; });
    report("cold-oversample-1.25", threads, paths.size(), s, fast_reduce);
  }
  std::string dir = "/tmp/fundus-bench-preprocess-cache";
  PreprocessCache fill(dir, o);
  for (const auto& p : paths) fill.load(p);
  for (int threads : {1, 2}) {
    PreprocessCache cache(dir, o);  // a fresh instance: the first pass hashes every file, later ones use the memo
    Timing s = best_of(paths, threads, reps, size, [&](const std::string& p) { return cache.load(p); });
    report("warm", threads, paths.size(), s, reduce);
  }
  return 0;
}
