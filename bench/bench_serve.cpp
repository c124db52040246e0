// Load generator for `fundus serve`, run as a second process on loopback (bench/run_bench_serve.sh).
//
//   bench_serve --url http://127.0.0.1:8080 --images DIR [--clients 2] [--seconds 20] [--k 10]
//               [--attention 1] [--writers 0] [--token T] [--label NAME]
//
// `clients` threads send POST /api/query back to back with the JPEGs of DIR (round robin); `writers`
// threads meanwhile add cases (POST /api/cases) and delete every other one again. Prints queries per
// second and latency percentiles, counts every failed request, and checks afterwards that the
// store's case count, the index size and the expected count agree. Exit status 1 on any failure or
// inconsistency. One JSON line per run goes to stdout after the readable line.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <dirent.h>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string url, images, token, label = "run";
  int clients = 2, writers = 0, k = 10;
  double seconds = 20;
  bool attention = true;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("missing value for " + key);
    std::string v = argv[++i];
    if (key == "--url") a.url = v;
    else if (key == "--images") a.images = v;
    else if (key == "--token") a.token = v;
    else if (key == "--label") a.label = v;
    else if (key == "--clients") a.clients = int(fundus::parse_int(v, key));
    else if (key == "--writers") a.writers = int(fundus::parse_int(v, key));
    else if (key == "--k") a.k = int(fundus::parse_int(v, key));
    else if (key == "--seconds") a.seconds = fundus::parse_double(v, key);
    else if (key == "--attention") a.attention = v == "1" || v == "true";
    else throw std::runtime_error("unknown option " + key);
  }
  if (a.url.empty() || a.images.empty()) throw std::runtime_error("--url and --images are required");
  return a;
}

std::vector<std::string> load_images(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (fundus::ends_with(e->d_name, ".jpg")) names.push_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<std::string> images;
  for (const auto& n : names) images.push_back(fundus::read_file(dir + "/" + n));
  if (images.empty()) throw std::runtime_error(dir + ": no .jpg images");
  return images;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(std::min<double>(double(v.size() - 1), p / 100 * double(v.size() - 1) + 0.5));
  return v[i];
}

fundus::Json get_json(httplib::Client& c, const char* path) {
  auto r = c.Get(path);
  if (!r || r->status != 200) throw std::runtime_error(std::string("GET ") + path + " failed");
  return fundus::Json::parse(r->body);
}

}  // namespace

int main(int argc, char** argv) try {
  Args a = parse_args(argc, argv);
  std::vector<std::string> images = load_images(a.images);
  httplib::Headers auth;
  if (!a.token.empty()) auth.emplace("Authorization", "Bearer " + a.token);
  auto client = [&] {
    httplib::Client c(a.url);
    c.set_read_timeout(120, 0);
    c.set_keep_alive(true);
    return c;
  };
  auto query_form = [&](size_t i) {
    return httplib::MultipartFormDataItems{{"image", images[i % images.size()], "q.jpg", "image/jpeg"},
                                           {"k", std::to_string(a.k), "", ""},
                                           {"attention", a.attention ? "true" : "false", "", ""}};
  };

  httplib::Client control = client();
  int64_t indexed_before = get_json(control, "/api/health")["indexed"];
  for (int i = 0; i < 2; ++i) control.Post("/api/query", query_form(size_t(i)));  // warm-up

  std::atomic<bool> stop{false};
  std::atomic<int64_t> failures{0}, adds{0}, deletes{0};
  std::mutex mu;
  std::vector<double> latencies;
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int t = 0; t < a.clients; ++t)
    threads.emplace_back([&, t] {
      httplib::Client c = client();
      std::vector<double> mine;
      for (size_t i = size_t(t); !stop; i += size_t(a.clients)) {
        auto start = Clock::now();
        auto r = c.Post("/api/query", query_form(i));
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (!r || r->status != 200) {
          ++failures;
          std::cerr << "query failed: "
                    << (r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error())) << "\n";
        } else {
          mine.push_back(ms);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  for (int w = 0; w < a.writers; ++w)
    threads.emplace_back([&, w] {
      httplib::Client c = client();
      for (int i = 0; !stop; ++i) {
        httplib::MultipartFormDataItems form = {
            {"image", images[size_t(i * 7 + w) % images.size()], "a.jpg", "image/jpeg"},
            {"grade", std::to_string(i % 5), "", ""},
            {"id", fundus::strprintf("bench-%s-%d-%d", a.label.c_str(), w, i), "", ""}};
        auto r = c.Post("/api/cases", auth, form);
        if (!r || r->status != 201) {
          ++failures;
          std::cerr << "add failed: " << (r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error()))
                    << "\n";
          continue;
        }
        ++adds;
        if (i % 2 == 0) {
          std::string path = "/api/cases/" + std::to_string(fundus::Json::parse(r->body)["id"].get<int64_t>());
          auto d = c.Delete(path.c_str(), auth);
          if (d && d->status == 204) ++deletes;
          else ++failures;
        }
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  fundus::Json health = get_json(control, "/api/health");
  fundus::Json stats = get_json(control, "/api/stats");
  const int64_t expected = indexed_before + adds - deletes;
  const int64_t indexed = health["indexed"], stored = stats["cases"];
  const bool consistent = indexed == expected && stored == expected;
  const double qps = double(latencies.size()) / elapsed;
  // The machine may be shared: record how busy it was.
  double load1 = 0;
  try {
    load1 = std::stod(fundus::read_file("/proc/loadavg"));
  } catch (const std::exception&) {}

  std::cout << fundus::strprintf(
                   "%-28s clients %d writers %d: %6.2f queries/s  p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms  "
                   "(%zu queries, %lld adds, %lld deletes, %lld failures, store %s: %lld cases, index %lld)",
                   a.label.c_str(), a.clients, a.writers, qps, percentile(latencies, 50), percentile(latencies, 90),
                   percentile(latencies, 99), latencies.size(), (long long)adds.load(), (long long)deletes.load(),
                   (long long)failures.load(), consistent ? "consistent" : "INCONSISTENT", (long long)stored,
                   (long long)indexed)
            << "\n";
  fundus::Json out = {{"label", a.label},
                      {"clients", a.clients},
                      {"writers", a.writers},
                      {"seconds", elapsed},
                      {"queries", latencies.size()},
                      {"qps", qps},
                      {"p50_ms", percentile(latencies, 50)},
                      {"p90_ms", percentile(latencies, 90)},
                      {"p99_ms", percentile(latencies, 99)},
                      {"adds", adds.load()},
                      {"deletes", deletes.load()},
                      {"failures", failures.load()},
                      {"consistent", consistent},
                      {"cases", stored},
                      {"indexed", indexed},
                      {"expected", expected},
                      {"load1", load1}};
  std::cout << out.dump() << "\n";
  return failures == 0 && consistent ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "bench_serve: " << e.what() << "\n";
  return 1;
}
