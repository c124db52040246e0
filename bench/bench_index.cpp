// Vector index benchmark: build time, memory, single-query latency, batched throughput and
// recall@10 of our ExactIndex / HnswIndex / IvfPqIndex beside FAISS IndexFlatIP and IndexHNSWFlat,
// on clustered unit vectors (never i.i.d. Gaussian, see fundus/index/synthetic.h), plus the memory
// bandwidth bound of an exact scan. Results: docs/bench-index.md.
//
//   OMP_WAIT_POLICY=PASSIVE build/bench/bench_index [--sizes 10000,100000,1000000] [--dim 1024]
//       [--queries 200] [--single 100] [--json out.json] [--faiss-hnsw-max 100000]
//       [--hnsw M,efc] [--hnsw-big M,efc (sizes >= 1M)] [--skip faiss-flat,hnsw,faiss-hnsw,ivfpq]
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "fundus/core/concurrency.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "fundus/index/exact_index.h"
#include "fundus/index/hnsw_index.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/ivfpq_index.h"
#include "fundus/index/simd.h"
#include "fundus/index/synthetic.h"

using namespace fundus;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double rss_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / 1e6;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Args {
  std::vector<int64_t> sizes = {10000, 100000, 1000000};
  int dim = 1024;
  int64_t queries = 200;
  int64_t single = 100;  // queries timed one by one (fewer at 1M, see main)
  int64_t faiss_hnsw_max = 100000;
  int hnsw_m = 16, hnsw_efc = 100;
  int hnsw_big_m = 16, hnsw_big_efc = 40;  // keeps the 1M build under ~20 min on 2 cores
  std::string json = "bench-index.json";
  std::string skip;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << k << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto pair = [&](int& x, int& y) {
      auto p = split(value(), ',');
      x = int(parse_int(p.at(0), k));
      y = int(parse_int(p.at(1), k));
    };
    if (k == "--sizes") {
      a.sizes.clear();
      for (auto& s : split(value(), ',')) a.sizes.push_back(parse_int(s, "--sizes"));
    } else if (k == "--dim") a.dim = int(parse_int(value(), k));
    else if (k == "--queries") a.queries = parse_int(value(), k);
    else if (k == "--single") a.single = parse_int(value(), k);
    else if (k == "--faiss-hnsw-max") a.faiss_hnsw_max = parse_int(value(), k);
    else if (k == "--hnsw") pair(a.hnsw_m, a.hnsw_efc);
    else if (k == "--hnsw-big") pair(a.hnsw_big_m, a.hnsw_big_efc);
    else if (k == "--json") a.json = value();
    else if (k == "--skip") a.skip = value();
    else {
      std::cerr << "unknown option " << k << "\n";
      std::exit(2);
    }
  }
  return a;
}

struct Row {
  int64_t n = 0;
  std::string index, setting;
  double build_s = NAN, mem_mb = NAN, p50_ms = NAN, p99_ms = NAN, qps = NAN, recall = NAN;
};

std::vector<Row> g_rows;

void print_row(const Row& r) {
  auto f = [](double v, const char* fmt) { return std::isnan(v) ? std::string("-") : strprintf(fmt, v); };
  std::printf("| %8lld | %-19s | %-26s | %8s | %7s | %8s | %8s | %9s | %6s |\n", (long long)r.n, r.index.c_str(),
              r.setting.c_str(), f(r.build_s, "%.1f").c_str(), f(r.mem_mb, "%.0f").c_str(), f(r.p50_ms, "%.3f").c_str(),
              f(r.p99_ms, "%.3f").c_str(), f(r.qps, "%.0f").c_str(), f(r.recall, "%.3f").c_str());
  std::fflush(stdout);
  g_rows.push_back(r);
}

// p50/p99 latency (ms) of answering queries one at a time.
std::pair<double, double> latency(int64_t nq, int dim, const float* q, const std::function<void(const float*)>& one) {
  std::vector<double> ms;
  for (int64_t i = 0; i < nq; ++i) {
    double t = now();
    one(q + i * dim);
    ms.push_back((now() - t) * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * double(ms.size())))]; };
  return {at(0.5), at(0.99)};
}

SearchResult from_faiss(int64_t nq, int k, const std::vector<float>& d, const std::vector<int64_t>& ids) {
  SearchResult r;
  r.nq = nq;
  r.k = k;
  r.ids = ids;
  r.scores = d;
  return r;
}

// Streaming read bandwidth (GB/s) over a buffer much larger than the caches.
double read_bandwidth(const std::vector<float>& buf, int threads) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> partial(size_t(threads), 0);
    double t = now();
    int64_t n = int64_t(buf.size());
    parallel_for(threads, threads, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) {
        int64_t lo = n * w / threads, hi = n * (w + 1) / threads;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t i = lo; i + 4 <= hi; i += 4) {
          s0 += buf[size_t(i)];
          s1 += buf[size_t(i + 1)];
          s2 += buf[size_t(i + 2)];
          s3 += buf[size_t(i + 3)];
        }
        partial[size_t(w)] = s0 + s1 + s2 + s3;
      }
    });
    double dt = now() - t;
    if (std::accumulate(partial.begin(), partial.end(), 0.0) == 42.0) std::printf(" ");  // keep the sums alive
    best = std::max(best, double(buf.size()) * 4 / dt / 1e9);
  }
  return best;
}

bool skipped(const Args& a, const std::string& what) {
  return ("," + a.skip + ",").find("," + what + ",") != std::string::npos;
}

void run_size(const Args& a, int64_t n, Json& out) {
  const int dim = a.dim, k = 10;
  const int64_t nq = a.queries;
  const int64_t single = n >= 1000000 ? std::min<int64_t>(a.single, 20) : a.single;
  int centres = int(std::max<int64_t>(200, n / 100));
  double t = now();
  // Gallery and held-out queries from one distribution (the last nq points are the queries).
  std::vector<float> data = clustered_vectors(n + nq, dim, centres, 1.0f, 2024);
  std::vector<float> queries(data.end() - nq * dim, data.end());
  data.resize(size_t(n) * size_t(dim));
  data.shrink_to_fit();
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  std::fprintf(stderr, "[n=%lld] generated %lld x %d (%d centres) in %.1f s\n", (long long)n, (long long)(n + nq), dim,
               centres, now() - t);
  SearchResult truth;
  double base = rss_mb();

  {  // Exact: ours. Its batched result is the ground truth.
    Row r{n, "fundus exact", strprintf("%s", simd_level())};
    ExactIndex exact(dim);
    t = now();
    exact.add(ids, data);
    r.build_s = now() - t;
    r.mem_mb = rss_mb() - base;
    t = now();
    truth = exact.search(queries, k);
    r.qps = double(nq) / (now() - t);
    std::tie(r.p50_ms, r.p99_ms) = latency(single, dim, queries.data(), [&](const float* q) { exact.search(1, q, k); });
    r.recall = 1.0;
    print_row(r);
  }
  if (!skipped(a, "faiss-flat")) {
    Row r{n, "faiss IndexFlatIP", "scalar+BLAS"};
    faiss::IndexFlatIP flat(dim);
    base = rss_mb();
    t = now();
    flat.add(n, data.data());
    r.build_s = now() - t;
    r.mem_mb = rss_mb() - base;
    std::vector<float> d(size_t(nq * k));
    std::vector<int64_t> l(size_t(nq * k));
    t = now();
    flat.search(nq, queries.data(), k, d.data(), l.data());
    r.qps = double(nq) / (now() - t);
    r.recall = recall_at_k(truth, from_faiss(nq, k, d, l));
    int64_t s = std::min<int64_t>(single, n >= 1000000 ? 5 : single);  // the scalar path is slow
    std::tie(r.p50_ms, r.p99_ms) =
        latency(s, dim, queries.data(), [&](const float* q) { flat.search(1, q, k, d.data(), l.data()); });
    print_row(r);
  }
  if (!skipped(a, "hnsw")) {
    HnswParams p;
    p.M = n >= 1000000 ? a.hnsw_big_m : a.hnsw_m;
    p.ef_construction = n >= 1000000 ? a.hnsw_big_efc : a.hnsw_efc;
    HnswIndex hnsw(dim, p);
    base = rss_mb();
    t = now();
    hnsw.add(ids, data);
    double build = now() - t, mem = rss_mb() - base;
    for (int ef : {16, 64, 256}) {
      hnsw.set_search_params(parse_index_spec("hnsw:ef=" + std::to_string(ef)));
      Row r{n, "fundus hnsw", strprintf("M=%d efc=%d ef=%d", p.M, p.ef_construction, ef)};
      r.build_s = build;
      r.mem_mb = mem;
      t = now();
      SearchResult got = hnsw.search(queries, k);
      r.qps = double(nq) / (now() - t);
      r.recall = recall_at_k(truth, got);
      std::tie(r.p50_ms, r.p99_ms) = latency(nq, dim, queries.data(), [&](const float* q) { hnsw.search(1, q, k); });
      print_row(r);
    }
  }
  if (!skipped(a, "faiss-hnsw") && n <= a.faiss_hnsw_max) {
    faiss::IndexHNSWFlat fh(dim, a.hnsw_m, faiss::METRIC_INNER_PRODUCT);
    fh.hnsw.efConstruction = a.hnsw_efc;
    base = rss_mb();
    t = now();
    fh.add(n, data.data());
    double build = now() - t, mem = rss_mb() - base;
    for (int ef : {16, 64, 256}) {
      fh.hnsw.efSearch = ef;
      Row r{n, "faiss IndexHNSWFlat", strprintf("M=%d efc=%d ef=%d", a.hnsw_m, a.hnsw_efc, ef)};
      r.build_s = build;
      r.mem_mb = mem;
      std::vector<float> d(size_t(nq * k));
      std::vector<int64_t> l(size_t(nq * k));
      t = now();
      fh.search(nq, queries.data(), k, d.data(), l.data());
      r.qps = double(nq) / (now() - t);
      r.recall = recall_at_k(truth, from_faiss(nq, k, d, l));
      std::tie(r.p50_ms, r.p99_ms) =
          latency(nq, dim, queries.data(), [&](const float* q) { fh.search(1, q, k, d.data(), l.data()); });
      print_row(r);
    }
  }
  if (!skipped(a, "ivfpq")) {
    // m=64 (16 dims per code byte, 64 B/vector) at three nprobe; m=128 (8 dims, 128 B/vector) at one.
    for (auto [m, nprobes] : {std::pair<int, std::vector<int>>{64, {8, 32, 128}}, {128, {32}}}) {
      IvfPqParams p;
      p.nlist = n <= 10000 ? 256 : 1024;
      p.m = m;
      p.nbits = 8;
      IvfPqIndex ivf(dim, p);
      t = now();
      ivf.add(ids, data);
      double build = now() - t;
      // Computed payload (codes + ids + coarse centroids + PQ codebooks): RSS growth is meaningless
      // for structures this small next to the pages freed by the previous index.
      double mem = (double(n) * (m + 8) + double(p.nlist) * dim * 4 + double(dim) * 256 * 4) / 1e6;
      for (int nprobe : nprobes) {
        ivf.set_search_params(parse_index_spec("ivfpq:nprobe=" + std::to_string(nprobe)));
        Row r{n, "fundus ivfpq", strprintf("nlist=%d m=%d nprobe=%d", p.nlist, m, nprobe)};
        r.build_s = build;
        r.mem_mb = mem;
        t = now();
        SearchResult got = ivf.search(queries, k);
        r.qps = double(nq) / (now() - t);
        r.recall = recall_at_k(truth, got);
        std::tie(r.p50_ms, r.p99_ms) = latency(nq, dim, queries.data(), [&](const float* q) { ivf.search(1, q, k); });
        print_row(r);
      }
    }
  }
  Json rows = Json::array();
  for (auto& r : g_rows)
    if (r.n == n)
      rows.push_back({{"index", r.index},
                      {"setting", r.setting},
                      {"build_s", r.build_s},
                      {"mem_mb", r.mem_mb},
                      {"p50_ms", r.p50_ms},
                      {"p99_ms", r.p99_ms},
                      {"qps", r.qps},
                      {"recall_at_10", r.recall}});
  out["sizes"][std::to_string(n)] = rows;
  out["loadavg_after_" + std::to_string(n)] = loadavg();
  std::fprintf(stderr, "[n=%lld] done; load average %s\n", (long long)n, loadavg().c_str());
  save_json_file(a.json, out);
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse_args(argc, argv);
  if (!std::getenv("OMP_WAIT_POLICY"))
    std::fprintf(stderr, "note: OMP_WAIT_POLICY is not set; PASSIVE is faster on a shared box (stack.md 2)\n");
  Json out;
  std::time_t t = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  out["date"] = date;
  out["cores"] = available_cores();
  out["simd"] = simd_level();
  out["dim"] = a.dim;
  out["queries"] = a.queries;
  {
    std::vector<float> buf(size_t(1) << 29);  // 2 GB
    std::fill(buf.begin(), buf.end(), 1.0f);
    out["read_gbps_1"] = read_bandwidth(buf, 1);
    out["read_gbps_all"] = read_bandwidth(buf, available_cores());
  }
  double bw = out["read_gbps_all"].get<double>();
  std::printf("%s, %d cores, kernels %s; streaming read %.1f GB/s (1 thread), %.1f GB/s (%d threads)\n", date,
              available_cores(), simd_level(), out["read_gbps_1"].get<double>(), bw, available_cores());
  for (int64_t n : a.sizes)
    std::printf("exact-scan bound at n=%lld, d=%d: %.2f ms/query (%.0f MB per scan)\n", (long long)n, a.dim,
                double(n) * a.dim * 4 / (bw * 1e9) * 1e3, double(n) * a.dim * 4 / 1e6);
  std::printf("\n| %8s | %-19s | %-26s | %8s | %7s | %8s | %8s | %9s | %6s |\n", "n", "index", "setting", "build s",
              "mem MB", "p50 ms", "p99 ms", "batch q/s", "R@10");
  std::printf(
      "|---------:|:--------------------|:---------------------------|---------:|--------:|---------:|---------:|------"
      "----:|-------:|\n");
  for (int64_t n : a.sizes) run_size(a, n, out);
  return 0;
}
